"""The milo_pack MLflow flavor against a real tracking server on loopback (SQLite backend store,
local artifact store), with MLflow's pickle deserialization disabled."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

import milo_pack
from milo_pack.errors import UntrustedTypeError


class Echo(BaseEstimator):
    """A user's own estimator: its tag is outside the allow-list."""

    def __init__(self, a: int = 1) -> None:
        self.a = a

    def predict(self, X):
        return np.full(len(X), self.a)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    import mlflow

    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--default-artifact-root", (root / "artifacts").as_uri(), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)  # its own process group: the server and its workers
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError("the MLflow server did not start")
            time.sleep(1)
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(url)
        os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
        yield url
    finally:
        os.environ.pop("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", None)
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(30)
    mlflow.set_tracking_uri(previous)


MODELS = {
    "sklearn": lambda X, y: RandomForestClassifier(10, random_state=0).fit(X, y),
    "xgboost": lambda X, y: __import__("xgboost").XGBClassifier(n_estimators=20).fit(X, y),
    "lightgbm": lambda X, y: __import__("lightgbm").LGBMClassifier(
        n_estimators=20, verbose=-1).fit(X, y),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_log_and_load_without_pickle(tracking, kind):
    import mlflow
    import mlflow.models
    import pandas as pd

    import milo_pack.mlflow as flavor

    X, y = make_classification(400, 6, random_state=0)
    model = MODELS[kind](X, y)
    with mlflow.start_run():
        info = flavor.log_model(model, name="model", input_example=X[:5])
    assert flavor.untrusted_types(info.model_uri) == []
    native = flavor.load_model(info.model_uri)
    assert type(native) is type(model)
    np.testing.assert_array_equal(native.predict_proba(X), model.predict_proba(X))
    pyfunc = mlflow.pyfunc.load_model(info.model_uri)  # pickle deserialization is disabled
    np.testing.assert_array_equal(pyfunc.predict(X), model.predict(X))
    frame = pd.DataFrame(X)
    np.testing.assert_array_equal(np.asarray(pyfunc.predict(frame)).ravel(),
                                  model.predict(frame.to_numpy()))
    # Batch scoring as `mlflow models predict` does it, in this environment.
    out = os.path.join(mlflow.artifacts.download_artifacts(info.model_uri), "..", "pred.json")
    mlflow.models.predict(info.model_uri, input_data=X, env_manager="local", output_path=out)
    import json

    with open(out) as f:
        predictions = json.load(f)["predictions"]
    np.testing.assert_array_equal(np.asarray(predictions), model.predict(X))


def test_trust_comes_from_the_caller_never_the_model(tracking, tmp_path):
    import mlflow

    import milo_pack.mlflow as flavor

    with mlflow.start_run():
        info = flavor.log_model(Echo(), name="mine")
    tag = f"{Echo.__module__}.Echo"
    assert [t for t, _ in flavor.untrusted_types(info.model_uri)] == [tag]
    with pytest.raises(UntrustedTypeError, match="Echo"):
        flavor.load_model(info.model_uri)
    with pytest.raises(UntrustedTypeError):
        mlflow.pyfunc.load_model(info.model_uri)  # nothing in MLmodel can widen the allow-list
    assert flavor.load_model(info.model_uri, trusted=[tag]).a == 1
    # A model that claims trust in its own MLmodel gets none.
    local = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path))
    mlmodel = os.path.join(local, "MLmodel")
    with open(mlmodel) as f:
        text = f.read()
    with open(mlmodel, "w") as f:
        f.write(text.replace("  milo_pack:\n", f"  milo_pack:\n    trusted: [{tag}]\n"))
    with pytest.raises(UntrustedTypeError):
        flavor.load_model(local)
    with pytest.raises(UntrustedTypeError):
        mlflow.pyfunc.load_model(local)
    milo_pack.load(os.path.join(local, "model.milo"), trusted=[tag])
