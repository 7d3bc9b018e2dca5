"""Affine geometry of the training crops and test resizes, and bilinear sampling grids, as TF ops.

Matrix and joint arithmetic is float64, composed in the same order as the authors' NumPy code, so that the
int() truncation of joint positions lands on the same pixels (spec b, d.1, e.1).

Legend: H, W image size; I input size; R output (heatmap) size; h, w a sampling grid; N = h·w.
"""

from __future__ import annotations

import math

import tensorflow as tf


def crop_matrix(center: tf.Tensor, scale: tf.Tensor, res: int, rot_deg: tf.Tensor) -> tf.Tensor:
  """[2,3] float64 affine mapping image pixels to the R×R grid of a training crop (spec d.1).

  The square of side 200·scale centred at `center` (x, y) fills the grid, rotated by `rot_deg` about the
  grid centre. Same composition as the authors' `_get_affine_matrix`, with the rotation skipped when it is
  exactly 0, so that the float64 result matches theirs bit for bit.
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


def train_matrices(height, width, aug: dict, input_size: int, output_sizes) -> list:
  """The authors' RandomAffineTransform matrices for the input and each output grid (spec d.1).

  Args:
    height: image H.
    width: image W.
    aug: {'scale': aug_scale, 'rot': degrees, 'dx', 'dy': pixels}.
    input_size: I.
    output_sizes: (R_0, R_1, ...).

  Returns:
    [matrix for I, matrix for R_0, ...], each [2,3] float64 image → grid pixels.
  """
  h = tf.cast(height, tf.float64)
  w = tf.cast(width, tf.float64)
  scale = tf.minimum(h, w) / 200.0 * tf.cast(aug['scale'], tf.float64)
  center = tf.stack([w / 2 + tf.cast(aug['dx'], tf.float64), h / 2 + tf.cast(aug['dy'], tf.float64)])
  return [crop_matrix(center, scale, res, aug['rot']) for res in (input_size, *output_sizes)]


def apply_affine(points: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
  """[...,2] float64 points through a [2,3] affine."""
  return tf.einsum('...j,ij->...i', points, matrix[:, :2]) + matrix[:, 2]


def source_box(matrix: tf.Tensor, out_h, out_w, height, width) -> tf.Tensor:
  """The image pixels that a bilinear warp onto an h×w grid can read: [y0, x0, box_h, box_w] int32.

  The grid's four corner pixels map to a parallelogram; its bounding box, widened by the second bilinear
  tap and clipped to the image, holds every in-image tap. At least 1×1 (a crop entirely outside the image
  reads one pixel with weight 0). Used to decode only that part of a JPEG.
  """
  corners_x = tf.constant([0.0, 1.0, 0.0, 1.0], tf.float64) * tf.cast(out_w - 1, tf.float64)
  corners_y = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float64) * tf.cast(out_h - 1, tf.float64)
  m = tf.cast(matrix, tf.float64)
  inv = tf.linalg.inv(tf.concat([m, tf.constant([[0.0, 0.0, 1.0]], tf.float64)], 0))[:2]
  sx = inv[0, 0] * corners_x + inv[0, 1] * corners_y + inv[0, 2]
  sy = inv[1, 0] * corners_x + inv[1, 1] * corners_y + inv[1, 2]
  big = 1e7  # keeps the int casts defined for absurd matrices
  x0 = tf.cast(tf.floor(tf.clip_by_value(tf.reduce_min(sx), -big, big)), tf.int32)
  x1 = tf.cast(tf.floor(tf.clip_by_value(tf.reduce_max(sx), -big, big)), tf.int32) + 1
  y0 = tf.cast(tf.floor(tf.clip_by_value(tf.reduce_min(sy), -big, big)), tf.int32)
  y1 = tf.cast(tf.floor(tf.clip_by_value(tf.reduce_max(sy), -big, big)), tf.int32) + 1
  width, height = tf.cast(width, tf.int32), tf.cast(height, tf.int32)
  x0 = tf.clip_by_value(x0, 0, width - 1)
  y0 = tf.clip_by_value(y0, 0, height - 1)
  x1 = tf.clip_by_value(x1, x0, width - 1)
  y1 = tf.clip_by_value(y1, y0, height - 1)
  return tf.stack([y0, x0, y1 - y0 + 1, x1 - x0 + 1])


def eval_geometry(height: tf.Tensor, width: tf.Tensor, input_size: int):
  """Network input size and back-projection parameters of one test image (spec e.1).

  The authors' get_multi_scale_size at scale 1: the short side becomes ceil64(I), the long side is I·long/
  short rounded up to a multiple of 64.

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
