"""The search's data, from a config, as NumPy (the TensorFlow side of the search; nas/fitness.py has none).

Two config choices (docs/nas.md, "Search and transfer"):
  calibration set  the config's TRAINING split with the training preprocessing and augmentation
                   (`data.pipeline.make_train_dataset`, config.seed: the same images at every resolution),
                   the first `calib_batches` batches of config.input.batch_size images — the authors
                   (calibrate_test.py) and OFA both re-estimate BN statistics on augmented training images;
  held-out split   the config's EVAL split (`dataset.eval_split`; ordered, the first `max_images` images),
                   so point it at a split that is not the one you report on (CrowdPose: 'val', not 'test';
                   COCO: a slice of train2017 or val2017 if test-dev is the report; synthetic: 'val').
Both are produced at I // downscale for a subnet of img_size I (downscale > 1 only for smoke tests).
"""

from __future__ import annotations

import itertools
from typing import Dict, List

import numpy as np

from litepose_jax import eval_lib
from litepose_jax.nas import fitness


def _at_size(config, size: int):
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.input.size = int(size)
  return config


def calibration_images(config, size: int, num_batches: int) -> List[np.ndarray]:
  """The first `num_batches` training batches' images [B, size, size, 3] (float32, normalised)."""
  from litepose_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  ds = pipeline.make_train_dataset(_at_size(config, size))
  return [b['image'] for b in itertools.islice(ds.as_numpy_iterator(), int(num_batches))]


def eval_batches(config, size: int, max_images: int) -> List[Dict[str, np.ndarray]]:
  """Eval-pipeline batches (eval_lib's keys) at input size `size` holding exactly the first max_images real
  images of the split (0: all); later images of the last batch are masked out ('_mask' False)."""
  out, seen = [], 0
  keys = ('image', 'image_id', 'center', 'scale', '_mask')
  for batch in eval_lib.eval_batches(config, int(size)):
    if max_images and seen >= max_images:
      break
    batch = {k: np.array(batch[k]) for k in keys}
    if max_images:
      real = np.flatnonzero(batch['_mask'])
      batch['_mask'][real[max(0, max_images - seen):]] = False
    out.append(batch)
    seen += int(np.sum(batch['_mask']))
  return out


def search_data(config, max_images: int, calib_batches: int, downscale: int = 1) -> fitness.SearchData:
  """SearchData whose loaders read `config`'s pipelines at img_size // downscale."""
  if downscale < 1:
    raise ValueError(f'downscale must be ≥ 1, got {downscale}')
  return fitness.SearchData(
      calibration=lambda res: calibration_images(config, res // downscale, calib_batches),
      evaluation=lambda res: eval_batches(config, res // downscale, max_images),
      max_images=int(max_images))
