"""Honest fitted models of every family whose state reaches native code, with their test input
and the methods of their predict family (shared by the differential test and the fuzzers)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from .craft import data_xy
from .differential import Family

CLASSIFY = ("predict", "predict_proba", "decision_function", "predict_log_proba")
TREES = ("predict", "predict_proba", "apply", "decision_path")


def _X(n_features: int = 4) -> np.ndarray:
    return data_xy(n_features)[0][:40].copy()


def _xy() -> tuple[np.ndarray, np.ndarray]:
    return data_xy()


def _binary() -> tuple[np.ndarray, np.ndarray]:
    X, y = data_xy()
    return X, (y > 0).astype(int)


def _noisy() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    return make_classification(3000, 4, n_informative=3, n_redundant=1, flip_y=0.3,
                               random_state=0)


def _fit(estimator: Any, data: Any = _xy, y: bool = True) -> Any:
    X, labels = data()
    return estimator.fit(X, labels) if y else estimator.fit(X)


def _cat_X() -> np.ndarray:
    X = _X().copy()
    X[:, 3] = (np.abs(X[:, 3]) * 3).astype(int)
    return X


def _hgb_cat() -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = data_xy()
    X = X.copy()
    X[:, 3] = (np.abs(X[:, 3]) * 3).astype(int)
    y = y + (X[:, 3].astype(int) % 2) * 3
    return HistGradientBoostingClassifier(max_iter=3, categorical_features=[3],
                                          random_state=0).fit(X, y)


def _docs() -> list[str]:
    return ["the quick brown fox", "jumps over the lazy dog", "a dog and a fox",
            "quick quick dog"] * 3


def _records() -> list[dict]:
    return [{"colour": c, "size": float(i % 5)} for i, c in enumerate(["red", "blue"] * 6)]


def _categories() -> np.ndarray:
    return np.array([["a", "x"], ["a", "y"], ["b", "x"], ["c", "x"], ["a", "z"], ["a", "x"]],
                    dtype=object)


def _multilabel() -> Any:
    from sklearn.preprocessing import MultiLabelBinarizer

    model = MultiLabelBinarizer().fit([{"a", "b"}, {"c"}, {"a", "c"}])
    model.transform([{"a"}])  # fills _cached_dict, which is then saved with the model
    return model


def _families() -> dict[str, Family]:
    from sklearn.cluster import Birch, BisectingKMeans, KMeans, MiniBatchKMeans
    from sklearn.decomposition import LatentDirichletAllocation
    from sklearn.ensemble import (
        BaggingClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        IsolationForest,
        RandomForestClassifier,
    )
    from sklearn.feature_extraction import DictVectorizer, FeatureHasher
    from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer
    from sklearn.linear_model import (
        LinearRegression,
        LogisticRegression,
        PoissonRegressor,
        SGDRegressor,
    )
    from sklearn.neighbors import (
        KernelDensity,
        KNeighborsClassifier,
        KNeighborsRegressor,
        LocalOutlierFactor,
        NearestNeighbors,
        RadiusNeighborsClassifier,
    )
    from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures
    from sklearn.svm import SVC, SVR, NuSVC, OneClassSVM
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    trees_of = lambda n: tuple(("estimators_", i) for i in (0, n - 1))  # noqa: E731
    families = [
        Family("tree_clf", lambda: _fit(DecisionTreeClassifier(max_depth=4, random_state=0)),
               _X, TREES),
        Family("tree_reg_2out", lambda: DecisionTreeRegressor(max_depth=3, random_state=0).fit(
            _xy()[0], np.c_[_xy()[1], -_xy()[1]]), _X, ("predict", "apply")),
        Family("forest_packed", lambda: _fit(RandomForestClassifier(
            3, max_depth=4, random_state=0)), _X, TREES, lazy=True, member_paths=trees_of(3)),
        Family("forest_deep", lambda: _fit(RandomForestClassifier(2, random_state=0), _noisy),
               _X, TREES, lazy=True, member_paths=trees_of(2)),
        Family("extra_trees_reg", lambda: ExtraTreesRegressor(3, max_depth=3, random_state=0)
               .fit(*_xy()), _X, ("predict", "apply"), lazy=True, member_paths=trees_of(3)),
        Family("iforest", lambda: IsolationForest(n_estimators=3, max_features=3,
                                                   random_state=0).fit(_xy()[0]),
               _X, ("predict", "decision_function", "score_samples"), lazy=True,
               member_paths=trees_of(3)),
        Family("bagging", lambda: _fit(BaggingClassifier(
            DecisionTreeClassifier(max_depth=3), n_estimators=3, max_features=3,
            random_state=0)), _X, CLASSIFY, lazy=True, member_paths=trees_of(3)),
        Family("gb_clf", lambda: _fit(GradientBoostingClassifier(
            n_estimators=3, max_depth=2, random_state=0)), _X,
            (*CLASSIFY, "staged_predict", "apply"), lazy=True,
            member_paths=(("estimators_", (0, 0)), ("estimators_", (2, 2)))),
        Family("gb_reg_zero", lambda: GradientBoostingRegressor(
            n_estimators=3, max_depth=2, init="zero", random_state=0).fit(*_xy()), _X,
            ("predict", "staged_predict", "apply"), lazy=True,
            member_paths=(("estimators_", (0, 0)),)),
        Family("hgb_clf", lambda: _fit(HistGradientBoostingClassifier(
            max_iter=3, random_state=0)), _X, (*CLASSIFY, "staged_predict"), lazy=True),
        Family("hgb_cat", _hgb_cat, _cat_X, ("predict", "predict_proba"), lazy=True),
        Family("hgb_reg", lambda: HistGradientBoostingRegressor(max_iter=3, random_state=0)
               .fit(*_xy()), _X, ("predict",)),
        Family("kmeans", lambda: KMeans(3, n_init=1, random_state=0).fit(_xy()[0]), _X,
               ("predict", "transform", "score")),
        Family("minibatch_kmeans", lambda: MiniBatchKMeans(3, n_init=1, random_state=0)
               .fit(_xy()[0]), _X, ("predict", "transform")),
        Family("bisecting_kmeans", lambda: BisectingKMeans(3, random_state=0).fit(_xy()[0]),
               _X, ("predict", "transform")),
        Family("logreg_binary", lambda: _fit(LogisticRegression(), _binary), _X, CLASSIFY),
        Family("logreg_multi", lambda: _fit(LogisticRegression()), _X, CLASSIFY),
        Family("linear_regression", lambda: LinearRegression().fit(*_xy()), _X, ("predict",)),
        Family("poisson", lambda: PoissonRegressor().fit(_xy()[0], _xy()[1] + 1.0), _X,
               ("predict",)),
        Family("sgd_regressor", lambda: SGDRegressor(random_state=0).fit(*_xy()), _X,
               ("predict",)),
        Family("svc", lambda: _fit(SVC()), _X, ("predict", "decision_function")),
        Family("svc_proba_sparse", lambda: SVC(probability=True, random_state=0).fit(
            sp.csr_matrix(_xy()[0]), _xy()[1]), lambda: sp.csr_matrix(_X()), CLASSIFY),
        Family("nusvc_precomputed", lambda: NuSVC(nu=0.1, kernel="precomputed").fit(
            _xy()[0] @ _xy()[0].T, _xy()[1]), lambda: _X() @ _xy()[0].T,
            ("predict", "decision_function")),
        Family("svr", lambda: SVR().fit(*_xy()), _X, ("predict",)),
        Family("one_class_svm", lambda: OneClassSVM().fit(_xy()[0]), _X,
               ("predict", "decision_function", "score_samples")),
        Family("knn_brute", lambda: _fit(KNeighborsClassifier(algorithm="brute")), _X,
               ("predict", "predict_proba", "kneighbors")),
        Family("knn_kd", lambda: _fit(KNeighborsClassifier(algorithm="kd_tree", leaf_size=5)),
               _X, ("predict", "predict_proba", "kneighbors")),
        Family("knn_ball_reg", lambda: KNeighborsRegressor(algorithm="ball_tree", leaf_size=5)
               .fit(*_xy()), _X, ("predict", "kneighbors")),
        Family("radius_clf", lambda: _fit(RadiusNeighborsClassifier(
            radius=3.0, algorithm="brute")), _X, ("predict", "predict_proba")),
        Family("nearest_neighbors", lambda: NearestNeighbors(n_neighbors=3).fit(_xy()[0]), _X,
               ("kneighbors", "radius_neighbors")),
        Family("lof", lambda: LocalOutlierFactor(n_neighbors=5, novelty=True).fit(_xy()[0]),
               _X, ("predict", "score_samples", "decision_function")),
        Family("kernel_density", lambda: KernelDensity().fit(_xy()[0]), _X,
               ("score_samples",)),
        Family("birch", lambda: Birch(n_clusters=None, threshold=0.5).fit(_xy()[0]), _X,
               ("predict", "transform")),
        Family("lda", lambda: LatentDirichletAllocation(3, max_iter=2, random_state=0).fit(
            np.abs(_xy()[0])), lambda: np.abs(_X()), ("transform", "score")),
        Family("polynomial_sparse", lambda: PolynomialFeatures(3).fit(_xy()[0]),
               lambda: sp.csr_matrix(_X()), ("transform",)),
        Family("feature_hasher", lambda: FeatureHasher(n_features=16), _records,
               ("transform",)),
        Family("hashing_vectorizer", lambda: HashingVectorizer(n_features=16), _docs,
               ("transform",)),
        Family("count_vectorizer", lambda: CountVectorizer().fit(_docs()), _docs,
               ("transform",)),
        Family("dict_vectorizer", lambda: DictVectorizer().fit(_records()), _records,
               ("transform",)),
        Family("one_hot_infrequent", lambda: OneHotEncoder(
            min_frequency=2, drop="first", handle_unknown="infrequent_if_exist").fit(_categories()),
            _categories, ("transform",)),
        Family("multilabel", _multilabel, lambda: [{"a", "b"}, {"c"}, set()], ("transform",)),
        Family("one_hot", lambda: OneHotEncoder(drop="first").fit(
            np.array([["a", "x"], ["b", "y"], ["c", "x"]], dtype=object)),
            lambda: np.array([["a", "y"], ["c", "x"]], dtype=object), ("transform",)),
    ]
    return {f.name: f for f in families}


FAMILIES = _families()
