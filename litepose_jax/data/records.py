"""The record format every data source yields, and the plain COCO-format json reader with its checks.

One record per image (NumPy, as returned by `load_coco_json`; the TFDS builders store the same fields with
'image_bytes' (the encoded file) instead of 'image_path'):

  'image_id'        int      the json image id
  'file_name'       str      file name as given in the json
  'image_path'      str      absolute path of the image file (json reader only)
  'height', 'width' int      size from the json (checked against the file header)
  'crowd_index'     float    CrowdPose crowdIndex (-1 when the json has none)
  'keypoints'       [P,K,3] float64  (x, y, v) in image pixels for every annotation of the keypoint category
  'bbox'            [P,4] float32  (x, y, w, h)
  'area'            [P] float32    the json area, else the box area (ranks people when more than 30)
  'iscrowd'         [P] int32
  'num_keypoints'   [P] int32      the json value, else count(v > 0)
  'ignore_rle'      [C] int32      column-major run lengths of the ignore regions (see ignore_regions.py)

Legend: P persons (all annotations of the image, crowd ones included; the pipeline applies the authors'
filter iscrowd == 0 or num_keypoints > 0), K joints, C runs.

Bad input never surfaces as a deep traceback: the reader raises `DataError` naming the file, the image id or
annotation id and the problem, or, with skip_bad_samples, drops the image and counts it in `LoadSummary`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import math
import os
from typing import Any, Mapping, Optional

import numpy as np

from litepose_jax import keypoints as kp_lib
from litepose_jax.data import ignore_regions
from litepose_jax.data import image_files


class DataError(ValueError):
  """Bad dataset input, with a message naming the file and the offending image / annotation."""


@dataclasses.dataclass
class LoadSummary:
  """What loading a dataset kept, removed, skipped and repaired; `line()` is the one-line report."""
  source: str
  num_images: int = 0
  num_persons: int = 0
  removed_without_people: int = 0
  over_max_people: int = 0
  max_people: int = kp_lib.MAX_PEOPLE
  nonfinite_joints: int = 0
  joints_outside_image: int = 0
  other_category_annotations: int = 0
  skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)

  @property
  def num_skipped(self) -> int:
    return sum(self.skipped.values())

  def line(self) -> str:
    parts = [f'{self.source}: {self.num_images} images, {self.num_persons} persons']
    if self.removed_without_people:
      parts.append(f'{self.removed_without_people} images without people removed (as the authors)')
    if self.num_skipped:
      reasons = ', '.join(f'{k}: {v}' for k, v in sorted(self.skipped.items()))
      parts.append(f'skipped {self.num_skipped} bad images ({reasons})')
    if self.over_max_people:
      parts.append(f'{self.over_max_people} images with > {self.max_people} people '
                   f'(tag targets keep the {self.max_people} largest)')
    if self.nonfinite_joints:
      parts.append(f'{self.nonfinite_joints} labelled joints with NaN/inf coordinates set unlabelled')
    if self.joints_outside_image:
      parts.append(f'{self.joints_outside_image} labelled joints outside the image (kept)')
    if self.other_category_annotations:
      parts.append(f'{self.other_category_annotations} annotations of categories without keypoints ignored')
    return '; '.join(parts)

  def to_json(self) -> dict:
    d = dataclasses.asdict(self)
    d['skipped'] = dict(self.skipped)
    return d


def read_json(path: str | os.PathLike) -> Any:
  """json.load with errors that name the file: missing, empty or malformed."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise DataError(f'{path}: annotation file not found')
  if os.path.getsize(path) == 0:
    raise DataError(f'{path}: annotation file is empty (0 bytes)')
  try:
    with open(path, 'rb') as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise DataError(f'{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}') from None
  except UnicodeDecodeError as e:
    raise DataError(f'{path}: not a UTF-8 JSON file ({e.reason})') from None


def keypoint_category_ids(data: Mapping, ann_file: str, keypoint_set: kp_lib.KeypointSet) -> set[int]:
  """Ids of the categories whose 'keypoints' list has K names; raises DataError when there is none."""
  cats = data.get('categories') or []
  with_kp = [c for c in cats if isinstance(c, Mapping) and c.get('keypoints')]
  if not with_kp:
    described = ', '.join(f"id {c.get('id')} {c.get('name')!r}" for c in cats if isinstance(c, Mapping))
    raise DataError(f"{ann_file}: no category has a 'keypoints' list ({described or 'no categories'}); "
                    'a keypoint dataset needs one')
  k = keypoint_set.num_keypoints
  ids = {int(c['id']) for c in with_kp if len(c['keypoints']) == k}
  if not ids:
    c = with_kp[0]
    raise DataError(f"{ann_file}: category id {c.get('id')} {c.get('name')!r} has {len(c['keypoints'])} "
                    f"keypoints but keypoint set {keypoint_set.name!r} has {k}; set config.dataset.keypoints")
  return ids


def _image_entries(data: Mapping, ann_file: str) -> list[Mapping]:
  if not isinstance(data, Mapping) or not isinstance(data.get('images'), list):
    raise DataError(f"{ann_file}: not a COCO-format file (expected an object with an 'images' list)")
  if not isinstance(data.get('annotations', []), list):
    raise DataError(f"{ann_file}: 'annotations' must be a list")
  images, seen = [], set()
  for i, im in enumerate(data['images']):
    missing = [key for key in ('id', 'file_name', 'height', 'width') if not isinstance(im, Mapping)
               or key not in im]
    if missing:
      raise DataError(f'{ann_file}: images[{i}] lacks {missing}')
    if im['id'] in seen:
      raise DataError(f"{ann_file}: duplicate image id {im['id']}")
    seen.add(im['id'])
    images.append(im)
  if not images:
    raise DataError(f'{ann_file}: the file lists no images')
  return images


def _person_arrays(anns: list[Mapping], keypoint_set: kp_lib.KeypointSet, height: int, width: int,
                   summary: LoadSummary) -> dict:
  """Stacks the annotations of one image into the record's person arrays, repairing NaN joints."""
  k = keypoint_set.num_keypoints
  kps = np.asarray([a['keypoints'] for a in anns], np.float64).reshape(len(anns), k, 3)
  labelled = kps[..., 2] > 0
  finite = np.isfinite(kps).all(-1)
  bad = labelled & ~finite
  summary.nonfinite_joints += int(bad.sum())
  kps[~finite | bad] = 0.0  # a joint without a usable position is an unlabelled joint
  labelled = kps[..., 2] > 0
  inside = (kps[..., 0] >= 0) & (kps[..., 1] >= 0) & (kps[..., 0] < width) & (kps[..., 1] < height)
  summary.joints_outside_image += int((labelled & ~inside).sum())
  boxes, areas = [], []
  for a, kp, lab in zip(anns, kps, labelled):
    box = a.get('bbox')
    if not (isinstance(box, (list, tuple)) and len(box) == 4):
      pts = kp[lab, :2]
      box = ([pts[:, 0].min(), pts[:, 1].min(), np.ptp(pts[:, 0]), np.ptp(pts[:, 1])] if len(pts)
             else [0.0, 0.0, 0.0, 0.0])
    boxes.append([float(v) for v in box])
    area = a.get('area')
    areas.append(float(area) if isinstance(area, (int, float)) and math.isfinite(area)
                 else float(boxes[-1][2]) * float(boxes[-1][3]))
  num_kp = [int(a['num_keypoints']) if isinstance(a.get('num_keypoints'), int) else int(lab.sum())
            for a, lab in zip(anns, labelled)]
  return {
      'keypoints': kps,
      'bbox': np.asarray(boxes, np.float32).reshape(-1, 4),
      'area': np.asarray(areas, np.float32),
      'iscrowd': np.asarray([int(bool(a.get('iscrowd', 0))) for a in anns], np.int32),
      'num_keypoints': np.asarray(num_kp, np.int32),
  }


def _check_files(paths: list[str], check_images: bool) -> list[Optional[Any]]:
  """inspect_image for every path (threads: the work is file I/O); BadImageError instances on failure."""
  if not check_images:
    return [None] * len(paths)

  def check(path):
    try:
      return image_files.inspect_image(path)
    except image_files.BadImageError as e:
      return e

  with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
    return list(pool.map(check, paths, chunksize=64))


def load_coco_json(ann_file: str | os.PathLike, image_dir: str | os.PathLike,
                   keypoint_set: kp_lib.KeypointSet | str, *, for_training: bool,
                   skip_bad_samples: bool = False, check_images: bool = True, max_people: int = kp_lib.MAX_PEOPLE,
                   source: Optional[str] = None) -> tuple[list[dict], LoadSummary]:
  """Reads a COCO-format keypoint json and its image folder into records (module docstring).

  Args:
    ann_file: the json (COCO 'images' / 'annotations' / 'categories' layout).
    image_dir: folder that `file_name` entries are relative to.
    keypoint_set: the keypoint set (or its name) the category must match.
    for_training: drop images without any annotation (the authors' training filter, spec b).
    skip_bad_samples: drop (and count) images with unreadable files or bad annotations instead of raising.
    check_images: run the header / truncation checks of image_files.py on every image.
    max_people: only counted here (the pipeline keeps the largest `max_people` for the tag targets).
    source: name used in the summary line (default: the json file name).

  Returns:
    (records, summary). Records keep the json order.

  Raises:
    DataError: missing / empty / malformed json, no keypoint category, a category with the wrong number of
      keypoints, or (without skip_bad_samples) a bad image or annotation; the message names file and id.
  """
  ann_file, image_dir = os.fspath(ann_file), os.fspath(image_dir)
  keypoint_set = kp_lib.get(keypoint_set)
  k = keypoint_set.num_keypoints
  data = read_json(ann_file)
  images = _image_entries(data, ann_file)
  cat_ids = keypoint_category_ids(data, ann_file, keypoint_set)
  summary = LoadSummary(source=source or os.path.basename(ann_file), max_people=max_people)

  by_image = collections.defaultdict(list)
  any_annotation = set()
  for i, a in enumerate(data.get('annotations', [])):
    if not isinstance(a, Mapping) or 'image_id' not in a:
      raise DataError(f'{ann_file}: annotations[{i}] is not an object with an image_id')
    any_annotation.add(a['image_id'])
    if a.get('category_id', next(iter(cat_ids))) not in cat_ids:
      summary.other_category_annotations += 1
      continue
    by_image[a['image_id']].append(a)

  def fail(reason: str, message: str) -> None:
    if not skip_bad_samples:
      raise DataError(message + ' (set config.dataset.skip_bad_samples=True to skip such images)')
    summary.skipped[reason] += 1

  paths = [os.path.join(image_dir, im['file_name']) for im in images]
  infos = _check_files(paths, check_images)
  records = []
  for im, path, info in zip(images, paths, infos):
    image_id, anns = im['id'], by_image.get(im['id'], [])
    if for_training and image_id not in any_annotation:
      summary.removed_without_people += 1
      continue
    if isinstance(info, image_files.BadImageError):
      fail(info.reason, f'{info} (image id {image_id})')
      continue
    height, width = int(im['height']), int(im['width'])
    if info is not None and (info.height, info.width) != (height, width):
      fail('size mismatch', f'{path}: file is {info.width}x{info.height} but {ann_file} says '
           f'{width}x{height} (image id {image_id})')
      continue
    wrong = [a for a in anns if not isinstance(a.get('keypoints'), list) or len(a['keypoints']) != 3 * k]
    if wrong:
      a = wrong[0]
      n = len(a['keypoints']) if isinstance(a.get('keypoints'), list) else 'no'
      fail('wrong keypoint count', f"{ann_file}: annotation id {a.get('id')} (image id {image_id}) has "
           f"{n} keypoint values, expected 3*{k} = {3 * k}")
      continue
    try:
      persons = _person_arrays(anns, keypoint_set, height, width, summary)
    except (TypeError, ValueError) as e:
      fail('bad annotation', f'{ann_file}: image id {image_id}: unreadable keypoints / bbox ({e})')
      continue
    ignored = ([a for a, n in zip(anns, persons['num_keypoints']) if a.get('iscrowd') or n == 0]
               if keypoint_set.ignore_no_keypoint_persons else [])
    try:
      rle = ignore_regions.ignore_rle(ignored, height, width)
    except Exception as e:  # pycocotools raises bare Exceptions on broken segmentations
      fail('bad segmentation', f'{ann_file}: image id {image_id}: cannot rasterise segmentation ({e})')
      continue
    used = (persons['iscrowd'] == 0) | (persons['num_keypoints'] > 0)
    summary.over_max_people += int(used.sum() > max_people)
    summary.num_persons += int(used.sum())
    records.append({
        'image_id': image_id, 'file_name': im['file_name'], 'image_path': os.path.abspath(path),
        'height': height, 'width': width,
        'crowd_index': float(im.get('crowdIndex', -1.0)), **persons, 'ignore_rle': rle,
    })
  summary.num_images = len(records)
  if not records:
    raise DataError(f'{ann_file}: no usable images ({summary.line()})')
  return records, summary
