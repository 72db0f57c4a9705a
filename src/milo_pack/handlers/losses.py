"""scikit-learn's Cython loss objects (``sklearn._loss._loss``, ``sklearn.linear_model._sgd_fast``).

They pickle as ``(class, (parameter,))``; here each allow-listed class is stored as its tag and the
list of its numeric constructor arguments, and rebuilt by calling the class with them.

The classes are a static table, not found by listing the module: before scikit-learn 1.9 the
compiled module reports ``__module__ == "_loss"`` (not ``sklearn._loss._loss``), so a filter on
``__module__`` found nothing and GradientBoosting, HistGradientBoosting and the GLMs could not be
saved.  Each table entry is looked up where it lives in the installed version and skipped when
that version does not have it (``Log``, ``SquaredLoss`` and ``Huber`` left ``_sgd_fast`` in 1.6);
the tag is always ``<table module>.<name>``, whatever ``__module__`` says.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from ..engine import LoadContext, SaveContext
from ..errors import ManifestError, UnsupportedTypeError
from ..registry import Handler, LoadFn, Registry

# Module -> (classes by name, the bare module names its compiled classes may report).
_TABLE: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("sklearn._loss._loss",
     ("CyAbsoluteError", "CyExponentialLoss", "CyHalfBinomialLoss", "CyHalfGammaLoss",
      "CyHalfMultinomialLoss", "CyHalfPoissonLoss", "CyHalfSquaredError", "CyHalfTweedieLoss",
      "CyHalfTweedieLossIdentity", "CyHuberLoss", "CyPinballLoss"),
     ("_loss",)),
    ("sklearn.linear_model._sgd_fast",
     ("EpsilonInsensitive", "Hinge", "ModifiedHuber", "SquaredEpsilonInsensitive",
      "SquaredHinge",
      # scikit-learn < 1.6 only (replaced by the sklearn._loss classes):
      "Log", "SquaredLoss", "Huber"),
     ("_sgd_fast",)),
)


def _classes(module_name: str, names: tuple[str, ...]) -> list[tuple[str, type]]:
    module = importlib.import_module(module_name)
    found = []
    for name in names:
        cls = getattr(module, name, None)
        if isinstance(cls, type) and not inspect.isabstract(cls):
            found.append((f"{module_name}.{name}", cls))
    return found


def _args(obj: Any) -> tuple[Any, ...] | None:
    """The constructor arguments of a loss object, from its pickle reduction.

    scikit-learn >= 1.6 reduces to ``(cls, args)``; 1.5's classes use Cython's generic
    ``(__pyx_unpickle_Cls, (cls, checksum, state))``, whose state holds the same values.
    """
    reduced = obj.__reduce__()
    if reduced[0] is type(obj) and isinstance(reduced[1], tuple):
        return reduced[1]
    inner = reduced[1] if isinstance(reduced, tuple) and len(reduced) > 1 else None
    if isinstance(inner, tuple) and len(inner) == 3 and inner[0] is type(obj):
        if isinstance(inner[2], tuple):
            return inner[2]
        # Some Cython versions (scikit-learn 1.8's) pass the state as the third item instead.
        if inner[2] is None and len(reduced) == 3 and isinstance(reduced[2], tuple):
            return reduced[2]
    return None


def _n_args(cls: type) -> int:
    try:
        instance = cls()
    except TypeError:
        return 1
    args = _args(instance)
    return len(args) if args is not None else 0


def _save(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
    args = _args(obj)
    if args is None or not all(type(a) in (int, float) for a in args):
        raise UnsupportedTypeError(f"{type(obj).__name__} has non-numeric arguments", path)
    if _args(type(obj)(*args)) != args:  # the state must be exactly the constructor's
        raise UnsupportedTypeError(f"{type(obj).__name__} is not rebuilt by its arguments",
                                   path)
    return {"args": list(args)}


def _loader(cls: type[Any]) -> LoadFn:
    n_args = _n_args(cls)

    def load(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:
        args = node["args"]
        if (not isinstance(args, list) or len(args) != n_args
                or any(type(a) not in (int, float) for a in args)):
            raise ManifestError(f"{cls.__name__} takes {n_args} numeric arguments", path)
        return cls(*args)

    return load


def _module_loader(module_name: str, names: tuple[str, ...]) -> Callable[[Registry], None]:
    def load(registry: Registry) -> None:
        keys = frozenset({"args"})
        for tag, cls in _classes(module_name, names):
            if tag not in registry.by_tag and cls not in registry.by_type:
                registry.add(Handler(tag, _save, _loader(cls), keys, keys, types=(cls,),
                                     cls=cls, memo=False))

    return load


def register(registry: Registry) -> None:
    for module_name, names, bare_names in _TABLE:
        loader = _module_loader(module_name, names)  # idempotent: may run once per key
        registry.add_lazy(module_name, loader)
        # An object whose class reports the bare compiled module name is found by it too.
        for bare in bare_names:
            registry.add_lazy(bare, loader)
