"""The remote handle in Spark's mapInPandas (pyspark local mode, the machine's Java)."""

from __future__ import annotations

import os
import sys

import numpy as np

from .conftest import same


def test_spark_map_in_pandas(stored):
    import pandas as pd
    from pyspark.sql import SparkSession

    handle, X = stored["handle"], stored["X"]
    os.environ["PYSPARK_PYTHON"] = sys.executable  # the workers run this interpreter
    spark = (SparkSession.builder.master("local[2]").appName("milo-remote")
             .config("spark.pyspark.python", sys.executable)
             .config("spark.ui.enabled", "false")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.sql.execution.arrow.pyspark.enabled", "true")
             .getOrCreate())
    try:
        columns = [f"f{i}" for i in range(X.shape[1])]
        frame = pd.DataFrame(X, columns=columns)
        frame["row"] = np.arange(len(X))
        df = spark.createDataFrame(frame).repartition(4)

        def score(batches):
            for batch in batches:
                proba = handle.predict_proba(batch[columns].to_numpy())
                yield pd.DataFrame({"row": batch["row"], "p1": proba[:, 1],
                                    "label": handle.predict(batch[columns].to_numpy())})

        out = df.mapInPandas(score, "row long, p1 double, label long").toPandas()
    finally:
        spark.stop()
    out = out.sort_values("row")
    same(out["p1"].to_numpy(), stored["proba"][:, 1])
    same(out["label"].to_numpy(), stored["predict"])
