"""Where a TFLite file's time goes under XNNPACK: each layer form timed alone, as a one-op-kind .tflite file.

LiteRT's Python interpreter has no per-op profiler, so this times sub-graphs instead: for one layer shape
(default: XS stage 1, 64×64×96, the most expensive 7x7 layers) it converts small JAX functions (each the
same op repeated `--reps` times, so that the call overhead is shared) and runs them alternately in one
process with 2 threads (`--threads`), the XNNPACK delegate on, as bench/cpu_runtimes.py runs our file:

  dw 7x7 one op    the depthwise 7x7 as one DEPTHWISE_CONV_2D (the 'xla' form)
  dw 7x7 parity cut   the 'tflite' export form (models/depthwise.py): even rows × 7 columns (21 taps) + odd
                   rows × columns −2..2 (20) + odd rows × columns ±3 (8), summed by 2 ADDs
  dw 7x7 ring cut  the earlier form: centre 5x5 + [2,7] (row dilation 6) + [5,2] (column dilation 6)
  dw 5x5, dw 3x3, pieces ...   single DEPTHWISE_CONV_2D ops by tap count (XNNPACK runs kernels of up to 9 and
                   up to 25 taps in one pass; a piece of 10-25 taps costs about a 5x5)
  add              one ADD (fused ReLU) of two such tensors: a memory pass, what each extra piece also costs
  conv 1x1         CONV_2D, C → C/6 (the project conv's shape at this stage)
  deconv           TRANSPOSE_CONV k4 s2 (the head's form) vs its sub-pixel form (2x2 window CONV_2D to 4 phases,
                   then RESHAPE/TRANSPOSE interleave), at `--deconv` shape (default XS deconv 2:
                   64×64×24 → 24)
  ... builtin      the one-op 7x7 and the TRANSPOSE_CONV on LiteRT's builtin kernels (no XNNPACK)

  python bench/tflite_ops.py                       # XS stage 1
  python bench/tflite_ops.py --hw 16 --c 288       # XS stage 3
  python bench/tflite_ops.py --batch 8

Reported: median ms per op (the repeated op's median call time / reps) and the 1-minute load average.
The machine is shared: compare rows of one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import jax
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
from litepose_jax.export import runner
from litepose_jax.export import tflite
from litepose_jax.models import depthwise
from litepose_jax.models import layers


def _repeat(f, reps):
  def g(x):
    for _ in range(reps):
      x = f(x)
    return {'y': x}
  return g


def ring_cut(x, k7):
  """The 7x7 as centre 5x5 + rows ±3 ([2,7], row dilation 6) + columns ±3 of rows −2..2 ([5,2])."""
  rows = np.stack([k7[0], k7[6]])
  cols = np.stack([k7[1:6, 0], k7[1:6, 6]], axis=1)
  piece = depthwise._native_piece  # pylint: disable=protected-access
  return piece(x, k7[1:6, 1:6], 1, (1, 1)) + piece(x, rows, 1, (6, 1)) + piece(x, cols, 1, (1, 6))


def forms(shape, rng) -> dict:
  """{name: function of x `shape` [B,H,W,C] → same shape}: the depthwise, add and 1x1 forms."""
  c = shape[-1]
  k7 = (rng.standard_normal((7, 7, c)) * 0.1).astype(np.float32)

  def piece(h, w, dil):
    k = (rng.standard_normal((h, w, c)) * 0.1).astype(np.float32)
    return lambda x: depthwise._native_piece(x, k, 1, dil)  # pylint: disable=protected-access

  w_in = (rng.standard_normal((1, 1, c, c // 6)) * 0.1).astype(np.float32)
  w_out = (rng.standard_normal((1, 1, c // 6, c)) * 0.1).astype(np.float32)
  other = rng.standard_normal(shape).astype(np.float32)
  conv = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                               dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return {
      'dw 7x7 one op': lambda x: depthwise.depthwise_conv_xla(x, k7),
      'dw 7x7 parity cut': lambda x: depthwise.depthwise_conv_rings(x, k7),
      'dw 7x7 ring cut': lambda x: ring_cut(x, k7),
      'dw 5x5 (25 taps)': piece(5, 5, (1, 1)),
      'dw 3x3 (9 taps)': piece(3, 3, (1, 1)),
      'piece [2,7] dil 6 (14)': piece(2, 7, (6, 1)),
      'piece [5,2] dil 6 (10)': piece(5, 2, (1, 6)),
      'piece [7,1] (7)': piece(7, 1, (1, 1)),
      # The ReLU keeps the converter from merging the repeated adds into one.
      'add (two tensors)': lambda x: jax.nn.relu(x + other),
      'conv 1x1 C→C/6→C': lambda x: conv(conv(x, w_in), w_out),
  }


def deconv_forms(cin: int, cout: int, rng) -> dict:
  k = (rng.standard_normal((4, 4, cin, cout)) * 0.1).astype(np.float32)
  return {'deconv TRANSPOSE_CONV': lambda x: layers.deconv_2x_xla(x, k),
          'deconv sub-pixel 2x2 window conv': lambda x: layers.deconv_2x_window(x, k)}


def time_files(files: dict, x_of: dict, rounds: int, runs: int, threads: int, builtin=()) -> dict:
  nets = {n: runner.TFLiteModel(d, num_threads=threads, xnnpack=n not in builtin) for n, d in files.items()}
  for n, net in nets.items():
    for _ in range(2):
      net(x_of[n])
  times = {n: [] for n in nets}
  names = list(nets)
  for k in range(rounds):
    # Rotated order: a form does not always follow the same one (the threads of the previous form's
    # interpreter spin for a while after its calls).
    for n in names[k % len(names):] + names[:k % len(names)]:
      net = nets[n]
      for _ in range(runs):
        t = time.perf_counter()
        net(x_of[n])
        times[n].append(1e3 * (time.perf_counter() - t))
  return {n: statistics.median(t) for n, t in times.items()}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--hw', type=int, default=64)
  p.add_argument('--c', type=int, default=96)
  p.add_argument('--deconv', default='64x24x24', help='H x Cin x Cout of the transposed conv')
  p.add_argument('--batch', type=int, default=1)
  p.add_argument('--reps', type=int, default=4)
  p.add_argument('--rounds', type=int, default=8)
  p.add_argument('--runs', type=int, default=5)
  p.add_argument('--threads', type=int, default=2)
  args = p.parse_args(argv)
  rng = np.random.default_rng(0)
  b, hw, c = args.batch, args.hw, args.c
  files, x_of, reps = {}, {}, {}
  for name, f in forms((b, hw, hw, c), rng).items():
    files[name] = tflite.to_tflite(_repeat(f, args.reps), (b, hw, hw, c))
    x_of[name], reps[name] = rng.standard_normal((b, hw, hw, c)).astype(np.float32), args.reps
  dh, dcin, dcout = (int(v) for v in args.deconv.split('x'))
  for name, f in deconv_forms(dcin, dcout, rng).items():
    files[name] = tflite.to_tflite(lambda x, f=f: {'y': f(x)}, (b, dh, dh, dcin))
    x_of[name], reps[name] = rng.standard_normal((b, dh, dh, dcin)).astype(np.float32), 1
  builtin = {'dw 7x7 builtin kernel': 'dw 7x7 one op', 'deconv builtin kernel': 'deconv TRANSPOSE_CONV'}
  for name, of in builtin.items():  # the same files, run without the XNNPACK delegate
    files[name], x_of[name], reps[name] = files[of], x_of[of], reps[of]
  load_before = os.getloadavg()[0]
  med = time_files(files, x_of, args.rounds, args.runs, args.threads, builtin=tuple(builtin))
  print(f'# batch {b}, {hw}x{hw}x{c} (deconv {dh}x{dh}x{dcin} -> {dcout}), {args.threads} threads; '
        f'load {load_before:.2f} / {os.getloadavg()[0]:.2f}')
  print('| form | ops in file | ms per op |')
  print('|---|---|---|')
  for name, ms in med.items():
    ops = ', '.join(f'{k} {v}' for k, v in sorted(tflite.op_counts(files[name]).items()))
    print(f'| {name} | {ops} | {ms / reps[name]:.3f} |')
  return 0


if __name__ == '__main__':
  sys.exit(main())
