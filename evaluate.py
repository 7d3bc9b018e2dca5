"""Evaluates a checkpoint: AP / AR (CrowdPose easy/medium/hard or COCO m/l), results.json, worst images.

  python evaluate.py --config=configs/litepose_xs.py --ckpt=workdirs/litepose_xs \\
      --config.dataset.ann_file=data/crowdpose/json/crowdpose_test.json \\
      --config.dataset.image_dir=data/crowdpose/images
  python evaluate.py --config=configs/litepose_xs.py --ckpt=LitePose-XS.pth.tar ...   # authors' weights

--ckpt is an orbax checkpoint directory (training workdir, checkpoint dir or one step) or an authors'
.pth / .pth.tar / .npz file, converted on the fly with the config's architecture and keypoint set.
Writes results.json, metrics.json and worst_images/*.png to --workdir (default: <ckpt>_eval).
"""

import json
import os
import pathlib
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from litepose_jax import eval_lib

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (configs/litepose_*.py).',
                                          lock_config=True)
_CKPT = flags.DEFINE_string('ckpt', None, 'Orbax checkpoint directory or authors\' .pth/.pth.tar/.npz.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory (default: <ckpt>_eval).')
flags.mark_flags_as_required(['config', 'ckpt'])


def main(argv):
  del argv
  config = _CONFIG.value
  ckpt = pathlib.Path(_CKPT.value)
  workdir = _WORKDIR.value or str(ckpt.with_name(ckpt.name.split('.')[0] + '_eval'))
  try:
    split = eval_lib.eval_split(config)  # fails fast, before the model is loaded
    model, variables, keypoint_set, input_size = eval_lib.load_model(config, str(ckpt))
    metrics = eval_lib.evaluate(config, model, variables, keypoint_set, input_size, workdir, split=split)
  except (FileNotFoundError, ValueError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  speed = metrics.pop('images_per_second')
  print(eval_lib.format_table(metrics))
  print(f'{speed:.2f} images/s; results, metrics and worst images in {os.path.abspath(workdir)}')
  print(json.dumps(metrics))
  return 0


if __name__ == '__main__':
  app.run(main)
