"""Greedy detection-to-GT matching, pycocotools `evaluateImg` semantics, vectorised over images.

Per image, area range and OKS threshold t, detections are visited best score first; each takes the GT with
the highest OKS >= t among those still free (crowd GTs are never used up), where

* a regular (non-ignored) GT is preferred over any ignored one, whatever their OKS: pycocotools sorts
  ignored GTs last and stops at the first ignored GT once a regular one has matched;
* among equal OKS the GT later in that order wins (its running-max test is `>=`).

Keeping GTs in file order and choosing "regular first, then ignored" is the same as pycocotools' stable
ignore-last sort, so the GT order never has to be permuted per area range. A detection matched to an
ignored GT is ignored; the caller also ignores unmatched detections outside the area range.

Vectorisation: images are grouped by their GT count G, so one group is a dense [n, D, G] OKS block, and the
only Python loop is over detection rank (<= max_dets) and distinct G values.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from litepose_jax.evaluation import oks as oks_lib


def _starts(counts: np.ndarray) -> np.ndarray:
  return np.cumsum(counts) - counts


def match_detections(det_image: np.ndarray, det_xy: np.ndarray, gt_image: np.ndarray,
                     gt_keypoints: np.ndarray, gt_bbox: np.ndarray, gt_scale: np.ndarray,
                     gt_crowd: np.ndarray, gt_ignore: np.ndarray, sigmas: np.ndarray,
                     thresholds: np.ndarray, num_images: int) -> Tuple[np.ndarray, np.ndarray]:
  """Matches D detections to G GT people image by image, for A area ranges and T OKS thresholds.

  Args:
    det_image: [D] image index of each detection; detections sorted by image, then by descending score
      (ties in input order), already cut to max_dets per image.
    det_xy: [D, K, 2+] detected joints.
    gt_image: [G] image index of each GT person, non-decreasing (file order inside an image).
    gt_keypoints: [G, K, 3]; gt_bbox: [G, 4]; gt_scale: [G] object scale² for OKS.
    gt_crowd: [G] bool, crowd GTs can absorb any number of detections.
    gt_ignore: [A, G] bool, GT ignored in each area range (crowd, no keypoints, or area outside the range).
    sigmas: [K] OKS sigmas.
    thresholds: [T] OKS thresholds.
    num_images: I, the number of images indexed.

  Returns:
    matched: [D, A, T] bool, the detection matched some GT.
    on_ignored: [D, A, T] bool, the GT it matched is an ignored one.
  """
  num_ranges, num_thr = gt_ignore.shape[0], len(thresholds)
  matched = np.zeros((len(det_image), num_ranges, num_thr), bool)
  on_ignored = np.zeros_like(matched)
  # pycocotools caps the threshold just below 1 so that a perfect OKS of 1 still matches at t = 1.
  thr = np.minimum(np.asarray(thresholds, np.float64), 1 - 1e-10)[:, None]

  det_count = np.bincount(det_image, minlength=num_images)
  gt_count = np.bincount(gt_image, minlength=num_images)
  det_start, gt_start = _starts(det_count), _starts(gt_count)
  both = (det_count > 0) & (gt_count > 0)
  for num_gt in np.unique(gt_count[both]).tolist():
    imgs = np.flatnonzero(both & (gt_count == num_gt))
    max_det = int(det_count[imgs].max())
    rank = np.arange(max_det)
    det_ok = rank < det_count[imgs, None]                                       # [n, Dmax]
    det_idx = np.where(det_ok, det_start[imgs, None] + rank, det_start[imgs, None])
    gt_idx = gt_start[imgs, None] + np.arange(num_gt)                           # [n, G]

    sim = oks_lib.oks(det_xy[det_idx][:, :, None], gt_keypoints[gt_idx][:, None],
                      gt_bbox[gt_idx][:, None], gt_scale[gt_idx][:, None], sigmas)  # [n, Dmax, G]
    ignore = np.moveaxis(gt_ignore[:, gt_idx], 0, 1)[:, :, None, :]              # [n, A, 1, G]
    crowd = gt_crowd[gt_idx][:, None, None, :]                                  # [n, 1, 1, G]
    taken = np.zeros((len(imgs), num_ranges, num_thr, num_gt), bool)            # [n, A, T, G]
    gt_pos = np.arange(num_gt)
    for d in range(max_det):
      s = sim[:, d, None, None, :]                                              # [n, 1, 1, G]
      cand = (s >= thr) & (~taken | crowd) & det_ok[:, d, None, None, None]
      regular = cand & ~ignore
      has_regular = regular.any(-1)
      cand = np.where(has_regular[..., None], regular, cand)
      hit = cand.any(-1)                                                        # [n, A, T]
      # Highest OKS, ties to the later GT: argmax over the reversed GT axis. OKS >= 0 > -1.
      best = num_gt - 1 - np.argmax(np.where(cand, s, -1.0)[..., ::-1], axis=-1)
      taken |= (gt_pos == best[..., None]) & hit[..., None]
      rows = det_idx[det_ok[:, d], d]
      matched[rows] = hit[det_ok[:, d]]
      on_ignored[rows] = (hit & ~has_regular)[det_ok[:, d]]
  return matched, on_ignored
