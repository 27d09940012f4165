"""Optional dependencies: imported on first use, with the exact ``pip install`` when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..exceptions import MissingDependencyError

__all__ = ["require"]


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import *module*, or raise :class:`~metricache.MissingDependencyError` naming *extra*.

    *what* says what needed it ("storing a DataFrame"), for the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"{what} needs {module.split('.')[0]}, which is not installed; "
            f"install it with: pip install metricache[{extra}]"
        ) from err
