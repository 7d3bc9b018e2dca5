"""Precision / recall accumulation and the summary stats (pycocotools `accumulate` + `summarize`).

Detections of all images are ranked by score (stable: ties keep image order, then per-image rank), true and
false positives are counted cumulatively, precision is made monotone from the right and read at 101
recall points (0 where the recall is never reached); recall is the final one. A setting without any
regular GT has precision and recall -1, and stats average only entries > -1.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from litepose_jax.evaluation import protocol as protocol_lib


def precision_recall(scores: np.ndarray, matched: np.ndarray, ignored: np.ndarray, num_gt: int,
                     recall_thresholds: np.ndarray = protocol_lib.RECALL_THRESHOLDS
                     ) -> Tuple[np.ndarray, np.ndarray]:
  """Interpolated precision and final recall of D detections at T OKS thresholds.

  Args:
    scores: [D] detection scores, in image order (per-image best first).
    matched: [D, T] bool, the detection matched a GT.
    ignored: [D, T] bool, the detection is neither a true nor a false positive.
    num_gt: number of regular (non-ignored) GT people.
    recall_thresholds: [R] recall points.

  Returns:
    precision: [T, R]; recall: [T]. Both -1 when num_gt == 0.
  """
  num_thr, num_rec = matched.shape[1], len(recall_thresholds)
  if num_gt == 0:
    return -np.ones((num_thr, num_rec)), -np.ones((num_thr,))
  order = np.argsort(-scores, kind='mergesort')  # mergesort = stable, as pycocotools (and its Matlab)
  matched, ignored = matched[order].T, ignored[order].T
  tp = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
  fp = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
  num_det = tp.shape[1]
  if num_det == 0:
    return np.zeros((num_thr, num_rec)), np.zeros((num_thr,))
  rc = tp / num_gt
  pr = tp / (fp + tp + np.spacing(1))
  pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
  precision = np.zeros((num_thr, num_rec))
  for t in range(num_thr):
    idx = np.searchsorted(rc[t], recall_thresholds, side='left')
    reached = idx < num_det
    precision[t, reached] = pr[t, idx[reached]]
  return precision, rc[:, -1].copy()


def _mean_valid(x: np.ndarray) -> float:
  x = x[x > -1]
  return float(np.mean(x)) if x.size else -1.0


def summarize(protocol: protocol_lib.Protocol, precision: np.ndarray, recall: np.ndarray,
              bin_precision: Sequence[np.ndarray] = (),
              thresholds: np.ndarray = protocol_lib.OKS_THRESHOLDS) -> Dict[str, float]:
  """The flat named stats of a protocol (names from `protocol.metric_names()`).

  Args:
    protocol: which area ranges and crowd bins are reported.
    precision: [A, T, R] per area range (protocol order).
    recall: [A, T].
    bin_precision: per crowd-index bin, the [T, R] precision over its images (area 'all').
    thresholds: [T] OKS thresholds (AP50 / AP75 are looked up by exact value, as pycocotools does).

  Returns:
    {name: value}; -1 where a stat has no regular GT to measure.
  """
  t50, t75 = (np.flatnonzero(thresholds == v) for v in (.5, .75))
  stats = {
      'AP': _mean_valid(precision[0]),
      'AP50': _mean_valid(precision[0][t50]),
      'AP75': _mean_valid(precision[0][t75]),
      'AR': _mean_valid(recall[0]),
      'AR50': _mean_valid(recall[0][t50]),
      'AR75': _mean_valid(recall[0][t75]),
  }
  for a, r in enumerate(protocol.area_ranges[1:], start=1):
    stats[f'AP{r.suffix}'] = _mean_valid(precision[a])
  for a, r in enumerate(protocol.area_ranges[1:], start=1):
    stats[f'AR{r.suffix}'] = _mean_valid(recall[a])
  # crowdposetools / xtcocotools average the whole array (no -1 filter); it is either all -1 (no GT in the
  # bin) or has none, so that equals the filtered mean. They also round to 4 decimals; we do not.
  for b, p in zip(protocol.crowd_index_bins, bin_precision):
    stats[f'AP_{b.name}'] = float(np.mean(p))
  return stats


def format_table(metrics: Dict[str, float], title: Optional[str] = None) -> str:
  """A two-line text table of the metrics (names over values, 4 decimals)."""
  width = max([len(k) for k in metrics] + [6]) + 2
  head = ''.join(k.rjust(width) for k in metrics)
  vals = ''.join(f'{v:.4f}'.rjust(width) for v in metrics.values())
  return '\n'.join(([title] if title else []) + [head, vals])
