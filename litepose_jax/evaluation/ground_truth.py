"""COCO-format keypoint ground truth → flat NumPy arrays, validated once (and reusable across evaluations).

People are stored image by image (images in ascending id order, people in file order inside an image):
that is the order pycocotools visits them, and the order decides which GT wins an OKS tie.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Optional, Union

import numpy as np

from litepose_jax import keypoints as kp_lib
from litepose_jax.data import coco_format

GtSource = Union[str, os.PathLike, Dict[str, Any], 'GroundTruth']


@dataclasses.dataclass(frozen=True)
class GroundTruth:
  """Keypoint ground truth of one COCO-format file (G people over the images, K joints).

  Attributes:
    source: file name (or '<dict>'), used in error messages.
    dataset: the parsed json (kept for the pycocotools backend).
    category_id: the person category evaluated.
    image_ids: [I] int64, ascending.
    crowd_index: [I] float64 `crowdIndex` of each image, or None when any image lacks it.
    image_index: [G] int64 index into image_ids, non-decreasing.
    ann_ids: [G] int64 annotation ids.
    keypoints: [G, K, 3] float64 (x, y, v).
    bbox: [G, 4] float64 (x, y, w, h).
    area: [G] float64 segment area, or None when any person lacks 'area'.
    iscrowd: [G] bool.
    ignore: [G] bool; iscrowd or num_keypoints == 0 (pycocotools / crowdposetools rule).
    summary: what loading left out and repaired (`summary.line()`: the training reader's one-line report).
  """
  source: str
  dataset: Dict[str, Any]
  category_id: int
  image_ids: np.ndarray
  crowd_index: Optional[np.ndarray]
  image_index: np.ndarray
  ann_ids: np.ndarray
  keypoints: np.ndarray
  bbox: np.ndarray
  area: Optional[np.ndarray]
  iscrowd: np.ndarray
  ignore: np.ndarray
  summary: Optional[coco_format.LoadSummary] = None

  @property
  def num_keypoints(self) -> int:
    return self.keypoints.shape[1]

  def index_of_images(self, image_ids: np.ndarray) -> np.ndarray:
    """Positions of `image_ids` in `self.image_ids`; -1 for ids not in the GT."""
    image_ids = np.asarray(image_ids, np.int64)
    if not len(self.image_ids):
      return np.full(image_ids.shape, -1, np.int64)
    pos = np.minimum(np.searchsorted(self.image_ids, image_ids), len(self.image_ids) - 1)
    found = self.image_ids[pos] == image_ids
    return np.where(found, pos, -1)


def load_ground_truth(gt: GtSource, keypoint_set: Union[str, kp_lib.KeypointSet, None] = None, *,
                      skip_bad_samples: bool = False) -> GroundTruth:
  """Reads and validates keypoint ground truth with the training reader's rules (data/coco_format.py).

  Args:
    gt: a COCO-format json path, an already parsed dict, or a GroundTruth (returned as is).
    keypoint_set: the keypoint set the file must match (None: the file's own joint count).
    skip_bad_samples: leave out (and count in `summary`) the images with a bad annotation instead of
      raising, as the training reader does.

  Returns:
    The GroundTruth arrays. Annotations of other categories, or of images missing from 'images', are left
    out (as pycocotools does); joints with NaN/inf values are unlabelled; 'iscrowd' defaults to 0,
    'num_keypoints' to the count of labelled joints, a missing bbox to the labelled joints' extent.

  Raises:
    coco_format.DataError (a ValueError): the file is not COCO keypoint ground truth (the message names the
      file and the annotation).
  """
  if isinstance(gt, GroundTruth):
    return gt
  kf = coco_format.parse(gt, keypoint_set)
  summary = coco_format.LoadSummary(source=kf.source,
                                    other_category_annotations=kf.other_category_annotations)
  groups = []   # (image, its annotations), ascending image id: people are stored image by image
  for im in sorted(kf.images, key=lambda im: im['id']):
    image_items = kf.annotations.get(im['id'], [])
    error = kf.keypoint_count_error(image_items)
    if error is None:
      groups.append((im, image_items))
    elif skip_bad_samples:
      summary.skipped['wrong keypoint count'] += 1
    else:
      raise coco_format.DataError(error + coco_format.SKIP_HINT)

  def stack(groups):
    return coco_format.person_arrays(kf, [item for _, image_items in groups for item in image_items])

  try:
    persons = stack(groups)
  except coco_format.DataError as e:   # a value that is not a number: fail, or drop its image
    if not skip_bad_samples:
      raise coco_format.DataError(str(e) + coco_format.SKIP_HINT) from None
    good = []
    for group in groups:
      try:
        stack([group])
        good.append(group)
      except coco_format.DataError:
        summary.skipped['bad annotation'] += 1
    groups, persons = good, stack(good)
  if not groups:
    raise coco_format.DataError(f'{kf.source}: no usable images ({summary.line()})')
  kept_images = [im for im, _ in groups]
  items = [item for _, image_items in groups for item in image_items]
  image_ids = np.array([im['id'] for im in kept_images], np.int64)
  crowd_index = None
  if all(im.get('crowdIndex') is not None for im in kept_images):
    crowd_index = np.array([float(im['crowdIndex']) for im in kept_images], np.float64)
  summary.num_images = len(kept_images)
  summary.num_persons = int(np.count_nonzero(~persons.iscrowd | (persons.num_keypoints > 0)))
  summary.nonfinite_joints = int(persons.repaired.sum())
  dataset, category_id = kf.data, min(kf.category_ids)
  pooled = len(kf.category_ids) > 1   # several keypoint categories are evaluated as one
  if persons.repaired.any() or persons.rebuilt_bbox.any() or summary.num_skipped or pooled:
    # What pycocotools (the cross-check backend) reads must hold the same images, people and repairs.
    anns = [dict(a, keypoints=kp.reshape(-1).tolist(), num_keypoints=int(n), bbox=box.tolist(),
                 category_id=category_id) if repaired or rebuilt or pooled else a
            for (_, a), kp, n, box, repaired, rebuilt in zip(items, persons.keypoints, persons.num_keypoints,
                                                          persons.bbox, persons.repaired, persons.rebuilt_bbox)]
    dataset = dict(kf.data, images=kept_images, annotations=anns)
  return GroundTruth(
      source=kf.source,
      dataset=dataset,
      category_id=category_id,
      image_ids=image_ids,
      crowd_index=crowd_index,
      image_index=np.searchsorted(image_ids, [a['image_id'] for _, a in items]).astype(np.int64),
      ann_ids=np.array([a.get('id', n) for n, a in items], np.int64),
      keypoints=persons.keypoints,
      bbox=persons.bbox,
      area=None if np.isnan(persons.area).any() else persons.area,
      iscrowd=persons.iscrowd,
      ignore=persons.iscrowd | (persons.num_keypoints == 0),
      summary=summary,
  )
