"""The test-time path (spec e.1-e.3, e.10): resize, forward + flip, aggregate, decode, back to image pixels.

Shapes (B images, h'×w' network input, K joints, S person slots, L = 2 tag channels with flip):
  resize_align(image [h,w,3] uint8)     → input [h',w',3] float32 (ImageNet-normalised), center, scale
  test_time_maps(inputs [B,h',w',3])    → heatmaps [B,K,h',w'], tags [B,K,L,h',w'] (joint-major)
  decode.parse_maps(...)                → keypoints [B,S,K,3] at input resolution
  to_image(keypoints, center, scale)    → keypoints [B,S,K,3] in image pixels
`Predictor` ties them together for lists of images of any sizes: images whose inputs have the same shape
are batched, so each input shape compiles once.

OpenCV is imported by the host-side functions that read and resize images only, so the jitted path
(`Predictor.predict_batch` on prepared inputs) also runs where OpenCV is not installed (bench/accelerator.py).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from litepose_jax import decode
from litepose_jax import keypoints as kp_lib
from litepose_jax import models

_MEAN = np.array(models.IMAGENET_MEAN, np.float32)
_STD = np.array(models.IMAGENET_STD, np.float32)


def multi_scale_size(h: int, w: int, input_size: int, scale: float = 1.0, min_scale: float = 1.0):
  """Network input size, center and scale of an h×w image (the authors' get_multi_scale_size).

  The short side goes to input_size·scale, the long side keeps the aspect and is rounded UP to a multiple
  of 64 (at min_scale, then scaled).
  Returns:
    ((w', h'), center (2,) int, scale (2,) float: source box size / 200 px).
  """
  center = np.array([int(w / 2.0 + 0.5), int(h / 2.0 + 0.5)])
  min_input = int((min_scale * input_size + 63) // 64 * 64)
  if w < h:
    w_r = int(min_input * scale / min_scale)
    h_r = int(int((min_input / w * h + 63) // 64 * 64) * scale / min_scale)
    scale_wh = np.array([w / 200.0, h_r / w_r * w / 200.0])
  else:
    h_r = int(min_input * scale / min_scale)
    w_r = int(int((min_input / h * w + 63) // 64 * 64) * scale / min_scale)
    scale_wh = np.array([w_r / h_r * h / 200.0, h / 200.0])
  return (w_r, h_r), center, scale_wh


def _affine(center, scale, out_wh, inverse: bool = False) -> np.ndarray:
  """2×3 similarity between the source box (center, scale·200 wide) and an out_wh image.

  Built from three float32 point pairs and cv2.getAffineTransform, as the authors build it, so that
  cv2.warpAffine samples exactly the same source positions.
  """
  import cv2  # pylint: disable=g-import-not-at-top
  src_w = scale[0] * 200.0
  dst_w, dst_h = out_wh
  src = np.zeros((3, 2), np.float32)
  dst = np.zeros((3, 2), np.float32)
  src[0] = center
  src[1] = center + np.array([0, src_w * -0.5], np.float32)
  dst[0] = [dst_w * 0.5, dst_h * 0.5]
  dst[1] = dst[0] + np.array([0, dst_w * -0.5], np.float32)
  for p in (src, dst):  # third point: the second one turned 90° about the first
    d = p[0] - p[1]
    p[2] = p[1] + np.array([-d[1], d[0]], np.float32)
  return cv2.getAffineTransform(dst, src) if inverse else cv2.getAffineTransform(src, dst)


def resize_align(image: np.ndarray, input_size: int, scale: float = 1.0, min_scale: float = 1.0
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Resizes an RGB uint8 image for the network as the authors do (resize_align_multi_scale + ToTensor +
  Normalize): short side → input_size·scale, long side up to a multiple of 64, bilinear, zero border.

  Args:
    image: [h, w, 3] uint8 RGB.
  Returns:
    (input [h', w', 3] float32 normalised, center (2,), scale (2,) in 200-px units).
  """
  import cv2  # pylint: disable=g-import-not-at-top
  if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
    raise ValueError(f'expected an RGB uint8 image [h, w, 3], got {image.dtype} {image.shape}')
  (w_r, h_r), center, scale_wh = multi_scale_size(image.shape[0], image.shape[1], input_size, scale,
                                                  min_scale)
  resized = cv2.warpAffine(image, _affine(center, scale_wh, (w_r, h_r)), (w_r, h_r))
  normalised = (resized.astype(np.float32) / np.float32(255.0) - _MEAN) / _STD
  return normalised, center, scale_wh


def read_rgb(path) -> np.ndarray:
  """An image file as [h,w,3] RGB uint8 (EXIF orientation ignored, as the datasets' annotations assume).

  Raises:
    OSError: the file is missing, not a readable image, or a truncated / corrupt JPEG or PNG (which OpenCV
      would decode with a grey fill and only a libjpeg warning); the message names it.
  """
  import cv2  # pylint: disable=g-import-not-at-top
  from litepose_jax.data import image_files  # pylint: disable=g-import-not-at-top
  try:
    image_files.inspect_image(str(path))
  except image_files.BadImageError as e:
    # Other reasons (WebP / TIFF files, CMYK JPEGs) are TF's limits, not OpenCV's.
    if e.reason in ('missing file', 'empty file', 'truncated file', 'corrupt file'):
      raise OSError(str(e)) from None
  image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
  if image is None:
    raise OSError(f'{path}: not a readable image')
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def to_uint8(normalised: np.ndarray) -> np.ndarray:
  """A normalised network input [h,w,3] back to RGB uint8 (the inverse of resize_align's normalisation)."""
  return np.clip(np.round((np.asarray(normalised) * _STD + _MEAN) * 255.0), 0, 255).astype(np.uint8)


def upsample2x(x: jax.Array) -> jax.Array:
  """Bilinear ×2 upsampling of the last two axes (PyTorch align_corners=False): [..., h, w] → [..., 2h, 2w].

  Along each axis out[2i] = ¾·x[i] + ¼·x[i−1] and out[2i+1] = ¾·x[i] + ¼·x[i+1], indices clamped at the
  borders: O(n), unlike jax.image.resize's dense weight matrix. Written as one expression of nine shifted
  views of the edge-padded input, so that XLA writes each output element once; two 1-D passes with their
  edge concatenations made XLA:CPU materialise several full-size intermediates (about twice as slow;
  docs/design.md).
  """
  lead, (h, w) = x.shape[:-2], x.shape[-2:]
  x = x.reshape((-1, h, w))  # rank 3, so the phase stacking below stays within TFLite's rank limit of 6
  xp = jnp.concatenate([x[..., :1, :], x, x[..., h - 1:, :]], axis=-2)
  xp = jnp.concatenate([xp[..., :1], xp, xp[..., w - 1:]], axis=-1)  # [..., h+2, w+2], edges repeated
  view = lambda di, dj: xp[..., 1 + di:1 + di + h, 1 + dj:1 + dj + w]
  # Row phase a (0: 2i, 1: 2i+1) mixes row i with row i−1 (a = 0) or i+1 (a = 1); then the same on columns.
  row_mix = lambda a, dj: 0.75 * view(0, dj) + 0.25 * view(2 * a - 1, dj)
  phases = [[0.75 * row_mix(a, 0) + 0.25 * row_mix(a, 2 * b - 1) for b in (0, 1)] for a in (0, 1)]
  out = jnp.stack([jnp.stack(row, axis=-1) for row in phases], axis=-3)  # [B, h, 2, w, 2]
  return out.reshape(lead + (2 * h, 2 * w))


def _resize(x: jax.Array, hw: Tuple[int, int]) -> jax.Array:
  """Bilinear (align_corners=False, no antialias) resize of the last two axes of [..., h, w]."""
  h, w = x.shape[-2:]
  if (2 * h, 2 * w) == tuple(hw):
    return upsample2x(x)
  if (h, w) == tuple(hw):
    return x
  return jax.image.resize(x, x.shape[:-2] + tuple(hw), 'linear', antialias=False)


def _pass_maps(out_quarter: jax.Array, out_half: jax.Array, num_keypoints: int):
  """One forward pass → (heatmaps [B,K,h/2,w/2], tags [B,K,h/2,w/2]): mean of the two heatmap scales,
  tags from the 1/4 output; the 1/4 output is upsampled to 1/2 first (spec e.2)."""
  k = num_keypoints
  quarter = upsample2x(out_quarter.transpose(0, 3, 1, 2))  # [B,2K,h/2,w/2]
  half = out_half.transpose(0, 3, 1, 2)
  return (quarter[:, :k] + half) / 2.0, quarter[:, k:]


def test_time_maps(apply_fn: Callable, inputs: Sequence[jax.Array], flip_index: Sequence[int],
                   flip: bool = True, scales: Sequence[float] = (1.0,)) -> Tuple[jax.Array, jax.Array]:
  """Forward (+ flip) at every scale, aggregated at the base input resolution (spec e.2-e.3).

  Args:
    apply_fn: images [B,h,w,3] → (out_quarter [B,h/4,w/4,2K], out_half [B,h/2,w/2,K]).
    inputs: one normalised batch [B,h_s,w_s,3] per scale; the one for scale 1.0 fixes the base size.
    flip_index: K ints (KeypointSet.flip_index).
    scales: the scale of each input (as in resize_align); tags come from scale 1.0 only, as the authors'.
  Returns:
    heatmaps [B,K,H,W] (mean over scales and passes), tags [B,K,L,H,W] (L = 2 with flip, else 1).
  """
  if 1.0 not in scales:
    raise ValueError(f'scales must include 1.0 (the tag maps come from it), got {scales}')
  base = inputs[list(scales).index(1.0)].shape[1:3]
  heat_sum, tags = 0.0, None
  for x, s in zip(inputs, scales):
    batch = jnp.concatenate([x, x[:, :, ::-1]], axis=0) if flip else x
    heat_s, tag_s = aggregate_passes(*apply_fn(batch), flip_index, flip, base)
    heat_sum = heat_sum + heat_s
    if s == 1.0:
      tags = tag_s
  return heat_sum / float(len(inputs)), tags


def aggregate_passes(out_quarter: jax.Array, out_half: jax.Array, flip_index: Sequence[int], flip: bool,
                     base_hw: Tuple[int, int]) -> Tuple[jax.Array, jax.Array]:
  """One scale's network outputs → its maps at the base input resolution (spec e.2-e.3).

  Args:
    out_quarter, out_half: the network's outputs on [images; mirrored images] (2B) when flip, else B.
    flip_index: K ints.
    base_hw: (H, W), the resolution of the scale-1.0 input.
  Returns:
    heatmaps [B,K,H,W] (mean of the passes), tags [B,K,L,H,W] (L = 2 with flip, else 1).
  """
  flip_index = jnp.asarray(flip_index)
  heat, tag = _pass_maps(out_quarter, out_half, len(flip_index))
  if not flip:
    return _resize(heat, base_hw), _resize(tag, base_hw)[:, :, None]
  b = heat.shape[0] // 2
  heat_f, tag_f = heat[b:, flip_index, :, ::-1], tag[b:, flip_index, :, ::-1]
  # The pass mean is taken before resizing (the authors resize each pass, then average): resizing is
  # linear, so only the float rounding differs (tested against their maps), and the full-resolution work
  # halves.
  return _resize((heat[:b] + heat_f) / 2.0, base_hw), _resize(jnp.stack([tag[:b], tag_f], axis=2), base_hw)


def materialize(heat: jax.Array, tags: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """The aggregated maps as computed arrays before decoding (an XLA optimisation barrier).

  Without it XLA:CPU fuses the upsampling and flip averaging into the decoder's consumers (NMS, top-k,
  gathers) and recomputes them there, which made aggregation + decoding slower in one program than as two
  (docs/design.md). (Not used in exported graphs: the
  TFLite converter has no optimisation-barrier op.)
  """
  return jax.lax.optimization_barrier((heat, tags))


def to_image(keypoints: jax.Array, center: jax.Array, scale: jax.Array, map_hw: Tuple[int, int]
             ) -> jax.Array:
  """Maps (x, y) at input resolution back to image pixels (every joint, as the authors' get_final_preds).

  Args:
    keypoints: [B,S,K,3]; center, scale: [B,2] from resize_align; map_hw: (h', w') of the maps.
  Returns:
    [B,S,K,3] with x, y in image pixels (val unchanged).
  """
  factor = (scale[:, 0] * 200.0 / map_hw[1])[:, None, None]
  x = center[:, 0, None, None] + (keypoints[..., 0] - map_hw[1] / 2.0) * factor
  y = center[:, 1, None, None] + (keypoints[..., 1] - map_hw[0] / 2.0) * factor
  return jnp.stack([x, y, keypoints[..., 2]], axis=-1)


@dataclasses.dataclass
class Maps:
  """One image's aggregated maps at network-input resolution (what the decoder read), and their placement.

  heatmaps [K,H,W]; tags [K,L,H,W]; center (2,), scale (2,): the back-projection of `to_image`, so that
  map pixel (u, v) lies at image pixel center + ((u, v) − (W/2, H/2))·scale_x·200/W.
  """
  heatmaps: np.ndarray
  tags: np.ndarray
  center: np.ndarray
  scale: np.ndarray


@dataclasses.dataclass
class Prediction:
  """One image's people: keypoints [P,K,3] (x, y in image pixels, val), scores [P]; maps when asked for
  (`Predictor.predict(..., with_maps=True)`), else None."""
  keypoints: np.ndarray
  scores: np.ndarray
  maps: Optional[Maps] = None


class Predictor:
  """Whole test-time path for a model: `predict(images)` → one Prediction per image.

  Args:
    model, variables: a LitePose module and its {'params', 'batch_stats'}.
    keypoint_set: KeypointSet (flip index, grouping order).
    input_size: the short side I (the architecture's img_size).
    flip, scales: test-time augmentation (the authors: flip, scale 1).
    decode_config: DecodeConfig; default: the authors' settings.
    batch_size: images per forward.
  """

  def __init__(self, model, variables, keypoint_set: kp_lib.KeypointSet, input_size: int,
               flip: bool = True, scales: Sequence[float] = (1.0,),
               decode_config: Optional[decode.DecodeConfig] = None, batch_size: int = 8):
    self.keypoint_set = keypoint_set
    self.input_size = int(input_size)
    self.flip = flip
    self.scales = tuple(sorted((float(s) for s in scales), reverse=True))
    if 1.0 not in self.scales:
      raise ValueError(f'scales must include 1.0, got {scales}')
    self.decode_config = decode_config or decode.DecodeConfig.create(keypoint_set)
    self.batch_size = int(batch_size)
    self.variables = variables
    apply_fn = lambda v, x: model.apply(v, x, train=False)

    def run(variables, inputs, center, scale, with_maps=False):
      heat, tags = test_time_maps(functools.partial(apply_fn, variables), inputs,
                                  keypoint_set.flip_index, self.flip, self.scales)
      heat, tags = materialize(heat, tags)
      kp, scores, valid = decode.parse_maps(heat, tags, self.decode_config)
      out = (to_image(kp, center, scale, heat.shape[2:]), scores, valid)
      return out + (heat, tags) if with_maps else out

    self._run = jax.jit(run)
    # A second program that also returns the maps (views): compiled only when asked for, so the default
    # path neither computes nor copies them.
    self._run_maps = jax.jit(functools.partial(run, with_maps=True))
    self._compiled = set()
    # (images, seconds, compiled) per batch run by `predict`: the first batch of a new input shape
    # includes compilation, so speed reports should use the others.
    self.batch_times: List[Tuple[int, float, bool]] = []

  def prepare(self, image: np.ndarray):
    """Network inputs (one per scale), center and scale of one RGB uint8 image."""
    min_scale = min(self.scales)
    inputs = [resize_align(image, self.input_size, s, min_scale)[0] for s in self.scales]
    # The authors back-project with the last (smallest) scale's center/scale: reproduce that.
    _, center, scale = multi_scale_size(image.shape[0], image.shape[1], self.input_size, min_scale,
                                        min_scale)
    return inputs, center, scale

  def predict_prepared(self, inputs: Sequence[np.ndarray], center: np.ndarray, scale: np.ndarray,
                       variables=None, with_maps: bool = False):
    """Jitted path on a batch: inputs one [B,h_s,w_s,3] per scale, center/scale [B,2].

    Args:
      variables: weights to use instead of the predictor's own (same shapes: no recompilation).
      with_maps: also return the aggregated maps the decoder read.
    Returns:
      keypoints [B,S,K,3] (image pixels), scores [B,S], valid [B,S] (NumPy); with_maps: then heatmaps
      [B,K,H,W] and tags [B,K,L,H,W] at the scale-1.0 input resolution.
    """
    run = self._run_maps if with_maps else self._run
    out = run(self.variables if variables is None else variables, [jnp.asarray(x) for x in inputs],
              jnp.asarray(center, jnp.float32), jnp.asarray(scale, jnp.float32))
    return tuple(np.asarray(o) for o in out)

  def predict_batch(self, batch, variables=None):
    """`predict_prepared` on a data-pipeline eval batch (eval_lib).

    Args:
      batch: {'image' [B,h',w',3] normalised network input, 'center' [B,2], 'scale' [B,2], ...}.
      variables: as in `predict_prepared`.
    Returns:
      keypoints [B,S,K,3] (image pixels), scores [B,S], valid [B,S] (NumPy).
    """
    if len(self.scales) != 1:
      raise ValueError(f'a pipeline eval batch holds one network input; this predictor runs scales '
                       f'{self.scales}')
    return self.predict_prepared([batch['image']], batch['center'], batch['scale'], variables)

  def predict(self, images: Iterable[np.ndarray], with_maps: bool = False) -> List[Prediction]:
    """Predictions for RGB uint8 images of any sizes (batched by input shape, in input order).

    Args:
      with_maps: fill each Prediction's `maps` (heatmaps and tags, for drawing; a second compiled program).
    """
    images = list(images)
    prepared = [self.prepare(im) for im in images]
    results: List[Optional[Prediction]] = [None] * len(images)
    by_shape = {}
    for i, (inputs, _, _) in enumerate(prepared):
      by_shape.setdefault(tuple(x.shape for x in inputs), []).append(i)
    for idx in by_shape.values():
      for start in range(0, len(idx), self.batch_size):
        chunk = idx[start:start + self.batch_size]
        # Pad the last batch to the full batch size so that every shape compiles once.
        padded = chunk + [chunk[-1]] * (self.batch_size - len(chunk))
        inputs = [np.stack([prepared[i][0][s] for i in padded]) for s in range(len(self.scales))]
        center = np.stack([prepared[i][1] for i in padded])
        scale = np.stack([prepared[i][2] for i in padded])
        shape = tuple(x.shape for x in inputs)
        start_time = time.perf_counter()
        out = self.predict_prepared(inputs, center, scale, with_maps=with_maps)
        kp, scores, valid = out[:3]
        key = (shape, with_maps)
        self.batch_times.append((len(chunk), time.perf_counter() - start_time, key not in self._compiled))
        self._compiled.add(key)
        for j, i in enumerate(chunk):
          maps = Maps(out[3][j], out[4][j], center[j], scale[j]) if with_maps else None
          results[i] = Prediction(kp[j][valid[j]], scores[j][valid[j]], maps)
    return results

