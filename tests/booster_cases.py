"""XGBoost and LightGBM models for the booster tests, their predictions and state comparison.

Shared by ``test_boosters.py`` and the fresh-interpreter check it runs (a subprocess imports this
module to recompute predictions), and by the booster attack tests.
"""

from __future__ import annotations

import collections
import functools
import math
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import xgboost as xgb

# Models are fitted with one thread: on a busy machine OpenMP's spinning made a 400-row
# LightGBM fit take 20 s instead of 20 ms.
ONE = {"n_jobs": 1}
RNG = np.random.RandomState(0)
X = RNG.rand(400, 5)
Y_BIN = (X[:, 0] + 0.3 * RNG.rand(400) > 0.6).astype(int)
Y_MULTI = RNG.randint(0, 3, 400)
Y_REG = X[:, 0] * 2 + RNG.rand(400)
Y_TARGETS = np.c_[Y_REG, X[:, 1] - X[:, 2], RNG.rand(400)]
GROUPS = [40] * 10
Y_RANK = RNG.randint(0, 4, 400)
Y_NOISE = RNG.randint(0, 2, 100)  # validation labels unrelated to X: early stopping triggers
X_CAT = np.c_[X[:, :4], RNG.randint(0, 6, 400)]


def version_at_least(library: str, wanted: tuple[int, int]) -> bool:
    """Whether the installed XGBoost or LightGBM is at least ``wanted`` (major, minor)."""
    version = {"xgboost": xgb, "lightgbm": lgb}[library].__version__
    return tuple(int(p) for p in version.split(".")[:2]) >= wanted


def _frame() -> pd.DataFrame:
    df = pd.DataFrame(X[:, :4], columns=list("abcd"))
    df["cat"] = pd.Categorical(RNG.choice(["u", "v", "w", "x", "y"], 400))
    df["num"] = pd.Categorical(RNG.choice([3, 7, 11], 400))
    return df


DF = _frame()
# LightGBM takes pandas categories of any kind; XGBoost wants string or integer ones.


def _xgb_cases() -> dict[str, Any]:
    eval_set = {"eval_set": [(X[:100], Y_NOISE)], "verbose": False}
    return {
        "xgb_binary": lambda: xgb.XGBClassifier(n_estimators=12, max_depth=3, **ONE).fit(
            X, Y_BIN),
        "xgb_multiclass": lambda: xgb.XGBClassifier(n_estimators=8, max_depth=3, **ONE).fit(
            X, Y_MULTI),
        "xgb_regressor": lambda: xgb.XGBRegressor(n_estimators=12, **ONE).fit(X, Y_REG),
        "xgb_ranker": lambda: xgb.XGBRanker(n_estimators=8, **ONE).fit(
            X, Y_RANK, group=GROUPS),
        "xgb_categorical": lambda: xgb.XGBClassifier(
            n_estimators=10, max_depth=3, enable_categorical=True, tree_method="hist",
            max_cat_to_onehot=1, **ONE).fit(DF, Y_MULTI),
        "xgb_early_stopped": lambda: xgb.XGBClassifier(
            n_estimators=50, early_stopping_rounds=2, eval_metric=["logloss", "error"],
            **ONE).fit(X, Y_BIN, **eval_set),
        "xgb_dart": lambda: xgb.XGBRegressor(n_estimators=6, booster="dart", **ONE).fit(
            X, Y_REG),
        "xgb_gblinear": lambda: xgb.XGBRegressor(n_estimators=6, booster="gblinear",
                                                 **ONE).fit(X, Y_REG),
        "xgb_random_forest": lambda: xgb.XGBRFClassifier(n_estimators=4, max_depth=3,
                                                         **ONE).fit(X, Y_MULTI),
        "xgb_parallel_trees": lambda: xgb.XGBClassifier(
            n_estimators=3, num_parallel_tree=2, max_depth=2, **ONE).fit(X, Y_MULTI),
        "xgb_multi_output_tree": lambda: xgb.XGBRegressor(
            n_estimators=5, max_depth=3, tree_method="hist",
            multi_strategy="multi_output_tree", **ONE).fit(X, Y_TARGETS),
        "xgb_multi_target": lambda: xgb.XGBRegressor(n_estimators=4, max_depth=3, **ONE).fit(
            X, Y_TARGETS),
        "xgb_booster": _xgb_booster,
    }


def _xgb_booster() -> xgb.Booster:
    train = xgb.DMatrix(DF, label=Y_MULTI, enable_categorical=True)
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "nthread": 1,
              "eta": 0.2, "max_bin": 64}
    booster = xgb.train(params, train, num_boost_round=6)
    booster.set_attr(note="kept")
    return booster


def _lgb_cases() -> dict[str, Any]:
    quiet = {"verbose": -1, **ONE}
    return {
        "lgb_binary": lambda: lgb.LGBMClassifier(n_estimators=12, num_leaves=7, **quiet).fit(
            X, Y_BIN),
        "lgb_multiclass": lambda: lgb.LGBMClassifier(n_estimators=8, num_leaves=7,
                                                     **quiet).fit(X, Y_MULTI),
        "lgb_multiclassova": lambda: lgb.LGBMClassifier(
            n_estimators=5, num_leaves=5, objective="multiclassova", **quiet).fit(X, Y_MULTI),
        "lgb_regressor": lambda: lgb.LGBMRegressor(n_estimators=12, **quiet).fit(X, Y_REG),
        "lgb_ranker": lambda: lgb.LGBMRanker(n_estimators=8, num_leaves=7, eval_at=(1, 3),
                                             **quiet).fit(
            X, Y_RANK, group=GROUPS, eval_set=[(X, Y_RANK)], eval_group=[GROUPS]),
        "lgb_categorical": lambda: lgb.LGBMClassifier(
            n_estimators=10, num_leaves=7, min_child_samples=5, **quiet).fit(DF, Y_MULTI),
        "lgb_categorical_feature": lambda: lgb.LGBMRegressor(
            n_estimators=10, min_child_samples=5, **quiet).fit(
            X_CAT, Y_REG, categorical_feature=[4]),
        "lgb_early_stopped": _lgb_early_stopped,
        "lgb_linear_tree": lambda: lgb.LGBMRegressor(n_estimators=6, num_leaves=5,
                                                     linear_tree=True, **quiet).fit(X, Y_REG),
        "lgb_stump": lambda: lgb.LGBMRegressor(n_estimators=3, min_child_samples=1000,
                                               **quiet).fit(X, Y_REG),
        "lgb_random_forest": lambda: lgb.LGBMRegressor(
            boosting_type="rf", n_estimators=4, subsample=0.5, subsample_freq=1,
            **quiet).fit(X, Y_REG),
        "lgb_dart": lambda: lgb.LGBMClassifier(boosting_type="dart", n_estimators=6,
                                               num_leaves=5, **quiet).fit(X, Y_BIN),
        "lgb_booster": _lgb_booster,
    }


def _lgb_early_stopped() -> lgb.LGBMClassifier:
    recorded: dict = {}
    model = lgb.LGBMClassifier(n_estimators=50, num_leaves=7, verbose=-1, **ONE)
    model.fit(X, Y_BIN, eval_set=[(X[:100], Y_NOISE), (X[100:200], Y_BIN[100:200])],
              eval_names=["noise", "held"], eval_metric=["auc"],
              callbacks=[lgb.early_stopping(2, verbose=False), lgb.record_evaluation(recorded)])
    model.recorded_ = recorded  # an attribute a user might set: kept like any other
    return model


def _lgb_booster() -> lgb.Booster:
    train = lgb.Dataset(DF, label=Y_REG)
    valid = lgb.Dataset(DF.iloc[:100], label=Y_REG[:100], reference=train)
    params = {"objective": "regression", "verbose": -1, "num_leaves": 7, "num_threads": 1,
              "metric": ["l2", "l1"]}
    return lgb.train(params, train, num_boost_round=8, valid_sets=[train, valid],
                     valid_names=["train", "valid"])


XGB_CASES = _xgb_cases()
LGB_CASES = _lgb_cases()
CASES = {**XGB_CASES, **LGB_CASES}


@functools.cache
def model(name: str) -> Any:
    return CASES[name]()


def data_for(name: str) -> Any:
    """The rows a case is fitted on and predicted with."""
    if name in ("xgb_categorical", "xgb_booster", "lgb_categorical", "lgb_booster"):
        return DF
    if name == "lgb_categorical_feature":
        return X_CAT
    return X


# -- predictions ------------------------------------------------------------------------------


def _outcome(call: Any) -> Any:
    try:
        return call()
    except Exception as exc:  # the same refusal is the same behaviour
        return ("raised", type(exc).__name__)


def predictions(model: Any, data: Any) -> dict[str, Any]:
    """Every predict method and variant the round-trip tests compare, by name."""
    if isinstance(model, xgb.Booster):
        return _xgb_booster_predictions(model, data)
    if isinstance(model, lgb.Booster):
        return _lgb_booster_predictions(model, data)
    out = {"predict": _outcome(lambda: model.predict(data))}
    if hasattr(model, "predict_proba"):
        out["predict_proba"] = _outcome(lambda: model.predict_proba(data))
    if isinstance(model, xgb.XGBModel):
        out["margin"] = _outcome(lambda: model.predict(data, output_margin=True))
        out["first_rounds"] = _outcome(lambda: model.predict(data, iteration_range=(0, 2)))
        out["apply"] = _outcome(lambda: model.apply(data))
        out.update({f"booster_{k}": v for k, v in _xgb_booster_predictions(
            model.get_booster(), data).items()})
    else:
        out["raw"] = _outcome(lambda: model.predict(data, raw_score=True))
        out["first_rounds"] = _outcome(lambda: model.predict(data, num_iteration=2))
        out["later_rounds"] = _outcome(lambda: model.predict(data, start_iteration=1))
        out["leaf"] = _outcome(lambda: model.predict(data, pred_leaf=True))
        out["contrib"] = _outcome(lambda: model.predict(data, pred_contrib=True))
    return out


def _xgb_booster_predictions(booster: xgb.Booster, data: Any) -> dict[str, Any]:
    matrix = xgb.DMatrix(data, enable_categorical=True)
    return {
        "predict": _outcome(lambda: booster.predict(matrix)),
        "margin": _outcome(lambda: booster.predict(matrix, output_margin=True)),
        "leaf": _outcome(lambda: booster.predict(matrix, pred_leaf=True)),
        "contribs": _outcome(lambda: booster.predict(matrix, pred_contribs=True)),
        "range": _outcome(lambda: booster.predict(matrix, iteration_range=(0, 1))),
        "inplace": _outcome(lambda: booster.inplace_predict(data)),
    }


def _lgb_booster_predictions(booster: lgb.Booster, data: Any) -> dict[str, Any]:
    return {
        "predict": _outcome(lambda: booster.predict(data)),
        "raw": _outcome(lambda: booster.predict(data, raw_score=True)),
        "first_rounds": _outcome(lambda: booster.predict(data, num_iteration=2)),
        "leaf": _outcome(lambda: booster.predict(data, pred_leaf=True)),
        "contrib": _outcome(lambda: booster.predict(data, pred_contrib=True)),
        "importance_gain": _outcome(lambda: booster.feature_importance("gain")),
    }


def same_predictions(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """Names of the predictions that differ (bit for bit, nan equal to nan)."""
    bad = [k for k in expected.keys() | got.keys() if k not in expected or k not in got]
    for key in expected.keys() & got.keys():
        a, b = expected[key], got[key]
        if isinstance(a, tuple) or isinstance(b, tuple):
            if type(a) is not type(b) or a != b:
                bad.append(key)
        elif not (type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape
                  and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")):
            bad.append(key)
    return sorted(bad)


# -- state ------------------------------------------------------------------------------------

# LightGBM Booster attributes that describe the training Datasets (which no file carries,
# pickle included) or caches derived from the C++ booster: a loaded booster has them as
# LightGBM's own loader sets them (see docs/FORMAT.md).
LGB_DERIVED = frozenset({
    "_handle", "_network", "_Booster__num_class", "_Booster__num_dataset",
    "_Booster__inner_predict_buffer", "_Booster__is_predicted_cur_iter",
    "_Booster__need_reload_eval_info", "_Booster__num_inner_eval",
    "_Booster__name_inner_eval", "_Booster__higher_better_inner_eval",
    "_Booster__init_predictor", "train_set", "valid_sets", "pandas_categorical"})


def state_differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two object graphs differ: types, values, dict kinds and order, attributes."""
    if type(a) is not type(b):
        return [f"{path}: {type(a).__name__} != {type(b).__name__}"]
    if isinstance(a, xgb.Booster):
        out = []
        if bytes(a.save_raw("ubj")) != bytes(b.save_raw("ubj")):
            out.append(f"{path}: model bytes differ")
        if a.save_config() != b.save_config():
            out.append(f"{path}: configuration differs")
        if a.attributes() != b.attributes():
            out.append(f"{path}: attributes differ")
        return out
    if isinstance(a, lgb.Booster):
        out = []
        if a.model_to_string() != b.model_to_string():
            out.append(f"{path}: model text differs")
        fresh = lgb.Booster(model_str=a.model_to_string())
        for key in a.__dict__.keys() | b.__dict__.keys():
            if key in LGB_DERIVED:
                if key in b.__dict__ and key in fresh.__dict__ and key != "_handle":
                    out += state_differences(fresh.__dict__[key], b.__dict__[key],
                                             f"{path}.{key}(derived)")
            elif key not in a.__dict__ or key not in b.__dict__:
                out.append(f"{path}.{key}: missing on one side")
            else:
                out += state_differences(a.__dict__[key], b.__dict__[key], f"{path}.{key}")
        return out
    if isinstance(a, dict):
        if list(a) != list(b):
            return [f"{path}: keys {list(a)} != {list(b)}"]
        out = []
        if isinstance(a, collections.defaultdict) and a.default_factory != b.default_factory:
            out.append(f"{path}: default_factory differs")
        for key in a:
            out += state_differences(a[key], b[key], f"{path}[{key!r}]")
        return out
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in state_differences(x, y, f"{path}[{i}]")]
    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(
                a, b, equal_nan=a.dtype.kind in "fc"):
            return [f"{path}: arrays differ"]
        return []
    if isinstance(a, float):
        return [] if a == b or (math.isnan(a) and math.isnan(b)) else [f"{path}: {a} != {b}"]
    if a is None or isinstance(a, (bool, int, str, bytes, np.generic)):
        return [] if a == b else [f"{path}: {a!r} != {b!r}"]
    if hasattr(a, "__dict__"):  # attributes: the same names and values, in any order
        va, vb = vars(a), vars(b)
        if va.keys() != vb.keys():
            return [f"{path}: attributes {sorted(va.keys() ^ vb.keys())} on one side only"]
        return [d for key in va for d in state_differences(va[key], vb[key], f"{path}.{key}")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]
