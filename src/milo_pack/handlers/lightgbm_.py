"""LightGBM boosters: the text model's header readable, its trees as packed columns.

LightGBM reads models only as text (``LGBM_BoosterLoadModelFromString``), so saving parses
``model_to_string()`` into columns (``split_feature``, ``threshold``, ``leaf_value``... of every
tree one after another) and loading writes a text model back from the validated columns.

Numbers are parsed and written by orjson (a C/Rust JSON library: ~30x faster than Python's
``float``/``%``-formatting, which spent 90% of a load formatting 180,000 numbers one at a
time).  Both directions are exact: parsing is correctly rounded, as is LightGBM's own parser,
and each float is written as the shortest decimal that reads back as the same value (a double,
or for the ``%g`` columns stored as float32, a float32 whose shortest decimal is the 6-digit
number LightGBM wrote, checked per column when saving).  So LightGBM gets exactly the doubles it
would have read from its own text, and ``model_to_string()`` of a loaded booster equals the
original's, although the text it was fed spells some numbers differently (``0.1`` where
LightGBM writes ``0.10000000000000001``).

Loading validates every tree in one pass of the Cython validators and derives every header
field that sizes a buffer: ``num_class`` and ``num_tree_per_iteration`` against the tree count,
the objective's ``num_class``, ``max_feature_idx`` from the feature names (and feature infos,
monotone constraints), ``tree_sizes`` from the text it writes.  Thread counts of the wrapper
and of the booster's parameters are bounded.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from .. import _arrays
from ..engine import CheckContext, LoadContext, SaveContext, join_path
from ..errors import InvariantError, ManifestError, UnsupportedTypeError, quote
from ..registry import Handler, Registry
from .boosters import (
    Columns,
    check_columns,
    check_plain,
    check_thread_entries,
    check_threads,
    load_plain,
    save_columns,
    save_plain,
    tree_error,
    wrapper_handler,
)

# Per-tree lines in LightGBM's order: name -> (dtype, format, length rule).  "%.17g" columns
# are exact doubles; "%g" columns are printed with 6 digits and may be stored as float32.
INTERNAL, LEAF, LEAF_WEIGHT, CAT, CAT_WORDS, LINEAR_FEATURES = range(6)
COLUMNS: dict[str, tuple[str, str, int]] = {
    "split_feature": ("<i4", "%d", INTERNAL),
    "split_gain": ("f", "%g", INTERNAL),
    "threshold": ("<f8", "%.17g", INTERNAL),
    "decision_type": ("|i1", "%d", INTERNAL),
    "left_child": ("<i4", "%d", INTERNAL),
    "right_child": ("<i4", "%d", INTERNAL),
    "leaf_value": ("<f8", "%.17g", LEAF),
    "leaf_weight": ("<f8", "%.17g", LEAF_WEIGHT),
    "leaf_count": ("<i4", "%d", LEAF),
    "internal_value": ("f", "%g", INTERNAL),
    "internal_weight": ("f", "%g", INTERNAL),
    "internal_count": ("<i4", "%d", INTERNAL),
    "cat_boundaries": ("<i4", "%d", CAT),
    "cat_threshold": ("<u4", "%d", CAT_WORDS),
    "leaf_const": ("<f8", "%.17g", LEAF),
    "num_features": ("<i4", "%d", LEAF),
    "leaf_features": ("<i4", "%d", LINEAR_FEATURES),
    "leaf_coeff": ("<f8", "%.17g", LINEAR_FEATURES),
}
LINEAR = ("leaf_const", "num_features", "leaf_features", "leaf_coeff")
CAT_COLUMNS = ("cat_boundaries", "cat_threshold")
BASIC = tuple(COLUMNS)[:12]
# Per-tree scalars: num_leaves, num_cat, is_linear (ints) and shrinkage (a "%g" double).
SCALARS = {"num_leaves": "<i4", "num_cat": "<i4", "is_linear": "|i1", "shrinkage": "<f8"}
MAX_DECISION = 15  # bit 0 categorical, bit 1 default left, bits 2-3 missing type (0..2)
# Header lines LightGBM 4 writes, in order; average_output is a flag (random forests).
HEADER_KEYS = ("version", "num_class", "num_tree_per_iteration", "label_index",
               "max_feature_idx", "objective", "average_output", "feature_names",
               "monotone_constraints", "feature_infos")
LIST_KEYS = frozenset({"feature_names", "feature_infos", "monotone_constraints"})
FLAG_KEYS = frozenset({"average_output"})
OBJECTIVES = frozenset({
    "regression", "regression_l1", "huber", "fair", "poisson", "quantile", "mape", "gamma",
    "tweedie", "binary", "multiclass", "multiclassova", "cross_entropy",
    "cross_entropy_lambda", "lambdarank", "rank_xendcg"})
MULTICLASS = frozenset({"multiclass", "multiclassova"})
THREAD_KEYS = frozenset({"num_threads", "num_thread", "nthread", "nthreads", "n_jobs"})
# Python-side Booster state kept (predict uses best_iteration by default); see docs/FORMAT.md
# for what is derived instead and why.
ATTRS = ("best_iteration", "best_score", "params", "name_valid_sets", "_train_data_name",
         "train_set_version", "_Booster__set_objective_to_none")
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def line_order(num_cat: int, is_linear: int) -> list[str]:
    """The keys of one tree block, in the order LightGBM writes them."""
    keys = ["num_leaves", "num_cat", *BASIC]
    if num_cat > 0:
        keys += list(CAT_COLUMNS)
    keys.append("is_linear")
    if is_linear:
        keys += list(LINEAR)
    keys.append("shrinkage")
    return keys


# ============================================================================================
# Save: text -> parts
# ============================================================================================


def save_booster(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
    import lightgbm

    ctx.versions["lightgbm"] = lightgbm.__version__
    text = obj.model_to_string(num_iteration=-1)
    header_lines, blocks, tail = _split_text(text, path)
    header = _parse_header(header_lines, path)
    scalars, texts = _parse_trees(blocks, path)
    columns = {name: _parse_column(name, parts, path) for name, parts in texts.items()}
    rest = _parse_tail(tail, path)
    try:  # what we write, we read: the loader's checks, on the model being written
        _check_model(header, scalars, columns, path)
        _check_rest(rest, scalars, path)
    except InvariantError as exc:
        raise UnsupportedTypeError(f"this LightGBM model cannot be stored safely: {exc}",
                                   path) from None
    attrs = {k: getattr(obj, k) for k in ATTRS if k in obj.__dict__}
    return {
        "header": save_plain(header, ctx, join_path(path, "header")),
        "num_trees": len(blocks),
        "trees": {
            "scalars": save_columns(scalars, ctx, join_path(path, "scalars"), "lightgbm"),
            "columns": save_columns(columns, ctx, join_path(path, "columns"), "lightgbm",
                                    frozenset({"left_child", "right_child"})),
        },
        **{k: save_plain(v, ctx, join_path(path, k)) for k, v in rest.items()},
        "attrs": {k: ctx.encode(v, join_path(path, k)) for k, v in attrs.items()},
    }


def _split_text(text: str, path: str) -> tuple[list[str], list[str], str]:
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


def _parse_header(lines: list[str], path: str) -> dict[str, Any]:
    header: dict[str, Any] = {}
    for line in lines:
        key, eq, value = line.partition("=")
        if key in header or key not in HEADER_KEYS or (not eq) != (key in FLAG_KEYS):
            raise UnsupportedTypeError(f"unexpected LightGBM header line {quote(key)}", path)
        if not eq:
            header[key] = True  # a flag line such as average_output
        elif key in LIST_KEYS:
            header[key] = value.split(" ")
        else:
            header[key] = value
    if list(header) != [k for k in HEADER_KEYS if k in header]:
        raise UnsupportedTypeError("LightGBM header lines out of order", path)
    # A custom objective writes no objective line: stored as null, so that a file missing the
    # key is refused rather than read as a model without output transform.
    if "objective" not in header:
        header = {k: header[k] for k in HEADER_KEYS[:5] if k in header} | {"objective": None} | {
            k: header[k] for k in HEADER_KEYS[6:] if k in header}
    return header


def _parse_trees(blocks: list[str], path: str) -> tuple[Columns, dict[str, list[str]]]:
    """Per-tree scalars and, per column, each tree's value text."""
    n = len(blocks)
    scalars = {k: np.zeros(n, dtype=np.float64 if k == "shrinkage" else np.int64)
               for k in SCALARS}
    texts: dict[str, list[str]] = {name: [] for name in COLUMNS}
    plain_order = line_order(0, 0)
    for i, block in enumerate(blocks):
        lines = block.split("\n")
        if lines[0] != f"Tree={i}" or lines[-3:] != ["", "", ""]:
            raise UnsupportedTypeError(f"unrecognised LightGBM tree block {i}", path)
        fields = dict(line.split("=", 1) for line in lines[1:-3])
        for key in SCALARS:
            scalars[key][i] = float(fields[key]) if key == "shrinkage" else int(fields[key])
        order = plain_order if fields["num_cat"] == "0" and fields["is_linear"] == "0" else (
            line_order(int(scalars["num_cat"][i]), int(scalars["is_linear"][i])))
        if list(fields) != order or len(lines) != len(order) + 4:
            raise UnsupportedTypeError(f"unrecognised LightGBM tree block {i}", path)
        for name in COLUMNS:
            value = fields.get(name)
            if value is not None:
                # Linear leaves end each leaf's values with a space, and each leaf with one
                # more: whitespace is layout there, not a value.
                texts[name].append(" ".join(value.split()) if name in LINEAR else value)
    return {k: v.astype(SCALARS[k]) for k, v in scalars.items()}, texts


def _parse_column(name: str, parts: list[str], path: str) -> np.ndarray:
    """One packed column; ``%g`` columns become float32 when that reads back exactly."""
    dtype, fmt, _ = COLUMNS[name]
    text = " ".join(p for p in parts if p)
    try:
        values = orjson.loads(f"[{text.replace(' ', ',')}]")
    except orjson.JSONDecodeError:  # nan / inf tokens: not JSON, rare
        values = [float(t) for t in text.split(" ")] if text else []
    if fmt == "%d":
        if not all(type(v) is int for v in values):
            raise UnsupportedTypeError(f"LightGBM {name} must be integers", path)
        return np.array(values, dtype=np.int64).astype(dtype)
    column = np.array(values, dtype=np.float64)
    if dtype == "f":
        narrow = column.astype(np.float32)
        if np.isfinite(column).all() and np.array_equal(_float_values(narrow), column):
            return narrow
    return column


def _float_values(column: np.ndarray) -> np.ndarray:
    """The doubles LightGBM reads from the text :func:`_number_text` writes for ``column``."""
    return np.array(orjson.loads(orjson.dumps(column, option=_NUMPY)), dtype=np.float64)


def _parse_tail(tail: str, path: str) -> dict[str, Any]:
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


# ============================================================================================
# Check (validation pass: nothing built)
# ============================================================================================


def check_booster(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    n = node["num_trees"]
    if type(n) is not int or n < 0:
        raise ManifestError("num_trees must be a non-negative int", path)
    trees = node["trees"]
    where = join_path(path, "trees")
    if not isinstance(trees, dict) or set(trees) != {"scalars", "columns"}:
        raise ManifestError("trees must hold scalars and columns", where)
    check_columns(trees["scalars"], SCALARS, ctx, join_path(where, "scalars"))
    if any(c["shape"] != [n] for c in trees["scalars"].values()):
        raise InvariantError("scalars must have num_trees entries", where)
    columns = trees["columns"]
    if not isinstance(columns, dict) or not all(isinstance(c, dict) for c in columns.values()):
        raise ManifestError("columns must be an object of array nodes", where)
    # "%g" columns may be float32 or float64 (whichever reads back exactly).
    dtypes = {name: (columns.get(name, {}).get("dtype") if spec[0] == "f" else spec[0])
              for name, spec in COLUMNS.items()}
    if any(dtypes[name] not in ("<f4", "<f8") for name, spec in COLUMNS.items()
           if spec[0] == "f"):
        raise InvariantError("%g columns must be float32 or float64", where)
    check_columns(columns, dtypes, ctx, join_path(where, "columns"))
    for key in ("header", "feature_importances", "parameters", "pandas_categorical"):
        check_plain(node[key], ctx, join_path(path, key))
    if not isinstance(node["attrs"], dict) or set(node["attrs"]) - set(ATTRS):
        raise ManifestError(f"unexpected booster attributes {quote(sorted(node['attrs']))}",
                            path)
    check_texts(node, path)


def check_texts(node: dict[str, Any], path: str) -> None:
    """Strings that go into the model text must not break its line structure."""
    header = node["header"]
    if not isinstance(header, dict):
        raise ManifestError("header must be an object", path)
    for key, value in header.items():
        if key not in HEADER_KEYS:
            raise ManifestError(f"unexpected LightGBM header line {quote(key)}", path)
        if key == "objective" and value is None:
            continue  # a custom objective
        # Each line has one shape (as _read_header makes it): a flag, a list of words, or text.
        if key in FLAG_KEYS:
            if value is not True:
                raise ManifestError(f"header {quote(key)} is a flag (true)", path)
            continue
        if key in LIST_KEYS:
            if type(value) is not list or not all(type(v) is str for v in value):
                raise ManifestError(f"header {quote(key)} must be a list of text", path)
            for item in value:
                _check_text(item, path, " ")
        elif type(value) is not str:
            raise ManifestError(f"header {quote(key)} must be text", path)
        else:
            _check_text(value, path, "")
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


# ============================================================================================
# Invariants (shared by save and load)
# ============================================================================================


def _small_int(value: Any, what: str, path: str, low: int = 0) -> int:
    if type(value) is not str or not value.lstrip("-").isdigit() or not value.isascii() or len(
            value) > 10 or str(int(value)) != value or int(value) < low:
        raise InvariantError(f"{what} must be an int of at least {low}", path)
    return int(value)


def _check_header(header: dict[str, Any], n_trees: int, path: str) -> int:
    """Header fields against each other and the trees; returns the number of features."""
    if list(header) != [k for k in HEADER_KEYS if k in header]:
        raise InvariantError("header fields out of order", path)
    for key in ("version", "num_class", "num_tree_per_iteration", "label_index",
                "max_feature_idx", "objective", "feature_names", "feature_infos"):
        if key not in header:
            raise InvariantError(f"header misses {key}", path)
    if header["version"] != "v4":
        raise InvariantError(f"unsupported LightGBM model version {quote(header['version'])}",
                             path)
    num_class = _small_int(header["num_class"], "num_class", path, 1)
    per_iteration = _small_int(header["num_tree_per_iteration"], "num_tree_per_iteration",
                               path, 1)
    _small_int(header["label_index"], "label_index", path)
    # LightGBM sizes each row's output by these: one tree per class and iteration.
    if per_iteration != num_class or n_trees % per_iteration or (
            per_iteration > max(n_trees, 1)):
        raise InvariantError(f"num_class {num_class} and num_tree_per_iteration "
                             f"{per_iteration} do not fit {n_trees} trees", path)
    if header.get("average_output", True) is not True:
        raise InvariantError("average_output is a flag", path)
    _check_objective(header.get("objective"), num_class, path)
    n_features = _small_int(header["max_feature_idx"], "max_feature_idx", path) + 1
    for key in ("feature_names", "feature_infos", "monotone_constraints"):
        if key in header and len(header[key]) != n_features:
            raise InvariantError(f"{key} must list max_feature_idx + 1 entries", path)
    if any(v not in ("-1", "0", "1") for v in header.get("monotone_constraints", ())):
        raise InvariantError("monotone_constraints must be -1, 0 or 1", path)
    return n_features


def _check_objective(objective: Any, num_class: int, path: str) -> None:
    """The objective's own num_class sizes its output conversion (softmax)."""
    if objective is None:  # a custom objective: raw scores, one per class
        return
    if type(objective) is not str:
        raise InvariantError("objective must be text", path)
    name, *tokens = objective.split(" ")
    if name not in OBJECTIVES:
        raise InvariantError(f"unknown LightGBM objective {quote(name)}", path)
    seen = {}
    for token in tokens:
        key, colon, value = token.partition(":")
        if key in seen or (key == "sqrt" and colon) or (key != "sqrt" and not colon) or (
                key not in ("sqrt", "sigmoid", "num_class")):
            raise InvariantError(f"unexpected objective parameter {quote(token)}", path)
        seen[key] = value
    if (name in MULTICLASS) != ("num_class" in seen) or (
            "num_class" in seen and _small_int(seen["num_class"], "objective num_class",
                                               path, 1) != num_class):
        raise InvariantError("the objective's num_class must equal the model's", path)
    if name not in MULTICLASS and num_class != 1:
        raise InvariantError(f"objective {quote(name)} predicts one value per row", path)
    if "sigmoid" in seen:
        try:
            float(seen["sigmoid"])
        except ValueError:
            raise InvariantError("sigmoid must be a number", path) from None


def _lengths(scalars: Columns, columns: Columns, path: str) -> Columns:
    """Each tree's number of values in every column, from its scalars (vectorised)."""
    leaves = scalars["num_leaves"].astype(np.int64)
    num_cat = scalars["num_cat"].astype(np.int64)
    linear = scalars["is_linear"].astype(bool)
    zero = np.zeros_like(leaves)
    out = {}
    for name, (_, _, rule) in COLUMNS.items():
        if rule == INTERNAL:
            out[name] = leaves - 1
        elif name in LINEAR and rule == LEAF:
            out[name] = np.where(linear, leaves, zero)
        elif rule == LEAF:
            out[name] = leaves
        elif rule == LEAF_WEIGHT:
            out[name] = np.where(leaves > 1, leaves, zero)  # LightGBM omits a stump's weight
        elif rule == CAT:
            out[name] = np.where(num_cat > 0, num_cat + 1, zero)
    # Columns whose lengths are other columns' values: cat_threshold ends at each tree's last
    # cat boundary, leaf_features and leaf_coeff hold num_features values per leaf.
    bounds = columns["cat_boundaries"]
    ends = np.cumsum(out["cat_boundaries"])
    if bounds.size != (ends[-1] if ends.size else 0):
        raise InvariantError("cat_boundaries does not match its trees", path)
    has_cat = out["cat_boundaries"] > 0
    out["cat_threshold"] = zero.copy()
    if bounds.size:
        if bounds.min() < 0:
            raise InvariantError("cat_boundaries must be non-negative", path)
        out["cat_threshold"][has_cat] = bounds[ends[has_cat] - 1]
    features = columns["num_features"]
    if features.size and features.min() < 0:
        raise InvariantError("num_features must be non-negative", path)
    starts = np.concatenate([[0], np.cumsum(out["num_features"])])
    if features.size != starts[-1]:
        raise InvariantError("num_features does not match its trees", path)
    sums = np.concatenate([[0], np.cumsum(features, dtype=np.int64)])
    out["leaf_features"] = sums[starts[1:]] - sums[starts[:-1]]
    out["leaf_coeff"] = out["leaf_features"]
    for name, counts in out.items():
        if columns[name].size != counts.sum():
            raise InvariantError(f"{name} has {columns[name].size} values for its trees' "
                                 f"{counts.sum()}", path)
    return out


def _offsets(counts: np.ndarray) -> npt.NDArray[np.int64]:
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def _check_rest(rest: dict[str, Any], scalars: Columns, path: str) -> None:
    """The parts after the trees that LightGBM reads back.

    ``linear_tree`` among the parameters decides whether LightGBM treats leaves as linear
    (SHAP refuses them): required, and on whenever a tree is linear.  ``pandas_categorical``
    (LightGBM's Python maps DataFrame categories with it) is null or lists of categories.
    """
    linear = rest["parameters"].get("linear_tree")
    if linear not in ("0", "1") or (linear == "0" and scalars["is_linear"].any()):
        raise InvariantError("parameters.linear_tree must be 0 or 1, and 1 with linear trees",
                             path)
    categories = rest["pandas_categorical"]
    if categories is not None and not (isinstance(categories, list) and all(
            isinstance(c, list) and all(type(v) in (str, int, float, bool) for v in c)
            for c in categories)):
        raise InvariantError("pandas_categorical must be null or lists of categories", path)


def _check_model(header: dict[str, Any], scalars: Columns, columns: Columns, path: str
                 ) -> Columns:
    """Header and trees, every tree at once; returns each column's per-tree counts."""
    n_trees = scalars["num_leaves"].size
    n_features = _check_header(header, n_trees, path)
    leaves = scalars["num_leaves"]
    if leaves.size and (leaves.min() < 1 or leaves.max() > 1 << 30):
        raise InvariantError("num_leaves must be between 1 and 2**30", path)
    if np.any(scalars["num_cat"] < 0) or np.any((scalars["is_linear"] != 0) & (
            scalars["is_linear"] != 1)):
        raise InvariantError("num_cat must be non-negative and is_linear 0 or 1", path)
    counts = _lengths(scalars, columns, path)
    internal = _offsets(counts["split_feature"])
    code, tree, node, reason = _arrays.check_leaf_coded_forest(
        columns["left_child"], columns["right_child"], columns["split_feature"], internal,
        n_features)
    if code:
        raise tree_error("LightGBM", tree, f"node {node}: {reason}", path)
    decision = columns["decision_type"]
    if decision.size and (decision.min() < 0 or decision.max() > MAX_DECISION
                          or np.any((decision >> 2) & 3 == 3)):
        raise InvariantError("LightGBM decision_type out of range", path)
    # Categorical splits index their tree's cat_boundaries (num_cat + 1 entries rising from 0
    # to the tree's cat_threshold length).
    tree_of = np.repeat(np.arange(n_trees), counts["split_feature"])
    is_cat = (decision & 1).astype(bool)
    cat_index = columns["threshold"][is_cat]
    if cat_index.size and not (np.all(cat_index == np.floor(cat_index)) and np.all(
            cat_index >= 0) and np.all(cat_index < scalars["num_cat"][tree_of[is_cat]])):
        raise InvariantError("LightGBM categorical split outside its cat_boundaries", path)
    bounds = columns["cat_boundaries"]
    if bounds.size:
        starts = _offsets(counts["cat_boundaries"])
        first = starts[:-1][counts["cat_boundaries"] > 0]
        step = np.diff(bounds.astype(np.int64))
        inside = np.ones(step.size, dtype=bool)
        inside[first[1:] - 1] = False  # steps across two trees are not steps
        if np.any(bounds[first] != 0) or np.any(step[inside] < 0):
            raise InvariantError("LightGBM cat_boundaries must rise from 0", path)
    if scalars["is_linear"].any():
        feats = columns["leaf_features"]
        if feats.size and _arrays.check_indices(feats, n_features) != -1:
            raise InvariantError("LightGBM linear leaf feature out of range", path)
    if not np.all(np.isfinite(scalars["shrinkage"])):
        raise InvariantError("shrinkage must be finite", path)
    return counts


# ============================================================================================
# Load: parts -> text
# ============================================================================================


def load_booster(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:
    import lightgbm

    header = load_plain(node["header"], ctx, join_path(path, "header"))
    where = join_path(path, "trees")
    scalars = {k: ctx.array(v, join_path(where, k)) for k, v in
               node["trees"]["scalars"].items()}
    if scalars["num_leaves"].size and scalars["num_leaves"].max() > ctx.limits.max_tree_nodes:
        raise InvariantError("a tree exceeds max_tree_nodes", where)
    columns = {k: ctx.array(v, join_path(where, k)) for k, v in
               node["trees"]["columns"].items()}
    rest = {k: load_plain(node[k], ctx, join_path(path, k))
            for k in ("feature_importances", "parameters", "pandas_categorical")}
    counts = _check_model(header, scalars, columns, where)
    _check_rest(rest, scalars, path)
    attrs = {k: ctx.decode(v, join_path(path, k)) for k, v in node["attrs"].items()}
    _check_attrs(attrs, path)
    text = model_text(header, scalars, columns, counts, rest)
    try:
        booster = lightgbm.Booster(model_str=text)
    except lightgbm.basic.LightGBMError as exc:
        raise InvariantError(f"LightGBM refused the model: {quote(str(exc), 200)}",
                             path) from None
    booster.__dict__.update(attrs)
    return booster


def _check_attrs(attrs: dict[str, Any], path: str) -> None:
    """Types of the Python-side state, and the thread counts in its parameters."""
    kinds = {"best_iteration": int, "_train_data_name": str, "train_set_version": int,
             "_Booster__set_objective_to_none": bool}
    for key, kind in kinds.items():
        if key in attrs and type(attrs[key]) is not kind:
            raise InvariantError(f"{key} must be {kind.__name__}", join_path(path, key))
    names = attrs.get("name_valid_sets", [])
    if not isinstance(names, list) or not all(type(v) is str for v in names):
        raise InvariantError("name_valid_sets must be a list of str", path)
    if "best_score" in attrs and not isinstance(attrs["best_score"], dict):
        raise InvariantError("best_score must be a dict", path)
    check_thread_entries(attrs.get("params"), THREAD_KEYS, join_path(path, "params"))


def model_text(header: dict[str, Any], scalars: Columns, columns: Columns, counts: Columns,
               rest: dict[str, Any]) -> str:
    """A LightGBM text model for validated parts.

    Numbers are written by orjson, a column at a time (:func:`_number_text`), and the tree
    blocks cut from them by :func:`milo_pack._arrays.lightgbm_model_text` in one pass.
    """
    n_trees = scalars["num_leaves"].size
    one = np.arange(n_trees + 1, dtype=np.int64)  # one value per tree
    has_cat = (scalars["num_cat"] > 0).astype(np.uint8)
    linear = (scalars["is_linear"] != 0).astype(np.uint8)
    leaf_groups = _offsets(counts["num_features"])
    per_leaf = columns["num_features"].astype(np.int64)
    items: list[tuple[Any, ...]] = [
        (b"\nnum_leaves=", _number_text(scalars["num_leaves"]), one, None, None, None),
        (b"\nnum_cat=", _number_text(scalars["num_cat"]), one, None, None, None)]
    for name in COLUMNS:
        if name == "leaf_const":  # the first linear line comes after is_linear
            items.append((b"\nis_linear=", _number_text(scalars["is_linear"]), one, None,
                          None, None))
        present = has_cat if name in CAT_COLUMNS else linear if name in LINEAR else None
        groups = (per_leaf, leaf_groups) if name in ("leaf_features", "leaf_coeff") else (
            None, None)
        items.append((f"\n{name}=".encode(), _number_text(columns[name]),
                      _offsets(counts[name]), present, *groups))
    items.append((b"\nshrinkage=", _number_text(scalars["shrinkage"]), one, None, None, None))
    tail = _tail_text(rest["feature_importances"], rest["parameters"],
                      rest["pandas_categorical"])
    return _arrays.lightgbm_model_text(_header_text(header), items, n_trees, tail)


def _number_text(column: np.ndarray) -> bytes:
    """A column's values as comma-separated text (one orjson call).

    Integers in decimal; floats as the shortest decimals that read back as the same value (a
    ``%g`` column stored as float32: the float32's, which LightGBM reads as the 6-digit double
    it wrote), or ``repr`` for a column holding inf or nan (rare; strtod reads them).
    """
    if column.dtype.kind == "f" and not np.isfinite(column).all():
        return ",".join(repr(v) for v in column.tolist()).encode()
    return orjson.dumps(column, option=_NUMPY)[1:-1]


def _header_text(header: dict[str, Any]) -> str:
    """The header lines before ``tree_sizes`` (which the tree writer adds)."""
    lines = ["tree"]
    for key, value in header.items():
        if value is None:
            continue  # no objective line: a custom objective
        if value is True:
            lines.append(key)
        elif isinstance(value, list):
            lines.append(f"{key}={' '.join(value)}")
        else:
            lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def _tail_text(importances: dict[str, str], parameters: dict[str, str],
               pandas_categorical: Any) -> str:
    from lightgbm.basic import _json_default_with_numpy

    out = ["end of trees\n\nfeature_importances:\n"]
    out += [f"{k}={v}\n" for k, v in importances.items()]
    out.append("\nparameters:\n")
    out += [f"[{k}: {v}]\n" for k, v in parameters.items()]
    out.append("\nend of parameters\n\npandas_categorical:")
    out.append(json.dumps(pandas_categorical, default=_json_default_with_numpy) + "\n")
    return "".join(out)


# ============================================================================================
# Wrappers and registration
# ============================================================================================


def _check_wrapper_state(state: dict[str, Any], path: str) -> None:
    """Thread counts that predict hands LightGBM: n_jobs and num_threads aliases."""
    import lightgbm

    if "_Booster" in state and not isinstance(state["_Booster"], lightgbm.Booster):
        raise InvariantError("_Booster must be a lightgbm.Booster", join_path(path, "_Booster"))
    check_threads(state.get("n_jobs"), "n_jobs", join_path(path, "n_jobs"))
    check_thread_entries(state.get("_other_params"), THREAD_KEYS,
                         join_path(path, "_other_params"))


def register(registry: Registry) -> None:
    import lightgbm

    keys = frozenset({"header", "num_trees", "trees", "feature_importances", "parameters",
                      "pandas_categorical", "attrs"})
    registry.add(Handler("lightgbm.Booster", save_booster, load_booster, keys, keys,
                         check=check_booster, types=(lightgbm.Booster,),
                         cls=lightgbm.Booster))
    for name in ("LGBMClassifier", "LGBMRegressor", "LGBMRanker"):
        cls = getattr(lightgbm, name)
        names = frozenset(lightgbm.LGBMModel._get_param_names()) | frozenset(
            cls._get_param_names())
        registry.add(wrapper_handler(cls, f"lightgbm.{name}", names, _check_wrapper_state))
