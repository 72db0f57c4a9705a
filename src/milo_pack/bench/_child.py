"""Measure one load in a fresh process (run by file path, never imported by the parent).

Usage: ``python _child.py SPEC_JSON``, where the spec holds ``method``, ``path``, ``modules`` (to
import before the baseline), and optionally ``x_path`` + ``ref_path`` (predictions check) and
``warm`` (time a second load in the same process).

``python _child.py --serve MODULES_JSON`` (Linux) is a fork server: it imports the modules once,
then for each spec read from stdin (one JSON line) forks a child that measures it, and answers
with one result line.  Each load still runs in a process of its own, with the imports done
(they are excluded from the figures either way), without paying a second of interpreter start
and scikit-learn import per measurement.

The child imports numpy, the model's modules and the method's library, records its peak RSS as a
baseline, loads the file once and reports on stdout, as one line starting with :data:`MARKER`:
``load_s`` (wall time of the load) and ``peak_delta_bytes`` (peak RSS after the load minus the
baseline; :class:`PeakMemory` says why this is ``VmHWM`` rather than ``ru_maxrss`` on Linux);
then, after the memory figure is taken, whether predictions on the sample equal the reference
(and the peak rise once they are made: lazy models materialise while predicting), and the time
of a second (warm) load.

It is run by path rather than with ``-m milo_pack.bench._child`` so that measuring pickle or joblib
does not import milo_pack; its sibling modules ``methods.py`` and ``outputs.py`` are loaded by path
for the same reason.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import json
import math
import os
import resource
import signal
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

MARKER = "MILO_BENCH_RESULT "
_HERE = Path(__file__).resolve().parent


def _load_sibling(name: str) -> ModuleType:
    """Load ``name``.py from this directory without importing the milo_pack package."""
    loaded = sys.modules.get(f"_milo_bench_{name}")
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(f"_milo_bench_{name}", _HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` in bytes (Linux), else ``None``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _ru_maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


class PeakMemory:
    """Peak resident memory of this process image, and a way to restart it from now.

    On Linux ``ru_maxrss`` of a spawned child starts at the *parent's* peak (the kernel carries
    it across fork/exec), so a child started by a benchmark holding a big model would report no
    rise at all. ``VmHWM`` in ``/proc/self/status`` belongs to the new image only, and writing
    ``5`` to ``/proc/self/clear_refs`` resets it to the current RSS, so the baseline excludes the
    transient peak of the imports. Elsewhere ``ru_maxrss`` is used.
    """

    def __init__(self) -> None:
        self.source = "VmHWM" if _status_kib("VmHWM") is not None else "ru_maxrss"

    def reset(self) -> int:
        """Restart the peak from the current RSS where possible; return the baseline."""
        if self.source == "VmHWM":
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                self.source = "VmHWM (reset)"
            except OSError:
                pass
        return self.peak()

    def peak(self) -> int:
        """The peak RSS so far, in bytes."""
        if self.source.startswith("VmHWM"):
            return _status_kib("VmHWM") or 0
        return _ru_maxrss_bytes()


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the measurement described by ``spec`` and return the figures."""
    import numpy as np

    methods = _load_sibling("methods")
    outputs = _load_sibling("outputs")
    method = methods.get_method(spec["method"])
    for module in spec.get("modules", ()):
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    path = Path(spec["path"])
    reason = method.availability()  # imports the method's library
    if reason is not None:
        return {"error": reason}
    context = method.prepare_load(path)

    gc.collect()
    memory = PeakMemory()
    baseline = memory.reset()
    start = time.perf_counter()
    model = method.load(path, context)
    load_s = time.perf_counter() - start
    result: dict[str, Any] = {
        "load_s": load_s,
        "peak_delta_bytes": max(0, memory.peak() - baseline),
        "baseline_bytes": baseline,
        "peak_source": memory.source,
    }

    if spec.get("x_path") and spec.get("ref_path"):
        X = np.load(spec["x_path"], allow_pickle=False)
        reference = outputs.load_outputs(Path(spec["ref_path"]))
        identical, mismatches = outputs.compare_outputs(model, X, reference)
        result["identical"] = identical
        result["mismatches"] = mismatches
        result["outputs"] = sorted(reference)
        result["predict_peak_delta_bytes"] = max(0, memory.peak() - baseline)

    if spec.get("warm"):
        del model
        gc.collect()
        start = time.perf_counter()
        model = method.load(path, context)
        result["warm_load_s"] = time.perf_counter() - start
    return result


def _measured(spec: dict[str, Any]) -> dict[str, Any]:
    try:
        return measure(spec)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, not raised
        return {"error": f"{type(exc).__name__}: {exc}"}


def _forked(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Measure ``spec`` in a forked child; its result comes back through a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, write, leave without running the server's cleanup
        status = 1
        try:
            os.close(read_end)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)  # a library printing must not garble the server's answers
            signal.alarm(max(1, math.ceil(timeout)))  # default action: the child dies
            result = json.dumps(_measured(spec)).encode()
            with os.fdopen(write_end, "wb") as out:
                out.write(result)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        data = answer.read()
    _, status = os.waitpid(pid, 0)
    if data:
        return dict(json.loads(data))
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM:
        return {"error": f"load did not finish within {timeout:g} s"}
    return {"error": f"child exited with status {status} and no result"}


def serve(modules: list[str]) -> int:
    """The fork server (see the module documentation); answers one line per request."""
    _load_sibling("methods")
    _load_sibling("outputs")
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    # Objects imported so far go to a generation collections never visit: a child's collections
    # neither walk them (time) nor write to their pages (copy-on-write).
    gc.collect()
    gc.freeze()
    for line in sys.stdin:
        request = json.loads(line)
        result = _forked(request["spec"], float(request["timeout"]))
        sys.stdout.write(MARKER + json.dumps(result) + "\n")
        sys.stdout.flush()
    return 0


def main(argv: list[str]) -> int:
    """Entry point: measure (or serve), print the result line, return the exit code."""
    if argv[1:2] == ["--serve"]:
        return serve(json.loads(argv[2]))
    sys.stdout.write(MARKER + json.dumps(_measured(json.loads(argv[1]))) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    # Running by path puts this directory first on sys.path; drop it so that our module names
    # (models, methods, report...) cannot shadow anything the loaded libraries import.
    if sys.path and Path(sys.path[0]).resolve() == _HERE:
        sys.path.pop(0)
    sys.exit(main(sys.argv))
