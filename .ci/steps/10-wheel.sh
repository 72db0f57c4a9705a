#!/usr/bin/env bash
# Packaging, as a release is built and installed:
#  1. build the sdist, then the wheel from the sdist (`python -m build`), in a clean venv;
#  2. check their contents (.ci/check_dist.py: no generated C or Cython source in the wheel, a
#     stripped library, every module; tests, fixtures and docs in the sdist) and metadata (twine);
#  3. install the wheel (not editable) with its `dev` extra in a fresh venv without the system's
#     packages;
#  4. run the whole test suite from the unpacked sdist against that installed wheel (the sdist's
#     root is on sys.path, its `src/` is not: milo_pack comes from site-packages, which a test
#     asserts when MILO_PACK_EXPECT_INSTALLED is set), and the packaging tests from this checkout.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python="${PYTHON:-python3}"

echo "== build sdist and wheel"
"$python" -m venv "$work/build-env"
"$work/build-env/bin/python" -m pip install -q --upgrade pip build twine
"$work/build-env/bin/python" -m build --outdir "$work/dist" "$root" > "$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log"; exit 1; }
ls -l "$work/dist"

echo "== check contents and metadata"
"$work/build-env/bin/python" "$root/.ci/check_dist.py" "$work/dist" "$root"
"$work/build-env/bin/python" -m twine check --strict "$work/dist"/*

echo "== install the wheel in a fresh venv"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
wheel="$(ls "$work"/dist/*.whl)"
"$work/venv/bin/python" -m pip install -q "${wheel}[dev]"
mkdir "$work/sdist"
tar -xzf "$work"/dist/*.tar.gz -C "$work/sdist"
sdist="$(ls -d "$work"/sdist/*/)"

cd "$work"  # nothing of the checkout is importable from here
"$work/venv/bin/python" - <<'PY'
import sys, milo_pack, milo_pack._arrays as k
where = milo_pack.__file__
assert "site-packages" in where, where
assert k.__file__.endswith((".so", ".pyd")), k.__file__
print("installed:", where, "version", milo_pack.__version__)
PY
"$work/venv/bin/milo-pack" --version

echo "== the test suite, from the unpacked sdist, against the installed wheel"
cd "$sdist"
MILO_PACK_EXPECT_INSTALLED=1 "$work/venv/bin/python" -m pytest -q -p no:cacheprovider

echo "== the packaging tests, from this checkout, against the installed wheel"
cd "$root"
MILO_PACK_EXPECT_INSTALLED=1 "$work/venv/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_packaging.py
