"""`make demo`: train the demo LitePose on the synthetic set on CPU, evaluate it, draw its predictions.

  python -m litepose_jax.demo [--workdir=workdirs/demo] [--config.num_train_steps=...]

1. The synthetic multi-person set (configs/demo.py: dataset 'synthetic') is generated once and cached
   under data/synthetic/ by the data pipeline.
2. configs/demo.py is trained with litepose_jax.train.loop (checkpoints in <workdir>/checkpoints: re-running resumes,
   and a finished run only re-evaluates).
3. The final checkpoint is evaluated on the synthetic validation split (AP table printed; results.json,
   metrics.json and the worst images under <workdir>/eval_<step>/).
4. Predicted skeletons of the first validation images are drawn beside the ground truth into
   <workdir>/predictions/.
"""

import os
import pathlib
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags

_REPO = pathlib.Path(__file__).resolve().parents[1]
config_flags.DEFINE_config_file('config', str(_REPO / 'configs' / 'demo.py'), 'Demo config.',
                                lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', 'workdirs/demo', 'Checkpoints, metrics and drawings go here.')
_NUM_DRAWN = flags.DEFINE_integer('num_drawn', 8, 'Validation images drawn with their predictions.')


def draw_predictions(config, ckpt_dir: str, out_dir: pathlib.Path, num: int) -> list:
  """Draws the model's people beside the ground truth on the first `num` validation images.

  Returns:
    The written PNG paths.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from litepose_jax import from_config, inference, visualize  # pylint: disable=g-import-not-at-top
  from litepose_jax.data import coco_format, synthetic  # pylint: disable=g-import-not-at-top
  ann_file, image_dir = synthetic.ensure(config, 'val')
  data = coco_format.read_json(ann_file)
  model, variables, keypoint_set, input_size = from_config.load_model(config, ckpt_dir)
  predictor = from_config.predictor(config, model, variables, keypoint_set, input_size)
  images = sorted(data['images'], key=lambda im: im['id'])[:num]
  pixels = [inference.read_rgb(os.path.join(image_dir, im['file_name'])) for im in images]
  out_dir.mkdir(parents=True, exist_ok=True)
  written = []
  for im, image, pred in zip(images, pixels, predictor.predict(pixels)):
    gt = np.array([np.reshape(a['keypoints'], (-1, 3)) for a in data['annotations']
                   if a['image_id'] == im['id'] and a.get('num_keypoints', 0) > 0]).reshape(-1, keypoint_set.num_keypoints, 3)
    keep = pred.scores >= 0.1  # the decoder always returns its 30 slots; weak ones are not people
    left = visualize.draw_people(image, pred.keypoints[keep], keypoint_set.skeleton, pred.scores[keep])
    right = visualize.draw_ground_truth(image, gt, keypoint_set.skeleton)
    path = out_dir / f'{im["id"]:04d}.png'
    visualize.write_rgb(str(path), visualize.side_by_side(left, right))
    written.append(str(path))
  return written


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from litepose_jax import runtime  # pylint: disable=g-import-not-at-top
  runtime.setup(log_info=True)   # a second `make demo` (or one after an interruption) reuses the programs
  from litepose_jax import evaluation  # pylint: disable=g-import-not-at-top
  from litepose_jax.train import loop  # pylint: disable=g-import-not-at-top
  config = flags.FLAGS.config
  workdir = pathlib.Path(_WORKDIR.value).absolute()
  start = time.perf_counter()
  result = loop.train_and_evaluate(config, workdir)
  minutes = (time.perf_counter() - start) / 60
  metrics = result['eval']
  if not metrics:
    print('the run was stopped before its end: run `make demo` again to resume', file=sys.stderr)
    return 1
  drawn = draw_predictions(config, str(workdir / 'checkpoints'), workdir / 'predictions', _NUM_DRAWN.value)
  print()
  print(f'LitePose demo: {result["step"]} steps on the synthetic set, {minutes:.1f} min in this run '
        f'(earlier runs of the same workdir not counted)')
  print(evaluation.format_table({k: v for k, v in metrics.items() if k != 'images_per_second'}))
  print(f'evaluation: {workdir}/eval_{result["step"]}/ (results.json, metrics.json, worst_images/)')
  print(f'predicted skeletons (left) beside the ground truth (right): {len(drawn)} PNGs in '
        f'{workdir / "predictions"}')
  return 0


if __name__ == '__main__':
  app.run(lambda argv: sys.exit(main(argv)))
