"""The evaluation loop (eval_lib) joined to the data pipeline's eval input and litepose_jax.evaluation.

Oracles: maps drawn from the ground truth itself (a perfect network: every person must be found, AP 1.0),
pycocotools on the written results, and the ground-truth json read with the json module.
"""

import json

import cv2
import numpy as np
import pytest

from configs import common
from litepose_jax import convert
from litepose_jax import eval_lib
from litepose_jax import evaluation
from litepose_jax import keypoints as kp_lib
from litepose_jax import models
from litepose_jax.train import loop
from tests import eval_support

KS = kp_lib.get('crowdpose')


def _pycocotools_ap(ann_file, results):
  return evaluation.evaluate(ann_file, results, 'crowdpose', backend='pycocotools')


def test_perfect_maps_score_ap_1_and_the_worst_images_are_drawn(data_dir, tmp_path):
  config = eval_support.sample_config(data_dir)
  ann_file = config.dataset.ann_file
  gt = eval_lib.ground_truth(config)
  net = eval_support.PerfectNetwork(ann_file)
  evaluator = evaluation.KeypointEvaluator(gt, KS)
  result = eval_lib.run(net, eval_lib.eval_batches(config, 256), evaluator, num_worst=2, progress=False)
  assert result.timing['images'] == 2
  assert result.metrics['AP'] == 1.0 and result.metrics['AR'] == 1.0, result.metrics
  assert _pycocotools_ap(ann_file, evaluator.results())['AP'] == 1.0
  assert sorted(w.image_id for w in result.worst) == [103319, 106848]
  assert all(w.quality > 0.95 for w in result.worst), [w.quality for w in result.worst]

  paths = eval_lib.write_worst(str(tmp_path), result.worst, gt, KS)
  assert len(paths) == 2
  for path, w in zip(paths, result.worst):
    png = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    h, wd = w.image.shape[:2]  # network input 256 x 384 / 448, upscaled x2
    assert png.shape == (2 * h + 24, 2 * (2 * wd) + 8, 3)
    # Drawn on the network input: the left panel is the (upscaled) input plus the drawn people.
    left = png[24:, :2 * wd].astype(int)
    plain = cv2.resize(w.image, (2 * wd, 2 * h), interpolation=cv2.INTER_LINEAR).astype(int)
    assert np.mean(np.abs(left - plain).max(-1) <= 2) > 0.8
    assert np.mean(np.abs(left - plain).max(-1) > 30) > 0.002  # the skeletons


def test_a_misplaced_person_lowers_ap_and_ranks_its_image_worst(data_dir):
  """The negative control: one person of 106848 drawn 12 input px (20 image px) to the right."""
  config = eval_support.sample_config(data_dir)
  ann_file = config.dataset.ann_file
  evaluator = evaluation.KeypointEvaluator(ann_file, KS)
  net = eval_support.PerfectNetwork(ann_file, shift=eval_support.SHIFTED)
  result = eval_lib.run(net, eval_lib.eval_batches(config, 256), evaluator, num_worst=2, progress=False)
  assert result.metrics['AP'] < 0.95
  assert result.metrics == pytest.approx(_pycocotools_ap(ann_file, evaluator.results()))
  assert [w.image_id for w in result.worst] == [106848, 103319] and result.worst[1].quality > 0.95
  # Spec (f) OKS of the shifted person (CrowdPose: s² = bbox w·h·0.53, k = 2σ), the other one ~1.
  data = json.loads(open(ann_file).read())
  people = [a for a in data['annotations'] if a['image_id'] == 106848 and a['num_keypoints'] > 0]
  assert len(people) == 2  # (plus one without labelled joints, ignored)
  a = people[0]
  labelled = np.reshape(a['keypoints'], (-1, 3))[:, 2] > 0
  d = 12.0 * result.worst[0].scale[0] * 200 / 448  # input px → image px
  e = d**2 / (2 * a['bbox'][2] * a['bbox'][3] * 0.53 * (2 * KS.sigmas_array)**2)
  assert result.worst[0].quality == pytest.approx((1 + np.exp(-e)[labelled].mean()) / 2, abs=0.01)


def test_max_images_scores_the_evaluated_images_only(data_dir):
  config = eval_support.sample_config(data_dir)
  ann_file = config.dataset.ann_file
  evaluator = evaluation.KeypointEvaluator(ann_file, KS)
  result = eval_lib.run(eval_support.PerfectNetwork(ann_file), eval_lib.eval_batches(config, 256), evaluator,
                        max_images=1, progress=False)
  assert result.timing['images'] == 1 and len({r['image_id'] for r in evaluator.results()}) == 1
  assert result.metrics['AP'] == 1.0  # the other image's people are not counted as missed


def test_image_quality_extremes(data_dir):
  gt = evaluation.load_ground_truth(data_dir / 'crowdpose_sample' / 'test_crowdpose.json')
  scale = evaluation.evaluator.object_scale(gt, KS, evaluation.protocol.CROWDPOSE)
  # 106848: two people with labelled joints and one without (ignored by the evaluator: not counted).
  people = gt.keypoints[gt.image_index == int(np.flatnonzero(gt.image_ids == 106848)[0])]
  assert len(people) == 3
  q = lambda kp, s: eval_lib.image_quality(kp, np.asarray(s, float), gt, 106848, scale, KS)
  assert q(people, [0.9, 0.8, 0.7]) == pytest.approx(1.0)
  assert q(np.zeros((0, 14, 3)), []) == 0.0
  assert q(people[:1], [0.9]) == pytest.approx(1 / 2)
  # A duplicate of person 0 can only take the other person (160 px away: OKS ~0.01), not person 0 again.
  assert 0.5 < q(np.concatenate([people[:1], people[:1]]), [0.9, 0.8]) < 0.52
  assert eval_lib.image_quality(people, np.ones(3), gt, 424242, scale, KS) == 1.0  # no GT person


def test_split_settings_are_checked_before_any_model(data_dir, tmp_path):
  config = eval_support.sample_config(data_dir)
  config.eval.scales = (1.0, 0.5)
  with pytest.raises(ValueError, match='single-scale'):
    eval_lib.ground_truth(config)
  config = common.get_config('xs', 'crowdpose')
  config.dataset.data_dir = str(tmp_path)
  with pytest.raises(FileNotFoundError, match='crowdpose_test.json.*coco_json'):
    eval_lib.ground_truth(config)


def test_training_eval_hook_on_the_synthetic_split(tmp_path, reference_dir):
  """train_lib's default eval hook evaluates the synthetic val split (generated on first use).

  XS with the authors' reference weights (random: 30 people found on any image, AP ~0)."""
  config = common.get_config('xs', 'crowdpose')
  config.dataset.name = 'synthetic'
  config.dataset.data_dir = str(tmp_path / 'data')
  config.dataset.synthetic_val_images = 1  # 291x385: the 256x384 test-path shape of the sample image
  config.eval.batch_size = 1
  config.input.tf_threads = 1
  model = models.create('xs', 14)
  variables = convert.torch_to_flax(
      convert.load_state_dict(reference_dir / 'litepose_xs_reference.npz'), 'xs', 14)
  metrics = loop.library_eval_fn(model, variables, config, tmp_path / 'work', 7)
  names = evaluation.protocol.CROWDPOSE.metric_names()
  assert set(names) <= set(metrics) and 0.0 <= metrics['AP'] <= 1.0
  written = json.loads((tmp_path / 'work' / 'eval_7' / 'metrics.json').read_text())
  assert written == pytest.approx({k: metrics[k] for k in names})
  results = json.loads((tmp_path / 'work' / 'eval_7' / 'results.json').read_text())
  assert {r['image_id'] for r in results} == {1} and len(results) == 30
  assert written['AP'] == pytest.approx(_pycocotools_ap(eval_lib.ground_truth(config).source, results)['AP'])
  assert len(list((tmp_path / 'work' / 'eval_7' / 'worst_images').glob('*.png'))) == 1
