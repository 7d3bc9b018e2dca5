"""Extracting a standalone subnet from the supernet (the authors' weight transfer, nas spec §2/§5).

Every tensor keeps its leading channels ("first-k" slicing):
  stem_conv, stem_dw                       unsliced (fixed 32 channels)
  stem_proj          conv [1,1,32,24]      [..., :C0];  BN [:C0]
  stage{s}_block{b}  expand [1,1,in,6in]   [..., :in, :6·in]; BN [:6·in]     in = C0 / c_{s-1} for b = 0,
                     depthwise [7,7,6in]   [..., :6·in];      BN [:6·in]          c_s otherwise
                     project [1,1,6in,c]   [..., :6·in, :c_s]; BN [:c_s]
  deconv_{refined,raw}{i} [4,4,in,f_i]     [..., :in, :f_i]  in = (c4, f0, f1) refined, (c3, c2, c1) raw
  deconv_bn{i}                             [:f_i]
  final_{refined,raw}{j} depthwise [5,5,C] [..., :in]; BN [:in]; pointwise [1,1,C,2K|K] [..., :in, :]
                                           in = (f1, f2) refined, (c1, C0) raw; outputs never sliced
BN slices apply to scale, bias, running mean and running variance alike (no re-calibration here:
see `recalibrate`).
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

import numpy as np

from litepose_jax.nas import space

# module path → (input width or None = unsliced, output width or None = unsliced)
Widths = Dict[str, Tuple[Optional[int], Optional[int]]]


def module_widths(subnet: space.Subnet) -> Widths:
  """(in, out) channel widths of every conv-like module of the subnet, by Flax module path.

  For depthwise convs and BatchNorms only `out` is used (their channel count).
  """
  c0, f, c = subnet.stem, subnet.deconv, subnet.stages
  w: Widths = {'stem_conv/conv': (None, None), 'stem_conv/bn': (None, None),
               'stem_dw/conv': (None, None), 'stem_dw/bn': (None, None),
               'stem_proj/conv': (None, c0), 'stem_proj/bn': (None, c0)}
  for s in range(4):
    for b in range(space.DEPTHS[s]):
      cin = (c0 if s == 0 else c[s - 1]) if b == 0 else c[s]
      hidden = space.EXPANSION * cin
      p = f'stage{s + 1}_block{b}'
      w.update({f'{p}/expand/conv': (cin, hidden), f'{p}/expand/bn': (None, hidden),
                f'{p}/depthwise/conv': (None, hidden), f'{p}/depthwise/bn': (None, hidden),
                f'{p}/project/conv': (hidden, c[s]), f'{p}/project/bn': (None, c[s])})
  for i, (refined_in, raw_in) in enumerate(((c[3], c[2]), (f[0], c[1]), (f[1], c[0]))):
    w.update({f'deconv_refined{i}': (refined_in, f[i]), f'deconv_raw{i}': (raw_in, f[i]),
              f'deconv_bn{i}': (None, f[i])})
  for name, cin in (('final_refined0', f[1]), ('final_refined1', f[2]), ('final_raw0', c[0]),
                    ('final_raw1', c0)):
    w.update({f'{name}/depthwise/conv': (None, cin), f'{name}/depthwise/bn': (None, cin),
              f'{name}/pointwise': (cin, None)})
  return w


def _leaves(tree: Mapping, prefix: str = '') -> Iterator[Tuple[str, Any]]:
  for k, v in tree.items():
    path = f'{prefix}/{k}' if prefix else k
    if isinstance(v, Mapping):
      yield from _leaves(v, path)
    else:
      yield path, v


def _slice(value, widths: Tuple[Optional[int], Optional[int]]):
  cin, cout = widths
  value = np.asarray(value)
  if value.ndim == 4:      # [kh, kw, in, out]: dense convs and transposed convs
    return value[:, :, slice(cin), slice(cout)]
  if value.ndim in (1, 3):  # BN vectors [C], depthwise kernels [k, k, C]
    return value[..., slice(cout)]
  raise ValueError(f'unexpected tensor rank {value.ndim}')


def extract(variables: Mapping, subnet: space.Subnet) -> Tuple[Dict[str, Any], Dict[str, Dict]]:
  """(arch_json, variables) of the standalone subnet.

  `models.create(arch_json, K).apply(variables, x, train=False)` runs the fixed model, equal to
  `apply_subnet(supernet_variables, subnet, x)`. Arrays are NumPy copies (float32 as stored).
  """
  widths = module_widths(subnet)
  out: Dict[str, Dict] = {}
  for collection in ('params', 'batch_stats'):
    tree: Dict[str, Any] = {}
    for path, value in _leaves(variables[collection]):
      module = path.rsplit('/', 1)[0]
      if module not in widths:
        raise ValueError(f'{collection}/{path}: not a supernet variable')
      node = tree
      *parents, leaf = path.split('/')
      for part in parents:
        node = node.setdefault(part, {})
      node[leaf] = np.ascontiguousarray(_slice(value, widths[module]))
    out[collection] = tree
  return subnet.to_arch_json(), out
