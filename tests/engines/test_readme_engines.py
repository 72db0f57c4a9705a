"""The README's engine examples (```python dask|ray|spark|mlflow blocks) run as written."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python (dask|ray|spark|mlflow)\n(.*?)```",
                    README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_every_engine():
    assert sorted(engine for engine, _ in BLOCKS) == ["dask", "mlflow", "ray", "spark"]


@pytest.mark.parametrize("engine,code", BLOCKS, ids=[engine for engine, _ in BLOCKS])
def test_readme_engine_example_runs(engine, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)  # Spark's workers: this interpreter
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    # Worker processes import milo_pack as this process does.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    exec(compile(code, f"README.md {engine} block", "exec"), {"__name__": "__readme__"})
