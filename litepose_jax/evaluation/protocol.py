"""Evaluation protocols as data: thresholds, area ranges, crowd-index bins and the stat names they yield.

A protocol says *which* numbers a dataset reports; the OKS sigmas and the object scale come from the
`KeypointSet` (`sigmas`, `oks_scale`). Nothing else in the evaluator branches on a dataset name: a new
dataset registers a `Protocol` here (or passes one to the evaluator).

Reference (spec section (f)): COCO keypoints (pycocotools `Params.setKpParams`) and CrowdPose
(crowdposetools / xtcocotools 'keypoints_crowd' with use_area=False, `get_type_result(0.2, 0.8)`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Tuple, Union

import numpy as np

from litepose_jax import keypoints as kp_lib

# Built exactly as pycocotools does (np.linspace, not arange: arange drifts above the true values, and
# the AP50 / AP75 stats are looked up by exact equality).
OKS_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)

# pycocotools' "all" range: [0², 1e5²].
_ALL = (0.0, 1e5**2)


@dataclasses.dataclass(frozen=True)
class AreaRange:
  """GT objects whose area lies outside [low, high] are ignored (and so are unmatched detections).

  Attributes:
    name: pycocotools label ('all', 'medium', 'large').
    low, high: inclusive bounds on the object area (pixels²).
    suffix: stat-name suffix: '' for 'all' (AP, AP50, AP75, AR, AR50, AR75), else APm / ARm style.
  """
  name: str
  low: float
  high: float
  suffix: str


@dataclasses.dataclass(frozen=True)
class CrowdIndexBin:
  """Images with low <= crowdIndex < high form one subset; its stat is 'AP_<name>'."""
  name: str
  low: float
  high: float


@dataclasses.dataclass(frozen=True)
class Protocol:
  """How AP/AR are computed and reported for one dataset.

  Attributes:
    area_ranges: the first must be the 'all' range (suffix ''); the others add AP<suffix>, AR<suffix>.
    crowd_index_bins: image subsets by the GT image's `crowdIndex`; each adds 'AP_<name>', the mean of the
      whole precision array (all OKS thresholds and recall points, area 'all') over that subset.
    max_dets: detections kept per image, highest scores first.
    bbox_area_factor: object scale² = GT bbox w·h·factor when the keypoint set's oks_scale is 'bbox'
      (CrowdPose: 0.53, xtcocotools use_area=False / crowdposetools).
  """
  area_ranges: Tuple[AreaRange, ...] = (AreaRange('all', *_ALL, ''),)
  crowd_index_bins: Tuple[CrowdIndexBin, ...] = ()
  max_dets: int = 20
  bbox_area_factor: float = 0.53

  def __post_init__(self):
    if not self.area_ranges or self.area_ranges[0].suffix != '':
      raise ValueError('Protocol.area_ranges[0] must be the "all" range with suffix ""')
    if len({r.suffix for r in self.area_ranges}) != len(self.area_ranges):
      raise ValueError('Protocol.area_ranges need distinct suffixes')
    if self.max_dets < 1:
      raise ValueError(f'Protocol.max_dets must be >= 1, got {self.max_dets}')

  def metric_names(self) -> List[str]:
    """Names of the stats `compute()` returns, in report order."""
    names = ['AP', 'AP50', 'AP75', 'AR', 'AR50', 'AR75']
    names += [f'AP{r.suffix}' for r in self.area_ranges[1:]]
    names += [f'AR{r.suffix}' for r in self.area_ranges[1:]]
    names += [f'AP_{b.name}' for b in self.crowd_index_bins]
    return names


COCO = Protocol(area_ranges=(AreaRange('all', *_ALL, ''), AreaRange('medium', 32**2, 96**2, 'm'),
                             AreaRange('large', 96**2, 1e5**2, 'l')))

# CrowdPose reports only the 'all' range, plus AP by crowd index (easy < 0.2 <= medium < 0.8 <= hard), the
# split crowdposetools / xtcocotools summarize() use (their function defaults 0.01 / 0.85 are overridden).
CROWDPOSE = Protocol(crowd_index_bins=(CrowdIndexBin('easy', -math.inf, 0.2),
                                       CrowdIndexBin('medium', 0.2, 0.8),
                                       CrowdIndexBin('hard', 0.8, math.inf)))

PROTOCOLS: Dict[str, Protocol] = {'coco': COCO, 'crowdpose': CROWDPOSE}


def register(name: str, protocol: Protocol) -> Protocol:
  """Adds the protocol of a custom keypoint set (looked up by the KeypointSet's name)."""
  if name in PROTOCOLS:
    raise ValueError(f'evaluation protocol {name!r} already registered')
  PROTOCOLS[name] = protocol
  return protocol


def for_keypoint_set(keypoint_set: Union[str, kp_lib.KeypointSet]) -> Protocol:
  """The registered protocol of a keypoint set; unregistered sets get plain AP/AR over all areas."""
  return PROTOCOLS.get(kp_lib.get(keypoint_set).name, Protocol())
