"""XGBoost and LightGBM boosters as readable arrays, not opaque blobs (optional extra ``boost``).

skops stores a booster as XGBoost's UBJSON bytes or LightGBM's text model.  Here the trees
become columns: every tree's ``left_children`` (XGBoost) or ``split_feature`` (LightGBM) is
concatenated into one array, packed into one section per column, with per-tree counts to cut
it again.  Everything else (objective, base score, features, best iteration, parameters) stays
readable JSON in the manifest, so ``jq`` shows the model.

Loading rebuilds the native document, XGBoost's UBJSON or LightGBM's text, byte for byte, and
hands it to the library only after every tree was validated: both libraries trust child and
feature indices and segfault or loop forever in ``predict`` on a malformed tree (SECURITY.md
rule 8).  A malformed tree is an :class:`~milo_pack.errors.InvariantError`.

Only UBJSON is exact for XGBoost: its JSON text prints float32 values as decimals, which did
round-trip on every model measured but is not guaranteed to; UBJSON stores the float32 bits.
LightGBM's text is the model itself; its decimals (``%.17g`` for thresholds and leaf values,
``%g`` for gains and internal values) round-trip through float64, and the ``%g`` columns through
float32 when that is exact for the whole column (it halves their size).  Saving checks that the
regenerated text equals the library's output and refuses a model it cannot reproduce exactly.
"""

from __future__ import annotations

import collections
import json
import math
from typing import Any

import numpy as np

from .. import _arrays
from ..engine import CheckContext, LoadContext, SaveContext, check_array_node, join_path
from ..errors import InvariantError, ManifestError, UnsupportedTypeError, quote
from ..registry import Handler, Registry
from . import _ubjson
from .sklearn import check_attribute_names

# -- plain JSON values with typed arrays ------------------------------------------------------
# The parts of a booster that are not trees (XGBoost's learner, LightGBM's parameters) are plain
# JSON, possibly holding typed arrays.  They are written with the engine's plain forms and read
# back by a strict walker: a typed node other than an array or a non-finite float is refused,
# so nothing but data can reach the native document.

_PLAIN_DTYPES = frozenset({"|i1", "|u1", "<i2", "<i4", "<i8", "<f4", "<f8"})


def _save_plain(value: Any, ctx: SaveContext, path: str) -> Any:
    """Manifest form of a JSON-like value; 1-D numpy arrays become array nodes."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if type(key) is not str or key.startswith("$"):
                raise UnsupportedTypeError(f"key {quote(key)} cannot be stored", path)
            out[key] = _save_plain(item, ctx, join_path(path, key))
        return out
    if isinstance(value, (list, tuple)):  # LightGBM params hold tuples (eval_at)
        return [_save_plain(v, ctx, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return ctx.array(value, path)
    if isinstance(value, np.generic):
        value = value.item()  # numpy scalars in LightGBM params
    if value is None or type(value) in (str, bool, int, float):
        return ctx.encode(value, path)
    raise UnsupportedTypeError(f"unexpected {type(value).__name__} in a booster document", path)


def _check_plain(node: Any, ctx: CheckContext, path: str) -> None:
    """Refuse anything in a plain value that :func:`_load_plain` would not rebuild as data."""
    stack = [(node, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(value))
        elif isinstance(value, dict):
            tag = value.get("$type")
            if tag is None:
                if "$ref" in value:
                    raise ManifestError("references are not allowed here", where)
                stack.extend((v, join_path(where, k)) for k, v in value.items())
            elif tag == "numpy.ndarray":
                check_array_node(value, where, ctx)
                if value["dtype"] not in _PLAIN_DTYPES or len(value["shape"]) != 1:
                    raise ManifestError("only 1-D int/float arrays are allowed here", where)
            elif tag != "float" or set(value) != {"$type", "value"} or (
                    value["value"] not in ("nan", "inf", "-inf")):
                raise ManifestError(f"unexpected {quote(tag)} node in a booster document", where)


def _load_plain(node: Any, ctx: LoadContext, path: str) -> Any:
    """Rebuild a value that passed :func:`_check_plain`."""
    if isinstance(node, list):
        return [_load_plain(v, ctx, f"{path}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, dict):
        tag = node.get("$type")
        if tag == "numpy.ndarray":
            return ctx.array(node, path)
        if tag == "float":
            return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[node["value"]]
        return {k: _load_plain(v, ctx, join_path(path, k)) for k, v in node.items()}
    return node


# -- packed tree columns ----------------------------------------------------------------------


def _save_columns(columns: dict[str, np.ndarray], ctx: SaveContext, path: str, prefix: str,
                  children: frozenset[str] = frozenset()) -> dict:
    """One array node per column, each packed into its own group's section.

    Empty columns (no categorical splits, no linear leaves) are written inline: the reader
    refuses empty sections.
    """
    return {name: ctx.array(arr, join_path(path, name),
                            group=f"{prefix}.{name}" if arr.size else None,
                            hint="children" if name in children else None)
            for name, arr in columns.items()}


def _check_columns(node: Any, dtypes: dict[str, str], ctx: CheckContext, path: str,
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


def _offsets(counts: np.ndarray, total: int, what: str, path: str) -> np.ndarray:
    """Start of each tree's slice of a packed column; the counts must add up to its length."""
    if counts.size and counts.min() < 0:
        raise InvariantError(f"negative {what} count", path)
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    if offsets[-1] != total:
        raise InvariantError(f"{what} counts add up to {offsets[-1]}, not {total}", path)
    return offsets


def _tree_error(kind: str, index: int, message: str, path: str) -> InvariantError:
    return InvariantError(f"{kind} tree {index}: {message}", path)


# ============================================================================================
# XGBoost
# ============================================================================================

_XGB_NODE_COLUMNS = {
    "left_children": "<i4", "right_children": "<i4", "parents": "<i4", "split_indices": "<i4",
    "split_conditions": "<f4", "split_type": "|u1", "default_left": "|u1",
    "base_weights": "<f4", "loss_changes": "<f4", "sum_hessian": "<f4",
}
_XGB_CAT_COLUMNS = {"categories_nodes": "<i4", "categories_segments": "<i8",
                    "categories_sizes": "<i8"}
_XGB_COLUMNS = {**_XGB_NODE_COLUMNS, **_XGB_CAT_COLUMNS, "categories": "<i4"}
_XGB_TREE_KEYS = frozenset(_XGB_COLUMNS) | {"id", "tree_param"}
_XGB_TREE_PARAMS = ("num_deleted", "num_feature", "num_nodes", "size_leaf_vector")
# Per-tree counts that cut the packed columns again.
_XGB_COUNTS = ("num_nodes", "num_cat_nodes", "num_categories")
_XGB_CHILDREN = frozenset({"left_children", "right_children"})
_XGB_ROOT_PARENT = 2147483647  # XGBoost's kInvalidNodeId, the root's parent
# XGBoost refuses categories >= 2**24 (they travel as float32); a larger one would also size a
# bitset from attacker data.
_XGB_MAX_CATEGORY = 1 << 24


def _xgb_model_of(learner: dict) -> dict | None:
    """The dict holding ``trees`` (gbtree, or dart's inner gbtree); None for gblinear."""
    booster = learner.get("gradient_booster")
    if not isinstance(booster, dict):
        return None
    name = booster.get("name")
    if name == "gbtree":
        model = booster.get("model")
    elif name == "dart":
        model = booster.get("gbtree", {}).get("model") if isinstance(
            booster.get("gbtree"), dict) else None
    else:
        return None
    return model if isinstance(model, dict) else None


def _int_text(value: Any, what: str, path: str, error: type = InvariantError) -> int:
    """XGBoost keeps integer parameters as decimal strings; read one strictly."""
    if type(value) is not str or not value.isdigit() or len(value) > 18:
        raise error(f"{what} must be a decimal integer string", path)
    if str(int(value)) != value:
        raise error(f"{what} must be canonical", path)
    return int(value)


def _save_xgb_trees(trees: list, ctx: SaveContext, path: str) -> dict:
    counts = {name: np.zeros(len(trees), dtype=np.int32) for name in _XGB_COUNTS}
    params = {name: np.zeros(len(trees), dtype=np.int32) for name in _XGB_TREE_PARAMS}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in _XGB_COLUMNS}
    for i, tree in enumerate(trees):
        where = f"{path}[{i}]"
        if not isinstance(tree, dict) or set(tree) != _XGB_TREE_KEYS or tree["id"] != i:
            raise UnsupportedTypeError(
                "unrecognised XGBoost tree layout (multi-target trees are not supported)", where)
        for name in _XGB_TREE_PARAMS:
            params[name][i] = _int_text(tree["tree_param"].get(name), name, where,
                                        UnsupportedTypeError)
        if set(tree["tree_param"]) != set(_XGB_TREE_PARAMS) or params["num_deleted"][i]:
            raise UnsupportedTypeError("XGBoost trees with deleted nodes are not supported",
                                       where)
        for name, dtype in _XGB_COLUMNS.items():
            column = tree[name]
            if not isinstance(column, np.ndarray) or column.dtype.newbyteorder("<").str != dtype:
                raise UnsupportedTypeError(f"{name} is not a {dtype} array", where)
            parts[name].append(column)
        counts["num_nodes"][i] = tree["left_children"].size
        counts["num_cat_nodes"][i] = tree["categories_nodes"].size
        counts["num_categories"][i] = tree["categories"].size
    columns = {name: np.concatenate(p) if p else np.zeros(0, np.dtype(_XGB_COLUMNS[name]))
               for name, p in parts.items()}
    return {
        "counts": _save_columns(counts, ctx, join_path(path, "counts"), "xgboost"),
        "tree_param": _save_columns(params, ctx, join_path(path, "tree_param"),
                                    "xgboost.tree_param"),
        "columns": _save_columns(columns, ctx, join_path(path, "columns"), "xgboost",
                                 _XGB_CHILDREN),
    }


def _save_xgb_booster(obj: Any, ctx: SaveContext, path: str) -> dict:
    import xgboost

    ctx.versions["xgboost"] = xgboost.__version__
    doc = _ubjson.decode(bytes(obj.save_raw("ubj")))
    if not isinstance(doc, dict) or set(doc) != {"learner", "version"}:
        raise UnsupportedTypeError("unrecognised XGBoost model document", path)
    learner = doc["learner"]
    model = _xgb_model_of(learner)
    fields: dict[str, Any] = {"version": doc["version"]}
    trees = None
    if model is not None:
        trees = model.pop("trees", None)
        if not isinstance(trees, list):
            raise UnsupportedTypeError("XGBoost model without a tree list", path)
        fields["num_trees"] = len(trees)
    fields["learner"] = _save_plain(learner, ctx, join_path(path, "learner"))
    if trees is not None:
        fields["trees"] = _save_xgb_trees(trees, ctx, join_path(path, "trees"))
    return fields


def _check_xgb_booster(node: dict, ctx: CheckContext, path: str) -> None:
    version = node["version"]
    if not (isinstance(version, list) and len(version) == 3
            and all(type(v) is int and 0 <= v < 1000 for v in version)):
        raise ManifestError("version must be three small ints", path)
    learner = node["learner"]
    if not isinstance(learner, dict):
        raise ManifestError("learner must be an object", path)
    _check_plain(learner, ctx, join_path(path, "learner"))
    has_trees = "trees" in node
    if has_trees != ("num_trees" in node) or has_trees != (_xgb_model_of(learner) is not None):
        raise ManifestError("trees and num_trees go with a gbtree or dart booster", path)
    if not has_trees:
        return
    if type(node["num_trees"]) is not int or node["num_trees"] < 0:
        raise ManifestError("num_trees must be a non-negative int", path)
    trees = node["trees"]
    where = join_path(path, "trees")
    if not isinstance(trees, dict) or set(trees) != {"counts", "tree_param", "columns"}:
        raise ManifestError("trees must hold counts, tree_param and columns", where)
    n = node["num_trees"]
    for key, names in (("counts", _XGB_COUNTS), ("tree_param", _XGB_TREE_PARAMS)):
        _check_columns(trees[key], dict.fromkeys(names, "<i4"), ctx, join_path(where, key))
        if any(c["shape"] != [n] for c in trees[key].values()):
            raise InvariantError(f"{key} must have num_trees entries", join_path(where, key))
    _check_columns(trees["columns"], _XGB_COLUMNS, ctx, join_path(where, "columns"))


def _learner_ints(learner: dict, path: str) -> tuple[int, int]:
    """``num_feature`` and the number of output groups, read from learner_model_param."""
    param = learner.get("learner_model_param")
    if not isinstance(param, dict):
        raise InvariantError("learner_model_param is missing", path)
    num_feature = _int_text(param.get("num_feature"), "num_feature", path)
    num_class = _int_text(param.get("num_class", "0"), "num_class", path)
    num_target = _int_text(param.get("num_target", "1"), "num_target", path)
    return num_feature, max(num_class, num_target, 1)


def _check_xgb_learner(learner: dict, n_trees: int | None, path: str) -> None:
    """Learner-level invariants: base score, tree_info, iteration_indptr, names, gblinear."""
    num_feature, n_groups = _learner_ints(learner, path)
    score = learner["learner_model_param"].get("base_score")
    try:
        parsed = json.loads(score) if isinstance(score, str) and score.startswith("[") else [
            float(score)]
    except (TypeError, ValueError):
        raise InvariantError("base_score is not a number or a list", path) from None
    if not isinstance(parsed, list) or len(parsed) not in (1, n_groups) or not all(
            type(v) in (int, float) for v in parsed):
        raise InvariantError(f"base_score must hold 1 or {n_groups} numbers", path)
    for key in ("feature_names", "feature_types"):
        names = learner.get(key, [])
        if not isinstance(names, list) or (names and len(names) != num_feature) or not all(
                type(v) is str for v in names):
            raise InvariantError(f"{key} must be empty or {num_feature} strings", path)
    booster = learner["gradient_booster"]
    if booster.get("name") == "gblinear":
        weights = booster.get("model", {}).get("weights") if isinstance(
            booster.get("model"), dict) else None
        if not isinstance(weights, np.ndarray) or weights.size != (num_feature + 1) * n_groups:
            raise InvariantError("gblinear weights must be (num_feature + 1) * groups", path)
        return
    model = _xgb_model_of(learner)
    if model is None:
        raise InvariantError("unknown gradient booster", path)
    _check_xgb_model(model, n_trees or 0, n_groups, path)
    if booster.get("name") == "dart":
        drop = booster.get("weight_drop")
        if not isinstance(drop, (list, np.ndarray)) or len(drop) != n_trees or not all(
                type(v) in (int, float) for v in np.asarray(drop).tolist()):
            raise InvariantError("dart weight_drop must have one weight per tree", path)


def _check_xgb_model(model: dict, n_trees: int, n_groups: int, path: str) -> None:
    param = model.get("gbtree_model_param")
    if not isinstance(param, dict) or _int_text(param.get("num_trees"), "num_trees",
                                                path) != n_trees:
        raise InvariantError("gbtree_model_param.num_trees must match the trees", path)
    if _int_text(param.get("num_parallel_tree"), "num_parallel_tree", path) < 1:
        raise InvariantError("num_parallel_tree must be positive", path)
    info = _int_vector(model.get("tree_info"), "tree_info", path)
    if info.size != n_trees or _arrays.check_indices(info, n_groups) != -1:
        raise InvariantError(f"tree_info must give each tree a group below {n_groups}", path)
    indptr = _int_vector(model.get("iteration_indptr"), "iteration_indptr", path)
    if (indptr.size < 1 or indptr[0] != 0 or indptr[-1] != n_trees
            or _arrays.check_monotone(indptr) != -1):
        raise InvariantError("iteration_indptr must rise from 0 to the number of trees", path)
    _check_xgb_cats(model.get("cats"), path)


def _int_vector(value: Any, what: str, path: str) -> np.ndarray:
    """A list of ints (untyped UBJSON array) or an int array, as int64."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu" and value.ndim == 1:
        return value.astype(np.int64)
    if isinstance(value, list) and all(type(v) is int for v in value):
        try:
            return np.array(value, dtype=np.int64).reshape(-1)
        except OverflowError:
            pass
    raise InvariantError(f"{what} must be a list of ints", path)


def _check_xgb_cats(cats: Any, path: str) -> None:
    """The category recoder (XGBoost >= 3.1): offsets and segments within their values."""
    if cats is None:
        return
    where = join_path(path, "cats")
    if not isinstance(cats, dict) or set(cats) != {"enc", "feature_segments", "sorted_idx"}:
        raise InvariantError("cats must hold enc, feature_segments and sorted_idx", where)
    segments, order = cats["feature_segments"], cats["sorted_idx"]
    for arr in (segments, order):
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iu":
            raise InvariantError("feature_segments and sorted_idx must be int arrays", where)
    enc = cats["enc"]
    if not isinstance(enc, list):
        raise InvariantError("cats.enc must be a list", where)
    if segments.size:
        if (segments[0] != 0 or segments[-1] != order.size or segments.size != len(enc) + 1
                or _arrays.check_monotone(segments) != -1):
            raise InvariantError("feature_segments must rise from 0 to len(sorted_idx)", where)
        sizes = np.diff(segments)
        upper = np.repeat(sizes, sizes)
        if order.size and (order.min() < 0 or np.any(order >= upper)):
            raise InvariantError("sorted_idx must index within each feature's segment", where)
    elif order.size or enc:
        raise InvariantError("cats without feature_segments must be empty", where)
    for i, item in enumerate(enc):
        if not isinstance(item, dict) or set(item) != {"offsets", "values"} or not all(
                isinstance(item[k], np.ndarray) for k in item):
            raise InvariantError("each cats.enc entry holds offsets and values arrays", where)
        offsets = item["offsets"]
        if offsets.size and (offsets.dtype.kind not in "iu" or offsets[0] != 0
                             or offsets[-1] != item["values"].size
                             or _arrays.check_monotone(offsets) != -1):
            raise InvariantError(f"cats.enc[{i}] offsets must rise from 0 to len(values)",
                                 where)


def _check_xgb_tree(t: dict, num_feature: int, index: int, path: str) -> None:
    """One tree's structure, before XGBoost sees it (it would follow any index)."""
    left, right, parents = t["left_children"], t["right_children"], t["parents"]
    n = left.size
    if n == 0:
        raise _tree_error("XGBoost", index, "has no nodes", path)
    code, node, reason = _arrays.check_binary_tree(left, right, t["split_indices"], num_feature)
    if code:
        raise _tree_error("XGBoost", index, f"node {node}: {reason}", path)
    inner = np.flatnonzero(left != -1)
    if parents[0] != _XGB_ROOT_PARENT or np.any(parents[left[inner]] != inner) or np.any(
            parents[right[inner]] != inner):
        raise _tree_error("XGBoost", index, "parents do not match the children", path)
    if np.any(t["split_type"] > 1) or np.any(t["default_left"] > 1):
        raise _tree_error("XGBoost", index, "split_type and default_left must be 0 or 1", path)
    cat_nodes = t["categories_nodes"]
    is_cat = np.flatnonzero(t["split_type"] == 1)
    if is_cat.size != cat_nodes.size or np.any(is_cat != cat_nodes) or np.any(
            left[is_cat] == -1):
        raise _tree_error("XGBoost", index, "categories_nodes must list the categorical splits",
                          path)
    seg, size, cats = t["categories_segments"], t["categories_sizes"], t["categories"]
    if seg.size and (seg.min() < 0 or size.min() < 0 or np.any(seg + size > cats.size)):
        raise _tree_error("XGBoost", index, "category segments lie outside categories", path)
    if cats.size and (cats.min() < 0 or cats.max() >= _XGB_MAX_CATEGORY):
        raise _tree_error("XGBoost", index, "category out of range", path)


def _load_xgb_trees(node: dict, ctx: LoadContext, num_feature: int, path: str) -> list[dict]:
    """Cut the packed columns into XGBoost's per-tree dicts, validating each tree."""
    where = join_path(path, "trees")
    spec = node["trees"]
    counts = {k: ctx.array(v, join_path(where, k)) for k, v in spec["counts"].items()}
    params = {k: ctx.array(v, join_path(where, k)) for k, v in spec["tree_param"].items()}
    columns = {k: ctx.array(v, join_path(where, k)) for k, v in spec["columns"].items()}
    n_nodes = counts["num_nodes"]
    if n_nodes.size and n_nodes.max() > ctx.limits.max_tree_nodes:
        raise InvariantError("a tree exceeds max_tree_nodes", where)
    bounds = {"nodes": _offsets(n_nodes, columns["left_children"].size, "node", where),
              "cat": _offsets(counts["num_cat_nodes"], columns["categories_nodes"].size,
                              "categorical node", where),
              "categories": _offsets(counts["num_categories"], columns["categories"].size,
                                     "category", where)}
    kind_of = {**dict.fromkeys(_XGB_NODE_COLUMNS, "nodes"),
               **dict.fromkeys(_XGB_CAT_COLUMNS, "cat"), "categories": "categories"}
    for name, kind in kind_of.items():
        if columns[name].size != bounds[kind][-1]:
            raise InvariantError(f"{name} does not match the {kind} counts", where)
    if np.any(params["num_nodes"] != n_nodes) or np.any(params["num_deleted"] != 0) or np.any(
            params["num_feature"] != num_feature) or np.any(params["size_leaf_vector"] > 1):
        raise InvariantError("tree_param does not match the trees", where)
    trees = []
    for i in range(n_nodes.size):
        tree = {name: columns[name][bounds[kind][i]:bounds[kind][i + 1]]
                for name, kind in kind_of.items()}
        _check_xgb_tree(tree, num_feature, i, where)
        tree["id"] = i
        tree["tree_param"] = {k: str(int(params[k][i])) for k in _XGB_TREE_PARAMS}
        trees.append(tree)
    return trees


def _load_xgb_booster(node: dict, ctx: LoadContext, path: str) -> Any:
    import xgboost

    learner = _load_plain(node["learner"], ctx, join_path(path, "learner"))
    num_feature, _ = _learner_ints(learner, path)
    model = _xgb_model_of(learner)
    if model is not None:
        if "trees" in model:
            raise InvariantError("trees belong in the packed columns", path)
        model["trees"] = _load_xgb_trees(node, ctx, num_feature, path)
    _check_xgb_learner(learner, node.get("num_trees"), path)
    document = _ubjson.encode({"learner": learner, "version": node["version"]})
    booster = xgboost.Booster()
    try:
        booster.load_model(document)
    except xgboost.core.XGBoostError as exc:
        raise InvariantError(f"XGBoost refused the model: {quote(str(exc), 200)}",
                             path) from None
    return booster


# ============================================================================================
# LightGBM
# ============================================================================================

# Per-tree lines in LightGBM's order: name -> (dtype, format, length rule).  "%.17g" columns
# are exact doubles; "%g" columns are printed with 6 digits and may be stored as float32.
_INTERNAL, _LEAF, _LEAF_WEIGHT, _CAT, _CAT_WORDS, _LINEAR_FEATURES = range(6)
_LGB_COLUMNS: dict[str, tuple[str, str, int]] = {
    "split_feature": ("<i4", "%d", _INTERNAL),
    "split_gain": ("f", "%g", _INTERNAL),
    "threshold": ("<f8", "%.17g", _INTERNAL),
    "decision_type": ("|i1", "%d", _INTERNAL),
    "left_child": ("<i4", "%d", _INTERNAL),
    "right_child": ("<i4", "%d", _INTERNAL),
    "leaf_value": ("<f8", "%.17g", _LEAF),
    "leaf_weight": ("<f8", "%.17g", _LEAF_WEIGHT),
    "leaf_count": ("<i4", "%d", _LEAF),
    "internal_value": ("f", "%g", _INTERNAL),
    "internal_weight": ("f", "%g", _INTERNAL),
    "internal_count": ("<i4", "%d", _INTERNAL),
    "cat_boundaries": ("<i4", "%d", _CAT),
    "cat_threshold": ("<u4", "%d", _CAT_WORDS),
    "leaf_const": ("<f8", "%.17g", _LEAF),
    "num_features": ("<i4", "%d", _LEAF),
    "leaf_features": ("<i4", "%d", _LINEAR_FEATURES),
    "leaf_coeff": ("<f8", "%.17g", _LINEAR_FEATURES),
}
_LGB_LINEAR = ("leaf_const", "num_features", "leaf_features", "leaf_coeff")
_LGB_CAT = ("cat_boundaries", "cat_threshold")
# Per-tree scalars: num_leaves, num_cat, is_linear (ints) and shrinkage (a "%g" double).
_LGB_SCALARS = {"num_leaves": "<i4", "num_cat": "<i4", "is_linear": "|i1", "shrinkage": "<f8"}
_LGB_MAX_DECISION = 15  # bit 0 categorical, bit 1 default left, bits 2-3 missing type (0..2)


def _lgb_line_order(num_cat: int, is_linear: int) -> list[str]:
    """The keys of one tree block, in the order LightGBM writes them."""
    keys = ["num_leaves", "num_cat", *list(_LGB_COLUMNS)[:12]]
    if num_cat > 0:
        keys += list(_LGB_CAT)
    keys.append("is_linear")
    if is_linear:
        keys += list(_LGB_LINEAR)
    keys.append("shrinkage")
    return keys


def _lgb_format(values: np.ndarray, fmt: str) -> str:
    return " ".join(fmt % v for v in values.tolist())


def _lgb_format_linear(values: np.ndarray, counts: np.ndarray, fmt: str) -> str:
    """Linear leaves: each leaf's values end with a space, and each leaf with one more."""
    out, start = [], 0
    for count in counts.tolist():
        out.append("".join(fmt % v + " " for v in values[start:start + count].tolist()) + " ")
        start += count
    return "".join(out)


def _lgb_tree_text(index: int, scalars: dict, cols: dict) -> str:
    """One ``Tree=i`` block exactly as ``LGBM_BoosterSaveModelToString`` writes it."""
    lines = [f"Tree={index}"]
    for key in _lgb_line_order(scalars["num_cat"], scalars["is_linear"]):
        if key in _LGB_SCALARS:
            fmt = "%g" if key == "shrinkage" else "%d"
            lines.append(f"{key}={fmt % scalars[key]}")
        elif key in ("leaf_features", "leaf_coeff"):
            text = _lgb_format_linear(cols[key], cols["num_features"], _LGB_COLUMNS[key][1])
            lines.append(f"{key}={text}")
        else:
            lines.append(f"{key}={_lgb_format(cols[key], _LGB_COLUMNS[key][1])}")
    return "\n".join(lines) + "\n\n\n"


def _lgb_length(name: str, s: dict, cols: dict) -> int:
    """Length of one column of one tree; ``cols`` already holds the columns it depends on."""
    rule = _LGB_COLUMNS[name][2]
    num_leaves, num_cat, linear = s["num_leaves"], s["num_cat"], s["is_linear"]
    if rule == _INTERNAL:
        return num_leaves - 1
    if name in _LGB_LINEAR and not linear:
        return 0
    if rule == _LEAF:
        return num_leaves
    if rule == _LEAF_WEIGHT:
        return num_leaves if num_leaves > 1 else 0  # LightGBM omits a stump's weight
    if rule == _CAT:
        return num_cat + 1 if num_cat > 0 else 0
    if rule == _CAT_WORDS:
        bounds = cols["cat_boundaries"]
        return int(bounds[-1]) if bounds.size else 0
    return int(cols["num_features"].sum())  # _LINEAR_FEATURES


# -- text -> parts ----------------------------------------------------------------------------


def _lgb_split_text(text: str, path: str) -> tuple[list[str], list[str], str]:
    """Header lines, tree blocks (cut by ``tree_sizes``, as LightGBM reads them) and the tail."""
    head, sep, body = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or lines[0] != "tree" or not lines[-1].startswith("tree_sizes="):
        raise UnsupportedTypeError("unrecognised LightGBM model text", path)
    sizes = [int(s) for s in lines[-1][len("tree_sizes="):].split(" ") if s]
    raw = body.encode("utf-8")
    blocks, pos = [], 0
    for size in sizes:
        blocks.append(raw[pos:pos + size].decode("utf-8"))
        pos += size
    return lines[1:-1], blocks, raw[pos:].decode("utf-8")


def _lgb_parse_header(lines: list[str], path: str) -> dict[str, Any]:
    header: dict[str, Any] = {}
    for line in lines:
        key, eq, value = line.partition("=")
        if key in header:
            raise UnsupportedTypeError(f"duplicate LightGBM header line {quote(key)}", path)
        if not eq:
            header[key] = True  # a flag line such as average_output
        elif key in ("feature_names", "feature_infos"):
            header[key] = value.split(" ")
        else:
            header[key] = value
    return header


def _lgb_parse_block(block: str, index: int, path: str) -> dict[str, str]:
    lines = block.split("\n")
    if lines[0] != f"Tree={index}" or lines[-3:] != ["", "", ""]:
        raise UnsupportedTypeError(f"unrecognised LightGBM tree block {index}", path)
    fields = {}
    for line in lines[1:-3]:
        key, _, value = line.partition("=")
        fields[key] = value
    return fields


def _lgb_tokens(value: str, linear: bool) -> list[str]:
    return value.split() if linear else (value.split(" ") if value else [])


def _lgb_parse_trees(blocks: list[str], path: str) -> tuple[dict, dict]:
    """Per-tree scalars and packed columns (as float64 / int64 before narrowing)."""
    n = len(blocks)
    scalars = {k: np.zeros(n, dtype=np.float64 if k == "shrinkage" else np.int64)
               for k in _LGB_SCALARS}
    tokens: dict[str, list[str]] = {name: [] for name in _LGB_COLUMNS}
    for i, block in enumerate(blocks):
        fields = _lgb_parse_block(block, i, path)
        for key in _LGB_SCALARS:
            scalars[key][i] = float(fields[key]) if key == "shrinkage" else int(fields[key])
        order = _lgb_line_order(int(scalars["num_cat"][i]), int(scalars["is_linear"][i]))
        if list(fields) != order:
            raise UnsupportedTypeError(f"unrecognised LightGBM tree block {i}", path)
        for name in _LGB_COLUMNS:
            if name in fields:
                tokens[name] += _lgb_tokens(fields[name], name in ("leaf_features",
                                                                   "leaf_coeff"))
    return scalars, tokens


def _lgb_column(name: str, toks: list[str]) -> np.ndarray:
    """Parse one packed column; ``%g`` columns become float32 when every value survives."""
    dtype, fmt, _ = _LGB_COLUMNS[name]
    if fmt == "%d":
        return np.array([int(t) for t in toks], dtype=np.int64).astype(dtype)
    values = np.array([float(t) for t in toks], dtype=np.float64)
    if dtype == "f":
        narrow = values.astype(np.float32)
        if [fmt % v for v in narrow.tolist()] == toks:
            return narrow
    return values


def _lgb_parse_tail(tail: str, path: str) -> dict[str, Any]:
    """feature_importances, parameters and pandas_categorical after ``end of trees``."""
    head = "end of trees\n\nfeature_importances:\n"
    imp_text, sep1, rest = tail.partition("\nparameters:\n")
    params_text, sep2, cat_text = rest.partition("\nend of parameters\n\npandas_categorical:")
    if not (tail.startswith(head) and sep1 and sep2 and cat_text.endswith("\n")):
        raise UnsupportedTypeError("unrecognised LightGBM model tail", path)
    importances = dict(line.split("=", 1) for line in imp_text[len(head):].split("\n") if line)
    parameters = {}
    for line in params_text.split("\n"):
        if line:
            key, _, value = line[1:-1].partition(": ")
            parameters[key] = value
    return {"feature_importances": importances, "parameters": parameters,
            "pandas_categorical": json.loads(cat_text[:-1])}


# -- parts -> text ----------------------------------------------------------------------------


def _lgb_header_text(header: dict, sizes: list[int]) -> str:
    lines = ["tree"]
    for key, value in header.items():
        if value is True:
            lines.append(key)
        elif isinstance(value, list):
            lines.append(f"{key}={' '.join(value)}")
        else:
            lines.append(f"{key}={value}")
    lines.append("tree_sizes=" + " ".join(str(s) for s in sizes))
    return "\n".join(lines) + "\n\n"


def _lgb_tail_text(importances: dict, parameters: dict, pandas_categorical: Any) -> str:
    from lightgbm.basic import _json_default_with_numpy

    out = ["end of trees\n\nfeature_importances:\n"]
    out += [f"{k}={v}\n" for k, v in importances.items()]
    out.append("\nparameters:\n")
    out += [f"[{k}: {v}]\n" for k, v in parameters.items()]
    out.append("\nend of parameters\n\npandas_categorical:")
    out.append(json.dumps(pandas_categorical, default=_json_default_with_numpy) + "\n")
    return "".join(out)


# Columns whose values size other columns are cut first.
_LGB_CUT_ORDER = ("cat_boundaries", "num_features",
                  *[k for k in _LGB_COLUMNS if k not in ("cat_boundaries", "num_features")])


def _lgb_tree_slices(scalars: dict, columns: dict, path: str) -> list[tuple[dict, dict]]:
    """Cut the packed columns into per-tree (scalars, columns), checking every length."""
    offsets = dict.fromkeys(_LGB_COLUMNS, 0)
    trees = []
    for i in range(scalars["num_leaves"].size):
        s = {k: v[i].item() for k, v in scalars.items()}
        cols: dict[str, np.ndarray] = {}
        for name in _LGB_CUT_ORDER:
            start, length = offsets[name], _lgb_length(name, s, cols)
            if start + length > columns[name].size:
                raise InvariantError(f"{name} is shorter than its trees", path)
            cols[name] = columns[name][start:start + length]
            offsets[name] = start + length
        trees.append((s, cols))
    for name, used in offsets.items():
        if used != columns[name].size:
            raise InvariantError(f"{name} is longer than its trees", path)
    return trees


# -- save / check / load ----------------------------------------------------------------------

# Python-side Booster attributes worth keeping (predict uses best_iteration by default).
_LGB_ATTRS = ("best_iteration", "best_score", "params", "name_valid_sets", "_train_data_name")


def _plain_dicts(value: Any) -> Any:
    """defaultdict/OrderedDict (LightGBM's best_score) as plain dicts."""
    if isinstance(value, dict):
        return {k: _plain_dicts(v) for k, v in value.items()}
    return value


def _save_lgb_booster(obj: Any, ctx: SaveContext, path: str) -> dict:
    import lightgbm

    ctx.versions["lightgbm"] = lightgbm.__version__
    text = obj.model_to_string(num_iteration=-1)
    header_lines, blocks, tail = _lgb_split_text(text, path)
    header = _lgb_parse_header(header_lines, path)
    scalars, tokens = _lgb_parse_trees(blocks, path)
    columns = {name: _lgb_column(name, toks) for name, toks in tokens.items()}
    rest = _lgb_parse_tail(tail, path)
    narrowed = {k: v.astype(_LGB_SCALARS[k]) for k, v in scalars.items()}
    # The loader must rebuild LightGBM's exact text; refuse a model it would not reproduce.
    if _lgb_text(header, narrowed, columns, rest) != text:
        raise UnsupportedTypeError("this LightGBM model text cannot be reproduced exactly", path)
    attrs = {k: _plain_dicts(getattr(obj, k)) for k in _LGB_ATTRS if hasattr(obj, k)}
    return {
        "header": _save_plain(header, ctx, join_path(path, "header")),
        "num_trees": len(blocks),
        "trees": {
            "scalars": _save_columns(narrowed, ctx, join_path(path, "scalars"), "lightgbm"),
            "columns": _save_columns(columns, ctx, join_path(path, "columns"), "lightgbm",
                                     frozenset({"left_child", "right_child"})),
        },
        **{k: _save_plain(v, ctx, join_path(path, k)) for k, v in rest.items()},
        "attrs": {k: _save_plain(v, ctx, join_path(path, k)) for k, v in attrs.items()},
    }


def _lgb_text(header: dict, scalars: dict, columns: dict, rest: dict) -> str:
    trees = _lgb_tree_slices(scalars, columns, "<lightgbm>")
    blocks = [_lgb_tree_text(i, s, c) for i, (s, c) in enumerate(trees)]
    sizes = [len(b.encode("utf-8")) for b in blocks]
    return (_lgb_header_text(header, sizes) + "".join(blocks)
            + _lgb_tail_text(rest["feature_importances"], rest["parameters"],
                             rest["pandas_categorical"]))


def _lgb_column_dtypes() -> dict[str, str]:
    return {name: spec[0] for name, spec in _LGB_COLUMNS.items()}


def _check_lgb_booster(node: dict, ctx: CheckContext, path: str) -> None:
    n = node["num_trees"]
    if type(n) is not int or n < 0:
        raise ManifestError("num_trees must be a non-negative int", path)
    trees = node["trees"]
    where = join_path(path, "trees")
    if not isinstance(trees, dict) or set(trees) != {"scalars", "columns"}:
        raise ManifestError("trees must hold scalars and columns", where)
    _check_columns(trees["scalars"], _LGB_SCALARS, ctx, join_path(where, "scalars"))
    if any(c["shape"] != [n] for c in trees["scalars"].values()):
        raise InvariantError("scalars must have num_trees entries", where)
    columns = trees["columns"]
    if not isinstance(columns, dict):
        raise ManifestError("columns must be an object", where)
    # "%g" columns may be float32 or float64 (whichever reproduced the text).
    dtypes = {name: (columns.get(name, {}).get("dtype") if spec[0] == "f" else spec[0])
              for name, spec in _LGB_COLUMNS.items()}
    if any(dtypes[name] not in ("<f4", "<f8") for name, spec in _LGB_COLUMNS.items()
           if spec[0] == "f"):
        raise InvariantError("%g columns must be float32 or float64", where)
    _check_columns(columns, dtypes, ctx, join_path(where, "columns"))
    for key in ("header", "feature_importances", "parameters", "pandas_categorical", "attrs"):
        _check_plain(node[key], ctx, join_path(path, key))
    _check_lgb_texts(node, path)


def _check_lgb_texts(node: dict, path: str) -> None:
    """Strings that go into the model text must not break its line structure."""
    header, attrs = node["header"], node["attrs"]
    if not isinstance(header, dict) or not isinstance(attrs, dict):
        raise ManifestError("header and attrs must be objects", path)
    if set(attrs) - set(_LGB_ATTRS):
        raise ManifestError(f"unexpected booster attributes {quote(sorted(attrs))}", path)
    for key, value in header.items():
        _check_text(key, path, "=")
        items = value if isinstance(value, list) else [value]
        if key == "tree_sizes" or not all(type(v) is str or v is True for v in items):
            raise ManifestError(f"header {quote(key)} must be text", path)
        for item in items:
            if item is not True:
                _check_text(item, path, " " if isinstance(value, list) else "")
    for section, sep in (("feature_importances", "="), ("parameters", ":]")):
        entries = node[section]
        if not isinstance(entries, dict) or not all(type(v) is str for v in entries.values()):
            raise ManifestError(f"{section} must map names to text", path)
        for key, value in entries.items():
            _check_text(key, path, sep)
            _check_text(value, path, "")


def _check_text(value: Any, path: str, forbidden: str) -> None:
    if type(value) is not str or "\n" in value or "\r" in value or any(
            c in value for c in forbidden):
        raise ManifestError(f"text {quote(value)} would break the LightGBM model text", path)


def _check_lgb_tree(s: dict, c: dict, n_features: int, index: int, path: str) -> None:
    num_leaves, num_cat = s["num_leaves"], s["num_cat"]
    left, right, feature = c["left_child"], c["right_child"], c["split_feature"]
    code, node, reason = _arrays.check_leaf_coded_tree(left, right, feature, n_features,
                                                       num_leaves)
    if code:
        raise _tree_error("LightGBM", index, f"node {node}: {reason}", path)
    decision = c["decision_type"]
    if decision.size and (decision.min() < 0 or decision.max() > _LGB_MAX_DECISION
                          or np.any((decision >> 2) & 3 == 3)):
        raise _tree_error("LightGBM", index, "bad decision_type", path)
    is_cat = (decision & 1).astype(bool)
    if s["is_linear"] not in (0, 1) or num_cat < 0:
        raise _tree_error("LightGBM", index, "bad is_linear or num_cat", path)
    if num_cat > 0:
        bounds = c["cat_boundaries"]
        if bounds[0] != 0 or _arrays.check_monotone(bounds) != -1 or (
                bounds[-1] != c["cat_threshold"].size):
            raise _tree_error("LightGBM", index, "cat_boundaries must rise within cat_threshold",
                              path)
    cat_index = c["threshold"][is_cat]
    if cat_index.size and not (np.all(cat_index == np.floor(cat_index))
                               and cat_index.min() >= 0 and cat_index.max() < num_cat):
        raise _tree_error("LightGBM", index, "categorical split outside cat_boundaries", path)
    if s["is_linear"]:
        counts, feats = c["num_features"], c["leaf_features"]
        if counts.size and counts.min() < 0:
            raise _tree_error("LightGBM", index, "negative num_features", path)
        if feats.size and _arrays.check_indices(feats, n_features) != -1:
            raise _tree_error("LightGBM", index, "linear leaf feature out of range", path)


def _load_lgb_booster(node: dict, ctx: LoadContext, path: str) -> Any:
    import lightgbm

    header = _load_plain(node["header"], ctx, join_path(path, "header"))
    where = join_path(path, "trees")
    scalars = {k: ctx.array(v, join_path(where, k)) for k, v in
               node["trees"]["scalars"].items()}
    columns = {k: ctx.array(v, join_path(where, k)) for k, v in
               node["trees"]["columns"].items()}
    n_features = _lgb_n_features(header, path)
    if np.any(scalars["num_leaves"] < 1) or np.any(scalars["num_cat"] < 0) or (
            scalars["num_leaves"].size and scalars["num_leaves"].max() > min(
            ctx.limits.max_tree_nodes, 1 << 30)):
        raise InvariantError("num_leaves must be positive and num_cat non-negative", where)
    for name in ("cat_boundaries", "num_features"):
        if columns[name].size and columns[name].min() < 0:
            raise InvariantError(f"{name} must be non-negative", where)
    trees = _lgb_tree_slices(scalars, columns, where)
    for i, (s, c) in enumerate(trees):
        _check_lgb_tree(s, c, n_features, i, where)
    rest = {k: _load_plain(node[k], ctx, join_path(path, k))
            for k in ("feature_importances", "parameters", "pandas_categorical")}
    text = _lgb_text(header, scalars, columns, rest)
    try:
        booster = lightgbm.Booster(model_str=text)
    except lightgbm.basic.LightGBMError as exc:
        raise InvariantError(f"LightGBM refused the model: {quote(str(exc), 200)}",
                             path) from None
    for key, value in node["attrs"].items():
        value = _load_plain(value, ctx, join_path(path, key))
        if key == "best_score":
            value = collections.defaultdict(collections.OrderedDict, value)
        setattr(booster, key, value)
    return booster


def _lgb_n_features(header: dict, path: str) -> int:
    """``max_feature_idx + 1``, consistent with the feature names and infos."""
    text = header.get("max_feature_idx")
    if type(text) is not str or not text.isdigit() or len(text) > 9:
        raise InvariantError("max_feature_idx must be a small non-negative int", path)
    n = int(text) + 1
    for key in ("feature_names", "feature_infos"):
        if len(header.get(key, ())) != n:
            raise InvariantError(f"{key} must list max_feature_idx + 1 entries", path)
    return n


# ============================================================================================
# The scikit-learn wrappers
# ============================================================================================


def _wrapper_handler(cls: type, tag: str, param_names: frozenset[str]) -> Handler:
    """Generic estimator state (params / attrs) for the XGBoost and LightGBM sklearn classes.

    Like :func:`milo_pack.handlers.sklearn._estimator_handler`, but the parameter names come
    from the whole class hierarchy: ``XGBClassifier.__init__`` takes ``**kwargs`` and forwards
    them to ``XGBModel``, so its own signature names only ``objective``.
    """

    def save(obj: Any, ctx: SaveContext, path: str) -> dict:
        state = dict(obj.__getstate__())
        state.pop("_sklearn_version", None)
        fields: dict[str, dict] = {"params": {}, "attrs": {}}
        for key, value in state.items():
            target = fields["params" if key in param_names else "attrs"]
            target[key] = ctx.encode(_plain_dicts(value), join_path(path, key))
        return fields

    def check(node: dict, ctx: CheckContext, path: str) -> None:
        params, attrs = node["params"], node["attrs"]
        if not isinstance(params, dict) or not isinstance(attrs, dict):
            raise ManifestError("params and attrs must be objects", path)
        if set(params) - param_names or set(params) & set(attrs):
            raise ManifestError(f"bad parameter names for {cls.__name__}", path)
        check_attribute_names(cls, list(params) + list(attrs), path)

    def load(node: dict, ctx: LoadContext, path: str) -> Any:
        obj = cls.__new__(cls)
        ctx.register(node, obj)
        state = {k: ctx.decode(v, join_path(path, k))
                 for part in ("params", "attrs") for k, v in node[part].items()}
        # What BaseEstimator.__setstate__ (used by both libraries) does, minus version checks.
        obj.__dict__.update(state)
        return obj

    keys = frozenset({"params", "attrs"})
    return Handler(tag, save, load, keys, keys, check=check, types=(cls,), cls=cls)


def _register_xgboost(registry: Registry) -> None:
    import xgboost

    keys = frozenset({"version", "learner", "num_trees", "trees"})
    registry.add(Handler("xgboost.Booster", _save_xgb_booster, _load_xgb_booster, keys,
                         frozenset({"version", "learner"}), check=_check_xgb_booster,
                         types=(xgboost.Booster,), cls=xgboost.Booster))
    base = frozenset(xgboost.XGBModel._get_param_names())
    for name in ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier",
                 "XGBRFRegressor"):
        cls = getattr(xgboost, name)
        names = base | frozenset(cls._get_param_names())
        registry.add(_wrapper_handler(cls, f"xgboost.{name}", names))


def _register_lightgbm(registry: Registry) -> None:
    import lightgbm

    keys = frozenset({"header", "num_trees", "trees", "feature_importances", "parameters",
                      "pandas_categorical", "attrs"})
    registry.add(Handler("lightgbm.Booster", _save_lgb_booster, _load_lgb_booster, keys, keys,
                         check=_check_lgb_booster, types=(lightgbm.Booster,),
                         cls=lightgbm.Booster))
    for name in ("LGBMClassifier", "LGBMRegressor", "LGBMRanker"):
        cls = getattr(lightgbm, name)
        names = frozenset(lightgbm.LGBMModel._get_param_names()) | frozenset(
            cls._get_param_names())
        registry.add(_wrapper_handler(cls, f"lightgbm.{name}", names))


def register_xgboost(registry: Registry) -> None:
    """Register the XGBoost handlers if xgboost is installed (else its tags stay unknown)."""
    try:
        import xgboost  # noqa: F401
    except ImportError:
        return
    _register_xgboost(registry)


def register_lightgbm(registry: Registry) -> None:
    """Register the LightGBM handlers if lightgbm is installed (else its tags stay unknown)."""
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        return
    _register_lightgbm(registry)
