"""The CPU demo: a small LitePose trained on the synthetic set for a few minutes (`make demo`).

  python train.py --config=configs/demo.py --workdir=workdirs/demo

Synthetic images (cached under data/ by the data pipeline), 14 CrowdPose joints, a reduced architecture
(128 px, 2 blocks per stage, 5x5 depthwise kernels) so that a laptop CPU trains it in minutes. Global
batch 16. Target: AP ≥ 0.5 on the synthetic validation split in ≤ 15 minutes on a 2-core machine
(measured figures: docs/training.md).
"""

import json

from configs import common

DEMO_ARCH = {
    'img_size': 128, 'input_channel': 16, 'deconv_setting': [24, 24, 24],
    'backbone_setting': [
        {'num_blocks': 2, 'stride': 2, 'channel': 16, 'block_setting': [[6, 5]] * 2},
        {'num_blocks': 2, 'stride': 2, 'channel': 32, 'block_setting': [[6, 5]] * 2},
        {'num_blocks': 2, 'stride': 2, 'channel': 48, 'block_setting': [[6, 5]] * 2},
        {'num_blocks': 2, 'stride': 1, 'channel': 64, 'block_setting': [[6, 5]] * 2},
    ],
}


def get_config(arg: str = ''):
  del arg
  c = common.get_config(arch='xs', dataset='crowdpose')
  c.model.arch = json.dumps(DEMO_ARCH)
  c.dataset.name = 'synthetic'
  c.dataset.train_split = 'train'
  c.dataset.eval_split = 'validation'
  c.input.batch_size = 16
  c.input.shuffle_buffer = 512
  c.optimizer.schedule = 'cosine'
  c.optimizer.warmup_epochs = 1.0
  c.optimizer.lr = 4e-3
  c.num_train_steps = 600
  c.train.log_every_steps = 20
  c.train.eval_every_epochs = 0         # only at the end
  c.checkpoint_every_steps = 200
  c.keep_checkpoints = 1
  c.eval.batch_size = 16
  return c
