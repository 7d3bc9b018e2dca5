"""Multi-person pose on images, a folder, a video or a live camera: annotated copies + COCO-format JSON.

  python predict.py --ckpt=workdirs/litepose_xs --input=photo.jpg --output=out/
  python predict.py --ckpt=LitePose-XS.pth.tar --arch=xs --keypoints=crowdpose --input=frames/ --output=out/
  python predict.py --ckpt=workdirs/litepose_xs --input=clip.mp4 --output=out/       # person ids (--track)
  python predict.py --ckpt=workdirs/litepose_xs --input=camera:0                     # window (with a display)
  python predict.py --ckpt=workdirs/litepose_xs --input=camera:0 --output=live.mp4   # or a recording
  python predict.py --model=xs.tflite --input=photo.jpg --output=out/     # an exported TFLite file
  python predict.py --ckpt=... --input=photo.jpg --output=out/ --draw=skeleton,heatmaps,tags

Each person is drawn in its own colour (in videos and streams: the colour of its track id); a joint's disc
size and opacity show its confidence, the label above a person is its score (and `id N`). People scoring
under --min_score are neither drawn nor written (--json_all_people writes them all). predictions.json
holds one COCO result per person ({image_id, category_id, keypoints [x, y, confidence]·K, score} plus
file_name / frame and, when tracking, track_id), coordinates clipped to the image.

--draw=heatmaps / tags writes <name>_views.png (videos: the panel as the frames): the aggregated heatmaps
and the tag maps over the image, one tile per joint, titled (visualize.views_panel; docs/predict.md).
--input=camera:N opens camera N with OpenCV; camera:<file or URL> reads anything cv2.VideoCapture opens
as a live stream (frame by frame, frames per second drawn on each frame; used to test camera mode).
--model runs a file from `python -m litepose_jax.export` with LiteRT (export.predictor.TFLitePredictor:
same resize, flip test, decoder and back-projection; keypoint set and input size come from the file).
"""

import json
import os
import pathlib
import sys
import time

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
_INPUT = flags.DEFINE_string('input', None, 'An image, a folder of images, a video, or camera:N / '
                             'camera:<file or URL> (a live stream).')
_OUTPUT = flags.DEFINE_string('output', None, 'Output folder (camera: a folder or a .mp4 file; optional '
                              'when the stream is shown in a window).')
_ARCH = flags.DEFINE_string('arch', 'xs', 'Architecture of an authors\' weight file (xs|s|m|l|JSON).')
_KEYPOINTS = flags.DEFINE_string('keypoints', 'crowdpose', 'Keypoint set of an authors\' weight file.')
_BATCH = flags.DEFINE_integer('batch_size', 4, 'Images per forward pass (camera: always 1).')
_FLIP = flags.DEFINE_bool('flip', True, 'Flip test (the authors\' default).')
_MIN_SCORE = flags.DEFINE_float('min_score', 0.15, 'People scoring lower are not drawn, tracked or written '
                                '(the decoder fills all its 30 slots; weak ones are duplicates or noise).')
_JSON_ALL = flags.DEFINE_bool('json_all_people', False, 'Write every decoded person to predictions.json, '
                              'whatever its score (COCO AP counts low-score people too).')
_DRAW = flags.DEFINE_string('draw', 'skeleton', 'Views to draw, any of skeleton,heatmaps,tags.')
_TRACK = flags.DEFINE_bool('track', None, 'Person ids across frames (default: on for videos and cameras, '
                           'off for images; --track on a folder treats its sorted images as frames).')
_SHOW = flags.DEFINE_bool('show', None, 'Camera: show the stream in a window (default: when a display '
                          'and an OpenCV with GUI support exist).')
flags.mark_flags_as_required(['input'])
flags.mark_flags_as_mutual_exclusive(['ckpt', 'model'], required=True)

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
VIDEO_EXTS = ('.mp4', '.avi', '.mov', '.mkv', '.webm')
CAMERA = 'camera:'
_WINDOW = 'litepose (q: quit)'


def _image_id(path: pathlib.Path, index: int) -> int:
  return int(path.stem) if path.stem.isdigit() else index


def _results(image_id, kp, scores, hw, extra, track_ids=None):
  """COCO results of one image, coordinates clipped into the image."""
  out = []
  for i, (person, score) in enumerate(zip(kp, scores)):
    person = person.copy()
    person[:, 0] = np.clip(person[:, 0], 0, hw[1] - 1)
    person[:, 1] = np.clip(person[:, 1], 0, hw[0] - 1)
    ids = {} if track_ids is None or track_ids[i] < 0 else {'track_id': int(track_ids[i])}
    out.append(dict(image_id=image_id, category_id=1, keypoints=[round(float(v), 3) for v in person.ravel()],
                    score=round(float(score), 5), **extra, **ids))
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


def _predictor(batch_size: int):
  """inference.Predictor for --ckpt, or export.predictor.TFLitePredictor for --model (same interface)."""
  if _MODEL.value:
    from litepose_jax.export import predictor  # pylint: disable=g-import-not-at-top
    return predictor.TFLitePredictor(_MODEL.value, flip=_FLIP.value)
  config = common.get_config(_ARCH.value, _KEYPOINTS.value)
  config.eval.batch_size = batch_size
  config.eval.flip_test = _FLIP.value
  model, variables, keypoint_set, input_size = from_config.load_model(config, _CKPT.value)
  return from_config.predictor(config, model, variables, keypoint_set, input_size)


class Annotator:
  """One image's or frame's people → its drawing and its JSON results (score filter, track ids, views).

  Args:
    keypoint_set: skeleton and joint names.
    views: visualize.VIEWS subset; 'heatmaps' / 'tags' make the drawing a visualize.views_panel.
    min_score: people below it are not drawn, tracked or written (unless json_all).
    tracker: an inference.track.Tracker, or None (no ids).
  """

  def __init__(self, keypoint_set, views, min_score: float, json_all: bool, tracker=None):
    self.keypoint_set, self.views, self.min_score = keypoint_set, views, float(min_score)
    self.json_all, self.tracker = json_all, tracker
    self.with_maps = any(v != 'skeleton' for v in views)

  def __call__(self, image, pred, image_id, extra):
    """(drawing RGB uint8, COCO results) of one image and its inference.Prediction."""
    keep = pred.scores >= self.min_score
    kp, scores = pred.keypoints[keep], pred.scores[keep]
    ids = self.tracker.update(kp, scores) if self.tracker is not None else None
    colors = labels = None
    if ids is not None:
      colors = visualize.track_colors(ids)
      labels = [f'id {i} {s:.2f}' for i, s in zip(ids, scores)]
    ks = self.keypoint_set
    if self.with_maps:
      drawing = visualize.views_panel(
          image, self.views, pred.maps, kp, ks.skeleton, ks.joint_names, scores, colors, labels,
          skeleton_title=f'{len(kp)} people (score >= {self.min_score:g})' + (', id' if ids is not None else ''))
    else:
      drawing = visualize.draw_people(image, kp, ks.skeleton, scores, colors=colors, labels=labels)
    if self.json_all:   # everyone, in the decoder's order; people under min_score have no track id
      kp, scores = pred.keypoints, pred.scores
      if ids is not None:
        full = np.full(len(scores), -1, np.int64)
        full[keep] = ids
        ids = full
    return drawing, _results(image_id, kp, scores, image.shape[:2], extra, ids)


def _draw_fps(frame: np.ndarray, fps: float) -> None:
  """Frames per second in the top-left corner, white on a black box (legible on any image)."""
  text = f'{fps:.1f} fps'
  scale = max(0.5, frame.shape[1] / 1280.0)
  (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
  cv2.rectangle(frame, (0, 0), (tw + 10, th + base + 10), (0, 0, 0), -1)
  cv2.putText(frame, text, (5, th + 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


class _VideoOut:
  """An .mp4 writer opened on the first frame (its size fixes the video's)."""

  def __init__(self, path: pathlib.Path, fps: float):
    self.path, self.fps, self.writer, self.frames = path, fps, None, 0

  def write(self, rgb: np.ndarray) -> None:
    if self.writer is None:
      self.path.parent.mkdir(parents=True, exist_ok=True)
      self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*'mp4v'), self.fps,
                                    (rgb.shape[1], rgb.shape[0]))
      if not self.writer.isOpened():
        raise OSError(f'{self.path}: cannot write a video here')
    self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    self.frames += 1

  def close(self) -> None:
    if self.writer is not None:
      self.writer.release()


def _stopped_early(cap, name: str, frames: int, live: bool):
  """Why a source that stopped delivering frames failed, or None when it simply ended.

  A camera never ends by itself; a file or URL with a known frame count must deliver (almost) all of them
  (counts from container headers can be estimates, so 2 frames or 2% may be missing); a URL without a
  count is a live stream.
  """
  total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
  if frames == 0:
    return f'{name}: opened, but delivered no frame'
  if total > 0 and frames < total - max(2, int(0.02 * total)):
    return f'{name}: the stream stopped after {frames} of {total} frames (truncated or damaged?)'
  if live or (total <= 0 and '://' in name):
    return f'{name}: the stream stopped after {frames} frames'
  return None


def _can_show() -> bool:
  """A window can be opened: a display (on Linux) and an OpenCV built with a GUI backend."""
  if sys.platform.startswith('linux') and not (os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')):
    return False
  gui = [line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith('GUI:')]
  return not gui or 'NONE' not in gui[0]


def _run_stream(spec: str, predictor, annotator: Annotator, out, show: bool, results: list) -> int:
  """camera:N or camera:<file|URL>, frame by frame: draw, show and/or write. Returns the exit code."""
  source = spec[len(CAMERA):]
  live = source.isdigit()
  cap = cv2.VideoCapture(int(source) if live else source)
  if not cap.isOpened():
    what = f'camera {source} (is it connected and free?)' if live else 'cannot open the file or URL'
    return runtime.fail(OSError(f'{spec}: {what}'))
  video = None
  if out is not None:
    target = out if out.suffix.lower() == '.mp4' else out / 'camera_pose.mp4'
    video = _VideoOut(target, cap.get(cv2.CAP_PROP_FPS) or 25.0)
  stamps, frames, code, stopped = [], 0, 0, None
  try:
    while True:
      ok, frame = cap.read()
      if not ok:
        stopped = _stopped_early(cap, spec, frames, live)
        break
      rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
      pred = predictor.predict([rgb], with_maps=annotator.with_maps)[0]
      drawing, people = annotator(rgb, pred, frames, {'frame': frames})
      results += people
      # Frames per second over the last 30 frames, everything included (read, network, drawing, writing)
      # but compilation: the window restarts after a frame that compiled.
      stamps = [] if predictor.batch_times[-1][2] else stamps
      stamps = (stamps + [time.perf_counter()])[-31:]
      fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
      _draw_fps(drawing, fps)
      if video is not None:
        video.write(drawing)
      frames += 1
      if show:
        cv2.imshow(_WINDOW, cv2.cvtColor(drawing, cv2.COLOR_RGB2BGR))
        if cv2.waitKey(1) & 0xFF in (ord('q'), 27):   # q or Esc: a normal end
          break
  except KeyboardInterrupt:   # Ctrl-C: a normal end, the recording is closed properly
    pass
  finally:
    cap.release()
    if video is not None:
      video.close()
    if show:
      cv2.destroyAllWindows()
  if stopped:
    kept = f' (the {frames} frames before are written to {video.path})' if video is not None and frames else ''
    code = runtime.fail(OSError(stopped + kept))
  return code


def _run_video(src: pathlib.Path, predictor, annotator: Annotator, out: pathlib.Path, results: list) -> int:
  """A video file in batches of --batch_size frames → <stem>_pose.mp4. Returns the exit code."""
  cap = cv2.VideoCapture(str(src))
  if not cap.isOpened():
    return runtime.fail(OSError(f'{src}: cannot open the video'))
  video = _VideoOut(out / f'{src.stem}_pose.mp4', cap.get(cv2.CAP_PROP_FPS) or 25.0)
  frame_index, done, stopped = 0, False, None
  while not done:
    frames = []
    while len(frames) < _BATCH.value:
      ok, frame = cap.read()
      if not ok:
        done = True
        stopped = _stopped_early(cap, str(src), frame_index + len(frames), live=False)
        break
      frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    if not frames:
      break
    for frame, p in zip(frames, predictor.predict(frames, with_maps=annotator.with_maps)):
      drawing, people = annotator(frame, p, frame_index, {'frame': frame_index})
      video.write(drawing)
      results += people
      frame_index += 1
  cap.release()
  video.close()
  if stopped:
    return runtime.fail(OSError(f'{stopped} (the {frame_index} frames before are written to {out})'))
  return 0


def _run_images(paths, predictor, annotator: Annotator, out: pathlib.Path, results: list) -> int:
  """Images (a file or a folder's sorted files) → <stem>_pose.jpg or <stem>_views.png. Unreadable files
  (missing, truncated, not an image) are skipped with a warning naming each, and a summary line; with a
  single image, or none readable, the run stops with exit code 1. Returns the exit code."""
  chunk, skipped, done = 4 * _BATCH.value, [], 0
  for start in range(0, len(paths), chunk):
    names, images = [], []
    for index, path in enumerate(paths[start:start + chunk], start):
      try:
        images.append(inference.read_rgb(path))
        names.append((index, path))
      except OSError as e:
        if len(paths) == 1:
          return runtime.fail(e)
        print(f'warning: {runtime.one_line(e)} (skipped)', file=sys.stderr)
        skipped.append(path.name)
    if not images:
      continue
    out.mkdir(parents=True, exist_ok=True)
    for (index, path), image, p in zip(names, images, predictor.predict(images, with_maps=annotator.with_maps)):
      drawing, people = annotator(image, p, _image_id(path, index), {'file_name': path.name})
      name = f'{path.stem}_views.png' if annotator.with_maps else f'{path.stem}_pose.jpg'
      visualize.write_rgb(str(out / name), drawing)
      results += people
      done += 1
  if skipped:
    listed = ', '.join(skipped[:5]) + (', ...' if len(skipped) > 5 else '')
    print(f'skipped {len(skipped)} of {len(paths)} images that could not be read: {listed}')
  if not done:
    return runtime.fail(OSError(f'none of the {len(paths)} images could be read'))
  return 0


def main(argv):
  del argv
  runtime.setup(host_tuning=True)   # before JAX's first computation
  try:
    views = visualize.parse_views(_DRAW.value)
  except ValueError as e:
    return runtime.fail(e, where='--draw', code=2)
  if not views:
    return runtime.fail(ValueError('--draw: choose at least one of ' + ','.join(visualize.VIEWS)), code=2)
  spec = _INPUT.value
  camera = spec.startswith(CAMERA)
  out = pathlib.Path(_OUTPUT.value) if _OUTPUT.value else None
  src = pathlib.Path(spec)
  show = False
  if camera:
    show = _can_show() if _SHOW.value is None else _SHOW.value
    if _SHOW.value and not _can_show():
      return runtime.fail(OSError('--show: no display, or OpenCV without GUI support '
                                  '(opencv-python-headless); record with --output=FILE.mp4 instead'))
    if out is None and not show:
      return runtime.fail(ValueError(f'{spec}: no window can be shown here; give --output=FOLDER or FILE.mp4'))
  else:
    if out is None:
      return runtime.fail(ValueError('--output: give the output folder'), code=2)
    if not src.exists():
      return runtime.fail(FileNotFoundError(f'{src} does not exist'))
  video = camera or (src.is_file() and src.suffix.lower() in VIDEO_EXTS)
  if not video:
    paths = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTS) if src.is_dir() else [src]
    if not paths:
      return runtime.fail(FileNotFoundError(f'no images ({", ".join(IMAGE_EXTS)}) in {src}'))
  try:
    predictor = _predictor(1 if camera else _BATCH.value)
  except (FileNotFoundError, ValueError, OSError, RuntimeError) as e:
    return runtime.fail(e)
  keypoint_set = predictor.keypoint_set
  track = video if _TRACK.value is None else _TRACK.value
  tracker = None
  if track:
    from litepose_jax.inference import track as track_lib  # pylint: disable=g-import-not-at-top
    tracker = track_lib.Tracker(keypoint_set.sigmas)
  annotator = Annotator(keypoint_set, views, _MIN_SCORE.value, _JSON_ALL.value, tracker)
  results = []
  try:
    if camera:
      code = _run_stream(spec, predictor, annotator, out, show, results)
    elif video:
      code = _run_video(src, predictor, annotator, out, results)
    else:
      code = _run_images(paths, predictor, annotator, out, results)
  except ValueError as e:   # e.g. map views with a decoder-in-file TFLite model
    return runtime.fail(e)
  n = sum(b[0] for b in predictor.batch_times)
  if n == 0:
    return code
  json_dir = out if out is not None and out.suffix.lower() != '.mp4' else None
  if json_dir is None and out is not None:
    json_dir = out.parent
  if json_dir is not None:
    json_path = json_dir / ('predictions.json' if out.suffix.lower() != '.mp4' else f'{out.stem}.json')
    json_dir.mkdir(parents=True, exist_ok=True)
    with open(json_path, 'w') as f:
      json.dump(results, f)
    where = f'written to {os.path.abspath(out)}'
  else:
    where = 'shown only (nothing written)'
  ids = f', {len({r["track_id"] for r in results if "track_id" in r})} track ids' if tracker else ''
  print(f'{n} images, {len(results)} people{ids}; {_speed(predictor.batch_times)}; {where}')
  return code


if __name__ == '__main__':
  app.run(main, flags_parser=runtime.parse_flags)
