"""The training loop: `train_and_evaluate(config, workdir)`.

Resume order (first that applies): the latest checkpoint in `<workdir>/checkpoints` (step, weights, BN
statistics, optimizer and EMA state and input position) > `config.train.init_from` (converted or trained
weights, fresh optimizer) > PyTorch-style random init.

One global batch per step, data parallel over a ('data',) mesh of all devices (see sharding.py); every
process feeds its own slice of the batch and only process 0 writes logs. Checkpoints: every
`checkpoint_every_steps`, at the end, and on SIGTERM/SIGINT (preemption), after which the function returns
normally with `preempted=True`. A non-finite loss or gradient raises FloatingPointError naming the step;
the non-finite state is never saved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import threading
import time
from typing import Any, Callable, Iterator, Mapping, Optional

import jax
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from litepose_jax import checkpoint
from litepose_jax import from_config
from litepose_jax.train import report
from litepose_jax.train import sharding
from litepose_jax.train import state as train_state
from litepose_jax.train import step as step_lib

log = logging.getLogger(__name__)

# Order of the values in log lines (the step's metrics come back as a key-sorted dict).
_LOG_ORDER = ('loss', 'heatmap_0', 'heatmap_1', 'push', 'pull', 'lr', 'grad_norm')


@dataclasses.dataclass
class TrainInput:
  """The seam between the loop and the input pipeline.

  Attributes:
    num_examples: training-set size (epochs → steps: steps_per_epoch = num_examples // global batch).
    batches: (start_step, process_index, process_count) → iterator of this process's batches (dicts of
      arrays, see `train_step.BATCH_KEYS`, [B/process_count, ...]). Global batch number `start_step` must
      come first: a resumed run sees exactly the samples an uninterrupted one would.
    name: what the data is, in error messages (the annotation file).
  """
  num_examples: int
  batches: Callable[[int, int, int], Iterator[Mapping[str, Any]]]
  name: str = 'the training set'


# eval_fn(model, variables, config, workdir, step) -> {metric name: value}
EvalFn = Callable[[Any, Mapping[str, Any], Any, epath.Path, int], Mapping[str, float]]


def pipeline_train_input(config) -> TrainInput:
  """The tf.data training pipeline (litepose_jax.data), imported lazily: TensorFlow stays out of the rest."""
  from litepose_jax.data import pipeline, sources  # pylint: disable=g-import-not-at-top
  pidx, pcount = jax.process_index(), jax.process_count()
  # Each process reads its own shard of the records; the set is opened once and reused on resume.
  source = sources.make_source(config, 'train', process_index=pidx, process_count=pcount)

  def batches(start_step: int, process_index: int, process_count: int):
    if (process_index, process_count) != (pidx, pcount):
      raise ValueError('the pipeline source was opened for another process layout')
    ds = pipeline.make_train_dataset(config, process_index=process_index, process_count=process_count,
                                     start_step=start_step, source=source)
    return ds.as_numpy_iterator()

  return TrainInput(num_examples=source.num_examples * pcount, batches=batches,
                    name=str(source.ann_file or 'the training set'))


def library_eval_fn(model, variables, config, workdir: epath.Path, step: int) -> dict:
  """AP on config's eval split (any dataset: the data pipeline's eval input) through litepose_jax.eval_lib.

  Each process decodes its slice of every eval batch; the predictions are gathered and every process gets
  the metrics of the whole split. Only process 0 writes results.json, metrics.json and the worst-image
  PNGs, into <workdir>/eval_<step> when the workdir is local.
  """
  from litepose_jax import eval_lib  # pylint: disable=g-import-not-at-top
  out = workdir / f'eval_{step}'
  local = jax.process_index() == 0 and '://' not in str(out)
  return dict(eval_lib.evaluate(config, model, variables, from_config.keypoint_set(config),
                                from_config.input_size(config), workdir=str(out) if local else None,
                                progress=False))


class _StopSignal:
  """Turns SIGTERM/SIGINT (Cloud TPU preemption, Ctrl-C) into a "save and stop" request.

  Multi-process runs use JAX's preemption sync point instead, so every process stops at the same step
  (a process that saved alone would hang the others in the collective save).
  """

  def __init__(self):
    self.signum = None
    self._old = {}

  def __enter__(self):
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._old[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C stops at once
    self.signum = signum
    log.warning('received %s: saving a checkpoint and stopping', signal.Signals(signum).name)

  def requested(self, step: int) -> bool:
    if jax.process_count() > 1:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.signum is not None

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)


def _host_copy(tree: Any) -> Any:
  """NumPy copy of replicated device arrays (works on multi-host, where the arrays span processes)."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def _make_state(config, model, tx, mesh, image_size: int):
  """(abstract state with shardings, function creating the initial state on the devices)."""
  use_ema = float(config.optimizer.ema_decay) > 0
  repl = sharding.replicated(mesh)

  def init(rng, variables=None):
    return train_state.create(model, tx, rng, image_size, use_ema, variables)

  abstract = jax.eval_shape(init, jax.random.key(0))
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl), abstract)
  return abstract, jax.jit(init, out_shardings=repl)


def _init_from(path: str, model) -> dict:
  """Weights of `config.train.init_from`, checked against the configured model."""
  loaded = checkpoint.load_model(path)
  if loaded.model.arch.to_json() != model.arch.to_json() or loaded.model.num_keypoints != model.num_keypoints:
    raise ValueError(f'train.init_from={path}: it holds a {loaded.meta["arch"].get("name")} model with '
                     f'{loaded.model.num_keypoints} joints, the config asks for {model.arch.name} with '
                     f'{model.num_keypoints}')
  return {'params': loaded.variables['params'], 'batch_stats': loaded.variables['batch_stats']}


class _MetricsWindow:
  """The step metrics since the last log line: fetched one step late, checked finite, timed.

  Fetching the previous step's metrics while the next step runs keeps the device busy, so every step is
  checked for NaN/Inf at no cost. The clock counts steps since the last restart (after the first step,
  after each log line and evaluation), so images/s excludes compilation and evaluation.
  """

  def __init__(self, global_batch: int, ckpt: checkpoint.TrainCheckpointer):
    self._global_batch, self._ckpt = global_batch, ckpt
    self._pending = None           # (step, device metrics) of the last dispatched step
    self._rows = []                # host metrics since the last log line
    self.restart_clock()

  def restart_clock(self):
    self.started, self._steps = time.perf_counter(), 0

  def add(self, step: int, metrics: Mapping[str, jax.Array]):
    """Records the metrics of `step` (dispatched, maybe still running); fetches the previous step's."""
    self.fetch()
    self._pending = (step, metrics)
    self._steps += 1

  def fetch(self):
    """Waits for the pending step's metrics; raises FloatingPointError on a non-finite loss or gradient."""
    if self._pending is None:
      return
    step, metrics = self._pending
    self._pending = None
    host = jax.device_get(metrics)
    bad = {k: host[k] for k in ('loss', 'grad_norm') if not np.isfinite(host[k])}
    if bad:
      raise FloatingPointError(
          f'non-finite {bad} at step {step}; stopping. The last good checkpoint is step '
          f'{self._ckpt.latest_step()} in {self._ckpt.directory} (lower optimizer.lr or set '
          'optimizer.grad_clip)')
    self._rows.append(host)

  def summary(self) -> dict:
    """Means over the window ('lr': the last), images/s and step time; empties the window."""
    self.fetch()
    elapsed = time.perf_counter() - self.started
    keys = [k for k in _LOG_ORDER if k in self._rows[0]] + sorted(set(self._rows[0]) - set(_LOG_ORDER))
    mean = {k: float(np.mean([m[k] for m in self._rows])) for k in keys}
    mean['lr'] = float(self._rows[-1]['lr'])
    if self._steps:
      mean['images_per_s'] = self._global_batch * self._steps / max(elapsed, 1e-9)
      mean['step_time_s'] = elapsed / self._steps
    self._rows.clear()
    self.restart_clock()
    return mean


@dataclasses.dataclass(frozen=True)
class _Cadence:
  """Which of log / save / evaluate happen after a step (every N steps, and all of them at the end)."""
  total: int
  log_every: int
  save_every: int
  eval_every: int   # 0: only at the end; < 0: never

  @classmethod
  def from_config(cls, config, steps_per_epoch: int, total: int) -> '_Cadence':
    return cls(total, max(1, int(config.train.log_every_steps)), max(1, int(config.checkpoint_every_steps)),
               int(round(float(config.train.eval_every_epochs) * steps_per_epoch)))

  def log(self, step: int) -> bool:
    return step % self.log_every == 0 or step == self.total

  def save(self, step: int) -> bool:
    return step % self.save_every == 0 or step == self.total

  def eval(self, step: int) -> bool:
    if self.eval_every < 0:
      return False
    return (self.eval_every > 0 and step % self.eval_every == 0) or step == self.total


def _steps_per_epoch(train_input: TrainInput, global_batch: int) -> int:
  steps = train_input.num_examples // global_batch
  if steps < 1:
    raise ValueError(f'{train_input.name}: {train_input.num_examples} training images, fewer than one global '
                     f'batch (input.batch_size={global_batch})')
  return steps


def _batches(train_input: TrainInput, start: int, keys) -> Iterator[dict]:
  """This process's batches from global batch `start` on, only the keys the step reads."""
  step = start
  for host in train_input.batches(start, jax.process_index(), jax.process_count()):
    yield {k: host[k] for k in keys}
    step += 1
  raise RuntimeError(f'the training input ended after {step} steps (it must repeat)')


def _log_first_step(metrics, window: '_MetricsWindow', progress, step: int):
  """Waits for the first step (it includes compilation), logs its time, restarts the clocks."""
  jax.block_until_ready(metrics)
  if jax.process_index() == 0:
    log.info('first step (compilation included) took %.1f s', time.perf_counter() - window.started)
  progress.reset_clock(step)
  window.restart_clock()


def _restore_or_init(config, ckpt, model, mesh, abstract_state, init_state, global_batch: int,
                     supernet=None):
  """The state to start from. Resume order (first that applies): the latest checkpoint in the workdir
  (step, weights, BN statistics, optimizer and EMA state, input position) > `train.init_from` (converted
  or trained weights, fresh optimizer) > PyTorch-style random init."""
  latest = ckpt.latest_step()
  if latest is not None:
    state, position = ckpt.restore(latest, abstract_state)
    if position.get('global_batch', global_batch) != global_batch:   # older checkpoints lack the key
      log.warning('resuming with global batch %d, the checkpoint was written with %d: the sample order '
                  'differs from an uninterrupted run', global_batch, position['global_batch'])
    log.info('resumed from %s step %d', ckpt.directory, latest)
    return state
  if config.train.init_from:
    log.info('initialised from %s', config.train.init_from)
    variables = _init_from(config.train.init_from, model)
    if supernet is not None:
      variables = supernet.initial_variables(variables)   # channels re-ordered by importance
    return init_state(None, sharding.replicate(variables, mesh))
  return init_state(jax.random.key(int(config.seed)))


def _save(ckpt: checkpoint.TrainCheckpointer, step: int, state, global_batch: int):
  """Checkpoint of `state` after `step` steps, with the input position a resume starts from."""
  ckpt.save(step, state, state.eval_variables(),
            {'batches': step, 'examples': step * global_batch, 'global_batch': global_batch})


def _evaluate(eval_fn: EvalFn, model, state, config, workdir, step: int, writer) -> dict:
  metrics = dict(eval_fn(model, _host_copy(state.eval_variables()), config, workdir, step))
  writer.write_scalars(step, {f'eval/{k}': v for k, v in metrics.items()
                              if isinstance(v, (int, float, np.number))})
  if jax.process_index() == 0 and metrics:
    log.info('eval at step %d: %s', step, report.format_metrics(metrics))
  return metrics


def train_and_evaluate(config, workdir: epath.PathLike, *, train_input: Optional[TrainInput] = None,
                       eval_fn: Optional[EvalFn] = None) -> dict:
  """Trains (and evaluates) the model a config describes; resumable and preemption-safe.

  Args:
    config: a litepose-jax config (configs/common.py schema).
    workdir: checkpoints in `workdir/checkpoints`, TensorBoard events and metrics.jsonl in `workdir`
      (a local path or an object-store URL, gs://bucket/run, that every worker of a TPU slice reaches).
    train_input: the training data (default: the tf.data pipeline for `config.dataset`).
    eval_fn: evaluation hook (default: the evaluation library); run every `train.eval_every_epochs`
      epochs and at the end (never when eval_every_epochs < 0).
  Returns:
    {'step': last completed step, 'preempted': bool, 'train': last logged train metrics,
     'eval': last eval metrics}.
  """
  workdir = epath.Path(workdir) if '://' in str(workdir) else epath.Path(workdir).absolute()
  is_main = jax.process_index() == 0
  mesh = sharding.make_mesh()
  global_batch = int(config.input.batch_size)
  sharding.check_global_batch(global_batch, mesh)
  model, image_size = from_config.create_model(config), from_config.input_size(config)
  supernet = from_config.supernet_training(config)   # None unless config.nas.enabled (nas/training.py)
  train_input = train_input or (supernet.train_input(config) if supernet else pipeline_train_input(config))
  eval_fn = eval_fn or (supernet.evaluate if supernet else library_eval_fn)
  steps_per_epoch = _steps_per_epoch(train_input, global_batch)
  total_steps = int(config.num_train_steps) or int(config.train.num_epochs) * steps_per_epoch
  tx, schedule = from_config.optimizer(config, steps_per_epoch, total_steps)
  abstract_state, init_state = _make_state(config, model, tx, mesh, image_size)
  step_fn = step_lib.JittedTrainStep(step_lib.make_train_step(
      model, tx, schedule, from_config.loss_weights(config), float(config.optimizer.ema_decay),
      **(supernet.step_options() if supernet else {})), mesh)
  cadence = _Cadence.from_config(config, steps_per_epoch, total_steps)
  meta = (supernet.meta(model.arch, config.to_json()) if supernet else
          checkpoint.model_meta(model.arch, model.num_keypoints, config.dataset.keypoints, source='train',
                                config=config.to_json()))
  result = {'step': 0, 'preempted': False, 'train': {}, 'eval': {}}
  workdir.mkdir(parents=True, exist_ok=True)   # after the data and config checks: a bad input writes nothing
  with contextlib.ExitStack() as cleanup:   # every exit path waits for the last async checkpoint save
    ckpt = cleanup.enter_context(checkpoint.TrainCheckpointer(workdir / 'checkpoints', meta,
                                                              config.keep_checkpoints))
    writer = report.MetricWriter(workdir, enabled=is_main)
    cleanup.callback(writer.close)
    state = _restore_or_init(config, ckpt, model, mesh, abstract_state, init_state, global_batch, supernet)
    start = step = int(_host_copy(state.step))
    if is_main:
      log.info('model %s, %d joints, input %d, global batch %d on %d devices (%d processes), %d steps/epoch, '
               '%d steps\n%s', model.arch.name, model.num_keypoints, image_size, global_batch,
               mesh.devices.size, jax.process_count(), steps_per_epoch, total_steps,
               report.parameter_overview(abstract_state.params, abstract_state.batch_stats))
    progress = report.Progress(total_steps, start, enabled=is_main)
    cleanup.callback(progress.close)
    window = _MetricsWindow(global_batch, ckpt)
    batches = _batches(train_input, start, step_fn.batch_keys)
    with _StopSignal() as stop:
      while step < total_steps and not stop.requested(step):
        batch = sharding.put_global_batch(next(batches), mesh, step_fn.replicated_keys)
        state, metrics = step_fn(state, batch)
        step += 1
        window.add(step, metrics)
        if step == start + 1:   # the first step compiled: time the others only
          _log_first_step(metrics, window, progress, step)
        train_metrics = window.summary() if cadence.log(step) else None
        if train_metrics:
          writer.write_scalars(step, {f'train/{k}': v for k, v in train_metrics.items()})
          result['train'] = train_metrics
        progress.update(step, train_metrics)
        if cadence.save(step):
          window.fetch()   # never save a non-finite state
          _save(ckpt, step, state, global_batch)
        if cadence.eval(step):
          window.fetch()
          result['eval'] = _evaluate(eval_fn, model, state, config, workdir, step, writer)
          window.restart_clock()
      window.fetch()
      result['preempted'] = step < total_steps
      if ckpt.latest_step() != step and step > 0:
        _save(ckpt, step, state, global_batch)   # preempted: the position is saved with the state
  result['step'] = step
  if result['preempted'] and is_main:
    log.warning('stopped at step %d after a signal; checkpoint saved in %s', step, ckpt.directory)
  return result
