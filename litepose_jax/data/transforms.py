"""Decoding, resampling and the dict → dict ops of the training and evaluation inputs (spec d.1, e.1).

Each `get_*` factory returns a `features -> features` function over a dict of tensors; its docstring lists
the keys it reads, changes and adds. The same functions run eagerly (`targets.make_train_example`, the
parity tests) and inside tf.data (`pipeline.py`).

Speed notes (CPU, the training hosts' bottleneck): JPEGs are decoded only where the crop reads (exact:
libjpeg-turbo's cropped decode equals the cropped full decode); resampling is in resample.py.

Legend: H, W image size; I input size; R output (heatmap) size; P persons; K joints; C RLE runs.
"""

from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf

from litepose_jax.data import geometry
from litepose_jax.data import resample

IMAGENET_MEAN = resample.IMAGENET_MEAN
IMAGENET_STD = resample.IMAGENET_STD

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


def image_hw(encoded: tf.Tensor) -> tf.Tensor:
  """[2] int32 (H, W) of encoded image bytes: JPEG from the header; other formats are decoded."""
  def jpeg():
    return tf.io.extract_jpeg_shape(encoded)[:2]
  return tf.cond(tf.io.is_jpeg(encoded), jpeg, lambda: tf.shape(decode_image(encoded))[:2])


def decode_region(encoded: tf.Tensor, box: tf.Tensor) -> tf.Tensor:
  """The pixels inside box = [y0, x0, h, w] of an encoded image, [h,w,3] uint8 RGB (JPEG: cropped decode)."""
  def jpeg():
    return tf.image.decode_and_crop_jpeg(encoded, box, channels=3, dct_method='INTEGER_ACCURATE')
  def other():
    return decode_image(encoded)[box[0]:box[0] + box[2], box[1]:box[1] + box[3]]
  region = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
  region.set_shape([None, None, 3])
  return region


def get_geometry(input_size: int, output_sizes: Sequence[int]) -> Op:
  """The crop matrices of one training sample (spec d.1).

  Reads 'image_hw' [2] (H, W), 'aug' {'scale', 'rot', 'dx', 'dy', 'flip'}.
  Adds 'matrix_input', 'matrix_s' [2,3] float64 (image → grid pixels) and 'input_box' [4] int32, the image
  region [y0, x0, h, w] that the input warp reads.
  """
  def op(features):
    features = dict(features)
    hw = features['image_hw']
    mats = geometry.train_matrices(hw[0], hw[1], features['aug'], input_size, output_sizes)
    features['matrix_input'] = mats[0]
    for s, mat in enumerate(mats[1:]):
      features[f'matrix_{s}'] = mat
    features['input_box'] = geometry.source_box(mats[0], input_size, input_size, hw[0], hw[1])
    return features
  return op


def get_decode_region() -> Op:
  """Reads 'image_bytes', 'input_box'; adds 'image' [h,w,3] uint8, the decoded box; removes 'image_bytes'."""
  def op(features):
    features = dict(features)
    features['image'] = decode_region(features.pop('image_bytes'), features['input_box'])
    return features
  return op


def get_crop_region() -> Op:
  """Reads 'image' [H,W,3] (already decoded) and 'input_box'; changes 'image' to the box."""
  def op(features):
    features = dict(features)
    b = features['input_box']
    features['image'] = features['image'][b[0]:b[0] + b[2], b[1]:b[1] + b[3]]
    return features
  return op


def get_affine_flip_normalize(input_size: int, output_sizes: Sequence[int],
                               flip_index: Sequence[int]) -> Op:
  """The authors' RandomAffineTransform → RandomHorizontalFlip → ToTensor + Normalize (spec d.1).

  One op for the three because the flip is folded into the resampling grids and the normalisation into
  the blend (no extra passes over the outputs; see resample.py). Joints: affine in float64 per output
  grid, then (when flipping) channels permuted with `flip_index` and x → R_s − 1 − x, exactly as the
  authors.

  Reads 'image' (the 'input_box' region, uint8), 'input_box', 'image_hw', 'matrix_input', 'matrix_s',
    'ignore_rle' [C], 'keypoints' [P,K,3], 'aug'['flip'].
  Changes 'image' → [I,I,3] float32 ImageNet-normalised RGB of the warped image, itself rounded to grey
    levels like the authors' uint8 cv2.warpAffine.
  Adds 'mask_s' [R_s,R_s] float32 {0,1} (1 = use) and 'keypoints_s' [P,K,3] float64 in grid s pixels.
  Removes 'ignore_rle', 'keypoints', the matrices and 'input_box'.
  """
  flip_index = tf.constant(list(flip_index), tf.int32)

  def op(features):
    features = dict(features)
    flip = tf.cast(features['aug']['flip'], tf.bool)
    hw = features['image_hw']
    mats = [features.pop('matrix_input')] + [features.pop(f'matrix_{s}') for s in range(len(output_sizes))]
    features['image'], coverage = resample.warp_train_sample(
        features['image'], features.pop('input_box'), hw, mats, flip, input_size, output_sizes)
    ignore_rle = features.pop('ignore_rle')
    keypoints = tf.cast(features.pop('keypoints'), tf.float64)
    for s, res in enumerate(output_sizes):
      features[f'mask_{s}'] = resample.keep_mask(ignore_rle, hw, mats[s + 1], res, flip, coverage[s])
      kp = tf.concat([geometry.apply_affine(keypoints[..., :2], mats[s + 1]), keypoints[..., 2:]], axis=-1)
      flipped = tf.gather(kp, flip_index, axis=1)
      flipped = tf.concat([res - 1 - flipped[..., :1], flipped[..., 1:]], axis=-1)
      features[f'keypoints_{s}'] = tf.where(flip, flipped, kp)
    return features
  return op


def get_eval_resize(input_size: int) -> Op:
  """Resizes a test image for the network (spec e.1).

  Reads 'image' [H,W,3] uint8. Changes 'image' → [h',w',3] float32 ImageNet-normalised RGB (of the warp
  rounded to grey levels, like the authors' uint8 warp). Adds 'center' [2], 'scale' [2] float32,
  'image_size' [2] int32 (H, W).
  """
  def op(features):
    features = dict(features)
    image = features['image']
    shape = tf.shape(image)
    out_hw, center, scale, matrix = geometry.eval_geometry(shape[0], shape[1], input_size)
    features['image'] = resample.warp(image, matrix, (out_hw[0], out_hw[1]), normalize=True)
    features['center'] = tf.cast(center, tf.float32)
    features['scale'] = tf.cast(scale, tf.float32)
    features['image_size'] = tf.cast(shape[:2], tf.int32)
    return features
  return op
