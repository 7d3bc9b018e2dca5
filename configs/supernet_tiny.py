"""A supernet run small enough for tests: 4 steps on the synthetic set, 64 / 80 px inputs, batch 2.

  python train.py --config=configs/supernet_tiny.py --workdir=/tmp/supernet_tiny

The network is the full supernet (its widths and depths are the search space's); only the input sizes
and the batch are small. No evaluation (tests check mechanics: subnets per step, resume, compile count).
"""

from configs import common


def get_config(arg: str = 'crowdpose'):
  c = common.get_config(arch='xs', dataset=arg or 'crowdpose')
  c.nas.enabled = True
  c.nas.resolutions = (64, 80)
  c.nas.calibration_batches = 1
  c.dataset.name = 'synthetic'
  c.dataset.synthetic_train_images = 16
  c.dataset.synthetic_val_images = 2
  c.input.batch_size = 2
  c.input.shuffle_buffer = 16
  c.input.tf_threads = 1
  c.optimizer.schedule = 'constant'
  c.num_train_steps = 4
  c.checkpoint_every_steps = 2
  c.keep_checkpoints = 2
  c.train.log_every_steps = 1
  c.train.eval_every_epochs = -1
  c.eval.batch_size = 2
  return c
