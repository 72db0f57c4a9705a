"""The model suite: reproducible builders, the on-disk cache, and user-supplied models.

Every model is fitted on synthetic data from fixed seeds. Fitted models are cached as pickles the
benchmark wrote itself (a trusted cache), keyed by model name, suite, scikit-learn version and a
digest of the suite parameters and the versions of the libraries involved.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata, util
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ModelSpec",
    "BuiltModel",
    "SUITE",
    "default_cache_dir",
    "select_specs",
    "build_or_load",
    "load_user_model",
    "family_of",
    "modules_of",
]

SAMPLE_ROWS = 200
"""Rows of the fixed sample ``X`` the predictions are compared on."""

SUITE_VERSION = 1
"""Part of every cache key: bump it when a builder changes, so stale models are rebuilt."""


@dataclass(frozen=True)
class ModelSpec:
    """How to build one model of the suite.

    Attributes
    ----------
    name : str
        Identifier used by ``--models`` and in the tables.
    family : str
        ``"forest"``, ``"booster"`` or ``"other"``; chooses the size target.
    requires : tuple of str
        Import names needed to build it (the model is skipped if one is missing).
    full, quick : dict
        Parameters of the full and of the ``--quick`` suite, passed to ``build``.
    build : callable
        ``build(params) -> (fitted model, sample X)``.
    in_quick : bool
        Part of the default ``--quick`` run (others can still be named with ``--models``).
    """

    name: str
    family: str
    requires: tuple[str, ...]
    full: dict[str, Any]
    quick: dict[str, Any]
    build: Callable[[dict[str, Any]], tuple[Any, np.ndarray]]
    in_quick: bool = True

    def params(self, quick: bool) -> dict[str, Any]:
        """Return the parameters of the chosen suite."""
        return dict(self.quick if quick else self.full)

    def missing(self) -> list[str]:
        """Return the required modules that are not installed."""
        return [name for name in self.requires if util.find_spec(name) is None]


@dataclass
class BuiltModel:
    """A fitted model ready to benchmark.

    Attributes
    ----------
    name, family : str
        As in :class:`ModelSpec`.
    model : object
        The fitted estimator.
    X : ndarray or None
        Fixed sample for the predictions check (``None``: no check possible).
    params : dict
        Suite parameters (empty for user models).
    build_s : float
        Seconds spent fitting (0 when read from the cache).
    cached : bool
        Whether it came from the cache (or from the user's file).
    source : str
        Cache file or user file it was read from or written to.
    """

    name: str
    family: str
    model: Any
    X: np.ndarray | None
    params: dict[str, Any] = field(default_factory=dict)
    build_s: float = 0.0
    cached: bool = False
    source: str = ""


# --------------------------------------------------------------------------------------- data


def _classification(
    rows: int, features: int, seed: int, classes: int = 2, **options: Any
) -> tuple[Any, Any]:
    """``make_classification`` with our defaults; ``options`` override them."""
    from sklearn.datasets import make_classification

    informative = min(features, 10)
    kwargs = {
        "n_informative": informative,
        "n_redundant": min(features - informative, 5),
        "n_classes": classes,
    }
    kwargs.update(options)
    X, y = make_classification(n_samples=rows, n_features=features, random_state=seed, **kwargs)
    return X, y


def _regression(rows: int, features: int, seed: int) -> tuple[Any, Any]:
    from sklearn.datasets import make_regression

    X, y = make_regression(
        n_samples=rows, n_features=features, n_informative=10, noise=10.0, random_state=seed
    )
    return X, y


# ----------------------------------------------------------------------------------- builders


def _random_forest(p: dict[str, Any]) -> tuple[Any, np.ndarray]:
    from sklearn.ensemble import RandomForestClassifier

    # Noisy labels grow deep trees, as real data does: about 1 MB of pickle per tree at 50k rows.
    X, y = _classification(p["rows"], 20, seed=0, **p["data"])
    model = RandomForestClassifier(n_estimators=p["trees"], n_jobs=2, random_state=0).fit(X, y)
    return model, X[:SAMPLE_ROWS]


def _extra_trees(p: dict[str, Any]) -> tuple[Any, np.ndarray]:
    from sklearn.ensemble import ExtraTreesRegressor

    X, y = _regression(p["rows"], 20, seed=1)
    model = ExtraTreesRegressor(
        n_estimators=p["trees"], min_samples_leaf=5, n_jobs=2, random_state=0
    ).fit(X, y)
    return model, X[:SAMPLE_ROWS]


def _isolation_forest(p: dict[str, Any]) -> tuple[Any, np.ndarray]:
    from sklearn.ensemble import IsolationForest

    # 256 samples per tree: small trees, stored packed (one manifest node for all of them).
    X, _ = _classification(p["rows"], 20, seed=3)
    model = IsolationForest(n_estimators=p["trees"], n_jobs=2, random_state=0).fit(X)
    model.n_jobs = None  # summing tree scores in threads is not bit-reproducible
    return model, X[:SAMPLE_ROWS]


def _gradient_boosting(p: dict[str, Any]) -> tuple[Any, np.ndarray]:
    from sklearn.ensemble import GradientBoostingRegressor

    X, y = _regression(p["rows"], 20, seed=2)
    model = GradientBoostingRegressor(n_estimators=p["stages"], max_depth=3, random_state=0)
    return model.fit(X, y), X[:SAMPLE_ROWS]


def _with_categories(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Classification data with three integer-coded categorical columns that matter."""
    X, y = _classification(rows, 20, seed=seed, classes=3)
    rng = np.random.default_rng(seed)
    cardinalities = (5, 20, 60)
    cats = np.column_stack([rng.integers(0, k, rows) for k in cardinalities])
    # Let the categories move some labels so that the trees split on them.
    shift = (cats[:, 0] % 2) + (cats[:, 1] % 3 == 0) + (cats[:, 2] < 10)
    flip = rng.random(rows) < 0.3
    y = np.where(flip, (y + shift) % 3, y)
    X = np.hstack([X, cats.astype(np.float64)])
    return X, y, [20, 21, 22]


def _hist_gradient_boosting(p: dict[str, Any]) -> tuple[Any, np.ndarray]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y, categorical = _with_categories(p["rows"], seed=3)
    model = HistGradientBoostingClassifier(
        max_iter=p["iterations"],
        categorical_features=categorical,
        early_stopping=False,
        random_state=0,
    )
    if "threads" not in p:
        return model.fit(X, y), X[:SAMPLE_ROWS]
    # The quick suite fits with one OpenMP thread: spinning OpenMP barriers on a busy 2-core
    # machine turned a one-second fit into a minute.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=p["threads"], user_api="openmp"):
        return model.fit(X, y), X[:SAMPLE_ROWS]


def _xgboost(p: dict[str, Any]) -> tuple[Any, np.ndarray]:
    from xgboost import XGBClassifier

    X, y = _classification(p["rows"], 20, seed=4)
    model = XGBClassifier(
        n_estimators=p["rounds"],
        max_depth=6,
        learning_rate=0.1,
        tree_method="hist",
        n_jobs=p.get("threads", 2),
        random_state=0,
    )
    return model.fit(X, y), X[:SAMPLE_ROWS]


def _lightgbm(p: dict[str, Any]) -> tuple[Any, np.ndarray]:
    from lightgbm import LGBMClassifier

    X, y = _classification(p["rows"], 20, seed=5)
    model = LGBMClassifier(
        n_estimators=p["rounds"], num_leaves=31, n_jobs=p.get("threads", 2), random_state=0,
        verbose=-1,
    )
    return model.fit(X, y), X[:SAMPLE_ROWS]


def _pipeline(p: dict[str, Any]) -> tuple[Any, np.ndarray]:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _classification(p["rows"], 100, seed=6, classes=3)
    model = Pipeline(
        [
            ("scale", StandardScaler()),
            ("pca", PCA(n_components=20, random_state=0)),
            ("clf", LogisticRegression(max_iter=1000)),
        ]
    )
    return model.fit(X, y), X[:SAMPLE_ROWS]


def _knn(p: dict[str, Any]) -> tuple[Any, np.ndarray]:
    from sklearn.neighbors import KNeighborsClassifier

    X, y = _classification(p["rows"], 50, seed=7)
    model = KNeighborsClassifier(algorithm="kd_tree").fit(X, y)
    # A kd-tree in 50 dimensions answers queries slowly: a smaller sample keeps the check fast.
    return model, X[:50]


def _tiny_logreg(p: dict[str, Any]) -> tuple[Any, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    X, y = _classification(p["rows"], 5, seed=8, classes=3)
    return LogisticRegression(max_iter=1000).fit(X, y), X[:SAMPLE_ROWS]


_NOISY = {"n_informative": 5, "n_redundant": 2, "flip_y": 0.2}

SUITE: tuple[ModelSpec, ...] = (
    ModelSpec(
        "random_forest",
        "forest",
        ("sklearn",),
        {"trees": 300, "rows": 50_000, "data": _NOISY},
        {"trees": 60, "rows": 10_000, "data": _NOISY},
        _random_forest,
    ),
    ModelSpec(
        "extra_trees",
        "forest",
        ("sklearn",),
        {"trees": 100, "rows": 20_000},
        {"trees": 20, "rows": 5_000},
        _extra_trees,
        in_quick=False,
    ),
    ModelSpec(
        "isolation_forest",
        "forest",
        ("sklearn",),
        {"trees": 300, "rows": 50_000},
        {"trees": 100, "rows": 10_000},
        _isolation_forest,
    ),
    ModelSpec(
        "gradient_boosting",
        "other",
        ("sklearn",),
        {"stages": 300, "rows": 20_000},
        {"stages": 50, "rows": 4_000},
        _gradient_boosting,
    ),
    ModelSpec(
        "hist_gradient_boosting",
        "booster",
        ("sklearn",),
        {"iterations": 300, "rows": 50_000},
        {"iterations": 50, "rows": 5_000, "threads": 1},
        _hist_gradient_boosting,
    ),
    ModelSpec(
        "xgboost",
        "booster",
        ("xgboost",),
        {"rounds": 500, "rows": 50_000},
        {"rounds": 100, "rows": 5_000, "threads": 1},
        _xgboost,
    ),
    ModelSpec(
        "lightgbm",
        "booster",
        ("lightgbm",),
        {"rounds": 500, "rows": 50_000},
        {"rounds": 100, "rows": 5_000, "threads": 1},
        _lightgbm,
    ),
    ModelSpec(
        "pipeline",
        "other",
        ("sklearn",),
        {"rows": 50_000},
        {"rows": 10_000},
        _pipeline,
        in_quick=False,
    ),
    ModelSpec(
        "knn",
        "other",
        ("sklearn",),
        {"rows": 200_000},
        {"rows": 20_000},
        _knn,
    ),
    ModelSpec(
        "tiny_logreg",
        "other",
        ("sklearn",),
        {"rows": 200},
        {"rows": 200},
        _tiny_logreg,
    ),
)
"""The models, in table order."""


def select_specs(names: list[str] | None, quick: bool = False) -> list[ModelSpec]:
    """Return the specs named in ``names``, in suite order.

    Without names: the whole suite, or for ``quick`` the models marked ``in_quick`` (each load
    runs in a fresh interpreter that spends about a second importing scikit-learn, so the
    number of models x methods sets the quick run's length).

    Raises
    ------
    KeyError
        If a name is not in the suite.
    """
    if not names:
        return [spec for spec in SUITE if spec.in_quick or not quick]
    known = {spec.name: spec for spec in SUITE}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise KeyError(f"unknown model(s) {', '.join(unknown)} (known: {', '.join(known)})")
    return [spec for spec in SUITE if spec.name in names]


# -------------------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/milo_pack/bench``, by default ``~/.cache/milo_pack/bench``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "milo_pack" / "bench"


def _version(dist: str) -> str:
    # XGBoost's CPU-only build is another distribution of the same package.
    for name in (dist, "xgboost-cpu") if dist == "xgboost" else (dist,):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "none"


def _cache_path(spec: ModelSpec, quick: bool, cache_dir: Path) -> Path:
    """Cache file for ``spec``: name, suite, sklearn version, digest of params and versions."""
    key = {
        "name": spec.name,
        "suite_version": SUITE_VERSION,
        "params": spec.params(quick),
        "sample_rows": SAMPLE_ROWS,
        "numpy": _version("numpy"),
        "xgboost": _version("xgboost") if "xgboost" in spec.requires else None,
        "lightgbm": _version("lightgbm") if "lightgbm" in spec.requires else None,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    suite = "quick" if quick else "full"
    return cache_dir / f"{spec.name}-{suite}-sklearn{_version('scikit-learn')}-{digest}.pkl"


def build_or_load(spec: ModelSpec, quick: bool, cache_dir: Path) -> BuiltModel:
    """Return the fitted model for ``spec``, from the cache or freshly built (then cached).

    Parameters
    ----------
    spec : ModelSpec
        The model to build.
    quick : bool
        Use the quick suite's parameters.
    cache_dir : Path
        Where cached pickles live; created if needed.

    Returns
    -------
    BuiltModel
    """
    params = spec.params(quick)
    path = _cache_path(spec, quick, cache_dir)
    if path.is_file():
        with open(path, "rb") as f:
            entry = pickle.load(f)  # noqa: S301 - our own cache, written below
        return BuiltModel(
            spec.name, spec.family, entry["model"], entry["X"], params, 0.0, True, str(path)
        )
    start = time.perf_counter()
    model, X = spec.build(params)
    build_s = time.perf_counter() - start
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{spec.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump({"model": model, "X": X, "params": params}, f, protocol=5)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return BuiltModel(spec.name, spec.family, model, X, params, build_s, False, str(path))


# --------------------------------------------------------------------------------- user model


def family_of(model: Any) -> str:
    """Guess the target family of a user's model from its class name."""
    name = type(model).__name__
    if name.startswith(("RandomForest", "ExtraTrees")):
        return "forest"
    if name.startswith(("HistGradientBoosting", "XGB", "LGBM")):
        return "booster"
    return "other"


def load_user_model(path: Path, sample_x: Path | None = None) -> BuiltModel:
    """Read the user's own pickle (or joblib file) and make a sample to predict on.

    Reading a pickle runs code from it: callers must warn the user and pass only trusted files.

    Parameters
    ----------
    path : Path
        ``.pkl``/``.pickle`` (read with :mod:`pickle`) or ``.joblib`` (read with joblib).
    sample_x : Path, optional
        ``.npy`` file with rows to predict on. Without it, 200 standard-normal rows of
        ``n_features_in_`` columns are used when the model declares that attribute.

    Returns
    -------
    BuiltModel
    """
    if path.suffix in (".joblib", ".jbl"):
        import joblib

        model = joblib.load(path)
    else:
        with open(path, "rb") as f:
            model = pickle.load(f)  # noqa: S301 - the user vouched for this file
    if sample_x is not None:
        X: np.ndarray | None = np.load(sample_x, allow_pickle=False)
    elif isinstance(getattr(model, "n_features_in_", None), int):
        X = np.random.default_rng(0).standard_normal((SAMPLE_ROWS, model.n_features_in_))
    else:
        X = None
    return BuiltModel(path.stem, family_of(model), model, X, {}, 0.0, True, str(path))


def modules_of(model: Any) -> list[str]:
    """Modules defining the model's class and its nested estimators' classes.

    The measuring child imports them before taking its memory baseline, so that the figure
    counts the model's data, not the import of scikit-learn.
    """
    objects = [model]
    get_params = getattr(model, "get_params", None)
    if callable(get_params):
        try:
            objects.extend(v for v in get_params(deep=True).values() if hasattr(v, "fit"))
        except Exception:  # noqa: BLE001 - an estimator with an unusual get_params
            pass
    return sorted({type(obj).__module__ for obj in objects})
