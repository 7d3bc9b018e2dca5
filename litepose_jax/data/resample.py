"""Bilinear resampling with cv2.warpAffine semantics (zero border), tuned for tf.data on CPU.

The input pipeline is CPU-bound, and TF runs every element-wise op as its own pass over memory, with
slow broadcasting and 10-40 ns per gathered index. So the training image warp (coordinates, four tap
gathers, blend, rounding, normalisation) is one XLA program per input size and pixel-table bucket
(`warp_train_image`), and the mask grids of a whole batch are one XLA program per batch shape, with the
ignore regions read by binary search over their run lengths, once per crop on the finest grid and only
inside the regions' bounding box (`keep_masks`, `rle_lookup`). `call_compiled` is the XLA runner shared
with targets.py. The general
`warp` (test-time resize) gathers horizontal pixel pairs (6 bytes: taps (x0, y) and (x0+1, y)) as TF ops
and blends them under XLA.
Set LITEPOSE_DATA_XLA=0 to run everything as plain TF ops (same results up to float rounding).

Coordinates are float32 (≤ 1e-4 px from exact for images up to a few thousand pixels; OpenCV itself
quantises them to 1/32 px). Legend: H, W source size; h, w output grid; N = h·w; R mask grid size.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Sequence

import tensorflow as tf

from litepose_jax.models.arch import IMAGENET_MEAN, IMAGENET_STD

_USE_XLA = os.environ.get('LITEPOSE_DATA_XLA', '1') != '0'


def _coordinates(matrix, offset_xy, out_h, out_w, flip):
  """Sampling positions matrix⁻¹·(x, y) of the output grid, minus offset_xy: (sx, sy) [..., h·w] float32.

  Works on one matrix ([2,3], offset [2], flip scalar) or a batch ([...,2,3], [...,2], [...]); the
  float operations per element are the same either way. Affine maps are separable into a column term and a
  row term, so only one broadcast add per axis runs over the whole grid. `flip` reverses the output
  columns (the authors' flip of the warped image).
  """
  m = tf.cast(matrix, tf.float64)
  lead = tf.shape(m)[:-2]
  bottom = tf.broadcast_to(tf.constant([0.0, 0.0, 1.0], tf.float64), tf.concat([lead, [1, 3]], 0))
  inv = tf.linalg.inv(tf.concat([m, bottom], -2))
  cols = tf.range(out_w, dtype=tf.float64)
  cols = tf.where(tf.cast(flip, tf.bool)[..., None], tf.cast(out_w - 1, tf.float64) - cols, cols)
  rows = tf.range(out_h, dtype=tf.float64)
  off = tf.cast(offset_xy, tf.float64)
  c = lambda i, j: inv[..., i, j, None]  # [...,1]
  sx = (tf.cast(c(0, 0) * cols, tf.float32)[..., None, :]
        + tf.cast(c(0, 1) * rows + (c(0, 2) - off[..., 0, None]), tf.float32)[..., :, None])
  sy = (tf.cast(c(1, 0) * cols, tf.float32)[..., None, :]
        + tf.cast(c(1, 1) * rows + (c(1, 2) - off[..., 1, None]), tf.float32)[..., :, None])
  flat = tf.concat([lead, [-1]], 0)
  return tf.reshape(sx, flat), tf.reshape(sy, flat)


def _axis_taps(s, n):
  """Per axis: first tap index t0 ∈ [-1, n] and the weights of t0 and t0+1, zero outside [0, n).

  Clamping the coordinate to [-1, n] first changes no result (beyond the border both taps read zero
  pixels) and keeps the int cast defined.
  """
  nf = tf.cast(n, tf.float32)
  s = tf.clip_by_value(s, -1.0, nf)
  s0 = tf.floor(s)
  f = s - s0
  w0 = (1 - f) * tf.cast((s0 >= 0) & (s0 < nf), tf.float32)
  w1 = f * tf.cast(s0 + 1 < nf, tf.float32)
  return tf.cast(s0, tf.int32), w0, w1


def _pair_index(x0, y, width, pairs_even):
  """Row of the pair table (see _pair_table) holding pixels (x0, y) and (x0+1, y); x0 ∈ [-1, W−1]."""
  q = y * width + x0 + 1  # position in the table's pixel stream, which starts with one zero pixel
  # q >= 0: shifts and masks instead of floor division / modulo, which TF runs several times slower.
  return tf.bitwise.right_shift(q, 1) + tf.bitwise.bitwise_and(q, 1) * pairs_even


def _blend(pairs0, pairs1, wx, wy, normalize: bool):
  """Bilinear blend of the gathered pairs ([N,6] each), rounded to grey levels like a uint8 warp.

  Returns [N,3] float32: grey levels, or ImageNet-normalised RGB when `normalize`.
  """
  p0 = tf.cast(pairs0, tf.float32)
  p1 = tf.cast(pairs1, tf.float32)
  top = wx[0][:, None] * p0[:, :3] + wx[1][:, None] * p0[:, 3:]
  bottom = wx[0][:, None] * p1[:, :3] + wx[1][:, None] * p1[:, 3:]
  out = tf.clip_by_value(tf.round(wy[0][:, None] * top + wy[1][:, None] * bottom), 0.0, 255.0)
  if normalize:
    out = (out / 255.0 - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)
  return out


@functools.lru_cache(maxsize=None)
def _compiled(fn, static: tuple):
  return tf.function(functools.partial(fn, **dict(static)), jit_compile=True, autograph=False)


def call_compiled(fn, static: dict, *args):
  """Runs `fn` XLA-compiled (cached per static arguments) when its static arguments are Python values."""
  items = tuple(sorted(static.items()))
  if _USE_XLA and all(isinstance(v, (int, float, bool, tuple)) for _, v in items):
    return _compiled(fn, items)(*args)
  return fn(*args, **static)


def _pair_table(region: tf.Tensor) -> tf.Tensor:
  """[≈H·W+2, 6] uint8: every horizontal pair of RGB pixels of a region, as rows.

  The pixel stream is [zero pixel, region pixels row-major, zero pixels]; even rows hold pairs that start
  at even stream positions, odd ones follow. Two reshapes of one flat copy: no per-pixel work.
  """
  n = tf.shape(region)[0] * tf.shape(region)[1]
  flat = tf.concat([tf.zeros([3], region.dtype), tf.reshape(region, [-1]), tf.zeros([6], region.dtype)], 0)
  pairs_even = (n + 2) // 2
  even = tf.reshape(flat[:6 * pairs_even], [-1, 6])
  odd = tf.reshape(flat[3:3 + 6 * pairs_even], [-1, 6])
  return tf.concat([even, odd], 0)


def bucket_length(n, min_log2: int = 14):
  """The power of two ≥ n (at least 2^min_log2): static shapes, so XLA compiles once per bucket.

  Each bucket is one more compile; a factor-2 series keeps their number small (COCO's 640×480 images
  use 2-3 pixel-table buckets) at the price of padding copies of at most the data's size.
  """
  k = tf.math.ceil(tf.math.log(tf.cast(tf.maximum(n, 1), tf.float64)) / math.log(2.0))
  return tf.bitwise.left_shift(1, tf.maximum(tf.cast(k, tf.int32), min_log2))


def _warp_image(table, matrix, offset_xy, region_hw, flip, input_size: int):
  """The input image of a training sample from the pixel table of its region (compiled by XLA).

  Args:
    table: [L,3] uint8, the region's pixels row-major, zero-padded to a bucket length L ≥ h·w.
    matrix: [2,3] image → input-grid affine.
    offset_xy: [2] float32 region position (x0, y0) in the image.
    region_hw: [2] int32 (h, w).
    flip: scalar bool.
    input_size: I (static).

  Returns:
    [I,I,3] float32 ImageNet-normalised, the warp rounded to grey levels.
  """
  h, w = region_hw[0], region_hw[1]
  sx, sy = _coordinates(matrix, offset_xy, input_size, input_size, flip)
  x0, wx0, wx1 = _axis_taps(sx, w)
  y0, wy0, wy1 = _axis_taps(sy, h)
  # Out-of-region taps have weight 0: clamping their indices keeps every read inside the table.
  xa = tf.clip_by_value(x0, 0, w - 1)
  xb = tf.clip_by_value(x0 + 1, 0, w - 1)
  ya = tf.clip_by_value(y0, 0, h - 1) * w
  yb = tf.clip_by_value(y0 + 1, 0, h - 1) * w

  def tap(index):
    return tf.cast(tf.gather(table, index), tf.float32)

  col = lambda v: v[:, None]
  top = col(wx0) * tap(ya + xa) + col(wx1) * tap(ya + xb)
  bottom = col(wx0) * tap(yb + xa) + col(wx1) * tap(yb + xb)
  out = tf.clip_by_value(tf.round(col(wy0) * top + col(wy1) * bottom), 0.0, 255.0)
  out = (out / 255.0 - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)
  return tf.reshape(out, [input_size, input_size, 3])


def warp_train_image(region: tf.Tensor, offset, matrix: tf.Tensor, flip, input_size: int) -> tf.Tensor:
  """The network input of one training sample: its image region warped, flipped and normalised.

  The region's pixels are padded into a table of a bucketed length (one copy of the decoded region) so
  that one XLA program per bucket does the whole warp: coordinates, four gathers, blend, rounding and
  normalisation in one pass. The same work as TF ops is several times slower (each op its own pass over
  memory, and TF's gather is slow per index; docs/design.md).

  Args:
    region: [h,w,3] uint8, the part of the image at `offset` that the warp reads.
    offset: [y0, x0, ...] int32 position of the region in the image.
    matrix: [2,3] image → input-grid affine.
    flip: scalar bool, reverse the output columns.
    input_size: I.

  Returns:
    [I,I,3] float32 ImageNet-normalised RGB.
  """
  offset_xy = tf.cast(tf.stack([offset[1], offset[0]]), tf.float32)
  region_hw = tf.shape(region)[:2]
  n = region_hw[0] * region_hw[1]
  # Padding the flat bytes is a plain copy; padding the [n,3] view runs ~6x slower in TF.
  flat = tf.concat([tf.reshape(region, [-1]), tf.zeros([3 * (bucket_length(n) - n)], tf.uint8)], 0)
  return call_compiled(_warp_image, {'input_size': input_size}, tf.reshape(flat, [-1, 3]), matrix,
                       offset_xy, region_hw, tf.cast(flip, tf.bool))


def warp(image: tf.Tensor, matrix: tf.Tensor, out_hw: Sequence, normalize: bool = False) -> tf.Tensor:
  """cv2.warpAffine of a uint8 RGB image (bilinear, zero border, rounded), e.g. the test-time resize.

  Args:
    image: [H,W,3] uint8.
    matrix: [2,3] image → output pixels.
    out_hw: (h, w), ints or scalar tensors.
    normalize: return ImageNet-normalised RGB instead of grey levels.

  Returns:
    [h,w,3] float32.
  """
  shape = tf.shape(image)
  sx, sy = _coordinates(matrix, tf.zeros([2]), out_hw[0], out_hw[1], False)
  x0, wx0, wx1 = _axis_taps(sx, shape[1])
  y0, wy0, wy1 = _axis_taps(sy, shape[0])
  x0 = tf.clip_by_value(x0, -1, shape[1] - 1)
  pairs_even = (shape[0] * shape[1] + 2) // 2
  table = _pair_table(image)
  pairs = [tf.gather(table, _pair_index(x0, tf.clip_by_value(y0 + d, 0, shape[0] - 1), shape[1], pairs_even))
           for d in (0, 1)]
  out = call_compiled(_blend, {'normalize': normalize}, pairs[0], pairs[1], tf.stack([wx0, wx1]),
                      tf.stack([wy0, wy1]))  # XLA: compiled once per test-input shape bucket
  return tf.reshape(out, tf.stack([out_hw[0], out_hw[1], 3]))


def region_boxes(counts: tf.Tensor, height: tf.Tensor) -> tf.Tensor:
  """Per image, the bounding box of its ignore regions: [B,4] int32 (x0, x1, y0, y1), inclusive.

  From the run lengths alone: a 1-run inside one column spans its rows; one that crosses a column boundary
  is given every row. No regions: an empty box (x0 > x1).

  Args:
    counts: [B,C] int32 column-major run lengths, zero-padded.
    height: [B] int32 image heights H.
  """
  h = tf.cast(height, tf.int32)[:, None]
  ends = tf.cumsum(counts, axis=-1)
  starts = ends - counts
  ones = tf.equal(tf.range(tf.shape(counts)[-1]) % 2, 1) & (counts > 0)
  last = tf.maximum(ends - 1, 0)
  col0, col1 = starts // h, last // h
  one_column = tf.equal(col0, col1)
  row0 = tf.where(one_column, starts % h, 0)
  row1 = tf.where(one_column, last % h, h - 1)
  low = lambda v: tf.reduce_min(tf.where(ones, v, tf.int32.max), axis=-1)
  high = lambda v: tf.reduce_max(tf.where(ones, v, -1), axis=-1)
  return tf.stack([low(col0), high(col1), low(row0), high(row1)], axis=-1)


def _in_boxes(xs, ys, boxes):
  """[B,N] bool: pixel (xs, ys) lies in its image's box ([B,4] from region_boxes)."""
  b = [boxes[:, i, None] for i in range(4)]
  return (xs >= b[0]) & (xs <= b[1]) & (ys >= b[2]) & (ys <= b[3])


def rle_lookup(counts: tf.Tensor, candidate: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
  """Whether pixels of each image lie inside its region given as column-major run lengths.

  A binary search over the run ends for the candidate pixels only (those inside the regions' bounding
  box: on COCO ~13% of a crop's grid pixels; the search costs ~30 ns per pixel in TF): no H×W mask is
  ever built. All candidates of the batch go through one search of one sorted sequence, image b's run
  ends offset by b·S (S above every image's pixel count).

  Args:
    counts: [B,C] int32 run lengths (0-runs and 1-runs alternating, starting with 0s) covering the H·W
      pixels, zero-padded at the end (all zeros: no region); C > 0.
    candidate: [B,N] bool, the pixels to look up (the others are reported outside).
    index: [B,N] int32 column-major pixel indices x·H + y (in the image).

  Returns:
    [B,N] bool.
  """
  where = tf.where(candidate)  # [M,2] (b, n)
  b = where[:, 0]
  pixel = tf.cast(tf.gather_nd(index, where), tf.int64)
  ends = tf.cumsum(tf.cast(counts, tf.int64), axis=-1)
  total = ends[:, -1]
  stride = tf.reduce_max(total) + 1
  sequence = ends + tf.range(tf.shape(ends, out_type=tf.int64)[0])[:, None] * stride
  run = tf.searchsorted(tf.reshape(sequence, [1, -1]), (pixel + b * stride)[None], side='right',
                        out_type=tf.int64)[0]
  run -= b * tf.shape(counts, out_type=tf.int64)[1]
  # Zero padding repeats the last end (H·W, beyond every pixel) and leaves `run` alone.
  hit = tf.equal(run % 2, 1) & (pixel < tf.gather(total, b))
  # Back to the grid: a segment max (TF's scatter_nd measured 2x slower here).
  shape = tf.shape(index, out_type=tf.int64)
  ignored = tf.math.unsorted_segment_max(tf.cast(hit, tf.int32), b * shape[1] + where[:, 1],
                                         shape[0] * shape[1])
  return tf.reshape(ignored > 0, shape)


def ignored_pixels(counts: tf.Tensor, image_hw: tf.Tensor, xs: tf.Tensor, ys: tf.Tensor) -> tf.Tensor:
  """[B,N] bool: pixel (xs, ys [B,N]) of image b (image_hw [B,2]) lies in its regions (counts [B,C])."""
  counts = tf.cast(counts, tf.int32)
  h = tf.cast(image_hw[:, :1], tf.int32)
  return rle_lookup(counts, _in_boxes(xs, ys, region_boxes(counts, h[:, 0])), xs * h + ys)


def _mask_grid(matrix, image_hw, flip, boxes, res: int):
  """Per mask-grid pixel: inside the warped image (bilinear coverage > 0.5), and its nearest pixel.

  The coverage of an axis is the weight of the bilinear taps that land inside [0, n): min(s + 1, n − s)
  clipped to [0, 1], the same float32 values as summing the two tap weights of `_axis_taps`.

  Returns:
    (inside [B,R²] bool, candidate [B,R²] bool: the nearest pixel is in the regions' box ([B,4] boxes),
     index [B,R²] int32 column-major x·H + y of the nearest in-image pixel).
  """
  sx, sy = _coordinates(matrix, tf.zeros(tf.shape(image_hw), tf.float32), res, res, flip)  # [B,R²]
  hw = tf.cast(image_hw, tf.float32)
  h, w = hw[:, :1], hw[:, 1:]
  cover = lambda s, n: tf.clip_by_value(tf.minimum(s + 1.0, n - s), 0.0, 1.0)
  inside = cover(sx, w) * cover(sy, h) > 0.5
  xs = tf.cast(tf.floor(tf.clip_by_value(sx + 0.5, 0.0, w - 1.0)), tf.int32)
  ys = tf.cast(tf.floor(tf.clip_by_value(sy + 0.5, 0.0, h - 1.0)), tf.int32)
  return inside, _in_boxes(xs, ys, boxes), xs * image_hw[:, :1] + ys


def _mask_inside(matrix, image_hw, flip, res: int):
  return _mask_grid(matrix, image_hw, flip, tf.zeros([1, 4], tf.int32), res)[0]


def keep_masks(ignore_rle: tf.Tensor, image_hw: tf.Tensor, matrices: Sequence[tf.Tensor],
               sizes: Sequence[int], flip: tf.Tensor, mask_outside: bool = True) -> list:
  """The authors' mask targets for a batch: (1 − ignore) warped to R×R (zero border), flipped, > 0.5.

  The image border part is exact: the bilinear warp of the all-ones mask (its coverage) > 0.5. Inside the
  image, ignore regions are read at the nearest pixel: thresholding a bilinear sample of a binary mask
  at 0.5 is the nearest-pixel value except next to region corners, and one lookup per grid pixel is 4x
  cheaper than four (the fixtures differ from the authors' masks on ≤ 0.2% of pixels, all on region
  edges). The per-pixel arithmetic is one XLA program per batch shape.

  Regions are looked up once, on the finest grid: the grids of one crop are the same square at
  resolutions R_s, so the matrices differ by the factor f = R_max / R_s in their first two rows (powers
  of two, exact in floating point), and pixel (i, j) of grid s samples the same image point as pixel
  (f·i, f·j) of the finest grid, or (f·i, f·j + f − 1) when flipped: its nearest pixel, hence its lookup,
  is bit-identical. Other sizes (f not a power of two) are looked up on their own.

  Args:
    ignore_rle: [B,C] column-major run lengths of the ignored pixels (records.py), zero-padded; C = 0:
      no regions in the batch.
    image_hw: [B,2] image (H, W).
    matrices: per size, [B,2,3] image → grid affines.
    sizes: the grid sizes R_s.
    flip: [B] bool, reverse the columns.
    mask_outside: the authors' rule, pixels outside the warped image are not used. False supervises them
      (target 0 there): the network then learns that the black border, which the test-time path also
      pads with, holds no joint (ignore regions still apply, read at the nearest image pixel).

  Returns:
    One [B,R_s,R_s] float32 in {0, 1} per size, 1 = use.
  """
  image_hw = tf.cast(image_hw, tf.int32)
  flip = tf.cast(flip, tf.bool)
  has_regions = tf.size(ignore_rle) > 0
  counts = tf.cast(ignore_rle, tf.int32)
  boxes = tf.cond(has_regions, lambda: region_boxes(counts, image_hw[:, 0]),
                  lambda: tf.tile(tf.constant([[1, 0, 1, 0]]), [tf.shape(image_hw)[0], 1]))  # empty boxes
  finest = max(sizes)
  ignored_finest = None
  masks = {}
  for matrix, res in sorted(zip(matrices, sizes), key=lambda t: -t[1]):
    factor = finest // res
    # Only power-of-two factors: scaling by them is exact in floating point, so the positions match.
    if ignored_finest is not None and factor * res == finest and factor & (factor - 1) == 0:
      inside = call_compiled(_mask_inside, {'res': res}, matrix, image_hw, flip)
      grid = tf.reshape(ignored_finest, [-1, finest, finest])[:, ::factor]
      ignored = tf.where(flip[:, None, None], grid[:, :, factor - 1::factor], grid[:, :, ::factor])
      ignored = tf.reshape(ignored, [-1, res * res])
    else:
      inside, candidate, index = call_compiled(_mask_grid, {'res': res}, matrix, image_hw, flip, boxes)
      ignored = tf.cond(has_regions, lambda: rle_lookup(counts, candidate, index),
                        lambda: tf.zeros_like(inside))
      if res == finest:
        ignored_finest = ignored
    if not mask_outside:
      inside = tf.ones_like(inside)
    masks[res] = tf.reshape(tf.cast(inside & ~ignored, tf.float32), [-1, res, res])
  return [masks[r] for r in sizes]
