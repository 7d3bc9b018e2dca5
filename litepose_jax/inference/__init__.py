"""Inference: from images to people.

  predictor.py  the test-time path (resize, forward + flip, aggregate, decode, back to image pixels)
  track.py      person ids that persist across video frames
  api.py        `PoseEstimator`, the two-line Python API (re-exported as `litepose_jax.PoseEstimator`)

The predictor's names are re-exported here (`inference.Predictor`, `inference.read_rgb`, ...) on first use,
so that `from litepose_jax import PoseEstimator` (api.py) does not import JAX before it is needed.
"""

_PREDICTOR_NAMES = ('aggregate_passes', 'Maps', 'materialize', 'multi_scale_size', 'Prediction', 'Predictor',
                    'read_rgb', 'resize_align', 'test_time_maps', 'to_image', 'to_uint8', 'upsample2x')


def __getattr__(name):
  if name in _PREDICTOR_NAMES:
    from litepose_jax.inference import predictor  # pylint: disable=g-import-not-at-top
    return getattr(predictor, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
  return sorted(list(globals()) + list(_PREDICTOR_NAMES))
