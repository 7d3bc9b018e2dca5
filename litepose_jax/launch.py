"""Runs N processes of an entry point on this machine as one multi-process JAX job (CPU, gloo collectives).

  python -m litepose_jax.launch --num_processes=2 train.py --config=configs/tiny.py --workdir=/tmp/mp
  python -m litepose_jax.launch --num_processes=2 evaluate.py --config=configs/demo.py --ckpt=workdirs/demo

For tests and for debugging a pod-slice configuration on one box: every process runs the same command,
as the workers of a Cloud TPU slice or the ranks of a SLURM job would. The launcher picks a free
coordinator port and passes the job through the environment (`runtime.setup` reads it in every entry
point, no flag needed):

  LITEPOSE_COORDINATOR=127.0.0.1:PORT  LITEPOSE_NUM_PROCESSES=N  LITEPOSE_PROCESS_ID=i
  LITEPOSE_CPU_COLLECTIVES=gloo        LITEPOSE_HEARTBEAT_TIMEOUT=S (how soon a dead peer is noticed)
  JAX_PLATFORMS=cpu (unless set)       XLA_FLAGS=--xla_force_host_platform_device_count=D (--devices_per_process)

Each output line is prefixed with its process index ("[0] ...", "[1] ..."). The launcher exits with the
first non-zero status of a process (a signal's death as 128 + signal number) after ending the others
(SIGTERM, then SIGKILL after --grace seconds), or 0 when all exit 0. A SIGTERM / SIGINT to the launcher is
passed on to every process (training saves a checkpoint and exits 0). On real multi-host machines do not
use this: run the entry point on every host with `--distributed` (docs/accelerators.md).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import List, Optional, Sequence

from litepose_jax.runtime import COLLECTIVES_ENV, COORDINATOR_ENV, HEARTBEAT_ENV, NUM_PROCESSES_ENV
from litepose_jax.runtime import PROCESS_ID_ENV


def free_port() -> int:
  """A TCP port nobody listens on now (the coordinator binds it a moment later)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def process_env(process_id: int, num_processes: int, port: int, devices_per_process: int = 1,
                heartbeat_timeout: int = 0, base: Optional[dict] = None) -> dict:
  """The environment of process `process_id` of a local job."""
  env = dict(os.environ if base is None else base)
  env.update({COORDINATOR_ENV: f'127.0.0.1:{port}', NUM_PROCESSES_ENV: str(num_processes),
              PROCESS_ID_ENV: str(process_id), COLLECTIVES_ENV: 'gloo', 'PYTHONUNBUFFERED': '1'})
  env.setdefault('JAX_PLATFORMS', 'cpu')
  if heartbeat_timeout:
    env[HEARTBEAT_ENV] = str(int(heartbeat_timeout))
  flag = '--xla_force_host_platform_device_count'
  if devices_per_process > 1 and flag not in env.get('XLA_FLAGS', ''):
    env['XLA_FLAGS'] = f'{env.get("XLA_FLAGS", "")} {flag}={devices_per_process}'.strip()
  return env


def _pump(index: int, stream, out, lock: threading.Lock):
  """Copies a process's output line by line, prefixed with its index."""
  for line in iter(stream.readline, ''):
    with lock:
      out.write(f'[{index}] {line}' if line.endswith('\n') else f'[{index}] {line}\n')
      out.flush()
  stream.close()


def _status(returncode: int) -> int:
  return 128 - returncode if returncode < 0 else returncode


def _describe(returncode: int) -> str:
  if returncode < 0:
    try:
      return f'was killed by {signal.Signals(-returncode).name}'
    except ValueError:
      return f'was killed by signal {-returncode}'
  return f'exited with status {returncode}'


def run(command: Sequence[str], num_processes: int, devices_per_process: int = 1, port: int = 0,
        heartbeat_timeout: int = 0, grace: float = 30.0, out=None) -> int:
  """Starts `num_processes` copies of `command` (argv, run with this Python when it names a .py file),
  relays their output and returns the job's exit status (module doc)."""
  out = out or sys.stdout
  argv = list(command)
  if argv and (argv[0].endswith('.py') or argv[0] == '-m'):
    argv = [sys.executable, '-u'] + argv
  port = port or free_port()
  lock = threading.Lock()
  with lock:
    out.write(f'launching {num_processes} processes: coordinator 127.0.0.1:{port}, gloo CPU collectives, '
              f'{devices_per_process} device(s) each\n')
    out.flush()
  procs: List[subprocess.Popen] = []
  pumps = []
  for i in range(num_processes):
    p = subprocess.Popen(argv, env=process_env(i, num_processes, port, devices_per_process, heartbeat_timeout),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors='replace')
    procs.append(p)
    t = threading.Thread(target=_pump, args=(i, p.stdout, out, lock), daemon=True)
    t.start()
    pumps.append(t)

  def forward(signum, frame):
    del frame
    for p in procs:
      if p.poll() is None:
        p.send_signal(signum)

  old = {}
  if threading.current_thread() is threading.main_thread():
    for sig in (signal.SIGTERM, signal.SIGINT):
      old[sig] = signal.signal(sig, forward)
  status, failed = 0, None
  try:
    while any(p.poll() is None for p in procs):
      for i, p in enumerate(procs):
        if failed is None and p.poll() not in (None, 0):
          failed, status = i, _status(p.returncode)
          with lock:
            out.write(f'launch: process {i} {_describe(p.returncode)}; ending the others\n')
            out.flush()
          _end(procs, grace)
      time.sleep(0.05)
  finally:
    for sig, handler in old.items():
      signal.signal(sig, handler)
    _end(procs, grace)
  for t in pumps:
    t.join(timeout=5)
  if failed is None:
    for i, p in enumerate(procs):
      if p.returncode:
        failed, status = i, _status(p.returncode)
        out.write(f'launch: process {i} {_describe(p.returncode)}\n')
        break
  return status


def _end(procs: Sequence[subprocess.Popen], grace: float):
  """SIGTERM to the running processes, SIGKILL to those still running after `grace` seconds."""
  running = [p for p in procs if p.poll() is None]
  for p in running:
    p.terminate()
  deadline = time.monotonic() + grace
  for p in running:
    try:
      p.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m litepose_jax.launch', description=__doc__.split('\n\n')[0],
      usage='python -m litepose_jax.launch --num_processes=N [options] SCRIPT.py|-m MODULE [arguments]')
  parser.add_argument('--num_processes', type=int, required=True)
  parser.add_argument('--devices_per_process', type=int, default=1, help='fake CPU devices per process')
  parser.add_argument('--port', type=int, default=0, help='coordinator port (default: a free one)')
  parser.add_argument('--heartbeat_timeout', type=int, default=0,
                      help='seconds without a heartbeat before a peer counts as dead (default: JAX\'s, '
                           '100 s; the launcher itself ends the others as soon as one process fails)')
  parser.add_argument('--grace', type=float, default=30.0,
                      help='seconds the others get to exit after a failure before SIGKILL')
  argv = list(sys.argv[1:] if argv is None else argv)
  # The launcher's options come first; the command starts at the first word that is not one of them
  # (SCRIPT.py, -m MODULE, or a program).
  split = next((i for i, a in enumerate(argv) if a == '-m' or not a.startswith('--')), len(argv))
  if split < len(argv) and split > 0 and '=' not in argv[split - 1] and argv[split - 1] in (
      '--num_processes', '--devices_per_process', '--port', '--heartbeat_timeout', '--grace'):
    split = next((i for i, a in enumerate(argv) if i > split and (a == '-m' or not a.startswith('--'))),
                 len(argv))
  args = parser.parse_args(argv[:split])
  args.command = argv[split:]
  if not args.command:
    parser.error('no command to launch (e.g. train.py --config=... --workdir=...)')
  if args.num_processes < 1:
    parser.error('--num_processes must be at least 1')
  return run(args.command, args.num_processes, args.devices_per_process, args.port, args.heartbeat_timeout,
             args.grace)


if __name__ == '__main__':
  sys.exit(main())
