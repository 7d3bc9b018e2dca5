"""Depthwise k×k convolution with a backend-dependent implementation.

XLA:CPU lowers grouped (depthwise) convolutions to a slow generic loop: a 7x7 depthwise conv runs 20-100x
slower than PyTorch's CPU kernel (measured on our 2-core CI machine), and its autodiff gradients are as slow.
Written as k·k shifted multiply-adds over the NHWC tensor it becomes one elementwise loop fusion that XLA
vectorises over channels (10-17x faster). Plain autodiff of that formulation is slow again (49 padded
scatters for the input gradient; for the kernel gradient 49 sliced reductions, which XLA:CPU runs
latency-bound), so 'shift' carries a custom VJP built from the same kind of fused multiply-adds:

  input gradient   stride 1: the same shifted sum over the cotangent with the flipped kernel;
                   stride 2: four sub-pixel phases (each a stride-1 shifted sum with a sub-kernel),
                   interleaved, so no multiply touches the zeros of a dilated cotangent.
  kernel gradient  one variadic reduction over batch and columns computes all k·k products
                   x[shifted]·g in a single pass over x and g (per output row; the rows are summed
                   after), see `_kernel_grad`.

The three pieces (forward, input gradient, kernel gradient) are jitted: a network's identical blocks then
trace them once per shape instead of once per call, and lowering emits one function per shape (XS train
step: 40,800 traced equations → 15,900, tracing 6.4 → 4.1 s); XLA inlines the calls, so the compiled
program is unchanged.

'ffi' is a C++ kernel for XLA:CPU (cpu_kernels.py): the inference forward with the following BatchNorm
(folded) and ReLU6 applied before its one store; differentiated as 'shift'. 'auto' picks it on CPU when
it builds.

GPUs and TPUs have good native depthwise kernels, so there we keep `lax.conv_general_dilated`. Both give
the same result (tested, forward and gradients).

'tflite' is the export form for LiteRT's default CPU path, the XNNPACK delegate: native ops, with every
k×k depthwise kernel bigger than 5×5 cut into pieces of at most 25 taps, each centred on the output pixel,
summed (`depthwise_conv_rings`; 7x7: even rows × all columns, odd rows × columns −2..2, odd rows ×
columns ±3). XNNPACK runs depthwise kernels of up to 9 and up to 25 taps in one pass, each piece at the
cost of its tile, and larger kernels on a path several times slower than the pieces (x86; per-op table in
docs/cpu_inference.md, bench/tflite_ops.py).
"""

from __future__ import annotations

import functools
from typing import List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
from jax import lax

from litepose_jax.models import cpu_kernels

IMPLS = ('auto', 'xla', 'shift', 'tflite', 'ffi')

# Largest single-pass depthwise kernel of XNNPACK (5x5); 'tflite' cuts bigger kernels into pieces.
_SINGLE_PASS_TAPS = 25


def resolve_impl(impl: str) -> str:
  """'auto' → 'ffi' on CPU ('shift' where the C++ kernel cannot be built), 'xla' on GPU/TPU."""
  if impl not in IMPLS:
    raise ValueError(f'depthwise impl must be one of {IMPLS}, got {impl!r}')
  if impl == 'auto':
    if jax.default_backend() != 'cpu':
      return 'xla'
    return 'ffi' if cpu_kernels.available() else 'shift'
  if impl == 'ffi' and not cpu_kernels.available():
    raise RuntimeError("depthwise impl 'ffi': the C++ kernel could not be built (see the logged reason)")
  return impl


def resolve_layer_impl(impl: str) -> str:
  """The form of the other layers (1x1, narrow and transposed convs) under the depthwise switch: 'ffi'
  (a depthwise kernel only) uses the CPU forms of 'shift' for them."""
  impl = resolve_impl(impl)
  return 'shift' if impl == 'ffi' else impl


def output_size(size: int, kernel_size: int, stride: int) -> int:
  """Spatial output size of a conv with symmetric padding k//2."""
  pad = kernel_size // 2
  return (size + 2 * pad - kernel_size) // stride + 1


def depthwise_conv_xla(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
  """Native grouped convolution. x [B,H,W,C], kernel [k,k,C] → [B,H',W',C]."""
  return _native_piece(x, kernel, stride, (1, 1))


def _native_piece(x: jax.Array, kernel: jax.Array, stride: int, dilation: Tuple[int, int]) -> jax.Array:
  """Native depthwise conv with an [h,w,C] kernel dilated by `dilation`, centred (symmetric padding)."""
  h, w, c = kernel.shape
  ph, pw = dilation[0] * (h - 1) // 2, dilation[1] * (w - 1) // 2
  return lax.conv_general_dilated(
      x, kernel.reshape(h, w, 1, c), window_strides=(stride, stride), padding=((ph, ph), (pw, pw)),
      rhs_dilation=dilation, dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=c)


def _grid_piece(x: jax.Array, kernel: jax.Array, rows: range, cols: range, stride: int) -> jax.Array:
  """The taps kernel[rows × cols] (offsets from the centre, each an arithmetic progression symmetric about
  0) as one native depthwise conv with dilation (row step, column step), centred on the output pixel."""
  pad = kernel.shape[0] // 2
  sub = kernel[pad + rows.start:pad + rows.stop:rows.step, pad + cols.start:pad + cols.stop:cols.step]
  return _native_piece(x, sub, stride, (rows.step, cols.step))


def depthwise_conv_rings(x: jax.Array, kernel: jax.Array, stride: int = 1,
                         max_taps: int = _SINGLE_PASS_TAPS) -> jax.Array:
  """Native depthwise conv cut into pieces of ≤ 25 taps (the 'tflite' export form, see module doc).

  7x7 (the LitePose blocks) is cut by row parity into three pieces, each a dilated rectangle centred on
  the output pixel: the even rows {−2, 0, 2} × all 7 columns (21 taps, row dilation 2), the odd rows
  {−3, −1, 1, 3} × columns −2..2 (20 taps) and the odd rows × columns ±3 (8 taps, dilation (2, 6)).
  XNNPACK runs a piece at the cost of its kernel tile (≤ 9 or ≤ 25 taps): two 25-tap passes and one 9-tap
  pass, where the ring cut (centred 5x5 + rows ±3 + columns ±3) takes three 25-tap passes
  (bench/tflite_ops.py, docs/cpu_inference.md). Three is the fewest pieces that cover a 7x7.
  Other k×k (k > 5): the centred 5×5 plus, for every ring r = 3 … k//2 around it, two dilated pieces:
  the ring's top and bottom rows ([2, 2r+1] taps, row dilation 2r) and the rest of its left and right
  columns ([2r−1, 2] taps, column dilation 2r).
  Every piece keeps symmetric padding ('SAME' at stride 1: no PAD or SLICE op, and a file resizes to
  other input shapes at run time). x [B,H,W,C], kernel [k,k,C] → [B,H',W',C], the same values as
  `depthwise_conv_xla` up to the order of the float additions. Kernels of ≤ `max_taps` taps stay one op.
  """
  k = kernel.shape[0]
  if k * k <= max_taps:
    return depthwise_conv_xla(x, kernel, stride)
  pad = k // 2
  if k == 7 and max_taps >= 21:
    even, odd = range(-2, 3, 2), range(-3, 4, 2)
    return (_grid_piece(x, kernel, even, range(-3, 4), stride)
            + _grid_piece(x, kernel, odd, range(-2, 3), stride)
            + _grid_piece(x, kernel, odd, range(-3, 4, 6), stride))
  center = max(r for r in range(pad + 1) if (2 * r + 1) ** 2 <= max_taps)
  out = depthwise_conv_xla(x, kernel[pad - center:pad + center + 1, pad - center:pad + center + 1], stride)
  for r in range(center + 1, pad + 1):
    rows = jnp.stack([kernel[pad - r, pad - r:pad + r + 1], kernel[pad + r, pad - r:pad + r + 1]])
    cols = jnp.stack([kernel[pad - r + 1:pad + r, pad - r], kernel[pad - r + 1:pad + r, pad + r]], axis=1)
    out = out + _native_piece(x, rows, stride, (2 * r, 1)) + _native_piece(x, cols, stride, (1, 2 * r))
  return out


def acc_dtype(dtype) -> jnp.dtype:
  """Accumulation dtype of the shifted sums (also narrow_conv's)."""
  # Sums of 49 products lose too much in bf16/fp16: accumulate in float32 (free inside the fusion).
  return jnp.promote_types(dtype, jnp.float32)


def tap_slice(xp: jax.Array, oi: int, oj: int, out_hw: Tuple[int, int], stride: int) -> jax.Array:
  """xp[:, oi + stride·i, oj + stride·j, :] for i < out_h, j < out_w: one tap of a shifted sum."""
  b, _, _, c = xp.shape
  ho, wo = out_hw
  return lax.slice(xp, (0, oi, oj, 0), (b, oi + stride * (ho - 1) + 1, oj + stride * (wo - 1) + 1, c),
                   (1, stride, stride, 1))


def _shifted_sum(xp: jax.Array, taps: Sequence[Tuple[int, int, jax.Array]], out_hw: Tuple[int, int],
                 stride: int) -> jax.Array:
  """Σ_taps xp[:, oi + stride·i, oj + stride·j, :] · w for i < out_h, j < out_w (one loop fusion).

  Args:
    xp: [B, Hp, Wp, C], already padded so every tap stays in range.
    taps: (oi, oj, w[C]) row offset, column offset and per-channel weight.
    out_hw: (out_h, out_w).
    stride: step between output positions in xp.
  Returns:
    [B, out_h, out_w, C] in xp's dtype.
  """
  out = None
  for oi, oj, w in taps:
    term = tap_slice(xp, oi, oj, out_hw, stride) * w
    out = term if out is None else out + term
  return out


@functools.partial(jax.jit, static_argnames=('stride', 'barrier'))
def _forward(x: jax.Array, kernel: jax.Array, stride: int, barrier: bool = False) -> jax.Array:
  """Depthwise conv as k·k shifted multiply-adds, accumulated in float32.

  barrier: materialise the padded input first (inference, see below); the training forward (the VJP's
  forward rule) goes without, as measured for the train step.
  """
  k = kernel.shape[0]
  pad = k // 2
  _, h, w, _ = x.shape
  acc = acc_dtype(x.dtype)
  xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))).astype(acc)
  # The barrier keeps every tap a slice of the materialised padded input. Otherwise XLA reads the centre
  # tap from the unpadded x and fuses x's producer (BN, activation, a broadcast-sum 1x1 conv: 16
  # multiply-adds per element) into this fusion, computing it a second time. With the narrow-conv
  # forms (narrow_conv.py) the XS forward of a flip batch 2 x 256x384 is 14% faster with it (paired).
  if barrier:
    xp = lax.optimization_barrier(xp)
  kernel = kernel.astype(acc)
  taps = [(i, j, kernel[i, j]) for i in range(k) for j in range(k)]
  out = _shifted_sum(xp, taps, (output_size(h, k, stride), output_size(w, k, stride)), stride)
  return out.astype(x.dtype)


def _phase_taps(k: int, pad: int, stride: int, r: int) -> List[Tuple[int, int]]:
  """Input-gradient taps of output phase r: (kernel index d, cotangent offset o).

  x position m = stride·u + r receives g[i]·w[d] for every stride·i + d − pad = m, i.e. d ≡ r + pad
  (mod stride) and i = u + (r + pad − d)/stride = u + o.
  """
  return [(d, (r + pad - d) // stride) for d in range(k) if (r + pad - d) % stride == 0]


@functools.partial(jax.jit, static_argnames=('stride', 'in_hw'))
def _input_grad(g: jax.Array, kernel: jax.Array, stride: int, in_hw: Tuple[int, int]) -> jax.Array:
  """∂L/∂x of the depthwise conv: g [B,H',W',C], kernel [k,k,C] → [B,H,W,C] (float32)."""
  k = kernel.shape[0]
  pad = k // 2
  h, w = in_hw
  b, ho, wo, c = g.shape
  # Phase (r, s) covers x[stride·u + r, stride·v + s]; each is a stride-1 shifted sum of g.
  hc, wc = -(-h // stride), -(-w // stride)  # positions per phase (the largest phase)
  rows = [_phase_taps(k, pad, stride, r) for r in range(stride)]
  cols = [_phase_taps(k, pad, stride, s) for s in range(stride)]
  lo_h = max(0, -min(o for taps in rows for _, o in taps))
  lo_w = max(0, -min(o for taps in cols for _, o in taps))
  hi_h = max(0, hc - 1 + max(o for taps in rows for _, o in taps) - (ho - 1))
  hi_w = max(0, wc - 1 + max(o for taps in cols for _, o in taps) - (wo - 1))
  gp = jnp.pad(g, ((0, 0), (lo_h, hi_h), (lo_w, hi_w), (0, 0)))
  phases = [[_shifted_sum(gp, [(oi + lo_h, oj + lo_w, kernel[di, dj]) for di, oi in rows[r]
                                for dj, oj in cols[s]], (hc, wc), 1)
             for s in range(stride)] for r in range(stride)]
  if stride == 1:
    return phases[0][0]
  # Interleave: [B, hc, stride, wc, stride, C] → [B, stride·hc, stride·wc, C], then crop odd sizes.
  dx = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)
  dx = dx.reshape(b, stride * hc, stride * wc, c)
  return dx[:, :h, :w]


@functools.partial(jax.jit, static_argnames=('stride', 'k'))
def _kernel_grad(x: jax.Array, g: jax.Array, stride: int, k: int) -> jax.Array:
  """∂L/∂kernel: Σ_{b,i,j} xpad[b, s·i+di, s·j+dj, c]·g[b,i,j,c] → [k,k,C] (float32).

  One variadic reduction computes all k·k sums in a single pass over x and g (XLA:CPU fuses the shifted
  products into it); separate sums would each re-read both tensors, and XLA hands a lone sum of a slice
  to a library kernel that first copies the slice. The output rows are kept ([k·k, H', C], reduced over
  batch and columns) which XLA:CPU runs 2x faster than the full reduction; the small remainder is summed
  after. For stride 2 the padded x is split into its four (row, column) parity phases so that every tap
  is a unit-stride slice of one phase.
  """
  b, h, w, c = x.shape
  _, ho, wo, _ = g.shape
  pad = k // 2
  bottom = max(pad, stride * (ho - 1) + k - h - pad)
  right = max(pad, stride * (wo - 1) + k - w - pad)
  xp = jnp.pad(x, ((0, 0), (pad, bottom), (pad, right), (0, 0)))
  phases = {(r, s): xp[:, r::stride, s::stride] for r in range(stride) for s in range(stride)}
  products = []
  for di in range(k):
    for dj in range(k):
      ph = phases[(di % stride, dj % stride)]
      oi, oj = di // stride, dj // stride
      products.append(lax.slice(ph, (0, oi, oj, 0), (b, oi + ho, oj + wo, c)) * g)
  zeros = [jnp.zeros((), x.dtype)] * len(products)
  rows = lax.reduce(products, zeros, lambda p, q: [u + v for u, v in zip(p, q)], (0, 2))  # k·k × [H', C]
  return jnp.stack(rows).sum(axis=1).reshape(k, k, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _depthwise_shift(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  return _forward(x, kernel, stride, barrier=True)  # not differentiated: inference


def _depthwise_shift_fwd(x, kernel, stride):
  return _forward(x, kernel, stride), (x, kernel)


def _depthwise_shift_bwd(stride, res, g):
  x, kernel = res
  acc = acc_dtype(x.dtype)
  g32, x32 = g.astype(acc), x.astype(acc)
  dx = _input_grad(g32, kernel.astype(acc), stride, x.shape[1:3])
  dk = _kernel_grad(x32, g32, stride, kernel.shape[0])
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


_depthwise_shift.defvjp(_depthwise_shift_fwd, _depthwise_shift_bwd)


def depthwise_conv_shift(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
  """k·k shifted multiply-adds with a custom VJP (fast on XLA:CPU). x [B,H,W,C], kernel [k,k,C] →
  [B,H',W',C]."""
  if kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
    raise ValueError(f'depthwise kernel must be square with odd size, got {kernel.shape}')
  return _depthwise_shift(x, kernel, int(stride))


def _bias_act(y: jax.Array, bias: Optional[jax.Array], relu6: bool) -> jax.Array:
  """The epilogue the 'ffi' kernel applies inside: + bias (a folded BatchNorm), then ReLU6."""
  if bias is not None:
    y = y + bias.astype(y.dtype)
  return jax.nn.relu6(y) if relu6 else y


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _depthwise_ffi(x: jax.Array, kernel: jax.Array, bias: jax.Array, stride: int, relu6: bool) -> jax.Array:
  return cpu_kernels.depthwise(x, kernel, bias, stride, relu6)   # zero padding k//2 inside the kernel


def _depthwise_ffi_fwd(x, kernel, bias, stride, relu6):
  # Differentiated (training): the 'shift' form and its VJP, so gradients are the 'shift' form's.
  return jax.vjp(lambda a, k, b: _bias_act(depthwise_conv_shift(a, k, stride), b, relu6), x, kernel, bias)


def _depthwise_ffi_bwd(stride, relu6, vjp, g):
  del stride, relu6
  return vjp(g)


_depthwise_ffi.defvjp(_depthwise_ffi_fwd, _depthwise_ffi_bwd)


def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int = 1, impl: str = 'auto',
                   bias: Optional[jax.Array] = None, relu6: bool = False) -> jax.Array:
  """Depthwise convolution, symmetric padding k//2, then optionally + bias and ReLU6.

  Args:
    x: [B, H, W, C] input.
    kernel: [k, k, C] one k×k filter per channel (PyTorch (C,1,k,k) transposed).
    stride: 1 or 2.
    impl: 'auto' (backend-dependent), 'xla' (lax.conv), 'shift' (multiply-adds, custom VJP), 'tflite'
      (native convs of ≤ 25 taps, for export to XNNPACK) or 'ffi' (the C++ kernel of cpu_kernels.py,
      XLA:CPU, float32; bias and ReLU6 applied inside it; differentiated as 'shift').
    bias: [C] added to the output (a folded BatchNorm), or None.
    relu6: apply ReLU6 last.
  Returns:
    [B, H', W', C] with H' = (H + 2·(k//2) − k)//stride + 1.
  """
  impl = resolve_impl(impl)
  if impl == 'ffi' and x.dtype == jnp.float32 and kernel.dtype == jnp.float32:
    if kernel.shape[0] != kernel.shape[1] or kernel.shape[0] not in (3, 5, 7) or stride not in (1, 2):
      raise ValueError(f"depthwise impl 'ffi' takes 3x3, 5x5 or 7x7 kernels and stride 1 or 2, got "
                       f'{kernel.shape[:2]} stride {stride}')
    b = jnp.zeros(x.shape[-1], jnp.float32) if bias is None else bias.astype(jnp.float32)
    return _depthwise_ffi(x, kernel, b, int(stride), bool(relu6))
  if impl == 'xla':
    y = depthwise_conv_xla(x, kernel, stride)
  elif impl == 'tflite':
    y = depthwise_conv_rings(x, kernel, stride)
  else:  # 'shift', and 'ffi' on other dtypes
    y = depthwise_conv_shift(x, kernel, stride)
  return _bias_act(y, bias, relu6)
