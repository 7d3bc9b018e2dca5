"""The JAX Munkres solver against independent oracles: scipy (optimal cost) and munkres 1.1.4 (tie-breaking).

All matrices of a test go through one jitted, vmapped call (fixed 30x30 padding), so each test compiles once.
"""

import jax
import munkres
import numpy as np
import pytest
import scipy.optimize

from litepose_jax.decode import munkres as jax_munkres

M = jax_munkres.MAX_SIZE


def _shapes(rng, count):
  fixed = [(1, 1), (1, 30), (30, 1), (30, 30), (29, 30), (30, 29), (2, 17)]
  return fixed + [tuple(rng.integers(1, M + 1, size=2)) for _ in range(count - len(fixed))]


def _munkres_rows(cost, num_cols):
  """munkres 1.1.4 pairs as row → column (−1: padding column or unassigned)."""
  out = -np.ones(M, int)
  for r, c in munkres.Munkres().compute(cost.tolist()):
    if c < num_cols:
      out[r] = c
  return out


def test_random_costs_same_optimum_as_scipy():
  rng = np.random.default_rng(0)
  shapes = _shapes(rng, 80)
  cost = np.zeros((len(shapes), M, M), np.float32)
  for i, (r, c) in enumerate(shapes):
    # On the solver's exact 2^-19 grid (and exact in float32: < 16 needs 23 bits), continuous enough that
    # the optimal assignment is unique.
    cost[i, :r, :c] = np.round(rng.uniform(0, 16, size=(r, c)) * 2**19) / 2**19
  rows = np.array([s[0] for s in shapes])
  cols = np.array([s[1] for s in shapes])
  got = np.asarray(jax.jit(jax.vmap(jax_munkres.linear_sum_assignment))(cost, rows, cols))
  for i, (r, c) in enumerate(shapes):
    ref_r, ref_c = scipy.optimize.linear_sum_assignment(cost[i, :r, :c].astype(np.float64))
    mine = [(a, got[i, a]) for a in range(r) if got[i, a] >= 0]
    assert len(mine) == min(r, c)
    assert len({b for _, b in mine}) == len(mine)
    total = sum(float(cost[i, a, b]) for a, b in mine)
    assert total == pytest.approx(float(cost[i, ref_r, ref_c].astype(np.float64).sum()), abs=1e-9)
    expected = -np.ones(M, int)
    expected[ref_r] = ref_c
    np.testing.assert_array_equal(got[i], expected, err_msg=f'shape {r}x{c}')
    assert np.all(got[i, r:] == -1)


def test_grouping_costs_resolve_ties_like_munkres_1_1_4():
  """Cost round(d)·100 − val with the authors' 1e10 column padding: ties everywhere."""
  rng = np.random.default_rng(1)
  shapes = _shapes(rng, 150)
  rounded = np.zeros((len(shapes), M, M), np.int32)
  val = np.zeros((len(shapes), M), np.float32)
  for i, (r, c) in enumerate(shapes):
    if i % 2:  # distances like a tag map: mostly round to 0 or 1
      rounded[i, :r, :c] = np.round(np.abs(rng.normal(size=(r, c))) * rng.choice([0.4, 1.0, 3.0]))
    else:
      rounded[i, :r, :c] = rng.choice([0, 1, 2], p=[0.7, 0.2, 0.1], size=(r, c))
    kind = i % 3
    if kind == 0:
      val[i, :r] = rng.uniform(0.1, 1.0, size=r)
    elif kind == 1:  # exact ties in val
      val[i, :r] = rng.integers(1, 8, size=r) / 8
    else:  # val differences below float64's 2^-19 resolution next to the 1e10 padding
      val[i, :r] = 0.5 + rng.integers(0, 4, size=r) * np.float32(2**-22)
  rows = np.array([s[0] for s in shapes])
  cols = np.array([s[1] for s in shapes])
  got = np.asarray(jax.jit(jax.vmap(jax_munkres.assign_grouping))(rounded, val, rows, cols))
  for i, (r, c) in enumerate(shapes):
    # Exactly the authors' matrix (lib/core/group.py): float64, 1e10 columns when candidates > persons.
    cost = rounded[i, :r, :c].astype(np.float64) * 100 - val[i, :r, None].astype(np.float64)
    if r > c:
      cost = np.concatenate([cost, np.zeros((r, r - c)) + 1e10], axis=1)
    np.testing.assert_array_equal(got[i], _munkres_rows(cost, c), err_msg=f'case {i}, shape {r}x{c}')


def test_zero_padding_and_integer_ties_like_munkres():
  """Plain (munkres-padded) tie-heavy integer matrices through the float front end."""
  rng = np.random.default_rng(2)
  shapes = _shapes(rng, 60)
  cost = np.zeros((len(shapes), M, M), np.float32)
  for i, (r, c) in enumerate(shapes):
    cost[i, :r, :c] = rng.integers(0, 3, size=(r, c))
  rows = np.array([s[0] for s in shapes])
  cols = np.array([s[1] for s in shapes])
  got = np.asarray(jax.jit(jax.vmap(jax_munkres.linear_sum_assignment))(cost, rows, cols))
  for i, (r, c) in enumerate(shapes):
    np.testing.assert_array_equal(got[i], _munkres_rows(cost[i, :r, :c].astype(np.float64), c),
                                  err_msg=f'shape {r}x{c}')


def test_carry_normalisation_equals_the_bit_mask():
  """The carry split (TFLite-friendly arithmetic) equals floor division and the 2^19 bit mask of NumPy,
  for negative values and the int32 extremes too."""
  rng = np.random.default_rng(3)
  edges = np.array([0, 1, -1, 2**19 - 1, 2**19, -2**19, -2**19 - 1, 2**31 - 1, -2**31, -2**31 + 1], np.int64)
  frac = np.concatenate([edges, rng.integers(-2**31, 2**31, size=100_000)]).astype(np.int32)
  whole = rng.integers(-2**10, 2**10, size=frac.shape).astype(np.int32)
  w, f = map(np.asarray, jax.jit(jax_munkres._normalize)(whole, frac))  # pylint: disable=protected-access
  np.testing.assert_array_equal(f, np.bitwise_and(frac, 2**19 - 1))
  np.testing.assert_array_equal(w, whole + np.floor_divide(frac.astype(np.int64), 2**19))
