"""visualize: people land where their keypoints are, weak joints are hidden, inputs stay untouched, and the
worst-image drawing maps image pixels back onto the network input (the inverse of inference.to_image)."""

import types

import numpy as np
import pytest

from litepose_jax import inference
from litepose_jax import visualize

SKELETON = ((0, 1),)


def _blank(h=64, w=96):
  return np.zeros((h, w, 3), np.uint8)


def test_draw_people_marks_the_joints_and_leaves_the_input_alone():
  image = _blank()
  people = np.array([[[20.0, 30.0, 1.0], [70.0, 30.0, 1.0]]])
  out = visualize.draw_people(image, people, SKELETON, colors=[(255, 0, 0)])
  assert not image.any()                                  # a copy is annotated
  assert out[30, 20, 0] > 150 and out[30, 70, 0] > 150    # the two joints
  assert out[30, 45, 0] > 100                             # the limb between them
  assert not out[5:15].any() and not out[50:].any()       # nothing far from the person


def test_joints_at_or_below_min_confidence_are_not_drawn():
  people = np.array([[[20.0, 30.0, 0.04], [70.0, 30.0, 1.0]]])
  out = visualize.draw_people(_blank(), people, SKELETON, min_confidence=0.05, colors=[(0, 255, 0)])
  assert out[30, 20].max() == 0 and out[30, 70, 1] > 150
  assert out[30, 45].max() == 0                           # no limb to a hidden joint


def test_ground_truth_draws_labelled_joints_only():
  gt = np.array([[[10.0, 10.0, 2.0], [50.0, 40.0, 0.0]]])
  out = visualize.draw_ground_truth(_blank(), gt, SKELETON)
  assert tuple(out[10, 10]) == visualize.GT_COLOR
  assert out[40, 50].max() == 0


def test_side_by_side_layout():
  left, right = np.full((10, 20, 3), 50, np.uint8), np.full((10, 20, 3), 200, np.uint8)
  canvas = visualize.side_by_side(left, right)
  assert canvas.shape == (10 + 24, 2 * 20 + 8, 3)
  assert (canvas[24:, :20] == 50).all() and (canvas[24:, 28:] == 200).all()


def test_to_input_pixels_inverts_the_back_projection():
  rng = np.random.default_rng(0)
  center, scale, hw = np.array([321.0, 240.5]), np.array([3.1, 4.2]), (256, 384)
  xy = rng.uniform(0, 256, size=(5, 2))
  kp = np.concatenate([xy, np.ones((5, 1))], -1)[None, None]           # [B=1,S=1,5,3]
  image_xy = np.asarray(inference.to_image(kp, center[None], scale[None], hw))[0, 0, :, :2]
  np.testing.assert_allclose(visualize.to_input_pixels(image_xy, center, scale, hw), xy, atol=1e-4)


def test_prediction_vs_truth_upscales_to_the_short_side():
  drawing = visualize.prediction_vs_truth(_blank(64, 96), np.zeros((0, 2, 3)), np.zeros(0), np.zeros((0, 2, 3)),
                                          np.array([48.0, 32.0]), np.array([0.48, 0.32]), SKELETON,
                                          min_short_side=128)
  assert drawing.shape == (64 * 2 + 24, 2 * 96 * 2 + 8, 3)


def test_write_rgb_round_trip(tmp_path):
  image = np.zeros((8, 8, 3), np.uint8)
  image[..., 0] = 255                                     # red in RGB
  path = tmp_path / 'red.png'
  visualize.write_rgb(str(path), image)
  np.testing.assert_array_equal(inference.read_rgb(path), image)


# -- views of the maps (predict.py --draw, eval.worst_image_views) -----------------------------------------

def test_map_pixels_land_where_keypoints_do():
  """Oracle: inference.to_image (tested against the authors): a map peak at (u, v) is drawn at the image
  pixel to_image gives that map position, for a padded, scaled network input."""
  hm, wm, center, scale = 32, 48, np.array([70.0, 45.0]), np.array([0.9, 0.6])
  u, v = 30, 11
  heat = np.zeros((1, hm, wm), np.float32)
  heat[0, v, u] = 1.0
  xy = np.asarray(inference.to_image(np.array([[[[u, v, 1.0]]]]), center[None], scale[None], (hm, wm)))
  for zoom in (1.0, 2.0):
    placed = visualize.maps_to_image(heat, center, scale, (int(90 * zoom), int(140 * zoom)), zoom)
    y, x = np.unravel_index(np.argmax(placed[0]), placed.shape[1:])
    assert abs(x - zoom * xy[0, 0, 0, 0]) <= 1 and abs(y - zoom * xy[0, 0, 0, 1]) <= 1, (zoom, x, y, xy)


def test_tag_view_gives_each_person_its_colour():
  """Two people (blobs of joints 0 and 1) with tags -1 and +1: their pixels take the two ends of the colour
  scale; where no heatmap responds, the image shows through in dimmed grey."""
  image = np.full((40, 80, 3), 200, np.uint8)
  heat = np.zeros((2, 40, 80), np.float32)
  heat[0, 15:25, 10:20] = 1.0      # person A's joint 0
  heat[1, 15:25, 60:70] = 1.0      # person B's joint 1
  tags = np.stack([np.full((40, 80), -1.0), np.full((40, 80), 1.0)]).astype(np.float32)
  out = visualize.tag_overlay(image, heat, tags, -1.0, 1.0).astype(int)
  lo, hi = visualize.hue_colormap(np.array([[0.0, 1.0]]))[0].astype(int)
  assert np.abs(out[20, 15] - lo).max() <= 15 and np.abs(out[20, 65] - hi).max() <= 15
  assert np.abs(lo - hi).max() > 100                      # two clearly different colours
  assert tuple(out[5, 40]) == (110, 110, 110)             # 0.55 x grey 200, no colour


def test_views_panel_layout_and_unknown_views():
  maps = types.SimpleNamespace(heatmaps=np.zeros((14, 32, 48), np.float32),
                               tags=np.zeros((14, 2, 32, 48), np.float32),
                               center=np.array([48.0, 32.0]), scale=np.array([0.48, 0.32]))
  panel = visualize.views_panel(_blank(64, 96), ('skeleton', 'heatmaps', 'tags'), maps,
                                np.zeros((0, 14, 3)), SKELETON, tile_long=480)
  top = 22 + 320 + 34                                     # title, tile (96x64 → 480x320), colour bar
  grid = 2 * (22 + round(64 * 202 / 96))                  # 7 tiles a row: (3·480 + 2·6 − 6·6) // 7 = 202 px
  assert panel.shape == (top + 2 * grid + 4 * 6, 3 * 480 + 2 * 6, 3)
  assert visualize.parse_views('tags, skeleton') == ('skeleton', 'tags')
  with pytest.raises(ValueError, match="unknown view 'heat'"):
    visualize.parse_views('skeleton,heat')
  with pytest.raises(ValueError, match='need the maps'):
    visualize.views_panel(_blank(), ('heatmaps',))


@pytest.mark.parametrize('x,y', [(3.0, 1.0), (93.0, 2.0), (90.0, 62.0)])
def test_the_score_label_stays_inside_the_image(x, y):
  """A person at an edge or corner: its label is drawn (inside the image), not clipped away."""
  people = np.array([[[x, y, 1.0], [x, y, 1.0]]])
  plain = visualize.draw_people(_blank(), people, SKELETON, colors=[(255, 255, 0)])
  labelled = visualize.draw_people(_blank(), people, SKELETON, np.array([0.87]), colors=[(255, 255, 0)])
  changed = np.argwhere(np.abs(labelled.astype(int) - plain).max(-1) > 100)
  assert len(changed) > 20, 'the label is missing'        # "0.87" at font 0.4 covers ~40 pixels
