"""Measurement primitives: timed saves and inspects in this process, loads in a fresh one."""

from __future__ import annotations

import compileall
import functools
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from milo_pack.bench._child import MARKER
from milo_pack.bench.methods import Method

__all__ = ["ChildError", "LoadServer", "time_saves", "time_inspects", "measure_load",
           "SERVER_MODULES"]

SERVER_MODULES = (
    "numpy", "scipy.sparse", "sklearn", "sklearn.base", "sklearn.ensemble", "sklearn.tree",
    "sklearn.linear_model", "sklearn.neighbors", "sklearn.pipeline", "sklearn.preprocessing",
    "sklearn.decomposition", "joblib", "skops.io", "milo_pack", "xgboost", "lightgbm",
)
"""What the fork server imports once (those installed): the methods' libraries and models'."""

CHILD_SCRIPT = Path(__file__).resolve().parent / "_child.py"
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding milo_pack/


class ChildError(RuntimeError):
    """The measuring subprocess failed, timed out or printed no result."""


FAST_BUDGET_S = 0.1
"""In-process timings go on past ``repeat`` runs while their total stays under this..."""

FAST_MAX_RUNS = 15
"""...up to this many runs, so that millisecond figures are medians of many, not of one."""


def _runs(repeat: int, times: list[float]) -> bool:
    """Whether to time one more run."""
    if len(times) < repeat:
        return True
    return sum(times) < FAST_BUDGET_S and len(times) < FAST_MAX_RUNS


def time_saves(method: Method, obj: Any, path: Path, repeat: int) -> list[float]:
    """Save ``obj`` with ``method`` at least ``repeat`` times, each to a fresh file.

    Fast saves are repeated more (see :data:`FAST_BUDGET_S`).

    Returns
    -------
    list of float
        Wall time of each save in seconds (garbage collection done before each, untimed).
    """
    times: list[float] = []
    while _runs(repeat, times):
        path.unlink(missing_ok=True)
        gc.collect()
        start = time.perf_counter()
        method.save(obj, path)
        times.append(time.perf_counter() - start)
    return times


def time_inspects(method: Method, path: Path, repeat: int) -> list[float]:
    """Time ``method.inspect(path)`` (milo_pack: open the file and parse its manifest).

    Repeated like :func:`time_saves`.
    """
    times: list[float] = []
    while _runs(repeat, times):
        start = time.perf_counter()
        method.inspect(path)
        times.append(time.perf_counter() - start)
    return times


@functools.cache
def _compiled() -> None:
    """Compile milo_pack's modules once (a no-op where their bytecode is current)."""
    try:
        compileall.compile_dir(str(_PACKAGE_ROOT / "milo_pack"), quiet=2)
    except OSError:  # a read-only install: its bytecode was written when it was installed
        pass


def _child_env() -> dict[str, str]:
    """Environment for the child: ours, with a source checkout's root first on ``PYTHONPATH``.

    That way the child imports the same milo_pack as this process even when it runs from a
    checkout that is not installed; an installed milo_pack is found without help.
    Measured as users run: an installed package has its bytecode, but a checkout under
    ``PYTHONDONTWRITEBYTECODE=1`` (set on these machines) would compile every module a fresh
    process imports (handler modules load on first use, inside the timed first load), so the
    package is compiled first and the children may read the bytecode.
    """
    _compiled()
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if {"site-packages", "dist-packages"}.isdisjoint(_PACKAGE_ROOT.parts):
        paths = [str(_PACKAGE_ROOT), *env.get("PYTHONPATH", "").split(os.pathsep)]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
    return env


class LoadServer:
    """A fork server (``_child.py --serve``): one fresh process per load, imports done once.

    Starting an interpreter and importing scikit-learn takes about a second, longer than most
    loads measured; forking a process that already imported them gives each load a process of
    its own (its memory, its first-load costs) for a few milliseconds.  Linux only (forking
    after importing these libraries is not safe on macOS; Windows has no fork).
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD_SCRIPT), "--serve", json.dumps(SERVER_MODULES)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=_child_env())

    @staticmethod
    def available() -> bool:
        return sys.platform.startswith("linux")

    def measure(self, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"spec": spec, "timeout": timeout}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError as exc:
            raise ChildError("the load server exited") from exc
        line = self.proc.stdout.readline()
        if not line.startswith(MARKER):
            raise ChildError(f"the load server exited ({self.proc.poll()})")
        return dict(json.loads(line[len(MARKER):]))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> LoadServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def measure_load(spec: dict[str, Any], timeout: float,
                 server: LoadServer | None = None) -> dict[str, Any]:
    """Load a file in a fresh Python process and return what it measured.

    Parameters
    ----------
    spec : dict
        See ``_child.py``: ``method``, ``path``, ``modules`` and optional ``x_path``,
        ``ref_path``, ``warm``.
    timeout : float
        Seconds before the child is killed.
    server : LoadServer, optional
        Fork the process from this server instead of starting an interpreter.

    Returns
    -------
    dict
        ``load_s``, ``peak_delta_bytes`` and, when asked, ``identical``, ``mismatches``,
        ``warm_load_s``; or ``error`` when the load itself raised.

    Raises
    ------
    ChildError
        If the process crashed, timed out or printed no result line.
    """
    if server is not None:
        return server.measure(spec, timeout)
    try:
        proc = subprocess.run(
            [sys.executable, str(CHILD_SCRIPT), json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_child_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ChildError(f"load did not finish within {timeout:g} s") from exc
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            return dict(json.loads(line[len(MARKER) :]))
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise ChildError(f"child exited with code {proc.returncode}: {tail[:200]}")
