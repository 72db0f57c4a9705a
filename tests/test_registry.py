"""The allow-list answers the same whatever the process did before (no dependence on history).

What ``for_tag``, ``for_object`` and the allow-list say is a function of the tag (or object) and
of the installed libraries only.  Proved generically:

- every tag of the fully loaded registry resolves, to the same class, in a brand-new registry;
- every type it knows is claimed, by the same tag, by a brand-new registry;
- every allow-listed function, type and distribution is found by identity by a brand-new
  registry, and each family dumps and loads in a fresh interpreter (scipy.special's ufuncs,
  whose ``__module__`` is None, used to be refused unless an earlier call had built their table);
- every internal class (CV splitters, losses, kernels, scorers...) and every experimental
  estimator loads in a fresh interpreter, where a public tag used to miss the loader of the
  private module its class lives in (fitted searches, ``KFold(3)``, ``make_column_selector``);
- the static tables match the installed scikit-learn.
"""

from __future__ import annotations

import datetime
import json
import operator
import re
import subprocess
import sys
import textwrap
import warnings
import zoneinfo

import numpy as np
import pandas as pd
import pytest

import milo_pack
from milo_pack.handlers import callables, sklearn_tables
from milo_pack.handlers import sklearn as sk_handlers
from milo_pack.registry import new_registry

from .fresh import case, check_in_fresh_process


@pytest.fixture(scope="module")
def full():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        registry = new_registry()
        registry.load_all()
    return registry


def test_every_tag_resolves_in_a_brand_new_registry(full) -> None:
    assert len(full.by_tag) > 1000
    for tag, handler in sorted(full.by_tag.items()):
        got = new_registry().for_tag(tag)
        assert got is not None, f"{tag} is not found by a new registry"
        assert (got.tag, got.cls, got.trusted, got.keys) == (
            handler.tag, handler.cls, handler.trusted, handler.keys), tag
        if not handler.keys and ":" in tag:  # an allow-listed function, type or distribution
            assert callables.constant_value(got) is callables.constant_value(handler), tag


# Types whose instances cannot be made with cls.__new__(cls).
_SAMPLES = [
    slice(1), range(3), np.dtype("m8[s]"), np.dtype("M8[ns]"), np.dtype("V8"), np.dtype("U3"),
    np.dtype("S2"), operator.attrgetter("a"), operator.itemgetter(0), operator.methodcaller("f"),
    datetime.datetime(2020, 1, 1), datetime.date(2020, 1, 1),
    datetime.timezone(datetime.timedelta(hours=1)), zoneinfo.ZoneInfo("UTC"), re.IGNORECASE,
    np.matrix([[1.0]]), np.zeros(2).view(np.memmap),
]


def _sample(cls: type) -> object:
    for obj in _SAMPLES:
        if type(obj) is cls:
            return obj
    if cls.__name__ == "Tree":
        return cls(4, np.array([2], dtype=np.intp), 1)
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        return cls(*range(len(cls._fields)))
    return cls.__new__(cls)


def test_every_type_is_claimed_by_a_brand_new_registry(full) -> None:
    assert len(full.by_type) > 400
    for cls, handler in full.by_type.items():
        got = new_registry().for_object(_sample(cls))
        assert got is not None and got.tag == handler.tag, (cls, handler.tag, got)


def test_every_allow_listed_callable_is_found_by_identity(full) -> None:
    constants = {tag: callables.constant_value(h) for tag, h in full.by_tag.items()
                 if not h.keys and ":" in tag and tag.partition(":")[0] in
                 ("function", "type", "distribution")}
    assert len(constants) > 850
    for tag, obj in sorted(constants.items()):
        got = new_registry().for_object(obj)
        assert got is not None, tag
        # Aliases (numpy.abs is numpy.absolute) are saved under one of their tags.
        assert callables.constant_value(got) is obj, (tag, got.tag)
        assert callables.constant_value(new_registry().for_tag(got.tag)) is obj


def _families(full) -> dict[str, list[str]]:
    """Allow-listed functions, types and distributions, by the module a user imports them from."""
    families: dict[str, list[str]] = {}
    for tag, handler in full.by_tag.items():
        kind, _, path = tag.partition(":")
        if handler.keys or kind not in ("function", "type", "distribution") or path.startswith(
                "sklearn.") and kind == "type":
            continue  # scikit-learn classes as values are checked with the internal classes
        module = path.rpartition(".")[0]
        families.setdefault(module, []).append(tag)
    return families


_FAMILY_CHECK = textwrap.dedent("""
    import importlib, json, sys, warnings
    warnings.simplefilter("ignore")
    module_name, tags = sys.argv[1], json.loads(sys.argv[2])
    module = importlib.import_module(module_name)   # as a user would, and nothing else
    import milo_pack
    from milo_pack.registry import new_registry
    problems = []
    objects = [(tag, getattr(module, tag.rpartition(".")[2])) for tag in tags]
    # The very first dump of the process, before any table was built.
    first_tag, first = objects[0]
    try:
        if milo_pack.loads(milo_pack.dumps({"f": first}))["f"] is not first:
            problems.append(f"{first_tag}: another object came back")
    except Exception as exc:
        problems.append(f"{first_tag}: {type(exc).__name__}: {exc}")
    for tag, obj in objects:
        handler = new_registry().for_object(obj)
        if handler is None or handler.load({}, None, "") is not obj:
            problems.append(f"{tag}: a new registry does not find it")
            continue
        if milo_pack.loads(milo_pack.dumps([obj]))[0] is not obj:
            problems.append(f"{tag}: another object came back")
    print(json.dumps(problems))
""")


def test_each_callable_family_dumps_and_loads_in_a_fresh_interpreter(full) -> None:
    families = _families(full)
    assert len(families) < 20
    assert {"numpy", "math", "operator", "builtins", "scipy.special", "scipy.stats",
            "sklearn.metrics", "scipy.spatial.distance"} <= set(families)
    problems = {}
    pending = sorted(families.items())
    while pending:  # two at a time: CI machines have two cores
        batch, pending = pending[:2], pending[2:]
        procs = {module_name: subprocess.Popen(
            [sys.executable, "-c", _FAMILY_CHECK, module_name, json.dumps(sorted(tags))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for module_name, tags in batch}
        for module_name, proc in procs.items():
            out, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, f"{module_name}: {err[-2000:]}"
            found = json.loads(out.strip().splitlines()[-1])
            if found:
                problems[module_name] = found[:5]
    assert not problems, problems


# -- internal classes and experimental estimators ---------------------------------------------


def _internal_objects() -> dict[str, object]:
    """One object holding each internal class of the tables, by the class's tag."""
    from sklearn._loss import link, loss
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.cluster import Birch, BisectingKMeans
    from sklearn.compose import make_column_selector
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.experimental import enable_halving_search_cv, enable_iterative_imputer  # noqa
    from sklearn.feature_extraction.text import _VectorizerMixin
    from sklearn.gaussian_process import GaussianProcessClassifier
    from sklearn.gaussian_process import kernels as K
    from sklearn.impute import IterativeImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, get_scorer, make_scorer
    from sklearn.metrics._scorer import _MultimetricScorer, _PassthroughScorer
    from sklearn.model_selection import HalvingGridSearchCV, HalvingRandomSearchCV, _split
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.utils import Bunch

    X, y = make_classification(60, 4, n_informative=3, n_redundant=0, random_state=0)
    objects: dict[str, object] = {}

    def add(tag: str, obj: object) -> None:
        objects[tag] = obj

    hgb = HistGradientBoostingClassifier(max_iter=2).fit(X, y)
    add("sklearn.ensemble._hist_gradient_boosting.binning._BinMapper", hgb._bin_mapper)
    add("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        {"p": hgb._predictors[0][0]})
    for name in sklearn_tables.INTERNAL[2][1]:
        cls = getattr(loss, name, None)
        if cls is None:
            continue
        obj = (cls(quantile=0.3) if name == "PinballLoss" else cls(power=1.5)
               if name.startswith("HalfTweedie") else cls.__new__(cls)
               if name in ("BaseLoss", "ArrayAPILossMixin") else cls())
        add(f"sklearn._loss.loss.{name}", obj)
    for name in sklearn_tables.INTERNAL[3][1]:
        cls = getattr(link, name)
        add(f"sklearn._loss.link.{name}", cls(0.0, 1.0, True, False) if name == "Interval"
            else cls())
    add("sklearn.metrics._scorer._Scorer", make_scorer(accuracy_score))
    add("sklearn.metrics._scorer._PassthroughScorer", _PassthroughScorer(LogisticRegression()))
    add("sklearn.metrics._scorer._MultimetricScorer",
        _MultimetricScorer(scorers={"a": get_scorer("accuracy")}))
    # Where the installed version defines them: _CurveScorer moved to metrics._scorer in 1.6,
    # _RemainderColsList exists in 1.5 and 1.6 only (sklearn_tables.INTERNAL lists both places).
    try:
        from sklearn.metrics._scorer import _CurveScorer
    except ImportError:  # scikit-learn 1.5
        from sklearn.model_selection._classification_threshold import _CurveScorer
    add(f"{_CurveScorer.__module__}._CurveScorer",
        _CurveScorer.from_scorer(get_scorer("balanced_accuracy"), "auto", 5))
    from sklearn.compose import _column_transformer
    remainder = getattr(_column_transformer, "_RemainderColsList", None)
    if remainder is not None:
        add("sklearn.compose._column_transformer._RemainderColsList", remainder([0, 2]))
    add("sklearn.compose.make_column_selector", make_column_selector(dtype_include=np.number))
    kernel = K.ConstantKernel() * K.RBF() + K.WhiteKernel()
    simple = {"ConstantKernel": K.ConstantKernel(), "DotProduct": K.DotProduct(),
              "ExpSineSquared": K.ExpSineSquared(), "Matern": K.Matern(),
              "PairwiseKernel": K.PairwiseKernel(), "RBF": K.RBF(),
              "RationalQuadratic": K.RationalQuadratic(), "WhiteKernel": K.WhiteKernel(),
              "CompoundKernel": K.CompoundKernel([K.RBF(), K.DotProduct()]),
              "Exponentiation": K.Exponentiation(K.RBF(), 2), "Product": K.RBF() * K.RBF(),
              "Sum": kernel, "Hyperparameter": K.RBF().hyperparameter_length_scale}
    for name in sklearn_tables.INTERNAL[6][1]:
        cls = getattr(K, name)
        add(f"sklearn.gaussian_process.kernels.{name}", simple.get(name) or cls.__new__(cls))
    mlp = MLPClassifier(hidden_layer_sizes=(3,), max_iter=3, random_state=0)
    add("sklearn.neural_network._stochastic_optimizers.AdamOptimizer", mlp.fit(X, y)._optimizer)
    add("sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        MLPClassifier((3,), solver="sgd", max_iter=3, random_state=0).fit(X, y)._optimizer)
    birch = Birch(n_clusters=2).fit(X)
    add("sklearn.cluster._birch._CFNode", birch.root_)
    add("sklearn.cluster._birch._CFSubcluster", birch.root_.subclusters_[0])
    add("sklearn.cluster._bisect_k_means._BisectingTree",
        BisectingKMeans(3, random_state=0).fit(X)._bisecting_tree)
    splitters = {"LeavePGroupsOut": _split.LeavePGroupsOut(2), "LeavePOut": _split.LeavePOut(2),
                 "PredefinedSplit": _split.PredefinedSplit([0, 1, 0]),
                 "_CVIterableWrapper": _split._CVIterableWrapper([([0], [1])]),
                 "_RepeatedSplits": _split.RepeatedKFold(n_splits=2)}
    for module, names, _ in sklearn_tables.INTERNAL[10:12]:
        for name in names:
            cls = getattr(_split, name)
            add(f"{module}.{name}", splitters.get(name) or (
                cls.__new__(cls) if name.endswith("Mixin") or name == "BaseShuffleSplit"
                else cls()))
    add("sklearn.utils.Bunch", Bunch(a=1, b=[2]))
    add("sklearn.feature_extraction.text._VectorizerMixin", _VectorizerMixin())
    calibrated = CalibratedClassifierCV(LogisticRegression(), cv=2).fit(X, y)
    add("sklearn.calibration._CalibratedClassifier", calibrated.calibrated_classifiers_[0])
    add("sklearn.calibration._SigmoidCalibration",
        calibrated.calibrated_classifiers_[0].calibrators[0])
    add("sklearn.gaussian_process._gpc._BinaryGaussianProcessClassifierLaplace",
        GaussianProcessClassifier(random_state=0).fit(X[:20], y[:20]).base_estimator_)
    constant = np.c_[y, np.ones_like(y)]
    add("sklearn.multiclass._ConstantPredictor",
        OneVsRestClassifier(LogisticRegression()).fit(X, constant).estimators_[1])
    add("sklearn.utils._metadata_requests.MetadataRequest",
        LogisticRegression().get_metadata_routing())
    add("sklearn.utils._metadata_requests.MethodMetadataRequest",
        LogisticRegression().get_metadata_routing().fit)
    imputer = IterativeImputer(max_iter=2, random_state=0).fit(np.where(X > 1, np.nan, X))
    add("sklearn.impute._iterative._ImputerTriplet", imputer.imputation_sequence_[0])
    add("sklearn.impute.IterativeImputer", imputer)
    grid = {"C": [0.1, 1.0]}
    add("sklearn.model_selection.HalvingGridSearchCV",
        HalvingGridSearchCV(LogisticRegression(), grid, cv=2, random_state=0).fit(X, y))
    add("sklearn.model_selection.HalvingRandomSearchCV",
        HalvingRandomSearchCV(LogisticRegression(), grid, cv=2, random_state=0).fit(X, y))
    return objects


def test_every_internal_class_has_an_object_here() -> None:
    tags = set(sklearn_tables.internal_index()) | set(sklearn_tables.EXPERIMENTAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        objects = _internal_objects()
    # Names a scikit-learn version does not have are not allow-listed there; all others are.
    installed = {t for t in tags if sk_handlers.handler_for_tag(t) is not None}
    assert installed == set(objects), sorted(installed ^ set(objects))


def test_internal_classes_and_experimental_estimators_load_in_a_fresh_interpreter(
        tmp_path) -> None:
    """Public tags of private classes resolve first thing in a new process (issue 11 bug 2),
    and experimental estimators load without the user importing their enabler."""
    from sklearn.compose import make_column_selector, make_column_transformer
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV
    from sklearn.preprocessing import StandardScaler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        objects = _internal_objects()
        X, y = make_classification(60, 4, random_state=0)
        objects["GridSearchCV"] = GridSearchCV(LogisticRegression(), {"C": [1, 2]}).fit(X, y)
        objects["RandomizedSearchCV"] = RandomizedSearchCV(
            LogisticRegression(), {"C": [1, 2, 3]}, n_iter=2, random_state=0).fit(X, y)
        objects["KFold(3)"] = KFold(3)
        frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
        objects["ColumnTransformer+selector"] = make_column_transformer(
            (StandardScaler(), make_column_selector(dtype_include=np.number))).fit(frame)
    cases = []
    for name, obj in sorted(objects.items()):
        data = milo_pack.dumps(obj)
        loaded = milo_pack.loads(data)
        assert type(loaded) is type(obj), name
        model = obj if hasattr(obj, "predict") or hasattr(obj, "transform") else None
        inputs = frame if name == "ColumnTransformer+selector" else X
        cases.append(case(name, data, model, inputs if model is not None else None))
    failures = check_in_fresh_process(cases, tmp_path)
    assert not failures, failures


# -- the static tables against the installed scikit-learn -------------------------------------


def test_estimator_modules_are_those_of_all_estimators() -> None:
    scanned = set(sklearn_tables.scan_estimator_modules())
    assert scanned <= sklearn_tables.ESTIMATOR_MODULES, sorted(
        scanned - sklearn_tables.ESTIMATOR_MODULES)


def test_every_estimator_of_all_estimators_has_its_public_tag() -> None:
    from sklearn.experimental import enable_halving_search_cv, enable_iterative_imputer  # noqa
    from sklearn.utils import all_estimators

    registry = new_registry()
    for name, cls in all_estimators():
        tag = sk_handlers.tag_for_class(cls)
        assert tag is not None and tag.endswith(f".{name}"), (name, tag)
        handler = registry.for_tag(tag)
        assert handler is not None and handler.cls is cls, tag


def test_complete_modules_list_every_concrete_class() -> None:
    declared = set(sklearn_tables.internal_index())
    for module, tags in sklearn_tables.scan_complete_modules().items():
        missing = set(tags) - declared
        assert not missing, f"{module} has classes not in sklearn_tables.INTERNAL: {missing}"


def test_tables_name_no_module_outside_scikit_learn() -> None:
    modules = set(sklearn_tables.ESTIMATOR_MODULES)
    for module, _, where in sklearn_tables.INTERNAL:
        modules |= {module, *where}
    for where in sklearn_tables.EXPERIMENTAL.values():
        modules |= set(where)
    assert all(m.startswith("sklearn.") for m in modules)
    assert not any(".tests" in m or "estimator_checks" in m for m in modules)


def test_a_public_tag_alias_is_not_a_second_tag() -> None:
    """One class, one tag: a class re-exported elsewhere resolves only under its own path."""
    registry = new_registry()
    assert registry.for_tag("sklearn.linear_model.LogisticRegression") is not None
    assert registry.for_tag("sklearn.linear_model._logistic.LogisticRegression") is None
    assert registry.for_tag("sklearn.utils.estimator_checks.check_estimator") is None
    assert registry.for_tag("sklearn.base.BaseEstimator") is None


def test_start_up_shortcuts_agree_with_the_slow_ways(full) -> None:
    """param_names reads __init__'s code and descriptor_names walks the MRO once per class (a
    first load's start-up); both must say exactly what scikit-learn and inspect say."""
    import inspect

    checked = 0
    for handler in full.by_tag.values():
        cls = handler.cls
        if not isinstance(cls, type):
            continue
        if handler.keys == frozenset({"params", "attrs"}) and hasattr(cls, "_get_param_names"):
            assert sk_handlers.param_names(cls) == frozenset(cls._get_param_names()), cls
            checked += 1
        for name in {*dir(cls), "fit", "mro", "register", "fitted_"}:
            try:
                attr = inspect.getattr_static(cls, name)
                slow = hasattr(type(attr), "__get__") or hasattr(type(attr), "__set__")
            except AttributeError:
                slow = False
            assert (name in sk_handlers.descriptor_names(cls)) == slow, (cls, name)
    assert checked > 200


def test_function_tables_are_listed_where_the_registry_finds_them() -> None:
    from milo_pack import handlers

    assert set(handlers.FUNCTION_TABLES) == set(callables._lazy_tables())


_ONE_TAG = textwrap.dedent("""
    import sys, warnings
    warnings.simplefilter("ignore")
    import milo_pack
    obj = milo_pack.load(sys.argv[1])
    print(type(obj).__module__ + "." + type(obj).__qualname__)
""")


def test_each_internal_class_loads_first_thing_in_its_own_interpreter(tmp_path) -> None:
    """The strictest form: one new interpreter per internal class, nothing loaded before it.

    The default suite runs the issue's three examples (the batched test above covers every
    class from a fresh registry each); the CI step ``.ci/steps/30-fresh-process-per-tag.sh``
    sets MILO_EVERY_TAG=1 to run all of them, one interpreter each.
    """
    import os

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        objects = _internal_objects()
    names = sorted(objects)
    if os.environ.get("MILO_EVERY_TAG") != "1":
        names = ["sklearn.compose.make_column_selector", "sklearn.impute.IterativeImputer",
                 "sklearn.model_selection.KFold"]
    pending = []
    for i, name in enumerate(names):
        path = tmp_path / f"{i}.milo"
        milo_pack.dump(objects[name], path)
        pending.append((name, path))
    failures = {}
    while pending:  # two at a time: CI machines have two cores
        batch, pending = pending[:2], pending[2:]
        procs = [(name, subprocess.Popen([sys.executable, "-c", _ONE_TAG, str(path)],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)) for name, path in batch]
        for name, proc in procs:
            out, err = proc.communicate(timeout=600)
            cls = type(objects[name])
            if proc.returncode != 0 or out.strip() != f"{cls.__module__}.{cls.__qualname__}":
                failures[name] = (out + err)[-800:]
    assert not failures, failures
