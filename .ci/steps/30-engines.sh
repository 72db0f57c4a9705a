#!/usr/bin/env bash
# The remote handle and the MLflow flavor on real engines started on this machine: an S3 server
# on loopback (moto), a Dask LocalCluster with worker processes, a local Ray instance, pyspark in
# local mode (needs Java 17+) and an MLflow tracking server (SQLite, local artifacts).
# Own venv (the base interpreter keeps its versions); MILO_ENGINES=1 makes a missing engine a
# failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v java >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless) >/dev/null
fi
java -version 2>&1 | head -1

VENV="${MILO_ENGINES_VENV:-$(mktemp -d)/engines}"
python -m venv --system-site-packages "$VENV"
# Keep the base interpreter's scientific stack: the engines are tested against it.
CONSTRAINTS="$(mktemp)"
python - >"$CONSTRAINTS" <<'PY'
import importlib.metadata as m
for dist in ("numpy", "scipy", "scikit-learn", "pandas", "xgboost", "lightgbm", "zstandard",
             "msgpack", "cloudpickle", "joblib"):
    try:
        print(f"{dist}=={m.version(dist)}")
    except m.PackageNotFoundError:
        pass
PY
# The extra's requirements only: milo_pack itself is the checkout's (PYTHONPATH / editable).
REQS="$(mktemp)"
python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['engines']))" >"$REQS"
"$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" -r "$REQS"
# milo_pack is the checkout's: its editable install (visible through the system site-packages),
# or its source tree when the extension was built in place.
if ls src/milo_pack/_arrays*.so >/dev/null 2>&1; then
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
"$VENV/bin/python" -c "import milo_pack._arrays as k; print('milo_pack from', k.__file__)"
"$VENV/bin/python" -c "import dask, distributed, ray, pyspark, mlflow, pyarrow; print('engines:', 'dask', dask.__version__, 'ray', ray.__version__, 'pyspark', pyspark.__version__, 'mlflow', mlflow.__version__)"
MILO_ENGINES=1 "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/engines
