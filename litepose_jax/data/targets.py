"""Training targets as vectorised TF ops (spec b): heatmaps, masks and packed tag-loss joints.

`make_train_example` runs the whole training transform (affine → flip → normalise → targets) eagerly on one
image with fixed augmentation parameters; `pipeline.make_train_dataset` runs the same `train_transform`
inside tf.data with random parameters. No per-person or per-joint Python loops: heatmaps are one
`unsorted_segment_max` over every person's 15×15 window, tag joints one stable argsort.

Legend: I input size; R output size (I/4, I/2); P persons; K joints; N = max_people (30).
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from litepose_jax import keypoints as kp_lib
from litepose_jax.data import ignore_regions
from litepose_jax.data import transforms


def output_sizes_for(input_size: int) -> tuple[int, int]:
  """Heatmap resolutions (I/4, I/2) of the two outputs."""
  return input_size // 4, input_size // 2


def _grid_positions(keypoints: tf.Tensor, res: int):
  """int() of the grid coordinates and the authors' validity test (v > 0 and inside the R×R grid).

  Returns:
    (xy [P,K,2] int32 truncated toward zero, valid [P,K] bool).
  """
  # Clip first: casting huge or far-out values to int32 is undefined, and anything clipped stays outside.
  xy = tf.cast(tf.clip_by_value(keypoints[..., :2], -2.0, res + 2.0), tf.int32)
  inside = tf.reduce_all((xy >= 0) & (xy < res), axis=-1)
  return xy, inside & (keypoints[..., 2] > 0)


def heatmaps(keypoints: tf.Tensor, res: int, num_joints: int, sigma: float = 2.0) -> tf.Tensor:
  """The authors' HeatmapGenerator: max over people of unnormalised Gaussians at int() positions.

  Args:
    keypoints: [P,K,3] float64 (x, y, v) in grid pixels.
    res: R.
    num_joints: K.
    sigma: Gaussian sigma in grid pixels (window size 6σ+3, centre 3σ+1, as the authors).

  Returns:
    [R,R,K] float32.
  """
  size = 6 * sigma + 3
  n = int(math.ceil(size))
  centre = 3 * sigma + 1
  j = np.arange(n, dtype=np.float64)
  gauss = tf.constant(np.exp(-((j[None, :] - centre) ** 2 + (j[:, None] - centre) ** 2)
                             / (2 * sigma ** 2)).astype(np.float32))  # [n(y), n(x)], float64 → float32
  xy, valid = _grid_positions(keypoints, res)
  xy64 = tf.cast(xy, tf.float64)
  # Same window bounds as the authors (np.round is round-half-even, like tf.round).
  ul = tf.cast(tf.round(xy64 - 3 * sigma - 1), tf.int32)  # [P,K,2]
  br = tf.minimum(tf.cast(tf.round(xy64 + 3 * sigma + 2), tf.int32), res)
  pos = ul[..., None] + tf.range(n)[None, None, None, :]  # [P,K,2,n] pixel of window index
  ok = (pos >= 0) & (pos < br[..., None])
  ok_xy = ok[:, :, 1, :, None] & ok[:, :, 0, None, :] & valid[:, :, None, None]  # [P,K,n,n]
  # One segment-max over every window pixel of every (person, joint); pixels outside the grid or of
  # invalid joints get segment id -1, which unsorted_segment_max drops. (tensor_scatter_nd_max does the
  # same job about 5x slower on CPU.)
  shape = tf.shape(ok_xy)
  py = tf.broadcast_to(pos[:, :, 1, :, None], shape)
  px = tf.broadcast_to(pos[:, :, 0, None, :], shape)
  kk = tf.broadcast_to(tf.range(num_joints)[None, :, None, None], shape)
  ids = tf.where(ok_xy, (py * res + px) * num_joints + kk, -1)
  values = tf.broadcast_to(gauss, shape)
  maps = tf.math.unsorted_segment_max(tf.reshape(values, [-1]), tf.reshape(ids, [-1]),
                                      res * res * num_joints)
  # Empty segments come back as the lowest float: no Gaussian there means 0.
  return tf.reshape(tf.maximum(maps, 0.0), [res, res, num_joints])


def select_people(keypoints: tf.Tensor, area: tf.Tensor, max_people: int) -> tf.Tensor:
  """Indices of the people that get tag-loss slots, in annotation order.

  The authors' code fails with more than N people; we keep the N largest by area, preferring people with
  at least one labelled joint (a person without joints only occupies an empty slot).

  Args:
    keypoints: [P,K,3] (v in [..., 2]).
    area: [P] annotation areas.
    max_people: N.

  Returns:
    [min(P,N)] int32, ascending.
  """
  has_joints = tf.reduce_any(keypoints[..., 2] > 0, axis=-1)
  by_area = tf.argsort(-tf.cast(area, tf.float32), stable=True)
  order = tf.gather(by_area, tf.argsort(tf.cast(~tf.gather(has_joints, by_area), tf.int32), stable=True))
  return tf.sort(order[:max_people])


def tag_joints(keypoints: tf.Tensor, people: tf.Tensor, res: int, max_people: int) -> tf.Tensor:
  """The authors' JointsGenerator: per person, valid joints packed into the first slots.

  Args:
    keypoints: [P,K,3] float64 in grid pixels.
    people: [M] indices of the people to pack (M ≤ N), from select_people.
    res: R.
    max_people: N.

  Returns:
    [N,K,2] int32; entry (k·R² + y·R + x, 1) for valid joints, (0, 0) for unused slots.
  """
  xy, valid = _grid_positions(tf.gather(keypoints, people), res)
  num_joints = tf.shape(xy)[1]
  flat = tf.range(num_joints)[None, :] * res * res + xy[..., 1] * res + xy[..., 0]
  order = tf.argsort(tf.cast(~valid, tf.int32), axis=1, stable=True)  # valid joints first, in joint order
  flat = tf.gather(flat, order, batch_dims=1)
  valid = tf.gather(valid, order, batch_dims=1)
  packed = tf.stack([tf.where(valid, flat, 0), tf.cast(valid, tf.int32)], axis=-1)
  return tf.pad(packed, [[0, max_people - tf.shape(packed)[0]], [0, 0], [0, 0]])


def get_targets(num_joints: int, output_sizes: Sequence[int], sigma: float = 2.0,
                max_people: int = 30) -> transforms.Op:
  """Builds the targets of every output scale.

  Reads 'keypoints_s' [P,K,3] float64 (grid pixels), 'mask_s' [R,R], 'area' [P].
  Adds 'heatmaps_s' [R,R,K] float32, 'masks_s' [R,R] float32, 'joints_s' [N,K,2] int32.
  Removes 'keypoints_s', 'mask_s', 'area'.
  """
  def op(features):
    features = dict(features)
    area = features.pop('area')
    people = select_people(features['keypoints_0'], area, max_people)
    for s, res in enumerate(output_sizes):
      kp = features.pop(f'keypoints_{s}')
      features[f'heatmaps_{s}'] = heatmaps(kp, res, num_joints, sigma)
      features[f'masks_{s}'] = features.pop(f'mask_{s}')
      features[f'joints_{s}'] = tag_joints(kp, people, res, max_people)
    return features
  return op


def train_transform(input_size: int, keypoint_set: kp_lib.KeypointSet, sigma: float = 2.0,
                    max_people: int = 30, decoded: bool = False) -> transforms.Op:
  """Geometry → decode (crop) → affine, flip, normalise → targets (spec d.1 + b), given the draws.

  Reads 'image_bytes' (or, with decoded=True, 'image' [H,W,3] uint8), 'image_hw' [2], 'ignore_rle' [C],
  'keypoints' [P,K,3], 'area' [P], 'aug' {'scale', 'rot', 'dx', 'dy', 'flip'}.
  Returns features with 'image' [I,I,3] float32 normalised and the keys added by get_targets ('aug' kept).
  """
  sizes = output_sizes_for(input_size)
  ops = [transforms.get_geometry(input_size, sizes),
         transforms.get_crop_region() if decoded else transforms.get_decode_region(),
         transforms.get_affine_flip_normalize(input_size, sizes, keypoint_set.flip_index),
         get_targets(keypoint_set.num_keypoints, sizes, sigma, max_people)]

  def op(features):
    for o in ops:
      features = o(features)
    return features
  return op


def make_train_example(image: np.ndarray, keypoints: np.ndarray, ignore_mask: Optional[np.ndarray],
                       aug: Mapping[str, float], input_size: int,
                       dataset: Union[str, kp_lib.KeypointSet], *, sigma: float = 2.0,
                       max_people: int = 30, area: Optional[np.ndarray] = None) -> dict:
  """One training example with FIXED augmentation, eagerly, through the pipeline's TF code.

  Args:
    image: [H,W,3] uint8 RGB.
    keypoints: [P,K,3] (x, y, v) in image pixels.
    ignore_mask: [H,W], nonzero = ignore (COCO crowd / no-keypoint regions), or None.
    aug: dict(aug_scale, rot (degrees), dx, dy (pixels), flip (bool)).
    input_size: I.
    dataset: 'crowdpose' | 'coco' or a KeypointSet.
    sigma: heatmap sigma.
    max_people: N.
    area: [P] person areas used only when P > N (default: the box around the labelled joints).

  Returns:
    dict of NumPy arrays: 'image' [I,I,3] float32 normalised, 'heatmaps' [[R,R,K] per scale], 'masks'
    [[R,R] per scale, 1 = use], 'joints' [[N,K,2] int32 per scale].
  """
  keypoint_set = kp_lib.get(dataset)
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
    raise ValueError(f'image must be [H,W,3] uint8 RGB, got {image.shape} {image.dtype}')
  k = keypoint_set.num_keypoints
  keypoints = np.asarray(keypoints, np.float64).reshape(-1, k, 3) if np.size(keypoints) else np.zeros(
      [0, k, 3])
  if area is None:
    area = np.zeros([len(keypoints)], np.float32)
    for p, kp in enumerate(keypoints):
      pts = kp[kp[:, 2] > 0, :2]
      area[p] = np.ptp(pts[:, 0]) * np.ptp(pts[:, 1]) if len(pts) else 0.0
  if ignore_mask is not None and np.shape(ignore_mask) != image.shape[:2]:
    raise ValueError(f'ignore_mask is {np.shape(ignore_mask)}, expected {image.shape[:2]}')
  rle = np.zeros([0], np.int32) if ignore_mask is None else ignore_regions.rle_from_mask(ignore_mask)
  features = {
      'image': tf.constant(image), 'image_hw': tf.constant(image.shape[:2], tf.int32),
      'ignore_rle': tf.constant(rle), 'keypoints': tf.constant(keypoints),
      'area': tf.constant(np.asarray(area, np.float32)),
      'aug': {'scale': tf.constant(float(aug['aug_scale']), tf.float64),
              'rot': tf.constant(float(aug['rot']), tf.float64),
              'dx': tf.constant(int(aug['dx']), tf.int32), 'dy': tf.constant(int(aug['dy']), tf.int32),
              'flip': tf.constant(bool(aug['flip']))},
  }
  out = train_transform(input_size, keypoint_set, sigma, max_people, decoded=True)(features)
  scales = range(len(output_sizes_for(input_size)))
  return {'image': out['image'].numpy(),
          'heatmaps': [out[f'heatmaps_{s}'].numpy() for s in scales],
          'masks': [out[f'masks_{s}'].numpy() for s in scales],
          'joints': [out[f'joints_{s}'].numpy() for s in scales]}
