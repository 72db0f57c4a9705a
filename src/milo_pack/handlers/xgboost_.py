"""XGBoost boosters: tree columns and a readable learner, rebuilt through XGBoost's own loader.

Saving reads XGBoost's binary model (``save_raw("ubj")``, the float32 bits exactly) with the
UBJSON kernel of :mod:`milo_pack._arrays`; XGBoost's JSON text would be as exact but costs
three times as much to write and read back (measured on a 500-round model: 40 ms to write, 20-60
ms to parse, and XGBoost itself reads JSON four times slower than UBJSON).  The trees become
packed columns (``left_children``, ``split_conditions``... of every tree one after another, with
per-tree counts); the learner (objective, base score, feature names and types, attributes such
as ``best_iteration``, category encodings) and the training configuration (``save_config()``)
stay readable JSON.

Loading validates every tree in one pass of the Cython validators, checks every header field
that sizes a buffer against the trees (output groups, trees per iteration, ``tree_info``,
``iteration_indptr``, ``best_iteration``, the objective's ``num_class``, feature counts,
multi-target leaf vectors, category segments), bounds thread counts, then hands XGBoost a
UBJSON document built from the validated arrays and restores the configuration.
"""

from __future__ import annotations

import json
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from .. import _arrays
from ..engine import CheckContext, LoadContext, SaveContext, join_path
from ..errors import (
    InvariantError,
    ManifestError,
    MiloError,
    UnsupportedTypeError,
    VersionError,
    quote,
)
from ..migrations import parse_version
from ..registry import Handler, Registry
from .boosters import (
    Columns,
    check_columns,
    check_plain,
    check_thread_entries,
    check_threads,
    load_plain,
    offsets_of,
    save_columns,
    save_plain,
    tree_error,
    wrapper_handler,
)

NODE_COLUMNS = {
    "left_children": "<i4", "right_children": "<i4", "parents": "<i4", "split_indices": "<i4",
    "split_conditions": "<f4", "split_type": "|u1", "default_left": "|u1",
    "base_weights": "<f4", "loss_changes": "<f4", "sum_hessian": "<f4",
}
CAT_COLUMNS = {"categories_nodes": "<i4", "categories_segments": "<i8",
               "categories_sizes": "<i8"}
# Multi-target trees (multi_strategy="multi_output_tree") add one vector per leaf.
LEAF_COLUMNS = {"leaf_weights": "<f4"}
COLUMNS = {**NODE_COLUMNS, **CAT_COLUMNS, "categories": "<i4", **LEAF_COLUMNS}
TREE_KEYS = frozenset(COLUMNS) - frozenset(LEAF_COLUMNS) | {"id", "tree_param"}
# Node statistics a multi-target tree only writes from XGBoost 3.2 on.
STAT_COLUMNS = frozenset({"loss_changes", "sum_hessian"})
# The tree layouts, by the columns they hold.  XGBoost 2.1 to 3.1 write a multi-target tree
# without node statistics, with a weight vector for every node (base_weights) and -1 as a
# leaf's right child; 3.2 adds the statistics and the leaves' vectors apart (leaf_weights), a
# leaf keeping its leaf index in right_children.  Scalar trees are the same in all of them.
SCALAR, MULTI_LEGACY, MULTI = "scalar", "multi-target (XGBoost < 3.2)", "multi-target"
LAYOUTS = {frozenset(COLUMNS) - frozenset(LEAF_COLUMNS): SCALAR,
           frozenset(COLUMNS) - frozenset(LEAF_COLUMNS) - STAT_COLUMNS: MULTI_LEGACY,
           frozenset(COLUMNS): MULTI}
LAYOUTS_DEFAULT = frozenset(COLUMNS) - frozenset(LEAF_COLUMNS)  # no trees: scalar
# The first XGBoost release that reads and writes the MULTI layout (MULTI_LEGACY before it).
MULTI_SINCE = (3, 2)
TREE_PARAMS = ("num_deleted", "num_feature", "num_nodes", "size_leaf_vector")
# Per-tree counts that cut the packed columns again.
COUNTS = ("num_nodes", "num_cat_nodes", "num_categories")
CHILDREN = frozenset({"left_children", "right_children"})
ROOT_PARENT = 2147483647  # XGBoost's kInvalidNodeId, the root's parent in a scalar tree
# XGBoost refuses categories >= 2**24 (they travel as float32); a larger one would also size a
# bitset from attacker data.
MAX_CATEGORY = 1 << 24
# XGBoost's predictor keeps a float per feature for 64 rows per thread: num_feature sizes a
# buffer.  It is bounded by the trees' features, the feature names, or this many.
FREE_FEATURES = 1 << 16
# Numeric category encodings: XGBoost's type code -> dtype of the values.
CAT_TYPES = {9: "|i1", 10: "|u1", 11: "<i2", 13: "<i4", 15: "<i8"}
THREAD_KEYS = frozenset({"n_jobs", "nthread"})


# -- small parsers ----------------------------------------------------------------------------


def int_text(value: Any, what: str, path: str, error: type[MiloError] = InvariantError) -> int:
    """XGBoost keeps integer parameters as decimal strings; read one strictly."""
    if type(value) is not str or not value.isdigit() or not value.isascii() or len(value) > 18:
        raise error(f"{what} must be a decimal integer string", path)
    if str(int(value)) != value:
        raise error(f"{what} must be canonical", path)
    return int(value)


def model_of(learner: dict[str, Any]) -> dict[str, Any] | None:
    """The dict holding ``trees`` (gbtree, or dart's inner gbtree); None for gblinear."""
    booster = learner.get("gradient_booster")
    if not isinstance(booster, dict):
        return None
    name = booster.get("name")
    if name == "gbtree":
        model = booster.get("model")
    elif name == "dart":
        inner = booster.get("gbtree")
        model = inner.get("model") if isinstance(inner, dict) else None
    else:
        return None
    return model if isinstance(model, dict) else None


def int_vector(value: Any, what: str, path: str) -> np.ndarray:
    """A list of ints (untyped UBJSON array) or an int array, as int64."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu" and value.ndim == 1:
        return value.astype(np.int64)
    if isinstance(value, list) and all(type(v) is int for v in value):
        try:
            return np.array(value, dtype=np.int64).reshape(-1)
        except OverflowError:
            pass
    raise InvariantError(f"{what} must be a list of ints", path)


# ============================================================================================
# Save
# ============================================================================================


def save_booster(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
    import xgboost

    ctx.versions["xgboost"] = xgboost.__version__
    try:
        # The tree list comes back packed (one array per key for every tree) when its trees
        # all have the same keys, else as plain values.
        doc = _arrays.ubjson_decode_packed(bytes(obj.save_raw("ubj")))
    except ValueError as exc:
        raise UnsupportedTypeError(f"unreadable XGBoost model: {exc}", path) from None
    if not isinstance(doc, dict) or set(doc) != {"learner", "version"}:
        raise UnsupportedTypeError("unrecognised XGBoost model document", path)
    trees = None
    model = model_of(doc["learner"])
    if model is not None:
        trees = model.pop("trees", None)
        if not isinstance(trees, (list, _arrays.UbjTrees)):
            raise UnsupportedTypeError("XGBoost model without a tree list", path)
    learner = _native_order(doc["learner"])
    model = model_of(learner)
    fields: dict[str, Any] = {"version": doc["version"]}
    counts: Columns | None = None
    params: Columns | None = None
    columns: Columns | None = None
    if model is not None and trees is not None:
        fields["num_trees"] = trees.packed["count"] if isinstance(
            trees, _arrays.UbjTrees) else len(trees)
        counts, params, columns = _tree_columns(trees, join_path(path, "trees"))
        if isinstance(model.get("cats"), dict):
            model["cats"] = _readable_cats(model["cats"], join_path(path, "cats"))
    config = json.loads(obj.save_config())
    # What we write, we read: the loader's checks run on the model before it is written.
    try:
        _check_saved(learner, fields.get("num_trees"), counts, params, columns, config, path)
    except InvariantError as exc:
        raise UnsupportedTypeError(f"this XGBoost model cannot be stored safely: {exc}",
                                   path) from None
    fields["learner"] = save_plain(learner, ctx, join_path(path, "learner"))
    if columns is not None:
        where = join_path(path, "trees")
        fields["trees"] = {
            # counts and params are set with columns.
            "counts": save_columns(cast(Columns, counts), ctx, join_path(where, "counts"),
                                   "xgboost"),
            "tree_param": save_columns(cast(Columns, params), ctx, join_path(where, "tree_param"),
                                       "xgboost.tree_param"),
            "columns": save_columns(columns, ctx, join_path(where, "columns"), "xgboost",
                                    CHILDREN),
        }
    fields["config"] = save_plain(config, ctx, join_path(path, "config"))
    return fields


def _check_saved(learner: dict[str, Any], n_trees: int | None, counts: Columns | None,
                 params: Columns | None, columns: Columns | None, config: dict[str, Any],
                 path: str) -> None:
    """The loader's checks, on a model about to be written."""
    num_feature, _, num_target = _learner_ints(learner, path)
    if columns is not None:
        # counts and params are set with columns.
        _check_trees(cast(Columns, counts), cast(Columns, params), columns, num_feature,
                     num_target, path)
    _check_learner(learner, n_trees, columns, path)
    _check_config(config, learner, path)


def _native_order(value: Any) -> Any:
    """The decoded learner with its (big-endian) typed arrays in native byte order."""
    if type(value) is dict:
        return {k: _native_order(v) for k, v in value.items()}
    if type(value) is list:  # lists of ints (tree_info...) are returned as they are
        return [v if type(v) is int else _native_order(v) for v in value]
    if type(value) is np.ndarray:
        return value.astype(value.dtype.newbyteorder("="))
    return value


def _tree_columns(trees: list[Any] | _arrays.UbjTrees, path: str
                  ) -> tuple[Columns, Columns, Columns]:
    """Per-tree counts and tree_param, and every column concatenated across trees."""
    if isinstance(trees, _arrays.UbjTrees):
        return _packed_tree_columns(trees.packed, path)
    return _listed_tree_columns(trees, path)


def _listed_tree_columns(trees: list[Any], path: str) -> tuple[Columns, Columns, Columns]:
    """:func:`_tree_columns` of a tree list decoded as plain values, a tree at a time."""
    n = len(trees)
    counts = {name: np.zeros(n, dtype=np.int32) for name in COUNTS}
    params = {name: np.zeros(n, dtype=np.int32) for name in TREE_PARAMS}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in COLUMNS}
    layout = None
    for i, tree in enumerate(trees):
        where = f"{path}[{i}]"
        keys = frozenset(tree.keys()) if isinstance(tree, dict) else frozenset()
        found = LAYOUTS.get(keys - {"id", "tree_param"}) if {"id", "tree_param"} <= keys else None
        if found is None or tree["id"] != i or (i and found != layout):
            raise UnsupportedTypeError("unrecognised XGBoost tree layout", where)
        layout = found
        tree_param = tree["tree_param"]
        if not isinstance(tree_param, dict) or set(tree_param) != set(TREE_PARAMS):
            raise UnsupportedTypeError("unrecognised XGBoost tree_param", where)
        for name in TREE_PARAMS:
            params[name][i] = int_text(tree_param[name], name, where, UnsupportedTypeError)
        if params["num_deleted"][i]:
            raise UnsupportedTypeError("XGBoost trees with deleted nodes are not supported",
                                       where)
        if (layout == SCALAR) != (params["size_leaf_vector"][i] == 1):
            raise UnsupportedTypeError("unrecognised XGBoost tree layout", where)
        for name in parts:
            column = tree.get(name)
            if column is None and name not in keys:
                continue
            dtype = np.dtype(COLUMNS[name])
            if type(column) is not np.ndarray or column.dtype.newbyteorder("<") != dtype:
                raise UnsupportedTypeError(f"{name} is not a {dtype.str} array", where)
            parts[name].append(column)
        counts["num_nodes"][i] = tree["left_children"].size
        counts["num_cat_nodes"][i] = tree["categories_nodes"].size
        counts["num_categories"][i] = tree["categories"].size
    held = next((k for k, v in LAYOUTS.items() if v == layout), LAYOUTS_DEFAULT)
    columns = {name: np.concatenate(p).astype(COLUMNS[name]) if p
               else np.zeros(0, np.dtype(COLUMNS[name]))
               for name, p in parts.items() if name in held}
    return counts, params, columns


def _packed_tree_columns(packed: dict[str, Any], path: str) -> tuple[Columns, Columns, Columns]:
    """:func:`_tree_columns` for a tree list decoded packed (``_arrays.UbjTrees``): the same
    checks and the same columns, a key at a time instead of a tree at a time."""
    n = packed["count"]
    keys = frozenset(packed["keys"])
    arrays, ints, objects = packed["arrays"], packed["ints"], packed["objects"]
    found = LAYOUTS.get(keys - {"id", "tree_param"}) if {"id", "tree_param"} <= keys else None
    if n and (found is None or set(ints) != {"id"} or set(objects) != {"tree_param"}
              or set(arrays) != keys - {"id", "tree_param"}):
        raise UnsupportedTypeError("unrecognised XGBoost tree layout", path)
    if n and np.any(ints["id"] != np.arange(n)):
        raise UnsupportedTypeError("unrecognised XGBoost tree layout", f"{path}[0]")
    params = {name: np.zeros(n, dtype=np.int32) for name in TREE_PARAMS}
    if n:
        tree_param = objects["tree_param"]
        if set(tree_param) != set(TREE_PARAMS):
            raise UnsupportedTypeError("unrecognised XGBoost tree_param", path)
        for name in TREE_PARAMS:
            texts = tree_param[name]
            # Few distinct values: each is read strictly once.
            value_of = {text: int_text(text, name, path, UnsupportedTypeError)
                        for text in set(texts)}
            params[name][:] = np.array([value_of[t] for t in texts], dtype=np.int64)
        if np.any(params["num_deleted"] != 0):
            raise UnsupportedTypeError("XGBoost trees with deleted nodes are not supported", path)
        if np.any((params["size_leaf_vector"] == 1) != (found == SCALAR)):
            raise UnsupportedTypeError("unrecognised XGBoost tree layout", path)
    counts = {name: np.zeros(n, dtype=np.int32) for name in COUNTS}
    columns: Columns = {}
    held = next((k for k, v in LAYOUTS.items() if v == found), LAYOUTS_DEFAULT)
    for name in (name for name in COLUMNS if name in held):  # in the listed path's order
        dtype = np.dtype(COLUMNS[name])
        if name not in arrays:
            columns[name] = np.zeros(0, dtype)
            continue
        column, lengths = arrays[name]
        if column.dtype.newbyteorder("<") != dtype:
            raise UnsupportedTypeError(f"{name} is not a {dtype.str} array", path)
        columns[name] = column.astype(dtype)
        for count, source in (("num_nodes", "left_children"),
                              ("num_cat_nodes", "categories_nodes"),
                              ("num_categories", "categories")):
            if name == source:
                counts[count][:] = lengths
    return counts, params, columns


def _readable_cats(cats: dict[str, Any], path: str) -> dict[str, Any]:
    """XGBoost's category encodings with the string categories as strings.

    ``feature_segments`` (cumulative category counts) is derived at load; ``sorted_idx``
    (XGBoost's sort order of each feature's categories) is kept and checked as a permutation.
    A model whose string categories are not UTF-8 keeps XGBoost's raw form.
    """
    if set(cats) != {"enc", "feature_segments", "sorted_idx"} or not isinstance(
            cats["enc"], list):
        raise UnsupportedTypeError("unrecognised XGBoost category encodings", path)
    features: list[Any] = []
    for item in cats["enc"]:
        if isinstance(item, dict) and set(item) == {"offsets", "values"}:
            raw = item["values"].astype(np.uint8).tobytes()
            bounds = item["offsets"].astype(np.int64).tolist()
            try:
                features.append([raw[a:b].decode("utf-8")
                                 for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
            except UnicodeDecodeError:
                return cats
        elif isinstance(item, dict) and set(item) == {"type", "values"}:
            features.append({"type": item["type"], "values": item["values"]})
        else:
            raise UnsupportedTypeError("unrecognised XGBoost category encoding", path)
    readable = {"features": features, "sorted_idx": cats["sorted_idx"]}
    rebuilt = _raw_cats(readable, path)
    if not (np.array_equal(rebuilt["feature_segments"], cats["feature_segments"])
            and all(_same_enc(a, b) for a, b in zip(rebuilt["enc"], cats["enc"], strict=True))):
        return cats
    return readable


def _same_enc(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k]
        for k in a)


# ============================================================================================
# Check (validation pass: nothing built)
# ============================================================================================


def check_booster(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    version = node["version"]
    if not (isinstance(version, list) and len(version) == 3
            and all(type(v) is int and 0 <= v < 1000 for v in version)):
        raise ManifestError("version must be three small ints", path)
    learner = node["learner"]
    if not isinstance(learner, dict):
        raise ManifestError("learner must be an object", path)
    check_plain(learner, ctx, join_path(path, "learner"))
    if "config" in node:
        if not isinstance(node["config"], dict):
            raise ManifestError("config must be an object", path)
        check_plain(node["config"], ctx, join_path(path, "config"))
    has_trees = "trees" in node
    if has_trees != ("num_trees" in node) or has_trees != (model_of(learner) is not None):
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
    for key, names in (("counts", COUNTS), ("tree_param", TREE_PARAMS)):
        check_columns(trees[key], dict.fromkeys(names, "<i4"), ctx, join_path(where, key))
        if any(c["shape"] != [n] for c in trees[key].values()):
            raise InvariantError(f"{key} must have num_trees entries", join_path(where, key))
    check_columns(trees["columns"], COLUMNS, ctx, join_path(where, "columns"),
                  optional=frozenset(LEAF_COLUMNS) | STAT_COLUMNS)
    if frozenset(trees["columns"]) not in LAYOUTS:
        raise ManifestError("trees.columns must be one of XGBoost's tree layouts",
                            join_path(where, "columns"))
    import xgboost

    _check_layout_supported(trees["columns"], version, xgboost.__version__, path)


# ============================================================================================
# Invariants (shared by save and load)
# ============================================================================================


def _learner_ints(learner: dict[str, Any], path: str) -> tuple[int, int, int]:
    """``num_feature``, ``num_class`` and ``num_target`` from learner_model_param."""
    param = learner.get("learner_model_param")
    if not isinstance(param, dict):
        raise InvariantError("learner_model_param is missing", path)
    num_feature = int_text(param.get("num_feature"), "num_feature", path)
    num_class = int_text(param.get("num_class", "0"), "num_class", path)
    num_target = int_text(param.get("num_target", "1"), "num_target", path)
    if num_feature >= 1 << 31 or num_class >= 1 << 31 or num_target >= 1 << 31:
        raise InvariantError("num_feature, num_class and num_target must fit int32", path)
    if num_class > 1 and num_target > 1:
        raise InvariantError("a model has classes or targets, not both", path)
    return num_feature, num_class, num_target


def _check_trees(counts: Columns, params: Columns, columns: Columns, num_feature: int,
                 num_target: int, path: str) -> dict[str, npt.NDArray[np.int64]]:
    """Every tree's structure, in a few vectorised passes; returns the cut offsets."""
    n_nodes = counts["num_nodes"]
    bounds = {"nodes": offsets_of(n_nodes, columns["left_children"].size, "node", path),
              "cat": offsets_of(counts["num_cat_nodes"], columns["categories_nodes"].size,
                                "categorical node", path),
              "categories": offsets_of(counts["num_categories"], columns["categories"].size,
                                       "category", path)}
    layout = LAYOUTS.get(frozenset(columns))
    if layout is None:
        raise InvariantError("the tree columns are none of XGBoost's tree layouts", path)
    for name, kind in KIND_OF.items():
        if name in columns and name != "base_weights" and columns[name].size != bounds[kind][-1]:
            raise InvariantError(f"{name} does not match the {kind} counts", path)
    leaf_size = params["size_leaf_vector"]
    if np.any(params["num_nodes"] != n_nodes) or np.any(params["num_deleted"] != 0) or np.any(
            params["num_feature"] != num_feature):
        raise InvariantError("tree_param does not match the trees", path)
    # A tree writes size_leaf_vector outputs per row: 1 (one tree per group), or every
    # target of a multi-target model (the output has num_target columns).
    multi = layout != SCALAR
    if np.any(leaf_size != (num_target if multi else 1)) or (multi and num_target < 2):
        raise InvariantError("size_leaf_vector must be 1, or num_target for multi-target trees",
                             path)
    left, right = columns["left_children"], columns["right_children"]
    base = bounds["nodes"]
    tree_of = np.repeat(np.arange(n_nodes.size), n_nodes)
    is_leaf = left == -1
    if layout == MULTI:
        # A multi-target leaf keeps its leaf index in right_children.
        leaf_index = np.where(is_leaf, right, 0)
        right = np.where(is_leaf, -1, right).astype(np.int32)
    code, tree, node, reason = _arrays.check_binary_forest(
        left, right, columns["split_indices"], base, num_feature)
    if code:
        raise tree_error("XGBoost", tree, f"node {node}: {reason}", path)
    local = np.arange(left.size, dtype=np.int64) - base[tree_of]
    inner = np.flatnonzero(~is_leaf)
    parents = columns["parents"]
    root_parent = -1 if multi else ROOT_PARENT
    if np.any(parents[base[:-1]] != root_parent) or np.any(
            parents[base[tree_of[inner]] + left[inner]] != local[inner]) or np.any(
            parents[base[tree_of[inner]] + right[inner]] != local[inner]):
        raise InvariantError("XGBoost parents do not match the children", path)
    if np.any(columns["split_type"] > 1) or np.any(columns["default_left"] > 1):
        raise InvariantError("XGBoost split_type and default_left must be 0 or 1", path)
    n_leaves = np.bincount(tree_of[is_leaf], minlength=n_nodes.size)
    vector = leaf_size.astype(np.int64)
    if layout == MULTI:
        if np.any(leaf_index[is_leaf] < 0) or np.any(
                leaf_index[is_leaf] >= n_leaves[tree_of[is_leaf]]):
            raise InvariantError("XGBoost leaf index outside the tree's leaves", path)
        seen = np.zeros(int(n_leaves.sum()), dtype=bool)
        leaf_base = np.zeros(n_nodes.size + 1, dtype=np.int64)
        np.cumsum(n_leaves, out=leaf_base[1:])
        seen[leaf_base[tree_of[is_leaf]] + leaf_index[is_leaf]] = True
        if not seen.all():
            raise InvariantError("XGBoost leaf indices must number the leaves", path)
        bounds["leaves"] = offsets_of(n_leaves * vector, columns["leaf_weights"].size,
                                      "leaf weight", path)
    bounds["weights"] = offsets_of(n_nodes.astype(np.int64) * vector,
                                   columns["base_weights"].size, "base weight", path)
    # Categorical splits: categories_nodes lists each tree's split_type == 1 nodes, in order.
    is_cat = np.flatnonzero(columns["split_type"] == 1)
    cat_nodes = columns["categories_nodes"]
    if is_cat.size != cat_nodes.size or np.any(
            np.bincount(tree_of[is_cat], minlength=n_nodes.size) != counts["num_cat_nodes"]
    ) or np.any(local[is_cat] != cat_nodes) or np.any(is_leaf[is_cat]):
        raise InvariantError("XGBoost categories_nodes must list the categorical splits", path)
    seg, size = columns["categories_segments"], columns["categories_sizes"]
    if seg.size:
        own = counts["num_categories"].astype(np.int64)[tree_of[is_cat]]
        if seg.min() < 0 or size.min() < 0 or np.any(seg > own) or np.any(size > own - seg):
            raise InvariantError("XGBoost category segments lie outside categories", path)
    cats = columns["categories"]
    if cats.size and (cats.min() < 0 or cats.max() >= MAX_CATEGORY):
        raise InvariantError("XGBoost category out of range", path)
    return bounds


KIND_OF = {**dict.fromkeys(NODE_COLUMNS, "nodes"), **dict.fromkeys(CAT_COLUMNS, "cat"),
           "categories": "categories"}


def _check_learner(learner: dict[str, Any], n_trees: int | None, columns: Columns | None,
                   path: str) -> None:
    """Learner-level invariants: every field XGBoost sizes a buffer with, against the trees."""
    num_feature, num_class, num_target = _learner_ints(learner, path)
    n_groups = max(num_class, num_target, 1)
    param = learner["learner_model_param"]
    score = param.get("base_score")
    try:
        parsed = json.loads(score) if isinstance(score, str) and score.startswith("[") else [
            float(score)]
    except (TypeError, ValueError):
        raise InvariantError("base_score is not a number or a list", path) from None
    if not isinstance(parsed, list) or len(parsed) not in (1, n_groups) or not all(
            type(v) in (int, float) for v in parsed):
        raise InvariantError(f"base_score must hold 1 or {n_groups} numbers", path)
    names_count = 0
    for key in ("feature_names", "feature_types"):
        names = learner.get(key, [])
        if not isinstance(names, list) or (names and len(names) != num_feature) or not all(
                type(v) is str for v in names):
            raise InvariantError(f"{key} must be empty or {num_feature} strings", path)
        names_count = max(names_count, len(names))
    _check_objective(learner.get("objective"), num_class, path)
    booster = learner.get("gradient_booster")
    if not isinstance(booster, dict):
        raise InvariantError("gradient_booster is missing", path)
    _check_attributes(learner.get("attributes"), path)
    if booster.get("name") == "gblinear":
        model = booster.get("model")
        weights = model.get("weights") if isinstance(model, dict) else None
        if not isinstance(weights, np.ndarray) or weights.size != (num_feature + 1) * n_groups:
            raise InvariantError("gblinear weights must be (num_feature + 1) * groups", path)
        model = cast(dict[str, Any], model)  # weights were found in it: a dict
        if set(model) - {"weights", "boosted_rounds"} or type(
                model.get("boosted_rounds", 0)) is not int:
            raise InvariantError("unexpected gblinear model fields", path)
        _check_best_iteration(learner, None, path)
        return
    model = model_of(learner)
    if model is None or columns is None or n_trees is None:
        raise InvariantError("unknown gradient booster", path)
    used = int(columns["split_indices"][columns["left_children"] != -1].max(initial=-1)) + 1
    if num_feature > max(used, names_count, FREE_FEATURES):
        raise InvariantError(
            f"num_feature {num_feature} is not backed by the trees' features or by feature "
            f"names (XGBoost sizes its predict buffers with it)", path)
    # Groups beyond the trees (and the base scores) would size the output from the header.
    if n_groups > max(n_trees, len(parsed)):
        raise InvariantError(f"{n_groups} output groups for {n_trees} trees", path)
    _check_model(model, n_trees, num_class, num_target, columns, path)
    n_rounds = len(model["iteration_indptr"]) - 1
    _check_best_iteration(learner, n_rounds, path)
    if booster.get("name") == "dart":
        if set(booster) != {"name", "gbtree", "weight_drop"}:
            raise InvariantError("unexpected dart booster fields", path)
        drop = booster["weight_drop"]
        values = drop.tolist() if isinstance(drop, np.ndarray) else drop
        if not isinstance(values, list) or len(values) != n_trees or not all(
                type(v) in (int, float) for v in values):
            raise InvariantError("dart weight_drop must have one weight per tree", path)


def _check_objective(objective: Any, num_class: int, path: str) -> None:
    """The objective's own ``num_class`` (softmax writes that many outputs per row)."""
    if not isinstance(objective, dict) or type(objective.get("name")) is not str:
        raise InvariantError("objective must name the objective", path)
    for key, value in objective.items():
        if key != "name" and not (isinstance(value, dict) and all(
                type(v) is str for v in value.values())):
            raise InvariantError("objective parameters must be string maps", path)
    softmax = objective.get("softmax_multiclass_param")
    if objective["name"].startswith("multi:"):
        if not isinstance(softmax, dict) or int_text(
                softmax.get("num_class"), "objective num_class", path) != num_class:
            raise InvariantError("the objective's num_class must equal the model's", path)
    elif softmax is not None:
        raise InvariantError("softmax parameters without a multi: objective", path)


def _check_attributes(attributes: Any, path: str) -> None:
    if attributes is None:
        return
    if not isinstance(attributes, dict) or not all(
            type(v) is str for v in attributes.values()):
        raise InvariantError("attributes must map names to strings", path)


def _check_best_iteration(learner: dict[str, Any], n_rounds: int | None, path: str) -> None:
    """``best_iteration`` picks the default iteration range of predict: within the rounds."""
    attributes = learner.get("attributes") or {}
    if "best_iteration" not in attributes:
        return
    best = int_text(attributes["best_iteration"], "best_iteration", path)
    if n_rounds is not None and best >= max(n_rounds, 1):
        raise InvariantError(f"best_iteration {best} is beyond the {n_rounds} rounds", path)


def _check_model(model: dict[str, Any], n_trees: int, num_class: int, num_target: int,
                 columns: Columns, path: str) -> None:
    """gbtree_model_param, tree_info and iteration_indptr, derived from the trees' layout."""
    if set(model) - {"gbtree_model_param", "tree_info", "iteration_indptr", "cats", "trees"}:
        raise InvariantError("unexpected gbtree model fields", path)
    param = model.get("gbtree_model_param")
    if not isinstance(param, dict) or set(param) != {"num_trees", "num_parallel_tree"}:
        raise InvariantError("gbtree_model_param must hold num_trees and num_parallel_tree",
                             path)
    if int_text(param["num_trees"], "num_trees", path) != n_trees:
        raise InvariantError("gbtree_model_param.num_trees must match the trees", path)
    parallel = int_text(param["num_parallel_tree"], "num_parallel_tree", path)
    multi = LAYOUTS.get(frozenset(columns)) != SCALAR
    groups = 1 if multi else max(num_class, num_target, 1)
    info = int_vector(model.get("tree_info"), "tree_info", path)
    indptr = int_vector(model.get("iteration_indptr"), "iteration_indptr", path)
    # Every round adds num_parallel_tree trees per output group, in group order.
    per_round = parallel * groups
    if parallel < 1 or n_trees % per_round:
        raise InvariantError(f"{n_trees} trees are not whole rounds of {per_round}", path)
    rounds = n_trees // per_round
    expected_info = np.tile(np.repeat(np.arange(groups), parallel), rounds)
    if info.size != n_trees or np.any(info != expected_info):
        raise InvariantError("tree_info must give each round's trees their groups in order",
                             path)
    if indptr.size != rounds + 1 or np.any(indptr != np.arange(rounds + 1) * per_round):
        raise InvariantError("iteration_indptr must count whole rounds", path)
    _check_cats(model.get("cats"), path)


def _check_cats(cats: Any, path: str) -> None:
    """The category recoder (XGBoost >= 3.1): offsets and segments within their values."""
    if cats is None:
        return
    where = join_path(path, "cats")
    if isinstance(cats, dict) and set(cats) == {"features", "sorted_idx"}:
        cats = _raw_cats(cats, where)
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
        sizes = np.diff(segments.astype(np.int64))
        owner = np.repeat(np.arange(sizes.size), sizes)
        if order.size:
            if order.min() < 0 or np.any(order >= sizes[owner]):
                raise InvariantError("sorted_idx must index within each feature's segment",
                                     where)
            # A permutation of each segment: XGBoost binary-searches categories through it.
            seen = np.zeros(order.size, dtype=bool)
            seen[segments[:-1][owner] + order] = True
            if not seen.all():
                raise InvariantError("sorted_idx must order each feature's categories", where)
    elif order.size or enc:
        raise InvariantError("cats without feature_segments must be empty", where)
    for i, item in enumerate(enc):
        count = _enc_count(item, f"{where}.enc[{i}]")
        if segments.size and count != segments[i + 1] - segments[i]:
            raise InvariantError(f"cats.enc[{i}] does not match its segment", where)


def _enc_count(item: Any, where: str) -> int:
    if isinstance(item, dict) and set(item) == {"offsets", "values"} and all(
            isinstance(item[k], np.ndarray) for k in item):
        offsets: np.ndarray = item["offsets"]  # checked an array above
        if offsets.size and (offsets.dtype.kind not in "iu" or offsets[0] != 0
                             or offsets[-1] != item["values"].size
                             or _arrays.check_monotone(offsets) != -1):
            raise InvariantError("offsets must rise from 0 to len(values)", where)
        if item["values"].dtype.kind not in "iu" or item["values"].dtype.itemsize != 1:
            raise InvariantError("string categories are bytes", where)
        return max(offsets.size - 1, 0)
    if isinstance(item, dict) and set(item) == {"type", "values"} and isinstance(
            item["values"], np.ndarray):
        dtype = CAT_TYPES.get(item["type"]) if type(item["type"]) is int else None
        if dtype is None or item["values"].dtype.newbyteorder("<").str.replace("<", "|", (
                item["values"].dtype.itemsize == 1)) != dtype:
            raise InvariantError("numeric categories must match their type code", where)
        return int(item["values"].size)
    raise InvariantError("each cats.enc entry holds offsets and values, or type and values",
                         where)


def _raw_cats(readable: dict[str, Any], path: str) -> dict[str, Any]:
    """XGBoost's category encodings rebuilt from the readable form (see _readable_cats)."""
    enc: list[dict[str, Any]] = []
    sizes = []
    features = readable["features"]
    if not isinstance(features, list):
        raise InvariantError("cats.features must be a list", path)
    for i, item in enumerate(features):
        if isinstance(item, list):
            if not all(type(s) is str for s in item):
                raise InvariantError(f"cats.features[{i}] must be strings", path)
            raw = [s.encode("utf-8") for s in item]
            # XGBoost writes no offsets at all for a feature without categories.
            offsets = np.zeros(len(raw) + 1 if raw else 0, dtype=np.int32)
            if raw:
                np.cumsum([len(r) for r in raw], out=offsets[1:])
            values = np.frombuffer(b"".join(raw), dtype=np.int8).copy()
            enc.append({"offsets": offsets, "values": values})
            sizes.append(len(raw))
        elif isinstance(item, dict) and set(item) == {"type", "values"}:
            enc.append({"type": item["type"], "values": item["values"]})
            sizes.append(getattr(item["values"], "size", 0))
        else:
            raise InvariantError(f"cats.features[{i}] must be strings or typed values", path)
    segments = np.zeros(len(sizes) + 1, dtype=np.int32)
    np.cumsum(sizes, out=segments[1:])
    return {"enc": enc, "feature_segments": segments if enc else segments[:0],
            "sorted_idx": readable["sorted_idx"]}


def _check_config(config: Any, learner: dict[str, Any], path: str) -> None:
    """The training configuration must describe this model, and bound its threads.

    ``load_config`` restores the objective (softmax writes its ``num_class`` outputs per row)
    and the thread count; the model-describing parts must equal the model's own.
    """
    where = join_path(path, "config")
    if not isinstance(config, dict) or set(config) != {"learner", "version"}:
        raise InvariantError("config must hold learner and version", where)
    conf = config["learner"]
    if not isinstance(conf, dict):
        raise InvariantError("config.learner must be an object", where)
    stack: list[Any] = [config]
    while stack:  # strings, bools, lists and maps only
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif type(value) not in (str, bool, int):
            raise InvariantError("config values must be strings", where)
    generic = conf.get("generic_param")
    if not isinstance(generic, dict):
        raise InvariantError("config.learner.generic_param is missing", where)
    for key in THREAD_KEYS & generic.keys():
        value = generic[key]
        negative = isinstance(value, str) and value.startswith("-")
        count = int_text(value[1:] if negative else value, key, where)
        check_threads(-count if negative else count, key, where)
    device = generic.get("device", "cpu")
    if type(device) is not str or not (device in ("cpu", "cuda", "gpu") or (
            device.startswith(("cuda:", "gpu:")) and device.split(":", 1)[1].isdigit())):
        raise InvariantError(f"unknown device {quote(device, 40)}", where)
    if conf.get("objective") != learner.get("objective"):
        raise InvariantError("config objective differs from the model's", where)
    if "learner_model_param" in conf and conf["learner_model_param"] != learner.get(
            "learner_model_param"):
        raise InvariantError("config learner_model_param differs from the model's", where)
    # _check_learner, which runs first, found the model's gradient_booster a dict.
    booster = conf.get("gradient_booster")
    model_booster = cast(dict[str, Any], learner.get("gradient_booster"))
    if not isinstance(booster, dict) or booster.get("name") != model_booster.get("name"):
        raise InvariantError("config gradient_booster differs from the model's", where)
    inner = booster.get("gbtree", booster)
    model = model_of(learner)
    if model is not None and isinstance(inner, dict) and "gbtree_model_param" in inner and (
            inner["gbtree_model_param"] != model.get("gbtree_model_param")):
        raise InvariantError("config gbtree_model_param differs from the model's", where)
    train = conf.get("learner_train_param", {})
    objective = learner.get("objective") or {}
    if isinstance(train, dict) and (
            train.get("objective", objective.get("name")) != objective.get("name")
            or train.get("booster", model_booster.get("name")) != model_booster.get("name")):
        raise InvariantError("config learner_train_param differs from the model's", where)


# ============================================================================================
# Load
# ============================================================================================


def load_booster(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:
    import xgboost

    learner = load_plain(node["learner"], ctx, join_path(path, "learner"))
    config = load_plain(node["config"], ctx, join_path(path, "config")) if (
        "config" in node) else None
    num_feature, _, num_target = _learner_ints(learner, path)
    model = model_of(learner)
    columns: Columns | None = None
    if model is not None:
        if "trees" in model:
            raise InvariantError("trees belong in the packed columns", path)
        counts, params, columns = _load_columns(node, ctx, path)
        bounds = _check_trees(counts, params, columns, num_feature, num_target, path)
    _check_learner(learner, node.get("num_trees"), columns, path)
    if config is not None:
        _check_config(config, learner, path)
    if model is not None:
        columns = cast(Columns, columns)  # set above, with the model
        _check_layout_supported(columns, node["version"], xgboost.__version__, path)
        model["trees"] = _native_trees(params, columns, bounds)
        if isinstance(model.get("cats"), dict) and "features" in model["cats"]:
            model["cats"] = _raw_cats(model["cats"], join_path(path, "cats"))
    document = _arrays.ubjson_encode({"learner": learner, "version": node["version"]})
    booster = xgboost.Booster()
    try:
        booster.load_model(document)
        if config is not None:
            booster.load_config(json.dumps(config))
    except xgboost.core.XGBoostError as exc:
        raise InvariantError(f"XGBoost refused the model: {quote(str(exc), 200)}",
                             path) from None
    return booster


def _check_layout_supported(columns: Columns, written: list[int], installed: str,
                            path: str) -> None:
    """Multi-target trees in the layout the installed XGBoost reads, or a VersionError.

    XGBoost 3.2 reads only its own layout (it would index the missing leaf_weights), earlier
    versions only theirs; converting would invent the node statistics 2.1 to 3.1 never wrote.
    """
    layout = LAYOUTS.get(frozenset(columns))
    here = parse_version(installed)
    if layout == SCALAR or here is None:
        return
    wanted = MULTI if here[:2] >= MULTI_SINCE else MULTI_LEGACY
    if layout != wanted:
        writer = ".".join(str(v) for v in written)
        raise VersionError(
            f"the multi-target trees were written by XGBoost {writer} in the {layout} layout; "
            f"XGBoost {installed} reads only the {wanted} layout (refit or load under an "
            f"XGBoost {'>=' if layout == MULTI else '<'} 3.2)", path,
            writer=writer, reader=installed)


def _load_columns(node: dict[str, Any], ctx: LoadContext, path: str
                  ) -> tuple[Columns, Columns, Columns]:
    where = join_path(path, "trees")
    spec = node["trees"]
    counts = {k: ctx.array(v, join_path(where, k)) for k, v in spec["counts"].items()}
    params = {k: ctx.array(v, join_path(where, k)) for k, v in spec["tree_param"].items()}
    columns = {k: ctx.array(v, join_path(where, k)) for k, v in spec["columns"].items()}
    n_nodes = counts["num_nodes"]
    if n_nodes.size and n_nodes.max() > ctx.limits.max_tree_nodes:
        raise InvariantError("a tree exceeds max_tree_nodes", where)
    return counts, params, columns


def _native_trees(params: Columns, columns: Columns, bounds: dict[str, npt.NDArray[np.int64]]
                  ) -> _arrays.UbjRaw:
    """XGBoost's ``trees`` list as UBJSON, written straight from the validated columns."""
    kinds = {**KIND_OF, "base_weights": "weights", "leaf_weights": "leaves"}
    big = {name: column.astype(column.dtype.newbyteorder(">")) for name, column in
           columns.items()}
    offsets = {name: bounds[kinds[name]] for name in columns}
    tree_params = {k: params[k].astype(np.int64) for k in TREE_PARAMS}
    keys = sorted([*columns, "id", "tree_param"])  # XGBoost's key order
    return _arrays.UbjRaw(_arrays.ubjson_tree_list(keys, big, offsets, tree_params))


# ============================================================================================
# Wrappers and registration
# ============================================================================================


def _check_wrapper_state(state: dict[str, Any], path: str) -> None:
    """Thread counts of the scikit-learn wrapper (predict builds DMatrix with n_jobs)."""
    import xgboost

    if "_Booster" in state and not isinstance(state["_Booster"], xgboost.Booster):
        raise InvariantError("_Booster must be an xgboost.Booster", join_path(path, "_Booster"))
    check_threads(state.get("n_jobs"), "n_jobs", join_path(path, "n_jobs"))
    check_thread_entries(state.get("kwargs"), THREAD_KEYS, join_path(path, "kwargs"))


def register(registry: Registry) -> None:
    import xgboost

    keys = frozenset({"version", "learner", "num_trees", "trees", "config"})
    registry.add(Handler("xgboost.Booster", save_booster, load_booster, keys,
                         frozenset({"version", "learner"}), check=check_booster,
                         types=(xgboost.Booster,), cls=xgboost.Booster))
    base = frozenset(xgboost.XGBModel._get_param_names())
    for name in ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier",
                 "XGBRFRegressor"):
        cls = getattr(xgboost, name)
        names = base | frozenset(cls._get_param_names())
        registry.add(wrapper_handler(cls, f"xgboost.{name}", names, _check_wrapper_state))
