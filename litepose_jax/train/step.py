"""One optimizer step: forward in train mode, loss, gradients, Adam update, EMA. Pure; compiled once.

Batches are dicts of global arrays (B the global batch, R0 = I/4, R1 = I/2, K joints, P = 30):
  'image' [B,I,I,3] float32 (ImageNet-normalised), 'heatmaps_0' [B,R0,R0,K], 'heatmaps_1' [B,R1,R1,K],
  'masks_0' [B,R0,R0], 'masks_1' [B,R1,R1], 'joints_0' [B,P,K,2] int32.

The step is two programs: `gradients` (forward, loss, backward, BatchNorm statistics) and `update`
(optimizer, EMA). `TrainStep.__call__` composes them into the pure step; `JittedTrainStep` compiles the two
concurrently. Reason: XLA compiles a module's HLO passes on one thread, and the optimizer's ~1000 small
per-parameter fusions made the one-program train step compile markedly slower than the two programs in
sequence, and slower still than the two in parallel (docs/design.md, "Train-step compile time"). Passing
the gradients between the programs costs one write and read of a parameter-sized tree.
No TensorFlow here (the GPU machine has none).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import optax
from litepose_jax.train import losses
from litepose_jax import models
from litepose_jax.train import sharding
from litepose_jax.train.state import TrainState

# The batch keys the step reads; the loop transfers only these to the devices.
BATCH_KEYS = ('image', 'heatmaps_0', 'heatmaps_1', 'masks_0', 'masks_1', 'joints_0')

Batch = Mapping[str, jax.Array]


def _global_norm(tree) -> jax.Array:
  # = optax.global_norm; one dot per leaf traces ~10x faster than its two jnp calls (343 leaves in XS).
  return jnp.sqrt(sum(jnp.vdot(x, x) for x in jax.tree.leaves(tree)))


@dataclasses.dataclass(frozen=True)
class TrainStep:
  """`step(state, batch) -> (state, metrics)` as its two pure parts.

  gradients(params, batch_stats, batch) -> (grads, new batch_stats, metrics): metrics 'loss',
    'heatmap_0', 'heatmap_1', 'push', 'pull', 'grad_norm' (float32 scalars).
  update(state, grads) -> (state, {'lr'}): the optimizer and EMA step (the state already carries the new
    batch_stats); 'lr' is the rate this step used.
  """
  gradients: Callable[[Any, Any, Batch], tuple[Any, Any, dict]]
  update: Callable[[TrainState, Any], tuple[TrainState, dict]]
  batch_keys: tuple[str, ...] = BATCH_KEYS     # what the loop transfers to the devices
  replicated_keys: tuple[str, ...] = ()        # of those, the ones every device gets whole (not split)

  def __call__(self, state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
    grads, batch_stats, metrics = self.gradients(state.params, state.batch_stats, batch)
    state, extra = self.update(state.replace(batch_stats=batch_stats), grads)
    return state, {**metrics, **extra}


# forward(variables, batch) -> (outputs of one or more train-mode passes, new batch_stats); each output is
# the model's (out_quarter, out_half). The supernet's forward runs one pass per sampled subnet.
Forward = Callable[[Mapping[str, Any], Batch], tuple[Sequence[Any], Any]]


def model_forward(model) -> Forward:
  """One train-mode pass of a fixed model over batch['image']."""
  def forward(variables, batch):
    outputs, new_vars = model.apply(variables, batch['image'], train=True, mutable=['batch_stats'])
    return [outputs], new_vars['batch_stats']
  return forward


def make_train_step(model: models.LitePose, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    weights: losses.LossWeights = losses.LossWeights(), ema_decay: float = 0.0, *,
                    forward: Optional[Forward] = None, batch_keys: Sequence[str] = BATCH_KEYS,
                    replicated_keys: Sequence[str] = ()) -> TrainStep:
  """Builds the step.

  Args:
    model: LitePose (its dtype sets the compute precision; parameters stay float32).
    tx: the optimizer.
    schedule: the lr schedule (reported in the metrics).
    weights: loss factors.
    ema_decay: EMA decay of the parameters (used only when the state carries `ema_params`).
    forward: the train-mode passes (default `model_forward(model)`). With several passes the loss is
      their sum and the reported loss parts their mean.
    batch_keys, replicated_keys: the batch entries the step reads, and those that are the same for the
      whole batch (not split over devices, e.g. the supernet's subnet masks).
  Returns:
    The pure step (callable, see `TrainStep`). Metrics (scalars, float32): 'loss', 'heatmap_0',
    'heatmap_1', 'push', 'pull', 'grad_norm', 'lr' (the lr used by this step).
  """

  forward = forward or model_forward(model)

  def gradients(params, batch_stats, batch: Batch):
    def loss_fn(p):
      outputs, new_stats = forward({'params': p, 'batch_stats': batch_stats}, batch)
      totals, parts = zip(*[losses.total_loss(o, batch, weights) for o in outputs])
      parts = jax.tree.map(lambda *v: sum(v) / len(v), *parts)
      return sum(totals), (parts, new_stats)

    (loss, (parts, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return grads, new_stats, {'loss': loss, **parts, 'grad_norm': _global_norm(grads)}

  def update(state: TrainState, grads):
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:
      ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, ema, params)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema)
    return new_state, {'lr': jnp.asarray(schedule(state.step), jnp.float32)}

  return TrainStep(gradients, update, tuple(batch_keys), tuple(replicated_keys))


class JittedTrainStep:
  """The step jitted over a mesh: state replicated, batch split over 'data', state donated.

  Called like the step with a batch holding (at least) `batch_keys`; the first call (and any call with new
  batch shapes) compiles both programs concurrently. `compile(state, batch)` does the same ahead of time
  (benchmarks). The step's `replicated_keys` are placed whole on every device.
  """

  def __init__(self, step: TrainStep, mesh):
    repl = sharding.replicated(mesh)
    self.batch_keys, self.replicated_keys = step.batch_keys, step.replicated_keys
    batch_shardings = {k: repl if k in step.replicated_keys else sharding.batch_sharding(mesh)
                       for k in step.batch_keys}
    self._gradients = jax.jit(step.gradients, in_shardings=(repl, repl, batch_shardings), out_shardings=repl)
    # The state is updated in place (the gradients have no output of their own to reuse).
    self._update = jax.jit(step.update, in_shardings=(repl, repl), out_shardings=(repl, repl),
                           donate_argnums=(0,))
    self._compiled: dict[tuple, TrainStep] = {}   # per batch signature, as jax.jit caches per shape

  def compile(self, state: TrainState, batch: Batch) -> TrainStep:
    """Lowers and compiles both programs for these shapes; returns the compiled step.

    The gradients program compiles in a second thread while this one lowers and compiles the update
    (XLA compiles without holding the GIL).
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
      gradients = pool.submit(self._gradients.lower(state.params, state.batch_stats, batch).compile)
      # The gradients have the structure, shapes and sharding of the parameters.
      update = self._update.lower(state, state.params).compile()
      return TrainStep(gradients.result(), update)

  def __call__(self, state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
    # Keyed on the batch alone: the state's shapes are fixed by the model and optimizer (the compiled
    # programs reject any other), and a key over its ~1250 leaves cost 2.5 ms per step.
    batch = {k: batch[k] for k in self.batch_keys}
    key = tuple((jax.tree_util.keystr(path), v.shape, v.dtype, getattr(v, 'sharding', None))
                for path, v in jax.tree_util.tree_leaves_with_path(batch))
    if key not in self._compiled:
      self._compiled[key] = self.compile(state, batch)
    return self._compiled[key](state, batch)

