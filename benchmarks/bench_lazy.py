"""Lazy, streaming and memory-mapped loading: memory and time on a large random forest.

Usage::

    python benchmarks/bench_lazy.py                   # the issue's forest: 300 trees, 50,000 x 20
    python benchmarks/bench_lazy.py --trees 30 --rows 5000

The forest is fitted once and saved (pickle, milo_pack level 3); every measurement then runs in a
fresh subprocess so that one measurement's allocations cannot hide another's.  "Extra peak" is
the rise of the process's peak resident set (VmHWM, reset through ``/proc/self/clear_refs`` when
the kernel allows, else measured from the process's peak so far) over what it was just before
the operation.  Targets, printed as pass/MISS lines (issues 5 and 13): open <= 20 ms and <= 10 MB;
lazy predict peak <= 10% of an eager load's; eager load <= 0.55x pickle.load's extra peak; dump
growth <= 0.2x model size.

This is a benchmark, not a test: figures vary with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> int:
    """Reset VmHWM to the current RSS if the kernel lets us; return the baseline (kB)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _rss_kb("VmHWM")


def _measure(fn):
    base = _reset_peak()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    return result, seconds, (_rss_kb("VmHWM") - base) * 1024


# -- children -------------------------------------------------------------------------------


def _warm(with_milo: bool = True) -> None:
    """Import what loading a forest imports, outside the measurement, for every contender.

    A service imports scikit-learn (and milo_pack's tree handlers) once, not per model, so
    module import memory (~18 MB here) is not the model's: pickle's child pays it beforehand
    too.  A tiny forest round trip touches exactly the modules a forest load needs.
    """
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    tiny = RandomForestClassifier(2, max_depth=2, random_state=0).fit(
        np.arange(8.0).reshape(4, 2), [0, 1, 0, 1])
    tiny.predict_proba(np.zeros((1, 2)))
    if with_milo:
        import milo_pack

        milo_pack.loads(milo_pack.dumps(tiny)).predict_proba(np.zeros((1, 2)))
    else:
        pickle.loads(pickle.dumps(tiny)).predict_proba(np.zeros((1, 2)))


def child_open(d: str) -> dict:
    import milo_pack

    _warm()

    def run():
        handle = milo_pack.open(os.path.join(d, "model.milo"))
        return handle, handle.manifest

    (handle, _), seconds, peak = _measure(run)
    return {"seconds": seconds, "extra_peak": peak,
            "bytes_read": handle.container.members[0].size}


def _rows(n: int, features: int):
    import numpy as np

    return np.random.default_rng(1).normal(size=(n, features))


def child_lazy_predict(d: str, features: int) -> dict:
    import milo_pack

    _warm()
    X = _rows(10_000, features)

    def run():
        with milo_pack.open(os.path.join(d, "model.milo")) as handle:
            model = handle.load(lazy=True, cache_bytes=0)
            return model.predict_proba(X), handle.store.bytes_read

    (_, read), seconds, peak = _measure(run)
    return {"seconds": seconds, "extra_peak": peak, "bytes_read": read}


def child_eager_predict(d: str, features: int) -> dict:
    import milo_pack

    _warm()
    X = _rows(10_000, features)

    def run():
        model = milo_pack.load(os.path.join(d, "model.milo"))
        return model.predict_proba(X)

    _, seconds, peak = _measure(run)
    return {"seconds": seconds, "extra_peak": peak}


def child_eager_load(d: str) -> dict:
    import milo_pack

    _warm()
    _, seconds, peak = _measure(lambda: milo_pack.load(os.path.join(d, "model.milo")))
    return {"seconds": seconds, "extra_peak": peak}


def child_pickle_load(d: str) -> dict:
    _warm(with_milo=False)

    def run():
        with open(os.path.join(d, "model.pkl"), "rb") as f:
            return pickle.load(f)

    _, seconds, peak = _measure(run)
    return {"seconds": seconds, "extra_peak": peak}


def child_dump(d: str) -> dict:
    import milo_pack

    _warm()
    with open(os.path.join(d, "model.pkl"), "rb") as f:
        model = pickle.load(f)
    out = os.path.join(d, "redump.milo")
    _, seconds, peak = _measure(lambda: milo_pack.dump(model, out))
    return {"seconds": seconds, "extra_peak": peak}


CHILDREN = {
    "open": child_open,
    "lazy_predict": child_lazy_predict,
    "eager_predict": child_eager_predict,
    "eager_load": child_eager_load,
    "pickle_load": child_pickle_load,
    "dump": child_dump,
}


# -- parent ---------------------------------------------------------------------------------


def prepare(d: str, trees: int, rows: int, features: int) -> dict:
    """Fit the forest and save it both ways (in a subprocess: the parent stays small)."""
    code = f"""
import pickle, milo_pack
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
# The same noisy data as the bench suite's forest (python -m milo_pack.bench): fully grown
# trees on it make the ~300 MB pickle the targets were set on.
X, y = make_classification({rows}, {features}, n_informative=5, n_redundant=2, flip_y=0.2,
                           random_state=0)
m = RandomForestClassifier({trees}, n_jobs=-1, random_state=0).fit(X, y)
m.n_jobs = None
with open({os.path.join(d, 'model.pkl')!r}, 'wb') as f:
    pickle.dump(m, f, protocol=5)
milo_pack.dump(m, {os.path.join(d, 'model.milo')!r})
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    return {name: os.path.getsize(os.path.join(d, name)) for name in ("model.pkl", "model.milo")}


def run_child(name: str, d: str, features: int) -> dict:
    args = [sys.executable, __file__, "--child", name, "--dir", d, "--features", str(features)]
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"benchmark {name} failed:\n{proc.stderr}")
    out = proc.stdout
    return json.loads(out.strip().splitlines()[-1])


def _mb(n: float) -> str:
    return f"{n / 1e6:8.1f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--dir", help="reuse (or create) the model files in this directory")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        fn = CHILDREN[args.child]
        needs_features = args.child in ("lazy_predict", "eager_predict")
        result = fn(args.dir, args.features) if needs_features else fn(args.dir)
        print(json.dumps(result))
        return 0
    d = args.dir or tempfile.mkdtemp(prefix="milo-bench-lazy-")
    os.makedirs(d, exist_ok=True)
    if not os.path.exists(os.path.join(d, "model.milo")):
        print(f"fitting RandomForestClassifier({args.trees}) on {args.rows} x {args.features}...")
        prepare(d, args.trees, args.rows, args.features)
    sizes = {name: os.path.getsize(os.path.join(d, name)) for name in ("model.pkl", "model.milo")}
    r = {name: run_child(name, d, args.features) for name in CHILDREN}
    model_size = sizes["model.pkl"]  # the pickle is the arrays, i.e. the model's size in memory
    print(f"files: pickle {_mb(sizes['model.pkl'])}, milo {_mb(sizes['model.milo'])}")
    def verdict(value: float, limit: float) -> str:
        return f"{'pass' if value <= limit else 'MISS'}  target <= {limit:g}"

    print(f"open + manifest     {r['open']['seconds'] * 1e3:8.1f} ms  extra peak "
          f"{_mb(r['open']['extra_peak'])}  (read {_mb(r['open']['bytes_read'])} of manifest)"
          f"   {verdict(r['open']['seconds'] * 1e3, 20)} ms; "
          f"{verdict(r['open']['extra_peak'] / 1e6, 10)} MB")
    lazy, eager = r["lazy_predict"]["extra_peak"], r["eager_predict"]["extra_peak"]
    print(f"lazy predict_proba  {r['lazy_predict']['seconds']:8.2f} s   extra peak {_mb(lazy)}"
          f"  vs eager load+predict {_mb(eager)} ({r['eager_predict']['seconds']:.2f} s): "
          f"ratio {lazy / eager:.3f}   {verdict(lazy / eager, 0.10)}")
    mine, theirs = r["eager_load"]["extra_peak"], r["pickle_load"]["extra_peak"]
    print(f"eager load          {r['eager_load']['seconds']:8.2f} s   extra peak {_mb(mine)}"
          f"  vs pickle.load {_mb(theirs)} ({r['pickle_load']['seconds']:.2f} s): ratio "
          f"{mine / theirs:.3f}   {verdict(mine / theirs, 0.55)}")
    grow = r["dump"]["extra_peak"]
    print(f"dump                {r['dump']['seconds']:8.2f} s   growth {_mb(grow)} vs model "
          f"{_mb(model_size)}: ratio {grow / model_size:.3f}   {verdict(grow / model_size, 0.2)}")
    print(json.dumps({"sizes": sizes, "results": r}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
