"""Trains LitePose. The only training file that defines flags; the work is in litepose_jax.train.loop.

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
  from litepose_jax import runtime  # pylint: disable=g-import-not-at-top
  runtime.setup(distributed=FLAGS.distributed, log_info=True)
  from litepose_jax.train import loop  # pylint: disable=g-import-not-at-top
  try:
    result = loop.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except FloatingPointError as e:   # every process sees the same metrics: all stop here, together
    logging.error('%s', e)
    sys.exit(1)
  except runtime.INPUT_ERRORS as e:  # data / config problems: one line, no traceback
    sys.exit(runtime.fail(e))
  except Exception as e:  # pylint: disable=broad-except
    import jax  # pylint: disable=g-import-not-at-top
    if jax.process_count() > 1:
      runtime.abort_job(e)   # a dead peer, or an error on this process only: end the job, never hang
    raise
  if result.get('eval'):
    logging.info('final evaluation: %s', result['eval'])
  print(f'done: {FLAGS.workdir} (checkpoints in {FLAGS.workdir}/checkpoints; '
        f'python evaluate.py --config=... --ckpt={FLAGS.workdir} to evaluate)', flush=True)


if __name__ == '__main__':
  from litepose_jax import runtime  # pylint: disable=g-import-not-at-top
  app.run(main, flags_parser=runtime.parse_flags)
