"""Channel re-ordering by importance of full-width weights before supernet training (nas spec §3).

A subnet keeps the leading channels of every feature (first-k), so before training the supernet from a
trained full-width model the authors sort the channels of each boundary feature by importance: the L1
norm of the weights that read the channel in the next stage's first 1x1 expand conv (importance of
channel c = Σ_{kh,kw,o} |W[kh, kw, c, o]|), descending. Features re-ordered: the stem output (C0, read
by stage1_block0/expand) and the outputs of stages 1-3 (read by stage{s+1}_block0/expand); stage 4's
output and the hidden (expanded) channels keep their order.

Permuting a feature's channels permutes, consistently: its producers' output channels (stem_proj, and
every block's project conv of the stage, since the residual chain carries the feature: their BatchNorms'
scale, bias AND running mean / variance, which the authors forgot, spec §3 "Bug") and its consumers'
input channels (the next stage's block-0 expand, the stage's blocks b > 0 expand, and here also the head:
final_raw1 reads the stem, final_raw0 and deconv_raw2 read stage 1, deconv_raw1 stage 2, deconv_raw0
stage 3). The authors re-initialise the head and do not permute it; permuting it keeps the network's
function unchanged, in train and eval mode, so the whole network starts where the fixed model ended.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

import flax
import jax
import numpy as np

from litepose_jax.nas import space

# feature → the 1x1 conv whose input-channel L1 norms rank it (authors: stage.{s+1}.0.inv.0)
_RANKED_BY = {'stem': 'stage1_block0/expand/conv', 'stage1': 'stage2_block0/expand/conv',
              'stage2': 'stage3_block0/expand/conv', 'stage3': 'stage4_block0/expand/conv'}
# feature → head modules reading it (input-channel axis of a dense / transposed conv, or a SepConv)
_HEAD_READERS = {'stem': ('final_raw1',), 'stage1': ('final_raw0', 'deconv_raw2'),
                 'stage2': ('deconv_raw1',), 'stage3': ('deconv_raw0',)}


def _get(tree: Mapping, path: str):
  for part in path.split('/'):
    tree = tree[part]
  return tree


def _bn_paths(module: str):
  return [('params', f'{module}/scale'), ('params', f'{module}/bias'),
          ('batch_stats', f'{module}/mean'), ('batch_stats', f'{module}/var')]


def channel_order(variables: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  """{feature: permutation} for 'stem', 'stage1', 'stage2', 'stage3': channel indices by descending
  importance (the authors' `re_organize_weights` indices; stable sort on ties)."""
  params = variables['params']
  order = {}
  for feature, conv in _RANKED_BY.items():
    kernel = np.asarray(_get(params, f'{conv}/kernel'), np.float64)    # [1, 1, in, out]
    importance = np.abs(kernel).sum(axis=(0, 1, 3))
    order[feature] = np.argsort(-importance, kind='stable')
  return order


def permute(variables: Mapping[str, Any], order: Mapping[str, np.ndarray]) -> Dict[str, Any]:
  """The variables with each feature's channels permuted by `order` (module docstring): the network
  computes the same function. Returns a new tree of NumPy arrays (the input is not modified)."""
  out = flax.core.unfreeze(jax.tree.map(np.array, {'params': variables['params'],
                                                   'batch_stats': variables['batch_stats']}))
  edits = []   # (collection, path, axis, feature)
  for s, feature in enumerate(('stem', 'stage1', 'stage2', 'stage3')):
    if feature == 'stem':
      producers = ['stem_proj']
      residual_readers = []
    else:
      producers = [f'{feature}_block{b}/project' for b in range(space.DEPTHS[s - 1])]
      residual_readers = [f'{feature}_block{b}/expand/conv' for b in range(1, space.DEPTHS[s - 1])]
    for p in producers:
      edits.append(('params', f'{p}/conv/kernel', 3, feature))
      edits += [(c, path, 0, feature) for c, path in _bn_paths(f'{p}/bn')]
    for conv in residual_readers + [_RANKED_BY[feature]]:
      edits.append(('params', f'{conv}/kernel', 2, feature))
    for head in _HEAD_READERS[feature]:
      if head.startswith('deconv'):
        edits.append(('params', f'{head}/kernel', 2, feature))    # [4, 4, in, out]
      else:   # SepConv: depthwise [5, 5, C] and its BN over the channel, pointwise [1, 1, C, out]
        edits.append(('params', f'{head}/depthwise/conv/kernel', 2, feature))
        edits += [(c, path, 0, feature) for c, path in _bn_paths(f'{head}/depthwise/bn')]
        edits.append(('params', f'{head}/pointwise/kernel', 2, feature))
  for collection, path, axis, feature in edits:
    *parents, leaf = path.split('/')
    node = _get(out[collection], '/'.join(parents))
    node[leaf] = np.take(node[leaf], np.asarray(order[feature]), axis=axis)
  return out


def reorder_by_importance(variables: Mapping[str, Any]) -> Dict[str, Any]:
  """`permute(variables, channel_order(variables))`: full-width weights ready for supernet training."""
  return permute(variables, channel_order(variables))
