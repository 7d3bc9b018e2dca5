"""Persistent XLA compilation cache for the command-line entries (train, evaluate, predict, demo).

Compiling the XS train step takes 15-28 s on a 2-core CPU (by the machine's speed that day); a resumed
run (after preemption or Ctrl-C), a second `make demo`, or an evaluation of the same shapes would pay it
again. With the cache on, JAX stores every compiled program that took ≥ 1 s under the cache folder and a
later process with the same program, jax version and backend loads it instead of compiling it (XS train
step on the 2-core CPU: 6.4 s instead of 16.7 s, or 11.9 s instead of 28.8 s on a slower day; tracing and
lowering, which the cache cannot skip, are part of it; README, "Benchmarks").

Folder: $LITEPOSE_JAX_CACHE_DIR if set ('' or 'off' turns the cache off), else JAX's own
$JAX_COMPILATION_CACHE_DIR if set, else <repo>/.cache/jax (git-ignored; the tests use it too).
"""

from __future__ import annotations

import os
import pathlib
from typing import Optional

ENV = 'LITEPOSE_JAX_CACHE_DIR'
DEFAULT_DIR = pathlib.Path(__file__).resolve().parents[1] / '.cache' / 'jax'


def cache_dir() -> Optional[str]:
  """The folder the entries use, or None when the cache is turned off."""
  path = os.environ.get(ENV)
  if path is None:
    path = os.environ.get('JAX_COMPILATION_CACHE_DIR') or str(DEFAULT_DIR)
  return None if path in ('', 'off') else path


def enable(path: Optional[str] = None, min_compile_secs: float = 1.0) -> Optional[str]:
  """Turns the persistent compilation cache on in `path` (default: `cache_dir()`).

  Returns:
    The folder, or None when the cache is turned off.
  """
  path = path or cache_dir()
  if path is None:
    return None
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', float(min_compile_secs))
  return path
