"""Run an exported .tflite file with LiteRT's interpreter (ai-edge-litert), as a drop-in for the JAX forward.

  net = TFLiteModel('xs.tflite', num_threads=2)
  out_quarter, out_half = net.network(images)      # images [B,H,W,3] float32, like model.apply(...)
  outputs = net(images)                            # {'out_quarter': ..., 'out_half': ...} (or the decoder's)

Input shapes other than the exported one (another batch, another padded test-path shape) are applied with
`resize_tensor_input`, best effort: it works when every op derives its output shape from its input. With
the XNNPACK delegate (LiteRT's default CPU path, on here unless xnnpack=False) that holds for the current
LitePose network; LiteRT's builtin kernels keep TRANSPOSE_CONV's output shape from the file, and a RESHAPE
with a constant shape (the decoder; a reshape-based sub-pixel deconv) pins the shape for every runtime.
A refusal is reported as an error naming the exported shape. Export at the shape you run to be safe.
A file with several signatures (`tflite.to_tflite_shapes`, the decoder variant exported for several
shapes) runs each input on the signature of its exact shape; other shapes go through the resize above.
No TensorFlow import: this runs on a device with only ai-edge-litert.
"""

from __future__ import annotations

import os
import pathlib
from typing import Dict, Optional, Tuple

import numpy as np

# tflite.py imports TensorFlow only inside its converter functions; its flatbuffer readers need none.
from litepose_jax.export import tflite

SIGNATURE = 'serving_default'
INPUT_NAME = 'images'


class TFLiteModel:
  """One .tflite file loaded into a LiteRT interpreter.

  Attributes:
    path: the file (None when built from bytes).
    exported_shape: the input shape stored in the file, (B, H, W, 3) (of the default signature).
    shapes: every input shape the file holds a signature for (exported_shape first).
    output_names: the signature's output names.
    metadata: the file's 'litepose' metadata (graphs.file_info: keypoint set, input size, variant, ...),
      or None for a file written without it.
  """

  def __init__(self, model: str | os.PathLike | bytes, num_threads: int = 2, xnnpack: bool = True):
    """Loads a model.

    Args:
      model: a .tflite path or the flatbuffer bytes.
      num_threads: interpreter threads (also used by XNNPACK).
      xnnpack: use the default XNNPACK CPU delegate (False: LiteRT's builtin reference kernels only,
        i.e. what a runtime without the delegate executes).
    Raises:
      FileNotFoundError / ValueError: missing file, or not a LiteRT model with our signature.
    """
    from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
    self.path: Optional[pathlib.Path] = None
    if isinstance(model, (bytes, bytearray)):
      data = bytes(model)
      where = '<bytes>'
    else:
      self.path = pathlib.Path(model)
      if not self.path.is_file():
        raise FileNotFoundError(f'exported model {self.path} does not exist')
      data = self.path.read_bytes()
      where = str(self.path)
    kwargs = {'model_content': data}
    self._where = where
    resolver = (litert.OpResolverType.AUTO if xnnpack
                else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    try:
      self._interp = litert.Interpreter(num_threads=num_threads, experimental_op_resolver_type=resolver,
                                        **kwargs)
      signature = self._interp.get_signature_runner(SIGNATURE)
    except (ValueError, RuntimeError) as e:
      raise ValueError(f'{where} is not a loadable LiteRT model with signature {SIGNATURE!r}: {e}') from e
    inputs = signature.get_input_details()
    if INPUT_NAME not in inputs:
      raise ValueError(f'{where}: expected one input named {INPUT_NAME!r}, found {sorted(inputs)}')
    self._input = inputs[INPUT_NAME]['index']
    self._outputs = {n: d['index'] for n, d in signature.get_output_details().items()}
    self.output_names = tuple(sorted(self._outputs))
    self.exported_shape = tuple(int(v) for v in inputs[INPUT_NAME]['shape'])
    self._shape = None
    # A multi-shape file: every signature, input shape → signature runner (the default first).
    self._runners = {}
    keys = list(self._interp.get_signature_list())
    for key in sorted(keys, key=lambda k: k != SIGNATURE):  # the default first
      if len(keys) == 1:
        break  # one signature: the interpreter's own tensors (resizable, see the module doc)
      runner = self._interp.get_signature_runner(key)
      details = runner.get_input_details()
      if set(details) == {INPUT_NAME}:
        self._runners.setdefault(tuple(int(v) for v in details[INPUT_NAME]['shape']), runner)
    self.shapes = (self.exported_shape,) + tuple(k for k in self._runners if k != self.exported_shape)
    self.metadata = tflite.read_metadata(data)

  def _prepare(self, shape: Tuple[int, ...]) -> None:
    if shape == self._shape:
      return
    try:
      self._interp.resize_tensor_input(self._input, list(shape), strict=False)
      self._interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
      self._shape = None
      raise ValueError(
          f'{self._where} was exported for input {self.exported_shape} and this runtime cannot resize it '
          f'to {shape} ({str(e).strip()}); export with --input_shape={shape[1]}x{shape[2]} (and '
          f'--batch={shape[0]}) or run with the XNNPACK delegate') from e
    self._shape = shape

  def __call__(self, images: np.ndarray) -> Dict[str, np.ndarray]:
    """Runs the file's signature.

    Args:
      images: [B,H,W,3] float32 network input (ImageNet-normalised RGB, as for the JAX model).
    Returns:
      {output name: array}, e.g. {'out_quarter': [B,H/4,W/4,2K], 'out_half': [B,H/2,W/2,K]}.
    """
    images = np.ascontiguousarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != self.exported_shape[-1]:
      raise ValueError(f'{self._where}: expected images [B,H,W,{self.exported_shape[-1]}], got shape {images.shape}')
    if tuple(images.shape) in self._runners:
      try:
        return dict(self._runners[tuple(images.shape)](**{INPUT_NAME: images}))
      except RuntimeError as e:
        raise ValueError(f'{self._where}: inference on input {images.shape} failed: {e}') from e
    if self._runners:  # a multi-shape file: the interpreter's own tensors need not be the default's
      have = ', '.join(f'{s[1]}x{s[2]} (batch {s[0]})' for s in self.shapes)
      raise ValueError(f'{self._where} holds inputs {have}; got {images.shape[1]}x{images.shape[2]} '
                       f'(batch {images.shape[0]})')
    self._prepare(tuple(images.shape))
    self._interp.set_tensor(self._input, images)
    try:
      self._interp.invoke()
    except RuntimeError as e:
      raise ValueError(f'{self._where}: inference on input {images.shape} failed: {e}') from e
    return {n: self._interp.get_tensor(i) for n, i in self._outputs.items()}

  def network(self, images: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Variant A files: the same (out_quarter [B,H/4,W/4,2K], out_half [B,H/2,W/2,K]) as model.apply."""
    if set(self.output_names) != {'out_quarter', 'out_half'}:
      raise ValueError(f'{self._where} is not a network-only export (outputs {self.output_names})')
    out = self(images)
    return out['out_quarter'], out['out_half']
