"""runtime: the persistent compilation cache (where it goes, how to turn it off, that it is used) and the host
tuning (vector-width flag only on AVX-512 CPUs and never over the user's; glibc keeps freed pages, checked in
a subprocess: it is process-wide)."""

import os
import pathlib
import platform
import subprocess
import sys

import pytest

from litepose_jax import runtime

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_cache_dir_resolution(monkeypatch, tmp_path):
  monkeypatch.delenv(runtime.CACHE_ENV, raising=False)
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR', raising=False)
  assert runtime.cache_dir() == str(REPO / '.cache' / 'jax')
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', str(tmp_path / 'jax'))
  assert runtime.cache_dir() == str(tmp_path / 'jax')
  monkeypatch.setenv(runtime.CACHE_ENV, str(tmp_path / 'ours'))   # ours wins over JAX's
  assert runtime.cache_dir() == str(tmp_path / 'ours')
  for off in ('', 'off'):
    monkeypatch.setenv(runtime.CACHE_ENV, off)
    assert runtime.cache_dir() is None


def test_enabled_cache_stores_compiled_programs(tmp_path):
  # A fresh process (the test process has its own cache set by conftest) compiles one program.
  compile_one = ('import jax, jax.numpy as jnp\n'
                 'jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((64, 64))).block_until_ready()\n')
  on = 'from litepose_jax import runtime\nassert runtime.enable_compile_cache(min_compile_secs=0.0)\n'
  off = 'from litepose_jax import runtime\nassert runtime.enable_compile_cache() is None\n'
  env = dict(os.environ, **{runtime.CACHE_ENV: str(tmp_path / 'cache')})
  subprocess.run([sys.executable, '-c', on + compile_one], cwd=REPO, env=env, check=True, timeout=300)
  assert any((tmp_path / 'cache').iterdir()), 'nothing was written to the cache folder'
  env[runtime.CACHE_ENV] = 'off'
  subprocess.run([sys.executable, '-c', off + compile_one], cwd=REPO, env=env, check=True, timeout=300)


# -- host tuning --


@pytest.fixture
def env(monkeypatch):
  monkeypatch.delenv('XLA_FLAGS', raising=False)
  monkeypatch.delenv(runtime.TUNING_ENV, raising=False)
  return monkeypatch


def test_adds_flag_on_avx512(env):
  env.setattr(runtime, '_cpu_flags', lambda: {'avx2', 'avx512f'})
  env.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
  assert runtime.add_vector_flag()
  assert os.environ['XLA_FLAGS'] == ('--xla_force_host_platform_device_count=2 '
                                     '--xla_cpu_prefer_vector_width=512')
  assert not runtime.add_vector_flag()  # a second call leaves the flags as they are
  assert os.environ['XLA_FLAGS'].count('prefer_vector_width') == 1


@pytest.mark.parametrize('cpu,user,switch', [({'avx2'}, None, None),
                                             ({'avx512f'}, '--xla_cpu_prefer_vector_width=256', None),
                                             ({'avx512f'}, None, '0')])
def test_leaves_flags_alone(env, cpu, user, switch):
  env.setattr(runtime, '_cpu_flags', lambda: cpu)
  if user:
    env.setenv('XLA_FLAGS', user)
  if switch:
    env.setenv(runtime.TUNING_ENV, switch)
  assert not runtime.add_vector_flag()
  assert os.environ.get('XLA_FLAGS') == user


_FAULTS = '''
import resource, sys
import numpy as np
from litepose_jax import runtime
if sys.argv[1] == '1':
  assert runtime.keep_freed_memory()
def faults():  # minor page faults of allocating, touching and freeing 64 MiB
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  a = np.empty(64 << 20, np.uint8)
  a[::4096] = 1
  del a
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults()
print(faults())
'''


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='mallopt is a glibc setting')
def test_keep_freed_memory_reuses_pages():
  """The second 64 MiB allocation of a process reuses the freed pages with the setting (here: 0 page
  faults) and faults every page in again without it (glibc maps large blocks fresh and unmaps them on free;
  here 543 faults, numpy asking for transparent huge pages)."""
  # The child must not inherit a user's LITEPOSE_HOST_TUNING=0 (it would turn the setting off).
  env = {k: v for k, v in os.environ.items() if k != runtime.TUNING_ENV}
  run = lambda on: int(subprocess.run([sys.executable, '-c', _FAULTS, on], check=True, capture_output=True,
                                      text=True, cwd=REPO, env=env).stdout)
  plain, kept = run('0'), run('1')
  assert plain >= (64 << 20) // (2 << 20)  # at least one fault per page, even 2 MiB transparent huge pages
  assert kept * 10 < plain


def test_switch_turns_allocator_setting_off(env):
  env.setenv(runtime.TUNING_ENV, '0')
  assert not runtime.keep_freed_memory()
