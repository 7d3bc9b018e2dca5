"""Associative-embedding decoding (spec e.4-e.9), jitted and batched with fixed shapes.

Shapes (B images, H×W map at input resolution, K joints, L tag dim (2 with flip test), N = S = 30):
  heatmaps [B,H,W,K], tags [B,H,W,K,L]  (`parse`; internally joint-major [B,K,H,W], [B,K,L,H,W], which is
  what the test-time path produces directly: `parse_maps`)
  → NMS (5×5 max-pool, −inf padding) → top-N per joint: vals [B,K,N], locs [B,K,N,2] (x, y), tags [B,K,N,L]
  → grouping in the keypoint set's joint order with munkres 1.1.4's assignment (`munkres.py`)
  → adjust (quarter offset) → person score → refine (fill missing joints; both in `refine.py`)
  → keypoints [B,S,K,3] (x, y, val at input resolution), scores [B,S], valid [B,S].

Person slots: the authors keep a dict of persons and match each joint's candidates against the first 30
persons only (MAX_NUM_PEOPLE), but a candidate that matches none of them still starts a new person, so
their output can exceed 30 (the fixture 'composite_over30' has 63). Persons beyond the 30th are never
matched again: each holds the single joint that created it (refine then fills the rest), so its score is at
most max(val)/K. We keep `num_slots` persons (default 30 = the matched ones, bit-exact with the authors'
first 30) and drop later ones; `num_slots` > 30 keeps more of those one-joint fragments.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from litepose_jax import keypoints as kp_lib
from litepose_jax.decode import munkres
from litepose_jax.decode import refine as refine_lib


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
  """Decoder settings (hashable: it is a static argument of the jitted functions).

  Attributes:
    joint_order: order in which the grouping visits joints (KeypointSet.joint_order).
    max_people: N, candidates per joint and persons taking part in matching (the authors' MAX_NUM_PEOPLE).
    num_slots: S, persons kept in the output (0: max_people).
    nms_kernel: max-pool window of the peak NMS.
    detection_threshold: candidates need val > this.
    tag_threshold: a match needs tag distance < this.
    adjust: quarter-pixel offset towards the higher neighbour.
    refine: fill missing joints from the full maps.
    tie_break: 'munkres' (the authors' assignment) or 'distance' (ties in the rounded cost broken by the
      raw tag distance: cost round(d)·100 − val + 0.01·d).
    micro_batch: decode this many images at a time (a sequential loop over micro-batches) to bound the
      memory of large batches; 0 = the whole batch at once (fastest, also on CPU). Results do not change.
    branch_free: trace every data-dependent `lax.cond` as both branches + a select (`munkres.branch`).
      For the TFLite export (variant B): the TFLite converter mis-wires an IF nested in a WHILE (the
      solver's search/augment step inside the grouping loop): the file failed at run time with
      `num_input_elements != num_output_elements (900 != 30) ... RESHAPE ... IF ... WHILE` or gave other
      people than JAX. Results do not change; JAX itself is faster with real branches (the default).
  """
  joint_order: Tuple[int, ...]
  max_people: int = kp_lib.MAX_PEOPLE
  num_slots: int = 0
  nms_kernel: int = 5
  detection_threshold: float = 0.1
  tag_threshold: float = 1.0
  adjust: bool = True
  refine: bool = True
  tie_break: str = 'munkres'
  micro_batch: int = 0
  branch_free: bool = False

  def __post_init__(self):
    if self.tie_break not in ('munkres', 'distance'):
      raise ValueError(f"tie_break must be 'munkres' or 'distance', got {self.tie_break!r}")
    if self.num_slots and self.num_slots < self.max_people:
      raise ValueError('num_slots must be 0 or >= max_people')
    if self.nms_kernel % 2 != 1:
      raise ValueError('nms_kernel must be odd')

  @property
  def slots(self) -> int:
    return self.num_slots or self.max_people

  @classmethod
  def create(cls, keypoint_set, **kwargs) -> 'DecodeConfig':
    """Settings for a KeypointSet (or its name); keyword arguments override the authors' defaults."""
    return cls(joint_order=tuple(kp_lib.get(keypoint_set).joint_order), **kwargs)


class Candidates(NamedTuple):
  """Top-N peaks per joint: vals [B,K,N], locs [B,K,N,2] int32 (x, y), tags [B,K,N,L]."""
  vals: jax.Array
  locs: jax.Array
  tags: jax.Array


class Persons(NamedTuple):
  """Grouped persons: joints [B,S,K,3] (x, y, val; zeros when missing), tags [B,S,K,L], num [B].

  num counts the persons created (it may exceed S: slots ≥ num are empty, persons beyond S are dropped).
  """
  joints: jax.Array
  tags: jax.Array
  num: jax.Array


def to_joint_major(heatmaps: jax.Array, tags: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """[B,H,W,K], [B,H,W,K,L] → [B,K,H,W], [B,K,L,H,W] (each joint's map contiguous)."""
  return heatmaps.transpose(0, 3, 1, 2), tags.transpose(0, 3, 4, 1, 2)


def nms(heatmaps: jax.Array, kernel: int = 5) -> jax.Array:
  """Keeps local maxima: heatmaps where maxpool_k×k(heatmaps) == heatmaps, else 0 ([B,K,H,W] → same).

  The max-pool pads with −inf (PyTorch semantics) and runs separably (rows, then columns): the same
  maximum, several times faster on CPU than a k×k window.
  """
  pad = kernel // 2
  pooled = jax.lax.reduce_window(heatmaps, -jnp.inf, jax.lax.max, (1, 1, 1, kernel), (1, 1, 1, 1),
                                 ((0, 0), (0, 0), (0, 0), (pad, pad)))
  pooled = jax.lax.reduce_window(pooled, -jnp.inf, jax.lax.max, (1, 1, kernel, 1), (1, 1, 1, 1),
                                 ((0, 0), (0, 0), (pad, pad), (0, 0)))
  return jnp.where(pooled == heatmaps, heatmaps, 0.0)


def _top_k_full(peaks: jax.Array, k: int):
  b, nk, h, w = peaks.shape
  vals, ind = jax.lax.top_k(peaks.reshape(b, nk, h * w), k)
  return vals, ind


def _top_k_blocks(peaks: jax.Array, k: int):
  """top_k over 2×2 block maxima: exact when no block holds two peaks above the threshold."""
  b, nk, h, w = peaks.shape
  blk = jnp.max(peaks.reshape(b, nk, h // 2, 2, w // 2, 2), axis=(3, 5))
  vals, ind = jax.lax.top_k(blk.reshape(b, nk, -1), k)
  by, bx = ind // (w // 2), ind % (w // 2)
  bi = jnp.arange(b)[:, None, None]
  ki = jnp.arange(nk)[None, :, None]
  # The peak's position inside its block: the first of the 4 pixels (raster order) holding the maximum.
  pix = jnp.full(ind.shape, 3, ind.dtype)
  for q in (2, 1, 0):
    pix = jnp.where(peaks[bi, ki, 2 * by + q // 2, 2 * bx + q % 2] == vals, q, pix)
  return vals, (2 * by + pix // 2) * w + 2 * bx + pix % 2


def top_k(heatmaps: jax.Array, tags: jax.Array, k: int = 30, nms_kernel: int = 5,
          threshold: float = 0.1, select: bool = False) -> Candidates:
  """NMS, then the k highest peaks of every joint map with their tag vectors.

  Peaks of equal value come in raster order (torch.topk leaves that order open; only candidates above
  `threshold` are used downstream). Fast path: the top k of 2×2 block maxima. After a ≥5×5 NMS two
  peaks closer than 3 px have equal values, so a block holds one peak; when some block holds two peaks
  above `threshold` (a plateau), the whole-map top k is taken instead.

  Args:
    heatmaps: [B,K,H,W] (−inf outside an image's valid region).
    tags: [B,K,L,H,W].
    select: compute both paths and select (no data-dependent branch; munkres.branch).
  Returns:
    Candidates with N = k, sorted by decreasing value.
  """
  b, nk, h, w = heatmaps.shape
  peaks = nms(heatmaps, nms_kernel)
  if nms_kernel >= 5:
    even = jnp.pad(peaks, ((0, 0), (0, 0), (0, h % 2), (0, w % 2)), constant_values=-jnp.inf)
    we = even.shape[3]
    above = (even > threshold).reshape(b, nk, even.shape[2] // 2, 2, we // 2, 2)
    crowded = jnp.any(jnp.sum(above, axis=(3, 5)) > 1)
    vals, ind = munkres.branch(select, crowded, lambda p: _top_k_full(p, k), lambda p: _top_k_blocks(p, k),
                               even)
    y, x = ind // we, ind % we
  else:
    vals, ind = _top_k_full(peaks, k)
    y, x = ind // w, ind % w
  bi = jnp.arange(b)[:, None, None, None]
  ki = jnp.arange(nk)[None, :, None, None]
  li = jnp.arange(tags.shape[2])[None, None, None, :]
  cand_tags = tags[bi, ki, li, y[..., None], x[..., None]]  # [B,K,N,L]
  return Candidates(vals, jnp.stack([x, y], axis=-1).astype(jnp.int32), cand_tags)


def _tag_distance(cand_tags: jax.Array, person_tags: jax.Array) -> jax.Array:
  """‖cand − person‖₂ for [N,L] × [M,L] → [N,M] (float32, NaN-safe)."""
  diff = cand_tags[:, None, :] - person_tags[None, :, :]
  d = jnp.sqrt(jnp.sum(diff * diff, axis=-1))
  return jnp.nan_to_num(d, nan=jnp.inf)


# Rounded distances are clipped so that 100·round(d) stays far inside int32 during the solve; a distance
# of 2^20 tag units never occurs in a real tag map (and could never be matched anyway).
_MAX_ROUNDED = 1 << 20


def _assign(d: jax.Array, val: jax.Array, num_rows, num_cols, tie_break: str, select: bool) -> jax.Array:
  if tie_break == 'munkres':
    rounded = jnp.minimum(jnp.round(d), _MAX_ROUNDED).astype(jnp.int32)
    return munkres.assign_grouping(rounded, val, num_rows, num_cols, select)
  cost = jnp.minimum(jnp.round(d), _MAX_ROUNDED // 1024) * 100 - val[:, None] + 0.01 * jnp.minimum(d, 1e3)
  m = d.shape[-1]
  idx = jnp.arange(m)
  # The authors' 1e10 padding columns, in float form: any value above every real cost works the same.
  pad_cols = (idx[None, :] >= num_cols) & (idx[:, None] < num_rows)
  cost = jnp.where(pad_cols, 1e9, cost)
  col = munkres.linear_sum_assignment(cost, num_rows, jnp.maximum(num_rows, num_cols), select)
  return jnp.where(col < num_cols, col, -1)


def _group_one(cand: Candidates, cfg: DecodeConfig) -> Persons:
  """match_by_tag for one image (cand without the batch axis)."""
  nk, n = cand.vals.shape
  nl = cand.tags.shape[-1]
  s, m = cfg.slots, cfg.max_people
  slot_idx = jnp.arange(s)
  row_idx = jnp.arange(n)
  order = jnp.asarray(cfg.joint_order, jnp.int32)

  def step(i, state):
    joints, ptags, keys, tag_sum, tag_cnt, num = state
    k = order[i]
    v, t = cand.vals[k], cand.tags[k]
    row_data = jnp.concatenate([cand.locs[k].astype(jnp.float32), v[:, None]], axis=-1)
    valid = v > cfg.detection_threshold
    num_rows = jnp.sum(valid)  # a prefix: candidates are sorted by value
    num_cols = jnp.minimum(num, m)
    # Person tag = float32 mean of its tag list, summed in append order as NumPy does.
    mean = tag_sum[:m] / jnp.maximum(tag_cnt[:m], 1)[:, None].astype(jnp.float32)
    d = _tag_distance(t, mean)
    col = jnp.where(num > 0, _assign(d, v, num_rows, num_cols, cfg.tie_break, cfg.branch_free), -1)
    d_sel = jnp.take_along_axis(d, jnp.maximum(col, 0)[:, None], axis=1)[:, 0]
    matched = valid & (col >= 0) & (d_sel < cfg.tag_threshold)
    new = valid & ~matched
    # A new candidate is keyed by its first tag value; if that key already exists (an existing person,
    # or an earlier new candidate of this joint) the authors' dict writes into that person and resets
    # its tag list instead of creating one.
    key = t[:, 0]
    stored = jnp.minimum(num, s)
    eq_exist = (key[:, None] == keys[None, :]) & (slot_idx < stored)[None, :]
    has_exist = new & jnp.any(eq_exist, axis=1)
    fresh_cand = new & ~has_exist
    same = (key[:, None] == key[None, :]) & fresh_cand[None, :] & (row_idx[None, :] <= row_idx[:, None])
    first = jnp.argmax(same, axis=1)
    is_fresh = fresh_cand & (first == row_idx)
    fresh_rank = jnp.cumsum(is_fresh) - 1
    target = jnp.where(matched, col,
                       jnp.where(has_exist, jnp.argmax(eq_exist, axis=1), num + fresh_rank[first]))
    target = jnp.where(valid & (target < s), target, -1)
    # Per slot: the matched row and the last resetting row of this joint (row order = the authors' order).
    hits = target[:, None] == slot_idx[None, :]
    m_row = jnp.max(jnp.where(hits & matched[:, None], row_idx[:, None], -1), axis=0)
    reset_row = jnp.max(jnp.where(hits & new[:, None], row_idx[:, None], -1), axis=0)
    last = jnp.maximum(m_row, reset_row)
    written = (last >= 0)[:, None]
    joints = joints.at[:, k].set(jnp.where(written, row_data[jnp.maximum(last, 0)], joints[:, k]))
    ptags = ptags.at[:, k].set(jnp.where(written, t[jnp.maximum(last, 0)], ptags[:, k]))
    has_reset = (reset_row >= 0)[:, None]
    base_sum = jnp.where(has_reset, t[jnp.maximum(reset_row, 0)], tag_sum)
    base_cnt = jnp.where(has_reset[:, 0], 1, tag_cnt)
    append = (m_row > reset_row)[:, None]
    tag_sum = jnp.where(append, base_sum + t[jnp.maximum(m_row, 0)], base_sum)
    tag_cnt = jnp.where(append[:, 0], base_cnt + 1, base_cnt)
    fresh_slot = jnp.where(is_fresh, num + fresh_rank, -1)
    key_hits = fresh_slot[:, None] == slot_idx[None, :]
    keys = jnp.where(jnp.any(key_hits, axis=0), jnp.sum(jnp.where(key_hits, key[:, None], 0.0), axis=0),
                     keys)
    num = num + jnp.sum(is_fresh)
    return joints, ptags, keys, tag_sum, tag_cnt, num

  state = (jnp.zeros((s, nk, 3), jnp.float32), jnp.zeros((s, nk, nl), jnp.float32),
           jnp.zeros((s,), jnp.float32), jnp.zeros((s, nl), jnp.float32), jnp.zeros((s,), jnp.int32),
           jnp.int32(0))
  joints, ptags, _, _, _, num = jax.lax.fori_loop(0, nk, step, state)
  return Persons(joints, ptags, num)


def group(cand: Candidates, cfg: DecodeConfig) -> Persons:
  """The authors' match_by_tag, batched: Candidates [B,K,N,...] → Persons [B,S,...]."""
  one = functools.partial(_group_one, cfg=cfg)
  if cand.vals.shape[0] == 1:
    return jax.tree.map(lambda x: x[None], one(jax.tree.map(lambda x: x[0], cand)))
  if jax.default_backend() == 'cpu':
    # One image at a time: the solver's branches stay real branches (vmap computes both sides of every
    # branch for all images and selects), 3-4x faster on CPU. Accelerators prefer the vmapped lanes.
    return jax.lax.map(one, cand)
  return jax.vmap(one)(cand)


def _parse_batch(heatmaps, tags, sizes, cfg):
  cand = top_k(heatmaps, tags, cfg.max_people, cfg.nms_kernel, cfg.detection_threshold, cfg.branch_free)
  persons = group(cand, cfg)
  joints = persons.joints
  if cfg.adjust:
    joints = refine_lib.adjust(joints, heatmaps, sizes)
  scores = jnp.mean(joints[..., 2], axis=-1)
  valid = jnp.arange(cfg.slots)[None, :] < persons.num[:, None]
  if cfg.refine:
    joints = refine_lib.refine(joints, persons.tags, valid, heatmaps, tags, sizes, select=cfg.branch_free)
  return joints, scores, valid


def parse_maps(heatmaps: jax.Array, tags: jax.Array, cfg: DecodeConfig,
               sizes: Optional[jax.Array] = None) -> Tuple[jax.Array, jax.Array, jax.Array]:
  """`parse` on joint-major maps: heatmaps [B,K,H,W], tags [B,K,L,H,W]; same outputs."""
  bsz, _, h, w = heatmaps.shape
  heatmaps = heatmaps.astype(jnp.float32)
  tags = tags.astype(jnp.float32)
  if sizes is None:
    sizes = jnp.broadcast_to(jnp.asarray([h, w], jnp.int32), (bsz, 2))
  else:
    sizes = jnp.asarray(sizes, jnp.int32)
    inside = ((jnp.arange(h)[None, :, None] < sizes[:, 0, None, None]) &
              (jnp.arange(w)[None, None, :] < sizes[:, 1, None, None]))
    heatmaps = jnp.where(inside[:, None], heatmaps, -jnp.inf)
  mb = cfg.micro_batch
  if not mb or mb >= bsz:
    return _parse_batch(heatmaps, tags, sizes, cfg)
  # Sequential micro-batches bound the memory of the wide intermediate arrays (refine bounds, gathers).
  steps = -(-bsz // mb)
  pad = steps * mb - bsz
  chunk = lambda x: jnp.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1), mode='edge').reshape(
      (steps, mb) + x.shape[1:])
  out = jax.lax.map(lambda a: _parse_batch(*a, cfg), (chunk(heatmaps), chunk(tags), chunk(sizes)))
  return jax.tree.map(lambda x: x.reshape((steps * mb,) + x.shape[2:])[:bsz], out)


def parse(heatmaps: jax.Array, tags: jax.Array, cfg: DecodeConfig, sizes: Optional[jax.Array] = None
          ) -> Tuple[jax.Array, jax.Array, jax.Array]:
  """The authors' HeatmapParser.parse (adjust and refine as configured), before back-projection.

  Args:
    heatmaps: [B,H,W,K] aggregated heatmaps at input resolution.
    tags: [B,H,W,K,L] tag maps (L = 2 with flip test: [original, flipped]).
    cfg: DecodeConfig (static under jit).
    sizes: optional [B,2] int32 (h, w) of each image's valid top-left region when maps of different sizes
      share one padded batch (default: the whole map).
  Returns:
    keypoints [B,S,K,3] (x, y, val; x, y in map pixels), scores [B,S] (mean val over K, before refine),
    valid [B,S] (slot holds a person).
  """
  return parse_maps(*to_joint_major(heatmaps, tags), cfg, sizes)


parse_jit = jax.jit(parse, static_argnames='cfg')
