"""COCO-format keypoint json: the package's one JSON reader and the one validator of keypoint files.

Training (data/records.py) and evaluation (evaluation/ground_truth.py) both parse through `parse`, so a
file loads for both or fails for both, with the same message. The rules:

  file        missing, empty, malformed or non-UTF-8 JSON: DataError naming the file (`read_json`).
  images      an object with an 'images' list of objects with a unique integer 'id'; readers of the
              image files (training, the eval input) also need 'file_name', 'height', 'width'.
  categories  the keypoint categories are those whose 'keypoints' list has K names (K: the keypoint
              set's; without one, the first such list's length). A file whose categories carry no
              'keypoints' list may hold a single category: it is the keypoint category, and K comes from
              the keypoint set or else from the annotations' most common length. An annotation without
              'category_id' belongs to a keypoint category; those of other categories are ignored (counted).
  annotations objects with an 'image_id'; those of images the file does not list are ignored (as
              pycocotools does). 'keypoints' must be a list of 3·K numbers, else the annotation is bad:
              the error (or, with skip_bad_samples, the skipped image) names the annotation id, its index
              in 'annotations', the image id and the image file.
  NaN joints  a joint with a NaN/inf value is unlabelled (0, 0, 0) and counted; 'num_keypoints' drops by
              the labelled joints so repaired.
  bbox        missing or not 4 finite numbers: the extent of the labelled joints (0-size when none).

Legend (docs/shapes.md): G ground-truth people (annotations) of the file, K joints.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from litepose_jax import keypoints as kp_lib


# Appended to the error of a bad image or annotation when skipping it is possible.
SKIP_HINT = ' (set config.dataset.skip_bad_samples=True to skip such images)'


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
      parts.append(f'{self.other_category_annotations} annotations of other categories ignored')
    return '; '.join(parts)

  def to_json(self) -> dict:
    d = dataclasses.asdict(self)
    d['skipped'] = dict(self.skipped)
    return d


def read_json(path: Union[str, os.PathLike], what: str = 'annotation file') -> Any:
  """json.load with one-line errors that name the file: missing, empty, malformed, not UTF-8."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise DataError(f'{path}: {what} not found')
  if os.path.isdir(path):
    raise DataError(f'{path}: is a directory, expected a JSON {what}')
  if os.path.getsize(path) == 0:
    raise DataError(f'{path}: {what} is empty (0 bytes)')
  try:
    with open(path, 'rb') as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise DataError(f'{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg} '
                    '(truncated or not a JSON file?)') from None
  except UnicodeDecodeError as e:
    raise DataError(f'{path}: not a UTF-8 JSON file ({e.reason})') from None


@dataclasses.dataclass
class KeypointFile:
  """A parsed and checked COCO-format keypoint file (`parse`).

  Attributes:
    source: file name (or '<dict>') for messages.
    data: the parsed json.
    images: the 'images' entries, file order.
    category_ids: the keypoint categories.
    num_keypoints: K.
    annotations: image id → [(index in 'annotations', annotation)] of the keypoint categories, file order.
    annotated_image_ids: images with any annotation, of any category (the authors' training filter).
    other_category_annotations: how many annotations of other categories were ignored.
  """
  source: str
  data: Dict[str, Any]
  images: List[Mapping]
  category_ids: frozenset
  num_keypoints: int
  annotations: Dict[Any, List[Tuple[int, Mapping]]]
  annotated_image_ids: set
  other_category_annotations: int

  def where(self, index: int, ann: Mapping) -> str:
    """'annotation id 7 (annotations[3], image id 5, 5.jpg)': names an annotation in messages."""
    image_id = ann.get('image_id')
    name = self._file_names.get(image_id)
    return (f"annotation id {ann.get('id')} (annotations[{index}], image id {image_id}"
            f"{', ' + str(name) if name else ''})")

  def keypoint_count_error(self, items: List[Tuple[int, Mapping]]) -> Optional[str]:
    """The message for the first annotation of `items` whose 'keypoints' is not a list of 3·K values."""
    k = self.num_keypoints
    for index, ann in items:
      kps = ann.get('keypoints')
      if not isinstance(kps, list) or len(kps) != 3 * k or k == 0:
        n = len(kps) if isinstance(kps, list) else 'no'
        return f'{self.source}: {self.where(index, ann)} has {n} keypoint values, expected 3*{k} = {3 * k}'
    return None

  def __post_init__(self):
    self._file_names = {im['id']: im.get('file_name') for im in self.images}


def _check_images(data: Any, source: str, need_files: bool) -> List[Mapping]:
  if not isinstance(data, dict) or not isinstance(data.get('images'), list):
    raise DataError(f"{source}: not a COCO-format file (expected an object with an 'images' list)")
  if not isinstance(data.get('annotations', []), list):
    raise DataError(f"{source}: 'annotations' must be a list")
  required = ('id', 'file_name', 'height', 'width') if need_files else ('id',)
  seen = set()
  for i, im in enumerate(data['images']):
    missing = [key for key in required if not isinstance(im, dict) or key not in im]
    if missing:
      raise DataError(f'{source}: images[{i}] lacks {missing}')
    if not isinstance(im['id'], int) or isinstance(im['id'], bool):
      raise DataError(f"{source}: images[{i}] has id {im['id']!r}, expected an integer")
    if im['id'] in seen:
      raise DataError(f"{source}: duplicate image id {im['id']}")
    seen.add(im['id'])
  if not data['images']:
    raise DataError(f'{source}: the file lists no images')
  return list(data['images'])


def keypoint_categories(data: Mapping, source: str,
                        keypoint_set: Optional[kp_lib.KeypointSet] = None) -> Tuple[frozenset, Optional[int]]:
  """(ids of the keypoint categories, K or None when only the annotations can tell); see the module doc."""
  cats = data.get('categories') or []
  if not isinstance(cats, list):
    raise DataError(f"{source}: 'categories' must be a list")
  cats = [c for c in cats if isinstance(c, dict)]
  for i, c in enumerate(cats):
    if not isinstance(c.get('id'), int):
      raise DataError(f"{source}: categories[{i}] has id {c.get('id')!r}, expected an integer")
  with_kp = [c for c in cats if isinstance(c.get('keypoints'), list) and c['keypoints']]
  want = keypoint_set.num_keypoints if keypoint_set is not None else None
  if with_kp:
    k = want if want is not None else len(with_kp[0]['keypoints'])
    ids = frozenset(c['id'] for c in with_kp if len(c['keypoints']) == k)
    if not ids:
      c = with_kp[0]
      raise DataError(f"{source}: category id {c['id']} {c.get('name')!r} has {len(c['keypoints'])} "
                      f"keypoints but keypoint set {keypoint_set.name!r} has {k}; pick the file's keypoint "
                      'set (config.dataset.keypoints, or --dataset for python -m litepose_jax.evaluation)')
    return ids, k
  if len(cats) == 1:
    return frozenset({cats[0]['id']}), want
  described = ', '.join(f"id {c.get('id')} {c.get('name')!r}" for c in cats)
  raise DataError(f"{source}: no category has a 'keypoints' list ({described or 'no categories'}); a "
                  'keypoint file needs one (or a single category)')


def parse(source: Union[str, os.PathLike, Mapping], keypoint_set: Union[kp_lib.KeypointSet, str, None] = None,
          *, need_files: bool = False) -> KeypointFile:
  """Reads (a path) or takes (a parsed dict) a COCO-format keypoint file and checks its layout.

  Args:
    source: json path or parsed dict.
    keypoint_set: the keypoint set the file must match (None: the file's own K).
    need_files: require 'file_name', 'height' and 'width' of every image.

  Returns:
    The KeypointFile. Per-annotation problems (keypoint count, values) are left to the caller, which
    decides between failing and skipping the image (`KeypointFile.keypoint_count_error`, `person_arrays`).

  Raises:
    DataError: unreadable file, not COCO layout, no keypoint category, the keypoint set's K not in it.
  """
  if isinstance(source, Mapping):
    name, data = '<dict>', source
  else:
    name = os.fspath(source)
    data = read_json(name)
  keypoint_set = kp_lib.get(keypoint_set) if keypoint_set is not None else None
  images = _check_images(data, name, need_files)
  ids, k = keypoint_categories(data, name, keypoint_set)
  listed = {im['id'] for im in images}
  default = min(ids)
  by_image = collections.defaultdict(list)
  annotated, others = set(), 0
  for i, a in enumerate(data.get('annotations', [])):
    if not isinstance(a, dict) or 'image_id' not in a:
      raise DataError(f'{name}: annotations[{i}] is not an object with an image_id')
    annotated.add(a['image_id'])
    if a.get('category_id', default) not in ids:
      others += 1
    elif a['image_id'] in listed:
      by_image[a['image_id']].append((i, a))
  if k is None:   # no keypoint names anywhere: the annotations' most common length
    lengths = collections.Counter(len(a['keypoints']) for items in by_image.values() for _, a in items
                                  if isinstance(a.get('keypoints'), list) and len(a['keypoints']) % 3 == 0)
    k = lengths.most_common(1)[0][0] // 3 if lengths else 0
  return KeypointFile(name, data, images, ids, k, dict(by_image), annotated, others)


@dataclasses.dataclass
class Persons:
  """A list of annotations stacked (G people, K joints), NaN joints repaired (module doc).

  keypoints [G,K,3] float64; bbox [G,4] float64 (x, y, w, h); area [G] float64 (NaN where the json has
  none); iscrowd [G] bool; num_keypoints [G] int64; repaired [G] int64 labelled joints set unlabelled;
  rebuilt_bbox [G] bool: the bbox is the joints' extent.
  """
  keypoints: np.ndarray
  bbox: np.ndarray
  area: np.ndarray
  iscrowd: np.ndarray
  num_keypoints: np.ndarray
  repaired: np.ndarray
  rebuilt_bbox: np.ndarray


def _floats(kf: KeypointFile, items: List[Tuple[int, Mapping]]) -> np.ndarray:
  k = kf.num_keypoints
  try:
    return np.asarray([a['keypoints'] for _, a in items], np.float64).reshape(len(items), k, 3)
  except (TypeError, ValueError):
    for index, a in items:   # blame the annotation
      try:
        np.asarray(a['keypoints'], np.float64)
      except (TypeError, ValueError) as e:
        raise DataError(f'{kf.source}: {kf.where(index, a)}: keypoints must be numbers ({e})') from None
    raise


def _boxes(raw: list) -> np.ndarray:
  """[G,4] float64 boxes; NaN rows where a bbox is missing or not 4 numbers."""
  try:
    boxes = np.asarray(raw, np.float64)
    if boxes.shape == (len(raw), 4):
      return boxes
  except (TypeError, ValueError):
    pass
  boxes = np.full((len(raw), 4), np.nan)
  for i, box in enumerate(raw):
    try:
      boxes[i] = np.asarray(box, np.float64).reshape(4)
    except (TypeError, ValueError):
      pass
  return boxes


def person_arrays(kf: KeypointFile, items: List[Tuple[int, Mapping]]) -> Persons:
  """Stacks annotations whose keypoint count was checked (`keypoint_count_error`) into Persons.

  Raises:
    DataError: a keypoint value is not a number (the message names the annotation).
  """
  kps = _floats(kf, items)
  finite = np.isfinite(kps).all(-1)   # [G,K]
  labelled = np.nan_to_num(kps[..., 2]) > 0
  repaired = (labelled & ~finite).sum(-1)
  kps[~finite] = 0.0   # a joint without a usable position is an unlabelled joint
  labelled = kps[..., 2] > 0
  boxes = _boxes([a.get('bbox') for _, a in items])
  rebuilt = ~np.isfinite(boxes).all(-1)
  for i in np.flatnonzero(rebuilt):   # the labelled joints' extent
    pts = kps[i][labelled[i], :2]
    boxes[i] = ([pts[:, 0].min(), pts[:, 1].min(), np.ptp(pts[:, 0]), np.ptp(pts[:, 1])] if len(pts)
                else [0.0, 0.0, 0.0, 0.0])
  areas = [float(a['area']) if isinstance(a.get('area'), (int, float)) and math.isfinite(a['area'])
           else math.nan for _, a in items]
  num_kp = [max(0, a['num_keypoints'] - int(r)) if isinstance(a.get('num_keypoints'), int) else int(n)
            for (_, a), r, n in zip(items, repaired, labelled.sum(-1))]
  return Persons(
      keypoints=kps,
      bbox=boxes,
      area=np.asarray(areas, np.float64),
      iscrowd=np.asarray([bool(a.get('iscrowd', 0)) for _, a in items], bool),
      num_keypoints=np.asarray(num_kp, np.int64),
      repaired=np.asarray(repaired, np.int64).reshape(-1),
      rebuilt_bbox=rebuilt,
  )
