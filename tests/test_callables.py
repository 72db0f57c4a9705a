"""Functions and distributions held by models: an allow-list by tag, user functions by trust."""

from __future__ import annotations

import io
import json
import math
import sys
import zipfile

import numpy as np
import pytest
import scipy.stats as stats
from scipy.spatial.distance import cityblock
from sklearn.feature_selection import SelectKBest, f_classif, mutual_info_classif
from sklearn.metrics import make_scorer, mean_absolute_error
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import FunctionTransformer

import milo_pack
from milo_pack.errors import UnsupportedTypeError, UntrustedTypeError

from .attacks.craft import manifest_edit
from .common import assert_same, roundtrip

X = np.abs(np.random.default_rng(0).normal(size=(30, 3)))
y = np.arange(30) % 2


def _manifest(data: bytes) -> dict:
    return json.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))


def _with_manifest(data: bytes, edit) -> bytes:
    """A crafted file: ``data`` with its manifest rewritten by ``edit``."""
    return manifest_edit(data, edit)


@pytest.mark.parametrize("value", [
    np.log1p, np.sqrt, np.mean, math.sqrt, f_classif, mutual_info_classif, rbf_kernel,
    mean_absolute_error, stats.norm,
], ids=lambda v: getattr(v, "__name__", type(v).__name__))
def test_allow_listed_functions_roundtrip_by_identity(value) -> None:
    assert roundtrip({"f": value})["f"] is value


def test_models_holding_functions() -> None:
    models = [
        FunctionTransformer(func=np.log1p, inverse_func=np.expm1).fit(X),
        SelectKBest(score_func=f_classif, k=2).fit(X, y),
        KNeighborsClassifier(n_neighbors=3, algorithm="brute", metric=cityblock).fit(X, y),
        make_scorer(mean_absolute_error, greater_is_better=False),
    ]
    for model in models:
        loaded = milo_pack.loads(milo_pack.dumps(model))
        assert_same(model, loaded)


def _manhattan_free(a, b):  # a plain module-level function (not in the allow-list)
    return float(np.abs(a - b).sum())


def test_frozen_distributions_are_tagged_nodes() -> None:
    params = {"C": stats.loguniform(1e-3, 10), "k": stats.randint(1, 5),
              "s": stats.norm(loc=2.0, scale=0.5)}
    data = milo_pack.dumps(params)
    node = _manifest(data)["root"]["C"]
    assert node == {"$type": "scipy.stats.frozen", "dist": "loguniform", "args": [0.001, 10],
                    "kwds": {}}
    loaded = milo_pack.loads(data)
    for name, frozen in params.items():
        assert loaded[name].dist.name == frozen.dist.name
        assert loaded[name].args == frozen.args and loaded[name].kwds == frozen.kwds
        assert loaded[name].rvs(random_state=0) == frozen.rvs(random_state=0)


def test_frozen_distribution_with_its_own_random_state() -> None:
    frozen = stats.uniform(0, 1)
    frozen.random_state = np.random.RandomState(7)
    loaded = roundtrip(frozen)
    assert loaded.rvs(size=3).tolist() == frozen.rvs(size=3).tolist()


def test_crafted_distribution_arguments_are_refused() -> None:
    data = milo_pack.dumps(stats.uniform(0, 1))

    def bad_name(m):
        m["root"]["dist"] = "os"
        return m

    def bad_kwds(m):
        m["root"]["kwds"] = {"__class__": 1}
        return m

    for edit in (bad_name, bad_kwds):
        with pytest.raises(milo_pack.MiloError):
            milo_pack.loads(_with_manifest(data, edit))


@pytest.mark.parametrize("func", [lambda v: v, (lambda: (lambda v: v))()], ids=["lambda", "local"])
def test_dump_refuses_lambdas_and_local_functions(func) -> None:
    with pytest.raises(UnsupportedTypeError, match=r"lambda.*\(at func\)"):
        milo_pack.dumps(FunctionTransformer(func=func))


def test_dump_refuses_builtins_outside_the_allow_list() -> None:
    import os

    with pytest.raises(UnsupportedTypeError, match=r"system.*allow-list.*\(at params\.f\)"):
        milo_pack.dumps({"params": {"f": os.system}})


def test_user_function_needs_its_exact_tag_in_trusted() -> None:
    model = FunctionTransformer(func=_manhattan_free)
    data = milo_pack.dumps(model)
    tag = f"function:{__name__}._manhattan_free"
    assert milo_pack.untrusted_types(data) == [(tag, "func")]
    with pytest.raises(UntrustedTypeError):
        milo_pack.loads(data)
    with pytest.raises(UntrustedTypeError):
        milo_pack.loads(data, trusted=[f"{__name__}._manhattan_free"])
    assert milo_pack.loads(data, trusted=[tag]).func is _manhattan_free


def _craft_function(tag: str) -> bytes:
    data = milo_pack.dumps(FunctionTransformer(func=np.log1p))

    def edit(m):
        m["root"]["params"]["func"] = {"$type": tag}
        return m

    return _with_manifest(data, edit)


def test_crafted_function_tags_are_refused_and_never_imported() -> None:
    for tag in ("function:os.system", "function:milo_fake_module_xyz.run"):
        data = _craft_function(tag)
        before = set(sys.modules)
        assert milo_pack.untrusted_types(data) == [(tag, "func")]
        with pytest.raises(UntrustedTypeError):
            milo_pack.loads(data)
        assert set(sys.modules) == before
        assert "milo_fake_module_xyz" not in sys.modules


def test_trusting_a_function_tag_still_requires_a_plain_python_function() -> None:
    # os.system is a builtin, not a Python function: trust does not turn it into one.
    for tag in ("function:os.system", "function:milo_fake_module_xyz.run",
                "function:json.JSONDecoder"):
        with pytest.raises(UntrustedTypeError):
            milo_pack.loads(_craft_function(tag), trusted=[tag])
    assert "milo_fake_module_xyz" not in sys.modules
