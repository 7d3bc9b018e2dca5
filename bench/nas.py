"""Supernet train step vs the fixed maximum-width model's: step time, compile time, peak memory; and the
search's cost per candidate (--search).

  python bench/nas.py                                  # 256 px, batch 4, 5 timed steps per case
  python bench/nas.py --size 512 --batch 16 --runs 20 --compile_sizes 256,384,512   # GPU
  python bench/nas.py --search [--supernet DIR] --size 256 --images 8 --calib_batches 2 --runs 5

--search: seconds per evaluated candidate = BN re-calibration on `calib_batches` synthetic training
batches (config.input.batch_size images) + the whole test path (flip, jitted decoder) + AP on `images`
held-out synthetic images, every candidate at --size (random subnets, one compile, not timed; medians of
--runs candidates). Weights: --supernet (a trained one: the decoder's cost depends on how many people
it finds) or a random init. Compared with the authors' cost for the same work, a per-image cost model
(we cannot run their code): their test path (2 forwards + flip + HeatmapParser with adjust and refine)
673-818 ms per image for the fixed XS model on this 2-core CPU, of which their decoder alone 182-314 ms
(litepose-reference.md section k); the lower bound uses the decoder alone (their forwards, their
calibration passes and their CrowdPose evaluation are free in it).

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


AUTHORS_DECODE_S = (0.182, 0.314)      # their decoder per image, XS test-path maps (spec k)
AUTHORS_TEST_PATH_S = (0.673, 0.818)   # their whole XS test path per image with flip (spec k)


def _search_worker(args) -> dict:
  import numpy as np

  from configs import search_tiny
  from litepose_jax import eval_lib, from_config, nas, runtime
  from litepose_jax.nas import fitness, search_data

  runtime.setup()
  config = search_tiny.get_config()
  with config.unlocked():
    config.model.depthwise_impl = args.depthwise_impl
    config.input.batch_size = args.batch
    config.eval.batch_size = args.batch
    config.dataset.synthetic_val_images = max(8, args.images)
  ks = from_config.keypoint_set(config)
  if args.supernet:
    variables, _ = nas.load_supernet(args.supernet)
  else:
    import jax
    variables = nas.init(jax.random.PRNGKey(0), ks.num_keypoints)
  data = search_data.search_data(config, args.images, args.calib_batches)
  predictor = from_config.predictor(config, nas.MaskedSupernet(ks.num_keypoints, args.depthwise_impl),
                                    None, ks, args.size)
  scorer = fitness.SubnetScorer(variables, predictor, eval_lib.ground_truth(config), ks, data,
                                args.depthwise_impl)
  rng = np.random.default_rng(0)
  subs = [nas.sample_uniform(rng) for _ in range(args.runs + 1)]
  subs = [nas.Subnet(args.size, s.stem, s.deconv, s.stages) for s in subs]
  data.get('calibration', args.size), data.get('evaluation', args.size)
  records = [scorer(s) for s in subs]   # the first compiles
  steady = records[1:]
  med = lambda key: statistics.median(r[key] for r in steady)
  images = steady[0]['images']
  ours = med('seconds')
  return {'case': 'search', 'size': args.size, 'images': images, 'calib_batches': args.calib_batches,
          'calib_images': args.calib_batches * args.batch, 'depthwise_impl': args.depthwise_impl,
          'supernet': args.supernet or 'random init', 'first_candidate_s (compiles)': round(records[0]['seconds'], 2),
          'candidate_s_median': round(ours, 3), 'calibration_s_median': round(med('calibration_seconds'), 3),
          'eval_s_median': round(med('eval_seconds'), 3), 'eval_s_per_image': round(med('eval_seconds') / images, 4),
          'authors_decoder_only_s': [round(images * t, 2) for t in AUTHORS_DECODE_S],
          'authors_test_path_s': [round(images * t, 2) for t in AUTHORS_TEST_PATH_S],
          'speedup_vs_authors_decoder_only': [round(images * t / ours, 2) for t in AUTHORS_DECODE_S],
          'speedup_vs_authors_test_path': [round(images * t / ours, 2) for t in AUTHORS_TEST_PATH_S],
          'loadavg_1m': os.getloadavg()[0]}


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
  p.add_argument('--search', action='store_true', help='time the search per candidate instead')
  p.add_argument('--supernet', default='', help='--search: supernet checkpoint (default: random init)')
  p.add_argument('--images', type=int, default=8, help='--search: held-out images per candidate')
  p.add_argument('--calib_batches', type=int, default=2, help='--search: calibration batches per candidate')
  args = p.parse_args()
  args.compile_sizes = [int(s) for s in args.compile_sizes.split(',') if s]
  if args.search:
    res = _search_worker(args)
    print(json.dumps(res), flush=True)
    print(f'\nsearch: {res["candidate_s_median"]:.2f} s per candidate (re-calibration {res["calibration_s_median"]:.2f}'
          f' s on {res["calib_images"]} images + test path and AP {res["eval_s_median"]:.2f} s on {res["images"]} '
          f'images, {args.size} px); the authors\' cost model for the same work: decoder alone '
          f'{res["authors_decoder_only_s"][0]}-{res["authors_decoder_only_s"][1]} s '
          f'({res["speedup_vs_authors_decoder_only"][0]}-{res["speedup_vs_authors_decoder_only"][1]}x ours), '
          f'whole XS test path {res["authors_test_path_s"][0]}-{res["authors_test_path_s"][1]} s')
    return
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
