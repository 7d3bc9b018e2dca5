"""Latency of the exported LitePose (TFLite, LiteRT + XNNPACK) beside the JAX forward, batch 1, CPU.

  python bench/export.py [--archs xs,s] [--quantize none,fp16,int8] [--threads 2] [--runs 30]

For each architecture at its own input size (XS 256², S 448²): export the network (variant A) with random
weights initialised as PyTorch does (weight values do not change speed; the anchor used the same), run the
file with ai-edge-litert's interpreter (XNNPACK delegate, `--threads`), and time the jitted JAX forward
(depthwise_impl 'auto' = the CPU-fast shifted form, and 'xla') in the same process. JAX's CPU thread pool is
not pinned to `--threads`, so its numbers use every core of the machine. int8 is calibrated on
tests/data/coco_mini images. Reported: median ms of `--runs` timed runs after `--warmup` runs, with the
10th-90th percentile, and the load average before/after (this machine is shared: compare only runs taken
together; the anchor is the authors' PyTorch model on this 2-core VM: XS@256 56 ms, S@448 178 ms).
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
_CALIB = flags.DEFINE_string('calibration', str(REPO / 'tests/data/coco_mini/val2017'),
                             'Images for int8 calibration.')
_CALIB_N = flags.DEFINE_integer('calibration_images', 16, 'How many calibration images.')
_JAX = flags.DEFINE_bool('jax', True, 'Also time the JAX forward.')
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


def main(argv):
  del argv
  print(f'load average before: {_load()} (1/5/15 min), {os.cpu_count()} cores; jax {jax.__version__}')
  rows = []
  for arch in _ARCHS.value:
    model = models.create(arch, 14, depthwise_impl='xla')
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
      net = runner.TFLiteModel(data, num_threads=_THREADS.value)
      med, p10, p90 = _time(lambda: net(x), _WARMUP.value, _RUNS.value)
      rows.append((arch, size, f'tflite {q}', med, p10, p90, f'{len(data) / 1e6:.1f} MB, convert {conv_s:.0f} s'))
      print(rows[-1])
    if _JAX.value:
      for impl in ('auto', 'xla'):
        m = models.create(arch, 14, depthwise_impl=impl)
        fwd = jax.jit(lambda v, x, m=m: m.apply(v, x, train=False))
        xj = jax.device_put(x)
        med, p10, p90 = _time(lambda: jax.block_until_ready(fwd(variables, xj)), _WARMUP.value, _RUNS.value)
        rows.append((arch, size, f'jax jit ({impl})', med, p10, p90, ''))
        print(rows[-1])
  print(f'load average after: {_load()}')
  print(f'\n| model | input | runtime | median ms | p10-p90 ms | PyTorch anchor ms | note |')
  print('|---|---|---|---|---|---|---|')
  for arch, size, what, med, p10, p90, note in rows:
    print(f'| {arch.upper()} | {size} | {what} | {med:.1f} | {p10:.1f}-{p90:.1f} | '
          f'{_ANCHOR_MS.get(arch, float("nan")):.0f} | {note} |')


if __name__ == '__main__':
  app.run(main)
