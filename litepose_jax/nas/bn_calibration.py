"""BatchNorm re-calibration of a subnet (nas spec §5, §8.3): reset and average, as OFA / BigNAS.

The supernet's running statistics are a shared EMA over random subnets and resolutions, not those of any
one subnet; a subnet is evaluated (or extracted) only after re-calibrating them.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, Iterable, Mapping, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from litepose_jax.models.layers import BatchNorm
from litepose_jax.nas import space
from litepose_jax.nas.apply import apply_masked
from litepose_jax.nas.supernet import subnet_masks


def batch_moments(variables: Mapping, masks: Mapping, images: jax.Array, depthwise_impl: str = 'auto',
                  dtype: Any = jnp.float32) -> Dict[str, Tuple[jax.Array, jax.Array, jax.Array]]:
  """Train-mode forward; per BatchNorm (path 'a/b/bn') its input's batch mean, biased batch variance and
  channel mask, each [C] float32 (mask all ones for the fixed stem BNs).

  The moments are those the BatchNorm normalises with (float32, over batch and space); they are taken
  by intercepting the BatchNorm calls, so nothing in the network changes.
  """
  moments = {}

  def interceptor(next_fun, args, kwargs, context):
    mod = context.module
    if isinstance(mod, BatchNorm) and context.method_name == '__call__':
      x = args[0].astype(jnp.float32)
      mask = args[2] if len(args) > 2 else kwargs.get('mask')
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(x, axes)
      var = jnp.mean(jnp.square(x - mean), axes)
      mask = jnp.ones_like(mean) if mask is None else jnp.asarray(mask, jnp.float32)
      moments['/'.join(mod.scope.path)] = (mean, var, mask)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    apply_masked(variables, masks, images, train=True, depthwise_impl=depthwise_impl, dtype=dtype)
  return moments


@functools.lru_cache(maxsize=None)
def _jitted_moments(depthwise_impl: str, dtype: Any):
  return jax.jit(functools.partial(batch_moments, depthwise_impl=depthwise_impl, dtype=dtype))


def recalibrate(variables: Mapping, subnet: space.Subnet, batches: Iterable[jax.Array],
                depthwise_impl: str = 'auto', dtype: Any = jnp.float32) -> Dict[str, Any]:
  """Supernet variables with `subnet`'s BatchNorm running statistics re-estimated on `batches`.

  OFA's `set_running_statistics` definition: every batch runs a train-mode forward (BN normalises with
  that batch's statistics, no gradient, nothing else updated); for every BN channel
    running_mean = Σ_j n_j·mean_j / Σ_j n_j,   running_var = Σ_j n_j·var_j / Σ_j n_j,
  with mean_j, var_j the batch mean and the *biased* batch variance of batch j (over images and pixels),
  and n_j its number of images: the image-weighted mean of per-batch means and of per-batch biased
  variances (not the pooled variance; equal batch sizes give the plain average over batches). The old
  statistics are discarded (reset; no momentum). Only the subnet's channels are written; the masked
  channels keep their supernet values (OFA writes the leading slice).

  Args:
    variables: supernet {'params', 'batch_stats'}.
    subnet: the architecture.
    batches: iterable of images [B, H, W, 3] (the training preprocessing at the subnet's resolution;
      one compile per distinct shape).
  Returns:
    {'params': unchanged, 'batch_stats': re-calibrated} (NumPy float32 for the statistics).
  """
  masks = subnet_masks(subnet)
  fn = _jitted_moments(depthwise_impl, dtype)
  sums: Dict[str, list] = {}
  total = 0
  for images in batches:
    n = int(images.shape[0])
    moments = jax.device_get(fn(variables, masks, jnp.asarray(images)))
    for path, (mean, var, mask) in moments.items():
      acc = sums.setdefault(path, [0.0, 0.0, mask])
      acc[0] = acc[0] + n * mean.astype(np.float64)
      acc[1] = acc[1] + n * var.astype(np.float64)
    total += n
  if not total:
    raise ValueError('recalibrate: no batches')
  # A new tree of plain dicts (its leaves are replaced below; the caller's tree is left as it is).
  stats = flax.core.unfreeze(jax.tree.map(np.asarray, jax.device_get(variables['batch_stats'])))
  for path, (sum_mean, sum_var, mask) in sums.items():
    node = stats
    for part in path.split('/'):
      node = node[part]
    keep = np.asarray(mask) > 0
    node['mean'] = np.where(keep, sum_mean / total, node['mean']).astype(np.float32)
    node['var'] = np.where(keep, sum_var / total, node['var']).astype(np.float32)
  return {**variables, 'batch_stats': stats}
