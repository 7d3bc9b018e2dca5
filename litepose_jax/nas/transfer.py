"""Weight transfer: a subnet of a trained supernet → a standalone model checkpoint (nas spec §5).

  python -m litepose_jax.nas.transfer --config=CONFIG --supernet=DIR --arch=best_1.2G.json --out=DIR \\
      [--calib_batches=32] [--no_recalibrate]

1. BN re-calibration of the subnet on the supernet (`nas.recalibrate`, reset and average) over
   --calib_batches training batches at the architecture's img_size (the config's training split and
   augmentation, as the search's calibration set); --no_recalibrate keeps the supernet's shared running
   statistics, as the authors' weight_transfer.py did (their users got AP 4.7, issue #39);
2. first-k slicing of every tensor (`nas.extract`), head included;
3. `checkpoint.save_model` with the model meta of the extracted architecture (+ kind='transferred',
   the supernet path and step, whether it was re-calibrated), so evaluate.py, predict.py, the exporter
   and `--config.train.init_from` load it like any other checkpoint. Fine-tuning from it keeps the head
   (the authors' loader dropped every 'deconv'/'final' weight, spec §6; docs/nas.md compares both).
"""

from __future__ import annotations

import json
import pathlib
from typing import Iterable, Mapping, Optional

from absl import app
from absl import flags
from ml_collections import config_flags

from litepose_jax import runtime


def _define_flags():
  """The command line's flags, defined only when run as a program (importing this module for its functions
  must not define absl flags: search and transfer would collide on --config)."""
  global _CONFIG, _SUPERNET, _ARCH, _OUT, _CALIB_BATCHES, _NO_RECALIBRATE, _DOWNSCALE, _STEP
  _CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (keypoint set; training split and '
                                            'input settings of the calibration batches).', lock_config=True)
  _SUPERNET = flags.DEFINE_string('supernet', None, 'Supernet checkpoint dir or training workdir.')
  _ARCH = flags.DEFINE_string('arch', None, 'Architecture JSON (e.g. the search\'s best_<budget>.json).')
  _OUT = flags.DEFINE_string('out', None, 'Output checkpoint directory.')
  _CALIB_BATCHES = flags.DEFINE_integer('calib_batches', 32, 'Training batches for BN re-calibration.')
  _NO_RECALIBRATE = flags.DEFINE_bool('no_recalibrate', False, 'Keep the supernet\'s BN statistics (the '
                                       'authors\' weight_transfer.py) instead of re-calibrating.')
  _DOWNSCALE = flags.DEFINE_integer('downscale', 1, 'Calibrate at img_size // downscale (smoke tests only).')
  _STEP = flags.DEFINE_integer('step', None, 'Supernet checkpoint step (default: the latest).')
  flags.mark_flags_as_required(['config', 'supernet', 'arch', 'out'])


def transfer(variables: Mapping, subnet, batches: Optional[Iterable] = None, depthwise_impl: str = 'auto'):
  """(arch_json, standalone variables): `batches` (images [B,I,I,3]) re-calibrate first; None: not."""
  from litepose_jax import nas  # pylint: disable=g-import-not-at-top
  if batches is not None:
    variables = nas.recalibrate(variables, subnet, batches, depthwise_impl=depthwise_impl)
  return nas.extract(variables, subnet)


def save(out: str, arch_json: Mapping, variables: Mapping, num_keypoints: int, keypoints: str,
         **source) -> pathlib.Path:
  """Writes the standalone model as an ordinary model checkpoint (`checkpoint.load_model` reads it)."""
  from litepose_jax import checkpoint, models  # pylint: disable=g-import-not-at-top
  arch = models.Arch.from_json(dict(arch_json), name='transferred')
  meta = checkpoint.model_meta(arch, num_keypoints, keypoints, kind='transferred', **source)
  return checkpoint.save_model(out, variables, meta)


def main(argv):
  del argv
  runtime.setup()
  try:
    from litepose_jax import from_config, nas  # pylint: disable=g-import-not-at-top
    from litepose_jax.nas import search_data, supernet_io  # pylint: disable=g-import-not-at-top
    config = _CONFIG.value
    arch_path = pathlib.Path(_ARCH.value)
    if not arch_path.is_file():
      raise FileNotFoundError(f'--arch {arch_path}: no such file')
    try:
      subnet = nas.subnet_from_arch(arch_path.read_text())
    except (ValueError, json.JSONDecodeError) as e:
      raise ValueError(f'--arch {arch_path}: {e}') from None
    variables, meta = supernet_io.load_supernet(_SUPERNET.value, _STEP.value)
    ks = from_config.keypoint_set(config)
    if nas.num_keypoints_of(variables) != ks.num_keypoints:
      raise ValueError(f'{_SUPERNET.value}: the supernet has {nas.num_keypoints_of(variables)} joints, the '
                       f'config\'s keypoint set {ks.name!r} has {ks.num_keypoints}')
    batches = None
    if not _NO_RECALIBRATE.value:
      batches = search_data.calibration_images(config, subnet.img_size // max(1, _DOWNSCALE.value),
                                               _CALIB_BATCHES.value)
    arch_json, fixed = transfer(variables, subnet, batches, config.model.depthwise_impl)
    out = save(_OUT.value, arch_json, fixed, ks.num_keypoints, ks.name,
               supernet=str(pathlib.Path(_SUPERNET.value).absolute()), supernet_step=meta['step'],
               recalibrated=not _NO_RECALIBRATE.value,
               calib_images=len(batches) * int(config.input.batch_size) if batches else 0)
  except runtime.INPUT_ERRORS as e:
    return runtime.fail(e)
  how = f'BN re-calibrated on {len(batches)} batches' if batches else 'the supernet\'s BN statistics'
  print(f'transferred {arch_path.name} ({how}) → {out}')
  return 0


if __name__ == '__main__':
  _define_flags()
  app.run(main, flags_parser=runtime.parse_flags)
