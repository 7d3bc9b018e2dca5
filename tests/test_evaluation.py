"""Evaluator checks against published reference values and hand-derived answers; I/O, errors and the CLI.

Cross-checks against pycocotools itself are in test_evaluation_pycocotools.py.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from litepose_jax import evaluation
from litepose_jax import keypoints as kp_lib

REPO = pathlib.Path(__file__).resolve().parents[1]

# xtcocotools 1.14.3 'keypoints_crowd', use_area=False (tests/data/crowdpose_eval_example/SOURCE.md).
XTCOCOTOOLS_EXAMPLE = {'AP': .7877, 'AP50': .9881, 'AP75': .7314, 'AR': .8222, 'AR50': 1.0, 'AR75': .7778,
                       'AP_easy': 1.0, 'AP_medium': .9802, 'AP_hard': .4116}


def _example(data_dir):
  d = data_dir / 'crowdpose_eval_example'
  return d / 'example_crowdpose_val.json', d / 'example_crowdpose_preds.json'


def test_crowdpose_example_matches_xtcocotools(data_dir):
  gt, preds = _example(data_dir)
  metrics = evaluation.evaluate(gt, preds)  # keypoint set inferred from the 14 joints
  assert list(metrics) == list(XTCOCOTOOLS_EXAMPLE)
  for k, v in XTCOCOTOOLS_EXAMPLE.items():
    assert abs(metrics[k] - v) <= 1e-4, (k, metrics[k], v)


def test_crowdpose_sample_gt_as_prediction(data_dir):
  gt = json.loads((data_dir / 'crowdpose_sample/test_crowdpose.json').read_text())
  ev = evaluation.KeypointEvaluator(gt, 'crowdpose')
  for a in gt['annotations']:
    if a['num_keypoints'] > 0:
      ev.add(a['image_id'], np.reshape(a['keypoints'], (1, 14, 3)), [1.0])
  # SOURCE.md: xtcocotools gives AP = AP50 = AP75 = AR = 1, easy -1, medium 1, hard -1 (both images medium).
  assert ev.compute() == {'AP': 1.0, 'AP50': 1.0, 'AP75': 1.0, 'AR': 1.0, 'AR50': 1.0, 'AR75': 1.0,
                          'AP_easy': -1.0, 'AP_medium': 1.0, 'AP_hard': -1.0}


def test_coco_gt_as_prediction(data_dir):
  gt = json.loads((data_dir / 'coco_mini/annotations/person_keypoints_val2017.json').read_text())
  results = [{'image_id': a['image_id'], 'category_id': 1, 'keypoints': a['keypoints'], 'score': 1.0}
             for a in gt['annotations'] if a['num_keypoints'] > 0 and not a['iscrowd']]
  m = evaluation.evaluate(gt, results)
  assert list(m) == ['AP', 'AP50', 'AP75', 'AR', 'AR50', 'AR75', 'APm', 'APl', 'ARm', 'ARl']
  assert all(abs(v - 1.0) < 1e-12 for v in m.values()), m


def _oks_by_formula(det, gt, bbox, area, sigmas):
  """OKS of one pair, joint by joint, written from the spec: exp(-d²/(2 s² k²)), k = 2σ."""
  labelled = [i for i in range(len(sigmas)) if gt[i][2] > 0]
  x, y, w, h = bbox
  terms = []
  for i in (labelled or range(len(sigmas))):
    if labelled:
      d2 = (det[i][0] - gt[i][0])**2 + (det[i][1] - gt[i][1])**2
    else:  # distance to the bbox grown by one width / height on each side
      dx = max(0, (x - w) - det[i][0]) + max(0, det[i][0] - (x + 2 * w))
      dy = max(0, (y - h) - det[i][1]) + max(0, det[i][1] - (y + 2 * h))
      d2 = dx**2 + dy**2
    terms.append(np.exp(-d2 / (2 * area * (2 * sigmas[i])**2)))
  return sum(terms) / len(terms)


def test_oks_matches_formula():
  rng = np.random.default_rng(0)
  sig = kp_lib.COCO.sigmas_array
  dets = rng.uniform(0, 200, (5, 17, 3))
  gts = rng.uniform(0, 200, (4, 17, 3))
  gts[:, :, 2] = rng.integers(0, 3, (4, 17))
  gts[3, :, 2] = 0  # no labelled joint: compared with the grown box
  bbox = np.column_stack([rng.uniform(0, 100, (4, 2)), rng.uniform(20, 80, (4, 2))])
  area = rng.uniform(500, 9000, 4)
  dets[0] = gts[0]  # a perfect detection
  dets[1, :, :2] = bbox[3, :2] + bbox[3, 2:] / 2  # inside the grown box of GT 3
  got = evaluation.oks(dets[:, None], gts[None], bbox[None], area[None], sig)
  want = np.array([[_oks_by_formula(d, g, b, a, sig) for g, b, a in zip(gts, bbox, area)] for d in dets])
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
  assert got[0, 0] == 1.0 and got[1, 3] == 1.0


def _gt(*image_people):
  """CrowdPose-format GT: image i+1 holds the given list of (x, y, w, h) people, all joints labelled."""
  images, anns = [], []
  for i, people in enumerate(image_people):
    images.append({'id': i + 1, 'width': 640, 'height': 480, 'crowdIndex': 0.5})
    for x, y, w, h in people:
      kp = np.column_stack([np.linspace(x, x + w, 14), np.linspace(y, y + h, 14), np.full(14, 2)])
      anns.append({'id': len(anns) + 1, 'image_id': i + 1, 'category_id': 1, 'bbox': [x, y, w, h],
                   'keypoints': kp.reshape(-1).tolist(), 'num_keypoints': 14, 'iscrowd': 0})
  return {'images': images, 'annotations': anns, 'categories': [{'id': 1, 'name': 'person'}]}


def _kp(gt, ann_index, shift=0.0):
  kp = np.reshape(gt['annotations'][ann_index]['keypoints'], (1, 14, 3)).astype(float)
  kp[..., :2] += shift
  return kp


def test_false_positive_on_image_without_gt_halves_precision():
  gt = _gt([(100, 100, 100, 200)], [])
  ev = evaluation.KeypointEvaluator(gt, 'crowdpose')
  ev.add(1, _kp(gt, 0), [0.5])                      # the one GT, found
  ev.add(2, _kp(gt, 0), [0.9])                      # a better-scored detection on an image without GT
  m = ev.compute()
  # Ranked [FP, TP]: precision 1/2 at every recall point, final recall 1.
  assert abs(m['AP'] - 0.5) < 1e-12 and m['AR'] == 1.0


@pytest.mark.parametrize('gt_image,want_ap', [(1, 1.0), (2, 0.5)])
def test_score_ties_across_images_follow_image_order(gt_image, want_ap):
  # Equal scores keep image-id order: the TP (on the GT's image) ranks first if that image id is the lower
  # one (precision 1 everywhere), else second behind the false positive (precision 1/2).
  person = [(100, 100, 100, 200)]
  gt = _gt(*[person if i == gt_image else [] for i in (1, 2)])
  ev = evaluation.KeypointEvaluator(gt, 'crowdpose')
  ev.add(3 - gt_image, _kp(gt, 0), [0.7])  # same pose, on the image without GT: a false positive
  ev.add(gt_image, _kp(gt, 0), [0.7])
  m = ev.compute()
  assert abs(m['AP'] - want_ap) < 1e-12 and m['AR'] == 1.0


def test_only_20_best_detections_per_image_count():
  gt = _gt([(100, 100, 100, 200)])
  ev = evaluation.KeypointEvaluator(gt, 'crowdpose')
  far = np.repeat(_kp(gt, 0, shift=300.0), 20, axis=0)
  ev.add(1, far, np.linspace(0.9, 0.5, 20))  # 20 false positives
  ev.add(1, _kp(gt, 0), [0.1])               # the perfect one is the 21st
  assert ev.compute()['AR'] == 0.0
  ev.add(1, _kp(gt, 0), [0.95])              # now within the 20 best
  assert ev.compute()['AR'] == 1.0


def test_all_ignored_ground_truth_gives_minus_one():
  gt = _gt([(100, 100, 100, 200), (300, 100, 100, 200)])
  gt['annotations'][0]['iscrowd'] = 1
  gt['annotations'][1]['num_keypoints'] = 0
  ev = evaluation.KeypointEvaluator(gt, 'crowdpose')
  ev.add(1, np.concatenate([_kp(gt, 0), _kp(gt, 1)]), [0.9, 0.8])
  assert set(ev.compute().values()) == {-1.0}


def test_results_roundtrip_and_bbox(tmp_path, data_dir):
  gt_path, preds_path = _example(data_dir)
  preds = json.loads(preds_path.read_text())
  ev = evaluation.KeypointEvaluator(gt_path)
  by_image = {}
  for r in preds:
    by_image.setdefault(r['image_id'], []).append(r)
  for image_id, rs in by_image.items():  # add as arrays, one image at a time
    ev.add(image_id, np.array([r['keypoints'] for r in rs]).reshape(-1, 14, 3), [r['score'] for r in rs])
  out = tmp_path / 'sub' / 'results.json'
  ev.write_results(out)
  written = json.loads(out.read_text())
  assert len(written) == len(preds) == len(ev)
  for r in written:
    assert set(r) == {'image_id', 'category_id', 'keypoints', 'score', 'bbox'} and r['category_id'] == 1
    x, y = r['keypoints'][0::3], r['keypoints'][1::3]
    assert r['bbox'] == [min(x), min(y), max(x) - min(x), max(y) - min(y)]
  # The written file evaluates to the published numbers, exactly as the arrays it came from.
  from_file = evaluation.evaluate(gt_path, out)
  assert all(abs(from_file[k] - v) <= 1e-4 for k, v in XTCOCOTOOLS_EXAMPLE.items())
  assert from_file == ev.compute()


def test_add_batch_with_valid_mask(data_dir):
  gt_path, preds_path = _example(data_dir)
  preds = json.loads(preds_path.read_text())
  ids = sorted({r['image_id'] for r in preds})
  kps = np.zeros((len(ids), 30, 14, 3))
  scores = np.zeros((len(ids), 30))
  valid = np.zeros((len(ids), 30), bool)
  for b, i in enumerate(ids):
    rs = [r for r in preds if r['image_id'] == i]
    kps[b, :len(rs)] = np.reshape([r['keypoints'] for r in rs], (-1, 14, 3))
    scores[b, :len(rs)] = [r['score'] for r in rs]
    valid[b, :len(rs)] = True
  ev = evaluation.KeypointEvaluator(gt_path, 'crowdpose')
  ev.add_batch(ids, kps, scores, valid)
  assert len(ev) == len(preds)
  metrics = ev.compute()
  assert all(abs(metrics[k] - v) <= 1e-4 for k, v in XTCOCOTOOLS_EXAMPLE.items())


def test_bad_input_errors(tmp_path, data_dir):
  gt_path, preds_path = _example(data_dir)
  preds = json.loads(preds_path.read_text())
  ev = evaluation.KeypointEvaluator(gt_path)
  with pytest.raises(ValueError, match=r'image id\(s\) \[424242\] are not in the ground truth'):
    ev.add(424242, np.zeros((1, 14, 3)), [1.0])
  with pytest.raises(ValueError, match=r'result #1: "keypoints" has 51 values, expected 42'):
    ev.add_results([preds[0], dict(preds[1], keypoints=[0.0] * 51)])
  with pytest.raises(ValueError, match=r'expected keypoints \[P, 14, 3\]'):
    ev.add(preds[0]['image_id'], np.zeros((2, 17, 3)), [1.0, 1.0])
  with pytest.raises(ValueError, match='non-finite'):
    ev.add(preds[0]['image_id'], np.full((1, 14, 3), np.nan), [1.0])
  with pytest.raises(ValueError, match='category_id 2'):
    ev.add_results([dict(preds[0], category_id=2)])
  with pytest.raises(ValueError, match="category id 1 'person' has 14 keypoints but keypoint set 'coco' has 17"):
    evaluation.KeypointEvaluator(gt_path, 'coco')
  with pytest.raises(ValueError, match='missing.json: annotation file not found'):
    evaluation.KeypointEvaluator(tmp_path / 'missing.json')
  bad_gt = json.loads(gt_path.read_text())
  bad_gt['annotations'][2]['keypoints'] = bad_gt['annotations'][2]['keypoints'][:-3]
  with pytest.raises(ValueError, match=r'annotation id \d+ \(annotations\[2\], image id \d+, \d+\.jpg\) has '
                                       r'39 keypoint values, expected 3\*14 = 42'):
    evaluation.KeypointEvaluator(bad_gt)
  assert len(ev) == 0  # failed adds leave nothing behind


def _cli(*args):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, '-m', 'litepose_jax.evaluation', *map(str, args)], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=120)


def test_cli_writes_metrics(tmp_path, data_dir):
  gt_path, preds_path = _example(data_dir)
  out = tmp_path / 'metrics.json'
  proc = _cli('--gt', gt_path, '--results', preds_path, '--out', out)
  assert proc.returncode == 0, proc.stderr
  assert 'AP_medium' in proc.stdout and '0.9802' in proc.stdout
  metrics = json.loads(out.read_text())
  assert list(metrics) == list(XTCOCOTOOLS_EXAMPLE)
  assert all(abs(metrics[k] - v) <= 1e-4 for k, v in XTCOCOTOOLS_EXAMPLE.items())

  bad = tmp_path / 'bad.json'
  bad.write_text(json.dumps([dict(json.loads(preds_path.read_text())[0], image_id=424242)]))
  proc = _cli('--gt', gt_path, '--results', bad, '--dataset', 'crowdpose')
  assert proc.returncode != 0
  assert '424242' in proc.stderr and 'Traceback' not in proc.stderr
