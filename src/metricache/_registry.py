"""The metric registry: names, their functions, and who owns each name."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .exceptions import MetricNameCollisionError

__all__ = ["MetricFunction", "MetricRegistry", "Owner"]

MetricFunction = Callable[[], Any]


@dataclass(frozen=True)
class Owner:
    """Who defined a name: a collected metric's base name and its call's canonical key."""

    base: str
    key: Hashable
    #: The arguments as the user wrote them, for messages only.
    shown: str = field(default="", compare=False)

    def __str__(self) -> str:
        if self.shown:
            return f"{self.base!r} with parameters {self.shown}"
        return f"metric {self.base!r}"


class MetricRegistry:
    """Which metrics exist: ``functions_dict``, collected metrics, and name ownership.

    Names are checked with :meth:`check_name` (the storage's rules) before they are
    defined, and no name may be taken by two different metrics.
    """

    def __init__(self, dynamic_metric_creation: bool = False) -> None:
        self.dynamic_metric_creation = dynamic_metric_creation
        #: Metric name -> function of no arguments (the seed's live registry).
        self.functions_dict: dict[str, MetricFunction] = {}
        #: Collected metrics (the ``CM.<name>`` functions), in declaration order.
        self.parameterized_metrics: list[Callable[..., Any]] = []
        self._owners: dict[str, Owner] = {}

    if TYPE_CHECKING:
        # CM.<metric> attributes are attached by collect(); this tells type checkers
        # that CM.spectrum() and CM.poly(1, 2) exist (their values are Any).
        def __getattr__(self, name: str) -> Any: ...

    def check_name(self, name: str) -> None:
        """Raise :class:`~metricache.InvalidMetricNameError` unless *name* is usable."""
        raise NotImplementedError

    def set_functions_dict(self, functions_dict: dict[str, MetricFunction]) -> None:
        """Define the metrics: a dict of name -> function of no arguments.

        Calling it after ``__init__`` lets metric functions use the manager itself.
        Collected metrics stay defined; a name both here and collected is an error.
        """
        for name in functions_dict:
            self.check_name(name)
            if name in self._owners and functions_dict[name] is not self.functions_dict.get(name):
                raise MetricNameCollisionError(
                    f"metric name {name!r} is already used by the collected metric "
                    f"{self._owners[name].base!r}; rename one of them"
                )
        collected = {n: self.functions_dict[n] for n in self._owners}
        functions_dict.update(collected)
        self.functions_dict = functions_dict

    def _register(self, name: str, function: MetricFunction, owner: Owner) -> None:
        """Define *name* for a collected metric; refuse to take another metric's name."""
        self.check_free(name, owner)
        self.functions_dict[name] = function
        self._owners[name] = owner

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
