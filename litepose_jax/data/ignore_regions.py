"""COCO ignore regions as one run-length encoding per image (spec b, masks).

The authors mask out the union of the segmentations of crowd annotations and of non-crowd annotations with
num_keypoints == 0 (COCO only). We rasterise that union with pycocotools when records are built and store it
as *uncompressed* column-major RLE counts (int32): a few hundred numbers per image instead of an H×W array,
and `transforms.rle_lookup` reads them by binary search inside tf.data, without building the H×W mask.
Images without ignore regions store an empty array.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils


def rle_string_to_counts(encoded: bytes | str) -> np.ndarray:
  """Decodes a COCO compressed RLE string (maskApi.c rleFrString) into plain run lengths.

  Args:
    encoded: the 'counts' string of a compressed RLE.

  Returns:
    [C] int64 run lengths, alternating 0-runs and 1-runs, starting with 0s, column-major order.
  """
  if isinstance(encoded, str):
    encoded = encoded.encode('ascii')
  counts: list[int] = []
  p = 0
  while p < len(encoded):
    x, k, more = 0, 0, True
    while more:
      c = encoded[p] - 48
      x |= (c & 0x1F) << (5 * k)
      more = bool(c & 0x20)
      p += 1
      k += 1
      if not more and (c & 0x10):
        x |= -1 << (5 * k)
    if len(counts) > 2:
      x += counts[-2]  # runs after the second are stored as differences to the run two back
    counts.append(x)
  return np.asarray(counts, np.int64)


def _annotation_rles(ann: Mapping, height: int, width: int) -> list:
  """The pycocotools RLEs of one annotation's segmentation (its bbox when it has none)."""
  segm = ann.get('segmentation')
  if isinstance(segm, dict):  # RLE, compressed or not
    if isinstance(segm.get('counts'), list):
      return [mask_utils.frPyObjects(segm, height, width)]
    return [segm]
  polygons = [p for p in (segm or []) if len(p) >= 6]
  if not polygons:
    # Custom datasets often have no segmentation; fall back to the box so the person is still ignored.
    bbox = ann.get('bbox')
    if not bbox or len(bbox) != 4:
      return []
    x, y, w, h = (float(v) for v in bbox)
    polygons = [[x, y, x + w, y, x + w, y + h, x, y + h]]
  return list(mask_utils.frPyObjects(polygons, height, width))


def ignore_rle(annotations: Sequence[Mapping], height: int, width: int) -> np.ndarray:
  """Run lengths of the union of the segmentations of `annotations` (the regions to ignore).

  Args:
    annotations: COCO annotation dicts whose area should be masked out of the loss.
    height: image height in pixels.
    width: image width in pixels.

  Returns:
    [C] int32 column-major run lengths summing to height·width; empty when nothing is ignored.
  """
  rles = [r for ann in annotations for r in _annotation_rles(ann, height, width)]
  if not rles:
    return np.zeros([0], np.int32)
  merged = mask_utils.merge(rles, intersect=False) if len(rles) > 1 else rles[0]
  counts = rle_string_to_counts(merged['counts'])
  if counts.sum() != height * width:
    raise ValueError(f'ignore-region RLE covers {counts.sum()} pixels, expected {height}x{width}')
  return counts.astype(np.int32)


def rle_from_mask(mask: np.ndarray) -> np.ndarray:
  """[H,W] NumPy mask (nonzero = inside) → column-major run lengths, the records' 'ignore_rle' format."""
  flat = (np.asarray(mask) != 0).reshape(-1, order='F').astype(np.int8)
  if not flat.any():
    return np.zeros([0], np.int32)
  change = np.flatnonzero(np.diff(flat)) + 1
  bounds = np.concatenate([[0], change, [flat.size]])
  runs = np.diff(bounds)
  if flat[0]:
    runs = np.concatenate([[0], runs])  # RLE starts with a (here empty) run of zeros
  return runs.astype(np.int32)
