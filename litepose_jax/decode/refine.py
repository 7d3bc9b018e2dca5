"""Placing grouped joints (spec e.7-e.9): the quarter-pixel adjust and the refine that fills missing joints.

Shapes (B images, S person slots, K joints, L tag dim, H×W map at input resolution):
  adjust(joints [B,S,K,3], heatmaps [B,K,H,W], sizes [B,2]) → joints [B,S,K,3]
  refine(joints [B,S,K,3], ptags [B,S,K,L], valid [B,S], heatmaps [B,K,H,W], tags [B,K,L,H,W], sizes)
    → joints [B,S,K,3]
Both are exact ports of the authors' HeatmapParser.adjust / refine (tie rules included); refine is pruned
(see `refine_with_stats`). Every intermediate array has rank <= 6, the limit of TFLite's builtin ops, so
the decoder exports as one graph (export variant B).
"""

from __future__ import annotations

from typing import Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from litepose_jax.decode import munkres

_BIG_INDEX = int(np.iinfo(np.int32).max)
_COL_SPAN = 1 << 15  # positions are packed as row·2^15 + col: the raster order of any map narrower than 2^15


def quarter_offset(heatmaps: jax.Array, b: jax.Array, k: jax.Array, x: jax.Array, y: jax.Array,
                   sizes: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """±0.25 towards the higher horizontal / vertical neighbour (ties → −0.25), indices clamped to the map.

  Args:
    heatmaps: [B,K,H,W]; b, k, x, y: int32 index arrays of one shape; sizes: [B,2] valid (h, w) per image.
  Returns:
    (dx, dy) of that shape.
  """
  h_max, w_max = sizes[b, 0] - 1, sizes[b, 1] - 1
  right = heatmaps[b, k, y, jnp.minimum(x + 1, w_max)]
  left = heatmaps[b, k, y, jnp.maximum(x - 1, 0)]
  down = heatmaps[b, k, jnp.minimum(y + 1, h_max), x]
  up = heatmaps[b, k, jnp.maximum(y - 1, 0), x]
  return jnp.where(right > left, 0.25, -0.25), jnp.where(down > up, 0.25, -0.25)


def _indices(shape):
  """Batch and joint index arrays broadcast to [B,S,K]."""
  return (jnp.broadcast_to(jnp.arange(shape[0])[:, None, None], shape),
          jnp.broadcast_to(jnp.arange(shape[2])[None, None, :], shape))


def adjust(joints: jax.Array, heatmaps: jax.Array, sizes: jax.Array) -> jax.Array:
  """Quarter offset + 0.5 on every detected joint (val > 0) of joints [B,S,K,3]; heatmaps [B,K,H,W]."""
  x = joints[..., 0].astype(jnp.int32)
  y = joints[..., 1].astype(jnp.int32)
  b, k = _indices(x.shape)
  dx, dy = quarter_offset(heatmaps, b, k, x, y, sizes)
  det = joints[..., 2:] > 0
  xy = jnp.stack([joints[..., 0] + dx + 0.5, joints[..., 1] + dy + 0.5], axis=-1)
  return jnp.concatenate([jnp.where(det, xy, joints[..., :2]), joints[..., 2:]], axis=-1)


def _mean_detected_tags(ptags: jax.Array, det: jax.Array) -> jax.Array:
  """Mean tag of each person's detected joints, [B,S,K,L] → [B,S,L], summed in joint-index order as
  NumPy does (a fixed order keeps the float32 rounding, hence round(distance), identical)."""
  total = jnp.zeros(ptags.shape[:2] + ptags.shape[3:], jnp.float32)
  for k in range(ptags.shape[2]):
    total = total + jnp.where(det[:, :, k, None], ptags[:, :, k], 0.0)
  count = jnp.sum(det, axis=-1).astype(jnp.float32)
  return total / jnp.maximum(count, 1.0)[..., None]


def _first_argmax(score: jax.Array, rows: jax.Array, cols: jax.Array, axes) -> Tuple[jax.Array, jax.Array]:
  """(max, (row, col) of its first occurrence in raster order) — argmax's tie rule, vectorisable on CPU.

  Returns the max and the position packed as row·2^15 + col (rows, cols < 2^15).
  """
  best = jnp.max(score, axis=axes, keepdims=True)
  ind = jnp.min(jnp.where(score == best, rows * _COL_SPAN + cols, _BIG_INDEX), axis=axes)
  return jnp.squeeze(best, axes), ind


def _refine_full(hm: jax.Array, tg: jax.Array, mu: jax.Array) -> jax.Array:
  """The authors' refine search on one whole map: argmax(hm − round(‖tg − mu‖)), first occurrence.

  hm [H,W], tg [L,H,W], mu [L] → int32 position row·2^15 + col.
  """
  diff = tg - mu[:, None, None]
  dist = jnp.sqrt(jnp.sum(diff * diff, axis=0))
  rows = jnp.arange(hm.shape[0], dtype=jnp.int32)[:, None]
  cols = jnp.arange(hm.shape[1], dtype=jnp.int32)[None, :]
  return _first_argmax(hm - jnp.round(dist), rows, cols, (0, 1))[1]


def _fill(joints, need, ind, heatmaps, sizes):
  """Writes the refined position (+0.5, quarter offset) and value where needed and the value is > 0."""
  b, k = _indices(ind.shape)
  x, y = ind % _COL_SPAN, ind // _COL_SPAN
  val = heatmaps[b, k, y, x]
  dx, dy = quarter_offset(heatmaps, b, k, x, y, sizes)
  filled = jnp.stack([x + 0.5 + dx, y + 0.5 + dy, val], axis=-1)
  return jnp.where(((val > 0) & need)[..., None], filled, joints)


def _true_first(flags: jax.Array, k: int) -> jax.Array:
  """The first k positions of `flags` [N] when the true ones come first: argsort(~flags, stable)[:k].

  Written as a top_k over int32 keys, which TFLite runs as TOPK_V2 (it cannot sort booleans).
  """
  idx = jnp.arange(flags.shape[0], dtype=jnp.int32)
  return jax.lax.top_k(jnp.where(flags, flags.shape[0] - idx, -idx), k)[1].astype(jnp.int32)


def _search_blocks(hm, tg, mu, bound, b, k, top_blocks, block):
  """Exact search of the `top_blocks` blocks with the highest bound, for P (person, joint) pairs.

  Pairs are one flat axis so that the gathers stay at rank 5 ([P,T,block,block,L]).

  Args:
    hm [B,K,Hp,Wp], tg [B,K,L,Hp,Wp] (padded to whole blocks); mu [P,L], bound [P,nb] per pair;
    b, k [P] int32: image and joint of each pair.
  Returns:
    (settled, position) [P]: settled when the best pixel found beats the bound of every other block;
    position = row·2^15 + col of the first pixel with the best score.
  """
  num, nb = bound.shape
  wb = hm.shape[3] // block
  tb = min(top_blocks, nb)
  # Use top_k's indices whole: slicing its outputs makes XLA:CPU fall back from its fast TopK kernel to a
  # full comparator sort (100x slower here). The best bound left out comes from a masked max instead.
  sel = jax.lax.top_k(bound, tb)[1]  # [P,T]
  next_bound = jnp.max(bound.at[jnp.arange(num)[:, None], sel].set(-jnp.inf), axis=-1)
  r = jnp.arange(block)
  rows = ((sel // wb) * block)[:, :, None, None] + r[:, None]  # [P,T,block,1]
  cols = ((sel % wb) * block)[:, :, None, None] + r[None, :]  # [P,T,1,block]
  bi, ki = b[:, None, None, None], k[:, None, None, None]
  li = jnp.arange(tg.shape[2])
  # One gather per array (indexing a channel with a Python int would first copy that channel's maps).
  diff = tg[bi[..., None], ki[..., None], li, rows[..., None], cols[..., None]] - mu[:, None, None, None, :]
  dist2 = diff[..., 0] * diff[..., 0]
  for l in range(1, tg.shape[2]):
    dist2 = dist2 + diff[..., l] * diff[..., l]
  score = hm[bi, ki, rows, cols] - jnp.round(jnp.sqrt(dist2))  # [P,T,block,block]
  best, pos = _first_argmax(score, rows, cols, (1, 2, 3))
  return best > next_bound, pos


def refine(joints: jax.Array, ptags: jax.Array, valid: jax.Array, heatmaps: jax.Array,
           tags: jax.Array, sizes: jax.Array, block: int = 8, top_blocks: Tuple[int, int] = (8, 64),
           select: bool = False) -> jax.Array:
  """See `refine_with_stats`; returns only the joints."""
  return refine_with_stats(joints, ptags, valid, heatmaps, tags, sizes, block, top_blocks, select)[0]


def refine_with_stats(joints: jax.Array, ptags: jax.Array, valid: jax.Array, heatmaps: jax.Array,
                      tags: jax.Array, sizes: jax.Array, block: int = 8,
                      top_blocks: Tuple[int, int] = (8, 64), select: bool = False
                      ) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """Fills missing joints: argmax over pixels of D[k] − round(‖Tg[k] − μ‖), kept when its value > 0.

  μ is the mean tag of the person's detected joints. Exact, but pruned (the authors' loop is ~85 % of
  their decoding time): the map is cut into block×block blocks; a block's pixels score at most its max of
  D minus round(distance from μ to the block's tag bounding box). The best blocks are searched exactly and
  the result is accepted when it beats the bound of every other block. Pairs not settled by the
  top_blocks[0] best blocks get a second search over top_blocks[1] blocks; what is still open (never seen
  in the fixtures) is searched over the whole map.

  Args:
    joints: [B,S,K,3] adjusted persons; ptags: [B,S,K,L] their joints' tags; valid: [B,S].
    heatmaps: [B,K,H,W] (−inf outside the valid region); tags: [B,K,L,H,W]; sizes: [B,2] valid (h, w).
    block, top_blocks: pruning granularity (they change the speed, not the result).
    select: no data-dependent branch in the graph (munkres.branch: the wider and whole-map searches run
      always, their results are selected); same result.
  Returns:
    joints [B,S,K,3] with the missing joints of valid persons filled, and counts of the (person, joint)
    pairs searched: {'pairs', 'wider', 'whole_map'} (the latter two: not settled by the previous stage).
  """
  bsz, nk, h, w = heatmaps.shape
  nl = tags.shape[2]
  s = joints.shape[1]
  det = joints[..., 2] > 0
  need = valid[:, :, None] & ~det
  mu = _mean_detected_tags(ptags, det)  # [B,S,L]
  hb, wb = -(-h // block), -(-w // block)
  nb = hb * wb
  hm, tg = heatmaps, tags
  if hb * block != h or wb * block != w:
    pad = ((0, 0), (0, 0), (0, hb * block - h), (0, wb * block - w))
    hm = jnp.pad(hm, pad, constant_values=-jnp.inf)
    tg = jnp.pad(tg, pad[:2] + ((0, 0),) + pad[2:], mode='edge')  # edge padding keeps tag boxes tight
  blk_max = jnp.max(hm.reshape(bsz * nk, hb, block, wb, block), axis=(2, 4)).reshape(bsz, nk, nb)
  tg_blk = tg.reshape(bsz * nk * nl, hb, block, wb, block)
  lo = jnp.min(tg_blk, axis=(2, 4)).reshape(bsz, nk, nl, nb)
  hi = jnp.max(tg_blk, axis=(2, 4)).reshape(bsz, nk, nl, nb)
  m = mu[:, :, None, :, None]  # [B,S,1,L,1]
  gap = jnp.maximum(jnp.maximum(lo[:, None] - m, m - hi[:, None]), 0.0)  # [B,S,K,L,nb]
  # The box distance is a lower bound in exact arithmetic; shrinking it by 1e-5 keeps it one for the
  # float32 pixel distances, so round() of it never exceeds a pixel's rounded distance.
  min_round = jnp.round(jnp.sqrt(jnp.sum(gap * gap, axis=3) * (1 - 1e-5)))
  bound = blk_max[:, None] - min_round  # [B,S,K,nb]
  b_idx, k_idx = _indices(need.shape)
  mu_sk = jnp.broadcast_to(mu[:, :, None, :], need.shape + (nl,))
  settled, pos = _search_blocks(hm, tg, mu_sk.reshape(-1, nl), bound.reshape(-1, nb), b_idx.reshape(-1),
                                k_idx.reshape(-1), top_blocks[0], block)
  todo = need.reshape(-1) & ~settled

  def wider(args):
    # At most `width` unsettled pairs, gathered into a compact batch and searched over more blocks.
    pos, todo = args
    width = min(4 * bsz + 8, todo.size)
    pick = _true_first(todo, width)
    pb, ps, pk = pick // (s * nk), (pick // nk) % s, pick % nk
    settled2, pos2 = _search_blocks(hm, tg, mu[pb, ps], bound[pb, ps, pk], pb, pk, top_blocks[1], block)
    done = todo[pick] & settled2
    return pos.at[pick].set(jnp.where(done, pos2, pos[pick])), todo.at[pick].set(todo[pick] & ~done)

  def whole(args):
    # Whole-map search for whatever is still open, one pair per iteration.
    pos, todo = args
    order = _true_first(todo, todo.size)

    def body(i, pos):
      p = order[i]
      b, si, k = p // (s * nk), (p // nk) % s, p % nk
      return pos.at[p].set(_refine_full(heatmaps[b, k], tags[b, k], mu[b, si]))

    return jax.lax.fori_loop(0, jnp.sum(todo), body, pos), todo

  stats = {'pairs': jnp.sum(need), 'wider': jnp.sum(todo)}
  pos, todo = munkres.branch(select, jnp.any(todo), wider, lambda a: a, (pos, todo))
  stats['whole_map'] = jnp.sum(todo)
  pos, todo = munkres.branch(select, jnp.any(todo), whole, lambda a: a, (pos, todo))
  pos = pos.reshape(need.shape)
  return _fill(joints, need, jnp.where(need, pos, 0), heatmaps, sizes), stats
