"""Optimizer and learning-rate schedule from the `optimizer` config section (spec d.2 for the defaults).

The authors: Adam (β 0.9/0.999, eps 1e-8), lr 4e-3, no weight decay, no clipping, MultiStepLR stepped once
per *epoch* with milestones [350, 480] and factor 0.1. Here the schedule is a function of the optimizer
step, so per-epoch milestones become step boundaries `milestone · steps_per_epoch`; the lr is constant within
an epoch exactly as with the authors' per-epoch `scheduler.step()`.
"""

from __future__ import annotations

from typing import Any

import optax

SCHEDULES = ('multistep', 'cosine', 'constant')


def make_schedule(opt: Any, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
  """The learning rate as a function of the step.

  Args:
    opt: the `optimizer` config section (lr, schedule, milestones, decay_factor, warmup_epochs).
    steps_per_epoch: optimizer steps per training epoch (global batch).
    total_steps: steps of the whole run (the cosine decays to 0 there).
  Returns:
    An optax schedule step → lr.
  """
  if opt.schedule not in SCHEDULES:
    raise ValueError(f'optimizer.schedule must be one of {SCHEDULES}, got {opt.schedule!r}')
  lr = float(opt.lr)
  warmup = int(round(float(opt.warmup_epochs) * steps_per_epoch))
  if opt.schedule == 'cosine':
    # Linear warm-up from 0, then cosine to 0 at the last step.
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_steps, warmup + 1), 0.0)
  if opt.schedule == 'constant':
    main = optax.constant_schedule(lr)
  else:
    boundaries = {int(m) * steps_per_epoch: float(opt.decay_factor) for m in opt.milestones}
    main = optax.piecewise_constant_schedule(lr, boundaries)
  if warmup <= 0:
    return main
  ramp = optax.linear_schedule(0.0, lr, warmup)
  # join_schedules shifts the second schedule by `warmup`; milestones are absolute epochs, so undo that.
  return optax.join_schedules([ramp, lambda step: main(step + warmup)], [warmup])


def make_optimizer(opt: Any, steps_per_epoch: int,
                   total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Adam (AdamW when weight_decay > 0) with the configured schedule and optional global-norm clipping.

  Args:
    opt: the `optimizer` config section.
    steps_per_epoch: optimizer steps per epoch.
    total_steps: steps of the whole run.
  Returns:
    (gradient transformation, lr schedule). EMA of the parameters is kept in the train state, not here.
  """
  if opt.name != 'adam':
    raise ValueError(f'optimizer.name: only "adam" is supported (the authors\' optimizer), got {opt.name!r}')
  schedule = make_schedule(opt, steps_per_epoch, total_steps)
  if float(opt.weight_decay) > 0:
    adam = optax.adamw(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay)
  else:
    adam = optax.adam(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps)
  parts = []
  if float(opt.grad_clip) > 0:
    # Before Adam, as torch.nn.utils.clip_grad_norm_ is applied before optimizer.step().
    parts.append(optax.clip_by_global_norm(float(opt.grad_clip)))
  parts.append(adam)
  return optax.chain(*parts), schedule
