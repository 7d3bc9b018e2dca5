"""The authors' evolutionary search under a MACs budget (nas spec §4), seeded and with their bugs fixed.

Population P (40), iterations T (40), parents = the top round(P·0.25) of the population by fitness
(elitist: parents are never re-evaluated), then round(P·0.5) mutants and P − round(P·0.5) crossovers:
  mutation   a uniformly drawn parent, each of the 9 genes independently with probability p (0.1) re-drawn
             uniformly from its choice indices (may redraw the same value), the whole mutation retried from
             the parent until the child fits the budget;
  crossover  two parents drawn independently (may coincide); the child is parent 1 with each deconv width
             and each stage width taken from either parent with probability ½; img_size and the stem width
             always come from parent 1 (the authors' choice, kept); retried until feasible;
  next population = parents + children.
The initial population is P uniform draws (every gene uniform over its choice indices, as supernet
training samples), each rejection-sampled until it fits the budget.

Differences from the authors (spec §8.6), with their reasons:
  * every draw comes from one seeded NumPy Generator: a search is reproducible;
  * the best architecture is the best of every evaluated candidate, the last generation included (theirs
    only looked at the parents at the start of each iteration, so the last children were never considered);
  * a budget below the smallest reachable MACs fails at once (`InfeasibleBudget`, naming that minimum)
    instead of looping forever; the mutation and crossover retries are bounded (the parent, which fits the
    budget, is returned after MAX_TRIES failures, which only a mutation probability near 1 can reach);
  * MACs come from `nas.macs` (the published convention, computed, not parsed from ptflops' strings);
  * fitness is looked up in a cache first, so duplicates (frequent: elitism keeps the parents) and
    resumed runs cost nothing.
Ties in fitness are broken by fewer MACs, then by the earlier candidate (deterministic).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from litepose_jax.nas import macs as macs_lib
from litepose_jax.nas import space

MAX_TRIES = 10_000
_SAMPLE_CHUNK = 4096


class InfeasibleBudget(ValueError):
  """The budget is below the smallest MACs the (restricted) search space can reach."""


@dataclasses.dataclass(frozen=True)
class Settings:
  """The authors' defaults (search.py / evolution.py)."""
  population: int = 40
  iterations: int = 40
  parent_ratio: float = 0.25
  mutation_ratio: float = 0.5
  mutation_prob: float = 0.1

  def counts(self) -> Tuple[int, int, int]:
    """(parents, mutants, crossovers) per iteration."""
    parents = max(1, int(round(self.population * self.parent_ratio)))
    mutants = int(round(self.population * self.mutation_ratio))
    return parents, mutants, self.population - mutants

  def candidates_per_budget(self) -> int:
    """How many candidates one budget's search scores (duplicates included)."""
    return self.population * (1 + self.iterations)


class Space:
  """The gene choice indices a search may use (default: all of nas spec §1) and their MACs.

  Args:
    num_keypoints: K (the heads' output widths enter the MACs).
    resolutions: allowed img_size values (a subset of space.RESOLUTIONS; default all five).
  """

  def __init__(self, num_keypoints: int = 14, resolutions: Optional[Sequence[int]] = None):
    self.num_keypoints = int(num_keypoints)
    res = tuple(space.RESOLUTIONS if not resolutions else sorted({int(r) for r in resolutions}))
    bad = [r for r in res if r not in space.RESOLUTIONS]
    if bad:
      raise ValueError(f'resolutions {bad} are not in the search space {list(space.RESOLUTIONS)}')
    self.allowed: List[np.ndarray] = [np.asarray([space.RESOLUTIONS.index(r) for r in res])] + [
        np.arange(len(space.CHOICES[g])) for g in space.GENES[1:]]

  def smallest(self) -> space.Subnet:
    return space.Subnet.from_choices([a.min() if j == 0 else len(space.WIDTH_MULTS) - 1
                                      for j, a in enumerate(self.allowed)])

  def min_macs(self) -> int:
    return self.macs(self.smallest())

  def macs(self, subnet: space.Subnet) -> int:
    """Published-convention MACs."""
    return macs_lib.subnet_macs(subnet, self.num_keypoints)[0]

  def check_budget(self, budget: float):
    if budget < self.min_macs():
      raise InfeasibleBudget(
          f'MACs budget {budget / 1e9:.4g}G is below the smallest reachable subnet, '
          f'{self.min_macs() / 1e9:.4f}G ({self.smallest().img_size} px, every width x0.25, '
          f'K={self.num_keypoints})')

  def draw_gene(self, rng: np.random.Generator, j: int) -> int:
    return int(self.allowed[j][rng.integers(len(self.allowed[j]))])

  def random_feasible(self, rng: np.random.Generator, budget: float) -> space.Subnet:
    """A uniform draw conditioned on MACs ≤ budget (rejection sampling, vectorised in chunks)."""
    self.check_budget(budget)
    while True:
      rows = np.stack([a[rng.integers(len(a), size=_SAMPLE_CHUNK)] for a in self.allowed], axis=1)
      ok = np.flatnonzero(macs_lib.choice_table_macs(rows, self.num_keypoints) <= budget)
      if ok.size:
        return space.Subnet.from_choices(rows[ok[0]])

  def mutate(self, rng: np.random.Generator, parent: space.Subnet, budget: float,
             prob: float) -> space.Subnet:
    base = parent.choices()
    for _ in range(MAX_TRIES):
      child = [self.draw_gene(rng, j) if rng.random() < prob else c for j, c in enumerate(base)]
      sub = space.Subnet.from_choices(child)
      if self.macs(sub) <= budget:
        return sub
    return parent

  def crossover(self, rng: np.random.Generator, p1: space.Subnet, p2: space.Subnet,
                budget: float) -> space.Subnet:
    for _ in range(MAX_TRIES):
      deconv = tuple(p1.deconv[i] if rng.random() < 0.5 else p2.deconv[i] for i in range(3))
      stages = tuple(p1.stages[s] if rng.random() < 0.5 else p2.stages[s] for s in range(4))
      sub = space.Subnet(p1.img_size, p1.stem, deconv, stages)
      if self.macs(sub) <= budget:
        return sub
    return p1


@dataclasses.dataclass
class Result:
  """best: the fittest feasible candidate; fitness {subnet: value} of every candidate this search
  scored (first-seen order); generations: the population after each iteration (0 = the initial one)."""
  budget: float
  best: space.Subnet
  best_fitness: float
  fitness: Dict[space.Subnet, float]
  generations: List[List[space.Subnet]]


def run(fitness: Callable[[space.Subnet], float], budget: float, search_space: Space,
        rng: np.random.Generator, settings: Settings = Settings(),
        on_candidate: Optional[Callable[[space.Subnet], None]] = None) -> Result:
  """One budget's search.

  Args:
    fitness: subnet → value to maximise (AP); called once per distinct candidate by this function
      (callers cache across budgets and runs).
    budget: MACs (published convention) every candidate must fit.
    search_space: the allowed genes (Space).
    rng: the search's only source of randomness.
    settings: population, iterations, ratios, mutation probability.
    on_candidate: called for every generated candidate (progress bars), duplicates included.
  Raises:
    InfeasibleBudget: before any draw, when no subnet fits.
  """
  search_space.check_budget(budget)
  scores: Dict[space.Subnet, float] = {}

  def score(sub: space.Subnet) -> float:
    if sub not in scores:
      scores[sub] = float(fitness(sub))
    if on_candidate:
      on_candidate(sub)
    return scores[sub]

  n_parents, n_mutants, n_cross = settings.counts()
  population = [search_space.random_feasible(rng, budget) for _ in range(settings.population)]
  for sub in population:
    score(sub)
  generations = [list(population)]
  for _ in range(settings.iterations):
    parents = sorted(population, key=lambda s: -scores[s])[:n_parents]   # stable: ties keep their order
    children = []
    for _ in range(n_mutants):
      parent = parents[rng.integers(len(parents))]
      children.append(search_space.mutate(rng, parent, budget, settings.mutation_prob))
    for _ in range(n_cross):
      p1, p2 = parents[rng.integers(len(parents))], parents[rng.integers(len(parents))]
      children.append(search_space.crossover(rng, p1, p2, budget))
    for sub in children:
      score(sub)
    population = parents + children
    generations.append(list(population))
  order = list(scores)
  best = min(order, key=lambda s: (-scores[s], search_space.macs(s), order.index(s)))
  return Result(budget, best, scores[best], scores, generations)
