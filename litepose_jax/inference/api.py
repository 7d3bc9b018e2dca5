"""A two-line Python API:

  from litepose_jax import PoseEstimator
  people = PoseEstimator.from_checkpoint(path)(image)     # image: RGB uint8 [h,w,3] (or a file path)
  people.keypoints  # [P,K,3] x, y in image pixels, val       people.scores  # [P]

`path` is an orbax checkpoint (a `convert` output, a training workdir or step), an authors' .pth / .pth.tar /
.npz state_dict (architecture and keypoint set given or guessed from the weights), or a .tflite file written by
`python -m litepose_jax.export`. With `video=True` (or `estimator.track(frame)`) people also get `track_ids`
that persist across the frames of one stream (track.Tracker).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Optional

import numpy as np


@dataclasses.dataclass
class People:
  """One image's people: keypoints [P,K,3] (x, y in image pixels, val), scores [P], track_ids [P] or None."""
  keypoints: np.ndarray
  scores: np.ndarray
  track_ids: Optional[np.ndarray] = None

  def __len__(self) -> int:
    return len(self.scores)


class PoseEstimator:
  """Callable pose estimator around an inference.Predictor or an export.predictor.TFLitePredictor.

  Args:
    predictor: anything with `predict([image]) -> [Prediction]` and a `keypoint_set`.
    video: give track ids (one tracker per estimator: call `reset()` between videos).
    min_score: drop people scoring below this (0: keep all the decoder's people).
  """

  def __init__(self, predictor, video: bool = False, min_score: float = 0.0):
    from litepose_jax.inference import track  # pylint: disable=g-import-not-at-top
    self.predictor = predictor
    self.keypoint_set = predictor.keypoint_set
    self.video = video
    self.min_score = float(min_score)
    self._track = track
    self.tracker = track.Tracker(self.keypoint_set.sigmas) if video else None

  @classmethod
  def from_checkpoint(cls, path: str | os.PathLike, arch: Optional[str] = None,
                      num_keypoints: Optional[int] = None, video: bool = False, min_score: float = 0.0,
                      **predictor_kwargs) -> 'PoseEstimator':
    """Loads an orbax checkpoint, an authors' .pth / .pth.tar / .npz, or an exported .tflite.

    Args:
      arch, num_keypoints: for an authors' state_dict ('xs'|'s'|'m'|'l', 14|17); guessed when omitted
        (K from the output layer, the architecture by trying each one).
      predictor_kwargs: passed to the predictor (e.g. batch_size, flip).
    Raises:
      FileNotFoundError, ValueError: missing or unreadable model (the message names the file).
    """
    path = pathlib.Path(path)
    if not path.exists():
      raise FileNotFoundError(f'{path}: no such checkpoint or model file')
    if path.suffix == '.tflite':
      from litepose_jax.export import predictor as tfl  # pylint: disable=g-import-not-at-top
      return cls(tfl.TFLitePredictor(path, **predictor_kwargs), video, min_score)
    from litepose_jax import checkpoint, inference  # pylint: disable=g-import-not-at-top
    if path.is_file() and (path.suffix == '.npz' or path.name.endswith(('.pth', '.pth.tar', '.pt'))):
      loaded = _load_state_dict(path, arch, num_keypoints)
    else:
      loaded = checkpoint.load_model(path)
    predictor = inference.Predictor(loaded.model, loaded.variables, loaded.keypoint_set,
                                    loaded.model.arch.img_size, **predictor_kwargs)
    return cls(predictor, video, min_score)

  def __call__(self, image) -> People:
    """People in one RGB uint8 image [h,w,3] (or an image file path); with video=True, tracked."""
    if isinstance(image, (str, os.PathLike)):
      from litepose_jax.inference import predictor as inference  # pylint: disable=g-import-not-at-top
      image = inference.read_rgb(image)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
      raise ValueError(f'expected an RGB uint8 image [h,w,3], got {image.dtype} {image.shape}')
    pred = self.predictor.predict([image])[0]
    keep = pred.scores >= self.min_score
    people = People(pred.keypoints[keep], pred.scores[keep])
    if self.tracker is not None:
      people.track_ids = self.tracker.update(people.keypoints, people.scores)
    return people

  def track(self, frame) -> People:
    """Like calling with video=True: the frame's people with track ids (a tracker is made on first use)."""
    if self.tracker is None:
      self.tracker = self._track.Tracker(self.keypoint_set.sigmas)
    return self(frame)

  def reset(self) -> None:
    """Forget the tracks (a new video)."""
    if self.tracker is not None:
      self.tracker = self._track.Tracker(self.keypoint_set.sigmas)


def _load_state_dict(path: pathlib.Path, arch: Optional[str], num_keypoints: Optional[int]):
  from litepose_jax import checkpoint, convert, models  # pylint: disable=g-import-not-at-top
  sd = convert.load_state_dict(path)
  if num_keypoints is None:
    # The half-resolution output conv has K output channels (its bias: [K]); the quarter one 2K.
    ks = sorted({int(v.shape[0]) for k, v in sd.items() if k.startswith('final_') and k.endswith('conv.3.bias')})
    num_keypoints = ks[0] if ks else 14
  errors = []
  for name in ([arch] if arch is not None else list(models.ARCHS)):
    try:
      variables = convert.torch_to_flax(sd, name, num_keypoints)
    except Exception as e:  # pylint: disable=broad-except
      errors.append(f'{name if isinstance(name, str) and len(name) < 20 else "arch"}: '
                    f'{(str(e).splitlines() or [type(e).__name__])[0][:120]}')
      continue
    meta = checkpoint.model_meta(models.get_arch(name), num_keypoints, source=f'converted from {path}')
    model = models.create(meta['arch'], num_keypoints)
    return checkpoint.LoadedModel(model=model, variables=variables, meta=meta, step=0)
  raise ValueError(f'{path}: not a LitePose state_dict for K={num_keypoints} ({"; ".join(errors)}); '
                   'pass arch= and num_keypoints=')
