"""A short supernet run for the search's end-to-end check when no trained supernet is at hand.

  python scripts/train_supernet_smoke.py --out=/tmp/supernet --minutes=25 [--sizes=64,96,128 --batch=8]

Not the supernet training of the package (train.py with a nas config, branch 'supernet'): a plain jitted
loop with the same ingredients — one uniform subnet per step (nas.Sampler, seeded), the resolution of
each global batch drawn by nas/train_input.py from --sizes with targets generated at that size, the
training loss (train.losses.total_loss), Adam (constant lr) — and a model checkpoint (meta kind
'supernet', `nas.load_supernet` reads it) written every --save_minutes and at the end. Its sizes are the
search space's img_size / 4 (64..128 for 256..512), so search it with --downscale=4.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--out', required=True)
  p.add_argument('--minutes', type=float, default=25.0)
  p.add_argument('--save_minutes', type=float, default=5.0)
  p.add_argument('--sizes', default='64,96,128')
  p.add_argument('--batch', type=int, default=8)
  p.add_argument('--lr', type=float, default=2e-3)
  p.add_argument('--seed', type=int, default=0)
  args = p.parse_args()

  from litepose_jax import runtime
  runtime.setup(log_info=True)
  import jax
  import optax

  from configs import common
  from litepose_jax import checkpoint, models, nas
  from litepose_jax.nas import train_input
  from litepose_jax.train import losses

  config = common.get_config('xs', 'crowdpose')
  config.dataset.name = 'synthetic'
  config.input.batch_size = args.batch
  config.seed = args.seed
  sizes = tuple(int(s) for s in args.sizes.split(','))
  data = train_input.multi_resolution_input(config, sizes).batches(0, 0, 1)
  k = 14
  variables = nas.init(jax.random.PRNGKey(args.seed), k, depthwise_impl='xla')
  params, stats = variables['params'], variables['batch_stats']
  tx = optax.adam(args.lr)
  opt_state = tx.init(params)
  sampler = nas.Sampler(args.seed)

  @jax.jit
  def step(params, stats, opt_state, masks, batch):
    def loss_fn(p):
      outs, new_stats = nas.apply_masked({'params': p, 'batch_stats': stats}, masks, batch['image'],
                                         train=True)
      return losses.total_loss(outs, batch)[0], new_stats
    (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_stats, opt_state, loss

  arch = models.Arch.from_json(nas.LARGEST.to_arch_json(), name='supernet')
  meta = checkpoint.model_meta(arch, k, 'crowdpose', kind='supernet', source='scripts/train_supernet_smoke.py',
                               train_sizes=list(sizes))
  start = last_save = time.time()
  n = 0
  while True:
    batch = next(data)
    res = batch.pop('resolution')
    batch = {key: v for key, v in batch.items() if key in ('image', 'heatmaps_0', 'heatmaps_1', 'masks_0',
                                                           'masks_1', 'joints_0', 'joints_1')}
    masks = nas.subnet_masks(sampler()[0])
    params, stats, opt_state, loss = step(params, stats, opt_state, masks, batch)
    n += 1
    if n % 20 == 0:
      print(f'step {n} {res}px loss {float(loss):.5f} {time.time() - start:.0f}s', flush=True)
    done = time.time() - start > args.minutes * 60
    if done or time.time() - last_save > args.save_minutes * 60:
      checkpoint.save_model(args.out, {'params': params, 'batch_stats': stats}, dict(meta, steps=n), step=n)
      last_save = time.time()
      print(f'saved step {n}', flush=True)
    if done:
      break


if __name__ == '__main__':
  main()
