"""PoseEstimator: the two-line API on an orbax checkpoint and an authors'-layout .npz (tiny model), against
inference.Predictor on the same weights; `import litepose_jax` stays light."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import tiny
from litepose_jax import checkpoint, convert, inference, models


@pytest.fixture(scope='module')
def tiny_files(tmp_path_factory):
  model = models.create(tiny.TINY_ARCH, 14, final_init_scale=30.0)  # scaled: the maps have peaks
  variables = model.init(jax.random.PRNGKey(1), np.zeros((1, 64, 64, 3), np.float32), train=False)
  d = tmp_path_factory.mktemp('api')
  ckpt = checkpoint.save_model(d / 'ckpt', variables, checkpoint.model_meta(model.arch, 14))
  npz = d / 'tiny.npz'
  np.savez(npz, **convert.flax_to_torch(jax.tree.map(np.asarray, variables), model.arch))
  return model, variables, ckpt, npz


def test_import_is_light():
  code = 'import sys, litepose_jax; assert "jax" not in sys.modules and "tensorflow" not in sys.modules; ' \
         'print(litepose_jax.PoseEstimator.__name__, "jax" in sys.modules)'
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
  assert out.split() == ['PoseEstimator', 'False']  # api.py imports JAX on first use too


def test_two_lines_give_the_predictor_people(tiny_files, data_dir):
  from litepose_jax import PoseEstimator  # pylint: disable=g-import-not-at-top
  model, variables, ckpt, npz = tiny_files
  image = inference.read_rgb(data_dir / 'crowdpose_sample' / '103319.jpg')
  want = inference.Predictor(model, variables, checkpoint.load_model(ckpt).keypoint_set, 64).predict([image])[0]
  assert len(want.scores) > 0
  for source, kwargs in ((ckpt, {}), (npz, {'arch': json.dumps(tiny.TINY_ARCH)})):
    people = PoseEstimator.from_checkpoint(source, **kwargs)(image)
    np.testing.assert_allclose(people.keypoints, want.keypoints, atol=1e-3)
    np.testing.assert_allclose(people.scores, want.scores, atol=1e-5)
    assert people.track_ids is None
  video = PoseEstimator.from_checkpoint(ckpt, video=True)
  first, second = video(image), video(image)
  assert sorted(first.track_ids.tolist()) == list(range(len(first)))
  np.testing.assert_array_equal(first.track_ids, second.track_ids)  # same frame twice: same ids


def test_missing_file_is_a_clear_error(tmp_path):
  from litepose_jax import PoseEstimator  # pylint: disable=g-import-not-at-top
  with pytest.raises(FileNotFoundError, match='nope.pth'):
    PoseEstimator.from_checkpoint(tmp_path / 'nope.pth')
