"""Optimizer, schedules and reporting pieces, checked against formulas written from their definitions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from litepose_jax.train import optim


def _opt(**overrides):
  opt = common.get_config().optimizer
  for k, v in overrides.items():
    opt[k] = v
  return opt


def test_multistep_is_per_epoch_like_the_authors():
  # torch MultiStepLR stepped once per epoch: lr(epoch) = lr0 · 0.1^(number of milestones ≤ epoch).
  spe = 7
  schedule = optim.make_schedule(_opt(), spe, 500 * spe)
  for epoch in (0, 1, 349, 350, 351, 479, 480, 499):
    want = 4e-3 * 0.1 ** sum(epoch >= m for m in (350, 480))
    for step in (epoch * spe, epoch * spe + spe - 1):
      np.testing.assert_allclose(schedule(step), want, rtol=1e-6, err_msg=f'epoch {epoch} step {step}')


def test_warmup_then_multistep_keeps_absolute_milestones():
  spe = 10
  schedule = optim.make_schedule(_opt(warmup_epochs=2.0, milestones=(5,)), spe, 100)
  np.testing.assert_allclose(schedule(0), 0.0, atol=1e-12)
  np.testing.assert_allclose(schedule(10), 4e-3 * 10 / 20, rtol=1e-6)
  np.testing.assert_allclose(schedule(20), 4e-3, rtol=1e-6)
  np.testing.assert_allclose(schedule(49), 4e-3, rtol=1e-6)
  np.testing.assert_allclose(schedule(50), 4e-4, rtol=1e-6)


def test_warmup_cosine():
  spe, total, warm = 10, 200, 20
  schedule = optim.make_schedule(_opt(schedule='cosine', warmup_epochs=2.0), spe, total)
  for step in (0, 5, 20, 60, 150, 200):
    if step < warm:
      want = 4e-3 * step / warm
    else:
      want = 4e-3 * 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))
    np.testing.assert_allclose(schedule(step), want, rtol=1e-5, atol=1e-10, err_msg=str(step))


def test_adam_step_and_clipping_match_the_formula():
  g = {'w': jnp.array([3.0, -4.0])}                 # global norm 5
  p = {'w': jnp.array([1.0, 1.0])}
  for clip in (0.0, 1.0):
    tx, _ = optim.make_optimizer(_opt(grad_clip=clip, schedule='constant'), 1, 10)
    updates, _ = tx.update(g, tx.init(p), p)
    gc = np.array([3.0, -4.0]) * (min(1.0, clip / 5.0) if clip else 1.0)
    # First Adam step, bias-corrected: m̂ = g, v̂ = g², update = −lr·g/(|g| + eps).
    np.testing.assert_allclose(updates['w'], -4e-3 * gc / (np.abs(gc) + 1e-8), rtol=1e-5)


def test_unknown_choices_fail_clearly():
  with pytest.raises(ValueError, match='schedule'):
    optim.make_schedule(_opt(schedule='poly'), 1, 10)
  with pytest.raises(ValueError, match='adam'):
    optim.make_optimizer(_opt(name='sgd'), 1, 10)
