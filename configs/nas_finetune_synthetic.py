"""Search, transfer and fine-tuning of a subnet of the synthetic supernet (docs/nas.md, "Search and
transfer": end to end; scripts/nas_e2e_synthetic.sh runs it all).

  python train.py --config=configs/nas_finetune_synthetic.py --workdir=DIR \\
      --config.model.arch=SEARCH/best_1.2G.json --config.input.size=64 \\
      --config.train.init_from=TRANSFERRED        # omit init_from: the same architecture from scratch

The data are the demo's synthetic set (configs/demo.py: 1-3 large people, light augmentation), which the
synthetic supernet (/work/runs/supernet_synthetic, configs/supernet_synthetic.py) trains on at 1/4 of the
search space's sizes: a subnet of img_size I runs at I/4 (`--config.input.size`, the search's
`--downscale=4`). Fine-tuning and training from scratch share N steps, data, optimiser (cosine from 2e-3,
no warm-up) and seed, so only the initial weights differ. Evaluation (evaluate.py) on the 64 validation
images.
"""

from configs import demo


def get_config(arg: str = ''):
  del arg
  c = demo.get_config()
  c.input.batch_size = 8
  c.optimizer.lr = 2e-3
  c.optimizer.warmup_epochs = 0.0
  c.num_train_steps = 500
  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 1
  c.train.log_every_steps = 50
  c.train.eval_every_epochs = -1       # evaluated afterwards with evaluate.py, as the other checkpoints
  c.eval.batch_size = 8
  return c
