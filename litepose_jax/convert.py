"""Weight converter: the authors' PyTorch LitePose state_dict → Flax variables {'params', 'batch_stats'}.

  python -m litepose_jax.convert --torch=FILE(.pth|.pth.tar|.npz) --arch=xs --num_keypoints=14 --out=DIR

writes an orbax checkpoint (see `checkpoint.py`) that records the architecture and keypoint set, so
evaluate / predict / export rebuild the model without further flags. A `.npz` with the state_dict key names
always works; a `.pth` needs PyTorch (`torch.load(weights_only=True)`, no code from the file is run). An
existing --out is replaced only with --overwrite, and only when it is a checkpoint; the new one is written
beside it first, so a failed conversion leaves nothing half-written.

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

import os
import pathlib
import shutil
import sys
from typing import Dict, Iterator, List, Mapping, Tuple

import numpy as np
from absl import flags

from litepose_jax import checkpoint
from litepose_jax import runtime
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


def _flags():
  """The entry point's flags, in a FlagValues of their own (runtime.parse_module_flags)."""
  fv = flags.FlagValues()
  flags.DEFINE_string('torch', None, 'authors\' checkpoint: .pth / .pth.tar / .npz', flag_values=fv)
  flags.DEFINE_string('arch', None, 'xs | s | m | l | path to an architecture JSON', flag_values=fv)
  flags.DEFINE_integer('num_keypoints', None, '14 (CrowdPose) or 17 (COCO)', flag_values=fv)
  flags.DEFINE_string('keypoints', None, 'keypoint-set name (default: from --num_keypoints)', flag_values=fv)
  flags.DEFINE_string('out', None, 'output checkpoint directory', flag_values=fv)
  flags.DEFINE_bool('overwrite', False, 'replace a checkpoint already at --out', flag_values=fv)
  flags.mark_flags_as_required(['torch', 'arch', 'num_keypoints', 'out'], flag_values=fv)
  return fv


def _write(out: str, variables, meta, overwrite: bool) -> pathlib.Path:
  """save_model into a fresh folder beside `out`, then moved to `out`: a failure leaves `out` untouched.

  Raises:
    ValueError: `out` exists and --overwrite is off, or it is not a checkpoint (never replaced).
  """
  out = pathlib.Path(out).absolute()
  if out.is_file() or (out.is_dir() and any(out.iterdir())):
    if not overwrite:
      raise ValueError(f'{out}: already exists (an earlier conversion?); pass --overwrite to replace it '
                       'or choose another --out')
    if not any(p.name.isdigit() and (p / checkpoint.META).is_dir() for p in out.iterdir()):
      raise ValueError(f'{out}: exists and is not a model checkpoint; not replaced')
  tmp = out.with_name(f'.{out.name}.partial')
  shutil.rmtree(tmp, ignore_errors=True)
  try:
    checkpoint.save_model(tmp, variables, meta)
    if out.exists():
      shutil.rmtree(out) if out.is_dir() else out.unlink()
    tmp.rename(out)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return out


def main(argv=None) -> int:
  """`python -m litepose_jax.convert` (module docstring); argv without the program name."""
  fv = _flags()
  code = runtime.parse_module_flags(fv, argv, __doc__)
  if code is not None:
    return code
  try:
    variables, meta = convert_file(fv.torch, fv.arch, fv.num_keypoints, fv.keypoints)
    out = _write(fv.out, variables, meta, fv.overwrite)
  except (ConversionError, RuntimeError, *runtime.INPUT_ERRORS) as e:
    return runtime.fail(e)
  n = sum(int(np.prod(v.shape)) for v in _leaves(variables['params']))
  print(f'wrote {out} (LitePose-{meta["arch"]["name"]}, K={fv.num_keypoints}, {n:,} parameters)')
  return 0


def _leaves(tree):
  for v in tree.values():
    yield from (_leaves(v) if isinstance(v, Mapping) else [v])


if __name__ == '__main__':
  sys.exit(main())
