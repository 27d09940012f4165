"""Code fingerprints: what a metric's code is, as named parts with their hashes.

A fingerprint is a tuple of ``(part, hash)`` pairs, the first ``("algorithm",
ALGORITHM)``. Parts:

- ``code``: the function's body as a canonical walk of its AST (node types and
  their non-empty fields, no positions), so comments, docstrings, formatting and
  where the function sits in its file never count, and the walk reads the same on
  every Python release (unlike ``ast.dump``, ``ast.unparse`` or bytecode).
  metricache's own decorator is dropped; other decorators count.
- ``default:<param>``, ``closure:<var>``, ``partial``: default values, closure
  cells and a ``functools.partial``'s bound arguments, by value.
- ``helper:<module>:<qualname>``: every function or class of the user's own code
  (not the standard library or installed packages, judged by file location) that
  the function reaches through global names, transitively; each is a part of its
  own, so mutually recursive helpers are simply two parts, found once each.
- ``constant:<module>:<name>``: module-level data it references (numbers, strings,
  containers of them, arrays by content).
- ``unknown:<qualname>``: no source to read (a REPL, a C function): a random hash,
  so it equals no other fingerprint, not even the same function's in another process.

Fingerprints are computed once per function per process (:func:`fingerprint`).
"""

from __future__ import annotations

import ast
import functools
import inspect
import linecache
import logging
import os
import site
import sys
import sysconfig
import threading
import types
import uuid
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import xxhash

from .source import canonical, class_node, function_node
from .values import encode_into

__all__ = ["ALGORITHM", "Parts", "fingerprint", "is_user_file"]

ALGORITHM = "ast-1"
Parts = tuple[tuple[str, str], ...]
logger = logging.getLogger("metricache")

_cache: weakref.WeakKeyDictionary[Any, Parts] = weakref.WeakKeyDictionary()
_strong: dict[int, tuple[Any, Parts]] = {}  # objects that take no weak reference
_computing = threading.RLock()  # reentrant: a partial's parts include its function's


def _excluded_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.update(getattr(site, "getsitepackages", list)())
    roots.add(site.getusersitepackages())
    roots.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # metricache
    return tuple(os.path.join(os.path.realpath(r), "") for r in roots if r)


_EXCLUDED = _excluded_roots()


@functools.lru_cache(maxsize=4096)
def is_user_file(filename: str) -> bool:
    """Whether *filename* is the user's own code: a real file outside stdlib and site-packages."""
    if not filename or filename.startswith("<") and not linecache.getlines(filename):
        return False
    real = os.path.realpath(filename) if not filename.startswith("<") else filename
    return not real.startswith(_EXCLUDED)


def _hash_text(*pieces: str) -> str:
    return xxhash.xxh3_128_hexdigest("\x00".join(pieces).encode("utf-8", "surrogatepass"))


# -- what a function references ------------------------------------------------


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _global_names(code_names: set[str], node: ast.AST) -> set[str]:
    """Names the code loads as variables: in ``co_names`` (globals and attributes) and
    written as a bare name in the source (so ``CM.base`` is not the global ``base``)."""
    loaded = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    return code_names & loaded


def _attribute_chains(node: ast.AST) -> Iterator[tuple[str, str]]:
    """``(module_name, attribute)`` of every ``name.attribute`` in the AST."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
            yield sub.value.id, sub.attr


def _is_collect(decorator: ast.expr, namespace: dict[str, Any]) -> bool:
    """Whether a decorator is metricache's ``collect`` (of any manager)."""
    from .._registry import MetricRegistry

    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
        return target.attr == "collect" and isinstance(
            namespace.get(target.value.id), MetricRegistry
        )
    if isinstance(target, ast.Name):
        bound = getattr(namespace.get(target.id), "__self__", None)
        return isinstance(bound, MetricRegistry)
    return False


def _own_decorators_dropped(node: ast.AST, namespace: dict[str, Any]) -> ast.AST:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.decorator_list:
        kept = [d for d in node.decorator_list if not _is_collect(d, namespace)]
        if len(kept) != len(node.decorator_list):
            node = ast.FunctionDef(**{**vars(node), "decorator_list": kept})
    return node


class _Walker:
    """Collects the parts of one fingerprint, following helpers breadth-first."""

    def __init__(self) -> None:
        self.parts: dict[str, str] = {}
        self.seen: set[int] = set()
        self.queue: list[Any] = []

    def value_hash(self, value: Any) -> str | None:
        """A plain-data value's hash, or None (functions, objects, modules...)."""
        h = xxhash.xxh3_128()
        try:
            encode_into(h, value, pickles=False)
        except (TypeError, RecursionError):
            return None
        return str(h.hexdigest())

    def function(self, function: types.FunctionType, key: str) -> None:
        """Add *function*'s own parts under *key*, and queue what it references."""
        node = function_node(function)
        if node is None:
            self.unknown(function)
            return
        node = _own_decorators_dropped(node, function.__globals__)
        self.parts[key] = canonical(node)
        self._bound_values(function, key)
        names = _global_names(_code_names(function.__code__), node)
        self.globals_used(function.__globals__, names, _attribute_chains(node))

    def _bound_values(self, function: types.FunctionType, key: str) -> None:
        prefix = "" if key == "code" else key + ":"
        params = inspect.signature(function).parameters if function.__defaults__ else {}
        positional = [p for p in params.values() if p.default is not p.empty]
        defaults = {p.name: p.default for p in positional}
        defaults.update(function.__kwdefaults__ or {})
        for name, value in defaults.items():
            self.bound(f"{prefix}default:{name}", value)
        cells = zip(function.__code__.co_freevars, function.__closure__ or (), strict=False)
        for name, cell in cells:
            try:
                self.bound(f"{prefix}closure:{name}", cell.cell_contents)
            except ValueError:  # an empty cell (a name not bound yet)
                continue

    def bound(self, key: str, value: Any) -> None:
        """A default, closure cell or bound argument: its value, or the helper it is."""
        digest = self.value_hash(value)
        if digest is not None:
            self.parts[key] = digest
        elif not self.reference(value, None):
            self.parts[key] = _hash_text("type", _type_name(value))

    def globals_used(
        self, namespace: dict[str, Any], names: set[str], chains: Iterator[tuple[str, str]]
    ) -> None:
        module = namespace.get("__name__", "?")
        for name in sorted(names):
            if name in namespace:
                self.reference(namespace[name], f"{module}:{name}")
        for base, attr in chains:
            target = namespace.get(base)
            if not isinstance(target, types.ModuleType) or not _module_is_users(target):
                continue
            if attr in vars(target):
                self.reference(vars(target)[attr], f"{target.__name__}:{attr}")

    def reference(self, value: Any, constant_key: str | None) -> bool:
        """Queue a user helper, or record a constant; True if it was either."""
        from .._registry import MetricRegistry

        if isinstance(value, (types.ModuleType, MetricRegistry)):
            return True  # attribute chains on modules are followed; managers track themselves
        target = _unwrap(value)
        if isinstance(target, (types.FunctionType, type)) or isinstance(value, functools.partial):
            wanted = _defined_by_user(target) or isinstance(value, functools.partial)
            if wanted and id(value) not in self.seen:
                self.seen.add(id(value))
                self.queue.append(value)
            return True
        if constant_key is not None and not callable(value):
            digest = self.value_hash(value)
            if digest is not None:
                self.parts[f"constant:{constant_key}"] = digest
                return True
        return False

    def helper(self, value: Any) -> None:
        if isinstance(value, functools.partial):
            self.bound(f"helper:{_qualified(value.func)}:partial", (value.args, value.keywords))
            self.reference(value.func, None)
            return
        target = _unwrap(value)
        key = f"helper:{_qualified(target)}"
        if isinstance(target, type):
            self.klass(target, key)
        else:
            self.function(target, key)

    def klass(self, cls: type, key: str) -> None:
        node = class_node(cls)
        if node is None:
            self.parts[key] = _hash_text("class", cls.__qualname__)
            return
        self.parts[key] = canonical(node)
        namespace = vars(sys.modules[cls.__module__])
        names: set[str] = set()
        for member in vars(cls).values():
            code = getattr(_unwrap(member), "__code__", None)
            if isinstance(code, types.CodeType):
                names |= _code_names(code)
        self.globals_used(namespace, _global_names(names, node), _attribute_chains(node))

    def unknown(self, function: Any) -> None:
        name = _qualified(function)
        logger.info(
            "metricache: no source for %s; its entries are stale in every new process "
            "(pass version= to collect() to name its version yourself)",
            name,
        )
        self.parts[f"unknown:{name}"] = uuid.uuid4().hex

    def drain(self) -> None:
        while self.queue:
            self.helper(self.queue.pop(0))


def _type_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def _qualified(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    return f"{module}:{getattr(obj, '__qualname__', None) or _type_name(obj)}"


def _module_is_users(module: types.ModuleType) -> bool:
    filename = getattr(module, "__file__", None)
    return isinstance(filename, str) and is_user_file(filename)


def _defined_by_user(target: Any) -> bool:
    if isinstance(target, types.FunctionType):
        return is_user_file(target.__code__.co_filename)
    if isinstance(target, type):
        module = sys.modules.get(target.__module__)
        return module is not None and _module_is_users(module)
    return False


def _unwrap(value: Any) -> Any:
    """The function behind a bound method, a static/class method, or a decorator's wrapper."""
    seen = 0
    while seen < 100:
        seen += 1
        if isinstance(value, (staticmethod, classmethod, types.MethodType)):
            value = value.__func__
        elif isinstance(value, types.FunctionType) and is_user_file(value.__code__.co_filename):
            return value
        elif getattr(value, "__wrapped__", None) is not None:
            value = value.__wrapped__  # metricache's wrapper, or an installed decorator's
        else:
            return value
    return value


def _compute(function: Callable[..., Any]) -> Parts:
    walker = _Walker()
    if isinstance(function, functools.partial):
        # The wrapped function's parts are cached once for all its bound calls.
        walker.bound("partial", (function.args, function.keywords))
        walker.parts.update(fingerprint(function.func)[1:])
        return (("algorithm", ALGORITHM), *sorted(walker.parts.items()))
    target = _unwrap(function)
    if isinstance(target, types.FunctionType):
        walker.function(target, "code")
    else:
        walker.unknown(target)
    walker.drain()
    return (("algorithm", ALGORITHM), *sorted(walker.parts.items()))


def fingerprint(function: Callable[..., Any]) -> Parts:
    """The code fingerprint of *function*, computed once per function per process.

    Examples
    --------
    >>> parts = dict(fingerprint(lambda x=1: x + 1))
    >>> parts["algorithm"], sorted(parts)
    ('ast-1', ['algorithm', 'code', 'default:x'])
    """
    try:
        return _cache[function]
    except KeyError:
        pass
    except TypeError:  # no weak references: keep it (and its fingerprint) alive
        held = _strong.get(id(function))
        if held is not None and held[0] is function:
            return held[1]
    with _computing:  # one at a time: ast.parse is not thread-safe on CPython 3.11
        parts = _compute(function)
    try:
        _cache[function] = parts
    except TypeError:
        _strong[id(function)] = (function, parts)
    return parts
