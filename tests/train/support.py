"""Synthetic training input for the training tests (NumPy targets as spec b describes them).

`SyntheticInput` follows the training-batch contract of the data pipeline (see train_step.BATCH_KEYS) and
its resume contract (global batch number `start_step` first), with deterministic per-epoch shuffling, so
the loop can be tested without TensorFlow. Each batch also carries 'sample_id' [B] for order checks.
The renderer is itself checked against the authors' targets in the reference fixture.
"""

import numpy as np
from litepose_jax.train import loop


def render_targets(people: np.ndarray, out_size: int, num_people: int = 30, sigma: float = 2.0):
  """Targets of one image at one output scale (spec b).

  Args:
    people: [P, K, 3] joints (x, y, v) already in this scale's output pixel grid.
    out_size: R.
    num_people: packed-joint rows.
    sigma: Gaussian sigma.
  Returns:
    heatmaps [R,R,K] float32 (NHWC), joints [num_people,K,2] int32 (flat NCHW index k·R²+y·R+x, valid).
  """
  p, k, _ = people.shape
  hm = np.zeros((k, out_size, out_size), np.float32)
  joints = np.zeros((num_people, k, 2), np.int32)
  d = np.arange(-7, 8)
  g = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma ** 2))
  for i in range(p):
    slot = 0
    for j in range(k):
      x, y, v = people[i, j]
      xi, yi = int(x), int(y)            # truncation toward zero, as the authors' int()
      if v <= 0 or xi < 0 or yi < 0 or xi >= out_size or yi >= out_size:
        continue
      y0, y1, x0, x1 = max(0, yi - 7), min(out_size, yi + 8), max(0, xi - 7), min(out_size, xi + 8)
      hm[j, y0:y1, x0:x1] = np.maximum(hm[j, y0:y1, x0:x1], g[y0 - yi + 7:y1 - yi + 7, x0 - xi + 7:x1 - xi + 7])
      joints[i, slot] = (j * out_size * out_size + yi * out_size + xi, 1)
      slot += 1
  return np.moveaxis(hm, 0, -1), joints


class SyntheticInput:
  """N synthetic images with blobs at the joints; batches of the training contract.

  Global batch i of epoch e = i // steps_per_epoch is rows [j·B, (j+1)·B) of a permutation seeded by
  (seed, e); process p gets its contiguous share of the rows.
  """

  def __init__(self, num_examples: int, global_batch: int, image_size: int, num_keypoints: int,
               seed: int = 0, people: int = 3):
    rng = np.random.default_rng(seed)
    self.num_examples, self.global_batch, self.seed = num_examples, global_batch, seed
    s, k, r0, r1 = image_size, num_keypoints, image_size // 4, image_size // 2
    self.samples = []
    yy, xx = np.mgrid[:s, :s]
    colors = rng.uniform(-1, 1, (k, 3))
    for _ in range(num_examples):
      pts = np.concatenate([rng.uniform(0.1 * s, 0.9 * s, (people, k, 2)), np.ones((people, k, 1))], -1)
      image = rng.normal(0, 0.1, (s, s, 3))
      for person in pts:
        for j, (x, y, _) in enumerate(person):
          image += colors[j] * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8.0)[..., None]
      hm0, j0 = render_targets(pts * [r0 / s, r0 / s, 1], r0)
      hm1, _ = render_targets(pts * [r1 / s, r1 / s, 1], r1)
      self.samples.append({'image': image.astype(np.float32), 'heatmaps_0': hm0, 'heatmaps_1': hm1,
                           'masks_0': np.ones((r0, r0), np.float32), 'masks_1': np.ones((r1, r1), np.float32),
                           'joints_0': j0})

  def global_ids(self, step: int) -> np.ndarray:
    spe = self.num_examples // self.global_batch
    epoch, j = divmod(step, spe)
    perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
    return perm[j * self.global_batch:(j + 1) * self.global_batch]

  def batches(self, start_step: int, process_index: int, process_count: int):
    local = self.global_batch // process_count
    step = start_step
    while True:
      ids = self.global_ids(step)[process_index * local:(process_index + 1) * local]
      batch = {k: np.stack([self.samples[i][k] for i in ids]) for k in self.samples[0]}
      batch['sample_id'] = ids
      yield batch
      step += 1

  def train_input(self, record=None) -> loop.TrainInput:
    """The loop's TrainInput; `record` (a list) receives the sample ids of every batch handed out."""
    def batches(start, pidx, pcount):
      for b in self.batches(start, pidx, pcount):
        if record is not None:
          record.append(b['sample_id'].tolist())
        yield b
    return loop.TrainInput(self.num_examples, batches)


def test_render_targets_match_authors(reference_dir):
  ref = np.load(reference_dir / 'litepose_xs_reference.npz')
  people = ref['people_at_128']                     # joints at the 1/2 scale (R=128) of a 256 input
  for s, r in ((0, 64), (1, 128)):
    for b in range(people.shape[0]):
      hm, joints = render_targets(people[b] * [r / 128, r / 128, 1], r)
      np.testing.assert_allclose(hm, np.moveaxis(ref[f'target_heatmaps_{s}'][b], 0, -1), atol=1e-6)
      np.testing.assert_array_equal(joints, ref[f'target_joints_{s}'][b])


def test_synthetic_input_resumes_in_order():
  data = SyntheticInput(num_examples=10, global_batch=4, image_size=32, num_keypoints=3)
  full = [b['sample_id'].tolist() for _, b in zip(range(6), data.batches(0, 0, 1))]
  resumed = [b['sample_id'].tolist() for _, b in zip(range(3), data.batches(3, 0, 1))]
  assert full[3:] == resumed
  halves = [b['sample_id'].tolist() for p in (0, 1) for _, b in zip(range(1), data.batches(2, p, 2))]
  assert halves[0] + halves[1] == full[2]
  assert full[0] != full[2]      # epochs are reshuffled (2 steps per epoch)


def _run(argv=None):
  """Subprocess entry for the loop tests: trains configs/tiny.py on SyntheticInput.

  `--signal_at=I --signal=TERM|KILL` sends that signal to this process while global batch I is handed out
  (a preemption at a known point); `--nan_at=I` puts a NaN into batch I's image.
  """
  import argparse
  import json
  import logging
  import os
  import signal

  p = argparse.ArgumentParser()
  p.add_argument('--workdir', required=True)
  p.add_argument('--steps', type=int, default=8)
  p.add_argument('--every', type=int, default=4)
  p.add_argument('--keep', type=int, default=2)
  p.add_argument('--ema', type=float, default=0.0)
  p.add_argument('--signal_at', type=int, default=-1)
  p.add_argument('--signal', default='TERM')
  p.add_argument('--nan_at', type=int, default=-1)
  p.add_argument('--record', default='')
  p.add_argument('--init_from', default='')
  p.add_argument('--eps', type=float, default=0.0, help='Adam eps (0: the config\'s)')
  p.add_argument('--signal_process', type=int, default=-1, help='only this process sends the signal')
  p.add_argument('--eval_data', default='', help='evaluate at the end on a 2-image synthetic val split here')
  args = p.parse_args(argv)
  logging.basicConfig(level=logging.INFO, force=True)
  logging.getLogger('absl').setLevel(logging.WARNING)
  if os.environ.get('LITEPOSE_COORDINATOR'):   # a process of a litepose_jax.launch job (no TensorFlow)
    from litepose_jax import runtime  # pylint: disable=g-import-not-at-top
    runtime.initialize_distributed()
    runtime.enable_compile_cache()
  import jax  # pylint: disable=g-import-not-at-top
  pidx = jax.process_index()

  from configs import tiny  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.num_train_steps = args.steps
  config.checkpoint_every_steps = args.every
  config.keep_checkpoints = args.keep
  config.optimizer.ema_decay = args.ema
  config.train.init_from = args.init_from
  config.train.log_every_steps = 1
  if args.eps:
    config.optimizer.eps = args.eps
  if args.eval_data:   # the library's eval hook (data pipeline, TensorFlow) on 2 synthetic images
    config.train.eval_every_epochs = 0
    config.dataset.data_dir = args.eval_data
    config.dataset.synthetic_val_images = 2
    config.eval.batch_size = 2
    config.input.tf_threads = 1
  data = SyntheticInput(16, config.input.batch_size, 64, 14)

  def batches(start, pidx, pcount):
    for i, b in enumerate(data.batches(start, pidx, pcount), start):
      if args.record:
        with open(args.record, 'a') as f:
          f.write(json.dumps({'step': i, 'process': pidx, 'ids': b['sample_id'].tolist()}) + '\n')
      if i == args.nan_at:
        b['image'][0, 0, 0, 0] = np.nan
      if i == args.signal_at and args.signal_process in (-1, pidx):
        os.kill(os.getpid(), getattr(signal, 'SIG' + args.signal))
      yield b

  try:
    result = loop.train_and_evaluate(config, args.workdir,
                                          train_input=loop.TrainInput(data.num_examples, batches))
  except FloatingPointError as e:
    print('FloatingPointError:', e, flush=True)
    raise SystemExit(3)
  except Exception as e:  # pylint: disable=broad-except
    if jax.process_count() > 1:   # as train.py: a dead peer ends the job, never hangs it
      from litepose_jax import runtime  # pylint: disable=g-import-not-at-top
      runtime.abort_job(e)
    raise
  print('RESULT', json.dumps({'step': result['step'], 'preempted': result['preempted'], 'process': pidx}),
        flush=True)


if __name__ == '__main__':
  _run()
