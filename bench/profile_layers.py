"""Where the time goes: per-layer-type profile of the jitted LitePose forward or train step on CPU.

Runs the compiled program under `jax.profiler`, sums the duration of every XLA thunk (fusion, dot,
convolution, ...) and attributes it to a layer type through the op_name metadata XLA keeps on each fused
instruction (flax module path + primitive). Backward ops (names under `transpose(`) are reported apart.

  python bench/profile_layers.py --arch xs --batch 1                  # eval forward
  python bench/profile_layers.py --arch xs --batch 8 --mode train     # value_and_grad + adam
  python bench/profile_layers.py --impl xla --top 20                  # native conv, 20 hottest thunks
  python bench/profile_layers.py --batch 2 --hw 256x448               # a test-path input (flip batch)

Numbers are ms per call (mean over --runs traced calls after warm-up); tracing adds overhead and the
machine may be shared, so compare rows within one run rather than against bench/inference.py.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import sys
import re
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
from litepose_jax import runtime
from litepose_jax import models

_INSTR = re.compile(r'^\s*(?:ROOT )?%([\w.\-]+) = ')
_CALLS = re.compile(r'(?:calls|body|to_apply)=%([\w.\-]+)')
_OPNAME = re.compile(r'op_name="([^"]*)"')
_COMP = re.compile(r'^%?([\w.\-]+) .*\{$|^ENTRY %([\w.\-]+)')


def classify(op_name: str) -> str:
  """A layer type for one XLA instruction from its op_name metadata (flax module path)."""
  bwd = 'transpose(' in op_name
  p = op_name
  if 'adam' in p or 'optax' in p or '/update' in p:
    kind = 'optimizer'
  elif '/depthwise/conv' in p or 'stem_dw/conv' in p:
    k = 3 if 'stem_dw' in p else 5 if 'final_' in p else 7
    kind = f'depthwise {k}x{k}'
  elif re.search(r'deconv_(refined|raw)\d', p):
    kind = 'deconv 4x4 s2'
  elif 'stem_conv/conv' in p:
    kind = 'stem conv 3x3'
  elif 'bhwc,cd' in p or '/pointwise' in p or '/expand/conv' in p or '/project/conv' in p:
    kind = '1x1 conv'
  elif '/bn' in p or 'deconv_bn' in p:
    kind = 'batchnorm'
  elif 'relu' in p or 'clamp' in p or 'max' in p:
    kind = 'activation'
  elif 'loss' in p or 'square' in p:
    kind = 'loss'
  elif not p:
    kind = '(no metadata)'
  else:
    kind = 'other'
  return kind + (' [bwd]' if bwd else '')


def instruction_kinds(hlo_text: str) -> dict:
  """Maps every instruction name in the optimised HLO to a layer type.

  A fusion without its own metadata is classified by the instructions of the computation it calls
  (the most specific kind wins: convolutions before BN before activations).
  """
  comp_ops = collections.defaultdict(list)  # computation → op_names inside it
  instr = {}  # instruction → (called computation, op_name)
  comp = None
  for line in hlo_text.splitlines():
    m = _COMP.match(line)
    if m:
      comp = m.group(1) or m.group(2)
      continue
    m = _INSTR.match(line)
    if m and comp:
      name = m.group(1)
      c, o = _CALLS.search(line), _OPNAME.search(line)
      calls, op = (c.group(1) if c else None), (o.group(1) if o else '')
      instr[name] = (calls, op)
      if op:
        comp_ops[comp].append(op)
  order = ['depthwise', 'deconv', 'stem conv', '1x1', 'batchnorm', 'activation', 'optimizer', 'loss',
           'other', '(no']
  kinds = {}
  for name, (calls, op) in instr.items():
    cands = [classify(o) for o in comp_ops.get(calls, [])] + [classify(op)]
    cands = [c for c in cands if not c.startswith('(no')] or ['(no metadata)']
    # Backward if any op in the fusion is a transpose: fusions mixing both are backward work.
    bwd = any(c.endswith('[bwd]') for c in cands)
    best = min(cands, key=lambda c: next(i for i, o in enumerate(order) if c.startswith(o)))
    kinds[name] = best.replace(' [bwd]', '') + (' [bwd]' if bwd else '')
  return kinds


def build(arch: str, batch: int, impl: str, mode: str, dtype: str, hw=None):
  """(compiled function, args) for the forward or the train step; hw: (H, W) input (default square)."""
  model = models.create(arch, 14, dtype=dtype, depthwise_impl=impl)
  size = model.arch.img_size
  variables = models.init_variables(model, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(size=(batch,) + tuple(hw or (size, size)) + (3,)), jnp.float32)
  if mode == 'forward':
    fn = jax.jit(lambda v, x: model.apply(v, x, train=False))
    return fn, (variables, images)
  step, state = train_step_fn(model, variables, batch, size)
  targets = tuple(jnp.asarray(rng.random(s), jnp.float32) for s in
                  ((batch, size // 4, size // 4, 14), (batch, size // 2, size // 2, 14)))
  return step, (state, images, targets)


def train_step_fn(model, variables, batch: int, size: int):
  """A representative train step: masked-MSE-like loss on both outputs (heatmap channels), train-mode
  BN with batch_stats updated, Adam. Returns (jitted step(state, images, targets), initial state)."""
  tx = optax.flatten(optax.adam(1e-3)) if os.environ.get('FLAT') else optax.adam(1e-3)
  state = {'params': variables['params'], 'batch_stats': variables['batch_stats'],
           'opt': tx.init(variables['params'])}
  k = model.num_keypoints

  def loss_fn(params, batch_stats, images, targets):
    (q, h), upd = model.apply({'params': params, 'batch_stats': batch_stats}, images, train=True,
                              mutable=['batch_stats'])
    t4, t2 = targets
    loss = jnp.mean(jnp.square(q[..., :k] - t4) * (t4 > 0.1)) + jnp.mean(jnp.square(h - t2) * (t2 > 0.1))
    loss = loss + 1e-3 * jnp.mean(jnp.square(q[..., k:]))  # stands in for the tag loss
    return loss, upd['batch_stats']

  def step(state, images, targets):
    (loss, bs), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'], state['batch_stats'],
                                                                  images, targets)
    updates, opt = tx.update(grads, state['opt'], state['params'])
    return {'params': optax.apply_updates(state['params'], updates), 'batch_stats': bs, 'opt': opt}, loss

  return jax.jit(step, donate_argnums=0), state


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--arch', default='xs')
  p.add_argument('--batch', type=int, default=1)
  p.add_argument('--impl', default='auto', choices=('auto', 'xla', 'shift', 'ffi'))
  p.add_argument('--mode', default='forward', choices=('forward', 'train'))
  p.add_argument('--dtype', default='float32')
  p.add_argument('--runs', type=int, default=5)
  p.add_argument('--top', type=int, default=10, help='also list the N most expensive thunks')
  p.add_argument('--hw', default='', help='forward input HxW, e.g. 256x448 (default: img_size square)')
  args = p.parse_args()
  runtime.tune_host()  # as evaluate.py / predict.py: before JAX's first computation
  hw = tuple(int(v) for v in args.hw.split('x')) if args.hw else None
  if hw and args.mode == 'train':
    raise SystemExit('--hw applies to --mode forward only')

  fn, fargs = build(args.arch, args.batch, args.impl, args.mode, args.dtype, hw)
  t0 = time.perf_counter()
  compiled = fn.lower(*fargs).compile()
  print(f'compile {time.perf_counter() - t0:.1f} s; load {os.getloadavg()[0]:.2f}')
  kinds = instruction_kinds(compiled.as_text())

  def call(a):
    out = compiled(*a)
    jax.block_until_ready(out)
    return out

  for _ in range(2):  # warm-up (train mode: the state is donated, so thread it through)
    out = call(fargs)
    if args.mode == 'train':
      fargs = (out[0],) + fargs[1:]
  with tempfile.TemporaryDirectory() as d:
    jax.profiler.start_trace(d, create_perfetto_trace=True)
    t0 = time.perf_counter()
    for _ in range(args.runs):
      out = call(fargs)
      if args.mode == 'train':
        fargs = (out[0],) + fargs[1:]
    wall = (time.perf_counter() - t0) / args.runs
    jax.profiler.stop_trace()
    path = glob.glob(os.path.join(d, '**', '*.trace.json.gz'), recursive=True)[0]
    events = json.load(gzip.open(path))['traceEvents']
  per_thunk = collections.Counter()
  for e in events:
    if e.get('ph') == 'X' and e.get('name') in kinds:
      per_thunk[e['name']] += e['dur'] / 1e3 / args.runs
  per_kind = collections.Counter()
  for name, ms in per_thunk.items():
    per_kind[kinds[name]] += ms
  total = sum(per_kind.values())
  print(f'{args.mode} {args.arch} batch {args.batch} impl {args.impl}: {wall * 1e3:.1f} ms per call '
        f'(traced), thunks {total:.1f} ms; load {os.getloadavg()[0]:.2f}')
  for kind, ms in per_kind.most_common():
    print(f'  {kind:<28} {ms:9.2f} ms  {100 * ms / total:5.1f}%')
  if args.top:
    print('hottest thunks:')
    for name, ms in per_thunk.most_common(args.top):
      print(f'  {name:<40} {ms:9.2f} ms  {kinds[name]}')


if __name__ == '__main__':
  main()
