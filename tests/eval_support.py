"""A perfect network for the evaluation tests, and a runner for the multi-process evaluation test.

`PerfectNetwork` is the test path with a perfect network: for each image, Gaussian heatmap peaks at its GT
joints (the annotation json, mapped to network-input pixels with the spec e.10 formula) and one tag value per
person, then the real decoder and back-projection. shift = (image id, person, dx) moves one person's joints
dx input pixels to the right (the negative control: AP below 1).

  python -m tests.eval_support --data_dir=tests/data [--shift]     # under litepose_jax.launch: N processes
runs eval_lib.run on the CrowdPose sample split, each process decoding its slice of every global batch, and
prints one line `RESULT {"process", "metrics", "results", "worst"}`.
"""

import json

import jax
import numpy as np

from configs import common
from litepose_jax import decode
from litepose_jax import inference
from litepose_jax import keypoints as kp_lib

KS = kp_lib.get('crowdpose')
SHIFTED = (106848, 0, 12.0)   # one person of 106848 drawn 12 input px (20 image px) to the right


def sample_config(data_dir, batch_size: int = 1):
  config = common.get_config('xs', 'crowdpose')
  config.dataset.name = 'coco_json'
  config.dataset.ann_file = str(data_dir / 'crowdpose_sample' / 'test_crowdpose.json')
  config.dataset.image_dir = str(data_dir / 'crowdpose_sample')
  config.eval.batch_size = batch_size
  config.input.tf_threads = 1
  return config


class PerfectNetwork:
  """See the module docstring; `predict_batch` is the Predictor interface eval_lib.run uses."""

  def __init__(self, ann_file, shift=(None, None, 0.0)):
    data = json.loads(open(ann_file).read())
    self.people = {im['id']: [] for im in data['images']}
    for a in data['annotations']:
      if not a.get('iscrowd') and a['num_keypoints'] > 0:
        self.people[a['image_id']].append(np.reshape(a['keypoints'], (-1, 3)).astype(np.float64))
    self.shift = shift
    cfg = decode.DecodeConfig.create(KS)
    self._parse = jax.jit(lambda heat, tags: decode.parse_maps(heat, tags, cfg))

  def maps(self, image_id, center, scale, hw):
    h, w = hw
    heat = np.zeros((KS.num_keypoints, h, w), np.float32)
    tags = np.zeros((KS.num_keypoints, 1, h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    f = w / (scale[0] * 200.0)
    for p, kp in enumerate(self.people.get(image_id, [])):
      for k in np.flatnonzero(kp[:, 2] > 0):
        x = (kp[k, 0] - center[0]) * f + w / 2.0 + (self.shift[2] if self.shift[:2] == (image_id, p) else 0)
        y = (kp[k, 1] - center[1]) * f + h / 2.0
        # The decoder reports a peak pixel i at i + 0.5 (± a quarter towards the higher neighbour).
        g = np.exp(-((xx - (x - 0.5))**2 + (yy - (y - 0.5))**2) / (2 * 1.5**2))
        tags[k, 0] = np.where(g > heat[k], 10.0 * (p + 1), tags[k, 0])
        heat[k] = np.maximum(heat[k], g)
    return heat, tags

  def predict_batch(self, batch, variables=None):
    del variables
    hw = batch['image'].shape[1:3]
    heat, tags = map(np.stack, zip(*[self.maps(int(i), c, s, hw) for i, c, s in
                                     zip(batch['image_id'], batch['center'], batch['scale'])]))
    kp, scores, valid = self._parse(heat, tags)
    kp = inference.to_image(kp, batch['center'], batch['scale'], hw)
    return np.asarray(kp), np.asarray(scores), np.asarray(valid)


def _main(argv):
  del argv
  import pathlib  # pylint: disable=g-import-not-at-top
  from litepose_jax import eval_lib, evaluation, runtime  # pylint: disable=g-import-not-at-top
  runtime.setup()   # joins the job when litepose_jax.launch set the coordinator
  data_dir = pathlib.Path(FLAGS.data_dir)
  config = sample_config(data_dir, batch_size=FLAGS.batch_size)
  pidx, pcount = jax.process_index(), jax.process_count()
  evaluator = evaluation.KeypointEvaluator(config.dataset.ann_file, KS)
  net = PerfectNetwork(config.dataset.ann_file, shift=SHIFTED if FLAGS.shift else (None, None, 0.0))
  local = []   # the images this process decoded (its slices of the global batches)

  def batches():
    for batch in eval_lib.eval_batches(config, 256, pidx, pcount):
      local.extend(int(i) for i, m in zip(batch['image_id'], batch['_mask']) if m)
      yield batch

  result = eval_lib.run(net, batches(), evaluator, num_worst=2, progress=False, process_index=pidx,
                        process_count=pcount)
  print('RESULT ' + json.dumps({
      'process': pidx, 'metrics': result.metrics, 'results': evaluator.results(),
      'images': result.timing['images'], 'local_images': local, 'worst': [int(w.image_id) for w in result.worst]},
      default=float), flush=True)


if __name__ == '__main__':
  from absl import app, flags  # pylint: disable=g-import-not-at-top,g-multiple-import
  flags.DEFINE_string('data_dir', 'tests/data', 'Folder holding crowdpose_sample/.')
  flags.DEFINE_integer('batch_size', 2, 'Global eval batch.')
  flags.DEFINE_bool('shift', False, 'Misplace one person (AP below 1).')
  FLAGS = flags.FLAGS
  app.run(_main)
