"""visualize: people land where their keypoints are, weak joints are hidden, inputs stay untouched, and the
worst-image drawing maps image pixels back onto the network input (the inverse of inference.to_image)."""

import numpy as np

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
