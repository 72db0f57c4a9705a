"""Build and use virtual environments with older scikit-learn, numpy, scipy, XGBoost, LightGBM.

milo_pack declares floors (``numpy>=1.26``, ``scipy>=1.11``, ``scikit-learn>=1.5``...) and
promises that files written under an older scikit-learn load under a newer one.  Both claims are
tested from environments that hold exactly those older versions; this script makes them, the
same way on a developer's machine and in CI (``.ci/steps/20-oldest-deps.sh``)::

    python tools/oldenv.py create sk15            # venv with the pins of ENVS["sk15"]
    python tools/oldenv.py run sk15 -- python -m pytest -q tests/test_sklearn.py
    python tools/oldenv.py list

The venvs live under ``--root`` (default ``$MILO_OLDENV_ROOT`` or ``/work/venvs``), one directory
``versions-<name>`` each.  milo_pack itself is not installed into them: ``run`` copies the
package sources of this checkout into ``<venv>/milo_build/src`` and builds the Cython extension
there with the venv's own Python and numpy (an extension built against numpy 2 is not the one a
numpy 1.26 user compiles), then runs the command with that directory first on ``PYTHONPATH``.
The copy is refreshed on every ``run``; the extension is rebuilt when ``_arrays.pyx`` changed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# What every environment needs to build and test milo_pack (and to write skops files for the
# comparison in tests/compat/measure.py).
COMMON = ["Cython>=3.0", "setuptools>=77", "wheel", "pytest>=8", "hypothesis>=6.100",
          "threadpoolctl"]

# One environment per supported scikit-learn minor, with the numpy/scipy/pandas/XGBoost/LightGBM
# of its time.  "sk15" is also the *oldest* environment: every floor pyproject.toml declares
# (numpy 1.26, scipy 1.11, scikit-learn 1.5, zstandard 0.22, msgpack 1.0, pandas 2.2,
# XGBoost 2.1 — the first xgboost-cpu release —, LightGBM 4.6, orjson 3.8) at once.
ENVS: dict[str, list[str]] = {
    # LightGBM: 4.6, not 4.0 — before 4.6 a stump tree's text has an empty leaf_count, which
    # the booster handler cannot reproduce (pyproject's floor says so); the committed 1.5.2
    # corpus was written with LightGBM 4.0.0 (no stumps) and still loads.
    "sk15": ["scikit-learn==1.5.2", "numpy==1.26.4", "scipy==1.11.4", "pandas==2.2.2",
             "xgboost-cpu==2.1.4", "lightgbm==4.6.0", "zstandard==0.22.0", "msgpack==1.0.8",
             "orjson==3.8.3", "skops==0.16.0"],
    "sk16": ["scikit-learn==1.6.1", "numpy==2.1.3", "scipy==1.14.1", "pandas==2.2.3",
             "xgboost==2.1.4", "lightgbm==4.5.0", "zstandard", "msgpack", "orjson",
             "skops==0.16.0"],
    "sk17": ["scikit-learn==1.7.2", "numpy==2.2.6", "scipy==1.15.3", "pandas==2.3.3",
             "xgboost==3.0.5", "lightgbm==4.6.0", "zstandard", "msgpack", "orjson",
             "skops==0.16.0"],
    "sk18": ["scikit-learn==1.8.0", "numpy==2.3.5", "scipy==1.16.3", "pandas==2.3.3",
             "xgboost==3.1.3", "lightgbm==4.6.0", "zstandard", "msgpack", "orjson",
             "skops==0.16.0"],
}
OLDEST = "sk15"

# The floors of the ``dev`` extra (pyproject.toml), installed in the oldest environment so that
# the whole test suite runs there: URLs and the loopback S3 server (fsspec, s3fs, moto and its
# threaded server's flask), the bench's comparisons and plot (joblib, matplotlib).  fsspec and
# s3fs ">=2024.1": 2024.2.0 is the first 2024 release.
DEV_FLOORS = ["fsspec==2024.2.0", "s3fs==2024.2.0", "moto[s3]==5.0.13", "flask==2.3.3",
              "flask-cors==4.0.0", "joblib==1.3.2", "matplotlib==3.7.5"]


def root_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("MILO_OLDENV_ROOT") or "/work/venvs")


def venv_dir(root: Path, name: str) -> Path:
    return root / f"versions-{name}"


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def create(root: Path, name: str, *, quiet: bool = True) -> Path:
    """Create (or complete) the venv ``name`` with its pinned packages."""
    venv = venv_dir(root, name)
    if not python_of(venv).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python_of(venv)), "-m", "pip", "install", "--disable-pip-version-check"]
    if quiet:
        pip.append("-q")
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    extra = DEV_FLOORS if name == OLDEST else []
    subprocess.run([*pip, *ENVS[name], *extra, *COMMON], check=True)
    return venv


def _tree_digest(src: Path) -> str:
    digest = hashlib.sha256()
    for f in (src / "milo_pack" / "_arrays.pyx", REPO / "setup.py"):
        digest.update(f.read_bytes())
    return digest.hexdigest()


def sync(root: Path, name: str) -> Path:
    """Copy this checkout's package into the venv's build tree; build the extension if needed.

    Returns the directory to put first on ``PYTHONPATH``.
    """
    venv = venv_dir(root, name)
    if not python_of(venv).exists():
        raise SystemExit(f"no venv {venv}: run `python tools/oldenv.py create {name}` first")
    build = venv / "milo_build"
    src = build / "src"
    target = src / "milo_pack"
    keep = {p.name: p.read_bytes() for p in target.glob("_arrays*.so")} if target.exists() else {}
    stamp = build / "extension.sha256"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(REPO / "src" / "milo_pack", target,
                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):  # pyproject: package in src/
        shutil.copy2(REPO / name, build / name)
    digest = _tree_digest(REPO / "src")
    if keep and stamp.exists() and stamp.read_text() == digest:
        for so_name, data in keep.items():
            (target / so_name).write_bytes(data)
    else:
        subprocess.run([str(python_of(venv)), "setup.py", "-q", "build_ext", "--inplace"],
                       cwd=build, check=True, stdout=subprocess.DEVNULL)
        stamp.write_text(digest)
    return src


def run(root: Path, name: str, command: list[str]) -> int:
    """Run ``command`` with the venv's Python first on PATH and its milo_pack build importable."""
    src = sync(root, name)
    venv = venv_dir(root, name)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(src), str(REPO)])
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(venv)
    env.pop("PYTHONHOME", None)
    return subprocess.run(command, env=env, cwd=REPO).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", help="directory holding the venvs (default /work/venvs)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_create = sub.add_parser("create", help="create venvs with their pinned packages")
    p_create.add_argument("names", nargs="*", help=f"environments (default all: {list(ENVS)})")
    p_run = sub.add_parser("run", help="run a command in an environment")
    p_run.add_argument("name", choices=sorted(ENVS))
    p_run.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("list", help="the environments and their pins")
    args = parser.parse_args(argv)
    root = root_dir(args.root)
    if args.cmd == "list":
        for name, pins in ENVS.items():
            print(f"{name}: {' '.join(pins)}")
        return 0
    if args.cmd == "create":
        for name in args.names or list(ENVS):
            if name not in ENVS:
                parser.error(f"unknown environment {name!r}")
            print(f"creating {venv_dir(root, name)}", flush=True)
            create(root, name)
            sync(root, name)
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run needs a command after --")
    return run(root, args.name, command)


if __name__ == "__main__":
    raise SystemExit(main())
