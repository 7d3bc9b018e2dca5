"""Supernet train step vs the fixed maximum-width model's: step time, compile time, peak memory.

  python bench/nas.py                                  # 256 px, batch 4, 5 timed steps per case
  python bench/nas.py --size 512 --batch 16 --runs 20 --compile_sizes 256,384,512   # GPU

Both steps are the same program shape: forward in train mode, the training loss (losses.total_loss),
backward, Adam (lr 4e-3, the authors' supernet optimiser) in one jitted function. The supernet step
receives the subnet as mask arrays and draws a new uniform subnet (seeded) before every step, as supernet
training does; the fixed step is `models.create(LARGEST)` (= the supernet's maximum). Every case runs in
its own subprocess (one at a time), so the peak RSS is that case's. Synthetic batches (bench/train_step.py's
`synthetic_batch`); no TensorFlow. Prints one JSON line per case and a table of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _worker(args) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  from bench.train_step import synthetic_batch
  from litepose_jax import models, nas
  from litepose_jax.train import losses

  if args.cache_dir:
    from litepose_jax import runtime
    runtime.enable_compile_cache(args.cache_dir)
  k = 14
  tx = optax.adam(4e-3)
  supernet = args.worker == 'supernet'
  if supernet:
    variables = nas.init(jax.random.PRNGKey(0), k)

    def forward(params, stats, masks, images):
      return nas.apply_masked({'params': params, 'batch_stats': stats}, masks, images, train=True,
                              depthwise_impl=args.depthwise_impl)
  else:
    model = models.create(nas.LARGEST.to_arch_json(), k, depthwise_impl=args.depthwise_impl)
    variables = models.init_variables(model, jax.random.PRNGKey(0), 64)

    def forward(params, stats, masks, images):
      del masks
      outs, new = model.apply({'params': params, 'batch_stats': stats}, images, train=True,
                              mutable=['batch_stats'])
      return outs, new['batch_stats']

  traces = []

  def step(params, stats, opt_state, masks, batch):
    traces.append(batch['image'].shape)   # Python body: once per trace

    def loss_fn(p):
      outs, new_stats = forward(p, stats, masks, batch['image'])
      return losses.total_loss(outs, batch)[0], new_stats

    (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_stats, opt_state, loss

  jstep = jax.jit(step, donate_argnums=(0, 2))
  params, stats = variables['params'], variables['batch_stats']
  opt_state = tx.init(params)
  rng = np.random.default_rng(0)
  masks = nas.subnet_masks(nas.LARGEST)
  compile_s = {}
  for size in sorted({args.size, *args.compile_sizes}):
    batch = {key: jnp.asarray(v) for key, v in synthetic_batch(args.batch, size, k).items()}
    t0 = time.perf_counter()
    jstep.lower(params, stats, opt_state, masks, batch).compile()
    compile_s[size] = round(time.perf_counter() - t0, 2)
  batch = {key: jnp.asarray(v) for key, v in synthetic_batch(args.batch, args.size, k).items()}
  times, cpus = [], []
  for i in range(args.warmup + args.runs):
    masks = nas.subnet_masks(nas.sample_uniform(rng)) if supernet else masks
    t0, c0 = time.perf_counter(), time.process_time()
    params, stats, opt_state, loss = jstep(params, stats, opt_state, masks, batch)
    jax.block_until_ready((params, loss))
    if i >= args.warmup:
      times.append(time.perf_counter() - t0)
      cpus.append(time.process_time() - c0)   # less sensitive than wall time to other jobs
  out = {'case': args.worker, 'size': args.size, 'batch': args.batch, 'backend': jax.default_backend(),
         'device': str(jax.devices()[0].device_kind), 'depthwise_impl': args.depthwise_impl,
         'step_s_median': round(statistics.median(times), 4), 'step_s_min': round(min(times), 4),
         'step_cpu_s_median': round(statistics.median(cpus), 4),
         'compile_s': compile_s, 'traces': len(traces), 'loss': float(loss),
         'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
         'loadavg_1m': os.getloadavg()[0]}
  mem = jax.devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in mem:
    out['peak_device_mb'] = mem['peak_bytes_in_use'] // 2 ** 20
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--size', type=int, default=256)
  p.add_argument('--batch', type=int, default=4)
  p.add_argument('--runs', type=int, default=5)
  p.add_argument('--warmup', type=int, default=1)
  p.add_argument('--repeats', type=int, default=1, help='alternate the two cases this many times')
  p.add_argument('--compile_sizes', default='', help='extra resolutions to time the compile at, e.g. 256,512')
  p.add_argument('--depthwise_impl', default='auto')
  p.add_argument('--cache_dir', default='', help='persistent compilation cache (compile_s then times a '
                 'cache read after the first run)')
  p.add_argument('--worker', choices=('fixed', 'supernet'), help=argparse.SUPPRESS)
  args = p.parse_args()
  args.compile_sizes = [int(s) for s in args.compile_sizes.split(',') if s]
  if args.worker:
    print(json.dumps(_worker(args)), flush=True)
    return
  results = {'fixed': [], 'supernet': []}
  base = [sys.executable, os.path.abspath(__file__), '--size', str(args.size), '--batch', str(args.batch),
          '--runs', str(args.runs), '--warmup', str(args.warmup), '--depthwise_impl', args.depthwise_impl,
          '--compile_sizes', ','.join(map(str, args.compile_sizes)), '--cache_dir', args.cache_dir]
  for _ in range(args.repeats):
    for case in ('fixed', 'supernet'):   # one process at a time, alternating
      line = subprocess.run(base + ['--worker', case], check=True, capture_output=True, text=True).stdout
      res = json.loads(line.strip().splitlines()[-1])
      print(json.dumps(res), flush=True)
      results[case].append(res)
  med = {c: statistics.median(r['step_s_median'] for r in rs) for c, rs in results.items()}
  cpu = {c: statistics.median(r['step_cpu_s_median'] for r in rs) for c, rs in results.items()}
  print(f'\n{"case":<10} {"step s (median)":>16} {"CPU s/step":>11} {"compile s":>24} {"peak RSS MB":>12} {"traces":>7}')
  for c, rs in results.items():
    comp = ', '.join(f'{s}px {v}' for s, v in rs[0]['compile_s'].items())   # first run: no cache hit
    print(f'{c:<10} {med[c]:>16.4f} {cpu[c]:>11.4f} {comp:>24} {max(r["peak_rss_mb"] for r in rs):>12} '
          f'{rs[-1]["traces"]:>7}')
  print(f'supernet / fixed step time: {med["supernet"] / med["fixed"]:.3f}x wall, '
        f'{cpu["supernet"] / cpu["fixed"]:.3f}x CPU '
        f'({args.size}px, batch {args.batch}, {results["fixed"][0]["backend"]}, '
        f'{len(results["fixed"])}x{args.runs} timed steps per case)')


if __name__ == '__main__':
  main()
