"""Keypoint evaluation time: our NumPy evaluator vs pycocotools, on CrowdPose val (2000 images).

  python bench/evaluation.py [--runs 20] [--ref_runs 20] [--seed 0]

Input: the official crowdpose_val.json (tests/data) with perturbed ground truth as detections
(`litepose_jax.evaluation.perturb`, ~13k results). Timed, each after one warm-up run, median of N runs:
  ours, end to end         evaluate(gt_dict, results): GT arrays + result checks + matching + AP
  ours, compute only       KeypointEvaluator.compute() with GT and results already added (training loop)
  pycocotools, main stats  COCO index + loadRes + evaluate + accumulate + summarize (no easy/medium/hard)
  pycocotools, all stats   + the crowd-index bins, evaluate re-run per bin as xtcocotools does
                           (= our backend='pycocotools')
Peak Python heap (tracemalloc) is taken on one separate run of each. The load average is printed: on a
shared machine the numbers are noisy.
"""

import contextlib
import copy
import io
import json
import os
import pathlib
import statistics
import sys
import time
import tracemalloc

from absl import app
from absl import flags

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/evaluation.py` from a checkout (the package is not installed)
  sys.path.insert(0, str(REPO))

from litepose_jax import evaluation  # pylint: disable=g-import-not-at-top,wrong-import-position
from litepose_jax import keypoints as kp_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from litepose_jax.evaluation import perturb  # pylint: disable=g-import-not-at-top,wrong-import-position

_RUNS = flags.DEFINE_integer('runs', 20, 'Timed runs of our evaluator (after one warm-up).')
_REF_RUNS = flags.DEFINE_integer('ref_runs', 20, 'Timed runs of pycocotools (after one warm-up).')
_SEED = flags.DEFINE_integer('seed', 0, 'Perturbation seed.')
_GT = flags.DEFINE_string('gt', str(REPO / 'tests/data/crowdpose_val_annotations/crowdpose_val.json'),
                          'CrowdPose-format GT json.')


def _pycocotools_main(dataset, results):
  from pycocotools.coco import COCO  # pylint: disable=g-import-not-at-top
  from pycocotools.cocoeval import COCOeval  # pylint: disable=g-import-not-at-top
  dataset = copy.deepcopy(dataset)
  for a in dataset['annotations']:
    a['area'] = a['bbox'][2] * a['bbox'][3] * 0.53
  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO()
    gt.dataset = dataset
    gt.createIndex()
    ev = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), 'keypoints')
    ev.params.kpt_oks_sigmas = kp_lib.CROWDPOSE.sigmas_array
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  return ev.stats


def _time(fn, runs):
  fn()  # warm-up
  times = []
  for _ in range(runs):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times), min(times), max(times)


def _peak_mb(fn):
  tracemalloc.start()
  fn()
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  return peak / 2**20


def main(argv):
  del argv
  dataset = json.loads(pathlib.Path(_GT.value).read_text())
  results = perturb.perturbed_results(dataset, _SEED.value)
  gt = evaluation.load_ground_truth(dataset)
  ev = evaluation.KeypointEvaluator(gt, 'crowdpose')
  ev.add_results(results)
  n_img = len(dataset['images'])
  print(f'{_GT.value}: {n_img} images, {len(dataset["annotations"])} GT people, {len(results)} results')
  print(f'load average before: {os.getloadavg()}  (cores: {os.cpu_count()})')

  cases = [
      ('ours, end to end', lambda: evaluation.evaluate(dataset, results, 'crowdpose'), _RUNS.value),
      ('ours, compute only', ev.compute, _RUNS.value),
      ('pycocotools, main stats', lambda: _pycocotools_main(dataset, results), _REF_RUNS.value),
      ('pycocotools, all stats', lambda: evaluation.evaluate(gt, results, 'crowdpose',
                                                            backend='pycocotools'), _REF_RUNS.value),
  ]
  medians = {}
  print(f'{"case":26s} {"median ms":>10s} {"min":>8s} {"max":>8s} {"images/s":>9s} {"peak MB":>8s} runs')
  for name, fn, runs in cases:
    med, lo, hi = _time(fn, runs)
    medians[name] = med
    print(f'{name:26s} {med * 1e3:10.1f} {lo * 1e3:8.1f} {hi * 1e3:8.1f} {n_img / med:9.0f} '
          f'{_peak_mb(fn):8.1f} {runs}', flush=True)
  print(f'speed-up, all stats (end to end vs pycocotools): '
        f'{medians["pycocotools, all stats"] / medians["ours, end to end"]:.1f}x; main stats only: '
        f'{medians["pycocotools, main stats"] / medians["ours, end to end"]:.1f}x')
  ours, ref = evaluation.evaluate(dataset, results, 'crowdpose'), evaluation.evaluate(
      gt, results, 'crowdpose', backend='pycocotools')
  print('max |ours - pycocotools| over all stats:', max(abs(ours[k] - ref[k]) for k in ours))
  print(evaluation.format_table(ours))
  print(f'load average after: {os.getloadavg()}')


if __name__ == '__main__':
  app.run(main)
