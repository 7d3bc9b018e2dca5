"""Values derived from a config (never typed twice in the config itself)."""

from __future__ import annotations

from litepose_jax import keypoints as kp_lib
from litepose_jax import models


def input_size(config) -> int:
  """Training / test input resolution: `input.size` if set, else the architecture's img_size."""
  size = int(config.input.get('size', 0) or 0)
  return size or models.get_arch(config.model.arch).img_size


def output_sizes(config) -> tuple[int, int]:
  """Heatmap resolutions (I/4, I/2)."""
  size = input_size(config)
  return size // 4, size // 2


def keypoint_set(config) -> kp_lib.KeypointSet:
  return kp_lib.get(config.dataset.keypoints)


def num_keypoints(config) -> int:
  return keypoint_set(config).num_keypoints


def create_model(config):
  """The LitePose module a config describes."""
  return models.create(config.model.arch, num_keypoints(config), dtype=config.model.dtype,
                       depthwise_impl=config.model.depthwise_impl,
                       final_init_scale=config.model.get('final_init_scale', 1.0))
