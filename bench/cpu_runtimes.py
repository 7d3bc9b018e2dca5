"""CPU inference beside what a user would run instead: ONNX Runtime on a PyTorch LitePose export.

  python bench/cpu_runtimes.py --anchor_xs /tmp/anchor_xs.onnx --anchor_s /tmp/anchor_s.onnx
  python bench/cpu_runtimes.py --archs xs --batches 1 --rounds 5 --runtimes jax,onnx,anchor

For each architecture at its own input size (XS 256², S 448²) and each batch, six runtimes, each in its
own subprocess with 2 intra-op threads (`--threads`):
  jax      the jitted JAX forward (depthwise_impl 'auto', host tuning on, as predict.py runs it); XLA:CPU
           sizes its thread pool by the cores, 2 on the CI machine
  jax_shift  the same with LITEPOSE_JAX_CPU_KERNEL=0: the 'shift' depthwise form instead of the C++ kernel
  tflite   our TFLite file (XNNPACK layout, exported at that batch), LiteRT with the XNNPACK delegate
  tflite_window  the same exported with --deconv=window (the head as 2x2 convs + depth-to-space; the file
           holds its input shape)
  onnx     our ONNX file (`litepose_jax.export.onnx`) under ONNX Runtime, CPU provider
  anchor   ONNX Runtime on the PyTorch LitePose of ../shared/anchors exported with torch.onnx (NCHW,
           opset 17), the same session options
Our files carry the JAX model's random initial weights (seed 0; weights do not change speed) and are
written once per version of the exporter into `--workdir`. The anchor file has batch 1 fixed in its input; for other batches the
script runs a copy whose batch dimension is symbolic (the graph has no reshape, so nothing else changes).

Runtimes alternate: each configuration starts one process per runtime, warms it up (`--warmup` calls),
then runs `--rounds` rounds of `--runs` timed calls per runtime in a rotated order (the other processes
wait meanwhile), so that a change of the machine's load falls on every runtime alike. Reported: the median over all timed calls, the spread of the
per-round medians, the ratio to the anchor's median of the same configuration, and the 1-minute load
average before and after each configuration. The machine is shared: compare ratios within one run only.

Without PyTorch this script cannot make the anchor files; make them once in a separate environment:
  python3 -m venv /tmp/anchor && /tmp/anchor/bin/pip install -r bench/requirements-anchor.txt
  (cd ../shared/anchors && /tmp/anchor/bin/python torch_to_onnx.py xs /tmp/anchor_xs.onnx \\
     && /tmp/anchor/bin/python torch_to_onnx.py s /tmp/anchor_s.onnx)
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/cpu_runtimes.py` from a checkout (the package is not installed)
  sys.path.insert(0, str(REPO))
SIZES = {'xs': 256, 's': 448}
NUM_KEYPOINTS = 14  # CrowdPose, as the anchor
RUNTIMES = ('jax', 'jax_shift', 'tflite', 'tflite_window', 'onnx', 'anchor')
ANCHOR_HINT = ('anchor files missing: make them with PyTorch in a separate environment (see this '
               "script's docstring), then pass --anchor_xs / --anchor_s")


def _loadavg() -> str:
  return '/'.join(f'{v:.2f}' for v in os.getloadavg())


def _input(batch: int, size: int, layout: str):
  import numpy as np  # pylint: disable=g-import-not-at-top
  x = np.random.default_rng(0).standard_normal((batch, size, size, 3)).astype(np.float32)
  return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if layout == 'nchw' else x


def _timed(call, warmup: int, runs: int) -> list:
  for _ in range(warmup):
    call()
  times = []
  for _ in range(runs):
    t = time.perf_counter()
    call()
    times.append(1e3 * (time.perf_counter() - t))
  return times


def _model(arch: str, impl: str):
  import jax  # pylint: disable=g-import-not-at-top
  from litepose_jax import models  # pylint: disable=g-import-not-at-top
  model = models.create(arch, NUM_KEYPOINTS, depthwise_impl=impl)
  return model, models.init_variables(model, jax.random.PRNGKey(0))


def worker(args) -> None:
  """One runtime, one configuration, in this process. After the warm-up it prints 'ready', then answers
  every stdin line 'N' with one JSON line {"times_ms": [N timings]}; an empty line ends it."""
  size = SIZES[args.arch]
  if args.worker == 'jax':
    from litepose_jax import runtime  # pylint: disable=g-import-not-at-top
    runtime.tune_host()  # as predict.py / evaluate.py, before JAX's first computation
    import jax  # pylint: disable=g-import-not-at-top
    model, variables = _model(args.arch, 'auto')
    x = jax.numpy.asarray(_input(args.batch, size, 'nhwc'))
    fwd = jax.jit(lambda v, im: model.apply(v, im, train=False)).lower(variables, x).compile()
    call = lambda: jax.block_until_ready(fwd(variables, x))
  elif args.worker == 'tflite':
    from litepose_jax.export import runner  # pylint: disable=g-import-not-at-top
    net = runner.TFLiteModel(args.file, num_threads=args.threads)
    x = _input(args.batch, size, 'nhwc')
    call = lambda: net(x)
  else:  # onnx, anchor, extra ONNX files: ONNX Runtime with the anchor's session options (time_ort.py)
    import onnxruntime as ort  # pylint: disable=g-import-not-at-top
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(args.file, so, providers=['CPUExecutionProvider'])
    inp = session.get_inputs()[0]
    layout = 'nhwc' if inp.shape[-1] == 3 else 'nchw'
    feed = {inp.name: _input(args.batch, size, layout)}
    call = lambda: session.run(None, feed)
  _timed(call, args.warmup, 0)
  print('ready', flush=True)
  for line in sys.stdin:
    if not line.strip():
      break
    print(json.dumps({'times_ms': _timed(call, 0, int(line))}), flush=True)


class _Worker:
  """A runtime's process for one configuration (see `worker`)."""

  def __init__(self, runtime: str, arch: str, batch: int, file, args):
    kind = runtime if runtime in RUNTIMES else 'onnx'
    kind = 'tflite' if kind == 'tflite_window' else kind   # the same LiteRT worker, another file
    extra_env = {}
    if kind == 'jax_shift':   # the JAX path without the C++ depthwise kernel (the form used before it)
      kind, extra_env = 'jax', {'LITEPOSE_JAX_CPU_KERNEL': '0'}
    cmd = [sys.executable, __file__, '--worker', kind, '--archs', arch, '--batches', str(batch),
           '--warmup', str(args.warmup), '--threads', str(args.threads)]
    if file:
      cmd += ['--file', str(file)]
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL='2', **extra_env)
    self.name = f'{runtime} {arch} batch {batch}'
    self.cmd = ' '.join(cmd)
    self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True, env=env)
    self._expect('ready')

  def _expect(self, what: str) -> str:
    line = self.proc.stdout.readline()
    if what not in line:
      self.proc.kill()
      raise RuntimeError(f'{self.name} failed; run it alone to see why: {self.cmd}')
    return line

  def run(self, n: int) -> list:
    self.proc.stdin.write(f'{n}\n')
    self.proc.stdin.flush()
    return json.loads(self._expect('times_ms'))['times_ms']

  def close(self) -> None:
    self.proc.stdin.write('\n')
    self.proc.stdin.flush()
    self.proc.wait()


def dynamic_batch_copy(path: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
  """A copy of an ONNX file whose inputs' and outputs' first dimension is the symbol 'B'.

  For a fixed-batch file of a network without reshapes (the anchor): intermediate shape annotations are
  dropped so that ONNX Runtime infers them again.
  """
  import onnx  # pylint: disable=g-import-not-at-top
  m = onnx.load(str(path))
  for v in list(m.graph.input) + list(m.graph.output):
    v.type.tensor_type.shape.dim[0].dim_param = 'B'
  del m.graph.value_info[:]
  onnx.save(m, str(out))
  return out


def _exporter_version() -> str:
  """A hash of the package's model and export sources: our files are reused only when written by the
  same code (a file kept from an earlier version of the exporter would time the old graph)."""
  import hashlib  # pylint: disable=g-import-not-at-top
  pkg = pathlib.Path(__file__).resolve().parents[1] / 'litepose_jax'
  key = hashlib.sha256()
  for path in sorted([*pkg.glob('models/*.py'), *pkg.glob('export/*.py')]):
    key.update(path.read_bytes())
  return key.hexdigest()[:10]


def prepare_files(arch: str, batches, runtimes, args) -> dict:
  """Writes (once per exporter version) our files for `arch` into the workdir: {(runtime, batch): path}."""
  work = pathlib.Path(args.workdir) / _exporter_version()
  work.mkdir(parents=True, exist_ok=True)
  size = SIZES[arch]
  files = {}
  anchor = getattr(args, f'anchor_{arch}')
  for b in batches:
    if 'anchor' in runtimes:
      if not anchor or not pathlib.Path(anchor).is_file():
        raise SystemExit(f'{ANCHOR_HINT} (no file for {arch}: {anchor})')
      files[('anchor', b)] = (pathlib.Path(anchor) if b == 1 else
                              dynamic_batch_copy(pathlib.Path(anchor), work / f'anchor_{arch}_dynbatch.onnx'))
    if 'onnx' in runtimes:
      given = getattr(args, f'onnx_{arch}')
      path = pathlib.Path(given) if given else work / f'ours_{arch}.onnx'
      if not path.is_file():
        from litepose_jax.export import onnx as onnx_export  # pylint: disable=g-import-not-at-top
        model, variables = _model(arch, 'xla')
        onnx_export.write_network(model, variables, (1, size, size, 3), path)
      files[('onnx', b)] = path
    for name, form in (('tflite', 'auto'), ('tflite_window', 'window')):
      if name not in runtimes:
        continue
      path = work / f'ours_{arch}_b{b}_xnnpack_{form}.tflite'
      if not path.is_file():
        from litepose_jax.export import graphs, tflite  # pylint: disable=g-import-not-at-top
        from litepose_jax import checkpoint  # pylint: disable=g-import-not-at-top
        model, variables = _model(arch, 'tflite')
        model = model.clone(deconv_form=form)
        loaded = checkpoint.LoadedModel(model, variables, checkpoint.model_meta(model.arch, NUM_KEYPOINTS), 0)
        path.write_bytes(tflite.to_tflite(graphs.network_fn(loaded), (b, size, size, 3), 'none', None))
      files[(name, b)] = path
  return files


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--archs', default='xs,s')
  p.add_argument('--batches', default='1,8')
  p.add_argument('--runtimes', default=','.join(RUNTIMES))
  p.add_argument('--rounds', type=int, default=10)
  p.add_argument('--runs', type=int, default=5, help='timed calls per runtime and round')
  p.add_argument('--warmup', type=int, default=3)
  p.add_argument('--threads', type=int, default=2)
  p.add_argument('--workdir', default='/tmp/litepose_cpu_runtimes')
  p.add_argument('--anchor_xs', default='/tmp/anchor_xs.onnx')
  p.add_argument('--anchor_s', default='/tmp/anchor_s.onnx')
  p.add_argument('--onnx_xs', default=None, help='time this ONNX file as ours instead of exporting one')
  p.add_argument('--onnx_s', default=None)
  p.add_argument('--also', action='append', default=[],
                 help='NAME=ARCH:PATH, another ONNX file timed beside the rest (e.g. an earlier export)')
  p.add_argument('--worker', choices=RUNTIMES, default=None, help=argparse.SUPPRESS)
  p.add_argument('--file', default=None, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  archs = args.archs.split(',')
  batches = [int(b) for b in args.batches.split(',')]
  runtimes = [r for r in args.runtimes.split(',') if r]

  if args.worker:
    args.arch, args.batch = archs[0], batches[0]
    worker(args)
    return 0
  extras = []
  for spec in args.also:
    name, rest = spec.split('=', 1)
    arch_of, path = rest.split(':', 1)
    extras.append((name, arch_of, pathlib.Path(path)))
  extra_files = {(name, arch_of): path for name, arch_of, path in extras}

  rows = []
  print(f'# {len(runtimes)} runtimes x {args.rounds} rounds x {args.runs} runs, {args.threads} threads; '
        f'load average {_loadavg()}', flush=True)
  for arch in archs:
    files = prepare_files(arch, batches, runtimes, args)
    for b in batches:
      labels = runtimes + [name for name, arch_of, _ in extras if arch_of == arch]
      workers = {r: _Worker(r, arch, b, files.get((r, b), extra_files.get((r, arch))), args) for r in labels}
      load_before = _loadavg()
      times = {r: [] for r in labels}
      round_medians = {r: [] for r in labels}
      for k in range(args.rounds):
        order = labels[k % len(labels):] + labels[:k % len(labels)]
        for r in order:
          t = workers[r].run(args.runs)
          times[r] += t
          round_medians[r].append(statistics.median(t))
      for w in workers.values():
        w.close()
      load_after = _loadavg()
      anchor = statistics.median(times['anchor']) if 'anchor' in runtimes else None
      for r in labels:
        med = statistics.median(times[r])
        rows.append((arch, SIZES[arch], b, r, med, min(round_medians[r]), max(round_medians[r]),
                     med / anchor if anchor else float('nan'), load_before, load_after))
        print(f'{arch}@{SIZES[arch]} b{b} {r:7s} {med:8.2f} ms  rounds {min(round_medians[r]):.2f}-'
              f'{max(round_medians[r]):.2f}  x{rows[-1][7]:.2f}', flush=True)
  print('\n| model | batch | runtime | median ms | round medians | vs anchor | load before / after |')
  print('|---|---|---|---|---|---|---|')
  for arch, size, b, r, med, lo, hi, ratio, lb, la in rows:
    print(f'| {arch.upper()}@{size} | {b} | {r} | {med:.1f} | {lo:.1f}-{hi:.1f} | {ratio:.2f}x | {lb} / {la} |')
  return 0


if __name__ == '__main__':
  sys.exit(main())
