"""Keypoint-set metadata as data: joint names, flip index, OKS sigmas, skeleton, grouping order.

A new keypoint set (a custom dataset) is one more `KeypointSet` entry in `KEYPOINT_SETS`; nothing else in
the library branches on the dataset name. Values follow the reference spec sections (b), (e).6 and (f).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence, Tuple, Union

import numpy as np

# The authors' DATASET.MAX_NUM_PEOPLE: tag-loss joints are packed for at most this many people per image,
# and the decoder matches candidates against at most this many people (spec b, e.5).
MAX_PEOPLE = 30


@dataclasses.dataclass(frozen=True)
class KeypointSet:
  """Everything the library needs to know about one set of joints.

  Attributes:
    name: registry name ('crowdpose', 'coco', ...).
    joint_names: K names, in channel order.
    flip_index: K ints; channel k of a horizontally flipped image is channel flip_index[k] of the original.
    sigmas: K OKS sigmas (already divided by 10, as in the COCO / CrowdPose evaluators).
    skeleton: 0-based joint pairs drawn as limbs.
    joint_order: the order in which the grouping visits joints (a permutation of range(K)).
    oks_scale: 'area' (COCO: object scale² = segment area) or 'bbox' (CrowdPose: w·h·0.53).
    ignore_no_keypoint_persons: build ignore masks from crowd persons and persons without keypoints (COCO).
  """

  name: str
  joint_names: Tuple[str, ...]
  flip_index: Tuple[int, ...]
  sigmas: Tuple[float, ...]
  skeleton: Tuple[Tuple[int, int], ...]
  joint_order: Tuple[int, ...]
  oks_scale: str
  ignore_no_keypoint_persons: bool

  def __post_init__(self):
    k = len(self.joint_names)
    for field in ('flip_index', 'sigmas', 'joint_order'):
      if len(getattr(self, field)) != k:
        raise ValueError(f'{self.name}: {field} has {len(getattr(self, field))} entries, expected {k}')
    if sorted(self.flip_index) != list(range(k)) or sorted(self.joint_order) != list(range(k)):
      raise ValueError(f'{self.name}: flip_index and joint_order must be permutations of range({k})')
    if any(self.flip_index[self.flip_index[i]] != i for i in range(k)):
      raise ValueError(f'{self.name}: flip_index must be an involution')
    if any(not (0 <= a < k and 0 <= b < k) for a, b in self.skeleton):
      raise ValueError(f'{self.name}: skeleton names a joint outside range({k})')
    if self.oks_scale not in ('area', 'bbox'):
      raise ValueError(f'{self.name}: oks_scale must be "area" or "bbox"')

  @property
  def num_keypoints(self) -> int:
    return len(self.joint_names)

  @property
  def sigmas_array(self) -> np.ndarray:
    return np.asarray(self.sigmas, np.float64)


# The authors' grouping reuses the COCO visiting order for every dataset; for CrowdPose only its first 14
# entries are visited. That list is odd for CrowdPose (r_ankle before head, neck last) but it covers each of
# the 14 joints once, and reproducing it verbatim is what makes our grouping equal theirs (spec (e).6).
_COCO_JOINT_ORDER = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)

CROWDPOSE = KeypointSet(
    name='crowdpose',
    joint_names=('left_shoulder', 'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist',
                 'right_wrist', 'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle',
                 'right_ankle', 'head', 'neck'),
    flip_index=(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13),
    sigmas=tuple(s / 10.0 for s in (.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89, .79,
                                    .79)),
    # The CrowdPose json carries COCO's 1-based skeleton (it names joints 15-17, which do not exist), so the
    # limbs are written out here for the 14-joint layout.
    skeleton=((12, 13), (13, 0), (13, 1), (0, 2), (2, 4), (1, 3), (3, 5), (0, 6), (1, 7), (6, 7), (6, 8),
              (8, 10), (7, 9), (9, 11)),
    joint_order=_COCO_JOINT_ORDER[:14],
    oks_scale='bbox',
    ignore_no_keypoint_persons=False,
)

COCO = KeypointSet(
    name='coco',
    joint_names=('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
                 'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist', 'left_hip',
                 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle'),
    flip_index=(0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15),
    sigmas=tuple(s / 10.0 for s in (.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87,
                                    .87, .89, .89)),
    # COCO's own skeleton (categories[0]['skeleton'] of person_keypoints_*.json), converted to 0-based.
    skeleton=((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
              (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)),
    joint_order=_COCO_JOINT_ORDER,
    oks_scale='area',
    ignore_no_keypoint_persons=True,
)

KEYPOINT_SETS = {ks.name: ks for ks in (CROWDPOSE, COCO)}


def get(dataset: Union[str, KeypointSet]) -> KeypointSet:
  """Returns the KeypointSet for a registry name, or the argument itself if it already is one."""
  if isinstance(dataset, KeypointSet):
    return dataset
  try:
    return KEYPOINT_SETS[dataset]
  except KeyError:
    raise ValueError(f'unknown keypoint set {dataset!r}; known: {sorted(KEYPOINT_SETS)}') from None


def for_num_keypoints(num_keypoints: int) -> KeypointSet:
  """The registered set with `num_keypoints` joints (14 → CrowdPose, 17 → COCO)."""
  matches = [ks for ks in KEYPOINT_SETS.values() if ks.num_keypoints == num_keypoints]
  if len(matches) != 1:
    raise ValueError(f'no unique keypoint set with {num_keypoints} joints; pass the set explicitly')
  return matches[0]


def register(keypoint_set: KeypointSet) -> KeypointSet:
  """Adds a custom keypoint set so that it can be named in configs."""
  if keypoint_set.name in KEYPOINT_SETS:
    raise ValueError(f'keypoint set {keypoint_set.name!r} already registered')
  KEYPOINT_SETS[keypoint_set.name] = keypoint_set
  return keypoint_set

