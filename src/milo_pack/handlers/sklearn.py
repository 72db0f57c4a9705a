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

import importlib
import inspect
import types
import warnings
from typing import Any, Literal, cast

import numpy as np
import sklearn
from sklearn.base import BaseEstimator

from ..engine import CheckContext, LoadContext, SaveContext, join_path
from ..errors import InvariantError, ManifestError, UnsupportedTypeError, quote
from ..registry import Handler, Registry
from . import sklearn_tables as tables
from .invariants import check_fitted, check_state

_PATH_PARAMS = frozenset({"memory"})
_BASE_SETSTATE = BaseEstimator.__setstate__
_SKLEARN_VERSION = sklearn.__version__


_DESCRIPTORS: dict[type, frozenset[str]] = {}


def descriptor_names(cls: type) -> frozenset[str]:
    """Names that ``inspect.getattr_static(cls, name)`` finds as a descriptor.

    One walk over the class's MRO (then its metaclass's, as getattr_static looks there next),
    the first definition of each name winning, computed once per class: cheaper than one
    getattr_static per attribute name of every file.  Classes come from our tables or the
    caller's trust, never from a file, so the cache is bounded by the code.
    """
    found = _DESCRIPTORS.get(cls)
    if found is None:
        first: dict[str, Any] = {}
        # Annotated: mypy reads ``type(cls).__mro__`` as type's descriptor, not the tuple.
        metaclass: type = type(cls)
        for klass in (*type.__dict__["__mro__"].__get__(cls), *metaclass.__mro__):
            for name, value in vars(klass).items():
                first.setdefault(name, value)
        found = frozenset(name for name, value in first.items()
                          if hasattr(type(value), "__get__") or hasattr(type(value), "__set__"))
        _DESCRIPTORS[cls] = found
    return found


# (class, names) already checked and found clean: a warm load of the same model checks a set
# lookup instead of every name.  Bounded (names come from files): cleared when full.
_CLEAN: set[tuple[type, frozenset[str]]] = set()
_MAX_CLEAN = 4096


def check_attribute_names(cls: type, names: Any, path: str) -> None:
    """Refuse attribute names that are not plain data: dunders, methods, properties."""
    key: Any
    try:
        # A set of names that passed once passes again: a warm load of the same model checks
        # one lookup.  (Only names that all passed the loop below are ever added.)
        key = (cls, frozenset(names))
    except TypeError:  # an unhashable name: the loop refuses it
        key = None
    else:
        if key in _CLEAN:
            return
    names = list(names)
    descriptors = descriptor_names(cls)
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            raise ManifestError(f"attribute name {quote(name)} is not an identifier", path)
        if name.startswith("__") and name.endswith("__"):
            raise ManifestError(f"attribute name {quote(name)} is a dunder", path)
        if name in descriptors:
            raise ManifestError(
                f"attribute {quote(name)} would shadow a method or property of "
                f"{cls.__name__}", path)
    if key is not None:
        if len(_CLEAN) >= _MAX_CLEAN:
            _CLEAN.clear()
        _CLEAN.add(key)


# -- state and views --------------------------------------------------------------------------


def _view_bases(state: dict[str, Any]) -> list[np.ndarray]:
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


def encode_state(state: dict[str, Any], ctx: SaveContext, path: str,
                 bases: list[np.ndarray]) -> dict[str, Any]:
    """Encode an object's attributes; arrays viewing another attribute become view nodes."""
    fields = {}
    for name, value in state.items():
        where = join_path(path, name)
        base = _base_of(value, bases)
        index = view_index(value, base) if base is not None else None
        if index is not None:
            fields[name] = {"$type": "numpy.view", "base": ctx.encode(base, where),
                            "index": index, "shape": list(value.shape)}
            continue
        padded = _padded(value)
        if padded is not None:
            # A 2-D view with a leading dimension larger than its extent (IncrementalPCA's
            # components_ are rows of an F-ordered matrix): saved inside a zero-padded array of
            # that leading dimension, so it comes back with the same strides, and BLAS gives
            # bit-identical results.  Never larger than the memory the model held it in.
            fields[name] = {"$type": "numpy.view", "base": ctx.encode(padded, where),
                            "index": [[0, n, 1] for n in value.shape],
                            "shape": list(value.shape)}
            continue
        axes = _reversed_axes(value)
        if axes:
            # A reversed view (PCA's arpack components_ are Vt[::-1]): saved as the forward
            # array and flipped back on load, so its strides, and BLAS results, are the same.
            forward = np.flip(value, axes)
            fields[name] = {"$type": "numpy.view", "base": ctx.encode(forward, where),
                            "index": [[0, n, 1] for n in value.shape],
                            "shape": list(value.shape), "flip": list(axes)}
            continue
        fields[name] = ctx.encode(value, where)
    return fields


def _padded(value: Any) -> np.ndarray | None:
    """A C- or F-ordered array whose top-left corner is ``value`` with ``value``'s strides."""
    if (type(value) is not np.ndarray or value.ndim != 2 or value.dtype.kind in "OV"
            or value.size < 2 or value.flags.c_contiguous or value.flags.f_contiguous):
        return None
    (n0, n1), (s0, s1), item = value.shape, value.strides, value.itemsize
    order: Literal["C", "F"]
    if s0 == item and s1 > 0 and s1 % item == 0 and s1 // item >= n0:
        shape, order = (s1 // item, n1), "F"
    elif s1 == item and s0 > 0 and s0 % item == 0 and s0 // item >= n1:
        shape, order = (n0, s0 // item), "C"
    else:
        return None
    root = value
    while isinstance(root.base, np.ndarray):
        root = root.base
    if shape[0] * shape[1] * item > max(root.nbytes, 2 * value.nbytes):
        return None
    padded = np.zeros(shape, dtype=value.dtype, order=order)
    padded[:n0, :n1] = value
    return padded


def _reversed_axes(value: Any) -> tuple[int, ...]:
    """Axes along which an array runs backwards over a contiguous buffer, else ()."""
    if (type(value) is not np.ndarray or value.dtype.kind in "OV" or value.size < 2
            or all(s >= 0 for s in value.strides)):
        return ()
    axes = tuple(i for i, s in enumerate(value.strides) if s < 0)
    forward = np.flip(value, axes)
    contiguous = forward.flags.c_contiguous or forward.flags.f_contiguous
    return axes if contiguous else ()


# -- named tuples and scipy splines -----------------------------------------------------------


def _namedtuple_handler(cls: type[Any], tag: str) -> Handler:
    # cls: a named tuple class (a tuple subclass with _fields, as _internal_handler checked).
    fields: tuple[str, ...] = tuple(cls._fields)

    def save(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
        return {"items": {k: ctx.encode(getattr(obj, k), join_path(path, k)) for k in fields}}

    def check(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
        if not isinstance(node["items"], dict) or tuple(node["items"]) != fields:
            raise ManifestError(f"{cls.__name__} has exactly the fields {list(fields)}", path)

    def load(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:
        return cls(**{k: ctx.decode(v, join_path(path, k)) for k, v in node["items"].items()})

    keys = frozenset({"items"})
    return Handler(tag, save, load, keys, keys, check=check, types=(cls,), cls=cls, memo=False)


def _bspline_handler() -> Handler:
    from scipy.interpolate import BSpline

    def save(obj: BSpline, ctx: SaveContext, path: str) -> dict[str, Any]:
        if type(obj.extrapolate) not in (bool, str) or type(obj.k) is not int:
            raise UnsupportedTypeError("BSpline with unusual extrapolate or k", path)
        # The coefficients as the constructor takes them (it moves `axis` to the front).
        coef = np.moveaxis(obj.c, 0, obj.axis)
        return {"t": ctx.encode(obj.t, join_path(path, "t")),
                "c": ctx.encode(coef, join_path(path, "c")),
                "k": obj.k, "extrapolate": obj.extrapolate, "axis": obj.axis}

    def check(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
        if type(node["k"]) is not int or type(node["axis"]) is not int or not (
                type(node["extrapolate"]) is bool or node["extrapolate"] == "periodic"):
            raise ManifestError("BSpline k and axis must be ints, extrapolate a bool", path)

    def load(node: dict[str, Any], ctx: LoadContext, path: str) -> BSpline:
        t = ctx.decode(node["t"], join_path(path, "t"))
        c = ctx.decode(node["c"], join_path(path, "c"))
        k, axis = node["k"], node["axis"]
        if not all(type(a) is np.ndarray and a.dtype.kind in "fc" for a in (t, c)):
            raise InvariantError("BSpline knots and coefficients must be float arrays", path)
        # What scipy's compiled evaluation indexes by: a 1-D knot vector of at least 2k + 2
        # knots and at least n = len(t) - k - 1 coefficients along the interpolation axis.
        # The constructor's other checks (two distinct internal knots, sorted, finite knots)
        # are about meaning, not memory: scikit-learn builds splines that fail them (a
        # constant column gives equal knots) with construct_fast, and so does this loader.
        if t.ndim != 1 or c.ndim < 1 or not 0 <= k or not -c.ndim <= axis < c.ndim:
            raise InvariantError("BSpline needs 1-D knots, k >= 0 and an axis of c", path)
        axis %= c.ndim
        coef = np.ascontiguousarray(np.moveaxis(c, axis, 0)) if axis else c
        n = t.shape[0] - k - 1
        if n < k + 1 or coef.shape[0] < n:
            raise InvariantError(f"BSpline of degree {k} needs at least {2 * k + 2} knots and "
                                 "a coefficient per basis function", path)
        return BSpline.construct_fast(t, coef, k, extrapolate=node["extrapolate"], axis=axis)

    keys = frozenset({"t", "c", "k", "extrapolate", "axis"})
    return Handler("scipy.interpolate.BSpline", save, load, keys, keys, check=check,
                   types=(BSpline,))


# -- estimators -------------------------------------------------------------------------------


def _is_sklearn_class(cls: type) -> bool:
    # scikit-learn's own rule (BaseEstimator.__getstate__/__setstate__): only its classes carry
    # `_sklearn_version` in their pickle state; a user estimator's attribute of that name is
    # plain state and is kept.
    return cls.__module__.startswith("sklearn.")


def _state_of(obj: Any) -> dict[str, Any]:
    state = obj.__getstate__()
    if not isinstance(state, dict):
        raise UnsupportedTypeError(f"{type(obj).__name__}.__getstate__ did not return a dict")
    state = dict(state)
    if _is_sklearn_class(type(obj)):
        state.pop("_sklearn_version", None)
    return state


_CO_VARARGS = inspect.CO_VARARGS


def param_names(cls: type[BaseEstimator]) -> frozenset[str]:
    """``cls._get_param_names()`` as a set, read from ``__init__``'s code when it is a plain
    function (2 µs instead of inspect.signature's 30-90 µs on a first load); anything else
    (decorated, wrapped, with *args) goes through scikit-learn's own method."""
    init = cls.__init__
    code = getattr(init, "__code__", None)
    if (type(init) is types.FunctionType and code is not None
            and not hasattr(init, "__wrapped__") and not hasattr(init, "__signature__")
            and not code.co_flags & _CO_VARARGS and code.co_argcount >= 1):
        return frozenset(code.co_varnames[1:code.co_argcount + code.co_kwonlyargcount])
    return frozenset(cls._get_param_names())


def _estimator_handler(cls: type[object], tag: str, trusted: bool) -> Handler:
    # cls is type[object], not type or type[Any]: mypy looks ``cls.__new__`` of those up on the
    # metaclass (python/mypy#10100); the instance is Any, its state set by name.
    # The constructor's parameters are read when the handler is first used, not when it is made.
    names: list[frozenset[str]] = []

    def params_of() -> frozenset[str]:
        if not names:
            names.append(param_names(cls))
        return names[0]

    sklearn_class = _is_sklearn_class(cls)
    quiet_setstate = _quiet_setstate(cls)

    def save(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
        param_names = params_of()
        state = _state_of(obj)
        bases = _view_bases(state)
        params = {k: v for k, v in state.items() if k in param_names}
        attrs = {k: v for k, v in state.items() if k not in param_names}
        return {"params": encode_state(params, ctx, path, bases),
                "attrs": encode_state(attrs, ctx, path, bases)}

    def check(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
        params, attrs = node["params"], node["attrs"]
        if not isinstance(params, dict) or not isinstance(attrs, dict):
            raise ManifestError("params and attrs must be objects", path)
        if not params.keys() <= params_of():
            unknown = set(params) - params_of()
            raise ManifestError(
                f"{quote(sorted(unknown))} are not parameters of {cls.__name__}", path)
        if not params.keys().isdisjoint(attrs):
            overlap = set(params) & set(attrs)
            raise ManifestError(f"{quote(sorted(overlap))} are both params and attrs", path)
        check_attribute_names(cls, attrs, path)
        check_attribute_names(cls, params, path)
        for name in _PATH_PARAMS:
            if name in params and params[name] is not None:
                raise ManifestError(
                    f"parameter {name!r} names a path or cache; refused on load", path)

    def load(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:
        obj: Any = cls.__new__(cls)
        ctx.register(node, obj)
        state = decode_state(node["params"], ctx, path)
        state.update(decode_state(node["attrs"], ctx, path))
        version = ctx.writer.get("scikit-learn")
        if version is not None and sklearn_class:
            state["_sklearn_version"] = version
        if version == _SKLEARN_VERSION and quiet_setstate:
            # scikit-learn's own __setstate__ warns only about another version: nothing to
            # show, so the warning filters are left alone (saving and restoring them costs
            # more than the rest of a small estimator's load).
            obj.__setstate__(state)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("default")
                obj.__setstate__(state)
        check_fitted(obj, path)
        return obj

    keys = frozenset({"params", "attrs"})
    return Handler(tag, save, load, keys, keys, check=check, types=(cls,), trusted=trusted,
                   cls=cls)


# -- plain internal objects -------------------------------------------------------------------


def _quiet_setstate(cls: type[object]) -> bool:
    """Whether ``cls.__setstate__`` is scikit-learn's own and nothing after it in the MRO has
    one: then it warns only when the state's version differs from the installed one."""
    mro = cls.__mro__
    own = getattr(cls, "__setstate__", None)
    return (own is _BASE_SETSTATE and BaseEstimator in mro and not any(
        "__setstate__" in vars(klass) for klass in mro[mro.index(BaseEstimator) + 1:]))


def decode_state(fields: dict[str, Any], ctx: LoadContext, path: str) -> dict[str, Any]:
    """Decode the values of a validated ``params``/``attrs``/``state`` object: scalars stand
    for themselves, containers go through ``ctx.decode`` with their path."""
    decode = ctx.decode
    return {k: decode(v, join_path(path, k)) if isinstance(v, (list, dict)) else v
            for k, v in fields.items()}


def _object_handler(cls: type[object], tag: str, trusted: bool = True) -> Handler:
    custom_setstate = hasattr(cls, "__setstate__")

    def save(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
        state = obj.__getstate__() if hasattr(obj, "__getstate__") else obj.__dict__
        if state is None:
            state = {}
        if not isinstance(state, dict) or getattr(obj, "__slots__", None):
            raise UnsupportedTypeError(f"{cls.__name__} has no plain __dict__ state", path)
        return {"state": encode_state(state, ctx, path, _view_bases(state))}

    def check(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
        if not isinstance(node["state"], dict):
            raise ManifestError("state must be an object", path)
        check_attribute_names(cls, node["state"], path)

    def load(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:
        obj: Any = cls.__new__(cls)
        ctx.register(node, obj)
        state = decode_state(node["state"], ctx, path)
        check_state(cls, state, path)
        if custom_setstate:
            obj.__setstate__(state)
        else:
            obj.__dict__.update(state)
        return obj

    keys = frozenset({"state"})
    return Handler(tag, save, load, keys, keys, check=check, types=(cls,), trusted=trusted,
                   cls=cls)


def _bunch_handler(Bunch: Any) -> Handler:  # noqa: N803 - the class
    def save(obj: Bunch, ctx: SaveContext, path: str) -> dict[str, Any]:
        if any(type(k) is not str for k in obj):
            raise UnsupportedTypeError("Bunch keys must be strings", path)
        return {"items": {k: ctx.encode(v, join_path(path, k)) for k, v in obj.items()}}

    def check(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
        if not isinstance(node["items"], dict):
            raise ManifestError("Bunch items must be an object", path)

    def load(node: dict[str, Any], ctx: LoadContext, path: str) -> Bunch:
        result = Bunch()
        ctx.register(node, result)
        for k, v in node["items"].items():
            result[k] = ctx.decode(v, join_path(path, k))
        return result

    keys = frozenset({"items"})
    return Handler("sklearn.utils.Bunch", save, load, keys, keys, check=check, types=(Bunch,))




# -- the allow-list: static tables, resolved per tag ------------------------------------------


def public_path(cls: type) -> str:
    """The shortest public import path of a scikit-learn class.

    Looks only in the packages above the class's own module, which are imported already: a
    public package that re-exports the class names it.
    """
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


def _import(name: str) -> Any:
    """Import one of our tables' modules; None if this scikit-learn version has no such module."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if name == missing or name.startswith(missing + "."):
            return None
        raise


def _lookup(name: str, modules: tuple[str, ...]) -> Any:
    """The class ``name`` in the first of ``modules`` (installed) that has it, else None."""
    for module_name in modules:
        module = _import(module_name)
        obj = getattr(module, name, None) if module is not None else None
        if isinstance(obj, type):
            return obj
    return None


def _is_estimator_class(name: str, obj: Any) -> bool:
    return (isinstance(obj, type) and not name.startswith("_") and name != "BaseEstimator"
            and issubclass(obj, BaseEstimator) and obj.__module__.startswith("sklearn.")
            and not inspect.isabstract(obj))


_INTERNAL_TAGS = tables.internal_index()
_BY_NAME: dict[str, list[str]] = {}
for _tag in (*_INTERNAL_TAGS, *tables.EXPERIMENTAL):
    _BY_NAME.setdefault(_tag.rpartition(".")[2], []).append(_tag)
del _tag


def _internal_handler(cls: type, tag: str) -> Handler | None:
    if tag == "sklearn.utils.Bunch":
        return _bunch_handler(cls)
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        return _namedtuple_handler(cls, tag)
    if inspect.isabstract(cls):
        return None
    if issubclass(cls, BaseEstimator):
        return _estimator_handler(cls, tag, True)
    return _object_handler(cls, tag)


def handler_for_tag(tag: str) -> Handler | None:
    """The handler of an allow-listed scikit-learn tag, or None (a pure function of the tag)."""
    module, _, name = tag.rpartition(".")
    where = _INTERNAL_TAGS.get(tag)
    if where is not None:
        cls = _lookup(name, where)
        # One class, one tag: a class another entry names first (scikit-learn 1.5's
        # _CurveScorer module re-exports the class from 1.6 on) resolves only under that one.
        if cls is None or tag_for_class(cls) != tag:
            return None
        return _internal_handler(cls, tag)
    where = tables.EXPERIMENTAL.get(tag)
    if where is not None:
        cls = _lookup(name, where)
        return (_estimator_handler(cls, tag, True) if _is_estimator_class(name, cls)
                else None)
    if module not in tables.ESTIMATOR_MODULES or name.startswith("_"):
        return None
    imported = _import(module)
    cls = getattr(imported, name, None) if imported is not None else None
    # Only under its own public path: one class, one tag.  (The casts: _is_estimator_class
    # checked that cls is a class.)
    if not _is_estimator_class(name, cls) or _estimator_tag(cast(type, cls)) != tag:
        return None
    return _estimator_handler(cast(type, cls), tag, True)


def _estimator_tag(cls: type) -> str:
    for tag in _BY_NAME.get(cls.__name__, ()):
        if tag in tables.EXPERIMENTAL and cls.__module__ in tables.EXPERIMENTAL[tag]:
            return tag
    return public_path(cls)


def tag_for_class(cls: type) -> str | None:
    """The allow-listed tag of a scikit-learn class, or None (a pure function of the class)."""
    if not cls.__module__.startswith("sklearn."):
        return None
    name = cls.__name__
    for tag in _BY_NAME.get(name, ()):
        where = _INTERNAL_TAGS.get(tag) or tables.EXPERIMENTAL[tag]
        if _lookup(name, where) is cls:
            return tag
    if _is_estimator_class(name, cls):
        tag = public_path(cls)
        if tag.rpartition(".")[0] in tables.ESTIMATOR_MODULES:
            return tag
    return None


def all_tags() -> list[str]:
    """Every allow-listed scikit-learn tag of the installed version (imports every module)."""
    found = [t for t in (*_INTERNAL_TAGS, *tables.EXPERIMENTAL) if handler_for_tag(t)]
    for module_name in sorted(tables.ESTIMATOR_MODULES):
        module = _import(module_name)
        if module is None:
            continue
        for name, obj in sorted(vars(module).items()):
            if _is_estimator_class(name, obj):
                tag = f"{module_name}.{name}"
                if _estimator_tag(obj) == tag:
                    found.append(tag)
    return found


def resolve_user_estimator(obj: Any, registry: Registry) -> Handler | None:
    """A user's own estimator class: saved under its import path, untrusted on load."""
    cls = type(obj)
    if not isinstance(obj, BaseEstimator) or cls.__module__ == "__main__" or (
            "<locals>" in cls.__qualname__):
        return None
    tag = f"{cls.__module__}.{cls.__qualname__}"
    handler = _estimator_handler(cls, tag, trusted=False)
    registry.by_type[cls] = handler
    return handler


def trusted_estimator_handler(cls: Any, tag: str) -> Handler | None:
    """Handler for an estimator class the caller trusted by name."""
    if isinstance(cls, type) and issubclass(cls, BaseEstimator):
        return _estimator_handler(cls, tag, trusted=False)
    return None


def register_bspline(registry: Registry) -> None:
    registry.add(_bspline_handler())
