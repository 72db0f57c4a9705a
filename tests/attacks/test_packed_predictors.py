"""The one-pass check of packed HistGradientBoosting predictors refuses what the check of each
predictor refuses.

``packed_predictors_pass`` checks every predictor of a packed node at once; where it refuses, the
load checks predictor by predictor (``_check_tree_predictor``), which raises the precise error.
So it may only accept what every per-predictor check accepts: crafted and random corruptions of
the node columns and counts are run against both, then through whole loads with and without the
one pass.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import milo_pack
from milo_pack.errors import InvariantError, MiloError
from milo_pack.handlers import trees
from milo_pack.handlers.invariants.state import _check_tree_predictor

from .craft import manifest_edit

_BITSETS = ("binned_left_cat_bitsets", "raw_left_cat_bitsets")


@functools.lru_cache(maxsize=1)
def _model_and_data() -> tuple[object, np.ndarray, bytes]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4))
    X[:, 0] = rng.integers(0, 6, size=600)  # categorical
    y = (X[:, 0] % 3 + (X[:, 1] > 0)).astype(int) % 3
    model = HistGradientBoostingClassifier(max_iter=4, categorical_features=[0],
                                           random_state=0).fit(X, y)
    data = milo_pack.dumps(model)
    assert milo_pack.inspect(data)["root"]["attrs"]["_predictors"]["$type"] == \
        "sklearn.hist_gradient_boosting.predictors"
    return model, X, data


def _packed() -> dict[str, np.ndarray]:
    model, _, _ = _model_and_data()
    predictors = [p for row in model._predictors for p in row]  # type: ignore[attr-defined]
    packed = {"records": np.concatenate([p.nodes for p in predictors]),
              "nodes": np.array([p.nodes.shape[0] for p in predictors], dtype=np.int64)}
    for name in _BITSETS:
        packed[name] = np.concatenate([getattr(p, name) for p in predictors])
        packed[f"n_{name}"] = np.array([getattr(p, name).shape[0] for p in predictors],
                                       dtype=np.int64)
    return packed


def _fast(p: dict[str, np.ndarray]) -> bool:
    return trees.packed_predictors_pass(p["records"], p["nodes"], p[f"n_{_BITSETS[0]}"],
                                        p[f"n_{_BITSETS[1]}"])


def _each(p: dict[str, np.ndarray]) -> bool:
    """What checking predictor by predictor decides (the counts must add up, as the load
    checks before)."""
    ends = {k: np.cumsum(p[k]) for k in ("nodes", *(f"n_{b}" for b in _BITSETS))}
    if int(ends["nodes"][-1]) != p["records"].shape[0] or any(
            np.any(p[f"n_{b}"] < 0) or int(ends[f"n_{b}"][-1]) != p[b].shape[0]
            for b in _BITSETS) or np.any(p["nodes"] < 0):
        return False
    for i in range(p["nodes"].shape[0]):
        state = {}
        for key, array in (("nodes", p["records"]), *((b, p[b]) for b in _BITSETS)):
            count = p[key] if key == "nodes" else p[f"n_{key}"]
            stop = int(ends[key if key == "nodes" else f"n_{key}"][i])
            state[key] = np.ascontiguousarray(array[stop - int(count[i]):stop])
        try:
            _check_tree_predictor(state, f"p[{i}]")
        except InvariantError:
            return False
    return True


def _set(field: str, at: int, value: int) -> object:
    def edit(p: dict[str, np.ndarray]) -> None:
        p["records"][field][at] = value
    return edit


def _first(p: dict[str, np.ndarray], where: np.ndarray) -> int:
    return int(np.flatnonzero(where)[0])


def _inner(p: dict[str, np.ndarray]) -> int:
    return _first(p, p["records"]["is_leaf"] == 0)


def _second_inner(p: dict[str, np.ndarray]) -> int:
    return int(np.flatnonzero(p["records"]["is_leaf"] == 0)[1])


def _categorical(p: dict[str, np.ndarray]) -> int:
    r = p["records"]
    return _first(p, (r["is_leaf"] == 0) & (r["is_categorical"] != 0))


CASES = {
    "left_out_of_range": lambda p: _set("left", _inner(p), int(p["nodes"][0]))(p),
    "right_out_of_range": lambda p: _set("right", _inner(p), 10**6)(p),
    "left_to_root": lambda p: _set("left", _inner(p), 0)(p),
    "left_is_self": lambda p: _set("left", _second_inner(p), _second_inner(p))(p),
    "left_equals_right": lambda p: _set(
        "left", _inner(p), int(p["records"]["right"][_inner(p)]))(p),
    "cycle": lambda p: _set("right", _second_inner(p), 0)(p),
    "leaf_becomes_inner": lambda p: _set(
        "is_leaf", _first(p, p["records"]["is_leaf"] != 0), 0)(p),
    "inner_becomes_leaf": lambda p: _set("is_leaf", _second_inner(p), 1)(p),
    "negative_feature": lambda p: _set("feature_idx", _inner(p), -1)(p),
    "huge_feature": lambda p: _set("feature_idx", _inner(p), 1 << 62)(p),
    "bitset_past_rows": lambda p: _set("bitset_idx", _categorical(p), 10**6)(p),
    "bitset_at_row_count": lambda p: _set(
        "bitset_idx", _categorical(p), int(p[f"n_{_BITSETS[0]}"][0]))(p),
    "split_becomes_categorical": lambda p: _set("is_categorical", _second_inner(p), 1)(p),
    "fewer_raw_rows": lambda p: (p[f"n_{_BITSETS[1]}"].__setitem__(0, 0),
                                 p[f"n_{_BITSETS[1]}"].__setitem__(1, p[f"n_{_BITSETS[1]}"][1]
                                                                    + 1)),
    "empty_predictor": lambda p: (p["nodes"].__setitem__(1, p["nodes"][1] + p["nodes"][0]),
                                  p["nodes"].__setitem__(0, 0)),
    "nodes_shifted": lambda p: (p["nodes"].__setitem__(0, p["nodes"][0] - 1),
                                p["nodes"].__setitem__(1, p["nodes"][1] + 1)),
    "children_swapped": lambda p: _swap_children(p),
    "renumbered": lambda p: _renumber(p),
}
# Valid predictors: each check accepts them, and so does the one pass (it walks each
# predictor as its own check does, so children numbered before their parents pass too).
VALID = {"children_swapped": True, "renumbered": True, "split_becomes_categorical": True}


def _swap_children(p: dict[str, np.ndarray]) -> None:
    r, at = p["records"], _inner(p)
    r["left"][at], r["right"][at] = int(r["right"][at]), int(r["left"][at])


def _renumber(p: dict[str, np.ndarray]) -> None:
    """The first predictor's nodes but the root in reverse order: children before parents."""
    n = int(p["nodes"][0])
    assert n > 3
    new = np.array([0, *range(n - 1, 0, -1)])  # old index -> new index
    old = p["records"][:n].copy()
    moved = old.copy()
    moved[new] = old
    inner = moved["is_leaf"] == 0
    moved["left"][inner] = new[moved["left"][inner]]
    moved["right"][inner] = new[moved["right"][inner]]
    p["records"][:n] = moved


def test_scikit_learn_predictors_take_the_one_pass(monkeypatch):
    p = _packed()
    assert p["records"]["is_categorical"][p["records"]["is_leaf"] == 0].any()
    assert _fast(p) and _each(p)
    built = []
    build_all = trees._PackedPredictors.build_all
    monkeypatch.setattr(trees._PackedPredictors, "build_all",
                        lambda self: built.append(build_all(self)) or built[-1])
    model, X, data = _model_and_data()
    loaded = milo_pack.loads(data)
    assert len(built) == 1 and built[0] is not None
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    for row, orig in zip(loaded._predictors, model._predictors, strict=True):
        for q, o in zip(row, orig, strict=True):
            assert q.nodes.tobytes() == o.nodes.tobytes()
            assert all(np.array_equal(getattr(q, b), getattr(o, b)) for b in _BITSETS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_pass_accepts_only_what_each_check_accepts(name):
    p = _packed()
    CASES[name](p)
    fast, each = _fast(p), _each(p)
    assert fast == each
    if name in VALID:
        assert each and fast == VALID[name]
    else:
        assert not each, name


def test_one_pass_under_random_corruption():
    rng = np.random.default_rng(13)
    fields = ("left", "right", "is_leaf", "feature_idx", "is_categorical", "bitset_idx")
    refused = 0
    for _ in range(600):
        p = _packed()
        for _ in range(int(rng.integers(1, 3))):
            field = fields[int(rng.integers(len(fields)))]
            at = int(rng.integers(p["records"].shape[0]))
            high = {"is_leaf": 2, "is_categorical": 2, "feature_idx": 6,
                    "bitset_idx": 3}.get(field, 12)
            p["records"][field][at] = int(rng.integers(0, high))
        fast, each = _fast(p), _each(p)
        assert fast == each
        refused += not each
    assert refused > 100


def _crafted(p: dict[str, np.ndarray]) -> bytes:
    """The model saved with the (corrupted) node columns, then its counts set to ``p``'s."""
    import copy

    model, _, _ = _model_and_data()
    model = copy.deepcopy(model)
    predictors = [q for row in model._predictors for q in row]  # type: ignore[attr-defined]
    start = 0
    for q in predictors:
        stop = start + q.nodes.shape[0]
        q.nodes = p["records"][start:stop].copy()
        start = stop
    assert start == p["records"].shape[0]

    def counts(manifest: dict) -> None:
        node = manifest["root"]["attrs"]["_predictors"]["counts"]
        node["nodes"]["data"] = p["nodes"].tolist()
        for b in _BITSETS:
            node[b]["data"] = p[f"n_{b}"].tolist()

    return manifest_edit(milo_pack.dumps(model), counts)


def _outcome(data: bytes, X: np.ndarray) -> object:
    try:
        return milo_pack.loads(data).predict_proba(X).tolist()
    except MiloError as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("name", sorted(CASES))
def test_loads_refuse_alike_with_and_without_the_one_pass(name, monkeypatch):
    _, X, _ = _model_and_data()
    p = _packed()
    CASES[name](p)
    crafted = _crafted(p)
    fast = _outcome(crafted, X)
    monkeypatch.setattr(trees._PackedPredictors, "build_all", lambda self: None)
    each = _outcome(crafted, X)
    assert fast == each
    if name not in VALID:
        assert isinstance(fast, tuple) and fast[0] in ("InvariantError", "ArrayError"), fast


# The estimator's rule on every member (``specs._hgb_members``): one pass over the members'
# shared record array, or over their concatenated columns, else member by member.
SPLIT_CASES = {
    "feature_at_n_features": lambda p: _set("feature_idx", _second_inner(p), 4)(p),
    "feature_far_past": lambda p: _set("feature_idx", _inner(p), 1 << 40)(p),
    "categorical_on_numeric_feature": lambda p: (
        _set("is_categorical", _second_inner(p), 1)(p),
        _set("feature_idx", _second_inner(p), 2)(p),
        _set("bitset_idx", _second_inner(p), 0)(p)),
    "numeric_on_categorical_feature": lambda p: _set("is_categorical", _categorical(p), 0)(p),
}


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("name", sorted(SPLIT_CASES))
def test_member_rule_refuses_alike_with_and_without_the_one_pass(name, lazy, monkeypatch):
    from milo_pack.handlers.invariants import specs

    _, X, _ = _model_and_data()
    p = _packed()
    SPLIT_CASES[name](p)
    assert _each(p)  # the predictors' own check cannot tell: the estimator's rule must
    crafted = _crafted(p)

    def outcome() -> object:
        if not lazy:
            return _outcome(crafted, X)
        try:
            with milo_pack.open(crafted) as handle:
                return handle.load(lazy=True, cache_bytes=0).predict_proba(X).tolist()
        except MiloError as exc:
            return type(exc).__name__, str(exc)

    fast = outcome()
    monkeypatch.setattr(specs, "_hgb_splits_pass", lambda *args: False)
    monkeypatch.setattr(trees._PackedPredictors, "build_all", lambda self: None)
    each = outcome()
    assert fast == each
    if name != "numeric_on_categorical_feature":  # a numeric split may use any feature
        assert isinstance(fast, tuple) and fast[0] == "InvariantError", fast
