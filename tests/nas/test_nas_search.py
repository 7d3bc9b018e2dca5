"""The search and transfer on a real supernet checkpoint (the authors' fixture weights, K=14).

A tiny search through the command line (configs/search_tiny.py, 64-px scoring, 4 held-out images):
outputs, the resume after a simulated kill (counts evaluations; re-scored candidates must reproduce the
killed run's AP exactly: same seed → same candidates and best), the one-line infeasible-budget error.
Transfer: the saved checkpoint loads with checkpoint.load_model and reproduces the supernet with that
subnet after the same re-calibration.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from litepose_jax import checkpoint, models, nas
from litepose_jax.nas import transfer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAGS = ['--config=configs/search_tiny.py', '--macs=2G', '--population=2', '--iterations=1',
         '--max_images=2', '--calib_batches=1', '--resolutions=256', '--downscale=4', '--seed=3',
         '--noprogress']


def _cli(module, *args):
  env = dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=600)


@pytest.fixture(scope='module')
def supernet_dir(tmp_path_factory, supernet_vars):
  """The fixture supernet saved as a model checkpoint whose meta has no 'kind' (tolerated)."""
  d = tmp_path_factory.mktemp('supernet') / 'ckpt'
  arch = models.Arch.from_json(nas.LARGEST.to_arch_json(), name='supernet')
  checkpoint.save_model(d, supernet_vars, checkpoint.model_meta(arch, 14, 'crowdpose'))
  return d


def _records(workdir):
  return [json.loads(line) for line in (workdir / 'candidates.jsonl').read_text().splitlines()]


def test_load_supernet(supernet_dir, supernet_vars, tmp_path):
  variables, meta = nas.load_supernet(supernet_dir)
  assert meta['step'] == 0 and 'kind' not in meta
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(supernet_vars)):
    np.testing.assert_array_equal(a, b)
  arch_json, fixed = nas.extract(supernet_vars, nas.SMALLEST)
  transfer.save(tmp_path / 'small', arch_json, fixed, 14, 'crowdpose')
  with pytest.raises(ValueError, match=r"not a supernet checkpoint \(meta kind 'transferred'\)"):
    nas.load_supernet(tmp_path / 'small')


def test_search_resumes_without_reevaluating(supernet_dir, tmp_path):
  first, resumed = tmp_path / 'first', tmp_path / 'resumed'
  out = _cli('litepose_jax.nas.search', f'--supernet={supernet_dir}', f'--workdir={first}', *FLAGS)
  assert out.returncode == 0, out.stderr[-2000:]
  summary = json.loads(out.stdout.strip().splitlines()[-1])
  records = _records(first)
  assert summary['evaluations_new'] == len(records) >= 2, records
  for name in ('best_2G.json', 'search_result.json', 'ap_vs_macs.png', 'settings.json'):
    assert (first / name).is_file(), name
  best = nas.subnet_from_arch((first / 'best_2G.json').read_text())
  assert best.genes() == summary['best']['2G'] and best.macs(14) <= 2e9
  assert all(r['macs'] <= 2e9 and r['genes']['img_size'] == 256 for r in records)
  result = json.loads((first / 'search_result.json').read_text())['budgets']['2G']
  assert result['AP'] == max(r['AP'] for r in records) == result['best_in_cache']['AP']
  # A kill after the first evaluation, in the middle of writing the second line.
  resumed.mkdir()
  (resumed / 'settings.json').write_text((first / 'settings.json').read_text())
  lines = (first / 'candidates.jsonl').read_text().splitlines()
  (resumed / 'candidates.jsonl').write_text(lines[0] + '\n' + lines[1][:40])
  out = _cli('litepose_jax.nas.search', f'--supernet={supernet_dir}', f'--workdir={resumed}', *FLAGS)
  assert out.returncode == 0, out.stderr[-2000:]
  again = json.loads(out.stdout.strip().splitlines()[-1])
  assert again['evaluations_new'] == len(records) - 1
  assert again['best'] == summary['best']
  redone = _records(resumed)
  assert [r['genes'] for r in redone] == [r['genes'] for r in records]
  assert [r['AP'] for r in redone] == [r['AP'] for r in records]


def test_infeasible_budget_is_one_line(supernet_dir, tmp_path):
  out = _cli('litepose_jax.nas.search', f'--supernet={supernet_dir}', f'--workdir={tmp_path}',
             '--config=configs/search_tiny.py', '--macs=1.2G,0.3G')
  assert out.returncode == 1
  lines = out.stderr.strip().splitlines()
  assert lines[-1].startswith('error: MACs budget 0.3G is below the smallest reachable subnet, 0.4178G')
  assert 'Traceback' not in out.stderr and not (tmp_path / 'candidates.jsonl').exists()


def test_transfer_checkpoint_reproduces_the_recalibrated_supernet(supernet_vars, supernet_ref, tmp_path):
  sub = nas.subnet_from_arch(str(supernet_ref['mixed/arch_json']))
  rng = np.random.default_rng(5)
  batches = [rng.normal(size=(b, 64, 64, 3)).astype(np.float32) for b in (2, 1, 2)]
  arch_json, fixed = transfer.transfer(supernet_vars, sub, batches)
  transfer.save(tmp_path / 'xfer', arch_json, fixed, 14, 'crowdpose', recalibrated=True)
  loaded = checkpoint.load_model(tmp_path / 'xfer', depthwise_impl='xla')
  assert loaded.meta['kind'] == 'transferred' and loaded.meta['recalibrated'] is True
  assert loaded.model.arch.to_json() == models.create(arch_json, 14).arch.to_json()   # train.init_from's check
  x = np.random.default_rng(6).normal(size=(2, 64, 96, 3)).astype(np.float32)
  got = loaded.model.apply(loaded.variables, x, train=False)
  want = nas.apply_subnet(nas.recalibrate(supernet_vars, sub, batches), sub, x, depthwise_impl='xla')
  for g, w in zip(got, want):
    # Float32 rounding only: after re-calibration on random images the outputs reach |3.3| and a one-ulp
    # change of the input (x·(1+1e-7)) alone moves them by 4e-5, i.e. 1.2e-5 of their scale.
    scale = float(np.abs(np.asarray(w)).max())
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=3e-5 * max(1.0, scale), rtol=0)
  # Without re-calibration the checkpoint keeps the supernet's statistics (the authors' transfer) and
  # differs from the re-calibrated one.
  _, plain = transfer.transfer(supernet_vars, sub, None)
  stale = loaded.model.apply(plain, x, train=False)
  assert float(np.max(np.abs(np.asarray(stale[0]) - np.asarray(got[0])))) > 1e-3
