"""Export a checkpoint for phones.

  python -m litepose_jax.export --ckpt=CKPT --format=tflite [--with-decoder] [--quantize=none|fp16|int8] \
      [--input-shape=HxW] [--batch=1] [--calibration=DIR_OR_GLOB] [--kernels=xnnpack|builtin] --out=FILE

Writes FILE, then prints its operator set and checks it: the file is run once with LiteRT (ONNX Runtime
for --format=onnx) on a random input and compared with the JAX model (max |diff| printed; skip with
--no-verify). --format=onnx writes the network alone (variant A), see litepose_jax/export/onnx.py.
The input size defaults to the architecture's (XS 256², S/M 448², L 512²); --input-shape fixes another
(e.g. 256x384, the test-path shape of a 4:3 landscape image at XS). int8 needs --calibration images.
--kernels picks the graph layout for the LiteRT CPU path that will run the file: 'xnnpack' (default;
LiteRT's default delegate: 7x7 depthwise convs cut into pieces of <= 25 taps, 1x1 convs as CONV_2D) or
'builtin' (LiteRT's own kernels, one DEPTHWISE_CONV_2D per layer). See docs/export.md for timings.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from litepose_jax import checkpoint, models  # pylint: disable=g-import-not-at-top,wrong-import-position
from litepose_jax.export import calibration, graphs, onnx, runner, tflite  # pylint: disable=g-import-not-at-top,wrong-import-position


def _parse_shape(text: str) -> tuple[int, int]:
  try:
    h, w = (int(v) for v in text.lower().split('x'))
  except ValueError:
    raise argparse.ArgumentTypeError(f'--input-shape must look like 256x384, got {text!r}') from None
  return h, w


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='python -m litepose_jax.export', description=__doc__.split('\n')[0])
  p.add_argument('--ckpt', required=True, help='checkpoint directory, step directory or training workdir')
  p.add_argument('--format', choices=('tflite', 'onnx'), default='tflite')
  p.add_argument('--with-decoder', action='store_true',
                 help='variant B: network + jitted decoder, fixed-shape people out')
  p.add_argument('--quantize', choices=tflite.QUANTIZE_MODES, default='none')
  p.add_argument('--input-shape', type=_parse_shape, default=None, help='HxW (default: the architecture size)')
  p.add_argument('--batch', type=int, default=1)
  p.add_argument('--calibration', default=None, help='int8: directory or glob of calibration images')
  p.add_argument('--calibration-images', type=int, default=64, help='int8: how many calibration images')
  p.add_argument('--kernels', choices=tuple(graphs.KERNEL_LAYOUTS), default='xnnpack',
                 help='tflite: lay the graph out for the XNNPACK delegate (default) or the builtin kernels')
  p.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  p.add_argument('--out', required=True, help='output file (.tflite / .onnx)')
  p.add_argument('--no-verify', dest='verify', action='store_false', help='skip the check of the file against the JAX model')
  return p


def onnx_outputs(path: pathlib.Path):
  """images → {output name: array} with ONNX Runtime on the CPU (the verify step's runner)."""
  import onnxruntime as ort  # pylint: disable=g-import-not-at-top
  session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
  names = [o.name for o in session.get_outputs()]
  return lambda x: dict(zip(names, session.run(None, {onnx.INPUT_NAME: x})))


def _verify(loaded, make_fn, shape, run_file, runtime: str) -> None:
  """Runs the written file once on a random input and prints max |diff| against the JAX model."""
  x = np.random.RandomState(0).standard_normal(shape).astype(np.float32)
  got = run_file(x)
  # The JAX side runs with the default depthwise implementation: XLA:CPU's native depthwise conv (the
  # one exported to TFLite) is 20-100x slower on CPU, and the same math in another form is a better check.
  reference = dataclasses.replace(loaded, model=models.create(loaded.meta['arch'], loaded.meta['num_keypoints']))
  want = {k: np.asarray(v) for k, v in jax.jit(make_fn(reference))(x).items()}
  diffs = {k: float(np.abs(got[k].astype(np.float32) - want[k].astype(np.float32)).max()) for k in want}
  print(f'{runtime} vs JAX on a random input, max |diff|: ' + ', '.join(f'{k} {v:.3g}' for k, v in diffs.items()))


def export(args: argparse.Namespace) -> pathlib.Path:
  """Runs the export described by parsed CLI arguments and returns the written path."""
  impl = graphs.KERNEL_LAYOUTS[args.kernels]
  if args.format == 'onnx':
    if args.quantize != 'none':
      raise ValueError('--quantize applies to --format=tflite only')
    if args.with_decoder:
      raise ValueError('--format=onnx writes the network alone (variant A); decode on the host '
                       '(or export --format=tflite --with-decoder)')
    impl = 'xla'  # the ONNX graph is written from the variables; the form only matters for the check
  loaded = checkpoint.load_model(args.ckpt, step=args.step, depthwise_impl=impl)
  hw = args.input_shape or (None, None)
  shape = graphs.input_shape(loaded, hw[0], hw[1], args.batch)
  make_fn = graphs.network_decoder_fn if args.with_decoder else graphs.network_fn
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  if args.format == 'onnx':
    info = graphs.file_info(loaded, shape, False, 'none')
    info['kernels'] = 'onnx'
    onnx.export_onnx(loaded, shape, out, metadata=info)
    print(f'wrote {out} ({out.stat().st_size / 1e6:.1f} MB), input images {shape} float32 (batch symbolic)')
    if args.verify:
      _verify(loaded, make_fn, shape, onnx_outputs(out), 'ONNX Runtime')
    return out

  fn = make_fn(loaded)
  rep = None
  if args.quantize == 'int8':
    if not args.calibration:
      raise ValueError('--quantize=int8 needs --calibration=DIR_OR_GLOB of images '
                       '(e.g. tests/data/coco_mini/val2017)')
    files = calibration.find_images(args.calibration, limit=args.calibration_images)
    rep = [np.repeat(x, shape[0], 0) for x in calibration.representative_inputs(files, shape[1], shape[2])]
  data = tflite.to_tflite(fn, shape, args.quantize, rep, extra_builtin_fallback=args.with_decoder)
  data = tflite.add_metadata(data, graphs.file_info(loaded, shape, args.with_decoder, args.quantize))
  out.write_bytes(data)
  counts = tflite.op_counts(data)
  print(f'wrote {out} ({len(data) / 1e6:.1f} MB), input images {shape} float32, quantize={args.quantize}')
  print('ops: ' + ', '.join(f'{k} x{v}' for k, v in sorted(counts.items())))
  if args.verify:
    _verify(loaded, make_fn, shape, runner.TFLiteModel(out), 'LiteRT')
  return out


def main(argv=None) -> int:
  args = _parser().parse_args(argv)
  try:
    export(args)
  except (ValueError, FileNotFoundError, tflite.ExportError, ImportError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
