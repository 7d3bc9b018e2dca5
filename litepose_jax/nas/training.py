"""Supernet training through train/loop.py: the masked forward, the input, the evaluation, the meta.

`from_config.supernet_training(config)` builds a `SupernetTraining` when `config.nas.enabled`; the loop
then trains the fixed model at the supernet's maximum widths (`space.LARGEST`: the same variable tree)
with these parts instead of the fixed model's:

  step     forward = one masked supernet pass per subnet in batch['subnet'] (a replicated batch entry of
           stacked masks, [S, max width] per gene), at the batch's resolution; the loss is their sum, so
           the gradient is the sum of the subnets' gradients (S = 1: the authors' uniform rule; S = 2 +
           num_random: the sandwich rule). The BatchNorm running statistics pass from one subnet to the
           next. One compiled program per resolution: the masks' shapes never change.
  input    `train_input.multi_resolution_input`: resolution and subnets from (seed, step) only.
  init     train.init_from (a full-width fixed model) re-ordered by channel importance (`reorder`).
  eval     the largest subnet at nas.eval_resolution after BN re-calibration on nas.calibration_batches
           training batches (the shared running statistics are no subnet's own, nas spec §5).
  meta     kind 'supernet', K, keypoint set, the space's version and the training resolutions:
           `checkpoint.load_model` (evaluate.py, predict.py) refuses the checkpoint.

No TensorFlow here (the evaluation hook and the input import the data pipeline lazily).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Mapping, Sequence, Tuple

import jax.numpy as jnp

from litepose_jax.nas import space
from litepose_jax.nas.apply import apply_masked

KIND = 'supernet'   # checkpoint meta 'kind'
SUBNET_KEY = 'subnet'   # the batch entry holding the stacked masks


@dataclasses.dataclass(frozen=True)
class SupernetTraining:
  """The supernet-specific parts of a training run (module docstring); built by `from_config`.

  Attributes:
    num_keypoints: K.
    keypoints: the keypoint-set name.
    resolutions: input sizes, one drawn per global batch.
    rule: 'uniform' | 'sandwich' (`sampler.RULES`).
    num_random: random subnets per step of the sandwich rule.
    reorder: re-order the channels of train.init_from weights by importance.
    eval_resolution: the largest subnet's evaluation input size.
    calibration_batches: training batches of its BN re-calibration.
    depthwise_impl, dtype: the forward's depthwise form and compute dtype (as the fixed model's).
  """
  num_keypoints: int
  keypoints: str
  resolutions: Tuple[int, ...]
  rule: str = 'uniform'
  num_random: int = 1
  reorder: bool = True
  eval_resolution: int = 512
  calibration_batches: int = 4
  depthwise_impl: str = 'auto'
  dtype: Any = jnp.float32

  def forward(self, variables: Mapping[str, Any], batch: Mapping[str, Any]):
    """`train.step.Forward`: one train-mode masked pass per subnet of batch['subnet'].

    Args:
      variables: {'params', 'batch_stats'} of the supernet.
      batch: 'image' [B, I, I, 3] and 'subnet' {gene: [S, max width]}.
    Returns:
      ([(out_quarter, out_half)] * S, batch_stats after the S passes).
    """
    masks = batch[SUBNET_KEY]
    stats = variables['batch_stats']
    outputs = []
    for i in range(next(iter(masks.values())).shape[0]):
      out, stats = apply_masked({'params': variables['params'], 'batch_stats': stats},
                                {g: m[i] for g, m in masks.items()}, batch['image'], train=True,
                                depthwise_impl=self.depthwise_impl, dtype=self.dtype)
      outputs.append(out)
    return outputs, stats

  def step_options(self) -> dict:
    """Keyword arguments of `train.step.make_train_step`."""
    from litepose_jax.train import step  # pylint: disable=g-import-not-at-top
    return {'forward': self.forward, 'batch_keys': step.BATCH_KEYS + (SUBNET_KEY,),
            'replicated_keys': (SUBNET_KEY,)}

  def train_input(self, config):
    """The loop's TrainInput (`train_input.multi_resolution_input`)."""
    from litepose_jax.nas import train_input  # pylint: disable=g-import-not-at-top
    return train_input.multi_resolution_input(config, self.resolutions, self.rule, self.num_random)

  def initial_variables(self, variables: Mapping[str, Any]) -> dict:
    """train.init_from weights (full width) as the supernet starts from them: re-ordered if `reorder`."""
    if not self.reorder:
      return dict(variables)
    from litepose_jax.nas import reorder  # pylint: disable=g-import-not-at-top
    return reorder.reorder_by_importance(variables)

  def meta(self, arch, config_json: str) -> dict:
    """The checkpoint meta (`checkpoint.model_meta` + kind, space version, resolutions, rule)."""
    from litepose_jax import checkpoint  # pylint: disable=g-import-not-at-top
    return checkpoint.model_meta(arch, self.num_keypoints, self.keypoints, source='train', config=config_json,
                                 kind=KIND, space=space.VERSION, resolutions=list(self.resolutions),
                                 rule=self.rule)

  def evaluate(self, model, variables: Mapping[str, Any], config, workdir, step: int) -> dict:
    """The loop's eval hook: AP of the largest subnet at eval_resolution, BN re-calibrated first.

    The calibration batches are the training preprocessing at that size from the whole training set
    (the same on every process, so every process evaluates the same weights).
    """
    from litepose_jax.data import pipeline  # pylint: disable=g-import-not-at-top
    from litepose_jax.nas import bn_calibration, slicing, train_input  # pylint: disable=g-import-not-at-top
    from litepose_jax.train import loop  # pylint: disable=g-import-not-at-top
    size = int(self.eval_resolution)
    cfg = train_input.resolution_config(config, size, len(self.resolutions))   # a seed training never uses
    batches = pipeline.make_train_dataset(cfg, process_index=0, process_count=1).as_numpy_iterator()
    images = [b['image'] for b in itertools.islice(batches, max(1, int(self.calibration_batches)))]
    calibrated = bn_calibration.recalibrate(variables, space.LARGEST, images, self.depthwise_impl,
                                            self.dtype)
    _, sub_variables = slicing.extract(calibrated, space.LARGEST)
    return loop.library_eval_fn(model, sub_variables, cfg, workdir, step)


def sizes_check(resolutions: Sequence[int]) -> Tuple[int, ...]:
  """The training resolutions as ints; raises ValueError unless each is a positive multiple of 16."""
  sizes = tuple(int(r) for r in resolutions)
  bad = [r for r in sizes if r <= 0 or r % 16]
  if not sizes or bad:
    raise ValueError(f'nas.resolutions must be positive multiples of 16, got {list(resolutions)}')
  return sizes
