"""Depthwise k×k convolution with a backend-dependent implementation.

XLA:CPU lowers grouped (depthwise) convolutions to a slow generic loop: a 7x7 depthwise conv runs 20-100x
slower than PyTorch's CPU kernel (measured on our 2-core CI machine). Written as k·k shifted multiply-adds
over the NHWC tensor it vectorises over channels and runs 10-17x faster. GPUs and TPUs have good native
depthwise kernels, so there we keep `lax.conv_general_dilated`. Both give the same result (tested, forward
and gradient).

Padding is symmetric k//2 on both sides, as in PyTorch (XLA's "SAME" would pad stride-2 convolutions
asymmetrically).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

IMPLS = ('auto', 'xla', 'shift')


def resolve_impl(impl: str) -> str:
  """'auto' → 'shift' on CPU, 'xla' on GPU/TPU."""
  if impl not in IMPLS:
    raise ValueError(f'depthwise impl must be one of {IMPLS}, got {impl!r}')
  if impl == 'auto':
    return 'shift' if jax.default_backend() == 'cpu' else 'xla'
  return impl


def output_size(size: int, kernel_size: int, stride: int) -> int:
  pad = kernel_size // 2
  return (size + 2 * pad - kernel_size) // stride + 1


def depthwise_conv_xla(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
  """Native grouped convolution. x [B,H,W,C], kernel [k,k,C] → [B,H',W',C]."""
  k = kernel.shape[0]
  c = x.shape[-1]
  pad = k // 2
  return lax.conv_general_dilated(
      x, kernel.reshape(k, k, 1, c), window_strides=(stride, stride), padding=((pad, pad), (pad, pad)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=c)


def depthwise_conv_shift(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
  """k·k shifted multiply-adds (fast on XLA:CPU). x [B,H,W,C], kernel [k,k,C] → [B,H',W',C]."""
  k = kernel.shape[0]
  pad = k // 2
  _, h, w, _ = x.shape
  ho, wo = output_size(h, k, stride), output_size(w, k, stride)
  xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  out = None
  for i in range(k):
    for j in range(k):
      patch = lax.slice(xp, (0, i, j, 0), (xp.shape[0], i + stride * (ho - 1) + 1,
                                            j + stride * (wo - 1) + 1, xp.shape[3]),
                        (1, stride, stride, 1))
      term = patch * kernel[i, j]
      out = term if out is None else out + term
  return out


def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int = 1, impl: str = 'auto') -> jax.Array:
  """Depthwise convolution, symmetric padding k//2.

  Args:
    x: [B, H, W, C] input.
    kernel: [k, k, C] one k×k filter per channel (PyTorch (C,1,k,k) transposed).
    stride: 1 or 2.
    impl: 'auto' (backend-dependent), 'xla' (lax.conv) or 'shift' (multiply-adds).
  Returns:
    [B, H', W', C] with H' = (H + 2·(k//2) − k)//stride + 1.
  """
  if resolve_impl(impl) == 'xla':
    return depthwise_conv_xla(x, kernel, stride)
  return depthwise_conv_shift(x, kernel, stride)
