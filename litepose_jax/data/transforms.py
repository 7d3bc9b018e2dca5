"""Image / mask / joint transforms of the training and evaluation inputs, as TF ops (spec d.1, e.1).

Each `get_*` factory returns a `features -> features` function over a dict of tensors; its docstring lists
the keys it reads, changes and adds. The same functions run eagerly (`targets.make_train_example`, the
parity tests) and inside tf.data (`pipeline.py`). Joint and matrix arithmetic is float64 like the authors'
NumPy code, so that the int() truncation of joint positions lands on the same pixels.

Legend: H, W image size; I input size; R output (heatmap) size; P persons; K joints.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import tensorflow as tf

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Features = dict
Op = Callable[[Features], Features]


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
  """Encoded JPEG / PNG / BMP / GIF bytes → [H,W,3] uint8 RGB.

  JPEGs use the accurate integer IDCT, which is bit-identical to OpenCV's imread (the authors' reader);
  TF's default fast IDCT differs from it by up to 14 grey levels on COCO images. Grayscale becomes RGB,
  alpha is dropped and 16-bit PNGs are scaled to 8 bits by the decoder.
  """
  image = tf.cond(
      tf.io.is_jpeg(encoded),
      lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method='INTEGER_ACCURATE'),
      lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False, dtype=tf.uint8))
  image.set_shape([None, None, 3])
  return image


def rle_from_mask(mask) -> "np.ndarray":
  """[H,W] NumPy mask (nonzero = inside) → column-major run lengths, the records' 'ignore_rle' format."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  flat = (np.asarray(mask) != 0).reshape(-1, order='F').astype(np.int8)
  if not flat.any():
    return np.zeros([0], np.int32)
  change = np.flatnonzero(np.diff(flat)) + 1
  bounds = np.concatenate([[0], change, [flat.size]])
  runs = np.diff(bounds)
  if flat[0]:
    runs = np.concatenate([[0], runs])  # RLE starts with a (here empty) run of zeros
  return runs.astype(np.int32)


def rle_lookup(counts: tf.Tensor, height: tf.Tensor, xs: tf.Tensor, ys: tf.Tensor) -> tf.Tensor:
  """Whether pixels (xs, ys) lie inside a region given as column-major run lengths.

  A binary search over the run ends: no H×W mask is ever built (decoding the RLE densely cost more than
  the whole rest of the mask targets).

  Args:
    counts: [C] run lengths (0-runs and 1-runs alternating, starting with 0s); C = 0: empty region.
    height: H (column-major index = x·H + y).
    xs: int32 x of in-image pixels, any shape.
    ys: int32 y, same shape.

  Returns:
    bool, the shape of xs.
  """
  ends = tf.cumsum(tf.cast(counts, tf.int64))
  index = tf.cast(xs, tf.int64) * tf.cast(height, tf.int64) + tf.cast(ys, tf.int64)
  run = tf.searchsorted(ends[None], tf.reshape(index, [1, -1]), side='right')
  return tf.reshape(run % 2 == 1, tf.shape(xs))


def crop_matrix(center: tf.Tensor, scale: tf.Tensor, res: int, rot_deg: tf.Tensor) -> tf.Tensor:
  """[2,3] float64 affine mapping image pixels to the R×R grid of a training crop (spec d.1).

  The square of side 200·scale centred at `center` fills the grid, rotated by `rot_deg` about the grid
  centre. Composed in the same order as the authors' `_get_affine_matrix` (and the rotation skipped when it
  is exactly 0) so that the float64 result matches theirs bit for bit.
  """
  center = tf.cast(center, tf.float64)
  scale = tf.cast(scale, tf.float64)
  rot_deg = tf.cast(rot_deg, tf.float64)
  r = tf.constant(float(res), tf.float64)
  h = 200.0 * scale
  zero, one = tf.constant(0.0, tf.float64), tf.constant(1.0, tf.float64)
  t = tf.stack([tf.stack([r / h, zero, r * (-center[0] / h + 0.5)]),
                tf.stack([zero, r / h, r * (-center[1] / h + 0.5)]),
                tf.stack([zero, zero, one])])
  rad = -rot_deg * math.pi / 180.0  # negated "to match direction of rotation from cropping"
  sn, cs = tf.sin(rad), tf.cos(rad)
  rot = tf.stack([tf.stack([cs, -sn, zero]), tf.stack([sn, cs, zero]), tf.stack([zero, zero, one])])
  shift = tf.constant([[1.0, 0.0, -res / 2], [0.0, 1.0, -res / 2], [0.0, 0.0, 1.0]], tf.float64)
  unshift = tf.constant([[1.0, 0.0, res / 2], [0.0, 1.0, res / 2], [0.0, 0.0, 1.0]], tf.float64)
  rotated = tf.matmul(unshift, tf.matmul(rot, tf.matmul(shift, t)))
  return tf.where(tf.equal(rot_deg, 0.0), t, rotated)[:2]


def apply_affine(points: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
  """[...,2] float64 points through a [2,3] affine."""
  return tf.einsum('...j,ij->...i', points, matrix[:, :2]) + matrix[:, 2]


def bilinear_taps(matrix: tf.Tensor, out_h, out_w, height, width, flip=False):
  """Source pixels and weights of cv2.warpAffine's bilinear sampling (zero border) for an output grid.

  Output pixel (x, y) samples the input at matrix⁻¹·(x, y); with `flip` the output columns are reversed
  (x → w−1−x), which is the authors' horizontal flip of the warped image without a second pass.

  Args:
    matrix: [2,3] affine from input to output pixel coordinates.
    out_h: output height h.
    out_w: output width w.
    height: input height H.
    width: input width W.
    flip: scalar bool.

  Returns:
    (xs, ys) [4,h·w] int32 clamped into the image and weights [4,h·w] float32 (0 for taps outside the
    image), taps ordered (x0,y0), (x0+1,y0), (x0,y0+1), (x0+1,y0+1).
  """
  m = tf.cast(matrix, tf.float64)
  inv = tf.linalg.inv(tf.concat([m, tf.constant([[0.0, 0.0, 1.0]], tf.float64)], 0))[:2]
  cols = tf.range(out_w)
  cols = tf.where(tf.cast(flip, tf.bool), out_w - 1 - cols, cols)
  xs = tf.cast(cols, tf.float64)[None, :]
  ys = tf.cast(tf.range(out_h), tf.float64)[:, None]
  # Source coordinates in float64: the identity crop of the parity fixtures then samples exact pixels.
  sx = tf.reshape(inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2], [-1])
  sy = tf.reshape(inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2], [-1])
  # Clip far-away coordinates before the int cast (undefined for huge values); they stay outside.
  x0 = tf.floor(tf.clip_by_value(sx, -2.0, tf.cast(width, tf.float64) + 1.0))
  y0 = tf.floor(tf.clip_by_value(sy, -2.0, tf.cast(height, tf.float64) + 1.0))
  fx = tf.cast(sx - x0, tf.float32)
  fy = tf.cast(sy - y0, tf.float32)
  x0 = tf.cast(x0, tf.int32)
  y0 = tf.cast(y0, tf.int32)
  tx = tf.stack([x0, x0 + 1, x0, x0 + 1])
  ty = tf.stack([y0, y0, y0 + 1, y0 + 1])
  weights = tf.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
  inside = (tx >= 0) & (tx < width) & (ty >= 0) & (ty < height)
  weights *= tf.cast(inside, tf.float32)
  return tf.clip_by_value(tx, 0, width - 1), tf.clip_by_value(ty, 0, height - 1), weights


def warp(image: tf.Tensor, matrix: tf.Tensor, out_hw: Sequence, flip=False) -> tf.Tensor:
  """cv2.warpAffine equivalent (bilinear, zero border), optionally followed by a left-right flip.

  One gather of the four taps and a weighted sum: about 8x faster on CPU than ImageProjectiveTransformV3,
  whose per-pixel generator dominated the training map.

  Args:
    image: [H,W,C] any real dtype.
    matrix: [2,3] affine from input to output pixel coordinates.
    out_hw: (h, w) of the output.
    flip: reverse the output columns.

  Returns:
    [h,w,C] float32, exact bilinear interpolation (OpenCV quantises weights to 1/32: ≤ 1 grey level apart).
  """
  shape = tf.shape(image)
  xs, ys, weights = bilinear_taps(matrix, out_hw[0], out_hw[1], shape[0], shape[1], flip)
  values = tf.gather(tf.reshape(image, [-1, shape[2]]), ys * shape[1] + xs)  # [4,h·w,C]
  out = tf.reduce_sum(tf.cast(values, tf.float32) * weights[..., None], axis=0)
  return tf.reshape(out, tf.stack([out_hw[0], out_hw[1], shape[2]]))


def warp_keep_mask(ignore_rle: tf.Tensor, height, width, matrix: tf.Tensor, res: int, flip=False):
  """The authors' mask target: (1 − ignore) warped to R×R (zero border), flipped, thresholded > 0.5.

  Args:
    ignore_rle: [C] column-major run lengths of the ignored pixels (records.py).
    height: image H.
    width: image W.
    matrix: [2,3] image → grid affine.
    res: R.
    flip: reverse the columns.

  Returns:
    [R,R] float32 in {0, 1}, 1 = use.
  """
  xs, ys, weights = bilinear_taps(matrix, res, res, height, width, flip)
  keep = 1.0 - tf.cast(rle_lookup(ignore_rle, height, xs, ys), tf.float32)
  value = tf.reduce_sum(weights * keep, axis=0)
  return tf.reshape(tf.cast(value > 0.5, tf.float32), [res, res])


def get_decode() -> Op:
  """Reads 'image_bytes'; adds 'image' [H,W,3] uint8 RGB; removes 'image_bytes'."""
  def op(features):
    features = dict(features)
    features['image'] = decode_image(features.pop('image_bytes'))
    return features
  return op


def get_affine_and_flip(input_size: int, output_sizes: Sequence[int], flip_index: Sequence[int]) -> Op:
  """The authors' RandomAffineTransform then RandomHorizontalFlip, with the draws in 'aug' (spec d.1).

  One op for both because the flip is folded into the resampling grid (no second pass over the outputs).
  Joints: affine in float64 per output grid, then (when flipping) channels permuted with `flip_index`
  and x → R_s − 1 − x, exactly as the authors.

  Reads 'image' [H,W,3], 'ignore_rle' [C], 'keypoints' [P,K,3],
    'aug' {'scale', 'rot' (degrees), 'dx', 'dy' (pixels), 'flip' (bool)}.
  Changes 'image' → [I,I,3] float32 grey levels, rounded like the authors' uint8 warp.
  Adds 'mask_s' [R_s,R_s] float32 {0,1} (1 = use) and 'keypoints_s' [P,K,3] float64 in grid s pixels.
  Removes 'ignore_rle', 'keypoints'.
  """
  flip_index = tf.constant(list(flip_index), tf.int32)

  def op(features):
    features = dict(features)
    aug = features['aug']
    flip = tf.cast(aug['flip'], tf.bool)
    image = features['image']
    shape = tf.shape(image)
    hw = tf.cast(shape[:2], tf.float64)
    scale = tf.minimum(hw[0], hw[1]) / 200.0 * tf.cast(aug['scale'], tf.float64)
    center = tf.stack([hw[1] / 2 + tf.cast(aug['dx'], tf.float64), hw[0] / 2 + tf.cast(aug['dy'], tf.float64)])
    ignore_rle = features.pop('ignore_rle')
    keypoints = tf.cast(features.pop('keypoints'), tf.float64)
    for s, res in enumerate(output_sizes):
      mat = crop_matrix(center, scale, res, aug['rot'])
      features[f'mask_{s}'] = warp_keep_mask(ignore_rle, shape[0], shape[1], mat, res, flip)
      kp = tf.concat([apply_affine(keypoints[..., :2], mat), keypoints[..., 2:]], axis=-1)
      flipped = tf.gather(kp, flip_index, axis=1)
      flipped = tf.concat([res - 1 - flipped[..., :1], flipped[..., 1:]], axis=-1)
      features[f'keypoints_{s}'] = tf.where(flip, flipped, kp)
    mat = crop_matrix(center, scale, input_size, aug['rot'])
    features['image'] = tf.clip_by_value(tf.round(warp(image, mat, (input_size, input_size), flip)), 0, 255)
    return features
  return op


def get_normalize() -> Op:
  """Reads 'image' in grey levels [0,255]; changes it to ImageNet-normalised float32 RGB (ToTensor+Normalize)."""
  mean = tf.constant(IMAGENET_MEAN, tf.float32)
  std = tf.constant(IMAGENET_STD, tf.float32)

  def op(features):
    features = dict(features)
    features['image'] = (tf.cast(features['image'], tf.float32) / 255.0 - mean) / std
    return features
  return op


def eval_geometry(height: tf.Tensor, width: tf.Tensor, input_size: int):
  """Network input size and back-projection parameters of one test image (spec e.1).

  The authors' get_multi_scale_size at scale 1: the short side becomes ceil64(I), the long side is rounded
  up to a multiple of 64.

  Args:
    height: image height H (scalar int).
    width: image width W (scalar int).
    input_size: I.

  Returns:
    (out_hw [2] int32 (h', w'), center [2] float64 (x, y) = (int(W/2+0.5), int(H/2+0.5)),
     scale [2] float64 (src_w/200, src_h/200), matrix [2,3] float64 image → input pixels).
  """
  h = tf.cast(height, tf.float64)
  w = tf.cast(width, tf.float64)
  i = float(input_size)
  short = tf.constant(float((input_size + 63) // 64 * 64), tf.float64)
  portrait = w < h
  long_side = tf.floor((i / tf.where(portrait, w, h) * tf.where(portrait, h, w) + 63.0) / 64.0) * 64.0
  out_w = tf.where(portrait, short, long_side)
  out_h = tf.where(portrait, long_side, short)
  center = tf.stack([tf.floor(w / 2.0 + 0.5), tf.floor(h / 2.0 + 0.5)])
  scale_w = tf.where(portrait, w / 200.0, out_w / out_h * h / 200.0)
  scale_h = tf.where(portrait, out_h / out_w * w / 200.0, h / 200.0)
  k = out_w / (scale_w * 200.0)  # uniform zoom: the source width 200·scale_w fills w'
  zero = tf.constant(0.0, tf.float64)
  matrix = tf.stack([tf.stack([k, zero, out_w / 2 - k * center[0]]),
                     tf.stack([zero, k, out_h / 2 - k * center[1]])])
  out_hw = tf.cast(tf.stack([out_h, out_w]), tf.int32)
  return out_hw, center, tf.stack([scale_w, scale_h]), matrix


def get_eval_resize(input_size: int) -> Op:
  """Resizes a test image for the network (spec e.1).

  Reads 'image' [H,W,3] uint8. Changes 'image' → [h',w',3] float32 grey levels (rounded like the authors'
  uint8 warp). Adds 'center' [2], 'scale' [2] float32, 'image_size' [2] int32 (H, W).
  """
  def op(features):
    features = dict(features)
    image = features['image']
    shape = tf.shape(image)
    out_hw, center, scale, matrix = eval_geometry(shape[0], shape[1], input_size)
    features['image'] = tf.clip_by_value(tf.round(warp(image, matrix, (out_hw[0], out_hw[1]))), 0, 255)
    features['center'] = tf.cast(center, tf.float32)
    features['scale'] = tf.cast(scale, tf.float32)
    features['image_size'] = tf.cast(shape[:2], tf.int32)
    return features
  return op
