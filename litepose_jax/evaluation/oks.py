"""Object keypoint similarity (OKS), vectorised with NumPy broadcasting.

OKS = mean over the GT's labelled joints of exp(-d² / (2·s²·k²)), k = 2σ, s² = the object scale (COCO: the
segment area; CrowdPose: bbox w·h·0.53). A GT with no labelled joint (an ignore region) is compared with the
box made of its bbox grown by one width / height on every side: a joint inside that box is at distance 0.
That is pycocotools' `computeOks`, with its per-joint operation order and the eps added to the scale (only
the final sum over joints may round differently, in the last bit).
"""

from __future__ import annotations

import numpy as np


def oks(det_xy: np.ndarray, gt_keypoints: np.ndarray, gt_bbox: np.ndarray, gt_scale: np.ndarray,
        sigmas: np.ndarray) -> np.ndarray:
  """OKS between detections and GT people; all arguments broadcast against each other.

  For a D x G matrix pass det_xy[:, None] and the GT arrays with a leading [None].

  Args:
    det_xy: [..., K, 2+] detected joints (x, y, ...); the detection's own visibilities are not used.
    gt_keypoints: [..., K, 3] GT joints (x, y, v); v > 0 marks a labelled joint.
    gt_bbox: [..., 4] GT box (x, y, w, h).
    gt_scale: [...] object scale² (area).
    sigmas: [K] per-joint sigmas.

  Returns:
    [...] OKS in [0, 1].
  """
  variances = (np.asarray(sigmas, np.float64) * 2)**2
  xd, yd = det_xy[..., 0], det_xy[..., 1]
  xg, yg = gt_keypoints[..., 0], gt_keypoints[..., 1]
  labelled = gt_keypoints[..., 2] > 0
  has_labels = labelled.any(-1, keepdims=True)

  x0 = (gt_bbox[..., 0] - gt_bbox[..., 2])[..., None]
  x1 = (gt_bbox[..., 0] + gt_bbox[..., 2] * 2)[..., None]
  y0 = (gt_bbox[..., 1] - gt_bbox[..., 3])[..., None]
  y1 = (gt_bbox[..., 1] + gt_bbox[..., 3] * 2)[..., None]
  dx = np.where(has_labels, xd - xg, np.maximum(0, x0 - xd) + np.maximum(0, xd - x1))
  dy = np.where(has_labels, yd - yg, np.maximum(0, y0 - yd) + np.maximum(0, yd - y1))

  e = (dx**2 + dy**2) / variances / (np.asarray(gt_scale, np.float64)[..., None] + np.spacing(1)) / 2
  counted = labelled | ~has_labels  # labelled joints, or all joints for a GT without labels
  return np.where(counted, np.exp(-e), 0.0).sum(-1) / counted.sum(-1)
