"""Multi-process training and evaluation, for real: 2 CPU processes (1 device each) joined by
jax.distributed with gloo collectives, started by litepose_jax.launch, on configs/tiny.py.

One chain of runs shares the launches (each 2-process launch costs ~20-40 s here, most of it start-up and
compilation, served from the compilation cache after the first run):

  single   1 process, steps 0 → 8, evaluation at the end                       (the reference)
  L1       2 processes, fresh; SIGTERM to process 1 only while batch 2 is read  → both save step s, exit 0
  R2       1 process resumes the 2-process checkpoint, s → 6                    (elastic 2 → 1)
  L3       2 processes resume the 1-process checkpoint, 6 → 8, evaluation      (elastic 1 → 2, resume on 2)

and the chain must equal `single`: the same loss at every step, the same parameters at step 8 (1e-5), the
union of the processes' samples at every step is the 1-process batch, and the evaluation at the end (each
process decodes its share, predictions gathered) gives the same results and AP. Adam eps=1e-3 as in
test_sharding (why: its docstring).
"""

import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from litepose_jax import launch

REPO = pathlib.Path(__file__).resolve().parents[2]
STEPS = 8
COMMON = ['--every=2', '--keep=10', '--eps=1e-3']


def _env() -> dict:
  env = dict(os.environ, CUDA_VISIBLE_DEVICES='', JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2',
             JAX_COMPILATION_CACHE_DIR=str(REPO / '.cache' / 'jax'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0.5', JAX_DISABLE_MOST_OPTIMIZATIONS='1')
  env.pop('XLA_FLAGS', None)
  for key in ('LITEPOSE_COORDINATOR', 'LITEPOSE_NUM_PROCESSES', 'LITEPOSE_PROCESS_ID'):
    env.pop(key, None)
  return env


def _single(args, timeout=300) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', 'tests.train.support', *COMMON, *args], cwd=REPO, env=_env(),
                        capture_output=True, text=True, timeout=timeout)


def _launch(args, timeout=300) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', 'litepose_jax.launch', '--num_processes=2',
                         '-m', 'tests.train.support', *COMMON, *args], cwd=REPO, env=_env(),
                        capture_output=True, text=True, timeout=timeout)


def _results(output: str) -> dict:
  """{process: RESULT dict} from (launcher-prefixed) output."""
  out = {}
  for line in output.splitlines():
    if 'RESULT ' in line:
      r = json.loads(line.split('RESULT ', 1)[1])
      out[r['process']] = r
  return out


def _records(path) -> dict:
  """{step: {process: sample ids}}."""
  out = {}
  for line in pathlib.Path(path).read_text().splitlines():
    r = json.loads(line)
    out.setdefault(r['step'], {})[r['process']] = r['ids']
  return out


@pytest.fixture(scope='module')
def chain(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('multiprocess')
  single, multi, data = tmp / 'single', tmp / 'multi', tmp / 'data'
  times = {}
  t = time.perf_counter()
  ref = _single([f'--workdir={single}', f'--steps={STEPS}', f'--record={tmp / "single.rec"}',
                 f'--eval_data={data}'])
  assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
  times['single'] = time.perf_counter() - t
  t = time.perf_counter()
  l1 = _launch([f'--workdir={multi}', f'--steps={STEPS}', f'--record={tmp / "multi.rec"}', '--signal_at=2',
                '--signal_process=1', '--signal=TERM'])
  times['L1'] = time.perf_counter() - t
  assert l1.returncode == 0, l1.stdout[-5000:]
  saved_after_term = _results(l1.stdout)
  t = time.perf_counter()
  preempted_steps = sorted(int(p.name) for p in (multi / 'checkpoints').iterdir() if p.name.isdigit())
  r2 = _single([f'--workdir={multi}', '--steps=6', f'--record={tmp / "multi.rec"}'])
  times['R2'] = time.perf_counter() - t
  assert r2.returncode == 0, r2.stdout[-3000:] + r2.stderr[-3000:]
  t = time.perf_counter()
  l3 = _launch([f'--workdir={multi}', f'--steps={STEPS}', f'--record={tmp / "multi.rec"}',
                f'--eval_data={data}'])
  times['L3'] = time.perf_counter() - t
  assert l3.returncode == 0, l3.stdout[-5000:]
  print('chain timings (s):', {k: round(v, 1) for k, v in times.items()})
  return {'single': single, 'multi': multi, 'tmp': tmp, 'l1': l1.stdout, 'l3': l3.stdout, 'r2': r2,
          'saved_after_term': saved_after_term, 'preempted_steps': preempted_steps}


def test_sigterm_to_one_process_saves_the_same_step_on_all(chain):
  results = chain['saved_after_term']
  print('after SIGTERM to process 1:', results, 'checkpoints', chain['preempted_steps'])
  assert set(results) == {0, 1}
  assert results[0] == dict(results[1], process=0)           # same step, both preempted
  stop = results[0]['step']
  assert results[0]['preempted'] and 2 < stop < STEPS
  assert chain['preempted_steps'][-1] == stop                  # the checkpoint of that step, written once
  assert 'launching 2 processes' in chain['l1'] and '[1] ' in chain['l1'] and '[0] ' in chain['l1']


def test_two_processes_elastic_resume_equal_one_process(chain):
  import jax  # pylint: disable=g-import-not-at-top
  from litepose_jax import checkpoint  # pylint: disable=g-import-not-at-top
  single, multi = chain['single'], chain['multi']

  def losses(wd):
    rows = [json.loads(l) for l in (wd / 'metrics.jsonl').read_text().splitlines()]
    return [(r['step'], r['train/loss']) for r in rows if 'train/loss' in r]

  ref, got = losses(single), losses(multi)
  # Written once per step (process 0 only): a second writer would duplicate rows.
  assert [s for s, _ in got] == list(range(1, STEPS + 1)) == [s for s, _ in ref]
  loss_diff = max(abs(a - b) / abs(a) for (_, a), (_, b) in zip(ref, got))
  def diff(step, key):
    a = checkpoint.load_model(single, step=step).variables[key]
    b = checkpoint.load_model(multi, step=step).variables[key]
    return max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

  # Step 2: written by the 2-process run alone; step 8: after the whole chain (2 → 1 → 2 processes).
  p2, p8, s8 = diff(2, 'params'), diff(STEPS, 'params'), diff(STEPS, 'batch_stats')
  change = max(float(np.max(np.abs(x - y))) for x, y in zip(
      jax.tree.leaves(checkpoint.load_model(single, step=2).variables['params']),
      jax.tree.leaves(checkpoint.load_model(single, step=STEPS).variables['params'])))
  print(f'2-process chain vs 1 process: max relative loss diff {loss_diff:.2e} (8 steps); max |param diff| '
        f'{p2:.2e} at step 2 (2 processes), {p8:.2e} at step {STEPS} (chain), BN statistics {s8:.2e} '
        f'(params moved {change:.2e} from step 2 to {STEPS})')
  assert change > 1e-3
  # Float32 reduction order differs (gloo all-reduce vs one device's sum) and Adam amplifies it a little
  # every step (module doc): 1e-5 for the 2 steps of test_sharding. After 8 steps the amplified noise
  # varies by machine (1.4e-5 here, 7.1e-5 on CI), so the bound is relative to how far training moved the
  # parameters: a skipped, repeated or wrong batch moves them by about change / 6 (one of 6 steps), 16x
  # more than this bound.
  assert loss_diff <= 1e-5 and p2 <= 1e-5 and s8 <= 1e-5 and p8 <= 1e-2 * change
  # Samples: every step's union over processes is the 1-process batch, none read twice, none dropped.
  one, two = _records(chain['tmp'] / 'single.rec'), _records(chain['tmp'] / 'multi.rec')
  stop = chain['saved_after_term'][0]['step']
  for step in range(STEPS):
    want = one[step][0]
    parts = two[step]
    expect_processes = {0} if stop <= step < 6 else {0, 1}
    assert set(parts) == expect_processes, (step, parts)
    union = sum((parts[p] for p in sorted(parts)), [])
    assert union == want and len(set(union)) == len(union), (step, parts, want)
  # TensorBoard events: one file per run (L1, R2, L3), none from process 1.
  assert len(list(multi.glob('events.out.tfevents.*'))) == 3


def test_evaluation_during_training_on_two_processes_equals_one(chain):
  step = STEPS
  one, two = chain['single'] / f'eval_{step}', chain['multi'] / f'eval_{step}'
  m1, m2 = (json.loads((d / 'metrics.json').read_text()) for d in (one, two))
  r1, r2 = (json.loads((d / 'results.json').read_text()) for d in (one, two))
  print(f'eval at step {step}: AP 1 process {m1["AP"]:.6f}, 2 processes {m2["AP"]:.6f}; '
        f'{len(r2)} results')
  assert len(r1) == len(r2) and {r['image_id'] for r in r2} == {r['image_id'] for r in r1}
  for x, y in zip(r1, r2):
    assert x['image_id'] == y['image_id']
    np.testing.assert_allclose(x['keypoints'], y['keypoints'], atol=1e-3)
    assert x['score'] == pytest.approx(y['score'], abs=1e-5)
  assert m2 == pytest.approx(m1, abs=1e-6)
  assert len(list((two / 'worst_images').glob('*.png'))) == len(list((one / 'worst_images').glob('*.png')))


def test_dead_peer_ends_the_other_process_quickly(tmp_path):
  """SIGKILL to process 1 mid-training: process 0 must stop by itself with a clear error (no launcher
  ending it): its next collective fails ('Connection closed by peer') and runtime.abort_job exits 1.
  A peer that hangs instead of dying, or a survivor waiting on the coordination service, is ended by the
  heartbeat timeout (5 s here, 100 s by default: LITEPOSE_HEARTBEAT_TIMEOUT / launch --heartbeat_timeout)."""
  env = _env()
  port = launch.free_port()
  cmd = [sys.executable, '-u', '-m', 'tests.train.support', *COMMON, f'--workdir={tmp_path}', '--steps=40',
         '--signal_at=2', '--signal_process=1', '--signal=KILL']
  procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=launch.process_env(i, 2, port, heartbeat_timeout=5, base=env))
           for i in (0, 1)]
  try:
    procs[1].wait(timeout=300)
    died = time.perf_counter()
    procs[0].wait(timeout=120)
    seconds = time.perf_counter() - died
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  out = procs[0].stdout.read()
  print(f'process 1 killed (status {procs[1].returncode}); process 0 exited {seconds:.1f} s later with '
        f'status {procs[0].returncode}: {[l for l in out.splitlines() if l.startswith("error:")]}')
  assert procs[1].returncode == -9
  # Either its next collective fails at once (runtime.abort_job: status 1), or, when it was waiting on
  # the coordination service (e.g. orbax's save barrier), JAX ends it after the heartbeat timeout (SIGABRT).
  assert procs[0].returncode in (1, -6), out[-3000:]
  assert ('error: process 0 of 2: stopping the job' in out or
          'another task died' in out), out[-3000:]
  assert seconds < 5 + 15


def test_launcher_ends_the_others_and_prefixes_output():
  code = ('import os, sys, time; i = int(os.environ["LITEPOSE_PROCESS_ID"]); '
          'print("id", i, os.environ["LITEPOSE_NUM_PROCESSES"], os.environ["LITEPOSE_CPU_COLLECTIVES"], '
          'flush=True); time.sleep(60 if i == 0 else 0.5); sys.exit(3)')
  out = io.StringIO()
  t = time.perf_counter()
  status = launch.run([sys.executable, '-c', code], 2, grace=5, out=out)
  seconds = time.perf_counter() - t
  text = out.getvalue()
  assert status == 3 and seconds < 20, (status, seconds, text)
  assert text.startswith('launching 2 processes')
  assert '[0] id 0 2 gloo' in text and '[1] id 1 2 gloo' in text
  assert 'launch: process 1 exited with status 3; ending the others' in text


def test_evaluation_on_two_processes_equals_one_at_a_nontrivial_ap(data_dir):
  """eval_lib.run on 2 processes (each decodes its slice of every global batch of 2 images, predictions and
  worst images gathered) equals 1 process, at an AP strictly between 0 and 1: the perfect network of
  tests/eval_support.py with one person misplaced (the training chain above compares AP ~0 only, but on
  batches that both processes share)."""
  from litepose_jax import eval_lib, evaluation  # pylint: disable=g-import-not-at-top,g-multiple-import
  from tests import eval_support  # pylint: disable=g-import-not-at-top
  config = eval_support.sample_config(data_dir, batch_size=2)
  evaluator = evaluation.KeypointEvaluator(config.dataset.ann_file, eval_support.KS)
  one = eval_lib.run(eval_support.PerfectNetwork(config.dataset.ann_file, shift=eval_support.SHIFTED),
                     eval_lib.eval_batches(config, 256), evaluator, num_worst=2, progress=False)
  run = subprocess.run([sys.executable, '-m', 'litepose_jax.launch', '--num_processes=2', '-m',
                        'tests.eval_support', f'--data_dir={data_dir}', '--batch_size=2', '--shift'],
                       cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
  two = _results(run.stdout + run.stderr)
  assert sorted(two) == [0, 1]
  print(f'AP 1 process {one.metrics["AP"]:.6f}, 2 processes {two[0]["metrics"]["AP"]:.6f} / '
        f'{two[1]["metrics"]["AP"]:.6f}')
  assert 0.2 < one.metrics['AP'] < 0.95
  # The two sample images have different input shapes, so each global batch holds one of them (padded):
  # process 0 decodes both, process 1 padding only; the training chain above splits equal-shape batches.
  assert sorted(two[0]['local_images'] + two[1]['local_images']) == [103319, 106848]
  for p in (0, 1):
    assert two[p]['images'] == 2
    assert two[p]['metrics'] == pytest.approx(one.metrics, abs=1e-9)
    assert two[p]['worst'] == [int(w.image_id) for w in one.worst] == [106848, 103319]
    r1 = sorted(evaluator.results(), key=lambda r: (r['image_id'], -r['score']))
    r2 = sorted(two[p]['results'], key=lambda r: (r['image_id'], -r['score']))
    assert [r['image_id'] for r in r1] == [r['image_id'] for r in r2]
    np.testing.assert_allclose([r['keypoints'] for r in r2], [r['keypoints'] for r in r1], atol=1e-4)


def test_evaluate_py_on_two_processes_equals_one(chain):
  """evaluate.py (the entry point) on the chain's 1-process checkpoint, started as 1 process and as 2 by the
  launcher: the same results and metrics, equal to the evaluation the training run made at its end."""
  data, out = chain['tmp'] / 'data', chain['tmp'] / 'evaluate_py'
  flags = [f'--config={REPO / "configs" / "tiny.py"}', f'--ckpt={chain["single"]}',
           f'--config.dataset.data_dir={data}', '--config.dataset.synthetic_val_images=2',
           '--config.eval.batch_size=2', '--config.input.tf_threads=1']
  one = subprocess.run([sys.executable, 'evaluate.py', *flags, f'--workdir={out / "one"}'], cwd=REPO,
                       env=_env(), capture_output=True, text=True, timeout=300)
  assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
  two = subprocess.run([sys.executable, '-m', 'litepose_jax.launch', '--num_processes=2', 'evaluate.py', *flags,
                        f'--workdir={out / "two"}'], cwd=REPO, env=_env(), capture_output=True, text=True,
                       timeout=300)
  assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
  assert 'launching 2 processes' in two.stdout + two.stderr
  m1, m2, train_eval = (json.loads((d / 'metrics.json').read_text())
                        for d in (out / 'one', out / 'two', chain['single'] / f'eval_{STEPS}'))
  r1, r2 = (json.loads((d / 'results.json').read_text()) for d in (out / 'one', out / 'two'))
  print(f'evaluate.py: AP 1 process {m1["AP"]:.6f}, 2 processes {m2["AP"]:.6f}, training run {train_eval["AP"]:.6f}')
  assert len(r1) == len(r2) > 0 and [r['image_id'] for r in r1] == [r['image_id'] for r in r2]
  np.testing.assert_allclose([r['keypoints'] for r in r2], [r['keypoints'] for r in r1], atol=1e-3)
  assert m2 == pytest.approx(m1, abs=1e-6)
  assert m1 == pytest.approx({k: train_eval[k] for k in m1}, abs=1e-6)
