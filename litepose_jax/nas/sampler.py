"""Subnet sampling for supernet training, seeded with a NumPy Generator.

'uniform' (the authors' rule, nas spec §3): every gene drawn independently and uniformly from its choice
indices (RESOLUTIONS / WIDTH_MULTS), so widths that repeat in a choice set (C0 = 24 for w = 1 and 0.75)
are drawn with their multiplicity. 'sandwich' (BigNAS): the largest subnet, the smallest and
`num_random` uniform ones per step (the authors use one uniform subnet per step and process).
"""

from __future__ import annotations

from typing import List

import numpy as np

from litepose_jax.nas import space

RULES = ('uniform', 'sandwich')


def sample_uniform(rng: np.random.Generator) -> space.Subnet:
  """One subnet, each of the 9 genes uniform over its choice indices (GENES order)."""
  return space.Subnet.from_choices([int(rng.integers(len(space.CHOICES[g]))) for g in space.GENES])


def sample_step(rng: np.random.Generator, rule: str = 'uniform', num_random: int = 1) -> List[space.Subnet]:
  """The subnets of one training step.

  rule 'uniform': [one uniform subnet]; 'sandwich': [LARGEST (512 px), SMALLEST (256 px), num_random
  uniform subnets] (each subnet's img_size is the resolution to train it at).
  """
  if rule == 'uniform':
    return [sample_uniform(rng)]
  if rule == 'sandwich':
    return [space.LARGEST, space.SMALLEST] + [sample_uniform(rng) for _ in range(num_random)]
  raise ValueError(f'sampling rule must be one of {RULES}, got {rule!r}')


class Sampler:
  """`Sampler(seed, rule)()` → the next step's subnets (a list); reproducible from the seed.

  Seed each training process deliberately (nas spec §8.9: the authors' per-GPU samplers were unseeded),
  e.g. seed = base_seed + process_index for independent subnets per process.
  """

  def __init__(self, seed: int | np.random.Generator = 0, rule: str = 'uniform', num_random: int = 1):
    if rule not in RULES:
      raise ValueError(f'sampling rule must be one of {RULES}, got {rule!r}')
    self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    self.rule, self.num_random = rule, int(num_random)

  def __call__(self) -> List[space.Subnet]:
    return sample_step(self.rng, self.rule, self.num_random)
