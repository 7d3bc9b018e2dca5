"""Fine-tuning a searched subnet on the synthetic set (docs/nas.md, "Search and transfer": end to end).

  python train.py --config=configs/nas_finetune_synthetic.py --workdir=DIR \\
      --config.model.arch=SEARCH/best_1.2G.json --config.input.size=64 \\
      --config.train.init_from=TRANSFERRED        # omit init_from: the same architecture from scratch

Same N steps, data, optimiser and seed for both runs, so only the initial weights differ. The input size
is the subnet's img_size // 4 (the smoke supernet's training sizes, see scripts/train_supernet_smoke.py).
"""

from configs import common


def get_config(arg: str = 'crowdpose'):
  c = common.get_config(arch='xs', dataset=arg or 'crowdpose')
  c.dataset.name = 'synthetic'
  c.input.batch_size = 8
  c.optimizer.lr = 1e-3
  c.optimizer.schedule = 'constant'
  c.num_train_steps = 300
  c.checkpoint_every_steps = 300
  c.keep_checkpoints = 1
  c.train.log_every_steps = 50
  c.train.eval_every_epochs = -1       # evaluated afterwards with evaluate.py, as the other checkpoints
  c.eval.max_images = 64
  return c
