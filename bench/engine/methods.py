"""The methods of ``methods/``, looked up by name: discovery, hyper-parameters, source files."""

from __future__ import annotations

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
