"""XGBoost and LightGBM boosters as readable arrays, not opaque blobs (optional extra ``boost``).

skops stores a booster as XGBoost's UBJSON bytes or LightGBM's text model.  Here the trees
become columns: every tree's ``left_children`` (XGBoost) or ``split_feature`` (LightGBM) is
concatenated into one array, packed into one section per column, with per-tree counts to cut
it again.  Everything else (objective, base score, features, best iteration, parameters,
XGBoost's training configuration) stays readable JSON in the manifest, so ``jq`` shows the
model.

The two libraries live in :mod:`.xgboost_` and :mod:`.lightgbm_`; this module holds what they
share (plain JSON values with typed arrays, packed columns, the scikit-learn wrappers and the
bounds on thread counts) and the registration entry points, which import a library only when
one of its types is needed.

Both libraries trust their model documents: child and feature indices, class counts, trees per
iteration, feature counts.  A malformed tree or header segfaults, overflows a heap buffer or
allocates gigabytes in ``predict``.  So every tree is validated before the library sees it, and
every header field that sizes a buffer is derived from the validated trees or checked against
them (SECURITY.md rule 8); a malformed model is an :class:`~milo_pack.errors.InvariantError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from ..engine import CheckContext, LoadContext, SaveContext, check_array_node, join_path
from ..errors import InvariantError, ManifestError, UnsupportedTypeError, quote
from ..registry import Handler, Registry
from .sklearn import check_attribute_names

# -- plain JSON values with typed arrays ------------------------------------------------------
# The parts of a booster that are not trees (XGBoost's learner and configuration, LightGBM's
# header) are plain JSON, possibly holding typed arrays.  They are written with the engine's
# plain forms and read back by a strict walker: a typed node other than a 1-D array or a
# non-finite float is refused, so nothing but data can reach the native document.

PLAIN_DTYPES = frozenset({"|i1", "|u1", "<i2", "<i4", "<i8", "<f4", "<f8"})
# JSON scalars: a plain value stands for itself (check_plain has nothing to look at).
_SCALARS = frozenset({int, float, str, bool, type(None)})


def save_plain(value: Any, ctx: SaveContext, path: str) -> Any:
    """Manifest form of a JSON-like value; 1-D numpy arrays become array nodes."""
    if type(value) is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str or key.startswith("$"):
                raise UnsupportedTypeError(f"key {quote(key)} cannot be stored", path)
            out[key] = save_plain(item, ctx, join_path(path, key))
        return out
    if type(value) is list:
        return [save_plain(v, ctx, f"{path}[{i}]") for i, v in enumerate(value)]
    if type(value) is np.ndarray:
        if value.dtype.byteorder == ">":
            value = value.astype(value.dtype.newbyteorder("<"))
        return ctx.array(value, path)
    if value is None or type(value) in (str, bool, int, float):
        return ctx.encode(value, path)
    raise UnsupportedTypeError(f"unexpected {type(value).__name__} in a booster document", path)


def check_plain(node: Any, ctx: CheckContext, path: str) -> None:
    """Refuse anything in a plain value that :func:`load_plain` would not rebuild as data."""
    stack = [(node, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, list):
            # Lists of plain scalars (XGBoost's tree_info, iteration_indptr: one entry per
            # tree) need no walk; only containers and typed nodes are looked into.
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(value)
                         if type(v) not in _SCALARS)
        elif isinstance(value, dict):
            tag = value.get("$type")
            if tag is None:
                if "$ref" in value or "$id" in value:
                    raise ManifestError("references are not allowed here", where)
                stack.extend((v, join_path(where, k)) for k, v in value.items()
                             if type(v) not in _SCALARS)
            elif tag == "numpy.ndarray":
                check_array_node(value, where, ctx)
                if value["dtype"] not in PLAIN_DTYPES or len(value["shape"]) != 1:
                    raise ManifestError("only 1-D int/float arrays are allowed here", where)
            elif tag != "float" or set(value) != {"$type", "value"} or (
                    value["value"] not in ("nan", "inf", "-inf")):
                raise ManifestError(f"unexpected {quote(tag)} node in a booster document", where)


def load_plain(node: Any, ctx: LoadContext, path: str) -> Any:
    """Rebuild a value that passed :func:`check_plain`."""
    if isinstance(node, list):
        return [v if type(v) in _SCALARS else load_plain(v, ctx, f"{path}[{i}]")
                for i, v in enumerate(node)]
    if isinstance(node, dict):
        tag = node.get("$type")
        if tag == "numpy.ndarray":
            return ctx.array(node, path)
        if tag == "float":
            return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[node["value"]]
        return {k: v if type(v) in _SCALARS else load_plain(v, ctx, join_path(path, k))
                for k, v in node.items()}
    return node


# -- packed tree columns ----------------------------------------------------------------------


# Packed columns (or per-tree counts and parameters) by name.
Columns = dict[str, np.ndarray]


def save_columns(columns: Columns, ctx: SaveContext, path: str, prefix: str,
                 children: frozenset[str] = frozenset()) -> dict[str, Any]:
    """One array node per column, each packed into its own group's section.

    Empty columns (no categorical splits, no linear leaves) are written inline: the reader
    refuses empty sections.
    """
    return {name: ctx.array(arr, join_path(path, name),
                            group=f"{prefix}.{name}" if arr.size else None,
                            hint="children" if name in children else None)
            for name, arr in columns.items()}


def check_columns(node: Any, dtypes: dict[str, str], ctx: CheckContext, path: str,
                  optional: frozenset[str] = frozenset()) -> None:
    """Columns must be exactly the expected names (some optional), 1-D, of the exact dtypes."""
    if not isinstance(node, dict) or not set(dtypes) - optional <= set(node) <= set(dtypes):
        raise ManifestError(f"columns must be {sorted(dtypes)}", path)
    for name, column in node.items():
        where = join_path(path, name)
        check_array_node(column, where, ctx)
        if column.get("$type") != "numpy.ndarray" or column["dtype"] != dtypes[name] or len(
                column["shape"]) != 1:
            raise InvariantError(f"column must be 1-D {dtypes[name]}", where)


def offsets_of(counts: np.ndarray, total: int, what: str, path: str) -> npt.NDArray[np.int64]:
    """Start of each tree's slice of a packed column; the counts must add up to its length."""
    if counts.size and counts.min() < 0:
        raise InvariantError(f"negative {what} count", path)
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    if offsets[-1] != total:
        raise InvariantError(f"{what} counts add up to {offsets[-1]}, not {total}", path)
    return offsets


def tree_error(kind: str, index: int, message: str, path: str) -> InvariantError:
    return InvariantError(f"{kind} tree {index}: {message}", path)


# -- thread counts ----------------------------------------------------------------------------
# Both libraries start as many OpenMP threads as they are told, and LightGBM also allocates a
# feature buffer per thread in predict: n_jobs=10**6 on an LGBMClassifier segfaults.  Negative
# values mean "all cores but k" (never more than the machine has) and None/0 the default.
# Up to 1024 threads started fine on a 2-core machine (4096 too, slowly; 10**5 crashed).
MAX_THREADS = 1024


def check_threads(value: Any, what: str, path: str) -> None:
    """A thread count from a file: None or an int at most :data:`MAX_THREADS`."""
    if value is None:
        return
    if type(value) is not int or value > MAX_THREADS:
        raise InvariantError(
            f"{what} must be None or an int at most {MAX_THREADS}, got {quote(value, 40)}", path)


def check_thread_entries(params: Any, keys: frozenset[str], path: str) -> None:
    """Thread counts under any of ``keys`` in a parameter dict (absent is fine)."""
    if params is None:
        return
    if not isinstance(params, dict):
        raise InvariantError("parameters must be a dict", path)
    for key in keys & params.keys():
        check_threads(params[key], key, join_path(path, key))


# ============================================================================================
# The scikit-learn wrappers
# ============================================================================================


def wrapper_handler(cls: type[object], tag: str, param_names: frozenset[str],
                    check_state: Callable[[dict[str, Any], str], None]) -> Handler:
    """Generic estimator state (params / attrs) for the XGBoost and LightGBM sklearn classes.

    Like :func:`milo_pack.handlers.sklearn._estimator_handler`, but the parameter names come
    from the whole class hierarchy: ``XGBClassifier.__init__`` takes ``**kwargs`` and forwards
    them to ``XGBModel``, so its own signature names only ``objective``.  Values go through
    ``ctx.encode`` as they are (an ``OrderedDict`` of evaluation results stays one), and
    ``check_state(state, path)`` bounds what reaches native code before the object exists.
    """

    def save(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
        state = dict(obj.__getstate__())
        state.pop("_sklearn_version", None)
        fields: dict[str, dict[str, Any]] = {"params": {}, "attrs": {}}
        for key, value in state.items():
            target = fields["params" if key in param_names else "attrs"]
            target[key] = ctx.encode(value, join_path(path, key))
        return fields

    def check(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
        params, attrs = node["params"], node["attrs"]
        if not isinstance(params, dict) or not isinstance(attrs, dict):
            raise ManifestError("params and attrs must be objects", path)
        if set(params) - param_names or set(params) & set(attrs):
            raise ManifestError(f"bad parameter names for {cls.__name__}", path)
        check_attribute_names(cls, list(params) + list(attrs), path)

    def load(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:
        obj = cls.__new__(cls)
        ctx.register(node, obj)
        state = {k: ctx.decode(v, join_path(path, k))
                 for part in ("params", "attrs") for k, v in node[part].items()}
        check_state(state, path)
        # What BaseEstimator.__setstate__ (used by both libraries) does, minus version checks.
        obj.__dict__.update(state)
        return obj

    keys = frozenset({"params", "attrs"})
    return Handler(tag, save, load, keys, keys, check=check, types=(cls,), cls=cls)


# ============================================================================================
# Registration: each library's module is imported when one of its types is first needed
# ============================================================================================


def register_xgboost(registry: Registry) -> None:
    """Register the XGBoost handlers if xgboost is installed (else its tags stay unknown)."""
    try:
        import xgboost  # noqa: F401
    except ImportError:
        return
    from . import xgboost_

    xgboost_.register(registry)


def register_lightgbm(registry: Registry) -> None:
    """Register the LightGBM handlers if lightgbm is installed (else its tags stay unknown)."""
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        return
    from . import lightgbm_

    lightgbm_.register(registry)
