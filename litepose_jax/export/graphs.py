"""The JAX functions that get exported: pure JAX, no TensorFlow (the converters import TF, not this file).

Shapes (B batch, H×W network input, K joints):
  network (variant A)   images [B,H,W,3] → {'out_quarter': [B,H/4,W/4,2K] (K heatmaps, K tags),
                                            'out_half': [B,H/2,W/2,K] (heatmaps)}
exactly `model.apply(variables, images, train=False)`, with the weights closed over so the converter
folds them into constants (and BatchNorm into the convolutions).
  network + decoder (variant B, `network_decoder_fn`)   images [B,H,W,3] → {'keypoints': [B,S,K,3],
                                            'scores': [B,S], 'valid': [B,S]} (S person slots)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from litepose_jax import checkpoint
from litepose_jax import decode
from litepose_jax import inference

NETWORK_OUTPUTS = ('out_quarter', 'out_half')

# LiteRT CPU path a file is laid out for → the model's depthwise_impl whose native ops suit it
# (models/depthwise.py): XNNPACK gets 7x7 depthwise kernels in pieces of ≤ 25 taps, the builtin kernels
# one op per layer.
KERNEL_LAYOUTS = {'xnnpack': 'tflite', 'builtin': 'xla'}


def input_shape(loaded: checkpoint.LoadedModel, height: int | None = None, width: int | None = None,
                batch: int = 1) -> tuple[int, int, int, int]:
  """The exported input shape [B,H,W,3]: the architecture's square input size unless H/W are given.

  Raises:
    ValueError: H or W not a positive multiple of 16 (the network's deepest maps are at 1/16).
  """
  size = loaded.model.arch.img_size
  h, w = height or size, width or size
  for name, v in (('height', h), ('width', w)):
    if v <= 0 or v % 16:
      raise ValueError(f'export input {name} must be a positive multiple of 16, got {v}')
  if batch <= 0:
    raise ValueError(f'batch must be positive, got {batch}')
  return (int(batch), int(h), int(w), 3)


def network_fn(loaded: checkpoint.LoadedModel) -> Callable[[jax.Array], Dict[str, jax.Array]]:
  """Variant A: images [B,H,W,3] (ImageNet-normalised RGB) → {'out_quarter', 'out_half'} (see module doc).

  Load the checkpoint with depthwise_impl='tflite' (for XNNPACK) or 'xla' (LiteRT's builtin kernels):
  their native grouped convolutions are what the converter maps to DEPTHWISE_CONV_2D (the CPU-oriented
  'shift' form would become ~49 multiply-adds per layer).
  """
  model = loaded.model
  variables = jax.tree.map(np.asarray, loaded.variables)

  def forward(images: jax.Array) -> Dict[str, jax.Array]:
    out_quarter, out_half = model.apply(variables, images, train=False)
    return {'out_quarter': out_quarter, 'out_half': out_half}

  return forward


DECODER_OUTPUTS = ('keypoints', 'scores', 'valid')


def network_decoder_fn(loaded: checkpoint.LoadedModel, decode_config: Optional[decode.DecodeConfig] = None
                       ) -> Callable[[jax.Array], Dict[str, jax.Array]]:
  """Variant B: the whole test-time path after resizing, in one graph.

  images [B,H,W,3] → forward on the images and their mirror (flip test) → heatmaps and tags aggregated at
  input resolution (`inference.test_time_maps`) → NMS, top-k, grouping, adjust, refine
  (`decode.parse_maps`) → {'keypoints': [B,S,K,3] (x, y at input resolution, val),
  'scores': [B,S], 'valid': [B,S] int32 (1 for a real person)}.
  Back-projection to image pixels (`inference.to_image`: one similarity per image) stays on the host,
  so the file does not depend on the image size.

  Args:
    loaded: the model (load with depthwise_impl='tflite' or 'xla', see `network_fn`).
    decode_config: a decode.DecodeConfig (default: the authors' settings for the keypoint set). It is
      traced with branch_free=True whatever it says: TFLite mis-converts the solver's IF inside the
      grouping's WHILE (see DecodeConfig.branch_free); the people are the same.
  """
  model = loaded.model
  variables = jax.tree.map(np.asarray, loaded.variables)
  keypoint_set = loaded.keypoint_set
  cfg = dataclasses.replace(decode_config or decode.DecodeConfig.create(keypoint_set), branch_free=True)

  def forward(images: jax.Array) -> Dict[str, jax.Array]:
    apply_fn = lambda x: model.apply(variables, x, train=False)
    heatmaps, tags = inference.test_time_maps(apply_fn, [images], keypoint_set.flip_index, flip=True,
                                              scales=(1.0,))
    keypoints, scores, valid = decode.parse_maps(heatmaps, tags, cfg)
    return {'keypoints': keypoints, 'scores': scores, 'valid': valid.astype(jnp.int32)}

  return forward


def decoder_shapes(loaded: checkpoint.LoadedModel, batch: int = 1) -> list[tuple[int, int, int, int]]:
  """The default input shapes of a decoder file: the test-path shapes of square, 4:3 and 3:2 images.

  `inference.resize_align` maps the short side to the input size s and rounds the long side up to a
  multiple of 64: at s = 256, 1:1 → 256x256, 4:3 (640x480) → 256x384, 3:2 (640x426) → 256x448, and the
  same in portrait: 5 signatures. Other aspects: --input_shape.
  """
  s = int(loaded.model.arch.img_size)
  shapes = [(s, s)]
  for aspect in (4 / 3, 640 / 426):
    long = int(math.ceil(s * aspect / 64) * 64)
    shapes += [(s, long), (long, s)]
  return [input_shape(loaded, h, w, batch) for h, w in dict.fromkeys(shapes)]


def file_info(loaded: checkpoint.LoadedModel, shape: tuple[int, int, int, int], with_decoder: bool,
              quantize: str, shapes: Optional[list] = None) -> dict:
  """What an exported file needs to be run without the checkpoint (stored as its metadata JSON).

  shapes: every input shape the file has a signature for (default: [shape]).
  """
  return {
      'format': 'litepose-export/1',
      'variant': 'network+decoder' if with_decoder else 'network',
      'arch': loaded.meta['arch'].get('name'),
      'num_keypoints': int(loaded.meta['num_keypoints']),
      'keypoints': loaded.keypoint_set.name,
      'input_size': int(loaded.model.arch.img_size),  # the test path's short side
      'input_shape': [int(v) for v in shape],
      'input_shapes': [[int(v) for v in s] for s in (shapes or [shape])],
      'quantize': quantize,
      # The LiteRT CPU path the graph is laid out for ('xnnpack' | 'builtin'), from the model's form.
      'kernels': 'xnnpack' if loaded.model.depthwise_impl == KERNEL_LAYOUTS['xnnpack'] else 'builtin',
      'deconv': 'window' if loaded.model.deconv_form == 'window' else 'transpose_conv',
      'flip_test': bool(with_decoder),  # variant B runs image + mirror inside; A leaves it to the caller
      'outputs': list(DECODER_OUTPUTS if with_decoder else NETWORK_OUTPUTS),
  }
