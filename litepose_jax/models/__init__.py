"""LitePose models: `create(arch, num_keypoints, dtype=...)` returns the linen module."""

from __future__ import annotations

from typing import Any, Mapping, Union

import jax
import jax.numpy as jnp

from litepose_jax.models.arch import ARCHS, IMAGENET_MEAN, IMAGENET_STD, Arch, get_arch, make_divisible
from litepose_jax.models.litepose import LitePose

__all__ = ['ARCHS', 'IMAGENET_MEAN', 'IMAGENET_STD', 'Arch', 'LitePose', 'create', 'get_arch', 'init_variables', 'make_divisible']

_DTYPES = {'float32': jnp.float32, 'fp32': jnp.float32, 'bfloat16': jnp.bfloat16, 'bf16': jnp.bfloat16,
           'float16': jnp.float16, 'fp16': jnp.float16}


def create(arch: Union[str, Arch, Mapping[str, Any]], num_keypoints: int, dtype: Any = jnp.float32,
           depthwise_impl: str = 'auto', final_init_scale: float = 1.0, bn_group_size: int = 0) -> LitePose:
  """Builds LitePose.

  Args:
    arch: 'xs' | 's' | 'm' | 'l', an authors' architecture JSON (path, string or dict), or an Arch.
    num_keypoints: K (14 CrowdPose, 17 COCO).
    dtype: compute dtype, e.g. jnp.bfloat16 or 'bfloat16'; parameters stay float32.
    depthwise_impl: 'auto' (the C++ kernel 'ffi' on CPU, else shifted multiply-adds; native conv
      elsewhere), 'xla', 'shift', 'ffi' or 'tflite' (export for XNNPACK; see `depthwise.py`).
    final_init_scale: initial scale of the output convs (see `LitePose`; 1.0 = the authors').
    bn_group_size: train-mode BN statistics over groups of this many images (0: the whole batch).
  Returns:
    The linen module; `apply(variables, images[B,H,W,3], train=False)` returns
    (out_quarter [B,H/4,W/4,2K], out_half [B,H/2,W/2,K]).
  """
  if isinstance(dtype, str):
    dtype = _DTYPES[dtype]
  return LitePose(arch=get_arch(arch), num_keypoints=int(num_keypoints), dtype=dtype,
                  depthwise_impl=depthwise_impl, final_init_scale=float(final_init_scale),
                  bn_group_size=int(bn_group_size))


def init_variables(model: LitePose, rng: jax.Array, image_size: int | None = None, batch: int = 1):
  """{'params', 'batch_stats'} for `model`, initialised as PyTorch initialises the authors' model."""
  size = image_size or model.arch.img_size
  return model.init(rng, jnp.zeros((batch, size, size, 3), jnp.float32), train=False)
