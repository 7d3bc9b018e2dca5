"""The Flax LitePose against the authors' PyTorch network (reference fixtures) and the spec's formulas."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from litepose_jax import convert, models
from litepose_jax.models import layers


def _reference_files(reference_dir):
  files = sorted(reference_dir.glob('litepose_*_reference.npz'))
  assert files, f'no litepose_*_reference.npz in {reference_dir}'
  return files


def _nchw(x):
  return np.asarray(x).transpose(0, 3, 1, 2)


@pytest.fixture(scope='module')
def reference_runs(reference_dir):
  """For every reference file (any arch, any K): the fixture and our outputs with converted weights."""
  runs = []
  for path in _reference_files(reference_dir):
    z = dict(np.load(path))
    arch = models.Arch.from_json(str(z['arch_json']))
    k = z['out_eval_1'].shape[1]
    variables = convert.torch_to_flax(convert.load_state_dict(path), arch, k)
    model = models.create(arch, k)
    x = jnp.asarray(z['input'].transpose(0, 2, 3, 1))
    eval_fn = jax.jit(lambda v, x: model.apply(v, x, train=False, return_features=True))
    train_fn = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))
    (o0, o1), feats = eval_fn(variables, x)
    (t0, t1), updated = train_fn(variables, x)
    runs.append(dict(name=path.name, z=z, eval=(o0, o1), feats=feats, train=(t0, t1),
                     stats=updated['batch_stats']))
  return runs


def test_eval_outputs_match_reference(reference_runs):
  for r in reference_runs:
    for i in (0, 1):
      diff = np.abs(_nchw(r['eval'][i]) - r['z'][f'out_eval_{i}']).max()
      assert diff <= 1e-4, (r['name'], i, diff)


def test_features_match_reference(reference_runs):
  for r in reference_runs:
    for name, feat in r['feats'].items():
      diff = np.abs(_nchw(feat) - r['z'][f'feat_{name}']).max()
      assert diff <= 1e-4, (r['name'], name, diff)


def test_train_mode_outputs_and_running_stats_match_reference(reference_runs):
  for r in reference_runs:
    for i in (0, 1):
      diff = np.abs(_nchw(r['train'][i]) - r['z'][f'out_train_{i}']).max()
      assert diff <= 1e-3, (r['name'], i, diff)
    first_bn = r['stats']['stem_conv']['bn']
    # PyTorch updates the running variance with the unbiased batch variance; a biased update would be off
    # by n/(n-1) - 1 = 3e-5 relative here and fail the 1e-5 bound on large variances.
    np.testing.assert_allclose(first_bn['mean'], r['z']['train_bn_first_running_mean_after'], atol=1e-5)
    np.testing.assert_allclose(first_bn['var'], r['z']['train_bn_first_running_var_after'], atol=1e-5)


@pytest.mark.parametrize('arch,params', [('xs', 1_675_552), ('s', 2_731_240), ('m', 3_533_808),
                                         ('l', 5_738_120)])
def test_parameter_counts_match_published(arch, params):
  model = models.create(arch, 14)
  shapes = jax.eval_shape(lambda: models.init_variables(model, jax.random.PRNGKey(0), 64))
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes['params'])) == params


@pytest.mark.parametrize('arch', ['xs', 's', 'm', 'l'])
def test_output_shapes_and_channel_layout(arch):
  model = models.create(arch, 17)
  size = models.ARCHS[arch].img_size
  out = jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0),
                                                      jnp.zeros((2, size, size + 64, 3)))[0])
  assert out[0].shape == (2, size // 4, (size + 64) // 4, 34)
  assert out[1].shape == (2, size // 2, (size + 64) // 2, 17)


def test_arch_json_round_trip_and_authors_format(reference_dir):
  z = np.load(_reference_files(reference_dir)[0])
  authors = json.loads(str(z['arch_json']))
  parsed = models.Arch.from_json(authors, name='xs')
  assert parsed == models.ARCHS['xs']
  for arch in models.ARCHS.values():
    assert models.Arch.from_json(arch.to_json(), name=arch.name) == arch
  assert models.get_arch('search-XS') is models.ARCHS['xs']


def test_make_divisible_follows_spec_formula():
  for v in range(1, 400):
    for t in (1, 3, 6):
      x = v * t / 2.5
      expect = max(8, int(x + 4) // 8 * 8)
      expect += 8 if expect < 0.9 * x else 0
      assert models.make_divisible(x) == expect


def test_bad_architecture_and_input_errors(tmp_path):
  with pytest.raises(ValueError, match='unknown architecture'):
    models.get_arch('xxl')
  bad = tmp_path / 'arch.json'
  bad.write_text('{"img_size": 256}')
  with pytest.raises(ValueError, match='missing field'):
    models.get_arch(str(bad))
  model = models.create('xs', 14)
  with pytest.raises(ValueError, match='divisible by 16'):
    jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 100, 128, 3))))


def _transposed_conv_numpy(x, w, g):
  """spec a.1 in NumPy: y[o, 2i-1+a, 2j-1+b] += sum_c x[c, i, j] W[c, o, a, b], cropped to [0, 2H) x [0, 2W).

  Also the two gradients of sum(y * g), written from the same index map (x and g NHWC, w PyTorch
  (Cin, Cout, 4, 4)): dx[i, j, c] = sum_{a,b,o} g[2i-1+a, 2j-1+b, o] W[c, o, a, b] and
  dW[c, o, a, b] = sum_{n,i,j} x[n, i, j, c] g[n, 2i-1+a, 2j-1+b, o], out-of-range positions dropped.
  """
  n, h, wd, _ = x.shape
  y = np.zeros((n, 2 * h + 2, 2 * wd + 2, w.shape[1]), np.float64)  # index shifted by +1
  gp = np.pad(g, ((0, 0), (1, 1), (1, 1), (0, 0)))
  dx, dw = np.zeros(x.shape, np.float64), np.zeros(w.shape, np.float64)
  for i in range(h):
    for j in range(wd):
      for a in range(4):
        for b in range(4):
          y[:, 2 * i + a, 2 * j + b] += np.einsum('nc,co->no', x[:, i, j], w[:, :, a, b])
          dx[:, i, j] += np.einsum('no,co->nc', gp[:, 2 * i + a, 2 * j + b], w[:, :, a, b])
          dw[:, :, a, b] += np.einsum('nc,no->co', x[:, i, j], gp[:, 2 * i + a, 2 * j + b])
  return y[:, 1:-1, 1:-1], dx, dw


@pytest.mark.parametrize('impl', ['xla', 'shift'])
def test_deconv_equals_transposed_conv_formula(impl):
  # Both forms: 'xla' (native transposed conv: GPU/TPU, export) and 'shift' (2x2 window conv: CPU).
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 5, 6, 3))
  w = rng.normal(size=(3, 4, 4, 4))  # PyTorch (Cin, Cout, 4, 4)
  g = rng.normal(size=(2, 10, 12, 4))
  want = _transposed_conv_numpy(x, w, g)
  fn = jax.jit(lambda a, b, c: (lambda y, vjp: (y,) + vjp(c))(*jax.vjp(
      lambda p, q: layers.deconv_2x_sum((p,), (q,), impl), a, b)))
  y, dx, dk = fn(jnp.asarray(x, jnp.float32), jnp.asarray(w.transpose(2, 3, 0, 1), jnp.float32),
                 jnp.asarray(g, jnp.float32))
  for name, got, ref in (('y', y, want[0]), ('dx', dx, want[1]),
                         ('dW', np.asarray(dk).transpose(2, 3, 0, 1), want[2])):
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-4, err_msg=f'{impl} {name}')


@pytest.mark.parametrize('impl', ['xla', 'shift'])
def test_deconv_sum_equals_sum_of_transposed_convs(impl):
  # The fusion head's refined + raw deconvs ('shift': one window conv over the concatenated inputs).
  rng = np.random.default_rng(1)
  xs = [rng.normal(size=(2, 5, 6, c)) for c in (3, 2)]
  ws = [rng.normal(size=(c, 4, 4, 4)) for c in (3, 2)]   # PyTorch (Cin, Cout, 4, 4)
  g = rng.normal(size=(2, 10, 12, 4))
  want = [_transposed_conv_numpy(x, w, g) for x, w in zip(xs, ws)]
  fn = jax.jit(lambda a, b, c: (lambda y, vjp: (y,) + vjp(c))(*jax.vjp(
      lambda p, q: layers.deconv_2x_sum(p, q, impl), a, b)))
  y, dxs, dks = fn([jnp.asarray(x, jnp.float32) for x in xs],
                   [jnp.asarray(w.transpose(2, 3, 0, 1), jnp.float32) for w in ws],
                   jnp.asarray(g, jnp.float32))
  np.testing.assert_allclose(np.asarray(y), want[0][0] + want[1][0], rtol=1e-5, atol=1e-4)
  for i in range(2):
    np.testing.assert_allclose(np.asarray(dxs[i]), want[i][1], rtol=1e-5, atol=1e-4, err_msg=f'dx{i}')
    np.testing.assert_allclose(np.asarray(dks[i]).transpose(2, 3, 0, 1), want[i][2], rtol=1e-5, atol=1e-4,
                               err_msg=f'dW{i}')


def test_wrong_parameter_shape_names_the_parameter():
  # layers.param checks stored shapes itself (Flax's own check re-traces the initialiser at every apply).
  model = models.create('xs', 14, depthwise_impl='xla')
  v = jax.eval_shape(lambda: models.init_variables(model, jax.random.PRNGKey(0), 64))
  v = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), v)
  v['params']['stage2_block1']['depthwise']['conv']['kernel'] = jnp.zeros((5, 5, 192))
  with pytest.raises(ValueError, match=r'stage2_block1/depthwise/conv/kernel has shape \(5, 5, 192\), '
                                       r'the layer needs \(7, 7, 192\)'):
    model.apply(v, jnp.zeros((1, 64, 64, 3)))


def test_default_init_follows_pytorch_bounds():
  # 'xla' layers: init runs the forward op by op, and the native convs are far fewer ops (same params).
  model = models.create('xs', 14, depthwise_impl='xla')
  params = models.init_variables(model, jax.random.PRNGKey(0), 64)['params']
  # conv 3->32 3x3: fan_in 27; depthwise 7x7: fan_in 49; deconv (Cin 80 -> Cout 16): fan_in = 16*16.
  for path, fan_in in ((('stem_conv', 'conv', 'kernel'), 27),
                       (('stage1_block0', 'depthwise', 'conv', 'kernel'), 49),
                       (('deconv_refined0', 'kernel'), 16 * 16)):
    w = params
    for p in path:
      w = w[p]
    bound = 1 / np.sqrt(fan_in)
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.9 * bound
  bn = params['stem_conv']['bn']
  assert np.all(bn['scale'] == 1) and np.all(bn['bias'] == 0)


def test_final_init_scale_shrinks_only_the_output_convs():
  from configs import tiny  # a small architecture: init traces the whole network twice
  arch = json.loads(tiny.get_config().model.arch)
  default = models.init_variables(models.create(arch, 14, depthwise_impl='xla'), jax.random.PRNGKey(0),
                                  64)['params']
  small = models.init_variables(models.create(arch, 14, depthwise_impl='xla', final_init_scale=0.01),
                                jax.random.PRNGKey(0), 64)['params']
  flat_d = dict(jax.tree_util.tree_flatten_with_path(default)[0])
  flat_s = dict(jax.tree_util.tree_flatten_with_path(small)[0])
  assert flat_d.keys() == flat_s.keys()
  scaled = 0
  for path, w in flat_d.items():
    names = [p.key for p in path]
    if names[0].startswith('final_') and names[1] == 'pointwise':
      # U(-b, b) scaled: the same draw times 0.01 (fan_in = input channels of the 1x1 conv).
      np.testing.assert_allclose(flat_s[path], 0.01 * np.asarray(w), rtol=1e-6, atol=1e-9)
      assert np.abs(flat_s[path]).max() <= 0.01 / np.sqrt(w.shape[2])
      scaled += 1
    else:
      np.testing.assert_array_equal(flat_s[path], w, err_msg=str(names))
  assert scaled == 4


def test_bfloat16_compute_keeps_float32_params_and_tracks_float32(reference_runs):
  r = reference_runs[0]
  arch = models.Arch.from_json(str(r['z']['arch_json']))
  k = r['z']['out_eval_1'].shape[1]
  variables = convert.torch_to_flax({k_[3:]: r['z'][k_] for k_ in r['z'] if k_.startswith('sd/')}, arch, k)
  model = models.create(arch, k, dtype='bfloat16')
  x = jnp.asarray(r['z']['input'][:1].transpose(0, 2, 3, 1))
  o0, o1 = jax.jit(lambda v, x: model.apply(v, x))(variables, x)
  assert o0.dtype == jnp.float32
  ref = r['z']['out_eval_0'][:1]
  rel = np.abs(_nchw(o0) - ref).mean() / np.abs(ref).mean()
  assert rel < 0.05, rel
