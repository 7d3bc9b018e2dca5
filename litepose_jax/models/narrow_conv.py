"""Dense convolutions with few input channels as broadcast multiply-adds (the CPU 'shift' forms).

XLA:CPU hands every dot and convolution to a library kernel (YNNPACK). With few input channels such a
kernel does little work per byte and runs far below the machine's speed: on our 2-core CI machine the
stem conv (3 → 32 channels, 3x3, stride 2, 3 images at 256²) took 5.8 ms and a 1x1 conv 16 → 96 on 49152
pixels 4.9 ms. Written as a sum over input channels (and taps) of `x[..., c] · w[c, :]`, the same
products become one elementwise loop fusion, vectorised over the output channels and fused with the
BatchNorm and activation that follow: 1.8 ms and 2.0 ms. With many input channels the library kernel
wins (96 → 16: 0.9 vs 1.1 ms), hence `use_broadcast_sum`.

Only the inference forward changes: under differentiation the custom VJPs' forward rules run the dot /
native convolution and the gradients are computed as before, so the train step stays the program
measured for training (bench/train_step.py).
"""

from __future__ import annotations

import functools
from typing import Tuple

import jax
import jax.numpy as jnp
from jax import lax

from litepose_jax.models import depthwise


def use_broadcast_sum(cin: int, cout: int) -> bool:
  """Whether a 1x1 conv cin → cout is faster as a broadcast sum on XLA:CPU (measured, see module doc).

  The loop fusion does cin multiply-adds per output and vectorises over cout: it wins for up to 16
  input channels, and up to 32 when cout fills whole 16-float vectors (cout 28 leaves a masked tail
  and lost: 1.05 vs 0.78 ms at 32 → 28).
  """
  return cin <= 16 or (cin <= 32 and cout % 16 == 0)


def use_shifted_conv(cin: int, kernel_size: int) -> bool:
  """Whether a k×k conv is cheaper as shifted broadcast sums: up to 32 products per output (the stem's
  3x3x3 = 27: 1.8 vs 5.8 ms, module doc)."""
  return cin * kernel_size * kernel_size <= 32


def broadcast_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Σ_c x[..., c:c+1] · kernel[c] (float32 accumulation). x [..., Cin], kernel [Cin, Cout] → [..., Cout]."""
  dtype, acc = x.dtype, depthwise.acc_dtype(x.dtype)
  x, kernel = x.astype(acc), kernel.astype(acc)
  out = x[..., 0:1] * kernel[0]
  for c in range(1, kernel.shape[0]):
    out = out + x[..., c:c + 1] * kernel[c]
  return out.astype(dtype)


def native_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """XLA's dense conv with symmetric padding k//2 (also `layers.Conv`'s form for wide inputs)."""
  pad = kernel.shape[0] // 2
  return lax.conv_general_dilated(x, kernel, (stride, stride), ((pad, pad), (pad, pad)),
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _shifted_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """Σ_{i,j,c} xpad[:, s·h+i, s·w+j, c] · kernel[i, j, c, :], one loop fusion."""
  k, _, cin, _ = kernel.shape
  pad = k // 2
  _, h, w, _ = x.shape
  out_hw = (depthwise.output_size(h, k, stride), depthwise.output_size(w, k, stride))
  acc = depthwise.acc_dtype(x.dtype)
  xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))).astype(acc)
  kernel = kernel.astype(acc)
  out = None
  for i in range(k):
    for j in range(k):
      patch = depthwise.tap_slice(xp, i, j, out_hw, stride)
      for c in range(cin):
        term = patch[..., c:c + 1] * kernel[i, j, c]
        out = term if out is None else out + term
  return out.astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_broadcast(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """k×k dense conv (symmetric padding k//2) as shifted broadcast multiply-adds, for few input channels.

  Args:
    x: [B, H, W, Cin].
    kernel: [k, k, Cin, Cout] (HWIO), k odd.
    stride: int.
  Returns:
    [B, H', W', Cout] in x's dtype, H' = (H + 2·(k//2) − k)//stride + 1: the values of
    `lax.conv_general_dilated` up to the order of the float additions. Under differentiation the
    native conv runs (forward and gradients).
  """
  return _shifted_conv(x, kernel, stride)


def _conv_broadcast_fwd(x, kernel, stride):
  return native_conv(x, kernel, stride), (x, kernel)


def _conv_broadcast_bwd(stride, res, g) -> Tuple[jax.Array, jax.Array]:
  x, kernel = res
  _, vjp = jax.vjp(lambda a, b: native_conv(a, b, stride), x, kernel)
  return vjp(g)


conv_broadcast.defvjp(_conv_broadcast_fwd, _conv_broadcast_bwd)
