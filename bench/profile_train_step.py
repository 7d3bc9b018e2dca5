"""Speed of a representative LitePose train step on the local CPU: compile time and time per step.

The step is value_and_grad of a masked-MSE-like loss on both outputs (train-mode BN, batch_stats
updated) followed by an Adam update, jitted with the state donated, the same work as the real train step
(bench/train_step.py owns the real loss). Prints compile seconds, the median and 10th percentile wall
time per step over --runs steps (warm-up excluded), the median process CPU time per step, and the load
average (the machine may be shared: compare only runs taken under similar load).

  python bench/profile_train_step.py                   # XS@256 batch 8, depthwise 'auto'
  python bench/profile_train_step.py --impl xla --runs 5

Anchor (the authors' PyTorch, this 2-core CPU): about 2.7-3.5 s per XS@256 batch-8 step.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import jax
import numpy as np

from bench.profile_layers import build


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--arch', default='xs')
  p.add_argument('--batch', type=int, default=8)
  p.add_argument('--impl', default='auto', choices=('auto', 'xla', 'shift'))
  p.add_argument('--dtype', default='float32')
  p.add_argument('--runs', type=int, default=10)
  args = p.parse_args()

  step, (state, images, targets) = build(args.arch, args.batch, args.impl, 'train', args.dtype)
  load0 = os.getloadavg()[0]
  t0 = time.perf_counter()
  compiled = step.lower(state, images, targets).compile()
  compile_s = time.perf_counter() - t0
  for _ in range(2):  # warm-up
    state, loss = compiled(state, images, targets)
    jax.block_until_ready(loss)
  walls, cpus = [], []
  for _ in range(args.runs):
    t, c = time.perf_counter(), time.process_time()
    state, loss = compiled(state, images, targets)
    jax.block_until_ready((state, loss))
    walls.append(time.perf_counter() - t)
    cpus.append(time.process_time() - c)
  print(f'train step {args.arch} batch {args.batch} impl {args.impl} {args.dtype}: compile {compile_s:.1f} s, '
        f'step median {np.median(walls):.2f} s (p10 {np.percentile(walls, 10):.2f} s, '
        f'cpu {np.median(cpus):.2f} s), {args.runs} runs, peak RSS '
        f'{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, '
        f'load {load0:.2f} → {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
  main()
