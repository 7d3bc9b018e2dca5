"""LitePose-XS on CrowdPose with the authors' recipe (spec d.2); `:coco` switches to COCO (17 joints).

  python train.py --config=configs/litepose_xs.py --workdir=workdirs/litepose_xs
  python train.py --config=configs/litepose_xs.py:coco --workdir=workdirs/litepose_xs_coco

Global batch 16 (the authors' 16 images per GPU on one device; scale lr with --config.optimizer.lr when
changing it). Published: see the README results table.

BatchNorm statistics over groups of 16 images, as the authors' per-GPU BN (docs/accelerators.md).
"""

from configs import common


def get_config(arg: str = 'crowdpose'):
  config = common.get_config(arch='xs', dataset=arg or 'crowdpose')
  config.model.bn_group_size = 16   # = the whole batch at 16; kept per 16 images when the batch grows
  return config
