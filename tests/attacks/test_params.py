"""Parameters are validated at load with scikit-learn's own constraints, thread counts bounded.

A parameter reaches native code as it is (a kernel name, a hasher's ``n_features``, ``n_jobs``):
a value that ``fit`` would refuse is refused at load, with scikit-learn's message, and the
constraints come from the class, never from the file.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction import FeatureHasher
from sklearn.svm import SVC

import milo_pack
from milo_pack.errors import InvariantError
from milo_pack.handlers.invariants import MAX_THREADS

from .craft import manifest_edit, model_file, refused


def _params(**changes):
    def edit(doc):
        doc["root"]["params"].update(changes)
    return edit


@pytest.mark.parametrize("model, changes, text", [
    ("svc", {"kernel": "bogus"}, "kernel"),
    ("svc", {"C": -1.0}, "'C' parameter"),
    ("svc", {"degree": 2.5}, "'degree' parameter"),
    ("forest", {"n_jobs": 10**6}, "thread pool"),
    ("forest", {"n_jobs": "4"}, "thread pool"),
    ("forest", {"n_jobs": True}, "thread pool"),
    ("forest", {"criterion": "nonsense"}, "'criterion' parameter"),
    ("kmeans", {"n_clusters": 0}, "'n_clusters' parameter"),
    ("logreg", {"n_jobs": -(10**6)}, "thread pool"),
], ids=lambda v: str(v)[:30])
def test_invalid_parameters_are_refused_at_load(model, changes, text):
    error = refused(manifest_edit(model_file(model), _params(**changes)), InvariantError)
    assert text in str(error)


def test_thread_bound_is_inclusive():
    data = manifest_edit(model_file("forest"), _params(n_jobs=MAX_THREADS))
    assert milo_pack.loads(data).n_jobs == MAX_THREADS


def test_stateless_hasher_parameters_are_checked():
    data = milo_pack.dumps(FeatureHasher(n_features=16))

    def edit(doc):
        doc["root"]["params"]["n_features"] = 0  # abs(hash) % 0 in Cython

    assert "n_features" in str(refused(manifest_edit(data, edit), InvariantError))


def test_a_file_cannot_bring_its_own_constraints():
    """An instance attribute named like a class attribute (``_parameter_constraints``,
    libsvm's ``_impl``) would let a file change what is checked or which model type libsvm
    builds: refused."""
    for name, value in (("_parameter_constraints", {}), ("_impl", "epsilon_svr")):
        def edit(doc, name=name, value=value):
            doc["root"]["attrs"][name] = value

        error = refused(manifest_edit(model_file("svc"), edit), InvariantError)
        assert "shadow" in str(error)


def test_valid_parameters_of_every_family_still_load():
    for name in ("svc", "forest", "kmeans", "logreg", "hgb", "knn", "pipeline"):
        milo_pack.loads(model_file(name))
    model = SVC(kernel="poly", degree=2).fit(np.eye(4), [0, 1, 0, 1])
    assert milo_pack.loads(milo_pack.dumps(model)).degree == 2
