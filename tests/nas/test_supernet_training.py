"""Supernet training through the training loop (configs/supernet_tiny.py at one 64-px resolution, batch 2,
NumPy input from tests/train/support.py): finite losses, exact resume, subnets drawn from (seed, step),
one compile per resolution whatever the subnets, the sandwich gradient = the sum of the subnets' gradients,
and the supernet checkpoint that load_model refuses."""

import json
import shutil

import jax
import numpy as np
import optax
import pytest

from configs import supernet_tiny
from litepose_jax import checkpoint, from_config, nas
from litepose_jax.nas import space, train_input
from litepose_jax.train import loop, sharding
from litepose_jax.train import state as train_state
from litepose_jax.train import step as step_lib
from tests.train.support import SyntheticInput

SIZE, BATCH, STEPS = 64, 2, 4


def _config(steps=STEPS, rule='uniform'):
  c = supernet_tiny.get_config()
  c.nas.resolutions = (SIZE,)
  c.nas.rule = rule
  c.input.batch_size = BATCH
  c.num_train_steps = steps
  c.checkpoint_every_steps = 2
  return c


_DATA = SyntheticInput(8, BATCH, SIZE, 14, seed=3)


def _train_input(seed, record=None, rule='uniform', num_random=1):
  """The NumPy batches plus 'subnet' as nas/train_input adds it (masks of subnets_of(seed, step))."""
  def batches(start, pidx, pcount):
    for step, b in enumerate(_DATA.batches(start, pidx, pcount), start):
      subnets = train_input.subnets_of(seed, step, rule, num_random)
      if record is not None:
        record[step] = subnets
      yield dict(b, subnet=train_input.stacked_masks(subnets))
  return loop.TrainInput(_DATA.num_examples, batches)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  d = tmp_path_factory.mktemp('supernet')
  config = _config()
  rec_a, rec_b = {}, {}
  a = loop.train_and_evaluate(config, d / 'A', train_input=_train_input(config.seed, rec_a))
  # B: run A stopped after its step-2 checkpoint (its step-4 checkpoint lost), resumed to step 4. A copy,
  # not a separate 2-step run: the same checkpoint, 14 s less here.
  shutil.copytree(d / 'A', d / 'B')
  shutil.rmtree(d / 'B' / 'checkpoints' / str(STEPS))
  b = loop.train_and_evaluate(config, d / 'B', train_input=_train_input(config.seed, rec_b))
  return {'dir': d, 'results': (a, b), 'records': (rec_a, rec_b)}


def test_supernet_trains_and_resumes_exactly(runs):
  d = runs['dir']
  a, b = runs['results']
  assert (a['step'], b['step']) == (STEPS, STEPS)
  lines = [json.loads(l) for l in (d / 'A' / 'metrics.jsonl').read_text().splitlines()]
  assert [l['step'] for l in lines] == list(range(1, STEPS + 1))
  assert all(np.isfinite(l['train/loss']) and l['train/loss'] > 0 for l in lines)
  # 0..4 in one run == resume 2..4 from its step-2 checkpoint, bit for bit (weights and BN statistics).
  want, meta, _ = checkpoint.load_variables(d / 'A')
  got, _, _ = checkpoint.load_variables(d / 'B')
  for (path, w), g in zip(jax.tree_util.tree_leaves_with_path(want), jax.tree.leaves(got)):
    np.testing.assert_array_equal(g, w, err_msg=jax.tree_util.keystr(path))
  # The resumed run drew the uninterrupted run's subnets; one per step, not all the same.
  rec_a, rec_b = runs['records']
  assert sorted(rec_a) == list(range(STEPS)) and rec_b == {s: rec_a[s] for s in range(2, STEPS)}
  assert len({s[0] for s in rec_a.values()}) > 1
  assert meta['kind'] == 'supernet' and meta['space'] == space.VERSION and meta['num_keypoints'] == 14
  assert meta['keypoints'] == 'crowdpose' and meta['resolutions'] == [SIZE]


def test_supernet_checkpoint_is_refused_as_a_model(runs):
  with pytest.raises(ValueError, match='supernet.*litepose_jax.nas.transfer'):
    checkpoint.load_model(runs['dir'] / 'A')
  variables, meta = nas.load_supernet(runs['dir'] / 'A')
  assert nas.num_keypoints_of(variables) == 14 and meta['rule'] == 'uniform'


def test_subnets_depend_on_seed_and_step_only():
  a = [train_input.subnets_of(0, s) for s in range(50)]
  assert a == [train_input.subnets_of(0, s) for s in range(50)]
  assert a != [train_input.subnets_of(1, s) for s in range(50)]
  assert all(len(s) == 1 for s in a) and len(set(s[0] for s in a)) > 45
  sandwich = train_input.subnets_of(0, 7, 'sandwich', 2)
  assert sandwich[:2] == [space.LARGEST, space.SMALLEST] and len(sandwich) == 4
  masks = train_input.stacked_masks(sandwich)
  assert masks['stage4'].shape == (4, 160)
  assert masks['stage4'][0].sum() == 160 and masks['stage4'][1].sum() == 40


@pytest.fixture(scope='module')
def jitted_step(runs):
  """A JittedTrainStep of the supernet (Adam, constant lr) whose forward counts its traces, from the
  weights the loop trained (a random init runs op by op: ~200 small compiles)."""
  config = _config(rule='sandwich')
  supernet = from_config.supernet_training(config)
  model = from_config.create_model(config)
  traces = []
  options = supernet.step_options()
  forward = options.pop('forward')

  def counting_forward(variables, batch):
    traces.append(tuple(batch['subnet']['stem'].shape))   # Python body: once per trace (compile)
    return forward(variables, batch)

  tx = optax.adam(1e-3)
  step = step_lib.make_train_step(model, tx, optax.constant_schedule(1e-3), forward=counting_forward,
                                  **options)
  mesh = sharding.make_mesh()
  jitted = step_lib.JittedTrainStep(step, mesh)
  variables, _ = nas.load_supernet(runs['dir'] / 'A')
  state = jax.device_put(train_state.create(model, tx, None, SIZE, False, variables),
                         sharding.replicated(mesh))
  return {'step': jitted, 'traces': traces, 'state': state, 'mesh': mesh}


def _batch(step, subnets, mesh):
  b = dict(next(_DATA.batches(step, 0, 1)), subnet=train_input.stacked_masks(subnets))
  return sharding.put_global_batch({k: b[k] for k in step_lib.BATCH_KEYS + ('subnet',)}, mesh, ('subnet',))


def test_one_compile_per_resolution_whatever_the_subnets(jitted_step):
  step, mesh = jitted_step['step'], jitted_step['mesh']
  state = jax.tree.map(lambda x: x.copy(), jitted_step['state'])   # the step donates its input state
  rng = np.random.default_rng(5)
  for i in range(3):
    state, metrics = step(state, _batch(i, [nas.sample_uniform(rng)], mesh))
    assert np.isfinite(float(metrics['loss']))
  assert jitted_step['traces'] == [(1, 24)] and len(step._compiled) == 1


def test_sandwich_gradient_is_the_sum_of_the_subnets(jitted_step):
  step, mesh, state = jitted_step['step'], jitted_step['mesh'], jitted_step['state']
  # Largest + smallest (num_random=0): the S=3 program of num_random=1 costs 4x the test time here.
  subnets = train_input.subnets_of(0, 3, 'sandwich', 0)
  grads, stats, metrics = step._gradients(state.params, state.batch_stats, _batch(0, subnets, mesh))
  # Oracle: the single-subnet step (the program of the test above) once per subnet, gradients summed,
  # BatchNorm statistics passed from one subnet to the next; loss = the sum of the subnets' losses.
  want_grads, want_stats, losses = None, state.batch_stats, []
  for sub in subnets:
    g, want_stats, m = step._gradients(state.params, want_stats, _batch(0, [sub], mesh))
    want_grads = g if want_grads is None else jax.tree.map(np.add, want_grads, g)
    losses.append(float(m['loss']))
  assert sorted(set(jitted_step['traces'])) == [(1, 24), (2, 24)]
  np.testing.assert_allclose(float(metrics['loss']), sum(losses), rtol=1e-5)
  scale = max(float(np.abs(x).max()) for x in jax.tree.leaves(want_grads))
  for (path, w), g in zip(jax.tree_util.tree_leaves_with_path(want_grads), jax.tree.leaves(grads)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5 * scale, rtol=0,
                               err_msg=jax.tree_util.keystr(path))
  for (path, w), g in zip(jax.tree_util.tree_leaves_with_path(want_stats), jax.tree.leaves(stats)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-6, rtol=0,
                               err_msg=jax.tree_util.keystr(path))
