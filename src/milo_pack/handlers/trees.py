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

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from sklearn.tree._tree import NODE_DTYPE, Tree

from .. import _arrays
from ..buffers import BufferPool
from ..engine import CheckContext, LoadContext, SaveContext, check_array_node, join_path
from ..errors import ArrayError, InvariantError, LimitError, ManifestError, quote
from ..lazy import plain_type
from ..registry import Handler, LoadFn, PackedMember, Registry

if TYPE_CHECKING:  # pragma: no cover
    from types import MappingProxyType

    from .numpy_ import RecordField

_CHILD_FIELDS = ("left_child", "right_child")
# Columns stored as two parts, split nodes then leaves (each in node order).  Leaves hold
# constants in these columns (threshold -2, feature -2, impurity 0 when pure) and class fractions
# of leaves differ from those of split nodes; apart, each part compresses far better
# (a 300-tree forest: these columns shrink by a third).
_PARTITIONED = ("feature", "threshold", "impurity", "missing_go_to_left")


# -- sklearn.tree._tree.Tree ------------------------------------------------------------------


def _rows_of(column: np.ndarray, mask: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: column[mask]


def _save_split_rows(ctx: SaveContext, columns: list[np.ndarray], leaves: list[np.ndarray],
                     path: str, group: str) -> dict[str, Any]:
    """``{"splits", "leaves"}`` of one column of one tree or of every tree of a pack: each
    tree's split rows, then each tree's leaf rows, picked as their section is written (no
    copy held during the walk); the leaves are a fill when every one holds the same bits."""
    dtype, tail = columns[0].dtype, list(columns[0].shape[1:])
    n_leaves = [int(np.count_nonzero(mask)) for mask in leaves]
    splits = ctx.derived_concat(
        dtype, tail, [(int(c.shape[0]) - n, _rows_of(c, ~mask))
                      for c, mask, n in zip(columns, leaves, n_leaves, strict=True)],
        join_path(path, "splits"), group=f"{group}.splits")
    first = np.ascontiguousarray(columns[0][leaves[0]]).reshape(-1)[:1]
    if all(_is_constant(np.concatenate([first, c[mask].reshape(-1)]))
           for c, mask in zip(columns, leaves, strict=True)):
        # Leaves hold scikit-learn's placeholders here (feature -2, threshold -2.0...): no
        # section to read for every tree.
        leaf_node = ctx.fill_array(first, [sum(n_leaves), *tail])
    else:
        leaf_node = ctx.derived_concat(
            dtype, tail, [(n, _rows_of(c, mask))
                          for c, mask, n in zip(columns, leaves, n_leaves, strict=True)],
            join_path(path, "leaves"), group=f"{group}.leaves")
    return {"splits": splits, "leaves": leaf_node}


def _is_constant(values: np.ndarray) -> bool:
    """Whether every element has the same bits (so NaN and -0.0 count exactly)."""
    if values.size == 0:
        return False
    bits = np.ascontiguousarray(values).reshape(-1).view(f"u{values.dtype.itemsize}")
    return bool((bits == bits[0]).all())


def _save_tree(obj: Tree, ctx: SaveContext, path: str) -> dict[str, Any]:
    state = obj.__getstate__()
    nodes, values = state["nodes"], state["values"]
    # A mask per tree (1 byte a node) is kept until the sections are written.
    leaves = nodes["left_child"] == -1
    columns = {}
    for name in nodes.dtype.names:
        where = join_path(path, name)
        if name in _PARTITIONED:
            columns[name] = _save_split_rows(ctx, [nodes[name]], [leaves], where,
                                             f"tree.{name}")
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
        "values": _save_split_rows(ctx, [values], [leaves], join_path(path, "values"),
                                   "tree.values"),
    }


def _int_field(node: dict[str, Any], key: str, path: str, low: int = 0) -> int:
    value = node[key]
    if type(value) is not int or value < low:
        raise ManifestError(f"{key} must be an int >= {low}", path)
    return value


def _check_parts(parts: Any, dtype: str, tail: list[Any], node_count: int, ctx: CheckContext,
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


def _check_tree(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
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


def _load_parts(parts: dict[str, Any], ctx: LoadContext, leaf: np.ndarray, n_leaves: int,
                out: np.ndarray, path: str) -> None:
    splits, leaves = parts["splits"], parts["leaves"]
    if leaves["shape"][0] != n_leaves:
        raise InvariantError(f"{leaves['shape'][0]} leaf rows stored, the tree has {n_leaves}",
                             path)
    _arrays.scatter_rows(ctx.array(splits, join_path(path, "splits")),
                         ctx.array(leaves, join_path(path, "leaves")), leaf, out)
    ctx.release(splits)  # copied into the tree's own records: level 0's pages may go
    ctx.release(leaves)


def _load_tree(node: dict[str, Any], ctx: LoadContext, path: str) -> Tree:
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
    leaf = nodes["left_child"] == -1
    n_leaves = int(np.count_nonzero(leaf))
    for name in _PARTITIONED:
        _load_parts(columns[name], ctx, leaf, n_leaves, nodes[name], join_path(path, name))
    values = np.empty((node_count, n_outputs, max_classes), dtype=np.float64)
    _load_parts(values_node, ctx, leaf, n_leaves, values, join_path(path, "values"))
    depth = _checked_depth(nodes, n_features, path)
    if node["max_depth"] != depth:
        raise InvariantError(f"max_depth is {node['max_depth']} but the tree is {depth} deep",
                             path)
    tree = Tree(n_features, n_classes.astype(np.intp, copy=False), n_outputs)
    tree.__setstate__({"max_depth": depth, "node_count": node_count, "nodes": nodes,
                       "values": values})
    return tree


def _checked_depth(nodes: np.ndarray, n_features: int, path: str) -> int:
    """The depth of the tree in ``nodes`` (``NODE_DTYPE`` records), found by the walk that
    checks its structure (``check_binary_tree``'s rules); raises where the structure is wrong."""
    depth = np.empty(1, dtype=np.int64)
    code, _, at, reason = _arrays.check_binary_forest(
        nodes["left_child"], nodes["right_child"], nodes["feature"],
        np.array([0, nodes.shape[0]], dtype=np.int64), n_features, depths=depth)
    if code:
        raise InvariantError(f"tree node {at}: {reason}", path)
    return int(depth[0])


# -- KD and Ball trees ------------------------------------------------------------------------

_BINARY_TREE_FIELDS = ("data", "idx_array", "node_data", "node_bounds", "leaf_size", "n_levels",
                       "n_nodes", "n_trims", "n_leaves", "n_splits", "n_calls", "dist_metric",
                       "sample_weight")


def _save_binary_tree(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
    state = obj.__getstate__()
    return {name: ctx.encode(value, join_path(path, name))
            for name, value in zip(_BINARY_TREE_FIELDS, state, strict=True)}


def _binary_tree_loader(cls: type[object]) -> LoadFn:
    # type[object], not type: mypy looks type's __new__ up on the metaclass (python/mypy#10100).
    def load(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:
        values = {name: ctx.decode(node[name], join_path(path, name))
                  for name in _BINARY_TREE_FIELDS}
        _check_binary_tree_state(cls, values, path)
        obj: Any = cls.__new__(cls)
        obj.__setstate__(tuple(values[name] for name in _BINARY_TREE_FIELDS))
        return obj

    return load


def _check_binary_tree_state(cls: type, v: dict[str, Any], path: str) -> None:
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


def _save_metric(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
    p, vec, mat = obj.__getstate__()
    return {"p": ctx.encode(p, join_path(path, "p")),
            "vec": ctx.encode(np.asarray(vec), join_path(path, "vec")),
            "mat": ctx.encode(np.asarray(mat), join_path(path, "mat"))}


def _metric_loader(cls: type[object]) -> LoadFn:
    def load(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:
        p = ctx.decode(node["p"], join_path(path, "p"))
        vec = ctx.decode(node["vec"], join_path(path, "vec"))
        mat = ctx.decode(node["mat"], join_path(path, "mat"))
        if type(p) not in (int, float) or not (
                isinstance(vec, np.ndarray) and vec.dtype == np.float64 and vec.ndim == 1
                and isinstance(mat, np.ndarray) and mat.dtype == np.float64 and mat.ndim == 2):
            raise InvariantError("a distance metric needs p, a float64 vec and mat", path)
        obj: Any = cls.__new__(cls)
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
    for cls, tag in ((KDTree, "sklearn.neighbors.KDTree"),
                     (BallTree, "sklearn.neighbors.BallTree")):
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


# -- packed tree ensembles --------------------------------------------------------------------
#
# An ensemble holds tens to thousands of trees (boosting stages of 15 nodes, forests of fully
# grown trees).  One manifest node per tree costs ~2.3 kB of manifest and ~1 ms to validate and
# build whatever the tree's size, and makes opening a 1000-tree forest parse and check
# megabytes (issue 13).  So a list or object array of same-class decision trees is written as
# one node, whatever the trees' sizes: the attributes all trees share once, the ones that
# differ as lists, each node column as one array covering every tree, addressed by per-tree row
# counts.  As in a single ``Tree``, the columns that hold placeholders at leaves are stored as
# their split rows then their leaf rows (``leaf_count`` per tree addresses them), so a forest
# compresses as well as tree by tree.  Loads build the trees a block of rows at a time (every
# check on each tree, the decoded block dropped once its trees copied it); a lazy load builds
# one tree from its own rows.  Files written before the split layout (small trees only, each
# column whole, no ``leaf_count``) load as before.

_PACKABLE_TAGS = ("sklearn.tree.DecisionTreeClassifier", "sklearn.tree.DecisionTreeRegressor",
                  "sklearn.tree.ExtraTreeClassifier", "sklearn.tree.ExtraTreeRegressor")
# Rows of a block decoded at once by an eager load: with ~80 bytes a row, a few MB held beside
# the trees being built (peak memory), and few enough blocks that per-block work is negligible.
# Half a 512 kB chunk of 8-byte values: a block's rows mostly lie in one decoded chunk and are
# read as views of it; two blocks in flight hold ~3 MB less than at 65,536 rows (the README
# forest's eager peak: 290 -> 287 MB, its model 285 MB).
_BLOCK_ROWS = 1 << 15
# Columns of packed trees up to this size are split into split and leaf rows at once when
# saving (one copy of a few MB); larger ones tree by tree as their section is written.
_EAGER_PART_BYTES = 8 << 20


def _same(a: Any, b: Any) -> bool:
    """Whether two attribute values are the same, bit for bit (so trees may share one node)."""
    if type(a) is not type(b):
        return False
    # Comparisons with b (Any) are Any to mypy; each operand here is a bool.
    if type(a) is np.ndarray:
        same: bool = (a.dtype == b.dtype and a.shape == b.shape and a.dtype.kind not in "OV"
                      and a.tobytes() == b.tobytes())
        return same
    if isinstance(a, np.generic):
        same = a.dtype == b.dtype and a.tobytes() == b.tobytes()
        return same
    if type(a) is float:
        same = np.float64(a).tobytes() == np.float64(b).tobytes()
        return same
    if a is None or type(a) in (int, str, bool):
        same = a == b
        return same
    return a is b


def _pack_states(arr: np.ndarray | list[Any], ctx: SaveContext) -> list[dict[str, Any]] | None:
    """The trees' states if ``arr`` (object array or list of trees) can be packed, else None."""
    from .sklearn import _state_of

    # Not a list: an ndarray (callers pass exactly one of the two).
    items = list(arr) if type(arr) is list else list(cast(np.ndarray, arr).reshape(-1))
    cls = plain_type(items[0])
    if (cls.__module__.partition("._")[0] != "sklearn.tree"
            or f"sklearn.tree.{cls.__name__}" not in _PACKABLE_TAGS
            or any(plain_type(t) is not cls or ctx.is_memoized(t) for t in items)):
        return None
    states = [_state_of(t) for t in items]
    keys = list(states[0])
    trees: list[Any] = [s.get("tree_") for s in states]  # checked to be Trees just below
    if any(list(s) != keys for s in states) or any(type(t) is not Tree for t in trees):
        return None
    first = trees[0]
    if any(t.n_features != first.n_features or t.n_outputs != first.n_outputs
           or not np.array_equal(t.n_classes, first.n_classes) or ctx.is_memoized(t)
           for t in trees):
        return None
    return states


def _save_packed_parts(ctx: SaveContext, columns: list[np.ndarray], leaves: list[np.ndarray],
                       path: str, group: str) -> dict[str, Any]:
    """:func:`_save_split_rows` for a pack: a small column's parts are gathered at once."""
    row_bytes = columns[0].dtype.itemsize * math.prod(columns[0].shape[1:])
    if sum(int(c.shape[0]) for c in columns) * row_bytes <= _EAGER_PART_BYTES:
        # Small ensembles (boosting stages): the rows picked at once, one source per part
        # instead of one derived source per tree (each made again by every pass of the writer).
        return _save_packed_parts_now(ctx, columns, leaves, path, group)
    return _save_split_rows(ctx, columns, leaves, path, group)


def _save_packed_parts_now(ctx: SaveContext, columns: list[np.ndarray],
                           leaves: list[np.ndarray], path: str, group: str) -> dict[str, Any]:
    """:func:`_save_packed_parts` for a small column: the same node, parts gathered now."""
    splits = np.concatenate([c[~mask] for c, mask in zip(columns, leaves, strict=True)])
    leaf_rows = np.concatenate([c[mask] for c, mask in zip(columns, leaves, strict=True)])
    return {
        "splits": ctx.array(splits, join_path(path, "splits"), group=f"{group}.splits",
                            by_member=True),
        "leaves": (ctx.fill_array(leaf_rows.reshape(-1)[:1], list(leaf_rows.shape))
                   if _is_constant(leaf_rows) else
                   ctx.array(leaf_rows, join_path(path, "leaves"), group=f"{group}.leaves",
                             by_member=True)),
    }


def _save_packed(arr: np.ndarray, ctx: SaveContext, path: str) -> dict[str, Any]:
    states = _pack_states(arr, ctx)
    assert states is not None  # the resolver checked
    is_list = type(arr) is list
    first = plain_type(arr[0] if is_list else arr.reshape(-1)[0])
    fields = list(states[0])
    shared, varying = {}, {}
    for name in fields:
        if name == "tree_":
            continue
        values = [s[name] for s in states]
        if all(_same(values[0], v) for v in values[1:]):
            shared[name] = ctx.encode(values[0], join_path(f"{path}[*]", name))
        else:
            varying[name] = [ctx.encode(v, join_path(f"{path}[{i}]", name))
                             for i, v in enumerate(values)]
    trees = [s["tree_"] for s in states]
    tree_states = [t.__getstate__() for t in trees]
    nodes = [st["nodes"] for st in tree_states]
    # One byte a node, kept until the sections are written (their rows are picked then).
    leaves = [n["left_child"] == -1 for n in nodes]
    where = join_path(path, "trees")
    columns = {
        name: (_save_packed_parts(ctx, [n[name] for n in nodes], leaves, join_path(where, name),
                                  f"tree.{name}")
               if name in _PARTITIONED else
               ctx.array_concat([n[name] for n in nodes], join_path(where, name),
                                group=f"tree.{name}",
                                hint="children" if name in _CHILD_FIELDS else None))
        for name in NODE_DTYPE.names
    }
    count = len(trees)
    return {
        "class": f"sklearn.tree.{first.__name__}",
        **({"container": "list"} if is_list else {}),
        "shape": [count] if is_list else [int(n) for n in arr.shape],
        "fields": fields,
        "shared": shared,
        "varying": varying,
        "trees": {
            "n_features": int(trees[0].n_features),
            "n_outputs": int(trees[0].n_outputs),
            "n_classes": ctx.array(np.asarray(trees[0].n_classes), join_path(where, "n_classes")),
            "node_count": ctx.array(np.array([t.node_count for t in trees], dtype=np.int64),
                                    join_path(where, "node_count")),
            "leaf_count": ctx.array(np.array([int(np.count_nonzero(m)) for m in leaves],
                                             dtype=np.int64), join_path(where, "leaf_count")),
            "max_depth": ctx.array(np.array([t.max_depth for t in trees], dtype=np.int64),
                                   join_path(where, "max_depth")),
            "nodes": columns,
            "values": _save_packed_parts(ctx, [st["values"] for st in tree_states], leaves,
                                         join_path(where, "values"), "tree.values"),
        },
    }


def _check_packed_column(column: Any, split: bool, dtype: str, tail: list[Any],
                         ctx: CheckContext, path: str) -> tuple[int, int]:
    """Rows of a packed column: ``(splits, leaves)`` when ``split``, else ``(rows, 0)``."""
    parts = column if split else {"": column}
    if split and (not isinstance(column, dict) or list(column) != ["splits", "leaves"]):
        raise ManifestError("expected {\"splits\": array, \"leaves\": array}", path)
    rows = []
    for key, arr in parts.items():
        where = join_path(path, key) if key else path
        check_array_node(arr, where, ctx)
        shape = arr.get("shape")
        if arr.get("dtype") != dtype or len(shape) != 1 + len(tail) or shape[1:] != tail:
            raise InvariantError(f"must be {dtype} of shape [rows, {tail}]", where)
        rows.append(shape[0])
    return (rows[0], rows[1]) if split else (rows[0], 0)


def _check_packed(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    from .sklearn import check_attribute_names

    tag = node["class"]
    if tag not in _PACKABLE_TAGS:
        raise ManifestError(f"packed trees must be one of {list(_PACKABLE_TAGS)}", path)
    shape = node["shape"]
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 2
            or any(type(n) is not int or n < 1 for n in shape)):
        raise ManifestError("packed trees need a shape of one or two positive ints", path)
    if node.get("container", "ndarray") not in ("list", "ndarray") or (
            node.get("container") == "list" and len(shape) != 1):
        raise ManifestError("packed trees: container is 'list' (one axis) or 'ndarray'", path)
    count = int(np.prod(shape))
    if count > ctx.limits.max_objects:
        raise LimitError(f"{count} packed trees exceed max_objects", path)
    fields, shared, varying = node["fields"], node["shared"], node["varying"]
    if (not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)
            or len(set(fields)) != len(fields) or not isinstance(shared, dict)
            or not isinstance(varying, dict) or set(shared) & set(varying)
            or set(fields) != set(shared) | set(varying) | {"tree_"}):
        raise ManifestError("packed trees: fields must be the shared, varying and tree_ names",
                            path)
    if any(not isinstance(v, list) or len(v) != count for v in varying.values()):
        raise ManifestError(f"packed trees: each varying field needs {count} values", path)
    handler = ctx.registry.for_tag(tag)
    if handler is None or handler.cls is None:
        raise ManifestError(f"packed trees: unknown class {quote(tag)}", path)
    check_attribute_names(handler.cls, fields, path)
    trees = node["trees"]
    keys = {"n_features", "n_outputs", "n_classes", "node_count", "max_depth", "nodes", "values"}
    # leaf_count: the split layout (every tree size); without it, the earlier whole columns.
    split = isinstance(trees, dict) and "leaf_count" in trees
    if not isinstance(trees, dict) or set(trees) != keys | ({"leaf_count"} if split else set()):
        raise ManifestError(f"packed trees: 'trees' has exactly {sorted(keys)} and optionally "
                            "'leaf_count'", path)
    where = join_path(path, "trees")
    _int_field(trees, "n_features", where, 1)
    n_outputs = _int_field(trees, "n_outputs", where, 1)
    for name in ("node_count", "max_depth", "leaf_count") if split else ("node_count",
                                                                         "max_depth"):
        check_array_node(trees[name], join_path(where, name), ctx)
        if trees[name].get("dtype") != "<i8" or trees[name].get("shape") != [count]:
            raise InvariantError(f"{name} must be int64 of length {count}", where)
    check_array_node(trees["n_classes"], join_path(where, "n_classes"), ctx)
    if (trees["n_classes"].get("shape") != [n_outputs]
            or trees["n_classes"].get("dtype") not in ("<i8", "<u8")):
        raise InvariantError("n_classes must be n_outputs integers", where)
    columns = trees["nodes"]
    if not isinstance(columns, dict) or list(columns) != list(NODE_DTYPE.names):
        raise ManifestError(f"tree nodes must have the columns {list(NODE_DTYPE.names)}", where)
    # Every column covers the same nodes: whole ones all rows, split ones the same split rows
    # and the same leaf rows, which add up to all rows.
    whole: set[int] = set()
    parts: set[tuple[int, int]] = set()
    for name, column in columns.items():
        is_split = split and name in _PARTITIONED
        rows = _check_packed_column(column, is_split, NODE_DTYPE.fields[name][0].str, [], ctx,
                                    join_path(where, name))
        if is_split:
            parts.add(rows)
        else:
            whole.add(rows[0])
    values = trees["values"]
    sample = values.get("splits") if split and isinstance(values, dict) else values
    vshape = sample.get("shape") if isinstance(sample, dict) else None
    if not isinstance(vshape, list) or len(vshape) != 3 or vshape[1] != n_outputs:
        raise InvariantError("values must be float64 (nodes, n_outputs, n_classes)", where)
    rows = _check_packed_column(values, split, "<f8", vshape[1:], ctx, join_path(where, "values"))
    if split:
        parts.add(rows)
    else:
        whole.add(rows[0])
    if len(whole) != 1 or len(parts) > 1 or (parts and sum(next(iter(parts))) not in whole):
        raise InvariantError("node columns must cover the same nodes", where)


class _PackedTrees:
    """Builds the trees of a packed node, a block of consecutive trees at a time.

    Each block's rows are decoded into one record array (split columns interleaved back into
    node order), every tree of it checked, then built; its trees copy their rows
    (``Tree.__setstate__``), so the block is dropped after.  An eager load walks every block;
    a lazy member is a block of one tree.  The pack's counts are checked first.
    """

    def __init__(self, node: dict[str, Any], ctx: LoadContext, path: str) -> None:
        self.node, self.path = node, path
        # _check_packed found this tag's handler, with a class.
        handler = cast(Handler, ctx.registry.for_tag(node["class"]))
        self.cls = cast("type[object]", handler.cls)
        trees = node["trees"]
        self.where = where = join_path(path, "trees")
        self.counts = ctx.array(trees["node_count"], join_path(where, "node_count"))
        self.depths = ctx.array(trees["max_depth"], join_path(where, "max_depth"))
        total = trees["nodes"]["left_child"]["shape"][0]  # one length for all, checked
        if np.any(self.counts < 1) or int(self.counts.sum()) != total:
            raise InvariantError(f"node counts must be positive and add up to {total}", where)
        if int(self.counts.max()) > ctx.limits.max_tree_nodes:  # as for a single Tree
            raise LimitError(f"a tree of {int(self.counts.max())} nodes exceeds max_tree_nodes",
                             where)
        self.ends = np.cumsum(self.counts)
        self.leaf_counts: np.ndarray | None = None
        self.leaf_ends: np.ndarray | None = None
        if "leaf_count" in trees:
            leaf_counts = ctx.array(trees["leaf_count"], join_path(where, "leaf_count"))
            n_leaves = trees["values"]["leaves"]["shape"][0]  # every split column's, checked
            if (np.any(leaf_counts < 1) or np.any(leaf_counts > self.counts)
                    or int(leaf_counts.sum()) != n_leaves):
                raise InvariantError("leaf counts must be positive, at most the node counts, "
                                     f"and add up to {n_leaves}", where)
            self.leaf_counts, self.leaf_ends = leaf_counts, np.cumsum(leaf_counts)
        self.n_classes = ctx.array(trees["n_classes"], join_path(where, "n_classes"))
        values = trees["values"]
        vshape = (values["splits"] if self.leaf_counts is not None else values)["shape"]
        if np.any(self.n_classes < 1) or vshape[2] != int(self.n_classes.max()):
            raise InvariantError("values' last dimension must be the largest n_classes", where)
        self.version = ctx.writer.get("scikit-learn")
        self._tree_args = (trees["n_features"], self.n_classes.astype(np.intp),
                           trees["n_outputs"])
        self._plan_state()

    def _plan_state(self) -> None:
        """A member's state in the fields' order, as a template: shared scalars (they stand for
        themselves, as in ``LoadContext.decode``) filled once for every member; the tree,
        varying values and shared containers (decoded per member: each member owns its
        objects) filled by :meth:`_estimator`."""
        node = self.node
        shared = node["shared"]
        template: dict[str, Any] = {}
        self._shared_containers: list[str] = []
        self._varying: list[str] = []
        for name in node["fields"]:
            template[name] = None
            if name == "tree_":
                continue
            if name not in shared:
                self._varying.append(name)
            elif isinstance(shared[name], (list, dict)):
                self._shared_containers.append(name)
            else:
                template[name] = shared[name]
        if self.version is not None:
            template["_sklearn_version"] = self.version
        self._template = template

    def nbytes(self, i: int) -> int:
        row: int = NODE_DTYPE.itemsize + 8 * int(self.n_classes.max()) * len(self.n_classes)
        return int(self.counts[i]) * row

    def _span(self, a: int, b: int) -> tuple[int, int]:
        """Rows of trees ``[a, b)`` in the whole columns."""
        return int(self.ends[a] - self.counts[a]), int(self.ends[b - 1])

    def _leaf_span(self, a: int, b: int) -> tuple[int, int]:
        """Rows of trees ``[a, b)`` in the leaf parts (the split layout only)."""
        leaf_counts, leaf_ends = cast(np.ndarray, self.leaf_counts), cast(np.ndarray,
                                                                           self.leaf_ends)
        return int(leaf_ends[a] - leaf_counts[a]), int(leaf_ends[b - 1])

    def _block(self, ctx: LoadContext, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Node records and values of trees ``[a, b)``, decoded (in node order)."""
        trees, where = self.node["trees"], self.where
        lo, hi = self._span(a, b)
        buffers = self._buffers(ctx)
        records = buffers.empty(hi - lo, NODE_DTYPE, slack=True)
        columns = trees["nodes"]
        vnode = trees["values"]
        if self.leaf_counts is None:  # the earlier layout: every column whole
            for name in NODE_DTYPE.names:
                ctx.array_rows(columns[name], lo, hi, join_path(where, name), out=records[name])
            values = np.ascontiguousarray(ctx.array_rows(vnode, lo, hi, join_path(where, "values")))
            return records, values
        # Every column is read first (views of the decoded chunks where the rows lie in one),
        # then the records are written a tile of rows at a time (assemble_records): one pass
        # over them, not one per field.
        sources: dict[str, Any] = {
            name: ctx.array_rows(columns[name], lo, hi, join_path(where, name), view=True)
            for name in NODE_DTYPE.names if name not in _PARTITIONED}
        leaf_counts = self.leaf_counts
        is_leaf = sources["left_child"] == -1
        found = np.add.reduceat(is_leaf, (self.ends[a:b] - self.counts[a:b]) - lo,
                                dtype=np.int64)
        if not np.array_equal(found, leaf_counts[a:b]):
            i = a + int(np.flatnonzero(found != leaf_counts[a:b])[0])
            raise InvariantError(f"tree {i} has {found[i - a]} leaves, its leaf_count says "
                                 f"{leaf_counts[i]}", where)
        l_lo, l_hi = self._leaf_span(a, b)
        span = (lo - l_lo, hi - l_hi, l_lo, l_hi)  # split rows, then leaf rows, of the block
        for name in _PARTITIONED:
            sources[name] = self._parts(ctx, columns[name], span, join_path(where, name))
        _arrays.assemble_records(records, sources, is_leaf)
        values = buffers.empty((hi - lo, *vnode["splits"]["shape"][1:]), np.float64, slack=True)
        value_parts = self._parts(ctx, vnode, span, join_path(where, "values"))
        _arrays.scatter_rows(*value_parts, is_leaf, values)
        # Rows that lay across two chunks were copied (writable; views of a chunk are not):
        # their buffers serve the next block's.
        for part in (*sources.values(), *value_parts):
            for arr in part if isinstance(part, tuple) else (part,):
                if arr.flags.writeable:
                    buffers.give(arr)
        del sources, value_parts
        return records, values

    @staticmethod
    def _buffers(ctx: LoadContext) -> BufferPool:
        """Where a block's records and values come from and go back to: the store's pool
        (the trees copy their rows, so the next block reuses the memory)."""
        return ctx.store.buffers if ctx.store is not None else BufferPool(0)

    @classmethod
    def _give_back(cls, ctx: LoadContext, *arrays: np.ndarray) -> None:
        """A block's records and values, once its trees have copied them."""
        buffers = cls._buffers(ctx)
        for arr in arrays:
            buffers.give(arr)

    @staticmethod
    def _parts(ctx: LoadContext, parts: dict[str, Any], span: tuple[int, int, int, int],
               path: str) -> tuple[np.ndarray, np.ndarray]:
        """The split rows and the leaf rows of a block, to be read once, right away."""
        s_lo, s_hi, l_lo, l_hi = span
        return (ctx.array_rows(parts["splits"], s_lo, s_hi, join_path(path, "splits"), view=True),
                ctx.array_rows(parts["leaves"], l_lo, l_hi, join_path(path, "leaves"), view=True))

    def _release(self, ctx: LoadContext, a: int, b: int) -> None:
        """Level 0: the block's mapped pages leave the process once its trees copied them."""
        if not ctx.mmap:
            return
        trees = self.node["trees"]
        lo, hi = self._span(a, b)
        nodes = [*trees["nodes"].values(), trees["values"]]
        if self.leaf_counts is None:
            for column in nodes:
                ctx.release_rows(column, lo, hi)
            return
        l_lo, l_hi = self._leaf_span(a, b)
        for column in nodes:
            if "$type" in column:
                ctx.release_rows(column, lo, hi)
            else:
                ctx.release_rows(column["splits"], lo - l_lo, hi - l_hi)
                ctx.release_rows(column["leaves"], l_lo, l_hi)

    def _check_tree(self, i: int, nodes: np.ndarray, at: str) -> None:
        """The structure checks of tree ``i`` on its rows (precise errors)."""
        depth = _checked_depth(nodes, self.node["trees"]["n_features"], join_path(at, "tree_"))
        if depth != self.depths[i]:
            raise InvariantError(f"max_depth is {self.depths[i]} but the tree is {depth} deep",
                                 join_path(at, "tree_"))

    def build(self, i: int, ctx: LoadContext, at: str) -> Any:
        """Member ``i`` alone, from its own rows (a lazy load's member, or one ``get``)."""
        from .invariants import check_fitted

        records, values = self._block(ctx, i, i + 1)
        self._check_tree(i, records, at)
        estimator = self._estimator(i, ctx, at, records, int(self.depths[i]), values)
        self._give_back(ctx, records, values)
        check_fitted(estimator, at)
        return estimator

    def _estimator(self, i: int, ctx: LoadContext, at: str, nodes: np.ndarray, depth: int,
                   values: np.ndarray) -> Any:
        """Member ``i`` built from its checked nodes (its fitted checks are the caller's)."""
        tree = Tree(*self._tree_args)
        tree.__setstate__({"max_depth": depth, "node_count": nodes.shape[0], "nodes": nodes,
                           "values": values})
        state = self._template.copy()
        state["tree_"] = tree
        node = self.node
        for name in self._shared_containers:
            state[name] = ctx.decode(node["shared"][name], join_path(at, name))
        varying = node["varying"]
        for name in self._varying:
            value = varying[name][i]
            state[name] = (ctx.decode(value, join_path(at, name))
                           if isinstance(value, (list, dict)) else value)
        estimator: Any = self.cls.__new__(self.cls)
        estimator.__setstate__(state)
        return estimator

    def _blocks(self) -> list[tuple[int, int]]:
        """Consecutive trees in blocks of about ``_BLOCK_ROWS`` rows (one tree at least)."""
        blocks, a, rows = [], 0, 0
        for i, n in enumerate(self.counts.tolist()):
            if rows and rows + n > _BLOCK_ROWS:
                blocks.append((a, i))
                a, rows = i, 0
            rows += n
        blocks.append((a, len(self.counts)))
        return blocks

    def _checked_block(self, ctx: LoadContext, a: int, b: int
                       ) -> tuple[np.ndarray, np.ndarray, bool]:
        """:meth:`_block` and whether all its trees pass the one-pass structure checks."""
        records, values = self._block(ctx, a, b)
        passed = packed_trees_pass(records, self.counts[a:b], self.depths[a:b],
                                   self.node["trees"]["n_features"])
        return records, values, passed

    def build_all(self, ctx: LoadContext, paths: list[str]) -> list[Any] | None:
        """Every member of an eager load, a block at a time: one structure check over every
        tree of the block (``check_binary_forest``: the per-tree kernel on each tree's rows,
        depths found in the same walk); where a pass refuses, the tree by tree checks
        raise the precise error.  Then the fitted checks of the members at once
        (``check_fitted_alike``), else member by member.

        One thread does it all, block after block; the codec's threads decode the chunks ahead
        (zstd releases the GIL).  Handing the next block's assembly and checks to a second
        thread while this one builds trees was slower (the load holds the GIL for most of its
        work: ``Tree.__setstate__`` copies each tree's rows under it, and the reads between
        kernels are Python), and held a second block: 0.36-0.45 s against 0.41-0.48 s for the
        300-tree forest, same run.  (Returning None makes the load build member by member,
        :meth:`build`: tests compare the two.)
        """
        from .invariants import check_fitted, check_fitted_alike

        depth_list = self.depths.tolist()
        members: list[Any] = []
        for a, b in self._blocks():
            records, values, passed = self._checked_block(ctx, a, b)
            base = int(self.ends[a] - self.counts[a])
            bounds = [0, *(self.ends[a:b] - base).tolist()]
            if not passed:
                for i in range(a, b):
                    self._check_tree(i, records[bounds[i - a]:bounds[i - a + 1]], paths[i])
                raise InvariantError("the trees fail their checks",  # pragma: no cover
                                     self.where)
            for i in range(a, b):
                rows = slice(bounds[i - a], bounds[i - a + 1])
                members.append(self._estimator(i, ctx, paths[i], records[rows],
                                               depth_list[i], values[rows]))
            self._give_back(ctx, records, values)
            del records, values
            self._release(ctx, a, b)
        if not check_fitted_alike(members, paths.__getitem__):
            for member, at in zip(members, paths, strict=True):
                check_fitted(member, at)
        return members


def packed_trees_pass(records: np.ndarray, counts: np.ndarray, depths: np.ndarray,
                      n_features: int) -> bool:
    """True exactly when every tree of a packed node passes the per-tree checks of
    :meth:`_PackedTrees.build` (``_checked_depth``): ``check_binary_tree``'s rules on its rows,
    and the depth found by that walk equal to its declared depth.

    ``records`` holds the nodes of every tree (``NODE_DTYPE``), concatenated, ``counts[i]`` of
    tree ``i`` (positive, adding up to the records, as the load checks first), child indices
    local to the tree; ``depths`` the declared depths.  The same kernels walk each tree's
    rows, in one call (``check_binary_forest``, which finds the depths in the same walk).
    """
    if counts.shape != depths.shape or counts.shape[0] == 0:
        return False
    offsets = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    found = np.empty(counts.shape[0], dtype=np.int64)
    try:
        code = _arrays.check_binary_forest(records["left_child"], records["right_child"],
                                           records["feature"], offsets, n_features,
                                           depths=found)[0]
    except ArrayError:  # arguments the kernels refuse: the per-tree checks decide
        return False
    return not code and bool(np.array_equal(found, depths))


def _packed_container(node: dict[str, Any]) -> tuple[Any, Any]:
    """The container a packed node restores (a list, or an object array) and its flat view."""
    if node.get("container") == "list":
        result: Any = [None] * node["shape"][0]
        return result, result
    result = np.empty(tuple(node["shape"]), dtype=object)
    return result, result.reshape(-1)


def _load_packed(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:
    result, flat = _packed_container(node)
    ctx.register(node, result)
    packed = _PackedTrees(node, ctx, path)
    paths = [f"{path}[{i}]" for i in range(len(flat))]
    members = packed.build_all(ctx, paths)
    for i, at in enumerate(paths):
        flat[i] = members[i] if members is not None else packed.build(i, ctx, at)
    return result


def _unpack_trees(node: dict[str, Any], ctx: LoadContext,
                  path: str) -> tuple[Any, list[PackedMember]]:
    result, flat = _packed_container(node)
    packed = _PackedTrees(node, ctx, path)
    members = []
    for i in range(len(flat)):
        at = f"{path}[{i}]"  # flat index, as for any object array
        # The ignores: lambdas binding loop variables as defaults (python/mypy#15459).
        members.append(PackedMember(
            at, node["class"], packed.nbytes(i),
            place=lambda obj, i=i: flat.__setitem__(i, obj),  # type: ignore[misc]
            build=lambda c, i=i, at=at: packed.build(i, c, at)))  # type: ignore[misc]
    return result, members


PACKED_TREES = Handler("sklearn.tree.packed", _save_packed, _load_packed,
                       frozenset({"class", "container", "shape", "fields", "shared", "varying",
                                  "trees"}),
                       frozenset({"class", "shape", "fields", "shared", "varying", "trees"}),
                       check=_check_packed, unpack=_unpack_trees)


def register_packed(registry: Registry) -> None:
    """Packed tree ensembles (tag ``sklearn.tree.packed``)."""
    if PACKED_TREES.tag not in registry.by_tag:
        registry.add(PACKED_TREES)


def resolve_packed(arr: Any, ctx: SaveContext) -> Handler | None:
    """The packed-trees handler if ``arr`` (an object array, or a forest's list) holds trees of
    one class to pack."""
    if ((type(arr) is list or (type(arr) is np.ndarray and arr.ndim <= 2))
            and _pack_states(arr, ctx) is not None):
        register_packed(ctx.registry)
        return PACKED_TREES
    return None


# -- packed HistGradientBoosting predictors ---------------------------------------------------
#
# ``_predictors`` is a list (iterations) of lists (one TreePredictor per class) of small trees;
# as for boosting stages, one node per predictor costs far more than its data.  The whole list is
# written as one node: the record columns and the bitset rows of every predictor, concatenated,
# with per-predictor row counts.

_BITSETS = ("binned_left_cat_bitsets", "raw_left_cat_bitsets")
_PREDICTOR_FIELDS = ("nodes", *_BITSETS)


def _predictor_class() -> type[object]:
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    cls: type[object] = TreePredictor  # a class of an untyped module
    return cls


def _predictor_grid(obj: Any, ctx: SaveContext) -> list[list[Any]] | None:
    """The list of lists of TreePredictor if it can be packed, else None."""
    if type(obj) is not list or not obj or type(obj[0]) is not list or not obj[0]:
        return None
    cls = _predictor_class()
    width = len(obj[0])
    dtype = None
    tails: dict[str, tuple[int, ...]] = {}
    for row in obj:
        if type(row) is not list or len(row) != width or ctx.is_memoized(row):
            return None
        for p in row:
            # plain_type: members of a lazily loaded model are proxies (built by __getstate__).
            if plain_type(p) is not cls or ctx.is_memoized(p):
                return None
            state = p.__getstate__()
            if not isinstance(state, dict) or tuple(state) != _PREDICTOR_FIELDS:
                return None
            nodes = state["nodes"]
            dtype = nodes.dtype if dtype is None else dtype
            if (type(nodes) is not np.ndarray or nodes.dtype != dtype or nodes.ndim != 1
                    or any(type(state[b]) is not np.ndarray or state[b].ndim != 2
                           or state[b].dtype != np.uint32
                           or tails.setdefault(b, state[b].shape[1:]) != state[b].shape[1:]
                           for b in _BITSETS)):
                return None
    return obj


def _save_predictors(obj: list[list[Any]], ctx: SaveContext, path: str) -> dict[str, Any]:
    predictors = [p for row in obj for p in row]
    dtype = predictors[0].nodes.dtype
    where = join_path(path, "nodes")
    fields = {}
    for name in dtype.names:
        fields[name] = ctx.array_concat([p.nodes[name] for p in predictors],
                                        join_path(where, name), group=f"fields.{name}",
                                        hint="children" if name in ("left", "right") else None)
    counts = {"nodes": [p.nodes.shape[0] for p in predictors]}
    bitsets = {}
    for name in _BITSETS:
        counts[name] = [getattr(p, name).shape[0] for p in predictors]
        bitsets[name] = ctx.array_concat([getattr(p, name) for p in predictors],
                                         join_path(path, name), group=f"predictor.{name}")
    from .numpy_ import record_spec

    return {
        "shape": [len(obj), len(obj[0])],
        "counts": {k: ctx.array(np.array(v, dtype=np.int64), join_path(path, f"counts.{k}"))
                   for k, v in counts.items()},
        "nodes": {"dtype": record_spec(dtype, path), "fields": fields},
        **bitsets,
    }


def _check_predictors(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    from .numpy_ import record_dtype

    shape = node["shape"]
    if (not isinstance(shape, list) or len(shape) != 2
            or any(type(n) is not int or n < 1 for n in shape)):
        raise ManifestError("packed predictors need a shape of two positive ints", path)
    count = shape[0] * shape[1]
    if count > ctx.limits.max_objects:
        raise LimitError(f"{count} packed predictors exceed max_objects", path)
    counts = node["counts"]
    if not isinstance(counts, dict) or list(counts) != list(_PREDICTOR_FIELDS):
        raise ManifestError(f"counts must list {list(_PREDICTOR_FIELDS)}", path)
    for name, arr in counts.items():
        check_array_node(arr, join_path(path, f"counts.{name}"), ctx)
        if arr.get("dtype") != "<i8" or arr.get("shape") != [count]:
            raise InvariantError(f"counts.{name} must be int64 of length {count}", path)
    nodes = node["nodes"]
    if not isinstance(nodes, dict) or set(nodes) != {"dtype", "fields"}:
        raise ManifestError("nodes has exactly 'dtype' and 'fields'", path)
    dtype = record_dtype(nodes["dtype"], join_path(path, "nodes"))
    # record_dtype built a structured dtype (from a non-empty list of names).
    dtype_fields = cast("MappingProxyType[str, RecordField]", dtype.fields)
    fields = nodes["fields"]
    if not isinstance(fields, dict) or list(fields) != list(cast("tuple[str, ...]", dtype.names)):
        raise ManifestError("nodes.fields must list the record fields in order", path)
    length = None
    for name, arr in fields.items():
        where = join_path(path, f"nodes.{name}")
        check_array_node(arr, where, ctx)
        if arr.get("dtype") != dtype_fields[name][0].str or len(arr.get("shape")) != 1 or (
                length is not None and arr["shape"][0] != length):
            raise InvariantError("record columns must be 1-D, of one length and the field dtype",
                                 where)
        length = arr["shape"][0]
    for name in _BITSETS:
        check_array_node(node[name], join_path(path, name), ctx)
        if node[name].get("dtype") != "<u4" or node[name].get("shape", [0, 0])[1:] != [8]:
            raise InvariantError(f"{name} must be uint32 rows of 8", path)


class _PackedPredictors:
    """Builds the predictors of a packed node one at a time (see :class:`_PackedTrees`)."""

    def __init__(self, node: dict[str, Any], ctx: LoadContext, path: str, whole: bool) -> None:
        from .numpy_ import record_dtype

        self.node, self.path = node, path
        self.width = node["shape"][1]
        self.counts = {name: ctx.array(arr, join_path(path, f"counts.{name}"))
                       for name, arr in node["counts"].items()}
        self.dtype = record_dtype(node["nodes"]["dtype"], path)
        fields = node["nodes"]["fields"]
        self.arrays = {f"nodes.{name}": arr for name, arr in fields.items()}
        self.arrays.update((name, node[name]) for name in _BITSETS)
        self.ends = {}
        names = cast("tuple[str, ...]", self.dtype.names)  # a structured dtype, see above
        for name, count in self.counts.items():
            key = f"nodes.{names[0]}" if name == "nodes" else name
            total = self.arrays[key]["shape"][0]
            if np.any(count < 0) or int(count.sum()) != total:
                raise InvariantError(
                    f"counts.{name} must be non-negative and add up to {total}", path)
            self.ends[name] = np.cumsum(count)
        self.records: np.ndarray | None = None
        self.whole: dict[str, np.ndarray] | None = None
        if whole:
            from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

            # Every predictor's nodes as one record array, filled once (each column dropped
            # once copied: decoding straight into a strided field would go through the chunk
            # cache).  scikit-learn's own dtype object where the file's equals it: the
            # predictors' dtype checks (TreePredictor.__setstate__, the member rule) then
            # compare by identity.
            dtype = PREDICTOR_RECORD_DTYPE if self.dtype == PREDICTOR_RECORD_DTYPE else self.dtype
            self.records = np.zeros(self.arrays[f"nodes.{names[0]}"]["shape"][0], dtype=dtype)
            self.whole = {}
            for key, arr in self.arrays.items():
                if key.startswith("nodes."):
                    field = self.records[key[len("nodes."):]]
                    field[...] = ctx.array(arr, join_path(path, key))
                    self.whole[key] = field
                else:
                    self.whole[key] = ctx.array(arr, join_path(path, key))

    def member_path(self, i: int) -> str:
        return f"{self.path}[{i // self.width}][{i % self.width}]"

    def nbytes(self, i: int) -> int:
        return (int(self.counts["nodes"][i]) * self.dtype.itemsize
                + sum(int(self.counts[name][i]) * 32 for name in _BITSETS))

    def _rows(self, ctx: LoadContext, key: str, count: str, i: int) -> np.ndarray:
        start, stop = int(self.ends[count][i] - self.counts[count][i]), int(self.ends[count][i])
        if self.whole is not None:
            return self.whole[key][start:stop]
        return ctx.array_rows(self.arrays[key], start, stop, join_path(self.path, key))

    def build(self, i: int, ctx: LoadContext) -> Any:
        from .invariants import check_state

        cls = _predictor_class()
        n = int(self.counts["nodes"][i])
        records = np.zeros(n, dtype=self.dtype)
        for name in cast("tuple[str, ...]", self.dtype.names):  # a structured dtype
            records[name] = self._rows(ctx, f"nodes.{name}", "nodes", i)
        state: dict[str, Any] = {"nodes": records}
        for name in _BITSETS:
            state[name] = np.ascontiguousarray(self._rows(ctx, name, name, i))
        check_state(cls, state, self.member_path(i))
        predictor: Any = cls.__new__(cls)
        predictor.__setstate__(state)
        return predictor

    def build_all(self) -> list[Any] | None:
        """Every predictor, from one record array checked in one pass, or None where that pass
        refuses (then :meth:`build`, predictor by predictor, raises the precise error)."""
        from sklearn.ensemble._hist_gradient_boosting.common import (
            PREDICTOR_RECORD_DTYPE,
            X_BITSET_INNER_DTYPE,
        )

        whole, records = self.whole, self.records
        if whole is None or records is None or records.dtype is not PREDICTOR_RECORD_DTYPE:
            return None
        bitsets = {name: whole[name] for name in _BITSETS}
        if any(b.ndim != 2 or b.dtype != X_BITSET_INNER_DTYPE or b.shape[1] != 8
               for b in bitsets.values()):
            return None
        bitsets = {name: np.ascontiguousarray(b) for name, b in bitsets.items()}
        counts = self.counts
        if not packed_predictors_pass(records, counts["nodes"], counts[_BITSETS[0]],
                                      counts[_BITSETS[1]]):
            return None
        cls = _predictor_class()
        new = cls.__new__
        node_ends = self.ends["nodes"].tolist()
        ends = [self.ends[name].tolist() for name in _BITSETS]
        binned, raw = bitsets[_BITSETS[0]], bitsets[_BITSETS[1]]
        result: list[Any] = []
        start, b_start, r_start = 0, 0, 0
        for stop, b_stop, r_stop in zip(node_ends, *ends, strict=True):
            predictor: Any = new(cls)
            predictor.__setstate__({"nodes": records[start:stop],
                                    _BITSETS[0]: binned[b_start:b_stop],
                                    _BITSETS[1]: raw[r_start:r_stop]})
            result.append(predictor)
            start, b_start, r_start = stop, b_stop, r_stop
        return result


def packed_predictors_pass(records: np.ndarray, node_counts: np.ndarray,
                           binned_rows: np.ndarray, raw_rows: np.ndarray) -> bool:
    """True exactly when every predictor of a packed node passes the per-predictor state check
    on its nodes and bitset row counts.

    ``records`` holds the nodes of every predictor (``PREDICTOR_RECORD_DTYPE``), concatenated
    (``node_counts`` of each, child indices local to the predictor); ``binned_rows`` and
    ``raw_rows`` count each predictor's bitset rows.  One call instead of one check each: the
    walk of ``check_hist_predictor`` on every predictor's rows (``check_hist_forest``: children
    in range, every node reached once from the root, features in ``[0, 2**62)``), then every
    internal categorical node's ``bitset_idx`` below both of its predictor's bitset row counts,
    as ``_check_tree_predictor`` (``invariants/state.py``) requires of each predictor; the
    caller checks the rest of that check (dtypes, bitset shapes) for the whole arrays.  Where
    it refuses, the load checks predictor by predictor, which raises the precise error.
    """
    from .invariants.state import _ANY_FEATURE

    n_pred = node_counts.shape[0]
    total = records.shape[0]
    if (n_pred == 0 or binned_rows.shape[0] != n_pred or raw_rows.shape[0] != n_pred
            or int(node_counts.min()) < 1 or int(node_counts.sum()) != total):
        return False
    offsets = np.zeros(n_pred + 1, dtype=np.int64)
    np.cumsum(node_counts, out=offsets[1:])
    try:
        code = _arrays.check_hist_forest(records["left"], records["right"], records["is_leaf"],
                                         records["feature_idx"], offsets, _ANY_FEATURE)[0]
    except ArrayError:  # arguments the kernel refuses: the per-predictor checks decide
        return False
    if code:
        return False
    categorical = (records["is_leaf"] == 0) & (records["is_categorical"] != 0)
    if categorical.any():
        owner = np.repeat(np.arange(n_pred), node_counts)[categorical]
        rows = np.minimum(binned_rows, raw_rows)[owner]
        if bool(np.any(records["bitset_idx"][categorical].astype(np.int64) >= rows)):
            return False
    return True


def _load_predictors(node: dict[str, Any], ctx: LoadContext, path: str) -> list[list[Any]]:
    packed = _PackedPredictors(node, ctx, path, whole=True)
    result: list[list[Any]] = []
    ctx.register(node, result)
    n_rows, width = node["shape"]
    fast = packed.build_all()
    if fast is not None:
        result.extend(fast[r * width:(r + 1) * width] for r in range(n_rows))
        return result
    for r in range(n_rows):
        result.append([packed.build(r * width + c, ctx) for c in range(width)])
    return result


def _unpack_predictors(node: dict[str, Any], ctx: LoadContext, path: str
                       ) -> tuple[Any, list[PackedMember]]:
    packed = _PackedPredictors(node, ctx, path, whole=False)
    n_rows, width = node["shape"]
    result: list[list[Any]] = [[None] * width for _ in range(n_rows)]
    tag = f"{_predictor_class().__module__}.{_predictor_class().__name__}"
    # The ignores: lambdas binding loop variables as defaults (python/mypy#15459).
    members = [
        PackedMember(packed.member_path(i), tag, packed.nbytes(i),
                     place=lambda obj, row=result[i // width], c=i % width: row.__setitem__(c, obj),  # type: ignore[misc]
                     build=lambda c, i=i: packed.build(i, c))  # type: ignore[misc]
        for i in range(n_rows * width)]
    return result, members


_PREDICTOR_KEYS = frozenset({"shape", "counts", "nodes", *_BITSETS})
PACKED_PREDICTORS = Handler("sklearn.hist_gradient_boosting.predictors", _save_predictors,
                            _load_predictors, _PREDICTOR_KEYS, _PREDICTOR_KEYS,
                            check=_check_predictors, unpack=_unpack_predictors)


def register_packed_predictors(registry: Registry) -> None:
    """Packed HistGradientBoosting predictors (``sklearn.hist_gradient_boosting.predictors``)."""
    if PACKED_PREDICTORS.tag not in registry.by_tag:
        registry.add(PACKED_PREDICTORS)


def resolve_packed_predictors(obj: Any, ctx: SaveContext) -> Handler | None:
    """The packed-predictors handler if ``obj`` is HistGradientBoosting's ``_predictors``."""
    if _predictor_grid(obj, ctx) is not None:
        register_packed_predictors(ctx.registry)
        return PACKED_PREDICTORS
    return None
