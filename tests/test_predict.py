"""predict.py and evaluate.py end to end on the real sample images (authors' XS reference weights).

predict.py runs the JAX checkpoint (converted on the fly) and an exported TFLite file; the TFLite run must
give the JAX run's people (the export tests check both against the authors' PyTorch outputs).
evaluate.py runs the coco_json eval split of the two sample images; its metrics are checked against
pycocotools on the results it writes.
"""

import json
import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest

from litepose_jax import checkpoint, convert, evaluation, models
from litepose_jax.export import __main__ as export_cli

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(script, args, cwd):
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(REPO / '.cache' / 'jax'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0.5', CUDA_VISIBLE_DEVICES='',
             PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run([sys.executable, str(REPO / script)] + args, cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='module')
def jax_predictions(reference_dir, data_dir, tmp_path_factory):
  """predict.py with the authors' weights on the sample folder (batch 1: the compiled path of the
  inference tests, from the persistent cache)."""
  out = tmp_path_factory.mktemp('predict') / 'jax'
  proc = _run('predict.py', [f'--ckpt={reference_dir / "litepose_xs_reference.npz"}', '--arch=xs',
                             '--keypoints=crowdpose', f'--input={data_dir / "crowdpose_sample"}',
                             f'--output={out}', '--batch_size=1', '--json_all_people'], out.parent)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'images/s' in proc.stdout
  return out


def _by_image(out):
  results = json.loads((out / 'predictions.json').read_text())
  people = {}
  for r in results:
    people.setdefault(r['image_id'], []).append(r)
  return people


def test_predict_on_sample_images(jax_predictions, data_dir):
  src = data_dir / 'crowdpose_sample'
  sizes = {}
  for name in ('103319', '106848'):
    image = cv2.imread(str(src / f'{name}.jpg'))
    drawn = cv2.imread(str(jax_predictions / f'{name}_pose.jpg'))
    assert drawn is not None and drawn.shape == image.shape
    sizes[int(name)] = image.shape[:2]
  people = _by_image(jax_predictions)
  assert set(people) == set(sizes)
  for image_id, rs in people.items():
    assert len(rs) == 30  # random weights: every slot holds a person
    for r in rs:
      assert r['category_id'] == 1 and len(r['keypoints']) == 14 * 3 and r['file_name'].endswith('.jpg')
      h, w = sizes[image_id]
      xs, ys, vs = r['keypoints'][0::3], r['keypoints'][1::3], r['keypoints'][2::3]
      assert all(0 <= x <= w - 1 for x in xs) and all(0 <= y <= h - 1 for y in ys)
      assert all(v >= 0 for v in vs) and r['score'] >= 0


def test_predict_with_an_exported_tflite_file(jax_predictions, reference_dir, data_dir, tmp_path):
  """--model: a network-only XS file exported at 1x256x384 (103319's input; LiteRT resizes it for
  106848's 256x448) gives the people of the JAX run."""
  variables = convert.torch_to_flax(
      convert.load_state_dict(reference_dir / 'litepose_xs_reference.npz'), 'xs', 14)
  ckpt = checkpoint.save_model(tmp_path / 'ckpt', variables, checkpoint.model_meta(models.ARCHS['xs'], 14))
  model_file = tmp_path / 'xs.tflite'
  assert export_cli.main([f'--ckpt={ckpt}', '--input_shape=256x384', f'--out={model_file}',
                          '--noverify']) == 0
  out = tmp_path / 'tflite'
  proc = _run('predict.py', [f'--model={model_file}', f'--input={data_dir / "crowdpose_sample"}',
                             f'--output={out}', '--json_all_people'], tmp_path)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert (out / '103319_pose.jpg').is_file() and (out / '106848_pose.jpg').is_file()
  want, got = _by_image(jax_predictions), _by_image(out)
  assert set(got) == set(want)
  for image_id in want:
    a = np.array([r['keypoints'] for r in want[image_id]]).reshape(-1, 14, 3)
    b = np.array([r['keypoints'] for r in got[image_id]]).reshape(-1, 14, 3)
    assert a.shape == b.shape
    np.testing.assert_allclose([r['score'] for r in got[image_id]], [r['score'] for r in want[image_id]],
                               atol=1e-4)
    # Random weights give noise-like maps: a joint may move by one quarter-offset step on float-level
    # differences between LiteRT and XLA (see docs/export.md).
    err = np.abs(a[..., :2] - b[..., :2]).max(-1)
    assert np.mean(err <= 1e-2) >= 0.99 and err.max() <= 1.0, (image_id, err.max())


def test_predict_reports_a_missing_input(reference_dir, tmp_path):
  proc = _run('predict.py', [f'--ckpt={reference_dir / "litepose_xs_reference.npz"}', '--input=no_such_dir',
                             f'--output={tmp_path}'], tmp_path)
  assert proc.returncode == 1
  assert 'no_such_dir does not exist' in proc.stderr


def test_evaluate_end_to_end(reference_dir, data_dir, tmp_path):
  """The README command on the sample split, with the authors' weights converted on the fly."""
  ann_file = data_dir / 'crowdpose_sample' / 'test_crowdpose.json'
  work = tmp_path / 'eval'
  proc = _run('evaluate.py', [f'--config={REPO / "configs/litepose_xs.py"}',
                              f'--ckpt={reference_dir / "litepose_xs_reference.npz"}',
                              '--config.dataset.name=coco_json', f'--config.dataset.ann_file={ann_file}',
                              f'--config.dataset.image_dir={data_dir / "crowdpose_sample"}',
                              '--config.eval.batch_size=1', f'--workdir={work}'], tmp_path)
  assert proc.returncode == 0, proc.stderr[-2000:]
  names = evaluation.protocol.CROWDPOSE.metric_names()
  assert ' '.join(names) in ' '.join(proc.stdout.split())  # the table header
  metrics = json.loads((work / 'metrics.json').read_text())
  results = json.loads((work / 'results.json').read_text())
  assert list(metrics) == names and len(results) == 60
  assert {r['image_id'] for r in results} == {103319, 106848}
  assert metrics == pytest.approx(evaluation.evaluate(ann_file, results, 'crowdpose', backend='pycocotools'))
  pngs = sorted((work / 'worst_images').glob('*.png'))
  assert len(pngs) == 2 and all(cv2.imread(str(p)).shape[0] == 2 * 256 + 24 for p in pngs)


def test_evaluate_reports_missing_annotations(reference_dir, tmp_path):
  proc = _run('evaluate.py', [f'--config={REPO / "configs/litepose_xs.py"}',
                              f'--ckpt={reference_dir / "litepose_xs_reference.npz"}', f'--workdir={tmp_path}',
                              f'--config.dataset.data_dir={tmp_path}'], tmp_path)
  assert proc.returncode == 1
  assert 'crowdpose_test.json' in proc.stderr and '--config.dataset.ann_file' in proc.stderr
