"""What a trusted tag must be before its module is imported.

``trusted=["pkg.mod.MyEstimator"]`` makes the loader import ``pkg.mod``: importing runs the
module's code, so it happens only when the file needs that tag *and* the tag can be what the
file needs.  Two checks run before any import (:func:`check_trusted_node`):

1. The file's node must be one a trusted tag can build: an estimator node (``params`` and
   ``attrs``) for a class tag, a bare node for a ``function:`` tag, an enum member (``name``,
   or ``value`` for a flag) for an ``enum:`` tag (the handler then also requires an
   ``enum.Enum`` subclass).
2. The tag must be able to name that: a class for an estimator node, a function for a function
   node.  If its module is already imported, the object itself is looked at (nothing runs);
   otherwise the module's source is found on ``sys.path`` without executing any package and
   read as text: a name the module binds with ``def`` (for a class tag), with ``class`` (for a
   function tag), or does not bind at all, is refused.  Only when the source cannot tell
   (re-exports, star imports, compiled modules, custom finders) is the module imported, and then
   the object must still be a ``BaseEstimator`` subclass or a plain function.

Errors say that the tag names no estimator (or function), and that nothing was imported.
"""

from __future__ import annotations

import ast
import importlib.machinery
import sys
from typing import Any

from .errors import UntrustedTypeError, quote

__all__ = ["check_trusted_node"]

_FUNCTION = "function:"
_ENUM = "enum:"


def check_trusted_node(tag: str, node: dict[str, Any], path: str) -> None:
    """Refuse a trusted tag that cannot build ``node``, importing nothing.

    Parameters
    ----------
    tag : str
        A tag the caller passed in ``trusted=`` that the registry does not know.
    node : dict[str, Any]
        The file's node with that tag.
    path : str
        Its graph path.
    """
    where = path or "<root>"
    keys = set(node) - {"$type", "$id"}
    function = tag.startswith(_FUNCTION)
    if tag.startswith(_ENUM):
        if keys not in ({"name"}, {"value"}):
            raise UntrustedTypeError(
                f"trusted tag {quote(tag)} names an enum, but the file's node is not an enum "
                "member; nothing was imported", where, tags=(tag,))
        # "other" is a live class that is no estimator: the handler then requires an Enum.
        kind = _static_kind(tag[len(_ENUM):])
        if kind not in ("class", "other", "unknown"):
            raise UntrustedTypeError(
                f"trusted tag {quote(tag)} names no enum class; nothing was imported", where,
                tags=(tag,))
        return
    if function and keys:
        raise UntrustedTypeError(
            f"trusted tag {quote(tag)} names a function, but the file's node is not a function "
            "reference; nothing was imported", where, tags=(tag,))
    if not function and keys != {"params", "attrs"}:
        raise UntrustedTypeError(
            f"trusted tag {quote(tag)} is on a node that is not an estimator; a trusted tag "
            "must name an estimator class (nothing was imported)", where, tags=(tag,))
    dotted = tag[len(_FUNCTION):] if function else tag
    kind = _static_kind(dotted)
    wanted = "function" if function else "class"
    if kind in ("missing", "function", "class") and kind != wanted:
        what = "no estimator class" if not function else "no function"
        found = {"missing": "its module does not define it", "function": "it is a function",
                 "class": "it is a class"}[kind]
        raise UntrustedTypeError(
            f"trusted tag {quote(tag)} names {what} ({found}); nothing was imported", where,
            tags=(tag,))
    if kind == "other":
        what = "no estimator class" if not function else "no plain function"
        raise UntrustedTypeError(f"trusted tag {quote(tag)} names {what}; nothing was imported",
                                 where, tags=(tag,))


def _static_kind(dotted: str) -> str:
    """``"class"``, ``"function"``, ``"other"``, ``"missing"`` or ``"unknown"`` for a dotted
    path, without importing anything."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name, attrs = ".".join(parts[:split]), parts[split:]
        module = sys.modules.get(module_name)
        if module is not None:
            return _live_kind(module, attrs)
    for split in range(len(parts) - 1, 0, -1):
        module_name, attrs = ".".join(parts[:split]), parts[split:]
        source = _find_source(module_name)
        if source is None:
            continue
        if source == "":
            return "unknown"  # found, but not a Python source file
        if len(attrs) != 1:
            return "unknown"  # a nested name: the source alone cannot tell
        return _source_kind(source, attrs[0])
    return "unknown"  # not on sys.path as plain files: a custom finder may know it


def _live_kind(module: Any, attrs: list[str]) -> str:
    import inspect
    import types

    obj: Any = module
    for attr in attrs:
        try:
            obj = inspect.getattr_static(obj, attr)
        except AttributeError:
            return "missing"
    if isinstance(obj, type):
        from sklearn.base import BaseEstimator

        return "class" if issubclass(obj, BaseEstimator) else "other"
    if type(obj) is types.FunctionType:
        return "function"
    return "other"


def _find_source(module_name: str) -> str | None:
    """The text of ``module_name``'s source found on ``sys.path`` without executing any
    package; ``""`` when it is found but is not a Python source; None when not found."""
    path: list[str] | None = None
    spec = None
    for i, part in enumerate(module_name.split(".")):
        if i and path is None:
            return None  # a parent that is not a package
        try:
            spec = importlib.machinery.PathFinder.find_spec(part, path)
        except (ImportError, ValueError, OSError):
            return None
        if spec is None:
            return None
        path = list(spec.submodule_search_locations or []) or None
    if spec is None:
        return None
    origin = spec.origin
    if not isinstance(origin, str) or not origin.endswith(".py"):
        return ""
    try:
        with open(origin, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return ""


def _source_kind(source: str, name: str) -> str:
    """How a module's source binds ``name`` at top level (``"unknown"`` if it cannot tell).

    The last statement that binds it decides (a class defined after a star import is that
    class); a module ``__getattr__`` or ``globals()`` tricks leave it unknown.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return "unknown"
    found, dynamic = "missing", False
    for stmt in tree.body:
        if isinstance(stmt, ast.ClassDef) and stmt.name == name:
            found = "class"
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == name:
            found = "function"
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                stmt.name == "__getattr__"):
            dynamic = True
        elif _assigns_literal(stmt, name):
            found = "other"  # a string, number or container: neither a class nor a function
        elif _mentions(stmt, name):
            found = "unknown"  # bound another way (assigned, imported, conditionally...)
        elif _is_dynamic(stmt):
            dynamic = True
    return "unknown" if dynamic and found in ("missing", "other") else found


def _is_dynamic(stmt: ast.stmt) -> bool:
    return any(isinstance(node, ast.Name) and node.id in ("globals", "setattr", "vars", "exec",
                                                          "eval")
               for node in ast.walk(stmt))


def _assigns_literal(stmt: ast.stmt, name: str) -> bool:
    if isinstance(stmt, ast.Assign):
        targets, value = stmt.targets, stmt.value
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        targets, value = [stmt.target], stmt.value
    else:
        return False
    if not (len(targets) == 1 and isinstance(targets[0], ast.Name) and targets[0].id == name):
        return False
    return all(isinstance(n, (ast.Constant, ast.JoinedStr, ast.FormattedValue, ast.List,
                              ast.Tuple, ast.Set, ast.Dict, ast.Load, ast.BinOp, ast.operator))
               for n in ast.walk(value))


def _mentions(stmt: ast.stmt, name: str) -> bool:
    """Whether a statement may bind ``name`` (assignment, import, nested definition)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return False  # binds its own name only (handled by the caller)
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and node.id == name and not isinstance(node.ctx, ast.Load):
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and (
                node.name == name):
            return True
        if isinstance(node, ast.alias) and (
                node.name == "*" or (node.asname or node.name).split(".")[0] == name):
            return True
    return False
