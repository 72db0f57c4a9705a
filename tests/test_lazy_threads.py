"""Lazily loaded models under threads, with the CPU contended (issue 14's race).

A lazy forest with ``cache_bytes=0`` drops members while other threads still predict with them.
Before the fix, a thread could find a member emptied under it (``NotFittedError`` inside
scikit-learn's own ``n_jobs`` workers: 27 of 40 fresh loads on a busy machine, 0 of 40 on an
idle one), so these tests keep busy processes running beside them.  They use the public API
only, so the same file can be run against an older checkout to see it fail.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

import milo_pack

from .common import noisy_data

X, Y = noisy_data(3000, 8)
BATCH = X[:300]


@pytest.fixture(scope="module")
def busy():
    """Three spinning processes (bounded in time) so that threads are preempted mid-call."""
    procs = [subprocess.Popen([sys.executable, "-c",
                               "import time\nend = time.time() + 600\n"
                               "while time.time() < end: pass"])
             for _ in range(3)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def forest():
    model = RandomForestClassifier(30, random_state=0).fit(X, Y)
    return model, milo_pack.dumps(model), model.predict_proba(BATCH)


def test_sklearn_threads_on_fresh_lazy_loads(busy, forest):
    model, data, expected = forest
    failures = []
    for run in range(120):
        with milo_pack.open(data) as handle:
            lazy = handle.load(lazy=True, cache_bytes=0)
            lazy.n_jobs = (2, 4, 8)[run % 3]
            try:
                got = lazy.predict_proba(BATCH)
            except Exception as exc:  # noqa: BLE001 - counted and reported below
                failures.append(repr(exc)[:120])
                continue
            if not np.array_equal(got, expected):
                failures.append("different predictions")
    assert not failures, f"{len(failures)} of 120 runs failed: {failures[:3]}"


@pytest.mark.parametrize("threads", [2, 4, 8])
def test_caller_threads_share_one_lazy_model(busy, forest, threads):
    model, data, expected = forest
    errors: list[str] = []
    with milo_pack.open(data) as handle:
        lazy = handle.load(lazy=True, cache_bytes=0)
        lazy.n_jobs = 2  # each caller's predict also fans out to scikit-learn's threads

        def call(i: int) -> None:
            try:
                if i % 5 == 4:  # pickling reads every member while others predict
                    plain = pickle.loads(pickle.dumps(lazy))
                    got = plain.predict_proba(BATCH)
                else:
                    got = lazy.predict_proba(BATCH)
                if not np.array_equal(got, expected):
                    errors.append("different predictions")
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc)[:120])

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(call, range(40)))
    assert not errors, f"{len(errors)} of 40 calls failed: {errors[:3]}"


def test_pickled_lazy_model_predicts_again(busy, forest):
    model, data, expected = forest
    for _ in range(30):
        with milo_pack.open(data) as handle:
            lazy = handle.load(lazy=True, cache_bytes=0)
            lazy.n_jobs = 4
            worker = threading.Thread(target=lazy.predict_proba, args=(BATCH,))
            worker.start()
            plain = pickle.loads(pickle.dumps(lazy))
            worker.join()
            np.testing.assert_array_equal(lazy.predict_proba(BATCH), expected)
        plain.n_jobs = 2
        np.testing.assert_array_equal(plain.predict_proba(BATCH), expected)


def test_packed_stages_under_threads(busy):
    # Boosting stages are packed and reached from Cython (predict_stages): several callers.
    model = GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=0).fit(X, Y)
    expected = model.predict_proba(BATCH)
    with milo_pack.open(milo_pack.dumps(model)) as handle:
        lazy = handle.load(lazy=True, cache_bytes=0)
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: lazy.predict_proba(BATCH), range(24)))
    for got in results:
        np.testing.assert_array_equal(got, expected)
