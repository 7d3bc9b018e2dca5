"""The training state: step, parameters, BatchNorm statistics, optimizer state and the optional EMA."""

from __future__ import annotations

from typing import Any, Mapping, Optional

import flax
import jax
import jax.numpy as jnp
import optax

from litepose_jax import models


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs besides the input position.

  Attributes:
    step: completed optimizer steps (int32 scalar).
    params: float32 master weights (the model may compute in bfloat16).
    batch_stats: BatchNorm running statistics.
    opt_state: optax state.
    ema_params: exponential moving average of `params`, or None when EMA is off.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  ema_params: Optional[Any] = None

  def eval_variables(self) -> dict:
    """{'params', 'batch_stats'} to evaluate: the EMA weights when EMA is on (with the live BN stats)."""
    params = self.params if self.ema_params is None else self.ema_params
    return {'params': params, 'batch_stats': self.batch_stats}


def create(model: models.LitePose, tx: optax.GradientTransformation, rng: jax.Array, image_size: int,
           use_ema: bool, variables: Optional[Mapping[str, Any]] = None) -> TrainState:
  """A fresh state: PyTorch-style init (or `variables`, e.g. converted weights), step 0, new optimizer state.

  Args:
    model: the LitePose module.
    tx: the optimizer.
    rng: init key (ignored when `variables` is given).
    image_size: training input size I (only the parameter shapes depend on it through the model).
    use_ema: keep an EMA of the parameters, starting at the initial parameters.
    variables: {'params', 'batch_stats'} to start from instead of a random init.
  Returns:
    The TrainState (jit it with out_shardings to create it directly on the devices).
  """
  if variables is None:
    variables = models.init_variables(model, rng, image_size)
  params = variables['params']
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables['batch_stats'],
                    opt_state=tx.init(params),
                    ema_params=jax.tree.map(jnp.copy, params) if use_ema else None)
