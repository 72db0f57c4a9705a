"""Model invariants checked at load, for state that native code later trusts.

Two hooks, both called by the generic handlers in :mod:`milo_pack.handlers.sklearn`:

- :func:`check_state` runs on the decoded state of an allow-listed internal object *before* it is
  set (HistGradientBoosting's ``TreePredictor``, whose Cython ``predict`` follows node indices
  and bitset rows without bounds checks);
- :func:`check_fitted` runs on a built estimator before it is returned, for cross-attribute
  shapes that scikit-learn's Cython code relies on: a tree's feature count against the
  estimator's ``n_features_in_`` (``predict`` validates X against the estimator, then the tree
  reads ``X[i, feature]``), k-means centres, libsvm model arrays, gradient boosting stages,
  HistGradientBoosting predictors, and the unambiguous ``coef_`` shapes.

Only what is unambiguous for every legitimate model is checked; anything else a stranger's model
gets wrong only makes it predict nonsense.  Attributes are read from the instance ``__dict__``
(never through properties, which would run code on unchecked state).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from .. import _arrays
from ..errors import InvariantError
from ..lazy import member_state

__all__ = ["check_state", "check_fitted", "STATE_CHECKS"]

# No bound from the predictor itself: its features are checked against the estimator.
_ANY_FEATURE = 1 << 62


def _loaded(module: str, name: str) -> Any:
    """``module.name`` if ``module`` is already imported, else None.

    An object can only be an instance of a class whose module is loaded, so the checks below never
    import scikit-learn modules a model does not use (loading a linear model must not pull in the
    tree or SVM code).
    """
    found = sys.modules.get(module)
    return getattr(found, name, None) if found is not None else None


def _fail(message: str, path: str) -> None:
    raise InvariantError(message, path or "<root>")


def _is_array(value: Any, ndim: int | None = None) -> bool:
    return isinstance(value, np.ndarray) and (ndim is None or value.ndim == ndim)


# -- HistGradientBoosting TreePredictor -------------------------------------------------------


def _check_tree_predictor(state: dict, path: str) -> None:
    from sklearn.ensemble._hist_gradient_boosting.common import (
        PREDICTOR_RECORD_DTYPE,
        X_BITSET_INNER_DTYPE,
    )

    nodes = state.get("nodes")
    if not _is_array(nodes, 1) or nodes.dtype != PREDICTOR_RECORD_DTYPE or not nodes.size:
        _fail("predictor nodes must be a 1-D PREDICTOR_RECORD_DTYPE array", path)
    code, at, reason = _arrays.check_hist_predictor(
        nodes["left"], nodes["right"], nodes["is_leaf"], nodes["feature_idx"], _ANY_FEATURE)
    if code:
        _fail(f"predictor node {at}: {reason}", path)
    rows = set()
    for name in ("binned_left_cat_bitsets", "raw_left_cat_bitsets"):
        bitsets = state.get(name)
        if not (_is_array(bitsets, 2) and bitsets.dtype == X_BITSET_INNER_DTYPE
                and bitsets.shape[1] == 8 and bitsets.flags.c_contiguous):
            _fail(f"{name} must be a C-contiguous (n, 8) uint32 array", path)
        rows.add(bitsets.shape[0])
    categorical = (nodes["is_leaf"] == 0) & (nodes["is_categorical"] != 0)
    if categorical.any() and int(nodes["bitset_idx"][categorical].max()) >= min(rows):
        _fail("a categorical split points past the predictor's bitsets", path)


STATE_CHECKS: dict[str, Callable[[dict, str], None]] = {
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor": _check_tree_predictor,
}


def check_state(cls: type, state: dict, path: str) -> None:
    """Check the state of an internal object before it is set (see ``STATE_CHECKS``)."""
    check = STATE_CHECKS.get(f"{cls.__module__}.{cls.__qualname__}")
    if check is not None:
        check(state, path)


# -- estimators -------------------------------------------------------------------------------


def _state(obj: Any) -> dict:
    """``obj.__dict__``; for a lazily loaded member, the state it is built with ({} if none)."""
    return member_state(obj) or {}


def _tree_features(est: Any) -> int | None:
    return _tree_features_of_dict(_state(est))


def _check_tree(obj: Any, d: dict, n: int | None, path: str) -> None:
    """A decision tree estimator's counts must be its ``tree_``'s: predict sizes its outputs
    from ``n_outputs_``/``n_classes_`` and the tree fills them (else a Python error at best)."""
    tree_class = _loaded("sklearn.tree._tree", "Tree")
    tree = d.get("tree_")
    if tree_class is None or not isinstance(tree, tree_class):
        base = _loaded("sklearn.tree._classes", "BaseDecisionTree")
        if "tree_" in d and base is not None and isinstance(obj, base):
            _fail(f"tree_ must be a Tree, not {type(tree).__name__}", path)
        return
    if n != tree.n_features:
        _fail(f"tree_ has {tree.n_features} features, the estimator {n}", path)
    if "n_outputs_" in d and not (type(d["n_outputs_"]) is int
                                  and d["n_outputs_"] == tree.n_outputs):
        _fail(f"n_outputs_ must be the tree's {tree.n_outputs}", path)
    if "n_classes_" in d:
        found, expected = d["n_classes_"], [int(c) for c in tree.n_classes]
        if tree.n_outputs == 1:
            ok = isinstance(found, (int, np.integer)) and [int(found)] == expected
        else:
            ok = _is_array(found, 1) and found.dtype.kind in "iu" and found.tolist() == expected
        classes = d.get("classes_")
        if ok and classes is not None:
            each = [classes] if tree.n_outputs == 1 else classes
            ok = (isinstance(each, list) and len(each) == tree.n_outputs and all(
                _is_array(c, 1) and c.shape[0] == k for c, k in zip(each, expected, strict=True)))
        if not ok:
            _fail(f"n_classes_ and classes_ must match the tree's classes {expected}", path)


def _tree_features_of_dict(d: dict) -> int | None:
    tree_class = _loaded("sklearn.tree._tree", "Tree")
    tree = d.get("tree_")
    return tree.n_features if tree_class is not None and isinstance(tree, tree_class) else None


def _each(items: Any, only: Any) -> Any:
    """The members to check: all of them, or just ``only`` (a lazy member being built)."""
    return items if only is None else (only,)


def _check_members(obj: Any, d: dict, path: str, only: Any = None) -> None:
    """An ensemble calls methods of each of its ``estimators_``: they must be estimators."""
    base = _loaded("sklearn.ensemble._base", "BaseEnsemble")
    members = d.get("estimators_")
    if base is None or not isinstance(obj, base) or members is None:
        return
    items = members.ravel() if _is_array(members) and members.dtype == object else members
    if not isinstance(items, (list, np.ndarray)):
        _fail("estimators_ must be a list or an object array of estimators", path)
    for est in _each(items, only):
        if not isinstance(est, BaseEstimator):
            _fail(f"estimators_ holds a {type(est).__name__}, not an estimator", path)
    _check_forest_trees(obj, d, _each(items, only), path)


def _check_forest_trees(obj: Any, d: dict, items: Any, path: str) -> None:
    """A forest validates X against its own ``n_features_in_`` only (and its first tree), then
    has every tree read ``X[i, feature]`` unchecked: each tree must have exactly that many."""
    forest = _loaded("sklearn.ensemble._forest", "BaseForest")
    n = d.get("n_features_in_")
    if forest is None or not isinstance(obj, forest) or type(n) is not int:
        return
    for est in items:
        state = member_state(est)
        if state is None:
            continue  # a lazily loaded tree: checked against this forest when built
        found = _tree_features_of_dict(state)
        if found is not None and found != n:
            _fail(f"a tree has {found} features, the forest {n}", path)


def _check_gb_stages(obj: Any, d: dict, n: int, path: str, only: Any = None) -> None:
    """GradientBoosting: ``predict_stages`` walks ``estimators_[i, k].tree_`` in Cython and
    adds into column ``k`` of a raw-prediction buffer sized from the loss and ``init_``."""
    stages = d.get("estimators_")
    if not (_is_array(stages) and stages.dtype == object):
        return
    if stages.ndim != 2:
        _fail("estimators_ must be a 2-D array of trees", path)
    width = d.get("n_trees_per_iteration_")
    loss = d.get("_loss")
    multiclass = bool(getattr(loss, "is_multiclass", False))
    init = d.get("init_")
    init_classes = getattr(init, "__dict__", {}).get("classes_")
    expected = width if multiclass else 1
    if (stages.shape[1] != width or stages.shape[1] != expected or (
            multiclass and init != "zero" and init_classes is not None
            and len(init_classes) != width)):
        _fail("estimators_ columns disagree with n_trees_per_iteration_ and the loss", path)
    for est in _each(stages.ravel(), only):
        state = member_state(est)
        if state is None:
            continue  # a lazily loaded stage: checked against this estimator when built
        found = _tree_features_of_dict(state)
        own = state.get("n_features_in_")
        if found is None or found != n or (own is not None and own != n):
            _fail(f"every stage must be a tree over the estimator's {n} features", path)


def _check_hist_predictors(d: dict, n: int, path: str, only: Any = None) -> None:
    predictors = d.get("_predictors")
    if not isinstance(predictors, list):
        return
    mapper = d.get("_bin_mapper")
    is_cat = getattr(mapper, "__dict__", {}).get("is_categorical_")
    stages = predictors if only is None else [only]
    for stage in stages:
        for predictor in stage if isinstance(stage, list) else [stage]:
            nodes = _state(predictor).get("nodes")  # {} for a lazy one not built yet
            if not _is_array(nodes, 1) or nodes.dtype.names is None:
                continue  # not a TreePredictor; sklearn will refuse it with a Python error
            inner = nodes["is_leaf"] == 0
            features = nodes["feature_idx"][inner]
            if features.size and int(features.max()) >= n:
                _fail(f"a predictor splits on a feature >= n_features_in_ ({n})", path)
            cat = nodes["feature_idx"][inner & (nodes["is_categorical"] != 0)]
            if cat.size and not (_is_array(is_cat, 1) and int(cat.max()) < is_cat.size
                                 and np.all(is_cat[cat] != 0)):
                _fail("a categorical split is on a feature the bin mapper does not mark "
                      "categorical", path)


def _check_kmeans(obj: Any, d: dict, n: int, path: str) -> None:
    base = _loaded("sklearn.cluster._kmeans", "_BaseKMeans")
    centers = d.get("cluster_centers_")
    if base is not None and isinstance(obj, base) and centers is not None and not (
            _is_array(centers, 2) and centers.shape[1] == n):
        _fail(f"cluster_centers_ must be (n_clusters, {n})", path)


def _check_libsvm(obj: Any, d: dict, n: int | None, path: str) -> None:
    """libsvm's ``predict`` sizes its model from ``_n_support`` and reads the rest blindly."""
    base = _loaded("sklearn.svm._base", "BaseLibSVM")
    keys = ("_n_support", "support_vectors_", "_dual_coef_", "_intercept_", "support_",
            "_probA", "_probB")
    if base is None or not isinstance(obj, base) or not all(k in d for k in keys):
        return
    n_support, sv, dual, intercept, support, prob_a, prob_b = (d[k] for k in keys)
    if not (_is_array(n_support, 1) and n_support.dtype.kind in "iu" and n_support.size >= 2
            and np.all(n_support >= 0) and hasattr(sv, "shape") and len(sv.shape) == 2
            and _is_array(support, 1) and support.dtype.kind in "iu"):
        _fail("_n_support, support_vectors_ and support_ have the wrong kind", path)
    impl = getattr(obj, "_impl", None)  # what sklearn passes libsvm as the model type
    if impl in ("c_svc", "nu_svc"):
        n_class, n_sv = n_support.shape[0], int(n_support.sum())
    else:  # regression and one-class models: two entries, both the support vector count
        n_class, n_sv = 2, int(n_support[0])
    pairs = n_class * (n_class - 1) // 2
    precomputed = d.get("kernel") == "precomputed"
    ok = (support.shape[0] == n_sv and (sv.shape[0] == n_sv or (precomputed and not sv.size))
          and (impl in ("c_svc", "nu_svc") or n_support.shape[0] == 2)
          and getattr(dual, "shape", None) == (n_class - 1, n_sv)
          and _is_array(intercept, 1) and intercept.shape[0] == pairs
          and all(_is_array(p, 1) and p.shape[0] in (0, pairs) for p in (prob_a, prob_b)))
    if not ok:
        _fail("libsvm model arrays disagree (_n_support, support_vectors_, _dual_coef_, "
              "_intercept_, support_, _probA/_probB)", path)
    shape_fit = d.get("shape_fit_")
    if not (isinstance(shape_fit, tuple) and len(shape_fit) == 2
            and all(type(v) is int for v in shape_fit)):
        _fail("shape_fit_ must be two ints", path)
    if support.size and (int(support.min()) < 0 or int(support.max()) >= shape_fit[0]):
        _fail("support_ indices must lie within the training samples", path)
    kernel = d.get("kernel")
    if n is not None and n_sv and isinstance(kernel, str) and not precomputed and (
            sv.shape[1] != n or shape_fit[1] != n):
        _fail(f"support vectors must have the estimator's {n} features", path)


def _check_coef(obj: Any, d: dict, n: int, path: str) -> None:
    coef = d.get("coef_")
    shape = getattr(coef, "shape", None)
    if not isinstance(shape, tuple) or len(shape) not in (1, 2):
        return
    if shape[-1] != n:
        _fail(f"coef_ has {shape[-1]} columns, the estimator {n} features", path)
    classes = d.get("classes_")
    if (len(shape) == 2 and isinstance(obj, ClassifierMixin)
            and _is_array(classes, 1) and shape[0] not in (1, classes.shape[0])):
        _fail(f"coef_ has {shape[0]} rows for {classes.shape[0]} classes", path)


def check_fitted(obj: Any, path: str, only: Any = None) -> None:
    """Check a built estimator's cross-attribute shapes before it is returned.

    ``only``: a lazily loaded member just built; its ensemble's checks then look at that member
    alone (the others were checked when they were built), so building every member of an
    ensemble one by one costs linear, not quadratic, time.
    """
    d = getattr(obj, "__dict__", None)
    if not isinstance(d, dict):
        return
    n = d.get("n_features_in_")
    n = n if type(n) is int else None
    _check_libsvm(obj, d, n, path)
    _check_tree(obj, d, n, path)
    _check_members(obj, d, path, only)
    if n is None:
        return
    _check_gb_stages(obj, d, n, path, only)
    _check_hist_predictors(d, n, path, only)
    _check_kmeans(obj, d, n, path)
    _check_coef(obj, d, n, path)
