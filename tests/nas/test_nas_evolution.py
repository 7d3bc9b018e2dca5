"""Evolution mechanics (no network): closed-form MACs vs model_info, seeding, budget, operators, the cache file.

The fitness here is an independent NumPy function of the genes, so the tests check the search's
bookkeeping, not AP (tests/nas/test_nas_search.py runs the real fitness through the CLI).
"""

import json

import numpy as np
import pytest

from litepose_jax import model_info, models, nas
from litepose_jax.nas import evolution, macs, sampler, search


def test_closed_form_macs_equal_model_info():
  subs = [nas.SMALLEST, nas.LARGEST, sampler.sample_uniform(np.random.default_rng(3))]
  for sub in subs:
    info = model_info.count(models.create(sub.to_arch_json(), 17, depthwise_impl='xla'))
    assert macs.subnet_macs(sub, 17) == (info['macs_published'], info['macs']), sub
  table = macs.choice_table_macs(np.array([s.choices() for s in subs]), 14)
  assert table.tolist() == [s.macs(14) for s in subs]
  assert round(table[0] / 1e9, 4) == 0.4178 and round(table[1] / 1e9, 4) == 15.2798   # nas spec §1


def _objective(sub):
  """A smooth function of the genes with interactions (not monotone in MACs)."""
  g = np.array(sub.choices(), np.float64)
  return float(np.sin(g @ np.arange(1, 10)) + 0.1 * g[0] - 0.05 * (g[5] - 2) ** 2)


def _run(seed, budget=2.5e9, settings=evolution.Settings(population=8, iterations=4, mutation_prob=0.3)):
  calls = []

  def fitness(sub):
    calls.append(sub)
    return _objective(sub)

  res = evolution.run(fitness, budget, evolution.Space(14), np.random.default_rng(seed), settings)
  return res, calls


def test_seeded_reproducible_feasible_and_best_of_all():
  a, calls_a = _run(0)
  b, _ = _run(0)
  c, _ = _run(1)
  assert a.generations == b.generations and a.best == b.best
  assert a.generations != c.generations
  # Each distinct candidate is scored once; all fit the budget (closed form checked above).
  assert len(calls_a) == len(set(calls_a)) == len(a.fitness)
  assert all(macs.subnet_macs(s)[0] <= 2.5e9 for s in a.fitness)
  # The best is the best of every scored candidate, the last generation included (the authors' was not).
  assert a.best_fitness == max(_objective(s) for s in a.fitness) == _objective(a.best)
  # Seed 1: the best first appears among the last generation's children (the authors' search, which took
  # the best of the parents at the start of each iteration, never saw it).
  c_first = next(i for i, g in enumerate(c.generations) if c.best in g)
  assert c_first == len(c.generations) - 1 and c.best not in c.generations[-2]
  assert evolution.Settings(population=8, iterations=4).counts() == (2, 4, 4)
  assert all(len(g) == 8 for g in a.generations[:1]) and all(len(g) == 10 for g in a.generations[1:])


def test_parents_are_the_top_of_the_previous_population():
  res, _ = _run(2)
  for prev, nxt in zip(res.generations, res.generations[1:]):
    ranked = sorted(prev, key=lambda s: -res.fitness[s])[:2]
    assert nxt[:2] == ranked


def test_operators_follow_the_authors():
  sp = evolution.Space(14)
  rng = np.random.default_rng(0)
  p1, p2 = nas.LARGEST, nas.SMALLEST
  for _ in range(50):
    child = sp.crossover(rng, p1, p2, 20e9)
    assert (child.img_size, child.stem) == (p1.img_size, p1.stem)   # scalars always from parent 1
    assert all(c in (a, b) for c, a, b in zip(child.deconv + child.stages, p1.deconv + p1.stages,
                                              p2.deconv + p2.stages))
  assert sp.mutate(rng, p2, 20e9, 0.0) == p2
  mutants = {sp.mutate(rng, p2, 3e9, 1.0) for _ in range(30)}
  assert len(mutants) > 20 and all(macs.subnet_macs(m)[0] <= 3e9 for m in mutants)


def test_infeasible_budget_names_the_smallest_macs():
  with pytest.raises(evolution.InfeasibleBudget, match=r'0\.4178G \(256 px'):
    evolution.Space(14).check_budget(0.4e9)
  smallest_320 = nas.SMALLEST.macs(14) * (320 / 256) ** 2          # MACs scale with the pixel count
  with pytest.raises(evolution.InfeasibleBudget, match=f'{smallest_320 / 1e9:.4f}G'):
    evolution.run(lambda s: 0.0, 0.5e9, evolution.Space(14, resolutions=[320]), np.random.default_rng(0))
  tight = evolution.Space(14).random_feasible(np.random.default_rng(0), nas.SMALLEST.macs(14))
  assert tight == nas.SMALLEST


def test_budget_parsing():
  assert search.parse_budgets('1.2G, 800M,2,3e9') == [1.2e9, 8e8, 2e9, 3e9]
  with pytest.raises(ValueError, match="'fast'"):
    search.parse_budgets('fast')


def test_candidate_log_drops_a_line_cut_by_a_kill(tmp_path):
  path = tmp_path / 'candidates.jsonl'
  lines = [json.dumps({'choices': [i] * 9, 'AP': i / 10}) for i in range(3)]
  path.write_text('\n'.join(lines[:2]) + '\n' + lines[2][:15])
  log = search.CandidateLog(path)
  assert log.loaded == 2 and log.get([1] * 9)['AP'] == 0.1 and log.get([2] * 9) is None
  log.add(json.loads(lines[2]))
  assert [json.loads(l)['AP'] for l in path.read_text().splitlines()] == [0.0, 0.1, 0.2]


def test_search_step_imports_no_tensorflow():
  # The scoring step (fitness, evolution) must stay free of TensorFlow (only nas/search_data.py uses it).
  import subprocess
  import sys
  code = ('import sys; import litepose_jax.nas.fitness, litepose_jax.nas.evolution, litepose_jax.nas.macs; '
          'print(sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == '[]'
