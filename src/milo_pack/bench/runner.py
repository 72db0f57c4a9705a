"""Run every method on one model and collect the figures."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from milo_pack.bench import measure, targets
from milo_pack.bench.methods import BASELINE, JOBLIB_COMPRESSED, Method
from milo_pack.bench.models import BuiltModel, modules_of
from milo_pack.bench.outputs import compute_outputs, save_outputs
from milo_pack.bench.results import ModelRecord, Result, median, ratio

__all__ = ["FORK_OVER_BYTES", "BenchConfig", "Progress", "bench_model"]

FORK_OVER_BYTES = targets.SMALL_MODEL_BYTES
"""Models whose pickle is over this many bytes are loaded in children of the fork server (when
there is one); smaller ones in a new interpreter each (see :func:`_load`)."""


@dataclass
class BenchConfig:
    """How to measure.

    Attributes
    ----------
    methods : list of Method
        Methods to run, baseline (pickle) first.
    repeat : int
        Timed saves, inspects and fresh-process loads per model and method (medians reported).
    work_dir : Path
        Where the files are written (one sub-directory per model).
    timeout : float
        Seconds allowed for one fresh-process load.
    keep_files : bool
        Keep the written files instead of deleting them after each model.
    server : LoadServer or None
        Fork server for the fresh-process loads of models whose pickle is over
        :data:`~milo_pack.bench.targets.SMALL_MODEL_BYTES` (Linux); None starts an interpreter
        per load.  Small models always get a new interpreter (see :func:`_load`).
    """

    methods: list[Method]
    repeat: int
    work_dir: Path
    timeout: float = 1800.0
    keep_files: bool = False
    server: measure.LoadServer | None = None


class Progress:
    """One line per step on stderr, prefixed with the time since the start."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        """Print ``message`` as one line."""
        if not self.quiet:
            elapsed = time.perf_counter() - self.start
            print(f"[{elapsed:7.1f}s] {message}", file=self.stream, flush=True)


def _short(exc: BaseException, limit: int = 160) -> str:
    """``Type: message`` on one line, truncated (a child's message already names its type)."""
    text = str(exc) if isinstance(exc, measure.ChildError) else f"{type(exc).__name__}: {exc}"
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(result: Result) -> str:
    """One-line summary of a result for the progress display."""
    if result.status != "ok":
        return f"{result.status}: {result.error}"
    parts = [
        f"size {result.size_bytes / 1e6:.2f} MB" if result.size_bytes is not None else "",
        f"save {result.save_s * 1e3:.1f} ms" if result.save_s is not None else "",
        f"load {result.load_s * 1e3:.1f} ms" if result.load_s is not None else "",
        f"peak {result.peak_mem_bytes / 1e6:.1f} MB" if result.peak_mem_bytes is not None else "",
        {True: "same", False: "DIFFERENT", None: ""}[result.identical],
    ]
    return ", ".join(p for p in parts if p)


def _save(method: Method, built: BuiltModel, path: Path, repeat: int, result: Result) -> None:
    result.save_times = measure.time_saves(method, built.model, path, repeat)
    result.save_s = median(result.save_times)
    result.size_bytes = path.stat().st_size


def _load(
    method: Method,
    path: Path,
    check: dict[str, Any],
    modules: list[str],
    config: BenchConfig,
    result: Result,
    pickle_bytes: int,
) -> None:
    """Load ``repeat`` times, each in a fresh process; the first also checks predictions and,
    for a small model (``pickle_bytes``, pickle's file size, up to 10 MB), times a warm load.

    A small model (pickle up to :data:`FORK_OVER_BYTES`) is loaded in a new interpreter, never in a
    child of the fork server: a forked child shares the server's pages copy-on-write, so the
    first load writes (reference counts) to pages of every module object it touches and pays a
    page fault for each, which a process that did its own imports never pays.  Measured on
    the pipeline model: about 1,500 faults and 8 ms for milo_pack's first load forked, 2-3 ms
    in a new interpreter; pickle 1.2 ms against 0.3 ms.  That is the size of the small-model
    figures themselves, so they are taken as the targets define them: in a fresh process.
    Over 10 MB the faults are noise beside the load, and the fork server saves a second of
    imports per load.
    """
    warm = pickle_bytes <= targets.SMALL_MODEL_BYTES
    server = config.server if pickle_bytes > FORK_OVER_BYTES else None
    result.load_process = "forked" if server is not None else "new interpreter"
    for attempt in range(config.repeat):
        spec: dict[str, Any] = {"method": method.name, "path": str(path), "modules": modules}
        if attempt == 0:
            spec.update(check)
            spec["warm"] = warm
        out = measure.measure_load(spec, config.timeout, server)
        if "error" in out:
            raise measure.ChildError(out["error"])
        result.load_times.append(out["load_s"])
        result.peak_mem_samples.append(out["peak_delta_bytes"])
        if attempt == 0:
            result.warm_load_s = out.get("warm_load_s")
            if out.get("outputs"):
                result.predict_peak_mem_bytes = out["predict_peak_delta_bytes"]
                result.identical = out["identical"]
                result.outputs_checked = out["outputs"]
                result.mismatches = out["mismatches"]
    result.load_s = median(result.load_times)
    peak = median(result.peak_mem_samples)
    result.peak_mem_bytes = None if peak is None else int(peak)


def _run_method(
    method: Method,
    built: BuiltModel,
    directory: Path,
    done: dict[str, Result],
    check: dict[str, Any],
    modules: list[str],
    config: BenchConfig,
) -> Result:
    result = Result(built.name, method.name, file_from=method.file_from)
    reason = method.availability()
    if reason is not None:
        result.status, result.error = "n/a", reason
        return result
    path = directory / f"{method.name}{method.suffix}"
    if method.file_from is not None:
        source = done.get(method.file_from)
        if source is None or source.status != "ok":
            result.status, result.error = "n/a", f"needs {method.file_from}'s file"
            return result
        path = directory / f"{source.method}{method.suffix}"
        result.size_bytes, result.save_s = source.size_bytes, source.save_s
        result.save_times = list(source.save_times)
    phase = "save"
    try:
        if method.file_from is None:
            _save(method, built, path, config.repeat, result)
        if method.is_milo:
            phase = "inspect"
            result.inspect_s = median(measure.time_inspects(method, path, config.repeat))
        phase = "load"
        pickle = done.get(BASELINE, result)  # pickle itself runs first
        _load(method, path, check, modules, config, result, pickle.size_bytes or 0)
    except Exception as exc:  # noqa: BLE001 - one failing method must not stop the bench
        result.status, result.error = "error", f"{phase}: {_short(exc)}"
    return result


def _add_ratios(results: list[Result], family: str, milo: set[str]) -> None:
    """Fill ratios to pickle and the target annotations."""
    by_name = {r.method: r for r in results}
    base = by_name.get(BASELINE)
    if base is None or base.status != "ok":
        return
    for r in results:
        if r.status != "ok":
            continue
        r.ratios = {
            "size": ratio(r.size_bytes, base.size_bytes),
            "save": ratio(r.save_s, base.save_s),
            "load": ratio(r.load_s, base.load_s),
            "warm_load": ratio(r.warm_load_s, base.warm_load_s),
            "peak_mem": ratio(r.peak_mem_bytes, base.peak_mem_bytes),
        }
        if r.method in milo:
            targets.evaluate(r, family, base, by_name.get(JOBLIB_COMPRESSED))


def bench_model(
    built: BuiltModel, config: BenchConfig, progress: Progress
) -> tuple[ModelRecord, list[Result]]:
    """Measure every configured method on one model.

    Parameters
    ----------
    built : BuiltModel
        The fitted model and its sample.
    config : BenchConfig
        Methods, repeats, directories.
    progress : Progress
        Where to report each step.

    Returns
    -------
    record : ModelRecord
        The model's description (with its pickle size).
    results : list of Result
        One per method, in ``config.methods`` order.
    """
    directory = config.work_dir / built.name
    directory.mkdir(parents=True, exist_ok=True)
    check: dict[str, Any] = {}
    if built.X is not None:
        reference = compute_outputs(built.model, built.X)
        if reference:
            np.save(directory / "sample_x.npy", built.X, allow_pickle=False)
            save_outputs(reference, directory / "reference.npz")
            check = {
                "x_path": str(directory / "sample_x.npy"),
                "ref_path": str(directory / "reference.npz"),
            }
    modules = modules_of(built.model)
    done: dict[str, Result] = {}
    results = []
    try:
        for method in config.methods:
            progress(f"{built.name}: {method.name} ...")
            result = _run_method(method, built, directory, done, check, modules, config)
            done[method.name] = result
            results.append(result)
            progress(f"{built.name}: {method.name}: {_describe(result)}")
    finally:
        if not config.keep_files:
            shutil.rmtree(directory, ignore_errors=True)
    _add_ratios(results, built.family, {m.name for m in config.methods if m.is_milo})
    pickle = done.get(BASELINE)
    record = ModelRecord(
        name=built.name,
        family=built.family,
        class_name=f"{type(built.model).__module__}.{type(built.model).__qualname__}",
        params=built.params,
        pickle_bytes=pickle.size_bytes if pickle is not None else None,
        build_s=built.build_s,
        cached=built.cached,
        source=built.source,
        sample_rows=None if not check or built.X is None else int(len(built.X)),
    )
    return record, results
