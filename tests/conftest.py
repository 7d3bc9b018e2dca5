"""Shared test set-up: JAX compilation cache, CPU-only TF, and where the fixtures live."""

import os
import pathlib

# Before JAX / TF are imported by any test module.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

import pytest  # noqa: E402
from litepose_jax import runtime  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = REPO / 'tests' / 'data'

# Persistent compilation cache (<repo>/.cache/jax unless LITEPOSE_JAX_CACHE_DIR says otherwise): repeated
# local runs skip XLA compiles (a clean CI clone starts empty).
runtime.enable_compile_cache(min_compile_secs=0.5)


def _reference_dir() -> pathlib.Path:
  """The authors' numerical fixtures (80 MB, not copied into the repo).

  Looked up in $LITEPOSE_REFERENCE_DIR, then ../shared/reference beside the checkout, then
  /work/shared/reference.
  """
  candidates = [os.environ.get('LITEPOSE_REFERENCE_DIR'), REPO.parent / 'shared' / 'reference',
                '/work/shared/reference']
  for c in candidates:
    if c and (pathlib.Path(c) / 'litepose_xs_reference.npz').exists():
      return pathlib.Path(c)
  raise FileNotFoundError(
      'reference fixtures not found: set LITEPOSE_REFERENCE_DIR to the folder holding '
      'litepose_xs_reference.npz (tried: %s)' % [str(c) for c in candidates if c])


@pytest.fixture(scope='session')
def reference_dir() -> pathlib.Path:
  return _reference_dir()


@pytest.fixture(scope='session')
def data_dir() -> pathlib.Path:
  return DATA
