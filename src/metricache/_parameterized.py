"""Collected metrics: ``CM.<name>(...)`` for a function and its declared parameters.

Each distinct call is one entry: calls bind through the function's signature
(defaults filled in) and are identified by the canonical keys of ``_keys``, so
``CM.g(1)``, ``CM.g(1, 2)`` and ``CM.g(a=1)`` are one metric when ``b=2`` is the
default, and ``CM.r(1, b=2)`` is never ``CM.r(1, 2)``. Names follow ``_names``:
the seed's names for declared positional parameter sets, plain names where every
value writes uniquely, and ``<summary>~<digest>`` otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, Protocol

from ._binding import Binder, Call
from ._fronts import RESERVED, make_decorated, make_front
from ._gridnames import canonical_plain, grid_names
from ._keys import Key, call_digest, describe, param_key
from ._names import (
    all_valid,
    default_name_generation_function,
    hashed_name,
    plain_name,
    seed_faithful,
)
from ._parallel import GridOptions, OnError, run_grid
from ._registry import Family, MetricFunction, Owner
from .exceptions import InvalidMetricNameError, MetricNameCollisionError, UnknownMetricError
from .provenance.staleness import OnStale

__all__ = ["CollectedMetric", "ParamsList", "collect_metric"]

ParamsList = Iterable[Any]
NameGenerator = Callable[[str, tuple[Any, ...]], str]
#: Keywords of ``CM.<name>(...)`` itself, unless the function has such a parameter.
OPTIONS = ("use_stored", "verbose", "on_stale")


class Manager(Protocol):
    """What a collected metric needs of its manager."""

    cache: dict[str, Any]
    dynamic_metric_creation: bool
    functions_dict: dict[str, MetricFunction]

    def get(
        self,
        name: str,
        use_stored: bool = ...,
        verbose: bool | None = ...,
        on_stale: OnStale | None = ...,
    ) -> Any: ...
    def check_name(self, name: str) -> None: ...
    def declares(self, name: str, owner: Owner) -> bool: ...
    def check_free(self, name: str, owner: Owner) -> None: ...
    def _register(self, name: str, function: Callable[[], Any], owner: Owner) -> None: ...
    def _define(self, name: str, function: Callable[[], Any], owner: Owner) -> None: ...
    def _define_lazily(
        self, declared: dict[str, Any], names: list[str], family: Family
    ) -> None: ...
    def taken(self, names: Iterable[str]) -> set[str]: ...
    def _attach(self, base: str, metric: Callable[..., Any]) -> None: ...


class CollectedMetric:
    """A collected function and its declared parameters, on one manager.

    ``CM.<base_name>`` is its :meth:`front`: a function that returns the cached
    value for the parameters it is called with, and carries the seed's attributes
    ``original_function``, ``base_name``, ``params_list`` (the object passed to
    ``collect``, unchanged; an iterator is kept as the tuple it yielded),
    ``name_generation_function`` and ``get_all`` (plus ``metric_name`` and
    ``collected``, this object).
    """

    def __init__(
        self,
        manager: Manager,
        function: Callable[..., Any],
        base_name: str,
        params_list: ParamsList = ((),),
        name_generation_function: NameGenerator | None = None,
    ) -> None:
        items = params_list if isinstance(params_list, (list, tuple)) else list(params_list)
        self._manager = manager
        self.original_function = function
        self.base_name = base_name
        self.params_list = params_list if isinstance(params_list, Sequence) else tuple(items)
        self.name_generation_function = name_generation_function or (
            default_name_generation_function
        )
        self._binder = Binder(function, base_name)
        self._options = self._binder.free(OPTIONS)
        self._names: dict[Key, str] = {}  # call key -> metric name
        self._calls: dict[str, Call] = {}  # metric name -> the call it computes
        self._resolved: dict[Key, str] = {}  # spelling keys of calls -> name
        #: While declaring a grid of plain values: name -> its parameters (see grid_names);
        #: after registration the registry holds them and makes each name's call when used.
        self._lazy: dict[str, Any] | None = None
        self._lazily = False
        self._family = Family(self._settle)
        self._declared = self._declare_grid(items)
        self._plain = self._plain_name()

    def __repr__(self) -> str:
        return f"<collected metric {self.base_name!r} of {self._manager!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Return the cached value for these parameters (computing it if needed).

        ``use_stored=False`` recomputes, ``verbose=`` overrides the manager's and
        ``on_stale=`` its stale policy, unless the function has a parameter of that
        name (then it gets the value).
        """
        use_stored, verbose, on_stale = True, None, None  # type: Any, Any, Any
        if kwargs and self._options:
            if "use_stored" in self._options:
                use_stored = kwargs.pop("use_stored", True)
            if "verbose" in self._options:
                verbose = kwargs.pop("verbose", None)
            if "on_stale" in self._options:
                on_stale = kwargs.pop("on_stale", None)
        name = self.metric_name(*args, **kwargs)
        return self._manager.get(name, use_stored, verbose, on_stale=on_stale)

    def metric_name(self, *args: Any, **kwargs: Any) -> str:
        """The metric name for these parameters, creating it if dynamic creation is on."""
        # A call spelled like one already resolved skips signature binding.
        spelled = _spelling_key(args, kwargs)
        name = self._resolved.get(spelled)
        if name is not None:
            return name
        if spelled is not None and not kwargs and len(args) == self._binder.arity:
            # Every parameter given positionally: the spelling key is the call's key.
            call = self._binder.bind(args, kwargs, key=spelled)
        else:
            call = self._bind(args, kwargs)
        name = self._names.get(call.key) or self._lazy_name(call)
        if name is None:
            name = self._create(call)
        if spelled is not None:
            self._resolved[spelled] = name
        return name

    def get_all(
        self,
        use_stored: bool = True,
        verbose: bool | None = None,
        on_stale: OnStale | None = None,
        *,
        n_jobs: int | None = None,
        executor: Any = None,
        client: Any = None,
        progress: bool | None = None,
        batch: int | None = None,
        return_values: bool = True,
        on_error: OnError = "raise",
    ) -> Any:
        """Values for every declared parameter set, in ``params_list`` order.

        Entries already stored are skipped; the rest are computed here, on
        ``n_jobs`` worker processes (``-1``: every core), on any
        ``concurrent.futures`` *executor*, or on a Dask *client*, each computed
        once however many runs fill the same store at once. See
        :meth:`DatedCacheManager.get_many <metricache.DatedCacheManager.get_many>`
        for every keyword.
        """
        options = GridOptions(
            use_stored, verbose, on_stale, n_jobs, executor, client, progress, batch,
            return_values, on_error,
        )  # fmt: skip
        return run_grid(self._manager, self._declared, options)

    def declarations(self) -> list[tuple[str, Callable[[], Any], Owner]]:
        """``(name, function, owner)`` of every declared metric, each name once."""
        names = dict.fromkeys(self._declared)
        if self._lazily:
            for name in names:
                self._manager.functions_dict.get(name)  # makes its call, once
        return [(n, self._function(self._calls[n]), self._owner(self._calls[n])) for n in names]

    def register(self) -> Callable[..., Any]:
        """Define every declared name, attach the front and return it; an error changes nothing."""
        if self._lazy is None:
            declared = self.declarations()
            for name, _, owner in declared:
                _check_generated(
                    functools.partial(self._manager.check_free, owner=owner), name, owner
                )
            metric = self.front()
            self._manager._attach(self.base_name, metric)
            for name, function, owner in declared:
                self._manager._define(name, function, owner)
            return metric
        lazy = self._lazy
        for name in self._manager.taken(lazy):  # names checked valid by _declare_grid
            owner = self._settle(name, lazy[name])[1]
            self._manager.check_free(name, owner)
        metric = self.front()
        self._manager._attach(self.base_name, metric)
        self._lazy = None
        self._lazily = True
        self._manager._define_lazily(lazy, self._declared, self._family)
        return metric

    def front(self) -> Callable[..., Any]:
        """The function attached as ``CM.<base_name>``, carrying the seed's attributes."""
        # The cache dict is captured once: managers keep it the same object for life.
        cache, takes_nothing = self._manager.cache, self._binder.takes_nothing
        return make_front(self, cache, self._plain, self._resolved, takes_nothing)

    # -- internals --------------------------------------------------------------

    def _declare_grid(self, items: Sequence[Any]) -> list[str]:
        """Every item's name: a grid of plain positional values without binding each."""
        arity = self._binder.arity
        if arity and self.name_generation_function is default_name_generation_function:
            grid = grid_names(self.base_name, items, arity)
            if grid is not None and self._valid(grid[1], grid[2]):
                self._lazy = grid[1]
                return grid[0]
        return [self._declare(item) for item in items]

    def _valid(self, names: Collection[str], text: str) -> bool:
        """Whether every name is valid (if not, binding each item gives the error).

        *text* is the names joined by line breaks.
        """
        suffix = _default_rules(self._manager)
        if suffix is not None and all_valid(names, suffix, text):
            return True
        check = self._manager.check_name
        try:
            for name in names:
                check(name)
        except InvalidMetricNameError:
            return False
        return True

    def _settle(self, name: str, item: Any) -> tuple[MetricFunction, Owner]:
        """The function and owner of a lazily declared *name* (its parameters *item*)."""
        call = self._bind(*_as_call(item))
        self._calls.setdefault(name, call)
        self._names.setdefault(call.key, name)
        return self._function(call), self._owner(call)

    def _lazy_name(self, call: Call) -> str | None:
        """The declared name of *call* in a lazily declared grid, if it is one."""
        if not (self._lazily or self._lazy) or call.keywords or call.var_keywords:
            return None
        values = canonical_plain(call.positional)
        if values is None:
            return None
        name = default_name_generation_function(self.base_name, values)
        if self._lazy is not None:  # still declaring
            item = self._lazy.get(name)
            found = item is not None and self._bind(*_as_call(item)).key == call.key
            return name if found else None
        self._manager.functions_dict.get(name)  # a lazily declared name makes its call
        declared = self._calls.get(name)
        return name if declared is not None and declared.key == call.key else None

    def _declare(self, item: Any) -> str:
        """Bind one ``params_list`` item and name it; a call declared twice keeps one name."""
        args, kwargs = _as_call(item)
        call = self._bind(args, kwargs)
        name = self._names.get(call.key)
        if name is None:
            name = self._declared_name(args, kwargs, call)
            self._claim(name, call)
        return name

    def _declared_name(self, args: tuple[Any, ...], kwargs: dict[str, Any], call: Call) -> str:
        if self.name_generation_function is not default_name_generation_function:
            return self.name_generation_function(self.base_name, call.values if kwargs else args)
        if not kwargs and all(map(seed_faithful, args)):
            # The seed's name, exactly, so folders the seed wrote keep loading.
            return default_name_generation_function(self.base_name, args)
        return self._default_name(call)

    def _default_name(self, call: Call) -> str:
        """The plain name of a call, or its hashed name if that is taken or not plain."""
        if self.name_generation_function is not default_name_generation_function:
            return self.name_generation_function(self.base_name, call.values)
        name = None if call.var_keywords else plain_name(self.base_name, *_parts(call))
        owner = self._call_named(name) if name is not None else None
        if name is None or (owner is not None and owner.key != call.key):
            digest = call_digest(self.base_name, call.key)
            name = hashed_name(self.base_name, *_parts(call), digest)
        return name

    def _call_named(self, name: str) -> Call | None:
        """The call *name* is this metric's for, lazily declared or not."""
        if self._lazily and name not in self._calls:
            self._manager.functions_dict.get(name)  # a lazily declared name makes its call
        return self._calls.get(name)

    def _claim(self, name: str, call: Call) -> None:
        """Record *name* for *call*; two different calls may not share it."""
        other = self._call_named(name)
        if other is not None and other.key != call.key:
            raise MetricNameCollisionError(
                f"parameters {other.shown()} and {call.shown()} of {self.base_name!r} both "
                f"make the metric name {describe(name)}; pass a name_generation_function "
                "that tells them apart"
            )
        self._calls[name] = call
        self._names.setdefault(call.key, name)

    def _create(self, call: Call) -> str:
        """Name an undeclared call, and define it if dynamic creation is on."""
        name = self._default_name(call)
        owner = self._owner(call)
        if not self._manager.declares(name, owner):
            if not self._manager.dynamic_metric_creation:
                raise UnknownMetricError(
                    name,
                    self._declared,
                    hint=f"parameters {call.shown()} of {self.base_name!r} are not in its "
                    "params_list; declare them or create the manager with "
                    "dynamic_metric_creation=True",
                )
            self._check_strings(call, owner)
            self._claim(name, call)
            self._manager._register(name, self._function(call), owner)
        self._calls[name] = call
        self._names[call.key] = name
        return name

    def _check_strings(self, call: Call, owner: Owner) -> None:
        """Refuse string values the seed's rule would make an unsafe name of, as declared."""
        if self.name_generation_function is default_name_generation_function:
            strings = [v for v in call.values if isinstance(v, str)]
            if strings:
                seed = default_name_generation_function(self.base_name, strings)
                _check_generated(self._manager.check_name, seed, owner)

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
        try:
            return self._binder.bind(args, kwargs)
        except InvalidMetricNameError:
            if self.name_generation_function is default_name_generation_function:
                raise
        # A value without a canonical key: the user's name generator identifies the call.
        values = self._binder.bind(args, kwargs, key=()).values
        return self._binder.bind(args, kwargs, key=("named", self._generate(values)))

    def _generate(self, values: tuple[Any, ...]) -> str:
        return self.name_generation_function(self.base_name, values)

    def _plain_name(self) -> str | None:
        """The declared name of the call without arguments, for the fast ``CM.metric()``."""
        try:
            call = self._bind((), {})
        except TypeError:  # required parameters: there is no such call
            return None
        return self._names.get(call.key) or self._lazy_name(call)

    def _owner(self, call: Call) -> Owner:
        return Owner(self.base_name, call.key, call.shown if call.args or call.kwargs else "")

    def _function(self, call: Call) -> Callable[[], Any]:
        """The zero-argument metric function: the original, with the arguments as given."""
        function = self.original_function
        if isinstance(function, functools.partial):
            # Flattened by hand: CPython only flattens a partial whose __dict__ was never
            # set, and an unpickled one's was, so a worker's fingerprint would differ.
            keywords = {**function.keywords, **call.kwargs}
            return functools.partial(function.func, *function.args, *call.args, **keywords)
        return functools.partial(function, *call.args, **call.kwargs)


def collect_metric(
    manager: Manager,
    function: Callable[..., Any],
    base_name: str | None,
    params_list: ParamsList,
    name_generation_function: NameGenerator | None,
) -> Callable[..., Any]:
    """Declare *function*'s metrics on *manager*; return the ``cache=True``-aware wrapper."""
    base = _base_name(function, base_name)
    collected = CollectedMetric(manager, function, base, params_list, name_generation_function)
    metric = collected.register()
    return make_decorated(function, collected._binder.free(RESERVED), metric)


def _default_rules(manager: Manager) -> str | None:
    """The data suffix when *manager* checks names by the default rules, else None."""
    from ._interface import StorageInterface  # noqa: PLC0415 - the manager imports this module
    from ._manager import DatedCacheManager  # noqa: PLC0415

    storage: Any = getattr(manager, "storage_interface", None)
    if (
        type(manager).check_name is DatedCacheManager.check_name
        and type(storage).check_name is StorageInterface.check_name
    ):
        return str(storage.file_ext)
    return None


def _base_name(function: Callable[..., Any], base_name: str | None) -> str:
    base = getattr(function, "__name__", None) if base_name is None else base_name
    if not isinstance(base, str):
        raise TypeError(f"{function!r} has no __name__: pass name= to collect()")
    return base


def _check_generated(check: Callable[[str], None], name: str, owner: Owner) -> None:
    """Check a generated name with *check*, saying how to fix an unusable one."""
    try:
        check(name)
    except InvalidMetricNameError as err:
        problem = str(err).replace(repr(name), describe(name))
        if owner.base == "<lambda>":
            fix = "a lambda has no name of its own: pass name='...' to collect()"
        else:
            fix = (
                "pass name_generation_function= to collect() to name these parameters, "
                "or name=/base_name= to rename the metric"
            )
        raise InvalidMetricNameError(
            f"the metric name generated for {owner} is unusable: {problem}; {fix}"
        ) from None


def _parts(call: Call) -> tuple[tuple[Any, ...], tuple[tuple[str, Any], ...]]:
    return call.positional, call.keywords


def _spelling_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Key | None:
    """The keys of the arguments as written (``None`` if one has no key).

    Binding depends only on this, so it maps to one name. A positional call's is
    the tuple of its argument keys (what ``CM.<name>`` looks up itself).
    """
    try:
        positional = tuple(map(param_key, args))
        if not kwargs:
            return positional
        return ("keywords", positional, tuple((k, param_key(v)) for k, v in kwargs.items()))
    except InvalidMetricNameError:
        return None


def _as_call(item: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A ``params_list`` item as arguments: a list or tuple is positional, a dict is
    keywords (the way to declare keyword-only parameters), anything else one argument."""
    if isinstance(item, (list, tuple)):
        return tuple(item), {}
    if isinstance(item, dict):
        return (), dict(item)
    return (item,), {}
