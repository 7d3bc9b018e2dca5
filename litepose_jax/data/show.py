"""Writes PNGs of augmented training samples with their targets, to look at rather than read.

  python -m litepose_jax.data.show --config=configs/litepose_xs.py --out=/tmp/show
  python -m litepose_jax.data.show --config=configs/litepose_xs.py --config.dataset.name=synthetic \\
      --out=/tmp/show --num=16

Each PNG shows, side by side: the network input (de-normalised) with the tag-loss joints of every person
drawn as a skeleton (one colour per person), and the same image under the 1/2-scale heatmaps (max over
joints) with the masked-out pixels (mask 0: outside the image, COCO ignore regions) tinted red.
"""

from __future__ import annotations

import os

from absl import app
from absl import flags
import cv2
from ml_collections import config_flags
import numpy as np

_CONFIG = config_flags.DEFINE_config_file('config', None, 'A get_config() file, e.g. configs/litepose_xs.py.',
                                          lock_config=True)
_OUT = flags.DEFINE_string('out', None, 'Folder for the PNGs.', required=True)
_NUM = flags.DEFINE_integer('num', 8, 'Number of samples.')
_START = flags.DEFINE_integer('start_step', 0, 'Show the samples of this training step on.')


def _colour(i: int) -> tuple:
  hue = np.uint8([[[(i * 37) % 180, 220, 255]]])
  return tuple(int(v) for v in cv2.cvtColor(hue, cv2.COLOR_HSV2BGR)[0, 0])


def render(sample: dict, skeleton, stride: int) -> np.ndarray:
  """One sample (unbatched NumPy arrays of a training batch) → a BGR uint8 panel [I, 2I, 3]."""
  from litepose_jax.data import resample  # pylint: disable=g-import-not-at-top
  image = sample['image'] * np.array(resample.IMAGENET_STD) + np.array(resample.IMAGENET_MEAN)
  image = np.clip(image * 255, 0, 255).astype(np.uint8)[..., ::-1].copy()
  size = image.shape[0]
  left = image.copy()
  joints = sample['joints_0']  # [30,K,2]: (k·R² + y·R + x, valid)
  res = size // 4
  for p, person in enumerate(joints):
    pts = {}
    for flat, valid in person:
      if valid:
        k, rest = divmod(int(flat), res * res)
        y, x = divmod(rest, res)
        pts[k] = (int((x + 0.5) * stride), int((y + 0.5) * stride))
    for a, b in skeleton:
      if a in pts and b in pts:
        cv2.line(left, pts[a], pts[b], _colour(p), 2, cv2.LINE_AA)
    for pt in pts.values():
      cv2.circle(left, pt, 3, _colour(p), -1, cv2.LINE_AA)
  heat = sample['heatmaps_1'].max(axis=-1)
  heat = cv2.resize((np.clip(heat, 0, 1) * 255).astype(np.uint8), (size, size))
  right = cv2.addWeighted(image, 0.45, cv2.applyColorMap(heat, cv2.COLORMAP_JET), 0.55, 0)
  masked = cv2.resize(sample['masks_1'], (size, size), interpolation=cv2.INTER_NEAREST) < 0.5
  right[masked] = (0.5 * right[masked] + 0.5 * np.array([0, 0, 255])).astype(np.uint8)
  return np.concatenate([left, right], axis=1)


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')
  from litepose_jax import keypoints as kp_lib  # pylint: disable=g-import-not-at-top
  from litepose_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  with config.unlocked():
    config.input.batch_size = _NUM.value
  batch = next(iter(pipeline.make_train_dataset(config, start_step=_START.value)))
  batch = {k: v.numpy() for k, v in batch.items()}
  skeleton = kp_lib.get(config.dataset.keypoints).skeleton
  os.makedirs(_OUT.value, exist_ok=True)
  for i in range(_NUM.value):
    panel = render({k: v[i] for k, v in batch.items()}, skeleton, stride=4)
    path = os.path.join(_OUT.value, f'sample_{i:03d}.png')
    cv2.imwrite(path, panel)
  print(f'wrote {_NUM.value} PNGs to {_OUT.value}')


if __name__ == '__main__':
  app.run(main)
