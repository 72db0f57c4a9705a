"""Forests of many trees: manifest size, ``open()``, eager load and file size against pickle.

Usage::

    python benchmarks/bench_forests.py                  # 10, 100 and 1000 trees of ~1,400 nodes
    python benchmarks/bench_forests.py --trees 10,100 --repeat 5

Each forest (``RandomForestClassifier(max_leaf_nodes=700)`` on make_classification 20,000 x 20,
fitted once and cached as a pickle in the bench cache) is saved with ``milo_pack.dump``; then, in
this process, best of ``--repeat`` runs each: ``milo_pack.open(f).manifest``, ``milo_pack.load``
and ``pickle.loads`` of the same model, CPU time beside wall time.  Targets (issue 13), printed
as pass/MISS lines: open() + manifest <= 20 ms and the manifest <= 10 MB whatever the number of
trees; eager load <= 1.0x pickle's.

This is a benchmark, not a test: figures vary with the machine.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import milo_pack


def _forest(trees: int, cache: Path) -> Any:
    path = cache / f"bench-forests-{trees}.pkl"
    if path.exists():
        with path.open("rb") as f:  # our own cache file
            return pickle.load(f)
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(20_000, 20, n_informative=10, random_state=0)
    model = RandomForestClassifier(trees, max_leaf_nodes=700, n_jobs=2, random_state=0).fit(X, y)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(model, protocol=5))
    return model


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    cpu = wall = float("inf")
    for _ in range(repeat):
        gc.collect()
        c0, w0 = time.process_time(), time.perf_counter()
        result = fn()
        c1, w1 = time.process_time(), time.perf_counter()
        del result
        cpu, wall = min(cpu, c1 - c0), min(wall, w1 - w0)
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trees", default="10,100,1000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path,
                        default=Path.home() / ".cache" / "milo_pack" / "bench")
    args = parser.parse_args()
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for trees in [int(t) for t in args.trees.split(",")]:
            model = _forest(trees, args.cache_dir)
            path = os.path.join(tmp, f"forest-{trees}.milo")
            milo_pack.dump(model, path)
            raw = pickle.dumps(model, protocol=5)
            del model
            with zipfile.ZipFile(path) as z:
                manifest = len(z.read("manifest.json"))

            def opened(p: str = path) -> Any:
                with milo_pack.open(p) as handle:
                    return handle.manifest

            open_cpu, open_wall = _best(opened, args.repeat)
            pickle_cpu, pickle_wall = _best(lambda r=raw: pickle.loads(r), args.repeat)
            load_cpu, load_wall = _best(lambda p=path: milo_pack.load(p), args.repeat)
            size = os.path.getsize(path)
            print(f"{trees:5d} trees: file {size / 1e6:.2f} MB ({size / len(raw):.3f}x pickle), "
                  f"manifest {manifest / 1e3:.0f} kB, open {open_cpu * 1e3:.1f} ms CPU / "
                  f"{open_wall * 1e3:.1f} wall, load {load_cpu * 1e3:.1f} ms CPU / "
                  f"{load_wall * 1e3:.1f} wall vs pickle {pickle_cpu * 1e3:.1f} / "
                  f"{pickle_wall * 1e3:.1f} ({load_cpu / pickle_cpu:.2f}x CPU, "
                  f"{load_wall / pickle_wall:.2f}x wall)", flush=True)
            lines.append((f"{trees} trees: open() + manifest <= 20 ms",
                          open_wall <= 0.020, f"{open_wall * 1e3:.1f} ms"))
            lines.append((f"{trees} trees: manifest <= 10 MB", manifest <= 10 << 20,
                          f"{manifest / 1e3:.0f} kB"))
            lines.append((f"{trees} trees: eager load <= 1.0x pickle (wall)",
                          load_wall <= pickle_wall, f"{load_wall / pickle_wall:.2f}x"))
    print("\nTargets (issue 13; annotations, not asserted):")
    for text, passed, value in lines:
        print(f"  {'pass' if passed else 'MISS'}  {text}: {value}")


if __name__ == "__main__":
    main()
