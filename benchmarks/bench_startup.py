"""Start-up cost of loading small models: milo_pack against pickle, each load in a fresh process.

Issue 13's targets: the first load of a small model in a fresh process within 2 ms of
``pickle.load``'s, and a warm (second) load within 3x pickle's.

Every child process imports numpy, scikit-learn and the model's modules first, for both methods
alike, then its method's library (``pickle``; ``milo_pack``, whose import fills its registry),
and only then starts the clock: the first load, then the median of 20 warm loads.  The import
of ``milo_pack`` is reported on its own line: users pay it once per process.  CPU time
(``time.process_time``) is shown beside wall time: on a shared machine wall time mostly measures
the neighbours.  Children run with ``PYTHONDONTWRITEBYTECODE`` unset and the package compiled
first (``compileall``), as an installed package is: an editable checkout under
``PYTHONDONTWRITEBYTECODE=1`` would recompile every module on each start.

Usage::

    python benchmarks/bench_startup.py [--repeat 15] [--src PATH_TO_SRC]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

_CHILD = textwrap.dedent("""
    import json, sys, time
    method, path, modules = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    import importlib
    import numpy, sklearn
    for name in modules:
        importlib.import_module(name)
    import pickle
    wall, cpu = time.perf_counter, time.process_time
    out = {}
    if method == "pickle":
        def load():
            with open(path, "rb") as f:
                return pickle.load(f)
    else:
        w, c = wall(), cpu()
        import milo_pack
        out["import"] = (wall() - w, cpu() - c)
        def load():
            return milo_pack.load(path)
    w, c = wall(), cpu()
    load()
    out["first"] = (wall() - w, cpu() - c)
    warm = []
    for _ in range(20):
        w, c = wall(), cpu()
        load()
        warm.append((wall() - w, cpu() - c))
    warm.sort()
    out["warm"] = warm[len(warm) // 2]
    print(json.dumps(out))
""")


def _models() -> dict[str, tuple[object, list[str]]]:
    from sklearn.datasets import load_iris
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    return {
        "LogisticRegression (iris)": (LogisticRegression(max_iter=500).fit(X, y),
                                      ["sklearn.linear_model"]),
        "Pipeline scaler+PCA+LR": (
            make_pipeline(StandardScaler(), PCA(2), LogisticRegression()).fit(X, y),
            ["sklearn.pipeline", "sklearn.preprocessing", "sklearn.decomposition",
             "sklearn.linear_model"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="fresh processes per figure")
    parser.add_argument("--src", default=str(Path(__file__).resolve().parents[1] / "src"),
                        help="the source tree to measure (compiled first)")
    args = parser.parse_args(argv)
    src = Path(args.src)
    compileall.compile_dir(str(src / "milo_pack"), quiet=1)
    sys.path.insert(0, str(src))
    import milo_pack

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    print(f"{'model':28s} {'method':9s} {'what':7s} {'CPU ms (median)':>16s} "
          f"{'wall ms (median)':>17s}  wall p10-p90")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, modules) in _models().items():
            files = {"pickle": Path(tmp) / "m.pkl", "milo_pack": Path(tmp) / "m.milo"}
            files["pickle"].write_bytes(pickle.dumps(model, protocol=5))
            milo_pack.dump(model, files["milo_pack"])
            samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
            for _ in range(args.repeat):
                for method, path in files.items():
                    result = subprocess.run(
                        [sys.executable, "-c", _CHILD, method, str(path), ",".join(modules)],
                        env=env, capture_output=True, text=True, check=True)
                    for what, value in json.loads(result.stdout).items():
                        samples.setdefault((method, what), []).append(value)
            summary = {}
            for (method, what), values in sorted(samples.items()):
                cpu = statistics.median(v[1] for v in values) * 1e3
                walls = sorted(v[0] * 1e3 for v in values)
                wall = statistics.median(walls)
                summary[(method, what)] = cpu
                print(f"{name:28s} {method:9s} {what:7s} {cpu:16.3f} {wall:17.3f}  "
                      f"{walls[len(walls) // 10]:.3f}-{walls[(9 * len(walls)) // 10]:.3f}")
            over = summary[("milo_pack", "first")] - summary[("pickle", "first")]
            times = summary[("milo_pack", "warm")] / summary[("pickle", "warm")]
            print(f"{'':28s} target first load <= pickle + 2 ms (CPU): +{over:.2f} ms "
                  f"{'pass' if over <= 2 else 'MISS'}; warm <= 3x pickle: {times:.1f}x "
                  f"{'pass' if times <= 3 else 'MISS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
