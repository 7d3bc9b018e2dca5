"""Weight converter: the authors' PyTorch LitePose state_dict → Flax variables {'params', 'batch_stats'}.

  python -m litepose_jax.convert --torch FILE(.pth|.pth.tar|.npz) --arch xs --num-keypoints 14 --out DIR

writes an orbax checkpoint (see `checkpoint.py`) that records the architecture and keypoint set, so
evaluate / predict / export rebuild the model without further flags. A `.npz` with the state_dict key names
always works; a `.pth` needs PyTorch (`torch.load(weights_only=True)`, no code from the file is run).

Name mapping (spec (j)), torch → Flax path:
  first.0.{0,1}   → stem_conv/{conv,bn}      first.1.{0,1} → stem_dw/{conv,bn}
  first.2, first.3 → stem_proj/conv, stem_proj/bn
  stage.{s}.{b}.{inv,depth_conv,point_conv}.{0,1} → stage{s+1}_block{b}/{expand,depthwise,project}/{conv,bn}
  deconv_{refined,raw}.{i}.weight → deconv_{refined,raw}{i}/kernel     deconv_bnrelu.{i}.0 → deconv_bn{i}
  final_{refined,raw}.{j}.conv.{0,1,3} → final_{refined,raw}{j}/{depthwise/conv, depthwise/bn, pointwise}
Layouts: conv OIHW → HWIO; depthwise (C,1,k,k) → (k,k,C); transposed conv (I,O,4,4) → (4,4,I,O);
BN weight/bias → params scale/bias, running_mean/var → batch_stats mean/var.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from typing import Dict, Iterator, List, Mapping, Tuple

import numpy as np

from litepose_jax import checkpoint
from litepose_jax.models import arch as arch_lib

# kind → (torch layout → flax layout, flax layout → torch layout)
_LAYOUTS = {
    'conv': (lambda w: w.transpose(2, 3, 1, 0), lambda w: w.transpose(3, 2, 0, 1)),
    'dw': (lambda w: w[:, 0].transpose(1, 2, 0), lambda w: w.transpose(2, 0, 1)[:, None]),
    'deconv': (lambda w: w.transpose(2, 3, 0, 1), lambda w: w.transpose(2, 3, 0, 1)),
}
_BN_FIELDS = (('weight', 'params', 'scale'), ('bias', 'params', 'bias'),
              ('running_mean', 'batch_stats', 'mean'), ('running_var', 'batch_stats', 'var'))


def _modules(arch: arch_lib.Arch) -> Iterator[Tuple[str, str, str]]:
  """(torch module prefix, flax module path, kind) in the authors' state_dict order."""
  yield 'first.0.0', 'stem_conv/conv', 'conv'
  yield 'first.0.1', 'stem_conv/bn', 'bn'
  yield 'first.1.0', 'stem_dw/conv', 'dw'
  yield 'first.1.1', 'stem_dw/bn', 'bn'
  yield 'first.2', 'stem_proj/conv', 'conv'
  yield 'first.3', 'stem_proj/bn', 'bn'
  for s, stage in enumerate(arch.stages):
    for b in range(len(stage.blocks)):
      for torch_name, flax_name, kind in (('inv', 'expand', 'conv'), ('depth_conv', 'depthwise', 'dw'),
                                          ('point_conv', 'project', 'conv')):
        yield f'stage.{s}.{b}.{torch_name}.0', f'stage{s + 1}_block{b}/{flax_name}/conv', kind
        yield f'stage.{s}.{b}.{torch_name}.1', f'stage{s + 1}_block{b}/{flax_name}/bn', 'bn'
  for which in ('refined', 'raw'):
    for i in range(3):
      yield f'deconv_{which}.{i}', f'deconv_{which}{i}', 'deconv'
  for i in range(3):
    yield f'deconv_bnrelu.{i}.0', f'deconv_bn{i}', 'bn'
  for which in ('refined', 'raw'):
    for j in range(2):
      yield f'final_{which}.{j}.conv.0', f'final_{which}{j}/depthwise/conv', 'dw'
      yield f'final_{which}.{j}.conv.1', f'final_{which}{j}/depthwise/bn', 'bn'
      yield f'final_{which}.{j}.conv.3', f'final_{which}{j}/pointwise', 'conv'


def key_map(arch: arch_lib.Arch) -> List[Tuple[str, str, str, str]]:
  """Every tensor: (torch key, collection, flax path 'a/b/leaf', kind) in state_dict order."""
  out = []
  for torch_prefix, flax_path, kind in _modules(arch):
    if kind == 'bn':
      for torch_field, collection, leaf in _BN_FIELDS:
        out.append((f'{torch_prefix}.{torch_field}', collection, f'{flax_path}/{leaf}', 'bn'))
    else:
      out.append((f'{torch_prefix}.weight', 'params', f'{flax_path}/kernel', kind))
  return out


def _get(tree: Mapping, path: str):
  for part in path.split('/'):
    tree = tree[part]
  return tree


def _set(tree: Dict, path: str, value) -> None:
  *parents, leaf = path.split('/')
  for part in parents:
    tree = tree.setdefault(part, {})
  tree[leaf] = value


def _expected_shapes(arch: arch_lib.Arch, num_keypoints: int) -> Mapping:
  import jax  # local: shape inference only
  from litepose_jax import models
  model = models.create(arch, num_keypoints)
  return jax.eval_shape(lambda: models.init_variables(model, jax.random.PRNGKey(0), 64))


class ConversionError(ValueError):
  """A state_dict does not fit the requested architecture."""


def torch_to_flax(state_dict: Mapping[str, np.ndarray], arch, num_keypoints: int) -> Dict[str, Dict]:
  """Maps an authors' state_dict onto Flax variables.

  Args:
    state_dict: torch key → array (NumPy or torch tensors); a 'module.' prefix (DDP) is accepted.
    arch: 'xs' | 's' | 'm' | 'l', an authors' architecture JSON, or an Arch.
    num_keypoints: K.
  Returns:
    {'params': ..., 'batch_stats': ...} as nested dicts of float32 NumPy arrays.
  Raises:
    ConversionError naming the first missing, unexpected or mis-shaped key (expected and found shapes).
  """
  arch = arch_lib.get_arch(arch)
  sd = {k.removeprefix('module.'): v for k, v in state_dict.items()}
  expected = _expected_shapes(arch, num_keypoints)
  variables: Dict[str, Dict] = {'params': {}, 'batch_stats': {}}
  used = set()
  for torch_key, collection, flax_path, kind in key_map(arch):
    if torch_key not in sd:
      raise ConversionError(f'missing key {torch_key!r} (architecture {arch.name}, K={num_keypoints})')
    value = np.asarray(sd[torch_key], dtype=np.float32)
    to_flax, to_torch = _LAYOUTS.get(kind, (lambda w: w, lambda w: w))
    want = tuple(_get(expected[collection], flax_path).shape)
    want_torch = tuple(to_torch(np.empty(want, np.float32)).shape) if kind != 'bn' else want
    if value.shape != want_torch:
      raise ConversionError(f'shape mismatch at {torch_key!r}: expected {want_torch} for architecture '
                            f'{arch.name} with K={num_keypoints}, found {tuple(value.shape)}')
    _set(variables[collection], flax_path, np.ascontiguousarray(to_flax(value)))
    used.add(torch_key)
  unexpected = [k for k in sd if k not in used and not k.endswith('num_batches_tracked')]
  if unexpected:
    raise ConversionError(f'unexpected key {unexpected[0]!r} ({len(unexpected)} unused keys): the '
                          f'checkpoint is not a LitePose-{arch.name} with K={num_keypoints}')
  return variables


def flax_to_torch(variables: Mapping, arch) -> Dict[str, np.ndarray]:
  """The inverse mapping: Flax variables → authors' state_dict (NumPy), e.g. to run their code."""
  arch = arch_lib.get_arch(arch)
  out = {}
  for torch_key, collection, flax_path, kind in key_map(arch):
    to_torch = _LAYOUTS.get(kind, (None, lambda w: w))[1]
    out[torch_key] = np.ascontiguousarray(to_torch(np.asarray(_get(variables[collection], flax_path))))
  return out


def load_state_dict(path: str | os.PathLike) -> Dict[str, np.ndarray]:
  """Reads a state_dict from .npz (torch key names, optionally under 'sd/') or .pth / .pth.tar."""
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f'{path}: no such file')
  if path.suffix == '.npz':
    with np.load(path, allow_pickle=False) as z:
      keys = list(z.files)
      if any(k.startswith('sd/') for k in keys):  # the reference-fixture layout
        return {k[3:]: z[k] for k in keys if k.startswith('sd/')}
      return {k: z[k] for k in keys}
  try:
    import torch  # optional dependency
  except ImportError:
    raise RuntimeError(f'{path}: reading a PyTorch checkpoint needs PyTorch (pip install torch), which '
                       'litepose-jax does not depend on. Alternatively save the state_dict as .npz: '
                       'np.savez(out, **{k: v.numpy() for k, v in sd.items()})') from None
  obj = torch.load(str(path), map_location='cpu', weights_only=True)
  for key in ('state_dict', 'model', 'model_state_dict'):
    if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
      obj = obj[key]
  if not isinstance(obj, Mapping):
    raise ConversionError(f'{path}: expected a state_dict (a mapping of names to tensors)')
  return {k: v.detach().cpu().numpy() for k, v in obj.items() if hasattr(v, 'detach')}


def convert_file(path: str | os.PathLike, arch, num_keypoints: int, keypoint_set: str | None = None):
  """(variables, meta) for an authors' checkpoint file."""
  arch = arch_lib.get_arch(arch)
  variables = torch_to_flax(load_state_dict(path), arch, num_keypoints)
  meta = checkpoint.model_meta(arch, num_keypoints, keypoint_set, source=f'converted from {path}')
  return variables, meta


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog='python -m litepose_jax.convert', description=__doc__.split('\n')[0])
  p.add_argument('--torch', required=True, help='authors\' checkpoint: .pth / .pth.tar / .npz')
  p.add_argument('--arch', required=True, help='xs | s | m | l | path to an architecture JSON')
  p.add_argument('--num-keypoints', type=int, required=True, help='14 (CrowdPose) or 17 (COCO)')
  p.add_argument('--keypoints', default=None, help='keypoint-set name (default: from --num-keypoints)')
  p.add_argument('--out', required=True, help='output checkpoint directory')
  args = p.parse_args(argv)
  try:
    variables, meta = convert_file(args.torch, args.arch, args.num_keypoints, args.keypoints)
  except (ConversionError, FileNotFoundError, RuntimeError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  out = checkpoint.save_model(args.out, variables, meta)
  n = sum(int(np.prod(v.shape)) for v in _leaves(variables['params']))
  print(f'wrote {out} (LitePose-{meta["arch"]["name"]}, K={args.num_keypoints}, {n:,} parameters)')
  return 0


def _leaves(tree):
  for v in tree.values():
    yield from (_leaves(v) if isinstance(v, Mapping) else [v])


if __name__ == '__main__':
  sys.exit(main())
