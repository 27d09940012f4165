"""Small helpers that simple_metrics_manager exported, for code written against it."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable
from typing import Any

__all__ = ["doublewrap_class_method", "today"]


def today() -> str:
    """Today's local date as ``'YYYY-MM-DD'``, the form of the seed's date sidecars.

    Examples
    --------
    >>> import time
    >>> today() == time.strftime("%Y-%m-%d")  # barring a midnight in between
    True
    """
    return datetime.date.today().isoformat()


def doublewrap_class_method(method: Callable[..., Any]) -> Callable[..., Any]:
    """Let a decorator method be used bare (``@obj.deco``) or with arguments (``@obj.deco(x=1)``).

    *method* is called as ``method(self, function, *args, **kwargs)``. Used bare,
    the decorator receives one callable and no keywords; anything else is taken as
    decorator arguments.

    Examples
    --------
    >>> class Registry:
    ...     @doublewrap_class_method
    ...     def register(self, function, label="plain"):
    ...         function.label = label
    ...         return function
    >>> registry = Registry()
    >>> @registry.register
    ... def f(): pass
    >>> @registry.register(label="fancy")
    ... def g(): pass
    >>> f.label, g.label
    ('plain', 'fancy')
    """

    @functools.wraps(method)
    def decorator(self: Any, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and callable(args[0]):
            return method(self, args[0])
        return lambda function: method(self, function, *args, **kwargs)

    return decorator
