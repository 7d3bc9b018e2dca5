"""Export a checkpoint for phones.

  python -m litepose_jax.export --ckpt=CKPT --format=tflite [--with_decoder] [--quantize=none|fp16|int8] \
      [--input_shape=HxW] [--batch=1] [--calibration=DIR_OR_GLOB] [--kernels=xnnpack|builtin] --out=FILE

Writes FILE, then prints its operator set and checks it: the file is run once with LiteRT (ONNX Runtime
for --format=onnx) on a random input and compared with the JAX model (max |diff| printed; skip with
--noverify). --format=onnx writes the network alone (variant A), see litepose_jax/export/onnx.py.
The input size defaults to the architecture's (XS 256², S/M 448², L 512²); --input_shape fixes another
(e.g. 256x384, the test-path shape of a 4:3 landscape image at XS). int8 needs --calibration images.
--kernels picks the graph layout for the LiteRT CPU path that will run the file: 'xnnpack' (default;
LiteRT's default delegate: 7x7 depthwise convs cut into pieces of <= 25 taps, 1x1 convs as CONV_2D) or
'builtin' (LiteRT's own kernels, one DEPTHWISE_CONV_2D per layer). --deconv=window writes the head's
transposed convs as 2x2 convs + depth-to-space (XS ~12% faster under XNNPACK) in a file with one
signature per input shape (it cannot be resized). See docs/export.md for timings.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
import types

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from litepose_jax import checkpoint, models, runtime  # pylint: disable=g-import-not-at-top,wrong-import-position
from litepose_jax.export import calibration, graphs, onnx, runner, tflite  # pylint: disable=g-import-not-at-top,wrong-import-position


def _parse_shape(text: str) -> list[tuple[int, int]]:
  """'256x384' or '256x256,256x384,384x256' → [(h, w), ...]."""
  try:
    shapes = [tuple(int(v) for v in part.lower().split('x')) for part in text.split(',') if part.strip()]
    if not shapes or any(len(hw) != 2 for hw in shapes):
      raise ValueError
  except ValueError:
    raise ValueError(f'--input_shape must look like 256x384 (or a list 256x256,256x384), got {text!r}') from None
  return shapes


def _flags() -> flags.FlagValues:
  """The entry point's flags, in a FlagValues of their own (runtime.parse_module_flags)."""
  fv = flags.FlagValues()
  flags.DEFINE_string('ckpt', None, 'checkpoint directory, step directory or training workdir', flag_values=fv)
  flags.DEFINE_enum('format', 'tflite', ['tflite', 'onnx'], 'file format', flag_values=fv)
  flags.DEFINE_bool('with_decoder', False, 'variant B: network + jitted decoder, fixed-shape people out',
                    flag_values=fv)
  flags.DEFINE_enum('quantize', 'none', list(tflite.QUANTIZE_MODES), 'tflite weights / activations',
                    flag_values=fv)
  flags.DEFINE_string('input_shape', None,
                      'HxW (default: the architecture size); with --with_decoder a list H1xW1,H2xW2,... gives '
                      'one signature per shape (default: square, 4:3 and 3:2 test-path shapes)', flag_values=fv)
  flags.DEFINE_integer('batch', 1, 'batch size of the file', flag_values=fv)
  flags.DEFINE_string('calibration', None, 'int8: directory or glob of calibration images', flag_values=fv)
  flags.DEFINE_integer('calibration_images', 64, 'int8: how many calibration images', flag_values=fv)
  flags.DEFINE_enum('kernels', 'xnnpack', list(graphs.KERNEL_LAYOUTS),
                    'tflite: lay the graph out for the XNNPACK delegate (default) or the builtin kernels',
                    flag_values=fv)
  flags.DEFINE_enum('deconv', 'transpose_conv', ['transpose_conv', 'window'],
                    'tflite: the head\'s transposed convs as TRANSPOSE_CONV (default; the file resizes to any input '
                    'shape) or as a 2x2 conv + depth-to-space (faster under XNNPACK; one signature per input '
                    'shape, default the test-path shapes)', flag_values=fv)
  flags.DEFINE_integer('step', None, 'checkpoint step (default: latest)', flag_values=fv)
  flags.DEFINE_string('out', None, 'output file (.tflite / .onnx)', flag_values=fv)
  flags.DEFINE_bool('verify', True, 'check the file against the JAX model (--noverify skips it)', flag_values=fv)
  flags.mark_flags_as_required(['ckpt', 'out'], flag_values=fv)
  return fv


def onnx_outputs(path: pathlib.Path):
  """images → {output name: array} with ONNX Runtime on the CPU (the verify step's runner)."""
  import onnxruntime as ort  # pylint: disable=g-import-not-at-top
  session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
  names = [o.name for o in session.get_outputs()]
  return lambda x: dict(zip(names, session.run(None, {onnx.INPUT_NAME: x})))


def _verify(loaded, make_fn, shape, run_file, engine: str) -> None:
  """Runs the written file once on a random input and prints max |diff| against the JAX model."""
  x = np.random.RandomState(0).standard_normal(shape).astype(np.float32)
  got = run_file(x)
  # The JAX side runs with the default depthwise implementation: XLA:CPU's native depthwise conv (the
  # one exported to TFLite) is 20-100x slower on CPU, and the same math in another form is a better check.
  reference = dataclasses.replace(loaded, model=models.create(loaded.meta['arch'], loaded.meta['num_keypoints']))
  want = {k: np.asarray(v) for k, v in jax.jit(make_fn(reference))(x).items()}
  diffs = {k: float(np.abs(got[k].astype(np.float32) - want[k].astype(np.float32)).max()) for k in want}
  print(f'{engine} vs JAX on a random input, max |diff|: ' + ', '.join(f'{k} {v:.3g}' for k, v in diffs.items()))


def export(args) -> pathlib.Path:
  """Runs the export described by the parsed flags (attributes named as the flags; input_shape a list of
  (h, w) or None) and returns the written path."""
  impl = graphs.KERNEL_LAYOUTS[args.kernels]
  if args.format == 'onnx':
    if args.quantize != 'none':
      raise ValueError('--quantize applies to --format=tflite only')
    if args.with_decoder:
      raise ValueError('--format=onnx writes the network alone (variant A); decode on the host '
                       '(or export --format=tflite --with_decoder)')
    impl = 'xla'  # the ONNX graph is written from the variables; the form only matters for the check
  loaded = checkpoint.load_model(args.ckpt, step=args.step, depthwise_impl=impl)
  # The window head's reshapes hold the map size: such a file has one signature per input shape.
  window = args.format == 'tflite' and args.deconv == 'window'
  if window:
    loaded = dataclasses.replace(loaded, model=loaded.model.clone(deconv_form='window'))
  if args.input_shape and len(args.input_shape) > 1 and not (args.with_decoder or window):
    raise ValueError('several --input_shape values need --with_decoder or --deconv=window (a network-only '
                     'file is resized at run time, see docs/export.md)')
  if args.input_shape:
    shapes = [graphs.input_shape(loaded, h, w, args.batch) for h, w in dict.fromkeys(args.input_shape)]
  elif (args.with_decoder or window) and args.format == 'tflite':
    shapes = graphs.decoder_shapes(loaded, args.batch)
  else:
    shapes = [graphs.input_shape(loaded, None, None, args.batch)]
  shape = shapes[0]
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
  if len(shapes) > 1:
    data = tflite.to_tflite_shapes(fn, shapes, args.quantize)
  else:
    data = tflite.to_tflite(fn, shape, args.quantize, rep, extra_builtin_fallback=args.with_decoder)
  data = tflite.add_metadata(data, graphs.file_info(loaded, shape, args.with_decoder, args.quantize, shapes))
  # Written next to `out` and renamed once it passed its check: a file that fails is never left as `out`.
  tmp = out.with_name(f'.{out.name}.partial')
  tmp.write_bytes(data)
  try:
    counts = tflite.op_counts(data)
    what = ', '.join(f'{s[1]}x{s[2]}' for s in shapes)
    print(f'{out}: {len(data) / 1e6:.1f} MB, input images {what} (batch {shape[0]}) float32, '
          f'quantize={args.quantize}')
    print('ops: ' + ', '.join(f'{k} x{v}' for k, v in sorted(counts.items())))
    if args.verify:
      _verify_tflite(tmp, loaded, make_fn, shapes, args.with_decoder)
    tmp.replace(out)
  finally:
    tmp.unlink(missing_ok=True)
  print(f'wrote {out}')
  return out


def _verify_tflite(path: pathlib.Path, loaded, make_fn, shapes, with_decoder: bool) -> None:
  """Runs the file once per input shape on a random input against the JAX function.

  Raises ValueError when the file does not run, or (decoder files) finds other people than JAX.
  Network files: the JAX side runs with the default depthwise implementation (XLA:CPU's native depthwise
  conv, the one exported, is 20-100x slower on CPU; the same math in another form is a better check).
  Decoder files: the JAX side runs the exported form: with the other form, float-level differences of
  the maps move a joint to another pixel of a plateau (seen on constant images: 207 px, JAX against JAX).
  """
  net = runner.TFLiteModel(path)
  if with_decoder:
    reference = loaded
  else:
    reference = dataclasses.replace(loaded, model=models.create(loaded.meta['arch'],
                                                                loaded.meta['num_keypoints']))
  fn = jax.jit(make_fn(reference))
  for shape in shapes:
    x = np.random.RandomState(0).standard_normal(shape).astype(np.float32)
    try:
      got = net(x)
    except ValueError as e:
      raise ValueError(f'self-check failed: LiteRT cannot run the file at input {shape[1]}x{shape[2]} '
                       f'({e}); not written') from None
    want = {k: np.asarray(v) for k, v in fn(x).items()}
    diffs = {k: float(np.abs(got[k].astype(np.float32) - want[k].astype(np.float32)).max()) for k in want}
    print(f'LiteRT vs JAX on a random {shape[1]}x{shape[2]} input, max |diff|: '
          + ', '.join(f'{k} {v:.3g}' for k, v in diffs.items()))
    if with_decoder and not np.array_equal(got['valid'], want['valid']):
      raise ValueError(f'self-check failed at input {shape[1]}x{shape[2]}: the file finds '
                       f'{int(got["valid"].sum())} people, JAX {int(want["valid"].sum())}; not written')


def main(argv=None) -> int:
  """`python -m litepose_jax.export` (module docstring); argv without the program name."""
  fv = _flags()
  code = runtime.parse_module_flags(fv, argv, __doc__)
  if code is not None:
    return code
  args = types.SimpleNamespace(**fv.flag_values_dict())
  try:
    args.input_shape = _parse_shape(args.input_shape) if args.input_shape else None
  except ValueError as e:
    return runtime.fail(e, code=2)
  try:
    export(args)
  except (tflite.ExportError, ImportError, *runtime.INPUT_ERRORS) as e:
    return runtime.fail(e, where=args.out)
  return 0


if __name__ == '__main__':
  sys.exit(main())
