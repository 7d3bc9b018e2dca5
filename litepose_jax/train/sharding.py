"""Data parallelism on a 1-D ('data',) device mesh: the only module that names Mesh / PartitionSpec.

LitePose has a few million parameters, so the train state is replicated and only the batch is split over
devices. Under `jit`, BatchNorm's batch mean over a batch-sharded array is a global reduction: BN
statistics are those of the whole global batch (synchronised BN), unlike the authors' per-GPU BN.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = 'data'


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A ('data',) mesh over `devices` (default: all devices of all processes)."""
  if devices is None:
    # jax.make_mesh orders devices for the physical topology (matters on TPU slices).
    # Auto axes: XLA propagates the batch sharding (no sharding-in-types annotations in the model).
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(AxisType.Auto,))
  return Mesh(np.asarray(list(devices)), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over 'data', the rest replicated."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (train state, metrics)."""
  return NamedSharding(mesh, PartitionSpec())


def check_global_batch(global_batch: int, mesh: Mesh) -> int:
  """The per-process batch; raises when the global batch does not split over devices and processes."""
  devices, processes = mesh.devices.size, jax.process_count()
  if global_batch % devices:
    raise ValueError(f'input.batch_size={global_batch} (the global batch) must be divisible by the '
                     f'{devices} devices of the mesh')
  if global_batch % processes:
    raise ValueError(f'input.batch_size={global_batch} must be divisible by the {processes} processes')
  return global_batch // processes


def put_global_batch(local_batch: Mapping[str, Any], mesh: Mesh,
                     replicated_keys: Sequence[str] = ()) -> dict[str, Any]:
  """Assembles each process's slice of the batch into global arrays sharded on 'data'.

  Args:
    local_batch: this process's rows of every array, [B/num_processes, ...] (NumPy or TF eager tensors).
    mesh: the data mesh.
    replicated_keys: entries (arrays or pytrees of arrays) that are the same on every process and go
      whole to every device (e.g. the supernet's subnet masks).
  Returns:
    The same keys as global [B, ...] jax Arrays, batch axis split over all devices.
  """
  split, whole = batch_sharding(mesh), replicated(mesh)
  return {k: jax.tree.map(lambda v, s=(whole if k in replicated_keys else split):
                          jax.make_array_from_process_local_data(s, np.asarray(v)), v)
          for k, v in local_batch.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree (e.g. restored or converted weights) on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))
