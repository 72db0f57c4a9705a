"""The declared invariants: for each scikit-learn class whose fitted state reaches native code,
which attributes must exist, their kinds, and how their shapes relate.

This is the one place that states them.  ``docs/SECURITY.md`` lists them from here (a test fails
when the two drift apart), and ``tests/attacks/test_differential.py`` mutates every attribute
named here to prove that a mutant is refused or harmless.

Symbols: ``F`` the feature count (``n_features_in_``), ``N`` fitted samples, ``C`` classes,
``K`` outputs per boosting iteration / clusters / rows of ``coef_``, ``S`` stages, ``L`` members.
Bounds come from validated array shapes, never from a second attribute that a file could set
on its own: where scikit-learn sizes a buffer from an attribute (``n_trees_per_iteration_``,
``n_samples_fit_``, ``_n_out_full``), the attribute must equal what the arrays imply.
"""

from __future__ import annotations

import warnings
from operator import attrgetter, methodcaller
from typing import Any, cast

import numpy as np

from .kinds import (
    MAX_THREADS,
    Absent,
    Anything,
    Array,
    Attr,
    Choice,
    Dict,
    Env,
    Estimator,
    Flag,
    Instance,
    Int,
    NoneValue,
    Objects,
    OneOf,
    Real,
    Reject,
    Rule,
    Seq,
    Shape,
    Sparse,
    Spec,
    loaded_class,
)

__all__ = ["SPECS", "STRUCTURES"]

_TREE = ("sklearn.tree._tree", "Tree")
_DECISION_TREE = ("sklearn.tree._classes", "BaseDecisionTree")
_N_FEATURES = Attr("n_features_in_", Int(lo=1, dim="F"),
                   "predict validates X against it; native code then indexes X's columns")


def _tree_of(d: dict[str, Any]) -> Any:
    tree = d.get("tree_")
    cls = loaded_class(*_TREE)
    return tree if cls is not None and isinstance(tree, cls) else None


def _is_classifier(obj: Any) -> bool:
    cls = type(obj)
    found = _CLASSIFIERS.get(cls)
    if found is None:
        mixin = loaded_class("sklearn.base", "ClassifierMixin")
        found = _CLASSIFIERS[cls] = mixin is not None and issubclass(cls, mixin)
    return found


_CLASSIFIERS: dict[type, bool] = {}


# -- decision trees ------------------------------------------------------------------------------


def _tree_counts(env: Env) -> None:
    tree = env["tree_"]
    if tree.n_features != env.dims["F"]:
        raise Reject(f"tree_ has {tree.n_features} features, the estimator {env.dims['F']}")
    if tree.n_outputs != env.dims["O"]:
        raise Reject(f"tree_ has {tree.n_outputs} outputs, n_outputs_ is {env.dims['O']}")


def _tree_classes(env: Env) -> None:
    if not _is_classifier(env.obj):
        return
    if not (env.has("n_classes_") and env.has("classes_")):
        raise Reject("a classifier needs n_classes_ and classes_")
    tree, n_outputs = env["tree_"], env.dims["O"]
    expected = [int(c) for c in tree.n_classes]
    found, classes = env["n_classes_"], env["classes_"]
    if n_outputs == 1:
        ok = isinstance(found, int) and [found] == expected and isinstance(classes, np.ndarray) \
            and classes.ndim == 1 and classes.shape[0] == expected[0]
    else:
        ok = (isinstance(found, np.ndarray) and found.ndim == 1 and found.dtype.kind in "iu"
              and found.tolist() == expected and isinstance(classes, list)
              and len(classes) == n_outputs
              and all(isinstance(c, np.ndarray) and c.ndim == 1 and c.shape[0] == k
                      for c, k in zip(classes, expected, strict=True)))
    if not ok:
        raise Reject(f"n_classes_ and classes_ must match the tree's classes {expected}")


def _tree_alike(tree: Any) -> tuple[Any, ...]:
    """What the kind and the rules of :data:`TREE` read of ``tree_``: its type and counts (a
    value of another type is alike to nothing, its properties are not read)."""
    cls = loaded_class(*_TREE)
    if cls is None or type(tree) is not cls:
        return (type(tree), id(tree))
    found: Any = tree  # a class of an untyped module
    return (cls, found.n_features, found.n_outputs, tuple(found.n_classes.tolist()))


_CLASS_COUNTS = OneOf((Int(lo=1), Array("iu", (None,))))
_CLASS_LABELS = OneOf((Array("biufUSO", (None,)), Seq(Array("biufUSO", (None,)))))

TREE = Spec(
    "decision trees (`DecisionTree*`, `ExtraTree*`)", _DECISION_TREE,
    "`Tree.predict/apply/decision_path` read `X[i, node.feature]` without bounds checks and "
    "fill outputs sized from the estimator's counts",
    attrs=(
        _N_FEATURES,
        Attr("n_outputs_", Int(lo=1, dim="O"), "sizes the output of predict"),
        Attr("tree_", Instance(*_TREE), "the Cython tree (its nodes are checked when built)"),
        Attr("n_classes_", _CLASS_COUNTS, "sizes predict_proba (classifiers)", optional=True),
        Attr("classes_", _CLASS_LABELS, "labels of predict (classifiers)", optional=True,
             data=True),
    ),
    rules=(
        Rule("`tree_` has `F` features and `n_outputs_` outputs", _tree_counts),
        Rule("classifiers have `n_classes_` and `classes_`, equal to the tree's class counts",
             _tree_classes),
    ),
    alike=(("tree_", _tree_alike),),
)



# -- forests -------------------------------------------------------------------------------------


def _count_is_param(env: Env, name: str = "n_estimators") -> None:
    """The member count is the parameter's (a model fitted with it has that many)."""
    count, wanted = env.dims["L"], env.d.get(name)
    if not (type(wanted) is int and wanted == count):
        raise Reject(f"estimators_ must hold {name} members, not {count}")


def _same_counts(member: dict[str, Any], env: Env, i: int, what: str) -> None:
    """A member tree's feature/output/class counts must be its ensemble's."""
    tree = _tree_of(member)
    n_in = member.get("n_features_in_")
    if tree is None or tree.n_features != env.dims["F"] or not (
            isinstance(n_in, (int, np.integer)) and int(n_in) == env.dims["F"]):
        raise Reject(f"{what}[{i}] must be a tree over the estimator's {env.dims['F']} features")


def _forest_members(env: Env) -> None:
    n_outputs = env.dims.get("O")
    for i, d in env.members("estimators_"):
        _same_counts(d, env, i, "estimators_")
        tree = _tree_of(d)
        if n_outputs is not None and tree.n_outputs != n_outputs:
            raise Reject(f"estimators_[{i}] has {tree.n_outputs} outputs, the forest "
                         f"{n_outputs}")
        if _is_classifier(env.obj):
            expected = env["n_classes_"]
            counts = [int(c) for c in tree.n_classes]
            want = [expected] if isinstance(expected, int) else [int(c) for c in expected]
            if counts != want:
                raise Reject(f"estimators_[{i}] has classes {counts}, the forest {want}")


def _forest_classes(env: Env) -> None:
    if not _is_classifier(env.obj):
        return
    if not (env.has("n_classes_") and env.has("classes_")):
        raise Reject("a forest classifier needs n_classes_ and classes_")
    found, classes, n_outputs = env["n_classes_"], env["classes_"], env.dims["O"]
    if n_outputs == 1:
        ok = isinstance(found, int) and isinstance(classes, np.ndarray) and \
            classes.ndim == 1 and classes.shape[0] == found
    else:
        ok = (isinstance(classes, list) and len(classes) == n_outputs
              and isinstance(found, list) and len(found) == n_outputs
              and all(isinstance(c, np.ndarray) and isinstance(k, (int, np.integer))
                      and c.shape == (int(k),) for c, k in zip(classes, found, strict=True)))
    if not ok:
        raise Reject("n_classes_ and classes_ must agree (one count and labels per output)")


FOREST = Spec(
    "forests (`RandomForest*`, `ExtraTrees*`, `RandomTreesEmbedding`)",
    ("sklearn.ensemble._forest", "BaseForest"),
    "each member's `Tree.predict/apply` runs with `check_input=False` on X validated against "
    "the forest, so a member over more features reads past X",
    attrs=(
        _N_FEATURES,
        Attr("n_outputs_", Int(lo=1, dim="O"), "sizes the accumulated predictions"),
        Attr("estimators_", Seq(Instance(*_DECISION_TREE), length="L", min_length=1),
             "the member trees"),
        Attr("n_classes_", OneOf((Int(lo=1), Seq(Int(lo=1)))), "classifiers", optional=True),
        Attr("classes_", _CLASS_LABELS, "classifiers", optional=True, data=True),
    ),
    rules=(
        Rule("`L` is the `n_estimators` parameter", _count_is_param),
        Rule("classifiers: `n_classes_` and `classes_` agree per output", _forest_classes),
        Rule("every member (deep, packed or lazily built) has `F` features, `n_outputs_` "
             "outputs and the forest's class counts", _forest_members, members=True),
    ),
)


# -- bagging and isolation forests ---------------------------------------------------------------


def _bagging_classes(env: Env) -> None:
    if not _is_classifier(env.obj):
        return
    classes, count = env.get("classes_"), env.get("n_classes_")
    if classes is None or count is None or classes.shape[0] != count:
        raise Reject("a classifier needs classes_ and n_classes_ = len(classes_)")


def _bagging_members(env: Env) -> None:
    classes = env.get("n_classes_")
    features = env["estimators_features_"]
    for i, d in env.members("estimators_"):
        n_in = d.get("n_features_in_")
        if n_in is not None and not (isinstance(n_in, (int, np.integer))
                                     and int(n_in) == features[i].shape[0]):
            raise Reject(f"estimators_[{i}] is fitted on {n_in} features, it is given "
                         f"{features[i].shape[0]}")
        tree = _tree_of(d)
        if tree is not None and tree.n_features != features[i].shape[0]:
            raise Reject(f"estimators_[{i}].tree_ reads {tree.n_features} features, it is "
                         f"given {features[i].shape[0]}")
        member_classes = d.get("classes_")
        if classes is not None and isinstance(member_classes, np.ndarray) and (
                member_classes.dtype.kind not in "iu" or (member_classes.size and (
                    int(member_classes.min()) < 0 or int(member_classes.max()) >= classes))):
            raise Reject(f"estimators_[{i}].classes_ must index the {classes} classes")


BAGGING = Spec(
    "bagging (`Bagging*`)", ("sklearn.ensemble._bagging", "BaseBagging"),
    "each member predicts on `X[:, estimators_features_[i]]`; members' class indices "
    "address the ensemble's probability columns",
    attrs=(
        _N_FEATURES,
        Attr("estimators_", Seq(Estimator(), length="L", min_length=1), "the members"),
        Attr("estimators_features_", Seq(Array("iu", (None,), values=(0, "F")), length="L"),
             "the columns each member sees"),
        Attr("n_classes_", Int(lo=1), "classifiers: probability columns", optional=True),
        Attr("classes_", Array("biufUSO", (None,)), "classifiers: labels", optional=True,
             data=True),
    ),
    rules=(
        Rule("`L` is the `n_estimators` parameter", _count_is_param),
        Rule("classifiers: `n_classes_` is the length of `classes_` (it sizes the "
             "probabilities)", _bagging_classes),
        Rule("each member is fitted on as many features as it is given, and a classifier's "
             "member classes index the ensemble's classes", _bagging_members, members=True),
    ),
    exclude=(("sklearn.ensemble._iforest", "IsolationForest"),),
)


def _iforest_members(env: Env) -> None:
    width = env["_max_features"]
    features = env["estimators_features_"]
    paths, lengths = env["_decision_path_lengths"], env["_average_path_length_per_tree"]
    if env.focus is None:
        if len(paths) != len(features) or len(lengths) != len(features):
            raise Reject("per-tree path lengths must have one entry per tree")
        for i, f in enumerate(features):
            if f.shape[0] != width:
                raise Reject(f"estimators_features_[{i}] must hold _max_features ({width}) "
                             "columns")
    for i, d in env.members("estimators_"):
        tree = _tree_of(d)
        n_in = d.get("n_features_in_")
        if tree is None or tree.n_features != width or not (
                isinstance(n_in, (int, np.integer)) and int(n_in) == width):
            raise Reject(f"estimators_[{i}] must be a tree over _max_features ({width}) "
                         "features")
        for name, values in (("_decision_path_lengths", paths[i]),
                             ("_average_path_length_per_tree", lengths[i])):
            if not (isinstance(values, np.ndarray) and values.ndim == 1
                    and values.shape[0] == tree.node_count):
                raise Reject(f"{name}[{i}] must have one entry per node of tree {i}")


def _tuple_arrays(env: Env) -> None:
    for name in ("_decision_path_lengths", "_average_path_length_per_tree"):
        value = env[name]
        if type(value) not in (tuple, list) or not all(
                type(v) is np.ndarray and v.ndim == 1 and v.dtype.kind in "iuf" for v in value):
            raise Reject(f"{name} must be a sequence of 1-D numeric arrays")


IFOREST = Spec(
    "`IsolationForest`", ("sklearn.ensemble._iforest", "IsolationForest"),
    "each tree's `apply` runs with `check_input=False` on `X` or `X[:, features]`, chosen by "
    "`_max_features == X.shape[1]`; leaf indices address per-tree path-length arrays",
    attrs=(
        _N_FEATURES,
        Attr("_max_features", Int(lo=1, hi="F"), "decides whether trees see column subsets"),
        Attr("estimators_", Seq(Instance(*_DECISION_TREE), length="L", min_length=1),
             "the isolation trees"),
        Attr("estimators_features_", Seq(Array("iu", (None,), values=(0, "F")), length="L"),
             "the columns each tree sees"),
        Attr("_decision_path_lengths", Anything(), "per-tree node depths, indexed by leaf"),
        Attr("_average_path_length_per_tree", Anything(), "per-tree values, indexed by leaf"),
    ),
    rules=(
        Rule("`L` is the `n_estimators` parameter", _count_is_param),
        Rule("per-tree path lengths are sequences of 1-D numeric arrays", _tuple_arrays),
        Rule("every tree reads `_max_features` columns, each feature subset has that many, "
             "and the per-tree arrays have one entry per node", _iforest_members,
             members=True),
    ),
)


# -- gradient boosting ---------------------------------------------------------------------------


def _gb_layout(env: Env) -> None:
    width, stages = env["n_trees_per_iteration_"], env.dims["K"]
    if width != stages:
        raise Reject(f"n_trees_per_iteration_ ({width}) must be the {stages} columns of "
                     "estimators_ (the raw predictions buffer is that wide)")
    if _is_classifier(env.obj):
        n_classes = env["n_classes_"]
        classes = env["classes_"]
        if classes.shape[0] != n_classes or stages != (n_classes if n_classes > 2 else 1):
            raise Reject("a classifier has one column of stages (binary) or one per class")
    elif stages != 1:
        raise Reject("a regressor has one column of stages")
    loss = env["_loss"]
    multiclass = bool(getattr(loss, "is_multiclass", False))
    if multiclass != (stages > 1) or (multiclass and getattr(loss, "n_classes", None) != stages):
        raise Reject("_loss must be multiclass exactly when there are several stage columns")


def _gb_stages(env: Env) -> None:
    stages, wanted = env.dims["S"], env.d.get("n_estimators")
    if env["n_estimators_"] != stages or not (type(wanted) is int and stages <= wanted):
        raise Reject("n_estimators_ must be the number of stages (at most n_estimators)")


def _gb_init_width(env: Env) -> None:
    """The raw-prediction buffer ``predict_stages`` writes into is sized by ``init_``'s output;
    it must be exactly as wide as the stage columns.  Measured by scikit-learn's own function
    on one row of zeros (init_ was checked when it was built)."""
    init, stages = env["init_"], env.dims["K"]
    if isinstance(init, str):
        return  # "zero": n_trees_per_iteration_ columns, checked against the stages
    try:
        from sklearn.base import is_classifier
        from sklearn.ensemble._gb import _init_raw_predictions

        probe = np.zeros((1, env.dims["F"]), dtype=np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = _init_raw_predictions(probe, init, env["_loss"], is_classifier(env.obj))
    except Exception as exc:  # noqa: BLE001 - any failure: the width cannot be established
        raise Reject(f"init_ cannot predict one row ({type(exc).__name__}), so the width of "
                     "its raw predictions is unknown") from None
    if not (isinstance(raw, np.ndarray) and raw.shape == (1, stages)):
        raise Reject(f"init_ gives raw predictions of shape {getattr(raw, 'shape', None)}, "
                     f"the stages need (1, {stages})")


_ONE_CLASS = np.array([1], dtype=np.intp).tobytes()
_TREE_OF, _N_IN = methodcaller("get", "tree_"), methodcaller("get", "n_features_in_")


def _gb_members_pass(members: list[dict[str, Any]], n_features: int) -> bool:
    """True only if every member passes :func:`_gb_members`' loop: one C loop per property
    over all members (exactly scikit-learn's ``Tree``, exactly ``int`` feature counts); False
    where one differs or the pass cannot tell (then the loop decides and names the member)."""
    cls = loaded_class(*_TREE)
    trees = list(map(_TREE_OF, members))
    n_in = list(map(_N_IN, members))
    return (cls is not None and set(map(type, trees)) == {cls}
            and set(map(type, n_in)) == {int} and set(n_in) == {n_features}
            and set(map(_N_FEATURES_OF, trees)) == {n_features}
            and set(map(_N_OUTPUTS_OF, trees)) == {1}
            # n_classes: scikit-learn's intp array of n_outputs (1) counts.
            and set(map(bytes, map(_N_CLASSES_OF, trees))) == {_ONE_CLASS})


_N_FEATURES_OF, _N_OUTPUTS_OF, _N_CLASSES_OF = (
    attrgetter("n_features"), attrgetter("n_outputs"), attrgetter("n_classes"))


def _gb_members(env: Env) -> None:
    members = list(env.members("estimators_"))
    try:
        if members and _gb_members_pass([d for _, d in members], env.dims["F"]):
            return
    except Exception:  # noqa: BLE001 - the pass cannot tell: the loop decides
        pass
    for i, d in members:
        _same_counts(d, env, i, "estimators_")
        tree = _tree_of(d)
        if tree.n_outputs != 1 or [int(c) for c in tree.n_classes] != [1]:
            raise Reject(f"estimators_[{i}] must be a single-output regression tree (the "
                         "stage predictor reads one value per node)")


GRADIENT_BOOSTING = Spec(
    "`GradientBoosting*`", ("sklearn.ensemble._gb", "BaseGradientBoosting"),
    "Cython `predict_stages` walks `estimators_[i, k].tree_` and adds into column `k` of a "
    "buffer sized by `init_`'s output (or `n_trees_per_iteration_`), reading one value a node",
    attrs=(
        _N_FEATURES,
        Attr("estimators_", Objects(Instance("sklearn.tree._classes", "DecisionTreeRegressor"),
                                    ("S", "K")), "the stages, one column per output"),
        Attr("n_trees_per_iteration_", Int(lo=1), "sizes the raw predictions when init is "
             "'zero'"),
        Attr("n_estimators_", Int(lo=1), "the number of stages fitted"),
        Attr("train_score_", Array("f", ("S",)), "one score per stage", data=True),
        Attr("_loss", Instance("sklearn._loss.loss", "BaseLoss"), "turns raw predictions into "
             "outputs"),
        Attr("init_", OneOf((Choice(("zero",)), Estimator())), "sizes the raw predictions"),
        Attr("n_classes_", Int(lo=2), "classifiers", optional=True),
        Attr("classes_", Array("biufUSO", (None,)), "classifiers", optional=True,
             data=True),
    ),
    rules=(
        Rule("classifiers have `n_classes_` and `classes_`",
             lambda env: None if not _is_classifier(env.obj) or (
                 env.has("n_classes_") and env.has("classes_"))
             else env.fail("a classifier needs n_classes_ and classes_")),
        Rule("`n_estimators_` is `S`, at most the `n_estimators` parameter", _gb_stages),
        Rule("`n_trees_per_iteration_` is `K`, which is 1, or `C` for a multiclass "
             "classifier, and `_loss` agrees", _gb_layout),
        Rule("`init_`'s raw predictions (measured on one row) are `K` wide", _gb_init_width),
        Rule("every stage (packed or lazily built) is a single-output regression tree over "
             "`F` features", _gb_members, members=True),
    ),
)


# -- HistGradientBoosting ------------------------------------------------------------------------

_BIN_MAPPER = ("sklearn.ensemble._hist_gradient_boosting.binning", "_BinMapper")
_PREDICTOR = ("sklearn.ensemble._hist_gradient_boosting.predictor", "TreePredictor")


def _hgb_layout(env: Env) -> None:
    width = env.dims["K"]
    if _is_classifier(env.obj):
        classes = env.get("classes_")
        if not isinstance(classes, np.ndarray):
            raise Reject("a classifier needs classes_")
        n_classes = classes.shape[0]
        if width != (n_classes if n_classes > 2 else 1):
            raise Reject("a classifier has one predictor a stage (binary) or one per class")
    elif width != 1:
        raise Reject("a regressor has one predictor a stage")
    if any(len(stage) != width for stage in env["_predictors"]):
        raise Reject(f"every stage must have n_trees_per_iteration_ ({width}) predictors")


def _hgb_iterations(env: Env) -> None:
    """As many stages as the model was fitted for: ``max_iter``, or fewer with early stopping
    (then one training score per stage and one for the baseline)."""
    stages, max_iter = env.dims["S"], env.d.get("max_iter")
    if not (type(max_iter) is int and stages <= max_iter):
        raise Reject("there must be at most max_iter stages")
    early = env["do_early_stopping_"]
    scores = env["train_score_"]
    if (not early and stages != max_iter) or (early and scores.shape != (stages + 1,)):
        raise Reject("without early stopping there are max_iter stages; with it, "
                     "train_score_ has one entry per stage plus the baseline")


def _hgb_bin_mapper(env: Env) -> None:
    mapper = env["_bin_mapper"].__dict__
    is_cat = mapper.get("is_categorical_")
    if not (isinstance(is_cat, np.ndarray) and is_cat.shape == (env.dims["F"],)):
        raise Reject(f"_bin_mapper.is_categorical_ must have the {env.dims['F']} features "
                     "(known-category lookups index it by feature)")


def _hgb_preprocessor(env: Env) -> None:
    """The predictors read columns of what ``_preprocessor.transform`` returns: it must be
    scikit-learn's own layout (ordinal encoder + check_array pass-through over complementary
    masks), whose output has exactly ``F`` columns."""
    pre = env["_preprocessor"]
    if (pre is None) != (env.d.get("is_categorical_") is None):
        raise Reject("_preprocessor exists exactly when the model has categorical features")
    if pre is None:
        return
    ct = loaded_class("sklearn.compose._column_transformer", "ColumnTransformer")
    d = getattr(pre, "__dict__", {})
    steps: Any = d.get("transformers_")
    n_features = env.dims["F"]
    # scikit-learn before 1.6 lists no remainder when no column is left over (the masks are
    # complementary, so none ever is); later versions list ("remainder", "drop", []).
    ok = ct is not None and type(pre) is ct and isinstance(steps, list) and len(steps) in (2, 3)
    if ok:
        triples: list[Any] = [s if isinstance(s, tuple) and len(s) == 3 else (None, None, None)
                              for s in steps]
        if len(triples) == 2:
            triples.append(("remainder", "drop", None))
        (enc_name, encoder, enc_cols), (num_name, numeric, num_cols), (rem_name, rem, _) = (
            triples)
        ordinal = loaded_class("sklearn.preprocessing._encoders", "OrdinalEncoder")
        function = loaded_class("sklearn.preprocessing._function_transformer",
                                "FunctionTransformer")
        ok = (enc_name == "encoder" and num_name == "numerical" and rem_name == "remainder"
              and rem == "drop" and ordinal is not None and type(encoder) is ordinal
              and function is not None and type(numeric) is function
              and all(isinstance(c, np.ndarray) and c.dtype == bool
                      and c.shape == (n_features,) for c in (enc_cols, num_cols))
              and bool(np.all(enc_cols ^ num_cols))
              and encoder.__dict__.get("n_features_in_") == int(enc_cols.sum())
              and d.get("n_features_in_") == n_features and not d.get("sparse_output_")
              and _is_check_array(numeric.__dict__.get("func"))
              and numeric.__dict__.get("kw_args") is None)
    if not ok:
        raise Reject("_preprocessor must be scikit-learn's layout (an OrdinalEncoder and a "
                     "check_array pass-through over complementary feature masks)")


def _is_check_array(func: Any) -> bool:
    import functools

    from sklearn.utils.validation import check_array

    return type(func) is functools.partial and func.func is check_array and not func.args


_BASE, _NDIM, _DTYPE = attrgetter("base"), attrgetter("ndim"), attrgetter("dtype")


def _hgb_splits_pass(nodes: list[np.ndarray], n_features: int, is_cat: np.ndarray) -> bool:
    """True if no split of any of ``nodes`` (1-D arrays of one record dtype) breaks
    :func:`_hgb_members`' rules; False: a break, or not known.

    Members loaded together are views of one record array: that array, a superset of their
    nodes, is checked whole (the rules are per node).
    """
    base = nodes[0].base
    if (isinstance(base, np.ndarray) and base.dtype == nodes[0].dtype and base.ndim == 1
            and len(set(map(id, map(_BASE, nodes)))) == 1):
        is_leaf, feature, categorical = base["is_leaf"], base["feature_idx"], base["is_categorical"]
    else:
        is_leaf, feature, categorical = (np.concatenate([n[name] for n in nodes])
                                         for name in ("is_leaf", "feature_idx", "is_categorical"))
    inner = is_leaf == 0
    features = feature[inner]
    if features.size and int(features.max()) >= n_features:
        return False
    cat = feature[inner & (categorical != 0)]
    return not cat.size or bool(np.all(is_cat[cat] != 0))


def _hgb_members(env: Env) -> None:
    n_features = env.dims["F"]
    is_cat = env["_bin_mapper"].__dict__["is_categorical_"]
    members = [d for _, d in env.members("_predictors")]
    # One pass over every member's nodes at once; where it finds a break (or cannot run), the
    # members are checked one by one below, which names the first break.
    all_nodes = [d.get("nodes") for d in members]
    first = all_nodes[0] if all_nodes else None
    if isinstance(first, np.ndarray) and first.dtype.names is not None and first.ndim == 1 and (
            # Members loaded together: exact arrays of one dtype object (so equal dtypes) ...
            (set(map(type, all_nodes)) == {np.ndarray} and set(map(_NDIM, all_nodes)) == {1}
             and len(set(map(id, map(_DTYPE, all_nodes)))) == 1)
            # ... else each compared.
            or all(isinstance(n, np.ndarray) and n.dtype == first.dtype and n.ndim == 1
                   for n in all_nodes)):
        try:
            if _hgb_splits_pass(cast("list[np.ndarray]", all_nodes), n_features, is_cat):
                return
        except (IndexError, ValueError, TypeError):
            pass
    for d in members:
        nodes = d.get("nodes")
        if not isinstance(nodes, np.ndarray) or nodes.dtype.names is None:
            raise Reject("a predictor has no nodes")  # pragma: no cover - state check
        inner = nodes["is_leaf"] == 0
        features = nodes["feature_idx"][inner]
        if features.size and int(features.max()) >= n_features:
            raise Reject(f"a predictor splits on a feature >= n_features_in_ ({n_features})")
        cat = nodes["feature_idx"][inner & (nodes["is_categorical"] != 0)]
        if cat.size and not bool(np.all(is_cat[cat] != 0)):
            raise Reject("a categorical split is on a feature the bin mapper does not mark "
                         "categorical")


HIST_GRADIENT_BOOSTING = Spec(
    "`HistGradientBoosting*`",
    ("sklearn.ensemble._hist_gradient_boosting.gradient_boosting", "BaseHistGradientBoosting"),
    "Cython `_predict_from_raw_data` reads `X[i, node.feature_idx]` and, for categorical "
    "splits, `known_cat_bitsets[f_idx_map[feature_idx]]` built from the bin mapper; "
    "`_in_fit` would switch predict to binned data that is never validated",
    attrs=(
        _N_FEATURES,
        Attr("_predictors", Seq(Seq(Instance(*_PREDICTOR), length="K"), length="S",
                                min_length=1),
             "the predictors, one list per iteration"),
        Attr("n_trees_per_iteration_", Int(lo=1, dim="K"), "columns of the raw predictions"),
        Attr("_baseline_prediction", Array("f", (1, "K")), "added to the raw predictions"),
        Attr("_bin_mapper", Instance(*_BIN_MAPPER), "known categories, by feature"),
        Attr("_preprocessor", OneOf((NoneValue(), Anything())), "transforms X before predict"),
        Attr("_loss", Instance("sklearn._loss.loss", "BaseLoss"), "turns raw predictions "
             "into outputs"),
        Attr("classes_", Array("biufUSO", ("C",)), "classifiers", optional=True, data=True),
        Attr("_in_fit", Absent(), "set only while fitting: predict would skip validating X"),
        Attr("do_early_stopping_", Flag(), "whether fewer than max_iter stages may exist"),
        Attr("train_score_", Array("f", (None,)), "scores per stage", data=True),
    ),
    rules=(
        Rule("`S` is `max_iter`, or less with early stopping (then `train_score_` has "
             "`S + 1` entries)", _hgb_iterations),
        Rule("`K` is 1, or `C` for a multiclass classifier; every stage has `K` predictors",
             _hgb_layout),
        Rule("`_bin_mapper.is_categorical_` has `F` entries", _hgb_bin_mapper),
        Rule("`_preprocessor` is None exactly without categorical features, else "
             "scikit-learn's own ordinal-encoder layout with `F` output columns",
             _hgb_preprocessor),
        Rule("every predictor (packed or lazily built) splits on features `< F`, categorical "
             "splits only on categorical features", _hgb_members, members=True),
    ),
)

BIN_MAPPER = Spec(
    "HistGradientBoosting bin mapper (`_BinMapper`)", _BIN_MAPPER,
    "`make_known_categories_bitsets` sizes `f_idx_map` from `is_categorical_` and sets bits "
    "from `bin_thresholds_` of categorical features",
    attrs=(
        Attr("is_categorical_", Array("u", ("F",), dtype="uint8"), "which features are "
             "categorical"),
        Attr("bin_thresholds_", Seq(Array("f", (None,)), length="F"), "known categories of "
             "categorical features"),
    ),
)


# -- k-means -------------------------------------------------------------------------------------

_THREADS = Int(lo=1, hi=MAX_THREADS)


def _bisecting_tree(env: Env) -> None:
    """Every node of the bisecting tree: centres of ``F`` values, leaf labels < ``K``, no
    cycle or shared node (predict recurses through it)."""
    tree_cls = loaded_class("sklearn.cluster._bisect_k_means", "_BisectingTree")
    n_features, n_clusters = env.dims["F"], env.dims["K"]
    seen: set[int] = set()
    leaves: list[tuple[int, np.ndarray]] = []
    stack = [env["_bisecting_tree"]]
    while stack:
        node = stack.pop()
        if tree_cls is None or type(node) is not tree_cls or id(node) in seen:
            raise Reject("the bisecting tree must be a tree of _BisectingTree nodes")
        seen.add(id(node))
        d = node.__dict__
        center = d.get("center")
        # The root's centre is the data mean: for sparse X, scikit-learn stores the (1, F)
        # np.matrix that ``X.mean(axis=0)`` returns (predict never reads it).
        if not ((type(center) is np.ndarray and center.shape == (n_features,))
                or (type(center) is np.matrix and center.shape == (1, n_features))) or (
                    center.dtype.kind != "f"):
            raise Reject(f"every bisecting-tree centre must hold {n_features} floats")
        left, right = d.get("left"), d.get("right")
        if left is None and right is None:
            label = d.get("label")
            if not (isinstance(label, (int, np.integer)) and not isinstance(label, bool)
                    and 0 <= int(label) < n_clusters):
                raise Reject(f"every leaf label must be a cluster index < {n_clusters}")
            leaves.append((int(label), np.asarray(center).reshape(-1)))
        elif left is None or right is None:
            raise Reject("a bisecting-tree node has both children or none")
        else:
            stack.extend((left, right))
    if sorted(label for label, _ in leaves) != list(range(n_clusters)):
        raise Reject("the leaves must carry the labels 0..n_clusters-1, once each")
    centers, mean = env["cluster_centers_"], env.get("_X_mean")
    for label, center in leaves:
        expected = center + mean if mean is not None else center
        if not np.array_equal(centers[label], expected, equal_nan=True):
            raise Reject("cluster_centers_ must be the leaves' centres (plus _X_mean)")


def _kmeans_count(env: Env) -> None:
    count = env.dims["K"]
    if not (type(env.d.get("n_clusters")) is int and env.d["n_clusters"] == count
            and env["_n_features_out"] == count):
        raise Reject("cluster_centers_ must have n_clusters rows, as many as _n_features_out")


KMEANS = Spec(
    "k-means (`KMeans`, `MiniBatchKMeans`, `BisectingKMeans`)",
    ("sklearn.cluster._kmeans", "_BaseKMeans"),
    "Cython `lloyd_iter_chunked_*` reads `centers[j, :X.shape[1]]` with `_n_threads` OpenMP "
    "threads",
    attrs=(
        _N_FEATURES,
        Attr("cluster_centers_", Array("f", ("K", "F")), "read for each cluster"),
        Attr("_n_threads", _THREADS, "OpenMP threads of predict/score", data=True),
        Attr("_n_features_out", Int(lo=1), "the transform's width"),
    ),
    rules=(Rule("`K` is the `n_clusters` parameter and `_n_features_out`", _kmeans_count),),
)

BISECTING_KMEANS = Spec(
    "`BisectingKMeans` tree", ("sklearn.cluster._bisect_k_means", "BisectingKMeans"),
    "predict recurses through `_bisecting_tree`, running the k-means kernel on each node's "
    "two centres (plus `_X_mean`)",
    attrs=(
        _N_FEATURES,
        Attr("cluster_centers_", Array("f", ("K", "F")), "the clusters"),
        Attr("_bisecting_tree", Instance("sklearn.cluster._bisect_k_means", "_BisectingTree"),
             "the hierarchy predict walks"),
        Attr("_X_mean", Array("f", ("F",)), "added to every node's centres", optional=True),
    ),
    rules=(Rule("every node has a centre of `F` values and both children or none; no node "
                "is reached twice; the leaves carry the labels `0..K-1` and their centres "
                "(plus `_X_mean`) are `cluster_centers_`", _bisecting_tree),),
)


# -- libsvm --------------------------------------------------------------------------------------

_LIBSVM_KERNELS = ("linear", "poly", "rbf", "sigmoid", "precomputed")
_LIBSVM_IMPLS = ("c_svc", "nu_svc", "one_class", "epsilon_svr", "nu_svr")


def _libsvm_kernel(env: Env) -> None:
    kernel = env.d.get("kernel")
    if isinstance(kernel, str):
        if kernel not in _LIBSVM_KERNELS:
            raise Reject(f"kernel must be one of {list(_LIBSVM_KERNELS)}")
        return
    from sklearn.metrics.pairwise import PAIRWISE_KERNEL_FUNCTIONS

    if not any(kernel is f for f in PAIRWISE_KERNEL_FUNCTIONS.values()):
        raise Reject("a callable kernel must be one of scikit-learn's pairwise kernels (its "
                     "output must have one column per training sample)")
    fit: Any = env.d.get("_BaseLibSVM__Xfit")
    if not (hasattr(fit, "shape") and len(fit.shape) == 2
            and fit.shape[0] == env["shape_fit_"][0]):
        raise Reject("a callable kernel needs the training data (shape_fit_[0] rows)")


def _libsvm_model(env: Env) -> None:
    """libsvm copies ``nr_class`` counts, ``(nr_class - 1) x l`` coefficients, ``m`` intercepts
    and (with probabilities) ``m`` Platt parameters, ``l = len(support_)``."""
    impl = type(env.obj)._impl  # the class's, never the file's (checked below)
    if impl not in _LIBSVM_IMPLS:
        raise Reject("unknown libsvm implementation")  # pragma: no cover
    n_support, support = env["_n_support"], env["support_"]
    n_sv = support.shape[0]
    classification = impl in ("c_svc", "nu_svc")
    if classification:
        n_class = n_support.shape[0]
        if n_class < 2 or int(n_support.sum()) != n_sv or bool(np.any(n_support < 0)):
            raise Reject("_n_support must count the support vectors of each class")
        classes = env.d.get("classes_")
        if not (isinstance(classes, np.ndarray) and classes.shape == (n_class,)):
            raise Reject(f"classes_ must have the {n_class} classes of _n_support")
    else:
        n_class = 2
        if n_support.shape[0] != 2:
            raise Reject("a one-class or regression model has two _n_support entries")
    pairs = n_class * (n_class - 1) // 2
    if env["_intercept_"].shape[0] != pairs:
        raise Reject(f"_intercept_ must hold {pairs} values")
    dual = env["_dual_coef_"]
    if dual.shape != (n_class - 1, n_sv):
        raise Reject(f"_dual_coef_ must be ({n_class - 1}, {n_sv})")
    if env["_sparse"] and dual.nnz != (n_class - 1) * n_sv:
        raise Reject("sparse _dual_coef_ must store every coefficient (libsvm reads them all)")
    prob_a, prob_b = env["_probA"], env["_probB"]
    if prob_a.shape[0] not in (0, pairs) or prob_b.shape != prob_a.shape:
        raise Reject(f"_probA and _probB must both be empty or hold {pairs} values")
    if env["_sparse"] and env.get("_effective_probability") and prob_a.shape[0] != pairs:
        raise Reject("with probabilities, _probA/_probB must hold a value per class pair")
    sv = env["support_vectors_"]
    precomputed = env.d.get("kernel") == "precomputed" or callable(env.d.get("kernel"))
    if sv.shape[0] != n_sv and not (precomputed and sv.shape[0] == 0):
        raise Reject(f"support_vectors_ must have the {n_sv} support vectors")
    if not precomputed and sv.shape[1] != env.dims["F"]:
        raise Reject(f"support vectors must have the estimator's {env.dims['F']} features")


def _libsvm_impl(env: Env) -> None:
    if "_impl" in env.d:
        raise Reject("_impl is the class's libsvm type; a file may not set it")
    if not env["_sparse"] and not (isinstance(env["support_vectors_"], np.ndarray)
                                   and isinstance(env["_dual_coef_"], np.ndarray)):
        raise Reject("a dense model has dense support_vectors_ and _dual_coef_")
    if env["_sparse"] and (isinstance(env["support_vectors_"], np.ndarray)
                           or isinstance(env["_dual_coef_"], np.ndarray)):
        raise Reject("a sparse model has sparse support_vectors_ and _dual_coef_")


def _dense_or_csr(dims: tuple[int | str | None, ...]) -> OneOf:
    return OneOf((Array("f", dims, dtype="float64"), Sparse("csr", "f", dims)))

LIBSVM = Spec(
    "libsvm (`SVC`, `NuSVC`, `SVR`, `NuSVR`, `OneClassSVM`)",
    ("sklearn.svm._base", "BaseLibSVM"),
    "`libsvm.predict/decision_function/predict_proba` (dense and sparse) build a libsvm model "
    "from these arrays with `memcpy` sized by `_n_support`, and index precomputed kernels by "
    "`support_`",
    attrs=(
        _N_FEATURES,
        Attr("_sparse", Flag(), "dense or sparse libsvm"),
        Attr("shape_fit_", Shape(("N", None)), "training samples (bounds support_, which "
             "indexes precomputed kernels)"),
        Attr("support_", Array("i", (None,), dtype="int32", values=(0, "N")),
             "support vector indices"),
        Attr("support_vectors_", _dense_or_csr((None, None)), "the support vectors"),
        Attr("_n_support", Array("i", (None,), dtype="int32"), "support vectors per class"),
        Attr("_dual_coef_", _dense_or_csr((None, None)), "libsvm's sv_coef"),
        Attr("_intercept_", Array("f", (None,), dtype="float64"), "libsvm's rho"),
        Attr("_probA", Array("f", (None,), dtype="float64"), "Platt scaling"),
        Attr("_probB", Array("f", (None,), dtype="float64"), "Platt scaling"),
        Attr("_gamma", Real(finite=True), "kernel coefficient"),
        Attr("_effective_probability", OneOf((Flag(), Choice(("deprecated",)))),
             "sparse predict copies Platt parameters when true", optional=True),
    ),
    rules=(
        Rule("`_impl` comes from the class; dense models hold dense arrays, sparse ones "
             "sparse", _libsvm_impl),
        Rule("`kernel` is a libsvm kernel name, or one of scikit-learn's pairwise kernel "
             "functions with the training data kept", _libsvm_kernel),
        Rule("`_n_support`, `support_`, `support_vectors_`, `_dual_coef_`, `_intercept_`, "
             "`_probA/_probB` and `classes_` describe one model",
             _libsvm_model),
    ),
    reads=("kernel", "classes_", "_BaseLibSVM__Xfit", "_impl"),
)


# -- linear models -------------------------------------------------------------------------------


def _intercept_fits(intercept: Any, rows: int, matrix: bool) -> None:
    """One intercept per row of a 2-D ``coef_`` (a scalar only as the 0.0 of a model without
    intercept, which broadcasts to the same); a 1-D ``coef_`` takes a scalar or one value."""
    if isinstance(intercept, np.ndarray) and intercept.ndim:
        if intercept.shape != (rows,):
            raise Reject(f"intercept_ must hold {rows} values")
    elif matrix and float(intercept) != 0.0:
        raise Reject(f"intercept_ must hold {rows} values (a scalar only as 0.0)")


def _linear_classifier(env: Env) -> None:
    if not env.has("classes_"):
        _classes_from_label_binarizer(env)
    n_classes = env.dims["C"]
    matrix = len(env["coef_"].shape) == 2
    # A 1-D coef_ is one row: RidgeClassifier fitted on a single class leaves it raveled.
    rows = env.dims["K"] if matrix else 1
    expected = 1 if n_classes == 2 else n_classes
    crammer = env.d.get("multi_class") == "crammer_singer" and n_classes == 2
    if rows != expected and not (crammer and rows == 2):
        raise Reject(f"coef_ must have {expected} rows for {n_classes} classes")
    _intercept_fits(env["intercept_"], rows, matrix=matrix)


def _classes_from_label_binarizer(env: Env) -> None:
    """Before scikit-learn 1.8, RidgeClassifier(CV)'s ``classes_`` is a property returning
    ``_label_binarizer.classes_``: only such a class may leave it unstored, and then its label
    binarizer's classes are the ones the columns index."""
    binarizer_cls = loaded_class("sklearn.preprocessing._label", "LabelBinarizer")
    binarizer = env.d.get("_label_binarizer")
    classes = getattr(binarizer, "__dict__", {}).get("classes_") if (
        binarizer_cls is not None and type(binarizer) is binarizer_cls) else None
    if not (isinstance(getattr(type(env.obj), "classes_", None), property)
            and isinstance(classes, np.ndarray) and classes.ndim == 1
            and classes.dtype.kind in "biufUSO"):
        env.fail("is missing (stored, or read by the class's property from "
                 "_label_binarizer.classes_, as RidgeClassifier before scikit-learn 1.8)",
                 "classes_")
    env.bind("C", classes.size, "the number of classes")


def _linear_regressor(env: Env) -> None:
    coef = env["coef_"]
    matrix = len(coef.shape) == 2
    _intercept_fits(env["intercept_"], coef.shape[0] if matrix else 1, matrix)


_COEF_MATRIX = OneOf((Array("f", ("K", "F")), Sparse("csr", "f", ("K", "F"))))
_INTERCEPT = OneOf((Real(finite=True), Array("f", (None,)), Array("f", ())))
_COEF_CLASSIFIER = OneOf((*_COEF_MATRIX.options, Array("f", ("F",))))

LINEAR_CLASSIFIER = Spec(
    "linear classifiers (`LogisticRegression`, `SGDClassifier`, `LinearSVC`, `Ridge"
    "Classifier`, `Perceptron`, `LinearDiscriminantAnalysis`...)",
    ("sklearn.linear_model._base", "LinearClassifierMixin"),
    "`decision_function` is `X @ coef_.T + intercept_` (BLAS, shapes checked by numpy); its "
    "columns index `classes_`",
    attrs=(
        _N_FEATURES,
        Attr("classes_", Array("biufUSO", ("C",)), "labels the columns index (unstored only "
             "where the class reads it from _label_binarizer)", optional=True, data=True),
        Attr("coef_", _COEF_CLASSIFIER, "one row per class (one for binary; a single class's "
             "row may be 1-D)"),
        Attr("intercept_", _INTERCEPT, "one per row of coef_"),
    ),
    rules=(Rule("`classes_` is stored, or a property of the class reading "
                "`_label_binarizer.classes_` (RidgeClassifier before 1.8); `coef_` has 1 row "
                "for 2 classes, else `C`; `intercept_` one value per row",
                _linear_classifier),),
    reads=("multi_class", "_label_binarizer"),
)

LINEAR_REGRESSORS = tuple(Spec(
    f"linear regressors ({title})", base,
    "`predict` is `X @ coef_.T + intercept_` (BLAS, shapes checked by numpy)",
    attrs=(
        _N_FEATURES,
        Attr("coef_", OneOf((Array("f", ("F",)), Array("f", (None, "F")),
                             Sparse("csr", "f", (None, "F")))), "the weights"),
        Attr("intercept_", _INTERCEPT, "one per target"),
    ),
    rules=(Rule("`intercept_` has one value per target", _linear_regressor),),
    exclude=(("sklearn.linear_model._base", "LinearClassifierMixin"),),
) for title, base in (
    ("`LinearRegression`, `Ridge`, `Lasso`...", ("sklearn.linear_model._base", "LinearModel")),
    ("`SGDRegressor`, `PassiveAggressiveRegressor`",
     ("sklearn.linear_model._stochastic_gradient", "BaseSGDRegressor")),
    ("GLMs (`PoissonRegressor`...)", ("sklearn.linear_model._glm.glm",
                                      "_GeneralizedLinearRegressor")),
))


# -- neighbors -----------------------------------------------------------------------------------

_NORM_KEYS = ("X_norm_squared", "Y_norm_squared")


def _neighbors_tree(env: Env) -> None:
    method = env["_fit_method"]
    tree: Any = env.get("_tree")
    if method == "brute":
        if tree is not None:
            raise Reject("a brute-force model has no _tree")
        return
    name = "KDTree" if method == "kd_tree" else "BallTree"
    cls = loaded_class(f"sklearn.neighbors._{'kd' if method == 'kd_tree' else 'ball'}_tree",
                       name)
    if cls is None or type(tree) is not cls:
        raise Reject(f"_fit_method {method!r} needs a {name} in _tree")
    data: Any = tree.__getattribute__("data")  # a Cython property: the tree's own array
    if data.shape != env["_fit_X"].shape:
        raise Reject("the tree must index _fit_X's samples")


def _neighbors_labels(env: Env) -> None:
    """``ArgKminClassMode`` adds into ``class_scores[i, _y[j]]``, a row of ``len(classes_)``."""
    if not _is_classifier(env.obj):
        return
    y, classes = env.get("_y"), env.d.get("classes_")
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "iu":
        raise Reject("a neighbors classifier needs integer labels _y")
    if y.ndim == 1:
        counts = [classes.shape[0]] if isinstance(classes, np.ndarray) else None
    else:
        counts = ([c.shape[0] for c in classes if isinstance(c, np.ndarray)]
                  if isinstance(classes, list) else None)
        if counts is not None and len(counts) != y.shape[1]:
            counts = None
    if counts is None:
        raise Reject("classes_ must hold one label array per output of _y")
    outputs_2d = env.d.get("outputs_2d_")
    if outputs_2d is not (y.ndim == 2) and not (isinstance(outputs_2d, np.bool_)
                                                and bool(outputs_2d) == (y.ndim == 2)):
        raise Reject("outputs_2d_ must say whether _y has several outputs")
    columns = y.reshape(y.shape[0], -1)
    for k, count in enumerate(counts):
        column = columns[:, k]
        if column.size and (int(column.min()) < 0 or int(column.max()) >= count):
            raise Reject(f"_y must index the {count} classes of output {k}")
        if np.bincount(column, minlength=count).min() < 1:
            raise Reject(f"every class of output {k} must occur in _y (classes_ are the "
                         "labels fitted)")


NEIGHBORS = Spec(
    "nearest neighbors (`KNeighbors*`, `RadiusNeighbors*`, `NearestNeighbors`, "
    "`LocalOutlierFactor`, neighbors transformers)",
    ("sklearn.neighbors._base", "NeighborsBase"),
    "the pairwise-distance reductions (`ArgKmin`, `RadiusNeighbors`, their class modes) read "
    "`_fit_X` rows, `_y` labels as indices into per-class scores, and precomputed norms from "
    "`metric_params`; KD/Ball trees are checked when built",
    attrs=(
        Attr("_fit_method", Choice(("brute", "kd_tree", "ball_tree")), "which search runs"),
        Attr("_fit_X", OneOf((Array("biuf", ("N", None), contiguous=True),
                             Sparse("csr", "biuf", ("N", None)))),
             "the fitted samples"),
        Attr("n_samples_fit_", Int(lo=1, dim="N"), "bounds the neighbor count k"),
        Attr("n_features_in_", Int(lo=1), "the feature count X is validated against"),
        Attr("_tree", OneOf((NoneValue(), Anything())), "the KD/Ball tree", optional=True),
        Attr("effective_metric_params_", Dict(forbidden=_NORM_KEYS),
             "passed to the reductions, which index precomputed norms without bounds"),
        Attr("metric_params", OneOf((NoneValue(), Dict(forbidden=_NORM_KEYS))),
             "passed to the reductions"),
        Attr("_y", OneOf((Array("biufUSO", ("N",)), Array("biufUSO", ("N", None)))),
             "labels or targets", optional=True, data=True),
    ),
    rules=(
        Rule("`_fit_X` has `n_features_in_` columns (or is a precomputed square)",
             lambda env: None if env["_fit_X"].shape[1] == env["n_features_in_"]
             else env.fail("_fit_X must have n_features_in_ columns")),
        Rule("`_tree` is the KD/Ball tree `_fit_method` names, over `_fit_X`'s shape",
             _neighbors_tree),
        Rule("classifiers: `_y` indexes `classes_` (per output), each class occurs, "
             "`outputs_2d_` agrees",
             _neighbors_labels),
    ),
    reads=("classes_", "outputs_2d_"),
)

KERNEL_DENSITY = Spec(
    "`KernelDensity`", ("sklearn.neighbors._kde", "KernelDensity"),
    "`tree_.kernel_density` walks the KD/Ball tree (checked when built) with `bandwidth_`",
    attrs=(
        _N_FEATURES,
        Attr("tree_", OneOf((Instance("sklearn.neighbors._kd_tree", "KDTree"),
                             Instance("sklearn.neighbors._ball_tree", "BallTree"))),
             "the tree"),
        Attr("bandwidth_", Real(finite=True), "kernel width"),
    ),
    rules=(Rule("the tree's data has `F` columns",
                lambda env: None if env["tree_"].data.shape[1] == env.dims["F"]
                else env.fail("tree_ must hold n_features_in_ columns")),),
)


# -- Birch, LDA, polynomial features, hashing ----------------------------------------------------

BIRCH = Spec(
    "`Birch`", ("sklearn.cluster._birch", "Birch"),
    "`predict` passes `_subcluster_norms` to `ArgKmin` as `Y_norm_squared`, read for every "
    "subcluster without bounds checks",
    attrs=(
        _N_FEATURES,
        Attr("subcluster_centers_", Array("f", ("S", "F"), contiguous=True), "the subclusters"),
        Attr("_subcluster_norms", Array("f", ("S",)), "their squared norms"),
        Attr("subcluster_labels_", Array("biufUSO", ("S",)), "their labels", data=True),
    ),
)

LDA = Spec(
    "`LatentDirichletAllocation`", ("sklearn.decomposition._lda", "LatentDirichletAllocation"),
    "the Cython E-step helpers (`_dirichlet_expectation_1d`, `mean_change`) run on "
    "per-document rows of `n_components` topics",
    attrs=(
        _N_FEATURES,
        Attr("n_components", Int(lo=1, dim="K"), "sizes the per-document topic rows"),
        Attr("components_", Array("f", ("K", "F")), "topic-word weights"),
        Attr("exp_dirichlet_component_", Array("f", ("K", "F")), "used by transform"),
        Attr("doc_topic_prior_", Real(finite=True), "prior"),
    ),
)


def _polynomial_counts(env: Env) -> None:
    from sklearn.preprocessing import PolynomialFeatures

    degree = env.d.get("degree")
    lo, hi = env["_min_degree"], env["_max_degree"]
    expected = (0, degree) if isinstance(degree, (int, np.integer)) and not isinstance(
        degree, bool) else tuple(degree) if isinstance(degree, (tuple, list)) else None
    if expected is None or (lo, hi) != tuple(int(v) for v in expected) or lo > hi:
        raise Reject("_min_degree and _max_degree must be the degree parameter's")
    interaction, bias = bool(env.d.get("interaction_only")), bool(env.d.get("include_bias"))
    count = PolynomialFeatures._num_combinations(env.dims["F"], lo, hi, interaction, bias)
    full = PolynomialFeatures._num_combinations(env.dims["F"], 0, hi, interaction, bias)
    if env["n_output_features_"] != count or env["_n_out_full"] != full:
        raise Reject(f"n_output_features_ and _n_out_full must be {count} and {full} "
                     "(they size the output)")


POLYNOMIAL = Spec(
    "`PolynomialFeatures`", ("sklearn.preprocessing._polynomial", "PolynomialFeatures"),
    "sparse input of degree <= 3 runs the Cython `_csr_polynomial_expansion`; the output is "
    "allocated from `_n_out_full`",
    attrs=(
        _N_FEATURES,
        Attr("_min_degree", Int(lo=0, hi=4096), "lowest degree"),
        Attr("_max_degree", Int(lo=0, hi=4096), "highest degree (counts are recomputed from "
             "it with exact binomials)"),
        Attr("n_output_features_", Int(lo=0), "output width"),
        Attr("_n_out_full", Int(lo=0), "allocated output width"),
    ),
    rules=(Rule("degrees are the `degree` parameter's; `n_output_features_` and "
                "`_n_out_full` are recomputed from them and `F`", _polynomial_counts),),
    reads=("degree", "interaction_only", "include_bias"),
)


def _hash_dtype(env: Env) -> None:
    kind: str
    try:
        kind = np.dtype(env.d.get("dtype")).kind
    except TypeError:
        kind = "?"
    if kind not in "biufc":
        raise Reject("dtype must be a numeric numpy type")


_HASHING = (
    Attr("n_features", Int(lo=1, hi=2**31 - 1), "the modulus of the hashed column index",
         data=True),
    Attr("alternate_sign", Flag(), "sign of hashed values"),
)

FEATURE_HASHER = Spec(
    "`FeatureHasher`", ("sklearn.feature_extraction._hash", "FeatureHasher"),
    "Cython `_hashing_transform` takes `abs(hash) % n_features` as column index and stores "
    "values in a `dtype` array",
    attrs=_HASHING, rules=(Rule("`dtype` is a numeric numpy type", _hash_dtype),),
    reads=("dtype",),
)
HASHING_VECTORIZER = Spec(
    "`HashingVectorizer`", ("sklearn.feature_extraction.text", "HashingVectorizer"),
    "builds a `FeatureHasher` from these parameters", attrs=_HASHING,
    rules=(Rule("`dtype` is a numeric numpy type", _hash_dtype),),
    reads=("dtype",),
)


# -- vocabularies: the column indices of sparse outputs ------------------------------------------


def _permutation(values: Any, size: int) -> bool:
    if not all(type(v) is int or (isinstance(v, np.integer)) for v in values):
        return False
    array = np.fromiter(values, dtype=np.int64, count=size)
    return bool(size == 0 or (array.min() >= 0 and array.max() < size
                              and np.bincount(array, minlength=size).max() == 1))


def _vocabulary(env: Env) -> None:
    vocabulary = env["vocabulary_"]
    if not _permutation(vocabulary.values(), len(vocabulary)):
        raise Reject("vocabulary_ values must be the column indices 0..len-1, each once (they "
                     "become the indices of a scipy matrix that native code trusts)")


COUNT_VECTORIZER = Spec(
    "`CountVectorizer`, `TfidfVectorizer`", ("sklearn.feature_extraction.text",
                                             "CountVectorizer"),
    "`transform` builds a CSR matrix whose column indices are `vocabulary_` values; scipy "
    "does not check them, and `toarray()` writes through them in C++",
    attrs=(Attr("vocabulary_", Dict(), "term -> column index"),),
    rules=(Rule("`vocabulary_` maps onto `0..len-1`, each index once", _vocabulary),),
)
DICT_VECTORIZER = Spec(
    "`DictVectorizer`", ("sklearn.feature_extraction._dict_vectorizer", "DictVectorizer"),
    "`transform` builds a sparse matrix whose column indices are `vocabulary_` values",
    attrs=(Attr("vocabulary_", Dict(), "feature -> column index"),
           Attr("feature_names_", Seq(Anything()), "one name per column")),
    rules=(Rule("`vocabulary_` maps onto `0..len-1`, each index once, one per feature name",
                lambda env: _vocabulary(env) if len(env["vocabulary_"]) == len(
                    env["feature_names_"]) else env.fail("vocabulary_ and feature_names_ "
                                                        "must have one entry per column")),),
)


def _index(value: Any, size: int) -> bool:
    """An int (Python or numpy) in ``[0, size)``."""
    return (type(value) is int or isinstance(value, np.integer)) and 0 <= int(value) < size


def _drop_entries(drop: Any, sizes: list[int], name: str) -> list[bool]:
    """Which features drop a category, each dropped index within its feature's outputs."""
    if drop is None:
        return [False] * len(sizes)
    if not (type(drop) is np.ndarray and drop.ndim == 1 and drop.shape[0] == len(sizes)
            and drop.dtype.kind in "iuO"):
        raise Reject(f"{name} must hold one entry per feature")
    entries = drop.tolist()
    for i, (index, size) in enumerate(zip(entries, sizes, strict=True)):
        if index is not None and not _index(index, size):
            raise Reject(f"{name}[{i}] must be None or a category index of feature {i}")
    return [index is not None for index in entries]


def _hashable(value: Any) -> Any:
    return value if not isinstance(value, float) or value == value else "nan"


def _onehot(env: Env) -> None:
    """The CSR matrix transform builds takes ``X_int + offsets``: every index a category can
    become (through the infrequent mappings, then the dropped category) must lie within its
    feature's ``_n_features_outs`` entry, and those must be what the categories imply."""
    categories = env["categories_"]
    n = len(categories)
    for i, cats in enumerate(categories):
        values = cats.tolist()
        if len(set(map(_hashable, values))) != len(values):
            raise Reject(f"categories_[{i}] must not repeat a category")
    grouped = [len(c) for c in categories]
    if env["_infrequent_enabled"]:
        infrequent = env.d.get("_infrequent_indices")
        mappings = env.d.get("_default_to_infrequent_mappings")
        if not (type(infrequent) is list and type(mappings) is list
                and len(infrequent) == len(mappings) == n):
            raise Reject("infrequent categories need _infrequent_indices and "
                         "_default_to_infrequent_mappings, one entry per feature")
        for i, (indices, mapping) in enumerate(zip(infrequent, mappings, strict=True)):
            size = grouped[i]
            if indices is None:
                if mapping is not None:
                    raise Reject(f"feature {i} has a mapping but no infrequent categories")
                continue
            if not (type(indices) is np.ndarray and indices.ndim == 1 and indices.size
                    and indices.dtype.kind in "iu" and int(indices.min()) >= 0
                    and int(indices.max()) < size):
                raise Reject(f"_infrequent_indices[{i}] must index feature {i}'s categories")
            grouped[i] = size - indices.size + 1
            if not (type(mapping) is np.ndarray and mapping.shape == (size,)
                    and mapping.dtype.kind in "iu" and int(mapping.min()) >= 0
                    and int(mapping.max()) < grouped[i]):
                raise Reject(f"_default_to_infrequent_mappings[{i}] must map each category "
                             f"of feature {i} to one of its {grouped[i]} outputs")
    _drop_entries(env.get("drop_idx_"), [len(c) for c in categories], "drop_idx_")
    dropped = _drop_entries(env.d.get("_drop_idx_after_grouping"), grouped,
                            "_drop_idx_after_grouping")
    expected = [size - int(d) for size, d in zip(grouped, dropped, strict=True)]
    if [int(v) for v in env["_n_features_outs"]] != expected:
        raise Reject(f"_n_features_outs must be {expected} (the output width per feature)")


ONE_HOT = Spec(
    "`OneHotEncoder`", ("sklearn.preprocessing._encoders", "OneHotEncoder"),
    "`transform` builds a CSR matrix whose column indices are category positions, mapped "
    "through the infrequent groups and dropped categories, offset by `_n_features_outs`; "
    "scipy does not check them and `toarray()` writes through them in C++",
    attrs=(
        Attr("categories_", Seq(Array("biufUSOM", (None,))), "the categories per feature",
             data=True),
        Attr("_infrequent_enabled", Flag(), "whether infrequent categories are grouped"),
        Attr("drop_idx_", OneOf((NoneValue(), Array("iuO", (None,)))), "dropped category"),
        Attr("_drop_idx_after_grouping", OneOf((NoneValue(), Array("iuO", (None,)))),
             "dropped output per feature"),
        Attr("_n_features_outs", Seq(Int(lo=0)), "output width per feature"),
    ),
    rules=(Rule("categories do not repeat; infrequent mappings and dropped indices stay "
                "within each feature's outputs; `_n_features_outs` is what they imply",
                _onehot),),
    reads=("_infrequent_indices", "_default_to_infrequent_mappings"),
)


def _label_cache(env: Env) -> None:
    cache = env["_cached_dict"]
    if cache is None:
        return
    if len(cache) != env["classes_"].shape[0] or not _permutation(cache.values(), len(cache)):
        raise Reject("_cached_dict must map the classes onto 0..len(classes_)-1, each once "
                     "(they become the indices of a scipy matrix that transform densifies)")


MULTILABEL = Spec(
    "`MultiLabelBinarizer`", ("sklearn.preprocessing._label", "MultiLabelBinarizer"),
    "`transform` builds a CSR matrix whose column indices are `_cached_dict` values, then "
    "`toarray()` writes through them in C++",
    attrs=(
        Attr("classes_", Array("biufUSO", (None,)), "the labels", data=True),
        Attr("_cached_dict", OneOf((NoneValue(), Dict())), "label -> column index"),
    ),
    rules=(Rule("`_cached_dict` is None or maps the classes onto `0..len(classes_)-1`, each "
                "index once", _label_cache),),
)


SPECS: tuple[Spec, ...] = (
    TREE, FOREST, BAGGING, IFOREST, GRADIENT_BOOSTING, HIST_GRADIENT_BOOSTING, BIN_MAPPER,
    KMEANS, BISECTING_KMEANS, LIBSVM, LINEAR_CLASSIFIER, *LINEAR_REGRESSORS, NEIGHBORS,
    KERNEL_DENSITY, BIRCH, LDA, POLYNOMIAL, FEATURE_HASHER, HASHING_VECTORIZER,
    COUNT_VECTORIZER, DICT_VECTORIZER, ONE_HOT, MULTILABEL,
)
"""Every declared spec, in documentation order."""

# Specs that hold for unfitted instances too (their attributes are constructor parameters).
STATELESS = frozenset({FEATURE_HASHER.title, HASHING_VECTORIZER.title})


# -- structures checked by their own handlers (listed in the documentation) ----------------------

STRUCTURES: tuple[tuple[str, str], ...] = (
    ("`sklearn.tree._tree.Tree` (`handlers/trees.py`)",
     "children in range, every node reached exactly once from the root (no cycle), features "
     "`< n_features`, `values` of shape (nodes, n_outputs, max classes), `n_classes` positive, "
     "`max_depth` equal to the true depth; packed trees the same, per member, with "
     "positive node counts adding up to the columns' rows and each tree's leaves equal to its "
     "`leaf_count` (which addresses its split and leaf rows) before any row is placed"),
    ("HistGradientBoosting `TreePredictor` (state check)",
     "record dtype, children in range and every node reached once, categorical `bitset_idx` "
     "below the rows of both bitset arrays (C-contiguous `(n, 8)` uint32)"),
    ("`KDTree`, `BallTree` (`handlers/trees.py`)",
     "`idx_array` a permutation of the samples, node ranges within them, `n_nodes = "
     "2**n_levels - 1`, inner nodes' children within `n_nodes`, `node_bounds` and the "
     "distance metric's `V`/`VI` sized by the data's dimensions"),
    ("scipy sparse matrices (`handlers/scipy_sparse.py`)",
     "`indptr` monotone from 0 to `nnz`, indices within the shape"),
)
