"""The pycocotools cross-check backend (`backend='pycocotools'`).

pycocotools' keypoint COCOeval with the keypoint set's sigmas and the protocol's max_dets / area ranges.
CrowdPose's conventions are obtained without xtcocotools (its wheel does not import under NumPy 2):
* use_area=False (object scale² = bbox w·h·0.53, for OKS and for the area range): every GT annotation's
  'area' is replaced by that value in the copy of the GT handed to pycocotools;
* AP easy / medium / hard: COCOeval re-run with `params.imgIds` = the images of each crowd-index bin, and
  the mean of its whole precision array taken, which is what xtcocotools' `get_type_result` does.
Two known pycocotools details that our NumPy backend does not copy: a GT annotation with id 0 is counted as
unmatched (it tests `dtm > 0`), and an empty results list cannot be loaded (handled here as no detections).
"""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any, Dict, List

import numpy as np

from litepose_jax import keypoints as kp_lib
from litepose_jax.evaluation import accumulate
from litepose_jax.evaluation import ground_truth as gt_lib
from litepose_jax.evaluation import protocol as protocol_lib


def _coco_eval(gt: gt_lib.GroundTruth, results: List[Dict[str, Any]],
               keypoint_set: kp_lib.KeypointSet, protocol: protocol_lib.Protocol):
  from pycocotools.coco import COCO  # pylint: disable=g-import-not-at-top
  from pycocotools.cocoeval import COCOeval  # pylint: disable=g-import-not-at-top

  dataset = copy.deepcopy(gt.dataset)
  if keypoint_set.oks_scale == 'bbox':
    for ann in dataset['annotations']:
      ann['area'] = ann['bbox'][2] * ann['bbox'][3] * protocol.bbox_area_factor
  with contextlib.redirect_stdout(io.StringIO()):
    coco_gt = COCO()
    coco_gt.dataset = dataset
    coco_gt.createIndex()
    if results:
      coco_dt = coco_gt.loadRes(copy.deepcopy(list(results)))
    else:  # loadRes([]) raises; an empty result set is a valid (if sad) submission
      coco_dt = COCO()
      coco_dt.dataset = {'images': dataset['images'], 'categories': dataset['categories'],
                         'annotations': []}
      coco_dt.createIndex()
  ev = COCOeval(coco_gt, coco_dt, 'keypoints')
  ev.params.kpt_oks_sigmas = keypoint_set.sigmas_array
  ev.params.catIds = [gt.category_id]
  ev.params.maxDets = [protocol.max_dets]
  ev.params.areaRng = [[r.low, r.high] for r in protocol.area_ranges]
  ev.params.areaRngLbl = [r.name for r in protocol.area_ranges]
  return ev


def _run(ev) -> None:
  with contextlib.redirect_stdout(io.StringIO()):
    ev.evaluate()
    ev.accumulate()


def evaluate(gt: gt_lib.GroundTruth, results: List[Dict[str, Any]], keypoint_set: kp_lib.KeypointSet,
             protocol: protocol_lib.Protocol) -> Dict[str, float]:
  """The protocol's stats computed by pycocotools.

  Args:
    gt: the ground truth (its parsed json is copied, never modified).
    results: COCO result dicts.
    keypoint_set: sigmas and OKS scale.
    protocol: area ranges, crowd-index bins, max_dets.

  Returns:
    {metric name: value}, the same names as the NumPy backend.
  """
  ev = _coco_eval(gt, results, keypoint_set, protocol)
  _run(ev)
  precision = np.moveaxis(ev.eval['precision'][:, :, 0, :, 0], 2, 0)  # [T, R, A] -> [A, T, R]
  recall = np.moveaxis(ev.eval['recall'][:, 0, :, 0], 1, 0)           # [T, A] -> [A, T]

  bin_precision = []
  if protocol.crowd_index_bins:
    if gt.crowd_index is None:
      raise ValueError(f'{gt.source}: the protocol splits images by "crowdIndex", but some images have '
                       'none')
    for b in protocol.crowd_index_bins:
      ids = gt.image_ids[(gt.crowd_index >= b.low) & (gt.crowd_index < b.high)]
      if not len(ids):  # pycocotools treats an empty imgIds as "all images"
        bin_precision.append(-np.ones_like(precision[0]))
        continue
      ev.params.imgIds = ids.tolist()
      _run(ev)
      bin_precision.append(ev.eval['precision'][:, :, 0, 0, 0])
  return accumulate.summarize(protocol, precision, recall, bin_precision, ev.params.iouThrs)
