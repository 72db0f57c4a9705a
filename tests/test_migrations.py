"""Declared migrations: each transform kind, both directions, refusals, and the load path.

The rule functions are pure JSON edits keyed by versions, so most tests give the reader version
explicitly and run the same under every installed scikit-learn.  End-to-end tests craft a file
"written by" another version from a model fitted here (``tests/attacks/craft.py`` re-seals it),
and check the warning, the refusal, ``migrate=False``, ``inspect`` and ``verify``.
"""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pytest
import sklearn
from sklearn.ensemble import AdaBoostClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import milo_pack
from milo_pack import migrations
from milo_pack.errors import (
    InvariantError,
    ManifestError,
    UntrustedTypeError,
    VersionError,
)
from milo_pack.migrations import (
    AddedAttr,
    AddedParam,
    AttrToParam,
    MergedParam,
    Refusal,
    RemovedAttr,
    RemovedParam,
    RenamedAttr,
    RenamedParam,
    Superseded,
    parse_version,
)
from milo_pack.registry import get_registry

from .attacks.craft import Parts

X = np.random.RandomState(0).standard_normal((40, 3))
y = (X[:, 0] > 0).astype(int)
READER = sklearn.__version__
HAS_ALGORITHM = "algorithm" in AdaBoostClassifier._get_param_names()


def _manifest(root: dict, writer: str) -> dict:
    return {"format": "milo_pack", "format_version": 1,
            "writer": {"milo_pack": "0.1.0", "scikit-learn": writer}, "metadata": None,
            "root": root, "sections": []}


def _ada(algorithm: str | None) -> dict:
    params = {"estimator": None, "n_estimators": 5, "learning_rate": 1.0, "random_state": 0}
    if algorithm is not None:
        params["algorithm"] = algorithm
    return {"$type": "sklearn.ensemble.AdaBoostClassifier", "params": params, "attrs": {}}


# -- versions and planning ----------------------------------------------------------------------


def test_parse_version() -> None:
    assert parse_version("1.5.2") == (1, 5, 2)
    assert parse_version("1.6.dev0") == (1, 6, 0)
    assert parse_version("1.8") == (1, 8, 0)
    for bad in ("", "latest", None, 15, "x1.5", "1" * 100):
        assert parse_version(bad) is None


def test_same_version_or_unknown_writer_needs_nothing() -> None:
    for writer in ("1.9.1", "not a version"):
        manifest = _manifest(_ada("SAMME.R"), writer)
        assert migrations.plan(manifest, reader="1.9.1") == []
    manifest = _manifest(_ada("SAMME.R"), "1.9.1")
    del manifest["writer"]["scikit-learn"]
    assert migrations.apply(manifest, reader="1.9.1") == []


def test_removed_parameter_with_todays_behaviour_is_dropped() -> None:
    manifest = _manifest({"$type": "sklearn.pipeline.Pipeline",
                          "params": {"steps": [["ada", _ada("SAMME")]],
                                     "transform_input": None}, "attrs": {}}, "1.5.2")
    dry = migrations.plan(manifest, reader="1.9.1")
    assert [s.path for s in dry] == ["steps[0][1]"]
    assert "algorithm" in manifest["root"]["params"]["steps"][0][1]["params"]  # dry run
    steps = migrations.apply(manifest, reader="1.9.1")
    assert [str(s) for s in steps] == [str(s) for s in dry]
    assert "dropped parameter 'algorithm'='SAMME'" in steps[0].description
    assert "algorithm" not in manifest["root"]["params"]["steps"][0][1]["params"]


def test_removed_parameter_without_equivalent_is_refused_with_the_reason() -> None:
    manifest = _manifest(_ada("SAMME.R"), "1.5.2")
    dry = migrations.plan(manifest, reader="1.9.1")
    assert len(dry) == 1 and dry[0].description.startswith("REFUSED")
    with pytest.raises(VersionError) as info:
        migrations.apply(manifest, reader="1.9.1")
    message = str(info.value)
    assert "SAMME.R" in message and "1.5.2" in message and "1.9.1" in message
    assert "predict other labels" in message
    assert info.value.writer == "1.5.2" and info.value.reader == "1.9.1"


def test_change_outside_the_version_range_is_not_applied() -> None:
    # Written by 1.8 (no algorithm parameter any more) and read by 1.9: nothing to do.
    assert migrations.plan(_manifest(_ada(None), "1.8.0"), reader="1.9.1") == []
    # Both before the change: nothing to do either, SAMME.R included.
    assert migrations.plan(_manifest(_ada("SAMME.R"), "1.5.0"), reader="1.5.2") == []


def test_down_migration_restores_a_removed_parameter() -> None:
    manifest = _manifest(_ada(None), "1.9.1")
    steps = migrations.apply(manifest, reader="1.5.2")
    assert manifest["root"]["params"]["algorithm"] == "SAMME"
    assert "newer behaviour" in steps[0].description


def test_moved_class_is_retagged_both_ways() -> None:
    old = "sklearn.model_selection._classification_threshold._CurveScorer"
    new = "sklearn.metrics._scorer._CurveScorer"
    up = _manifest({"$type": "sklearn.model_selection.TunedThresholdClassifierCV",
                    "params": {}, "attrs": {"_curve_scorer": {"$type": old, "state": {}}}},
                   "1.5.2")
    migrations.apply(up, reader="1.9.1")
    assert up["root"]["attrs"]["_curve_scorer"]["$type"] == new
    down = _manifest({"$type": new, "state": {}}, "1.9.1")
    steps = migrations.apply(down, reader="1.5.2")
    assert down["root"]["$type"] == old and steps[0].path == ""


def test_remainder_cols_list_becomes_a_list_keeping_its_id() -> None:
    tag = "sklearn.compose._column_transformer._RemainderColsList"
    node = {"$type": tag, "$id": 7, "state": {"data": [2, 3], "future_dtype": "str",
                                              "warning_was_emitted": False,
                                              "warning_enabled": True}}
    manifest = _manifest({"$type": "tuple", "items": ["remainder", "drop", node,
                                                      {"$type": tag, "state": {"data": [1]}}]},
                         "1.6.1")
    steps = migrations.apply(manifest, reader="1.7.2")
    items = manifest["root"]["items"]
    assert items[2] == {"$type": "list", "$id": 7, "items": [2, 3]} and items[3] == [1]
    assert [s.path for s in steps] == ["[2]", "[3]"]


def test_each_op_kind_both_ways() -> None:
    node = {"params": {"a": 1, "b": 2}, "attrs": {"x_": 3}}
    assert RenamedParam("a", "c").up(node) and list(node["params"]) == ["c", "b"]
    assert RenamedParam("a", "c").down(node) and list(node["params"]) == ["a", "b"]
    assert RenamedAttr("x_", "y_").up(node) and node["attrs"] == {"y_": 3}
    assert AddedAttr("w_", derive=lambda n: 0).up({"params": {}, "attrs": {}}) is None  # unfit
    assert AddedParam("d", old=None).up(node) and node["params"]["d"] is None
    assert AddedParam("d", old=None).down(node) and "d" not in node["params"]
    node["params"]["d"] = 5
    with pytest.raises(Refusal):
        AddedParam("d", old=None).down(node)
    with pytest.raises(Refusal):
        RenamedParam("a", "d").up(node)  # both names present: ambiguous
    node["attrs"]["n_features_in_"] = 3  # fitted: derived attributes apply
    assert RemovedAttr("y_").up(node) and node["attrs"] == {"n_features_in_": 3}
    derive = AddedAttr("z_", derive=lambda n: n["params"]["b"] * 2, exact=False, how="from b")
    assert "[approximate]" in derive.up(node) and node["attrs"]["z_"] == 4
    assert derive.approximate
    with pytest.raises(Refusal):
        RemovedParam("a", faithful=(2,), reason="no").up(node)  # a == 1
    assert RemovedParam("a", faithful=(1,)).up(node) and "a" not in node["params"]
    with pytest.raises(ManifestError):
        RenamedParam("a", "c").up({"params": [], "attrs": {}})
    chain = {"params": {"base_estimator": {"$type": "x"}}, "attrs": {}}
    assert Superseded("base_estimator", "estimator").up(chain)
    assert chain["params"] == {"base_estimator": "deprecated", "estimator": {"$type": "x"}}
    assert Superseded("base_estimator", "estimator").down(chain)
    assert chain["params"] == {"base_estimator": {"$type": "x"}}
    grid = {"params": {"n_alphas": 100, "alphas": {"$type": "numpy.ndarray"}}, "attrs": {}}
    assert "ignored" in MergedParam("n_alphas", "alphas", new_wins=True).up(grid)
    assert grid["params"] == {"alphas": {"$type": "numpy.ndarray"}}
    with pytest.raises(Refusal):  # both set, where the old version refused to fit
        MergedParam("base_estimator", "estimator").up(
            {"params": {"base_estimator": {"$type": "a"}, "estimator": {"$type": "b"}},
             "attrs": {}})
    counted = {"params": {"n_alphas": 50, "alphas": None}, "attrs": {}}
    MergedParam("n_alphas", "alphas", new_unset=(None, "warn"), default=100).up(counted)
    assert counted["params"] == {"alphas": 50}
    quantile = {"params": {"q": "other"}, "attrs": {}}
    with pytest.raises(Refusal):
        AddedParam("q", "linear").down(dict(quantile, params=dict(quantile["params"])))
    assert "used only when fitting" in AddedParam("q", "linear", fit_only=True).down(quantile)
    moved = {"params": {}, "attrs": {"loss": "squared_error"}}
    assert AttrToParam("loss").up(moved) and moved == {"params": {"loss": "squared_error"},
                                                       "attrs": {}}
    assert AttrToParam("loss").down(moved) and moved["attrs"] == {"loss": "squared_error"}


def test_every_declared_rule_is_well_formed() -> None:
    for rule in migrations.RULES:
        assert parse_version(rule.version) is not None
        assert rule.tag.startswith({"scikit-learn": "sklearn.", "xgboost": "xgboost."}[
            rule.library])
        if isinstance(rule.op, RemovedParam):
            assert rule.op.reason or rule.op.faithful
    for move in migrations.MOVES:
        assert parse_version(move.version) is not None and move.old_tag != move.new_tag


# -- loading files -------------------------------------------------------------------------------


def _as_written_by(model, writer: str, edit=None) -> bytes:
    parts = Parts.of(milo_pack.dumps(model))
    parts.manifest["writer"]["scikit-learn"] = writer
    if edit is not None:
        edit(parts.manifest["root"])
    return parts.build()


def _ada_file(algorithm: str) -> tuple[AdaBoostClassifier, bytes]:
    """An AdaBoost model as a file from the other side of the ``algorithm`` removal."""
    # Fitted with SAMME where the parameter exists (1.5's default is SAMME.R): a file written
    # after the removal always holds a SAMME model.
    model = AdaBoostClassifier(n_estimators=5, random_state=0,
                               **({"algorithm": "SAMME"} if HAS_ALGORITHM else {})).fit(X, y)
    if HAS_ALGORITHM:  # this reader predates the removal: the file is "from 1.9" without it
        def edit(root):
            del root["params"]["algorithm"]
        return model, _as_written_by(model, "1.9.1", edit)

    def edit(root):  # this reader is after the removal: the file is "from 1.5" with it
        root["params"]["algorithm"] = algorithm
    return model, _as_written_by(model, "1.5.2", edit)


def test_load_migrates_and_warns_once_with_paths() -> None:
    model, data = _ada_file("SAMME")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = milo_pack.loads(data)
    found = [w.message for w in caught if isinstance(w.message, milo_pack.MigrationWarning)]
    assert len(found) == 1
    assert len(found[0].steps) == 1 and found[0].steps[0].path == ""
    assert "algorithm" in str(found[0]) and READER in str(found[0])
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_refused_or_restored_end_to_end() -> None:
    """Under a reader after the removal, SAMME.R from an old file is refused, nothing built;
    under a reader before it, a newer file without the parameter gets it restored."""
    model, data = _ada_file("SAMME.R")
    if HAS_ALGORITHM:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = milo_pack.loads(data)
        assert loaded.algorithm == "SAMME" and len(caught) >= 1
        assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
        return
    with pytest.raises(VersionError, match="SAMME.R") as info:
        milo_pack.loads(data)
    assert "1.5.2" in str(info.value) and READER in str(info.value)
    with milo_pack.open(data) as handle:  # inspecting still works and shows the refusal
        assert handle.migrations[0].description.startswith("REFUSED")


def test_migrate_false_keeps_strictness_with_a_clear_message() -> None:
    _, data = _ada_file("SAMME")
    with pytest.raises(VersionError) as info:
        milo_pack.loads(data, migrate=False)
    message = str(info.value)
    assert "algorithm" in message and READER in message
    assert "1.5.2" in message or "1.9.1" in message


def test_unknown_parameter_from_a_newer_writer_names_both_versions() -> None:
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)

    def edit(root):
        root["params"]["brand_new_option"] = True

    data = _as_written_by(model, "9.0.0", edit)
    with pytest.raises(VersionError) as info:
        milo_pack.loads(data)
    message = str(info.value)
    assert "brand_new_option" in message and "Pipeline" in message
    assert "9.0.0" in message and READER in message
    # Same edit with this very version: the validator's own error, as before.
    data = _as_written_by(model, READER, edit)
    with pytest.raises(ManifestError, match="not parameters of Pipeline"):
        milo_pack.loads(data)


def test_unaccepted_value_from_a_newer_writer_names_both_versions() -> None:
    """A newer version's value (a ``"deprecated"`` default) the installed class refuses: a
    VersionError naming both versions; from this version, the validator's own error."""
    model = LogisticRegression().fit(X, y)

    def edit(root):
        root["params"]["solver"] = "deprecated"

    with pytest.raises(VersionError) as info:
        milo_pack.loads(_as_written_by(model, "9.0.0", edit))
    message = str(info.value)
    assert "'solver'='deprecated'" in message and "LogisticRegression" in message
    assert "9.0.0" in message and READER in message
    assert (info.value.writer, info.value.reader) == ("9.0.0", READER)
    with pytest.raises(InvariantError, match="solver"):
        milo_pack.loads(_as_written_by(model, READER, edit))


def test_unknown_sklearn_class_from_another_version_names_both_versions() -> None:
    model = LogisticRegression().fit(X, y)

    def edit(root):
        root["$type"] = "sklearn.linear_model.LogisticRegressionFromTheFuture"

    with pytest.raises(VersionError, match="does not exist in scikit-learn"):
        milo_pack.loads(_as_written_by(model, "9.0.0", edit))
    # A non-scikit-learn tag stays an untrusted type, whatever the versions.
    def edit_user(root):
        root["$type"] = "mypackage.Model"

    with pytest.raises(UntrustedTypeError):
        milo_pack.loads(_as_written_by(model, "9.0.0", edit_user))


def test_migrations_never_import_and_run_before_validation() -> None:
    """A rule only selects by tag; the result is validated like any file."""
    model = make_pipeline(AdaBoostClassifier(n_estimators=3, random_state=0)).fit(X, y)

    def edit(root):
        ada = root["params"]["steps"][0]["items"][1]
        if not HAS_ALGORITHM:
            ada["params"]["algorithm"] = "SAMME"
        ada["attrs"]["__class__"] = {"$type": "os.system"}  # still refused after migrating

    writer = "9.9.0" if HAS_ALGORITHM else "1.5.2"
    data = _as_written_by(model, writer, edit)
    with pytest.raises((ManifestError, UntrustedTypeError)):
        milo_pack.loads(data)


def test_same_version_file_is_not_walked_and_loads_without_warning() -> None:
    model = LogisticRegression().fit(X, y)
    data = milo_pack.dumps(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", milo_pack.MigrationWarning)
        loaded = milo_pack.loads(data)
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    with milo_pack.open(data) as handle:
        assert handle.migrations == []


def test_inspect_and_verify_list_the_migrations(tmp_path, capsys) -> None:
    from milo_pack.cli import main

    _, data = _ada_file("SAMME")
    path = tmp_path / "old.milo"
    path.write_bytes(data)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "migrations: 1 from scikit-learn" in out and "algorithm" in out
    assert main(["verify", str(path)]) == 0
    out = capsys.readouterr().out
    assert "versions" in out and "1 migration from scikit-learn" in out and "algorithm" in out
    # A refused file fails verify at that stage.
    if not HAS_ALGORITHM:
        _, data = _ada_file("SAMME.R")
        path.write_bytes(data)
        assert main(["verify", str(path)]) == 1
        assert "REFUSED" in capsys.readouterr().out


def test_migrated_manifest_is_what_gets_validated() -> None:
    """The migration edits the handle's manifest; the raw file is untouched (inspect shows it)."""
    _, data = _ada_file("SAMME")
    raw = json.loads(json.dumps(milo_pack.inspect(data)))
    with milo_pack.open(data) as handle:
        before = copy.deepcopy(handle.manifest)
        assert before == raw
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            handle.load()
        assert handle.manifest != before  # migrated in place, then validated
    assert get_registry().for_tag("sklearn.ensemble.AdaBoostClassifier") is not None


# -- the documentation runs ----------------------------------------------------------------------


def test_compatibility_doc_examples_run(monkeypatch) -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "COMPATIBILITY.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(root)
    for i, block in enumerate(blocks):
        exec(compile(block, f"COMPATIBILITY.md block {i}", "exec"), {"__name__": "__doc__"})


# -- hostile manifests -----------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["sklearn-1.5.2/pipeline-dataframe.milo",
                                     "sklearn-1.5.2/IterativeImputer.milo",
                                     "sklearn-1.6.1/ClassifierChain.milo"])
def test_garbage_in_migrated_nodes_gives_typed_errors_only(fixture) -> None:
    """Migrations run before validation, on whatever the file holds: any malformed field a
    rule reads ends in a MiloError (or the validator's), never another exception."""
    from pathlib import Path

    from milo_pack.errors import MiloError
    from milo_pack.migrations import _walk

    data = (Path(__file__).parent / "compat" / "corpus" / fixture).read_bytes()
    base = Parts.of(data)
    targets = [path for _, _, node, path in _walk(base.manifest["root"])
               if isinstance(node.get("params"), dict)]
    garbage = [None, 1, "x", [], {"$type": 5}, {"$ref": 999}, [[[]]], {"shape": "no"}]
    for index in range(len(targets)):
        for value in garbage:
            for field in ("params", "attrs"):
                parts = Parts.of(data)
                nodes = [n for _, _, n, _ in _walk(parts.manifest["root"])
                         if isinstance(n.get("params"), dict)]
                node = nodes[index]
                if field == "params":
                    for key in list(node["params"])[:3]:
                        node["params"][key] = copy.deepcopy(value)
                else:
                    node["attrs"] = copy.deepcopy(value) if not isinstance(value, dict) else {
                        k: copy.deepcopy(value) for k in node["attrs"]}
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        milo_pack.loads(parts.build(), migrate=True)
                except MiloError:
                    pass
                except (TypeError, AttributeError, ValueError, KeyError) as exc:
                    if isinstance(exc, MiloError):
                        continue
                    raise AssertionError(f"{fixture} {targets[index]} {field}={value!r}: "
                                         f"{type(exc).__name__}: {exc}") from exc
