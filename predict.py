"""Multi-person pose on images, a folder or a video: annotated copies + COCO-format predictions.json.

  python predict.py --ckpt=workdirs/litepose_xs --input=photo.jpg --output=out/
  python predict.py --ckpt=LitePose-XS.pth.tar --arch=xs --keypoints=crowdpose --input=frames/ --output=out/
  python predict.py --ckpt=workdirs/litepose_xs --input=clip.mp4 --output=out/
  python predict.py --model=xs.tflite --input=photo.jpg --output=out/     # an exported TFLite file

Each person is drawn in its own colour; a joint's disc size and opacity show its confidence, the number
next to a person is its score. predictions.json holds one COCO result per person ({image_id, category_id,
keypoints [x, y, confidence]·K, score} plus file_name / frame), coordinates clipped to the image.
--model runs a file from `python -m litepose_jax.export` with LiteRT (export.predictor.TFLitePredictor:
same resize, flip test, decoder and back-projection; keypoint set and input size come from the file).
"""

import json
import os
import pathlib
import sys

from absl import app
from absl import flags
import cv2
import numpy as np

from configs import common
from litepose_jax import from_config
from litepose_jax import inference
from litepose_jax import runtime
from litepose_jax import visualize

_CKPT = flags.DEFINE_string('ckpt', None, 'Orbax checkpoint directory or authors\' .pth/.pth.tar/.npz.')
_MODEL = flags.DEFINE_string('model', None, 'An exported .tflite file (instead of --ckpt).')
_INPUT = flags.DEFINE_string('input', None, 'An image, a folder of images or a video.')
_OUTPUT = flags.DEFINE_string('output', None, 'Output folder.')
_ARCH = flags.DEFINE_string('arch', 'xs', 'Architecture of an authors\' weight file (xs|s|m|l|JSON).')
_KEYPOINTS = flags.DEFINE_string('keypoints', 'crowdpose', 'Keypoint set of an authors\' weight file.')
_BATCH = flags.DEFINE_integer('batch_size', 4, 'Images per forward pass.')
_FLIP = flags.DEFINE_bool('flip', True, 'Flip test (the authors\' default).')
_MIN_SCORE = flags.DEFINE_float('min_score', 0.0, 'Drop people with a lower score.')
flags.mark_flags_as_required(['input', 'output'])
flags.mark_flags_as_mutual_exclusive(['ckpt', 'model'], required=True)

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
VIDEO_EXTS = ('.mp4', '.avi', '.mov', '.mkv', '.webm')


def _image_id(path: pathlib.Path, index: int) -> int:
  return int(path.stem) if path.stem.isdigit() else index


def _results(image_id, kp, scores, hw, extra):
  """COCO results of one image, coordinates clipped into the image."""
  out = []
  for person, score in zip(kp, scores):
    person = person.copy()
    person[:, 0] = np.clip(person[:, 0], 0, hw[1] - 1)
    person[:, 1] = np.clip(person[:, 1], 0, hw[0] - 1)
    out.append(dict(image_id=image_id, category_id=1, keypoints=[round(float(v), 3) for v in person.ravel()],
                    score=round(float(score), 5), **extra))
  return out


def _speed(batch_times) -> str:
  """images/s overall, and without the batches that compiled a new input shape."""
  n = sum(b[0] for b in batch_times)
  total = sum(b[1] for b in batch_times)
  steady = [b for b in batch_times if not b[2]]
  text = f'{n / max(total, 1e-9):.2f} images/s including compilation'
  if steady:
    text += f', {sum(b[0] for b in steady) / sum(b[1] for b in steady):.2f} images/s without'
  return text


def _predictor():
  """inference.Predictor for --ckpt, or export.predictor.TFLitePredictor for --model (same interface)."""
  if _MODEL.value:
    from litepose_jax.export import predictor  # pylint: disable=g-import-not-at-top
    return predictor.TFLitePredictor(_MODEL.value, flip=_FLIP.value)
  config = common.get_config(_ARCH.value, _KEYPOINTS.value)
  config.eval.batch_size = _BATCH.value
  config.eval.flip_test = _FLIP.value
  model, variables, keypoint_set, input_size = from_config.load_model(config, _CKPT.value)
  return from_config.predictor(config, model, variables, keypoint_set, input_size)


def main(argv):
  del argv
  runtime.setup(host_tuning=True)   # before JAX's first computation
  src, out = pathlib.Path(_INPUT.value), pathlib.Path(_OUTPUT.value)
  if not src.exists():
    print(f'error: {src} does not exist', file=sys.stderr)
    return 1
  try:
    predictor = _predictor()
  except (FileNotFoundError, ValueError, OSError, RuntimeError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  keypoint_set = predictor.keypoint_set
  out.mkdir(parents=True, exist_ok=True)
  results = []
  draw = lambda image, p: visualize.draw_people(image, p.keypoints[p.scores >= _MIN_SCORE.value],
                                                keypoint_set.skeleton, p.scores[p.scores >= _MIN_SCORE.value])

  if src.is_file() and src.suffix.lower() in VIDEO_EXTS:
    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
      print(f'error: {src}: cannot open the video', file=sys.stderr)
      return 1
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    writer, frame_index, done = None, 0, False
    while not done:
      frames = []
      while len(frames) < _BATCH.value:
        ok, frame = cap.read()
        if not ok:
          done = True
          break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
      if not frames:
        break
      for frame, p in zip(frames, predictor.predict(frames)):
        if writer is None:
          writer = cv2.VideoWriter(str(out / f'{src.stem}_pose.mp4'), cv2.VideoWriter_fourcc(*'mp4v'), fps,
                                   (frame.shape[1], frame.shape[0]))
        writer.write(cv2.cvtColor(draw(frame, p), cv2.COLOR_RGB2BGR))
        keep = p.scores >= _MIN_SCORE.value
        results += _results(frame_index, p.keypoints[keep], p.scores[keep], frame.shape[:2],
                            {'frame': frame_index})
        frame_index += 1
    cap.release()
    if writer is not None:
      writer.release()
  else:
    paths = (sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTS) if src.is_dir() else [src])
    if not paths:
      print(f'error: no images ({", ".join(IMAGE_EXTS)}) in {src}', file=sys.stderr)
      return 1
    chunk = 4 * _BATCH.value
    for start in range(0, len(paths), chunk):
      names = paths[start:start + chunk]
      try:
        images = [inference.read_rgb(p) for p in names]
      except OSError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
      for i, (path, image, p) in enumerate(zip(names, images, predictor.predict(images))):
        visualize.write_rgb(str(out / f'{path.stem}_pose.jpg'), draw(image, p))
        keep = p.scores >= _MIN_SCORE.value
        results += _results(_image_id(path, start + i), p.keypoints[keep], p.scores[keep], image.shape[:2],
                            {'file_name': path.name})
  with open(out / 'predictions.json', 'w') as f:
    json.dump(results, f)
  n = sum(b[0] for b in predictor.batch_times)
  print(f'{n} images, {len(results)} people; {_speed(predictor.batch_times)}; written to '
        f'{os.path.abspath(out)}')
  return 0


if __name__ == '__main__':
  app.run(main, flags_parser=runtime.parse_flags)
