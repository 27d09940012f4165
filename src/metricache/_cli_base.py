"""What every ``metricache`` command shares: the folder object, errors, formatting."""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import click

from ._auto import AutoStorageInterface
from ._folder import Row, folder_rows
from ._fsstore import is_remote, local_path_of
from ._manager import DatedCacheManager
from .exceptions import MetricacheError

__all__ = [
    "Folder",
    "parse_storage_options",
    "MetricacheGroup",
    "collected_names",
    "human_size",
    "load_manager",
    "matches",
    "matching",
    "pass_folder",
    "table",
]


@dataclass
class Folder:
    """The cache folder a command works on, opened without the user's code.

    *path* is a local folder or an fsspec URL (``s3://bucket/prefix``), which
    *storage_options* (``--storage-option``) configure.
    """

    path: str
    storage_options: dict[str, Any] | None = None
    _manager: Any = field(default=None, repr=False)

    @property
    def remote(self) -> bool:
        """Whether the folder is an fsspec URL (not a local folder)."""
        return is_remote(self.path)

    @property
    def manager(self) -> Any:
        """A manager over every format in the folder, defining no metric."""
        if self._manager is None:
            self._manager = DatedCacheManager(self._open(), verbose=False)
        return self._manager

    def _open(self) -> AutoStorageInterface:
        if self.remote:
            return AutoStorageInterface(self.path, storage_options=self.storage_options or {})
        if self.storage_options:
            raise click.UsageError("--storage-option is for remote folders (--dir s3://...)")
        if not os.path.isdir(local_path_of(self.path)):
            raise click.ClickException(f"{self.path!r} is not a folder")
        return AutoStorageInterface(self.path)

    @property
    def storage(self) -> AutoStorageInterface:
        """The folder's storage interface."""
        storage: AutoStorageInterface = self.manager.storage_interface
        return storage

    def use(self, spec: str | None) -> None:
        """Use the manager *spec* (``MODULE:MANAGER``) names, when given."""
        if spec:
            self._manager = load_manager(spec)

    def rows(self, patterns: Iterable[str] = ()) -> list[Row]:
        """The folder's entries whose names match any of *patterns* (all without any)."""
        families = _families(self.manager)
        rows = folder_rows(self.manager, families)
        return [r for r in rows if matches(r.name, patterns)]


pass_folder = click.make_pass_decorator(Folder)


class MetricacheGroup(click.Group):
    """A group that renders metricache's errors and OS errors as click errors (no traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MetricacheError as err:
            raise click.ClickException(str(err)) from None
        except OSError as err:  # a folder that cannot be read or written: say so, plainly
            raise click.ClickException(f"{type(err).__name__}: {err}") from None


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether *name* matches any glob in *patterns* (every name, for none)."""
    patterns = list(patterns)
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def matching(names: Iterable[str], pattern: str) -> list[str]:
    """The *names* matching *pattern*; a click error naming the pattern if none do."""
    found = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    if not found:
        raise click.ClickException(f"no stored entry matches {pattern!r} (see metricache ls)")
    return found


def load_manager(spec: str) -> Any:
    """Import ``MODULE:MANAGER`` (the current folder is importable) and return the manager."""
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise click.BadParameter(f"cannot import {module_name!r}: {err}") from None
    if attr:
        try:
            return getattr(module, attr)
        except AttributeError:
            raise click.BadParameter(f"module {module_name!r} has no {attr!r}") from None
    found = [v for v in vars(module).values() if isinstance(v, DatedCacheManager)]
    if len(found) != 1:
        raise click.BadParameter(
            f"module {module_name!r} defines {len(found)} managers; name one as MODULE:MANAGER"
        )
    return found[0]


def collected_names(front: Any) -> list[str]:
    """The metric names a collected metric (``CM.<base_name>``) declares."""
    # The front carries get_all, bound to the collected metric that knows its names.
    collected = getattr(getattr(front, "get_all", None), "__self__", None)
    return [name for name, _, _ in getattr(collected, "declarations", list)()]


def _families(manager: Any) -> dict[str, str]:
    """Name -> base name of the manager's collected metrics (empty without any)."""
    found: dict[str, str] = {}
    for front in getattr(manager, "parameterized_metrics", []):
        for name in collected_names(front):
            found[name] = getattr(front, "base_name", name)
    return found


def human_size(n: int | None) -> str:
    """``1.5 MiB`` style sizes (empty for unknown)."""
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def table(header: list[str], lines: list[list[str]]) -> str:
    """Plain columns, padded to fit."""
    cells = [header, *lines]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(out)


def parse_storage_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``--storage-option`` values as fsspec options: ``key=value``, dots nest keys.

    A value that reads as JSON (``true``, ``3``, ``{"a": 1}``) is that value, any
    other is a string: ``client_kwargs.endpoint_url=http://127.0.0.1:9000``.
    """
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--storage-option")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        *parents, last = key.split(".")
        place = options
        for part in parents:
            place = place.setdefault(part, {})
            if not isinstance(place, dict):
                raise click.BadParameter(
                    f"{key!r} nests inside a value", param_hint="--storage-option"
                )
        place[last] = value
    return options
