"""The corpus cases: fitted models on tiny data, built the same way under every library version.

Imported by ``tests/compat/make_corpus.py`` inside old environments (scikit-learn 1.5 to today),
so it only uses what every supported version has: where scikit-learn moved a test helper, both
places are tried.  Inputs are fixed arrays, so the *reader* never recomputes them: they are stored
in ``expected.json`` beside the fixtures (``tests/compat/encoding.py``).

One case per ``sklearn.utils.all_estimators()`` class (as ``tests/test_all_estimators.py`` builds
them), plus forests, boosting, pipelines on DataFrames, searches, and XGBoost/LightGBM models
when installed.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

# -- inputs (plain numpy, no scikit-learn generator whose output could change by version) ------

_RNG = np.random.RandomState(0)
_CENTERS = np.array([[-4.0, 2.0, 0.0, 1.0], [3.0, -1.0, 2.5, 0.0], [0.5, 4.0, -3.0, -2.0]])
Y_BLOBS = np.repeat(np.arange(3), 20)[_RNG.permutation(60)]
X_BLOBS = _CENTERS[Y_BLOBS] + 1.5 * _RNG.standard_normal((60, 4))
Y_REG = X_BLOBS @ np.array([1.0, -2.0, 0.5, 3.0]) + _RNG.standard_normal(60)
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


def frame_columns() -> dict[str, np.ndarray]:
    rng = np.random.RandomState(1)
    return {"height": rng.standard_normal(40), "weight": rng.standard_normal(40),
            "age": rng.randint(0, 90, 40).astype(float),
            "city": np.array(rng.choice(["paris", "rome", "oslo"], 40), dtype=object)}


def make_frame(columns: dict[str, np.ndarray]) -> Any:
    import pandas as pd

    return pd.DataFrame({k: (v.astype(object) if v.dtype.kind in "OU" else v)
                         for k, v in columns.items()})


class Case:
    """A model to fit, the name of its inputs, and how to fit it."""

    def __init__(self, estimator: Any, X: Any, y: Any = None, *, X_test: Any = None,
                 fit: Callable[[Any], Any] | None = None) -> None:
        self.estimator, self.X, self.y = estimator, X, y
        # A fresh copy (some estimators take a shortcut on their own training array, which a
        # loaded model can never hit), and only 20 rows: the expected outputs are committed.
        if X_test is None:
            X_test = X[:20] if hasattr(X, "shape") and len(X.shape) == 2 else X
        self.X_test = copy.deepcopy(X_test)
        self._fit = fit

    def fit(self) -> Any:
        est = self.estimator
        if self._fit is not None:
            return self._fit(est)
        return est.fit(self.X) if self.y is None else est.fit(self.X, self.y)


def _birch_data() -> np.ndarray:
    rng = np.random.RandomState(2)
    centers = rng.uniform(-8, 8, (4, 3))
    return centers[rng.randint(0, 4, 60)] + rng.standard_normal((60, 3))


# -- one case per all_estimators() class --------------------------------------------------------


def _instance(cls: type) -> Any:
    try:  # scikit-learn >= 1.6
        from sklearn.utils._test_common.instance_generator import _construct_instances
        return next(iter(_construct_instances(cls)))
    except ImportError:  # 1.5
        from sklearn.utils.estimator_checks import _construct_instance
        return _construct_instance(cls)


def _generic(cls: type) -> Case:
    from sklearn.base import is_regressor
    from sklearn.utils._testing import set_random_state
    from sklearn.utils.estimator_checks import _enforce_estimator_tags_X, _enforce_estimator_tags_y

    estimator = _instance(cls)
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


def _column_transformer(cls: type) -> Case:
    from sklearn.compose import make_column_selector
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    estimator = cls([("num", StandardScaler(), ["height", "weight"]),
                     ("cat", OneHotEncoder(), make_column_selector(dtype_include=object))],
                    remainder="passthrough")
    return Case(estimator, make_frame(frame_columns()))


def _frozen(cls: type) -> Case:
    from sklearn.linear_model import LogisticRegression

    return Case(cls(LogisticRegression().fit(X_BLOBS, Y_BLOBS)), X_BLOBS, Y_BLOBS)


def _randomized_search(cls: type) -> Case:
    import scipy.stats as stats
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

    if cls.__name__.endswith("Classifier"):
        kernel = 1.0 * RBF(1.0) + 0.5 * DotProduct() ** 2
        return Case(cls(kernel=kernel, optimizer=None, random_state=0), X_BLOBS, Y_BLOBS)
    kernel = ConstantKernel(1.0) * RBF(length_scale=[1.0] * 4) + WhiteKernel(0.1)
    kernel = kernel + 0.1 * ExpSineSquared(periodicity=3.0)
    return Case(cls(kernel=kernel, random_state=0), X_BLOBS, Y_REG)


def _birch(cls: type) -> Case:
    return Case(cls(threshold=1.0, branching_factor=5, n_clusters=4), _birch_data())


def _function_transformer(cls: type) -> Case:
    return Case(cls(func=np.log1p, inverse_func=np.expm1, check_inverse=False),
                np.abs(X_BLOBS))


def _lof(cls: type) -> Case:
    return Case(cls(n_neighbors=5, novelty=True), X_BLOBS)


def _sparse_coder(cls: type) -> Case:
    dictionary = np.random.RandomState(3).standard_normal((6, 4))
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


# -- cases beyond one instance per class --------------------------------------------------------


def _classes() -> dict[str, type]:
    from sklearn.experimental import (  # noqa: F401
        enable_halving_search_cv,
        enable_iterative_imputer,
    )
    from sklearn.utils import all_estimators

    return dict(all_estimators())


def _extra() -> dict[str, Callable[[], Case]]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        AdaBoostClassifier,
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    labels = LABELS[Y_BLOBS]

    def df_pipeline() -> Case:
        pre = ColumnTransformer([("num", make_pipeline(SimpleImputer(), StandardScaler()),
                                  ["height", "weight", "age"]),
                                 ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"])])
        model = make_pipeline(pre, LogisticRegression(max_iter=500))
        frame = make_frame(frame_columns())
        return Case(model, frame, (frame["age"] > 45).to_numpy().astype(int))

    def df_hgb() -> Case:
        pre = ColumnTransformer([("cat", OneHotEncoder(sparse_output=False), ["city"])],
                                remainder="passthrough")
        model = make_pipeline(pre, HistGradientBoostingRegressor(max_iter=10, random_state=0))
        frame = make_frame(frame_columns())
        return Case(model, frame, frame["height"].to_numpy() * 2)

    cases: dict[str, Callable[[], Case]] = {
        "forest-strings": lambda: Case(RandomForestClassifier(n_estimators=5, random_state=0),
                                       X_BLOBS, labels),
        "forest-regressor-deep": lambda: Case(
            RandomForestRegressor(n_estimators=3, random_state=0), X_BLOBS, Y_REG),
        "gradient-boosting-5": lambda: Case(
            GradientBoostingClassifier(n_estimators=5, random_state=0), X_BLOBS, Y_BLOBS),
        "hist-gradient-boosting-strings": lambda: Case(
            HistGradientBoostingClassifier(max_iter=5, random_state=0), X_BLOBS, labels),
        "adaboost-samme": lambda: Case(_adaboost("SAMME"), X_BLOBS, Y_BLOBS),
        "pipeline-dataframe": df_pipeline,
        "pipeline-dataframe-hgb": df_hgb,
        "grid-search": lambda: Case(
            GridSearchCV(LogisticRegression(max_iter=300), {"C": [0.1, 1.0]}, cv=3), X_BLOBS,
            Y_BLOBS),
        "float32-mlp": lambda: Case(
            _classes()["MLPClassifier"](max_iter=30, random_state=0),
            X_BLOBS.astype(np.float32), Y_BLOBS),
    }
    try:  # SAMME.R was removed in scikit-learn 1.6 (deprecated in 1.4).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            AdaBoostClassifier(algorithm="SAMME.R").fit(X_BLOBS, Y_BLOBS)
        cases["adaboost-samme-r"] = lambda: Case(_adaboost("SAMME.R"), X_BLOBS, Y_BLOBS)
    except (ValueError, TypeError):
        pass
    cases.update(_booster_cases())
    return cases


def _adaboost(algorithm: str) -> Any:
    """AdaBoost with ``algorithm`` set explicitly where the version still has the parameter."""
    from sklearn.ensemble import AdaBoostClassifier

    if "algorithm" in AdaBoostClassifier._get_param_names():
        return AdaBoostClassifier(n_estimators=5, algorithm=algorithm, random_state=0)
    return AdaBoostClassifier(n_estimators=5, random_state=0)


def _booster_cases() -> dict[str, Callable[[], Case]]:
    cases: dict[str, Callable[[], Case]] = {}
    try:
        import xgboost as xgb
    except ImportError:
        xgb = None
    if xgb is not None:
        cases["xgboost-classifier"] = lambda: Case(
            xgb.XGBClassifier(n_estimators=5, max_depth=3, n_jobs=1), X_BLOBS, Y_BLOBS)
        cases["xgboost-regressor"] = lambda: Case(
            xgb.XGBRegressor(n_estimators=5, max_depth=3, n_jobs=1), X_BLOBS, Y_REG)
    try:
        import lightgbm as lgb
    except ImportError:
        lgb = None
    if lgb is not None:
        cases["lightgbm-classifier"] = lambda: Case(
            lgb.LGBMClassifier(n_estimators=5, num_leaves=4, min_child_samples=3, n_jobs=1,
                               verbose=-1), X_BLOBS, Y_BLOBS)
        cases["lightgbm-regressor"] = lambda: Case(
            lgb.LGBMRegressor(n_estimators=5, num_leaves=4, min_child_samples=3, n_jobs=1,
                              verbose=-1), X_BLOBS, Y_REG)
    return cases


def _fallback(cls: type) -> Case:
    """For the classes scikit-learn 1.5's test-instance helper cannot build (meta-estimators
    needing arguments, components bounded by the tiny data): a small instance of our own."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    name = cls.__name__
    if name == "Pipeline":
        est = cls([("scale", StandardScaler()), ("clf", LogisticRegression())])
    elif name == "FeatureUnion":
        est = cls([("a", StandardScaler()), ("b", StandardScaler(with_mean=False))])
    elif name in ("GridSearchCV", "HalvingGridSearchCV"):
        est = cls(LogisticRegression(), {"C": [0.1, 1.0]}, cv=2)
    elif name == "HalvingRandomSearchCV":
        est = cls(LogisticRegression(), {"C": [0.1, 1.0, 10.0]}, cv=2, random_state=0)
    elif name in ("CCA", "PLSCanonical", "PLSSVD"):
        return Case(cls(n_components=1), X_BLOBS, np.c_[Y_REG, Y_BLOBS])
    elif name in ("GaussianRandomProjection", "SparseRandomProjection"):
        est = cls(n_components=2, random_state=0)
    else:
        raise LookupError(f"no fallback instance for {name}")
    return Case(est, X_BLOBS, Y_BLOBS)


def _generic_or_fallback(cls: type) -> Case:
    try:
        case = _generic(cls)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            case.fit()
        return _generic(cls)
    except Exception:  # noqa: BLE001 - SkipTest, or data too small for the default instance
        return _fallback(cls)


def all_cases() -> dict[str, Callable[[], Case]]:
    """Case name -> builder: every ``all_estimators()`` class, then the extra cases."""
    classes = _classes()
    cases: dict[str, Callable[[], Case]] = {}
    for name, cls in sorted(classes.items()):
        builder = SPECIAL.get(name, _generic_or_fallback)
        cases[name] = (lambda b=builder, c=cls: b(c))
    cases.update(_extra())
    return cases


# -- outputs -------------------------------------------------------------------------------------

METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform",
           "score_samples", "kneighbors")


def outputs(model: Any, X: Any) -> dict[str, Any]:
    """Every prediction method the model answers on ``X``: name -> output."""
    import scipy.sparse as sp

    results: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in METHODS:
            if not hasattr(model, name):
                continue
            try:
                value = getattr(model, name)(X)
            except (AttributeError, NotImplementedError, ValueError, TypeError):
                continue
            if sp.issparse(value):
                value = value.toarray()
            results[name] = np.asarray(value) if not isinstance(value, tuple) else value
        if hasattr(model, "mahalanobis"):
            results["mahalanobis"] = model.mahalanobis(X)
    if not results:
        # Nothing to predict with (clustering without predict, embeddings, covariances'
        # fitted matrices): what the model learned is its output.
        for name in ("labels_", "embedding_", "covariance_", "precision_", "core_sample_indices_",
                     "rows_", "columns_", "affinity_matrix_", "children_", "kl_divergence_",
                     "stress_", "reachability_", "_fit_X"):
            value = getattr(model, name, None)
            if isinstance(value, (np.ndarray, float)):
                results[f"attr:{name}"] = np.asarray(value)
            elif value is not None and hasattr(value, "toarray"):
                results[f"attr:{name}"] = value.toarray()
    return results
