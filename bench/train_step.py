"""Train-step speed: images/s of the jitted step (forward + loss + backward + Adam), and its compile time.

  python bench/train_step.py                                  # XS@256 b8 and S@448 b8, fp32 and bf16
  python bench/train_step.py --cases=xs:256:8:float32 --runs=20
  python bench/train_step.py --cases=xs:256:32:float32,xs:256:64:bfloat16   # GPU

Synthetic batch with 5 people × K joints per image (as the anchor measurement of the authors' PyTorch step,
spec k: XS@256 batch 8 ≈ 2.97-3.45 s per step on the 2-core CPU). Reports the median of `--runs` timed
steps after `--warmup` untimed ones (and the median process CPU time per step), the load average before
and after (timings on a shared machine are noisy) and the peak memory. Per-layer costs: bench/profile_layers.py.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from litepose_jax import models  # noqa: E402
from litepose_jax.train import losses  # noqa: E402
from litepose_jax.train import sharding  # noqa: E402
from litepose_jax.train import state as train_state  # noqa: E402
from litepose_jax.train import step as step_lib  # noqa: E402
from litepose_jax import runtime  # noqa: E402
from litepose_jax.train import optim  # noqa: E402
from configs import common  # noqa: E402


def synthetic_batch(batch: int, size: int, k: int, people: int = 5, seed: int = 0) -> dict:
  """Random image, targets and packed joints of the training-batch contract."""
  rng = np.random.default_rng(seed)
  r0, r1 = size // 4, size // 2
  joints = np.zeros((batch, 30, k, 2), np.int32)
  ys, xs = rng.integers(0, r0, (batch, people, k)), rng.integers(0, r0, (batch, people, k))
  joints[:, :people, :, 0] = np.arange(k) * r0 * r0 + ys * r0 + xs
  joints[:, :people, :, 1] = 1
  return {
      'image': rng.normal(size=(batch, size, size, 3)).astype(np.float32),
      'heatmaps_0': rng.uniform(size=(batch, r0, r0, k)).astype(np.float32),
      'heatmaps_1': rng.uniform(size=(batch, r1, r1, k)).astype(np.float32),
      'masks_0': np.ones((batch, r0, r0), np.float32),
      'masks_1': np.ones((batch, r1, r1), np.float32),
      'joints_0': joints,
  }


def bench_case(arch: str, size: int, batch: int, dtype: str, runs: int, warmup: int,
               depthwise_impl: str, cache_dir: str = '') -> dict:
  k = 14
  model = models.create(arch, k, dtype=dtype, depthwise_impl=depthwise_impl)
  opt = common.get_config().optimizer
  tx, schedule = optim.make_optimizer(opt, steps_per_epoch=1000, total_steps=500_000)
  mesh = sharding.make_mesh()
  state = jax.jit(lambda rng: train_state.create(model, tx, rng, size, use_ema=False),
                  out_shardings=sharding.replicated(mesh))(jax.random.key(0))
  step = step_lib.JittedTrainStep(step_lib.make_train_step(model, tx, schedule, losses.LossWeights()),
                                   mesh)
  host = synthetic_batch(batch, size, k)
  data = sharding.put_global_batch(host, mesh)
  load0 = os.getloadavg()[0]
  t0 = time.perf_counter()
  compiled = step.compile(state, data)   # tracing, lowering and XLA for both programs of the step
  compile_s = time.perf_counter() - t0
  cached_s = None
  if cache_dir:
    # What a restarted process pays: in-memory caches dropped, the programs come from the disk cache.
    jax.clear_caches()
    t0 = time.perf_counter()
    compiled = step.compile(state, data)
    cached_s = round(time.perf_counter() - t0, 2)
  for _ in range(warmup):
    state, metrics = compiled(state, data)
  jax.block_until_ready(metrics)
  times, cpus = [], []
  for _ in range(runs):
    t0, c0 = time.perf_counter(), time.process_time()
    state, metrics = compiled(state, data)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - t0)
    cpus.append(time.process_time() - c0)
  med = statistics.median(times)
  out = {'arch': arch, 'size': size, 'batch': batch, 'dtype': dtype, 'backend': jax.default_backend(),
         'device': str(jax.devices()[0].device_kind), 'compile_s': round(compile_s, 2),
         'compile_from_disk_cache_s': cached_s,
         'step_s_median': round(med, 4), 'step_s_min': round(min(times), 4),
         'images_per_s': round(batch / med, 2),
         # Process CPU seconds per step: less sensitive than wall time to other jobs on a shared machine.
         'step_cpu_s_median': round(statistics.median(cpus), 4), 'loss': float(metrics['loss']),
         'loadavg_1m_before': load0, 'loadavg_1m': os.getloadavg()[0], 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}
  stats = jax.devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    out['peak_device_mb'] = stats['peak_bytes_in_use'] // 2**20
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--cases', default='xs:256:8:float32,xs:256:8:bfloat16,s:448:8:float32,s:448:8:bfloat16',
                 help='comma-separated arch:size:batch:dtype')
  p.add_argument('--runs', type=int, default=20)
  p.add_argument('--warmup', type=int, default=3)
  p.add_argument('--depthwise_impl', default='auto')
  p.add_argument('--cache_dir', default='',
                 help='persistent compilation cache folder: also time a compile served from it')
  args = p.parse_args()
  if args.cache_dir:
    runtime.enable_compile_cache(args.cache_dir)
  for case in args.cases.split(','):
    arch, size, batch, dtype = case.split(':')
    res = bench_case(arch, int(size), int(batch), dtype, args.runs, args.warmup, args.depthwise_impl,
                     args.cache_dir)
    print(json.dumps(res), flush=True)


if __name__ == '__main__':
  main()
