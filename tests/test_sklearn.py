"""scikit-learn families round-trip with identical predictions and fitted attributes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import is_classifier
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification, make_regression
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.ensemble import (
    BaggingClassifier,
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    IsolationForest,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
)
from sklearn.model_selection import GridSearchCV
from sklearn.naive_bayes import BernoulliNB, GaussianNB, MultinomialNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor, NearestNeighbors
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    LabelEncoder,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
)
from sklearn.svm import SVC, SVR, LinearSVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor, ExtraTreeClassifier

import milo_pack

from .common import assert_same, assert_same_predictions, noisy_data, roundtrip

Xc, yc = make_classification(n_samples=300, n_features=8, n_informative=5, n_classes=3,
                             random_state=0)
Xr, yr = make_regression(n_samples=300, n_features=8, noise=0.5, random_state=0)
X_pos = np.abs(Xc)
X_bin = (Xc > 0).astype(float)
y_str = np.array(["cat", "dog", "emu"], dtype=object)[yc]


def _categorical_data():
    rng = np.random.default_rng(0)
    colours = rng.choice(np.array(["red", "green", "blue", "teal"], dtype=object), 300)
    sizes = rng.choice(np.array(["S", "M", "L"], dtype=object), 300)
    numbers = rng.standard_normal((300, 2))
    X = np.empty((300, 4), dtype=object)
    X[:, 0], X[:, 1], X[:, 2:] = colours, sizes, numbers
    return X


X_cat = _categorical_data()
X_hgb_cat = np.column_stack([np.random.default_rng(1).integers(0, 6, 300), Xc[:, 1:]])

CASES = {
    # linear models
    "logistic": (lambda: LogisticRegression(max_iter=500), Xc, yc),
    "logistic_strings": (lambda: LogisticRegression(max_iter=500), Xc, y_str),
    "linear_regression": (LinearRegression, Xr, yr),
    "ridge": (Ridge, Xr, yr),
    "lasso": (lambda: Lasso(alpha=0.1), Xr, yr),
    "elasticnet": (lambda: ElasticNet(alpha=0.1), Xr, yr),
    "sgd": (lambda: SGDClassifier(random_state=0), Xc, yc),
    # SVMs
    "svc": (lambda: SVC(probability=True, random_state=0), Xc, yc),
    "svr": (SVR, Xr, yr),
    "linear_svc": (lambda: LinearSVC(random_state=0), Xc, yc),
    # naive Bayes
    "gaussian_nb": (GaussianNB, Xc, yc),
    "multinomial_nb": (MultinomialNB, X_pos, yc),
    "bernoulli_nb": (BernoulliNB, X_bin, y_str),
    # preprocessing, encoders, decomposition, clustering
    "standard_scaler": (StandardScaler, Xc, None),
    "minmax_scaler": (MinMaxScaler, Xc, None),
    "onehot_strings": (lambda: OneHotEncoder(handle_unknown="ignore"), X_cat[:, :2], None),
    "onehot_infrequent": (
        lambda: OneHotEncoder(min_frequency=80, handle_unknown="infrequent_if_exist"),
        X_cat[:, :2], None),
    "ordinal_strings": (OrdinalEncoder, X_cat[:, :2], None),
    "function_transformer": (lambda: FunctionTransformer(np.log1p), X_pos, None),
    "imputer": (SimpleImputer, np.where(Xc > 1, np.nan, Xc), None),
    "pca": (lambda: PCA(n_components=3, random_state=0), Xc, None),
    "truncated_svd": (lambda: TruncatedSVD(n_components=3, random_state=0), Xc, None),
    "kmeans": (lambda: KMeans(n_clusters=4, n_init=2, random_state=0), Xc, None),
    # neighbours
    "knn_kd_tree": (lambda: KNeighborsClassifier(algorithm="kd_tree"), Xc, yc),
    "knn_ball_tree": (lambda: KNeighborsRegressor(algorithm="ball_tree", leaf_size=5), Xr, yr),
    "knn_brute_minkowski": (lambda: KNeighborsClassifier(algorithm="brute", p=3), Xc, y_str),
    "nearest_neighbors_manhattan": (lambda: NearestNeighbors(metric="manhattan",
                                                             algorithm="ball_tree"), Xc, None),
    # trees and ensembles
    "decision_tree": (lambda: DecisionTreeClassifier(random_state=0), Xc, yc),
    "decision_tree_regressor": (lambda: DecisionTreeRegressor(max_depth=6, random_state=0),
                                Xr, yr),
    "extra_tree": (lambda: ExtraTreeClassifier(random_state=0), Xc, y_str),
    "random_forest": (lambda: RandomForestClassifier(n_estimators=15, random_state=0), Xc, yc),
    "random_forest_regressor": (lambda: RandomForestRegressor(n_estimators=10, random_state=0),
                                Xr, yr),
    "random_forest_multioutput": (lambda: RandomForestRegressor(n_estimators=5, random_state=0),
                                  Xr, np.column_stack([yr, yr ** 2])),
    "extra_trees": (lambda: ExtraTreesClassifier(n_estimators=10, random_state=0), Xc, y_str),
    "extra_trees_regressor": (lambda: ExtraTreesRegressor(n_estimators=10, random_state=0),
                              Xr, yr),
    "gradient_boosting": (lambda: GradientBoostingClassifier(n_estimators=20, random_state=0),
                          Xc, yc),
    "gradient_boosting_regressor": (
        lambda: GradientBoostingRegressor(n_estimators=30, loss="huber", random_state=0), Xr, yr),
    "hist_gradient_boosting": (
        lambda: HistGradientBoostingClassifier(max_iter=20, random_state=0), Xc, yc),
    "hist_gradient_boosting_categorical": (
        lambda: HistGradientBoostingClassifier(max_iter=15, categorical_features=[0],
                                               random_state=0), X_hgb_cat, y_str),
    "hist_gradient_boosting_regressor": (
        lambda: HistGradientBoostingRegressor(max_iter=20, loss="poisson", random_state=0),
        Xc, np.abs(yr)),
    # composites
    "pipeline": (lambda: Pipeline([("scale", StandardScaler()), ("pca", PCA(3)),
                                   ("clf", LogisticRegression())]), Xc, yc),
    "column_transformer": (lambda: Pipeline([
        ("prep", ColumnTransformer([
            ("cat", OneHotEncoder(handle_unknown="ignore"), [0, 1]),
            ("num", StandardScaler(), slice(2, 4)),
        ])),
        ("clf", RandomForestClassifier(n_estimators=5, random_state=0)),
    ]), X_cat, yc),
    "feature_union": (lambda: FeatureUnion([("pca", PCA(2)), ("svd", TruncatedSVD(2))]),
                      Xc, None),
    "grid_search": (lambda: GridSearchCV(LogisticRegression(max_iter=300),
                                         {"C": [0.1, 1.0, 10.0]}, cv=3), Xc, yc),
    "grid_search_scoring": (lambda: GridSearchCV(DecisionTreeClassifier(random_state=0),
                                                 {"max_depth": [2, 4]}, cv=3,
                                                 scoring=["accuracy", "f1_macro"],
                                                 refit="accuracy"), Xc, yc),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_family_roundtrip(name):
    factory, X, y = CASES[name]
    model = factory()
    model.fit(X, y) if y is not None else model.fit(X)
    loaded = roundtrip(model)
    assert type(loaded) is type(model)
    assert_same(model, loaded)
    called = assert_same_predictions(model, loaded, X)
    assert called, f"no prediction method could be compared for {name}"
    # A loaded model is a normal estimator: it can be fitted again.
    refit = loaded.fit(X, y) if y is not None else loaded.fit(X)
    assert refit is loaded


def test_label_encoder_strings():
    enc = LabelEncoder().fit(y_str)
    loaded = roundtrip(enc)
    assert_same(enc, loaded)
    assert list(loaded.inverse_transform([0, 2])) == ["cat", "emu"]


def test_forest_trees_pack_into_shared_sections():
    """Fully grown trees pack too (issue 13): one node for the forest, one section per node
    column part, and a manifest that grows by a per-tree seed, not by a node per tree."""
    X, y = noisy_data()
    model = RandomForestClassifier(n_estimators=40, random_state=0).fit(X, y)
    assert np.mean([t.tree_.node_count for t in model.estimators_]) > 512  # big trees
    data = milo_pack.dumps(model)
    manifest = milo_pack.inspect(data)
    assert len(manifest["sections"]) <= 20
    node = manifest["root"]["attrs"]["estimators_"]
    assert node["$type"] == "sklearn.tree.packed" and node["container"] == "list"
    assert list(node["varying"]) == ["random_state"]
    trees = node["trees"]
    assert trees["node_count"]["shape"] == trees["leaf_count"]["shape"] == [40]
    # scikit-learn's placeholders at leaves are stored once, as a fill.
    assert trees["nodes"]["feature"]["leaves"]["fill"] == -2
    children = manifest["sections"][trees["nodes"]["left_child"]["section"]]
    assert children["filters"][0] == {"id": "relidx", "sentinel": -1}
    small = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    size = len(json.dumps(manifest))
    size_small = len(json.dumps(milo_pack.inspect(milo_pack.dumps(small))))
    assert size - size_small < 30 * 30  # the 30 more seeds, not 30 more trees' nodes
    loaded = milo_pack.loads(data)
    assert_same(loaded, model)
    assert_same_predictions(model, loaded, X)


@pytest.mark.parametrize("make", [
    lambda: RandomForestClassifier(n_estimators=30, max_depth=4, random_state=0),
    lambda: ExtraTreesRegressor(n_estimators=20, max_depth=5, random_state=0),
    lambda: IsolationForest(n_estimators=25, random_state=0),
    lambda: BaggingClassifier(n_estimators=8, random_state=0)])
def test_small_tree_forests_are_packed(make):
    model = make()
    y = yc if is_classifier(model) else Xc[:, 0]
    model.fit(Xc, y)
    data = milo_pack.dumps(model)
    node = milo_pack.inspect(data)["root"]["attrs"]["estimators_"]
    # One node for every tree (the manifest stays small), and the forest's list comes back.
    assert node["$type"] == "sklearn.tree.packed" and node["container"] == "list"
    assert node["shape"] == [len(model.estimators_)]
    loaded = milo_pack.loads(data)
    assert type(loaded.estimators_) is list
    assert_same(loaded, model)
    assert_same_predictions(model, loaded, Xc)
    assert milo_pack.dumps(loaded) == data


def test_forest_smaller_than_pickle():
    import pickle

    # Bigger trees than the other cases: with tiny trees the readable manifest dominates.
    X, y = make_classification(n_samples=5000, n_features=10, random_state=0)
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    data, pickled = milo_pack.dumps(model), pickle.dumps(model)
    sections = sum(s["nbytes"] for s in milo_pack.inspect(data)["sections"])
    # The arrays compress to a fraction of the pickle; the readable manifest (about 3.5 kB a
    # tree) adds the rest on a model this small.
    assert sections < 0.2 * len(pickled)
    assert len(data) < 0.4 * len(pickled)


def test_packed_forests_on_degenerate_data_in_a_fresh_interpreter(tmp_path):
    """Packed trees where the split layout has its edge cases: stumps only (one class: no
    split row at all), three samples, NaN features (missing values go left or right), a
    constant column, and big trees; each file loads identically in this process and in a
    brand-new one (re-saved to the same bytes there)."""
    from .fresh import case, check_in_fresh_process

    rng = np.random.default_rng(0)
    Xn = rng.normal(size=(400, 4))
    Xn[rng.random(Xn.shape) < 0.2] = np.nan
    yn = (np.nan_to_num(Xn[:, 0]) > 0).astype(int)
    Xc = np.column_stack([np.ones(300), rng.normal(size=300)])
    Xb, yb = noisy_data()
    models = {
        "one_class": (RandomForestClassifier(5, random_state=0).fit(Xn[:, :2] * 0 + 1,
                                                                     np.zeros(400)), Xn[:50]),
        "three_samples": (ExtraTreesRegressor(4, random_state=0).fit(
            np.arange(6.0).reshape(3, 2), [0.0, 1.0, 2.0]), np.arange(6.0).reshape(3, 2)),
        "nan_features": (RandomForestClassifier(6, random_state=0).fit(Xn, yn), Xn[:50]),
        "constant_column": (ExtraTreesRegressor(5, random_state=0).fit(Xc, Xc[:, 1] ** 2),
                            Xc[:50]),
        "big_trees": (RandomForestClassifier(6, random_state=0).fit(Xb, yb), Xb[:50]),
    }
    cases = []
    for name, (model, X) in models.items():
        if name == "one_class":
            X = np.ones((50, 2))
        data = milo_pack.dumps(model)
        node = milo_pack.inspect(data)["root"]["attrs"]["estimators_"]
        assert node["$type"] == "sklearn.tree.packed" and "leaf_count" in node["trees"], name
        loaded = milo_pack.loads(data)
        assert_same(loaded, model)
        assert_same_predictions(model, loaded, X)
        cases.append(case(name, data, model, X))
    one_class = milo_pack.inspect(milo_pack.dumps(models["one_class"][0]))
    assert one_class["root"]["attrs"]["estimators_"]["trees"]["nodes"]["feature"]["splits"][
        "shape"] == [0]
    failures = check_in_fresh_process(cases, tmp_path)
    assert not failures, failures
