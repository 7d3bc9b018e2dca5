"""Our evaluator against pycocotools itself (the oracle), stat by stat.

The oracle is pycocotools' keypoint COCOeval called directly here (not through our backend). CrowdPose
conventions with plain pycocotools (xtcocotools does not import under NumPy 2):
* use_area=False: each GT annotation's 'area' is set to bbox w·h·0.53 in the copy given to pycocotools,
  so its OKS scale and area range are those of xtcocotools 'keypoints_crowd' / crowdposetools;
* AP easy/medium/hard: pycocotools' per-image results (evaluateImg) of the images of one crowd-index bin,
  accumulated by pycocotools, and the mean of the precision array taken (xtcocotools `get_type_result`
  re-runs evaluate on the subset; per-image results do not depend on other images, so this is the same
  numbers at a third of the cost).
"""

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from litepose_jax import evaluation
from litepose_jax import keypoints as kp_lib
from litepose_jax.evaluation import perturb

BINS = (('easy', -np.inf, 0.2), ('medium', 0.2, 0.8), ('hard', 0.8, np.inf))


def pycocotools_stats(dataset, results, dataset_name):
  """pycocotools' 10 keypoint stats, plus AP easy/medium/hard for CrowdPose."""
  ks = kp_lib.get(dataset_name)
  crowdpose = dataset_name == 'crowdpose'
  dataset = copy.deepcopy(dataset)
  if crowdpose:
    for a in dataset['annotations']:
      a['area'] = a['bbox'][2] * a['bbox'][3] * 0.53
  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO()
    gt.dataset = dataset
    gt.createIndex()
    ev = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), 'keypoints')
    ev.params.kpt_oks_sigmas = ks.sigmas_array
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    s = ev.stats
    out = dict(AP=s[0], AP50=s[1], AP75=s[2], AR=s[5], AR50=s[6], AR75=s[7], APm=s[3], APl=s[4],
               ARm=s[8], ARl=s[9])
    if not crowdpose:
      return out
    all_ids = list(ev.params.imgIds)
    eval_imgs, pe = ev.evalImgs, ev._paramsEval  # pylint: disable=protected-access
    crowd = {im['id']: im['crowdIndex'] for im in dataset['images']}
    for name, lo, hi in BINS:
      ids = [i for i in all_ids if lo <= crowd[i] < hi]
      if not ids:
        out[f'AP_{name}'] = -1.0
        continue
      pos = [all_ids.index(i) for i in ids]
      sub = copy.copy(ev)
      sub.evalImgs = [eval_imgs[a * len(all_ids) + p] for a in range(len(pe.areaRng)) for p in pos]
      sub._paramsEval = copy.deepcopy(pe)  # pylint: disable=protected-access
      sub._paramsEval.imgIds = ids  # pylint: disable=protected-access
      sub.params = copy.deepcopy(pe)
      sub.params.imgIds = ids
      sub.accumulate()
      out[f'AP_{name}'] = float(np.mean(sub.eval['precision'][:, :, :, 0, :]))
  return out


def assert_same(ours, ref, tol=1e-4):
  """Every stat we report is within tol of the oracle's."""
  assert set(ours) <= set(ref), (sorted(ours), sorted(ref))
  diff = {k: abs(ours[k] - ref[k]) for k in ours}
  assert max(diff.values()) <= tol, {k: (ours[k], ref[k]) for k in ours if diff[k] > tol}
  return max(diff.values())


def test_perturbed_coco_mini_val(data_dir):
  dataset = json.loads((data_dir / 'coco_mini/annotations/person_keypoints_val2017.json').read_text())
  for seed in range(4):
    results = perturb.perturbed_results(dataset, seed)
    ours = evaluation.evaluate(dataset, results, 'coco')
    assert_same(ours, pycocotools_stats(dataset, results, 'coco'))


def test_perturbed_crowdpose_val_2000_images(data_dir):
  dataset = json.loads((data_dir / 'crowdpose_val_annotations/crowdpose_val.json').read_text())
  results = perturb.perturbed_results(dataset, seed=0)
  assert len(dataset['images']) == 2000 and len({r['image_id'] for r in results}) > 1900
  ours = evaluation.evaluate(dataset, results, 'crowdpose')
  ref = pycocotools_stats(dataset, results, 'crowdpose')
  assert_same(ours, ref)
  assert 0.1 < ref['AP'] < 0.9  # a real mix of hits and misses, not a degenerate case


def _person(x, y, w, h, k=14, labelled=None):
  """A CrowdPose GT person: joints on a grid inside its box."""
  gx = x + w * (np.arange(k) % 4 + 0.5) / 4
  gy = y + h * (np.arange(k) // 4 + 0.5) / 4
  v = np.full(k, 2) if labelled is None else np.where(labelled, 2, 0)
  kp = np.stack([np.where(v > 0, gx, 0), np.where(v > 0, gy, 0), v], 1).reshape(-1)
  return {'keypoints': kp.tolist(), 'bbox': [x, y, w, h], 'num_keypoints': int((v > 0).sum()),
          'iscrowd': 0, 'category_id': 1}


def edge_case_gt():
  """Six CrowdPose-style images covering the edge cases (one per image)."""
  images = [{'id': i, 'width': 640, 'height': 480, 'file_name': f'{i}.jpg', 'crowdIndex': ci}
            for i, ci in zip(range(1, 7), (0.1, 0.5, 0.9, 0.3, 0.5, 0.85))]
  anns = []
  def add(image_id, ann, **kw):
    anns.append(dict(ann, image_id=image_id, id=len(anns) + 1, **kw))
  add(1, _person(50, 50, 100, 200))
  add(1, _person(300, 60, 120, 220))
  add(1, _person(0, 0, 640, 480, labelled=np.zeros(14, bool)), iscrowd=1)       # crowd region
  # image 2: no GT at all
  add(3, _person(10, 10, 300, 300, labelled=np.zeros(14, bool)), iscrowd=1)      # image 3: all ignored
  add(3, _person(350, 10, 100, 100, labelled=np.zeros(14, bool)))                # no keypoints
  add(4, _person(100, 100, 80, 160))                                             # image 4: no dets
  for j in range(3):                                                              # image 5: > 20 dets
    add(5, _person(20 + 200 * j, 100, 90, 200))
  head_neck = np.zeros(14, bool)
  head_neck[12:] = True
  add(6, dict(_person(200, 100, 100, 200, labelled=head_neck), num_keypoints=0))  # CrowdPose quirk
  return {'images': images, 'annotations': anns,
          'categories': [{'id': 1, 'name': 'person', 'keypoints': list(kp_lib.CROWDPOSE.joint_names)}]}


def edge_case_results(gt, seed=0):
  rng = np.random.default_rng(seed)
  res = []
  def det(image_id, kp, score):
    kp = np.asarray(kp, np.float64).reshape(14, 3).copy()
    kp[:, 2] = 0.5
    res.append({'image_id': image_id, 'category_id': 1, 'keypoints': kp.reshape(-1).tolist(),
                'score': score})
  by_image = {}
  for a in gt['annotations']:
    by_image.setdefault(a['image_id'], []).append(a)
  for a in gt['annotations']:
    kp = np.asarray(a['keypoints'], np.float64).reshape(14, 3)
    x, y, w, h = a['bbox']
    kp[:, 0] = np.where(kp[:, 2] > 0, kp[:, 0], x + w / 2) + rng.normal(0, 3, 14)
    kp[:, 1] = np.where(kp[:, 2] > 0, kp[:, 1], y + h / 2) + rng.normal(0, 3, 14)
    if a['image_id'] == 5:
      det(5, kp, 0.05)  # the only good detections of image 5 rank below 22 false ones
    elif a['image_id'] != 4:
      det(a['image_id'], kp, float(rng.choice([0.3, 0.6, 0.9])))
  for _ in range(22):
    det(5, np.column_stack([rng.uniform(0, 640, 14), rng.uniform(0, 480, 14), np.ones(14)]),
        float(rng.uniform(0.2, 0.9)))
  for _ in range(3):  # false positives on the image without GT, and on the all-ignored image
    det(2, np.column_stack([rng.uniform(0, 640, 14), rng.uniform(0, 480, 14), np.ones(14)]), 0.6)
    det(3, np.column_stack([rng.uniform(0, 640, 14), rng.uniform(0, 480, 14), np.ones(14)]), 0.6)
  return res


def test_edge_cases_match_pycocotools():
  gt = edge_case_gt()
  for seed in range(3):
    results = edge_case_results(gt, seed)
    assert_same(evaluation.evaluate(gt, results, 'crowdpose'), pycocotools_stats(gt, results, 'crowdpose'))
    # The same detections with COCO's medium / large area ranges as well (on the bbox-based scale).
    areas = evaluation.Protocol(area_ranges=evaluation.protocol.COCO.area_ranges,
                                crowd_index_bins=evaluation.protocol.CROWDPOSE.crowd_index_bins)
    ours = evaluation.evaluate(gt, results, 'crowdpose', protocol=areas)
    assert {'APm', 'APl', 'ARm', 'ARl'} <= set(ours)
    assert_same(ours, pycocotools_stats(gt, results, 'crowdpose'))


def test_pycocotools_backend_agrees(data_dir):
  d = data_dir / 'crowdpose_eval_example'
  gt, res = d / 'example_crowdpose_val.json', d / 'example_crowdpose_preds.json'
  ours = evaluation.evaluate(gt, res)
  theirs = evaluation.evaluate(gt, res, backend='pycocotools')
  assert_same(ours, theirs, tol=1e-12)
  coco = data_dir / 'coco_mini/annotations/person_keypoints_val2017.json'
  results = perturb.perturbed_results(json.loads(coco.read_text()), seed=7)
  assert_same(evaluation.evaluate(coco, results), evaluation.evaluate(coco, results, backend='pycocotools'),
              tol=1e-12)


@pytest.mark.parametrize('backend', ['numpy', 'pycocotools'])
def test_no_detections(backend):
  ev = evaluation.KeypointEvaluator(edge_case_gt(), 'crowdpose', backend=backend)
  m = ev.compute()
  # Nothing found: AP = AR = 0 wherever there is regular GT; the hard images (crowdIndex 0.9, 0.85) hold
  # only ignored people, so AP_hard is undefined (-1).
  assert m == {'AP': 0.0, 'AP50': 0.0, 'AP75': 0.0, 'AR': 0.0, 'AR50': 0.0, 'AR75': 0.0,
               'AP_easy': 0.0, 'AP_medium': 0.0, 'AP_hard': -1.0}
