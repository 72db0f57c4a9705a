"""Files written by older (and newer) library versions load here with identical predictions.

``tests/compat/corpus/<writer>/`` holds fixtures written by every supported scikit-learn (and the
XGBoost/LightGBM of its time) and by earlier milo_pack code, with the outputs each model gave
where it was written (``expected.json``; ``tests/compat/make_corpus.py`` writes them, never
regenerate one silently: a fixture that stops loading is the regression this test exists for).

Every fixture is loaded under the installed versions and must either

- give exactly the stored outputs (dtype, shape, every value), or
- be refused with a :class:`~milo_pack.errors.VersionError` whose reason is documented in
  ``tests/compat/expectations.py`` (a migration that cannot be faithful), or, for a file
  written by a *newer* scikit-learn, with a VersionError naming both versions.

A file that loads but predicts differently fails.  Under other numpy/scikit-learn versions than
the writer's, floating-point outputs may differ in their last bits (``encoding.close``: labels and
integers exact, floats within 1e-9 relative), as a pickle's do; a larger difference must be a
documented change of scikit-learn's own computation (``DRIFT``).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sklearn

import milo_pack
from milo_pack.errors import MiloError, VersionError
from milo_pack.migrations import parse_version

from .compat.encoding import close, decode, same
from .compat.expectations import DRIFT, REFUSED, drift_for

CORPUS = Path(__file__).parent / "compat" / "corpus"
READER = parse_version(sklearn.__version__)


@functools.cache
def _doc(writer: str) -> dict:
    return json.loads((CORPUS / writer / "expected.json").read_text())


def _fixtures() -> list[tuple[str, str]]:
    found = []
    for directory in sorted(p for p in CORPUS.iterdir() if (p / "expected.json").exists()):
        for case, entry in _doc(directory.name)["cases"].items():
            if "outputs" in entry and "dump_error" not in entry:
                found.append((directory.name, case))
    return found


FIXTURES = _fixtures()


def _outputs(model: Any, names: list[str], X: Any) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = {}
        for name in names:
            if name.startswith("attr:"):
                value = getattr(model, name[5:])
                got[name] = np.asarray(value.toarray() if hasattr(value, "toarray") else value)
            else:
                value = getattr(model, name)(X)
                if hasattr(value, "toarray"):
                    value = value.toarray()
                got[name] = value if isinstance(value, tuple) else np.asarray(value)
        return got


def _newer_writer(doc: dict) -> bool:
    """Whether any library that wrote the file is newer than the installed one."""
    from milo_pack.migrations import installed

    for library in ("scikit-learn", "xgboost", "lightgbm"):
        written, here = doc["writer"].get(library), installed(library)
        if written and here and parse_version(written) > parse_version(here):
            return True
    return False


def load_fixture(writer: str, case: str) -> tuple[Any, list[str]]:
    """The loaded model and the migration steps its load reported."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = milo_pack.load(CORPUS / writer / f"{case}.milo")
    steps = [str(s) for w in caught if isinstance(w.message, milo_pack.MigrationWarning)
             for s in w.message.steps]
    return model, steps


def test_corpus_is_present() -> None:
    writers = {p.name for p in CORPUS.iterdir() if (p / "expected.json").exists()}
    for version in ("1.5", "1.6", "1.7", "1.8"):
        assert any(w.startswith(f"sklearn-{version}.") for w in writers), version
    assert any(w.startswith("milo-") for w in writers)
    assert len(FIXTURES) > 800


@pytest.mark.parametrize(("writer", "case"), FIXTURES, ids=[f"{w}/{c}" for w, c in FIXTURES])
def test_fixture_loads_identically_or_is_refused(writer: str, case: str) -> None:
    check_fixture(writer, case)


def test_fixtures_load_the_same_in_a_fresh_interpreter() -> None:
    """No dependence on what the process did before: one fresh interpreter loads a whole
    writer's corpus (the oldest) and the earlier milo_pack's, checking each as above."""
    writers = sorted({w for w, _ in FIXTURES if w.startswith(("sklearn-1.5.", "milo-"))})
    code = textwrap.dedent(f"""
        import sys
        from tests.test_compat_corpus import FIXTURES, check_fixture
        failed = []
        for writer, case in FIXTURES:
            if writer in {writers!r}:
                try:
                    check_fixture(writer, case)
                except BaseException as exc:  # noqa: BLE001
                    failed.append(f"{{writer}}/{{case}}: {{type(exc).__name__}}: {{exc}}")
        print("\\n".join(failed))
        sys.exit(1 if failed else 0)
    """)
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [p for p in (os.environ.get("PYTHONPATH"), str(root)) if p]))
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def check_fixture(writer: str, case: str) -> None:
    """Load one fixture and compare its outputs (or its refusal) as the module doc says."""
    doc = _doc(writer)
    entry = doc["cases"][case]
    newer = _newer_writer(doc)
    try:
        model, steps = load_fixture(writer, case)
    except VersionError as exc:
        reason = REFUSED.get(case)
        if reason is not None and reason in str(exc):
            return  # the documented refusal
        if newer:
            # A newer file: refusing is allowed, but only with both versions named.
            assert exc.writer in str(exc) and exc.reader in str(exc)
            return
        raise
    except MiloError:
        if newer:
            pytest.fail("a file from a newer library must be refused with VersionError")
        raise
    X = decode(doc["inputs"][entry["input"]])
    expected = {k: decode(v) for k, v in entry["outputs"].items()}
    if _newer_writer(doc):
        # A method the older library does not have (NearestCentroid.predict_proba before
        # 1.6) fails loudly when called; the others must still agree.
        expected = {k: v for k, v in expected.items()
                    if k.startswith("attr:") or hasattr(model, k)}
    got = _outputs(model, list(expected), X)
    different = [k for k in expected if not same(expected[k], got[k])]
    if not different:
        return
    writer_env = (doc["writer"]["scikit-learn"], doc["writer"]["numpy"])
    if writer_env != (sklearn.__version__, np.__version__) and all(
            close(expected[k], got[k]) for k in different):
        return  # another numpy/scikit-learn's floating-point arithmetic; labels identical
    drift = drift_for(case, doc["writer"]["scikit-learn"], sklearn.__version__)
    assert drift is not None, (
        f"{different} differ from what the model gave under the writer's versions "
        f"(migrations: {steps})")
    for k in different:  # a documented change of scikit-learn's computation, never of labels
        assert np.allclose(np.asarray(expected[k], float), np.asarray(got[k], float),
                           rtol=drift.rtol, atol=drift.atol), (k, drift.reason)


def test_documented_refusals_exist() -> None:
    """Every documented refusal has a fixture that triggers it (the table is not stale)."""
    cases = {case for _, case in FIXTURES}
    assert set(REFUSED) <= cases
    assert all(d.case in cases for d in DRIFT)
