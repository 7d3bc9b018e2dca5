"""The CPU demo: a small LitePose trained on the synthetic set for a few minutes (`make demo`).

  python train.py --config=configs/demo.py --workdir=workdirs/demo

Synthetic images (1-3 people, generated once and cached under data/synthetic/), 14 CrowdPose joints, a
reduced architecture (128 px, 2 blocks per stage, 5x5 depthwise kernels) so that a laptop CPU trains it
in minutes: 1600 steps of global batch 16, 0.35-0.43 s per step on the 2-core CI machine. Expected result
(README, "Results"; `make demo`, 10.8-12.9 min): AP 0.57, AP50 0.87, AR 0.68 on the 64 synthetic
validation images (0.43 after 800 steps, measured at an earlier stop).
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
  # Output convs start near zero: with PyTorch's init they start at ~0.5 against targets that are 0
  # almost everywhere and the first ~150 steps only undo that (AP 0.001 -> 0.43 after 800 steps).
  c.model.final_init_scale = 0.01
  c.dataset.name = 'synthetic'
  c.dataset.train_split = 'train'
  c.dataset.eval_split = 'validation'
  c.dataset.synthetic_train_images = 2048
  c.dataset.synthetic_max_people = 3    # 1-3 people per image ...
  c.dataset.synthetic_min_torso = 0.2   # ... and no tiny ones: learnable in minutes on a CPU
  c.input.batch_size = 16
  c.input.shuffle_buffer = 512
  c.input.scale_range = (1.0, 1.25)     # light augmentation
  c.input.max_rotation = 10.0
  # Supervise the black border too: the test-time path pads with it, and a briefly trained network
  # otherwise fills the unsupervised border with peaks that crowd out the real people.
  c.input.mask_outside_image = False
  # Tags collapse to one value early in training (the push term has no gradient then); a stronger
  # associative-embedding loss separates people sooner. The authors' factors are 1e-3.
  c.loss.push_factor = 1e-2
  c.loss.pull_factor = 1e-2
  c.optimizer.schedule = 'cosine'
  c.optimizer.warmup_epochs = 1.0
  c.optimizer.lr = 4e-3
  c.num_train_steps = 1600
  c.train.log_every_steps = 100
  c.train.eval_every_epochs = 0         # only at the end
  c.checkpoint_every_steps = 400
  c.keep_checkpoints = 1
  c.eval.batch_size = 16
  return c
