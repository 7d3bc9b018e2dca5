"""Model checkpoints on disk (orbax), shared by the converter, training, evaluation, prediction and export.

Every checkpoint directory is an orbax CheckpointManager directory whose steps hold at least two items:
  'variables'  {'params', 'batch_stats'} used for inference (the EMA parameters when training kept an EMA)
  'meta'       JSON: {'arch': <authors' architecture JSON + 'name'>, 'num_keypoints': K,
                      'keypoints': keypoint-set name, 'source': where the weights came from, ...}
Training adds a 'state' item (optimizer state, step, input position) to resume from. Because the
architecture and keypoint set travel with the weights, no tool needs flags to rebuild the model.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Mapping, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from litepose_jax import keypoints as kp_lib
from litepose_jax import models

VARIABLES = 'variables'
META = 'meta'
STATE = 'state'    # training only: TrainState (step, params, batch_stats, opt_state, ema_params)
INPUT = 'input'    # training only: JSON input position, e.g. {'batches': global batches consumed}


def model_meta(arch: models.Arch, num_keypoints: int, keypoint_set: Optional[str] = None,
               **extra: Any) -> dict:
  """The 'meta' item describing a model."""
  if keypoint_set is None:
    try:
      keypoint_set = kp_lib.for_num_keypoints(num_keypoints).name
    except ValueError:
      keypoint_set = None
  return {'arch': dict(arch.to_json(), name=arch.name), 'num_keypoints': int(num_keypoints),
          'keypoints': keypoint_set, **extra}


def save_model(directory: str | os.PathLike, variables: Mapping[str, Any], meta: Mapping[str, Any],
               step: int = 0) -> pathlib.Path:
  """Writes variables + meta as step `step` of an orbax checkpoint directory and waits for it."""
  directory = pathlib.Path(directory).absolute()
  variables = jax.tree.map(np.asarray, dict(variables))
  with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=True)) as mngr:
    mngr.save(step, args=ocp.args.Composite(**{VARIABLES: ocp.args.StandardSave(variables),
                                               META: ocp.args.JsonSave(dict(meta))}), force=True)
    # An async save still in flight is silently lost if the process exits: always wait.
    mngr.wait_until_finished()
  return directory


@dataclasses.dataclass
class LoadedModel:
  model: models.LitePose
  variables: dict
  meta: dict
  step: int

  @property
  def keypoint_set(self) -> kp_lib.KeypointSet:
    name = self.meta.get('keypoints')
    if name:
      return kp_lib.get(name)
    return kp_lib.for_num_keypoints(self.meta['num_keypoints'])


def _manager_dir(path: pathlib.Path) -> tuple[pathlib.Path, Optional[int]]:
  """(manager directory, step or None) for a checkpoint dir, a step dir or a workdir."""
  if (path / META).is_dir() and (path / VARIABLES).is_dir() and path.name.isdigit():
    return path.parent, int(path.name)
  if (path / 'checkpoints').is_dir():
    return path / 'checkpoints', None
  return path, None


def load_variables(path: str | os.PathLike, step: Optional[int] = None) -> tuple[dict, dict, int]:
  """(variables as NumPy, meta, step) of a checkpoint directory, one of its steps or a training workdir,
  whatever it holds (a model or a supernet: `load_model` and `nas.load_supernet` check the kind)."""
  path = pathlib.Path(path).absolute()
  if not path.exists():
    raise FileNotFoundError(f'checkpoint {path} does not exist')
  directory, dir_step = _manager_dir(path)
  handlers = {VARIABLES: ocp.StandardCheckpointHandler(), META: ocp.JsonCheckpointHandler()}
  with ocp.CheckpointManager(directory, item_handlers=handlers) as mngr:
    step = step if step is not None else dir_step if dir_step is not None else mngr.latest_step()
    if step is None:
      raise FileNotFoundError(f'no checkpoint steps in {directory}')
    # Onto this process's first device, whatever devices wrote it (a multi-process training run saves
    # its arrays with the job's shardings; restoring those on another topology fails).
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          dict(mngr.item_metadata(step)[VARIABLES]))
    restored = mngr.restore(step, args=ocp.args.Composite(**{VARIABLES: ocp.args.StandardRestore(target),
                                                             META: ocp.args.JsonRestore()}))
  return jax.tree.map(np.asarray, dict(restored[VARIABLES])), dict(restored[META]), int(step)


def load_model(path: str | os.PathLike, step: Optional[int] = None, dtype: Any = 'float32',
               depthwise_impl: str = 'auto') -> LoadedModel:
  """Loads a model written by `save_model`, the converter or training.

  Args:
    path: a checkpoint directory, one of its step sub-directories, or a training workdir.
    step: which step (default: the latest).
    dtype, depthwise_impl: passed to `models.create`.
  Raises:
    ValueError for a supernet checkpoint (meta kind 'supernet'): it is no runnable model.
  """
  variables, meta, step = load_variables(path, step)
  if meta.get('kind') == 'supernet':
    raise ValueError(f'{pathlib.Path(path).absolute()} holds a weight-sharing supernet, not a model: search '
                     'and transfer a subnet first (python -m litepose_jax.nas.transfer; docs/nas.md)')
  model = models.create(meta['arch'], meta['num_keypoints'], dtype=dtype, depthwise_impl=depthwise_impl)
  return LoadedModel(model=model, variables=variables, meta=meta, step=step)


class TrainCheckpointer:
  """Training checkpoints in `directory` (an orbax CheckpointManager directory).

  Every saved step holds 'variables' (what evaluation should use: the EMA weights when on) and 'meta', so
  `load_model` reads a training checkpoint unchanged, plus 'state' and 'input' to resume from. Saves are
  asynchronous (training continues while the files are written); `close()` waits for the last one, and must
  run on every exit path: an async save still in flight is silently lost when the process exits. All
  processes call every method (orbax writes replicated arrays once, from the primary process).
  """

  def __init__(self, directory: epath.PathLike, meta: Mapping[str, Any], max_to_keep: int = 3):
    # epath: local directories and object stores (gs://, shared by all workers of a TPU slice) alike.
    self.directory = epath.Path(directory)
    if '://' not in str(directory):
      self.directory = self.directory.absolute()
    self._meta = dict(meta)
    options = ocp.CheckpointManagerOptions(max_to_keep=max(1, int(max_to_keep)), create=True,
                                           enable_async_checkpointing=True)
    self._mngr = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> Optional[int]:
    return self._mngr.latest_step()

  def save(self, step: int, state: Any, variables: Mapping[str, Any], input_position: Mapping[str, Any]):
    """Starts saving step `step` (returns once the arrays are copied off the devices)."""
    self._mngr.save(int(step), args=ocp.args.Composite(**{
        VARIABLES: ocp.args.StandardSave(dict(variables)),
        META: ocp.args.JsonSave(self._meta),
        STATE: ocp.args.StandardSave(state),
        INPUT: ocp.args.JsonSave(dict(input_position)),
    }), force=True)

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """(state, input position) of step `step`.

    Args:
      step: a saved step.
      abstract_state: the state's structure as jax.ShapeDtypeStruct leaves carrying the target shardings.
    """
    if not (self.directory / str(step) / STATE).is_dir():
      raise FileNotFoundError(f'{self.directory / str(step)} is not a training checkpoint (no {STATE!r} '
                              'item); use it as --config.train.init_from to start from its weights')
    restored = self._mngr.restore(int(step), args=ocp.args.Composite(**{
        STATE: ocp.args.StandardRestore(abstract_state), INPUT: ocp.args.JsonRestore()}))
    return restored[STATE], dict(restored[INPUT])

  def close(self):
    """Waits for in-flight saves and releases the manager."""
    self._mngr.wait_until_finished()
    self._mngr.close()

  def __enter__(self) -> 'TrainCheckpointer':
    return self

  def __exit__(self, *exc):
    self.close()
