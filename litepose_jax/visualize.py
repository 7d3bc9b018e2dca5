"""Drawing skeletons on images (predict.py, evaluate.py's worst-image PNGs, the demo).

Predicted people get one colour each; a joint's disc radius and opacity grow with its confidence, so weak
(refined) joints are visible but faint. Ground truth is drawn in one colour, labelled joints only.
Images are RGB uint8 [H, W, 3]; keypoints [P, K, 3] are (x, y, confidence or visibility) in image pixels.

Views of the maps the decoder read (predict.py --draw, evaluate's worst images with eval.worst_image_views):
`views_panel` lays out, with a title over each tile and a colour bar under it, the skeletons, the
aggregated heatmaps of all joints over the image (their maximum over joints), the tag maps (the tag of the
strongest joint at each pixel: one person should be one colour), and a small tile per joint.
"""

from __future__ import annotations

import colorsys
import math
import types
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


def track_colors(track_ids: Sequence[int]) -> list:
  """A stable RGB colour per track id (the id-th colour of `person_colors`: an id keeps its colour)."""
  return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb((0.61803 * int(i)) % 1.0, 0.85, 1.0))
          for i in track_ids]


def put_label(image: np.ndarray, text: str, x: float, y: float, color: Tuple[int, int, int],
              font_scale: float, thickness: int = 1) -> None:
  """Writes text with its baseline-left corner near (x, y), moved so that the whole text stays inside."""
  (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
  h, w = image.shape[:2]
  px = int(min(max(round(x), 0), max(w - tw - 1, 0)))
  py = int(min(max(round(y), th + 1), max(h - base - 1, th + 1)))
  cv2.putText(image, text, (px, py), cv2.FONT_HERSHEY_SIMPLEX, font_scale, color, thickness, cv2.LINE_AA)


def draw_people(image: np.ndarray, keypoints: np.ndarray, skeleton: Sequence[Tuple[int, int]],
                scores: Optional[np.ndarray] = None, min_confidence: float = 0.05,
                colors: Optional[Sequence[Tuple[int, int, int]]] = None,
                labels: Optional[Sequence[str]] = None) -> np.ndarray:
  """Draws predicted people.

  Args:
    image: [H, W, 3] uint8 RGB (not modified).
    keypoints: [P, K, 3] (x, y, confidence).
    skeleton: joint index pairs (KeypointSet.skeleton).
    scores: optional [P] person scores, written above each person (kept inside the image).
    min_confidence: joints at or below this are not drawn.
    colors: optional per-person RGB colours.
    labels: optional [P] texts written instead of the scores (e.g. 'id 3 0.87').
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
    if (scores is not None or labels is not None) and shown.any():
      top = person[shown][np.argmin(person[shown, 1])]
      text = labels[p] if labels is not None else f'{float(scores[p]):.2f}'
      put_label(out, text, top[0], top[1] - 6 * scale, color, 0.4 * scale, max(1, int(scale)))
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
                        skeleton: Sequence[Tuple[int, int]], min_short_side: int = 480,
                        heatmaps: Optional[np.ndarray] = None, tags: Optional[np.ndarray] = None,
                        views: Sequence[str] = (), joint_names: Optional[Sequence[str]] = None
                        ) -> np.ndarray:
  """Prediction | ground truth of one image, drawn on its network input (upscaled to be legible).

  Args:
    image: [h,w,3] uint8 network input; keypoints [P,K,3], gt_keypoints [G,K,3] in image pixels;
      scores [P]; center, scale [2]: the input's back-projection parameters (inference.to_image).
    heatmaps [K,h,w], tags [K,L,h,w]: the maps of this input, for views 'heatmaps' / 'tags' (`views_panel`,
      drawn under the pair); joint_names: K names for their per-joint tiles.
  Returns:
    [h·u + 24, 2·w·u + 8, 3] uint8 RGB, u the integer upscale bringing the short side to min_short_side
    (taller, and as wide as the views, with map views).
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
  pair = side_by_side(pred, truth)
  map_views = [v for v in views if v != 'skeleton']
  if not map_views:
    return pair
  # The maps are aligned with the network input: a placement of scale 1 (inference.Maps' convention).
  maps = types.SimpleNamespace(heatmaps=heatmaps, tags=tags, center=np.array([w / 2.0, h / 2.0]),
                               scale=np.array([w / 200.0, h / 200.0]))
  return _column([pair, views_panel(image, map_views, maps, joint_names=joint_names,
                                    tile_long=max(h, w) * u)])


# -- views of the maps the decoder read (heatmaps, tags) ---------------------------------------------------

VIEWS = ('skeleton', 'heatmaps', 'tags')
_TITLE_BAR, _LEGEND, _GAP, _WHITE = 22, 34, 6, 255


def parse_views(text: str) -> Tuple[str, ...]:
  """'skeleton,heatmaps' → ('skeleton', 'heatmaps') in VIEWS order; '' → ().

  Raises:
    ValueError: an unknown view (the message lists the known ones).
  """
  names = [v.strip() for v in str(text).split(',') if v.strip()]
  unknown = [v for v in names if v not in VIEWS]
  if unknown:
    raise ValueError(f'unknown view {unknown[0]!r} in {text!r}; choose any of {",".join(VIEWS)}')
  return tuple(v for v in VIEWS if v in names)


def maps_to_image(maps: np.ndarray, center: np.ndarray, scale: np.ndarray, out_hw: Tuple[int, int],
                  zoom: float = 1.0) -> np.ndarray:
  """Maps at network-input resolution placed on the image, as `inference.to_image` places keypoints.

  Args:
    maps: [C,H,W] float (H×W: the network input the maps were aggregated at).
    center, scale: (2,) the back-projection parameters (inference.Maps).
    out_hw: (h, w) of the output, normally the image size × zoom.
    zoom: image pixels → output pixels.
  Returns:
    [C,h,w] float32; map pixel (u, v) lands on output pixel zoom·(center + ((u, v) − (W/2, H/2))·f), f =
    scale_x·200/W; outside the map: 0.
  """
  _, hm, wm = maps.shape
  f = float(scale[0]) * 200.0 / wm
  affine = zoom * np.array([[f, 0.0, center[0] - wm / 2.0 * f], [0.0, f, center[1] - hm / 2.0 * f]])
  return np.stack([cv2.warpAffine(np.ascontiguousarray(m, np.float32), affine, (int(out_hw[1]), int(out_hw[0])),
                                  flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
                   for m in maps])


def colormap(values: np.ndarray) -> np.ndarray:
  """Values in [0, 1] (clipped) [h,w] → RGB uint8 [h,w,3], dark blue (0) through green to dark red (1)."""
  index = np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
  return cv2.cvtColor(cv2.applyColorMap(index, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)


def hue_colormap(values: np.ndarray) -> np.ndarray:
  """Values in [0, 1] (clipped) [h,w] → bright RGB uint8 [h,w,3] of hue 0°-270° (red, yellow, green, blue,
  violet): the tag view's scale, where both ends must stand out as clearly as the middle."""
  hue = np.round(np.clip(values, 0.0, 1.0) * 135.0).astype(np.uint8)   # OpenCV hue: 0-179 for 0°-358°
  hsv = np.stack([hue, np.full_like(hue, 230), np.full_like(hue, 255)], axis=-1)
  return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _blend(image: np.ndarray, color: np.ndarray, weight: np.ndarray) -> np.ndarray:
  """The image in dimmed grey (so the colours stand out), `color` laid over with weight [h,w] in [0, 1]."""
  grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)[..., None] * 0.55
  a = np.clip(weight, 0.0, 1.0)[..., None]
  return np.round(grey * (1.0 - a) + color.astype(np.float32) * a).astype(np.uint8)


def heatmap_overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
  """A heatmap [h,w] over an RGB image [h,w,3]: colour = value (0-1, `colormap`), opacity grows with it."""
  return _blend(image, colormap(heat), 0.9 * np.sqrt(np.clip(heat, 0.0, 1.0)))


def tag_range(heat: np.ndarray, tags: np.ndarray, threshold: float = 0.1) -> Tuple[float, float]:
  """Colour range of the tag view: 2nd-98th percentile of the tags where the heatmap exceeds `threshold`
  (all pixels when none does); heat, tags [K,h,w]."""
  strong = heat > threshold
  values = tags[strong] if strong.any() else tags.ravel()
  lo, hi = (float(v) for v in np.percentile(values, [2, 98]))
  return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)


def tag_overlay(image: np.ndarray, heat: np.ndarray, tags: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """At each pixel the tag of the joint with the strongest heatmap, coloured on [lo, hi], its opacity the
  heatmap value: every joint of one person has (nearly) one tag, so one person should be one colour.

  Args:
    image: [h,w,3] RGB; heat, tags: [K,h,w] (tags: one value per joint, e.g. the mean over the L passes).
  """
  strongest = np.argmax(heat, axis=0)[None]
  tag = np.take_along_axis(tags, strongest, axis=0)[0]
  strength = np.take_along_axis(heat, strongest, axis=0)[0]
  return _blend(image, hue_colormap((tag - lo) / (hi - lo)), 0.95 * np.sqrt(np.clip(strength, 0.0, 1.0)))


def _text(image: np.ndarray, text: str, x: int, y: int, font_scale: float = 0.45) -> None:
  cv2.putText(image, text, (int(x), int(y)), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)


def _titled(tile: np.ndarray, title: str, legend: Optional[np.ndarray] = None,
            font_scale: float = 0.45) -> np.ndarray:
  """A tile with a title bar above it and an optional legend strip below it."""
  h, w = tile.shape[:2]
  bar = np.full((_TITLE_BAR, w, 3), _WHITE, np.uint8)
  _text(bar, title, 3, _TITLE_BAR - 7, font_scale)
  parts = [bar, tile] + ([legend] if legend is not None else [])
  return np.concatenate(parts, axis=0)


def colour_bar(width: int, lo: float, hi: float, label: str, cmap=colormap) -> np.ndarray:
  """A legend strip [_LEGEND, width, 3]: the colour scale `cmap` from lo (left) to hi (right), named."""
  strip = np.full((_LEGEND, width, 3), _WHITE, np.uint8)
  strip[3:13, 4:width - 4] = cmap(np.tile(np.linspace(0.0, 1.0, max(width - 8, 1)), (10, 1)))
  _text(strip, f'{lo:.2f}', 4, 29, 0.4)
  _text(strip, label, width // 2 - 4 * len(label), 29, 0.4)
  (tw, _), _ = cv2.getTextSize(f'{hi:.2f}', cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
  _text(strip, f'{hi:.2f}', width - 4 - tw, 29, 0.4)
  return strip


def _row(tiles: Sequence[np.ndarray]) -> np.ndarray:
  """Tiles side by side on white, separated by _GAP px, top-aligned."""
  h = max(t.shape[0] for t in tiles)
  width = sum(t.shape[1] for t in tiles) + _GAP * (len(tiles) - 1)
  row = np.full((h, width, 3), _WHITE, np.uint8)
  x = 0
  for t in tiles:
    row[:t.shape[0], x:x + t.shape[1]] = t
    x += t.shape[1] + _GAP
  return row


def _column(rows: Sequence[np.ndarray]) -> np.ndarray:
  """Rows one under the other on white (left-aligned, _GAP px apart)."""
  width = max(r.shape[1] for r in rows)
  out = np.full((sum(r.shape[0] for r in rows) + _GAP * (len(rows) - 1), width, 3), _WHITE, np.uint8)
  y = 0
  for r in rows:
    out[y:y + r.shape[0], :r.shape[1]] = r
    y += r.shape[0] + _GAP
  return out


def views_panel(image: np.ndarray, views: Sequence[str], maps=None, keypoints: Optional[np.ndarray] = None,
                skeleton: Sequence[Tuple[int, int]] = (), joint_names: Optional[Sequence[str]] = None,
                scores: Optional[np.ndarray] = None, colors=None, labels=None,
                skeleton_title: str = 'people (number: score)', tile_long: int = 480) -> np.ndarray:
  """One image's views in one RGB panel; every tile has a title and the map tiles a colour bar.

  Top row: 'skeleton' (the people), 'heatmaps' (the maximum over joints of the aggregated heatmaps over
  the image), 'tags' (`tag_overlay`, tags averaged over the L passes). Below: one small tile per joint
  (its heatmap; with 'tags' a second row of tiles, its tag map), each labelled with the joint's name and
  its highest heatmap value.

  Args:
    image: [h,w,3] RGB uint8.
    views: a subset of VIEWS.
    maps: inference.Maps of the image (needed for 'heatmaps' and 'tags').
    keypoints [P,K,3], scores [P], colors, labels: the people, as draw_people takes them.
    joint_names: K names for the per-joint tiles (default: the joint index).
    tile_long: long side of the top-row tiles in pixels (the image is scaled up or down to it).
  Returns:
    The panel, RGB uint8.
  """
  h, w = image.shape[:2]
  zoom = tile_long / max(h, w)
  zh, zw = max(1, int(round(h * zoom))), max(1, int(round(w * zoom)))
  big = cv2.resize(image, (zw, zh), interpolation=cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR)
  top, rows = [], []
  if 'skeleton' in views:
    people = np.zeros((0, 1, 3)) if keypoints is None else np.array(keypoints, np.float64)
    people[..., :2] *= zoom
    top.append(_titled(draw_people(big, people, skeleton, scores, colors=colors, labels=labels),
                       skeleton_title, np.full((_LEGEND, zw, 3), _WHITE, np.uint8)))
  if 'heatmaps' in views or 'tags' in views:
    if maps is None:
      raise ValueError('the heatmap and tag views need the maps (Predictor.predict(..., with_maps=True))')
    heat = maps_to_image(maps.heatmaps, maps.center, maps.scale, (zh, zw), zoom)          # [K,zh,zw]
    tags = maps_to_image(np.asarray(maps.tags).mean(axis=1), maps.center, maps.scale, (zh, zw), zoom)
    k = heat.shape[0]
    names = list(joint_names) if joint_names is not None else [str(i) for i in range(k)]
    lo, hi = tag_range(heat, tags)
    if 'heatmaps' in views:
      top.append(_titled(heatmap_overlay(big, heat.max(axis=0)), 'heatmaps, all joints (max over joints)',
                         colour_bar(zw, 0.0, 1.0, 'heatmap value')))
    if 'tags' in views:
      top.append(_titled(tag_overlay(big, heat, tags, lo, hi), 'tags of the strongest joint (1 person = 1 colour)',
                         colour_bar(zw, lo, hi, 'tag value', hue_colormap)))
    # Per-joint tiles: two rows of ceil(K/2), as wide as the top row allows (at least 160 px each).
    cols = math.ceil(k / 2)
    top_width = sum(t.shape[1] for t in top) + _GAP * (len(top) - 1)
    gw = max(160, (top_width - _GAP * (cols - 1)) // cols)
    gh = max(1, int(round(h * gw / w)))
    small = cv2.resize(big, (gw, gh), interpolation=cv2.INTER_AREA)
    heat_s = np.stack([cv2.resize(m, (gw, gh), interpolation=cv2.INTER_AREA) for m in heat])
    tags_s = np.stack([cv2.resize(m, (gw, gh), interpolation=cv2.INTER_AREA) for m in tags])
    grids = []
    if 'heatmaps' in views:
      grids.append([_titled(heatmap_overlay(small, heat_s[j]), f'{j} {names[j]} {heat[j].max():.2f}', None, 0.38)
                    for j in range(k)])
    if 'tags' in views:
      grids.append([_titled(tag_overlay(small, heat_s[j:j + 1], tags_s[j:j + 1], lo, hi),
                            f'{j} {names[j]} tag', None, 0.38) for j in range(k)])
    for tiles in grids:
      rows += [_row(tiles[:cols]), _row(tiles[cols:])]
  if not top and not rows:
    raise ValueError(f'no view to draw: choose any of {",".join(VIEWS)}')
  return _column(([_row(top)] if top else []) + rows)
