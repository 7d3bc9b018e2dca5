"""`KeypointEvaluator` (collect results, then compute) and the functional `evaluate`."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from litepose_jax import keypoints as kp_lib
from litepose_jax.evaluation import accumulate
from litepose_jax.evaluation import ground_truth as gt_lib
from litepose_jax.evaluation import matching
from litepose_jax.evaluation import protocol as protocol_lib
from litepose_jax.evaluation import results as results_lib

BACKENDS = ('numpy', 'pycocotools')


def object_scale(gt: gt_lib.GroundTruth, keypoint_set: kp_lib.KeypointSet,
                 protocol: protocol_lib.Protocol) -> np.ndarray:
  """[G] object scale² of every GT person: its segment area, or bbox w·h·factor (oks_scale 'bbox').

  The same value decides the area range, as in xtcocotools (use_area=False) and crowdposetools.
  """
  if keypoint_set.oks_scale == 'bbox':
    return gt.bbox[:, 2] * gt.bbox[:, 3] * protocol.bbox_area_factor
  if gt.area is None:
    raise ValueError(f'{gt.source}: keypoint set {keypoint_set.name!r} scales OKS by the GT "area", but '
                     'some annotations have none (use a keypoint set with oks_scale="bbox")')
  return gt.area


def evaluate_arrays(gt: gt_lib.GroundTruth, image_ids: np.ndarray, keypoints: np.ndarray,
                    scores: np.ndarray, keypoint_set: kp_lib.KeypointSet,
                    protocol: protocol_lib.Protocol) -> Dict[str, float]:
  """Our NumPy evaluation of P detections (pycocotools keypoint semantics; see the package docstring).

  Args:
    gt: the ground truth.
    image_ids: [P] image id of each detection (all in the GT).
    keypoints: [P, K, 3] detected joints (x, y, v).
    scores: [P] person scores.
    keypoint_set: sigmas and OKS scale.
    protocol: area ranges, crowd-index bins, max_dets.

  Returns:
    {metric name: value}, names from `protocol.metric_names()`.
  """
  thresholds = protocol_lib.OKS_THRESHOLDS
  scale = object_scale(gt, keypoint_set, protocol)
  # [A, G]: ignored in each area range (bounds inclusive, as pycocotools).
  lows = np.array([r.low for r in protocol.area_ranges])[:, None]
  highs = np.array([r.high for r in protocol.area_ranges])[:, None]
  gt_ignore = gt.ignore[None] | (scale[None] < lows) | (scale[None] > highs)

  # Per image: best score first (stable), then the first max_dets.
  det_image = gt.index_of_images(image_ids)
  order = np.lexsort((-scores, det_image))  # lexsort is stable: equal scores keep their input order
  rank = np.arange(len(order)) - np.searchsorted(det_image[order], det_image[order], side='left')
  keep = order[rank < protocol.max_dets]
  det_image, det_kp, det_score = det_image[keep], keypoints[keep], scores[keep]

  num_images = len(gt.image_ids)
  matched, on_ignored = matching.match_detections(
      det_image, det_kp, gt.image_index, gt.keypoints, gt.bbox, scale, gt.iscrowd, gt_ignore,
      keypoint_set.sigmas_array, thresholds, num_images)
  # Unmatched detections whose own area (keypoint extent) is outside the range are ignored too.
  _, det_area = results_lib.keypoint_extent(det_kp)
  outside = (det_area[:, None] < lows.T) | (det_area[:, None] > highs.T)        # [D, A]
  ignored = on_ignored | (~matched & outside[:, :, None])

  precision, recall = [], []
  for a in range(len(protocol.area_ranges)):
    p, r = accumulate.precision_recall(det_score, matched[:, a], ignored[:, a],
                                       int(np.count_nonzero(~gt_ignore[a])))
    precision.append(p)
    recall.append(r)

  bin_precision = []
  if protocol.crowd_index_bins:
    if gt.crowd_index is None:
      raise ValueError(f'{gt.source}: the protocol splits images by "crowdIndex", but some images have '
                       'none (pass a Protocol without crowd_index_bins)')
    for b in protocol.crowd_index_bins:
      in_bin = (gt.crowd_index >= b.low) & (gt.crowd_index < b.high)            # [I]
      dets = in_bin[det_image]
      p, _ = accumulate.precision_recall(det_score[dets], matched[dets, 0], ignored[dets, 0],
                                         int(np.count_nonzero(~gt_ignore[0] & in_bin[gt.image_index])))
      bin_precision.append(p)
  return accumulate.summarize(protocol, np.stack(precision), np.stack(recall), bin_precision, thresholds)


class KeypointEvaluator:
  """Collects keypoint detections image by image, then computes COCO-style AP/AR.

  Usage:
    ev = KeypointEvaluator('crowdpose_test.json', 'crowdpose')
    for image_id, kps, scores in predictions:
      ev.add(image_id, kps, scores)        # kps [P, K, 3] in original-image pixels, scores [P]
    ev.write_results('results.json')
    metrics = ev.compute()                 # {'AP': ..., 'AP50': ..., ...}
  """

  def __init__(self, gt: gt_lib.GtSource,
               keypoint_set: Union[str, kp_lib.KeypointSet, None] = None, *,
               protocol: Optional[protocol_lib.Protocol] = None, backend: str = 'numpy'):
    """Loads the ground truth.

    Args:
      gt: COCO-format GT json path, parsed dict or GroundTruth.
      keypoint_set: name or KeypointSet; default: the registered set with the GT's joint count.
      protocol: what to report; default: the protocol registered for the keypoint set.
      backend: 'numpy' (ours) or 'pycocotools' (cross-check; needs pycocotools).
    """
    if backend not in BACKENDS:
      raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
    self.gt = gt_lib.load_ground_truth(gt, keypoint_set)
    k = self.gt.num_keypoints
    self.keypoint_set = (kp_lib.get(keypoint_set) if keypoint_set is not None
                         else kp_lib.for_num_keypoints(k))
    if self.keypoint_set.num_keypoints != k and len(self.gt.keypoints):
      raise ValueError(f'{self.gt.source}: ground truth has {k} joints per person, keypoint set '
                       f'{self.keypoint_set.name!r} has {self.keypoint_set.num_keypoints}')
    self.protocol = protocol or protocol_lib.for_keypoint_set(self.keypoint_set)
    self.backend = backend
    self.reset()

  def reset(self) -> None:
    """Drops every collected detection (keeps the parsed ground truth)."""
    self._image_ids: List[np.ndarray] = []
    self._keypoints: List[np.ndarray] = []
    self._scores: List[np.ndarray] = []

  def __len__(self) -> int:
    return int(sum(len(s) for s in self._scores))

  def _append(self, image_ids: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
              where: str) -> None:
    unknown = self.gt.index_of_images(image_ids) < 0
    if unknown.any():
      bad = sorted(set(image_ids[unknown].tolist()))
      raise ValueError(f'{where}: image id(s) {bad[:5]}{" ..." if len(bad) > 5 else ""} are not in the '
                       f'ground truth {self.gt.source}')
    self._image_ids.append(image_ids)
    self._keypoints.append(keypoints)
    self._scores.append(scores)

  def add(self, image_id: Union[int, Sequence[Dict[str, Any]]], keypoints: Optional[np.ndarray] = None,
          scores: Optional[np.ndarray] = None, valid: Optional[np.ndarray] = None) -> None:
    """Adds the people detected in one image (or, given a list as first argument, COCO result dicts).

    Args:
      image_id: the GT image id; or a list of result dicts (then see `add_results`).
      keypoints: [P, K, 3] (x, y, confidence) in original-image pixels.
      scores: [P] person scores.
      valid: optional [P] bool; only valid people are added (e.g. the decoder's padding mask).
    """
    if not isinstance(image_id, (int, np.integer)):
      self.add_results(image_id)
      return
    k = self.keypoint_set.num_keypoints
    kp = np.asarray(keypoints, np.float64)
    sc = np.asarray(scores, np.float64).reshape(-1)
    where = f'add(image_id={int(image_id)})'
    if kp.ndim != 3 or kp.shape[1:] != (k, 3) or len(kp) != len(sc):
      raise ValueError(f'{where}: expected keypoints [P, {k}, 3] and scores [P], got '
                       f'{kp.shape} and {sc.shape}')
    if valid is not None:
      v = np.asarray(valid, bool).reshape(-1)
      kp, sc = kp[v], sc[v]
    if not (np.isfinite(kp).all() and np.isfinite(sc).all()):
      raise ValueError(f'{where}: non-finite keypoints or scores')
    self._append(np.full(len(sc), int(image_id), np.int64), kp, sc, where)

  def add_batch(self, image_ids: Sequence[int], keypoints: np.ndarray, scores: np.ndarray,
                valid: Optional[np.ndarray] = None) -> None:
    """Adds a decoded batch.

    Args:
      image_ids: [B] GT image ids (padding images, if any, must be dropped by the caller).
      keypoints: [B, P, K, 3]; scores: [B, P]; valid: optional [B, P] bool.
    """
    for b, image_id in enumerate(np.asarray(image_ids).tolist()):
      self.add(int(image_id), keypoints[b], scores[b], None if valid is None else valid[b])

  def add_results(self, results: results_lib.ResultsSource, source: str = '<results>') -> None:
    """Adds COCO result dicts (or the results json at a path)."""
    if isinstance(results, (str, os.PathLike)):
      source, results = os.fspath(results), results_lib.read_results(results)
    ids, kp, sc = results_lib.results_to_arrays(results, self.keypoint_set.num_keypoints,
                                                self.gt.category_id, source)
    self._append(ids, kp, sc, source)

  def _arrays(self):
    k = self.keypoint_set.num_keypoints
    if not self._scores:
      return np.zeros((0,), np.int64), np.zeros((0, k, 3)), np.zeros((0,))
    return (np.concatenate(self._image_ids), np.concatenate(self._keypoints),
            np.concatenate(self._scores))

  def results(self) -> List[Dict[str, Any]]:
    """Everything added so far as COCO result dicts (add order; bbox = keypoint extent)."""
    return results_lib.arrays_to_results(*self._arrays(), category_id=self.gt.category_id)

  def write_results(self, path: Union[str, os.PathLike]) -> None:
    """Writes `results()` as a COCO results json."""
    results_lib.write_results(path, self.results())

  def compute(self) -> Dict[str, float]:
    """AP / AR stats of everything added, keyed by `self.protocol.metric_names()`."""
    if self.backend == 'pycocotools':
      from litepose_jax.evaluation import cocoapi  # pylint: disable=g-import-not-at-top
      return cocoapi.evaluate(self.gt, self.results(), self.keypoint_set, self.protocol)
    return evaluate_arrays(self.gt, *self._arrays(), self.keypoint_set, self.protocol)


def evaluate(gt: gt_lib.GtSource, results: results_lib.ResultsSource,
             keypoint_set: Union[str, kp_lib.KeypointSet, None] = None, *,
             protocol: Optional[protocol_lib.Protocol] = None, backend: str = 'numpy'
             ) -> Dict[str, float]:
  """One-shot evaluation of COCO keypoint results.

  Args:
    gt: GT json path, parsed dict or GroundTruth.
    results: results json path or a list of result dicts.
    keypoint_set, protocol, backend: as `KeypointEvaluator`.

  Returns:
    {metric name: value}.
  """
  ev = KeypointEvaluator(gt, keypoint_set, protocol=protocol, backend=backend)
  ev.add_results(results)
  return ev.compute()
