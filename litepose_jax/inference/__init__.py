"""Inference: from images to people.

  predictor.py  the test-time path (resize, forward + flip, aggregate, decode, back to image pixels)
  track.py      person ids that persist across video frames
  api.py        `PoseEstimator`, the two-line Python API (re-exported as `litepose_jax.PoseEstimator`)
"""

from litepose_jax.inference.predictor import aggregate_passes
from litepose_jax.inference.predictor import Maps
from litepose_jax.inference.predictor import materialize
from litepose_jax.inference.predictor import multi_scale_size
from litepose_jax.inference.predictor import Prediction
from litepose_jax.inference.predictor import Predictor
from litepose_jax.inference.predictor import read_rgb
from litepose_jax.inference.predictor import resize_align
from litepose_jax.inference.predictor import test_time_maps
from litepose_jax.inference.predictor import to_image
from litepose_jax.inference.predictor import to_uint8
from litepose_jax.inference.predictor import upsample2x
