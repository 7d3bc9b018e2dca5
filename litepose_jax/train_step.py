"""One optimizer step: forward in train mode, loss, gradients, Adam update, EMA. Pure; jitted once.

Batches are dicts of global arrays (B the global batch, R0 = I/4, R1 = I/2, K joints, P = 30):
  'image' [B,I,I,3] float32 (ImageNet-normalised), 'heatmaps_0' [B,R0,R0,K], 'heatmaps_1' [B,R1,R1,K],
  'masks_0' [B,R0,R0], 'masks_1' [B,R1,R1], 'joints_0' [B,P,K,2] int32.
No TensorFlow here (the GPU machine has none).
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from litepose_jax import losses
from litepose_jax import models
from litepose_jax import sharding
from litepose_jax.train_state import TrainState

# The batch keys the step reads; the loop transfers only these to the devices.
BATCH_KEYS = ('image', 'heatmaps_0', 'heatmaps_1', 'masks_0', 'masks_1', 'joints_0')

StepFn = Callable[[TrainState, Mapping[str, jax.Array]], tuple[TrainState, dict]]


def make_train_step(model: models.LitePose, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    weights: losses.LossWeights = losses.LossWeights(), ema_decay: float = 0.0) -> StepFn:
  """Builds `train_step(state, batch) -> (state, metrics)`.

  Args:
    model: LitePose (its dtype sets the compute precision; parameters stay float32).
    tx: the optimizer.
    schedule: the lr schedule (reported in the metrics).
    weights: loss factors.
    ema_decay: EMA decay of the parameters (used only when the state carries `ema_params`).
  Returns:
    The pure step function. Metrics (scalars, float32): 'loss', 'heatmap_0', 'heatmap_1', 'push', 'pull',
    'grad_norm', 'lr' (the lr used by this step).
  """

  def train_step(state: TrainState, batch: Mapping[str, jax.Array]) -> tuple[TrainState, dict]:
    def loss_fn(params):
      outputs, new_vars = model.apply({'params': params, 'batch_stats': state.batch_stats},
                                      batch['image'], train=True, mutable=['batch_stats'])
      total, parts = losses.total_loss(outputs, batch, weights)
      return total, (parts, new_vars['batch_stats'])

    (loss, (parts, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:
      ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, ema, params)
    metrics = {'loss': loss, **parts, 'grad_norm': optax.global_norm(grads),
               'lr': jnp.asarray(schedule(state.step), jnp.float32)}
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state, ema_params=ema)
    return new_state, metrics

  return train_step


def jit_train_step(train_step: StepFn, mesh) -> StepFn:
  """jit with the state replicated and donated (updated in place) and the batch split over 'data'."""
  repl = sharding.replicated(mesh)
  return jax.jit(train_step, in_shardings=(repl, sharding.batch_sharding(mesh)),
                 out_shardings=(repl, repl), donate_argnums=(0,))
