"""AP of exported files (TFLite fp32 / fp16 / int8, ONNX; network only) beside the JAX model, on a labelled split.

  python bench/export_ap.py --ckpt=workdirs/demo                       # the demo model, synthetic val
  python bench/export_ap.py --ckpt=CKPT --gt=GT.json --images=DIR [--quantize none,fp16,int8]

Each file is written by the export CLI at the architecture's square input size and run through
export.predictor.TFLitePredictor (same resize, flip test, aggregation, jitted decoder and back-projection
as the JAX inference.Predictor; LiteRT resizes the static file to each padded test shape). int8 is
calibrated on --calibration images (default: the split's own images). The AP of every path comes from
litepose_jax.evaluation on the same ground truth; the AP table and ms per image (whole test path,
compilation excluded) are printed.
"""

import json
import os
import pathlib
import statistics
import sys
import tempfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/export_ap.py` from a checkout
  sys.path.insert(0, str(REPO))

_CKPT = flags.DEFINE_string('ckpt', 'workdirs/demo', 'Checkpoint (training workdir or checkpoint dir).')
_GT = flags.DEFINE_string('gt', None, 'COCO-format ground truth (default: the demo\'s synthetic val).')
_IMAGES = flags.DEFINE_string('images', None, 'Image folder of --gt.')
_QUANT = flags.DEFINE_list('quantize', ['none', 'fp16', 'int8'], 'Quantisation modes to export.')
_CALIB = flags.DEFINE_string('calibration', None, 'int8 calibration images (default: --images).')
_MAX = flags.DEFINE_integer('max_images', 0, 'Evaluate the first N images (0: all).')
_WINDOW = flags.DEFINE_bool('window', True, 'Also the fp32 file exported with --deconv=window.')
_ONNX = flags.DEFINE_bool('onnx', True, 'Also our ONNX file under ONNX Runtime (one file per test shape).')


def _split():
  if _GT.value:
    return _GT.value, _IMAGES.value
  from configs import demo  # pylint: disable=g-import-not-at-top
  from litepose_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  return synthetic.ensure(demo.get_config(), 'val')


def _ap(predictor, images, ids, gt, keypoint_set):
  """(metrics, median ms per image of the steady runs) of a predictor over the images; gt: the json dict
  restricted to those images."""
  from litepose_jax import evaluation  # pylint: disable=g-import-not-at-top
  results = []
  for image_id, pred in zip(ids, predictor.predict(images)):
    for kp, s in zip(pred.keypoints, pred.scores):
      results.append({'image_id': int(image_id), 'category_id': 1,
                      'keypoints': [float(v) for v in kp.reshape(-1)], 'score': float(s)})
  metrics = evaluation.evaluate(gt, results, keypoint_set)
  steady = [1000 * t / n for n, t, first in predictor.batch_times if not first]
  return metrics, (statistics.median(steady) if steady else float('nan'))


class _OnnxNetwork:
  """Our ONNX file (litepose_jax.export.onnx) under ONNX Runtime with runner.TFLiteModel's interface for
  TFLitePredictor: the file fixes H and W, so one file is written per input shape the test path needs."""

  def __init__(self, model, variables, keypoint_set, size: int, folder: str):
    self.metadata = {'keypoints': keypoint_set, 'input_size': size, 'variant': 'network'}
    self.exported_shape = (1, size, size, 3)
    self.shapes = [self.exported_shape]
    self._model, self._variables, self._folder, self._sessions = model, variables, folder, {}

  def network(self, images):
    import onnxruntime as ort  # pylint: disable=g-import-not-at-top
    from litepose_jax.export import onnx as onnx_export  # pylint: disable=g-import-not-at-top
    hw = tuple(images.shape[1:3])
    if hw not in self._sessions:
      path = os.path.join(self._folder, f'net_{hw[0]}x{hw[1]}.onnx')
      onnx_export.write_network(self._model, self._variables, (1,) + hw + (3,), path)
      options = ort.SessionOptions()
      options.intra_op_num_threads = 2
      self._sessions[hw] = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    out = self._sessions[hw].run(['out_quarter', 'out_half'], {onnx_export.INPUT_NAME: images})
    return out[0], out[1]


def main(argv):
  del argv
  from configs import common  # pylint: disable=g-import-not-at-top
  from litepose_jax import from_config, inference  # pylint: disable=g-import-not-at-top
  from litepose_jax.export import __main__ as export_cli  # pylint: disable=g-import-not-at-top
  from litepose_jax.export import predictor as tfl_predictor  # pylint: disable=g-import-not-at-top

  ann_file, image_dir = _split()
  data = json.loads(pathlib.Path(ann_file).read_text())
  ims = sorted(data['images'], key=lambda im: im['id'])[:_MAX.value or None]
  images = [inference.read_rgb(os.path.join(image_dir, im['file_name'])) for im in ims]
  ids = [im['id'] for im in ims]
  wanted = set(ids)
  gt = dict(data, images=ims, annotations=[a for a in data['annotations'] if a['image_id'] in wanted])
  # An orbax checkpoint carries its architecture and keypoint set; the config gives the test-path settings.
  config = common.get_config()
  config.eval.batch_size = 1  # TFLitePredictor runs image by image: compare like with like
  model, variables, ks, size = from_config.load_model(config, _CKPT.value)
  rows = [('JAX float32', *_ap(from_config.predictor(config, model, variables, ks, size), images, ids,
                                gt, ks))]
  calib = _CALIB.value or image_dir
  with tempfile.TemporaryDirectory() as tmp:
    for mode in _QUANT.value:
      out = os.path.join(tmp, f'{mode}.tflite')
      flags_ = [f'--ckpt={_CKPT.value}', f'--out={out}', f'--quantize={mode}', '--noverify']
      if mode == 'int8':
        flags_.append(f'--calibration={calib}')
      if export_cli.main(flags_) != 0:
        raise SystemExit(f'export of {mode} failed')
      size_mb = os.path.getsize(out) / 2**20
      rows.append((f'TFLite {mode} ({size_mb:.1f} MB)',
                   *_ap(tfl_predictor.TFLitePredictor(out), images, ids, gt, ks)))
    if _WINDOW.value:   # the fp32 file with the window-form head (one signature per test-path shape)
      out = os.path.join(tmp, 'window.tflite')
      if export_cli.main([f'--ckpt={_CKPT.value}', f'--out={out}', '--deconv=window', '--noverify']) != 0:
        raise SystemExit('export with --deconv=window failed')
      rows.append((f'TFLite none, --deconv=window ({os.path.getsize(out) / 2**20:.1f} MB)',
                   *_ap(tfl_predictor.TFLitePredictor(out), images, ids, gt, ks)))
    if _ONNX.value:
      net = _OnnxNetwork(model, variables, ks, size, tmp)
      rows.append(('ONNX (ONNX Runtime)', *_ap(tfl_predictor.TFLitePredictor(net), images, ids, gt, ks)))
  names = [n for n in ('AP', 'AP50', 'AP75', 'AR') if n in rows[0][1]]
  print(f'\n{len(ids)} images of {ann_file}, flip test, checkpoint {_CKPT.value}')
  print('| model | ' + ' | '.join(names) + ' | ms / image |')
  print('|---|' + '---|' * (len(names) + 1))
  for name, metrics, ms in rows:
    print(f'| {name} | ' + ' | '.join(f'{metrics[n]:.4f}' for n in names) + f' | {ms:.1f} |')


if __name__ == '__main__':
  app.run(main)
