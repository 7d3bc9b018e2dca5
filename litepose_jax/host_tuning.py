"""Process-wide CPU settings for the inference entry points; they call `configure()` first.

1. 512-bit vectors. XLA:CPU emits 256-bit vector code by default even where the CPU has 512-bit
   registers. Our hottest CPU loops (the depthwise shifted sums, vectorised over channels) run up to 1.4x
   faster with `--xla_cpu_prefer_vector_width=512` on the 2-core CI machine (AMD EPYC, AVX-512): a 7x7
   depthwise conv on 2x64x96x96 4.1 → 2.9 ms, and the whole XS forward of a flip batch (2 x 256x384) 11%
   faster, paired runs alternating both programs in one process. Added to XLA_FLAGS when the CPU reports
   avx512f and the user has not set the flag; XLA reads XLA_FLAGS when JAX creates its CPU client, i.e. at
   the first computation, so call `configure` before that.
2. Freed memory kept in the C allocator (glibc `mallopt`: allocations up to 1 GiB from the heap instead of
   fresh mmaps, and freed memory kept up to 1 GiB instead of being returned to the kernel). XLA:CPU
   allocates every call's buffers anew; by default glibc maps the large ones fresh each time and the
   kernel zero-fills every page on first touch. The whole XS test path (forward, aggregation, decoding)
   took 12,000-14,000 page faults per image and 137-176 ms; with these settings 0-600 faults and 90-113 ms
   (tests/data/crowdpose_sample, 20 calls each, two alternations). The cost: the process keeps its peak
   heap instead of shrinking after it. Not applied to training (not measured there).

`LITEPOSE_HOST_TUNING=0` turns both off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

ENV = 'LITEPOSE_HOST_TUNING'
VECTOR_FLAG = '--xla_cpu_prefer_vector_width'
# glibc mallopt parameters and our values (see the module doc).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MALLOPT = ((_M_MMAP_THRESHOLD, 1 << 30), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20))


def _cpu_flags() -> set:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('flags'):
          return set(line.split(':', 1)[1].split())
  except OSError:
    pass
  return set()


def _switched_off() -> bool:
  return os.environ.get(ENV, '1') == '0'


def keep_freed_memory() -> bool:
  """Sets glibc's allocator to keep freed memory for reuse (module doc, 2.).

  Returns:
    Whether every setting was accepted (False: turned off, or not a glibc system, e.g. macOS or musl).
  """
  if _switched_off():
    return False
  try:
    mallopt = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').mallopt
  except (OSError, AttributeError):
    return False
  return all([mallopt(param, value) == 1 for param, value in MALLOPT])  # a list: apply every one


def add_vector_flag() -> bool:
  """Adds `--xla_cpu_prefer_vector_width=512` to XLA_FLAGS on AVX-512 CPUs (module doc, 1.).

  Returns:
    Whether the flag was added (False: turned off, already set by the user, or no AVX-512).
  """
  flags = os.environ.get('XLA_FLAGS', '')
  if _switched_off() or VECTOR_FLAG in flags or 'avx512f' not in _cpu_flags():
    return False
  os.environ['XLA_FLAGS'] = f'{flags} {VECTOR_FLAG}=512'.strip()
  return True


def configure() -> bool:
  """Applies both settings (call it before JAX's first computation).

  Returns:
    Whether the vector flag was added (see `add_vector_flag`).
  """
  keep_freed_memory()
  return add_vector_flag()
