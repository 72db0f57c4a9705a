"""Model invariants: structures native code trusts are refused at load, before any use.

The hostile files are made by corrupting a fitted model in memory (scikit-learn's setters
accept anything) and saving it: ``dump`` writes what it is given, so the file is canonical and
only the invariant is broken.  Loading runs in a subprocess, then predicts if the load
succeeded, so a missed check shows up as a crash instead of killing pytest.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.tree._tree import Tree

import milo_pack
from milo_pack.errors import InvariantError, ManifestError

from .craft import isolated_outcomes, make_model, manifest_edit, model_file, refused


def _set_tree(tree: Tree, **nodes_or_state) -> None:
    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    for name, fn in nodes_or_state.items():
        if name in nodes.dtype.names:
            fn(nodes[name])
        else:
            state[name] = fn(state[name])
    tree.__setstate__({**state, "nodes": nodes})


def _at(i, value):
    def fn(column):
        column[i] = value
    return fn


def _deepest_inner(tree):
    """An inner node whose children are leaves."""
    left, right = tree.children_left, tree.children_right
    return next(i for i in range(tree.node_count)
                if left[i] != -1 and left[left[i]] == -1 and left[right[i]] == -1)


def _tree_case(**changes):
    def make():
        model = make_model("tree")
        _set_tree(model.tree_, **changes)
        return model
    return make


TREES = [
    ("child_out_of_range", _tree_case(left_child=_at(0, 10**6))),
    ("child_far_out_of_range", _tree_case(right_child=_at(0, 2**40))),
    ("self_loop", _tree_case(left_child=_at(0, 0))),
    ("node_reached_twice", _tree_case(right_child=_at(0, 1))),
    ("feature_too_big", _tree_case(feature=_at(0, 4))),
    ("feature_negative", _tree_case(feature=_at(0, -5))),
    ("max_depth_understated", _tree_case(max_depth=lambda d: d - 2)),
    ("max_depth_overstated", _tree_case(max_depth=lambda d: d + 1)),
]


def _leaf_loop():
    model = make_model("tree")
    tree = model.tree_
    i = _deepest_inner(tree)
    leaf = int(tree.children_left[i])
    _set_tree(tree, left_child=_at(leaf, i), right_child=_at(leaf, 0), feature=_at(leaf, 0))
    return model


def _n_features_disagree():
    model = make_model("tree")
    model.n_features_in_ = 1  # the tree reads X[:, 0..3] while predict lets 1 column in
    return model


def _forest_tree_corrupt():
    model = make_model("forest")
    _set_tree(model.estimators_[2].tree_, left_child=_at(0, 10**7))
    return model


def _gb_stage_width():
    from sklearn.ensemble import GradientBoostingRegressor

    from .craft import data_xy

    X, y = data_xy()
    model = GradientBoostingRegressor(n_estimators=2, max_depth=2).fit(X, y)
    model.estimators_ = np.concatenate([model.estimators_] * 3, axis=1)  # writes past column 0
    return model


def _numpy_n_features(make, drop=False):
    """The fail-open of issue 10: checks skipped when n_features_in_ was a numpy integer or
    missing; now a numpy integer counts as the int it is and a missing one is refused."""
    def build():
        model = make()
        if drop:
            del model.n_features_in_
        else:
            model.n_features_in_ = np.int64(model.n_features_in_)
        return model
    return build


def _member_wider(name, index=0):
    """A member tree over more features than its ensemble (its predict runs with
    check_input=False, so it would read past X)."""
    def build():
        from sklearn.tree import DecisionTreeClassifier, ExtraTreeRegressor

        from .craft import data_xy

        model = make_model(name) if name in ("forest", "deep_forest") else name()
        X, y = data_xy(6)
        member = model.estimators_[index]
        wide = (ExtraTreeRegressor(max_depth=3, random_state=0).fit(X, y)
                if type(member).__name__ == "ExtraTreeRegressor"
                else DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y))
        model.estimators_[index] = wide
        return model
    return build


def _iforest():
    from sklearn.ensemble import IsolationForest

    from .craft import data_xy

    return IsolationForest(n_estimators=3, max_features=3, random_state=0).fit(data_xy()[0])


def _hgb_feature_past_x():
    model = _hgb(feature_idx=_set_inner(7))()  # X has 4 columns
    model.n_features_in_ = np.int64(4)
    return model


def _kmeans_narrow():
    model = make_model("kmeans")
    model.cluster_centers_ = model.cluster_centers_[:, :2].copy()
    return model


def _logreg_narrow():
    model = make_model("logreg")
    model.coef_ = model.coef_[:, :2].copy()
    return model


OTHER = [
    ("gb_width_numpy_n_features", _numpy_n_features(_gb_stage_width), 4),
    ("gb_width_no_n_features", _numpy_n_features(_gb_stage_width, drop=True), 4),
    ("hgb_feature_numpy_n_features", _hgb_feature_past_x, 4),
    ("kmeans_numpy_n_features", _numpy_n_features(_kmeans_narrow), 4),
    ("kmeans_no_n_features", _numpy_n_features(_kmeans_narrow, drop=True), 4),
    ("coef_numpy_n_features", _numpy_n_features(_logreg_narrow), 4),
    ("packed_member_wider", _member_wider("forest", 1), 4),
    ("deep_member_wider", _member_wider("deep_forest", 0), 4),
    ("iforest_member_wider", _member_wider(_iforest, 2), 4),
    ("cycle", _leaf_loop, 4),
    ("tree_vs_estimator_features", _n_features_disagree, 1),
    ("forest_one_bad_tree", _forest_tree_corrupt, 4),
    ("gradient_boosting_stage_width", _gb_stage_width, 4),
]


def _tree_manifest(edit):
    def apply(doc):
        edit(doc["root"]["attrs"]["tree_"])
    return manifest_edit(model_file("tree"), apply)


@pytest.mark.parametrize("edit, error", [
    (lambda t: t.update(node_count=t["node_count"] + 1), InvariantError),
    (lambda t: t.update(n_outputs=0), ManifestError),
    (lambda t: t.update(n_features="4"), ManifestError),
    (lambda t: t["n_classes"].update(data=[7]), InvariantError),
    (lambda t: t.update(values={"$type": "numpy.ndarray", "dtype": "<f8", "shape": [1],
                                "data": [0.0]}), InvariantError),
], ids=["node_count_vs_rows", "n_outputs_zero", "n_features_string", "n_classes_vs_values",
        "values_wrong_shape"])
def test_tree_manifest_fields(edit, error):
    refused(_tree_manifest(edit), error)


_TREE_COUNTS = {
    "n_outputs_list": ("n_outputs_", [3, 1]),
    "n_outputs_two": ("n_outputs_", 2),
    "n_features_none": ("n_features_in_", None),
    "n_classes_wrong": ("n_classes_", {"$type": "numpy.scalar", "dtype": "<i8", "value": 7}),
    "classes_too_short": ("classes_", {"$type": "numpy.ndarray", "dtype": "<i8", "shape": [1],
                                       "data": [0]}),
}


@pytest.mark.parametrize("name", sorted(_TREE_COUNTS))
@pytest.mark.parametrize("model", ["tree", "forest"])
def test_tree_estimator_counts_must_match_its_tree(name, model):
    """Predict sizes outputs from the estimator's counts and fills them from ``tree_``: a
    mismatch is refused at load (packed or not), not left to fail inside predict."""
    attr, value = _TREE_COUNTS[name]

    def edit(doc):
        if model == "tree":
            doc["root"]["attrs"][attr] = value
            return
        pack = doc["root"]["attrs"]["estimators_"]
        pack["varying"].pop(attr, None)
        pack["shared"][attr] = value
        if attr not in pack["fields"]:
            pack["fields"].append(attr)

    refused(manifest_edit(model_file(model), edit), InvariantError)


@pytest.mark.parametrize("value", [None, 7, "x"])
def test_tree_must_be_a_tree(value):
    # Crafted in memory and written by dump: the file is canonical (removing the tree from the
    # manifest would leave its section data uncovered, refused before any invariant).
    model = make_model("deep_forest")
    model.estimators_[1].tree_ = value
    error = refused(milo_pack.dumps(model), InvariantError)
    assert "tree_ must be a Tree" in str(error)


@pytest.mark.parametrize("value", [None, 7, "x", [1, 2]])
def test_ensemble_members_must_be_estimators(value):
    model = make_model("deep_forest")  # a non-tree member: the trees are not packed
    model.estimators_[1] = value
    error = refused(milo_pack.dumps(model), InvariantError)
    assert "estimators_ item 1 must be a BaseDecisionTree" in str(error)


def test_forest_trees_must_have_the_forest_features():
    # The forest validates X against its n_features_in_ (and its first tree): a later tree over
    # more features would read past each row of X.  Refused eagerly, and lazily when built.
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    from ..common import noisy_data

    X, y = noisy_data(1000, 12)
    forest = RandomForestClassifier(4, random_state=0).fit(X, y)
    forest.estimators_[0] = DecisionTreeClassifier(random_state=0).fit(X[:, :2], y)
    forest.n_features_in_ = 2
    data = milo_pack.dumps(forest)
    with pytest.raises(InvariantError, match=r"estimators_\[1\] must be a tree over the "
                                             r"estimator's 2 features"):
        milo_pack.loads(data)
    with milo_pack.open(data) as handle:
        lazy = handle.load(lazy=True, cache_bytes=0)
        with pytest.raises(InvariantError, match="must be a tree over the estimator's 2"):
            lazy.predict(np.zeros((3, 2)))


# -- HistGradientBoosting predictors ----------------------------------------------------------


def _hgb(name="hgb", **columns):
    def make():
        model = make_model(name)
        nodes = next((p.nodes for stage in model._predictors for p in stage
                      if ((p.nodes["is_leaf"] == 0) & (p.nodes["is_categorical"] != 0)).any()),
                     model._predictors[1][0].nodes)
        for column, fn in columns.items():
            fn(nodes[column], nodes)
        return model
    return make


def _inner(nodes, categorical=None):
    mask = nodes["is_leaf"] == 0
    if categorical is not None:
        mask &= (nodes["is_categorical"] != 0) == categorical
    return int(np.flatnonzero(mask)[0])


def _set_inner(value, categorical=None):
    return lambda col, nodes: col.__setitem__(_inner(nodes, categorical), value)


def _bitsets(name, value):
    def make():
        model = make_model("hgb_cat")
        setattr(model._predictors[0][0], name, value)
        return model
    return make


HGB = [
    ("left_child_out_of_range", _hgb(left=_set_inner(10**9))),
    ("right_child_self_loop", _hgb(right=_set_inner(0))),
    ("feature_ge_n_features", _hgb(feature_idx=_set_inner(4))),
    ("feature_negative", _hgb(feature_idx=_set_inner(-1))),
    ("categorical_bitset_past_end", _hgb("hgb_cat", bitset_idx=_set_inner(50, True))),
    ("categorical_on_numeric_feature", _hgb("hgb_cat", is_categorical=_set_inner(1, False))),
    ("bitsets_wrong_width", _bitsets("raw_left_cat_bitsets", np.zeros((1, 7), np.uint32))),
    ("bitsets_wrong_dtype", _bitsets("raw_left_cat_bitsets", np.zeros((1, 8), np.int64))),
]


def _hgb_nodes_dtype():
    model = make_model("hgb")
    nodes = model._predictors[0][0].nodes
    model._predictors[0][0].nodes = nodes[["left", "right", "is_leaf", "feature_idx"]]
    return model


HGB.append(("nodes_dtype", _hgb_nodes_dtype))


# -- KD and Ball trees ------------------------------------------------------------------------


def _binary_tree(index, change, name="knn"):
    def make():
        model = make_model(name)
        state = list(model._tree.__getstate__())
        state[index] = change(state[index])
        model._tree.__setstate__(tuple(state))
        return model
    return make


def _idx(fn):
    def change(idx):
        idx = idx.copy()
        fn(idx)
        return idx
    return change


def _node_data(field, value, node=0):
    def change(nd):
        nd = nd.copy()
        nd[field][node] = value
        return nd
    return change


NEIGHBORS = [
    ("idx_out_of_range", _binary_tree(1, _idx(lambda a: a.__setitem__(0, 10**6)))),
    ("idx_negative", _binary_tree(1, _idx(lambda a: a.__setitem__(3, -1)))),
    ("idx_not_permutation", _binary_tree(1, _idx(lambda a: a.__setitem__(0, a[1])))),
    ("node_idx_end_past_samples", _binary_tree(2, _node_data("idx_end", 10**6))),
    ("node_start_after_end", _binary_tree(2, _node_data("idx_end", 100, node=-1))),
    ("n_levels_vs_n_nodes", _binary_tree(5, lambda n: n + 3)),
    ("node_bounds_shape", _binary_tree(3, lambda b: b[:, :1].copy())),
    ("ball_tree_idx_out_of_range", _binary_tree(1, _idx(lambda a: a.__setitem__(0, 10**6)),
                                                "balltree_knn")),
    ("ball_tree_node_data", _binary_tree(2, _node_data("idx_end", 10**6), "balltree_knn")),
]


# -- sparse matrices --------------------------------------------------------------------------


def _sparse(edit, fmt="csr"):
    matrix = make_model("sparse").asformat(fmt)
    edit(matrix)
    return milo_pack.dumps(matrix)


SPARSE = [
    ("indptr_not_monotone", lambda m: m.indptr.__setitem__(3, m.indptr[5] + 1)),
    ("indices_out_of_range", lambda m: m.indices.__setitem__(0, 10**4)),
    ("indices_negative", lambda m: m.indices.__setitem__(0, -1)),
    ("indptr_end_vs_nnz", lambda m: m.indptr.__setitem__(-1, m.indptr[-1] - 1)),
    ("indptr_start_not_zero", lambda m: m.indptr.__setitem__(0, 1)),
]


@pytest.mark.parametrize("edit", [c[1] for c in SPARSE], ids=[c[0] for c in SPARSE])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_compressed(edit, fmt):
    refused(_sparse(edit, fmt), InvariantError)


def test_sparse_coo_row_out_of_range():
    def edit(m):
        m.row[0] = 30

    refused(_sparse(edit, "coo"), InvariantError)


def test_sparse_indptr_wrong_length():
    m = make_model("sparse")
    bad = sp.csr_matrix((m.data, m.indices, m.indptr), shape=m.shape)
    bad.indptr = bad.indptr[:-3]
    refused(milo_pack.dumps(bad), InvariantError)


# -- cross-attribute shapes -------------------------------------------------------------------


def _narrow(name, attr, fn):
    def make():
        model = make_model(name)
        setattr(model, attr, fn(getattr(model, attr)))
        return model
    return make


SHAPES = [
    ("logreg_coef_columns", _narrow("logreg", "coef_", lambda c: c[:, :2].copy())),
    ("logreg_coef_rows", _narrow("logreg", "coef_", lambda c: np.vstack([c, c]))),
    ("kmeans_centers_narrow", _narrow("kmeans", "cluster_centers_", lambda c: c[:, :1].copy())),
    ("svc_dual_coef_narrow", _narrow("svc", "_dual_coef_", lambda c: c[:, :1].copy())),
    ("svc_intercept_short", _narrow("svc", "_intercept_", lambda c: c[:0].copy())),
    ("svc_n_support_lies", _narrow("svc", "_n_support", lambda c: c * 3)),
    ("svc_support_vectors_narrow", _narrow("svc", "support_vectors_",
                                            lambda c: c[:, :1].copy())),
    ("svc_support_index_out_of_range", _narrow("svc", "support_", lambda c: c + 10**6)),
]


ISOLATED = {
    f"{family}.{case[0]}": (case[1], case[2] if len(case) > 2 else 4)
    for family, table in (("tree", TREES), ("ensemble", OTHER), ("hgb", HGB),
                          ("neighbors", NEIGHBORS), ("shapes", SHAPES))
    for case in table
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    cases = {name: (milo_pack.dumps(make()), n) for name, (make, n) in ISOLATED.items()}
    return isolated_outcomes(cases, tmp_path_factory.mktemp("invariants"))


@pytest.mark.parametrize("case", list(ISOLATED))
def test_refused_before_native_code(case, outcomes):
    assert outcomes[case] == "InvariantError"


@pytest.mark.parametrize("name", ["tree", "forest", "deep_forest", "hgb", "hgb_cat", "knn",
                                  "balltree_knn", "kmeans", "svc", "logreg", "pipeline"])
def test_valid_models_still_load_and_predict(name):
    from .craft import data_xy

    loaded = milo_pack.loads(model_file(name))
    X, _ = data_xy()
    if name == "hgb_cat":
        X = X.copy()
        X[:, 3] = (np.abs(X[:, 3]) * 3).astype(int)
    assert np.array_equal(loaded.predict(X), make_model(name).predict(X))


@pytest.mark.parametrize("name", ["packed_member_wider", "deep_member_wider",
                                  "iforest_member_wider", "gb_width_numpy_n_features"])
def test_lazily_built_members_are_checked_against_their_ensemble(name):
    """A lazy load defers members; each is checked against its ensemble when first built,
    before any of its state reaches native code."""
    make, n_features = ISOLATED[f"ensemble.{name}"]
    data = milo_pack.dumps(make())
    X = np.random.default_rng(0).standard_normal((20, n_features))
    with milo_pack.open(data) as handle:
        try:
            model = handle.load(lazy=True, cache_bytes=0)
        except InvariantError:
            return  # refused with the ensemble itself (its own attributes were wrong)
        method = model.decision_function if hasattr(model, "decision_function") else \
            model.predict
        with pytest.raises(InvariantError):
            method(X)


def test_a_check_that_cannot_run_refuses():
    """Fail closed: a declared check that raises anything (found by the predict fuzzers: a
    degree of ``[None]``, unhashable categories, a dtype numpy cannot read) is a refusal."""
    from sklearn.preprocessing import PolynomialFeatures

    from milo_pack.handlers.invariants.kinds import Env, Rule, Spec

    model = PolynomialFeatures(2).fit(np.eye(3))
    model.degree = [None]  # array-like: scikit-learn's constraint accepts it
    error = refused(milo_pack.dumps(model), InvariantError)
    assert "cannot be checked (TypeError)" in str(error)

    def explode(env):
        raise KeyError("anything")

    spec = Spec("x", ("builtins", "object"), "none", rules=(Rule("explodes", explode),))
    with pytest.raises(InvariantError, match="cannot be checked"):
        spec.check(Env(object(), {}, "where"))


def test_choice_names_plain_values_and_types_of_objects():
    """A Choice refusal quotes plain values, and names other objects by their type: unions try
    a Choice first, and an estimator's repr (scikit-learn's pretty-printer) is never built."""
    from sklearn.dummy import DummyRegressor

    from milo_pack.handlers.invariants.kinds import Choice, Env, Reject

    kind = Choice(("zero", None))
    assert kind.check("zero", Env(None, {}, "x")) == "zero"

    class NoRepr(DummyRegressor):
        def __repr__(self, N_CHAR_MAX: int = 700) -> str:
            raise AssertionError("repr was built")

    for value, shown in (("one", "'one'"), (3, "'3'"), (np.float64(1.5), "a float64"),
                         (NoRepr(), "a NoRepr"), ([1], "a list")):
        with pytest.raises(Reject) as caught:
            kind.check(value, Env(None, {}, "x"))
        assert str(caught.value) == f"must be one of ['zero', None], not {shown}"
