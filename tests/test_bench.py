"""The benchmarks are not run by the suite (speed is measured, not asserted), so their imports of the package
are checked here: a module renamed or moved in the library must not leave a benchmark that fails at start."""

import ast
import importlib
import pathlib

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / 'bench'


def _package_imports(path: pathlib.Path):
  """Yields (module, name or None) for every `from litepose_jax... import name` / `import litepose_jax...`."""
  for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split('.')[0] == 'litepose_jax':
      for alias in node.names:
        yield node.module, alias.name
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.split('.')[0] == 'litepose_jax':
          yield alias.name, None


@pytest.mark.parametrize('script', sorted(p.name for p in BENCH.glob('*.py')))
def test_benchmark_imports_resolve(script):
  missing = []
  for module, name in _package_imports(BENCH / script):
    try:
      mod = importlib.import_module(module)
    except ImportError as e:
      missing.append(f'{module}: {e}')
      continue
    if name is not None and not hasattr(mod, name):
      try:
        importlib.import_module(f'{module}.{name}')
      except ImportError:
        missing.append(f'{module}.{name}')
  assert not missing, f'bench/{script} imports what the package no longer has: {missing}'


def test_the_scan_sees_the_imports():
  # The check above passes vacuously if the scan finds nothing: the CPU-runtime benchmark imports the package.
  assert ('litepose_jax', 'runtime') in set(_package_imports(BENCH / 'cpu_runtimes.py'))
