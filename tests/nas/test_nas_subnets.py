"""Random subnets: the extracted standalone model equals the masked supernet; size, MACs, compile count.

Parameter and MAC counts are also checked against closed-form oracles written from the spec's counting
convention (nas spec §4: ptflops ≤ 0.6.8; reference spec a.5), themselves checked on the fixture's MACs.
"""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from litepose_jax import models, nas

NUM_SUBNETS = 20   # the count (20 random subnets)
SIZES = (64, 32)      # subnets alternate between the two: the masked supernet compiles once for each
# The 20 extracted fixed models are 20 different programs; XLA's cheapest optimisation level compiles
# them ~2x faster (the results are float32 either way).
_FAST_COMPILE = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}


def oracle_params(sub: nas.Subnet, k: int) -> int:
  """Parameters (convs without bias; BN scale and bias) by the spec's layer list (a.1, a.2)."""
  c0, f, c = sub.stem, sub.deconv, sub.stages
  n = 27 * 32 + 2 * 32 + 9 * 32 + 2 * 32 + 32 * c0 + 2 * c0
  cin = c0
  for s, depth in enumerate((6, 8, 10, 10)):
    for b in range(depth):
      h = 6 * cin
      n += cin * h + 2 * h + 49 * h + 2 * h + h * c[s] + 2 * c[s]
      cin = c[s]
  for fi, (ref_in, raw_in) in zip(f, ((c[3], c[2]), (f[0], c[1]), (f[1], c[0]))):
    n += 16 * fi * (ref_in + raw_in) + 2 * fi
  for cin, out in ((f[1], 2 * k), (c[0], 2 * k), (f[2], k), (c0, k)):
    n += 25 * cin + 2 * cin + cin * out
  return n


def oracle_macs(sub: nas.Subnet, k: int) -> int:
  """Published MACs: conv k²·in·out/groups·H'W' (stride-2 transposed convs at their output size),
  BN 2·numel, ReLU/ReLU6 numel, residual adds not counted; batch 1 at img_size."""
  i = sub.img_size
  c0, f, c = sub.stem, sub.deconv, sub.stages
  px = lambda d: (i // d) ** 2   # noqa: E731  pixels at 1/d resolution
  m = (27 * 32 + 3 * 32) * px(2) + (9 * 32 + 3 * 32) * px(2) + (32 * c0 + 2 * c0) * px(2)
  cin, res = c0, 2
  for s, (depth, stride) in enumerate(zip((6, 8, 10, 10), (2, 2, 2, 1))):
    for b in range(depth):
      h, out_res = 6 * cin, res * (stride if b == 0 else 1)
      m += (cin * h + 3 * h) * px(res) + (49 * h + 3 * h) * px(out_res) + (h * c[s] + 2 * c[s]) * px(out_res)
      cin, res = c[s], out_res
  for fi, (ref_in, raw_in), d in zip(f, ((c[3], c[2]), (f[0], c[1]), (f[1], c[0])), (8, 4, 2)):
    m += (16 * fi * (ref_in + raw_in) + 3 * fi) * px(d)
  for cin, out, d in ((f[1], 2 * k, 4), (c[0], 2 * k, 4), (f[2], k, 2), (c0, k, 2)):
    m += (25 * cin + 3 * cin + cin * out) * px(d)
  return m


def test_oracles_reproduce_fixture_macs_and_published_params(supernet_ref):
  k = int(supernet_ref['meta/num_joints'])
  for c in supernet_ref['meta/config_names']:
    sub = nas.subnet_from_arch(str(supernet_ref[f'{c}/arch_json']))
    assert oracle_macs(sub, k) == round(float(supernet_ref[f'{c}/macs_gmac_ptflops06']) * 1e9), c
  # Reference spec a.5: LitePose-L (a subnet of this space) has 5,738,120 parameters with K = 14.
  assert oracle_params(nas.subnet_from_arch(models.ARCHS['l'].to_json()), 14) == 5_738_120


@pytest.fixture(scope='module')
def random_runs(supernet_vars):
  """NUM_SUBNETS seeded uniform subnets, alternating over SIZES, through one jitted masked forward."""
  traces = collections.Counter()

  def forward(variables, masks, images):
    traces[images.shape] += 1       # Python body: runs once per trace, i.e. per compile
    return nas.apply_masked(variables, masks, images)

  fwd = jax.jit(forward)
  rng = np.random.default_rng(2024)
  xs = [jnp.asarray(rng.normal(size=(1, s, s, 3)), jnp.float32) for s in SIZES]
  subnets = [nas.sample_uniform(rng) for _ in range(NUM_SUBNETS)]
  inputs = [xs[i % len(SIZES)] for i in range(NUM_SUBNETS)]
  outs = [jax.device_get(fwd(supernet_vars, nas.subnet_masks(s), x)) for s, x in zip(subnets, inputs)]
  return dict(fwd=fwd, traces=traces, inputs=inputs, subnets=subnets, outs=outs)


def test_extracted_subnets_equal_masked_supernet(supernet_vars, random_runs):
  k = nas.num_keypoints_of(supernet_vars)
  assert len(set(random_runs['subnets'])) == NUM_SUBNETS
  for sub, x, (s0, s1) in zip(random_runs['subnets'], random_runs['inputs'], random_runs['outs']):
    arch_json, variables = nas.extract(supernet_vars, sub)
    model = models.create(arch_json, k, depthwise_impl='xla')
    fn = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, x)
    f0, f1 = fn.compile(_FAST_COMPILE)(variables, x)
    size = x.shape[1]
    assert f0.shape == (1, size // 4, size // 4, 2 * k) and f1.shape == (1, size // 2, size // 2, k)
    d = max(np.abs(np.asarray(f0) - s0).max(), np.abs(np.asarray(f1) - s1).max())
    assert d <= 1e-5, (sub, d)
    assert np.abs(s0).max() > 1e-2, sub     # not trivially zero


def test_extracted_size_and_macs_match_model_info(supernet_vars, random_runs):
  k = nas.num_keypoints_of(supernet_vars)
  for sub in random_runs['subnets']:
    _, variables = nas.extract(supernet_vars, sub)
    n = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables['params']))
    assert n == sub.params(k) == oracle_params(sub, k), sub     # sub.params / sub.macs: model_info
    assert sub.macs(k) == oracle_macs(sub, k), sub


def test_masked_supernet_compiles_once_per_resolution(supernet_vars, random_runs):
  fwd, traces = random_runs['fwd'], random_runs['traces']
  assert traces == {(1, s, s, 3): 1 for s in SIZES}
  assert fwd._cache_size() == len(SIZES)
