"""BN re-calibration against NumPy oracles over the same batches (OFA's definition, see `recalibrate`).

Oracle 1 (pure NumPy): the stem's three BNs (3x3 conv → BN → ReLU6 → 3x3 depthwise → BN → ReLU6 → 1x1 →
BN, train-mode normalisation with batch statistics), per-batch mean and biased variance, image-weighted.
Oracle 2 (every BN): the extracted fixed model in train mode with its running statistics set to 0: after
one batch PyTorch's update leaves 0.1·mean and 0.1·unbiased variance, from which the per-batch moments
follow; averaged in NumPy.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from litepose_jax import models, nas
from litepose_jax.models import layers
from litepose_jax.nas import slicing

BATCH_SIZES = (2, 1, 2)   # unequal: image weighting (2:1:2) differs from a plain mean over batches
SIZE = 64


def _conv_np(x, w, stride, groups=1):
  """NHWC conv, HWIO kernel (depthwise: [k,k,C]), padding k//2, float64."""
  k = w.shape[0]
  p = k // 2
  xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  ho = (x.shape[1] + 2 * p - k) // stride + 1
  wo = (x.shape[2] + 2 * p - k) // stride + 1
  out = 0
  for i in range(k):
    for j in range(k):
      patch = xp[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
      out = out + (patch * w[i, j] if groups > 1 else patch @ w[i, j])
  return out


def _bn_train_np(x, scale, bias):
  mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
  return (x - mean) / np.sqrt(var + 1e-5) * scale + bias, mean, var


@pytest.fixture(scope='module')
def setup(supernet_ref, supernet_vars):
  sub = nas.subnet_from_arch(str(supernet_ref['mixed/arch_json']))
  rng = np.random.default_rng(5)
  batches = [rng.normal(size=(b, SIZE, SIZE, 3)).astype(np.float32) for b in BATCH_SIZES]
  return sub, batches, nas.recalibrate(supernet_vars, sub, batches)


def test_stem_matches_numpy_oracle(supernet_vars, setup):
  sub, batches, out = setup
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), supernet_vars['params'])
  sums = {n: [0, 0] for n in ('stem_conv', 'stem_dw', 'stem_proj')}
  for x in batches:
    h, m1, v1 = _bn_train_np(_conv_np(x.astype(np.float64), p['stem_conv']['conv']['kernel'], 2),
                             p['stem_conv']['bn']['scale'], p['stem_conv']['bn']['bias'])
    h, m2, v2 = _bn_train_np(_conv_np(np.clip(h, 0, 6), p['stem_dw']['conv']['kernel'], 1, groups=32),
                             p['stem_dw']['bn']['scale'], p['stem_dw']['bn']['bias'])
    y = np.clip(h, 0, 6) @ p['stem_proj']['conv']['kernel'][0, 0]
    m3, v3 = y.mean((0, 1, 2)), y.var((0, 1, 2))
    for name, m, v in (('stem_conv', m1, v1), ('stem_dw', m2, v2), ('stem_proj', m3, v3)):
      sums[name][0] = sums[name][0] + len(x) * m
      sums[name][1] = sums[name][1] + len(x) * v
  n = sum(BATCH_SIZES)
  for name, (sm, sv) in sums.items():
    got = out['batch_stats'][name]['bn']
    c = sub.stem if name == 'stem_proj' else 32
    np.testing.assert_allclose(got['mean'][:c], sm[:c] / n, rtol=1e-5, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(got['var'][:c], sv[:c] / n, rtol=1e-5, atol=1e-5, err_msg=name)
  old = supernet_vars['batch_stats']['stem_proj']['bn']
  np.testing.assert_array_equal(out['batch_stats']['stem_proj']['bn']['mean'][sub.stem:], old['mean'][sub.stem:])


def _bn_nodes(tree, prefix=''):
  """{'a/b/bn': {'mean', 'var'}} for a batch_stats tree."""
  out = {}
  for key, value in tree.items():
    path = f'{prefix}/{key}' if prefix else key
    out.update({path: value} if 'mean' in value else _bn_nodes(value, path))
  return out


def _bn_sample_counts(model, variables, x):
  """{'a/b/bn': values per channel it normalises (B·H'·W')} for one forward of `model` on x."""
  counts = {}

  def interceptor(next_fun, args, kwargs, context):
    if isinstance(context.module, layers.BatchNorm) and context.method_name == '__call__':
      counts['/'.join(context.module.scope.path)] = int(np.prod(args[0].shape[:-1]))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  return counts


def test_every_bn_matches_fixed_model_oracle(supernet_vars, setup):
  sub, batches, out = setup
  arch_json, fixed = nas.extract(supernet_vars, sub)
  zeroed = {'params': fixed['params'], 'batch_stats': jax.tree.map(np.zeros_like, fixed['batch_stats'])}
  model = models.create(arch_json, nas.num_keypoints_of(supernet_vars), depthwise_impl='xla')
  step = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats'])[1]['batch_stats'])
  sums = {}
  for x in batches:
    counts = _bn_sample_counts(model, fixed, x)
    for path, node in _bn_nodes(jax.device_get(step(zeroed, jnp.asarray(x)))).items():
      n = counts[path]
      mean = np.float64(node['mean']) / 0.1                    # running = 0.9·0 + 0.1·batch
      biased = np.float64(node['var']) / 0.1 * (n - 1) / n     # the update used the unbiased variance
      acc = sums.setdefault(path, [0, 0])
      acc[0], acc[1] = acc[0] + len(x) * mean, acc[1] + len(x) * biased
  total = sum(BATCH_SIZES)
  got = _bn_nodes(nas.extract(out, sub)[1]['batch_stats'])
  assert got.keys() == sums.keys() and len(got) > 100
  for path, (sum_mean, sum_var) in sums.items():
    np.testing.assert_allclose(got[path]['mean'], sum_mean / total, rtol=1e-4, atol=1e-5, err_msg=path)
    np.testing.assert_allclose(got[path]['var'], sum_var / total, rtol=1e-4, atol=1e-5, err_msg=path)


def test_masked_channels_and_params_untouched(supernet_vars, setup):
  sub, _, out = setup
  assert out['params'] is supernet_vars['params']
  widths = slicing.module_widths(sub)
  old = dict(jax.tree_util.tree_flatten_with_path(supernet_vars['batch_stats'])[0])
  for path, new in jax.tree_util.tree_flatten_with_path(out['batch_stats'])[0]:
    width = widths['/'.join(p.key for p in path[:-1])][1]
    if width is not None:
      np.testing.assert_array_equal(new[width:], old[path][width:])
    assert not np.array_equal(new, old[path])
