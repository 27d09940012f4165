"""Binding a call of a collected metric to its function's parameters."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from ._keys import Key, describe, param_key

__all__ = ["Binder", "Call"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_NO_DEFAULT: Any = object()


class Call:
    """One call of a collected function, bound through its signature (defaults applied).

    A slotted class rather than a frozen dataclass: one is made per first call of a
    parameter set, and a frozen dataclass's ``__init__`` costs a few microseconds.
    """

    __slots__ = ("args", "key", "keywords", "kwargs", "positional", "var_keywords")

    def __init__(
        self,
        key: Key,
        positional: tuple[Any, ...],
        keywords: tuple[tuple[str, Any], ...],
        var_keywords: bool,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        #: The canonical key of every argument, in parameter order: equal keys, same call.
        self.key = key
        #: Values of the positional parameters, then any ``*args``.
        self.positional = positional
        #: ``(name, value)`` of keyword-only parameters, then any ``**kwargs`` (sorted).
        self.keywords = keywords
        #: Whether ``**kwargs`` received anything (such names are always hashed).
        self.var_keywords = var_keywords
        #: The arguments as given, which the metric function is called with.
        self.args = args
        self.kwargs = kwargs

    @property
    def values(self) -> tuple[Any, ...]:
        """Every argument value in parameter order (what a custom name generator gets)."""
        return self.positional + tuple(value for _, value in self.keywords)

    def shown(self) -> str:
        """The arguments as given, for messages (at most ~80 characters each)."""
        parts = [describe(a) for a in self.args]
        parts += [f"{k}={describe(v)}" for k, v in self.kwargs.items()]
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 and self.args else "") + ")"


class Binder:
    """Binds calls of one function: which parameter each argument is, defaults filled in."""

    def __init__(self, function: Callable[..., Any], base: str) -> None:
        self.base = base
        self.signature = _signature(function)
        params = self.signature.parameters.values() if self.signature else ()
        #: Names a caller can pass by keyword (the reserved-word check uses them).
        self.parameter_names = frozenset(
            p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL
        )
        self.takes_nothing = self.signature is not None and not self.signature.parameters
        #: The defaults of a function whose parameters are all positional (else None):
        #: its positional calls bind without ``inspect`` (``None`` marks "no default").
        self.positional_defaults = _positional_defaults(self.signature)
        #: How many parameters such a function has (else None).
        self.arity = None if self.positional_defaults is None else len(self.positional_defaults)

    def free(self, words: Iterable[str]) -> frozenset[str]:
        """The *words* no parameter of the function is named (so the wrapper may take them)."""
        return frozenset(words) - self.parameter_names

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any], key: Key | None = None) -> Call:
        """The call of *args* and *kwargs*; *key* overrides the computed key (custom names)."""
        if self.signature is None:
            if kwargs:
                raise TypeError(f"metric {self.base!r} has no signature to bind keywords to")
            key = tuple(map(param_key, args)) if key is None else key
            return Call(key, args, (), False, args, kwargs)
        defaults = self.positional_defaults
        if defaults is not None and not kwargs and len(args) <= len(defaults):
            call = self._bind_positional(args, defaults, key)
            if call is not None:
                return call
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as err:
            raise TypeError(f"metric {self.base!r}: {err}") from None
        bound.apply_defaults()
        positional, keywords, var_keywords = _split(self.signature, bound.arguments)
        if key is None:
            key = tuple(map(param_key, bound.arguments.values()))
        return Call(key, positional, keywords, var_keywords, args, kwargs)

    def _bind_positional(
        self, args: tuple[Any, ...], defaults: tuple[Any, ...], key: Key | None
    ) -> Call | None:
        """What ``signature.bind`` + ``apply_defaults`` give, or None (a default is missing)."""
        if len(args) < len(defaults):
            filled = defaults[len(args) :]
            if any(d is _NO_DEFAULT for d in filled):
                return None  # inspect says which argument is missing
            positional = args + filled
        else:
            positional = args
        if key is None:
            key = tuple(map(param_key, positional))
        return Call(key, positional, (), False, args, {})


def _positional_defaults(signature: inspect.Signature | None) -> tuple[Any, ...] | None:
    """Each parameter's default (``_NO_DEFAULT`` if none) when every one is positional."""
    if signature is None:
        return None
    params = signature.parameters.values()
    if not all(p.kind in _POSITIONAL for p in params):
        return None
    empty = inspect.Parameter.empty
    return tuple(_NO_DEFAULT if p.default is empty else p.default for p in params)


def _split(
    signature: inspect.Signature, arguments: dict[str, Any]
) -> tuple[tuple[Any, ...], tuple[tuple[str, Any], ...], bool]:
    """Positional values, keyword ``(name, value)`` pairs, and whether ``**kwargs`` got any."""
    positional: list[Any] = []
    keywords: list[tuple[str, Any]] = []
    var_keywords = False
    for name, value in arguments.items():
        kind = signature.parameters[name].kind
        if kind in _POSITIONAL:
            positional.append(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            positional.extend(value)
        elif kind is inspect.Parameter.KEYWORD_ONLY:
            keywords.append((name, value))
        else:
            keywords.extend(sorted(value.items()))
            var_keywords = var_keywords or bool(value)
    return tuple(positional), tuple(keywords), var_keywords


def _signature(function: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have none
        return None
