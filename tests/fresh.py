"""Load files in a fresh interpreter, in batches: what a round trip promises in a new process.

A file must load the same whatever the loading process did before.  :func:`check_in_fresh_process`
writes every case (the file, the inputs, the outputs the original model gave) to a directory and
runs one Python process over them.  For each file, that process starts from a brand-new registry
(so nothing one file registered helps the next), loads the file, saves the result again and
compares the bytes with the original file (same bytes: the same state, attribute by attribute,
types included), then calls the same methods on the same inputs and compares the outputs exactly.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

# Methods whose outputs are compared; each is called with the case's input.
METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform",
           "score_samples", "kneighbors", "predict_joint_log_proba", "apply")


def outputs(model: Any, X: Any, methods: Iterable[str] = METHODS) -> dict[str, Any]:
    """``{method: output}`` for every method that runs on ``X`` (errors are left out)."""
    results: dict[str, Any] = {}
    for name in methods:
        method = getattr(model, name, None)
        if method is None:
            continue
        try:
            results[name] = method(X)
        except Exception:  # noqa: BLE001 - a method the model does not support on this input
            continue
    return results


def same(a: Any, b: Any) -> bool:
    """Exact equality of method outputs: arrays by dtype, shape and values (NaN equal)."""
    if sp.issparse(a) or sp.issparse(b):
        return sp.issparse(a) and sp.issparse(b) and same(a.toarray(), b.toarray())
    if isinstance(a, (tuple, list)):
        return (type(a) is type(b) and len(a) == len(b)
                and all(same(x, y) for x, y in zip(a, b, strict=True)))
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "O":
        return all(same(x, y) for x, y in zip(a.ravel(), b.ravel(), strict=True))
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


_SCRIPT = textwrap.dedent("""
    import json, pickle, sys, traceback
    sys.path.insert(0, sys.argv[2])
    import milo_pack
    from milo_pack import registry
    from fresh import outputs, same

    failures = {}
    cases = json.loads(open(sys.argv[1]).read())
    for case in cases:
        name, path = case["name"], case["path"]
        try:
            # A brand-new registry for every file: nothing a previous file registered helps.
            registry._REGISTRY, registry._LOADED = registry.new_registry(), True
            data = open(path, "rb").read()
            model = milo_pack.loads(data, trusted=case["trusted"])
            if milo_pack.dumps(model, **case["dump_kwargs"]) != data:
                failures[name] = "saving the loaded object again gave other bytes"
                continue
            if case["inputs"]:
                X, expected = pickle.load(open(case["inputs"], "rb"))
                got = outputs(model, X, list(expected))
                bad = [m for m in expected if m not in got or not same(expected[m], got[m])]
                if bad:
                    failures[name] = f"outputs differ: {bad}"
        except Exception:
            failures[name] = traceback.format_exc(limit=3)[-1500:]
    print(json.dumps(failures))
""")


def check_in_fresh_process(cases: list[dict[str, Any]], directory: Path,
                           timeout: float = 1800) -> dict[str, str]:
    """Load every case in one new interpreter; return ``{name: problem}`` (empty when all pass).

    Each case is ``{"name", "data" (file bytes), "X" (input or None), "expected" ({method:
    output}), "trusted" (list), "dump_kwargs" (dict)}``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    listing = []
    for i, case in enumerate(cases):
        path = directory / f"{i:05d}.milo"
        path.write_bytes(case["data"])
        inputs = None
        if case.get("X") is not None and case.get("expected"):
            inputs = directory / f"{i:05d}.pkl"  # the tests' own data, never a model
            with open(inputs, "wb") as f:
                pickle.dump((case["X"], case["expected"]), f)
        listing.append({"name": case["name"], "path": str(path),
                        "inputs": str(inputs) if inputs else None,
                        "trusted": list(case.get("trusted", ())),
                        "dump_kwargs": case.get("dump_kwargs", {})})
    manifest = directory / "cases.json"
    manifest.write_text(json.dumps(listing))
    env = {**os.environ, "PYTHONFAULTHANDLER": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-c", _SCRIPT, str(manifest),
                             str(Path(__file__).parent)], capture_output=True, text=True,
                            timeout=timeout, env=env)
    if result.returncode != 0:
        return {"<process>": result.stderr[-3000:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def case(name: str, data: bytes, model: Any = None, X: Any = None, *,
         methods: Iterable[str] = METHODS, trusted: Iterable[str] = (),
         dump_kwargs: dict | None = None,
         make_outputs: Callable[[Any, Any], dict] | None = None) -> dict[str, Any]:
    """A case for :func:`check_in_fresh_process`: outputs of ``model`` on ``X`` are expected."""
    expected = {}
    if model is not None and X is not None:
        expected = (make_outputs or (lambda m, x: outputs(m, x, methods)))(model, X)
    return {"name": name, "data": data, "X": X if expected else None, "expected": expected,
            "trusted": list(trusted), "dump_kwargs": dump_kwargs or {}}
