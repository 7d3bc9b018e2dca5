"""Training input pipeline throughput: examples/s for XS@256 and S@448 on 1 and 2 cores.

  python bench/input_pipeline.py                 # all settings, COCO images from tests/data/coco_mini
  python bench/input_pipeline.py --runs=40 --json=out/input_pipeline.json

Each setting runs in a fresh subprocess pinned to N cores (sched_setaffinity) with config.input.tf_threads
= N, builds the real training pipeline (make_train_dataset over the coco_mini train images through the
'coco_json' reader: real 640x480-ish COCO JPEGs, 17 joints, ignore regions), skips 3 warm-up batches and
times `--runs` batches one by one: examples/s = batch / median batch time (min also shown).

Anchor, measured the same way in the same run: a per-sample NumPy/OpenCV re-creation of the authors' data
path (cv2.imread + BGR→RGB, warpAffine of the image and both masks, flip, ToTensor/Normalize, the
HeatmapGenerator and JointsGenerator loops) on 1 core, ms per sample, median. Spec (k) measured the
authors' own code on this machine: 9-12 ms per sample at 256, 13-16 ms at 448 (COCO, 1 thread).

The machine is shared: the script prints the load average and the CPU time used by other processes
during each setting (from /proc/stat), so numbers taken under contention can be recognised. It also
prints CPU time per example (user + system of the worker, all its threads): less sensitive to other
load than wall time, and it charges TF for its helper threads too ('cpu x anchor' compares those).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COCO_MINI = os.path.join(REPO, 'tests', 'data', 'coco_mini')
SETTINGS = (('xs', 256), ('s', 448))


def _cpu_busy() -> float:
  """Seconds of busy CPU time on the whole machine so far (/proc/stat)."""
  with open('/proc/stat') as f:
    fields = [float(v) for v in f.readline().split()[1:]]
  idle = fields[3] + fields[4]
  return (sum(fields) - idle) / os.sysconf('SC_CLK_TCK')


def _self_cpu() -> float:
  t = os.times()
  return t.user + t.system


def _config(arch: str):
  sys.path.insert(0, REPO)
  from configs import common  # pylint: disable=g-import-not-at-top
  c = common.get_config(arch=arch, dataset='coco')
  c.dataset.name = 'coco_json'
  c.dataset.ann_file = os.path.join(COCO_MINI, 'annotations', 'person_keypoints_train2017.json')
  c.dataset.image_dir = os.path.join(COCO_MINI, 'train2017')
  return c


def worker_pipeline(arch: str, threads: int, runs: int, batch: int) -> dict:
  """Times make_train_dataset batches in this (already pinned) process."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  from litepose_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  config = _config(arch)
  config.input.batch_size = batch
  config.input.tf_threads = threads
  it = iter(pipeline.make_train_dataset(config))
  for _ in range(3):
    next(it)
  times = []
  busy0, self0, wall0 = _cpu_busy(), _self_cpu(), time.perf_counter()
  for _ in range(runs):
    t = time.perf_counter()
    next(it)
    times.append(time.perf_counter() - t)
  wall = time.perf_counter() - wall0
  other = ((_cpu_busy() - busy0) - (_self_cpu() - self0)) / wall
  cpu = (_self_cpu() - self0) / (runs * batch)
  times.sort()
  median = times[len(times) // 2]
  return {'examples_per_s': batch / median, 'best_examples_per_s': batch / times[0],
          'ms_per_example': 1000 * median / batch, 'cpu_ms_per_example': 1000 * cpu,
          'other_load_cores': other}


def worker_anchor(arch: str, runs: int) -> dict:
  """The authors' per-sample data path re-created in NumPy / OpenCV (module docstring)."""
  import cv2  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, REPO)
  from litepose_jax import keypoints as kp_lib  # pylint: disable=g-import-not-at-top
  from litepose_jax.data import records  # pylint: disable=g-import-not-at-top
  from pycocotools import mask as mask_utils  # pylint: disable=g-import-not-at-top
  cv2.setNumThreads(1)
  config = _config(arch)
  size = 256 if arch == 'xs' else 448
  outs = (size // 4, size // 2)
  ks = kp_lib.get('coco')
  recs, _ = records.load_coco_json(config.dataset.ann_file, config.dataset.image_dir, 'coco',
                                   for_training=True)
  data = records.read_json(config.dataset.ann_file)
  anns = {}
  for a in data['annotations']:
    anns.setdefault(a['image_id'], []).append(a)
  sigma, n = 2, 15
  xg = np.arange(0, n, 1, float)
  gauss = np.exp(-((xg - 7) ** 2 + (xg[:, None] - 7) ** 2) / (2 * sigma ** 2))
  rng = np.random.RandomState(0)

  def affine(center, scale, res, rot):
    h = 200 * scale
    t = np.array([[res / h, 0, res * (-center[0] / h + .5)], [0, res / h, res * (-center[1] / h + .5)],
                  [0, 0, 1.0]])
    rad = -rot * np.pi / 180
    r = np.array([[np.cos(rad), -np.sin(rad), 0], [np.sin(rad), np.cos(rad), 0], [0, 0, 1.0]])
    sh = np.array([[1, 0, -res / 2], [0, 1, -res / 2], [0, 0, 1.0]])
    un = np.array([[1, 0, res / 2], [0, 1, res / 2], [0, 0, 1.0]])
    return (un @ r @ sh @ t)[:2]

  def sample(rec):
    img = cv2.cvtColor(cv2.imread(rec['image_path'], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    m = np.zeros(img.shape[:2], np.float32)
    for a in anns.get(rec['image_id'], []):  # the authors' get_mask (pycocotools decode per image)
      if a['iscrowd']:
        m += mask_utils.decode(mask_utils.frPyObjects(a['segmentation'], img.shape[0], img.shape[1]))
      elif a['num_keypoints'] == 0:
        for rle in mask_utils.frPyObjects(a['segmentation'], img.shape[0], img.shape[1]):
          m += mask_utils.decode(rle)
    mask = (m < 0.5).astype(np.float32)
    used = (rec['iscrowd'] == 0) | (rec['num_keypoints'] > 0)
    joints = rec['keypoints'][used]
    h, w = img.shape[:2]
    s = min(h, w) / 200 * rng.uniform(0.75, 1.5)
    rot = rng.uniform(-30, 30)
    center = np.array([w / 2 + rng.randint(-int(40 * s), int(40 * s)), h / 2 + rng.randint(-int(40 * s),
                                                                                            int(40 * s))])
    flip = rng.rand() < 0.5
    out = {}
    for i, res in enumerate(outs):
      mat = affine(center, s, res, rot)
      mk = cv2.warpAffine((mask * 255).astype(np.uint8), mat, (res, res)) / 255 > 0.5
      jt = joints.copy()
      jt[..., :2] = np.concatenate([jt[..., :2], np.ones_like(jt[..., :1])], -1) @ mat.T
      if flip:
        mk = mk[:, ::-1]
        jt = jt[:, list(ks.flip_index)]
        jt[..., 0] = res - jt[..., 0] - 1
      hms = np.zeros((ks.num_keypoints, res, res), np.float32)
      vis = np.zeros((30, ks.num_keypoints, 2), np.int32)
      for p, person in enumerate(jt):
        tot = 0
        for k, pt in enumerate(person):
          x, y = int(pt[0]), int(pt[1])
          if pt[2] > 0 and 0 <= x < res and 0 <= y < res:
            ul, br = (x - 7, y - 7), (x + 8, y + 8)
            c, d = max(0, -ul[0]), min(br[0], res) - ul[0]
            a, b = max(0, -ul[1]), min(br[1], res) - ul[1]
            cc, dd, aa, bb = max(0, ul[0]), min(br[0], res), max(0, ul[1]), min(br[1], res)
            hms[k, aa:bb, cc:dd] = np.maximum(hms[k, aa:bb, cc:dd], gauss[a:b, c:d])
            if p < 30:
              vis[p, tot] = (k * res * res + y * res + x, 1)
              tot += 1
      out[i] = (hms, mk.astype(np.float32), vis)
    img = cv2.warpAffine(img, affine(center, s, size, rot), (size, size))
    if flip:
      img = img[:, ::-1] - np.zeros_like(img)
    img = (img.astype(np.float32).transpose(2, 0, 1) / 255 - np.array([.485, .456, .406])[:, None, None]) \
        / np.array([.229, .224, .225])[:, None, None]
    return img, out

  for i in range(5):
    sample(recs[i % len(recs)])
  times = []
  busy0, self0, wall0 = _cpu_busy(), _self_cpu(), time.perf_counter()
  n = max(runs, 20)
  for i in range(n):
    t = time.perf_counter()
    sample(recs[i % len(recs)])
    times.append(time.perf_counter() - t)
  wall = time.perf_counter() - wall0
  other = ((_cpu_busy() - busy0) - (_self_cpu() - self0)) / wall
  cpu = (_self_cpu() - self0) / n
  times.sort()
  return {'ms_per_example': 1000 * times[len(times) // 2], 'best_ms': 1000 * times[0],
          'examples_per_s': 1 / times[len(times) // 2], 'cpu_ms_per_example': 1000 * cpu,
          'other_load_cores': other}


def _run_pinned(cores: int, args: list) -> dict:
  """Runs this script as a worker pinned to the first `cores` CPUs; returns its JSON result."""
  usable = sorted(os.sched_getaffinity(0))
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''),
             TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--worker'] + args, env=env,
                        capture_output=True, text=True, check=False,
                        preexec_fn=lambda: os.sched_setaffinity(0, usable[:cores]))
  if proc.returncode:
    raise RuntimeError(f'worker {args} failed:\n{proc.stderr[-3000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--runs', type=int, default=24, help='timed batches (anchor: samples) per setting')
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--json', default='', help='also write the results here')
  parser.add_argument('--worker', nargs='*', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker is not None:
    kind, arch = args.worker[0], args.worker[1]
    if kind == 'pipeline':
      result = worker_pipeline(arch, int(args.worker[2]), args.runs, args.batch)
    else:
      result = worker_anchor(arch, args.runs)
    print(json.dumps(result))
    return

  cores_available = len(os.sched_getaffinity(0))
  print(f'load average before: {open("/proc/loadavg").read().strip()}  (cores: {cores_available})')
  results = []
  for arch, size in SETTINGS:
    anchor = _run_pinned(1, ['anchor', arch, '--runs', str(args.runs)])
    results.append({'model': arch, 'input': size, 'kind': 'anchor (authors-style, 1 core)', **anchor})
    for cores in (1, 2):
      if cores > cores_available:
        continue
      res = _run_pinned(cores, ['pipeline', arch, str(cores), '--runs', str(args.runs), '--batch',
                                str(args.batch)])
      res['vs_anchor'] = res['examples_per_s'] / anchor['examples_per_s']
      res['per_core_vs_anchor'] = res['vs_anchor'] / cores
      res['cpu_vs_anchor'] = anchor['cpu_ms_per_example'] / res['cpu_ms_per_example']
      results.append({'model': arch, 'input': size, 'kind': f'tf.data, {cores} core(s)', **res})
  print(f'{"setting":<40} {"ex/s":>8} {"ms/ex":>7} {"x anchor":>9} {"per core":>9} {"cpu ms/ex":>10} '
        f'{"cpu x anchor":>13} {"other load":>11}')
  for r in results:
    print(f'{r["model"].upper() + "@" + str(r["input"]) + " " + r["kind"]:<40} '
          f'{r["examples_per_s"]:8.1f} {r["ms_per_example"]:7.2f} {r.get("vs_anchor", 1.0):9.2f} '
          f'{r.get("per_core_vs_anchor", 1.0):9.2f} {r["cpu_ms_per_example"]:10.2f} '
          f'{r.get("cpu_vs_anchor", 1.0):13.2f} {r["other_load_cores"]:10.2f}c')
  print(f'load average after: {open("/proc/loadavg").read().strip()}')
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=1)


if __name__ == '__main__':
  main()
