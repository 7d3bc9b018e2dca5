"""Decoder and whole test-path speed (CPU by default): ms per image, medians over repeated runs.

  python bench/decode.py                 # decode on XS and S maps (batch 1 and 16) + the whole XS path
  python bench/decode.py --runs 20 --skip_path
  python bench/decode.py --skip_decode --tflite   # whole XS path, JAX and through an exported file
  python bench/decode.py --tie_break_study   # AP of tie_break='munkres' vs 'distance' on the fixtures

Maps are the authors' decoder fixtures (reference/decode_cases.npz: rendered from real CrowdPose
annotations, 2-3 and 8-15 people) brought to test-path resolution as the test-time path makes them: resized
to the 1/2-resolution map, then upsampled ×2 bilinearly (XS: 256x384, S: 448x640 input resolution).
The whole path is XS with flip on tests/data/crowdpose_sample with litepose_xs_reference.npz weights
(random init: every joint has 30 candidates, so decoding is at its slowest).

Anchors (the authors' HeatmapParser with munkres 1.1.4, spec k, this 2-core machine): 180-310 ms per image on
XS test-path maps, 500-1065 ms on S maps; whole XS test path with flip 670-820 ms per image.
Timing: warm-up runs excluded, median (and 10th/90th percentiles) of --runs runs; the 1-minute load
average before and after is printed because the machine is shared.
"""

import argparse
import os
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
from litepose_jax import runtime  # noqa: E402
runtime.tune_host()  # as evaluate.py / predict.py: before JAX's first computation
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from litepose_jax import decode  # noqa: E402
from litepose_jax import inference  # noqa: E402

FEW = ('few_2a', 'few_3a', 'few_2_heavy_missing')
MANY = ('many_8', 'many_11', 'many_13', 'many_14_close_tags', 'many_14_bigmap')


def reference_dir() -> pathlib.Path:
  for c in (os.environ.get('LITEPOSE_REFERENCE_DIR'), REPO.parent / 'shared' / 'reference',
            '/work/shared/reference'):
    if c and (pathlib.Path(c) / 'decode_cases.npz').exists():
      return pathlib.Path(c)
  raise FileNotFoundError('reference fixtures not found: set LITEPOSE_REFERENCE_DIR')


def load_avg() -> float:
  return os.getloadavg()[0]


def timed(fn, args, runs, warmup=2):
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return np.percentile(times, [50, 10, 90])


def test_path_maps(z, names, hw, batch):
  """[batch,K,H,W] heatmaps and [batch,K,2,H,W] tags from the fixture cases (cycled), at input res hw."""
  half = (hw[0] // 2, hw[1] // 2)
  heat, tags = [], []
  for name in names:
    det = jnp.asarray(z[f'{name}/det'])  # [K,h,w]
    if det.shape[1] > det.shape[2]:  # portrait cases: turn them to the bench's landscape maps
      det = det.transpose(0, 2, 1)
      tag = jnp.asarray(z[f'{name}/tag']).transpose(0, 3, 2, 1)
    else:
      tag = jnp.asarray(z[f'{name}/tag']).transpose(0, 3, 1, 2)  # [K,2,h,w]
    heat.append(inference.upsample2x(jax.image.resize(det, det.shape[:1] + half, 'linear')))
    tags.append(inference.upsample2x(jax.image.resize(tag, tag.shape[:2] + half, 'linear')))
  idx = [i % len(names) for i in range(batch)]
  return jnp.stack([heat[i] for i in idx]), jnp.stack([tags[i] for i in idx])


def bench_decode(z, runs):
  rows = []
  for arch, hw in (('XS', (256, 384)), ('S', (448, 640))):
    for label, names in (('2-3 people', FEW), ('8-15 people', MANY)):
      for batch, mb in ((1, 0), (16, 0), (16, 4)):
        heat, tags = test_path_maps(z, names, hw, batch)
        cfg = decode.DecodeConfig.create('crowdpose', micro_batch=mb)
        fn = jax.jit(lambda h, t, cfg=cfg: decode.parse_maps(h, t, cfg))
        people = np.asarray(fn(heat, tags)[2]).sum(1)
        med, p10, p90 = timed(fn, (heat, tags), runs) * 1e3 / batch
        rows.append((arch, f'{hw[0]}x{hw[1]}', label, batch, mb or batch, f'{people.min()}-{people.max()}',
                     med, p10, p90))
        print(f'{arch:3s} {hw[0]}x{hw[1]} {label:12s} batch {batch:2d} micro-batch {mb or batch:2d} '
              f'people {people.min():2d}-{people.max():2d}: {med:7.1f} ms/image (p10 {p10:.1f}, p90 {p90:.1f})',
              flush=True)
  return rows


def bench_path(runs, tflite_dir=None):
  import cv2  # pylint: disable=g-import-not-at-top
  from litepose_jax import convert, keypoints, models  # pylint: disable=g-import-not-at-top
  ref = reference_dir()
  variables = convert.torch_to_flax(convert.load_state_dict(ref / 'litepose_xs_reference.npz'), 'xs', 14)
  model = models.create('xs', 14)
  predictor = inference.Predictor(model, variables, keypoints.get('crowdpose'), 256, batch_size=1)
  for name in ('103319', '106848'):
    image = cv2.cvtColor(cv2.imread(str(REPO / 'tests/data/crowdpose_sample' / f'{name}.jpg')),
                         cv2.COLOR_BGR2RGB)
    inputs, center, scale = predictor.prepare(image)
    args = ([x[None] for x in inputs], center[None], scale[None])
    med, p10, p90 = timed(lambda *a: predictor.predict_prepared(*a), args, runs) * 1e3
    x = jnp.asarray(inputs[0][None])
    fwd = jax.jit(lambda v, x: model.apply(v, jnp.concatenate([x, x[:, :, ::-1]]), train=False))
    fmed, _, _ = timed(fwd, (variables, x), runs) * 1e3
    total = lambda: predictor.predict([image])
    t0 = time.perf_counter()
    for _ in range(3):
      total()
    host = (time.perf_counter() - t0) / 3 * 1e3
    print(f'whole XS path, flip, {name}.jpg ({inputs[0].shape[0]}x{inputs[0].shape[1]}): {med:.1f} ms '
          f'(p10 {p10:.1f}, p90 {p90:.1f}); of which the two forwards {fmed:.1f} ms; '
          f'with host resize/normalise (predict()): {host:.1f} ms', flush=True)
    if tflite_dir is not None:
      bench_tflite_path(variables, name, image, inputs[0].shape[:2], tflite_dir, runs)


def bench_tflite_path(variables, name, image, hw, out_dir, runs):
  """The same image through an exported XS file (XNNPACK layout, 2 threads) + the jitted decoder:
  TFLitePredictor.predict (host resize, both passes in LiteRT, aggregation and decoding in JAX)."""
  from litepose_jax import checkpoint, models  # pylint: disable=g-import-not-at-top
  from litepose_jax.export import __main__ as export_cli  # pylint: disable=g-import-not-at-top
  from litepose_jax.export import predictor as tfl_predictor  # pylint: disable=g-import-not-at-top
  ckpt = pathlib.Path(out_dir) / 'xs_reference'
  if not ckpt.exists():
    checkpoint.save_model(ckpt, variables, checkpoint.model_meta(models.ARCHS['xs'], 14))
  path = pathlib.Path(out_dir) / f'xs_{hw[0]}x{hw[1]}.tflite'
  if export_cli.main([f'--ckpt={ckpt}', f'--input_shape={hw[0]}x{hw[1]}', f'--out={path}', '--noverify']):
    raise SystemExit('export failed')
  pred = tfl_predictor.TFLitePredictor(path, num_threads=2)
  med, p10, p90 = timed(lambda: pred.predict([image]), (), runs) * 1e3
  print(f'whole XS path through the exported file (fp32, XNNPACK), {name}.jpg: {med:.1f} ms '
        f'(p10 {p10:.1f}, p90 {p90:.1f}), host resize included', flush=True)


def tie_break_study(z, noise_levels=(0.0, 0.1, 0.2, 0.3), trials=3):
  """AP (pycocotools, CrowdPose sigmas, scale w·h·0.53) of both tie-break modes on the 11 non-empty decode
  fixtures, GT = the annotations they were rendered from, tags optionally perturbed by N(0, noise)."""
  import contextlib  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  from pycocotools.coco import COCO  # pylint: disable=g-import-not-at-top
  from pycocotools.cocoeval import COCOeval  # pylint: disable=g-import-not-at-top
  from litepose_jax import keypoints  # pylint: disable=g-import-not-at-top
  names = [str(n) for n in z['case_names'] if not str(n).startswith('empty')]
  h, w = 128, 288
  gt = {'images': [{'id': i, 'width': w, 'height': h} for i in range(len(names))], 'annotations': [],
        'categories': [{'id': 1, 'name': 'person'}]}
  for i, n in enumerate(names):
    for joints, flags in zip(z[f'{n}/gt_joints_map'], z[f'{n}/joint_flags']):
      lab = flags > 0
      if lab.any():
        (x0, y0), (x1, y1) = joints[lab, :2].min(0), joints[lab, :2].max(0)
        gt['annotations'].append({
            'id': len(gt['annotations']) + 1, 'image_id': i, 'category_id': 1, 'iscrowd': 0,
            'keypoints': np.concatenate([joints[:, :2], 2 * lab[:, None]], 1).ravel().tolist(),
            'num_keypoints': int(lab.sum()), 'bbox': [x0, y0, x1 - x0, y1 - y0],
            'area': float((x1 - x0) * (y1 - y0) * 0.53)})
  rng = np.random.default_rng(0)

  def ap(kp, sc, va):
    res = [{'image_id': i, 'category_id': 1, 'keypoints': kp[i, p].ravel().tolist(), 'score': float(sc[i, p])}
           for i in range(len(names)) for p in np.flatnonzero(va[i])]
    with contextlib.redirect_stdout(io.StringIO()):
      coco = COCO()
      coco.dataset = gt
      coco.createIndex()
      ev = COCOeval(coco, coco.loadRes(res), 'keypoints')
      ev.params.kpt_oks_sigmas = keypoints.get('crowdpose').sigmas_array
      ev.evaluate(), ev.accumulate(), ev.summarize()
    return ev.stats[0]

  diffs = []
  for noise in noise_levels:
    for trial in range(trials if noise else 1):
      heat = np.zeros((len(names), h, w, 14), np.float32)
      tags = np.zeros((len(names), h, w, 14, 2), np.float32)
      sizes = np.zeros((len(names), 2), np.int32)
      for i, n in enumerate(names):
        d, t = z[f'{n}/det'].transpose(1, 2, 0), z[f'{n}/tag'].transpose(1, 2, 0, 3)
        t = t + rng.normal(0, noise, t.shape).astype(np.float32) if noise else t
        heat[i, :d.shape[0], :d.shape[1]], tags[i, :d.shape[0], :d.shape[1]] = d, t
        sizes[i] = d.shape[:2]
      aps = [ap(*map(np.asarray, decode.parse_jit(heat, tags, decode.DecodeConfig.create(
          'crowdpose', tie_break=mode), sizes))) for mode in ('munkres', 'distance')]
      diffs.append(aps[1] - aps[0])
      print(f'tag noise {noise:.1f} trial {trial}: AP munkres {aps[0]:.4f}, distance {aps[1]:.4f}', flush=True)
  print(f'distance − munkres: mean {np.mean(diffs):+.4f}, min {np.min(diffs):+.4f}, max {np.max(diffs):+.4f}')


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--runs', type=int, default=20)
  p.add_argument('--skip_path', action='store_true', help='only the decoder')
  p.add_argument('--skip_decode', action='store_true', help='only the whole XS path')
  p.add_argument('--tie_break_study', action='store_true', help='only the tie-break AP comparison')
  p.add_argument('--tflite', action='store_true',
                 help='also run the whole XS path through an exported TFLite file (needs TensorFlow)')
  args = p.parse_args()
  if args.tie_break_study:
    tie_break_study(np.load(reference_dir() / 'decode_cases.npz'))
    return
  print(f'jax {jax.__version__}, backend {jax.default_backend()}, {os.cpu_count()} CPUs, '
        f'load average {load_avg():.2f}', flush=True)
  if not args.skip_decode:
    bench_decode(np.load(reference_dir() / 'decode_cases.npz'), args.runs)
  if not args.skip_path:
    if args.tflite:
      import tempfile  # pylint: disable=g-import-not-at-top
      with tempfile.TemporaryDirectory() as tmp:
        bench_path(args.runs, tmp)
    else:
      bench_path(args.runs)
  print(f'load average at the end {load_avg():.2f}')


if __name__ == '__main__':
  main()
