"""model.bn_group_size: BatchNorm statistics over groups of G consecutive images (per-GPU BN, as the authors).

Oracles: NumPy BatchNorm of each group on its own (forward), the same layer applied to each group
separately (gradients: the loss of the whole batch is the sum of the groups' losses), the momentum update
with the mean of the groups' mean and unbiased variance (running statistics). Sharded: the same checks
with the batch split over 4 fake CPU devices (a subprocess: the device count is fixed at JAX start).
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
B, G, H, C = 32, 16, 4, 8
EPS, MOM = 1e-5, 0.1


def _numpy_bn(x, scale, bias):
  mean = x.mean((0, 1, 2))
  var = x.var((0, 1, 2))
  return (x - mean) / np.sqrt(var + EPS) * scale + bias, mean, var * (x[..., 0].size / (x[..., 0].size - 1))


def _check(sharded: bool = False) -> dict:
  """Max |differences| of the grouped layer against the oracles (module doc)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from litepose_jax.models import layers  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  x = (rng.normal(size=(B, H, H, C)) * rng.uniform(0.5, 2, C) + np.arange(B)[:, None, None, None] / 8
       ).astype(np.float32)   # the two halves have different statistics
  w = rng.normal(size=x.shape).astype(np.float32)
  scale, bias = rng.uniform(0.5, 1.5, C).astype(np.float32), rng.normal(size=C).astype(np.float32)
  stats0 = {'mean': rng.normal(size=C).astype(np.float32), 'var': rng.uniform(0.5, 2, C).astype(np.float32)}
  params = {'scale': scale, 'bias': bias}

  def run(group, xs, ws=w):
    bn = layers.BatchNorm(group_size=group)

    def loss(p, xs):
      y, upd = bn.apply({'params': p, 'batch_stats': stats0}, xs, True, mutable=['batch_stats'])
      return jnp.sum(y * ws), (y, upd['batch_stats'])
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, xs)

  xs = x
  if sharded:
    from litepose_jax.train import sharding  # pylint: disable=g-import-not-at-top
    mesh = sharding.make_mesh()
    assert mesh.devices.size == 4
    xs = jax.device_put(x, sharding.batch_sharding(mesh))
  (_, (y, stats)), (gp, gx) = run(G, xs)
  out = {}
  # Forward against NumPy, group by group.
  parts = [_numpy_bn(x[i:i + G].astype(np.float64), scale, bias) for i in range(0, B, G)]
  out['forward'] = float(np.max(np.abs(np.asarray(y) - np.concatenate([p[0] for p in parts]))))
  want_mean = (1 - MOM) * stats0['mean'] + MOM * np.mean([p[1] for p in parts], 0)
  want_var = (1 - MOM) * stats0['var'] + MOM * np.mean([p[2] for p in parts], 0)
  out['running'] = max(float(np.max(np.abs(np.asarray(stats['mean']) - want_mean))),
                       float(np.max(np.abs(np.asarray(stats['var']) - want_var))))
  # Gradients: the sum over groups of independent whole-batch BN passes.
  halves = [run(0, x[i:i + G], w[i:i + G]) for i in range(0, B, G)]
  want_gx = np.concatenate([np.asarray(h[1][1]) for h in halves])
  out['grad_x'] = float(np.max(np.abs(np.asarray(gx) - want_gx)))
  out['grad_params'] = max(float(np.max(np.abs(np.asarray(gp[k]) - sum(np.asarray(h[1][0][k]) for h in halves))))
                           for k in ('scale', 'bias'))
  # G = batch is today's BN (and 0), exactly.
  (_, (y_b, st_b)), (gp_b, gx_b) = run(B, xs)
  (_, (y_0, st_0)), (gp_0, gx_0) = run(0, xs)
  out['g_batch_vs_0'] = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(
      jax.tree.leaves((y_b, st_b, gp_b, gx_b)), jax.tree.leaves((y_0, st_0, gp_0, gx_0))))
  out['grouping_matters'] = float(np.max(np.abs(np.asarray(y) - np.asarray(y_0))))
  return out


def _assert_close(d):
  print(d)
  assert d['grouping_matters'] > 0.1
  assert d['g_batch_vs_0'] == 0.0
  assert d['forward'] <= 2e-5 and d['running'] <= 1e-5
  assert d['grad_x'] <= 1e-5 and d['grad_params'] <= 1e-4


def test_grouped_bn_unsharded():
  _assert_close(_check())


def test_grouped_bn_sharded_over_four_devices():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4', JAX_PLATFORMS='cpu',
             CUDA_VISIBLE_DEVICES='')
  proc = subprocess.run([sys.executable, '-m', 'tests.test_bn_groups'], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  _assert_close(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_model_bn_group_size_reaches_every_batchnorm():
  """LitePose(bn_group_size=G): G = batch equals the default; G = half the batch changes the outputs,
  and an odd group size is refused."""
  import jax  # pylint: disable=g-import-not-at-top
  import pytest  # pylint: disable=g-import-not-at-top
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from litepose_jax import from_config  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  model = from_config.create_model(config)
  x = np.random.default_rng(0).normal(size=(4, 64, 64, 3)).astype(np.float32)
  x[2:] *= 3
  variables = model.init(jax.random.key(0), x[:1])

  def fwd(g):
    with config.unlocked():
      config.model.bn_group_size = g
    m = from_config.create_model(config)
    return m.apply(variables, x, True, mutable=['batch_stats'])

  (o0, s0), (o4, s4), (o2, s2) = fwd(0), fwd(4), fwd(2)
  for a, b in zip(jax.tree.leaves((o0, s0)), jax.tree.leaves((o4, s4))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(o0, o2)) > 1e-3
  with pytest.raises(ValueError, match='does not divide'):
    fwd(3)


if __name__ == '__main__':
  print(json.dumps(_check(sharded=True)))
