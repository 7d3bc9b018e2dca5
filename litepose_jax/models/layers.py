"""LitePose building blocks (spec a.1), Flax linen, NHWC.

Every convolution has no bias. Weights are stored in Flax layouts (HWIO; depthwise [k,k,C]; transposed
conv [4,4,in,out] in PyTorch's orientation, see `Deconv`) and initialised as PyTorch does by default
(kaiming-uniform a=√5, i.e. U(±1/√fan_in)), so a model trained from scratch here starts where the authors'
did.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from litepose_jax.models import cpu_kernels
from litepose_jax.models import depthwise
from litepose_jax.models import narrow_conv
from litepose_jax.models.arch import make_divisible

Dtype = Any


def torch_uniform_init(fan_in: int, scale: float = 1.0) -> Callable:
  """PyTorch's default conv init: U(−1/√fan_in, 1/√fan_in), optionally scaled by `scale`."""
  bound = scale / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def param(module: nn.Module, name: str, init: Callable, shape: Tuple[int, ...]) -> jax.Array:
  """`module.param(name, init, shape, float32)` without Flax's re-run of `init` at every apply.

  To check the stored shape, Flax traces the initialiser (here PyTorch's uniform init, i.e. the threefry
  generator) under `eval_shape` at every apply: 343 times per trace of the XS network, ~0.5 s of each
  train-step compile. The stored shape is compared directly instead.
  """
  if module.has_variable('params', name):
    value = module.get_variable('params', name)
    if tuple(value.shape) != tuple(shape):
      raise ValueError(f'parameter {module.scope.path_text}/{name} has shape {tuple(value.shape)}, '
                       f'the layer needs {tuple(shape)}')
    return value
  return module.param(name, init, shape, jnp.float32)


class BatchNorm(nn.Module):
  """BatchNorm equal to PyTorch's BatchNorm2d in both modes.

  Train mode normalises with the biased batch variance but updates the running variance with the
  unbiased one (n/(n−1)), momentum 0.1 in PyTorch terms; eval mode uses the running statistics. Statistics
  are computed in float32 whatever the compute dtype. Under `jit` with a batch-sharded input the batch
  mean is a global reduction, i.e. this acts as synchronised BN across devices.

  Attributes:
    epsilon: added to the variance (PyTorch default 1e-5).
    momentum: PyTorch convention: running = (1 − momentum)·running + momentum·batch.
    dtype: output dtype (None: the input's).
    group_size: train-mode statistics over groups of G consecutive images of the batch, as per-GPU BN
      with G images per GPU (the authors: PyTorch DDP, SYNC_BN False, 16 images per GPU); 0 or the batch
      size: the whole batch. The batch must split into whole groups. Running statistics: the momentum
      update with the mean over groups of each group's mean and unbiased (n = G·H·W) variance. PyTorch DDP
      itself (broadcast_buffers=True, the default) keeps rank 0's buffers, i.e. the first group's; the
      mean over groups has the same expectation and less noise (docs/accelerators.md, "Per-device BN").
  """
  epsilon: float = 1e-5
  momentum: float = 0.1
  dtype: Optional[Dtype] = None
  group_size: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, mask: Optional[jax.Array] = None) -> jax.Array:
    """x [..., C] → [..., C].

    mask [C] (optional, 0/1; the supernet's channel masks, see litepose_jax/nas): channels where it is 0
    output exactly 0 (scale and bias are multiplied by it) and keep their running statistics in train
    mode; the other channels are computed as without a mask (statistics are per channel).
    """
    c = x.shape[-1]
    scale = param(self, 'scale', nn.initializers.ones, (c,))
    bias = param(self, 'bias', nn.initializers.zeros, (c,))
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((c,), jnp.float32))
    dtype = self.dtype or x.dtype
    if mask is not None:
      scale, bias = scale * mask, bias * mask
    if train:
      g = int(self.group_size)
      if g and g != x.shape[0]:
        if x.shape[0] % g:
          raise ValueError(f'BatchNorm group size {g} does not divide the batch of {x.shape[0]} images')
        y, mean, var = _batch_norm_train_grouped(x, scale, bias, self.epsilon, dtype, g)
        n = math.prod(x.shape[1:-1]) * g
      else:
        y, mean, var = _batch_norm_train(x, scale, bias, self.epsilon, dtype)
        n = math.prod(x.shape[:-1])
      if not self.is_initializing():
        unbiased = var * (n / max(n - 1, 1))
        if mean.ndim == 2:   # per-group statistics [groups, C]: their mean (see group_size)
          mean, unbiased = jnp.mean(mean, 0), jnp.mean(unbiased, 0)
        new_mean = (1 - self.momentum) * ra_mean.value + self.momentum * mean
        new_var = (1 - self.momentum) * ra_var.value + self.momentum * unbiased
        if mask is not None:
          new_mean = jnp.where(mask > 0, new_mean, ra_mean.value)
          new_var = jnp.where(mask > 0, new_var, ra_var.value)
        ra_mean.value, ra_var.value = new_mean, new_var
      return y
    a, b = _affine(scale, bias, ra_mean.value, ra_var.value, self.epsilon)
    return (x.astype(jnp.float32) * a + b).astype(dtype)

  def folded(self) -> Tuple[jax.Array, jax.Array]:
    """Eval-mode (a, b) [C] from the running statistics, bn(x) = x·a + b, without applying the layer.

    Only on a bound module whose variables exist (apply, not init): a parent folds them into the conv
    before this BatchNorm (ConvBN, 'tflite' form).
    """
    return _affine(self.get_variable('params', 'scale'), self.get_variable('params', 'bias'),
                   self.get_variable('batch_stats', 'mean'), self.get_variable('batch_stats', 'var'),
                   self.epsilon)


@functools.partial(jax.jit, static_argnames=('epsilon', 'dtype'))
def _batch_norm_train(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float, dtype):
  """Train-mode BatchNorm: x [..., C] → (y in `dtype`, batch mean [C], biased batch variance [C]).

  Jitted so that a network's identical layers trace it once per shape (see depthwise.py).
  """
  xf = x.astype(jnp.float32)
  axes = tuple(range(x.ndim - 1))
  mean = jnp.mean(xf, axes)
  var = jnp.mean(jnp.square(xf - mean), axes)
  a, b = _affine(scale, bias, mean, var, epsilon)
  return (xf * a + b).astype(dtype), mean, var


@functools.partial(jax.jit, static_argnames=('epsilon', 'dtype', 'group_size'))
def _batch_norm_train_grouped(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float, dtype,
                              group_size: int):
  """Train-mode BatchNorm over groups of `group_size` consecutive images: x [B, ..., C] → (y, mean
  [B/G, C], biased variance [B/G, C]); each group is normalised with its own statistics."""
  b = x.shape[0]
  xf = x.astype(jnp.float32).reshape((b // group_size, group_size) + x.shape[1:])
  axes = tuple(range(1, xf.ndim - 1))
  mean = jnp.mean(xf, axes)
  var = jnp.mean(jnp.square(xf - jnp.expand_dims(mean, axes)), axes)
  a, c = _affine(scale, bias, mean, var, epsilon)
  a, c = jnp.expand_dims(a, axes), jnp.expand_dims(c, axes)
  return (xf * a + c).astype(dtype).reshape(x.shape), mean, var


def _affine(scale, bias, mean, var, epsilon: float) -> Tuple[jax.Array, jax.Array]:
  """BatchNorm as one multiply-add per element: y = x·a + b."""
  a = scale * lax.rsqrt(var + epsilon)
  return a, bias - mean * a


@jax.custom_vjp
def pointwise_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """1x1 convolution as a matmul over channels: x [B,H,W,Cin], kernel [Cin,Cout] → [B,H,W,Cout].

  XLA:CPU runs the dot faster than the equivalent conv. The custom VJP fixes the layout of the kernel
  gradient Σ_n x[n,:]ᵀ·g[n,:]: left to itself, XLA fuses a transposed copy of the (wide) cotangent into
  the backward of the BN/activation that produces it, and that strided write was the most expensive op
  of the train step. Here the operand with fewer channels is transposed instead, and g is read as is.
  With few input channels the inference forward is a broadcast sum instead of a dot (`narrow_conv`);
  the VJP's forward rule (training) keeps the dot.
  """
  if narrow_conv.use_broadcast_sum(*kernel.shape):
    return narrow_conv.broadcast_matmul(x, kernel)
  return jnp.einsum('bhwc,cd->bhwd', x, kernel)


def _pointwise_fwd(x, kernel):
  return jnp.einsum('bhwc,cd->bhwd', x, kernel), (x, kernel)


def _pointwise_bwd(res, g):
  x, kernel = res
  dx = jnp.einsum('bhwd,cd->bhwc', g, kernel)
  cin, cout = kernel.shape
  x2, g2 = x.reshape(-1, cin), g.reshape(-1, cout)
  # The barrier materialises the transpose (XLA would otherwise fold it back into the dot).
  if cin <= cout:
    dk = lax.optimization_barrier(x2.T) @ g2
  else:
    dk = (lax.optimization_barrier(g2.T) @ x2).T
  return dx, dk.astype(kernel.dtype)


pointwise_conv.defvjp(_pointwise_fwd, _pointwise_bwd)


class Conv(nn.Module):
  """Dense k×k convolution, no bias, symmetric padding k//2, PyTorch init. [B,H,W,Cin] → [B,H',W',Cout].

  Attributes:
    impl: 'auto' | 'xla' | 'shift' | 'tflite' (the depthwise switch). A 1x1 conv is a channel matmul;
      'shift' (CPU) adds the custom VJP of `pointwise_conv`, whose forced transposes (optimisation
      barriers) only pay off on XLA:CPU, and 'xla' leaves the gradient layout to the compiler. 'tflite'
      (export) writes it as a 1x1 convolution: the converter makes that CONV_2D, XNNPACK's fast path,
      where the matmul becomes FULLY_CONNECTED between reshapes (XS: 41 → 37 ms). With 'shift', convs
      with few input channels (the stem, narrow 1x1 convs) compute their forward as broadcast sums
      (`narrow_conv`).
  """
  features: int
  kernel_size: int = 1
  stride: int = 1
  dtype: Dtype = jnp.float32
  impl: str = 'auto'
  init_scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, cin = self.kernel_size, x.shape[-1]
    kernel = param(self, 'kernel', torch_uniform_init(cin * k * k, self.init_scale),
                   (k, k, cin, self.features))
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    impl = depthwise.resolve_layer_impl(self.impl)
    if k == 1 and self.stride == 1:
      if impl == 'shift':
        return pointwise_conv(x, kernel[0, 0])
      if impl == 'xla':
        return jnp.einsum('bhwc,cd->bhwd', x, kernel[0, 0])
      # 'tflite': falls through to the 1x1 convolution below.
    if impl == 'shift' and narrow_conv.use_shifted_conv(cin, k):
      return narrow_conv.conv_broadcast(x, kernel, self.stride)
    return narrow_conv.native_conv(x, kernel, self.stride)


class DepthwiseConv(nn.Module):
  """Depthwise k×k convolution (groups = channels), no bias. [B,H,W,C] → [B,H',W',C].

  Attributes:
    kernel_size, stride: as PyTorch; padding is k//2 on both sides.
    impl: 'auto' | 'xla' | 'shift' | 'tflite', see `depthwise.py`.
  """
  kernel_size: int
  stride: int = 1
  impl: str = 'auto'
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, out_scale: Optional[jax.Array] = None, bias: Optional[jax.Array] = None,
               relu6: bool = False) -> jax.Array:
    """out_scale [C] (optional) multiplies the kernel, i.e. the output channels; bias [C] and relu6 are
    applied after the conv (inside the 'ffi' kernel)."""
    k, c = self.kernel_size, x.shape[-1]
    kernel = param(self, 'kernel', torch_uniform_init(k * k), (k, k, c))
    if out_scale is not None:
      kernel = kernel * out_scale
    return depthwise.depthwise_conv(x.astype(self.dtype), kernel.astype(self.dtype), self.stride,
                                    self.impl, bias=bias, relu6=relu6)


class ConvBN(nn.Module):
  """Conv (dense or depthwise) → BN → optional activation (spec a.1 ConvBNReLU6 and the linear variants)."""
  features: int
  kernel_size: int = 1
  stride: int = 1
  depthwise: bool = False
  act: Optional[Callable[[jax.Array], jax.Array]] = jax.nn.relu6
  impl: str = 'auto'
  dtype: Dtype = jnp.float32
  bn_group_size: int = 0   # BatchNorm.group_size

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, mask: Optional[jax.Array] = None) -> jax.Array:
    """mask [features] (optional): passed to the BatchNorm; masked output channels are exactly 0."""
    bn = BatchNorm(dtype=self.dtype, group_size=self.bn_group_size, name='bn')
    if not self.depthwise:
      x = bn(Conv(self.features, self.kernel_size, self.stride, self.dtype, self.impl, name='conv')(x), train,
             mask)
    else:
      if self.features != x.shape[-1]:
        raise ValueError(f'depthwise conv keeps channels: {x.shape[-1]} → {self.features}')
      conv = DepthwiseConv(self.kernel_size, self.stride, self.impl, self.dtype, name='conv')
      impl = depthwise.resolve_impl(self.impl)
      if impl in ('tflite', 'ffi') and not train and not self.is_initializing():
        # Inference: the BatchNorm folded into the conv. 'tflite' (export for XNNPACK): the 7x7 conv is a
        # sum of convs, which the TFLite converter cannot fold a following BatchNorm into (it would stay
        # a MUL + ADD per layer). 'ffi': the C++ kernel adds the bias and applies ReLU6 before its store.
        a, b = bn.folded()
        if mask is not None:
          a, b = a * mask, b * mask
        if impl == 'ffi' and self.act is jax.nn.relu6:
          return conv(x, out_scale=a, bias=b, relu6=True)
        x = conv(x, out_scale=a, bias=b)
      else:
        x = bn(conv(x), train, mask)
    return self.act(x) if self.act is not None else x


class InvBottleneck(nn.Module):
  """MobileNetV2 block with a large depthwise kernel (spec a.1).

  1x1 expand (t·Cin, always present) → BN → ReLU6 → k×k depthwise (stride) → BN → ReLU6 → 1x1 project →
  BN; the input is added iff stride == 1 and Cin == Cout. [B,H,W,Cin] → [B,H/stride,W/stride,Cout].
  At inference with the C++ kernels ('ffi', float32) the expand and depthwise layers run as one fused
  call (`expand_depthwise_fused`) from the same variables.
  """
  features: int
  stride: int = 1
  expansion: int = 6
  kernel_size: int = 7
  impl: str = 'auto'
  dtype: Dtype = jnp.float32
  bn_group_size: int = 0   # BatchNorm.group_size

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    cin = x.shape[-1]
    hidden = make_divisible(round(cin * self.expansion))
    conv_bn = functools.partial(ConvBN, impl=self.impl, dtype=self.dtype, bn_group_size=self.bn_group_size)
    if fused_block_applies(self, x, hidden, train):
      y = expand_depthwise_fused(self, x)
    else:
      y = conv_bn(hidden, 1, name='expand')(x, train)
      y = conv_bn(hidden, self.kernel_size, self.stride, depthwise=True, name='depthwise')(y, train)
    y = conv_bn(self.features, 1, act=None, name='project')(y, train)
    if self.stride == 1 and cin == self.features:
      y = y + x
    return y


def fused_block_applies(block: nn.Module, x: jax.Array, hidden: int, train: bool) -> bool:
  """True where an inverted-residual block (attributes impl, dtype, kernel_size, stride) runs its expand +
  depthwise as one C++ call: inference with the C++ kernels ('ffi'), float32, hidden channels a multiple
  of 8 (`expand_depthwise_fused`)."""
  return (not train and not block.is_initializing() and depthwise.resolve_impl(block.impl) == 'ffi'
          and x.dtype == jnp.float32 and jnp.dtype(block.dtype) == jnp.float32 and hidden % 8 == 0
          and block.kernel_size in (3, 5, 7) and block.stride in (1, 2))


def expand_depthwise_fused(block: nn.Module, x: jax.Array, mask: Optional[jax.Array] = None) -> jax.Array:
  """A block's 'expand' ConvBN + ReLU6 → 'depthwise' ConvBN + ReLU6 in one `cpu_kernels.expand_depthwise`
  call, from the block's variables (the BatchNorms folded inside the kernel). mask [hidden] (0/1): the
  BatchNorms' channel mask (masked channels are exactly 0, as `BatchNorm` with a mask)."""
  params, stats = block.variables['params'], block.variables['batch_stats']

  def bn(name):
    p, s = params[name]['bn'], stats[name]['bn']
    scale, bias = (p['scale'], p['bias']) if mask is None else (p['scale'] * mask, p['bias'] * mask)
    return scale, bias, s['mean'], s['var']

  expand_kernel = params['expand']['conv']['kernel']
  depthwise_kernel = params['depthwise']['conv']['kernel']
  if expand_kernel.shape[:3] != (1, 1, x.shape[-1]) or depthwise_kernel.shape[:2] != (block.kernel_size,) * 2:
    raise ValueError(f'{"/".join(block.path)}: expand kernel {expand_kernel.shape} / depthwise kernel '
                     f'{depthwise_kernel.shape} do not fit the block')
  return cpu_kernels.expand_depthwise(x, expand_kernel[0, 0], bn('expand'), depthwise_kernel, bn('depthwise'),
                                      block.stride, BatchNorm.epsilon)


class SepConv(nn.Module):
  """Final prediction layer (spec a.1): 5x5 depthwise → BN → ReLU → 1x1 linear conv (no bias, no BN).

  `init_scale` multiplies the PyTorch init of the 1x1 conv (see `LitePose.final_init_scale`).
  """
  features: int
  kernel_size: int = 5
  impl: str = 'auto'
  dtype: Dtype = jnp.float32
  init_scale: float = 1.0
  bn_group_size: int = 0   # BatchNorm.group_size

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    y = ConvBN(x.shape[-1], self.kernel_size, depthwise=True, act=jax.nn.relu, impl=self.impl,
               dtype=self.dtype, bn_group_size=self.bn_group_size, name='depthwise')(x, train)
    return Conv(self.features, 1, dtype=self.dtype, impl=self.impl, init_scale=self.init_scale,
                name='pointwise')(y)


# ConvTranspose2d(k=4, s=2, p=1) in sub-pixel form: output row 2m+r only sees input rows m+d for the
# (kernel row a, offset d) pairs below (d in {-1, 0, 1}), so each of the 4 output phases is a 3x3
# convolution with 4 of its 9 taps non-zero.
_DECONV_TAPS = {0: ((1, 0), (3, -1)), 1: ((0, 1), (2, 0))}


def _phase_selection() -> np.ndarray:
  """sel[a, b, 1+di, 1+dj, r, s] = 1 where kernel tap (a, b) feeds output phase (r, s) from x[m+di, n+dj]."""
  sel = np.zeros((4, 4, 3, 3, 2, 2), np.float32)
  for r in (0, 1):
    for s in (0, 1):
      for a, di in _DECONV_TAPS[r]:
        for b, dj in _DECONV_TAPS[s]:
          sel[a, b, 1 + di, 1 + dj, r, s] = 1.0
  return sel


_PHASE_SELECTION = _phase_selection()


def deconv_2x_xla(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """ConvTranspose2d(k4, s2, p1) as XLA's native transposed convolution (see `deconv_2x_sum`).

  A stride-1 convolution of the 2x-dilated input (lhs_dilation), padded by 2, with the spatially flipped
  kernel. GPUs/TPUs run it natively, and the TFLite converter maps it to its builtin TRANSPOSE_CONV
  without batch-dependent reshapes, so this is the form used off CPU and for export.
  """
  return lax.conv_general_dilated(x, kernel[::-1, ::-1], window_strides=(1, 1), padding=((2, 2), (2, 2)),
                                  lhs_dilation=(2, 2), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def deconv_window_kernel(kernel):
  """The 4x4 transposed-conv kernel [4, 4, Cin, Cout] rearranged for the 2x2 window form (`_deconv_2x_window`):
  [2 (t), 2 (t'), Cin, 2 (u), 2 (u'), Cout], window row t feeding output row u with kernel row a = 2(1-t) + u
  (columns alike). A reshape, flip and transpose: works on jax and NumPy arrays (the ONNX exporter)."""
  cin, cout = kernel.shape[2:]
  # kernel[a, b] with a = 2s + u, s = 1 - t: [s, u, s', u', C, O] flipped along s, s' → [t, t', C, u, u', O].
  return kernel.reshape(2, 2, 2, 2, cin, cout)[::-1, :, ::-1].transpose(0, 2, 4, 1, 3, 5)


def _deconv_2x_window(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """ConvTranspose2d(k4, s2, p1) as one 2x2 convolution to four output phases, fast on XLA:CPU.

  Written as a convolution of the dilated input, 3/4 of the multiplies hit inserted zeros, and XLA:CPU
  runs that convolution (and its gradients) slowly. Here the input is padded by 1 and every 2x2 window
  (rows p-1, p; columns q-1, q; p, q in 0..H, 0..W) produces the four outputs that read exactly those
  inputs: rows 2p-1 and 2p (kernel rows a = 2(1-t) + u for window row t and output row u), the same for
  columns. The [2, 2, Cin, 4·Cout] kernel is a reshape and flip of the 4x4 one; a depth-to-space then
  interleaves the phases into [2H+2, 2W+2] and the outer ring (rows -1 and 2H) is cropped. Every
  product is a needed one (the 3x3 phase conv multiplies 9/4 as many) and it is a single native conv.
  """
  b, h, w, cin = x.shape
  cout = kernel.shape[-1]
  window = deconv_window_kernel(kernel).reshape(2, 2, cin, 4 * cout)
  y = lax.conv_general_dilated(x, window, (1, 1), ((1, 1), (1, 1)), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  # [B, H+1, W+1, 2 (u), 2 (u'), Cout] → [B, H+1, 2, W+1, 2, Cout] = [B, 2H+2, 2W+2, Cout], cropped.
  y = y.reshape(b, h + 1, w + 1, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(b, 2 * h + 2, 2 * w + 2, cout)[:, 1:2 * h + 1, 1:2 * w + 1]


def deconv_2x_phases(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """ConvTranspose2d(k4, s2, p1) as one 3x3 convolution to the four output phases (`deconv_2x_window`'s VJP).

  Output pixel (2m+r, 2n+s) is a 3x3 stride-1 convolution of x around (m, n) into phase channel block
  (r, s), with the [3, 3, Cin, 4·Cout] kernel gathered from the 4x4 one by a constant 0/1 tensor (one
  small dot, differentiable as such); a depth-to-space then interleaves the phases. It multiplies 9/4
  times the needed products (the zero taps), but XLA:CPU differentiates it 4x faster than the 2x2
  window conv, and as a single native conv the XS train step compiles ~4 s faster than with four
  sub-pixel matmuls and their concatenations (6 deconvs; measured).
  """
  b, h, w, cin = x.shape
  cout = kernel.shape[-1]
  phase_kernel = jnp.einsum('abijrs,abco->ijcrso', jnp.asarray(_PHASE_SELECTION, kernel.dtype), kernel)
  y = lax.conv_general_dilated(x, phase_kernel.reshape(3, 3, cin, 4 * cout), (1, 1), ((1, 1), (1, 1)),
                               dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  # [B, H, W, 2 (r), 2 (s), Cout] → [B, H, 2 (r), W, 2 (s), Cout] = [B, 2H, 2W, Cout].
  return y.reshape(b, h, w, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, cout)


@jax.custom_vjp
def deconv_2x_window(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """ConvTranspose2d(k4, s2, p1) for XLA:CPU: the 2x2 window form forward, the 3x3 phase form's VJP.

  XLA:CPU runs the window conv's forward 2x faster than the phase conv, but its gradients (a 2x2
  kernel's) 4x slower; the two forms compute the same linear map, so the VJP is the phase form's.
  x: [B, H, W, Cin], kernel: [4, 4, Cin, Cout] → [B, 2H, 2W, Cout].
  """
  return _deconv_2x_window(x, kernel)


def _deconv_2x_window_fwd(x, kernel):
  return _deconv_2x_window(x, kernel), (x, kernel)


def _deconv_2x_window_bwd(res, g):
  return jax.vjp(deconv_2x_phases, *res)[1](g)


deconv_2x_window.defvjp(_deconv_2x_window_fwd, _deconv_2x_window_bwd)


def deconv_2x_sum(xs: Sequence[jax.Array], kernels: Sequence[jax.Array], impl: str = 'auto',
                  form: str = 'auto') -> jax.Array:
  """Σ_i ConvTranspose2d(k=4, stride=2, padding=1)(xs[i]) with weights kernels[i]: exactly 2x upsampling.

  y[2i−1+a, 2j−1+b, o] += Σ_c x[i, j, c]·W[a, b, c, o] for a, b ∈ {0..3}, summed over the inputs (the
  fusion head's "refined" + "raw" transposed convs; one input is a plain transposed conv). Follows the
  depthwise switch: 'shift' (CPU) → one `deconv_2x_window` over the inputs concatenated along channels
  with the kernels concatenated along Cin (the same products, one conv and no sum: fewer programs to
  compile, the inputs read in one pass); 'xla' / 'tflite' (GPU/TPU, export) → `deconv_2x_xla` per input,
  summed. Equal results.

  Args:
    xs: inputs [B, H, W, Cin_i].
    kernels: [4, 4, Cin_i, Cout], PyTorch's (Cin, Cout, 4, 4) weights transposed (not flipped).
    impl: 'auto' | 'xla' | 'shift' | 'tflite' | 'ffi', resolved by `depthwise.resolve_layer_impl`.
    form: 'auto' (by impl, above) or 'window': `deconv_2x_window` whatever the impl (a TFLite export
      option: XNNPACK runs the window conv + depth-to-space 2.7x faster than TRANSPOSE_CONV, but the
      reshapes fix the file's input shape).
  Returns:
    [B, 2H, 2W, Cout].
  """
  if form not in ('auto', 'window'):
    raise ValueError(f"deconv form must be 'auto' or 'window', got {form!r}")
  if form == 'auto' and depthwise.resolve_layer_impl(impl) != 'shift':
    out = deconv_2x_xla(xs[0], kernels[0])
    for x, kernel in zip(xs[1:], kernels[1:]):
      out = out + deconv_2x_xla(x, kernel)
    return out
  return deconv_2x_window(jnp.concatenate(xs, axis=-1), jnp.concatenate(kernels, axis=2))


class Deconv(nn.Module):
  """The weights of a transposed conv k4 s2 p1 without bias; the head applies them with `deconv_2x_sum`.

  `Deconv(features)(x)` returns the [4, 4, Cin, features] kernel (compute dtype) for an input x
  [B, H, W, Cin]. PyTorch computes fan_in of a ConvTranspose2d weight (Cin, Cout, k, k) from dim 1, i.e.
  Cout·k·k; the default init follows that.
  """
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = param(self, 'kernel', torch_uniform_init(self.features * 16), (4, 4, x.shape[-1], self.features))
    return kernel.astype(self.dtype)
