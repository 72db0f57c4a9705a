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

Arrays in an object's state that are views into another array of the same state (Birch's
``_CFNode.centroids_`` is a view of its ``init_centroids_``, and ``partial_fit`` writes through
it) are saved as views, so they come back sharing memory, as they were.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from ..engine import CheckContext, LoadContext, SaveContext, join_path
from ..errors import InvariantError, ManifestError, UnsupportedTypeError, quote
from ..registry import Handler, Registry
from .invariants import check_fitted, check_state

# Internal classes reached from fitted estimators, by module: (module, class names or "*"
# for every class defined in that module).  The table spans every supported scikit-learn
# (1.5 on): a module or name the installed version does not have is skipped, and a class is
# registered where it is defined (a name imported from another module is skipped here).
_INTERNAL = (
    ("sklearn.ensemble._hist_gradient_boosting.binning", ("_BinMapper",)),
    ("sklearn.ensemble._hist_gradient_boosting.predictor", ("TreePredictor",)),
    ("sklearn._loss.loss", "*"),
    ("sklearn._loss.link", "*"),
    ("sklearn.metrics._scorer",
     ("_Scorer", "_PassthroughScorer", "_MultimetricScorer", "_CurveScorer")),
    # scikit-learn 1.5 kept _CurveScorer here (its tag then names this module; see
    # migrations.MOVES).
    ("sklearn.model_selection._classification_threshold", ("_CurveScorer",)),
    # _RemainderColsList: scikit-learn 1.5 and 1.6 only (a plain list from 1.7 on).
    ("sklearn.compose._column_transformer", ("make_column_selector", "_RemainderColsList")),
    ("sklearn.gaussian_process.kernels", "*"),
    ("sklearn.neural_network._stochastic_optimizers", ("SGDOptimizer", "AdamOptimizer")),
    ("sklearn.cluster._birch", ("_CFNode", "_CFSubcluster")),
    ("sklearn.cluster._bisect_k_means", ("_BisectingTree",)),
    ("sklearn.model_selection._split", "*"),
    ("sklearn.utils._bunch", ("Bunch",)),
    ("sklearn.feature_extraction.text", ("_VectorizerMixin",)),
    ("sklearn.calibration", ("_CalibratedClassifier", "_SigmoidCalibration")),
    ("sklearn.gaussian_process._gpc", ("_BinaryGaussianProcessClassifierLaplace",)),
    ("sklearn.multiclass", ("_ConstantPredictor",)),
    ("sklearn.utils._metadata_requests", ("MetadataRequest", "MethodMetadataRequest")),
)
# Named tuples fitted estimators hold, rebuilt from their fields by their own class.
_NAMEDTUPLES = (
    ("sklearn.impute._iterative", "_ImputerTriplet"),
    ("sklearn.gaussian_process.kernels", "Hyperparameter"),
)
# Experimental estimators: ``all_estimators()`` lists them only once the user imported the
# ``sklearn.experimental`` enabler, so they are registered from their private modules here, under
# the public path the enabler creates (the tag must not depend on what the user imported).
_EXPERIMENTAL = (
    ("sklearn.impute._iterative", "IterativeImputer", "sklearn.impute"),
    ("sklearn.model_selection._search_successive_halving", "HalvingGridSearchCV",
     "sklearn.model_selection"),
    ("sklearn.model_selection._search_successive_halving", "HalvingRandomSearchCV",
     "sklearn.model_selection"),
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


@functools.lru_cache(maxsize=8192)  # bounded: names come from files
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


# -- state and views --------------------------------------------------------------------------


def _view_bases(state: dict) -> list[np.ndarray]:
    """The arrays of a state that other arrays of the same state may be views of."""
    return [v for v in state.values()
            if type(v) is np.ndarray and v.dtype.kind not in "OV" and v.size
            and v.flags.c_contiguous]


def _extent(arr: np.ndarray) -> tuple[int, int]:
    """The byte range an array with non-negative strides spans."""
    low = arr.__array_interface__["data"][0]
    span = sum((n - 1) * s for n, s in zip(arr.shape, arr.strides, strict=True))
    return low, low + span + arr.itemsize


def _base_of(value: Any, bases: list[np.ndarray]) -> np.ndarray | None:
    """The largest array of the state whose memory holds ``value`` (which is not itself).

    Memory ranges, not ``.base`` identity: a loaded array's ``.base`` is its section buffer.
    """
    if (type(value) is not np.ndarray or not value.size or value.dtype.kind in "OV"
            or any(s < 0 for s in value.strides)):
        return None
    low, high = _extent(value)
    found = None
    for base in bases:
        blow, bhigh = _extent(base)
        if (blow <= low and high <= bhigh and (blow, bhigh) != (low, high)
                and base.dtype == value.dtype and (found is None or base.size > found.size)):
            found = base
    return found


def view_index(view: np.ndarray, base: np.ndarray) -> list[list[int]] | None:
    """``[start, stop, step]`` per axis such that ``base[slices]`` is ``view``, or None.

    Only basic slicing with positive steps is expressed, so a file can never ask for offsets or
    strides: the loader slices the base array, and numpy bounds the result.
    """
    if view.ndim != base.ndim or view.dtype != base.dtype or not base.flags.c_contiguous:
        return None
    offset = view.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    index = []
    for n, vstride, bstride in zip(view.shape, view.strides, base.strides, strict=True):
        if bstride <= 0 or offset < 0:
            return None
        start, offset = divmod(offset, bstride)
        step = vstride // bstride if n > 1 and vstride > 0 and vstride % bstride == 0 else 1
        index.append([start, start + (n - 1) * step + 1 if n else start, step])
    if offset:
        return None
    rebuilt = base[tuple(slice(*t) for t in index)]
    same = (rebuilt.shape == view.shape
            and rebuilt.__array_interface__["data"][0] == view.__array_interface__["data"][0]
            and all(a == b for n, a, b in zip(view.shape, view.strides, rebuilt.strides,
                                                 strict=True) if n > 1))
    return index if same else None


def encode_state(state: dict, ctx: SaveContext, path: str,
                 bases: list[np.ndarray]) -> dict:
    """Encode an object's attributes; arrays viewing another attribute become view nodes."""
    fields = {}
    for name, value in state.items():
        where = join_path(path, name)
        base = _base_of(value, bases)
        index = view_index(value, base) if base is not None else None
        if index is None:
            fields[name] = ctx.encode(value, where)
        else:
            fields[name] = {"$type": "numpy.view", "base": ctx.encode(base, where),
                            "index": index, "shape": list(value.shape)}
    return fields


def _check_view(node: dict, ctx: CheckContext, path: str) -> None:
    index, shape = node["index"], node["shape"]
    ok = (isinstance(index, list) and isinstance(shape, list) and len(index) == len(shape)
          and len(index) <= ctx.limits.max_ndim
          and all(isinstance(t, list) and len(t) == 3 and all(type(v) is int for v in t)
                  and 0 <= t[0] <= t[1] and t[2] > 0 for t in index)
          and all(type(n) is int and n >= 0 for n in shape))
    if not ok:
        raise ManifestError("a view has one [start, stop, step] per axis and a shape", path)


def _load_view(node: dict, ctx: LoadContext, path: str) -> np.ndarray:
    base = ctx.decode(node["base"], join_path(path, "base"))
    if type(base) is not np.ndarray or base.ndim != len(node["index"]):
        raise InvariantError("a view's base must be an array of as many axes", path)
    result = base[tuple(slice(*t) for t in node["index"])]
    if list(result.shape) != node["shape"]:
        raise InvariantError("a view does not have its declared shape", path)
    return result


def _view_handler() -> Handler:
    keys = frozenset({"base", "index", "shape"})
    return Handler("numpy.view", _unreachable_save, _load_view, keys, keys, check=_check_view)


def _unreachable_save(obj: Any, ctx: SaveContext, path: str) -> dict:  # pragma: no cover
    raise AssertionError("encode_state writes view nodes itself")


# -- named tuples and scipy splines -----------------------------------------------------------


def _namedtuple_handler(cls: type, tag: str) -> Handler:
    fields = tuple(cls._fields)

    def save(obj: Any, ctx: SaveContext, path: str) -> dict:
        return {"items": {k: ctx.encode(getattr(obj, k), join_path(path, k)) for k in fields}}

    def check(node: dict, ctx: CheckContext, path: str) -> None:
        if not isinstance(node["items"], dict) or tuple(node["items"]) != fields:
            raise ManifestError(f"{cls.__name__} has exactly the fields {list(fields)}", path)

    def load(node: dict, ctx: LoadContext, path: str) -> Any:
        return cls(**{k: ctx.decode(v, join_path(path, k)) for k, v in node["items"].items()})

    keys = frozenset({"items"})
    return Handler(tag, save, load, keys, keys, check=check, types=(cls,), memo=False)


def _bspline_handler() -> Handler:
    from scipy.interpolate import BSpline

    def save(obj: BSpline, ctx: SaveContext, path: str) -> dict:
        if type(obj.extrapolate) not in (bool, str) or type(obj.k) is not int:
            raise UnsupportedTypeError("BSpline with unusual extrapolate or k", path)
        # The coefficients as the constructor takes them (it moves `axis` to the front).
        coef = np.moveaxis(obj.c, 0, obj.axis)
        return {"t": ctx.encode(obj.t, join_path(path, "t")),
                "c": ctx.encode(coef, join_path(path, "c")),
                "k": obj.k, "extrapolate": obj.extrapolate, "axis": obj.axis}

    def check(node: dict, ctx: CheckContext, path: str) -> None:
        if type(node["k"]) is not int or type(node["axis"]) is not int or not (
                type(node["extrapolate"]) is bool or node["extrapolate"] == "periodic"):
            raise ManifestError("BSpline k and axis must be ints, extrapolate a bool", path)

    def load(node: dict, ctx: LoadContext, path: str) -> BSpline:
        t = ctx.decode(node["t"], join_path(path, "t"))
        c = ctx.decode(node["c"], join_path(path, "c"))
        if not all(type(a) is np.ndarray and a.dtype.kind in "fc" for a in (t, c)):
            raise InvariantError("BSpline knots and coefficients must be float arrays", path)
        try:
            # The constructor checks knots, degree and coefficient shapes, so nothing
            # inconsistent reaches scipy's compiled evaluation code.
            return BSpline(t, c, node["k"], extrapolate=node["extrapolate"], axis=node["axis"])
        except (TypeError, ValueError) as exc:
            raise InvariantError(f"invalid BSpline: {exc}", path) from None

    keys = frozenset({"t", "c", "k", "extrapolate", "axis"})
    return Handler("scipy.interpolate.BSpline", save, load, keys, keys, check=check,
                   types=(BSpline,))


# -- estimators -------------------------------------------------------------------------------


def _state_of(obj: Any) -> dict:
    state = obj.__getstate__()
    if not isinstance(state, dict):
        raise UnsupportedTypeError(f"{type(obj).__name__}.__getstate__ did not return a dict")
    state = dict(state)
    state.pop("_sklearn_version", None)
    return state


def _estimator_handler(cls: type, tag: str, trusted: bool) -> Handler:
    # A module's loader makes a handler for each of its estimators (~15 a module) while a file
    # uses one or two: reading each signature (inspect, ~30 µs) waits until a handler is used.
    params_of = functools.cache(lambda: frozenset(cls._get_param_names()))

    def save(obj: Any, ctx: SaveContext, path: str) -> dict:
        param_names = params_of()
        state = _state_of(obj)
        bases = _view_bases(state)
        params = {k: v for k, v in state.items() if k in param_names}
        attrs = {k: v for k, v in state.items() if k not in param_names}
        return {"params": encode_state(params, ctx, path, bases),
                "attrs": encode_state(attrs, ctx, path, bases)}

    def check(node: dict, ctx: CheckContext, path: str) -> None:
        params, attrs = node["params"], node["attrs"]
        if not isinstance(params, dict) or not isinstance(attrs, dict):
            raise ManifestError("params and attrs must be objects", path)
        unknown = set(params) - params_of()
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
        check_fitted(obj, path)
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
        return {"state": encode_state(state, ctx, path, _view_bases(state))}

    def check(node: dict, ctx: CheckContext, path: str) -> None:
        if not isinstance(node["state"], dict):
            raise ManifestError("state must be an object", path)
        check_attribute_names(cls, node["state"], path)

    def load(node: dict, ctx: LoadContext, path: str) -> Any:
        obj = cls.__new__(cls)
        ctx.register(node, obj)
        state = {k: ctx.decode(v, join_path(path, k)) for k, v in node["state"].items()}
        check_state(cls, state, path)
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


def _public_modules() -> list[str]:
    """scikit-learn's public modules, found by listing its package directory (no imports).

    The same modules ``sklearn.utils.all_estimators()`` crawls; here each one is imported only
    when a file or an object needs a type from it.
    """
    import os

    import sklearn

    root = os.path.dirname(sklearn.__file__)
    skip = {"tests", "externals", "setup", "conftest", "experimental", "estimator_checks"}
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        parts = [] if rel == "." else rel.split(os.sep)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("_") and d not in skip)
        if "__init__.py" not in filenames:
            continue
        found.append(".".join(["sklearn", *parts]))
        found.extend(".".join(["sklearn", *parts, f[:-3]]) for f in sorted(filenames)
                     if f.endswith(".py") and not f.startswith("_") and f[:-3] not in skip)
    return found


def _is_estimator_class(name: str, obj: Any) -> bool:
    return (isinstance(obj, type) and not name.startswith("_") and name != "BaseEstimator"
            and issubclass(obj, BaseEstimator) and obj.__module__.startswith("sklearn.")
            and not inspect.isabstract(obj))


def _module_estimators(module_name: str):
    """Loader registering the public estimators that ``module_name`` exports."""

    def load(registry: Registry) -> None:
        module = importlib.import_module(module_name)
        for name, obj in sorted(vars(module).items()):
            if _is_estimator_class(name, obj) and obj not in registry.by_type:
                tag = public_path(obj)
                if tag not in registry.by_tag:
                    registry.add(_estimator_handler(obj, tag, True))

    return load


def _internal_loader(module_name: str, names: Any):
    def load(registry: Registry) -> None:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # not in the installed scikit-learn
            return
        if names == "*":
            found = [obj for _, obj in sorted(vars(module).items())
                     if isinstance(obj, type) and obj.__module__ == module_name]
        else:
            found = [cls for cls in (getattr(module, name, None) for name in names)
                     if isinstance(cls, type) and cls.__module__ == module_name]
        for cls in found:
            if inspect.isabstract(cls) or cls in registry.by_type:
                continue
            tag = public_path(cls)
            if tag in registry.by_tag:
                continue
            if issubclass(cls, BaseEstimator):
                registry.add(_estimator_handler(cls, tag, True))
            else:
                registry.add(_object_handler(cls, tag))

    return load


def _experimental_loader(module_name: str, name: str, public_module: str):
    def load(registry: Registry) -> None:
        cls = getattr(importlib.import_module(module_name), name)
        tag = f"{public_module}.{name}"
        if tag not in registry.by_tag:
            registry.add(_estimator_handler(cls, tag, True))

    return load


def _namedtuple_loader(module_name: str, name: str):
    def load(registry: Registry) -> None:
        cls = getattr(importlib.import_module(module_name), name)
        if cls not in registry.by_type:
            registry.add(_namedtuple_handler(cls, public_path(cls)))

    return load


def register(registry: Registry) -> None:
    registry.add(_bunch_handler())
    registry.add(_view_handler())
    registry.add_lazy("scipy.interpolate", lambda r: r.add(_bspline_handler()))
    # Experimental and internal classes first: their loaders run before the public module's.
    for module_name, name, public_module in _EXPERIMENTAL:
        loader = _experimental_loader(module_name, name, public_module)
        registry.add_lazy(public_module, loader)
        registry.add_lazy(module_name, loader)
    for module_name, name in _NAMEDTUPLES:
        registry.add_lazy(module_name, _namedtuple_loader(module_name, name))
    for module_name, names in _INTERNAL:
        if module_name != "sklearn.utils._bunch":
            loader = _internal_loader(module_name, names)
            registry.add_lazy(module_name, loader)
            # Classes a public package re-exports (KFold) are tagged by that package: a file
            # naming them must find this loader there too, in a fresh process.
            public = module_name.split("._")[0]
            if public != module_name:
                registry.add_lazy(public, loader)
    for module_name in _public_modules():
        registry.add_lazy(module_name, _module_estimators(module_name))

    def resolve_user_estimator(obj: Any) -> Handler | None:
        cls = type(obj)
        if not isinstance(obj, BaseEstimator) or cls.__module__ == "__main__" or (
                "<locals>" in cls.__qualname__):
            return None
        tag = f"{cls.__module__}.{cls.__qualname__}"
        handler = _estimator_handler(cls, tag, trusted=False)
        registry.by_type[cls] = handler
        return handler

    registry.fallback_resolvers.append(resolve_user_estimator)

    def trusted_factory(cls: Any, tag: str) -> Handler | None:
        if isinstance(cls, type) and issubclass(cls, BaseEstimator):
            handler = _estimator_handler(cls, tag, trusted=False)
            return handler
        return None

    registry.trusted_factories.append(trusted_factory)
