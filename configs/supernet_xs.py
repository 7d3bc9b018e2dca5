"""The LitePose supernet on CrowdPose with the authors' recipe (nas spec §3); `:coco` for COCO (17 joints).

  python train.py --config=configs/supernet_xs.py --workdir=workdirs/supernet
  python train.py --config=configs/supernet_xs.py --workdir=workdirs/supernet \
      --config.train.init_from=<a full-width fixed model checkpoint>    # + channel re-ordering (spec §3)

One random subnet (uniform per gene) and one input size I ∈ {256, 320, 384, 448, 512} per global batch,
targets generated at I; Adam 4e-3, no weight decay, constant lr (the authors' milestones lie past their
END_EPOCH 2400), global batch 16 (the authors' 16 images per GPU). The checkpoint is a supernet
(meta kind 'supernet'): evaluate.py / predict.py refuse it; search and transfer a subnet first
(docs/nas.md). `--config.nas.rule=sandwich` trains largest + smallest + one random subnet per step.
"""

from configs import common


def get_config(arg: str = 'crowdpose'):
  c = common.get_config(arch='xs', dataset=arg or 'crowdpose')
  c.nas.enabled = True
  c.nas.rule = 'uniform'
  c.nas.resolutions = (256, 320, 384, 448, 512)
  c.optimizer.lr = 4e-3
  c.optimizer.schedule = 'constant'
  c.optimizer.weight_decay = 0.0
  c.input.batch_size = 16
  c.train.num_epochs = 2400
  c.train.eval_every_epochs = 50        # the largest subnet at 512 px, after BN re-calibration
  c.checkpoint_every_steps = 2000
  return c
