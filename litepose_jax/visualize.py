"""Drawing skeletons on images (predict.py, evaluate.py's worst-image PNGs, the demo).

Predicted people get one colour each; a joint's disc radius and opacity grow with its confidence, so weak
(refined) joints are visible but faint. Ground truth is drawn in one colour, labelled joints only.
Images are RGB uint8 [H, W, 3]; keypoints [P, K, 3] are (x, y, confidence or visibility) in image pixels.
"""

from __future__ import annotations

import colorsys
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

GT_COLOR = (40, 220, 40)


def person_colors(n: int) -> list:
  """n well-separated RGB colours (golden-ratio hues)."""
  return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb((0.61803 * i) % 1.0, 0.85, 1.0))
          for i in range(n)]


def _point(x: float, y: float) -> Tuple[int, int]:
  return int(round(x)), int(round(y))


def draw_people(image: np.ndarray, keypoints: np.ndarray, skeleton: Sequence[Tuple[int, int]],
                scores: Optional[np.ndarray] = None, min_confidence: float = 0.05,
                colors: Optional[Sequence[Tuple[int, int, int]]] = None) -> np.ndarray:
  """Draws predicted people.

  Args:
    image: [H, W, 3] uint8 RGB (not modified).
    keypoints: [P, K, 3] (x, y, confidence).
    skeleton: joint index pairs (KeypointSet.skeleton).
    scores: optional [P] person scores, written next to each person.
    min_confidence: joints at or below this are not drawn.
    colors: optional per-person RGB colours.
  Returns:
    The annotated copy.
  """
  out = np.ascontiguousarray(image).copy()
  keypoints = np.asarray(keypoints, np.float64)
  if keypoints.size == 0:
    return out
  colors = colors or person_colors(len(keypoints))
  scale = max(1.0, max(out.shape[:2]) / 640.0)
  for p, person in enumerate(keypoints):
    color = colors[p % len(colors)]
    conf = np.clip(person[:, 2], 0.0, 1.0)
    shown = person[:, 2] > min_confidence
    layer = out.copy()
    for a, b in skeleton:
      if shown[a] and shown[b]:
        cv2.line(layer, _point(*person[a, :2]), _point(*person[b, :2]), color,
                 max(1, int(round(2 * scale))), cv2.LINE_AA)
    out = cv2.addWeighted(layer, 0.7, out, 0.3, 0.0)
    for k in np.flatnonzero(shown):
      # Disc size and opacity show the joint confidence.
      radius = max(2, int(round((2 + 4 * conf[k]) * scale)))
      layer = out.copy()
      cv2.circle(layer, _point(*person[k, :2]), radius, color, -1, cv2.LINE_AA)
      alpha = 0.35 + 0.65 * float(conf[k])
      out = cv2.addWeighted(layer, alpha, out, 1.0 - alpha, 0.0)
      cv2.circle(out, _point(*person[k, :2]), radius, (0, 0, 0), 1, cv2.LINE_AA)
    if scores is not None and shown.any():
      top = person[shown][np.argmin(person[shown, 1])]
      cv2.putText(out, f'{float(scores[p]):.2f}', _point(top[0], top[1] - 6 * scale),
                  cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale, color, max(1, int(scale)), cv2.LINE_AA)
  return out


def draw_ground_truth(image: np.ndarray, keypoints: np.ndarray, skeleton: Sequence[Tuple[int, int]],
                      color: Tuple[int, int, int] = GT_COLOR) -> np.ndarray:
  """Draws ground-truth people (labelled joints, v > 0) in one colour; keypoints [G, K, 3]."""
  out = np.ascontiguousarray(image).copy()
  keypoints = np.asarray(keypoints, np.float64)
  if keypoints.size == 0:
    return out
  scale = max(1.0, max(out.shape[:2]) / 640.0)
  for person in keypoints:
    labelled = person[:, 2] > 0
    for a, b in skeleton:
      if labelled[a] and labelled[b]:
        cv2.line(out, _point(*person[a, :2]), _point(*person[b, :2]), color, max(1, int(2 * scale)),
                 cv2.LINE_AA)
    for k in np.flatnonzero(labelled):
      cv2.circle(out, _point(*person[k, :2]), max(2, int(3 * scale)), color, -1, cv2.LINE_AA)
  return out


def side_by_side(left: np.ndarray, right: np.ndarray, titles: Sequence[str] = ('prediction',
                                                                               'ground truth')
                 ) -> np.ndarray:
  """Two equally sized RGB images next to each other with a title bar each."""
  bar = 24
  h, w = left.shape[:2]
  canvas = np.full((h + bar, 2 * w + 8, 3), 255, np.uint8)
  canvas[bar:, :w] = left
  canvas[bar:, w + 8:] = right
  for x, title in zip((4, w + 12), titles):
    cv2.putText(canvas, title, (x, bar - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
  return canvas


def write_rgb(path: str, image: np.ndarray) -> None:
  """Writes an RGB image (PNG/JPEG by extension); raises with the path on failure."""
  if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
    raise OSError(f'{path}: could not write the image')


def to_input_pixels(xy: np.ndarray, center: np.ndarray, scale: np.ndarray,
                    input_hw: Tuple[int, int]) -> np.ndarray:
  """Image pixels → network-input pixels, the inverse of `inference.to_image` (spec e.10).

  Args:
    xy: [..., 2] image pixels; center, scale: [2] the back-projection parameters; input_hw: (h', w').
  """
  factor = scale[0] * 200.0 / input_hw[1]
  return (xy - center) / factor + np.array([input_hw[1], input_hw[0]]) / 2.0


def prediction_vs_truth(image: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                        gt_keypoints: np.ndarray, center: np.ndarray, scale: np.ndarray,
                        skeleton: Sequence[Tuple[int, int]], min_short_side: int = 480) -> np.ndarray:
  """Prediction | ground truth of one image, drawn on its network input (upscaled to be legible).

  Args:
    image: [h,w,3] uint8 network input; keypoints [P,K,3], gt_keypoints [G,K,3] in image pixels;
      scores [P]; center, scale [2]: the input's back-projection parameters (inference.to_image).
  Returns:
    [h·u + 24, 2·w·u + 8, 3] uint8 RGB, u the integer upscale bringing the short side to min_short_side.
  """
  h, w = image.shape[:2]
  u = max(1, -(-min_short_side // min(h, w)))
  big = cv2.resize(image, (w * u, h * u), interpolation=cv2.INTER_LINEAR)

  def place(people: np.ndarray) -> np.ndarray:
    people = np.array(people, np.float64)
    people[..., :2] = to_input_pixels(people[..., :2], center, scale, (h, w)) * u
    return people

  pred = draw_people(big, place(keypoints), skeleton, scores)
  truth = draw_ground_truth(big, place(gt_keypoints), skeleton)
  return side_by_side(pred, truth)
