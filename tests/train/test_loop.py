"""The training loop end to end on configs/tiny.py: metrics, EMA, preemption (SIGTERM), SIGKILL, NaN.

Every run is a subprocess of tests/train/support.py (real signals, real exit codes) sharing one
persistent compilation cache, so only the first run compiles. Run A trains 8 steps uninterrupted; B is
stopped by SIGTERM while batch 2 is handed out and C resumes it; D is SIGKILLed while batch 6 is handed out
and E resumes it; F starts from --init_from weights and meets a NaN in batch 5. C and E must end where A
ends.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from litepose_jax import checkpoint

REPO = pathlib.Path(__file__).resolve().parents[2]


def _env():
  env = dict(os.environ)
  env.update(JAX_COMPILATION_CACHE_DIR=str(REPO / '.cache' / 'jax'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0.5',
             # Unoptimised XLA compiles the tiny step 2x faster; every run uses the same setting.
             JAX_DISABLE_MOST_OPTIMIZATIONS='1', CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2')
  return env


def _start(workdir, *args):
  cmd = [sys.executable, '-m', 'tests.train.support', f'--workdir={workdir}', *args]
  return subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def _finish(proc):
  out, _ = proc.communicate(timeout=300)
  return proc.returncode, out


def _state(workdir, step):
  """The saved 'state' item of `step` as {path: array}."""
  with ocp.CheckpointManager(pathlib.Path(workdir) / 'checkpoints') as mngr:
    state = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))['state']
  return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(state)}


def _steps(workdir):
  with ocp.CheckpointManager(pathlib.Path(workdir) / 'checkpoints') as mngr:
    return sorted(mngr.all_steps())


def _records(path):
  return {r['step']: r['ids'] for r in map(json.loads, pathlib.Path(path).read_text().splitlines())}


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  d = tmp_path_factory.mktemp('train')
  common = ['--steps=8', '--ema=0.5']
  w = {name: d / name for name in 'ABDF'}
  proc_a = _start(w['A'], *common, '--every=1', '--keep=3', f'--record={d}/A.rec')
  init_dir = _init_weights(d / 'init')       # while A runs
  a = _finish(proc_a)
  assert a[0] == 0, a[1][-3000:]
  # B, D, F are independent: run them side by side (the compilation cache is warm now).
  procs = {'B': _start(w['B'], *common, '--every=4', '--signal_at=2', '--signal=TERM', f'--record={d}/B.rec'),
           'D': _start(w['D'], *common, '--every=2', '--keep=3', '--signal_at=6', '--signal=KILL',
                       f'--record={d}/D.rec'),
           'F': _start(w['F'], *common, '--every=2', '--keep=3', '--nan_at=5', f'--init_from={init_dir}')}
  out = {'A': a, **{k: _finish(p) for k, p in procs.items()}}
  out['B_steps'], out['D_steps'] = _steps(w['B']), _steps(w['D'])
  procs = {'C': _start(w['B'], *common, '--every=4', f'--record={d}/B.rec'),
           'E': _start(w['D'], *common, '--every=2', '--keep=3', f'--record={d}/D.rec')}
  out.update({k: _finish(p) for k, p in procs.items()})
  return {'dir': d, 'work': w, 'out': out}


def _tiny_model():
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from litepose_jax import from_config  # pylint: disable=g-import-not-at-top
  return from_config.create_model(tiny.get_config())


def _init_weights(directory):
  """Weights for --init_from (as the converter writes them): a random init other than the config seed's."""
  from litepose_jax import models  # pylint: disable=g-import-not-at-top
  model = _tiny_model()
  variables = jax.device_get(models.init_variables(model, jax.random.key(123)))
  checkpoint.save_model(directory, variables, checkpoint.model_meta(model.arch, 14, 'crowdpose'))
  return directory


def _assert_same_state(want, got, tol):
  assert want.keys() == got.keys()
  for k in want:
    np.testing.assert_allclose(got[k], want[k], atol=tol, rtol=0, err_msg=k)


def test_uninterrupted_run_logs_learns_and_keeps_ema(runs):
  wa = runs['work']['A']
  lines = [json.loads(l) for l in (wa / 'metrics.jsonl').read_text().splitlines()]
  assert [l['step'] for l in lines] == list(range(1, 9))
  for key in ('loss', 'heatmap_0', 'heatmap_1', 'push', 'pull', 'lr', 'grad_norm'):
    assert all(np.isfinite(l[f'train/{key}']) for l in lines), key
  # Speed excludes the first step (compilation): reported from the second log line on.
  assert 'train/images_per_s' not in lines[0]
  assert all(l['train/images_per_s'] > 0 and l['train/step_time_s'] > 0 for l in lines[1:])
  assert lines[-1]['train/loss'] < 0.8 * lines[0]['train/loss']
  assert list(wa.glob('events.out.tfevents.*'))

  s6, s7, s8 = (_state(wa, s) for s in (6, 7, 8))
  for name in s8:
    if name.startswith("['params']") or name.startswith("['batch_stats']"):
      assert not np.array_equal(s7[name], s8[name]), f'{name} did not change'
  # EMA recurrence from its definition, e_t = d·e_{t−1} + (1 − d)·p_t with d = 0.5.
  for prev, cur in ((s6, s7), (s7, s8)):
    for name in cur:
      if name.startswith("['ema_params']"):
        p = cur[name.replace("['ema_params']", "['params']", 1)]
        np.testing.assert_allclose(cur[name], 0.5 * prev[name] + 0.5 * p, rtol=1e-6, atol=1e-7)
  # The weights for evaluation are the EMA ones, and load_model reads the training checkpoint.
  loaded = checkpoint.load_model(wa)
  assert loaded.step == 8
  ema = {k.replace("['ema_params']", ''): v for k, v in s8.items() if k.startswith("['ema_params']")}
  got = {jax.tree_util.keystr(p): np.asarray(x)
         for p, x in jax.tree_util.tree_leaves_with_path(loaded.variables['params'])}
  _assert_same_state(ema, got, 0)


def test_sigterm_saves_exits_zero_and_resumes_exactly(runs):
  rc, out = runs['out']['B']
  assert rc == 0, out[-3000:]
  assert 'RESULT {"step": 3, "preempted": true,' in out
  assert runs['out']['B_steps'] == [3]       # the preemption save, not a periodic one (every 4)
  rc, out = runs['out']['C']
  assert rc == 0, out[-3000:]
  assert 'RESULT {"step": 8, "preempted": false,' in out
  _assert_same_state(_state(runs['work']['A'], 8), _state(runs['work']['B'], 8), 1e-6)
  assert _records(runs['dir'] / 'B.rec') == _records(runs['dir'] / 'A.rec')


def test_sigkill_loses_only_steps_since_last_checkpoint(runs):
  rc, out = runs['out']['D']
  assert rc == -9, out[-3000:]
  steps = runs['out']['D_steps']
  # Killed while batch 6 was handed out, after the save of step 6 had started: step 6 survives unless its
  # asynchronous write was still in flight, in which case step 4 is the latest complete one.
  assert steps[-1] in (4, 6), steps
  rc, out = runs['out']['E']
  assert rc == 0, out[-3000:]
  _assert_same_state(_state(runs['work']['A'], 8), _state(runs['work']['D'], 8), 1e-6)
  a, d = _records(runs['dir'] / 'A.rec'), _records(runs['dir'] / 'D.rec')
  assert d == a                               # resumed batches were the ones an uninterrupted run sees


def test_nan_stops_with_step_and_keeps_last_good_checkpoint(runs):
  rc, out = runs['out']['F']
  assert rc == 3, out[-3000:]
  assert 'at step 6' in out and 'last good checkpoint is step 4' in out
  wf = runs['work']['F']
  assert _steps(wf)[-1] == 4
  assert all(np.isfinite(v).all() for v in _state(wf, 4).values())


def test_init_from_starts_from_the_given_weights(runs):
  # Run F started from --init_from weights (and later met a NaN, see above).
  init = checkpoint.load_model(runs['dir'] / 'init').variables['params']
  after = _state(runs['work']['F'], 2)
  # Two Adam steps move each weight by about lr each (|m̂|/√v̂ ≤ ~1.05 since the two moments weight the
  # steps slightly differently); the config seed's random init is ~0.1-1 away.
  worst = max(float(np.max(np.abs(after["['params']" + jax.tree_util.keystr(p)] - np.asarray(x))))
              for p, x in jax.tree_util.tree_leaves_with_path(init))
  assert 1e-4 < worst <= 2.2 * 4e-3
  assert after["['step']"] == 2


def test_init_from_with_other_joints_fails_clearly(runs, tmp_path):
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from litepose_jax.train import loop  # pylint: disable=g-import-not-at-top
  from tests.train.support import SyntheticInput  # pylint: disable=g-import-not-at-top
  config = tiny.get_config('coco')                      # 17 joints; the weights have 14
  config.train.init_from = str(runs['dir'] / 'init')
  data = SyntheticInput(8, 8, 64, 17)
  with pytest.raises(ValueError, match='14 joints'):
    loop.train_and_evaluate(config, tmp_path, train_input=data.train_input())
