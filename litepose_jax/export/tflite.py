"""JAX function → TFLite flatbuffer through jax2tf (StableHLO) and the TFLite converter, builtin ops only.

  data = to_tflite(graphs.network_fn(loaded), (1, 256, 256, 3), quantize='none' | 'fp16' | 'int8',
                   representative=calibration.representative_inputs(files, 256, 256))
  op_names(data)  → e.g. ['PAD', 'CONV_2D', 'DEPTHWISE_CONV_2D', 'FULLY_CONNECTED', 'ADD', ...]

Shapes are exported static (default batch 1). A dynamic batch or dynamic H/W through jax2tf's
polymorphic shapes was measured to turn every reshape of the graph into run-time shape arithmetic
(XS: 1185 ops instead of ~170, with SHAPE / GATHER / UNSORTED_SEGMENT_PROD / BROADCAST_TO chains), and
with dynamic H/W TRANSPOSE_CONV failed to prepare. A static file can still be resized at run time
(`Interpreter.resize_tensor_input`, done by runner.py) to another batch or padded test-path shape with
the XNNPACK delegate, LiteRT's default CPU path; see docs/export.md for what needs the exported shape.

Quantisation (post-training, weights and activations):
  'none'  float32 everything.
  'fp16'  float16 weights, dequantised at load time on CPU; GPU delegates run them in fp16.
  'int8'  full integer: int8 weights (per-channel) and activations, calibrated on `representative`
          inputs; the model keeps float32 input and output tensors (a QUANTIZE op in, DEQUANTIZE out)
          so the same pre/post-processing runs every file.
StableHLO version: jax2tf embeds the function as a serialized StableHLO module that the converter reads
back. JAX 0.10.2 writes StableHLO 1.15.0 (its 4-week compatibility target) while TensorFlow 2.21 reads at
most 1.13.7; the network uses nothing newer, but `lax.top_k` (the decoder) is written as a
`vhlo.composite_v2` that TF cannot parse. `_stablehlo_target` serializes at JAX's 12-week target (1.13.7)
during conversion, which TF reads.
TensorFlow is imported only inside this package (the model and decode code stay TF-free).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from typing import Callable, Iterable, List, Optional, Sequence

import numpy as np

QUANTIZE_MODES = ('none', 'fp16', 'int8')
METADATA_NAME = 'litepose'  # the .tflite metadata entry holding our JSON (see `add_metadata`)
INPUT_NAME = 'images'
SIGNATURE = 'serving_default'


class ExportError(RuntimeError):
  """The converter rejected the graph (e.g. an op outside TFLite's builtin set)."""


def _tf():
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


@contextlib.contextmanager
def _stablehlo_target():
  """Serializes exported StableHLO at JAX's 12-week compatibility version (see the module docstring).

  Patches a private JAX function for the duration of the conversion; when that function is not there
  (another JAX version), JAX's default is kept and conversion goes on as before.
  """
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    from jax._src.export import _export  # pylint: disable=g-import-not-at-top
    from jax._src.lib import _jax  # pylint: disable=g-import-not-at-top
    from jax._src.lib.mlir.dialects import hlo  # pylint: disable=g-import-not-at-top
    original = _export._module_to_bytecode  # pylint: disable=protected-access
    target = hlo.get_version_from_compatibility_requirement(hlo.StablehloCompatibilityRequirement.WEEK_12)
  except (ImportError, AttributeError):
    yield
    return

  def module_to_bytecode(module):
    return _jax.mlir.serialize_portable_artifact(module, target,
                                                 xla_bridge.get_backend().serialize_with_sdy)

  _export._module_to_bytecode = module_to_bytecode  # pylint: disable=protected-access
  try:
    yield
  finally:
    _export._module_to_bytecode = original  # pylint: disable=protected-access


def _short_error(e: Exception, limit: int = 6) -> str:
  """The converter's `error:` lines (its messages also carry megabytes of serialized module)."""
  text = str(e)
  lines = [re.sub(r'\s+', ' ', l.strip())[:400] for l in text.splitlines() if 'error' in l.lower()]
  lines = [l for l in dict.fromkeys(lines) if len(l) > 8]  # repeated per function; drop bare 'error:'
  if not lines:  # e.g. the quantizer: its details went to stderr, the exception has a short summary
    lines = [re.sub(r'\s+', ' ', l.strip())[:400] for l in text.splitlines() if l.strip()][-limit:]
  return '\n  '.join(lines[:limit]) or type(e).__name__


def to_tflite(fn: Callable, input_shape: Sequence[int], quantize: str = 'none',
              representative: Optional[Iterable[np.ndarray]] = None,
              extra_builtin_fallback: bool = False) -> bytes:
  """Converts `fn(images[B,H,W,3] float32) -> dict of arrays` to a TFLite model.

  Args:
    fn: a JAX function of one float32 array returning a dict (the dict keys become the signature's
      output names).
    input_shape: the static input shape [B,H,W,3].
    quantize: 'none' | 'fp16' | 'int8' (see the module docstring).
    representative: for 'int8': an iterable of float32 arrays of shape `input_shape` (re-iterable or
      used once).
    extra_builtin_fallback: for 'int8': let ops without an int8 kernel stay float (hybrid graph) instead
      of failing; the network alone never needs it.
  Returns:
    The .tflite flatbuffer bytes; its one signature 'serving_default' takes 'images' [B,H,W,3] float32.
  Raises:
    ValueError: unknown quantize mode or missing representative data.
    ExportError: the converter failed (the message names the ops it could not convert).
  """
  if quantize not in QUANTIZE_MODES:
    raise ValueError(f'quantize must be one of {QUANTIZE_MODES}, got {quantize!r}')
  if quantize == 'int8' and representative is None:
    raise ValueError('int8 quantisation needs representative inputs (calibration images)')
  tf = _tf()
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top

  with _stablehlo_target():
    return _convert(tf, jax2tf, fn, input_shape, quantize, representative, extra_builtin_fallback)


def _convert(tf, jax2tf, fn, input_shape, quantize, representative, extra_builtin_fallback) -> bytes:
  module = tf.Module()
  # Weights are closed over in `fn`: jax2tf embeds them as StableHLO constants, which the converter folds
  # (BatchNorm into the convolutions). with_gradient=False: no VJP is serialised.
  module.serve = tf.function(
      jax2tf.convert(fn, with_gradient=False), autograph=False,
      input_signature=[tf.TensorSpec(list(input_shape), tf.float32, name=INPUT_NAME)])
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [module.serve.get_concrete_function()], module)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  if quantize == 'fp16':
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
  elif quantize == 'int8':
    samples = [np.asarray(x, np.float32) for x in representative]
    if not samples:
      raise ValueError('int8 quantisation needs at least one representative input')
    for x in samples:
      if tuple(x.shape) != tuple(input_shape):
        raise ValueError(f'representative input shape {x.shape} != export shape {tuple(input_shape)}')
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x] for x in samples)
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if extra_builtin_fallback:
      ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
    converter.target_spec.supported_ops = ops
  try:
    return converter.convert()
  except Exception as e:  # the converter raises ConverterError / RuntimeError with the op list
    raise ExportError(f'TFLite conversion ({quantize}) failed:\n  {_short_error(e)}') from e


def op_names(model: bytes) -> List[str]:
  """Distinct operator names used by a .tflite flatbuffer, read from the file's operator-code table.

  Builtin ops come back by name (e.g. 'DEPTHWISE_CONV_2D'); custom and Flex (TF fallback) ops as
  'CUSTOM:<name>', so `all(':' not in n for n in op_names(m))` says the file is builtin-only.
  """
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith('_')}
  m = schema.Model.GetRootAs(model, 0)
  out = []
  for i in range(m.OperatorCodesLength()):
    code = m.OperatorCodes(i)
    # Codes > 127 live in BuiltinCode; older files put them in the int8 DeprecatedBuiltinCode.
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    name = names.get(builtin, f'UNKNOWN_{builtin}')
    if name == 'CUSTOM':
      name = f'CUSTOM:{(code.CustomCode() or b"").decode()}'
    out.append(name)
  return out


def op_counts(model: bytes) -> dict:
  """{op name: number of operators} over all subgraphs of a .tflite flatbuffer."""
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  names = op_names(model)
  m = schema.Model.GetRootAs(model, 0)
  counts: dict = {}
  for s in range(m.SubgraphsLength()):
    sg = m.Subgraphs(s)
    for i in range(sg.OperatorsLength()):
      n = names[sg.Operators(i).OpcodeIndex()]
      counts[n] = counts.get(n, 0) + 1
  return counts


def add_metadata(model: bytes, info: dict) -> bytes:
  """Returns `model` with a 'litepose' metadata entry holding `info` as JSON.

  The runner reads it back (`runner.TFLiteModel.metadata`) so that a .tflite file is self-describing:
  keypoint set (flip index, grouping order), input size, variant, quantisation.
  """
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  from ai_edge_litert.tools import flatbuffer_utils  # pylint: disable=g-import-not-at-top
  m = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
  buffer = schema.BufferT()
  buffer.data = np.frombuffer(json.dumps(info, sort_keys=True).encode(), np.uint8)
  m.buffers.append(buffer)
  entry = schema.MetadataT()
  entry.name = METADATA_NAME
  entry.buffer = len(m.buffers) - 1
  m.metadata = [e for e in (m.metadata or []) if e.name not in (METADATA_NAME, METADATA_NAME.encode())]
  m.metadata.append(entry)
  return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def read_metadata(model: bytes) -> Optional[dict]:
  """The 'litepose' metadata JSON of a .tflite flatbuffer, or None when it has none."""
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  m = schema.Model.GetRootAs(model, 0)
  for i in range(m.MetadataLength()):
    entry = m.Metadata(i)
    if (entry.Name() or b'').decode() == METADATA_NAME:
      return json.loads(m.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode())
  return None


def signature_key(shape: Sequence[int]) -> str:
  """The signature name of one input shape in a multi-shape file: 'hw_256x384' (batch 1) or 'hw_2x256x384'."""
  b, h, w = (int(v) for v in shape[:3])
  return f'hw_{h}x{w}' if b == 1 else f'hw_{b}x{h}x{w}'


def to_tflite_shapes(fn: Callable, input_shapes: Sequence[Sequence[int]], quantize: str = 'none') -> bytes:
  """Converts `fn` for several static input shapes into ONE file: one signature per shape.

  The first shape is the 'serving_default' signature (what single-shape readers run), every shape also
  has its own `signature_key(shape)`. The weights are stored once (the converter de-duplicates the
  constant buffers: the tiny model's decoder file grows 3.07 → 3.30 MB for a second shape), each
  signature has its own graph. Used for the decoder variant, whose reshapes hold the map size, so
  `resize_tensor_input` cannot serve another shape. 'none' and 'fp16' only (int8 does not convert the
  decoder, see docs/export.md).

  Raises:
    ValueError: unknown or int8 quantize mode, no or repeated shapes.
    ExportError: the converter failed.
  """
  if quantize not in ('none', 'fp16'):
    raise ValueError(f'a file with several input shapes supports quantize none or fp16, got {quantize!r}')
  shapes = [tuple(int(v) for v in s) for s in input_shapes]
  if not shapes or len(set(shapes)) != len(shapes):
    raise ValueError(f'need distinct input shapes, got {shapes}')
  tf = _tf()
  import tempfile  # pylint: disable=g-import-not-at-top
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  with _stablehlo_target(), tempfile.TemporaryDirectory() as tmp:
    module = tf.Module()
    signatures = {}
    for i, shape in enumerate(shapes):
      f = tf.function(jax2tf.convert(fn, with_gradient=False), autograph=False,
                      input_signature=[tf.TensorSpec(list(shape), tf.float32, name=INPUT_NAME)])
      setattr(module, f'serve_{i}', f)
      signatures[SIGNATURE if i == 0 else signature_key(shape)] = f.get_concrete_function()
    # A SavedModel carries named signatures to the converter (from_concrete_functions names them all
    # after the converted function and keeps one).
    tf.saved_model.save(module, tmp, signatures=signatures)
    converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=list(signatures))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == 'fp16':
      converter.optimizations = [tf.lite.Optimize.DEFAULT]
      converter.target_spec.supported_types = [tf.float16]
    try:
      return converter.convert()
    except Exception as e:  # pylint: disable=broad-except
      raise ExportError(f'TFLite conversion ({quantize}) failed:\n  {_short_error(e)}') from e
