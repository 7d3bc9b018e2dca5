"""What every entry point does with bad input: one `error: <where>: <problem>` line on stderr, exit 1 (2 for
bad flags), no traceback.

  app.run(main, flags_parser=cli.parse_flags)      # absl entry points: a config typo is one line
  sys.exit(cli.fail(e))                            # print one line for an exception, return the exit code
Set LITEPOSE_TRACEBACK=1 to get the traceback as well.
"""

from __future__ import annotations

import os
import re
import sys
import traceback

# The errors that mean "bad input" (files, flags, data), not "bug".
INPUT_ERRORS = (ValueError, FileNotFoundError, OSError, KeyError, AttributeError)


def one_line(e: BaseException) -> str:
  """An exception as one readable line (ml_collections' messages carry literal quotes and '\\n')."""
  text = str(e.args[0]) if isinstance(e, (KeyError, AttributeError)) and e.args else str(e)
  text = text.replace('\\n', ' ').replace("\\'", "'")
  text = re.sub(r'\s+', ' ', text).strip()
  text = re.sub(r"^'?'([^']+)'?'? (Did you mean)", r"no such key '\1'. \2", text)  # ml_collections
  return text.rstrip("'") or type(e).__name__


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
    bad = [a.split('=')[0] for a in argv[1:] if a.startswith('--config.')]
    where = bad[0] if bad and not isinstance(e, flags.Error) else None
    sys.exit(fail(e, where=where, code=2))
