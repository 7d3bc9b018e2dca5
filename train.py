"""Trains LitePose. The only training file that defines flags; the work is in litepose_jax.train_lib.

  python train.py --config=configs/litepose_s.py --workdir=workdirs/s
  python train.py --config=configs/litepose_xs.py:coco --workdir=workdirs/xs_coco --config.input.batch_size=64
  python train.py --config=configs/demo.py --workdir=workdirs/demo          # synthetic data, CPU, minutes

Re-running the same command resumes from the latest checkpoint in the workdir. SIGTERM / Ctrl-C save a
checkpoint and exit 0. On a multi-host Cloud TPU slice run the same command on every worker with
--distributed (see docs/training.md).
"""

import logging
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

config_flags.DEFINE_config_file('config', None, 'Training config file (get_config()).', lock_config=True)
flags.DEFINE_string('workdir', None, 'Checkpoints, TensorBoard events and metrics go here.')
flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() first (multi-host TPU / GPU).')
flags.mark_flags_as_required(['config', 'workdir'])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s', force=True)
  logging.getLogger('absl').setLevel(logging.WARNING)   # orbax logs every save at INFO
  logging.getLogger('jax._src.xla_bridge').setLevel(logging.WARNING)   # "no TPU backend" on CPU/GPU
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.distributed:
    # Cloud TPU / SLURM: coordinator, process count and id come from the environment.
    jax.distributed.initialize()
  try:
    # The input pipeline's TensorFlow must not take the accelerator (or its memory) from JAX.
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.set_visible_devices([], 'GPU')
  except ImportError:
    pass
  from litepose_jax import compile_cache, train_lib  # pylint: disable=g-import-not-at-top
  compile_cache.enable()   # a resumed run loads its compiled step instead of compiling it again
  try:
    result = train_lib.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except FloatingPointError as e:
    logging.error('%s', e)
    sys.exit(1)
  if result['eval']:
    logging.info('final evaluation: %s', result['eval'])


if __name__ == '__main__':
  app.run(main)
