"""Person ids across video frames: greedy matching on OKS with a constant-velocity guess and a short memory.

  tracker = Tracker()                              # one per video / stream
  ids = tracker.update(keypoints, scores)          # keypoints [P,K,3] (x, y, val) in pixels → ids [P] int

Each frame, every live track predicts its keypoints (last keypoints + velocity × frames since seen); the
similarity of a detection and a track is the OKS of the detection against that prediction (the track's box
area as the object scale, the keypoint set's sigmas, only joints with val > 0 in both); pairs are taken
greedily in decreasing similarity (the rule of rtmlib's PoseTracker; greedy and Hungarian differ only
when two tracks want the same person, which the velocity guess makes rare), and a pair needs
similarity >= `min_similarity`. Unmatched detections start new tracks (ids count up from 0, never
reused); a track not matched for more than `max_age` frames is dropped. Pure NumPy, no JAX.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence

import numpy as np


@dataclasses.dataclass
class _Track:
  id: int
  keypoints: np.ndarray  # [K,3] last matched detection
  velocity: np.ndarray   # [K,2] px per frame, smoothed (0 until seen twice)
  last_frame: int
  hits: int = 1


def oks(det: np.ndarray, ref: np.ndarray, sigmas: np.ndarray) -> float:
  """OKS of keypoints det [K,3] against ref [K,3] (scale: ref's box area), over joints visible in both."""
  vis = (det[:, 2] > 0) & (ref[:, 2] > 0)
  if not vis.any():
    return 0.0
  xy = ref[ref[:, 2] > 0, :2]
  area = max(float(np.prod(xy.max(0) - xy.min(0))), 1.0)
  d2 = np.sum((det[vis, :2] - ref[vis, :2]) ** 2, axis=-1)
  var = (2 * sigmas[vis]) ** 2
  return float(np.mean(np.exp(-d2 / (2 * area * var + np.finfo(np.float64).eps))))


class Tracker:
  """Keeps person ids from frame to frame (see the module doc).

  Args:
    sigmas: the keypoint set's OKS sigmas [K] (default: 0.08 for every joint).
    min_similarity: a detection joins a track only with OKS >= this.
    max_age: frames a track survives unmatched (a person hidden for a moment keeps the id).
  """

  def __init__(self, sigmas: Optional[Sequence[float]] = None, min_similarity: float = 0.3,
               max_age: int = 10):
    self.sigmas = None if sigmas is None else np.asarray(sigmas, np.float64)
    self.min_similarity = float(min_similarity)
    self.max_age = int(max_age)
    self.frame = -1
    self.tracks: List[_Track] = []
    self._next_id = 0

  def _predicted(self, t: _Track) -> np.ndarray:
    kp = t.keypoints.copy()
    kp[:, :2] += t.velocity * (self.frame - t.last_frame)
    return kp

  def update(self, keypoints: np.ndarray, scores: Optional[np.ndarray] = None) -> np.ndarray:
    """Assigns ids to one frame's people.

    Args:
      keypoints: [P,K,3] (x, y, val) in image pixels; val <= 0 marks a missing joint.
      scores: [P] person scores (only used to order new tracks: higher scores get lower ids).
    Returns:
      ids [P] int64, one per person, stable across frames.
    """
    self.frame += 1
    keypoints = np.asarray(keypoints, np.float64)
    n = len(keypoints) if keypoints.ndim == 3 else 0
    sigmas = self.sigmas
    if sigmas is None and n:
      sigmas = np.full(keypoints.shape[1], 0.08)
    self.tracks = [t for t in self.tracks if self.frame - t.last_frame <= self.max_age]
    sim = np.zeros((n, len(self.tracks)))
    for j, t in enumerate(self.tracks):
      ref = self._predicted(t)
      for i in range(n):
        sim[i, j] = oks(keypoints[i], ref, sigmas)
    ids = np.full(n, -1, np.int64)
    used = set()
    for flat in np.argsort(-sim, axis=None, kind='stable'):
      i, j = divmod(int(flat), max(len(self.tracks), 1))
      if not self.tracks or sim[i, j] < self.min_similarity:
        break
      if ids[i] >= 0 or j in used:
        continue
      t = self.tracks[j]
      moved = (keypoints[i, :, :2] - t.keypoints[:, :2]) / (self.frame - t.last_frame)
      both = (keypoints[i, :, 2] > 0) & (t.keypoints[:, 2] > 0)
      # Smoothed (the per-frame step is noisy); a second sighting sets it outright.
      smooth = moved if t.hits == 1 else 0.7 * t.velocity + 0.3 * moved
      t.velocity = np.where(both[:, None], smooth, t.velocity)
      # Joints missing now keep their last position (moved by the velocity) for the next prediction.
      t.keypoints = np.where((keypoints[i, :, 2] > 0)[:, None], keypoints[i], self._predicted(t))
      t.last_frame, t.hits = self.frame, t.hits + 1
      ids[i] = t.id
      used.add(j)
    order = np.argsort(-(np.zeros(n) if scores is None else np.asarray(scores)), kind='stable')
    for i in order:
      if ids[i] < 0:
        self.tracks.append(_Track(self._next_id, keypoints[i].copy(), np.zeros((keypoints.shape[1], 2)),
                                  self.frame))
        ids[i] = self._next_id
        self._next_id += 1
    return ids


def track_color(track_id: int) -> tuple:
  """A stable, well-separated BGR colour for an id (golden-ratio hue steps)."""
  import colorsys  # pylint: disable=g-import-not-at-top
  r, g, b = colorsys.hsv_to_rgb((int(track_id) * 0.618033988749895) % 1.0, 0.85, 1.0)
  return int(255 * b), int(255 * g), int(255 * r)
