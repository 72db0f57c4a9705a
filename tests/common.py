"""Shared test helpers: exact round trips and deep, array-by-array comparison."""

from __future__ import annotations

import collections
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

import milo_pack


def noisy_data(n_samples: int = 3000, n_features: int = 5,
               n_classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Data with 30% flipped labels: fully grown trees on it have ~800 nodes (a forest of big
    trees, whose columns span many chunks)."""
    from sklearn.datasets import make_classification

    return make_classification(n_samples, n_features, n_informative=3, n_redundant=1,
                               n_classes=n_classes, flip_y=0.3, random_state=0)


def roundtrip(obj: Any, **kwargs: Any) -> Any:
    """Dump to bytes and load back, also checking that re-saving gives the same bytes."""
    data = milo_pack.dumps(obj, **kwargs)
    loaded = milo_pack.loads(data)
    assert milo_pack.dumps(loaded, **kwargs) == data, "re-saving the loaded object changed bytes"
    return loaded


def assert_same(a: Any, b: Any, path: str = "", _seen: set | None = None) -> None:
    """Assert ``a`` and ``b`` hold the same state, exactly, recursively.

    Arrays are compared element by element with dtype, shape and NaN positions; estimators and
    other objects by their ``__getstate__``/``__dict__``; floats bit for bit (so -0.0 != 0.0).
    """
    _seen = set() if _seen is None else _seen
    key = (id(a), id(b))
    if key in _seen:
        return
    _seen.add(key)
    assert type(a) is type(b), f"{path}: type {type(a)} != {type(b)}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, f"{path}: dtype {a.dtype} != {b.dtype}"
        assert a.shape == b.shape, f"{path}: shape {a.shape} != {b.shape}"
        if a.dtype.kind == "O":
            for i, (x, y) in enumerate(zip(a.ravel(), b.ravel(), strict=True)):
                assert_same(x, y, f"{path}[{i}]", _seen)
        elif a.dtype.fields is not None:
            for name in a.dtype.names:
                assert_same(a[name], b[name], f"{path}.{name}", _seen)
        else:
            assert a.tobytes() == b.tobytes() or np.array_equal(a, b, equal_nan=True), (
                f"{path}: arrays differ")
        if isinstance(a, np.ma.MaskedArray):
            assert np.array_equal(np.ma.getmaskarray(a), np.ma.getmaskarray(b)), path
        return
    if sp.issparse(a):
        assert a.format == b.format and a.shape == b.shape, path
        for name in ("data", "indices", "indptr", "row", "col", "offsets"):
            if hasattr(a, name):
                assert_same(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)),
                            f"{path}.{name}", _seen)
        return
    if isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)), f"{path}: {a} != {b}"
        return
    if isinstance(a, complex):
        assert_same(a.real, b.real, f"{path}.real", _seen)
        assert_same(a.imag, b.imag, f"{path}.imag", _seen)
        return
    if isinstance(a, np.generic):
        assert a.dtype == b.dtype, f"{path}: {a.dtype} != {b.dtype}"
        assert_same(np.asarray(a), np.asarray(b), path, _seen)
        return
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]", _seen)
        return
    if isinstance(a, collections.defaultdict):
        assert a.default_factory is b.default_factory, f"{path}: default_factory differs"
    if isinstance(a, collections.deque):
        assert a.maxlen == b.maxlen, f"{path}: maxlen {a.maxlen} != {b.maxlen}"
        assert_same(list(a), list(b), path, _seen)
        return
    if isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]", _seen)
        return
    if isinstance(a, (set, frozenset)):
        assert a == b, f"{path}: sets differ"
        return
    if isinstance(a, (str, bytes, int, bool, type(None), slice, np.dtype)) or callable(
            a) and not hasattr(a, "__dict__"):
        assert a == b or a is b, f"{path}: {a!r} != {b!r}"
        return
    if type(a).__name__ == "Tree":
        sa, sb = a.__getstate__(), b.__getstate__()
        assert (a.n_features, a.n_outputs) == (b.n_features, b.n_outputs), path
        assert_same(sa, sb, f"{path}.<state>", _seen)
        return
    # (scikit-learn < 1.9 compiles its loss module as a top-level "_loss".)
    if not hasattr(a, "__dict__") and (type(a).__module__.startswith("sklearn.")
                                       or type(a).__module__ == "_loss"):
        # Cython objects (KD-trees, distance metrics, losses): compare their pickle state.
        reduced_a, reduced_b = a.__reduce__(), b.__reduce__()
        assert_same(reduced_a[1:], reduced_b[1:], f"{path}.<reduce>", _seen)
        return
    if isinstance(a, np.random.Generator):
        assert_same(a.bit_generator.state, b.bit_generator.state, path, _seen)
        return
    if hasattr(a, "__dict__"):
        da = {k: v for k, v in vars(a).items() if k != "_sklearn_version"}
        db = {k: v for k, v in vars(b).items() if k != "_sklearn_version"}
        assert sorted(da) == sorted(db), f"{path}: attributes {sorted(da)} != {sorted(db)}"
        for k in da:
            assert_same(da[k], db[k], f"{path}.{k}", _seen)
        return
    if isinstance(a, np.random.RandomState):
        assert_same(a.get_state(legacy=False), b.get_state(legacy=False), path, _seen)
        return
    assert a == b, f"{path}: {a!r} != {b!r}"


PREDICT_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function",
                   "transform", "score_samples", "kneighbors")


def assert_same_predictions(a: Any, b: Any, X: Any) -> list[str]:
    """Call every prediction method both models have on ``X``; outputs must be identical."""
    called = []
    for name in PREDICT_METHODS:
        if not hasattr(a, name):
            continue
        try:
            expected = getattr(a, name)(X)
        except Exception as exc:  # noqa: BLE001 - the loaded model must fail alike
            try:
                getattr(b, name)(X)
            except type(exc):
                continue
            raise AssertionError(f"{name} raised {exc!r} on the original only") from None
        got = getattr(b, name)(X)
        if isinstance(expected, tuple):
            for e, g in zip(expected, got, strict=True):
                assert np.array_equal(e, g), name
            called.append(name)
            continue
        if sp.issparse(expected):
            expected, got = expected.toarray(), got.toarray()
        expected, got = np.asarray(expected), np.asarray(got)
        assert expected.dtype == got.dtype and expected.shape == got.shape, name
        assert np.array_equal(expected, got, equal_nan=expected.dtype.kind in "fc"), name
        called.append(name)
    return called


@contextmanager
def stored_array(tmp_path: Path, a: np.ndarray) -> Iterator[tuple[Any, int]]:
    """``a`` saved alone and opened: the open file's section store and its chunk length."""
    path = tmp_path / "a.milo"
    milo_pack.dump({"a": a}, path)
    with milo_pack.open(path) as f:
        yield f.store, f.store.infos[0].chunk_length
