"""In-process load of the gradient-boosting models of issue 13: ``milo_pack.loads`` against
``pickle.loads`` of the same model, best of N (CPU time and wall time), ratios to pickle.

Models: HistGradientBoostingClassifier(max_iter=300, early_stopping=False) on
make_classification(20000, 20) and GradientBoostingClassifier(n_estimators=300) on its first
5000 rows.  ``--profile hgb|gb`` prints a cProfile of ten milo_pack loads of that model.

Run from a checkout with the extension built in place::

    PYTHONPATH=src python benchmarks/bench_boosting_load.py [--repeat 15] [--profile hgb]
"""

from __future__ import annotations

import argparse
import pickle
import time
from collections.abc import Callable
from typing import Any


def _models() -> dict[str, Any]:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier

    X, y = make_classification(20000, 20, random_state=0)
    hgb = HistGradientBoostingClassifier(max_iter=300, early_stopping=False,
                                         random_state=0).fit(X, y)
    gb = GradientBoostingClassifier(n_estimators=300, random_state=0).fit(X[:5000], y[:5000])
    return {"hgb": hgb, "gb": gb}


def _best(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    cpu, wall = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return min(cpu), min(wall)


def main() -> None:
    import milo_pack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--profile", choices=("hgb", "gb"))
    args = parser.parse_args()
    models = _models()
    for name, model in models.items():
        p = pickle.dumps(model, protocol=5)
        data = milo_pack.dumps(model)
        milo_pack.loads(data), pickle.loads(p)  # warm: imports, registry, caches
        pc, pw = _best(lambda p=p: pickle.loads(p), args.repeat)
        mc, mw = _best(lambda data=data: milo_pack.loads(data), args.repeat)
        print(f"{name}: pickle {pc * 1e3:.2f} ms CPU {pw * 1e3:.2f} ms wall | milo_pack "
              f"{mc * 1e3:.2f} ms CPU {mw * 1e3:.2f} ms wall | ratio {mc / pc:.2f}x CPU "
              f"{mw / pw:.2f}x wall | {'pass' if mw / pw <= 2.0 else 'miss'} (target <= 2x)")
    if args.profile:
        import cProfile
        import pstats

        data = milo_pack.dumps(models[args.profile])
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(10):
            milo_pack.loads(data)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
