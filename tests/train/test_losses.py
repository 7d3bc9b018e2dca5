"""Losses vs the authors' values (reference fixture) and vs a NumPy loop written from spec (c)."""

import numpy as np
import pytest
from litepose_jax.train import losses


def _nhwc(x):
  return np.ascontiguousarray(np.moveaxis(np.asarray(x), 1, -1))


def _oracle_ae(tags_nchw, joints, push_type='exp'):
  """The authors' per-person loop (HigherHRNet singleTagLoss), written from the spec in NumPy.

  tags_nchw [B,K,R,R]; joints [B,P,J,2] with the flat NCHW index. Returns per-sample (push, pull), float64.
  """
  pushes, pulls = [], []
  for b in range(tags_nchw.shape[0]):
    flat = tags_nchw[b].astype(np.float64).reshape(-1)
    means, pull = [], 0.0
    for person in joints[b]:
      tmp = [flat[idx] for idx, vis in person if vis > 0]
      if not tmp:
        continue
      mu = np.mean(tmp)
      means.append(mu)
      pull += np.mean((np.asarray(tmp) - mu) ** 2)
    n = len(means)
    if n == 0:
      pushes.append(0.0)
      pulls.append(0.0)
      continue
    pulls.append(pull / n)
    if n < 2:
      pushes.append(0.0)
      continue
    m = np.asarray(means)
    d = m[:, None] - m[None, :]
    g = np.exp(-d ** 2) if push_type == 'exp' else np.clip(1 - np.abs(d), 0, None)
    push = np.sum(g) - n
    pushes.append(0.5 * push / ((n - 1) * n))
  return np.asarray(pushes), np.asarray(pulls)


def _oracle_heatmap(pred_nchw, target_nchw, mask):
  err = (pred_nchw.astype(np.float64) - target_nchw) ** 2 * mask[:, None].astype(np.float64)
  return err.mean(axis=(1, 2, 3))


@pytest.fixture(scope='module')
def ref(reference_dir):
  return dict(np.load(reference_dir / 'litepose_xs_reference.npz'))


def test_matches_authors_values(ref):
  k = 14
  out0, out1 = ref['out_eval_0'], ref['out_eval_1']
  batch = {
      'heatmaps_0': _nhwc(ref['target_heatmaps_0']), 'heatmaps_1': _nhwc(ref['target_heatmaps_1']),
      'masks_0': ref['target_masks_0'], 'masks_1': ref['target_masks_1'],
      'joints_0': ref['target_joints_0'].astype(np.int32),
  }
  total, parts = losses.total_loss((_nhwc(out0), _nhwc(out1)), batch)
  hm0 = losses.heatmap_loss(_nhwc(out0)[..., :k], batch['heatmaps_0'], batch['masks_0'])
  hm1 = losses.heatmap_loss(_nhwc(out1), batch['heatmaps_1'], batch['masks_1'])
  np.testing.assert_allclose(hm0, ref['loss_heatmap_per_sample_0'], rtol=1e-5)
  np.testing.assert_allclose(hm1, ref['loss_heatmap_per_sample_1'], rtol=1e-5)
  np.testing.assert_allclose(parts['push'], ref['loss_push_0'], rtol=1e-5)
  np.testing.assert_allclose(parts['pull'], ref['loss_pull_0'], rtol=1e-5)
  np.testing.assert_allclose(total, ref['loss_total'], rtol=1e-5)
  # The fixture really exercises the tag loss (several people per image).
  assert (ref['target_joints_0'][..., 1].sum(-1) > 0).sum(-1).min() >= 2


def _random_joints(rng, b, p, k, r, people_per_image):
  """Packed joints as the authors build them: valid joints in the first slots, (0, 0) elsewhere."""
  joints = np.zeros((b, p, k, 2), np.int32)
  for i, n_people in enumerate(people_per_image):
    for person in range(n_people):
      n_vis = rng.integers(0, k + 1)          # 0 visible joints: the person must be ignored
      ks = np.sort(rng.choice(k, n_vis, replace=False))
      ys, xs = rng.integers(0, r, n_vis), rng.integers(0, r, n_vis)
      joints[i, person, :n_vis, 0] = ks * r * r + ys * r + xs
      joints[i, person, :n_vis, 1] = 1
  return joints


@pytest.mark.parametrize('people_per_image,push_type', [((0, 1, 2, 7), 'exp'), ((30, 3, 0, 5), 'exp'),
                                                        ((0, 1, 2, 7), 'max'), ((30, 3, 0, 5), 'max')])
def test_matches_numpy_loop(people_per_image, push_type):
  rng = np.random.default_rng(sum(people_per_image))
  b, k, r0, r1 = len(people_per_image), 5, 8, 16
  out0 = rng.normal(size=(b, 2 * k, r0, r0)).astype(np.float32)
  out1 = rng.normal(size=(b, k, r1, r1)).astype(np.float32)
  hm0 = rng.uniform(size=(b, k, r0, r0)).astype(np.float32)
  hm1 = rng.uniform(size=(b, k, r1, r1)).astype(np.float32)
  m0 = (rng.uniform(size=(b, r0, r0)) > 0.3).astype(np.float32)
  m1 = (rng.uniform(size=(b, r1, r1)) > 0.3).astype(np.float32)
  joints = _random_joints(rng, b, 30, k, r0, people_per_image)
  weights = losses.LossWeights(heatmap_factors=(1.0, 0.5), push_factor=0.3, pull_factor=2.0,
                               push_type=push_type)
  batch = {'heatmaps_0': _nhwc(hm0), 'heatmaps_1': _nhwc(hm1), 'masks_0': m0, 'masks_1': m1,
           'joints_0': joints}
  total, parts = losses.total_loss((_nhwc(out0), _nhwc(out1)), batch, weights)

  push, pull = _oracle_ae(out0[:, k:], joints, push_type)
  want = {'heatmap_0': _oracle_heatmap(out0[:, :k], hm0, m0).mean(),
          'heatmap_1': 0.5 * _oracle_heatmap(out1, hm1, m1).mean(),
          'push': 0.3 * push.mean(), 'pull': 2.0 * pull.mean()}
  for name, value in want.items():
    np.testing.assert_allclose(parts[name], value, rtol=1e-5, atol=1e-8, err_msg=name)
  np.testing.assert_allclose(total, sum(want.values()), rtol=1e-5)
  jpush, jpull = losses.ae_loss(_nhwc(out0[:, k:]), joints, push_type)
  np.testing.assert_allclose(jpush, push, rtol=1e-5, atol=1e-8)
  np.testing.assert_allclose(jpull, pull, rtol=1e-5, atol=1e-8)


def test_tag_gather_uses_nchw_index():
  # One person, one joint at (k=2, y=1, x=3) of a K=4, R=5 map: the gathered tag is that pixel's channel.
  k, r = 4, 5
  tags = np.arange(r * r * k, dtype=np.float32).reshape(1, r, r, k)
  joints = np.zeros((1, 1, k, 2), np.int32)
  joints[0, 0, 0] = (2 * r * r + 1 * r + 3, 1)
  np.testing.assert_array_equal(losses.gather_tags(tags, joints)[0, 0, 0], tags[0, 1, 3, 2])
