"""The record format every data source yields, and the COCO-format json reader (checks: coco_format.py).

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
  'num_keypoints'   [P] int32      the json value (less NaN joints), else count(v > 0)
  'ignore_rle'      [C] int32      column-major run lengths of the ignore regions (see ignore_regions.py)

Legend: P persons (all annotations of the image, crowd ones included; the pipeline applies the authors'
filter iscrowd == 0 or num_keypoints > 0), K joints, C runs.

Bad input never surfaces as a deep traceback: the reader raises `DataError` naming the file, the image id or
annotation id and the problem, or, with skip_bad_samples, drops the image and counts it in `LoadSummary`.
"""

from __future__ import annotations

import concurrent.futures
import os
from typing import Any, Optional

import numpy as np

from litepose_jax import keypoints as kp_lib
from litepose_jax.data import coco_format
from litepose_jax.data import ignore_regions
from litepose_jax.data import image_files


# The reader's checks and errors are the package's one COCO-format validator (coco_format.py); re-exported.
DataError = coco_format.DataError
LoadSummary = coco_format.LoadSummary
read_json = coco_format.read_json


def _person_arrays(kf: coco_format.KeypointFile, items: list, height: int, width: int,
                   summary: LoadSummary) -> dict:
  """The record's person arrays of one image's annotations (NaN joints repaired, coco_format.py)."""
  persons = coco_format.person_arrays(kf, items)
  summary.nonfinite_joints += int(persons.repaired.sum())
  kps = persons.keypoints
  labelled = kps[..., 2] > 0
  inside = (kps[..., 0] >= 0) & (kps[..., 1] >= 0) & (kps[..., 0] < width) & (kps[..., 1] < height)
  summary.joints_outside_image += int((labelled & ~inside).sum())
  box_area = persons.bbox[:, 2] * persons.bbox[:, 3]
  return {
      'keypoints': kps,
      'bbox': persons.bbox.astype(np.float32),
      'area': np.where(np.isnan(persons.area), box_area, persons.area).astype(np.float32),
      'iscrowd': persons.iscrowd.astype(np.int32),
      'num_keypoints': persons.num_keypoints.astype(np.int32),
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
  kf = coco_format.parse(ann_file, keypoint_set, need_files=True)
  images = kf.images
  summary = LoadSummary(source=source or os.path.basename(ann_file), max_people=max_people,
                        other_category_annotations=kf.other_category_annotations)

  def fail(reason: str, message: str) -> None:
    if not skip_bad_samples:
      raise DataError(message + coco_format.SKIP_HINT)
    summary.skipped[reason] += 1

  paths = [os.path.join(image_dir, im['file_name']) for im in images]
  infos = _check_files(paths, check_images)
  records = []
  for im, path, info in zip(images, paths, infos):
    image_id, items = im['id'], kf.annotations.get(im['id'], [])
    if for_training and image_id not in kf.annotated_image_ids:
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
    wrong = kf.keypoint_count_error(items)
    if wrong:
      fail('wrong keypoint count', wrong)
      continue
    try:
      persons = _person_arrays(kf, items, height, width, summary)
    except DataError as e:
      fail('bad annotation', str(e))
      continue
    anns = [a for _, a in items]
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
