"""Exported LitePose: latency (LiteRT, XNNPACK and builtin kernels) beside the JAX forward; accuracy.

  python bench/export.py [--archs xs,s] [--quantize none,fp16,int8] [--layouts xnnpack,builtin] [--threads 2]
  python bench/export.py --mode=accuracy [--ckpt CKPT] [--images DIR] [--quantize none,fp16,int8]

For each architecture at its own input size (XS 256², S 448²): export the network (variant A) with random
weights initialised as PyTorch does (weight values do not change speed; the anchor used the same), run the
file with ai-edge-litert's interpreter (XNNPACK delegate, `--threads`), and time the jitted JAX forward
(`--jax`: depthwise_impl 'auto' = the CPU-fast shifted form, optionally 'xla') in the same process. JAX's CPU thread pool is
not pinned to `--threads`, so its numbers use every core of the machine. int8 is calibrated on
tests/data/coco_mini/train2017 images (accuracy is measured on val2017). Reported: median ms of `--runs`
timed runs after `--warmup` runs, with the 10th-90th percentile, and the load average before/after (this machine is shared: compare only runs taken
together; the anchor is the authors' PyTorch model on this 2-core VM: XS@256 56 ms, S@448 178 ms).
`--kernels` picks the LiteRT CPU paths that run each file: 'xnnpack' (the default delegate) and 'builtin'
(LiteRT's own kernels, no delegate). `--layouts` picks the graph forms exported (the export CLI's
`--kernels`): 'xnnpack' (depthwise_impl='tflite': 7x7 depthwise kernels as pieces of <= 25 taps,
XNNPACK's single-pass limit, and 1x1 convs as CONV_2D) and 'builtin' (depthwise_impl='xla': one
DEPTHWISE_CONV_2D per layer, which LiteRT's builtin kernels run faster).

Accuracy mode: exports the checkpoint (default: the authors' XS reference weights, converted) at its input
size in each quantisation mode and compares the outputs of every image under `--images` (cover-resized to
the input size; graph layout: the first of `--layouts`) with the JAX float model: max / mean |diff|, correlation, and how often the heatmap maximum
of a joint lands on the same pixel. (AP needs a trained model and the decoder: see docs/export.md.)
"""

import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/export.py` from a checkout (the package is not installed)
  sys.path.insert(0, str(REPO))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from litepose_jax import checkpoint, models  # pylint: disable=g-import-not-at-top,wrong-import-position
from litepose_jax.export import calibration, graphs, runner, tflite  # pylint: disable=g-import-not-at-top,wrong-import-position

_ARCHS = flags.DEFINE_list('archs', ['xs', 's'], 'Architectures (each at its own input size).')
_QUANT = flags.DEFINE_list('quantize', ['none', 'fp16', 'int8'], 'Quantisation modes to export.')
_THREADS = flags.DEFINE_integer('threads', 2, 'LiteRT / XNNPACK threads.')
_RUNS = flags.DEFINE_integer('runs', 30, 'Timed runs (median reported).')
_WARMUP = flags.DEFINE_integer('warmup', 5, 'Untimed warm-up runs.')
_CALIB = flags.DEFINE_string('calibration', str(REPO / 'tests/data/coco_mini/train2017'),
                             'Images for int8 calibration.')
_CALIB_N = flags.DEFINE_integer('calibration_images', 16, 'How many calibration images.')
_JAX = flags.DEFINE_list('jax', ['auto'], 'depthwise_impl forms of the jitted JAX forward to time beside '
                        "(e.g. auto,xla; 'xla' is XLA:CPU's slow native depthwise conv); empty: none.")
_KERNELS = flags.DEFINE_list('kernels', ['xnnpack', 'builtin'], 'LiteRT CPU paths: xnnpack, builtin.')
_LAYOUTS = flags.DEFINE_list('layouts', ['xnnpack', 'builtin'], 'Exported graph layouts: xnnpack, builtin.')
_MODE = flags.DEFINE_enum('mode', 'latency', ['latency', 'accuracy'], 'What to measure.')
_CKPT = flags.DEFINE_string('ckpt', None, 'accuracy: checkpoint (default: converted XS reference weights).')
_IMAGES = flags.DEFINE_string('images', str(REPO / 'tests/data/coco_mini/val2017'), 'accuracy: images.')
_ANCHOR_MS = {'xs': 56.0, 's': 178.0}


def _time(fn, warmup: int, runs: int) -> tuple[float, float, float]:
  for _ in range(warmup):
    fn()
  ts = []
  for _ in range(runs):
    t0 = time.perf_counter()
    fn()
    ts.append(1000 * (time.perf_counter() - t0))
  q = statistics.quantiles(ts, n=10)
  return statistics.median(ts), q[0], q[-1]


def _load() -> str:
  return '/'.join(f'{v:.1f}' for v in os.getloadavg())


def _reference_xs(impl: str) -> checkpoint.LoadedModel:
  from litepose_jax import convert  # pylint: disable=g-import-not-at-top
  ref = REPO.parent / 'shared' / 'reference'
  ref = ref if ref.exists() else pathlib.Path('/work/shared/reference')
  variables = convert.torch_to_flax(convert.load_state_dict(ref / 'litepose_xs_reference.npz'), 'xs', 14)
  model = models.create('xs', 14, depthwise_impl=impl)
  return checkpoint.LoadedModel(model, variables, checkpoint.model_meta(model.arch, 14), 0)


def accuracy() -> None:
  """Output differences of the exported files vs the JAX float model, per quantisation mode."""
  impl = graphs.KERNEL_LAYOUTS[_LAYOUTS.value[0]]
  loaded = (checkpoint.load_model(_CKPT.value, depthwise_impl=impl) if _CKPT.value else _reference_xs(impl))
  shape = graphs.input_shape(loaded)
  k = loaded.meta['num_keypoints']
  files = calibration.find_images(_IMAGES.value)
  xs = list(calibration.representative_inputs(files, shape[1], shape[2]))
  cpu_model = models.create(loaded.meta['arch'], k)  # CPU-fast depthwise form for the JAX side
  fwd = jax.jit(lambda x: cpu_model.apply(loaded.variables, x, train=False))
  want = [tuple(np.asarray(o) for o in fwd(x)) for x in xs]
  calib = calibration.find_images(_CALIB.value, limit=_CALIB_N.value)
  print(f'{len(xs)} images from {_IMAGES.value} at {shape[1]}x{shape[2]}; int8 calibrated on {len(calib)} '
        f'images of {_CALIB.value} (overlap with the evaluated images: '
        f'{len(set(calib) & set(files))})')
  print('\n| file | size MB | output | max abs diff | mean abs diff | corr | same heatmap argmax |')
  print('|---|---|---|---|---|---|---|')
  for q in _QUANT.value:
    rep = calibration.representative_inputs(calib, shape[1], shape[2]) if q == 'int8' else None
    data = tflite.to_tflite(graphs.network_fn(loaded), shape, q, rep)
    net = runner.TFLiteModel(data, num_threads=_THREADS.value)
    got = [net.network(x) for x in xs]
    for j, name in enumerate(graphs.NETWORK_OUTPUTS):
      g = np.stack([o[j] for o in got])
      w = np.stack([o[j] for o in want])
      d = np.abs(g - w)
      corr = np.corrcoef(g.ravel(), w.ravel())[0, 1]
      # Heatmap channels only (the first K of out_quarter, all of out_half): same peak pixel per joint?
      hg, hw = g[..., :k], w[..., :k]
      flat = lambda a: a.reshape(a.shape[0], a.shape[1], -1, k)
      same = np.mean(np.argmax(flat(hg).reshape(len(xs), -1, k), 1) == np.argmax(flat(hw).reshape(
          len(xs), -1, k), 1))
      print(f'| {q} | {len(data) / 1e6:.1f} | {name} | {d.max():.3g} | {d.mean():.3g} | {corr:.5f} | '
            f'{100 * same:.1f} % |', flush=True)


def main(argv):
  del argv
  if _MODE.value == 'accuracy':
    accuracy()
    return
  print(f'load average before: {_load()} (1/5/15 min), {os.cpu_count()} cores; jax {jax.__version__}')
  rows = []
  for arch in _ARCHS.value:
    for layout in _LAYOUTS.value:
      model = models.create(arch, 14, depthwise_impl=graphs.KERNEL_LAYOUTS[layout])
      size = model.arch.img_size
      variables = models.init_variables(model, jax.random.PRNGKey(0), image_size=64)
      loaded = checkpoint.LoadedModel(model, variables, checkpoint.model_meta(model.arch, 14), 0)
      x = np.random.RandomState(0).standard_normal((1, size, size, 3)).astype(np.float32)
      shape = graphs.input_shape(loaded)
      for q in _QUANT.value:
        rep = None
        if q == 'int8':
          files = calibration.find_images(_CALIB.value, limit=_CALIB_N.value)
          rep = calibration.representative_inputs(files, size, size)
        t0 = time.perf_counter()
        data = tflite.to_tflite(graphs.network_fn(loaded), shape, q, rep)
        conv_s = time.perf_counter() - t0
        for kernels in _KERNELS.value:
          net = runner.TFLiteModel(data, num_threads=_THREADS.value, xnnpack=kernels == 'xnnpack')
          med, p10, p90 = _time(lambda: net(x), _WARMUP.value, _RUNS.value)
          rows.append((arch, size, f'tflite {q}, {layout} layout, run {kernels}', med, p10, p90,
                       f'{len(data) / 1e6:.1f} MB, {sum(tflite.op_counts(data).values())} ops, '
                       f'convert {conv_s:.0f} s'))
          print(rows[-1], flush=True)
    for impl in _JAX.value:
      m = models.create(arch, 14, depthwise_impl=impl)
      fwd = jax.jit(lambda v, x, m=m: m.apply(v, x, train=False))
      xj = jax.device_put(x)
      med, p10, p90 = _time(lambda: jax.block_until_ready(fwd(variables, xj)), _WARMUP.value, _RUNS.value)
      rows.append((arch, size, f'jax jit ({impl})', med, p10, p90, ''))
      print(rows[-1], flush=True)
  print(f'load average after: {_load()}')
  print(f'\n| model | input | runtime | median ms | p10-p90 ms | PyTorch anchor ms | note |')
  print('|---|---|---|---|---|---|---|')
  for arch, size, what, med, p10, p90, note in rows:
    print(f'| {arch.upper()} | {size} | {what} | {med:.1f} | {p10:.1f}-{p90:.1f} | '
          f'{_ANCHOR_MS.get(arch, float("nan")):.0f} | {note} |')


if __name__ == '__main__':
  app.run(main)
