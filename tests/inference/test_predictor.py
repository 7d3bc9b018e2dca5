"""The test-time path against the authors' (reference/inference_xs_crowdpose_sample.npz): XS weights from
litepose_xs_reference.npz, flip test, the two crowdpose_sample images."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from litepose_jax import convert
from litepose_jax import from_config
from litepose_jax import inference
from litepose_jax import keypoints as kp_lib
from litepose_jax import models

IMAGES = ('103319', '106848')


@pytest.fixture(scope='module')
def ref(reference_dir):
  return np.load(reference_dir / 'inference_xs_crowdpose_sample.npz')


@pytest.fixture(scope='module')
def xs(reference_dir):
  sd = convert.load_state_dict(reference_dir / 'litepose_xs_reference.npz')
  return models.create('xs', 14), convert.torch_to_flax(sd, 'xs', 14)


def _ceil64(v):
  return int(-(-v // 64) * 64)


@pytest.mark.parametrize('h,w,size', [(480, 640, 256), (640, 427, 256), (500, 500, 448), (333, 1000, 512)])
def test_resize_sizes_follow_the_spec(h, w, size):
  """Spec e.1: short side → I, long side rounded up to a multiple of 64; center; box = size·h/I or w."""
  image = np.full((h, w, 3), 128, np.uint8)
  out, center, scale = inference.resize_align(image, size)
  if w < h:
    expected_hw, box_w = (_ceil64(size * h / w), size), w
  else:
    expected_hw = (size, _ceil64(size * w / h))
    box_w = expected_hw[1] * h / size
  assert out.shape == expected_hw + (3,)
  np.testing.assert_array_equal(center, [int(w / 2 + 0.5), int(h / 2 + 0.5)])
  assert scale[0] * 200 == pytest.approx(box_w)


@pytest.mark.parametrize('image_id', IMAGES)
def test_resize_matches_authors_input(ref, data_dir, image_id):
  image = inference.read_rgb(data_dir / 'crowdpose_sample' / f'{image_id}.jpg')
  out, center, scale = inference.resize_align(image, 256)
  expected = ref[f'{image_id}/input'][0].transpose(1, 2, 0)
  assert out.shape == expected.shape
  np.testing.assert_array_equal(center, ref[f'{image_id}/center'])
  np.testing.assert_allclose(scale, ref[f'{image_id}/scale'], rtol=1e-12)
  # The authors' JPEG decoder differs from ours by a few grey levels on some pixels (up to 4/255, i.e.
  # 0.07 after normalisation, on 6 % of the pixels); a half-pixel geometry error would give > 3.
  diff = np.abs(out - expected)
  assert diff.max() < 0.08 and diff.mean() < 0.002


def test_aggregated_maps_match_authors(ref, xs):
  """Forward + flip + aggregation from the authors' network input: maps within 1e-4."""
  model, variables = xs
  image_id = '106848'
  x = jnp.asarray(ref[f'{image_id}/input'].transpose(0, 2, 3, 1))
  ks = kp_lib.get('crowdpose')
  heat, tags = jax.jit(lambda v, x: inference.test_time_maps(
      lambda y: model.apply(v, y, train=False), [x], ks.flip_index))(variables, x)
  np.testing.assert_allclose(np.asarray(heat[0]), ref[f'{image_id}/final_heatmaps'], atol=1e-4, rtol=0)
  np.testing.assert_allclose(np.asarray(tags[0]).transpose(0, 2, 3, 1), ref[f'{image_id}/tags'], atol=1e-4,
                             rtol=0)


@pytest.fixture(scope='module')
def predictor(xs):
  """The predictor evaluate.py / predict.py build (batch 1, the authors' decoder settings)."""
  model, variables = xs
  config = common.get_config('xs', 'crowdpose')
  config.eval.batch_size = 1
  return from_config.predictor(config, model, variables, kp_lib.get('crowdpose'), 256)


@pytest.mark.parametrize('image_id', IMAGES)
def test_final_people_match_authors(ref, predictor, image_id):
  """Whole jitted path (forward, flip, aggregation, decode, back-projection) from the authors' input."""
  x = ref[f'{image_id}/input'].transpose(0, 2, 3, 1)
  kp, scores, valid = predictor.predict_prepared([x], ref[f'{image_id}/center'][None],
                                                 ref[f'{image_id}/scale'][None])
  final = ref[f'{image_id}/final_preds']
  assert valid[0].sum() == len(final) == 30
  np.testing.assert_allclose(kp[0], final[..., :3], atol=1e-3, rtol=0)
  np.testing.assert_allclose(scores[0], ref[f'{image_id}/scores'], atol=1e-5, rtol=0)


def test_back_projection_formula():
  """Spec e.10: x_img = c_x + (x − w'/2)·(src_w/w'), y_img = c_y + (y − h'/2)·(src_w/w')."""
  kp = jnp.asarray([[[[0.0, 0.0, 0.0], [224.0, 128.0, 0.5], [447.5, 255.5, 1.0]]]])
  out = np.asarray(inference.to_image(kp, jnp.asarray([[320.0, 213.0]]), jnp.asarray([[3.71875, 2.125]]),
                                      (256, 448)))
  f = 3.71875 * 200 / 448
  expected = [[320 + (x - 224) * f, 213 + (y - 128) * f, v] for x, y, v in np.asarray(kp[0, 0])]
  np.testing.assert_allclose(out[0, 0], expected, rtol=1e-6)


@pytest.mark.parametrize('shape', [(5, 7), (2, 3, 1, 4), (1, 2, 6, 1), (3, 8, 9)])
def test_upsample_matches_bilinear_half_pixel(shape):
  """upsample2x against cv2.resize INTER_LINEAR (half-pixel centres, edge clamp) as an oracle, plane by
  plane over the leading axes, including 1-pixel sides (both neighbours are the pixel itself)."""
  x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  ours = np.asarray(inference.upsample2x(jnp.asarray(x)))
  h, w = shape[-2:]
  assert ours.shape == shape[:-2] + (2 * h, 2 * w)
  planes = x.reshape(-1, h, w)
  expected = np.stack([cv2.resize(p, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR).reshape(2 * h, 2 * w)
                       for p in planes])
  np.testing.assert_allclose(ours.reshape(-1, 2 * h, 2 * w), expected, atol=1e-6)


def test_read_rgb_and_to_uint8(data_dir, tmp_path):
  """read_rgb: RGB order (cv2 reads BGR); to_uint8 inverts ToTensor + Normalize (ImageNet mean / std)."""
  path = data_dir / 'crowdpose_sample' / '103319.jpg'
  image = inference.read_rgb(path)
  np.testing.assert_array_equal(image, cv2.imread(str(path))[..., ::-1])
  grey = np.random.default_rng(0).integers(0, 256, (4, 5, 3)).astype(np.uint8)
  normalised = (grey / np.float32(255) - np.float32([0.485, 0.456, 0.406])) / np.float32([0.229, 0.224, 0.225])
  np.testing.assert_array_equal(inference.to_uint8(normalised.astype(np.float32)), grey)
  (tmp_path / 'bad.jpg').write_bytes(b'not an image')
  with pytest.raises(OSError, match='bad.jpg'):
    inference.read_rgb(tmp_path / 'bad.jpg')
