"""Running a subnet on the supernet's variables: `apply_masked` (masks as arrays), `apply_subnet`, and
`MaskedSupernet` (the supernet as an `inference.Predictor` model).

`apply_subnet` jits one program per (K, depthwise form, dtype, train) and input shape; the subnet reaches
it as mask arrays, so sampling a new subnet never recompiles.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Tuple

import jax
import jax.numpy as jnp

from litepose_jax.nas import space
from litepose_jax.nas.supernet import Masks, Supernet, subnet_masks


def num_keypoints_of(variables: Mapping) -> int:
  """K, read from the shape of the last output conv ([1, 1, C0max, K])."""
  return int(variables['params']['final_raw1']['pointwise']['kernel'].shape[-1])


@functools.lru_cache(maxsize=None)
def create(num_keypoints: int, depthwise_impl: str = 'auto', dtype: Any = jnp.float32) -> Supernet:
  """The supernet module (cached: equal modules share their jitted programs)."""
  return Supernet(num_keypoints=int(num_keypoints), dtype=dtype, depthwise_impl=depthwise_impl)


def apply_masked(variables: Mapping, masks: Masks, images: jax.Array, train: bool = False,
                 depthwise_impl: str = 'auto', dtype: Any = jnp.float32):
  """Pure (traceable, differentiable) supernet forward; the subnet is given by `masks` (arrays).

  Args:
    variables: {'params', 'batch_stats'} of the supernet (`convert_supernet` or `init`).
    masks: `subnet_masks(subnet)` (NumPy or JAX arrays, may be traced).
    images: [B, H, W, 3].
    train: batch-statistics BatchNorm.
  Returns:
    train=False: (out_quarter [B,H/4,W/4,2K], out_half [B,H/2,W/2,K]);
    train=True: ((out_quarter, out_half), new batch_stats) — running statistics updated for the active
    channels only (momentum 0.1, unbiased variance), the masked channels' entries unchanged.
  """
  model = create(num_keypoints_of(variables), depthwise_impl, dtype)
  if not train:
    return model.apply(variables, images, masks, train=False)
  outs, updated = model.apply(variables, images, masks, train=True, mutable=['batch_stats'])
  return outs, updated['batch_stats']


@functools.lru_cache(maxsize=None)
def _jitted(train: bool, depthwise_impl: str, dtype: Any):
  return jax.jit(functools.partial(apply_masked, train=train, depthwise_impl=depthwise_impl, dtype=dtype))


def apply_subnet(variables: Mapping, subnet: space.Subnet, images: jax.Array, train: bool = False,
                 depthwise_impl: str = 'auto', dtype: Any = jnp.float32):
  """Runs `subnet` on the supernet's variables (jitted; one compile per input shape, none per subnet).

  Args:
    variables: supernet {'params', 'batch_stats'}.
    subnet: the architecture (its img_size is not used: the images' resolution is).
    images: [B, H, W, 3], H and W divisible by 16.
    train: batch-statistics BatchNorm.
  Returns:
    train=False: (out_quarter [B,H/4,W/4,2K], out_half [B,H/2,W/2,K]) — channels [0, K) heatmaps,
    [K, 2K) tags, as the fixed model.
    train=True: ((out_quarter, out_half), batch_stats): the supernet's new running statistics (only the
    subnet's channels updated).
  """
  return _jitted(bool(train), depthwise_impl, dtype)(variables, subnet_masks(subnet), jnp.asarray(images))


def init(rng: jax.Array, num_keypoints: int, image_size: int = 64, depthwise_impl: str = 'xla',
         final_init_scale: float = 1.0):
  """Fresh supernet variables (PyTorch default init, BN γ=1, β=0, mean 0, var 1).

  depthwise_impl only affects how init traces ('xla' is the fewest ops); variables are form-independent.
  """
  model = Supernet(int(num_keypoints), depthwise_impl=depthwise_impl, final_init_scale=final_init_scale)
  return model.init(rng, jnp.zeros((1, image_size, image_size, 3), jnp.float32),
                    subnet_masks(space.LARGEST), train=False)


def largest_shapes(num_keypoints: int) -> Tuple[Any, ...]:
  """ShapeDtypeStructs of the supernet variables (no compute)."""
  return jax.eval_shape(lambda: init(jax.random.PRNGKey(0), num_keypoints))


class MaskedSupernet:
  """The supernet as a `model` for `inference.Predictor`: variables = {'net': supernet variables,
  'masks': subnet_masks(subnet)}, so a new subnet is new argument values, not a new program."""

  def __init__(self, num_keypoints: int, depthwise_impl: str = 'auto'):
    self.num_keypoints = int(num_keypoints)
    self.depthwise_impl = depthwise_impl

  def apply(self, variables: Mapping, images: jax.Array, train: bool = False):
    """images [B,H,W,3] → (out_quarter [B,H/4,W/4,2K], out_half [B,H/2,W/2,K])."""
    if train:
      raise ValueError('MaskedSupernet is for evaluation only')
    return apply_masked(variables['net'], variables['masks'], images,
                        depthwise_impl=self.depthwise_impl)
