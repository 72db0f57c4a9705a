"""Engines started by the tests on this machine: an S3 server on loopback (moto), Dask, Ray,
Spark and an MLflow tracking server.

These tests run in ``.ci/steps/30-engines.sh``, which installs the engines in its own venv and
sets ``MILO_ENGINES=1``: there a missing engine is an import error, a failure, never a skip.
Without that variable (the README's ``python -m pytest -q``) they are skipped with that reason,
since starting four engines takes minutes on two cores.  Engines are imported inside the tests,
so collecting them never needs an engine.
"""

from __future__ import annotations

import os

import fsspec
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

import milo_pack
from milo_pack.remote_model import clear

from ..common import noisy_data

ENABLED = os.environ.get("MILO_ENGINES") == "1"


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.engines)
            if not ENABLED:
                item.add_marker(pytest.mark.skip(
                    reason="engine test: run by .ci/steps/30-engines.sh (MILO_ENGINES=1)"))


@pytest.fixture(scope="session")
def s3():
    from moto import server as moto_server

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"key": "test", "secret": "test", "skip_instance_cache": True,
               "client_kwargs": {"endpoint_url": f"http://{host}:{port}",
                                 "region_name": "eu-west-1"}}
    # moto keeps its buckets for the whole process, across servers
    fsspec.filesystem("s3", **options).makedirs("models", exist_ok=True)
    try:
        yield options
    finally:
        server.stop()


@pytest.fixture(scope="session")
def stored(s3):
    """A forest on the S3 server, its handle and the in-memory model's predictions."""
    X, y = noisy_data(2000, 6)
    model = RandomForestClassifier(20, random_state=0).fit(X, y)
    url = "s3://models/forest.milo"
    milo_pack.dump(model, url, storage_options=s3)
    handle = milo_pack.remote(url, storage_options=s3, cache_bytes=0)
    clear()
    return {"model": model, "X": X, "handle": handle, "url": url,
            "size": fsspec.filesystem("s3", **s3).size(url),
            "proba": model.predict_proba(X), "predict": model.predict(X)}


def opened_models() -> int:
    """Models this process opened through handles (run on each worker)."""
    from milo_pack import remote_model

    return len(remote_model._OPEN)


def fetched() -> tuple[int, int]:
    """(requests, bytes) this process fetched for the models it opened (run on each worker)."""
    from milo_pack import remote_model

    requests = fetched_bytes = 0
    for entry in remote_model._OPEN.values():
        source = entry.handle.source if entry.handle is not None else None
        requests += getattr(source, "requests", 0)
        fetched_bytes += getattr(source, "bytes_fetched", 0)
    return requests, fetched_bytes


def same(a, b) -> None:
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
