"""The entries' persistent compilation cache: where it goes, how to turn it off, and that it is used."""

import os
import pathlib
import subprocess
import sys

from litepose_jax import compile_cache

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_cache_dir_resolution(monkeypatch, tmp_path):
  monkeypatch.delenv(compile_cache.ENV, raising=False)
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR', raising=False)
  assert compile_cache.cache_dir() == str(REPO / '.cache' / 'jax')
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', str(tmp_path / 'jax'))
  assert compile_cache.cache_dir() == str(tmp_path / 'jax')
  monkeypatch.setenv(compile_cache.ENV, str(tmp_path / 'ours'))   # ours wins over JAX's
  assert compile_cache.cache_dir() == str(tmp_path / 'ours')
  for off in ('', 'off'):
    monkeypatch.setenv(compile_cache.ENV, off)
    assert compile_cache.cache_dir() is None


def test_enabled_cache_stores_compiled_programs(tmp_path):
  # A fresh process (the test process has its own cache set by conftest) compiles one program.
  compile_one = ('import jax, jax.numpy as jnp\n'
                 'jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((64, 64))).block_until_ready()\n')
  on = 'from litepose_jax import compile_cache\nassert compile_cache.enable(min_compile_secs=0.0)\n'
  off = 'from litepose_jax import compile_cache\nassert compile_cache.enable() is None\n'
  env = dict(os.environ, **{compile_cache.ENV: str(tmp_path / 'cache')})
  subprocess.run([sys.executable, '-c', on + compile_one], cwd=REPO, env=env, check=True, timeout=300)
  assert any((tmp_path / 'cache').iterdir()), 'nothing was written to the cache folder'
  env[compile_cache.ENV] = 'off'
  subprocess.run([sys.executable, '-c', off + compile_one], cwd=REPO, env=env, check=True, timeout=300)
