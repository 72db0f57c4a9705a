"""Smoke test of ``python -m milo_pack.bench`` on the tiny model (a few seconds)."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import pytest

from milo_pack.bench import runner
from milo_pack.bench.cli import main
from milo_pack.bench.results import Result
from milo_pack.bench.targets import evaluate

BASE_METHODS = ["pickle", "joblib"]
MILO_METHODS = ["milo_pack", "milo_pack-raw"]  # each load is a fresh interpreter: keep it short


def _run(tmp: Path, *extra: str) -> dict[str, Any]:
    out = tmp / "out.json"
    code = main(
        [
            "--repeat",
            "1",
            "--cache-dir",
            str(tmp / "cache"),
            "--json",
            str(out),
            "--markdown",
            str(tmp / "out.md"),
            "--quiet",
            *extra,
        ]
    )
    assert code == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    methods = BASE_METHODS + MILO_METHODS
    tmp = tmp_path_factory.mktemp("bench")
    doc = _run(tmp, "--models", "tiny_logreg", "--methods", ",".join(methods))
    doc["_markdown"] = (tmp / "out.md").read_text()
    return doc


def _result(document: dict[str, Any], method: str) -> dict[str, Any]:
    (row,) = [r for r in document["results"] if r["method"] == method]
    return row


def test_document_layout(document: dict[str, Any]) -> None:
    assert document["schema"] == "milo_pack.bench/1"
    assert {"cpu", "cores", "ram_bytes", "python", "versions"} <= set(document["machine"])
    assert document["machine"]["versions"]["numpy"]
    assert document["config"]["repeat"] == 1
    (model,) = document["models"]
    assert model["name"] == "tiny_logreg"
    assert model["pickle_bytes"] > 0
    assert model["sample_rows"] == 200
    assert "| tiny_logreg | pickle |" in document["_markdown"]
    # Machine facts are Markdown list items, one line each (the versions are not wrapped).
    (versions,) = [line for line in document["_markdown"].splitlines() if "Versions:" in line]
    assert versions.startswith("- Versions: ") and "numpy" in versions and "zstandard" in versions


@pytest.mark.parametrize("method", BASE_METHODS)
def test_base_methods_measured(document: dict[str, Any], method: str) -> None:
    row = _result(document, method)
    assert row["status"] == "ok", row["error"]
    assert row["size_bytes"] > 0
    assert row["save_s"] > 0 and len(row["save_times"]) >= 1  # fast saves run more
    assert row["load_s"] > 0 and len(row["load_times"]) == 1
    assert row["warm_load_s"] > 0  # small model: a second, warm load is timed too
    assert row["peak_mem_bytes"] >= 0
    assert row["identical"] is True
    assert set(row["outputs_checked"]) == {"predict", "predict_proba", "decision_function"}
    assert set(row["ratios"]) == {"size", "save", "load", "warm_load", "peak_mem"}


def test_pickle_ratios_are_one(document: dict[str, Any]) -> None:
    ratios = _result(document, "pickle")["ratios"]
    for key in ("size", "save", "load", "warm_load"):
        assert ratios[key] == 1.0


def test_milo_methods(document: dict[str, Any]) -> None:
    for method in MILO_METHODS:
        row = _result(document, method)
        assert row["status"] == "ok", row["error"]
        assert row["identical"] is True
        assert row["inspect_s"] > 0
        assert {t["key"] for t in row["targets"]} == {"small-save", "small-load",
                                                      "first-load", "warm-load", "open"}


def test_user_model(tmp_path: Path) -> None:
    from sklearn.tree import DecisionTreeClassifier

    model = DecisionTreeClassifier(random_state=0).fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    path = tmp_path / "tree.pkl"
    path.write_bytes(pickle.dumps(model))
    doc = _run(tmp_path, "--model", str(path), "--methods", "pickle")
    (row,) = doc["results"]
    assert (row["model"], row["status"], row["identical"]) == ("tree", "ok", True)
    assert doc["config"]["suite"] == "user"


def test_targets_are_annotated() -> None:
    pickle_row = Result("forest", "pickle", size_bytes=100_000_000, save_s=1.0, load_s=1.0)
    joblib_c3 = Result("forest", "joblib-c3", size_bytes=30_000_000, save_s=10.0, load_s=2.0)
    milo = Result("forest", "milo_pack", size_bytes=11_000_000, save_s=6.0, load_s=1.5)
    milo.ratios = {"size": 0.11, "save": 6.0, "load": 1.5}
    evaluate(milo, "forest", pickle_row, joblib_c3)
    verdicts = {t.key: t.passed for t in milo.targets}
    assert verdicts == {"size": True, "save": False, "load": False, "forest-mem": None}


def test_issue13_targets_are_annotated() -> None:
    """Boosted ensembles: load <= 2x pickle, save <= 1.0x joblib-c3; forests: eager peak memory
    <= 0.55x pickle's; every milo_pack file: open() + manifest <= 20 ms."""
    pickle_row = Result("m", "pickle", size_bytes=2_000_000, save_s=0.01, load_s=0.01)
    joblib_c3 = Result("m", "joblib-c3", size_bytes=600_000, save_s=0.02, load_s=0.02)

    def verdicts(model: str, family: str, method: str, load: float, save_s: float,
                 mem: float, open_s: float) -> dict[str, bool | None]:
        row = Result(model, method, size_bytes=500_000, save_s=save_s, load_s=0.01 * load,
                     inspect_s=open_s)
        row.ratios = {"size": 0.25, "load": load, "peak_mem": mem}
        evaluate(row, family, pickle_row, joblib_c3)
        return {t.key: t.passed for t in row.targets
                if t.key in ("boost-load", "boost-save", "forest-mem", "open")}

    assert verdicts("xgboost", "booster", "milo_pack", 1.9, 0.019, 1.0, 0.001) == {
        "boost-load": True, "boost-save": True, "open": True}
    assert verdicts("gradient_boosting", "other", "milo_pack", 2.1, 0.021, 1.0, 0.021) == {
        "boost-load": False, "boost-save": False, "open": False}
    assert verdicts("random_forest", "forest", "milo_pack", 0.5, 0.001, 0.5, 0.001) == {
        "forest-mem": True, "open": True}
    assert verdicts("random_forest", "forest", "milo_pack-raw", 0.5, 0.001, 0.6, 0.001) == {
        "forest-mem": False, "open": True}
    assert verdicts("random_forest", "forest", "milo_pack-lazy", 0.5, 0.001, 0.6, 0.001) == {
        "open": True}
    assert verdicts("tiny_logreg", "other", "milo_pack", 9.0, 0.001, 9.0, 0.001) == {
        "open": True}


def test_summary_and_both_load_modes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The default output is a short summary; loads run forked or in new interpreters alike.
    A small model gets a new interpreter even with the fork server (forked children pay
    copy-on-write faults a fresh process never pays); bigger ones are forked."""
    for extra, fork_over, expected in (([], None, "new interpreter"),
                                       ([], 0, "forked"),
                                       (["--no-fork-server"], 0, "new interpreter")):
        if fork_over is not None:
            monkeypatch.setattr(runner, "FORK_OVER_BYTES", fork_over)
        doc = _run(tmp_path, "--models", "tiny_logreg", "--methods", "milo_pack", *extra)
        rows = {r["method"]: r for r in doc["results"]}
        assert set(rows) == {"pickle", "milo_pack"}
        assert all(r["status"] == "ok" and r["identical"] is True for r in rows.values())
        assert {r["load_process"] for r in rows.values()} == {expected}
        assert doc["config"]["loads"] == ("new interpreter" if extra else
                                          "fork server (a new interpreter for models under "
                                          "10 MB)")
    out = capsys.readouterr().out
    assert "tiny_logreg: LogisticRegression (rows 200)" in out
    assert re.search(r"^  pickle +\S+ B, save .* load .* memory \+", out, re.M)
    assert re.search(r"^  milo_pack +size +\S+x  save +\S+x  load +\S+x  memory +\S+x  same$",
                     out, re.M)
    assert "Targets for milo_pack:" in out and "--table" in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_table_on_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run(tmp_path, "--models", "tiny_logreg", "--methods", "pickle", "--table")
    out = capsys.readouterr().out
    assert "model" in out and "x pkl" in out and "Targets" in out


def test_plot(tmp_path: Path) -> None:
    """``--plot`` draws with matplotlib, which the ``bench`` extra (and ``dev``) installs."""
    pytest.importorskip("matplotlib", reason="matplotlib comes with the bench and dev extras")
    path = tmp_path / "ratios.png"
    _run(tmp_path, "--models", "tiny_logreg", "--methods", "milo_pack", "--plot", str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_start_up_targets_are_annotated() -> None:
    """Issue 13: first load within 2 ms of pickle's, warm load within 3x pickle's."""
    pickle_row = Result("tiny", "pickle", size_bytes=800, save_s=1e-4, load_s=3e-4,
                        warm_load_s=3e-5)
    fast = Result("tiny", "milo_pack", size_bytes=1600, save_s=1e-3, load_s=1.9e-3,
                  warm_load_s=8e-5)
    slow = Result("tiny", "milo_pack", size_bytes=1600, save_s=1e-3, load_s=3e-3,
                  warm_load_s=3e-4)
    for row in (fast, slow):
        row.ratios = {"save": 10.0}
        evaluate(row, "other", pickle_row, None)
    assert {t.key: t.passed for t in fast.targets if "load" in t.key} == {
        "small-load": True, "first-load": True, "warm-load": True}
    assert {t.key: t.passed for t in slow.targets if t.key in ("first-load", "warm-load")} == {
        "first-load": False, "warm-load": False}


def test_second_targets_print_as_times() -> None:
    """Targets measured in seconds (open, first load over pickle's) print as times, not as
    ratios to pickle."""
    from milo_pack.bench.report import format_targets

    pickle_row = Result("m", "pickle", size_bytes=800, save_s=1e-4, load_s=3e-4,
                        warm_load_s=3e-5)
    row = Result("m", "milo_pack", size_bytes=1600, save_s=1e-3, load_s=3.4e-3,
                 warm_load_s=8e-5, inspect_s=0.0017)
    row.ratios = {"save": 10.0}
    evaluate(row, "other", pickle_row, None)
    text = format_targets([row])
    assert "open() + manifest <= 20 ms (seconds): 1.7 ms (limit 20 ms)" in text
    assert re.search(r"first load in a fresh process .*: 3\.1 ms \(limit 2 ms\)", text)
