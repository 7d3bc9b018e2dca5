"""Reading a supernet checkpoint: `load_supernet(path) -> (variables, meta)`.

A supernet checkpoint is an ordinary model checkpoint (`checkpoint.save_model`) or training workdir
(`checkpoint.TrainCheckpointer`) whose 'variables' have the tree of the fixed maximum model
(`space.LARGEST`, the `nas.Supernet` layout) and whose 'meta' says kind='supernet' and the search space's
version (checkpoints without a 'kind', e.g. full-width fixed models of the largest architecture saved by
hand: accepted, the tree decides).
"""

from __future__ import annotations

import os
from typing import Dict, Mapping, Optional, Tuple

from litepose_jax import checkpoint
from litepose_jax.nas import apply as apply_lib
from litepose_jax.nas import space
from litepose_jax.nas import training


def _shapes(tree, prefix='') -> Dict[str, tuple]:
  out = {}
  for key, value in tree.items():
    path = f'{prefix}/{key}' if prefix else key
    out.update(_shapes(value, path) if isinstance(value, Mapping) else {path: tuple(value.shape)})
  return out


def load_supernet(path: str | os.PathLike, step: Optional[int] = None) -> Tuple[dict, dict]:
  """(variables {'params', 'batch_stats'} as NumPy, meta) of a supernet checkpoint.

  Args:
    path: a checkpoint directory, one of its steps, or a training workdir.
    step: which step (default: the latest).
  Raises:
    FileNotFoundError: no checkpoint there.
    ValueError: the checkpoint is not a supernet (its meta kind, or its variables' tree), naming `path`.
  """
  variables, meta, step = checkpoint.load_variables(path, step)
  kind = meta.get('kind', training.KIND)
  if kind != training.KIND:
    raise ValueError(f'{path}: not a supernet checkpoint (meta kind {kind!r}); a fixed model loads with '
                     'checkpoint.load_model')
  if meta.get('space', space.VERSION) != space.VERSION:
    raise ValueError(f'{path}: supernet of search space {meta["space"]!r}, this code has {space.VERSION!r}')
  variables = {'params': variables.get('params', {}), 'batch_stats': variables.get('batch_stats', {})}
  try:
    k = apply_lib.num_keypoints_of(variables)
  except (KeyError, IndexError, AttributeError):
    raise ValueError(f'{path}: not a supernet checkpoint (no final_raw1 output conv)') from None
  want = _shapes(apply_lib.largest_shapes(k))
  got = _shapes(variables)
  if got != want:
    diff = sorted(set(got.items()) ^ set(want.items()))[:1]
    raise ValueError(f'{path}: variables are not those of the supernet (maximum widths, K={k}); first '
                     f'difference: {diff[0][0]} {diff[0][1]}')
  return variables, dict(meta, step=step)
