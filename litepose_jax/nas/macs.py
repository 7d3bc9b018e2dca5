"""Closed-form MACs of a subnet (the published and the true convention of `model_info`), vectorised.

`space.Subnet.macs` counts by tracing the standalone model (`model_info.count`): exact, but a fraction of a
second per architecture. The search's rejection loops (random init, mutation and crossover retried until
feasible, nas spec §4) draw thousands of candidates near a tight budget, so they use this formula: the same
per-layer terms written out for the LitePose layout (stem, 34 inverted bottlenecks with hidden = 6·in,
three fusion deconvs, four SepConv heads). tests/nas check it against `model_info.count`.

Published convention (ptflops ≤ 0.6.8, spec §4): every conv k²·Cin/groups·Cout·H'W'; each k=4 stride-2
transposed conv at its OUTPUT resolution (4× its real cost); BatchNorm 2·numel; ReLU/ReLU6 numel; residual
adds not counted. True convention: convolutions only, transposed convs at their input resolution.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from litepose_jax.nas import space


def macs_from_widths(img_size, stem, deconv, stages, num_keypoints: int = 14
                     ) -> Tuple[np.ndarray, np.ndarray]:
  """(published, true) MACs for one image; every width may be an int array (broadcast).

  Args:
    img_size: I (a multiple of 32).
    stem: C0; deconv: (f0, f1, f2); stages: (c1, c2, c3, c4) (ints or equally shaped int arrays).
    num_keypoints: K.
  Returns:
    (macs_published, macs_true) as int64 arrays (0-d for scalar input).
  """
  i = np.asarray(img_size, np.int64)
  px = {s: (i // s) ** 2 for s in (2, 4, 8, 16)}          # pixels of a map at stride s
  k = int(num_keypoints)
  conv = np.zeros_like(i)      # conv + depthwise MACs (both conventions)
  extra = np.zeros_like(i)     # published only: BN (2·numel) and activations (numel)

  def conv_bn(p_out, cin_per_group, cout, kernel, act=True):
    nonlocal conv, extra
    conv = conv + p_out * cout * cin_per_group * kernel ** 2
    extra = extra + p_out * cout * (3 if act else 2)

  c0 = np.asarray(stem, np.int64)
  conv_bn(px[2], 3, space.STEM_FIXED, 3)                       # stem 3x3 s2
  conv_bn(px[2], 1, space.STEM_FIXED, 3)                       # stem 3x3 depthwise
  conv_bn(px[2], space.STEM_FIXED, c0, 1, act=False)           # stem 1x1 projection
  cin, p_in = c0, px[2]
  feats = {0: (c0, px[2])}
  strides = {1: 4, 2: 8, 3: 16, 4: 16}
  for s, (depth, width) in enumerate(zip(space.DEPTHS, stages), start=1):
    c = np.asarray(width, np.int64)
    for b in range(depth):
      p_out = px[strides[s]] if b == 0 else p_in
      hidden = space.EXPANSION * cin
      conv_bn(p_in, cin, hidden, 1)                            # expand
      conv_bn(p_out, 1, hidden, space.KERNEL)                  # depthwise (stride on block 0)
      conv_bn(p_out, hidden, c, 1, act=False)                  # project
      cin, p_in = c, p_out
    feats[s] = (c, p_in)
  f = [np.asarray(x, np.int64) for x in deconv]
  deconv_true = np.zeros_like(i)
  refined = feats[4]
  for level, raw_level in enumerate((3, 2, 1)):
    for cin_, p_in_ in (refined, feats[raw_level]):
      deconv_true = deconv_true + p_in_ * cin_ * f[level] * 16
    p_out = refined[1] * 4
    extra = extra + 3 * p_out * f[level]                       # shared BN + ReLU after the sum
    refined = (f[level], p_out)
  # SepConv heads: 5x5 depthwise + BN + ReLU, then a 1x1 to 2K (quarter) or K (half) outputs.
  for cin_, p, cout in ((f[1], px[4], 2 * k), (feats[1][0], px[4], 2 * k), (f[2], px[2], k),
                        (c0, px[2], k)):
    conv_bn(p, 1, cin_, 5)
    conv = conv + p * cout * cin_
  return conv + 4 * deconv_true + extra, conv + deconv_true


def subnet_macs(subnet: space.Subnet, num_keypoints: int = 14) -> Tuple[int, int]:
  """(published, true) MACs of one subnet at its img_size."""
  pub, true = macs_from_widths(subnet.img_size, subnet.stem, subnet.deconv, subnet.stages, num_keypoints)
  return int(pub), int(true)


def choice_table_macs(choices: np.ndarray, num_keypoints: int = 14) -> np.ndarray:
  """Published MACs of many subnets given as choice-index rows [N, 9] (GENES order) → int64 [N]."""
  choices = np.asarray(choices)
  vals = [np.asarray(space.CHOICES[g])[choices[:, j]] for j, g in enumerate(space.GENES)]
  return macs_from_widths(vals[0], vals[1], vals[2:5], vals[5:9], num_keypoints)[0]
