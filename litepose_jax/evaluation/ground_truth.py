"""COCO-format keypoint ground truth → flat NumPy arrays, validated once (and reusable across evaluations).

People are stored image by image (images in ascending id order, people in file order inside an image):
that is the order pycocotools visits them, and the order decides which GT wins an OKS tie.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Optional, Union

import numpy as np

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


def _person_category(dataset: Dict[str, Any], source: str) -> int:
  """The category whose annotations are evaluated: the only one, or the one with a 'keypoints' list."""
  cats = dataset.get('categories') or []
  if len(cats) == 1:
    return int(cats[0]['id'])
  with_kp = [c for c in cats if c.get('keypoints')]
  if len(with_kp) == 1:
    return int(with_kp[0]['id'])
  cat_ids = {a.get('category_id') for a in dataset['annotations']}
  if len(cat_ids) == 1:
    return int(cat_ids.pop())
  raise ValueError(f'{source}: cannot tell which category holds the keypoint annotations '
                   f'(categories: {[c.get("id") for c in cats]})')


def load_ground_truth(gt: GtSource) -> GroundTruth:
  """Reads and validates keypoint ground truth.

  Args:
    gt: a COCO-format json path, an already parsed dict, or a GroundTruth (returned as is).

  Returns:
    The GroundTruth arrays. Annotations of other categories, or of images missing from 'images', are left
    out (as pycocotools does); 'iscrowd' defaults to 0 and 'num_keypoints' to the count of labelled joints.

  Raises:
    ValueError: the file is not COCO keypoint ground truth (message names the file and the annotation).
  """
  if isinstance(gt, GroundTruth):
    return gt
  if isinstance(gt, dict):
    source, dataset = '<dict>', gt
  else:
    source = os.fspath(gt)
    try:
      with open(source) as f:
        dataset = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise ValueError(f'{source}: cannot read ground-truth json: {e}') from None
  if not isinstance(dataset, dict) or 'images' not in dataset or 'annotations' not in dataset:
    raise ValueError(f'{source}: not COCO-format ground truth (needs "images" and "annotations")')

  try:
    image_ids = np.array(sorted({int(im['id']) for im in dataset['images']}), np.int64)
  except (KeyError, TypeError, ValueError):
    raise ValueError(f'{source}: every entry of "images" needs an integer "id"') from None
  crowd = {int(im['id']): im.get('crowdIndex') for im in dataset['images']}
  crowd_index = None
  if all(crowd[i] is not None for i in image_ids.tolist()):
    crowd_index = np.array([float(crowd[i]) for i in image_ids.tolist()], np.float64)

  category_id = _person_category(dataset, source)
  anns = [a for a in dataset['annotations'] if a.get('category_id', category_id) == category_id]
  try:
    ann_images = np.array([int(a['image_id']) for a in anns], np.int64)
  except (KeyError, TypeError, ValueError):
    raise ValueError(f'{source}: every annotation needs an integer "image_id"') from None
  listed = np.isin(ann_images, image_ids)  # pycocotools only visits annotations of listed images
  anns = [a for a, k in zip(anns, listed.tolist()) if k]
  ann_images = ann_images[listed]
  cat = [c for c in dataset.get('categories') or [] if c.get('id') == category_id]
  num_k = len(anns[0].get('keypoints') or []) // 3 if anns else (
      len(cat[0].get('keypoints') or []) if cat else 0)
  # Cheap per-annotation checks in Python, then one conversion of everything.
  for n, a in enumerate(anns):
    where = f'{source}: annotation #{n} of category {category_id} (id {a.get("id")})'
    for key in ('keypoints', 'bbox'):
      if key not in a:
        raise ValueError(f'{where}: missing "{key}"')
    if len(a['keypoints']) != 3 * num_k or num_k == 0:
      raise ValueError(f'{where}: "keypoints" has {len(a["keypoints"])} values, expected {3 * num_k} '
                       f'(the first annotation has {num_k} joints x 3)')
    if len(a['bbox']) != 4:
      raise ValueError(f'{where}: "bbox" must be [x, y, w, h], got {a["bbox"]!r}')
  try:
    keypoints = np.array([a['keypoints'] for a in anns], np.float64).reshape(len(anns), num_k, 3)
    bbox = np.array([a['bbox'] for a in anns], np.float64).reshape(len(anns), 4)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{source}: keypoints and bbox must be numbers: {e}') from None
  bad = ~(np.isfinite(keypoints).all((1, 2)) & np.isfinite(bbox).all(1))
  if bad.any():
    n = int(np.argmax(bad))
    raise ValueError(f'{source}: annotation #{n} (id {anns[n].get("id")}): non-finite keypoints or bbox')
  num_labelled = np.count_nonzero(keypoints[:, :, 2] > 0, axis=1)
  num_kp = np.array([a.get('num_keypoints', m) for a, m in zip(anns, num_labelled.tolist())], np.int64)
  iscrowd = np.array([bool(a.get('iscrowd', 0)) for a in anns], bool)
  areas = [a.get('area') for a in anns]

  image_index = np.searchsorted(image_ids, ann_images)
  order = np.argsort(image_index, kind='stable')
  return GroundTruth(
      source=source,
      dataset=dataset,
      category_id=category_id,
      image_ids=image_ids,
      crowd_index=crowd_index,
      image_index=image_index[order].astype(np.int64),
      ann_ids=np.array([a.get('id', n) for n, a in enumerate(anns)], np.int64)[order],
      keypoints=keypoints[order],
      bbox=bbox[order],
      area=None if any(x is None for x in areas) else np.array(areas, np.float64)[order],
      iscrowd=iscrowd[order],
      ignore=(iscrowd | (num_kp == 0))[order],
  )
