"""One stored model, many workers: the remote handle against broadcasting the pickled model.

Usage (needs the ``engines`` extra: dask, distributed, s3fs, moto)::

    python benchmarks/bench_remote.py                      # README forest: 300 trees, 50k x 20
    python benchmarks/bench_remote.py --trees 30 --rows 5000 --repeat 1
    python benchmarks/bench_remote.py --prototype          # "before": the issue's prototype

An S3 server runs on loopback (moto) holding the forest's ``.milo`` file; a Dask LocalCluster
with 2 worker processes (1 thread each) scores ``--score-rows`` rows in ``--partitions``
partitions (``map_partitions`` -> ``predict_proba``) three ways, each on a fresh cluster:

- ``scatter``: the driver holds the model and ``client.scatter(model, broadcast=True)``s it;
- ``lazy cache=0``: ``milo_pack.remote(url, cache_bytes=0)``, each worker streams the trees;
- ``lazy fits``: ``milo_pack.remote(url, cache_bytes=None)``, each worker keeps what it built.

Per worker: extra peak memory (VmHWM over what it was before the job, reset through
``/proc/self/clear_refs``), CPU time, models opened, requests and bytes fetched.  Wall time is
the driver's, from making the handle (or scattering) to having every prediction.  Every way's
predictions are compared with the in-memory model's.  ``--prototype`` replaces the handle by
the issue's prototype (fsspec's default read-ahead cache, one open per task: run it with an
older checkout on PYTHONPATH for the "before" column).

Targets (issue 14): handle pickles < 1 kB; each worker opens the object once and reads
<= 1.1x the file's bytes in <= size / 1 MiB + 8 requests; extra peak memory per worker with
the lazy handle <= 0.2x scatter's; wall time <= 1.1x scatter's, <= 1.0x when the cache fits.

This is a benchmark, not a test: figures vary with the machine (report CPU beside wall).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pickle
import statistics
import sys
import tempfile
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
# Worker processes import bench_remote (and bench_lazy) from here too.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (_HERE, os.environ.get("PYTHONPATH")) if p)


# -- run on each worker ---------------------------------------------------------------------


def _reset_peak() -> dict:
    import resource

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"hwm": _status("VmHWM"), "rss": _status("VmRSS"),
            "cpu": usage.ru_utime + usage.ru_stime}


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _after() -> dict:
    import resource

    try:
        from milo_pack import remote_model
        opened_here = remote_model._OPEN
    except ImportError:  # an older checkout (--prototype "before" runs)
        opened_here = {}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    requests = fetched = 0
    for entry in opened_here.values():
        source = getattr(entry.handle, "source", None)
        requests += getattr(source, "requests", 0)
        fetched += getattr(source, "bytes_fetched", 0)
    opened = len(opened_here) + _PROTO_OPENS.get("n", 0)
    proto = _PROTO_OPENS.get("fetched")
    if proto is not None:
        requests, fetched = _PROTO_OPENS["requests"], proto
    return {"hwm": _status("VmHWM"), "cpu": usage.ru_utime + usage.ru_stime,
            "opened": opened, "requests": requests, "fetched": fetched}


def _warm_imports() -> None:
    import s3fs  # noqa: F401
    import sklearn.ensemble  # noqa: F401

    import milo_pack
    from milo_pack.handlers import trees  # noqa: F401

    milo_pack.loads(milo_pack.dumps([1]))


# -- the prototype handle (for "before" figures with an older checkout) -------------

_PROTO_OPENS: dict = {}


class PrototypeHandle:
    """The issue's prototype: pickles as URL + ETag, opens with fsspec's default cache."""

    _model = None

    def __init__(self, url: str, options: dict, cache_bytes: int | None) -> None:
        self.url, self.options, self.cache_bytes = url, options, cache_bytes

    def __reduce__(self):
        return (PrototypeHandle, (self.url, self.options, self.cache_bytes))

    def predict_proba(self, X):
        if PrototypeHandle._model is None:
            import fsspec

            import milo_pack

            fs, path = fsspec.core.url_to_fs(self.url, **self.options)
            f = fs.open(path, "rb")  # s3fs's default read-ahead cache
            counter = _count_fetches(f)
            handle = milo_pack.open(f)
            PrototypeHandle._model = (handle, handle.load(lazy=True,
                                                          cache_bytes=self.cache_bytes))
            _PROTO_OPENS["n"] = 1
            _PROTO_OPENS["counter"] = counter
        out = PrototypeHandle._model[1].predict_proba(X)
        counter = _PROTO_OPENS["counter"]
        _PROTO_OPENS["requests"], _PROTO_OPENS["fetched"] = counter["requests"], counter["bytes"]
        return out


def _count_fetches(f) -> dict:
    counter = {"requests": 0, "bytes": 0}
    fetch = f._fetch_range

    def counting(start, end):
        data = fetch(start, end)
        counter["requests"] += 1
        counter["bytes"] += len(data)
        return data

    f._fetch_range = counting
    f.cache.fetcher = counting
    return counter


# -- driver ---------------------------------------------------------------------------------


def _score(approach: str, args, url: str, options: dict, model, frame) -> dict:
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client, LocalCluster

    import milo_pack

    # The worker-side helpers by reference (workers import this module), not pickled by value
    # from __main__: the prototype's counters must live in one module on each worker.
    here = importlib.import_module("bench_remote")

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, memory_limit=0) as cluster, \
            Client(cluster) as client:
        # Every approach alike: a service has its libraries imported (s3fs and botocore alone
        # are ~50 MB and seconds), so imports are not counted against any of them.
        client.run(here._warm_imports)
        parts = dd.from_pandas(frame, npartitions=args.partitions).persist()
        client.run(here._reset_peak)
        before = client.run(here._reset_peak)
        t0 = time.perf_counter()
        if approach == "scatter":
            target = client.scatter(model, broadcast=True)
            handle_bytes = None
        else:
            cache = 0 if approach == "lazy cache=0" else None
            if args.prototype:
                target = here.PrototypeHandle(url, options, cache)
            else:
                target = milo_pack.remote(url, storage_options=options, cache_bytes=cache)
            handle_bytes = len(pickle.dumps(target))
        meta = pd.DataFrame({"p0": pd.Series(dtype=float), "p1": pd.Series(dtype=float)})
        result = parts.map_partitions(
            lambda df, m: pd.DataFrame(m.predict_proba(df.to_numpy()), columns=["p0", "p1"],
                                       index=df.index), target, meta=meta).compute()
        wall = time.perf_counter() - t0
        after = client.run(here._after)
    workers = []
    for address, end in after.items():
        start = before[address]
        workers.append({"extra_peak": end["hwm"] - start["rss"], "cpu": end["cpu"] - start["cpu"],
                        "opened": end["opened"], "requests": end["requests"],
                        "fetched": end["fetched"]})
    return {"wall": wall, "workers": workers, "handle_bytes": handle_bytes,
            "proba": result[["p0", "p1"]].to_numpy()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--rows", type=int, default=50_000, help="training rows")
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--score-rows", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dir", help="reuse (or create) the model files in this directory")
    parser.add_argument("--prototype", action="store_true",
                        help="measure the issue's prototype handle instead (the 'before')")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)

    # Dask's statistical profiler samples every worker thread's stack every 10 ms: its CPU
    # grows with a task's wall time, whatever the task does.  Off for every approach alike.
    os.environ["DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"] = "False"
    import bench_lazy
    import fsspec
    import numpy as np
    import pandas as pd
    from moto import server as moto_server

    d = args.dir or tempfile.mkdtemp(prefix="milo-bench-remote-")
    os.makedirs(d, exist_ok=True)
    if not os.path.exists(os.path.join(d, "model.milo")):
        print(f"fitting RandomForestClassifier({args.trees}) on {args.rows} x {args.features}...")
        bench_lazy.prepare(d, args.trees, args.rows, args.features)
    with open(os.path.join(d, "model.pkl"), "rb") as f:
        model = pickle.load(f)  # the bench wrote it: the scatter approach's in-memory model
    X = np.random.default_rng(1).normal(size=(args.score_rows, args.features))
    expected = model.predict_proba(X)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(args.features)])

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"key": "bench", "secret": "bench", "skip_instance_cache": True,
               "client_kwargs": {"endpoint_url": f"http://{host}:{port}",
                                 "region_name": "eu-west-1"}}
    _warm_imports()
    try:
        fs = fsspec.filesystem("s3", **options)
        fs.makedirs("models", exist_ok=True)
        fs.put_file(os.path.join(d, "model.milo"), "models/forest.milo")
        url = "s3://models/forest.milo"
        size = fs.size(url)
        runs: dict[str, list[dict]] = {}
        for rep in range(args.repeat):
            for approach in ("scatter", "lazy cache=0", "lazy fits"):
                print(f"run {rep + 1}/{args.repeat}: {approach}...", file=sys.stderr)
                r = _score(approach, args, url, options, model, frame)
                if not np.array_equal(r.pop("proba"), expected):
                    raise AssertionError(f"{approach}: predictions differ from the model's")
                runs.setdefault(approach, []).append(r)
    finally:
        server.stop()

    def med(approach: str, fn) -> float:
        return statistics.median(fn(r) for r in runs[approach])

    scatter_wall = med("scatter", lambda r: r["wall"])
    scatter_peak = med("scatter", lambda r: max(w["extra_peak"] for w in r["workers"]))
    mib = 1 << 20
    print(f"\nfile {size / 1e6:.1f} MB on S3 (loopback), pickle "
          f"{os.path.getsize(os.path.join(d, 'model.pkl')) / 1e6:.0f} MB; "
          f"{args.score_rows} rows in {args.partitions} partitions, 2 workers x 1 thread; "
          f"median of {args.repeat}{' (prototype handle)' if args.prototype else ''}\n")
    print("| approach | wall | x scatter | worker CPU | extra peak / worker | x scatter "
          "| opens / worker | requests / worker | fetched / worker | handle pickle |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    report = {}
    for approach in ("scatter", "lazy cache=0", "lazy fits"):
        wall = med(approach, lambda r: r["wall"])
        cpu = med(approach, lambda r: sum(w["cpu"] for w in r["workers"]) / 2)
        peak = med(approach, lambda r: max(w["extra_peak"] for w in r["workers"]))
        opens = max(w["opened"] for r in runs[approach] for w in r["workers"])
        requests = max(w["requests"] for r in runs[approach] for w in r["workers"])
        fetched = max(w["fetched"] for r in runs[approach] for w in r["workers"])
        hb = runs[approach][0]["handle_bytes"]
        lazy = approach != "scatter"
        print(f"| {approach} | {wall:.2f} s | {wall / scatter_wall:.2f}x | {cpu:.2f} s "
              f"| {peak / 1e6:.0f} MB | {peak / scatter_peak:.2f}x "
              f"| {opens if lazy else '-'} | {requests if lazy else '-'} "
              f"| {f'{fetched / size:.2f}x file' if lazy else '-'} "
              f"| {f'{hb} B' if hb else '-'} |")
        report[approach] = {"wall": wall, "x_scatter_wall": wall / scatter_wall,
                            "worker_cpu": cpu, "extra_peak": peak,
                            "x_scatter_peak": peak / scatter_peak, "opens": opens,
                            "requests": requests, "fetched": fetched, "handle_bytes": hb}
    lazy0, fits = report["lazy cache=0"], report["lazy fits"]
    checks = [
        ("handle pickles < 1 kB", (lazy0["handle_bytes"] or 0) < 1024),
        ("one open per worker", lazy0["opens"] == 1 and fits["opens"] == 1),
        ("fetched <= 1.1x file", max(lazy0["fetched"], fits["fetched"]) <= 1.1 * size),
        (f"requests <= size/1MiB + 8 = {size // mib + 8}",
         max(lazy0["requests"], fits["requests"]) <= size // mib + 8),
        ("lazy cache=0 extra peak <= 0.2x scatter", lazy0["x_scatter_peak"] <= 0.2),
        ("lazy cache=0 wall <= 1.1x scatter", lazy0["x_scatter_wall"] <= 1.1),
        ("lazy fits wall <= 1.0x scatter", fits["x_scatter_wall"] <= 1.0),
    ]
    print()
    for name, ok in checks:
        print(f"{'pass' if ok else 'MISS'}  {name}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": size, "report": report, "runs": runs}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
