"""What every entry point (train, evaluate, predict, demo, convert, export, benchmarks) does first and on bad
input: `setup()` before the first computation; `parse_flags` / `fail` for one-line errors (the end of this file).

Three settings, each measured:

1. Persistent XLA compilation cache. Compiling the XS train step takes tens of seconds on a 2-core CPU; a
   resumed run, a second `make demo` or an evaluation of shapes seen before loads the programs from disk
   instead (README, "Benchmarks"). Folder: $LITEPOSE_JAX_CACHE_DIR if set ('' or 'off' turns the
   cache off), else JAX's own $JAX_COMPILATION_CACHE_DIR if set, else <repo>/.cache/jax (git-ignored; the
   tests use it too).
2. 512-bit vectors (inference entries). XLA:CPU emits 256-bit vector code by default even where the CPU
   has 512-bit registers; our hottest CPU loops (the depthwise shifted sums, vectorised over channels) run
   faster with `--xla_cpu_prefer_vector_width=512` on AVX-512 hosts (README, design notes). Added to
   XLA_FLAGS when the CPU reports avx512f and the user has not set the flag; XLA reads XLA_FLAGS when JAX
   creates its CPU client, i.e. at the first computation, so `setup` must run before that.
3. Freed memory kept in the C allocator (inference entries; glibc `mallopt`: allocations up to 1 GiB from
   the heap instead of fresh mmaps, freed memory kept up to 1 GiB). XLA:CPU allocates every call's
   buffers anew; by default glibc maps the large ones fresh each time and the kernel zero-fills every
   page on first touch (README, design notes). The cost: the process keeps its peak heap.
   `LITEPOSE_HOST_TUNING=0` turns 2 and 3 off.

Also: quieter logs (orbax logs every save at INFO, JAX "no TPU backend") and TensorFlow kept off the
accelerator (the input pipeline's TF must not take the GPU or its memory from JAX).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import pathlib
import re
import sys
import traceback
from typing import Optional

CACHE_ENV = 'LITEPOSE_JAX_CACHE_DIR'
DEFAULT_CACHE_DIR = pathlib.Path(__file__).resolve().parents[1] / '.cache' / 'jax'
TUNING_ENV = 'LITEPOSE_HOST_TUNING'
VECTOR_FLAG = '--xla_cpu_prefer_vector_width'
# glibc mallopt parameters and our values (see the module doc).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MALLOPT = ((_M_MMAP_THRESHOLD, 1 << 30), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20))


def setup(*, host_tuning: bool = False, distributed: bool = False, log_info: bool = False) -> None:
  """Start-up of an entry point; call it before JAX's first computation.

  Args:
    host_tuning: apply the inference CPU settings (vector width, allocator; module doc 2-3).
    distributed: `jax.distributed.initialize()` first (Cloud TPU / SLURM: coordinator, process count
      and id come from the environment). Implied when $LITEPOSE_COORDINATOR is set (litepose_jax.launch).
    log_info: INFO-level log lines with time stamps (the training entries).
  """
  if log_info:
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s', force=True)
  logging.getLogger('absl').setLevel(logging.WARNING)   # orbax logs every save / restore at INFO
  logging.getLogger('jax._src.xla_bridge').setLevel(logging.WARNING)   # "no TPU backend" on CPU/GPU
  if host_tuning:
    tune_host()
  import jax  # pylint: disable=g-import-not-at-top
  if distributed or os.environ.get(COORDINATOR_ENV):
    initialize_distributed()
    if log_info and jax.process_count() > 1:   # which worker wrote a line (errors come from every one)
      logging.basicConfig(level=logging.INFO, force=True, format=(
          f'%(asctime)s process {jax.process_index()}/{jax.process_count()} %(levelname)s %(message)s'))
  hide_gpus_from_tensorflow()
  enable_compile_cache()


def hide_gpus_from_tensorflow() -> None:
  """TensorFlow (tf.data) must not take the accelerator or its memory from JAX; no-op without TF."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  tf.config.set_visible_devices([], 'GPU')


# -- multi-process start-up ------------------------------------------------------------------------------

COORDINATOR_ENV = 'LITEPOSE_COORDINATOR'        # host:port of process 0's coordination service
NUM_PROCESSES_ENV = 'LITEPOSE_NUM_PROCESSES'
PROCESS_ID_ENV = 'LITEPOSE_PROCESS_ID'
COLLECTIVES_ENV = 'LITEPOSE_CPU_COLLECTIVES'    # 'gloo' (or 'mpi'): cross-process collectives on CPU
HEARTBEAT_ENV = 'LITEPOSE_HEARTBEAT_TIMEOUT'    # seconds before a silent peer counts as dead (JAX: 100)


def initialize_distributed() -> None:
  """`jax.distributed.initialize` from $LITEPOSE_* (litepose_jax.launch) or, without them, JAX's cluster
  auto-detection (Cloud TPU VMs, SLURM, Open MPI, ...).

  $LITEPOSE_HEARTBEAT_TIMEOUT shortens how long the job waits for a dead peer: after that many seconds
  without a heartbeat the coordination service reports the peer dead and the surviving processes stop
  with an error naming it (instead of hanging in the next collective).
  """
  import jax  # pylint: disable=g-import-not-at-top
  collectives = os.environ.get(COLLECTIVES_ENV)
  if collectives:
    jax.config.update('jax_cpu_collectives_implementation', collectives)
  kwargs = {}
  if os.environ.get(HEARTBEAT_ENV):
    kwargs['heartbeat_timeout_seconds'] = int(os.environ[HEARTBEAT_ENV])
  coordinator = os.environ.get(COORDINATOR_ENV)
  if coordinator:
    kwargs.update(coordinator_address=coordinator, num_processes=int(os.environ[NUM_PROCESSES_ENV]),
                  process_id=int(os.environ[PROCESS_ID_ENV]))
  jax.distributed.initialize(**kwargs)


def abort_job(error: BaseException) -> None:
  """Ends this process of a multi-process job at once after `error`, with status 1.

  A normal exit would wait in jax.distributed's shutdown barrier for peers that are dead (until the
  heartbeat timeout) or blocked in a collective waiting for this process (until the shutdown timeout, 300
  s): neither helps. os._exit closes this process's connections, so the peers' next collective fails at
  once and they stop too (each through this function). The error is logged first with the process index.
  """
  import sys  # pylint: disable=g-import-not-at-top
  import traceback  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  hint = ''
  if 'gloo' in str(error).lower() or 'connection' in str(error).lower() or 'barrier' in str(error).lower():
    hint = ' (a collective with the other processes failed: another process has probably died; see its output)'
  message = (f'process {jax.process_index()} of {jax.process_count()}: stopping the job after '
             f'{type(error).__name__}: {error}{hint}')
  traceback.print_exception(error, file=sys.stderr)
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.stdout.flush()
  os._exit(1)


# -- 1. compilation cache --------------------------------------------------------------------------------

def cache_dir() -> Optional[str]:
  """The folder the entries use, or None when the cache is turned off."""
  path = os.environ.get(CACHE_ENV)
  if path is None:
    path = os.environ.get('JAX_COMPILATION_CACHE_DIR') or str(DEFAULT_CACHE_DIR)
  return None if path in ('', 'off') else path


def enable_compile_cache(path: Optional[str] = None, min_compile_secs: float = 1.0) -> Optional[str]:
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


# -- 2, 3. host tuning ----------------------------------------------------------------------------------

def _cpu_flags() -> set:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('flags'):
          return set(line.split(':', 1)[1].split())
  except OSError:
    pass
  return set()


def _tuning_off() -> bool:
  return os.environ.get(TUNING_ENV, '1') == '0'


def keep_freed_memory() -> bool:
  """Sets glibc's allocator to keep freed memory for reuse (module doc, 3).

  Returns:
    Whether every setting was accepted (False: turned off, or not a glibc system, e.g. macOS or musl).
  """
  if _tuning_off():
    return False
  try:
    mallopt = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').mallopt
  except (OSError, AttributeError):
    return False
  return all([mallopt(param, value) == 1 for param, value in MALLOPT])  # a list: apply every one


def add_vector_flag() -> bool:
  """Adds `--xla_cpu_prefer_vector_width=512` to XLA_FLAGS on AVX-512 CPUs (module doc, 2).

  Returns:
    Whether the flag was added (False: turned off, already set by the user, or no AVX-512).
  """
  flags = os.environ.get('XLA_FLAGS', '')
  if _tuning_off() or VECTOR_FLAG in flags or 'avx512f' not in _cpu_flags():
    return False
  os.environ['XLA_FLAGS'] = f'{flags} {VECTOR_FLAG}=512'.strip()
  return True


def tune_host() -> bool:
  """Applies both host settings (call it before JAX's first computation).

  Returns:
    Whether the vector flag was added (see `add_vector_flag`).
  """
  keep_freed_memory()
  return add_vector_flag()


# -- bad input: one `error: <where>: <problem>` line on stderr, exit 1 (2 for bad flags), no traceback ----
#   app.run(main, flags_parser=runtime.parse_flags)    # absl entry points: a config typo is one line
#   sys.exit(runtime.fail(e))                          # print one line for an exception, return the exit code
# Set LITEPOSE_TRACEBACK=1 to get the traceback as well.

# The errors that mean "bad input" (files, flags, data), not "bug".
INPUT_ERRORS = (ValueError, FileNotFoundError, OSError, KeyError, AttributeError)


def one_line(e: BaseException) -> str:
  """An exception as one readable line (ml_collections' messages carry literal quotes and '\\n')."""
  text = str(e.args[0]) if isinstance(e, (KeyError, AttributeError)) and e.args else str(e)
  text = text.replace('\\n', ' ').replace("\\'", "'")
  text = re.sub(r'\s+', ' ', text).strip()
  text = re.sub(r"^'?'([^']+)'?'? (Did you mean)", r"no such key '\1'. \2", text)  # ml_collections
  if text.endswith("'") and text.count("'") % 2:   # an unbalanced closing quote (ml_collections' repr)
    text = text[:-1]
  return text or type(e).__name__


def fail(e: BaseException, where: str | None = None, code: int = 1) -> int:
  """Prints `error: [where: ]problem` for `e` and returns `code` (for sys.exit)."""
  msg = one_line(e)
  if where and str(where) not in msg:
    msg = f'{where}: {msg}'
  print(f'error: {msg}', file=sys.stderr)
  if os.environ.get('LITEPOSE_TRACEBACK'):
    traceback.print_exception(e)
  return code


def parse_flags(argv):
  """absl flags parser for app.run: a bad flag or config override (e.g. --config.optimizer.lrr=1) is one
  line and exit 2 instead of a traceback."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    return flags.FLAGS(argv)
  except (flags.Error, *INPUT_ERRORS) as e:
    overrides = [a.split('=')[0] for a in argv[1:] if a.startswith('--config.')]
    # The override the message is about: the one whose last key it names (else the first).
    named = [a for a in overrides if re.search(rf"\b{re.escape(a.split('.')[-1])}\b", str(e))]
    bad = named[-1:] or overrides[:1]
    where = bad[0] if bad and not isinstance(e, flags.Error) else None
    sys.exit(fail(e, where=where, code=2))


def parse_module_flags(flag_values, argv, doc: str) -> Optional[int]:
  """Parses a `python -m litepose_jax.X` entry point's flags into its own absl FlagValues.

  A private FlagValues per call (not absl's global FLAGS) keeps `main(argv)` callable repeatedly from
  tests and scripts. The dashed spellings of earlier releases (`--num-keypoints`, `--no-verify`) still
  work for one release, with a one-line note.

  Args:
    flag_values: the entry point's freshly defined absl FlagValues.
    argv: the arguments without the program name (None: sys.argv[1:]).
    doc: the module docstring, printed by --help above the flags.

  Returns:
    None when parsed (values in `flag_values`), else the exit code for main to return: 0 after --help,
    2 after a bad flag (printed as one `error:` line).
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  argv = list(sys.argv[1:] if argv is None else argv)
  if any(a in ('-h', '--help', '-help', '--helpfull', '--helpshort') for a in argv):
    print(doc.strip() + '\n\nflags:\n' + flag_values.get_help(include_special_flags=False))
    return 0
  renamed = []
  for i, arg in enumerate(argv):
    name, sep, value = arg[2:].partition('=') if arg.startswith('--') else ('', '', '')
    if '-' not in name:
      continue
    new = name.replace('-', '_')
    if new.startswith('no_') and new[3:] in flag_values and flag_values[new[3:]].boolean:
      new = 'no' + new[3:]   # --no-verify → --noverify (absl's negation of --verify)
    if new in flag_values or (new[:2] == 'no' and new[2:] in flag_values):
      argv[i] = f'--{new}{sep}{value}'
      renamed.append(f'--{name} is now --{new}')
  if renamed:
    print(f'note: {", ".join(renamed)} (the dashed spellings go in the next release)', file=sys.stderr)
  try:
    rest = flag_values(['prog'] + argv)
  except flags.Error as e:
    missing = re.search(r'Flag (--\w+) must have a value other than None', str(e))
    return fail(ValueError(f'{missing.group(1)} is required (see --help)') if missing else e, code=2)
  if len(rest) > 1:
    return fail(ValueError(f'unexpected arguments {rest[1:]} (flags are --name=value)'), code=2)
  return None
