"""checkpoint: models round-trip with their architecture and keypoint set, any of the three path forms
loads, training checkpoints keep the state, the input position and only the last N steps."""

import jax
import numpy as np
import pytest

from litepose_jax import checkpoint
from litepose_jax import models

ARCH = models.get_arch('xs')


def _variables(seed=0):
  rng = np.random.default_rng(seed)
  return {'params': {'conv': {'kernel': rng.normal(size=(3, 3, 3, 8)).astype(np.float32)}},
          'batch_stats': {'bn': {'mean': rng.normal(size=8).astype(np.float32)}}}


def _assert_tree_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_model_round_trip_from_every_path_form(tmp_path):
  variables = _variables()
  meta = checkpoint.model_meta(ARCH, 17, source='test')
  assert meta['keypoints'] == 'coco'                     # derived from the joint count
  out = checkpoint.save_model(tmp_path / 'run' / 'checkpoints', variables, meta, step=5)
  for path in (out, out / '5', tmp_path / 'run'):      # manager dir, step dir, training workdir
    loaded = checkpoint.load_model(path)
    _assert_tree_equal(loaded.variables, variables)
    assert loaded.step == 5 and loaded.meta['source'] == 'test'
    assert loaded.model.arch.to_json() == ARCH.to_json() and loaded.model.num_keypoints == 17
    assert loaded.keypoint_set.name == 'coco'


def test_latest_step_unless_one_is_asked_for(tmp_path):
  meta = checkpoint.model_meta(ARCH, 14)
  for step in (1, 3):
    checkpoint.save_model(tmp_path, _variables(step), meta, step=step)
  _assert_tree_equal(checkpoint.load_model(tmp_path).variables, _variables(3))
  _assert_tree_equal(checkpoint.load_model(tmp_path, step=1).variables, _variables(1))


def test_missing_checkpoints_name_the_path(tmp_path):
  with pytest.raises(FileNotFoundError, match='does not exist'):
    checkpoint.load_model(tmp_path / 'nowhere')
  (tmp_path / 'empty').mkdir()
  with pytest.raises(FileNotFoundError, match='no checkpoint steps'):
    checkpoint.load_model(tmp_path / 'empty')


def test_train_checkpointer_keeps_state_position_and_the_last_n(tmp_path):
  meta = checkpoint.model_meta(ARCH, 14)
  states = {s: {'step': np.int32(s), 'w': np.full((4,), s, np.float32)} for s in (10, 20, 30)}
  with checkpoint.TrainCheckpointer(tmp_path / 'ckpt', meta, max_to_keep=2) as ckpt:
    for s, state in states.items():
      ckpt.save(s, state, _variables(s), {'batches': s, 'global_batch': 8})
  with checkpoint.TrainCheckpointer(tmp_path / 'ckpt', meta) as ckpt:
    assert ckpt.latest_step() == 30
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), states[20])
    state, position = ckpt.restore(20, abstract)
    _assert_tree_equal(jax.device_get(state), states[20])
    assert position == {'batches': 20, 'global_batch': 8}
  assert sorted(int(p.name) for p in (tmp_path / 'ckpt').iterdir() if p.name.isdigit()) == [20, 30]
  # A training checkpoint is also a model checkpoint (the 'variables' item).
  _assert_tree_equal(checkpoint.load_model(tmp_path / 'ckpt').variables, _variables(30))


def test_restoring_training_state_from_a_model_checkpoint_says_what_to_do(tmp_path):
  meta = checkpoint.model_meta(ARCH, 14)
  checkpoint.save_model(tmp_path, _variables(), meta, step=0)
  with checkpoint.TrainCheckpointer(tmp_path, meta) as ckpt:
    with pytest.raises(FileNotFoundError, match='init_from'):
      ckpt.restore(0, {})
