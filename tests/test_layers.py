"""The harness's shape (DESIGN.md, "Layers"): dependencies point one way, no import hides in a
function, the engine dispatches on no attribute, and every method file holds its update."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.engine.methods import all_methods, source_files

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _lint(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--config", str(project / "pyproject.toml")], cwd=project,
                          env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """bench/, methods/ and pyproject.toml in a temporary folder, importable from there."""
    dest = tmp_path_factory.mktemp("layers")
    for folder in ("bench", "methods"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dest)
    return dest


def test_the_layers_contract_holds_and_fails_on_an_injected_cycle(copy):
    kept = _lint(copy)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    core = copy / "bench" / "core" / "spec.py"
    original = core.read_text()
    core.write_text(original + "\nimport bench.engine.train  # an upward import: core would depend on the engine\n")
    try:
        broken = _lint(copy)
    finally:
        core.write_text(original)
    assert broken.returncode != 0
    assert "BROKEN" in broken.stdout and "bench.core.spec -> bench.engine.train" in broken.stdout, broken.stdout


# bench/cli.py, the top layer, which nothing imports, defers the report, tuning-search and benchmark
# modules to the commands that use them: each workflow job is a process and would pay ~1.1 s for
# them. import-linter still checks those imports, and no cycle can pass through a module that
# nothing imports.
DEFERRED_IMPORTS = {ROOT / "bench" / "cli.py"}


@pytest.mark.parametrize("path", [p for p in _python_files("bench", "methods") if p not in DEFERRED_IMPORTS],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_inside_a_function(path):
    """Imports live at the top of a module, so a cycle cannot hide inside a function."""
    tree = ast.parse(path.read_text())
    hidden = [f"line {node.lineno}" for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
              for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not hidden, f"{path.name}: import inside a function at {', '.join(hidden)}"


def test_the_engine_dispatches_on_no_attribute():
    """The engine asks the workload, never `hasattr(model, ...)`."""
    for path in _python_files("bench/engine"):
        calls = [n.lineno for n in ast.walk(ast.parse(path.read_text()))
                 if isinstance(n, ast.Call) and getattr(n.func, "id", None) in ("hasattr", "getattr")]
        assert not calls, f"{path.name}: hasattr/getattr dispatch at lines {calls}"


@pytest.mark.parametrize("name", sorted(all_methods()))
def test_each_method_file_holds_its_whole_update(name):
    """One file per method, subclassing only Method, defining its own step(): no bare `pass`
    classes, no algorithm spread over a chain of base classes in other files."""
    cls = all_methods()[name]
    files = source_files(cls)
    assert files == [Path(sys.modules[cls.__module__].__file__).resolve()], f"{name} spreads over {files}"
    assert "step" in vars(cls), f"{name} does not define its own step()"
