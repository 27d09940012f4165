"""The metric registry: names, their functions, and who owns each name.

A big declared grid registers its names lazily: ``functions_dict`` holds each
name's declared parameters and the owner record a shared :class:`Family`, and
the zero-argument function and the :class:`Owner` of a name are made the first
time anything reads them (so declaring 100,000 parameter sets allocates little
more than their names).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from itertools import repeat
from typing import TYPE_CHECKING, Any

from .exceptions import MetricNameCollisionError

__all__ = ["Family", "Functions", "MetricFunction", "MetricRegistry", "Owner", "Owners"]

MetricFunction = Callable[[], Any]
_ABSENT: Any = object()


class Owner:
    """Who defined a name: a collected metric's base name and its call's canonical key.

    Two owners are equal when base and key are; *shown* (the arguments as the
    user wrote them, for messages) may be a function making that text when asked.
    """

    __slots__ = ("_shown", "base", "key")

    def __init__(self, base: str, key: Hashable, shown: str | Callable[[], str] = "") -> None:
        self.base = base
        self.key = key
        self._shown = shown

    @property
    def shown(self) -> str:
        """The arguments as the user wrote them (empty for a metric without any)."""
        if not isinstance(self._shown, str):
            self._shown = self._shown()
        return self._shown

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Owner):
            return NotImplemented
        return self.base == other.base and self.key == other.key

    def __hash__(self) -> int:
        return hash((self.base, self.key))

    def __repr__(self) -> str:
        return f"Owner({self.base!r}, {self.key!r})"

    def __str__(self) -> str:
        if self.shown:
            return f"{self.base!r} with parameters {self.shown}"
        return f"metric {self.base!r}"


class Family:
    """The owner record of lazily registered names: it makes their function and owner."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[str, Any], tuple[MetricFunction, Owner]]) -> None:
        #: ``make(name, declared_item)`` -> the name's function and owner.
        self.make = make


class Owners(dict[str, Any]):
    """Name -> :class:`Owner`; a lazily registered name's owner is made when read."""

    __slots__ = ("functions",)

    def __init__(self) -> None:
        super().__init__()
        self.functions: Functions = Functions(self)

    def settle(self, name: str) -> None:
        """Make *name*'s function and owner now if it was registered lazily."""
        family = dict.get(self, name)
        if type(family) is Family:
            function, owner = family.make(name, dict.__getitem__(self.functions, name))
            dict.__setitem__(self.functions, name, function)
            dict.__setitem__(self, name, owner)

    def settle_all(self) -> None:
        """Make every lazily registered name's function and owner."""
        for name in [n for n, f in dict.items(self) if type(f) is Family]:
            self.settle(name)

    def __getitem__(self, name: str) -> Any:
        self.settle(name)
        return dict.__getitem__(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        self.settle(name)
        return dict.get(self, name, default)

    def __iter__(self) -> Iterator[str]:
        # Defined so dict(owners) goes through __getitem__ (no Family escapes).
        return dict.__iter__(self)

    def items(self) -> Any:
        self.settle_all()
        return dict.items(self)

    def values(self) -> Any:
        self.settle_all()
        return dict.values(self)


class Functions(dict[str, Any]):
    """``functions_dict``: name -> function of no arguments, lazily made for big grids."""

    __slots__ = ("owners",)

    def __init__(self, owners: Owners, *args: Any) -> None:
        super().__init__(*args)
        self.owners = owners

    def __getitem__(self, name: str) -> Any:
        self.owners.settle(name)
        return dict.__getitem__(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        self.owners.settle(name)
        return dict.get(self, name, default)

    def __setitem__(self, name: str, function: MetricFunction) -> None:
        self.owners.settle(name)  # the owner needs the declared parameters
        dict.__setitem__(self, name, function)

    def __delitem__(self, name: str) -> None:
        self.owners.settle(name)
        dict.__delitem__(self, name)

    def pop(self, name: str, default: Any = _ABSENT) -> Any:
        self.owners.settle(name)
        return dict.pop(self, name) if default is _ABSENT else dict.pop(self, name, default)

    def clear(self) -> None:
        self.owners.settle_all()
        dict.clear(self)

    def __iter__(self) -> Iterator[str]:
        # Defined so dict(functions) goes through __getitem__ (no raw item escapes).
        return dict.__iter__(self)

    def items(self) -> Any:
        self.owners.settle_all()
        return dict.items(self)

    def values(self) -> Any:
        self.owners.settle_all()
        return dict.values(self)

    def __eq__(self, other: object) -> bool:
        self.owners.settle_all()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        self.owners.settle_all()
        return dict.__ne__(self, other)

    __hash__ = None


class MetricRegistry:
    """Which metrics exist: ``functions_dict``, collected metrics, and name ownership.

    Names are checked with :meth:`check_name` (the storage's rules) before they are
    defined, and no name may be taken by two different metrics.
    """

    def __init__(self, dynamic_metric_creation: bool = False) -> None:
        self.dynamic_metric_creation = dynamic_metric_creation
        #: Collected metrics (the ``CM.<name>`` functions), in declaration order.
        self.parameterized_metrics: list[Callable[..., Any]] = []
        self._table = Owners()
        #: Name -> its owner (what the provenance methods read).
        self._owners: dict[str, Any] = self._table

    if TYPE_CHECKING:
        # CM.<metric> attributes are attached by collect(); this tells type checkers
        # that CM.spectrum() and CM.poly(1, 2) exist (their values are Any).
        def __getattr__(self, name: str) -> Any: ...

    @property
    def functions_dict(self) -> dict[str, MetricFunction]:
        """Metric name -> function of no arguments (the seed's live registry)."""
        return self._table.functions

    @functions_dict.setter
    def functions_dict(self, functions: dict[str, MetricFunction]) -> None:
        self._table.settle_all()  # the owners of lazy names need their parameters
        self._table.functions = Functions(self._table, functions)

    def check_name(self, name: str) -> None:
        """Raise :class:`~metricache.InvalidMetricNameError` unless *name* is usable."""
        raise NotImplementedError

    def set_functions_dict(self, functions_dict: dict[str, MetricFunction]) -> None:
        """Define the metrics: a dict of name -> function of no arguments.

        Calling it after ``__init__`` lets metric functions use the manager itself.
        Collected metrics stay defined; a name both here and collected is an error.
        """
        current = self._table.functions
        for name in functions_dict:
            self.check_name(name)
            if name in self._owners and functions_dict[name] is not current.get(name):
                raise MetricNameCollisionError(
                    f"metric name {name!r} is already used by the collected metric "
                    f"{self._owners[name].base!r}; rename one of them"
                )
        # Raw entries: lazily registered names stay lazy.
        collected = {n: dict.__getitem__(current, n) for n in dict.__iter__(self._table)}
        functions = Functions(self._table, functions_dict)
        dict.update(functions, collected)
        self._table.functions = functions

    def _register(self, name: str, function: MetricFunction, owner: Owner) -> None:
        """Define *name* for a collected metric; refuse to take another metric's name."""
        self.check_free(name, owner)
        self._define(name, function, owner)

    def _define(self, name: str, function: MetricFunction, owner: Owner) -> None:
        """Define *name* for a collected metric, already checked free."""
        dict.__setitem__(self._table.functions, name, function)
        dict.__setitem__(self._table, name, owner)

    def _define_lazily(self, declared: dict[str, Any], names: list[str], family: Family) -> None:
        """Define *declared* (name -> parameters, emptied) for *family*, already checked free.

        *names* are its names (repeats allowed). One big table at a time: the
        declared table is dropped before the owners' is built.
        """
        dict.update(self._table.functions, declared)
        declared.clear()
        dict.update(self._table, zip(names, repeat(family)))

    def taken(self, names: Iterable[str]) -> set[str]:
        """Which of *names* some metric already defines."""
        return set(self._table.functions.keys() & names)

    def check_free(self, name: str, owner: Owner) -> None:
        """Raise unless *name* is valid and free for *owner* (or already *owner*'s)."""
        self.check_name(name)
        existing = self._owners.get(name)
        if existing is None and name in self.functions_dict:
            raise MetricNameCollisionError(
                f"metric name {name!r} of {owner} is already defined by "
                "set_functions_dict(); rename one of them (base_name=...)"
            )
        if existing is not None and existing != owner:
            raise MetricNameCollisionError(
                f"metric name {name!r} of {owner} is already used by "
                f"{existing}; pass base_name= or name_generation_function= "
                "to tell them apart"
            )

    def declares(self, name: str, owner: Owner) -> bool:
        """Whether *name* is already defined for *owner* (the same base name and call)."""
        existing = self._owners.get(name)
        return existing is not None and existing == owner

    def _attach(self, base: str, metric: Callable[..., Any]) -> None:
        """Make *metric* available as ``CM.<base>``."""
        # Instance attributes (cache, verbose, ...) count too; an earlier collect of
        # the same base name (a re-run notebook cell) may be replaced.
        collected = {getattr(m, "base_name", None) for m in self.parameterized_metrics}
        taken = base in vars(self) and base not in collected
        if hasattr(type(self), base) or taken:
            raise MetricNameCollisionError(
                f"a metric named {base!r} would hide {type(self).__name__}.{base}; "
                "pass base_name= to collect() to name it differently"
            )
        self.parameterized_metrics = [
            m for m in self.parameterized_metrics if getattr(m, "base_name", None) != base
        ]
        self.parameterized_metrics.append(metric)
        setattr(self, base, metric)
