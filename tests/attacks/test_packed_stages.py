"""The one-pass checks of packed trees (GradientBoosting stages) refuse what the checks of each
tree and each member refuse.

An eager load checks every tree of a packed node at once (``packed_trees_pass``: the structure
kernel and the depth walk over the pack's record array) and the members' fitted checks at once
(``check_fitted_alike``); where the pass refuses, the load goes member by member
(``_PackedTrees.build``), which raises the precise error.  Crafted and random corruptions of the
node columns, counts and depths are run against both, then through whole loads (eager with and
without the pass, and lazy) that must end alike.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.tree import DecisionTreeRegressor
from sklearn.tree._tree import Tree

import milo_pack
from milo_pack import _arrays
from milo_pack.errors import InvariantError, MiloError
from milo_pack.handlers import trees
from milo_pack.handlers.invariants import check_fitted, check_fitted_alike

from .craft import manifest_edit

N_FEATURES = 4


@functools.lru_cache(maxsize=1)
def _model_and_data() -> tuple[GradientBoostingClassifier, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, N_FEATURES))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 3] > 1)
    model = GradientBoostingClassifier(n_estimators=6, max_depth=3, random_state=0).fit(X, y)
    return model, X


def _stages() -> list[DecisionTreeRegressor]:
    model, _ = _model_and_data()
    return list(model.estimators_.reshape(-1))


def _packed() -> dict[str, np.ndarray]:
    tree_states = [s.tree_.__getstate__() for s in _stages()]
    return {"records": np.concatenate([st["nodes"] for st in tree_states]),
            "values": np.concatenate([st["values"] for st in tree_states]),
            "counts": np.array([st["node_count"] for st in tree_states], dtype=np.int64),
            "depths": np.array([st["max_depth"] for st in tree_states], dtype=np.int64)}


def _fast(p: dict[str, np.ndarray]) -> bool:
    return trees.packed_trees_pass(p["records"], p["counts"], p["depths"], N_FEATURES)


def _each(p: dict[str, np.ndarray]) -> bool:
    """What the load decides tree by tree (``_PackedTrees.build``), the counts being positive
    and adding up (checked before either)."""
    records, counts = p["records"], p["counts"]
    if np.any(counts < 1) or int(counts.sum()) != records.shape[0]:
        return False
    start = 0
    for count, depth in zip(counts.tolist(), p["depths"].tolist(), strict=True):
        nodes = records[start:start + count]
        start += count
        left, right = nodes["left_child"], nodes["right_child"]
        if _arrays.check_binary_tree(left, right, nodes["feature"], N_FEATURES)[0]:
            return False
        if _arrays.binary_tree_depth(left, right) != depth:
            return False
    return True


def _set(field: str, at: int, value: int):
    def edit(p: dict[str, np.ndarray]) -> None:
        p["records"][field][at] = value
    return edit


def _inner(p: dict[str, np.ndarray], k: int = 0) -> int:
    """The k-th internal node of the pack (an index into the records)."""
    return int(np.flatnonzero(p["records"]["left_child"] != -1)[k])


def _leaf(p: dict[str, np.ndarray], k: int = 0) -> int:
    return int(np.flatnonzero(p["records"]["left_child"] == -1)[k])


def _in_tree(p: dict[str, np.ndarray], tree: int, node: int) -> int:
    """Record index of local node ``node`` of tree ``tree``."""
    return int(p["counts"][:tree].sum()) + node


def _shift_nodes(p: dict[str, np.ndarray]) -> None:
    p["counts"][0] -= 1
    p["counts"][1] += 1


def _move_subtree_root(p: dict[str, np.ndarray]) -> None:
    """Second tree's root points at a node of the first tree's range (local index past it)."""
    p["records"]["left_child"][_in_tree(p, 1, 0)] = int(p["counts"][1])


def _swap_children(p: dict[str, np.ndarray]) -> None:
    r, at = p["records"], _inner(p)
    r["left_child"][at], r["right_child"][at] = (int(r["right_child"][at]),
                                                  int(r["left_child"][at]))


CASES = {
    "left_out_of_range": lambda p: _move_subtree_root(p),
    "right_far_out": lambda p: _set("right_child", _inner(p, 1), 10**9)(p),
    "left_negative": lambda p: _set("left_child", _inner(p, 2), -5)(p),
    "left_to_root": lambda p: _set("left_child", _inner(p, 1), 0)(p),
    "right_is_self": lambda p: _set("right_child", _inner(p, 1), 1)(p),
    "left_equals_right": lambda p: _set(
        "left_child", _inner(p), int(p["records"]["right_child"][_inner(p)]))(p),
    "leaf_with_one_child": lambda p: _set("right_child", _leaf(p), 1)(p),
    "inner_becomes_leaf": lambda p: _set("left_child", _inner(p, 1), -1)(p),
    "feature_at_n_features": lambda p: _set("feature", _inner(p, 3), N_FEATURES)(p),
    "feature_negative": lambda p: _set("feature", _inner(p), -1)(p),
    "feature_huge": lambda p: _set("feature", _inner(p, 4), 1 << 40)(p),
    "last_tree_broken": lambda p: _set("feature", _in_tree(p, len(p["counts"]) - 1, 0),
                                       N_FEATURES + 3)(p),
    "depth_understated": lambda p: p["depths"].__setitem__(2, p["depths"][2] - 1),
    "depth_overstated": lambda p: p["depths"].__setitem__(-1, p["depths"][-1] + 1),
    "nodes_shifted": _shift_nodes,
    "children_swapped": _swap_children,
    "leaf_feature_any": lambda p: _set("feature", _leaf(p), 10**6)(p),
}
# Valid trees: both checks accept them.
VALID = {"children_swapped", "leaf_feature_any"}


def test_scikit_learn_stages_take_the_one_pass(monkeypatch):
    p = _packed()
    assert _fast(p) and _each(p)
    built = []
    build_all = trees._PackedTrees.build_all
    monkeypatch.setattr(trees._PackedTrees, "build_all",
                        lambda self, ctx, paths: built.append(build_all(self, ctx, paths))
                        or built[-1])
    each = []
    monkeypatch.setattr(trees._PackedTrees, "build",
                        lambda self, i, ctx, at: each.append(i))  # never called
    model, X = _model_and_data()
    loaded = milo_pack.loads(milo_pack.dumps(model))
    assert len(built) == 1 and built[0] is not None and each == []
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    for q, o in zip(loaded.estimators_.reshape(-1), _stages(), strict=True):
        got, want = q.tree_.__getstate__()["nodes"], o.tree_.__getstate__()["nodes"]
        assert all(np.array_equal(got[f], want[f]) for f in want.dtype.names)  # not padding
        assert q.tree_.max_depth == o.tree_.max_depth


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_pass_decides_as_each_tree(name):
    p = _packed()
    CASES[name](p)
    fast, each = _fast(p), _each(p)
    assert fast == each
    assert each == (name in VALID), name


def test_one_pass_under_random_corruption():
    rng = np.random.default_rng(13)
    refused = 0
    for _ in range(600):
        p = _packed()
        n = p["records"].shape[0]
        for _ in range(int(rng.integers(1, 3))):
            what = int(rng.integers(5))
            if what == 4:
                tree = int(rng.integers(p["depths"].shape[0]))
                p["depths"][tree] += int(rng.integers(-2, 3))
                continue
            field = ("left_child", "right_child", "feature", "feature")[what]
            at = int(rng.integers(n))
            high = N_FEATURES + 2 if field == "feature" else 16
            p["records"][field][at] = int(rng.integers(-2, high))
        fast, each = _fast(p), _each(p)
        assert fast == each
        refused += not each
    assert refused > 200


def _crafted(p: dict[str, np.ndarray]) -> bytes:
    """The model saved with the (corrupted) trees of ``p``: nodes, values, depths, counts."""
    model, _ = _model_and_data()
    model = copy.deepcopy(model)
    start = 0
    for stage, count, depth in zip(model.estimators_.reshape(-1), p["counts"].tolist(),
                                   p["depths"].tolist(), strict=True):
        old = stage.tree_
        tree = Tree(old.n_features, old.n_classes, old.n_outputs)
        if count >= 1:
            tree.__setstate__({"max_depth": depth, "node_count": count,
                               "nodes": p["records"][start:start + count].copy(),
                               "values": p["values"][start:start + count].copy()})
        stage.tree_ = tree
        start += max(count, 0)
    return milo_pack.dumps(model)


def _outcome(data: bytes, lazy: bool = False) -> object:
    _, X = _model_and_data()
    try:
        if lazy:
            with milo_pack.open(data) as handle:
                return handle.load(lazy=True, cache_bytes=0).predict_proba(X).tolist()
        return milo_pack.loads(data).predict_proba(X).tolist()
    except MiloError as exc:
        return type(exc).__name__, str(exc)


# Crafted through a model whose trees hold the corruption: counts must stay positive.
FILE_CASES = sorted(name for name in CASES if name != "nodes_shifted")


@pytest.mark.parametrize("name", FILE_CASES)
def test_loads_refuse_alike_with_and_without_the_one_pass(name, monkeypatch):
    p = _packed()
    CASES[name](p)
    crafted = _crafted(p)
    fast = _outcome(crafted)
    lazy = _outcome(crafted, lazy=True)
    monkeypatch.setattr(trees._PackedTrees, "build_all", lambda self, ctx, paths: None)
    each = _outcome(crafted)
    assert fast == each
    if name in VALID:
        assert not isinstance(fast, tuple), fast
    else:
        assert isinstance(fast, tuple) and fast[0] == "InvariantError", fast
        assert isinstance(lazy, tuple) and lazy[0] == "InvariantError", lazy
        assert lazy[1].split(": ", 1)[1:] == fast[1].split(": ", 1)[1:] or (
            "max_depth" in fast[1] and "max_depth" in lazy[1])


def test_shifted_node_counts_refused_alike(monkeypatch):
    def shift(manifest: dict) -> None:
        counts = manifest["root"]["attrs"]["estimators_"]["trees"]["node_count"]
        values = p["counts"].tolist()
        values[0] -= 2
        values[1] += 2
        manifest["root"]["attrs"]["estimators_"]["trees"]["node_count"] = {
            "$type": "numpy.ndarray", "dtype": "<i8", "shape": counts["shape"], "data": values}

    p = _packed()
    model, _ = _model_and_data()
    crafted = manifest_edit(milo_pack.dumps(model), shift)
    fast = _outcome(crafted)
    monkeypatch.setattr(trees._PackedTrees, "build_all", lambda self, ctx, paths: None)
    assert _outcome(crafted) == fast
    assert isinstance(fast, tuple) and fast[0] == "InvariantError", fast


# -- the members' fitted checks at once -----------------------------------------------------------


def _members() -> list[DecisionTreeRegressor]:
    """Stages as a pack builds them: every attribute the same object, but the tree."""
    stages = [copy.deepcopy(s) for s in _stages()]
    first = stages[0].__dict__
    for s in stages[1:]:
        for name in first:
            if name != "tree_":
                s.__dict__[name] = first[name]
    return stages


def _paths(i: int) -> str:
    return f"estimators_[{i}]"


def _each_fitted(members: list) -> object:
    try:
        for i, m in enumerate(members):
            check_fitted(m, _paths(i))
    except InvariantError as exc:
        return str(exc)
    return True


def _other_tree(n_features: int = N_FEATURES, n_outputs: int = 1, n_classes: int = 1) -> Tree:
    tree = Tree(n_features, np.array([n_classes] * n_outputs, dtype=np.intp), n_outputs)
    nodes = np.zeros(1, dtype=_stages()[0].tree_.__getstate__()["nodes"].dtype)
    nodes["left_child"] = nodes["right_child"] = -1
    tree.__setstate__({"max_depth": 0, "node_count": 1, "nodes": nodes,
                       "values": np.zeros((1, n_outputs, n_classes))})
    return tree


MEMBER_CASES = {
    "same": lambda ms: None,
    "other_param_object": lambda ms: ms[3].__dict__.__setitem__(
        "min_weight_fraction_leaf", float(str(ms[0].min_weight_fraction_leaf))),
    "param_refused": lambda ms: ms[4].__dict__.__setitem__("criterion", "nonsense"),
    "first_param_refused": lambda ms: ms[0].__dict__.__setitem__("min_samples_leaf", -1),
    "n_features_in_other": lambda ms: ms[2].__dict__.__setitem__("n_features_in_", 7),
    "tree_more_features": lambda ms: ms[1].__dict__.__setitem__("tree_", _other_tree(7)),
    "tree_two_outputs": lambda ms: ms[5].__dict__.__setitem__("tree_", _other_tree(n_outputs=2)),
    "tree_classes": lambda ms: ms[2].__dict__.__setitem__("tree_", _other_tree(n_classes=3)),
    "tree_not_a_tree": lambda ms: ms[1].__dict__.__setitem__("tree_", object()),
    "tree_missing": lambda ms: ms[3].__dict__.pop("tree_"),
    "extra_attribute": lambda ms: ms[2].__dict__.__setitem__("predict", 1),
    "attribute_order": lambda ms: ms[1].__dict__.__setitem__(
        "criterion", ms[1].__dict__.pop("criterion")),
    "n_outputs_other": lambda ms: ms[4].__dict__.__setitem__("n_outputs_", 2),
}


@pytest.mark.parametrize("name", sorted(MEMBER_CASES))
def test_fitted_alike_accepts_only_what_each_check_accepts(name):
    members = _members()
    MEMBER_CASES[name](members)
    each = _each_fitted(members)
    try:
        alike: object = check_fitted_alike(members, _paths)
    except InvariantError as exc:
        alike = str(exc)  # the first member's own error
    if alike is True:
        assert each is True, name
    elif alike is not False:
        assert alike == each, name  # raised for the first member: the same error
    if name == "same":
        assert alike is True
    if name in ("other_param_object", "tree_classes", "attribute_order"):
        # Each passes (a regressor's tree may have classes: the ensemble's member rule
        # refuses that), but the proof does not hold: the caller checks each.
        assert each is True and alike is False, name
    if name in ("n_features_in_other", "tree_more_features", "tree_two_outputs",
                "tree_not_a_tree", "tree_missing", "param_refused",
                "first_param_refused", "extra_attribute", "n_outputs_other"):
        assert each is not True and alike is not True, name


def _varying(name: str, values: list) -> object:
    def edit(manifest: dict) -> None:
        node = manifest["root"]["attrs"]["estimators_"]
        node["shared"].pop(name)
        node["varying"][name] = values
    return edit


@pytest.mark.parametrize("lazy", [False, True])
def test_members_not_alike_are_checked_each(lazy, monkeypatch):
    """A varying parameter (one object per member): the proof does not hold, every member is
    checked on its own, and the refusal names the member, as without the pass."""
    from milo_pack.handlers import invariants

    model, _ = _model_and_data()
    count = len(_stages())
    data = milo_pack.dumps(model)
    # Equal values, one float object each: a valid model, checked member by member.
    valid = manifest_edit(data, _varying("min_weight_fraction_leaf", [0.0] * count))
    bad = manifest_edit(data, _varying("min_weight_fraction_leaf",
                                       [0.0] * 3 + [-1.0] + [0.0] * (count - 4)))
    calls = []
    alike = invariants.check_fitted_alike
    monkeypatch.setattr(invariants, "check_fitted_alike",
                        lambda *a: calls.append(alike(*a)) or calls[-1])
    fast_valid, fast_bad = _outcome(valid, lazy), _outcome(bad, lazy)
    assert calls == ([] if lazy else [False, False])
    assert fast_valid == _outcome(data, lazy) and not isinstance(fast_valid, tuple)
    assert isinstance(fast_bad, tuple) and fast_bad[0] == "InvariantError", fast_bad
    assert "estimators_[3]" in fast_bad[1] and "min_weight_fraction_leaf" in fast_bad[1]
    monkeypatch.setattr(trees._PackedTrees, "build_all", lambda self, ctx, paths: None)
    assert _outcome(bad, lazy) == fast_bad


# -- lists of members checked at once (the kinds' check_all) --------------------------------------


def test_list_kinds_check_at_once_as_the_loop_does():
    """``Seq``/``Instance`` answer for whole member lists in one pass: each case gets the
    loop's answer (acceptance and bound dimensions, or the loop's message)."""
    from milo_pack.handlers.invariants.kinds import Env, Instance, Kind, Reject, Seq

    model, _ = _model_and_data()
    good, other = list(model.estimators_.reshape(-1)), model.init_
    grid = Seq(Seq(Instance("sklearn.tree._classes", "DecisionTreeRegressor"), length="K"),
               length="S", min_length=1)
    cases = {
        "valid": [good[:2], good[2:4], good[4:6]],
        "one_short": [good[:2], good[2:3], good[4:6]],
        "first_short": [good[:1], good[2:4], good[4:6]],
        "not_a_list": [good[:2], tuple(good[2:4]), good[4:6]],
        "not_a_tree": [good[:2], [good[2], other], good[4:6]],
        "first_not_a_tree": [[other, good[1]], good[2:4]],
        "empty_rows": [[], []],
    }
    for name, value in cases.items():
        outcomes = []
        for check in (grid.item.check_all, lambda v, env: Kind.check_all(grid.item, v, env)):
            env = Env(None, {}, "x")
            try:
                check(value, env)
                outcomes.append(("ok", dict(env.dims)))
            except Reject as exc:
                outcomes.append(("refused", str(exc)))
        fast, loop = outcomes
        assert fast == loop, name
        assert (fast[0] == "ok") == (name in ("valid", "empty_rows")), name
    assert Seq.check_all is not Kind.check_all and Instance.check_all is not Kind.check_all


GB_MEMBER_CASES = {
    "valid": lambda s: None,
    "numpy_feature_count": lambda s: s.__dict__.__setitem__("n_features_in_", np.int64(N_FEATURES)),
    "other_feature_count": lambda s: s.__dict__.__setitem__("n_features_in_", N_FEATURES + 1),
    "tree_more_features": lambda s: s.__dict__.__setitem__("tree_", _other_tree(N_FEATURES + 2)),
    "tree_two_outputs": lambda s: s.__dict__.__setitem__("tree_", _other_tree(n_outputs=2)),
    "tree_classes": lambda s: s.__dict__.__setitem__("tree_", _other_tree(n_classes=3)),
    "tree_missing": lambda s: s.__dict__.pop("tree_"),
}


@pytest.mark.parametrize("name", sorted(GB_MEMBER_CASES))
def test_gb_member_rule_decides_alike_with_and_without_the_pass(name, monkeypatch):
    """The ensemble's rule on every stage (``specs._gb_members``): one pass over all stages,
    else stage by stage; both decide alike (and name the same stage)."""
    from milo_pack.handlers.invariants import specs

    model, _ = _model_and_data()
    model = copy.deepcopy(model)
    GB_MEMBER_CASES[name](model.estimators_.reshape(-1)[4])

    def outcome() -> object:
        try:
            check_fitted(model, "")
        except InvariantError as exc:
            return str(exc)
        return True

    fast = outcome()
    monkeypatch.setattr(specs, "_gb_members_pass", lambda *args: False)
    assert outcome() == fast
    assert (fast is True) == (name in ("valid", "numpy_feature_count")), fast
    if fast is not True:
        assert "estimators_[4]" in fast, fast
