"""The authors' supernet state_dict (pose_supermobilenet, nas spec §9 `sd/<key>`) → supernet variables.

The supernet's parameters have the paths and shapes of the fixed model at maximum width
(`space.LARGEST`), so the fixed-model mapping of `litepose_jax.convert` applies; the supernet's extra
kernel-transform layers (`stage.*.*.Linear5x5/Linear3x3`, never used for kernel 7) are dropped.
"""

from __future__ import annotations

import re
from typing import Dict, Mapping

import numpy as np

from litepose_jax import convert as fixed_convert
from litepose_jax.models import arch as arch_lib
from litepose_jax.nas import space

ConversionError = fixed_convert.ConversionError
_UNUSED = re.compile(r'^stage\.\d+\.\d+\.Linear(5x5|3x3)\.(weight|bias)$')


def supernet_arch() -> arch_lib.Arch:
  """The supernet's maximum architecture as an Arch (named 'supernet' in error messages)."""
  return arch_lib.Arch.from_json(space.LARGEST.to_arch_json(), name='supernet')


def convert_supernet(state_dict: Mapping[str, np.ndarray], num_keypoints: int) -> Dict[str, Dict]:
  """Authors' supernet state_dict → {'params', 'batch_stats'} (float32 NumPy, the `Supernet` layout).

  Args:
    state_dict: torch key → array (authors' names and layouts; a 'module.' prefix is accepted;
      Linear5x5/Linear3x3 and num_batches_tracked entries are ignored).
    num_keypoints: K (the final 1x1 convs have 2K and K outputs).
  Raises:
    ConversionError naming the first missing, mis-shaped or unexpected key.
  """
  sd = {k: v for k, v in state_dict.items() if not _UNUSED.match(k.removeprefix('module.'))}
  return fixed_convert.torch_to_flax(sd, supernet_arch(), num_keypoints)
