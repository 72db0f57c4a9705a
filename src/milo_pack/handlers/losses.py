"""scikit-learn's Cython loss objects (``sklearn._loss._loss``, ``sklearn.linear_model._sgd_fast``).

They pickle as ``(class, (parameter,))``; here each allow-listed class is stored as its tag and the
list of its numeric constructor arguments, and rebuilt by calling the class with them.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from ..engine import LoadContext, SaveContext
from ..errors import ManifestError, UnsupportedTypeError
from ..registry import Handler, Registry

_MODULES = ("sklearn._loss._loss", "sklearn.linear_model._sgd_fast")
_ABSTRACT = {"CyLossFunction", "Classification", "Regression", "LossFunction"}


def _classes(module_name: str) -> list[tuple[str, type]]:
    module = importlib.import_module(module_name)
    found = []
    for name in sorted(dir(module)):
        cls = getattr(module, name)
        if (isinstance(cls, type) and cls.__module__ == module_name and name not in _ABSTRACT
                and not name.startswith("_") and hasattr(cls, "__reduce__")):
            found.append((f"{module_name}.{name}", cls))
    return found


def _n_args(cls: type) -> int:
    try:
        instance = cls()
    except TypeError:
        return 1
    reduced = instance.__reduce__()
    return len(reduced[1]) if reduced[0] is cls else 0


def _save(obj: Any, ctx: SaveContext, path: str) -> dict:
    reduced = obj.__reduce__()
    args = reduced[1] if reduced[0] is type(obj) else ()
    if not all(type(a) in (int, float) for a in args):
        raise UnsupportedTypeError(f"{type(obj).__name__} has non-numeric arguments", path)
    return {"args": list(args)}


def _loader(cls: type):
    n_args = _n_args(cls)

    def load(node: dict, ctx: LoadContext, path: str) -> Any:
        args = node["args"]
        if (not isinstance(args, list) or len(args) != n_args
                or any(type(a) not in (int, float) for a in args)):
            raise ManifestError(f"{cls.__name__} takes {n_args} numeric arguments", path)
        return cls(*args)

    return load


def _module_loader(module_name: str):
    def load(registry: Registry) -> None:
        keys = frozenset({"args"})
        for tag, cls in _classes(module_name):
            if not inspect.isabstract(cls) and tag not in registry.by_tag:
                registry.add(Handler(tag, _save, _loader(cls), keys, keys, types=(cls,),
                                     cls=cls, memo=False))

    return load


def register(registry: Registry) -> None:
    for module_name in _MODULES:
        registry.add_lazy(module_name, _module_loader(module_name))
