"""LitePose training losses (spec c): masked heatmap MSE per scale and associative-embedding pull/push.

Shape legend: B batch, P padded persons (30), J packed joint slots per person (= K), K joints, R output
resolution of a scale (square maps).

Model outputs are NHWC (`out_quarter [B,R0,R0,2K]` = K heatmaps then K tags, `out_half [B,R1,R1,K]`), but
the packed tag-joint indices come from the authors' NCHW layout: `k·R²+y·R+x` into a K×R×R tensor. The AE
loss decodes (k, y, x) from that index and gathers from the NHWC tags at `(y·R+x)·K+k`, so the targets
stay bit-identical to the authors' and no transpose of the tag map is needed.

Everything is vectorised over people (the authors loop over persons and joints in Python); the tests check
it against the authors' values and a NumPy loop written from the spec. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class LossWeights:
  """Loss factors (the authors': heatmaps 1.0 at both scales, push and pull 0.001 at scale 0)."""
  heatmap_factors: Sequence[float] = (1.0, 1.0)
  push_factor: float = 1e-3
  pull_factor: float = 1e-3
  push_type: str = 'exp'


def heatmap_loss(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
  """Masked squared error per sample, divided by the full K·R·R count (not by the mask sum).

  Args:
    pred: [B, R, R, K] predicted heatmaps.
    target: [B, R, R, K] target heatmaps.
    mask: [B, R, R], 1 where the loss counts.
  Returns:
    [B] per-sample loss (factor 1).
  """
  if pred.shape != target.shape:
    raise ValueError(f'heatmap shapes differ: pred {pred.shape}, target {target.shape}')
  err = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32)) * mask[..., None]
  return jnp.mean(err, axis=(1, 2, 3))


def gather_tags(tags: jax.Array, joints: jax.Array) -> jax.Array:
  """Reads the tag of every packed joint slot.

  Args:
    tags: [B, R, R, K] tag maps (NHWC, one 1-D tag per joint).
    joints: [B, P, J, 2] int; [..., 0] is the authors' flat index k·R²+y·R+x, [..., 1] > 0 marks a valid
      slot.
  Returns:
    [B, P, J] tag values (garbage where the slot is invalid; mask with joints[..., 1] > 0).
  """
  b, r, _, k = tags.shape
  idx = joints[..., 0].astype(jnp.int32)
  joint, pixel = idx // (r * r), idx % (r * r)
  flat = tags.reshape(b, r * r * k)
  nhwc = (pixel * k + joint).reshape(b, -1)
  return jnp.take_along_axis(flat, nhwc, axis=1).reshape(idx.shape)


def ae_loss(tags: jax.Array, joints: jax.Array, push_type: str = 'exp') -> tuple[jax.Array, jax.Array]:
  """Associative-embedding grouping loss per sample (spec c).

  For person p with n_p ≥ 1 valid slots, μ_p is the mean of its tags.
    pull = (1/P') Σ_p (1/n_p) Σ_j (t_pj − μ_p)²              (P' = persons with ≥ 1 valid slot)
    push = ½ Σ_{p≠q} g(μ_p − μ_q) / (P'(P'−1))                 (0 when P' < 2)
  with g(d) = exp(−d²) for push_type 'exp' (the authors' setting) or max(0, 1 − |d|) for 'max' (the
  authors' code's other AE_LOSS_TYPE). 'exp' has no gradient when the tags of two people coincide, which
  is where a fresh network starts; 'max' pushes them apart at a constant rate until they are 1 apart.
  Gradients flow into both μ and the individual tags (no stop-gradient), as in the reference.

  Args:
    tags: [B, R, R, K] tag maps.
    joints: [B, P, J, 2] packed joints (see `gather_tags`).
    push_type: 'exp' or 'max'.
  Returns:
    (push [B], pull [B]) with factor 1.
  """
  t = gather_tags(tags.astype(jnp.float32), joints)                       # [B,P,J]
  valid = (joints[..., 1] > 0).astype(jnp.float32)                        # [B,P,J]
  n = jnp.sum(valid, axis=-1)                                             # [B,P]
  person = (n > 0).astype(jnp.float32)
  n_safe = jnp.maximum(n, 1.0)
  mu = jnp.sum(t * valid, axis=-1) / n_safe                               # [B,P]
  pull_p = jnp.sum(valid * jnp.square(t - mu[..., None]), axis=-1) / n_safe
  num_people = jnp.sum(person, axis=-1)                                   # [B]
  pull = jnp.sum(pull_p * person, axis=-1) / jnp.maximum(num_people, 1.0)

  # Off-diagonal pairs of real persons only: summing them directly (instead of the reference's
  # "all pairs minus P'") avoids cancelling a large float32 sum against P'.
  p = mu.shape[-1]
  pair = person[:, :, None] * person[:, None, :] * (1.0 - jnp.eye(p, dtype=jnp.float32))
  diff = mu[:, :, None] - mu[:, None, :]
  if push_type == 'exp':
    g = jnp.exp(-jnp.square(diff))
  elif push_type == 'max':
    g = jnp.maximum(1.0 - jnp.abs(diff), 0.0)
  else:
    raise ValueError(f"push_type must be 'exp' or 'max', got {push_type!r}")
  push_sum = jnp.sum(g * pair, axis=(1, 2))
  denom = num_people * (num_people - 1.0)
  push = jnp.where(num_people > 1, 0.5 * push_sum / jnp.maximum(denom, 1.0), 0.0)
  return push, pull


def total_loss(outputs: Sequence[jax.Array], batch: Mapping[str, jax.Array],
               weights: LossWeights = LossWeights()) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The training objective: Σ_s f_s·mean_B(hm_s) + f_push·mean_B(push) + f_pull·mean_B(pull).

  Args:
    outputs: (out_quarter [B,R0,R0,2K], out_half [B,R1,R1,K]) as returned by the model.
    batch: 'heatmaps_0' [B,R0,R0,K], 'heatmaps_1' [B,R1,R1,K], 'masks_0' [B,R0,R0], 'masks_1' [B,R1,R1],
      'joints_0' [B,P,K,2] (tag joints at scale 0; scale 1 has no tags).
    weights: loss factors.
  Returns:
    (total scalar, {'heatmap_0', 'heatmap_1', 'push', 'pull'} scalars, each already multiplied by its
    factor and averaged over the batch).
  """
  out_q, out_h = outputs
  k = out_h.shape[-1]
  if out_q.shape[-1] != 2 * k:
    raise ValueError(f'out_quarter must have 2K={2 * k} channels (heatmaps + tags), got {out_q.shape}')
  parts = {}
  for s, pred in enumerate((out_q[..., :k], out_h)):
    hm = heatmap_loss(pred, batch[f'heatmaps_{s}'], batch[f'masks_{s}'])
    parts[f'heatmap_{s}'] = weights.heatmap_factors[s] * jnp.mean(hm)
  push, pull = ae_loss(out_q[..., k:], batch['joints_0'], weights.push_type)
  parts['push'] = weights.push_factor * jnp.mean(push)
  parts['pull'] = weights.pull_factor * jnp.mean(pull)
  return sum(parts.values()), parts
