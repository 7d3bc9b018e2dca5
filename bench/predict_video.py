"""predict.py's video loop with and without tracking: frames per second end to end, and the tracker alone.

  python bench/predict_video.py --ckpt=workdirs/demo/checkpoints       # `make demo` writes it
  python bench/predict_video.py --ckpt=... --repeats 7 --frames 64 --batch_size 4

The clip: synthetic validation images (the demo's set, generated under data/synthetic/ if missing), each
sliding 2 px a frame for 16 frames, all brought to 384x288, so people move smoothly and the tracker keeps
them. Per repeat, each mode runs the loop of predict.py on every frame (Predictor.predict in batches of
--batch_size, then predict.Annotator: score filter, tracker, drawing; the mp4 encoding is left out, it is
the same in both modes). Modes alternate within a repeat so that the shared machine's load hits both;
compilation happens in a warm-up pass before timing. Printed: median frames/s per mode (10th-90th
percentile), their ratio, and the tracker's own ms per frame (Tracker.update only).
"""

import argparse
import os
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
from litepose_jax import runtime  # noqa: E402
runtime.tune_host()  # as predict.py: before JAX's first computation
import cv2  # noqa: E402
from configs import demo  # noqa: E402
from litepose_jax import checkpoint  # noqa: E402
from litepose_jax import inference  # noqa: E402
from litepose_jax.data import synthetic  # noqa: E402
from litepose_jax.inference import track  # noqa: E402
import predict  # noqa: E402


def clip(num_frames: int) -> list:
  """RGB frames [288,384,3] uint8: synthetic validation images sliding right by 2 px a frame."""
  _, image_dir = synthetic.ensure(demo.get_config(), 'val')
  names = sorted(pathlib.Path(image_dir).glob('*.jpg'))
  frames = []
  for i in range(num_frames):
    image = cv2.resize(inference.read_rgb(names[i // 16]), (384, 288))
    frames.append(np.roll(image, 2 * (i % 16), axis=1))
  return frames


def run(predictor, frames, keypoint_set, tracking: bool, min_score: float, batch: int):
  """One pass of predict.py's video loop. Returns (seconds, seconds in Tracker.update, people drawn)."""
  tracker = track.Tracker(keypoint_set.sigmas) if tracking else None
  tracked = [0.0]
  if tracker is not None:
    update = tracker.update

    def timed_update(*args):
      start = time.perf_counter()
      ids = update(*args)
      tracked[0] += time.perf_counter() - start
      return ids
    tracker.update = timed_update
  annotator = predict.Annotator(keypoint_set, ('skeleton',), min_score, False, tracker)
  people = 0
  start = time.perf_counter()
  for i in range(0, len(frames), batch):
    chunk = frames[i:i + batch]
    for j, (frame, p) in enumerate(zip(chunk, predictor.predict(chunk))):
      _, results = annotator(frame, p, i + j, {'frame': i + j})
      people += len(results)
  return time.perf_counter() - start, tracked[0], people


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--ckpt', default='workdirs/demo/checkpoints')
  parser.add_argument('--frames', type=int, default=64)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--batch_size', type=int, default=4)
  parser.add_argument('--min_score', type=float, default=0.15)
  args = parser.parse_args()
  loaded = checkpoint.load_model(args.ckpt)
  predictor = inference.Predictor(loaded.model, loaded.variables, loaded.keypoint_set,
                                  loaded.model.arch.img_size, batch_size=args.batch_size)
  frames = clip(args.frames)
  print(f'{args.frames} frames 384x288, {loaded.model.arch.img_size}-px model, batch {args.batch_size}; '
        f'load average {os.getloadavg()[0]:.2f}')
  run(predictor, frames, loaded.keypoint_set, True, args.min_score, args.batch_size)   # warm-up: compiles
  fps = {False: [], True: []}
  tracker_ms, people = [], {}
  for r in range(args.repeats):
    for tracking in ((False, True) if r % 2 == 0 else (True, False)):
      seconds, tracked, people[tracking] = run(predictor, frames, loaded.keypoint_set, tracking,
                                               args.min_score, args.batch_size)
      fps[tracking].append(len(frames) / seconds)
      if tracking:
        tracker_ms.append(1000 * tracked / len(frames))
  for tracking in (False, True):
    v = np.array(fps[tracking])
    print(f'tracking {"on " if tracking else "off"}: {np.median(v):.1f} frames/s (p10-p90 '
          f'{np.percentile(v, 10):.1f}-{np.percentile(v, 90):.1f}), {people[tracking]} people drawn')
  print(f'on/off ratio {np.median(fps[True]) / np.median(fps[False]):.3f}; Tracker.update '
        f'{np.median(tracker_ms):.2f} ms per frame (median); load average {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
  main()
