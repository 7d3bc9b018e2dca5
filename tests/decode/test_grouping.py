"""Decoder parity with the authors' HeatmapParser (reference/decode_cases.npz, 12 cases).

The 12 cases (map sizes 70..128 x 82..288) are padded into one batch with per-image valid sizes, so every
jitted function compiles once.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from litepose_jax import decode
from litepose_jax.decode import grouping
from litepose_jax.decode import refine

H, W = 128, 288
THRESHOLD = 0.1


@pytest.fixture(scope='module')
def cases(reference_dir):
  z = np.load(reference_dir / 'decode_cases.npz')
  names = [str(n) for n in z['case_names']]
  hm = np.zeros((len(names), H, W, 14), np.float32)
  tg = np.zeros((len(names), H, W, 14, 2), np.float32)
  sizes = np.zeros((len(names), 2), np.int32)
  for i, n in enumerate(names):
    det, tag = z[n + '/det'], z[n + '/tag']  # (K,h,w), (K,h,w,2)
    h, w = det.shape[1:]
    hm[i, :h, :w] = det.transpose(1, 2, 0)
    tg[i, :h, :w] = tag.transpose(1, 2, 0, 3)
    sizes[i] = h, w
  ref = {n: {k: z[f'{n}/{k}'] for k in ('topk_val', 'topk_loc', 'topk_tag', 'grouped_matched',
                                        'grouped_adjusted', 'grouped', 'scores')} for n in names}
  return names, hm, tg, sizes, ref


def test_parse_matches_authors(cases):
  """Default decoder (30 person slots): people, keypoints (1e-3 px) and scores (1e-5) as the authors'.

  Decoded in micro-batches of 5 (12 images → 3 steps, the last one padded), as on CPU.
  """
  names, hm, tg, sizes, ref = cases
  cfg = decode.DecodeConfig.create('crowdpose', micro_batch=5)
  kp, scores, valid = map(np.asarray, decode.parse_jit(hm, tg, cfg, sizes))
  assert kp.shape == (len(names), 30, 14, 3)
  for i, n in enumerate(names):
    grouped, ref_scores = ref[n]['grouped'], ref[n]['scores']
    p = min(len(grouped), 30)  # the authors' persons beyond the 30th are never matched (module docstring)
    assert valid[i].sum() == p, n
    np.testing.assert_allclose(kp[i, :p], grouped[:p, :, :3], atol=1e-3, rtol=0, err_msg=n)
    np.testing.assert_allclose(scores[i, :p], ref_scores[:p], atol=1e-5, rtol=0, err_msg=n)
    assert np.all(kp[i, p:] == 0), n


@pytest.fixture(scope='module')
def grouped64(cases):
  """Candidates, grouping and adjust with 64 slots (room for all 63 persons of 'composite_over30')."""
  _, hm, tg, sizes, _ = cases
  cfg = decode.DecodeConfig.create('crowdpose', num_slots=64)

  @jax.jit
  def run(hm, tg, sizes):
    heat, tags = decode.to_joint_major(hm, tg)
    inside = jnp.arange(H)[None, :, None] < sizes[:, 0, None, None]
    inside &= jnp.arange(W)[None, None, :] < sizes[:, 1, None, None]
    heat = jnp.where(inside[:, None], heat, -jnp.inf)
    cand = decode.top_k(heat, tags, 30, 5, THRESHOLD)
    persons = decode.group(cand, cfg)
    return heat, tags, cand, persons, refine.adjust(persons.joints, heat, sizes)

  return run(hm, tg, sizes)


def test_candidates_grouping_adjust_match_authors(cases, grouped64):
  names, _, _, _, ref = cases
  _, _, cand, persons, adjusted = grouped64
  for i, n in enumerate(names):
    r = ref[n]
    above = r['topk_val'] > THRESHOLD  # sub-threshold candidates are never used (fixture description)
    np.testing.assert_array_equal(np.asarray(cand.vals[i])[above], r['topk_val'][above], err_msg=n)
    np.testing.assert_array_equal(np.asarray(cand.locs[i])[above], r['topk_loc'][above], err_msg=n)
    np.testing.assert_array_equal(np.asarray(cand.tags[i])[above], r['topk_tag'][above], err_msg=n)
    p = len(r['grouped_matched'])
    assert int(persons.num[i]) == p, n
    matched = np.concatenate([persons.joints[i], persons.tags[i]], axis=-1)[:p]
    np.testing.assert_array_equal(matched, r['grouped_matched'], err_msg=n)
    np.testing.assert_array_equal(np.asarray(adjusted[i, :p]), r['grouped_adjusted'][..., :3], err_msg=n)


def test_refine_matches_authors(cases, grouped64):
  """Refine on all persons (63 in 'composite_over30'), with the pruning squeezed to 1 then 2 blocks so
  that the wider and whole-map searches run too (the default is covered by test_parse_matches_authors)."""
  names, _, _, sizes, ref = cases
  heat, tags, _, persons, adjusted = grouped64
  valid = jnp.arange(64)[None, :] < persons.num[:, None]
  out = jax.jit(refine.refine, static_argnames=('block', 'top_blocks'))(
      adjusted, persons.tags, valid, heat, tags, jnp.asarray(sizes), top_blocks=(1, 2))
  for i, n in enumerate(names):
    grouped = ref[n]['grouped']
    np.testing.assert_allclose(np.asarray(out[i, :len(grouped)]), grouped[..., :3], atol=1e-3, rtol=0,
                               err_msg=n)


def test_bad_config_is_rejected():
  with pytest.raises(ValueError, match='tie_break'):
    decode.DecodeConfig.create('crowdpose', tie_break='nearest')
  with pytest.raises(ValueError, match='num_slots'):
    decode.DecodeConfig.create('crowdpose', num_slots=10)


def test_vmapped_grouping_equals_sequential(cases, grouped64):
  """The accelerator path (vmap over images) returns the CPU path's persons (checked above)."""
  _, _, cand, persons, _ = grouped64
  cfg = decode.DecodeConfig.create('crowdpose', num_slots=64)
  vmapped = jax.jit(jax.vmap(lambda c: grouping._group_one(c, cfg)))(cand)  # pylint: disable=protected-access
  for a, b in zip(vmapped, persons):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
