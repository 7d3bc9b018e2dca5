"""Training-loop reporting: metric files (TensorBoard events + JSON lines), progress bar / plain lines,
parameter table.

TensorBoard events are written by tensorboardX (no TensorFlow: the GPU hosts have none); gs:// workdirs
need google-cloud-storage installed (tensorboardX's GCS writer), metrics.jsonl works on any epath.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from typing import Any, Mapping, Optional

import jax
import numpy as np
from etils import epath

log = logging.getLogger(__name__)


class _AppendFile:
  """An append-only file. Object stores (gs://) cannot append, so there the content is rewritten on flush
  (the metric file stays small: about 1 MB per 10k logged steps)."""

  def __init__(self, path: epath.Path):
    self._path = path
    self._remote = '://' in str(path)
    self._buf = bytearray()
    self._f = None if self._remote else open(path, 'ab')

  def write(self, data: bytes):
    if self._remote:
      self._buf += data
    else:
      self._f.write(data)

  def flush(self):
    if self._remote:
      self._path.write_bytes(bytes(self._buf))
    else:
      self._f.flush()

  def close(self):
    self.flush()
    if self._f is not None:
      self._f.close()


class MetricWriter:
  """Scalars to TensorBoard events and `<logdir>/metrics.jsonl`, on process 0 only.

  Args:
    logdir: output directory (the workdir).
    enabled: False on every process but 0, so a multi-host run writes once.
  """

  def __init__(self, logdir: epath.PathLike, enabled: bool = True):
    self.enabled = enabled
    self._jsonl = self._events = None
    if not enabled:
      return
    logdir = epath.Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    self._jsonl = _AppendFile(logdir / 'metrics.jsonl')
    import tensorboardX  # pylint: disable=g-import-not-at-top
    self._events = tensorboardX.SummaryWriter(str(logdir), flush_secs=1)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    """Writes `{name: number}` at `step`."""
    if not self.enabled or not scalars:
      return
    values = {k: float(v) for k, v in scalars.items()}
    self._jsonl.write((json.dumps({'step': int(step), **values}) + '\n').encode())
    self._jsonl.flush()
    for name, value in values.items():
      self._events.add_scalar(name, value, int(step))
    self._events.flush()

  def close(self):
    if self._jsonl is not None:
      self._jsonl.close()
      self._events.close()
      self._jsonl = self._events = None


def _fmt_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  seconds = int(seconds)
  return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


def format_metrics(metrics: Mapping[str, float]) -> str:
  """'loss 0.0123 heatmap_0 0.0101 ...' with short, aligned numbers."""
  return ' '.join(f'{k} {v:.4g}' for k, v in metrics.items())


class Progress:
  """A tqdm bar with ETA on a terminal, plain log lines with ETA otherwise (e.g. under a job scheduler).

  Args:
    total: the last step of the run.
    start: the step the run (re)starts from.
    enabled: False on every process but 0.
  """

  def __init__(self, total: int, start: int, enabled: bool = True):
    self.total, self.start, self.enabled = total, start, enabled
    self._t0 = time.perf_counter()
    self._bar = None
    if enabled and sys.stderr.isatty():
      import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm.tqdm(total=total, initial=start, unit='step', dynamic_ncols=True)

  def reset_clock(self, step: int):
    """Restarts the ETA clock (after the first step, so compilation does not distort it)."""
    self._t0, self.start = time.perf_counter(), step

  def update(self, step: int, metrics: Optional[Mapping[str, float]] = None):
    """Marks `step` done; `metrics` (on log steps) are shown in the bar or printed as a line."""
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.update(step - self._bar.n)
      if metrics:
        self._bar.set_postfix_str(format_metrics(metrics), refresh=False)
      return
    if metrics:
      rate = (step - self.start) / max(time.perf_counter() - self._t0, 1e-9)
      eta = (self.total - step) / rate if rate > 0 else float('inf')
      log.info('step %d/%d (%.1f%%) %s | ETA %s', step, self.total, 100.0 * step / self.total,
               format_metrics(metrics), _fmt_duration(eta))

  def close(self):
    if self._bar is not None:
      self._bar.close()
      self._bar = None


def parameter_overview(params: Any, batch_stats: Any = None) -> str:
  """A table of parameter counts per top-level module, and the totals.

  Args:
    params: the 'params' collection.
    batch_stats: the 'batch_stats' collection (counted in the footer).
  Returns:
    The table as text.
  """
  rows = []
  for name, sub in params.items():
    leaves = jax.tree_util.tree_leaves_with_path(sub)
    count = sum(int(np.prod(x.shape)) for _, x in leaves)
    shapes = ', '.join(f'{jax.tree_util.keystr(p, simple=True, separator="/")}{list(x.shape)}'
                       for p, x in leaves[:3])
    rows.append((name, count, shapes + (' ...' if len(leaves) > 3 else '')))
  width = max(len(r[0]) for r in rows)
  lines = [f'{"module":<{width}}  {"params":>9}  leaves']
  lines += [f'{n:<{width}}  {c:>9,}  {s}' for n, c, s in rows]
  total = sum(r[1] for r in rows)
  stats = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(batch_stats)) if batch_stats else 0
  lines.append(f'total: {total:,} parameters ({total * 4 / 2**20:.2f} MiB float32), '
               f'{stats:,} BatchNorm statistics')
  return '\n'.join(lines)
