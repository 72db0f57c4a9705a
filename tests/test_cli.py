"""The ``milo-pack`` command: inspect, verify, convert, diff, in-process and as a subprocess."""

from __future__ import annotations

import io
import json
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import milo_pack
from milo_pack import cli
from milo_pack.container import ContainerReader, ContainerWriter
from milo_pack.manifest import dumps_json

from .common import noisy_data


@pytest.fixture(scope="module")
def data():
    return noisy_data()  # forests of big trees (packed, as small ones)


@pytest.fixture(scope="module")
def files(data, tmp_path_factory):
    """A 10-tree forest, a 15-tree forest with other parameters, and a pipeline."""
    X, y = data
    root = tmp_path_factory.mktemp("cli")
    paths = {}
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    paths["forest"] = root / "forest.milo"
    milo_pack.dump(forest, paths["forest"], metadata={"owner": "tests"})
    other = RandomForestClassifier(n_estimators=15, max_depth=20, random_state=0).fit(X, y)
    paths["other"] = root / "other.milo"
    milo_pack.dump(other, paths["other"], metadata={"owner": "tests"})
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=0.5))]).fit(X, y)
    paths["pipe"] = root / "pipe.milo"
    milo_pack.dump(pipe, paths["pipe"])
    paths["pickle"] = root / "forest.pkl"
    paths["pickle"].write_bytes(pickle.dumps(forest))
    paths["converted"] = root / "converted.milo"
    return {k: str(v) for k, v in paths.items()}


def run(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``cli.main`` in-process; return (status, stdout, stderr)."""
    status = cli.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "milo_pack", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def module_runs(files):
    """``python -m milo_pack`` runs, started together: each pays for importing scikit-learn."""
    commands = {
        "inspect": ["inspect", "--json", files["forest"]],
        "verify": ["verify", "--quiet", files["pipe"]],
        "convert": ["convert", files["pickle"], files["converted"], "--trust-pickle",
                    "--level", "5"],
        "diff": ["diff", files["forest"], files["other"]],
    }
    procs = {name: subprocess.Popen([sys.executable, "-m", "milo_pack", *args],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in commands.items()}
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return results


def rebuild(path: str, out: str, edit_manifest=None, edit_section=None) -> None:
    """Re-assemble a file with an edited manifest or section bytes (no digest recomputed)."""
    with open(path, "rb") as f:
        reader = ContainerReader(f)
        manifest = json.loads(reader.read_manifest())
        sections = [reader.read(m.name) for m in reader.members[1:]]
    if edit_manifest is not None:
        edit_manifest(manifest)
    if edit_section is not None:
        sections = [edit_section(i, s) for i, s in enumerate(sections)]
    buf = io.BytesIO()
    with ContainerWriter(buf) as writer:
        for i, payload in enumerate(sections):
            with writer.open_section(writer.next_section_name) as sink:
                sink.write(payload)
            assert sink.name.endswith(f"{i:06d}.bin")
        writer.finish(dumps_json(manifest))
    with open(out, "wb") as f:
        f.write(buf.getvalue())


# -- inspect ---------------------------------------------------------------------------------


def test_inspect_forest(capsys, files):
    status, out, _ = run(capsys, "inspect", files["forest"])
    assert status == 0
    assert "RandomForestClassifier [sklearn.ensemble.RandomForestClassifier]" in out
    assert "n_estimators=10" in out and "criterion='gini'" in out
    # The trees are one packed node: shared fields once, per-tree counts, one column each.
    assert "estimators_: packed" in out
    assert "class='sklearn.tree.DecisionTreeClassifier', container='list', shape=[10]" in out
    assert "node_count: int64 (10,)" in out and "leaf_count: int64 (10,)" in out
    assert "decoded /" in out and "stored" in out
    assert "left_child: int64 (" in out and "filled with -2" in out
    assert "writer: milo_pack" in out and "metadata: owner='tests'" in out
    assert "untrusted types: none" in out


def test_inspect_sizes_add_up(files):
    from milo_pack.inspect_view import build_view

    with milo_pack.open(files["forest"]) as handle:
        view = build_view(handle.manifest["root"], handle.sections)
        stored = sum(info.nbytes for info in handle.sections)
    # Every section byte is attributed to exactly one array (all sections hold tree columns).
    assert view.stored == pytest.approx(stored)
    trees = [c for c in view.children if c.label == "estimators_"][0]
    assert trees.stored == pytest.approx(view.stored)  # classes_ is inline: no stored bytes


def test_inspect_depth_and_pipeline(capsys, files):
    status, out, _ = run(capsys, "inspect", "--depth", "1", files["forest"])
    assert status == 0 and "tree_" not in out and "[0]:" not in out
    status, out, _ = run(capsys, "inspect", files["pipe"])
    assert status == 0
    assert "Pipeline" in out and "('scale', StandardScaler)" in out and "C=0.5" in out
    assert "coef_: float64 (1, 5)" in out


def test_inspect_shared_values_are_named(capsys, tmp_path):
    """A list shared by two attributes (a ColumnTransformer's columns) shows where it is."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0],
                          "c": ["x", "y", "x", "y"]})
    transformer = ColumnTransformer([("num", StandardScaler(), ["a", "b"]),
                                     ("cat", OneHotEncoder(), ["c"])])
    model = Pipeline([("ct", transformer), ("clf", LogisticRegression())]).fit(frame, [0, 1, 0, 1])
    milo_pack.dump(model, tmp_path / "ct.milo")
    status, out, _ = run(capsys, "inspect", str(tmp_path / "ct.milo"))
    assert status == 0
    assert "unknown $id" not in out
    assert "('num', StandardScaler, ['a', 'b'])" in out
    assert "['a', 'b']  (-> same object as steps[0][1].transformers[0][2])" in out


def test_inspect_header_agrees_with_root(capsys, files):
    """The arrays line of the header and the root line count the same bytes."""
    import re

    status, out, _ = run(capsys, "inspect", files["forest"])
    header = re.search(r"^arrays: (\S+ \S+) decoded = (\S+ \S+) in sections \((\S+ \S+) "
                       r"stored\)(?: \+ (\S+ \S+) fills)?(?: \+ (\S+ \S+) inline)?$", out, re.M)
    root = re.search(r"^RandomForestClassifier \[.*\]  \((\S+ \S+) decoded / (\S+ \S+) stored\)$",
                     out, re.M)
    assert header and root, out[:2000]
    assert header[1] == root[1] and header[3] == root[2]
    assert header[4] is not None  # deep trees: leaf rows of constant columns are fills
    # Fills are said to be fills, not inline arrays.
    assert re.search(r"leaves: int64 \(\d+,\) filled with -2  \(\S+ \S+ as fills\)", out)


def test_inspect_json_is_the_manifest(files, module_runs):
    result = module_runs["inspect"]
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == milo_pack.inspect(files["forest"])


def test_inspect_bad_file(capsys, tmp_path):
    bad = tmp_path / "bad.milo"
    bad.write_bytes(b"not a zip at all")
    status, out, err = run(capsys, "inspect", str(bad))
    assert status == 2 and out == "" and "not a valid milo_pack file" in err
    status, _, err = run(capsys, "inspect", str(tmp_path / "missing.milo"))
    assert status == 2 and "cannot read" in err


# -- verify ----------------------------------------------------------------------------------


def test_verify_ok(capsys, files, module_runs):
    status, out, _ = run(capsys, "verify", files["forest"])
    assert status == 0
    for stage in ("container", "manifest", "graph", "digests", "frames", "load"):
        assert f"ok   {stage}" in out
    assert out.strip().endswith("OK")
    result = module_runs["verify"]
    assert result.returncode == 0 and result.stdout.strip() == "OK"


def test_verify_flipped_byte(capsys, files, tmp_path):
    def flip(index, payload):
        if index != 3:
            return payload
        data = bytearray(payload)
        data[len(data) // 4] ^= 0x40  # inside the chunk data, not the chunk table
        return bytes(data)

    corrupt = str(tmp_path / "flipped.milo")
    rebuild(files["forest"], corrupt, edit_section=flip)
    status, out, _ = run(capsys, "verify", corrupt)
    assert status == 1
    assert "FAIL digests" in out and "does not match its digest" in out
    assert "skip load" in out and "FAILED: digests" in out
    with pytest.raises(milo_pack.MiloError):
        milo_pack.load(corrupt)


def test_verify_corrupted_tree(capsys, files, tmp_path):
    def edit(manifest):
        depths = manifest["root"]["attrs"]["estimators_"]["trees"]["max_depth"]
        depths["data"][2] += 1  # ten inline depths, one per tree

    corrupt = str(tmp_path / "tree.milo")
    rebuild(files["forest"], corrupt, edit_manifest=edit)
    status, out, _ = run(capsys, "verify", corrupt)
    assert status == 1
    assert "ok   digests" in out and "ok   frames" in out
    assert "FAIL load" in out and "max_depth" in out and "estimators_[2].tree_" in out


def test_verify_untrusted_and_missing(capsys, files, tmp_path):
    def edit(manifest):
        manifest["root"]["$type"] = "mycompany.models.Forest"

    odd = str(tmp_path / "odd.milo")
    rebuild(files["forest"], odd, edit_manifest=edit)
    status, out, _ = run(capsys, "verify", odd)
    assert status == 1 and "FAIL graph" in out and "mycompany.models.Forest at <root>" in out
    status, out, _ = run(capsys, "inspect", odd)
    assert status == 0 and "mycompany.models.Forest at <root>" in out
    status, _, err = run(capsys, "verify", str(tmp_path / "missing.milo"))
    assert status == 2 and "cannot read" in err


# -- convert ---------------------------------------------------------------------------------


def test_convert_refuses_without_trust(capsys, files, tmp_path):
    out_path = tmp_path / "c.milo"
    status, _, err = run(capsys, "convert", files["pickle"], str(out_path))
    assert status == 2 and "--trust-pickle" in err and "runs any code" in err
    assert not out_path.exists()


def test_convert_round_trip(capsys, files, data, module_runs):
    out_path = files["converted"]
    result = module_runs["convert"]
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and "runs any code" in result.stderr
    assert "pickle ->" in result.stdout and "milo" in result.stdout
    X, _ = data
    original = pickle.loads(open(files["pickle"], "rb").read())  # noqa: S301 - our own file
    loaded = milo_pack.load(out_path)
    np.testing.assert_array_equal(loaded.predict_proba(X), original.predict_proba(X))
    # An existing output is kept unless --force.
    status, _, err = run(capsys, "convert", files["pickle"], out_path, "--trust-pickle")
    assert status == 2 and "--force" in err
    status, _, _ = run(capsys, "convert", files["pickle"], out_path, "--trust-pickle", "--force")
    assert status == 0


def test_convert_joblib(capsys, files, data, tmp_path):
    import joblib

    source = tmp_path / "model.joblib"
    joblib.dump(pickle.loads(open(files["pickle"], "rb").read()), source)  # noqa: S301
    status, out, err = run(capsys, "convert", str(source), str(tmp_path / "j.milo"),
                           "--trust-pickle")
    assert status == 0 and "joblib" in err
    assert milo_pack.load(tmp_path / "j.milo").n_estimators == 10


# -- diff ------------------------------------------------------------------------------------


def test_diff_identical(capsys, files):
    status, out, _ = run(capsys, "diff", files["forest"], files["forest"])
    assert status == 0 and out.strip().endswith("identical")


def test_diff_forests(module_runs):
    result = module_runs["diff"]
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "param   n_estimators: 10 -> 15" in out
    assert "param   max_depth: None -> 20" in out
    # Other trees (other depth): each member changed; five more; no storage paths.
    assert "members estimators_: 10 -> 15 DecisionTreeClassifier: 0-9 changed, 10-14 added" in out
    assert "tree_" not in out and "left_child" not in out
    assert out.strip().endswith("--verbose)")


def test_diff_verbose_shows_storage(capsys, files):
    status, out, _ = run(capsys, "diff", "--verbose", files["forest"], files["other"])
    assert status == 1
    model, storage = out.split("storage-level differences:")
    assert "members estimators_" in model and "left_child" not in model
    assert "array   estimators_.trees.nodes.left_child: array int64" in storage
    assert "value   estimators_.shared.max_depth: None -> 20" in storage
    status, out, _ = run(capsys, "diff", "--all", files["forest"], files["other"])
    assert "more array changes" not in out and "estimators_.trees.values.leaves" in out


def _diff(capsys, tmp_path, old, new, *extra):
    milo_pack.dump(old, tmp_path / "old.milo")
    milo_pack.dump(new, file=tmp_path / "new.milo")
    status, out, err = run(capsys, "diff", str(tmp_path / "old.milo"), str(tmp_path / "new.milo"),
                           *extra)
    assert status == 1 and not err, err
    return out


@pytest.mark.parametrize("deep", [False, True], ids=["small-trees", "big-trees"])
def test_diff_warm_started_forest(capsys, tmp_path, deep):
    """Trees both share are identical, whatever their size (both packed)."""
    from sklearn.datasets import make_classification

    X, y = noisy_data() if deep else make_classification(300, 5, random_state=0)
    model = RandomForestClassifier(n_estimators=4, random_state=0).fit(X, y)
    old = pickle.loads(pickle.dumps(model))
    model.set_params(n_estimators=7, warm_start=True).fit(X, y)
    out = _diff(capsys, tmp_path, old, model)
    assert "members estimators_: 4 -> 7 DecisionTreeClassifier: 0-3 identical, 4-6 added" in out
    assert "param   n_estimators: 4 -> 7" in out and "param   warm_start: False -> True" in out
    assert "trees." not in out and "tree_." not in out  # no storage paths
    # One tree replaced: its position only.
    changed = pickle.loads(pickle.dumps(model))
    changed.estimators_[2] = RandomForestClassifier(n_estimators=1, random_state=5).fit(
        X, y).estimators_[0]
    out = _diff(capsys, tmp_path, model, changed)
    assert ": 0-1, 3-6 identical; 2 changed" in out


def test_diff_boosting_stages_shared_random_state(capsys, tmp_path):
    """Stages fitted identically whose shared random generator moved on: said as such."""
    from sklearn.datasets import make_regression
    from sklearn.ensemble import GradientBoostingRegressor

    X, y = make_regression(200, 4, random_state=0)
    model = GradientBoostingRegressor(n_estimators=5, random_state=0).fit(X, y)
    old = pickle.loads(pickle.dumps(model))
    model.set_params(n_estimators=8, warm_start=True).fit(X, y)
    out = _diff(capsys, tmp_path, old, model)
    assert ("members estimators_: 5 -> 8 DecisionTreeRegressor: 0-4 identical except "
            "random_state, 5-7 added") in out
    assert "attr    train_score_: array float64 (5,) -> array float64 (8,)" in out


def test_diff_hist_gradient_boosting(capsys, tmp_path):
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = make_classification(300, 5, random_state=0)
    old = HistGradientBoostingClassifier(max_iter=4, random_state=0).fit(X, y)
    new = HistGradientBoostingClassifier(max_iter=6, random_state=0).fit(X, y)
    out = _diff(capsys, tmp_path, old, new)
    assert "param   max_iter: 4 -> 6" in out
    assert "members _predictors: 4 -> 6 TreePredictor: 0-3 identical, 4-5 added" in out


def test_diff_xgboost_and_lightgbm(capsys, tmp_path):
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.datasets import make_classification

    X, y = make_classification(300, 5, random_state=0)
    old = xgb.XGBClassifier(n_estimators=5, max_depth=3, n_jobs=1).fit(X, y)
    new = xgb.XGBClassifier(n_estimators=8, max_depth=3, n_jobs=1).fit(X, y)
    out = _diff(capsys, tmp_path, old, new)
    assert "param   n_estimators: 5 -> 8" in out
    assert "members _Booster: 5 -> 8 trees: 0-4 identical, 5-7 added" in out
    assert "columns" not in out and "iteration_indptr" not in out
    # A booster setting: XGBoost's own name for it.
    other = xgb.XGBClassifier(n_estimators=5, max_depth=3, n_jobs=1, base_score=0.3).fit(X, y)
    out = _diff(capsys, tmp_path, old, other)
    assert "setting _Booster.learner.learner_model_param.base_score:" in out
    assert "param   base_score: None -> 0.3" in out

    old = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y)
    new = lgb.LGBMClassifier(n_estimators=8, verbose=-1).fit(X, y)
    out = _diff(capsys, tmp_path, old, new)
    assert "members _Booster: 5 -> 8 trees: 0-4 identical, 5-7 added" in out


def test_diff_internal_object_is_one_line(capsys, tmp_path, data):
    from sklearn.tree import DecisionTreeClassifier

    X, y = data
    old = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    new = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y)
    out = _diff(capsys, tmp_path, old, new)
    assert "param   max_depth: 3 -> 4" in out
    (line,) = [ln for ln in out.splitlines() if "tree_" in ln]
    assert line.startswith("attr    tree_: Tree differs in ") and "max_depth" in line


def test_diff_array_values(capsys, files, tmp_path, data):
    X, y = data
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=0.1))]).fit(X, y)
    other = tmp_path / "pipe_c.milo"
    milo_pack.dump(pipe, other)
    status, out, _ = run(capsys, "diff", files["pipe"], str(other))
    assert status == 1
    assert "param   steps[1][1].C: 0.5 -> 0.1" in out
    assert "attr    steps[1][1].coef_: 5 of 5 elements differ, max |diff|" in out
    # Section-stored arrays are decoded and compared too.
    a, b = np.arange(50_000.0), np.arange(50_000.0)
    b[[7, 9]] += [1.5, -4.0]
    milo_pack.dump({"w": a}, tmp_path / "a.milo")
    milo_pack.dump({"w": b, "extra": 1}, tmp_path / "b.milo")
    status, out, _ = run(capsys, "diff", str(tmp_path / "a.milo"), str(tmp_path / "b.milo"))
    assert status == 1
    assert "value   w: 2 of 50000 elements differ, max |diff| 4" in out
    assert "added   extra: 1" in out


def test_diff_bad_file(capsys, files, tmp_path):
    status, _, err = run(capsys, "diff", files["forest"], str(tmp_path / "missing.milo"))
    assert status == 2 and "cannot read" in err


# -- progress, --version ---------------------------------------------------------------------


def test_progress_only_when_asked_or_on_a_terminal(capsys, files, tmp_path):
    out_path = str(tmp_path / "p.milo")
    status, _, err = run(capsys, "convert", files["pickle"], out_path, "--trust-pickle")
    assert status == 0 and "%" not in err  # stderr is not a terminal here
    status, _, err = run(capsys, "convert", files["pickle"], out_path, "--trust-pickle",
                         "--force", "--progress")
    assert status == 0
    assert f"reading {files['pickle']}: 100%" in err and f"writing {out_path}: 100%" in err
    status, out, err = run(capsys, "verify", "--progress", files["forest"])
    assert status == 0 and "verify load: 100%" in err and "%" not in out


def test_progress_line_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    line = cli.ProgressLine(stream)
    assert line.enabled
    line("writing x.milo", 50, 100)
    line("writing x.milo", 100, 100)
    line.close()
    text = stream.getvalue()
    assert text.startswith("\rwriting x.milo:  50% (50 B of 100 B)")
    assert "100%" in text and text.endswith("\r")
    quiet = Terminal()
    cli.ProgressLine(quiet, enabled=False)("writing", 1, 2)
    assert quiet.getvalue() == ""


def test_version(capsys):
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 reads pyproject.toml

    status, out, _ = run(capsys, "--version")
    assert status == 0
    assert out.startswith(f"milo-pack {milo_pack.__version__} (python ")
    assert f"file format: milo_pack version {milo_pack.FORMAT_VERSION}" in out
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())[
        "project"]
    assert project["version"] == milo_pack.__version__
    # The floors shown are pyproject's (the one place they are declared).
    for requirement in project["dependencies"]:
        name, floor = requirement.split(">=")
        assert re.search(rf"^  {re.escape(name)} +>={re.escape(floor)} ", out, re.M), name
    assert re.search(r"^  xgboost +>=\S+ .*extra 'boost'", out, re.M)
    assert re.search(r"^  lightgbm +>=\S+ ", out, re.M)


# -- the command itself ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["inspect", "verify", "convert", "diff"])
def test_help(capsys, command):
    status, out, _ = run(capsys, command, "--help")
    assert status == 0 and f"usage: milo-pack {command}" in out


def test_usage_errors():
    result = run_module("--help")
    assert result.returncode == 0 and "inspect" in result.stdout and "diff" in result.stdout
    result = run_module()
    assert result.returncode == 2 and "required" in result.stderr
    result = run_module("inspect", "--depth", "-1", "x.milo")
    assert result.returncode == 2
