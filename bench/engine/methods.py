"""The methods of ``methods/``, looked up by name: discovery, hyper-parameters, source files."""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
from pathlib import Path
from typing import Any

from bench.core.errors import check_keys
from bench.workloads.method import METHODS, Method


def all_methods() -> dict[str, type[Method]]:
    """Every registered method (imports each module of the `methods` package once)."""
    return METHODS.all()


def get_method(name: str) -> type[Method]:
    return METHODS.get(name)


def resolve_hparams(cls: type[Method], overrides: dict[str, Any]) -> dict[str, Any]:
    """The method's defaults updated by `overrides`; unknown keys are a ConfigError."""
    check_keys(f"hyper-parameters of method {cls.name!r}", overrides, cls.defaults)
    return {**cls.defaults, **overrides}


def _imported_modules(path: Path) -> frozenset[str]:
    """The bench./methods. modules a source file imports at its top (statically, from its AST)."""
    return _parsed_imports(path, path.stat().st_mtime_ns)


@functools.cache
def _parsed_imports(path: Path, mtime_ns: int) -> frozenset[str]:
    """Memoised by the file's modification time: the workflow asks for a run's sources every time it
    re-evaluates its plan (after each tuning job), and parsing every source of every run each time
    cost the Snakemake process several CPU-minutes per catalogue."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return frozenset(n for n in names if n.split(".")[0] in ("bench", "methods"))


@functools.cache
def _module_file(name: str) -> Path | None:
    spec = importlib.util.find_spec(name) if name.split(".")[0] in ("bench", "methods") else None
    return Path(spec.origin).resolve() if spec and spec.origin and spec.origin.endswith(".py") else None


def harness_sources(roots: list[str]) -> list[Path]:
    """Every bench/methods source file that the modules `roots` import, transitively: the code a
    run's numbers depend on (not the claims, report or command-line code, which only read results)."""
    seen: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            path = _module_file(name)
        except ModuleNotFoundError:
            path = None
        if path is None:
            continue  # a name imported from a module (a class, a function), not a module itself
        seen[name] = path
        todo.extend(_imported_modules(path))
    return sorted(set(seen.values()))


def source_files(cls: type[Method]) -> list[Path]:
    """The method-package files a method's code comes from (its class and its bases), so that
    editing any of them reruns exactly the runs that use the method."""
    files = []
    for klass in inspect.getmro(cls):
        module = inspect.getmodule(klass)
        if module is not None and module.__name__.startswith("methods."):
            path = Path(inspect.getfile(module)).resolve()
            if path not in files:
                files.append(path)
    return files
