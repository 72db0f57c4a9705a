"""The scikit-learn classes milo_pack allow-lists: static tables, looked up where they are.

Tags resolve through these tables only, never by walking scikit-learn's package tree, and the
answer does not depend on what the process imported before (see :mod:`milo_pack.registry`):

- every estimator of ``sklearn.utils.all_estimators()`` under its public path, e.g.
  ``sklearn.linear_model.LogisticRegression``: the tag's module must be in
  :data:`ESTIMATOR_MODULES`, and the class is looked up there, in the installed version;
- experimental estimators, which their public module exports only once the user imported the
  ``sklearn.experimental`` enabler, are looked up in the modules that define them
  (:data:`EXPERIMENTAL`);
- internal classes fitted estimators hold (CV splitters, losses, kernels, scorers, Birch nodes...)
  are listed by name with the modules to look them up in (:data:`INTERNAL`).

A name that the installed scikit-learn does not have is simply not allow-listed.  To support a
class that moved in another version, add the module it lives in there to its entry's candidate
modules; to support a new class, add its name.  ``tests/test_registry.py`` checks the tables
against the installed scikit-learn (``python -m milo_pack.handlers.sklearn_tables`` prints what
the installed version needs).
"""

from __future__ import annotations

from typing import Any

# Public modules holding the estimators of ``all_estimators()`` (their public paths).
ESTIMATOR_MODULES = frozenset({
    "sklearn.calibration", "sklearn.cluster", "sklearn.compose", "sklearn.covariance",
    "sklearn.cross_decomposition", "sklearn.decomposition", "sklearn.discriminant_analysis",
    "sklearn.dummy", "sklearn.ensemble", "sklearn.feature_extraction",
    "sklearn.feature_extraction.image", "sklearn.feature_extraction.text",
    "sklearn.feature_selection", "sklearn.frozen", "sklearn.gaussian_process", "sklearn.impute",
    "sklearn.isotonic", "sklearn.kernel_approximation", "sklearn.kernel_ridge",
    "sklearn.linear_model", "sklearn.manifold", "sklearn.mixture", "sklearn.model_selection",
    "sklearn.multiclass", "sklearn.multioutput", "sklearn.naive_bayes", "sklearn.neighbors",
    "sklearn.neural_network", "sklearn.pipeline", "sklearn.preprocessing",
    "sklearn.random_projection", "sklearn.semi_supervised", "sklearn.svm", "sklearn.tree",
})

# Experimental estimators: tag -> modules defining the class (first found wins).
EXPERIMENTAL: dict[str, tuple[str, ...]] = {
    "sklearn.impute.IterativeImputer": ("sklearn.impute._iterative",),
    "sklearn.model_selection.HalvingGridSearchCV":
        ("sklearn.model_selection._search_successive_halving",),
    "sklearn.model_selection.HalvingRandomSearchCV":
        ("sklearn.model_selection._search_successive_halving",),
}

# Internal classes: (module of the tag, class names, modules to look the classes up in — first
# found wins).  The tag is ``f"{module}.{name}"``.  Estimator subclasses are saved like
# estimators, named tuples field by field, ``Bunch`` as a dict, anything else from its
# ``__dict__``.
INTERNAL: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("sklearn.ensemble._hist_gradient_boosting.binning", ("_BinMapper",),
     ("sklearn.ensemble._hist_gradient_boosting.binning",)),
    ("sklearn.ensemble._hist_gradient_boosting.predictor", ("TreePredictor",),
     ("sklearn.ensemble._hist_gradient_boosting.predictor",)),
    ("sklearn._loss.loss", (
        "AbsoluteError", "ArrayAPILossMixin", "BaseLoss", "ExponentialLoss", "HalfBinomialLoss",
        "HalfBinomialLossArrayAPI", "HalfGammaLoss", "HalfMultinomialLoss",
        "HalfMultinomialLossArrayAPI", "HalfPoissonLoss", "HalfPoissonLossArrayAPI",
        "HalfSquaredError", "HalfTweedieLoss", "HalfTweedieLossIdentity", "HuberLoss",
        "PinballLoss"), ("sklearn._loss.loss",)),
    ("sklearn._loss.link", (
        "HalfLogitLink", "IdentityLink", "Interval", "LogLink", "LogitLink", "MultinomialLogit"),
     ("sklearn._loss.link",)),
    ("sklearn.metrics._scorer", (
        "_Scorer", "_PassthroughScorer", "_MultimetricScorer", "_CurveScorer"),
     ("sklearn.metrics._scorer",)),
    ("sklearn.compose", ("make_column_selector",), ("sklearn.compose",)),
    ("sklearn.gaussian_process.kernels", (
        "CompoundKernel", "ConstantKernel", "DotProduct", "ExpSineSquared", "Exponentiation",
        "GenericKernelMixin", "Hyperparameter", "Matern", "NormalizedKernelMixin",
        "PairwiseKernel", "Product", "RBF", "RationalQuadratic", "StationaryKernelMixin", "Sum",
        "WhiteKernel"), ("sklearn.gaussian_process.kernels",)),
    ("sklearn.neural_network._stochastic_optimizers", ("SGDOptimizer", "AdamOptimizer"),
     ("sklearn.neural_network._stochastic_optimizers",)),
    ("sklearn.cluster._birch", ("_CFNode", "_CFSubcluster"), ("sklearn.cluster._birch",)),
    ("sklearn.cluster._bisect_k_means", ("_BisectingTree",),
     ("sklearn.cluster._bisect_k_means",)),
    ("sklearn.model_selection", (
        "BaseShuffleSplit", "GroupKFold", "GroupShuffleSplit", "KFold", "LeaveOneGroupOut",
        "LeaveOneOut", "LeavePGroupsOut", "LeavePOut", "PredefinedSplit", "RepeatedKFold",
        "RepeatedStratifiedKFold", "ShuffleSplit", "StratifiedGroupKFold", "StratifiedKFold",
        "StratifiedShuffleSplit", "TimeSeriesSplit"), ("sklearn.model_selection",)),
    ("sklearn.model_selection._split", (
        "GroupsConsumerMixin", "_CVIterableWrapper", "_RepeatedSplits",
        "_UnsupportedGroupCVMixin"), ("sklearn.model_selection._split",)),
    ("sklearn.utils", ("Bunch",), ("sklearn.utils",)),
    ("sklearn.feature_extraction.text", ("_VectorizerMixin",),
     ("sklearn.feature_extraction.text",)),
    ("sklearn.calibration", ("_CalibratedClassifier", "_SigmoidCalibration"),
     ("sklearn.calibration",)),
    ("sklearn.gaussian_process._gpc", ("_BinaryGaussianProcessClassifierLaplace",),
     ("sklearn.gaussian_process._gpc",)),
    ("sklearn.multiclass", ("_ConstantPredictor",), ("sklearn.multiclass",)),
    ("sklearn.utils._metadata_requests", ("MetadataRequest", "MethodMetadataRequest"),
     ("sklearn.utils._metadata_requests",)),
    ("sklearn.impute._iterative", ("_ImputerTriplet",), ("sklearn.impute._iterative",)),
    # Older scikit-learn only (entries the installed version lacks are skipped):
    # scikit-learn 1.5 defined _CurveScorer here; its files carry this tag, which
    # migrations.MOVES renames for 1.6 on (where this module only imports it).
    ("sklearn.model_selection._classification_threshold", ("_CurveScorer",),
     ("sklearn.model_selection._classification_threshold",)),
    # scikit-learn 1.5 and 1.6 only (a plain list from 1.7 on: migrations.REPLACEMENTS).
    ("sklearn.compose._column_transformer", ("_RemainderColsList",),
     ("sklearn.compose._column_transformer",)),
)

# Modules whose every concrete class is listed in INTERNAL (an estimator may hold any of them: a
# CV splitter, a kernel, a loss); the test lists any class a new scikit-learn adds there.
COMPLETE_MODULES = ("sklearn._loss.loss", "sklearn._loss.link",
                    "sklearn.gaussian_process.kernels", "sklearn.model_selection._split")


def internal_index() -> dict[str, tuple[str, ...]]:
    """Tag -> candidate modules, for every internal class."""
    return {f"{module}.{name}": where for module, names, where in INTERNAL for name in names}


# -- checking the tables against the installed scikit-learn -----------------------------------


def scan_estimator_modules() -> list[str]:
    """The public modules of the installed ``all_estimators()`` (experimental ones included).

    Imports every scikit-learn module: for tests and maintainers, never at run time.
    """
    from sklearn.experimental import (  # noqa: F401
        enable_halving_search_cv,
        enable_iterative_imputer,
    )
    from sklearn.utils import all_estimators

    from .sklearn import public_path

    return sorted({public_path(cls).rpartition(".")[0] for _, cls in all_estimators()})


def scan_complete_modules() -> dict[str, list[str]]:
    """For each of :data:`COMPLETE_MODULES`, the concrete classes it defines, by tag."""
    import importlib
    import inspect

    from .sklearn import public_path

    found: dict[str, list[str]] = {}
    for module_name in COMPLETE_MODULES:
        module = importlib.import_module(module_name)
        found[module_name] = sorted(
            public_path(obj) for obj in vars(module).values()
            if isinstance(obj, type) and obj.__module__ == module_name
            and not inspect.isabstract(obj))
    return found


def main(argv: Any = None) -> None:  # pragma: no cover - a maintainer's tool
    """Print what the installed scikit-learn needs in these tables."""
    import pprint

    print("ESTIMATOR_MODULES =")
    pprint.pprint(scan_estimator_modules(), width=100, compact=True)
    print("\nclasses of COMPLETE_MODULES (tags):")
    pprint.pprint(scan_complete_modules(), width=100, compact=True)


if __name__ == "__main__":  # pragma: no cover
    main()
