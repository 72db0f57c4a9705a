"""scikit-learn estimators, handled generically, and the internal objects they hold.

Writing a handler per estimator (PyMilo's way) never keeps up with scikit-learn's ~200 classes.
Instead, every class from ``sklearn.utils.all_estimators()`` is allow-listed under its public
import path and saved from its pickle state: constructor parameters (``params``: the names in
``_get_param_names()``) and fitted attributes (``attrs``: the rest of ``__getstate__()``).
Loading creates the instance without running ``__init__`` and hands the state to scikit-learn's
own ``__setstate__``, as unpickling does, but only after every name was checked:

- parameter names must be the class's constructor parameters;
- attribute names must be identifiers, not dunders, and must not shadow a method, property or any
  other descriptor of the class;
- parameters that hold filesystem paths (``memory=``) are refused.

Internal objects that fitted estimators hold (HistGradientBoosting predictors and bin mappers,
loss and link objects, scorers, Gaussian-process kernels, Birch nodes, MLP optimizers...) are
allow-listed by name below and saved from their ``__dict__``.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from typing import Any

from sklearn.base import BaseEstimator

from ..engine import CheckContext, LoadContext, SaveContext, join_path
from ..errors import ManifestError, UnsupportedTypeError, quote
from ..registry import Handler, Registry

# Internal classes reached from fitted estimators, by module: (module, class names or "*"
# for every class defined in that module).
_INTERNAL = (
    ("sklearn.ensemble._hist_gradient_boosting.binning", ("_BinMapper",)),
    ("sklearn.ensemble._hist_gradient_boosting.predictor", ("TreePredictor",)),
    ("sklearn._loss.loss", "*"),
    ("sklearn._loss.link", "*"),
    ("sklearn.metrics._scorer", ("_Scorer", "_PassthroughScorer", "_MultimetricScorer")),
    ("sklearn.compose._column_transformer", ("make_column_selector",)),
    ("sklearn.gaussian_process.kernels", "*"),
    ("sklearn.neural_network._stochastic_optimizers", ("SGDOptimizer", "AdamOptimizer")),
    ("sklearn.cluster._birch", ("_CFNode", "_CFSubcluster")),
    ("sklearn.model_selection._split", "*"),
    ("sklearn.utils._bunch", ("Bunch",)),
    ("sklearn.feature_extraction.text", ("_VectorizerMixin",)),
)
_PATH_PARAMS = frozenset({"memory"})


def public_path(cls: type) -> str:
    """The shortest public import path of a scikit-learn class (its tag)."""
    parts = cls.__module__.split(".")
    public = []
    for part in parts:
        if part.startswith("_"):
            break
        public.append(part)
    while public:
        module = importlib.import_module(".".join(public))
        if getattr(module, cls.__name__, None) is cls:
            return f"{'.'.join(public)}.{cls.__name__}"
        public.pop()
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_descriptor(cls: type, name: str) -> bool:
    try:
        attr = inspect.getattr_static(cls, name)
    except AttributeError:
        return False
    return hasattr(type(attr), "__get__") or hasattr(type(attr), "__set__")


def check_attribute_names(cls: type, names: Any, path: str) -> None:
    """Refuse attribute names that are not plain data: dunders, methods, properties."""
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            raise ManifestError(f"attribute name {quote(name)} is not an identifier", path)
        if name.startswith("__") and name.endswith("__"):
            raise ManifestError(f"attribute name {quote(name)} is a dunder", path)
        if _is_descriptor(cls, name):
            raise ManifestError(
                f"attribute {quote(name)} would shadow a method or property of "
                f"{cls.__name__}", path)


# -- estimators -------------------------------------------------------------------------------


def _state_of(obj: Any) -> dict:
    state = obj.__getstate__()
    if not isinstance(state, dict):
        raise UnsupportedTypeError(f"{type(obj).__name__}.__getstate__ did not return a dict")
    state = dict(state)
    state.pop("_sklearn_version", None)
    return state


def _estimator_handler(cls: type, tag: str, trusted: bool) -> Handler:
    param_names = frozenset(cls._get_param_names())

    def save(obj: Any, ctx: SaveContext, path: str) -> dict:
        state = _state_of(obj)
        params = {k: v for k, v in state.items() if k in param_names}
        attrs = {k: v for k, v in state.items() if k not in param_names}
        return {
            "params": {k: ctx.encode(v, join_path(path, k)) for k, v in params.items()},
            "attrs": {k: ctx.encode(v, join_path(path, k)) for k, v in attrs.items()},
        }

    def check(node: dict, ctx: CheckContext, path: str) -> None:
        params, attrs = node["params"], node["attrs"]
        if not isinstance(params, dict) or not isinstance(attrs, dict):
            raise ManifestError("params and attrs must be objects", path)
        unknown = set(params) - param_names
        if unknown:
            raise ManifestError(
                f"{quote(sorted(unknown))} are not parameters of {cls.__name__}", path)
        overlap = set(params) & set(attrs)
        if overlap:
            raise ManifestError(f"{quote(sorted(overlap))} are both params and attrs", path)
        check_attribute_names(cls, attrs, path)
        check_attribute_names(cls, params, path)
        for name in _PATH_PARAMS & set(params):
            if params[name] is not None:
                raise ManifestError(
                    f"parameter {name!r} names a path or cache; refused on load", path)

    def load(node: dict, ctx: LoadContext, path: str) -> Any:
        obj = cls.__new__(cls)
        ctx.register(node, obj)
        state = {k: ctx.decode(v, join_path(path, k)) for k, v in node["params"].items()}
        state.update((k, ctx.decode(v, join_path(path, k))) for k, v in node["attrs"].items())
        version = ctx.writer.get("scikit-learn")
        if version is not None:
            state["_sklearn_version"] = version
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            obj.__setstate__(state)
        return obj

    keys = frozenset({"params", "attrs"})
    return Handler(tag, save, load, keys, keys, check=check, types=(cls,), trusted=trusted,
                   cls=cls)


# -- plain internal objects -------------------------------------------------------------------


def _object_handler(cls: type, tag: str, trusted: bool = True) -> Handler:
    custom_setstate = hasattr(cls, "__setstate__")

    def save(obj: Any, ctx: SaveContext, path: str) -> dict:
        state = obj.__getstate__() if hasattr(obj, "__getstate__") else obj.__dict__
        if state is None:
            state = {}
        if not isinstance(state, dict) or getattr(obj, "__slots__", None):
            raise UnsupportedTypeError(f"{cls.__name__} has no plain __dict__ state", path)
        return {"state": {k: ctx.encode(v, join_path(path, k)) for k, v in state.items()}}

    def check(node: dict, ctx: CheckContext, path: str) -> None:
        if not isinstance(node["state"], dict):
            raise ManifestError("state must be an object", path)
        check_attribute_names(cls, node["state"], path)

    def load(node: dict, ctx: LoadContext, path: str) -> Any:
        obj = cls.__new__(cls)
        ctx.register(node, obj)
        state = {k: ctx.decode(v, join_path(path, k)) for k, v in node["state"].items()}
        if custom_setstate:
            obj.__setstate__(state)
        else:
            obj.__dict__.update(state)
        return obj

    keys = frozenset({"state"})
    return Handler(tag, save, load, keys, keys, check=check, types=(cls,), trusted=trusted,
                   cls=cls)


def _bunch_handler() -> Handler:
    from sklearn.utils import Bunch

    def save(obj: Bunch, ctx: SaveContext, path: str) -> dict:
        if any(type(k) is not str for k in obj):
            raise UnsupportedTypeError("Bunch keys must be strings", path)
        return {"items": {k: ctx.encode(v, join_path(path, k)) for k, v in obj.items()}}

    def check(node: dict, ctx: CheckContext, path: str) -> None:
        if not isinstance(node["items"], dict):
            raise ManifestError("Bunch items must be an object", path)

    def load(node: dict, ctx: LoadContext, path: str) -> Bunch:
        result = Bunch()
        ctx.register(node, result)
        for k, v in node["items"].items():
            result[k] = ctx.decode(v, join_path(path, k))
        return result

    keys = frozenset({"items"})
    return Handler("sklearn.utils.Bunch", save, load, keys, keys, check=check, types=(Bunch,))


def _internal_classes() -> list[type]:
    classes = []
    for module_name, names in _INTERNAL:
        module = importlib.import_module(module_name)
        if names == "*":
            found = [obj for _, obj in sorted(vars(module).items())
                     if isinstance(obj, type) and obj.__module__ == module_name]
        else:
            found = [getattr(module, name) for name in names]
        classes.extend(c for c in found if not inspect.isabstract(c))
    return classes


def register(registry: Registry) -> None:
    from sklearn.utils import Bunch, all_estimators

    registry.add(_bunch_handler())
    estimators = {cls for _, cls in all_estimators()}
    for cls in sorted(estimators, key=lambda c: (c.__module__, c.__name__)):
        registry.add(_estimator_handler(cls, public_path(cls), True))
    for cls in _internal_classes():
        if cls in registry.by_type or cls is Bunch:
            continue
        tag = public_path(cls)
        if issubclass(cls, BaseEstimator):
            registry.add(_estimator_handler(cls, tag, True))
        else:
            registry.add(_object_handler(cls, tag))

    def resolve_user_estimator(obj: Any) -> Handler | None:
        cls = type(obj)
        if not isinstance(obj, BaseEstimator) or cls.__module__ == "__main__" or (
                "<locals>" in cls.__qualname__):
            return None
        tag = f"{cls.__module__}.{cls.__qualname__}"
        handler = _estimator_handler(cls, tag, trusted=False)
        registry.by_type[cls] = handler
        return handler

    registry.resolvers.append(resolve_user_estimator)

    def trusted_factory(cls: type, tag: str) -> Handler | None:
        if issubclass(cls, BaseEstimator):
            handler = _estimator_handler(cls, tag, trusted=False)
            return handler
        return None

    registry.trusted_factories.append(trusted_factory)
