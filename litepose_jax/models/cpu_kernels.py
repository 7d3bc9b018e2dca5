"""The C++ depthwise kernel for XLA:CPU (csrc/depthwise_cpu.cc), built on first use, called through the FFI.

XLA:CPU has no fast depthwise convolution: the 'shift' form (depthwise.py) is an elementwise fusion of
k·k shifted multiply-adds that re-reads every input vector once per tap and cannot keep partial sums in
registers. The kernel tiles each output row into 8 columns × 16 channels held in registers, loads every
input vector once per kernel row, and applies the following BatchNorm and ReLU6 before its one store.
A second entry point runs the MobileNet block's first half as one call (`expand_depthwise`: expand 1x1 +
BN + ReLU6 + depthwise + BN + ReLU6), so the 6x-expanded tensor never goes through memory and a block
is one XLA thunk instead of four (docs/cpu_inference.md has the measurements).

`available()` compiles the source once per machine with the system C++ compiler (`$CXX`, else g++ or
c++; `-O3 -march=native`) into `<kernel dir>/depthwise_cpu-<hash>.so` — the hash covers the source, the
flags, the jaxlib version and the CPU model, so a shared home folder never loads a library built for
another CPU — and registers it with XLA once per process. Without a compiler, or when the build fails,
it returns False and logs the reason once; depthwise_impl 'auto' then keeps the 'shift' form.

`LITEPOSE_JAX_CPU_KERNEL=0` turns it off. Kernel dir: `$LITEPOSE_JAX_KERNEL_DIR`, else `.cache/kernels` beside the package (as the compilation cache).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile
from typing import Optional

import jax
import numpy as np

TARGET = 'litepose_depthwise'
FUSED_TARGET = 'litepose_expand_depthwise'
SOURCE = pathlib.Path(__file__).with_name('csrc') / 'depthwise_cpu.cc'
FLAGS = ('-O3', '-march=native', '-std=c++17', '-shared', '-fPIC', '-w')
KERNEL_DIR_ENV = 'LITEPOSE_JAX_KERNEL_DIR'
DISABLE_ENV = 'LITEPOSE_JAX_CPU_KERNEL'   # '0': never build or use it ('auto' is then 'shift' on CPU)
# Beside the compilation cache (runtime.DEFAULT_CACHE_DIR): `make clean` removes both.
DEFAULT_KERNEL_DIR = pathlib.Path(__file__).resolve().parents[2] / '.cache' / 'kernels'


def kernel_dir() -> pathlib.Path:
  if os.environ.get(KERNEL_DIR_ENV):
    return pathlib.Path(os.environ[KERNEL_DIR_ENV])
  return DEFAULT_KERNEL_DIR


def _cpu_model() -> str:
  """The first CPU's model name and feature flags: what -march=native compiled for. (Virtual machines
  name their CPUs vaguely, e.g. 'AMD EPYC', and may hide AVX-512: the flags tell them apart.)"""
  try:
    lines = pathlib.Path('/proc/cpuinfo').read_text().splitlines()
    found = {}
    for line in lines:
      key = line.split(':', 1)[0].strip()
      if key in ('model name', 'flags') and key not in found:
        found[key] = line
    if found:
      return '\n'.join(found[k] for k in sorted(found))
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _compiler() -> Optional[str]:
  for name in (os.environ.get('CXX'), 'g++', 'c++', 'clang++'):
    if name and shutil.which(name):
      return shutil.which(name)
  return None


def _library_path(compiler: str) -> pathlib.Path:
  import jaxlib  # pylint: disable=g-import-not-at-top
  key = hashlib.sha256()
  for part in (SOURCE.read_bytes(), ' '.join(FLAGS).encode(), compiler.encode(), jaxlib.__version__.encode(),
               _cpu_model().encode()):
    key.update(part)
  return kernel_dir() / f'depthwise_cpu-{key.hexdigest()[:16]}.so'


def _build(compiler: str, out: pathlib.Path) -> None:
  """Compiles into a temporary file of `out`'s folder, then renames: processes building at once each
  write their own file and the last rename wins, so no process loads a half-written library."""
  out.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix='.so', dir=out.parent)
  os.close(fd)
  try:
    cmd = [compiler, *FLAGS, '-I', jax.ffi.include_dir(), str(SOURCE), '-o', tmp]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
      raise RuntimeError(f'{" ".join(cmd)} failed:\n{result.stderr[-2000:]}')
    os.replace(tmp, out)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


@functools.lru_cache(maxsize=None)
def available() -> bool:
  """True when the kernel is registered with XLA:CPU (built now if needed); False, logged once, if not."""
  if os.environ.get(DISABLE_ENV) == '0':
    return False
  try:
    compiler = _compiler()
    if compiler is None:
      raise RuntimeError('no C++ compiler found ($CXX, g++, c++, clang++)')
    path = _library_path(compiler)
    if not path.exists():
      _build(compiler, path)
    library = ctypes.cdll.LoadLibrary(str(path))
    jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(library.LiteposeDepthwise), platform='cpu')
    jax.ffi.register_ffi_target(FUSED_TARGET, jax.ffi.pycapsule(library.LiteposeExpandDepthwise),
                                platform='cpu')
    return True
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('litepose_jax: the C++ depthwise kernel is not available (%s); using the slower '
                    "'shift' form on the CPU", e)
    return False


def _output(x: jax.Array, k: int, stride: int, channels: int) -> jax.ShapeDtypeStruct:
  """The float32 [B, H', W', channels] result of a k x k conv with zero padding k//2 and `stride`."""
  b, h, w, _ = x.shape
  pad = k // 2
  return jax.ShapeDtypeStruct((b, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1, channels),
                              np.float32)


def depthwise(x: jax.Array, kernel: jax.Array, bias: jax.Array, stride: int, relu6: bool) -> jax.Array:
  """The kernel's call: x [B,H,W,C], kernel [k,k,C], bias [C], float32 → act(bias + depthwise conv with
  zero padding k//2) [B,H',W',C], H' = (H + 2·(k//2) − k)//stride + 1; act = ReLU6 or none.
  `available()` must have returned True."""
  k = kernel.shape[0]
  return jax.ffi.ffi_call(TARGET, _output(x, k, stride, x.shape[-1]), vmap_method='sequential')(
      x, kernel, bias, stride=np.int64(stride), pad=np.int64(k // 2), relu6=np.int64(bool(relu6)))


def expand_depthwise(x: jax.Array, expand_kernel: jax.Array, expand_bn, depthwise_kernel: jax.Array,
                     depthwise_bn, stride: int, eps: float) -> jax.Array:
  """The MobileNet block's first half in one call: relu6(BN(depthwise(relu6(BN(x @ expand_kernel))))).

  x [B,H,W,Cin], expand_kernel [Cin,E], depthwise_kernel [k,k,E] (zero padding k//2, k in 3/5/7, stride
  1 or 2), each BN a tuple (scale, bias, mean, var) of [E] vectors in eval mode with `eps`; float32, E a
  multiple of 8. → [B,H',W',E]. The expanded tensor is never written to memory (csrc/depthwise_cpu.cc).
  `available()` must have returned True.
  """
  out = _output(x, depthwise_kernel.shape[0], stride, depthwise_kernel.shape[-1])
  return jax.ffi.ffi_call(FUSED_TARGET, out, vmap_method='sequential')(
      x, expand_kernel, *expand_bn, depthwise_kernel, *depthwise_bn, stride=np.int64(stride),
      eps=np.float32(eps))
