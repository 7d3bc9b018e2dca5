"""litepose-jax: LitePose (CVPR 2022) bottom-up multi-person pose estimation in JAX/Flax.

Shapes in docstrings use one legend across the package (docs/shapes.md): B batch, H/W image or map size,
I training input side, R0/R1 = I/4, I/2 map sides, K joints, L tag dim, P packed people (30), N candidates
per joint, S decoder person slots, M assignment side, G ground-truth people, D detections, C channels.

  from litepose_jax import PoseEstimator
  people = PoseEstimator.from_checkpoint(path)(image)   # .keypoints [P,K,3], .scores [P]

`import litepose_jax` stays light (no JAX / TensorFlow import): PoseEstimator and People are loaded on
first use (module __getattr__).
"""

__version__ = '0.1.0'

_LAZY = {'PoseEstimator': 'litepose_jax.inference.api', 'People': 'litepose_jax.inference.api', 'Tracker': 'litepose_jax.inference.track'}


def __getattr__(name):
  if name in _LAZY:
    import importlib  # pylint: disable=g-import-not-at-top
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
  return sorted(list(globals()) + list(_LAZY))
