"""Evolutionary architecture search on a trained supernet under one or more MACs budgets.

  python -m litepose_jax.nas.search --config=configs/litepose_xs.py --supernet=workdirs/supernet \\
      --macs=1.2G,5G --workdir=workdirs/search [--population=40 --iterations=40 --mutation_prob=0.1 \\
      --max_images=500 --calib_batches=32 --seed=0 --resolutions=256,320 --downscale=1]

Fitness of a candidate = AP on the first --max_images images of the config's eval split (point it at a
held-out split) after BN re-calibration on --calib_batches training batches at the candidate's resolution
(nas/fitness.py, nas/search_data.py). MACs: the published convention (`nas.macs`, = model_info's
'macs_published'); the true MACs are recorded too. Evolution: nas/evolution.py (the authors' algorithm,
seeded, the last generation considered, an infeasible budget fails at once).

Writes to --workdir:
  candidates.jsonl      every evaluated candidate, one JSON line as soon as it is scored: genes, choice
                        indices, macs, macs_true, AP (and the other metrics), seconds. It is the fitness
                        cache: a killed search restarted with the same flags replays the (seeded) evolution
                        and re-evaluates nothing already in it; budgets of one run share it.
  settings.json         what the cached fitness values depend on (supernet, data, calibration); a resumed
                        run with other values fails instead of mixing them.
  best_<budget>.json    the chosen architecture (the authors' JSON format) per budget.
  search_result.json    per budget: AP, MACs, genes, file, and the best candidate under the budget in the
                        whole cache (other budgets and runs; reported, not chosen); evaluation counts,
                        wall time, s/candidate.
  ap_vs_macs.png        AP against MACs of every candidate with the Pareto front (nas/search_plot.py).
One population per budget (seeded by (seed, budget)), searched one budget after the other.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import statistics
import time
from typing import Dict, List, Optional, Sequence

from absl import app
from absl import flags
from ml_collections import config_flags

from litepose_jax import runtime


def _define_flags():
  """The command line's flags, defined only when run as a program (importing this module for its functions
  must not define absl flags: search and transfer would collide on --config)."""
  global _CONFIG, _SUPERNET, _MACS, _WORKDIR, _POPULATION, _ITERATIONS, _MUTATION_PROB, _MAX_IMAGES
  global _CALIB_BATCHES, _SEED, _RESOLUTIONS, _DOWNSCALE, _STEP, _PROGRESS
  _CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file: dataset (held-out eval split, '
                                            'training split for calibration), input, eval settings.',
                                            lock_config=True)
  _SUPERNET = flags.DEFINE_string('supernet', None, 'Supernet checkpoint dir or training workdir.')
  _MACS = flags.DEFINE_string('macs', None, 'Budget(s), published-convention MACs: 1.2G or 800M, comma '
                              'separated (a bare number is in G).')
  _WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory (resumes what it holds).')
  _POPULATION = flags.DEFINE_integer('population', 40, 'Population size (the authors: 40).')
  _ITERATIONS = flags.DEFINE_integer('iterations', 40, 'Generations after the initial one (the authors: 40).')
  _MUTATION_PROB = flags.DEFINE_float('mutation_prob', 0.1, 'Per-gene mutation probability (the authors: 0.1).')
  _MAX_IMAGES = flags.DEFINE_integer('max_images', 500, 'Held-out images per fitness evaluation (0: all).')
  _CALIB_BATCHES = flags.DEFINE_integer('calib_batches', 32, 'Training batches (config.input.batch_size '
                                        'images each) for BN re-calibration per candidate.')
  _SEED = flags.DEFINE_integer('seed', 0, 'Seed of the evolution.')
  _RESOLUTIONS = flags.DEFINE_list('resolutions', [], 'Allowed img_size values (default: 256..512, all five).')
  _DOWNSCALE = flags.DEFINE_integer('downscale', 1, 'Score at img_size // downscale (smoke tests only).')
  _STEP = flags.DEFINE_integer('step', None, 'Supernet checkpoint step (default: the latest).')
  _PROGRESS = flags.DEFINE_bool('progress', True, 'Show a progress bar.')
  flags.mark_flags_as_required(['config', 'supernet', 'macs', 'workdir'])


CANDIDATES = 'candidates.jsonl'
SETTINGS = 'settings.json'


def parse_budgets(text: str) -> List[float]:
  """'1.2G,800M,2' → [1.2e9, 8e8, 2e9] (MACs)."""
  out = []
  for item in str(text).split(','):
    m = re.fullmatch(r'\s*([0-9]*\.?[0-9]+(?:e[+-]?\d+)?)\s*([GgMm]?)\s*', item)
    if not m:
      raise ValueError(f'--macs: {item!r} is not a MACs budget such as 1.2G or 800M')
    number, unit = float(m.group(1)), m.group(2).lower()
    value = number * {'g': 1e9, 'm': 1e6}[unit] if unit else number * 1e9 if number < 1e5 else number
    out.append(value)
  return out


def budget_label(budget: float) -> str:
  return f'{budget / 1e9:g}G'


class CandidateLog:
  """candidates.jsonl: the fitness cache, appended and synced one line per evaluated candidate."""

  def __init__(self, path: pathlib.Path):
    self.path = path
    self.records: Dict[tuple, dict] = {}
    if path.exists():
      good = 0
      with open(path, 'rb') as f:
        data = f.read()
      for line in data.splitlines(keepends=True):
        try:
          record = json.loads(line)
        except ValueError:
          break   # a line cut by a kill: dropped (and truncated below), its candidate is re-evaluated
        if not line.endswith(b'\n'):
          break
        self.records[tuple(record['choices'])] = record
        good += len(line)
      if good != len(data):
        with open(path, 'r+b') as f:
          f.truncate(good)
    self.loaded = len(self.records)

  def get(self, choices) -> Optional[dict]:
    return self.records.get(tuple(choices))

  def add(self, record: dict):
    self.records[tuple(record['choices'])] = record
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')
      f.flush()
      os.fsync(f.fileno())


def _check_settings(workdir: pathlib.Path, settings: dict):
  path = workdir / SETTINGS
  if path.exists():
    old = json.loads(path.read_text())
    diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
    if diff:
      raise ValueError(f'{path}: this workdir holds a search with other fitness settings ({", ".join(diff)}: '
                       f'{old.get(diff[0])} here, {settings.get(diff[0])} now); use another --workdir')
  else:
    path.write_text(json.dumps(settings, indent=1))


def run_search(config, supernet: str, budgets: Sequence[float], workdir: str, settings, *, max_images: int,
               calib_batches: int, seed: int, resolutions: Sequence[int] = (), downscale: int = 1,
               step: Optional[int] = None, progress: bool = True) -> dict:
  """The search (module docstring); returns the search_result.json dict."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  from litepose_jax import from_config  # pylint: disable=g-import-not-at-top
  from litepose_jax import eval_lib  # pylint: disable=g-import-not-at-top
  from litepose_jax.nas import evolution, fitness, macs as macs_lib, search_data, search_plot, space
  from litepose_jax.nas import apply as nas_apply, supernet_io

  ks = from_config.keypoint_set(config)
  search_space = evolution.Space(ks.num_keypoints, resolutions)
  for b in budgets:   # before anything slow
    search_space.check_budget(b)
  workdir = pathlib.Path(workdir)
  variables, meta = supernet_io.load_supernet(supernet, step)
  k = ks.num_keypoints
  if nas_apply.num_keypoints_of(variables) != k:
    raise ValueError(f'{supernet}: the supernet has {nas_apply.num_keypoints_of(variables)} joints, the '
                     f'config\'s keypoint set {ks.name!r} has {k}')
  gt = eval_lib.ground_truth(config)
  workdir.mkdir(parents=True, exist_ok=True)
  data_keys = {'dataset': config.dataset.to_dict(), 'input': config.input.to_dict(), 'seed': config.seed,
               'eval': config.eval.to_dict(), 'depthwise_impl': config.model.depthwise_impl}
  _check_settings(workdir, {
      'supernet': str(pathlib.Path(supernet).absolute()), 'supernet_step': meta['step'], 'num_keypoints': k,
      'max_images': int(max_images), 'calib_batches': int(calib_batches), 'downscale': int(downscale),
      'data': hashlib.sha1(json.dumps(data_keys, sort_keys=True, default=str).encode()).hexdigest()[:16]})
  log = CandidateLog(workdir / CANDIDATES)
  data = search_data.search_data(config, max_images, calib_batches, downscale)
  impl = config.model.depthwise_impl
  predictor = from_config.predictor(config, nas_apply.MaskedSupernet(k, impl), None, ks,
                                    space.RESOLUTIONS[0])
  scorer = fitness.SubnetScorer(variables, predictor, gt, ks, data, depthwise_impl=impl)
  seen_res = set()
  bar = tqdm(total=len(budgets) * settings.candidates_per_budget(), unit='cand', disable=not progress,
             dynamic_ncols=True)
  counts = {'new': 0, 'cached': 0}

  def score(sub: space.Subnet) -> float:
    record = log.get(sub.choices())
    if record is None:
      tick = time.perf_counter()
      data.get('calibration', sub.img_size)
      data.get('evaluation', sub.img_size)
      data_seconds = time.perf_counter() - tick
      metrics = scorer(sub)
      pub, true = macs_lib.subnet_macs(sub, k)
      record = {'genes': sub.genes(), 'choices': list(sub.choices()), 'macs': pub, 'macs_true': true,
                **metrics, 'data_seconds': data_seconds, 'compiled': sub.img_size not in seen_res}
      seen_res.add(sub.img_size)
      log.add(record)
      counts['new'] += 1
    else:
      counts['cached'] += 1
    bar.set_postfix(new=counts['new'], cached=counts['cached'], refresh=False)
    return record['AP']

  start = time.perf_counter()
  results = {}
  for b in budgets:
    rng = np.random.default_rng([int(seed), int(round(b / 1e6))])
    res = evolution.run(score, b, search_space, rng, settings, on_candidate=lambda _: bar.update(1))
    label = budget_label(b)
    arch_file = workdir / f'best_{label}.json'
    arch_file.write_text(json.dumps(res.best.to_arch_json(), indent=1))
    pub, true = macs_lib.subnet_macs(res.best, k)
    results[label] = {'budget': b, 'AP': res.best_fitness, 'macs': pub, 'macs_true': true,
                      'genes': res.best.genes(), 'arch_file': str(arch_file), 'candidates': len(res.fitness)}
    # The choice is this budget's own search (reproducible from the seed); the cache may hold a better
    # candidate under the budget from another budget or run: reported, not chosen.
    feasible = [r for r in log.records.values() if r['macs'] <= b]
    top = max(feasible, key=lambda r: (r['AP'], -r['macs']))
    results[label]['best_in_cache'] = {'AP': top['AP'], 'macs': top['macs'], 'genes': top['genes']}
  bar.close()
  wall = time.perf_counter() - start
  records = list(log.records.values())
  steady = [r['seconds'] for r in records if not r.get('compiled')]
  summary = {'budgets': results, 'seed': int(seed), 'evaluations_new': counts['new'],
             'evaluations_cached': counts['cached'], 'evaluated_total': len(records), 'wall_seconds': wall,
             'seconds_per_candidate_median': statistics.median(steady) if steady else None,
             'images_per_candidate': max_images, 'calib_batches': calib_batches,
             'calib_images': calib_batches * int(config.input.batch_size)}
  (workdir / 'search_result.json').write_text(json.dumps(summary, indent=1))
  points = [(r['macs'] / 1e9, r['AP']) for r in records]
  chosen = [[tuple(r['choices']) for r in records].index(space.Subnet.from_genes(v['genes']).choices())
            for v in results.values()]
  search_plot.draw(str(workdir / 'ap_vs_macs.png'), points, [b / 1e9 for b in budgets], chosen,
                   title=f'{len(records)} candidates, budgets {", ".join(results)}')
  return summary


def main(argv):
  del argv
  runtime.setup(host_tuning=True)
  try:
    from litepose_jax.nas import evolution  # pylint: disable=g-import-not-at-top
    settings = evolution.Settings(population=_POPULATION.value, iterations=_ITERATIONS.value,
                                  mutation_prob=_MUTATION_PROB.value)
    summary = run_search(_CONFIG.value, _SUPERNET.value, parse_budgets(_MACS.value), _WORKDIR.value,
                         settings, max_images=_MAX_IMAGES.value, calib_batches=_CALIB_BATCHES.value,
                         seed=_SEED.value, resolutions=[int(r) for r in _RESOLUTIONS.value],
                         downscale=_DOWNSCALE.value, step=_STEP.value, progress=_PROGRESS.value)
  except runtime.INPUT_ERRORS as e:
    return runtime.fail(e)
  for label, r in summary['budgets'].items():
    print(f'budget {label}: AP {r["AP"]:.4f}  MACs {r["macs"] / 1e9:.4f}G (true {r["macs_true"] / 1e9:.4f}G)'
          f'  {r["arch_file"]}')
  spc = summary['seconds_per_candidate_median']
  print(f'evaluations: {summary["evaluations_new"]} new, {summary["evaluations_cached"]} from the cache; '
        f'wall {summary["wall_seconds"]:.1f} s; '
        f'{"n/a" if spc is None else f"{spc:.2f}"} s per candidate (median, compiles excluded)')
  print(json.dumps({'evaluations_new': summary['evaluations_new'],
                    'best': {k: v['genes'] for k, v in summary['budgets'].items()}}))
  return 0


if __name__ == '__main__':
  _define_flags()
  app.run(main, flags_parser=runtime.parse_flags)
