"""host_tuning.configure: adds the vector-width flag only on AVX-512 CPUs and never overrides the user."""

import os

import pytest

from litepose_jax import host_tuning


@pytest.fixture
def env(monkeypatch):
  monkeypatch.delenv('XLA_FLAGS', raising=False)
  monkeypatch.delenv(host_tuning.ENV, raising=False)
  return monkeypatch


def test_adds_flag_on_avx512(env):
  env.setattr(host_tuning, '_cpu_flags', lambda: {'avx2', 'avx512f'})
  env.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
  assert host_tuning.configure()
  assert os.environ['XLA_FLAGS'] == ('--xla_force_host_platform_device_count=2 '
                                     '--xla_cpu_prefer_vector_width=512')
  assert not host_tuning.configure()  # a second call leaves the flags as they are
  assert os.environ['XLA_FLAGS'].count('prefer_vector_width') == 1


@pytest.mark.parametrize('cpu,user,switch', [({'avx2'}, None, None),
                                             ({'avx512f'}, '--xla_cpu_prefer_vector_width=256', None),
                                             ({'avx512f'}, None, '0')])
def test_leaves_flags_alone(env, cpu, user, switch):
  env.setattr(host_tuning, '_cpu_flags', lambda: cpu)
  if user:
    env.setenv('XLA_FLAGS', user)
  if switch:
    env.setenv(host_tuning.ENV, switch)
  assert not host_tuning.configure()
  assert os.environ.get('XLA_FLAGS') == user
