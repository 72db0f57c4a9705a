"""Benchmark milo_pack against pickle, joblib and skops: ``python -m milo_pack.bench``.

For each model of a reproducible suite (or the user's own, ``--model``) and each method, it
reports file size, save time, load time and peak extra memory while loading (each load in a fresh
process), milo_pack's open-to-manifest time, and whether predictions are unchanged by the round
trip, each also as a ratio to pickle; the project's performance targets are annotated, never
asserted. See ``benchmarks/README.md``.

Modules, one job each:

``models``   the suite, its cache and user models
``methods``  the save/load methods compared
``outputs``  model outputs for the round-trip check
``measure``  timed saves here, loads in a fresh process (``_child.py``)
``runner``   all methods on one model
``targets``  the project's targets
``results``  the records
``report``   table, Markdown, JSON
``plot``     optional matplotlib chart
``machine``  CPU, RAM, versions
``cli``      the command line
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark command line (see ``python -m milo_pack.bench --help``)."""
    from milo_pack.bench.cli import main as cli_main

    return cli_main(argv)
