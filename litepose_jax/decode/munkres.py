"""Exact assignment (Hungarian / Munkres) solver in JAX: fixed 30x30, jit- and vmap-able, no host callback.

Why not any optimal solver: the grouping cost round(d)·100 − val is full of ties (when a joint has no more
candidates than people, every complete assignment has the same −val total and the rounded distances are
mostly equal), so WHICH optimal assignment comes back decides the grouping. The authors ran the classic
pure-Python `munkres` 1.1.4; this module follows that algorithm step by step, so it returns the same
assignment on ties. Its step order, i.e. the tie rule:

  pad      a non-square matrix is padded to n = max(rows, cols) with zeros (munkres' default pad value;
           the grouping pads extra candidate columns with 1e10 itself before calling, see
           `assign_grouping`).
  step 1   subtract each row's minimum (no column reduction).
  step 2   rows in order 0..n−1: star the FIRST zero of the row whose column has no star yet.
  step 3   cover the starred columns; n covered → done.
  step 4   find an uncovered zero, scanning rows cyclically from the last search row r0 and, inside the
           first row that has one, taking the LAST uncovered zero in the cyclic column order c0, c0+1, ...,
           c0−1 (munkres keeps scanning the row after a hit). Prime it. If its row has a star: cover the
           row, uncover the star's column and continue the search from (this row, the star's column).
           Otherwise go to step 5. If there is no uncovered zero: step 6, then search again from (0, 0).
  step 5   augment along primed/starred zeros (star in the prime's column, prime in that star's row, ...),
           erase primes, uncover everything, go to step 3.
  step 6   add the smallest uncovered value to covered rows and subtract it from uncovered columns.
  output   the starred cells (row, col) with row < rows and col < cols.

Arithmetic is exact, which is what makes the ties reproducible: a value is big·1e10 + whole + frac·2^-19
(three int32 arrays, frac kept in [0, 2^19)), compared lexicographically. For the grouping costs this
reproduces munkres' float64 arithmetic bit for bit: real entries after the row reduction are integers
(the per-row −val cancels), and 1e10 − (100·m − val) rounds val to the 2^-19 grid of float64 numbers near
1e10, which is exactly `quantize_val`. Plain float costs are rounded to the 2^-19 grid
(`linear_sum_assignment`), exact for costs on that grid with |cost| < 2^30.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

MAX_SIZE = 30
FRAC_BITS = 19
_ONE = 1 << FRAC_BITS
_INT_MAX = jnp.iinfo(jnp.int32).max
_SEARCH, _AUGMENT, _DONE = 0, 1, 2


class Costs(NamedTuple):
  """An exact cost matrix [..., M, M]: value = big·1e10 + whole + frac·2^-19 (all int32)."""
  big: jax.Array
  whole: jax.Array
  frac: jax.Array


def _normalize(whole: jax.Array, frac: jax.Array):
  # Carry frac into whole so that frac ∈ [0, 2^19) and the lexicographic order is the numeric order.
  # The shift is arithmetic (floor division by 2^19, also for negative frac), so frac − carry·2^19 equals
  # frac & (2^19 − 1) for every int32 and cannot overflow; it is written this way because TFLite has no
  # builtin bitwise AND (export variant B).
  carry = jnp.right_shift(frac, FRAC_BITS)
  return whole + carry, frac - carry * _ONE


def _lexmin(c: Costs, mask: jax.Array, axis=None):
  """Lexicographic minimum of (big, whole, frac) over `mask` (keepdims along `axis` when given)."""
  kw = dict(axis=axis, keepdims=axis is not None)
  b = jnp.min(jnp.where(mask, c.big, _INT_MAX), **kw)
  mask = mask & (c.big == b)
  w = jnp.min(jnp.where(mask, c.whole, _INT_MAX), **kw)
  mask = mask & (c.whole == w)
  f = jnp.min(jnp.where(mask, c.frac, _INT_MAX), **kw)
  return b, w, f


def _add(c: Costs, db, dw, df, where) -> Costs:
  whole, frac = _normalize(c.whole + dw, c.frac + df)
  return Costs(jnp.where(where, c.big + db, c.big), jnp.where(where, whole, c.whole),
               jnp.where(where, frac, c.frac))


def branch(select: bool, pred, true_fn, false_fn, operand):
  """`lax.cond(pred, true_fn, false_fn, operand)`, or with select=True both branches and a select.

  select=True leaves no data-dependent branch in the graph (the export of the decoder to TFLite, whose
  converter mis-wires an IF nested in a WHILE: see DecodeConfig.branch_free). The results are the same:
  the branches are pure functions of `operand`.
  """
  if not select:
    return jax.lax.cond(pred, true_fn, false_fn, operand)
  t, f = true_fn(operand), false_fn(operand)
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), t, f)


def quantize_val(val: jax.Array) -> jax.Array:
  """round-half-even(val·2^19) as int32: the part of val that survives in munkres' 1e10-padded entries."""
  return jnp.round(val.astype(jnp.float32) * _ONE).astype(jnp.int32)


def solve(costs: Costs, size, select: bool = False) -> jax.Array:
  """munkres 1.1.4 on the top-left size×size block of `costs`.

  Args:
    costs: exact costs [M, M] (M = MAX_SIZE normally); entries outside the block are ignored.
    size: n (int32 scalar, 0..M), the size of the square problem.
    select: no data-dependent branch in the graph (see `branch`); same result.
  Returns:
    row_to_col [M] int32: the column assigned to each row < n, −1 for rows ≥ n.
  """
  m = costs.big.shape[-1]
  n = jnp.asarray(size, jnp.int32)
  idx = jnp.arange(m, dtype=jnp.int32)
  in_n = idx < n
  valid = in_n[:, None] & in_n[None, :]

  # Step 1: row reduction.
  b, w, f = _lexmin(costs, valid, axis=1)
  c = _add(costs, -b, -w, -f, valid)

  def is_zero(c):
    return (c.big == 0) & (c.whole == 0) & (c.frac == 0) & valid

  # Step 2: greedy starring, rows in order, first free zero of each row.
  zero0 = is_zero(c)

  def star_row(i, carry):
    star_of_row, star_of_col = carry
    z = zero0[i] & (star_of_col < 0)
    j = jnp.argmax(z).astype(jnp.int32)
    has = z[j]
    star_of_row = star_of_row.at[i].set(jnp.where(has, j, -1))
    star_of_col = star_of_col.at[j].set(jnp.where(has, i, star_of_col[j]))
    return star_of_row, star_of_col

  minus = jnp.full((m,), -1, jnp.int32)
  star_of_row, star_of_col = jax.lax.fori_loop(0, m, star_row, (minus, minus))

  def cover_stars(star_of_col):
    # Step 3.
    col_cov = (star_of_col >= 0) & in_n
    return col_cov, jnp.where(jnp.sum(col_cov) >= n, _DONE, _SEARCH)

  col_cov, phase = cover_stars(star_of_col)
  zero_i = jnp.int32(0)
  state = dict(c=c, star_of_row=star_of_row, star_of_col=star_of_col, prime_of_row=minus,
               row_cov=jnp.zeros((m,), bool), col_cov=col_cov, phase=phase, r0=zero_i, c0=zero_i,
               pr=zero_i, pc=zero_i, it=zero_i)
  n1 = jnp.maximum(n, 1)

  def search(s):
    # Step 4 (one prime per iteration), or step 6 when no uncovered zero is left.
    uncov = ~s['row_cov'][:, None] & ~s['col_cov'][None, :] & valid
    z = is_zero(s['c']) & uncov
    row_has = jnp.any(z, axis=1)
    found = jnp.any(row_has)
    r = jnp.argmin(jnp.where(row_has, (idx - s['r0']) % n1, m)).astype(jnp.int32)
    col = jnp.argmax(jnp.where(z[r], (idx - s['c0']) % n1, -1)).astype(jnp.int32)
    star_col = s['star_of_row'][r]

    def prime(s):
      s = dict(s, prime_of_row=s['prime_of_row'].at[r].set(col))
      has_star = star_col >= 0
      return dict(s, row_cov=s['row_cov'].at[r].set(s['row_cov'][r] | has_star),
                  col_cov=jnp.where(has_star, s['col_cov'].at[star_col].set(False), s['col_cov']),
                  r0=r, c0=jnp.where(has_star, star_col, s['c0']),
                  phase=jnp.where(has_star, _SEARCH, _AUGMENT), pr=r, pc=col)

    def step6(s):
      mb, mw, mf = _lexmin(s['c'], uncov)
      rows = s['row_cov'][:, None].astype(jnp.int32)
      cols = (~s['col_cov'])[None, :].astype(jnp.int32)
      sign = rows - cols  # +1 covered row only, −1 uncovered column only, 0 both or neither
      return dict(s, c=_add(s['c'], sign * mb, sign * mw, sign * mf, valid), r0=zero_i, c0=zero_i)

    return branch(select, found, prime, step6, s)

  def augment(s):
    # Step 5, one link of the alternating path per iteration.
    pr, pc = s['pr'], s['pc']
    r1 = s['star_of_col'][pc]
    star_of_row = s['star_of_row'].at[pr].set(pc)
    star_of_col = s['star_of_col'].at[pc].set(pr)
    ends = r1 < 0
    col_cov, phase = cover_stars(star_of_col)
    cont = dict(s, star_of_row=star_of_row, star_of_col=star_of_col, pr=r1,
                pc=s['prime_of_row'][jnp.maximum(r1, 0)])
    fin = dict(s, star_of_row=star_of_row, star_of_col=star_of_col, prime_of_row=minus,
               row_cov=jnp.zeros((m,), bool), col_cov=col_cov, phase=phase, r0=zero_i, c0=zero_i)
    return jax.tree.map(lambda a, b: jnp.where(ends, a, b), fin, cont)

  def body(s):
    s = branch(select, s['phase'] == _SEARCH, search, augment, s)
    return dict(s, it=s['it'] + 1)

  # Munkres needs O(n^3) work; the cap only guards against non-terminating garbage input.
  max_iters = 8 * m * m * m
  state = jax.lax.while_loop(lambda s: (s['phase'] != _DONE) & (s['it'] < max_iters), body, state)
  return jnp.where(in_n, state['star_of_row'], -1)


def _square_mask(num_rows, num_cols, m):
  idx = jnp.arange(m)
  return idx[:, None] < num_rows, idx[None, :] < num_cols


def _finish(row_to_col, num_rows, num_cols):
  idx = jnp.arange(row_to_col.shape[-1])
  return jnp.where((idx < num_rows) & (row_to_col < num_cols), row_to_col, -1)


def linear_sum_assignment(cost: jax.Array, num_rows, num_cols, select: bool = False) -> jax.Array:
  """Minimum-cost assignment of the top-left num_rows×num_cols block of `cost`, as munkres 1.1.4.

  Args:
    cost: [M, M] float costs (|cost| < 2^30; rounded to multiples of 2^-19).
    num_rows, num_cols: the block size (int scalars ≤ M).
    select: no data-dependent branch in the graph (see `branch`); same result.
  Returns:
    row_to_col [M] int32: assigned column per row, −1 for unassigned rows (rows ≥ num_rows, or the
    rows left over when num_rows > num_cols).
  """
  m = cost.shape[-1]
  rows, cols = _square_mask(num_rows, num_cols, m)
  cost = jnp.where(rows & cols, cost.astype(jnp.float32), 0.0)  # munkres pads with zeros
  whole = jnp.floor(cost)
  frac = jnp.round((cost - whole) * _ONE).astype(jnp.int32)  # cost − floor(cost) is exact in float32
  whole, frac = _normalize(whole.astype(jnp.int32), frac)
  size = jnp.maximum(num_rows, num_cols)
  return _finish(solve(Costs(jnp.zeros_like(whole), whole, frac), size, select), num_rows, num_cols)


def grouping_costs(rounded: jax.Array, val: jax.Array, num_rows, num_cols) -> Costs:
  """The authors' matching matrix round(d)·100 − val, padded as they pad it, in exact form.

  Args:
    rounded: [M, M] int32 round(d) of candidate (row) vs person (column) tag distances.
    val: [M] float32 detection value of each candidate row.
    num_rows, num_cols: number of candidates and persons.
  Returns:
    Costs [M, M]: when rows > cols, columns cols..rows−1 hold 1e10 (the authors' padding); when
    rows < cols, rows rows..cols−1 hold 0 (munkres' padding).
  """
  m = rounded.shape[-1]
  rows, cols = _square_mask(num_rows, num_cols, m)
  real = rows & cols
  whole, frac = _normalize(jnp.where(real, 100 * rounded, 0),
                           jnp.where(real, -quantize_val(val)[:, None], 0))
  big = (rows & ~cols).astype(jnp.int32)  # only reachable when rows > cols (size = max(rows, cols))
  return Costs(big, whole, frac)


def assign_grouping(rounded: jax.Array, val: jax.Array, num_rows, num_cols, select: bool = False
                    ) -> jax.Array:
  """munkres 1.1.4's assignment for the grouping cost (see `grouping_costs`); select: see `branch`.

  Returns:
    row_to_col [M] int32: person index for each candidate row, −1 where the row got a padding column
    (or is ≥ num_rows).
  """
  size = jnp.maximum(num_rows, num_cols)
  return _finish(solve(grouping_costs(rounded, val, num_rows, num_cols), size, select), num_rows,
                 num_cols)
