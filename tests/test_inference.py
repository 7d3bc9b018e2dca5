"""The test-time path against the authors' (reference/inference_xs_crowdpose_sample.npz): XS weights from
litepose_xs_reference.npz, flip test, the two crowdpose_sample images."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from litepose_jax import convert
from litepose_jax import eval_lib
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
  image = eval_lib.read_rgb(data_dir / 'crowdpose_sample' / f'{image_id}.jpg')
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
  return eval_lib.make_predictor(config, model, variables, kp_lib.get('crowdpose'), 256)


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


def test_upsample_matches_bilinear_half_pixel():
  """upsample2x against cv2.resize INTER_LINEAR (half-pixel centres, edge clamp) as an oracle."""
  x = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
  ours = np.asarray(inference.upsample2x(inference.upsample2x(jnp.asarray(x), 0), 1))
  np.testing.assert_allclose(ours, cv2.resize(x, (14, 10), interpolation=cv2.INTER_LINEAR), atol=1e-6)


# ---- the evaluation loop (eval_lib) ------------------------------------------------------------------------

class _PycocotoolsEvaluator:
  """The evaluator interface (add / compute) backed by pycocotools itself, the independent oracle."""

  def __init__(self, gt, sigmas):
    # CrowdPose's object scale is bbox w·h·0.53 (spec f); pycocotools reads it from 'area'.
    anns = [dict(a, area=a['bbox'][2] * a['bbox'][3] * 0.53) for a in gt['annotations']]
    self.gt, self.sigmas, self.results = dict(gt, annotations=anns), sigmas, []

  def add(self, image_id, keypoints, scores):
    for kp, s in zip(keypoints, scores):
      self.results.append({'image_id': int(image_id), 'category_id': 1,
                           'keypoints': [float(v) for v in kp.ravel()], 'score': float(s)})

  def compute(self):
    import contextlib, io  # pylint: disable=g-import-not-at-top,multiple-imports
    from pycocotools.coco import COCO  # pylint: disable=g-import-not-at-top
    from pycocotools.cocoeval import COCOeval  # pylint: disable=g-import-not-at-top
    with contextlib.redirect_stdout(io.StringIO()):
      gt = COCO()
      gt.dataset = self.gt
      gt.createIndex()
      ev = COCOeval(gt, gt.loadRes(self.results), 'keypoints')
      ev.params.kpt_oks_sigmas = self.sigmas
      ev.evaluate(), ev.accumulate(), ev.summarize()
    return {'AP': float(ev.stats[0])}


def test_eval_loop_batches_every_image_once_and_writes_worst_pngs(predictor, data_dir, tmp_path):
  src = data_dir / 'crowdpose_sample'
  split = eval_lib.JsonSplit(str(src / 'test_crowdpose.json'), str(src))
  batches = list(split.batches(predictor, batch_size=1))
  assert sorted(int(b['image_id'][0]) for b in batches) == [103319, 106848]
  evaluator = _PycocotoolsEvaluator(split.data, predictor.keypoint_set.sigmas_array)
  metrics, worst, timing = eval_lib.run(predictor, batches, evaluator, split=split, num_worst=2,
                                        progress=False)
  assert timing['images'] == 2 and 0.0 <= metrics['AP'] <= 1.0
  # The eval loop adds exactly what the predictor returns for each image, whatever the batching.
  direct = predictor.predict([eval_lib.read_rgb(split.paths[i]) for i in (103319, 106848)])
  added = {i: [r for r in evaluator.results if r['image_id'] == i] for i in (103319, 106848)}
  for image_id, pred in zip((103319, 106848), direct):
    assert len(added[image_id]) == len(pred.scores) == 30
    np.testing.assert_allclose([r['keypoints'] for r in added[image_id]], pred.keypoints.reshape(30, -1),
                               rtol=1e-6)
  assert [w[0] for w in worst] == sorted(w[0] for w in worst)  # worst first
  paths = eval_lib.write_worst(str(tmp_path), split, worst, predictor.keypoint_set)
  for path, (_, image_id, _, _) in zip(paths, worst):
    h, w = (480, 640) if image_id == 103319 else (425, 640)
    assert cv2.imread(path).shape == (h + 24, 2 * w + 8, 3)


def test_image_quality_extremes():
  ks = kp_lib.get('crowdpose')
  gt = np.zeros((2, 14, 3))
  gt[0, :, :2] = np.random.default_rng(0).uniform(100, 200, (14, 2))
  gt[0, :, 2] = 2
  gt[1, :, :2] = gt[0, :, :2] + 300
  gt[1, :7, 2] = 1
  assert eval_lib.image_quality(gt.copy(), np.array([0.9, 0.8]), gt, ks) == pytest.approx(1.0)
  assert eval_lib.image_quality(np.zeros((0, 14, 3)), np.zeros(0), gt, ks) == 0.0
  assert eval_lib.image_quality(gt[:1], np.array([0.9]), gt, ks) == pytest.approx(0.5)
  assert eval_lib.image_quality(gt[:1], np.array([0.9]), np.zeros((0, 14, 3)), ks) == 1.0
