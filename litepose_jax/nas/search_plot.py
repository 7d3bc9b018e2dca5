"""AP against MACs of every evaluated candidate, the Pareto front marked (a PNG drawn with OpenCV).

matplotlib is not a dependency of this package, so the chart is drawn with cv2 (already used by
visualize.py): grey dots = candidates, red line and dots = Pareto front (no other candidate has fewer or
equal MACs and higher AP), blue dashed lines = budgets, green rings = each budget's chosen subnet.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import cv2
import numpy as np


def pareto_front(points: Sequence[Tuple[float, float]]) -> List[int]:
  """Indices of the (macs, ap) points on the front, by increasing MACs: a point is on it when every point
  with MACs ≤ its own has a lower AP (equal MACs: only the best AP; equal both: the first)."""
  order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
  front, best = [], -np.inf
  for i in order:
    if points[i][1] > best:
      front.append(i)
      best = points[i][1]
  return front


def draw(path: str, points: Sequence[Tuple[float, float]], budgets: Sequence[float] = (),
         chosen: Sequence[int] = (), title: str = 'AP vs MACs') -> str:
  """Writes the chart; points are (macs in G, AP); chosen are indices into points. Returns path."""
  w, h, left, right, top, bottom = 900, 600, 80, 30, 50, 60
  img = np.full((h, w, 3), 255, np.uint8)
  pts = np.asarray(points, np.float64).reshape(-1, 2)
  xs = np.concatenate([pts[:, 0], np.asarray(budgets, np.float64)]) if len(pts) else np.array([0.0, 1.0])
  x_lo, x_hi = 0.0, max(float(xs.max()) * 1.05, 1e-3)
  y_lo = min(0.0, float(pts[:, 1].min())) if len(pts) else 0.0
  y_hi = max(float(pts[:, 1].max()) * 1.1, 1e-3) if len(pts) else 1.0
  to_px = lambda x, y: (int(left + (x - x_lo) / (x_hi - x_lo) * (w - left - right)),
                        int(h - bottom - (y - y_lo) / (y_hi - y_lo) * (h - top - bottom)))
  black, grey, font = (0, 0, 0), (160, 160, 160), cv2.FONT_HERSHEY_SIMPLEX
  cv2.rectangle(img, (left, top), (w - right, h - bottom), black, 1)
  for t in np.linspace(x_lo, x_hi, 6):
    x, _ = to_px(t, y_lo)
    cv2.line(img, (x, h - bottom), (x, h - bottom + 5), black, 1)
    cv2.putText(img, f'{t:.2f}', (x - 18, h - bottom + 22), font, 0.45, black, 1, cv2.LINE_AA)
  for t in np.linspace(y_lo, y_hi, 6):
    _, y = to_px(x_lo, t)
    cv2.line(img, (left - 5, y), (left, y), black, 1)
    cv2.putText(img, f'{t:.3f}', (8, y + 5), font, 0.45, black, 1, cv2.LINE_AA)
  cv2.putText(img, 'MACs (G, published convention)', (w // 2 - 130, h - 12), font, 0.55, black, 1, cv2.LINE_AA)
  cv2.putText(img, 'AP', (20, top - 15), font, 0.55, black, 1, cv2.LINE_AA)
  cv2.putText(img, title, (left + 10, top - 15), font, 0.6, black, 1, cv2.LINE_AA)
  for b in budgets:
    x, _ = to_px(b, y_lo)
    for y in range(top, h - bottom, 12):
      cv2.line(img, (x, y), (x, min(y + 6, h - bottom)), (200, 120, 0), 1)
  for x, y in pts:
    cv2.circle(img, to_px(x, y), 3, grey, -1, cv2.LINE_AA)
  front = pareto_front([tuple(p) for p in pts])
  line = np.array([to_px(*pts[i]) for i in front], np.int32)
  if len(line) > 1:
    cv2.polylines(img, [line], False, (0, 0, 220), 2, cv2.LINE_AA)
  for p in line:
    cv2.circle(img, tuple(int(v) for v in p), 4, (0, 0, 220), -1, cv2.LINE_AA)
  for i in chosen:
    cv2.circle(img, to_px(*pts[i]), 9, (0, 170, 0), 2, cv2.LINE_AA)
  if not cv2.imwrite(str(path), img):
    raise OSError(f'{path}: could not write the PNG')
  return str(path)
