"""Entry-point errors and summaries a user sees: a config typo names its own override; evaluation with
skip_bad_samples reads the file training reads and says what it skipped."""

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

from configs import common
from litepose_jax import eval_lib

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize('entry', ['train.py', 'evaluate.py'])
def test_config_typo_names_the_override_it_is_about(entry):
  # A subprocess of the real entry point: flag parsing fails before JAX or TF are imported (< 2 s).
  proc = subprocess.run([sys.executable, entry, '--config=configs/tiny.py', '--workdir=/nonexistent',
                         '--ckpt=/nonexistent', '--config.dataset.name=coco_json', '--config.optimizer.lrr=1'],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr == ("error: --config.optimizer.lrr: no such key 'lrr'. Did you mean \"lr\" instead of "
                         '"lrr"?\n')


def test_evaluation_skips_what_training_skips_and_says_so(data_dir, tmp_path, capsys):
  """A json with a bad keypoint count: the eval ground truth and the eval input leave out the same image
  (skip_bad_samples), and the eval input prints the summary line train.py prints."""
  for name in ('103319.jpg', '106848.jpg'):
    shutil.copy(data_dir / 'crowdpose_sample' / name, tmp_path / name)
  data = json.loads((data_dir / 'crowdpose_sample/test_crowdpose.json').read_text())
  bad = data['annotations'][2]
  bad['keypoints'] = bad['keypoints'][:-3]
  ann = tmp_path / 'ann.json'
  ann.write_text(json.dumps(data))
  config = common.get_config('xs', 'crowdpose')
  config.dataset.name = 'coco_json'
  config.dataset.ann_file, config.dataset.image_dir = str(ann), str(tmp_path)
  config.eval.batch_size = 2
  config.input.tf_threads = 1
  with pytest.raises(ValueError, match=f"annotation id {bad['id']} .* has 39 keypoint values"):
    eval_lib.ground_truth(config)
  config.dataset.skip_bad_samples = True
  gt = eval_lib.ground_truth(config)
  assert gt.image_ids.tolist() == [103319] and gt.summary.skipped == {'wrong keypoint count': 1}
  ids = [int(i) for b in eval_lib.eval_batches(config, 256) for i, m in zip(b['image_id'], b['_mask']) if m]
  assert ids == gt.image_ids.tolist()
  assert ('litepose_jax.data: coco_json eval: 1 images, 2 persons; skipped 1 bad images (wrong keypoint '
          'count: 1)') in capsys.readouterr().out


@pytest.mark.parametrize('damage', ['truncated', 'smaller than a batch'])
def test_training_on_bad_data_names_the_file_and_writes_nothing(data_dir, tmp_path, damage):
  ann = tmp_path / 'ann.json'
  text = (data_dir / 'crowdpose_sample/test_crowdpose.json').read_text()
  ann.write_text(text[:len(text) // 2] if damage == 'truncated' else text)
  config = common.get_config('xs', 'crowdpose')
  config.dataset.name = 'coco_json'
  config.dataset.ann_file, config.dataset.image_dir = str(ann), str(data_dir / 'crowdpose_sample')
  config.input.batch_size = 1 if damage == 'truncated' else 4
  want = {'truncated': 'malformed JSON at line 1',
          'smaller than a batch': r'2 training images, fewer than one global batch \(input.batch_size=4\)'}
  from litepose_jax.train import loop  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=f'^{ann}: {want[damage]}'):
    loop.train_and_evaluate(config, tmp_path / 'workdir')
  assert not (tmp_path / 'workdir').exists()
