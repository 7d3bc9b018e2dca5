"""The LitePose network (spec a.2): MobileNetV2-style backbone with 7x7 depthwise blocks and the Fusion
Deconv Head, NHWC.

Shapes (B batch, H×W input, K joints):
  input                  [B, H, W, 3]   (ImageNet-normalised RGB)
  S0 stem                [B, H/2, W/2, C0]
  S1..S4 stages          [B, H/4, ., c1], [B, H/8, ., c2], [B, H/16, ., c3], [B, H/16, ., c4]
  out_quarter            [B, H/4, W/4, 2K]  channels 0..K-1 heatmaps, K..2K-1 associative-embedding tags
  out_half               [B, H/2, W/2, K]   heatmaps

Parameter paths are stable and documented (the converter maps the authors' names onto them):
  stem_conv, stem_dw, stem_proj                      (each ConvBN: conv/kernel, bn/{scale,bias})
  stage{s}_block{b} / {expand, depthwise, project}   s = 1..4, b = 0..n_s−1
  deconv_refined{i}, deconv_raw{i}, deconv_bn{i}     i = 0..2
  final_refined{j}, final_raw{j} / {depthwise, pointwise}   j = 0..1
"""

from __future__ import annotations

import functools
from typing import Any, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from litepose_jax.models.arch import Arch
from litepose_jax.models.layers import BatchNorm, ConvBN, Deconv, InvBottleneck, SepConv, deconv_2x_sum


class LitePose(nn.Module):
  """LitePose for one architecture and keypoint count.

  Attributes:
    arch: the architecture (see `arch.py`).
    num_keypoints: K (14 CrowdPose, 17 COCO).
    dtype: compute dtype (jnp.bfloat16 for mixed precision); parameters and BN statistics stay float32
      and outputs are returned in float32.
    depthwise_impl: 'auto' | 'xla' | 'shift' | 'tflite' | 'ffi' (see `depthwise.py`): the CPU-fast forms of the
      depthwise conv, the 1x1 conv gradient and the transposed conv ('shift'), XLA's native ops ('xla':
      GPU/TPU, and export for LiteRT's builtin kernels), or native ops laid out for XNNPACK ('tflite':
      export; 7x7 depthwise kernels as pieces of ≤ 25 taps, 1x1 convs as convolutions).
    final_init_scale: scales the initial weights of the four output 1x1 convs (1.0 = PyTorch's default
      init, as the authors). With the default a fresh network outputs maps of magnitude ~0.5 against
      targets that are 0 almost everywhere, and the first ~150 steps only shrink them; a small scale
      (0.01) starts near zero. Initialisation only: it changes no computation.
    bn_group_size: train-mode BatchNorm statistics over groups of this many consecutive images (per-GPU
      BN as the authors trained; `layers.BatchNorm.group_size`); 0: the whole batch.
    deconv_form: the head's transposed convs: 'auto' (by depthwise_impl) or 'window' (`layers.deconv_2x_sum`:
      the TFLite export option `--deconv=window`).
  """
  arch: Arch
  num_keypoints: int
  dtype: Any = jnp.float32
  depthwise_impl: str = 'auto'
  final_init_scale: float = 1.0
  bn_group_size: int = 0
  deconv_form: str = 'auto'

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False, return_features: bool = False):
    """Runs the network.

    Args:
      images: [B, H, W, 3], H and W divisible by 16 (32 where a stride-2 map must stay even).
      train: batch-statistics BatchNorm (and running-stat updates with mutable=['batch_stats']).
      return_features: also return the stem and stage features (for parity tests).
    Returns:
      (out_quarter [B,H/4,W/4,2K], out_half [B,H/2,W/2,K]), plus a dict of features if requested.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f'expected images [B,H,W,3], got shape {images.shape}')
    if images.shape[1] % 16 or images.shape[2] % 16:
      raise ValueError(f'image height and width must be divisible by 16, got {images.shape[1:3]}')
    a, k = self.arch, self.num_keypoints
    g = int(self.bn_group_size)
    conv_bn = functools.partial(ConvBN, impl=self.depthwise_impl, dtype=self.dtype, bn_group_size=g)
    x = images.astype(self.dtype)

    # Stem: 3x3 s2 conv → 3x3 depthwise → linear 1x1.
    x = conv_bn(32, 3, 2, name='stem_conv')(x, train)
    x = conv_bn(32, 3, 1, depthwise=True, name='stem_dw')(x, train)
    x = conv_bn(a.stem_channels, 1, act=None, name='stem_proj')(x, train)
    feats = [x]

    for s, stage in enumerate(a.stages, start=1):
      for b, (t, ks) in enumerate(stage.blocks):
        x = InvBottleneck(stage.channels, stage.stride if b == 0 else 1, t, ks, self.depthwise_impl,
                          self.dtype, g, name=f'stage{s}_block{b}')(x, train)
      feats.append(x)
    s0, s1, s2, s3, s4 = feats

    # Fusion Deconv Head: at each level, a transposed conv of the previous head feature ("refined") and
    # one of a backbone feature ("raw") are summed, then one shared BN + ReLU (the code sums; the paper's
    # figure says concatenate).
    def fuse(i, refined_in, raw_in):
      f = a.deconv_channels[i]
      kernels = (Deconv(f, self.dtype, name=f'deconv_refined{i}')(refined_in),
                 Deconv(f, self.dtype, name=f'deconv_raw{i}')(raw_in))
      xs = (refined_in.astype(self.dtype), raw_in.astype(self.dtype))
      y = deconv_2x_sum(xs, kernels, self.depthwise_impl, self.deconv_form)
      return jax.nn.relu(BatchNorm(dtype=self.dtype, group_size=g, name=f'deconv_bn{i}')(y, train))

    sep = functools.partial(SepConv, impl=self.depthwise_impl, dtype=self.dtype,
                            init_scale=self.final_init_scale, bn_group_size=g)
    r0 = fuse(0, s4, s3)                                                        # 1/8
    r1 = fuse(1, r0, s2)                                                        # 1/4
    out_quarter = sep(2 * k, name='final_refined0')(r1, train) + sep(2 * k, name='final_raw0')(s1, train)
    r2 = fuse(2, r1, s1)                                                        # 1/2
    out_half = sep(k, name='final_refined1')(r2, train) + sep(k, name='final_raw1')(s0, train)

    outs = (out_quarter.astype(jnp.float32), out_half.astype(jnp.float32))
    if return_features:
      names = ('stem', 'stage1', 'stage2', 'stage3', 'stage4')
      return outs, {n: f.astype(jnp.float32) for n, f in zip(names, feats)}
    return outs
