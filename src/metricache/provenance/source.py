"""Source to canonical hashes: a function's or class's AST, found and walked.

The walk hashes node types and their non-empty fields, depth-first, never
positions (attributes, not fields), ``type_comment`` or docstrings, so neither
formatting nor comments nor the release of Python (new fields are empty, hence
skipped) change it. Sources come from :mod:`linecache` (which also knows
notebook cells), parsed once per file per process.
"""

from __future__ import annotations

import ast
import functools
import linecache
import sys
import types
from collections.abc import Iterator
from typing import Any

import xxhash

__all__ = ["canonical", "class_node", "function_node"]


# -- the canonical AST walk ----------------------------------------------------


def _strip_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    is_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    return body[1:] if is_doc and isinstance(first.value.value, str) else body  # type: ignore[union-attr]


def _fields(node: ast.AST) -> Iterator[tuple[str, Any]]:
    """A node's non-empty fields (positions are attributes, not fields); no docstrings."""
    for name in node._fields:
        value = getattr(node, name, None)
        if value is None or value == [] or name == "type_comment":
            continue
        if name == "body" and isinstance(node, _DOCUMENTED) and isinstance(value, list):
            value = _strip_docstring(value)
        yield name, value


_DOCUMENTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)


def canonical(node: ast.AST) -> str:
    """A canonical hash of an AST: node types and non-empty fields, depth-first."""
    h = xxhash.xxh3_128()
    stack: list[Any] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.AST):
            fields = list(_fields(item))
            h.update(f"({type(item).__name__}:{len(fields)}".encode())
            for name, value in reversed(fields):
                stack.append(value)
                stack.append(("field", name))
        elif isinstance(item, tuple) and len(item) == 2 and item[0] == "field":
            h.update(f"|{item[1]}=".encode())
        elif isinstance(item, list):
            h.update(f"[{len(item)}".encode())
            stack.extend(reversed(item))
        else:
            text = repr(item).encode("utf-8", "surrogatepass")
            h.update(f"<{type(item).__name__}:{len(text)}>".encode() + text)
    return h.hexdigest()


# -- finding a function's AST --------------------------------------------------


@functools.lru_cache(maxsize=256)
def _parsed(filename: str, size: int) -> ast.Module | None:
    """The parsed source of a file (by its linecache lines), once per process."""
    try:
        return ast.parse("".join(linecache.getlines(filename)))
    except (SyntaxError, ValueError):
        return None


def _module_ast(filename: str, module_globals: dict[str, Any] | None) -> ast.Module | None:
    lines = linecache.getlines(filename, module_globals)
    return _parsed(filename, sum(map(len, lines))) if lines else None


def function_node(function: types.FunctionType) -> ast.AST | None:
    """The ``def`` or ``lambda`` node that compiled to *function*, or None."""
    code = function.__code__
    tree = _module_ast(code.co_filename, function.__globals__)
    if tree is None:
        return None
    lambdas: list[ast.Lambda] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            if node.name == code.co_name and code.co_firstlineno in (first, node.lineno):
                return node
        elif isinstance(node, ast.Lambda) and node.lineno == code.co_firstlineno:
            lambdas.append(node)
    if code.co_name != "<lambda>" or not lambdas:
        return None
    wanted = code.co_varnames[: code.co_argcount]
    same = [n for n in lambdas if tuple(a.arg for a in n.args.args) == wanted] or lambdas
    return _by_column(same, code)


def _by_column(lambdas: list[ast.Lambda], code: types.CodeType) -> ast.Lambda:
    """Of several lambdas on one line, the one whose body holds *code*'s first column."""
    positions = getattr(code, "co_positions", None)  # Python 3.11+
    spans = [] if positions is None else list(positions())
    columns = [p[2] for p in spans if p[2] is not None and p[3] is not None and p[3] > p[2]]
    for node in lambdas:
        body = node.body
        end = body.end_col_offset if body.end_lineno == body.lineno else None
        if columns and body.col_offset <= min(columns) and (end is None or min(columns) < end):
            return node
    return lambdas[0]


def class_node(cls: type) -> ast.ClassDef | None:
    """The ``class`` statement of a module-level class, or None."""
    module = sys.modules.get(cls.__module__)
    filename = getattr(module, "__file__", None)
    if filename is None or "." in cls.__qualname__:
        return None
    tree = _module_ast(filename, vars(module))
    for node in [] if tree is None else tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            return node
    return None
