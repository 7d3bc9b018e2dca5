"""Optional ONNX export through jax2onnx (`pip install -r requirements-onnx.txt`, a separate environment).

  export_onnx(graphs.network_fn(loaded), (1, 256, 256, 3), 'xs.onnx')

jax2onnx is not in requirements.txt: installed together with the pinned set it downgrades
orbax-checkpoint (measured), so it lives in its own requirements file. Without it, `available()` is False
and `export_onnx` raises an ImportError saying how to install it.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
from typing import Callable, Sequence

INSTALL_HINT = ('ONNX export needs jax2onnx: pip install -r requirements-onnx.txt '
                '(in a separate virtual environment: it downgrades orbax-checkpoint)')


def available() -> bool:
  """True when jax2onnx can be imported."""
  return importlib.util.find_spec('jax2onnx') is not None


def export_onnx(fn: Callable, input_shape: Sequence[int], out: str | os.PathLike, opset: int = 17,
                dynamic_batch: bool = True) -> pathlib.Path:
  """Writes `fn(images[B,H,W,3] float32) -> dict of arrays` as an ONNX model.

  Args:
    fn: the JAX function (e.g. `graphs.network_fn(loaded)`).
    input_shape: [B,H,W,3]; H and W are fixed in the file.
    out: the .onnx path.
    opset: ONNX opset version.
    dynamic_batch: export the batch dimension as a symbol 'B' (else input_shape[0]).
  Returns:
    The written path. The graph's input is named 'images' and its outputs carry the dict's keys.
  Raises:
    ImportError: jax2onnx is not installed.
  """
  if not available():
    raise ImportError(INSTALL_HINT)
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jax2onnx import to_onnx  # pylint: disable=g-import-not-at-top
  out = pathlib.Path(out)
  shape = tuple(int(d) for d in input_shape)
  names = sorted(jax.eval_shape(fn, jax.ShapeDtypeStruct(shape, jnp.float32)))

  def as_tuple(images):
    result = fn(images)
    return tuple(result[n] for n in names)

  spec = (('B',) + shape[1:]) if dynamic_batch else shape
  to_onnx(as_tuple, [spec], model_name=out.stem, opset=opset, return_mode='file', output_path=str(out),
          input_names=['images'], output_names=names)
  return out
