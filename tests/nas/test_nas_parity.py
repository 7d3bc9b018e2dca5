"""The masked supernet against the authors' supernet (fixture supernet_reference.npz, nas spec §2, §9).

Every configuration in meta/config_names (max, min, mixed in the public file; other ones in a hold-out)
runs through the same code: eval at 128 and 192 px, one train-mode forward, BN running statistics after
it, and the extracted subnet against the authors' own weight transfer.
"""

import json

import jax
import numpy as np
import pytest

from litepose_jax import convert, nas
from litepose_jax.nas import slicing


def _configs(ref):
  return [str(c) for c in ref['meta/config_names']]


@pytest.fixture(scope='module')
def runs(supernet_ref, supernet_vars):
  """Per config: eval outputs at 128/192 px, train outputs and batch_stats at 128 px."""
  out = {}
  for c in _configs(supernet_ref):
    sub = nas.subnet_from_arch(json.loads(str(supernet_ref[f'{c}/arch_json'])))
    r = {'subnet': sub}
    for size in (128, 192):
      r[f'eval_{size}'] = jax.device_get(nas.apply_subnet(supernet_vars, sub, supernet_ref[f'input_{size}']))
    outs, stats = nas.apply_subnet(supernet_vars, sub, supernet_ref['input_128'], train=True)
    r['train_128'], r['stats'] = jax.device_get(outs), jax.device_get(stats)
    out[c] = r
  return out


def test_converter_maps_every_used_key_once(supernet_ref, supernet_sd, supernet_vars):
  keys = [str(k) for k in supernet_ref['sd_keys_in_order']]
  assert len(keys) == 815 and set(keys) == set(supernet_sd)
  mapped = {k for k, *_ in convert.key_map(nas.convert.supernet_arch())}
  unused = {k for k in keys if 'Linear' in k or k.endswith('num_batches_tracked')}
  assert mapped | unused == set(keys) and not mapped & unused
  # Converted shapes = the Supernet module's own variables.
  shapes = nas.apply.largest_shapes(int(supernet_ref['meta/num_joints']))
  got = jax.tree.map(lambda a: a.shape, supernet_vars)
  assert got == jax.tree.map(lambda s: s.shape, shapes)


def test_converter_errors_name_the_key(supernet_sd):
  sd = dict(supernet_sd)
  del sd['stage.3.9.depth_conv.1.running_var']
  with pytest.raises(nas.ConversionError, match=r"missing key 'stage.3.9.depth_conv.1.running_var'"):
    nas.convert_supernet(sd, 14)
  sd = dict(supernet_sd)
  sd['deconv_raw.1.weight'] = sd['deconv_raw.1.weight'][:, :40]
  with pytest.raises(nas.ConversionError, match=r"shape mismatch at 'deconv_raw.1.weight'"):
    nas.convert_supernet(sd, 14)
  with pytest.raises(nas.ConversionError, match=r"final_refined.0.conv.3.weight"):
    nas.convert_supernet(supernet_sd, 17)   # K does not fit the 2K = 28 output conv


def test_eval_outputs_match_authors(supernet_ref, runs):
  for c, r in runs.items():
    for size in (128, 192):
      for i in (0, 1):
        diff = np.abs(r[f'eval_{size}'][i] - supernet_ref[f'{c}/eval_{size}_out{i}']).max()
        assert diff <= 1e-4, (c, size, i, diff)


def test_train_outputs_match_authors(supernet_ref, runs):
  for c, r in runs.items():
    for i in (0, 1):
      diff = np.abs(r['train_128'][i] - supernet_ref[f'{c}/train_128_out{i}']).max()
      assert diff <= 1e-3, (c, i, diff)


_BN_PATHS = {'first.0.1': ('stem_conv', 'bn'), 'first.3': ('stem_proj', 'bn'), 'deconv_bnrelu.2.0': ('deconv_bn2',)}


def test_running_stats_after_one_train_pass_match_authors(supernet_ref, runs):
  prefix = 'train_bn_after/'
  for c, r in runs.items():
    keys = [k for k in supernet_ref if k.startswith(f'{c}/{prefix}')]
    assert keys, c
    for key in keys:
      bn, field = key[len(f'{c}/{prefix}'):].rsplit('.', 1)
      node = r['stats']
      for part in _BN_PATHS[bn]:
        node = node[part]
      got = node[{'running_mean': 'mean', 'running_var': 'var'}[field]]
      np.testing.assert_allclose(got, supernet_ref[key], atol=1e-5, rtol=0, err_msg=key)


def test_masked_channels_keep_running_stats(supernet_vars, runs):
  # Beyond the three fixture BNs: every BN's entries past the subnet's width are unchanged.
  for c, r in runs.items():
    widths = slicing.module_widths(r['subnet'])
    flat_old = dict(jax.tree_util.tree_flatten_with_path(supernet_vars['batch_stats'])[0])
    for path, new in jax.tree_util.tree_flatten_with_path(r['stats'])[0]:
      names = [p.key for p in path]
      width = widths['/'.join(names[:-1])][1]
      old = flat_old[path]
      if width is not None:
        np.testing.assert_array_equal(new[width:], old[width:], err_msg=f'{c} {names}')
        assert np.all(new[:width] != old[:width]), (c, names)
      else:
        assert np.all(new != old), (c, names)


def test_extract_equals_authors_weight_transfer(supernet_ref, supernet_vars):
  arch_json, variables = nas.extract(supernet_vars, nas.subnet_from_arch(str(supernet_ref['mixed/arch_json'])))
  assert arch_json == json.loads(str(supernet_ref['mixed/arch_json']))
  xfer = {str(k): supernet_ref[f'mixed/xfer/{k}'] for k in supernet_ref['mixed/xfer_keys_in_order']}
  want = convert.torch_to_flax(xfer, arch_json, int(supernet_ref['meta/num_joints']))
  flat_want = jax.tree_util.tree_flatten_with_path(want)[0]
  flat_got = dict(jax.tree_util.tree_flatten_with_path(variables)[0])
  assert len(flat_got) == len(flat_want)
  for path, w in flat_want:
    np.testing.assert_array_equal(flat_got[path], w, err_msg=jax.tree_util.keystr(path))
