"""Training targets as vectorised TF ops (spec b): heatmaps, masks and packed tag-loss joints.

`make_train_example` runs the whole training transform (affine → flip → normalise → targets) eagerly on one
image with fixed augmentation parameters (as a batch of one); `pipeline.make_train_dataset` runs the same
`train_transform` inside tf.data with random parameters: the image per sample, the targets per padded
batch. No per-person or per-joint Python loops: heatmaps are one max-scatter of every valid joint's
15×15 window in the batch, tag joints one stable argsort.

Legend: I input size; R output size (I/4, I/2); P persons; K joints; N = max_people (30).
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from litepose_jax import keypoints as kp_lib
from litepose_jax.data import ignore_regions
from litepose_jax.data import resample
from litepose_jax.data import transforms


def output_sizes_for(input_size: int) -> tuple[int, int]:
  """Heatmap resolutions (I/4, I/2) of the two outputs."""
  return input_size // 4, input_size // 2


def _grid_positions(keypoints: tf.Tensor, res: int):
  """int() of the grid coordinates and the authors' validity test (v > 0 and inside the R×R grid).

  Returns:
    (xy [...,K,2] int32 truncated toward zero, valid [...,K] bool) for keypoints [...,K,3].
  """
  # Clip first: casting huge or far-out values to int32 is undefined, and anything clipped stays outside.
  xy = tf.cast(tf.clip_by_value(keypoints[..., :2], -2.0, res + 2.0), tf.int32)
  inside = tf.reduce_all((xy >= 0) & (xy < res), axis=-1)
  return xy, inside & (keypoints[..., 2] > 0)


def _window_max(xy, base, valid, gauss, total: int, res: int, num_joints: int, sigma: float):
  """Max-combines one Gaussian window per joint into flat maps (one XLA program per shape bucket).

  Args:
    xy: [V,2] int32 joint positions in the grid (padding rows: any value, valid False).
    base: [V] int32 flat offset of the joint's map: b·R²·K + k.
    valid: [V] bool.
    gauss: [n,n] float32 window.
    total: B·R·R·K (static).

  Returns:
    [total] float32: the maps of the batch, flat [B,R,R,K].
  """
  n = gauss.shape[0]
  xy64 = tf.cast(xy, tf.float64)
  # Same window bounds as the authors (np.round is round-half-even, like tf.round).
  ul = tf.cast(tf.round(xy64 - 3 * sigma - 1), tf.int32)  # [V,2]
  br = tf.minimum(tf.cast(tf.round(xy64 + 3 * sigma + 2), tf.int32), res)
  pos = ul[..., None] + tf.range(n)  # [V,2,n] pixel of window index
  ok = (pos >= 0) & (pos < br[..., None])
  ok_xy = ok[:, 1, :, None] & ok[:, 0, None, :] & valid[:, None, None]  # [V,n,n]
  ids = (pos[:, 1, :, None] * res + pos[:, 0, None, :]) * num_joints + base[:, None, None]
  # Pixels off the grid and padding rows update element 0 with 0: a no-op on maps that are >= 0, and it
  # keeps every index in range (XLA drops out-of-range updates, TF's CPU kernel rejects them).
  ids = tf.where(ok_xy, ids, 0)
  values = tf.where(ok_xy, gauss[None], 0.0)
  return tf.tensor_scatter_nd_max(tf.zeros([total]), tf.reshape(ids, [-1, 1]), tf.reshape(values, [-1]))


def heatmaps(keypoints: tf.Tensor, res: int, num_joints: int, sigma: float = 2.0) -> tf.Tensor:
  """The authors' HeatmapGenerator for a batch: max over people of unnormalised Gaussians at int() positions.

  Only the V valid (sample, person, joint) triples get a window (most slots of a padded batch are empty),
  and all windows of the batch are max-scattered at once into zeros by one XLA program (per batch shape
  and bucket of V), about twice as fast as the same work as TF ops (docs/design.md).

  Args:
    keypoints: [B,P,K,3] float64 (x, y, v) in grid pixels (padded people have v = 0); B static.
    res: R.
    num_joints: K.
    sigma: Gaussian sigma in grid pixels (window size 6σ+3, centre 3σ+1, as the authors).

  Returns:
    [B,R,R,K] float32.
  """
  size = 6 * sigma + 3
  n = int(math.ceil(size))
  centre = 3 * sigma + 1
  j = np.arange(n, dtype=np.float64)
  gauss = tf.constant(np.exp(-((j[None, :] - centre) ** 2 + (j[:, None] - centre) ** 2)
                             / (2 * sigma ** 2)).astype(np.float32))  # [n(y), n(x)], float64 → float32
  batch = keypoints.shape[0]
  if batch is None:
    raise ValueError('heatmaps needs a static batch size (batch with drop_remainder=True)')
  xy, valid = _grid_positions(keypoints, res)
  where = tf.where(valid)  # [V,3] (b, p, k)
  xy = tf.gather_nd(xy, where)  # [V,2]
  base = (tf.cast(where[:, 0], tf.int32) * res * res) * num_joints + tf.cast(where[:, 2], tf.int32)  # [V]
  v = tf.shape(base)[0]
  pad = resample.bucket_length(v, min_log2=8) - v
  maps = resample.call_compiled(
      _window_max, {'total': batch * res * res * num_joints, 'res': res, 'num_joints': num_joints,
                    'sigma': float(sigma)},
      tf.pad(xy, [[0, pad], [0, 0]]), tf.pad(base, [[0, pad]]), tf.range(v + pad) < v, gauss)
  return tf.reshape(maps, [batch, res, res, num_joints])


def select_people(keypoints: tf.Tensor, area: tf.Tensor, max_people: int) -> tf.Tensor:
  """Per sample, indices of the people that get tag-loss slots, in annotation order.

  The authors' code fails with more than N people; we keep the N largest by area, preferring people with
  at least one labelled joint (a person without joints only occupies an empty slot). Padding people (no
  joints, area 0, last) are only picked when slots are left, where they fill empty slots like the
  padding they replace.

  Args:
    keypoints: [B,P,K,3] (v in [..., 2]).
    area: [B,P] annotation areas.
    max_people: N.

  Returns:
    [B,min(P,N)] int32, ascending per sample.
  """
  has_joints = tf.reduce_any(keypoints[..., 2] > 0, axis=-1)
  by_area = tf.argsort(-tf.cast(area, tf.float32), axis=-1, stable=True)
  without = tf.cast(~tf.gather(has_joints, by_area, batch_dims=1), tf.int32)
  order = tf.gather(by_area, tf.argsort(without, axis=-1, stable=True), batch_dims=1)
  return tf.sort(order[:, :max_people], axis=-1)


def tag_joints(keypoints: tf.Tensor, people: tf.Tensor, res: int, max_people: int) -> tf.Tensor:
  """The authors' JointsGenerator for a batch: per person, valid joints packed into the first slots.

  Args:
    keypoints: [B,P,K,3] float64 in grid pixels.
    people: [B,M] indices of the people to pack (M ≤ N), from select_people.
    res: R.
    max_people: N.

  Returns:
    [B,N,K,2] int32; entry (k·R² + y·R + x, 1) for valid joints, (0, 0) for unused slots.
  """
  xy, valid = _grid_positions(tf.gather(keypoints, people, batch_dims=1), res)  # [B,M,K,2], [B,M,K]
  num_joints = tf.shape(xy)[2]
  flat = tf.range(num_joints) * res * res + xy[..., 1] * res + xy[..., 0]
  order = tf.argsort(tf.cast(~valid, tf.int32), axis=-1, stable=True)  # valid joints first, in joint order
  flat = tf.gather(flat, order, batch_dims=2)
  valid = tf.gather(valid, order, batch_dims=2)
  packed = tf.stack([tf.where(valid, flat, 0), tf.cast(valid, tf.int32)], axis=-1)
  return tf.pad(packed, [[0, 0], [0, max_people - tf.shape(packed)[1]], [0, 0], [0, 0]])


def get_batch_targets(num_joints: int, output_sizes: Sequence[int], sigma: float = 2.0,
                      max_people: int = kp_lib.MAX_PEOPLE, mask_outside: bool = True) -> transforms.Op:
  """Builds the targets of every output scale for a batch of examples.

  Runs after `.batch()`: TF pays its per-op cost once per batch instead of once per sample, and the
  heatmap, mask and joint ops work on B samples at a time.

  Reads (leading B) 'keypoints_s' [B,P,K,3] float64 (grid pixels, padded people v = 0), 'area' [B,P],
    'ignore_rle' [B,C] (zero-padded), 'image_hw' [B,2], 'matrix_s' [B,2,3], 'flip' [B]
    (transforms.get_grid_keypoints adds them).
  Adds 'heatmaps_s' [B,R,R,K] float32, 'masks_s' [B,R,R] float32, 'joints_s' [B,N,K,2] int32.
  Removes the keys it reads. mask_outside: see resample.keep_masks (True: the authors' masks).
  """
  def op(features):
    features = dict(features)
    area = features.pop('area')
    ignore_rle = features.pop('ignore_rle')
    hw = features.pop('image_hw')
    flip = features.pop('flip')
    people = select_people(features['keypoints_0'], area, max_people)
    matrices = [features.pop(f'matrix_{s}') for s in range(len(output_sizes))]
    masks = resample.keep_masks(ignore_rle, hw, matrices, output_sizes, flip, mask_outside)
    for s, res in enumerate(output_sizes):
      kp = features.pop(f'keypoints_{s}')
      features[f'heatmaps_{s}'] = heatmaps(kp, res, num_joints, sigma)
      features[f'masks_{s}'] = masks[s]
      features[f'joints_{s}'] = tag_joints(kp, people, res, max_people)
    return features
  return op


def train_transform(input_size: int, keypoint_set: kp_lib.KeypointSet, sigma: float = 2.0,
                    max_people: int = kp_lib.MAX_PEOPLE, decoded: bool = False, mask_outside: bool = True):
  """The training transform given the draws (spec d.1 + b), as a per-sample op and a per-batch op.

  Per sample: input geometry → decode (the crop) → affine, flip, normalise of the image. Per batch (after
  a zero-padded batch): the joints' affine + flip, then heatmaps, masks and tag joints. Only the image
  work is per sample; everything else pays TF's per-op cost once per batch.

  Per sample reads 'image_bytes' (or, with decoded=True, 'image' [H,W,3] uint8), 'image_hw' [2],
  'ignore_rle' [C], 'keypoints' [P,K,3], 'area' [P], 'aug' {'scale', 'rot', 'dx', 'dy', 'flip'}, and
  returns 'image' [I,I,3] float32 normalised with the other keys kept. Per batch returns 'image' and the
  keys added by get_batch_targets.

  Returns:
    (per-sample op, per-batch op). make_train_example runs both on a batch of one.
  """
  sizes = output_sizes_for(input_size)
  sample_ops = [transforms.get_input_geometry(input_size),
                transforms.get_crop_region() if decoded else transforms.get_decode_region(),
                transforms.get_warp_input(input_size)]
  batch_ops = [transforms.get_grid_keypoints(sizes, keypoint_set.flip_index),
               get_batch_targets(keypoint_set.num_keypoints, sizes, sigma, max_people, mask_outside)]

  def chain(ops):
    def op(features):
      for o in ops:
        features = o(features)
      return features
    return op
  return chain(sample_ops), chain(batch_ops)


def make_train_example(image: np.ndarray, keypoints: np.ndarray, ignore_mask: Optional[np.ndarray],
                       aug: Mapping[str, float], input_size: int,
                       dataset: Union[str, kp_lib.KeypointSet], *, sigma: float = 2.0,
                       max_people: int = kp_lib.MAX_PEOPLE, area: Optional[np.ndarray] = None,
                       mask_outside: bool = True) -> dict:
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
    mask_outside: False also supervises the pixels outside the warped image (resample.keep_masks).

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
  per_sample, per_batch = train_transform(input_size, keypoint_set, sigma, max_people, decoded=True,
                                          mask_outside=mask_outside)
  out = per_batch(tf.nest.map_structure(lambda v: v[None], per_sample(features)))
  scales = range(len(output_sizes_for(input_size)))
  return {'image': out['image'][0].numpy(),
          'heatmaps': [out[f'heatmaps_{s}'][0].numpy() for s in scales],
          'masks': [out[f'masks_{s}'][0].numpy() for s in scales],
          'joints': [out[f'joints_{s}'][0].numpy() for s in scales]}
