"""LitePose-M on CrowdPose with the authors' recipe (spec d.2); `:coco` switches to COCO (17 joints).

  python train.py --config=configs/litepose_m.py --workdir=workdirs/litepose_m
  python train.py --config=configs/litepose_m.py:coco --workdir=workdirs/litepose_m_coco

Global batch 16 (the authors' 16 images per GPU on one device; scale lr with --config.optimizer.lr when
changing it). Published: see the README results table.

BatchNorm statistics over groups of 16 images (`model.bn_group_size=16`), as the authors trained (PyTorch
DDP, SYNC_BN False: per-GPU statistics over 16 images): at the global batch 16 this is the whole batch, as
before; with a larger global batch on several devices (e.g. 64 on 4 GPUs / TPU cores) each group of 16
keeps the paper's statistics instead of statistics over all 64 (docs/accelerators.md). Global batches that
are not a multiple of 16 need --config.model.bn_group_size=0 (whole batch).
"""

from configs import common


def get_config(arg: str = 'crowdpose'):
  config = common.get_config(arch='m', dataset=arg or 'crowdpose')
  config.model.bn_group_size = 16   # the authors' per-GPU BatchNorm (module doc)
  return config
