"""The test-time path around an exported .tflite file: same pre- and post-processing as the JAX Predictor.

  predictor = TFLitePredictor('xs.tflite')            # keypoint set and input size from the file
  people = predictor.predict([rgb_uint8_image, ...])    # [inference.Prediction(keypoints [P,K,3], scores [P])]

Per image: `inference.resize_align` (short side → input size, long side padded to a multiple of 64) →
  variant A file (network): LiteRT forward on the image and its mirror, then one jitted program:
    `inference.aggregate_passes` aggregation and `decode.parse_maps`;
  variant B file (network + decoder): one LiteRT call;
→ `inference.to_image` back to image pixels. `predict.py --model=FILE.tflite` uses this class.
Needs litepose_jax.inference / decode (JAX) and ai-edge-litert, not TensorFlow.
"""

from __future__ import annotations

import os
import time
from typing import Iterable, List, Optional, Tuple

import jax
import numpy as np

from litepose_jax import decode
from litepose_jax import inference
from litepose_jax import keypoints as kp_lib
from litepose_jax.export import runner


class TFLitePredictor:
  """`predict(images)` with an exported file, interchangeable with inference.Predictor.

  Attributes:
    net: the runner.TFLiteModel.
    keypoint_set, input_size: from the file's metadata.
    variant: 'network' | 'network+decoder'.
    batch_times: (images, seconds, first run of its input shape) per image run by `predict`, as
      inference.Predictor.batch_times (the first run of a shape includes jit compilation of the decoder).
  """

  def __init__(self, path: str | os.PathLike, num_threads: int = 2, xnnpack: bool = True,
               decode_config: Optional[decode.DecodeConfig] = None, flip: bool = True):
    """Loads an exported file.

    Args:
      path: a .tflite written by `python -m litepose_jax.export` (it carries the metadata needed here),
        or a loaded model with runner.TFLiteModel's interface (`metadata`, `exported_shape`, `network`),
        e.g. another runtime's network for a side-by-side evaluation.
      num_threads, xnnpack: LiteRT settings (runner.TFLiteModel).
      decode_config: decode.DecodeConfig for variant A files (default: the authors' settings).
      flip: flip test for variant A files (variant B files run it inside, always).
    Raises:
      ValueError: the file has no litepose metadata (written by another tool), or flip=False with a
        variant B file.
    """
    self.net = path if hasattr(path, 'network') else runner.TFLiteModel(path, num_threads=num_threads,
                                                                         xnnpack=xnnpack)
    meta = self.net.metadata
    if not meta:
      raise ValueError(f'{path} has no litepose metadata: export it with `python -m litepose_jax.export`')
    self.keypoint_set = kp_lib.get(meta['keypoints'])
    self.input_size = int(meta['input_size'])
    self.variant = meta['variant']
    self._path = path
    self._flip = flip
    self.batch_times: List[Tuple[int, float, bool]] = []
    self._seen = set()
    if self.variant == 'network':
      cfg = decode_config or decode.DecodeConfig.create(self.keypoint_set)
      flip_index = tuple(self.keypoint_set.flip_index)

      # The file runs on the host; everything after it (aggregation of the passes, decoding) is one
      # jitted program. The input resolution is twice that of out_half.
      def post(out_quarter, out_half, with_maps=False):
        base_hw = (2 * out_half.shape[1], 2 * out_half.shape[2])
        heat, tags = inference.materialize(
            *inference.aggregate_passes(out_quarter, out_half, flip_index, flip, base_hw))
        out = decode.parse_maps(heat, tags, cfg)
        return out + (heat, tags) if with_maps else out

      self._post = jax.jit(post)
      self._post_maps = jax.jit(lambda q, h: post(q, h, with_maps=True))  # views only (predict.py --draw)
    elif not flip:
      raise ValueError(f'{path} holds the decoder (variant B), which runs the flip test inside; '
                       'flip=False needs a network-only (variant A) file')

  def _network(self, images: np.ndarray):
    """(out_quarter, out_half) for a batch; a batch-1 file runs it image by image (no resize needed)."""
    images = np.asarray(images, np.float32)
    if self.net.exported_shape[0] == 1 and images.shape[0] > 1:
      outs = [self.net.network(images[i:i + 1]) for i in range(images.shape[0])]
      return tuple(np.concatenate([o[j] for o in outs]) for j in range(2))
    return self.net.network(images)

  def _run(self, x: np.ndarray, with_maps: bool = False):
    """x [1,h',w',3] → keypoints [1,S,K,3] at input resolution, scores [1,S], valid [1,S] bool (and with_maps:
    heatmaps [1,K,h',w'], tags [1,K,L,h',w'])."""
    if self.variant == 'network+decoder':
      if with_maps:
        raise ValueError(f'{self._path} holds the decoder (variant B) and returns people only; the heatmap '
                         'and tag views need a network-only file (export without --with-decoder) or --ckpt')
      if tuple(x.shape) not in self.net.shapes:
        have = ','.join(f'{s[1]}x{s[2]}' for s in self.net.shapes)
        raise ValueError(f'{self._path} holds the decoder for inputs {have}; this image needs '
                         f'{x.shape[1]}x{x.shape[2]} (export with --input_shape={have},'
                         f'{x.shape[1]}x{x.shape[2]})')
      out = self.net(x)
      return out['keypoints'], out['scores'], out['valid'].astype(bool)
    batch = np.concatenate([x, x[:, :, ::-1]]) if self._flip else x  # the pass order aggregate_passes reads
    post = self._post_maps if with_maps else self._post
    return tuple(np.asarray(o) for o in post(*self._network(batch)))

  def predict(self, images: Iterable[np.ndarray], with_maps: bool = False) -> List[inference.Prediction]:
    """One inference.Prediction per RGB uint8 image [h,w,3] (any sizes), in input order.

    Args:
      with_maps: fill each Prediction's `maps` (variant A files only), as inference.Predictor.predict.
    """
    results: List[inference.Prediction] = []
    for image in images:
      x, center, scale = inference.resize_align(image, self.input_size)
      start = time.perf_counter()
      out = self._run(x[None], with_maps)
      kp, scores, valid = out[:3]
      kp = np.asarray(inference.to_image(kp, center[None].astype(np.float32),
                                         scale[None].astype(np.float32), x.shape[:2]))
      self.batch_times.append((1, time.perf_counter() - start, x.shape not in self._seen))
      self._seen.add(x.shape)
      maps = inference.Maps(out[3][0], out[4][0], center, scale) if with_maps else None
      results.append(inference.Prediction(kp[0][valid[0]], scores[0][valid[0]], maps))
    return results

