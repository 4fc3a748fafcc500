"""One generic registry: named plug-ins (model families, workloads, methods, benchmarks).

Each kind of plug-in owns one ``Registry``; modules register into it with a decorator, and the
package that holds the plug-ins is imported on first lookup (``discover``), so adding a plug-in is
adding a file. An unknown name is a ``UnknownName`` error listing the known ones.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from bench.core.errors import unknown

T = TypeVar("T")


class Registry(Generic[T]):
    """name -> plug-in for one kind (e.g. "method"); `packages` are imported before any lookup."""

    def __init__(self, kind: str, packages: tuple[str, ...] = ()):
        self.kind, self.packages = kind, packages
        self._items: dict[str, T] = {}
        self._discovered = False

    def add(self, name: str, item: T) -> T:
        """Register `item` under `name`; a second, different item under the same name is an error."""
        old = self._items.get(name)
        if old is not None and getattr(old, "__module__", None) != getattr(item, "__module__", None):
            raise ValueError(f"{self.kind} {name!r} registered twice ({old.__module__}, {item.__module__})")
        self._items[name] = item
        return item

    def decorator(self, name: str) -> Callable[[T], T]:
        return lambda item: self.add(name, item)

    def discover(self) -> None:
        """Import every module of the plug-in packages once, so that their registrations run."""
        if self._discovered:
            return
        self._discovered = True
        for package in self.packages:
            pkg = importlib.import_module(package)
            for info in pkgutil.iter_modules(pkg.__path__):
                importlib.import_module(f"{package}.{info.name}")

    def all(self) -> dict[str, T]:
        self.discover()
        return dict(self._items)

    def get(self, name: str) -> T:
        items = self.all()
        if name not in items:
            raise unknown(self.kind, name, items)
        return items[name]

    def __contains__(self, name: str) -> bool:
        return name in self.all()

    def __iter__(self) -> Iterator[str]:
        return iter(self.all())
