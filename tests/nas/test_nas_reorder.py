"""Channel re-ordering by importance (nas spec §3): the authors' permutations, the same function, and the
BatchNorm running statistics permuted with the weights (the authors' bug)."""

import numpy as np

from litepose_jax import nas
from litepose_jax.nas import reorder


def test_channel_order_is_the_authors(supernet_vars, supernet_ref):
  order = reorder.channel_order(supernet_vars)
  np.testing.assert_array_equal(order['stem'], supernet_ref['reorg/idx_first'])
  for s in range(3):
    np.testing.assert_array_equal(order[f'stage{s + 1}'], supernet_ref[f'reorg/idx_stage{s}'])


def _stats(variables, module):
  node = variables['batch_stats']
  for part in module.split('/'):
    node = node[part]
  return np.asarray(node['mean']), np.asarray(node['var'])


def test_reordered_supernet_computes_the_same_function(supernet_vars, supernet_ref):
  order = reorder.channel_order(supernet_vars)
  permuted = reorder.reorder_by_importance(supernet_vars)
  # Running statistics follow the permutation (NumPy oracle), the hidden channels and stage 4 keep theirs.
  for module, feature in (('stem_proj/bn', 'stem'), ('stage1_block3/project/bn', 'stage1'),
                          ('stage3_block9/project/bn', 'stage3'), ('final_raw0/depthwise/bn', 'stage1'),
                          ('final_raw1/depthwise/bn', 'stem')):
    for old, new in zip(_stats(supernet_vars, module), _stats(permuted, module)):
      np.testing.assert_array_equal(new, old[order[feature]], err_msg=module)
  for module in ('stage1_block0/expand/bn', 'stage4_block2/project/bn', 'deconv_bn2'):
    for old, new in zip(_stats(supernet_vars, module), _stats(permuted, module)):
      np.testing.assert_array_equal(new, old, err_msg=module)
  assert not np.array_equal(order['stage2'], np.arange(64))   # the check can fail: a real permutation
  # Same outputs at maximum width: eval mode (running statistics; the authors' unpermuted statistics
  # differ by 0.28 here) and train mode (batch statistics; outputs up to 3.1 there, so float32 rounding
  # of the re-ordered sums reaches 2e-5: 1e-5 relative to the output scale).
  images = supernet_ref['input_128']
  for train in (False, True):
    want = nas.apply_subnet(supernet_vars, nas.LARGEST, images, train=train)
    got = nas.apply_subnet(permuted, nas.LARGEST, images, train=train)
    for w, g in zip(want[0] if train else want, got[0] if train else got):
      w, g = np.asarray(w), np.asarray(g)
      np.testing.assert_allclose(g, w, atol=1e-5 * max(1.0, np.abs(w).max()), rtol=0)
