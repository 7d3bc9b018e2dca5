"""predict.py end to end on the real sample images (authors' XS reference weights, converted on the fly)."""

import json
import os
import pathlib
import subprocess
import sys

import cv2

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(args, tmp_path):
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(REPO / '.cache' / 'jax'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0.5', CUDA_VISIBLE_DEVICES='',
             PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, str(REPO / 'predict.py')] + args, cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=600)


def test_predict_on_sample_images(reference_dir, data_dir, tmp_path):
  src = data_dir / 'crowdpose_sample'
  out = tmp_path / 'out'
  # Batch 1 and the authors' decoder: the same compiled path as test_inference (persistent cache).
  proc = _run([f'--ckpt={reference_dir / "litepose_xs_reference.npz"}', '--arch=xs', '--keypoints=crowdpose',
               f'--input={src}', f'--output={out}', '--batch_size=1'], tmp_path)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'images/s' in proc.stdout
  sizes = {}
  for name in ('103319', '106848'):
    image = cv2.imread(str(src / f'{name}.jpg'))
    drawn = cv2.imread(str(out / f'{name}_pose.jpg'))
    assert drawn is not None and drawn.shape == image.shape
    sizes[int(name)] = image.shape[:2]
  results = json.loads((out / 'predictions.json').read_text())
  assert {r['image_id'] for r in results} == set(sizes)
  for r in results:
    assert r['category_id'] == 1 and len(r['keypoints']) == 14 * 3 and r['file_name'].endswith('.jpg')
    h, w = sizes[r['image_id']]
    xs, ys, vs = r['keypoints'][0::3], r['keypoints'][1::3], r['keypoints'][2::3]
    assert all(0 <= x <= w - 1 for x in xs) and all(0 <= y <= h - 1 for y in ys)
    assert all(v >= 0 for v in vs) and r['score'] >= 0


def test_predict_reports_a_missing_input(reference_dir, tmp_path):
  proc = _run([f'--ckpt={reference_dir / "litepose_xs_reference.npz"}', '--input=no_such_dir',
               f'--output={tmp_path}'], tmp_path)
  assert proc.returncode == 1
  assert 'no_such_dir does not exist' in proc.stderr


def test_evaluate_reports_missing_annotations(reference_dir, tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES='')
  proc = subprocess.run([sys.executable, str(REPO / 'evaluate.py'), f'--config={REPO / "configs/litepose_xs.py"}',
                         f'--ckpt={reference_dir / "litepose_xs_reference.npz"}', f'--workdir={tmp_path}'],
                        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  assert '--config.dataset.ann_file' in proc.stderr
