"""Evaluates a checkpoint on its config's eval split: AP / AR table, results.json, worst images.

  python evaluate.py --config=configs/litepose_xs.py --ckpt=workdirs/litepose_xs          # CrowdPose test
  python evaluate.py --config=configs/litepose_xs.py --ckpt=LitePose-XS.pth.tar \\
      --config.dataset.name=coco_json --config.dataset.ann_file=tests/data/crowdpose_sample/test_crowdpose.json \\
      --config.dataset.image_dir=tests/data/crowdpose_sample

The split is the config's dataset (crowdpose / coco TFDS builders, coco_json, synthetic) read by the data
pipeline's eval input; the table holds CrowdPose AP easy/medium/hard or COCO APm/APl by keypoint set.
--ckpt is an orbax checkpoint directory (training workdir, checkpoint dir or one step) or an authors'
.pth / .pth.tar / .npz file, converted on the fly with the config's architecture and keypoint set.
Writes results.json, metrics.json and worst_images/*.png to --workdir (default: <ckpt>_eval beside a
checkpoint directory, ./<file name>_eval for a weight file).
"""

import json
import os
import pathlib
import sys

import jax
from absl import app
from absl import flags
from ml_collections import config_flags

from litepose_jax import eval_lib
from litepose_jax import evaluation
from litepose_jax import from_config
from litepose_jax import runtime

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (configs/litepose_*.py).',
                                          lock_config=True)
_CKPT = flags.DEFINE_string('ckpt', None, 'Orbax checkpoint directory or authors\' .pth/.pth.tar/.npz.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory (default: see the module docstring).')
flags.mark_flags_as_required(['config', 'ckpt'])


def _default_workdir(ckpt: pathlib.Path) -> str:
  if ckpt.is_dir():
    return str(ckpt.with_name(ckpt.name + '_eval'))
  return ckpt.name.split('.')[0] + '_eval'  # not beside a downloaded (possibly read-only) weight file


def main(argv):
  del argv
  runtime.setup(host_tuning=True)   # before JAX's first computation
  try:
    # The eval input pipeline's TensorFlow must not take the accelerator (or its memory) from JAX.
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.set_visible_devices([], 'GPU')
  except ImportError:
    pass
  config = _CONFIG.value
  ckpt = pathlib.Path(_CKPT.value)
  workdir = _WORKDIR.value or _default_workdir(ckpt)
  try:
    gt = eval_lib.ground_truth(config)  # fails fast, before the model is loaded
    model, variables, keypoint_set, input_size = from_config.load_model(config, str(ckpt))
    metrics = eval_lib.evaluate(config, model, variables, keypoint_set, input_size, workdir, gt=gt)
  except (FileNotFoundError, ValueError, OSError) as e:
    if jax.process_count() > 1 and 'gloo' in str(e).lower():
      runtime.abort_job(e)   # a peer died during the gathering: end at once (runtime.abort_job)
    print(f'error: {e}', file=sys.stderr)
    return 1
  except Exception as e:  # pylint: disable=broad-except
    if jax.process_count() > 1:
      runtime.abort_job(e)
    raise
  if jax.process_index() != 0:
    return 0   # process 0 prints the table (the metrics are the same on every process)
  speed = metrics.pop('images_per_second')
  print(evaluation.format_table(metrics))
  print(f'{speed:.2f} images/s (compilation excluded when an input shape repeats); results, metrics and '
        f'worst images in {os.path.abspath(workdir)}')
  print(json.dumps(metrics))
  return 0


if __name__ == '__main__':
  app.run(main, flags_parser=runtime.parse_flags)
