"""Search space, architecture JSON, MACs and the sampler against the nas spec §1 and the authors' fixture."""

import collections
import json

import numpy as np
import pytest

from litepose_jax import nas
from litepose_jax.nas import sampler, space


def test_choice_sets_follow_spec_table():
  # nas spec §1, written out (w = 1, .75, .5, .25).
  assert nas.CHOICES == {
      'img_size': (256, 320, 384, 448, 512), 'stem': (24, 24, 16, 8), 'deconv0': (64, 48, 32, 16),
      'deconv1': (48, 40, 24, 16), 'deconv2': (32, 24, 16, 8), 'stage1': (32, 24, 16, 8),
      'stage2': (64, 48, 32, 16), 'stage3': (96, 72, 48, 24), 'stage4': (160, 120, 80, 40)}


def test_fixture_configs_round_trip(supernet_ref):
  names = list(supernet_ref['meta/config_names'])
  assert names, 'fixture lists no configs'
  for c in names:
    arch = json.loads(str(supernet_ref[f'{c}/arch_json']))
    sub = nas.subnet_from_arch(arch)
    assert sub.to_arch_json() == arch, c
    assert nas.Subnet.from_choices(supernet_ref[f'{c}/choices']) == sub, c
    mults = [nas.WIDTH_MULTS[i] for i in supernet_ref[f'{c}/choices'][1:]]
    np.testing.assert_array_equal(np.float32(mults), supernet_ref[f'{c}/width_mults'])
  assert nas.subnet_from_arch(json.loads(str(supernet_ref['max/arch_json']))) == nas.LARGEST
  assert nas.subnet_from_arch(json.loads(str(supernet_ref['min/arch_json']))) == nas.SMALLEST


def test_macs_match_fixture_and_spec_range(supernet_ref):
  k = int(supernet_ref['meta/num_joints'])
  for c in supernet_ref['meta/config_names']:
    sub = nas.subnet_from_arch(str(supernet_ref[f'{c}/arch_json']))
    assert sub.macs(k) == round(float(supernet_ref[f'{c}/macs_gmac_ptflops06']) * 1e9), c
  assert round(nas.SMALLEST.macs(14) / 1e9, 4) == 0.4178
  assert round(nas.LARGEST.macs(14) / 1e9, 4) == 15.2798


def test_out_of_space_architectures_are_rejected(supernet_ref):
  with pytest.raises(ValueError, match='depths'):
    nas.subnet_from_arch(str(supernet_ref['authors_sample/arch_json']))   # the released 4/6/8/8 depth
  arch = json.loads(str(supernet_ref['mixed/arch_json']))
  arch['backbone_setting'][1]['channel'] = 40
  with pytest.raises(ValueError, match='stage2 = 40'):
    nas.subnet_from_arch(arch)
  with pytest.raises(ValueError, match='img_size = 288'):
    nas.Subnet(288, 24, (64, 48, 32), (32, 64, 96, 160))


def test_uniform_sampler_is_seeded_and_uniform_per_gene():
  a = [sampler.sample_uniform(np.random.default_rng(7)) for _ in range(3)]
  b = [sampler.sample_uniform(np.random.default_rng(7)) for _ in range(3)]
  assert a == b
  rng = np.random.default_rng(0)
  n = 4000
  draws = [sampler.sample_uniform(rng).genes() for _ in range(n)]
  for g, choices in nas.CHOICES.items():
    counts = collections.Counter(d[g] for d in draws)
    for v in set(choices):
      p = choices.count(v) / len(choices)          # repeated widths keep their multiplicity (C0 24: 1/2)
      assert abs(counts[v] / n - p) < 4 * np.sqrt(p * (1 - p) / n), (g, v, counts[v])


def test_sandwich_rule():
  s = sampler.Sampler(3, rule='sandwich', num_random=2)
  step = s()
  assert step[:2] == [nas.LARGEST, nas.SMALLEST] and len(step) == 4
  assert nas.LARGEST.img_size == 512 and nas.SMALLEST.img_size == 256
  assert sampler.Sampler(3, rule='sandwich', num_random=2)() == step
  assert len(sampler.Sampler(3)()) == 1
  with pytest.raises(ValueError, match='rule'):
    sampler.Sampler(0, rule='largest')
