"""scikit-learn's Cython tree objects: ``Tree``, KD/Ball trees and their distance metrics.

These hand their arrays to native code that trusts them: ``Tree.predict`` follows child indices
without bounds checks, ``decision_path`` sizes a buffer from ``max_depth``, a KD-tree query walks
``2 * i + 1``.  So every structure is validated here (with the kernels in ``_arrays.pyx``) before
the object is built; a malformed one raises :class:`~milo_pack.errors.InvariantError`.

``Tree`` nodes are stored column by column: each column of every tree of an ensemble is packed
into one section per column (``tree.left_child``, ``tree.threshold``...), child indices relative
to their node, so a 300-tree forest compresses to about a tenth of its pickle.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.tree._tree import NODE_DTYPE, Tree

from .. import _arrays
from ..engine import CheckContext, LoadContext, SaveContext, check_array_node, join_path
from ..errors import InvariantError, LimitError, ManifestError
from ..registry import Handler, Registry

_CHILD_FIELDS = ("left_child", "right_child")
# Columns stored as two parts, split nodes then leaves (each in node order).  Leaves hold
# constants in these columns (threshold -2, feature -2, impurity 0 when pure) and class fractions
# of leaves differ from those of split nodes; apart, each part compresses far better
# (a 300-tree forest: these columns shrink by a third).
_PARTITIONED = ("feature", "threshold", "impurity", "missing_go_to_left")


# -- sklearn.tree._tree.Tree ------------------------------------------------------------------


def _save_parts(ctx: SaveContext, column: np.ndarray, masks: tuple[np.ndarray, np.ndarray],
                path: str, group: str) -> dict:
    def part(mask: np.ndarray):
        return lambda: column[mask]

    tail = list(column.shape[1:])
    splits, leaves = masks
    n_leaves = int(np.count_nonzero(leaves))
    leaf_values = column[leaves]
    if _is_constant(leaf_values):
        # Leaves hold scikit-learn's placeholders here (feature -2, threshold -2.0...): no
        # section to read for every tree.
        leaf_node = ctx.fill_array(leaf_values.reshape(-1)[:1], [n_leaves, *tail])
    else:
        leaf_node = ctx.derived_array(column.dtype, [n_leaves, *tail], part(leaves),
                                      join_path(path, "leaves"), group=f"{group}.leaves")
    return {
        "splits": ctx.derived_array(column.dtype, [column.shape[0] - n_leaves, *tail],
                                    part(splits), join_path(path, "splits"),
                                    group=f"{group}.splits"),
        "leaves": leaf_node,
    }


def _is_constant(values: np.ndarray) -> bool:
    """Whether every element has the same bits (so NaN and -0.0 count exactly)."""
    if values.size == 0:
        return False
    bits = np.ascontiguousarray(values).reshape(-1).view(f"u{values.dtype.itemsize}")
    return bool((bits == bits[0]).all())


def _save_tree(obj: Tree, ctx: SaveContext, path: str) -> dict:
    state = obj.__getstate__()
    nodes, values = state["nodes"], state["values"]
    # Two small masks per tree (1 byte a node each) are kept until the sections are written.
    leaves = nodes["left_child"] == -1
    masks = (~leaves, leaves)
    columns = {}
    for name in nodes.dtype.names:
        where = join_path(path, name)
        if name in _PARTITIONED:
            columns[name] = _save_parts(ctx, nodes[name], masks, where, f"tree.{name}")
        else:
            columns[name] = ctx.array(nodes[name], where, group=f"tree.{name}",
                                      hint="children" if name in _CHILD_FIELDS else None)
    return {
        "n_features": int(obj.n_features),
        "n_outputs": int(obj.n_outputs),
        "n_classes": ctx.array(np.asarray(obj.n_classes), join_path(path, "n_classes")),
        "max_depth": int(state["max_depth"]),
        "node_count": int(state["node_count"]),
        "nodes": columns,
        "values": _save_parts(ctx, values, masks, join_path(path, "values"), "tree.values"),
    }


def _int_field(node: dict, key: str, path: str, low: int = 0) -> int:
    value = node[key]
    if type(value) is not int or value < low:
        raise ManifestError(f"{key} must be an int >= {low}", path)
    return value


def _check_parts(parts: Any, dtype: str, tail: list, node_count: int, ctx: CheckContext,
                 path: str) -> None:
    if not isinstance(parts, dict) or list(parts) != ["splits", "leaves"]:
        raise ManifestError("expected {\"splits\": array, \"leaves\": array}", path)
    total = 0
    for key, arr in parts.items():
        where = join_path(path, key)
        check_array_node(arr, where, ctx)
        shape = arr.get("shape")
        if arr.get("dtype") != dtype or len(shape) != 1 + len(tail) or shape[1:] != tail:
            raise InvariantError(f"must be {dtype} of shape [n, {tail}]", where)
        total += shape[0]
    if total != node_count:
        raise InvariantError(f"splits and leaves must add up to {node_count} nodes", path)


def _check_tree(node: dict, ctx: CheckContext, path: str) -> None:
    node_count = _int_field(node, "node_count", path, 1)
    _int_field(node, "n_features", path, 1)
    n_outputs = _int_field(node, "n_outputs", path, 1)
    _int_field(node, "max_depth", path, 0)
    if node_count > ctx.limits.max_tree_nodes:
        raise LimitError(f"tree of {node_count} nodes exceeds max_tree_nodes", path)
    columns = node["nodes"]
    if not isinstance(columns, dict) or list(columns) != list(NODE_DTYPE.names):
        raise ManifestError(f"tree nodes must have the columns {list(NODE_DTYPE.names)}", path)
    for name, column in columns.items():
        where = join_path(path, name)
        dtype = NODE_DTYPE.fields[name][0].str
        if name in _PARTITIONED:
            _check_parts(column, dtype, [], node_count, ctx, where)
            continue
        check_array_node(column, where, ctx)
        if column.get("dtype") != dtype or column.get("shape") != [node_count]:
            raise InvariantError(f"column must be {dtype} of length {node_count}", where)
    n_classes = node["n_classes"]
    check_array_node(n_classes, join_path(path, "n_classes"), ctx)
    if n_classes.get("shape") != [n_outputs] or n_classes.get("dtype") not in ("<i8", "<u8"):
        raise InvariantError("n_classes must be n_outputs integers", path)
    values = node["values"]
    parts = values if isinstance(values, dict) else {}
    splits = parts.get("splits")
    shape = splits.get("shape") if isinstance(splits, dict) else None
    tail = shape[1:] if isinstance(shape, list) else []
    if len(tail) != 2 or tail[0] != n_outputs:
        raise InvariantError("values must be float64 (n, n_outputs, n_classes)", path)
    _check_parts(values, "<f8", tail, node_count, ctx, join_path(path, "values"))


def _load_parts(parts: dict, ctx: LoadContext, leaf: np.ndarray, n_leaves: int,
                out: np.ndarray, path: str) -> None:
    splits, leaves = parts["splits"], parts["leaves"]
    if leaves["shape"][0] != n_leaves:
        raise InvariantError(f"{leaves['shape'][0]} leaf rows stored, the tree has {n_leaves}",
                             path)
    _arrays.scatter_rows(ctx.array(splits, join_path(path, "splits")),
                         ctx.array(leaves, join_path(path, "leaves")), leaf, out)


def _load_tree(node: dict, ctx: LoadContext, path: str) -> Tree:
    n_features, n_outputs = node["n_features"], node["n_outputs"]
    node_count = node["node_count"]
    n_classes = ctx.array(node["n_classes"], join_path(path, "n_classes"))
    if np.any(n_classes < 1) or np.any(n_classes > ctx.limits.max_dim):
        raise InvariantError("n_classes entries must be positive", path)
    values_node = node["values"]
    max_classes = int(n_classes.max())
    if values_node["splits"]["shape"][2] != max_classes:
        raise InvariantError("values' last dimension must be the largest n_classes", path)
    # Decode straight into the record array Tree copies from; it is dropped right after.
    nodes = np.empty(node_count, dtype=NODE_DTYPE)
    columns = node["nodes"]
    for name in NODE_DTYPE.names:
        if name not in _PARTITIONED:
            ctx.array(columns[name], join_path(path, name), out=nodes[name])
    left, right = nodes["left_child"], nodes["right_child"]
    leaf = left == -1
    n_leaves = int(np.count_nonzero(leaf))
    for name in _PARTITIONED:
        _load_parts(columns[name], ctx, leaf, n_leaves, nodes[name], join_path(path, name))
    values = np.empty((node_count, n_outputs, max_classes), dtype=np.float64)
    _load_parts(values_node, ctx, leaf, n_leaves, values, join_path(path, "values"))
    code, at, reason = _arrays.check_binary_tree(left, right, nodes["feature"], n_features)
    if code:
        raise InvariantError(f"tree node {at}: {reason}", path)
    depth = _arrays.binary_tree_depth(left, right)
    if node["max_depth"] != depth:
        raise InvariantError(f"max_depth is {node['max_depth']} but the tree is {depth} deep",
                             path)
    tree = Tree(n_features, n_classes.astype(np.intp, copy=False), n_outputs)
    tree.__setstate__({"max_depth": depth, "node_count": node_count, "nodes": nodes,
                       "values": values})
    return tree


# -- KD and Ball trees ------------------------------------------------------------------------

_BINARY_TREE_FIELDS = ("data", "idx_array", "node_data", "node_bounds", "leaf_size", "n_levels",
                       "n_nodes", "n_trims", "n_leaves", "n_splits", "n_calls", "dist_metric",
                       "sample_weight")


def _save_binary_tree(obj: Any, ctx: SaveContext, path: str) -> dict:
    state = obj.__getstate__()
    return {name: ctx.encode(value, join_path(path, name))
            for name, value in zip(_BINARY_TREE_FIELDS, state)}


def _binary_tree_loader(cls: type):
    def load(node: dict, ctx: LoadContext, path: str) -> Any:
        values = {name: ctx.decode(node[name], join_path(path, name))
                  for name in _BINARY_TREE_FIELDS}
        _check_binary_tree_state(cls, values, path)
        obj = cls.__new__(cls)
        obj.__setstate__(tuple(values[name] for name in _BINARY_TREE_FIELDS))
        return obj

    return load


def _check_binary_tree_state(cls: type, v: dict, path: str) -> None:
    data, idx, node_data, bounds = v["data"], v["idx_array"], v["node_data"], v["node_bounds"]
    for name in ("leaf_size", "n_levels", "n_nodes", "n_trims", "n_leaves", "n_splits",
                 "n_calls"):
        if type(v[name]) is not int or v[name] < 0:
            raise InvariantError(f"{name} must be a non-negative int", path)
    if not (isinstance(data, np.ndarray) and data.dtype == np.float64 and data.ndim == 2
            and data.flags.c_contiguous):
        raise InvariantError("data must be a C-contiguous 2-D float64 array", path)
    n_samples, n_dims = data.shape
    if not (isinstance(idx, np.ndarray) and idx.dtype == np.intp and idx.shape == (n_samples,)):
        raise InvariantError("idx_array must be intp of length n_samples", path)
    if _arrays.check_indices(idx, n_samples) != -1 or (
            n_samples and np.bincount(idx, minlength=n_samples).max() != 1):
        raise InvariantError("idx_array must be a permutation of the samples", path)
    n_nodes = v["n_nodes"]
    if n_nodes < 1 or n_nodes != 2 ** v["n_levels"] - 1:
        raise InvariantError("n_nodes must be 2**n_levels - 1", path)
    if not (isinstance(node_data, np.ndarray) and node_data.dtype.names is not None
            and set(node_data.dtype.names) == {"idx_start", "idx_end", "is_leaf", "radius"}
            and node_data.shape == (n_nodes,)):
        raise InvariantError("node_data must hold n_nodes NodeData records", path)
    start, end = node_data["idx_start"], node_data["idx_end"]
    if (_arrays.check_indices(start, n_samples + 1) != -1
            or _arrays.check_indices(end, n_samples + 1) != -1 or np.any(start > end)):
        raise InvariantError("node index ranges must lie within the samples", path)
    inner = np.flatnonzero(node_data["is_leaf"] == 0)
    if inner.size and 2 * int(inner.max()) + 2 >= n_nodes:
        raise InvariantError("an inner node's children lie beyond n_nodes", path)
    n_bounds = 2 if cls.__name__ == "KDTree" else 1
    if not (isinstance(bounds, np.ndarray) and bounds.dtype == np.float64
            and bounds.shape == (n_bounds, n_nodes, n_dims) and bounds.flags.c_contiguous):
        raise InvariantError(f"node_bounds must be float64 ({n_bounds}, n_nodes, n_dims)", path)
    from sklearn.metrics import _dist_metrics

    metric = v["dist_metric"]
    if not isinstance(metric, _dist_metrics.DistanceMetric64):
        raise InvariantError("dist_metric must be a 64-bit DistanceMetric", path)
    _check_metric_dims(metric, n_dims, path)
    weight = v["sample_weight"]
    if weight is not None and not (isinstance(weight, np.ndarray) and weight.dtype == np.float64
                                   and weight.shape == (n_samples,)):
        raise InvariantError("sample_weight must be float64 of length n_samples", path)


# -- distance metrics -------------------------------------------------------------------------

# Metrics that read `vec` or `mat` per feature: their sizes must match the data's dimensions.
_VEC_METRICS = {"SEuclideanDistance", "WMinkowskiDistance", "MinkowskiDistance"}
_MAT_METRICS = {"MahalanobisDistance"}


def _metric_classes() -> list[type]:
    from sklearn.metrics import _dist_metrics

    classes = []
    for name in dir(_dist_metrics):
        cls = getattr(_dist_metrics, name)
        if (isinstance(cls, type) and issubclass(cls, (_dist_metrics.DistanceMetric64,
                                                       _dist_metrics.DistanceMetric32))
                and cls.__name__.endswith(("64", "32")) and "PyFunc" not in cls.__name__
                and cls not in (_dist_metrics.DistanceMetric64, _dist_metrics.DistanceMetric32)):
            classes.append(cls)
    return classes


def _check_metric_dims(metric: Any, n_dims: int, path: str) -> None:
    base = type(metric).__name__[:-2]
    p, vec, mat = metric.__getstate__()
    if base in _VEC_METRICS and vec.shape[0] not in (n_dims,) and not (
            base == "MinkowskiDistance" and vec.shape[0] == 1 and metric.size == 1):
        if not (base == "MinkowskiDistance" and vec.shape[0] == 0):
            raise InvariantError(f"{base} weights do not match {n_dims} features", path)
    if base in _MAT_METRICS and mat.shape != (n_dims, n_dims):
        raise InvariantError(f"{base} matrix does not match {n_dims} features", path)


def _save_metric(obj: Any, ctx: SaveContext, path: str) -> dict:
    p, vec, mat = obj.__getstate__()
    return {"p": ctx.encode(p, join_path(path, "p")),
            "vec": ctx.encode(np.asarray(vec), join_path(path, "vec")),
            "mat": ctx.encode(np.asarray(mat), join_path(path, "mat"))}


def _metric_loader(cls: type):
    def load(node: dict, ctx: LoadContext, path: str) -> Any:
        p = ctx.decode(node["p"], join_path(path, "p"))
        vec = ctx.decode(node["vec"], join_path(path, "vec"))
        mat = ctx.decode(node["mat"], join_path(path, "mat"))
        if type(p) not in (int, float) or not (
                isinstance(vec, np.ndarray) and vec.dtype == np.float64 and vec.ndim == 1
                and isinstance(mat, np.ndarray) and mat.dtype == np.float64 and mat.ndim == 2):
            raise InvariantError("a distance metric needs p, a float64 vec and mat", path)
        obj = cls.__new__(cls)
        obj.__setstate__((float(p), np.ascontiguousarray(vec), np.ascontiguousarray(mat)))
        return obj

    return load


def register_tree(registry: Registry) -> None:
    """``sklearn.tree._tree.Tree`` (loaded with ``sklearn.tree``)."""
    keys = frozenset({"n_features", "n_outputs", "n_classes", "max_depth", "node_count", "nodes",
                      "values"})
    if "sklearn.tree._tree.Tree" not in registry.by_tag:
        registry.add(Handler("sklearn.tree._tree.Tree", _save_tree, _load_tree, keys, keys,
                             check=_check_tree, types=(Tree,), cls=Tree))


def register_binary_trees(registry: Registry) -> None:
    """KD and Ball trees (loaded with ``sklearn.neighbors``)."""
    from sklearn.neighbors import BallTree, KDTree

    keys = frozenset(_BINARY_TREE_FIELDS)
    for cls, tag in ((KDTree, "sklearn.neighbors.KDTree"), (BallTree, "sklearn.neighbors.BallTree")):
        if tag not in registry.by_tag:
            registry.add(Handler(tag, _save_binary_tree, _binary_tree_loader(cls), keys, keys,
                                 types=(cls,), cls=cls))


def register_metrics(registry: Registry) -> None:
    """Distance metrics (loaded with ``sklearn.metrics._dist_metrics``)."""
    keys = frozenset({"p", "vec", "mat"})
    for cls in _metric_classes():
        tag = f"sklearn.metrics._dist_metrics.{cls.__name__}"
        if tag not in registry.by_tag:
            registry.add(Handler(tag, _save_metric, _metric_loader(cls), keys, keys,
                                 types=(cls,), cls=cls))


def register(registry: Registry) -> None:
    registry.add_lazy("sklearn.tree._tree", register_tree)
    for module in ("sklearn.neighbors", "sklearn.neighbors._kd_tree",
                   "sklearn.neighbors._ball_tree"):
        registry.add_lazy(module, register_binary_trees)
    registry.add_lazy("sklearn.metrics._dist_metrics", register_metrics)
