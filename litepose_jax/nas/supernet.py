"""The LitePose supernet (nas spec §2): one network at maximum widths, the subnet chosen by channel masks.

The authors run a subnet by slicing the leading channels of every supernet tensor ("first-k"). Here the
network always runs at maximum width and a 0/1 mask zeroes every inactive channel right after its
BatchNorm (BatchNorm's `mask`: scale and bias multiplied by the mask, so the output is exactly 0 there).
Then every inactive input channel of the next layer is 0 and contributes nothing, which is the slice on
the input axis; the masked output channels are the slice on the output axis. Batch statistics are per
channel, so the active channels see exactly the sliced statistics, and the running statistics of masked
channels are kept (jnp.where in BatchNorm). Gradients of inactive weights are exactly 0.

The masks are arrays, one per width gene (`subnet_masks`), so a jitted function of (variables, masks,
images) compiles once per input shape and runs every subnet. Derived masks:
  hidden width of a block = 6·in: mask = repeat(in_mask, 6) (j < 6k ⇔ j//6 < k for a first-k mask);
  transposed convs: input masked by the feeding feature's mask, output by the level's deconv mask;
  final SepConvs: the 5x5 depthwise channels masked by its input's mask; the 2K / K outputs never.
Parameter paths and shapes are those of `models.LitePose` for the largest architecture (`space.LARGEST`),
so the fixed-model converter and `extract` (slicing) apply unchanged.

Shapes: images [B, H, W, 3] (H, W divisible by 16) → (out_quarter [B, H/4, W/4, 2K], out_half
[B, H/2, W/2, K]), channels [0, K) heatmaps, [K, 2K) tags, as the fixed model.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from litepose_jax.models import layers
from litepose_jax.models.layers import BatchNorm, Conv, ConvBN, Deconv, deconv_2x_sum
from litepose_jax.nas import space

Masks = Mapping[str, jax.Array]   # width gene → [max width] float32 0/1 (see `subnet_masks`)


def subnet_masks(subnet: space.Subnet) -> Dict[str, np.ndarray]:
  """{width gene: [max width] float32}, 1 on the leading `width` channels, 0 after.

  Genes: 'stem' [24], 'deconv0..2' [64, 48, 32], 'stage1..4' [32, 64, 96, 160].
  """
  return {g: (np.arange(space.MAX_WIDTHS[g]) < w).astype(np.float32) for g, w in subnet.widths().items()}


class MaskedInvBottleneck(nn.Module):
  """Inverted bottleneck at maximum width with channel masks (models.layers.InvBottleneck + masks).

  x [B,H,W,Cin] (channels outside in_mask are 0) → [B,H/stride,W/stride,features] (0 outside out_mask).
  The residual is added iff stride 1 and Cin == features at maximum width (nas spec §1: in this space
  that is every block but a stage's first, for every subnet).
  """
  features: int
  stride: int = 1
  kernel_size: int = space.KERNEL
  impl: str = 'auto'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, in_mask: jax.Array, out_mask: jax.Array) -> jax.Array:
    cin = x.shape[-1]
    hidden_mask = jnp.repeat(in_mask, space.EXPANSION)
    conv_bn = functools.partial(ConvBN, impl=self.impl, dtype=self.dtype)
    hidden = space.EXPANSION * cin
    if layers.fused_block_applies(self, x, hidden, train):
      y = layers.expand_depthwise_fused(self, x, hidden_mask)
    else:
      y = conv_bn(hidden, 1, name='expand')(x, train, hidden_mask)
      y = conv_bn(hidden, self.kernel_size, self.stride, depthwise=True, name='depthwise')(y, train, hidden_mask)
    y = conv_bn(self.features, 1, act=None, name='project')(y, train, out_mask)
    if self.stride == 1 and cin == self.features:
      y = y + x
    return y


class MaskedSepConv(nn.Module):
  """Final prediction layer with its depthwise channels masked (models.layers.SepConv + mask).

  x [B,H,W,C] (0 outside mask) → [B,H,W,features]; the output channels are never masked.
  """
  features: int
  kernel_size: int = 5
  impl: str = 'auto'
  dtype: Any = jnp.float32
  init_scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, mask: jax.Array) -> jax.Array:
    y = ConvBN(x.shape[-1], self.kernel_size, depthwise=True, act=jax.nn.relu, impl=self.impl,
               dtype=self.dtype, name='depthwise')(x, train, mask)
    return Conv(self.features, 1, dtype=self.dtype, impl=self.impl, init_scale=self.init_scale,
                name='pointwise')(y)


class Supernet(nn.Module):
  """The supernet at maximum widths (space.LARGEST, depth 6/8/10/10); the subnet comes from `masks`.

  Attributes:
    num_keypoints: K.
    dtype: compute dtype; parameters and BN statistics stay float32, outputs are float32.
    depthwise_impl: 'auto' | 'xla' | 'shift' | 'tflite' as `models.create` ('auto': the CPU 'shift' forms
      on CPU, native ops elsewhere).
    final_init_scale: as `models.LitePose` (initialisation only).
  """
  num_keypoints: int
  dtype: Any = jnp.float32
  depthwise_impl: str = 'auto'
  final_init_scale: float = 1.0

  @nn.compact
  def __call__(self, images: jax.Array, masks: Masks, train: bool = False):
    """images [B,H,W,3], masks from `subnet_masks` → (out_quarter [B,H/4,W/4,2K], out_half [B,H/2,W/2,K]).

    With train=True and mutable=['batch_stats'] the running statistics of the active channels are updated.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f'expected images [B,H,W,3], got shape {images.shape}')
    if images.shape[1] % 16 or images.shape[2] % 16:
      raise ValueError(f'image height and width must be divisible by 16, got {images.shape[1:3]}')
    for g, w in space.MAX_WIDTHS.items():
      if tuple(masks[g].shape) != (w,):
        raise ValueError(f'mask {g!r} must have shape ({w},), got {tuple(masks[g].shape)}')
    masks = {g: jnp.asarray(masks[g], jnp.float32) for g in space.MAX_WIDTHS}
    k, impl = self.num_keypoints, self.depthwise_impl
    conv_bn = functools.partial(ConvBN, impl=impl, dtype=self.dtype)
    x = images.astype(self.dtype)

    # Fixed stem (32 channels), then the elastic 1x1 to C0.
    x = conv_bn(space.STEM_FIXED, 3, 2, name='stem_conv')(x, train)
    x = conv_bn(space.STEM_FIXED, 3, 1, depthwise=True, name='stem_dw')(x, train)
    x = conv_bn(space.MAX_STEM, 1, act=None, name='stem_proj')(x, train, masks['stem'])
    feats, in_mask = [x], masks['stem']
    for s in range(4):
      out_mask = masks[f'stage{s + 1}']
      for b in range(space.DEPTHS[s]):
        x = MaskedInvBottleneck(space.MAX_STAGES[s], space.STRIDES[s] if b == 0 else 1, impl=impl,
                                dtype=self.dtype, name=f'stage{s + 1}_block{b}')(
                                    x, train, in_mask if b == 0 else out_mask, out_mask)
      feats.append(x)
      in_mask = out_mask
    s0, s1, s2, s3, s4 = feats

    def fuse(i, refined_in, raw_in):
      f = space.MAX_DECONV[i]
      kernels = (Deconv(f, self.dtype, name=f'deconv_refined{i}')(refined_in),
                 Deconv(f, self.dtype, name=f'deconv_raw{i}')(raw_in))
      y = deconv_2x_sum((refined_in, raw_in), kernels, impl)
      return jax.nn.relu(BatchNorm(dtype=self.dtype, name=f'deconv_bn{i}')(y, train, masks[f'deconv{i}']))

    sep = functools.partial(MaskedSepConv, impl=impl, dtype=self.dtype, init_scale=self.final_init_scale)
    r0 = fuse(0, s4, s3)
    r1 = fuse(1, r0, s2)
    out_quarter = (sep(2 * k, name='final_refined0')(r1, train, masks['deconv1'])
                   + sep(2 * k, name='final_raw0')(s1, train, masks['stage1']))
    r2 = fuse(2, r1, s1)
    out_half = (sep(k, name='final_refined1')(r2, train, masks['deconv2'])
                + sep(k, name='final_raw1')(s0, train, masks['stem']))
    return out_quarter.astype(jnp.float32), out_half.astype(jnp.float32)
