"""Representative inputs for int8 post-training quantisation: image files → network inputs [H,W,3].

The converter only uses them to measure activation ranges, so a simple cover-resize + centre-crop to the
exported shape is enough (no need for the test path's aspect-preserving padding); the ImageNet
normalisation must be the real one, because it sets the input range.
"""

from __future__ import annotations

import glob
import os
import pathlib
from typing import Iterator, List, Sequence

import numpy as np

from litepose_jax import models

MEAN = np.array(models.IMAGENET_MEAN, np.float32)
STD = np.array(models.IMAGENET_STD, np.float32)
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')


def find_images(pattern: str | os.PathLike, limit: int | None = None) -> List[pathlib.Path]:
  """Image files under a directory or matching a glob, sorted (deterministic calibration).

  Raises:
    FileNotFoundError: nothing matched.
  """
  p = pathlib.Path(pattern)
  if p.is_dir():
    files = [f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES]
  else:
    files = [pathlib.Path(f) for f in glob.glob(str(pattern)) if f.lower().endswith(IMAGE_SUFFIXES)]
  files = sorted(files)[:limit]
  if not files:
    raise FileNotFoundError(f'no calibration images (.jpg/.png) found at {pattern}')
  return files


def cover_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """RGB uint8 [h,w,3] → normalised float32 [H,W,3]: scale to cover H×W, centre-crop, ImageNet-normalise."""
  import cv2  # pylint: disable=g-import-not-at-top
  h, w = image.shape[:2]
  s = max(height / h, width / w)
  nh, nw = max(height, round(h * s)), max(width, round(w * s))
  resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
  y0, x0 = (nh - height) // 2, (nw - width) // 2
  crop = resized[y0:y0 + height, x0:x0 + width].astype(np.float32) / 255.0
  return (crop - MEAN) / STD


def representative_inputs(files: Sequence[str | os.PathLike], height: int,
                          width: int) -> Iterator[np.ndarray]:
  """Yields one normalised [1,H,W,3] float32 input per image file.

  Raises:
    ValueError: a file is not a readable image (named).
  """
  import cv2  # pylint: disable=g-import-not-at-top
  for f in files:
    bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
    if bgr is None:
      raise ValueError(f'calibration image {f} could not be read as an image')
    yield cover_crop(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), height, width)[None]
