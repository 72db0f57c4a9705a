"""Every estimator scikit-learn ships round-trips with no trust list.

The classes are enumerated from ``sklearn.utils.all_estimators()`` when the tests run (experimental
ones enabled), so a class added by a new scikit-learn release fails here instead of being silently
uncovered.  For each class a fitted instance is built on small data; the round trip must load with
no ``trusted=``, re-save to identical bytes, give identical fitted state array by array, identical
outputs from every prediction method, and be fittable again, exactly like the original.
"""

from __future__ import annotations

import concurrent.futures
import copy
import io
import unittest
import warnings
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scipy.stats as stats
import sklearn
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.datasets import make_blobs
from sklearn.experimental import enable_halving_search_cv, enable_iterative_imputer  # noqa: F401
from sklearn.utils import all_estimators
from sklearn.utils._testing import set_random_state
from sklearn.utils.estimator_checks import _enforce_estimator_tags_X, _enforce_estimator_tags_y

import milo_pack

from . import fresh
from .common import assert_same, assert_same_predictions, roundtrip

ESTIMATORS = sorted(all_estimators(), key=lambda pair: pair[0])
CLASSES = {name: cls for name, cls in ESTIMATORS}

# -- data ---------------------------------------------------------------------------------------

X_BLOBS, Y_BLOBS = make_blobs(n_samples=60, centers=3, n_features=4, cluster_std=1.5,
                              random_state=0)
Y_REG = X_BLOBS @ np.array([1.0, -2.0, 0.5, 3.0]) + np.random.default_rng(0).normal(size=60)
LABELS = np.array(["ant", "bee", "cat"], dtype=object)
DOCS = [
    "the quick brown fox jumps over the lazy dog",
    "a lazy dog sleeps all day in the sun",
    "the fox and the dog are friends now",
    "brown bears eat honey and the bees are angry",
    "quick thinking saves the day for the fox",
    "sunny days make the dog happy and lazy",
] * 3
RECORDS = [{"colour": c, "size": float(i % 5), "weight": i / 3.0}
           for i, c in enumerate(["red", "green", "blue"] * 8)]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class Case:
    """A fitted estimator with the data to fit it again and to call its methods on."""

    def __init__(self, estimator: Any, X: Any, y: Any = None, X_test: Any = None,
                 y_test: Any = None, fit: Callable[[Any], Any] | None = None) -> None:
        self.estimator, self.X, self.y = estimator, X, y
        # A fresh copy: some estimators take a shortcut when asked about their own training
        # array (`X is self.X_`), which a loaded model can never hit.
        self.X_test = copy.deepcopy(X if X_test is None else X_test)
        self.y_test = y_test
        self._fit = fit

    def fit(self, estimator: Any) -> Any:
        if self._fit is not None:
            return self._fit(estimator)
        return estimator.fit(self.X) if self.y is None else estimator.fit(self.X, self.y)


def _get_tags(estimator: Any) -> Any:
    try:  # scikit-learn >= 1.6
        from sklearn.utils import get_tags
    except ImportError:  # 1.5 (the CI's oldest-deps step runs this file): its dict of tags
        from types import SimpleNamespace

        from sklearn.utils._tags import _safe_tags

        old = _safe_tags(estimator)
        return SimpleNamespace(input_tags=SimpleNamespace(
            allow_nan=old["allow_nan"], sparse="sparse" in old["X_types"],
            pairwise=old["pairwise"]))
    return get_tags(estimator)


def _construct(cls: type) -> Any:
    try:  # scikit-learn >= 1.6
        from sklearn.utils._test_common.instance_generator import _construct_instances
    except ImportError:  # 1.5, the oldest supported (the CI's oldest-deps step runs this file)
        from sklearn.utils.estimator_checks import _construct_instance

        # What 1.6's generator sets for our tiny data (1.5's keeps defaults it cannot fit).
        small = {"CCA": 1, "PLSCanonical": 1, "PLSSVD": 1, "GaussianRandomProjection": 2,
                 "SparseRandomProjection": 2}
        try:
            estimator = _construct_instance(cls)
        except unittest.SkipTest:  # meta-estimators 1.5's helper has no arguments for
            estimator = _meta_instance(cls)
        if cls.__name__ in small:
            estimator.set_params(n_components=small[cls.__name__])
        return estimator
    return next(iter(_construct_instances(cls)))


def _meta_instance(cls: type) -> Any:
    """What 1.6's generator builds for the meta-estimators 1.5's cannot construct."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    name = cls.__name__
    if name == "Pipeline":
        return cls([("scale", StandardScaler()), ("clf", LogisticRegression())])
    if name == "FeatureUnion":
        return cls([("a", StandardScaler()), ("b", StandardScaler(with_mean=False))])
    if name in ("GridSearchCV", "HalvingGridSearchCV"):
        return cls(LogisticRegression(), {"C": [0.1, 1.0]}, cv=2)
    if name == "HalvingRandomSearchCV":
        return cls(LogisticRegression(), {"C": [0.1, 1.0, 10.0]}, cv=2, random_state=0)
    raise LookupError(f"no instance for {name} under scikit-learn {sklearn.__version__}")


def _generic(cls: type) -> Case:
    estimator = _construct(cls)
    X = _enforce_estimator_tags_X(estimator, X_BLOBS.copy())
    y = Y_REG.copy() if is_regressor(estimator) else Y_BLOBS.copy()
    y = _enforce_estimator_tags_y(estimator, y)
    set_random_state(estimator)
    return Case(estimator, X, y)


def _text(cls: type, **params: Any) -> Case:
    return Case(cls(**params), DOCS, X_test=DOCS[:5] + ["unseen words only"])


def _labels(cls: type) -> Case:
    y = LABELS[Y_BLOBS]
    return Case(cls(), y, X_test=y[:10], fit=lambda est: est.fit(y))


def _multilabel(cls: type) -> Case:
    y = [{"a", "b"}, {"c"}, {"a", "c"}, set(), {"b"}] * 4
    return Case(cls(), y, X_test=y[:5], fit=lambda est: est.fit(y))


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "height": rng.normal(size=40), "weight": rng.normal(size=40),
        "age": rng.integers(0, 90, 40).astype(float),
        "city": rng.choice(["paris", "rome", "oslo"], 40),
    })


def _column_transformer(cls: type) -> Case:
    from sklearn.compose import make_column_selector
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    estimator = cls([("num", StandardScaler(), ["height", "weight"]),
                     ("cat", OneHotEncoder(), make_column_selector(dtype_include=object))],
                    remainder="passthrough")
    return Case(estimator, _frame())


def _frozen(cls: type) -> Case:
    from sklearn.linear_model import LogisticRegression

    return Case(cls(LogisticRegression().fit(X_BLOBS, Y_BLOBS)), X_BLOBS, Y_BLOBS)


def _randomized_search(cls: type) -> Case:
    from sklearn.linear_model import LogisticRegression

    distributions = {"C": stats.loguniform(1e-2, 10), "tol": stats.uniform(1e-4, 1e-3)}
    return Case(cls(LogisticRegression(), distributions, n_iter=3, cv=2, random_state=0),
                X_BLOBS, Y_BLOBS)


def _gaussian_process(cls: type) -> Case:
    from sklearn.gaussian_process.kernels import (
        RBF,
        ConstantKernel,
        DotProduct,
        ExpSineSquared,
        WhiteKernel,
    )

    kernel = ConstantKernel(1.0) * RBF(length_scale=[1.0] * 4) + WhiteKernel(0.1)
    if cls.__name__.endswith("Classifier"):
        kernel = 1.0 * RBF(1.0) + 0.5 * DotProduct() ** 2
        # The kernel is fitted by hand once, so the three one-vs-rest fits stay quick.
        return Case(cls(kernel=kernel, optimizer=None, random_state=0), X_BLOBS, Y_BLOBS)
    kernel = kernel + 0.1 * ExpSineSquared(periodicity=3.0)
    return Case(cls(kernel=kernel, random_state=0), X_BLOBS, Y_REG)


def _birch(cls: type) -> Case:
    # Small threshold and branching factor: a CF-tree of several levels whose nodes split.
    X, _ = make_blobs(n_samples=150, centers=4, n_features=3, random_state=0)
    return Case(cls(threshold=0.3, branching_factor=5, n_clusters=4), X)


def _function_transformer(cls: type) -> Case:
    return Case(cls(func=np.log1p, inverse_func=np.expm1, check_inverse=False),
                np.abs(X_BLOBS))


def _lof(cls: type) -> Case:
    return Case(cls(n_neighbors=5, novelty=True), X_BLOBS)


def _sparse_coder(cls: type) -> Case:
    dictionary = np.random.default_rng(0).normal(size=(6, 4))
    dictionary /= np.linalg.norm(dictionary, axis=1, keepdims=True)
    return Case(cls(dictionary, transform_algorithm="lasso_lars", transform_alpha=0.1), X_BLOBS)


def _vectorizer(cls: type) -> Case:
    if cls.__name__ == "FeatureHasher":
        return Case(cls(n_features=32), RECORDS)
    return Case(cls(), RECORDS)


SPECIAL: dict[str, Callable[[type], Case]] = {
    "CountVectorizer": lambda cls: _text(cls, ngram_range=(1, 2), stop_words="english"),
    "TfidfVectorizer": lambda cls: _text(cls, max_features=20, sublinear_tf=True),
    "HashingVectorizer": lambda cls: _text(cls, n_features=64),
    "DictVectorizer": _vectorizer,
    "FeatureHasher": _vectorizer,
    "LabelBinarizer": _labels,
    "LabelEncoder": _labels,
    "MultiLabelBinarizer": _multilabel,
    "ColumnTransformer": _column_transformer,
    "FrozenEstimator": _frozen,
    "RandomizedSearchCV": _randomized_search,
    "GaussianProcessClassifier": _gaussian_process,
    "GaussianProcessRegressor": _gaussian_process,
    "Birch": _birch,
    "FunctionTransformer": _function_transformer,
    "LocalOutlierFactor": _lof,
    "SparseCoder": _sparse_coder,
}


def build(name: str) -> Case:
    cls = CLASSES[name]
    case = SPECIAL[name](cls) if name in SPECIAL else _generic(cls)
    case.fit(case.estimator)
    return case


# -- checks -------------------------------------------------------------------------------------

EXTRA_METHODS = ("predict_joint_log_proba", "staged_predict", "staged_predict_proba", "apply")


def outputs(model: Any, case: Case) -> dict[str, Any]:
    """Everything the model computes from the test data, beyond ``assert_same_predictions``."""
    results: dict[str, Any] = {}
    for name in EXTRA_METHODS:
        if hasattr(model, name):
            try:
                value = getattr(model, name)(case.X_test)
                results[name] = list(value) if name.startswith("staged") else value
            except Exception as exc:  # noqa: BLE001 - compared: the same error either side
                results[name] = ("raised", type(exc))
    if hasattr(model, "transform") and hasattr(model, "inverse_transform"):
        try:
            results["inverse_transform"] = model.inverse_transform(model.transform(case.X_test))
        except Exception as exc:  # noqa: BLE001
            results["inverse_transform"] = ("raised", type(exc))
    if case.y is not None and hasattr(model, "score") and case._fit is None:
        try:
            results["score"] = model.score(case.X_test, case.y)
        except Exception as exc:  # noqa: BLE001
            results["score"] = ("raised", type(exc))
    return results


def assert_same_outputs(a: Any, b: Any, case: Case) -> list[str]:
    called = assert_same_predictions(a, b, case.X_test)
    expected, got = outputs(a, case), outputs(b, case)
    assert list(expected) == list(got)
    for name in expected:
        e, g = expected[name], got[name]
        e, g = (v.toarray() if sp.issparse(v) else v for v in (e, g))
        if isinstance(e, tuple) and e[:1] == ("raised",):
            assert e == g, name
        elif isinstance(e, list):
            assert len(e) == len(g), name
            # nan equal to nan, as below: scikit-learn 1.5's SAMME.R AdaBoost fitted on one
            # class stages 0/0 probabilities.
            assert all(np.array_equal(x, y, equal_nan=np.asarray(x).dtype.kind in "fc")
                       for x, y in zip(e, g, strict=True)), name
        else:
            e, g = np.asarray(e), np.asarray(g)
            assert np.array_equal(e, g, equal_nan=e.dtype.kind in "fc"), name
    return called + list(expected)


# Every round trip of this module, loaded again at the end in a fresh interpreter (see
# test_every_roundtrip_loads_in_a_fresh_interpreter): name -> fresh.case(...)
FRESH_CASES: dict[str, dict] = {}


def check_roundtrip(case: Case, name: str | None = None, refit: bool = True) -> Any:
    original = case.estimator
    data = milo_pack.dumps(original)
    loaded = roundtrip(original)
    assert type(loaded) is type(original)
    assert_same(original, loaded)
    assert_same_outputs(original, loaded, case)
    if name is not None:
        FRESH_CASES[name] = fresh.case(name, data, original, case.X_test)
    if refit:
        # Fitting again works on the loaded model and matches the original fitted again.
        refit_original, refit_loaded = case.fit(copy.deepcopy(original)), case.fit(loaded)
        assert_same_outputs(refit_original, refit_loaded, case)
    return loaded


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_every_estimator_roundtrips(name: str) -> None:
    check_roundtrip(build(name), name)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_every_estimator_roundtrips_unfitted(name: str) -> None:
    """As skops' test_can_persist_non_fitted: parameters only, exactly."""
    cls = CLASSES[name]
    estimator = (SPECIAL[name](cls).estimator if name in SPECIAL
                 else _construct(cls))
    data = milo_pack.dumps(estimator)
    loaded = roundtrip(estimator)
    assert type(loaded) is type(estimator)
    assert_same(estimator, loaded)
    FRESH_CASES[f"unfitted:{name}"] = fresh.case(f"unfitted:{name}", data)


def test_coverage_is_complete() -> None:
    """Every enumerated class has a test above and none is skipped or expected to fail."""
    assert len(CLASSES) >= 200
    # FrozenEstimator arrived in scikit-learn 1.6: the oldest supported version lacks only it.
    missing = {name for name in SPECIAL if name not in CLASSES} - (
        {"FrozenEstimator"} if sklearn.__version__.startswith("1.5.") else set())
    assert not missing, f"special builders for classes scikit-learn no longer ships: {missing}"


# -- cases beyond one instance per class -----------------------------------------------------


def _sparse_logistic() -> Case:
    from sklearn.linear_model import LogisticRegression

    return Case(LogisticRegression(max_iter=200), sp.csr_matrix(np.abs(X_BLOBS)), Y_BLOBS)


def _sparse_tfidf() -> Case:
    from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer

    counts = CountVectorizer().fit_transform(DOCS)
    return Case(TfidfTransformer(), counts)


def _sparse_kmeans() -> Case:
    from sklearn.cluster import KMeans

    return Case(KMeans(3, n_init=2, random_state=0), sp.csr_matrix(X_BLOBS))


def _string_labels(estimator: Any) -> Callable[[], Case]:
    return lambda: Case(clone(estimator), X_BLOBS, LABELS[Y_BLOBS])


def _float32(estimator: Any) -> Callable[[], Case]:
    return lambda: Case(clone(estimator), X_BLOBS.astype(np.float32), Y_BLOBS)


def _pipeline() -> Case:
    from sklearn.decomposition import PCA
    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    model = make_pipeline(StandardScaler(), SelectKBest(f_classif, k=3), PCA(2),
                          SVC(probability=True, random_state=0))
    return Case(model, X_BLOBS, LABELS[Y_BLOBS])


def _classifier(name: str, **params: Any) -> Any:
    return CLASSES[name](**params)


EXTRA_CASES: dict[str, Callable[[], Case]] = {
    "sparse-LogisticRegression": _sparse_logistic,
    "sparse-TfidfTransformer": _sparse_tfidf,
    "sparse-KMeans": _sparse_kmeans,
    "strings-SVC": _string_labels(_classifier("SVC", probability=True, random_state=0)),
    "strings-RandomForest": _string_labels(
        _classifier("RandomForestClassifier", n_estimators=5, random_state=0)),
    "strings-HistGradientBoosting": _string_labels(
        _classifier("HistGradientBoostingClassifier", max_iter=5)),
    "float32-KMeans": _float32(_classifier("KMeans", n_clusters=3, n_init=2, random_state=0)),
    "float32-LinearRegression": _float32(CLASSES["LinearRegression"]()),
    "float32-MLP": _float32(_classifier("MLPClassifier", max_iter=30, random_state=0)),
    "pipeline-with-functions": _pipeline,
    "vocabulary-max-features": lambda: _text(CLASSES["CountVectorizer"], max_features=10),
}


@pytest.mark.parametrize("name", sorted(EXTRA_CASES))
def test_extra_cases(name: str) -> None:
    case = EXTRA_CASES[name]()
    case.fit(case.estimator)
    check_roundtrip(case, f"extra:{name}")


PARTIAL_FIT = {
    "SGDClassifier": lambda: CLASSES["SGDClassifier"](random_state=0),
    "MultinomialNB": lambda: CLASSES["MultinomialNB"](),
    "MiniBatchKMeans": lambda: CLASSES["MiniBatchKMeans"](3, random_state=0, n_init=1),
    "IncrementalPCA": lambda: CLASSES["IncrementalPCA"](2),
    "MLPClassifier": lambda: CLASSES["MLPClassifier"](random_state=0),
    "Birch": lambda: CLASSES["Birch"](threshold=0.3, branching_factor=5, n_clusters=None),
}


@pytest.mark.parametrize("name", sorted(PARTIAL_FIT))
def test_partial_fit_continues_identically(name: str) -> None:
    """A model loaded mid-stream learns from the next batch exactly as the original does."""
    X, y = np.abs(X_BLOBS), Y_BLOBS
    model = PARTIAL_FIT[name]()
    kwargs = {"classes": np.unique(y)} if is_classifier(model) else {}
    model.partial_fit(X[:30], y[:30], **kwargs)
    loaded = roundtrip(model)
    key = f"partial_fit:{name}"
    FRESH_CASES[key] = fresh.case(key, milo_pack.dumps(model), model, X.copy())
    for m in (model, loaded):
        m.partial_fit(X[30:], y[30:])
    assert_same(model, loaded)
    assert_same_outputs(model, loaded, Case(model, X, y))


def test_birch_tree_keeps_views_and_links() -> None:
    case = build("Birch")
    loaded = roundtrip(case.estimator)
    leaves = loaded._get_leaves()
    assert len(leaves) > 2 and loaded.root_.subclusters_[0].child_ is not None
    for leaf in leaves:
        assert np.shares_memory(leaf.centroids_, leaf.init_centroids_)
        assert np.shares_memory(leaf.squared_norm_, leaf.init_sq_norm_)
    assert loaded.dummy_leaf_.next_leaf_ is leaves[0]
    pairs = zip(leaves, leaves[1:], strict=False)
    assert all(a.next_leaf_ is b and b.prev_leaf_ is a for a, b in pairs)
    # Subclusters' centroid_ and linear_sum_ are one array, as in the original.
    sub = leaves[0].subclusters_[0]
    assert sub.centroid_ is sub.linear_sum_


# -- bulk payloads ------------------------------------------------------------------------------


def _manifest(data: bytes) -> bytes:
    return zipfile.ZipFile(io.BytesIO(data)).read("manifest.json")


def test_large_vocabulary_stays_out_of_the_manifest() -> None:
    vectorizer = CLASSES["CountVectorizer"]
    words = [f"term{i:06d}" for i in range(100_000)]
    docs = [" ".join(words[i:i + 200]) for i in range(0, len(words), 150)]
    model = vectorizer(stop_words=[f"term{i:06d}" for i in range(0, 100_000, 97)]).fit(docs)
    assert len(model.vocabulary_) > 90_000
    data = milo_pack.dumps(model)
    assert len(_manifest(data)) < 50_000
    loaded = roundtrip(model)
    assert loaded.vocabulary_ == model.vocabulary_
    assert list(loaded.vocabulary_) == list(model.vocabulary_)
    assert np.array_equal(loaded.transform(docs[:3]).toarray(), model.transform(docs[:3]).toarray())


def test_bulk_payloads_keep_scalar_types_exactly() -> None:
    values = [1, 1.0, "1", True, None, -0.0, float("nan"), 2**63, -(2**63)] * 200
    obj = {
        "list": values,
        "tuple": tuple(range(1500)),
        "set": {f"s{i}" for i in range(1200)},
        "frozenset": frozenset(range(-600, 600)),
        "int-keys": {i: str(i) for i in range(2000)},
        "numpy-values": {f"k{i}": np.int64(i) for i in range(1500)},
        "huge-ints": [2**70] * 1001,  # beyond 64 bits: the JSON path
        "nested": [[i] for i in range(1001)],  # not scalars: the JSON path
    }
    data = milo_pack.dumps(obj)
    manifest = _manifest(data).decode()
    for kind in ("list", "tuple", "set", "frozenset", "dict"):
        assert f'"msgpack.{kind}"' in manifest
    loaded = roundtrip(obj)
    assert_same(obj, loaded)
    assert [type(v) for v in loaded["list"][:9]] == [type(v) for v in values[:9]]
    assert type(loaded["numpy-values"]["k3"]) is np.int64
    assert type(loaded["tuple"]) is tuple and type(loaded["frozenset"]) is frozenset


def test_short_containers_stay_readable_json() -> None:
    manifest = _manifest(milo_pack.dumps({"labels": ["a", "b"] * 10})).decode()
    assert "msgpack" not in manifest and '"a"' in manifest


# -- degenerate data ----------------------------------------------------------------------------
# What scikit-learn fits on awkward data must load back (issue 11: a SplineTransformer fitted on
# a constant column used to dump fine and fail to load).  Every class is fitted on each kind of
# degenerate data it accepts; a kind the estimator refuses at fit is "not allowed" for it, and
# each class must accept at least three kinds.

DEGENERATE_KINDS = ("constant-column", "duplicated-columns", "float32", "tiny", "one-per-class",
                    "single-target", "nan", "sparse", "max-iter")
# Tried only on a class that accepted fewer than MIN_DEGENERATE kinds above (QDA refuses rank-
# deficient data, so constant and duplicated columns are not allowed for it).
FALLBACK_KINDS = ("integers", "huge-values")
MIN_DEGENERATE = 3


def _rows(per_class: int) -> np.ndarray:
    """Indices of the first ``per_class`` samples of each blob."""
    return np.concatenate([np.flatnonzero(Y_BLOBS == c)[:per_class] for c in np.unique(Y_BLOBS)])


def _degenerate_xy(kind: str, X: np.ndarray, y: Any) -> tuple[Any, Any] | None:
    """``X, y`` of raw numeric data made degenerate (before estimator tags are enforced)."""
    X = np.array(X, dtype=float, copy=True)
    y = None if y is None else np.array(y, copy=True)
    if kind == "constant-column":
        X[:, 0] = 1.5
    elif kind == "duplicated-columns":
        X[:, 1] = X[:, 0]
    elif kind in ("tiny", "one-per-class"):
        rows = _rows(2 if kind == "tiny" else 1)
        X = X[rows]
        y = None if y is None else y[rows]
    elif kind == "single-target":
        if y is None:
            return None
        y[:] = y[0]
    elif kind == "integers":
        X = np.round(X).astype(np.int64)
    elif kind == "huge-values":
        X = X * 1e12
    return X, y


def _with_kind(estimator: Any, X: Any, y: Any, kind: str) -> tuple[Any, Any, Any] | None:
    """Estimator (with ``max_iter=1`` for max-iter), X and y after the estimator's tags."""
    tags = _get_tags(estimator)
    if kind == "max-iter":
        if "max_iter" not in estimator.get_params(deep=False):
            return None
        estimator = clone(estimator).set_params(max_iter=1)
    if kind == "nan" and not tags.input_tags.allow_nan:
        return None
    if kind == "sparse" and (not tags.input_tags.sparse or tags.input_tags.pairwise):
        return None
    made = _degenerate_xy(kind, X, y)
    if made is None:
        return None
    X, y = made
    X = _enforce_estimator_tags_X(estimator, X)
    if y is not None:
        y = _enforce_estimator_tags_y(estimator, y)
    if kind == "float32" and isinstance(X, np.ndarray) and X.dtype.kind == "f":
        X = X.astype(np.float32)
    elif kind == "nan":
        X = np.array(X, dtype=float)
        X[::7, -1] = np.nan
    elif kind == "sparse":
        X = sp.csr_matrix(X)
    return estimator, X, y


def _generic_degenerate(cls: type, kind: str) -> Case | None:
    estimator = _construct(cls)
    y = Y_REG if is_regressor(estimator) else Y_BLOBS
    made = _with_kind(estimator, X_BLOBS, y, kind)
    if made is None:
        return None
    estimator, X, y = made
    set_random_state(estimator)
    return Case(estimator, X, y)


def _numeric_degenerate(name: str, kind: str) -> Case | None:
    """A special builder's case (numeric X) with its data made degenerate."""
    base = SPECIAL[name](CLASSES[name])
    made = _degenerate_xy(kind, base.X, base.y) if kind not in ("nan", "sparse", "max-iter") \
        else (base.X, base.y)
    if made is None:
        return None
    made = _with_kind(base.estimator, *made, kind) if kind in ("nan", "sparse", "max-iter") \
        else (clone(base.estimator), *made)
    if made is None:
        return None
    estimator, X, y = made
    if kind == "float32":
        X = X.astype(np.float32)
    return Case(estimator, X, y)


def _text_degenerate(name: str, kind: str) -> Case | None:
    docs = {"one-document": DOCS[:1], "identical-documents": ["same words again"] * 4,
            "one-word": ["word"] * 3, "empty-documents": ["", "", "x"]}.get(kind)
    if docs is None:
        return None
    estimator = SPECIAL[name](CLASSES[name]).estimator
    return Case(clone(estimator), docs, X_test=docs + ["unseen words only"])


def _records_degenerate(name: str, kind: str) -> Case | None:
    records = {"empty-records": [{}, {}, {}], "one-key-constant": [{"a": 1.0}] * 3,
               "one-record": RECORDS[:1], "one-category": [{"c": "x"}, {"c": "x"}]}.get(kind)
    if records is None:
        return None
    estimator = SPECIAL[name](CLASSES[name]).estimator
    return Case(clone(estimator), records)


def _labels_degenerate(name: str, kind: str) -> Case | None:
    labels = {"one-label": np.array(["a"] * 5, dtype=object), "two-labels": np.array([1, 2, 1]),
              "one-sample": np.array([7]), "float-labels": np.array([0.5, -0.0, 0.5])}.get(kind)
    if labels is None:
        return None
    return Case(CLASSES[name](), labels, X_test=labels, fit=lambda est: est.fit(labels))


def _multilabel_degenerate(name: str, kind: str) -> Case | None:
    y = {"all-empty": [set(), set()], "one-label": [{"a"}] * 3, "one-sample": [{"a", "b"}],
         "int-labels": [{1, 2}, {2}]}.get(kind)
    if y is None:
        return None
    return Case(CLASSES[name](), y, X_test=y, fit=lambda est: est.fit(y))


def _frame_degenerate(name: str, kind: str) -> Case | None:
    frame = _frame()
    if kind == "constant-column":
        frame["height"] = 3.0
    elif kind == "one-category":
        frame["city"] = "rome"
    elif kind == "duplicated-columns":
        frame["weight"] = frame["height"]
    elif kind == "tiny":
        frame = frame.iloc[:2]
    else:
        return None
    return Case(clone(SPECIAL[name](CLASSES[name]).estimator), frame)


_SPECIAL_DEGENERATE: dict[str, tuple[Callable[[str, str], Case | None], tuple[str, ...]]] = {
    **{n: (_text_degenerate, ("one-document", "identical-documents", "one-word",
                              "empty-documents"))
       for n in ("CountVectorizer", "TfidfVectorizer", "HashingVectorizer")},
    **{n: (_records_degenerate, ("empty-records", "one-key-constant", "one-record",
                                 "one-category")) for n in ("DictVectorizer", "FeatureHasher")},
    **{n: (_labels_degenerate, ("one-label", "two-labels", "one-sample", "float-labels"))
       for n in ("LabelBinarizer", "LabelEncoder")},
    "MultiLabelBinarizer": (_multilabel_degenerate, ("all-empty", "one-label", "one-sample",
                                                     "int-labels")),
    "ColumnTransformer": (_frame_degenerate, ("constant-column", "one-category",
                                              "duplicated-columns", "tiny")),
}


def degenerate_cases(name: str, kinds: tuple[str, ...] = DEGENERATE_KINDS
                     ) -> list[tuple[str, Callable[[], Case | None]]]:
    """``(kind, make_case)`` for every kind of degenerate data tried on class ``name``."""
    if name in _SPECIAL_DEGENERATE:
        make, special = _SPECIAL_DEGENERATE[name]
        return [(kind, lambda kind=kind: make(name, kind)) for kind in special]
    if name in SPECIAL:
        return [(kind, lambda kind=kind: _numeric_degenerate(name, kind)) for kind in kinds]
    return [(kind, lambda kind=kind: _generic_degenerate(CLASSES[name], kind))
            for kind in kinds]


def _fitted(make: Callable[[], Case | None]) -> Case | None:
    """The case fitted, or None when the estimator refuses that data (or does not apply)."""
    case = make()
    if case is None:
        return None
    try:
        case.fit(case.estimator)
    except Exception:  # noqa: BLE001 - scikit-learn refuses this data for this estimator
        return None
    return case


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_degenerate_fits_roundtrip(name: str) -> None:
    """Whatever degenerate data a class accepts at fit, its fitted model loads back exactly."""
    fitted = []
    for kind, make in degenerate_cases(name):
        case = _fitted(make)
        if case is None:
            continue
        check_roundtrip(case, f"{name}[{kind}]", refit=False)
        fitted.append(kind)
    if len(fitted) < MIN_DEGENERATE and name not in _SPECIAL_DEGENERATE:
        for kind, make in degenerate_cases(name, FALLBACK_KINDS):
            case = _fitted(make)
            if case is not None:
                check_roundtrip(case, f"{name}[{kind}]", refit=False)
                fitted.append(kind)
    assert len(fitted) >= MIN_DEGENERATE, f"{name} accepted only {fitted}"


# -- every round trip above, again in a fresh interpreter ---------------------------------------
# Kept last in the module: the tests above (normal, extra and degenerate cases) record their
# files in FRESH_CASES.  Run alone (-k), it builds whatever is missing itself.


def _missing_cases() -> None:
    for name in sorted(CLASSES):
        if name not in FRESH_CASES:
            case = build(name)
            FRESH_CASES[name] = fresh.case(name, milo_pack.dumps(case.estimator),
                                           case.estimator, case.X_test)
        for kind, make in degenerate_cases(name):
            key = f"{name}[{kind}]"
            if key in FRESH_CASES:
                continue
            fitted = _fitted(make)
            if fitted is not None:
                FRESH_CASES[key] = fresh.case(key, milo_pack.dumps(fitted.estimator),
                                              fitted.estimator, fitted.X_test)


def test_every_roundtrip_loads_in_a_fresh_interpreter(tmp_path) -> None:
    """Each file loads in a new process, from a new registry, to the same bytes and outputs."""
    if len(FRESH_CASES) < 2 * len(CLASSES):
        _missing_cases()
    cases = [FRESH_CASES[name] for name in sorted(FRESH_CASES)]
    assert len(cases) >= 4 * len(CLASSES)
    halves = [cases[0::2], cases[1::2]]  # two processes: CI machines have two cores
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda i: fresh.check_in_fresh_process(
            halves[i], tmp_path / str(i)), range(2)))
    failures = {**results[0], **results[1]}
    assert not failures, failures
