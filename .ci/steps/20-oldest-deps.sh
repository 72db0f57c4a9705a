#!/usr/bin/env bash
# The declared dependency floors, tested: a fresh venv with the oldest supported scikit-learn,
# numpy, scipy, pandas, zstandard, msgpack, XGBoost and LightGBM (tools/oldenv.py, environment
# "sk15"), the Cython extension built against that numpy, then the round-trip tests and the
# whole test suite, the README's command (the compatibility corpus included: files written by
# scikit-learn 1.5 to 1.9, loaded under 1.5).  Two things are left to the newest environment:
# tests/test_style.py (ruff and mypy check the source against the newest stubs; they say
# nothing about the floors) and tests/engines/ (Dask, Ray, Spark and MLflow have their own
# floors and run in 30-engines; without MILO_ENGINES=1 they are skipped anyway).
set -euo pipefail
cd "$(dirname "$0")/../.."

ROOT="${MILO_OLDENV_ROOT:-$(mktemp -d)}"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1   # 2 cores: no oversubscription
python tools/oldenv.py --root "$ROOT" create sk15
python tools/oldenv.py --root "$ROOT" run sk15 -- python -c \
    "import milo_pack._arrays as k, numpy, scipy, sklearn; print('oldest:', 'numpy', numpy.__version__, 'scipy', scipy.__version__, 'scikit-learn', sklearn.__version__, k.__file__)"
python tools/oldenv.py --root "$ROOT" run sk15 -- python -m pytest -q -p no:cacheprovider \
    --ignore=tests/test_style.py --ignore=tests/engines tests
