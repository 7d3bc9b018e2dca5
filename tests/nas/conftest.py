"""Fixtures shared by the nas tests: the authors' supernet fixture and its converted variables."""

import numpy as np
import pytest

from litepose_jax import nas


@pytest.fixture(scope='session')
def supernet_ref(reference_dir):
  """The authors' supernet fixture (nas spec §9) as a dict of arrays."""
  with np.load(reference_dir / 'supernet_reference.npz') as z:
    return {k: z[k] for k in z.files}


@pytest.fixture(scope='session')
def supernet_sd(supernet_ref):
  return {k[3:]: v for k, v in supernet_ref.items() if k.startswith('sd/')}


@pytest.fixture(scope='session')
def supernet_vars(supernet_sd, supernet_ref):
  return nas.convert_supernet(supernet_sd, int(supernet_ref['meta/num_joints']))
