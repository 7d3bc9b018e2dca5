"""The supernet on the synthetic set, on CPU: the checkpoint the search examples and tests start from.

  nohup nice -n 10 python train.py --config=configs/supernet_synthetic.py \
      --workdir=/work/runs/supernet_synthetic > /work/runs/supernet_synthetic.log 2>&1 &

The full supernet (every width and depth of the space) with the input sizes scaled by 1/4 (64-128 px for
the space's 256-512; a subnet's img_size gene I maps to I/4 here), one uniform random subnet per step,
global batch 8, the demo's synthetic set (1-3 large people) and its loss factors. Re-running the command
resumes. The largest subnet is evaluated at 128 px after BN re-calibration every 4 epochs (1024 steps).
Curves and speed: docs/nas.md, "Supernet training".
"""

from configs import demo


def get_config(arg: str = ''):
  del arg
  c = demo.get_config()     # synthetic data, augmentation, loss factors, output-conv init of the demo
  c.nas.enabled = True
  c.nas.rule = 'uniform'
  c.nas.resolutions = (64, 80, 96, 112, 128)
  c.nas.eval_resolution = 128
  c.nas.calibration_batches = 8
  c.input.batch_size = 8
  c.input.shuffle_buffer = 512
  c.optimizer.schedule = 'cosine'
  c.optimizer.warmup_epochs = 1.0
  c.optimizer.lr = 4e-3
  c.num_train_steps = 4096
  c.train.log_every_steps = 50
  c.train.eval_every_epochs = 4       # 2048 images / 8 = 256 steps per epoch
  c.checkpoint_every_steps = 256
  c.keep_checkpoints = 2
  c.eval.batch_size = 16
  return c
