"""A tiny LitePose (64 px, one 3x3 block per stage) for tests: a training step compiles and runs in seconds.

  python train.py --config=configs/tiny.py --workdir=/tmp/tiny

Global batch 8 (one image per device on an 8-device test mesh). 8 steps on the synthetic set; well under a
minute on a laptop CPU. Expected result: nothing useful (the tests check mechanics: sharding, resume,
checkpoints, NaN handling), the loss goes down.
"""

import json

from configs import common

# Same layout as the authors' architecture JSON; strides must be 2/2/2/1.
TINY_ARCH = {
    'img_size': 64, 'input_channel': 8, 'deconv_setting': [8, 8, 8],
    'backbone_setting': [
        {'num_blocks': 1, 'stride': 2, 'channel': 8, 'block_setting': [[2, 3]]},
        {'num_blocks': 1, 'stride': 2, 'channel': 16, 'block_setting': [[2, 3]]},
        {'num_blocks': 1, 'stride': 2, 'channel': 16, 'block_setting': [[2, 3]]},
        {'num_blocks': 1, 'stride': 1, 'channel': 16, 'block_setting': [[2, 3]]},
    ],
}


def get_config(arg: str = 'crowdpose'):
  c = common.get_config(arch='xs', dataset=arg or 'crowdpose')
  c.model.arch = json.dumps(TINY_ARCH)
  # The native depthwise conv compiles 2-3x faster than the CPU shift path; speed is moot at 64 px.
  c.model.depthwise_impl = 'xla'
  c.dataset.name = 'synthetic'
  c.input.batch_size = 8
  c.input.shuffle_buffer = 64
  c.num_train_steps = 8
  c.checkpoint_every_steps = 4
  c.keep_checkpoints = 2
  c.train.log_every_steps = 2
  c.train.eval_every_epochs = -1
  return c
