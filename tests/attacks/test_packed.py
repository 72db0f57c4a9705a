"""Crafted packed tree ensembles (``sklearn.tree.packed``): each broken rule is refused."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingRegressor

from milo_pack.errors import (
    ArrayError,
    InvariantError,
    ManifestError,
    MiloError,
    UntrustedTypeError,
)
from milo_pack.handlers import trees

from .craft import data_xy, manifest_edit, refused


@functools.lru_cache(maxsize=1)
def packed_file() -> bytes:
    import milo_pack

    X, y = data_xy()
    model = GradientBoostingRegressor(n_estimators=5, max_depth=2, random_state=0).fit(X, y)
    data = milo_pack.dumps(model)
    assert milo_pack.inspect(data)["root"]["attrs"]["estimators_"]["$type"] == \
        "sklearn.tree.packed"
    return data


def _packed(manifest: dict) -> dict:
    return manifest["root"]["attrs"]["estimators_"]


def _set(path: tuple, value) -> callable:
    def edit(manifest: dict) -> None:
        node = _packed(manifest)
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _add_field(name: str) -> callable:
    def edit(manifest: dict) -> None:
        _packed(manifest)["fields"].append(name)
        _packed(manifest)["shared"][name] = 1

    return edit


def _short_varying(manifest: dict) -> None:
    _packed(manifest)["shared"].pop("ccp_alpha")
    _packed(manifest)["varying"]["ccp_alpha"] = [0.0]


def _drop_tree_field(manifest: dict) -> None:
    _packed(manifest)["fields"].remove("tree_")


CASES = {
    "class_not_a_tree": (_set(("class",), "sklearn.linear_model.LinearRegression"),
                         ManifestError),
    "class_unknown": (_set(("class",), "os.system"), ManifestError),
    "shape_zero": (_set(("shape",), [0, 1]), ManifestError),
    "shape_three_axes": (_set(("shape",), [5, 1, 1]), ManifestError),
    "container_unknown": (_set(("container",), "tuple"), ManifestError),
    "list_with_two_axes": (_set(("container",), "list"), ManifestError),  # shape is [5, 1]
    "fields_missing_tree": (_drop_tree_field, ManifestError),
    "field_dunder": (_add_field("__class__"), ManifestError),
    "field_shadows_method": (_add_field("predict"), ManifestError),
    "varying_too_short": (_short_varying, ManifestError),
    "node_count_shape": (_set(("trees", "node_count", "shape"), [4]), ArrayError),
    "columns_disagree": (_set(("trees", "nodes", "n_node_samples", "shape"), [3]),
                         InvariantError),
    "split_rows_disagree": (_set(("trees", "nodes", "threshold", "splits", "shape"), [3]),
                            InvariantError),
    "leaf_rows_disagree": (_set(("trees", "nodes", "feature", "leaves", "shape"), [3]),
                           InvariantError),
    "split_column_whole": (_set(("trees", "nodes", "impurity"),
                                {"$type": "numpy.ndarray", "dtype": "<f8", "shape": [35],
                                 "fill": 0.0}), ManifestError),
    "values_whole": (_set(("trees", "values"),
                          {"$type": "numpy.ndarray", "dtype": "<f8", "shape": [35, 1, 1],
                           "fill": 0.0}), InvariantError),
    "leaf_count_missing": (lambda m: _packed(m)["trees"].pop("leaf_count"), ManifestError),
    "leaf_counts_do_not_add_up": (_set(("trees", "leaf_count"),
                                       {"$type": "numpy.ndarray", "dtype": "<i8", "shape": [5],
                                        "data": [1, 1, 1, 1, 1]}), InvariantError),
    # The right total, split between the trees the wrong way: each tree's leaves are counted.
    "leaf_counts_shifted": (_set(("trees", "leaf_count"),
                                 {"$type": "numpy.ndarray", "dtype": "<i8", "shape": [5],
                                  "data": [5, 3, 4, 4, 4]}), InvariantError),
    "leaf_count_above_nodes": (_set(("trees", "leaf_count"),
                                    {"$type": "numpy.ndarray", "dtype": "<i8", "shape": [5],
                                     "data": [8, 0, 4, 4, 4]}), InvariantError),
    "max_depth_understated": (_set(("trees", "max_depth"),
                                   {"$type": "numpy.ndarray", "dtype": "<i8", "shape": [5],
                                    "data": [0, 0, 0, 0, 0]}), InvariantError),
    "node_counts_do_not_add_up": (_set(("trees", "node_count"),
                                       {"$type": "numpy.ndarray", "dtype": "<i8", "shape": [5],
                                        "data": [1, 1, 1, 1, 1]}), InvariantError),
}


def refused_lazily(data: bytes, error: type[MiloError]) -> None:
    """A lazy load refuses it too: at load (the pack's checks) or when a member is built."""
    import milo_pack

    X, _ = data_xy()
    with pytest.raises(MiloError) as info:
        with milo_pack.open(data) as handle:
            handle.load(lazy=True, cache_bytes=0).predict(X)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_packed_case_is_refused(name):
    edit, error = CASES[name]
    refused(manifest_edit(packed_file(), edit), error)
    refused_lazily(manifest_edit(packed_file(), edit), error)


def test_packed_untrusted_class_is_not_built():
    data = manifest_edit(packed_file(), _set(("class",), "mymodule.Tree"))
    refused(data, ManifestError)
    with pytest.raises((ManifestError, UntrustedTypeError)):
        import milo_pack

        milo_pack.loads(data, trusted=["mymodule.Tree"])


def test_packed_roundtrip_shares_what_the_trees_shared():
    import milo_pack

    X, y = data_xy()
    model = GradientBoostingRegressor(n_estimators=6, max_depth=2, random_state=0).fit(X, y)
    loaded = milo_pack.loads(milo_pack.dumps(model))
    stages = loaded.estimators_.ravel()
    # One RandomState object for every stage, as scikit-learn built it.
    assert len({id(s.random_state) for s in stages}) == 1
    # Equal small arrays stay separate objects per tree.
    assert np.array_equal(loaded.predict(X), model.predict(X))


@functools.lru_cache(maxsize=1)
def predictors_file() -> bytes:
    from sklearn.ensemble import HistGradientBoostingClassifier

    import milo_pack

    X, y = data_xy()
    model = HistGradientBoostingClassifier(max_iter=4, random_state=0).fit(X, y > y.mean())
    data = milo_pack.dumps(model)
    assert milo_pack.inspect(data)["root"]["attrs"]["_predictors"]["$type"] == \
        "sklearn.hist_gradient_boosting.predictors"
    return data


def _predictors(manifest: dict) -> dict:
    return manifest["root"]["attrs"]["_predictors"]


def _inline(values: list[int]) -> dict:
    return {"$type": "numpy.ndarray", "dtype": "<i8", "shape": [len(values)], "data": values}


PREDICTOR_CASES = {
    "shape_zero": (lambda m: _predictors(m).__setitem__("shape", [0, 1]), ManifestError),
    "counts_missing": (lambda m: _predictors(m)["counts"].pop("nodes"), ManifestError),
    "node_counts_do_not_add_up": (
        lambda m: _predictors(m)["counts"].__setitem__("nodes", _inline([1, 1, 1, 1])),
        InvariantError),
    "negative_count": (
        lambda m: _predictors(m)["counts"].__setitem__("binned_left_cat_bitsets",
                                                       _inline([-1, 1, 0, 0])), InvariantError),
    "record_field_renamed": (
        lambda m: _predictors(m)["nodes"]["dtype"]["names"].__setitem__(0, "__class__"),
        ManifestError),
    "bitset_width": (
        lambda m: _predictors(m)["raw_left_cat_bitsets"].__setitem__("shape", [0, 7]),
        InvariantError),
}


@pytest.mark.parametrize("name", sorted(PREDICTOR_CASES))
def test_packed_predictors_case_is_refused(name):
    edit, error = PREDICTOR_CASES[name]

    def apply(manifest: dict) -> None:
        edit(manifest)

    refused(manifest_edit(predictors_file(), apply), error)
    refused_lazily(manifest_edit(predictors_file(), apply), error)


def test_packed_predictor_with_a_bad_child_is_refused():
    def corrupt(manifest: dict) -> None:
        fields = _predictors(manifest)["nodes"]["fields"]
        # Child indices read from the sample counts: far outside each predictor.
        fields["left"], fields["count"] = fields["count"], fields["left"]

    refused(manifest_edit(predictors_file(), corrupt), InvariantError)
    refused_lazily(manifest_edit(predictors_file(), corrupt), InvariantError)


def test_packed_forest_list_refusals():
    """A forest's trees pack as a list: the same checks, and a list shape of one axis."""
    from sklearn.ensemble import RandomForestRegressor

    import milo_pack

    X, y = data_xy()
    forest = RandomForestRegressor(n_estimators=6, max_depth=3, random_state=0).fit(X, y)
    data = milo_pack.dumps(forest)
    assert _packed(milo_pack.inspect(data))["container"] == "list"
    refused(manifest_edit(data, _set(("shape",), [3, 2])), ManifestError)
    refused(manifest_edit(data, _set(("trees", "node_count"), _inline([1] * 6))), InvariantError)
    refused_lazily(manifest_edit(data, _set(("trees", "node_count"), _inline([1] * 6))),
                   InvariantError)



# -- eager loads in blocks: a corrupt tree in a later block -------------------------------------


@functools.lru_cache(maxsize=1)
def _forest_file() -> tuple[bytes, list[int]]:
    """A 12-tree forest of ~50-node trees, and its node counts (blocks of 100 rows: 2 trees)."""
    from sklearn.ensemble import RandomForestRegressor

    import milo_pack

    X, y = data_xy()
    forest = RandomForestRegressor(n_estimators=12, max_leaf_nodes=25, random_state=0).fit(X, y)
    return milo_pack.dumps(forest), [int(t.tree_.node_count) for t in forest.estimators_]


def _forest_with_a_cycle(tree: int) -> bytes:
    """The forest with the root's right child of tree ``tree`` pointing back at the root."""
    import copy

    from sklearn.ensemble import RandomForestRegressor
    from sklearn.tree._tree import Tree

    import milo_pack

    X, y = data_xy()
    forest = RandomForestRegressor(n_estimators=12, max_leaf_nodes=25, random_state=0).fit(X, y)
    forest = copy.deepcopy(forest)
    old = forest.estimators_[tree].tree_
    state = old.__getstate__()
    nodes = state["nodes"].copy()
    nodes["right_child"][0] = 0
    new = Tree(old.n_features, old.n_classes, old.n_outputs)
    new.__setstate__({**state, "nodes": nodes})
    forest.estimators_[tree].tree_ = new
    return milo_pack.dumps(forest)


def _loads_in_blocks(data: bytes, monkeypatch, rows: int) -> object:
    import milo_pack

    X, _ = data_xy()
    with monkeypatch.context() as patch:
        patch.setattr(trees, "_BLOCK_ROWS", rows)
        try:
            return milo_pack.loads(data).predict(X).tolist()
        except MiloError as exc:
            return type(exc).__name__, exc.message, exc.path


def test_blocks_build_the_same_forest(monkeypatch):
    """One block, or one block a tree, built one after the other:
    the same trees, bit for bit."""
    import milo_pack

    from ..common import assert_same

    data, counts = _forest_file()
    whole = milo_pack.loads(data)
    with monkeypatch.context() as patch:
        patch.setattr(trees, "_BLOCK_ROWS", max(counts))  # one tree a block
        built: list[int] = []
        block = trees._PackedTrees._block
        patch.setattr(trees._PackedTrees, "_block",
                      lambda self, ctx, a, b: built.append(b - a) or block(self, ctx, a, b))
        one_by_one = milo_pack.loads(data)
    assert built == [1] * 12
    assert_same(one_by_one, whole)


@pytest.mark.parametrize("tree", [0, 5, 11])
@pytest.mark.parametrize("how", ["depth", "child", "leaf_count"])
def test_a_corrupt_tree_in_any_block_is_refused_alike(monkeypatch, tree, how):
    """Eager loads in one block and in many (one after the other), the
    member-by-member load and a lazy load refuse the same tree for the same reason."""
    data, counts = _forest_file()
    partner = tree + 1 if tree + 1 < len(counts) else tree - 1
    first = min(tree, partner) if how == "leaf_count" else tree  # the first tree refused

    def edit(manifest: dict) -> None:
        packed = _packed(manifest)["trees"]
        if how == "depth":
            packed["max_depth"]["data"][tree] += 1
        else:
            leaves = packed["leaf_count"]["data"]
            leaves[tree] += 1
            leaves[partner] -= 1  # the same total: only the trees' own checks see it

    crafted = _forest_with_a_cycle(tree) if how == "child" else manifest_edit(data, edit)
    outcomes = {rows: _loads_in_blocks(crafted, monkeypatch, rows)
                for rows in (1 << 16, max(counts), 100)}
    assert len(set(map(repr, outcomes.values()))) == 1, outcomes
    kind, message, path = outcomes[100]
    assert kind == "InvariantError", outcomes
    assert f"[{first}]" in path or f"tree {first} " in message, (message, path)
    refused_lazily(crafted, InvariantError)
    with monkeypatch.context() as patch:
        patch.setattr(trees._PackedTrees, "build_all", lambda self, ctx, paths: None)
        assert _loads_in_blocks(crafted, monkeypatch, 100)[0] == "InvariantError"


def test_small_and_large_columns_save_the_same_trees(monkeypatch):
    """Columns split at once (small ensembles) or tree by tree as written (large ones): one
    file, byte for byte (chunked alike: a member's rows are read at a time either way)."""
    from sklearn.ensemble import RandomForestRegressor

    import milo_pack

    from ..common import assert_same

    data, _ = _forest_file()
    X, y = data_xy()
    forest = RandomForestRegressor(n_estimators=12, max_leaf_nodes=25, random_state=0).fit(X, y)
    with monkeypatch.context() as patch:
        patch.setattr(trees, "_EAGER_PART_BYTES", 0)
        derived = milo_pack.dumps(forest)
    assert derived == data  # manifest, sections, chunking: byte for byte
    assert_same(milo_pack.loads(derived), milo_pack.loads(data))
    assert_same(milo_pack.loads(data), forest)


def test_packed_trees_honour_max_tree_nodes():
    """A packed tree bigger than the caller's budget is refused as a single Tree would be,
    eagerly and lazily, before any of its rows is decoded."""
    import milo_pack
    from milo_pack import Limits
    from milo_pack.errors import LimitError

    data, counts = _forest_file()
    limits = Limits(max_tree_nodes=max(counts) - 1)
    with pytest.raises(LimitError, match="max_tree_nodes"):
        milo_pack.loads(data, limits=limits)
    with milo_pack.open(data, limits=limits) as handle:
        with pytest.raises(LimitError, match="max_tree_nodes"):
            handle.load(lazy=True, cache_bytes=0).predict(data_xy()[0])
    assert milo_pack.loads(data, limits=Limits(max_tree_nodes=max(counts))) is not None
