"""Inference speed of the jitted LitePose forward (eval mode) on the local CPU.

For each (arch, batch) it prints the median ms per image over >= 20 timed runs (warm-up excluded), the
compile time, and the process's peak RSS; each configuration runs in its own subprocess so that peak
memory is per configuration. The 1-minute load average before and after each configuration is printed:
on a shared machine the numbers are only comparable under similar load.

  python bench/inference.py                      # XS@256 and S@448, batch 1 and 8, depthwise 'auto'
  python bench/inference.py --archs xs --batches 1 --impl xla --runs 30

Anchor (the authors' PyTorch model, eager, torch 2.13, this 2-core CPU): XS@256 56 ms at batch 1,
60 ms/image at batch 8; S@448 178 ms at batch 1, 279 ms/image at batch 8.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANCHOR_MS = {('xs', 1): 56.0, ('xs', 8): 60.0, ('s', 1): 178.0, ('s', 8): 279.0}


def _loadavg() -> float:
  with open('/proc/loadavg') as f:
    return float(f.read().split()[0])


def run_one(arch: str, batch: int, runs: int, impl: str, dtype: str) -> dict:
  """Times one configuration in this process; returns a JSON-able dict."""
  from litepose_jax import runtime
  runtime.tune_host()  # as evaluate.py / predict.py (before JAX's first computation)
  import jax
  import jax.numpy as jnp
  import numpy as np

  from litepose_jax import models

  model = models.create(arch, 14, dtype=dtype, depthwise_impl=impl)
  size = model.arch.img_size
  variables = models.init_variables(model, jax.random.PRNGKey(0))
  images = jnp.asarray(np.random.default_rng(0).normal(size=(batch, size, size, 3)), jnp.float32)
  fwd = jax.jit(lambda v, x: model.apply(v, x, train=False))
  t0 = time.perf_counter()
  compiled = fwd.lower(variables, images).compile()
  compile_s = time.perf_counter() - t0
  for _ in range(3):  # warm-up
    jax.block_until_ready(compiled(variables, images))
  load_before = _loadavg()
  times = []
  for _ in range(runs):
    t = time.perf_counter()
    jax.block_until_ready(compiled(variables, images))
    times.append(time.perf_counter() - t)
  times = np.asarray(times) * 1e3
  return {
      'arch': arch, 'size': size, 'batch': batch, 'impl': impl, 'dtype': dtype, 'runs': runs,
      'ms_per_image': float(np.median(times)) / batch,
      'ms_per_batch_p10_p90': [float(np.percentile(times, 10)), float(np.percentile(times, 90))],
      'compile_s': compile_s,
      'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      'load_before': load_before, 'load_after': _loadavg(),
  }


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--archs', default='xs,s')
  p.add_argument('--batches', default='1,8')
  p.add_argument('--runs', type=int, default=20)
  p.add_argument('--impl', default='auto', choices=('auto', 'xla', 'shift', 'ffi'))
  p.add_argument('--dtype', default='float32')
  p.add_argument('--one', action='store_true', help='internal: time one (arch, batch) and print JSON')
  args = p.parse_args()
  if args.runs < 20:
    p.error('--runs must be >= 20')
  if args.one:
    print(json.dumps(run_one(args.archs, int(args.batches), args.runs, args.impl, args.dtype)))
    return

  print(f'{"arch":>4} {"batch":>5} {"ms/img":>8} {"anchor":>7} {"p10-p90 ms/batch":>18} '
        f'{"compile s":>9} {"peak MB":>8} {"load":>9}')
  for arch in args.archs.split(','):
    for batch in (int(b) for b in args.batches.split(',')):
      cmd = [sys.executable, __file__, '--one', '--archs', arch, '--batches', str(batch), '--runs',
             str(args.runs), '--impl', args.impl, '--dtype', args.dtype]
      # The child imports litepose_jax from this checkout (bench/ scripts are run as plain files).
      env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get('PYTHONPATH')])))
      out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
      if out.returncode:
        sys.exit(f'{arch} batch {batch} failed:\n{out.stderr[-3000:]}')
      r = json.loads(out.stdout.strip().splitlines()[-1])
      anchor = ANCHOR_MS.get((arch, batch))
      print(f'{arch + "@" + str(r["size"]):>7} {batch:>2} {r["ms_per_image"]:8.1f} '
            f'{anchor if anchor else float("nan"):7.0f} '
            f'{r["ms_per_batch_p10_p90"][0]:8.1f}-{r["ms_per_batch_p10_p90"][1]:<8.1f} '
            f'{r["compile_s"]:9.1f} {r["peak_rss_mb"]:8.0f} {r["load_before"]:4.2f}/{r["load_after"]:4.2f}',
            flush=True)


if __name__ == '__main__':
  main()
