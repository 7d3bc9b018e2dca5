"""from_config: every config key the library reads exists in configs/common.py, and the typed objects."""

import pathlib
import re

import ml_collections
import pytest

from configs import common
from litepose_jax import from_config

REPO = pathlib.Path(__file__).resolve().parents[1]
# `config.<section>.<key>` (or `config.<key>`), and local aliases of a section: `ds = config.dataset`.
_READ = re.compile(r'(?<![\w.-])config\.(\w+)(?:\.(\w+))?')
_ALIAS = re.compile(r'^\s*(\w+) = config\.(\w+)\s*$', re.M)
# Functions that receive a section under a parameter name (train/optim.py takes config.optimizer as `opt`).
_SECTION_PARAMS = {'train/optim.py': {'opt': 'optimizer'}}
_CONFIGDICT_METHODS = set(dir(ml_collections.ConfigDict))


def _reads(path: pathlib.Path):
  """(line number, dotted key) of every config read in a library file."""
  text = path.read_text()
  aliases = dict(_SECTION_PARAMS.get(str(path.relative_to(REPO / 'litepose_jax')), {}))
  for alias, section in _ALIAS.findall(text):
    # Only names that are never anything else in the file (`ds` is also a tf.data.Dataset in places).
    if all(value.strip() == f'config.{section}' for value in re.findall(rf'^\s*{alias} = (.*)$', text, re.M)):
      aliases[alias] = section
  for n, line in enumerate(text.splitlines(), 1):
    for m in _READ.finditer(line):
      keys = [k for k in m.groups() if k]
      if keys[0] in _CONFIGDICT_METHODS:
        continue
      if len(keys) == 2 and keys[1] in _CONFIGDICT_METHODS:
        keys = keys[:1]
      yield n, '.'.join(keys)
    for alias, section in aliases.items():
      for m in re.finditer(rf'(?<![\w.]){alias}\.(\w+)', line):
        if m.group(1) not in _CONFIGDICT_METHODS:
          yield n, f'{section}.{m.group(1)}'


def _defined(config, dotted: str) -> bool:
  node = config
  for key in dotted.split('.'):
    if not isinstance(node, ml_collections.ConfigDict) or key not in node:
      return False
    node = node[key]
  return True


def test_every_config_read_in_the_library_is_defined():
  config = common.get_config()
  files = sorted((REPO / 'litepose_jax').rglob('*.py'))
  reads = [(f, n, key) for f in files for n, key in _reads(f)]
  assert len(reads) > 50, 'the scanner found too few reads: the patterns no longer match the code'
  undefined = [f'{f.relative_to(REPO)}:{n}: config.{key}' for f, n, key in reads if not _defined(config, key)]
  assert not undefined, 'keys configs/common.py does not define:\n' + '\n'.join(undefined)


def test_scanner_catches_a_mistyped_key(tmp_path):
  # The check above must be able to fail: a read of an undefined key is reported.
  config = common.get_config()
  fake = REPO / 'litepose_jax' / '_scanner_probe.py'
  try:
    fake.write_text('def f(config):\n  ds = config.dataset\n  return config.optimizer.lrr, ds.nmae\n')
    keys = [key for _, key in _reads(fake)]
  finally:
    fake.unlink()
  assert keys == ['dataset', 'optimizer.lrr', 'dataset.nmae']
  assert [_defined(config, k) for k in keys] == [True, False, False]


def test_no_config_get_with_a_default_in_the_library():
  # A `.get(key, default)` read repeats a default of configs/common.py and hides a mistyped key.
  pattern = re.compile(r'\b(config|cfg|ds|opt|e)(\.\w+)*\.get\(')
  hits = [f'{f.relative_to(REPO)}:{n}' for f in (REPO / 'litepose_jax').rglob('*.py')
          for n, line in enumerate(f.read_text().splitlines(), 1) if pattern.search(line)]
  assert not hits, hits


def test_typed_objects_from_the_default_config():
  config = common.get_config('xs', 'crowdpose')
  assert from_config.input_size(config) == 256                  # the architecture's img_size
  with config.unlocked():
    config.input.size = 320
  assert from_config.input_size(config) == 320
  assert from_config.keypoint_set(config).num_keypoints == 14
  weights = from_config.loss_weights(config)
  assert (weights.heatmap_factors, weights.push_factor, weights.push_type) == ((1.0, 1.0), 1e-3, 'exp')
  cfg = from_config.decode_config(config, from_config.keypoint_set(config))
  assert (cfg.max_people, cfg.nms_kernel, cfg.tag_threshold) == (30, 5, 1.0)


def test_a_mistyped_override_fails_loudly():
  config = common.get_config()
  with pytest.raises(AttributeError):
    _ = config.optimizer.lrr
