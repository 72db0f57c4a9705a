"""The remote handle in a Dask LocalCluster with worker processes (map_partitions, map_blocks)."""

from __future__ import annotations

import pickle

from .conftest import fetched, opened_models, same


def test_dask_map_partitions_and_map_blocks(stored):
    import dask.array as da
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client, LocalCluster

    handle, X = stored["handle"], stored["X"]
    assert len(pickle.dumps(handle)) < 1024
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        frame = dd.from_pandas(pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])]),
                               npartitions=8)
        labels = frame.map_partitions(lambda part, h: pd.Series(h.predict(part.to_numpy()),
                                                                index=part.index),
                                      handle, meta=(None, "int64")).compute()
        same(labels.to_numpy(), stored["predict"])
        blocks = da.from_array(X, chunks=(250, X.shape[1]))
        proba = blocks.map_blocks(lambda b, h: h.predict_proba(b), handle,
                                  chunks=(250, 2), dtype=float).compute()
        same(proba, stored["proba"])
        opened = client.run(opened_models)
        reads = client.run(fetched)
    assert len(opened) == 2 and all(n == 1 for n in opened.values())  # once per worker
    for requests, nbytes in reads.values():  # each byte once, in 1 MiB blocks
        assert 0 < nbytes <= stored["size"]
        assert 1 <= requests <= stored["size"] // (1 << 20) + 8
