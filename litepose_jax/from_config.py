"""The one place where a config (configs/common.py schema) becomes typed objects.

Every key is read as an attribute: configs/common.py defines them all (tests/test_from_config.py checks
the library for reads of undefined keys), so a mistyped key fails instead of falling back to a default.
Derived values (input size from the architecture, joint count from the keypoint set) are computed here
and never typed twice. The data pipeline (litepose_jax/data) reads its own `dataset` / `input` sections.
"""

from __future__ import annotations

import pathlib

from litepose_jax import checkpoint
from litepose_jax import convert
from litepose_jax import decode
from litepose_jax import inference
from litepose_jax import keypoints as kp_lib
from litepose_jax import models
from litepose_jax.train import losses
from litepose_jax.train import optim


def input_size(config) -> int:
  """Training / test input resolution: `input.size` if set, else the architecture's img_size (supernet
  training: the largest of nas.resolutions)."""
  if config.nas.enabled:
    return int(config.input.size) or max(int(r) for r in config.nas.resolutions)
  return int(config.input.size) or models.get_arch(config.model.arch).img_size


def keypoint_set(config) -> kp_lib.KeypointSet:
  return kp_lib.get(config.dataset.keypoints)


def create_model(config) -> models.LitePose:
  """The LitePose module a config describes (supernet training: the fixed model at the supernet's maximum
  widths, named 'supernet'; its variables are the supernet's, see `supernet_training`)."""
  arch = config.model.arch
  if config.nas.enabled:
    from litepose_jax.nas import convert as nas_convert  # pylint: disable=g-import-not-at-top
    arch = nas_convert.supernet_arch()
  return models.create(arch, keypoint_set(config).num_keypoints, dtype=config.model.dtype,
                       depthwise_impl=config.model.depthwise_impl,
                       final_init_scale=config.model.final_init_scale,
                       bn_group_size=int(config.model.bn_group_size))


def supernet_training(config):
  """The supernet parts of a training run (`nas.training.SupernetTraining`), or None unless nas.enabled."""
  if not config.nas.enabled:
    return None
  # Lazy: litepose_jax.nas imports the training loop, which imports this module.
  from litepose_jax.nas import training  # pylint: disable=g-import-not-at-top
  if int(config.model.bn_group_size):
    raise ValueError('supernet training does not support model.bn_group_size (set it to 0)')
  n = config.nas
  resolutions = training.sizes_check(n.resolutions)
  return training.SupernetTraining(
      num_keypoints=keypoint_set(config).num_keypoints, keypoints=keypoint_set(config).name,
      resolutions=resolutions, rule=str(n.rule), num_random=int(n.num_random), reorder=bool(n.reorder),
      eval_resolution=int(n.eval_resolution) or max(resolutions),
      calibration_batches=int(n.calibration_batches), depthwise_impl=config.model.depthwise_impl,
      dtype=create_model(config).dtype)


_AUTHORS_FILES = ('.pth', '.tar', '.npz', '.pt')


def load_model(config, ckpt: str):
  """(model, variables, keypoint_set, input_size) from an orbax checkpoint or an authors' weight file.

  An authors' file (.pth / .pth.tar / .npz) is converted on the fly with the architecture and keypoint set
  of `config`; an orbax checkpoint carries its own (config.model.dtype / depthwise_impl still apply).
  """
  path = pathlib.Path(ckpt)
  if not path.exists():
    raise FileNotFoundError(f'checkpoint {ckpt} does not exist')
  size = int(config.input.size)
  if path.is_file() and path.name.endswith(_AUTHORS_FILES):
    ks = keypoint_set(config)
    variables, _ = convert.convert_file(path, config.model.arch, ks.num_keypoints, ks.name)
    return create_model(config), variables, ks, input_size(config)
  loaded = checkpoint.load_model(path, dtype=config.model.dtype, depthwise_impl=config.model.depthwise_impl)
  return loaded.model, loaded.variables, loaded.keypoint_set, size or loaded.model.arch.img_size


def loss_weights(config) -> losses.LossWeights:
  """Loss factors from config.loss."""
  c = config.loss
  return losses.LossWeights(tuple(c.heatmap_factors), float(c.push_factor), float(c.pull_factor),
                            str(c.push_type))


def optimizer(config, steps_per_epoch: int, total_steps: int):
  """(optax transformation, lr schedule) from config.optimizer; see train.optim."""
  return optim.make_optimizer(config.optimizer, steps_per_epoch, total_steps)


def decode_config(config, keypoint_set_: kp_lib.KeypointSet) -> decode.DecodeConfig:
  """DecodeConfig from config.eval."""
  e = config.eval
  return decode.DecodeConfig.create(
      keypoint_set_, max_people=e.max_people, nms_kernel=e.nms_kernel,
      detection_threshold=e.detection_threshold, tag_threshold=e.tag_threshold, adjust=e.adjust,
      refine=e.refine, tie_break=e.tie_break)


def predictor(config, model, variables, keypoint_set_: kp_lib.KeypointSet,
              input_size_: int) -> inference.Predictor:
  """The test-time path with config.eval's settings (flip, scales, decoder, batch size)."""
  return inference.Predictor(model, variables, keypoint_set_, input_size_, flip=config.eval.flip_test,
                             scales=tuple(config.eval.scales),
                             decode_config=decode_config(config, keypoint_set_),
                             batch_size=config.eval.batch_size)
