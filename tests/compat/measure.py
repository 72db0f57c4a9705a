"""The compatibility table: corpus files from each writer version, loaded under the installed one.

For each case of each corpus directory, milo_pack's fixture (and, when ``--peers`` holds them,
the same model as a pickle and as a skops file, written by ``make_corpus.py --peers``) is loaded
and its outputs compared with those the model gave where it was written::

    python -m tests.compat.measure --peers /work/venvs/corpus-peers [--json out.json]

Each load is classed ``identical`` (every output equal, dtype and shape included),
``close`` (labels exact, floats within 1e-9 relative: another numpy's or BLAS's arithmetic,
the same for every loader), ``refused`` (milo_pack's VersionError: a documented reason,
nothing built), ``different``
(loaded, but some output differs: silent unless documented as drift) or ``failing`` (any other
error, or no file because saving failed).  Pickle and skops loads run code from the file: only
run this on files you wrote yourself.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import sklearn

from .encoding import close, decode, same

CORPUS = Path(__file__).parent / "corpus"


def _outputs(model: Any, names: list[str], X: Any) -> dict[str, Any]:
    from tests.test_compat_corpus import _outputs as outputs

    return outputs(model, names, X)


def _newer_writer(doc: dict) -> bool:
    from tests.test_compat_corpus import _newer_writer as newer

    return newer(doc)


def _has_method(class_path: str, name: str) -> bool:
    """Whether the installed class (the corpus's own record of it) has the method."""
    import importlib

    module, _, cls = class_path.rpartition(".")
    try:
        return hasattr(getattr(importlib.import_module(module), cls), name)
    except (ImportError, AttributeError):
        return True


def _load_milo(path: Path) -> Any:
    import milo_pack

    return milo_pack.load(path)


def _load_pickle(path: Path) -> Any:
    return pickle.loads(path.read_bytes())  # noqa: S301 - our own files, for comparison only


def _load_skops(path: Path) -> Any:
    import skops.io as sio

    return sio.load(path, trusted=sio.get_untrusted_types(file=path))


def classify(loader: Any, path: Path, names: list[str], X: Any, expected: dict) -> tuple[str, str]:
    from milo_pack.errors import VersionError

    if not path.exists():
        return "failing", "no file (saving failed)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = loader(path)
            got = _outputs(model, names, X)
    except VersionError as exc:
        return "refused", str(exc)[:300]
    except Exception as exc:  # noqa: BLE001 - a finding
        return "failing", f"{type(exc).__name__}: {str(exc)[:300]}"
    different = [k for k in names if not same(expected[k], got[k])]
    if not different:
        return "identical", ""
    if all(close(expected[k], got[k]) for k in different):
        return "close", f"floating-point drift only: {different}"
    return "different", f"outputs differ: {different}"


def measure(peers: Path | None, only: list[str] | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for directory in sorted(p for p in CORPUS.iterdir() if (p / "expected.json").exists()):
        if only and directory.name not in only:
            continue
        doc = json.loads((directory / "expected.json").read_text())
        rows: dict[str, dict[str, tuple[str, str]]] = {}
        for case, entry in doc["cases"].items():
            if "outputs" not in entry:
                continue  # could not even be built where it was written
            X = decode(doc["inputs"][entry["input"]])
            expected = {k: decode(v) for k, v in entry["outputs"].items()}
            if _newer_writer(doc):  # methods the older library lacks are not called
                expected = {k: v for k, v in expected.items()
                            if k.startswith("attr:") or _has_method(entry["class"], k)}
            names = list(expected)
            row = {"milo_pack": classify(_load_milo, directory / f"{case}.milo", names, X,
                                         expected)}
            if peers is not None and (peers / directory.name).exists():
                row["pickle"] = classify(_load_pickle, peers / directory.name / f"{case}.pkl",
                                         names, X, expected)
                row["skops"] = classify(_load_skops, peers / directory.name / f"{case}.skops",
                                        names, X, expected)
            rows[case] = row
        results[directory.name] = rows
    return results


def table(results: dict[str, Any]) -> str:
    lines = [f"loaded under scikit-learn {sklearn.__version__}; "
             "identical / close (float drift) / refused / different / failing", "",
             "| written by | cases | milo_pack | pickle | skops |", "|---|---|---|---|---|"]
    for writer, rows in results.items():
        cells = []
        for tool in ("milo_pack", "pickle", "skops"):
            counts = Counter(row[tool][0] for row in rows.values() if tool in row)
            if not counts:
                cells.append("-")
                continue
            cells.append(" / ".join(str(counts.get(k, 0)) for k in
                                    ("identical", "close", "refused", "different",
                                     "failing")))
        lines.append(f"| {writer} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=Path, help="directory of make_corpus.py --peers files")
    parser.add_argument("--only", nargs="*", help="corpus directories to measure")
    parser.add_argument("--json", type=Path, help="write every case's result here")
    args = parser.parse_args(argv)
    results = measure(args.peers, args.only)
    print(table(results))
    for writer, rows in results.items():
        for case, row in rows.items():
            for tool, (status, detail) in row.items():
                if status != "identical" and (tool == "milo_pack" or "-v" in sys.argv):
                    print(f"  {writer} {case} {tool}: {status} {detail}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
