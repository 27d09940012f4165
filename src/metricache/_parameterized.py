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
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from ._binding import Binder, Call
from ._fronts import RESERVED, make_decorated, make_front
from ._keys import Key, call_digest, describe, param_key
from ._names import default_name_generation_function, hashed_name, plain_name, seed_faithful
from ._parallel import GridOptions, OnError, run_grid
from ._registry import Owner
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
        items = list(params_list)
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
        self._declared = [self._declare(item) for item in items]
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
        call = self._bind(args, kwargs)
        name = self._names.get(call.key)
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
        return [(n, self._function(self._calls[n]), self._owner(self._calls[n])) for n in names]

    def front(self) -> Callable[..., Any]:
        """The function attached as ``CM.<base_name>``, carrying the seed's attributes."""
        # The cache dict is captured once: managers keep it the same object for life.
        cache, takes_nothing = self._manager.cache, self._binder.takes_nothing
        return make_front(self, cache, self._plain, self._resolved, takes_nothing)

    # -- internals --------------------------------------------------------------

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
        owner = self._calls.get(name) if name is not None else None
        if name is None or (owner is not None and owner.key != call.key):
            digest = call_digest(self.base_name, call.key)
            name = hashed_name(self.base_name, *_parts(call), digest)
        return name

    def _claim(self, name: str, call: Call) -> None:
        """Record *name* for *call*; two different calls may not share it."""
        other = self._calls.get(name)
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
        return self._names.get(call.key)

    def _owner(self, call: Call) -> Owner:
        return Owner(self.base_name, call.key, call.shown() if call.args or call.kwargs else "")

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
    declared = collected.declarations()
    # Check everything before registering anything: a bad declaration changes nothing.
    for name, _, owner in declared:
        _check_generated(functools.partial(manager.check_free, owner=owner), name, owner)
    metric = collected.front()
    manager._attach(base, metric)
    for name, bound, owner in declared:
        manager._register(name, bound, owner)
    return make_decorated(function, collected._binder.free(RESERVED), metric)


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
