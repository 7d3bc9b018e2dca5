"""One prepared accelerator run (GPU / TPU, ≤ ~5 min with compilation): prints one table.

  python bench/accelerator.py                       # the full run on the first accelerator
  python bench/accelerator.py --smoke               # tiny sizes on CPU (< ~2 min): checks it still runs
  python bench/accelerator.py --reference=/path/to/litepose_xs_reference.npz --json=out.json

Rows: device and JAX / jaxlib versions; train step (forward + loss + backward + Adam, synthetic batch) img/s
and compile time for XS@256 batch 64 fp32 and bf16 and S@448 batch 32 bf16; forward (eval mode, no flip)
img/s at batch 32; decode ms per image at batch 64 (the jitted decoder on synthetic maps); the search's
cost per candidate (re-calibration on 16 images + test path on 8, 256 px: nas/fitness.py's device work)
against the authors' decoder alone on the same images; peak device
memory; the correctness line: the authors' reference XS weights (converted, fp32, default matmul precision)
on the device vs the PyTorch outputs in the fixture, max |diff|; and, when PyTorch is importable, a
PyTorch LitePose-XS-shaped network's train img/s on the same device (the anchor; written here from the
architecture, not the authors' code).

Needs only what a GPU image with JAX, flax, optax and orbax has: no TensorFlow, no ml_collections (the
model is built from litepose_jax.models directly). Every case runs in its own try block: a failure is a
table row, not a lost run.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from litepose_jax import models  # noqa: E402
from litepose_jax.train import losses  # noqa: E402
from litepose_jax.train import sharding  # noqa: E402
from litepose_jax.train import state as train_state  # noqa: E402
from litepose_jax.train import step as step_lib  # noqa: E402

K = 14
FULL = {'train': [('xs', 256, 64, 'float32'), ('xs', 256, 64, 'bfloat16'), ('s', 448, 32, 'bfloat16')],
        'forward': ('xs', 256, 32), 'decode': (256, 64), 'runs': 20, 'torch': ('xs', 256, 64),
        'search': (256, 8, 2, 8)}
# --smoke: configs/tiny.py's architecture (one 3x3 block per stage; compiles in seconds), 64 px.
TINY = {'img_size': 64, 'input_channel': 8, 'deconv_setting': [8, 8, 8], 'backbone_setting': [
    {'num_blocks': 1, 'stride': s, 'channel': c, 'block_setting': [[2, 3]]}
    for s, c in ((2, 8), (2, 16), (2, 16), (1, 16))]}
SMOKE = {'train': [(TINY, 64, 2, 'float32'), (TINY, 64, 2, 'bfloat16')], 'forward': (TINY, 64, 2),
         'decode': (64, 2), 'runs': 2, 'torch': (TINY, 64, 2), 'search': (64, 2, 1, 2)}
# The authors' decoder alone, per image on XS test-path maps (litepose-reference.md section k, CPU): the
# lower bound of their cost per search candidate (nas/fitness.py's work with their code).
AUTHORS_DECODE_S = (0.182, 0.314)


def _name(arch) -> str:
  return arch.upper() if isinstance(arch, str) else 'tiny'


def _batch(batch: int, size: int, people: int = 5, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  r0, r1 = size // 4, size // 2
  joints = np.zeros((batch, 30, K, 2), np.int32)
  ys, xs = rng.integers(0, r0, (batch, people, K)), rng.integers(0, r0, (batch, people, K))
  joints[:, :people, :, 0] = np.arange(K) * r0 * r0 + ys * r0 + xs
  joints[:, :people, :, 1] = 1
  return {'image': rng.normal(size=(batch, size, size, 3)).astype(np.float32),
          'heatmaps_0': rng.uniform(size=(batch, r0, r0, K)).astype(np.float32),
          'heatmaps_1': rng.uniform(size=(batch, r1, r1, K)).astype(np.float32),
          'masks_0': np.ones((batch, r0, r0), np.float32), 'masks_1': np.ones((batch, r1, r1), np.float32),
          'joints_0': joints}


def _timed(fn, runs: int) -> float:
  """Median seconds of `fn()` (it must block)."""
  times = []
  for _ in range(runs):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def train_case(arch, size, batch, dtype, runs, impl) -> str:
  model = models.create(arch, K, dtype=dtype, depthwise_impl=impl)
  tx = optax.adam(1e-3)
  schedule = optax.constant_schedule(1e-3)
  mesh = sharding.make_mesh(jax.devices()[:1])
  state = jax.jit(lambda rng: train_state.create(model, tx, rng, size, use_ema=False),
                  out_shardings=sharding.replicated(mesh))(jax.random.key(0))
  step = step_lib.JittedTrainStep(step_lib.make_train_step(model, tx, schedule, losses.LossWeights()), mesh)
  data = sharding.put_global_batch(_batch(batch, size), mesh)
  t0 = time.perf_counter()
  compiled = step.compile(state, data)
  compile_s = time.perf_counter() - t0
  holder = [state]

  def run():
    holder[0], metrics = compiled(holder[0], data)
    jax.block_until_ready((holder[0], metrics))

  run()
  med = _timed(run, runs)
  return f'{batch / med:9.1f} img/s   step {med * 1e3:8.1f} ms   compile {compile_s:6.1f} s'


def forward_case(arch, size, batch, runs, impl) -> str:
  model = models.create(arch, K, depthwise_impl=impl)
  variables = models.init_variables(model, jax.random.key(0), size)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype(np.float32))
  fwd = jax.jit(lambda v, x: model.apply(v, x, train=False))
  t0 = time.perf_counter()
  jax.block_until_ready(fwd(variables, x))
  compile_s = time.perf_counter() - t0
  med = _timed(lambda: jax.block_until_ready(fwd(variables, x)), runs)
  return f'{batch / med:9.1f} img/s   batch {med * 1e3:7.1f} ms   compile {compile_s:6.1f} s'


def decode_case(size, batch, runs) -> str:
  from litepose_jax import decode  # pylint: disable=g-import-not-at-top
  from litepose_jax import keypoints as kp_lib  # pylint: disable=g-import-not-at-top
  cfg = decode.DecodeConfig.create(kp_lib.get('crowdpose'))
  rng = np.random.default_rng(0)
  heat = jnp.asarray(rng.uniform(size=(batch, K, size // 2, size // 2)).astype(np.float32) ** 8)
  tags = jnp.asarray(rng.normal(size=(batch, K, 1, size // 2, size // 2)).astype(np.float32))
  fn = jax.jit(lambda h, t: decode.parse_maps(h, t, cfg))
  jax.block_until_ready(fn(heat, tags))
  med = _timed(lambda: jax.block_until_ready(fn(heat, tags)), runs)
  return f'{med * 1e3 / batch:9.3f} ms/image (batch {batch}, maps {size // 2}x{size // 2}, jitted decoder)'


def search_case(size, images, calib_batches, batch, runs, impl) -> str:
  """One search candidate's device work (nas/fitness.py): BN re-calibration of a random subnet on
  `calib_batches` batches of `batch` images, then the test path (masked supernet forward + flip, map
  aggregation, jitted decoder, back-projection) on `images` held-out images, all at `size` px. A random-init
  supernet and synthetic images; the AP itself (host NumPy, bench/evaluation.py) is not included."""
  from litepose_jax import inference, nas  # pylint: disable=g-import-not-at-top
  from litepose_jax import keypoints as kp_lib  # pylint: disable=g-import-not-at-top
  variables = nas.init(jax.random.PRNGKey(0), K)
  params = jax.device_put(variables['params'])
  rng = np.random.default_rng(0)
  calib = [jnp.asarray(rng.normal(size=(batch, size, size, 3)).astype(np.float32))
           for _ in range(calib_batches)]
  x = rng.normal(size=(images, size, size, 3)).astype(np.float32)
  center = np.full((images, 2), size / 2, np.float32)
  scale = np.full((images, 2), size / 200, np.float32)
  predictor = inference.Predictor(nas.MaskedSupernet(K, impl), None, kp_lib.get('crowdpose'), size,
                                  batch_size=images)
  subnets = [nas.sample_uniform(rng) for _ in range(runs + 1)]
  times = []
  for sub in subnets:
    # The masks do not depend on img_size: --smoke's 64 px (not a search resolution) keeps the drawn one.
    sub = nas.Subnet(size if size in nas.RESOLUTIONS else sub.img_size, sub.stem, sub.deconv, sub.stages)
    t0 = time.perf_counter()
    net = nas.recalibrate({'params': params, 'batch_stats': variables['batch_stats']}, sub, calib,
                          depthwise_impl=impl)
    v = {'net': {'params': params, 'batch_stats': jax.device_put(net['batch_stats'])},
         'masks': {k: jnp.asarray(m) for k, m in nas.subnet_masks(sub).items()}}
    jax.block_until_ready(v)
    t1 = time.perf_counter()
    predictor.predict_prepared([x], center, scale, v)   # NumPy outputs: blocks
    times.append((time.perf_counter() - t0, t1 - t0, time.perf_counter() - t1))
  first = times[0][0]
  cand, recal, test = (statistics.median(t[i] for t in times[1:]) for i in range(3))
  lo, hi = (images * t / cand for t in AUTHORS_DECODE_S)
  return (f'{cand * 1e3:9.1f} ms/candidate (re-calibration {recal * 1e3:.1f} ms on {calib_batches * batch} '
          f'images + test path {test * 1e3:.1f} ms on {images} images, {size} px; first {first:.1f} s with '
          f'compiles); the authors\' decoder alone on {images} images: {lo:.0f}-{hi:.0f}x this')


def correctness(reference: pathlib.Path, impl) -> str:
  from litepose_jax import convert  # pylint: disable=g-import-not-at-top
  z = np.load(reference)
  variables = convert.torch_to_flax(convert.load_state_dict(reference), 'xs', K)
  model = models.create('xs', K, depthwise_impl=impl)
  x = jnp.asarray(np.transpose(z['input'], (0, 2, 3, 1)))
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(jax.device_put(variables), x)
  diffs = [float(np.max(np.abs(np.asarray(o) - np.transpose(z[f'out_eval_{i}'], (0, 2, 3, 1)))))
           for i, o in enumerate(out)]
  scale = max(float(np.max(np.abs(z[f'out_eval_{i}']))) for i in range(2))
  return f'max |diff| {max(diffs):.2e} (outputs up to {scale:.2f}; XS eval, fp32, default precision)'


def torch_anchor(arch, size, batch, runs) -> str:
  """Train img/s of a PyTorch network with LitePose-XS's layer shapes (backbone + deconv head, Adam)."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  a = models.get_arch(arch)
  dev = 'cuda' if torch.cuda.is_available() else 'cpu'

  def cbr(cin, cout, k, s, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return layers + ([nn.ReLU6()] if act else [])

  body = cbr(3, 32, 3, 2) + cbr(32, 32, 3, 1, 32) + cbr(32, a.stem_channels, 1, 1, act=False)
  cin = a.stem_channels
  for stage in a.stages:
    for b, (t, ks) in enumerate(stage.blocks):
      hid = models.make_divisible(round(cin * t))
      body += cbr(cin, hid, 1, 1) + cbr(hid, hid, ks, stage.stride if b == 0 else 1, hid)
      body += cbr(hid, stage.channels, 1, 1, act=False)
      cin = stage.channels
  head = []
  for f in a.deconv_channels:
    head += [nn.ConvTranspose2d(cin, f, 4, 2, 1, bias=False), nn.BatchNorm2d(f), nn.ReLU()]
    cin = f
  net = nn.Sequential(*body, *head, nn.Conv2d(cin, 2 * K, 1)).to(dev)
  opt = torch.optim.Adam(net.parameters(), 1e-3)
  x = torch.randn(batch, 3, size, size, device=dev)

  def step():
    opt.zero_grad(set_to_none=True)
    loss = net(x).square().mean()
    loss.backward()
    opt.step()
    if dev == 'cuda':
      torch.cuda.synchronize()

  step()
  med = _timed(step, runs)
  return (f'{batch / med:9.1f} img/s   step {med * 1e3:8.1f} ms   (torch {torch.__version__}, {dev}, fp32, '
          f'XS-shaped sequential net, no residuals/fusion: an anchor, not the authors\' code)')


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--smoke', action='store_true', help='tiny sizes (CPU, < ~2 min)')
  p.add_argument('--reference', default='', help='litepose_xs_reference.npz (default: looked up)')
  p.add_argument('--depthwise_impl', default='auto')
  p.add_argument('--no_torch', action='store_true')
  p.add_argument('--json', default='', help='also write the rows here')
  args = p.parse_args(argv)
  plan = SMOKE if args.smoke else FULL
  dev = jax.devices()[0]
  rows = [('device', f'{dev.platform}: {dev.device_kind} x{jax.device_count()}'),
          ('versions', f'jax {jax.__version__}, jaxlib {getattr(jax.lib, "__version__", "?")}, '
                       f'python {sys.version.split()[0]}')]
  try:
    import jaxlib  # pylint: disable=g-import-not-at-top
    rows[-1] = ('versions', f'jax {jax.__version__}, jaxlib {jaxlib.__version__}, python {sys.version.split()[0]}')
  except Exception:  # pylint: disable=broad-except
    pass

  def row(name, fn, *a):
    t0 = time.perf_counter()
    try:
      value = fn(*a)
    except Exception as e:  # pylint: disable=broad-except
      traceback.print_exc(file=sys.stderr)
      value = f'FAILED: {type(e).__name__}: {str(e)[:200]}'
    rows.append((name, value))
    print(f'  {name}: {value}  [{time.perf_counter() - t0:.0f} s]', file=sys.stderr, flush=True)

  runs, impl = plan['runs'], args.depthwise_impl
  for arch, size, batch, dtype in plan['train']:
    row(f'train {_name(arch)}@{size} b{batch} {dtype}', train_case, arch, size, batch, dtype, runs, impl)
  arch, size, batch = plan['forward']
  row(f'forward {_name(arch)}@{size} b{batch} fp32', forward_case, arch, size, batch, runs, impl)
  size, batch = plan['decode']
  row(f'decode @{size} b{batch}', decode_case, size, batch, runs)
  size, images, calib_batches, batch = plan['search']
  row(f'search candidate @{size}', search_case, size, images, calib_batches, batch, runs, impl)
  ref = pathlib.Path(args.reference) if args.reference else next(
      (c / 'litepose_xs_reference.npz' for c in (pathlib.Path(os.environ.get('LITEPOSE_REFERENCE_DIR', '.')),
       pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'reference',
       pathlib.Path('/work/shared/reference')) if (c / 'litepose_xs_reference.npz').exists()), None)
  if ref is not None:
    row('correctness vs PyTorch fixture', correctness, ref, impl)
  else:
    rows.append(('correctness vs PyTorch fixture', 'skipped: litepose_xs_reference.npz not found (--reference)'))
  stats = dev.memory_stats() or {}
  rows.append(('peak device memory', f'{stats["peak_bytes_in_use"] / 2**30:.2f} GiB'
               if 'peak_bytes_in_use' in stats else 'not reported by this backend'))
  if not args.no_torch:
    try:
      import torch  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
      arch, size, batch = plan['torch']
      row(f'PyTorch anchor {_name(arch)}@{size} b{batch}', torch_anchor, arch, size, batch, runs)
    except ImportError:
      rows.append(('PyTorch anchor', 'skipped: torch not importable'))
  width = max(len(n) for n, _ in rows)
  print(f'\nlitepose-jax accelerator benchmark{" (--smoke sizes)" if args.smoke else ""}')
  for name, value in rows:
    print(f'{name:<{width}}  {value}')
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(dict(rows), indent=1))
  return 1 if any(str(v).startswith('FAILED') for _, v in rows) else 0


if __name__ == '__main__':
  sys.exit(main())
