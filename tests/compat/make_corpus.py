"""Write the corpus for the installed library versions: one ``.milo`` per case + ``expected.json``.

Run inside each environment (``tools/make_corpus.py`` does it for all of them)::

    python -m tests.compat.make_corpus tests/compat/corpus [--label NAME] [--peers DIR]

writes ``tests/compat/corpus/<label>sklearn-<version>/``: ``<case>.milo`` for every case that
milo_pack could save, and ``expected.json`` holding the writer's versions, the test inputs, each
case's expected outputs (computed from the fitted model before saving) and what went wrong for
cases that could not be built or saved.  ``--peers DIR`` also writes each case as a pickle and a
skops file under ``DIR/<same name>/`` for ``tests/compat/measure.py`` (never committed: a pickle
runs code when loaded).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import platform
import shutil
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from . import cases as corpus_cases
from .encoding import encode, same


def _versions() -> dict[str, str]:
    import scipy
    import sklearn

    import milo_pack

    found = {"python": platform.python_version(), "numpy": np.__version__,
             "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
             "milo_pack": getattr(milo_pack, "__version__", "?")}
    for name in ("pandas", "xgboost", "lightgbm", "skops"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        found[name] = module.__version__
    return found


def _store_input(inputs: dict[str, Any], value: Any) -> str:
    doc = encode(value)
    key = "in-" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]
    inputs.setdefault(key, doc)
    return key


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def write(out_root: Path, label: str, peers: Path | None, only: set[str] | None) -> Path:
    import sklearn

    import milo_pack

    name = f"{label}sklearn-{sklearn.__version__}"
    out = out_root / name
    if out.exists() and only is None:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    peer_dir = None
    if peers is not None:
        peer_dir = peers / name
        peer_dir.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"writer": _versions(), "inputs": {}, "cases": {}}
    if only is not None and (out / "expected.json").exists():
        doc = json.loads((out / "expected.json").read_text())
        doc["writer"] = _versions()
    for case_name, builder in corpus_cases.all_cases().items():
        if only is not None and case_name not in only:
            continue
        entry: dict[str, Any] = {}
        doc["cases"][case_name] = entry
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                case = builder()
                case.fit()
                expected = corpus_cases.outputs(case.estimator, case.X_test)
        except Exception as exc:  # noqa: BLE001 - recorded, the case is then absent
            entry["build_error"] = _error(exc)
            continue
        if not expected:
            entry["build_error"] = "no prediction method answered"
            continue
        entry["input"] = _store_input(doc["inputs"], case.X_test)
        entry["class"] = f"{type(case.estimator).__module__}.{type(case.estimator).__name__}"
        entry["outputs"] = {k: encode(v) for k, v in expected.items()}
        try:
            data = milo_pack.dumps(case.estimator)
        except Exception as exc:  # noqa: BLE001
            entry["dump_error"] = _error(exc)
            print(f"  {case_name}: dump failed: {entry['dump_error']}", file=sys.stderr)
        else:
            (out / f"{case_name}.milo").write_bytes(data)
            # The writer's own round trip: a fixture that does not even load where it was
            # written is a bug to fix here, not a version difference.
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    got = corpus_cases.outputs(milo_pack.loads(data), case.X_test)
                entry["same_env_roundtrip"] = (list(got) == list(expected) and all(
                    same(expected[k], got[k]) for k in expected))
            except Exception as exc:  # noqa: BLE001
                entry["same_env_roundtrip"] = _error(exc)
        if peer_dir is not None:
            try:
                (peer_dir / f"{case_name}.pkl").write_bytes(pickle.dumps(case.estimator))
            except Exception as exc:  # noqa: BLE001
                entry["pickle_error"] = _error(exc)
            try:
                import skops.io as sio

                sio.dump(case.estimator, peer_dir / f"{case_name}.skops")
            except Exception as exc:  # noqa: BLE001
                entry["skops_error"] = _error(exc)
    doc["cases"] = dict(sorted(doc["cases"].items()))
    (out / "expected.json").write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--label", default="", help="prefix of the directory name")
    parser.add_argument("--peers", type=Path, help="also write pickle and skops files here")
    parser.add_argument("--only", nargs="*", help="rewrite only these cases")
    args = parser.parse_args(argv)
    try:
        out = write(args.out, args.label, args.peers, set(args.only) if args.only else None)
    except Exception:
        traceback.print_exc()
        return 1
    doc = json.loads((out / "expected.json").read_text())
    entries = doc["cases"].values()
    saved = sum(1 for e in entries if "outputs" in e and "dump_error" not in e)
    bad = [k for k, e in doc["cases"].items() if e.get("same_env_roundtrip") not in (None, True)]
    print(f"{out}: {len(doc['cases'])} cases, {saved} saved, "
          f"{len(bad)} not identical in the writer's own environment: {bad}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
