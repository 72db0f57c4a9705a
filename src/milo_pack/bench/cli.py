"""Command line of ``python -m milo_pack.bench``."""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from milo_pack.bench import report
from milo_pack.bench.machine import format_machine, machine_info
from milo_pack.bench.measure import LoadServer
from milo_pack.bench.methods import BASELINE, Method, all_methods
from milo_pack.bench.models import (
    BuiltModel,
    ModelSpec,
    build_or_load,
    default_cache_dir,
    load_user_model,
    select_specs,
)
from milo_pack.bench.plot import matplotlib_missing, plot_ratios
from milo_pack.bench.results import ModelRecord, Result
from milo_pack.bench.runner import BenchConfig, Progress, bench_model

__all__ = ["main", "parse_args"]

QUICK_REPEAT = 1
FULL_REPEAT = 3
QUICK_METHODS = ["pickle", "joblib-c3", "skops", "milo_pack", "milo_pack-lazy"]
"""Methods of a ``--quick`` run: the baseline, the usual alternatives, milo_pack eager and lazy."""


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m milo_pack.bench",
        description="Compare milo_pack with pickle, joblib and skops: file size, save time, "
        "load time and peak memory (each load in a fresh process), and round-trip predictions.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller models, fewer of them, fewer methods (under a minute on an idle 2-core "
        "machine, model building included)",
    )
    parser.add_argument(
        "--models",
        type=_names,
        metavar="A,B",
        help="suite models to run (default: all; see --list)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        metavar="FILE.pkl",
        help="benchmark your own pickled (or .joblib) model; reading it runs its "
        "code, so only pass files you trust",
    )
    parser.add_argument(
        "--sample-x",
        type=Path,
        metavar="X.npy",
        help="rows to compare predictions on for --model (default: random rows "
        "of n_features_in_ columns)",
    )
    parser.add_argument(
        "--methods",
        type=_names,
        metavar="A,B",
        help=f"methods to run (default: all available, --quick: {', '.join(QUICK_METHODS)}; "
        f"{BASELINE} always runs)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        metavar="N",
        help=f"timings per figure, median reported (default {FULL_REPEAT}, --quick {QUICK_REPEAT})",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help=f"where built models are cached (default {default_cache_dir()})",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="where files are written while measuring (default: a temporary "
        "directory, removed afterwards)",
    )
    parser.add_argument(
        "--keep-files", action="store_true", help="keep the written files (in --work-dir)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        metavar="S",
        help="seconds allowed for one load (default 1800)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write results as JSON")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="write results as Markdown")
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PATH.png",
        help="bar chart of ratios to pickle (needs matplotlib)",
    )
    parser.add_argument(
        "--table",
        action="store_true",
        help="print the full results table and every target line (default: a summary, a few "
        "lines per model)",
    )
    parser.add_argument(
        "--no-fork-server",
        action="store_true",
        help="start a new interpreter for each load instead of forking one that imported the "
        "libraries (Linux uses the fork server by default; elsewhere this is the only way)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--list", action="store_true", help="list models and methods (with availability) and exit"
    )
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def _select_methods(names: list[str] | None, quick: bool = False) -> list[Method]:
    """Methods in table order; pickle always included (every ratio is taken to it)."""
    methods = all_methods()
    if names is None:
        if quick:
            return [m for m in methods if m.name in QUICK_METHODS]
        return methods
    known = [m.name for m in methods]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown method(s) {', '.join(unknown)} (known: {', '.join(known)})")
    wanted = set(names) | {BASELINE}
    return [m for m in methods if m.name in wanted]


def _print_list() -> None:
    from milo_pack.bench.models import SUITE

    print("Models (full | --quick parameters; * = not in the default --quick run):")
    for spec in SUITE:
        missing = spec.missing()
        state = "" if spec.in_quick else "  *"
        state += f"  [needs {', '.join(missing)}]" if missing else ""
        print(f"  {spec.name:24} {spec.full} | {spec.quick}{state}")
    print("Methods:")
    for method in all_methods():
        reason = method.availability()
        print(f"  {method.name:16} {method.description}" + (f"  [n/a: {reason}]" if reason else ""))


def _models(
    args: argparse.Namespace, specs: list[ModelSpec], cache_dir: Path, progress: Progress
) -> Iterator[BuiltModel]:
    """Yield the models to benchmark one at a time (only one is held in memory)."""
    if args.model is not None:
        print(
            f"warning: reading {args.model} with pickle runs code stored in it; "
            "only benchmark files you trust",
            file=sys.stderr,
        )
        progress(f"reading {args.model}")
        yield load_user_model(args.model, args.sample_x)
    for spec in specs:
        missing = spec.missing()
        if missing:
            progress(f"{spec.name}: skipped ({', '.join(missing)} not installed)")
            continue
        params = spec.params(args.quick)
        progress(f"{spec.name}: loading or building {params} ...")
        built = build_or_load(spec, args.quick, cache_dir)
        how = "from cache" if built.cached else f"built in {built.build_s:.1f} s, cached"
        progress(f"{spec.name}: ready ({how})")
        yield built
        del built  # before building the next one: one model in memory at a time


def _print_header(machine: dict[str, object], methods: list[Method]) -> None:
    """Machine description and unavailable methods, on stdout."""
    print("milo_pack benchmark")
    print("\n".join(format_machine(machine)))
    for method in methods:
        reason = method.availability()
        if reason:
            print(f"n/a:      {method.name} ({reason})")
    print(flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code."""
    args = parse_args(argv)
    if args.list:
        _print_list()
        return 0
    methods = _select_methods(args.methods, args.quick)
    try:
        # With --model, the suite runs only when --models asks for it.
        specs = (
            []
            if args.model is not None and args.models is None
            else select_specs(args.models, args.quick)
        )
    except KeyError as exc:
        raise SystemExit(exc.args[0]) from None
    repeat = args.repeat or (QUICK_REPEAT if args.quick else FULL_REPEAT)
    cache_dir = args.cache_dir or default_cache_dir()
    progress = Progress(quiet=args.quiet)
    plot_missing = matplotlib_missing() if args.plot is not None else None
    if plot_missing:
        print(f"note: {plot_missing}", file=sys.stderr)

    machine = machine_info()
    _print_header(machine, methods)

    own_work_dir = args.work_dir is None
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="milo_pack_bench-"))
    server = None if args.no_fork_server or not LoadServer.available() else LoadServer()
    config = BenchConfig(methods, repeat, work_dir, args.timeout, args.keep_files, server)
    records: list[ModelRecord] = []
    results: list[Result] = []
    try:
        for built in _models(args, specs, cache_dir, progress):
            record, model_results = bench_model(built, config, progress)
            records.append(record)
            results.extend(model_results)
            del built
            gc.collect()
    finally:
        if server is not None:
            server.close()
        if own_work_dir and not args.keep_files:
            shutil.rmtree(work_dir, ignore_errors=True)

    if args.table:
        print(report.format_table(results))
        print()
        print(report.format_targets(results))
    else:
        print(report.format_summary(records, results))
    config_record = {
        "suite": "user" if not specs else ("quick" if args.quick else "full"),
        "repeat": repeat,
        "methods": [m.name for m in methods],
        "loads": ("fork server (a new interpreter for models under 10 MB)" if server is not None
                  else "new interpreter"),
        "cache_dir": str(cache_dir),
        "work_dir": str(work_dir) if args.keep_files else None,
    }
    document = report.build_document(machine, config_record, records, results)
    if args.json is not None:
        report.write_json(document, args.json)
        progress(f"wrote {args.json}")
    if args.markdown is not None:
        args.markdown.write_text(report.format_markdown(document, results), encoding="utf-8")
        progress(f"wrote {args.markdown}")
    if args.plot is not None and not plot_missing:
        plot_ratios(results, args.plot)
        progress(f"wrote {args.plot}")
    return 0
