"""The two functions ``collect`` hands out: ``CM.<name>`` and the decorated function."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._keys import Key, param_key
from .exceptions import InvalidMetricNameError

if TYPE_CHECKING:
    from ._parameterized import CollectedMetric

__all__ = ["RESERVED", "make_decorated", "make_front"]

#: Keywords of the decorated function, unless the function has such a parameter.
RESERVED = ("cache", "use_stored")
_NO_ARGUMENT: Any = object()


def make_front(
    collected: CollectedMetric,
    cache: dict[str, Any],
    plain: str | None,
    resolved: dict[Key, str],
    takes_nothing: bool,
) -> Callable[..., Any]:
    """``CM.<base_name>``: *collected*'s cached call, carrying the seed's attributes.

    A closure rather than the object: calling a function skips the class-call
    dispatch, which keeps a memory hit of ``CM.metric()`` near a dict lookup, and
    a positional call already resolved (*resolved*: keys of the arguments -> name)
    costs their keys and two dict lookups.
    """
    slow, get = collected.__call__, collected._manager.get

    def reroute(values: dict[str, Any]) -> None:
        # While a metric computes, the manager points every front at an empty dict:
        # memory hits then take the slow path, which records them as dependencies,
        # and the hot path stays one dict lookup (no check) the rest of the time.
        nonlocal cache
        cache = values

    def metric(*args: Any, **kwargs: Any) -> Any:
        if kwargs:
            return slow(*args, **kwargs)
        if args:
            try:
                name = resolved[tuple(map(param_key, args))]
            except (KeyError, InvalidMetricNameError):  # unresolved, or no key: slow path
                return slow(*args)
        elif plain is None:
            return slow()
        else:
            name = plain
        try:
            return cache[name]
        except KeyError:
            return get(name)

    def plain_metric(
        _positional: Any = _NO_ARGUMENT,
        use_stored: bool = True,
        verbose: bool | None = None,
        on_stale: str | None = None,
    ) -> Any:
        # Keyword-only parameters would keep CPython from specialising this call
        # (measured: +30 ns); a first parameter no caller fills stands in for "*".
        if _positional is not _NO_ARGUMENT:
            raise TypeError(f"{collected.base_name}() takes no positional arguments")
        if use_stored:
            try:
                return cache[plain]  # type: ignore[index]
            except KeyError:
                pass
        return slow(use_stored=use_stored, verbose=verbose, on_stale=on_stale)

    if takes_nothing and plain is not None:
        metric = plain_metric
    functools.update_wrapper(metric, collected.original_function)
    vars(metric).update(
        original_function=collected.original_function,
        base_name=collected.base_name,
        params_list=collected.params_list,
        name_generation_function=collected.name_generation_function,
        get_all=collected.get_all,
        metric_name=collected.metric_name,
        collected=collected,
        _reroute=reroute,
    )
    return metric


def make_decorated(
    function: Callable[..., Any], ours: frozenset[str], metric: Callable[..., Any]
) -> Callable[..., Any]:
    """The decorated function: the original, unless called with ``cache=True``.

    *ours* are the :data:`RESERVED` words no parameter of *function* is named:
    only those are the wrapper's keywords. A function with a parameter ``cache``
    gets it, and ``CM.<name>(...)`` is its way through the cache.
    """
    wrapper_cache, wrapper_use_stored = "cache" in ours, "use_stored" in ours

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if wrapper_cache and kwargs.pop("cache", False):
            return metric(*args, **kwargs)  # use_stored=, verbose= go along
        if wrapper_use_stored:
            kwargs.pop("use_stored", None)  # meaningless without the cache, as in the seed
        return function(*args, **kwargs)

    return wrapper
