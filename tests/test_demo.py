"""`make demo`'s entry (litepose_jax.demo) end to end on configs/tiny.py: synthetic set, training,
evaluation, drawings. The AP it prints is checked against pycocotools on the results it wrote."""

import json
import os
import pathlib
import subprocess
import sys

import cv2
import pytest

from litepose_jax import evaluation

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_demo_trains_evaluates_and_draws(tmp_path):
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(REPO / '.cache' / 'jax'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0.5', TF_CPP_MIN_LOG_LEVEL='2',
             CUDA_VISIBLE_DEVICES='')
  workdir = tmp_path / 'demo'
  cmd = [sys.executable, '-m', 'litepose_jax.demo', f'--workdir={workdir}', '--num_drawn=2',
         f'--config={REPO / "configs" / "tiny.py"}', '--config.num_train_steps=2',
         '--config.train.eval_every_epochs=0', f'--config.dataset.data_dir={tmp_path / "data"}',
         '--config.dataset.synthetic_train_images=16', '--config.dataset.synthetic_val_images=3',
         '--config.eval.batch_size=1']
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert 'LitePose demo: 2 steps' in proc.stdout
  pngs = sorted((workdir / 'predictions').glob('*.png'))
  assert [p.name for p in pngs] == ['0001.png', '0002.png']
  assert all(cv2.imread(str(p)) is not None for p in pngs)
  metrics = json.loads((workdir / 'eval_2' / 'metrics.json').read_text())
  results = json.loads((workdir / 'eval_2' / 'results.json').read_text())
  gt = next((tmp_path / 'data' / 'synthetic').glob('*-val3')) / 'val.json'
  oracle = evaluation.evaluate(str(gt), results, 'crowdpose', backend='pycocotools')
  assert metrics['AP'] == pytest.approx(oracle['AP'], abs=1e-9)
  assert f"{metrics['AP']:.4f}" in proc.stdout  # the printed table holds the AP
