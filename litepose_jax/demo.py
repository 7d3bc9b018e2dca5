"""Interim `make demo`: model summary and one jitted forward pass of LitePose-XS on a real sample image.

(The training issue replaces this with: build the synthetic set, train configs/demo.py, evaluate.)
"""

import pathlib
import time

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from litepose_jax import model_info, models

SAMPLE = pathlib.Path(__file__).resolve().parents[1] / 'tests' / 'data' / 'crowdpose_sample' / '103319.jpg'
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def main():
  model = models.create('xs', 14)
  info = model_info.count(model)
  print(f'LitePose-XS: {info["params"]:,} parameters, {info["macs"] / 1e9:.3f} GMACs '
        f'({info["macs_published"] / 1e9:.2f} G published convention)')
  image = cv2.cvtColor(cv2.imread(str(SAMPLE)), cv2.COLOR_BGR2RGB)
  x = cv2.resize(image, (256, 256)).astype(np.float32) / 255.0
  x = jnp.asarray(((x - MEAN) / STD)[None])
  variables = models.init_variables(model, jax.random.PRNGKey(0))
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  t0 = time.perf_counter()
  jax.block_until_ready(forward(variables, x))
  t1 = time.perf_counter()
  out_q, out_h = jax.block_until_ready(forward(variables, x))
  t2 = time.perf_counter()
  print(f'{SAMPLE.name}: input {tuple(x.shape)} → heatmaps+tags {tuple(out_q.shape)}, '
        f'heatmaps {tuple(out_h.shape)}')
  print(f'compile {t1 - t0:.1f} s, forward {1000 * (t2 - t1):.0f} ms (random weights: untrained output)')


if __name__ == '__main__':
  main()
