"""Save and load of the XGBoost and LightGBM models of issue 13, in-process, best of N.

Saves: ``milo_pack.dump`` against ``joblib.dump(compress=3)`` and ``pickle.dumps`` (both to a
file, as ``dump`` writes one); loads: ``milo_pack.load`` against ``pickle.loads`` and
``joblib.load``.  CPU time (process) and wall time, ratios to pickle and to joblib.  Targets:
loads <= 2x pickle, saves <= 1.0x joblib compress=3.

Models: the bench suite's ``xgboost-full`` and ``lightgbm-full`` (500 rounds), read from the
bench cache (``~/.cache/milo_pack/bench``, written by ``python -m milo_pack.bench``) when it
holds them, else fitted here with the suite's recipe.  ``--profile xgboost-save`` (or
``xgboost-load``, ``lightgbm-save``, ``lightgbm-load``) prints a cProfile of ten runs.

Run from a checkout with the extension built in place::

    PYTHONPATH=src python benchmarks/bench_boosters.py [--repeat 15] [--profile lightgbm-load]
"""

from __future__ import annotations

import argparse
import gc
import glob
import os
import pickle
import tempfile
import time
from collections.abc import Callable
from typing import Any

CACHE = os.path.expanduser("~/.cache/milo_pack/bench")


def _model(name: str) -> Any:
    found = sorted(glob.glob(f"{CACHE}/{name}-full-sklearn*.pkl"))
    if found:
        with open(found[0], "rb") as f:
            model = pickle.load(f)  # noqa: S301 - the bench's own cache
        return model["model"] if isinstance(model, dict) and "model" in model else model
    from milo_pack.bench.models import MODELS

    spec = next(s for s in MODELS if s.name == name)
    return spec.build(spec.full)[0]


def _best(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    cpu = wall = float("inf")
    for _ in range(repeat):
        gc.collect()
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        c1, w1 = time.process_time(), time.perf_counter()
        del out
        cpu, wall = min(cpu, c1 - c0), min(wall, w1 - w0)
    return cpu, wall


def _row(what: str, mine: tuple[float, float], refs: dict[str, tuple[float, float]]) -> str:
    ratios = " | ".join(f"{mine[0] / ref[0]:.2f}x {name} CPU {mine[1] / ref[1]:.2f}x wall"
                        for name, ref in refs.items())
    return f"  {what}: milo_pack {mine[0] * 1e3:.1f} ms CPU {mine[1] * 1e3:.1f} ms wall | {ratios}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--models", default="xgboost,lightgbm")
    parser.add_argument("--profile", choices=[f"{m}-{w}" for m in ("xgboost", "lightgbm")
                                              for w in ("save", "load")])
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-boosters-")
    names = [args.profile.split("-")[0]] if args.profile else args.models.split(",")
    for name in names:
        _run(name, _model(name), tmp, args.repeat, args.profile)


def _run(name: str, model: Any, tmp: str, repeat: int, profile_what: str | None) -> None:
    import joblib

    import milo_pack

    milo_file, joblib_file, pickle_file = (os.path.join(tmp, f"{name}.{ext}")
                                           for ext in ("milo", "joblib", "pkl"))

    def dump_pickle() -> None:
        with open(pickle_file, "wb") as f:
            pickle.dump(model, f, protocol=5)

    milo_pack.dump(model, milo_file)  # warm: imports, registry
    joblib.dump(model, joblib_file, compress=3)
    dump_pickle()
    raw = pickle.dumps(model, protocol=5)
    milo_pack.load(milo_file)
    if profile_what:
        import cProfile
        import pstats

        def run() -> None:
            if profile_what.endswith("save"):
                milo_pack.dump(model, milo_file)
            else:
                milo_pack.load(milo_file)

        profile = cProfile.Profile()
        profile.enable()
        for _ in range(10):
            run()
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
        return
    save_milo = _best(lambda: milo_pack.dump(model, milo_file), repeat)
    save_joblib = _best(lambda: joblib.dump(model, joblib_file, compress=3), repeat)
    save_pickle = _best(dump_pickle, repeat)
    load_milo = _best(lambda: milo_pack.load(milo_file), repeat)
    load_joblib = _best(lambda: joblib.load(joblib_file), repeat)
    load_pickle = _best(lambda: pickle.loads(raw), repeat)  # noqa: S301 - our own bytes
    sizes = {k: os.path.getsize(f) for k, f in (("milo", milo_file), ("joblib-c3", joblib_file),
                                                ("pickle", pickle_file))}
    print(f"{name} ({', '.join(f'{k} {v / 1e6:.2f} MB' for k, v in sizes.items())})")
    print(f"  references: save pickle {save_pickle[0] * 1e3:.1f}/{save_pickle[1] * 1e3:.1f}"
          f" ms, joblib-c3 {save_joblib[0] * 1e3:.1f}/{save_joblib[1] * 1e3:.1f} ms; "
          f"load pickle {load_pickle[0] * 1e3:.1f}/{load_pickle[1] * 1e3:.1f} ms, "
          f"joblib-c3 {load_joblib[0] * 1e3:.1f}/{load_joblib[1] * 1e3:.1f} ms (CPU/wall)")
    print(_row("save", save_milo, {"joblib-c3": save_joblib, "pickle": save_pickle}))
    print(_row("load", load_milo, {"pickle": load_pickle, "joblib-c3": load_joblib}))
    # Judged on CPU time (index 0): wall time on a shared machine is mostly the neighbours'.
    for what, mine, base, limit in (("save", save_milo, save_joblib, 1.0),
                                    ("load", load_milo, load_pickle, 2.0)):
        ratio = mine[0] / base[0]
        verdict = "pass" if ratio <= limit else "MISS"
        against = "joblib-c3" if what == "save" else "pickle"
        print(f"  {verdict}  {name} {what} <= {limit:g}x {against} (CPU): {ratio:.2f}x")

if __name__ == "__main__":
    main()
