"""Supernet training input: every global batch at its own resolution, targets generated at that size.

The authors produce every batch at the largest input size and then nearest-resize images, heatmaps and
masks to the sampled resolution I, and remap the tag-joint indices with a formula that treats the flat
index as a 512-wide image (spec litepose-nas.md §3): wrong rows for CrowdPose below 512 px and wrong
indices for COCO at every size. Here each resolution has its own data pipeline (litepose_jax.data, the
same augmentation and targets as fixed-model training at `input.size = I`), so heatmaps, masks and tag
joints are generated directly at I: no resize, no remap.

Which resolution global batch b uses depends only on (seed, b) (`resolution_of`), so a resumed run
restarts each pipeline at the number of batches it had produced before the resume step: the batches
equal those of an uninterrupted run, as for fixed-model training. Each pipeline shuffles with its own
seed, so batches of different resolutions do not repeat each other's images.

The subnets a global batch trains (`subnets_of`) are likewise a function of (seed, step) only: a resumed
run trains the same subnets, and every process of a multi-process run draws the same ones (the authors'
unseeded per-GPU samplers drew different ones, nas spec §3 / §8.9).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from litepose_jax.nas import sampler, space
from litepose_jax.nas.supernet import subnet_masks
from litepose_jax.train.loop import TrainInput

# The search space's input sizes (spec litepose-nas.md §1: 256 + 64·randint(0, 4)).
RESOLUTIONS = (256, 320, 384, 448, 512)


def resolution_of(seed: int, step: int, resolutions: Sequence[int] = RESOLUTIONS) -> int:
  """The input size of global batch `step`: uniform over `resolutions`, a function of (seed, step) only."""
  return int(resolutions[np.random.default_rng([int(seed), int(step), 0x5E5]).integers(len(resolutions))])


def subnets_of(seed: int, step: int, rule: str = 'uniform', num_random: int = 1) -> list:
  """The subnets global batch `step` trains (`sampler.sample_step`), a function of (seed, step) only.

  Their img_size genes are not used in training (the batch's resolution is, `resolution_of`).
  """
  rng = np.random.default_rng([int(seed), int(step), 0x5B7])
  return sampler.sample_step(rng, rule, num_random)


def stacked_masks(subnets: Sequence[space.Subnet]) -> dict:
  """{width gene: [S, max width] float32}: `subnet_masks` of S subnets stacked (the batch's 'subnet')."""
  masks = [subnet_masks(s) for s in subnets]
  return {g: np.stack([m[g] for m in masks]) for g in masks[0]}


def batches_before(seed: int, step: int, resolutions: Sequence[int] = RESOLUTIONS) -> dict:
  """{resolution: how many of the global batches 0 .. step-1 used it} (where each pipeline resumes)."""
  counts = {int(r): 0 for r in resolutions}
  for b in range(int(step)):
    counts[resolution_of(seed, b, resolutions)] += 1
  return counts


def resolution_config(config, resolution: int, index: int):
  """The fixed-model training config of one resolution: input.size = resolution, its own shuffle seed."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.input.size = int(resolution)
    config.seed = int(config.seed) + 7919 * (index + 1)
  return config


def multi_resolution_input(config, resolutions: Sequence[int] = RESOLUTIONS, rule: str = 'uniform',
                           num_random: int = 1) -> TrainInput:
  """The training input of supernet training (module docstring).

  Batches are the data pipeline's dicts (`data.pipeline.make_train_dataset`) at the batch's resolution,
  plus 'resolution' (int) and 'subnet' (`stacked_masks(subnets_of(seed, step, rule, num_random))`, the same
  on every process). Process p of P reads its own shard of the records, as fixed-model training.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from litepose_jax.data import pipeline, sources  # pylint: disable=g-import-not-at-top
  pidx, pcount = jax.process_index(), jax.process_count()
  source = sources.make_source(config, 'train', process_index=pidx, process_count=pcount)
  seed = int(config.seed)

  def batches(start_step: int, process_index: int, process_count: int) -> Iterator[dict]:
    if (process_index, process_count) != (pidx, pcount):
      raise ValueError('the pipeline source was opened for another process layout')
    starts = batches_before(seed, start_step, resolutions)
    streams = {}   # opened on first use: a short run need not build all five pipelines

    def stream(r):
      if r not in streams:
        cfg = resolution_config(config, r, list(resolutions).index(r))
        streams[r] = pipeline.make_train_dataset(cfg, process_index=pidx, process_count=pcount,
                                                 start_step=starts[r], source=source).as_numpy_iterator()
      return streams[r]

    step = int(start_step)
    while True:
      r = resolution_of(seed, step, resolutions)
      subnet = stacked_masks(subnets_of(seed, step, rule, num_random))
      yield dict(next(stream(r)), resolution=r, subnet=subnet)
      step += 1

  return TrainInput(num_examples=source.num_examples * pcount, batches=batches)
