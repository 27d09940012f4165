"""Collected metrics: ``CM.<name>(...)`` for a function and its declared parameters."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from ._names import default_name_generation_function
from ._registry import Owner
from .exceptions import MetricNameCollisionError, UnknownMetricError

__all__ = ["CollectedMetric", "ParamsList", "collect_metric"]

ParamsList = Iterable[Any]
NameGenerator = Callable[[str, tuple[Any, ...]], str]


class Manager(Protocol):
    """What a collected metric needs of its manager."""

    cache: dict[str, Any]
    dynamic_metric_creation: bool

    def get(self, name: str, use_stored: bool = ..., verbose: bool | None = ...) -> Any: ...
    def declares(self, name: str, owner: Owner) -> bool: ...
    def check_free(self, name: str, owner: Owner) -> None: ...
    def _register(self, name: str, function: Callable[[], Any], owner: Owner) -> None: ...
    def _attach(self, base: str, metric: Callable[..., Any]) -> None: ...


class CollectedMetric:
    """A collected function and its declared parameters, on one manager.

    ``CM.<base_name>`` is its :meth:`front`: a function that returns the cached
    value for the parameters it is called with, and carries the seed's attributes
    ``original_function``, ``base_name``, ``params_list``,
    ``name_generation_function`` and ``get_all`` (plus ``metric_name`` and
    ``collected``, this object).
    """

    def __init__(
        self,
        manager: Manager,
        function: Callable[..., Any],
        base_name: str,
        params_list: list[tuple[Any, ...]],
        name_generation_function: NameGenerator,
    ) -> None:
        self._manager = manager
        self.original_function = function
        self.base_name = base_name
        self.params_list = params_list
        self.name_generation_function = name_generation_function
        self._signature = _signature(function)
        self._declared = [name_generation_function(base_name, p) for p in params_list]
        self._names = {_key(p): n for p, n in zip(params_list, self._declared, strict=True)}
        # The no-parameter metric's name, for the fast path of CM.metric().
        self._plain = self._names.get(_key(()))

    def __repr__(self) -> str:
        return f"<collected metric {self.base_name!r} of {self._manager!r}>"

    def __call__(
        self, *args: Any, use_stored: bool = True, verbose: bool | None = None, **kwargs: Any
    ) -> Any:
        """Return the cached value for these parameters (computing it if needed)."""
        if use_stored and not args and not kwargs and self._plain is not None:
            try:
                return self._manager.cache[self._plain]
            except KeyError:
                pass
        return self._manager.get(self.metric_name(*args, **kwargs), use_stored, verbose)

    def metric_name(self, *args: Any, **kwargs: Any) -> str:
        """The metric name for these parameters, creating it if dynamic creation is on."""
        if not kwargs:
            # Already-resolved positional calls skip signature binding (~4 us).
            name = self._names.get(_key(args))
            if name is not None:
                return name
        params = _canonical(self._signature, self.base_name, args, kwargs)
        key = _key(params)
        name = self._names.get(key)
        if name is not None:
            return name
        name = self.name_generation_function(self.base_name, params)
        if self._manager.declares(name, (self.base_name, params)):
            # Equal parameters of another type (np.int64(1) for 1) name the same metric.
            self._names[key] = name
            return name
        if not self._manager.dynamic_metric_creation:
            raise UnknownMetricError(
                name,
                list(self._names.values()),
                hint=f"parameters {params!r} of {self.base_name!r} are not in its params_list; "
                "declare them or create the manager with dynamic_metric_creation=True",
            )
        self._manager._register(
            name, _bind(self.original_function, args, kwargs), (self.base_name, params)
        )
        self._names[key] = name
        return name

    def get_all(self, use_stored: bool = True, verbose: bool | None = None) -> list[Any]:
        """Values for every declared parameter set, in ``params_list`` order."""
        get = self._manager.get
        return [get(name, use_stored, verbose) for name in self._declared]

    def front(self) -> Callable[..., Any]:
        """The function attached as ``CM.<base_name>``, carrying the seed's attributes.

        A closure rather than this object: calling a function skips the class-call
        dispatch, which keeps a memory hit of ``CM.metric()`` near a dict lookup.
        """
        # The cache dict is captured once: managers keep it the same object for life.
        cache, plain, slow = self._manager.cache, self._plain, self.__call__
        takes_nothing = self._signature is not None and not self._signature.parameters

        def metric(*args: Any, **kwargs: Any) -> Any:
            if plain is not None and not (args or kwargs):
                try:
                    return cache[plain]
                except KeyError:
                    pass
            return slow(*args, **kwargs)

        def plain_metric(*, use_stored: bool = True, verbose: bool | None = None) -> Any:
            # No *args/**kwargs to pack: a memory hit costs one call and a dict lookup.
            if use_stored:
                try:
                    return cache[plain]  # type: ignore[index]
                except KeyError:
                    pass
            return slow(use_stored=use_stored, verbose=verbose)

        if takes_nothing and plain is not None:
            metric = plain_metric

        functools.update_wrapper(metric, self.original_function)
        vars(metric).update(
            original_function=self.original_function,
            base_name=self.base_name,
            params_list=self.params_list,
            name_generation_function=self.name_generation_function,
            get_all=self.get_all,
            metric_name=self.metric_name,
            collected=self,
        )
        return metric


def collect_metric(
    manager: Manager,
    function: Callable[..., Any],
    base_name: str | None,
    params_list: ParamsList,
    name_generation_function: NameGenerator | None,
) -> Callable[..., Any]:
    """Declare *function*'s metrics on *manager*; return the ``cache=True``-aware wrapper."""
    base = function.__name__ if base_name is None else base_name
    generate = name_generation_function or default_name_generation_function
    signature = _signature(function)
    declared = [_canonical(signature, base, p, {}) for p in map(_as_params, params_list)]
    names = [generate(base, p) for p in declared]
    # Check everything before registering anything: a bad declaration changes nothing.
    for name, params in zip(names, declared, strict=True):
        manager.check_free(name, (base, params))
    _check_unique(base, names, declared)
    collected = CollectedMetric(manager, function, base, declared, generate)
    metric = collected.front()
    manager._attach(base, metric)
    for name, params in zip(names, declared, strict=True):
        manager._register(name, _bind(function, params, {}), (base, params))

    @functools.wraps(function)
    def wrapper(*args: Any, cache: bool = False, use_stored: bool = True, **kwargs: Any) -> Any:
        if not cache:
            return function(*args, **kwargs)
        if use_stored:
            return metric(*args, **kwargs)
        return collected(*args, use_stored=False, **kwargs)

    return wrapper


def _check_unique(base: str, names: Sequence[str], declared: Sequence[tuple[Any, ...]]) -> None:
    """Two parameter sets of one function must not generate the same name."""
    seen: dict[str, tuple[Any, ...]] = {}
    for name, params in zip(names, declared, strict=True):
        if name in seen and _key(seen[name]) != _key(params):
            raise MetricNameCollisionError(
                f"parameters {seen[name]!r} and {params!r} of {base!r} both make the "
                f"metric name {name!r}; pass a name_generation_function that tells them apart"
            )
        seen[name] = params


def _canonical(
    signature: inspect.Signature | None, base: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """Parameters as the positional tuple names are made from (keywords bound by signature)."""
    if signature is None:
        if kwargs:
            raise TypeError(f"metric {base!r} has no signature to bind keyword arguments to")
        return args
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as err:
        raise TypeError(f"metric {base!r}: {err}") from None
    return tuple(bound.arguments.values()) if bound.kwargs else bound.args


def _as_params(params: Any) -> tuple[Any, ...]:
    """A params_list item as a tuple: sequences unpack, anything else is one argument."""
    if isinstance(params, (list, tuple)):
        return tuple(params)
    return (params,)


def _key(params: tuple[Any, ...]) -> Any:
    """A hashable identity for parameters (unhashable ones by repr)."""
    try:
        hash(params)
    except TypeError:
        return ("repr", repr(params))
    return (tuple(type(p) for p in params), params)


def _signature(function: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have none
        return None


def _bind(
    function: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]
) -> Callable[[], Any]:
    """The zero-argument metric function for these parameters."""
    return functools.partial(function, *args, **kwargs)
