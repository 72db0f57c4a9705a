"""The remote handle in Ray tasks and actors (a local Ray instance with worker processes)."""

from __future__ import annotations

import numpy as np

from .conftest import opened_models, same


def test_ray_tasks_and_actors(stored):
    import ray

    handle, X = stored["handle"], stored["X"]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        @ray.remote
        def score(h, rows):
            return h.predict_proba(rows)

        @ray.remote
        class Scorer:
            def __init__(self, h):
                self.h = h

            def predict(self, rows):
                return self.h.predict(rows)

            def opened(self):
                return opened_models()

        parts = np.array_split(X, 6)
        proba = np.concatenate(ray.get([score.remote(handle, p) for p in parts]))
        same(proba, stored["proba"])
        actor = Scorer.remote(handle)
        labels = np.concatenate(ray.get([actor.predict.remote(p) for p in parts]))
        same(labels, stored["predict"])
        assert ray.get(actor.opened.remote()) == 1
    finally:
        ray.shutdown()
