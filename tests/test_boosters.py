"""XGBoost and LightGBM models stored as arrays: exact round trips, state and old files.

Every case of ``booster_cases`` round-trips with every prediction method identical (bit for
bit), its state identical attribute by attribute (types included: ``OrderedDict`` evaluation
results, ``defaultdict`` best scores, tuples in parameters), the same bytes when saved again, and
the same predictions when loaded in a fresh interpreter.  Files written before the booster
rewrite (``tests/fixtures/boosters``) still load with their recorded predictions.
"""

from __future__ import annotations

import io
import json
import pathlib
import pickle
import subprocess
import sys
import textwrap
import zipfile

import lightgbm as lgb
import numpy as np
import orjson
import pytest
import xgboost as xgb

import milo_pack
from milo_pack import _arrays
from milo_pack.errors import VersionError
from milo_pack.migrations import parse_version

from . import booster_cases as cases
from .fixtures.boosters import make_fixtures
from .fixtures.xgb21 import make_fixtures as make_xgb21

ROOT = pathlib.Path(__file__).resolve().parent.parent
XGB_VERSION = parse_version(xgb.__version__)
FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "boosters"
XGB21 = pathlib.Path(__file__).parent / "fixtures" / "xgb21"


def _roundtrip(model):
    data = milo_pack.dumps(model)
    loaded = milo_pack.loads(data)
    assert milo_pack.dumps(loaded) == data  # re-saving gives identical bytes
    return data, loaded


def _manifest(data: bytes) -> dict:
    return json.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))


def _booster_node(data: bytes) -> dict:
    root = _manifest(data)["root"]
    return root if root["$type"].endswith("Booster") else root["attrs"]["_Booster"]


@pytest.mark.parametrize("name", sorted(cases.CASES))
def test_roundtrip_is_exact(name):
    model = cases.model(name)
    data = cases.data_for(name)
    _, loaded = _roundtrip(model)
    assert cases.same_predictions(cases.predictions(model, data),
                                  cases.predictions(loaded, data)) == []
    assert cases.state_differences(model, loaded) == []


def test_fresh_interpreter_loads_every_case(tmp_path):
    """One subprocess loads every file and recomputes every prediction (nothing cached)."""
    for name in cases.CASES:
        model = cases.model(name)
        milo_pack.dump(model, tmp_path / f"{name}.milo")
        with open(tmp_path / f"{name}.pkl", "wb") as f:  # our own expectations, not the file
            pickle.dump(cases.predictions(model, cases.data_for(name)), f)
    script = textwrap.dedent("""
        import pathlib, pickle, sys
        from tests import booster_cases as cases
        import milo_pack
        for path in sorted(pathlib.Path(sys.argv[1]).glob("*.milo")):
            loaded = milo_pack.load(path)
            expected = pickle.loads(path.with_suffix(".pkl").read_bytes())
            got = cases.predictions(loaded, cases.data_for(path.stem))
            print(path.stem, cases.same_predictions(expected, got), flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert lines == dict.fromkeys(cases.CASES, "[]")


def test_fixtures_from_the_previous_layout_are_present():
    """The fixtures are committed (a .gitignore slip once left them out and the test below
    collected nothing)."""
    assert len(sorted(FIXTURES.glob("*.milo"))) == len(sorted(FIXTURES.glob("*.npz"))) == 12


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.milo")), ids=lambda p: p.stem)
def test_files_from_the_previous_layout_load_identically(path):
    """Written by the code before the rewrite (commit f68509a): what we wrote, we read.

    They were written under XGBoost 3.2, whose base score (a vector since 3.1) XGBoost before
    3.1 would read as another value: there they are refused, naming both versions."""
    X, frame = make_fixtures.inputs()
    data = frame if ("categorical" in path.stem or "raw" in path.stem) else X
    written = _manifest(path.read_bytes())["writer"].get("xgboost")
    if written and parse_version(written) >= (3, 1) > XGB_VERSION:
        with pytest.raises(VersionError, match="base score") as refused:
            milo_pack.load(path)
        assert refused.value.writer == written and refused.value.reader == xgb.__version__
        return
    _assert_predicts_as_written(path, data)


def _assert_predicts_as_written(path, data):
    """The fixture's model predicts exactly what it predicted where it was written."""
    model = milo_pack.load(path)
    expected = np.load(path.with_suffix(".npz"))
    got = make_fixtures.predictions(model, data)
    assert sorted(expected.files) == sorted(got)
    for key in expected.files:
        assert np.array_equal(expected[key], got[key]), key


@pytest.mark.parametrize("path", sorted(XGB21.glob("*.milo")), ids=lambda p: p.stem)
def test_files_from_xgboost_2_1_load_identically_or_are_refused(path):
    """Written under XGBoost 2.1.4 (the oldest supported): the same predictions under the
    installed XGBoost, bit for bit, or, for multi-target trees under XGBoost 3.2 or later
    (which reads only its own layout of them), a VersionError naming both versions."""
    assert _manifest(path.read_bytes())["writer"]["xgboost"] == "2.1.4"
    X, frame = make_fixtures.inputs()
    data = frame if "raw" in path.stem else X
    if path.stem in make_xgb21.MULTI_TARGET and XGB_VERSION >= (3, 2):
        with pytest.raises(VersionError, match="multi-target trees") as refused:
            milo_pack.load(path)
        assert (refused.value.writer, refused.value.reader) == ("2.1.4", xgb.__version__)
        assert "2.1.4" in str(refused.value) and xgb.__version__ in str(refused.value)
        return
    _assert_predicts_as_written(path, data)


def test_xgboost_multi_target_layout_follows_the_reader():
    """A multi-target tree layout loads only under the XGBoost versions that read it; scalar
    trees are the same layout under every supported XGBoost."""
    from milo_pack.handlers import xgboost_

    node = _booster_node(milo_pack.dumps(cases.model("xgb_multi_output_tree")))
    columns, version = node["trees"]["columns"], node["version"]
    xgboost_._check_layout_supported(columns, version, xgb.__version__, "x")
    other = "3.1.3" if XGB_VERSION >= (3, 2) else "3.2.0"
    with pytest.raises(VersionError, match="multi-target trees") as refused:
        xgboost_._check_layout_supported(columns, version, other, "x")
    assert refused.value.reader == other
    scalar = _booster_node(milo_pack.dumps(cases.model("xgb_multi_target")))
    for reader in ("2.1.4", "3.1.3", "3.2.0"):
        xgboost_._check_layout_supported(scalar["trees"]["columns"], version, reader, "x")


def test_xgboost_2_1_fixtures_are_present():
    assert len(sorted(XGB21.glob("*.milo"))) == len(sorted(XGB21.glob("*.npz"))) == 6


# -- fidelity: types and state ---------------------------------------------------------------


def test_evaluation_results_keep_their_types():
    import collections

    xgb_model = cases.model("xgb_early_stopped")
    _, loaded = _roundtrip(xgb_model)
    assert type(loaded.evals_result_["validation_0"]) is collections.OrderedDict
    assert loaded.best_iteration == xgb_model.best_iteration < 49
    lgb_model = cases.model("lgb_early_stopped")
    _, loaded = _roundtrip(lgb_model)
    assert type(loaded.best_score_) is collections.defaultdict
    assert type(loaded.best_score_["noise"]) is collections.OrderedDict
    assert type(loaded.booster_.best_score) is collections.defaultdict
    assert loaded.evals_result_ == lgb_model.evals_result_
    assert loaded.best_iteration_ == lgb_model.best_iteration_ < 50
    ranker = cases.model("lgb_ranker")
    _, loaded = _roundtrip(ranker)
    assert ranker.booster_.params["eval_at"] == (1, 3)
    assert type(loaded.booster_.params["eval_at"]) is tuple


def test_xgboost_training_configuration_is_kept_and_readable():
    booster = cases.model("xgb_booster")
    data, loaded = _roundtrip(booster)
    assert loaded.save_config() == booster.save_config()
    config = json.loads(loaded.save_config())
    assert config["learner"]["gradient_booster"]["tree_train_param"]["max_bin"] == "64"
    node = _booster_node(data)
    assert node["config"]["learner"]["gradient_booster"]["tree_train_param"]["eta"] == (
        config["learner"]["gradient_booster"]["tree_train_param"]["eta"])
    assert loaded.attr("note") == "kept"


def test_lightgbm_booster_private_state():
    """Every attribute of a trained Booster is kept, or derived as LightGBM's loader sets it."""
    booster = cases.model("lgb_booster")
    _, loaded = _roundtrip(booster)
    assert cases.state_differences(booster, loaded) == []
    kept = set(vars(booster)) - cases.LGB_DERIVED
    assert {"best_iteration", "best_score", "params", "name_valid_sets",
            "_train_data_name"} <= kept
    assert loaded.name_valid_sets == ["valid"] and loaded.params == booster.params
    # Per-Dataset state stays as for a booster without Datasets (no file carries them).
    fresh = lgb.Booster(model_str=booster.model_to_string())
    for key in ("_Booster__num_dataset", "_Booster__init_predictor", "train_set"):
        assert (key in vars(loaded)) == (key in vars(fresh))


def test_xgboost_readable_manifest():
    booster = cases.model("xgb_booster")
    data, _ = _roundtrip(booster)
    node = _booster_node(data)
    assert node["$type"] == "xgboost.Booster" and node["num_trees"] == 18
    assert node["learner"]["objective"]["name"] == "multi:softprob"
    assert node["learner"]["feature_names"] == ["a", "b", "c", "d", "cat", "num"]
    assert node["trees"]["columns"]["split_conditions"]["dtype"] == "<f4"
    model = node["learner"]["gradient_booster"]["model"]
    if XGB_VERSION < (3, 1):  # category encodings are stored from XGBoost 3.1 on
        assert "cats" not in model
        return
    cats = model["cats"]
    assert cats["features"][4] == ["u", "v", "w", "x", "y"]  # category encodings, readable
    assert cats["features"][5]["values"]["data"] == [3, 7, 11]


def test_xgboost_multi_output_trees_are_arrays():
    """Multi-target trees in the installed XGBoost's layout (see xgboost_.LAYOUTS)."""
    model = cases.model("xgb_multi_output_tree")
    data, loaded = _roundtrip(model)
    columns = _booster_node(data)["trees"]["columns"]
    assert _booster_node(data)["num_trees"] == 5
    if XGB_VERSION >= (3, 2):  # leaves' vectors apart, node statistics kept
        assert columns["leaf_weights"]["dtype"] == "<f4"
        assert {"loss_changes", "sum_hessian"} <= set(columns)
    else:  # a vector for every node, no statistics
        assert not {"leaf_weights", "loss_changes", "sum_hessian"} & set(columns)
        assert columns["base_weights"]["shape"] == [columns["left_children"]["shape"][0] * 3]
    assert loaded.predict(cases.X).shape == (400, 3)


def test_lightgbm_readable_manifest():
    booster = cases.model("lgb_booster")
    data, _ = _roundtrip(booster)
    node = _booster_node(data)
    assert node["$type"] == "lightgbm.Booster" and node["num_trees"] == 8
    assert node["header"]["objective"] == "regression"
    assert node["header"]["feature_names"] == ["a", "b", "c", "d", "cat", "num"]
    assert node["pandas_categorical"] == [["u", "v", "w", "x", "y"], [3, 7, 11]]
    assert node["parameters"]["num_leaves"] == "7"


def test_smaller_than_pickle():
    for model in (xgb.XGBClassifier(n_estimators=50, n_jobs=1).fit(cases.X, cases.Y_BIN),
                  lgb.LGBMClassifier(n_estimators=50, verbose=-1, n_jobs=1).fit(
                      cases.X, cases.Y_BIN)):
        assert len(milo_pack.dumps(model)) < len(pickle.dumps(model))


# -- numbers: exact in both directions -------------------------------------------------------


def test_lightgbm_numbers_survive_the_text_exactly():
    """Extreme doubles in a model: the loaded booster prints LightGBM's own text again."""
    booster = cases.model("lgb_stump")
    text = booster.booster_.model_to_string()
    odd = ["5e-324", "-0", "1.7976931348623157e+308", "2.2250738585072009e-308",
           "0.10000000000000001", "-3.0000000000000004", "1e+300", "123456789.12345679"]
    lines = text.split("\n")
    leaf = [i for i, line in enumerate(lines) if line.startswith("leaf_value=")]
    for i, index in enumerate(leaf):
        lines[index] = f"leaf_value={odd[i % len(odd)]}"
    edited = lgb.Booster(model_str="\n".join(lines))
    _, loaded = _roundtrip(edited)
    assert loaded.model_to_string() == edited.model_to_string()


def test_orjson_parses_like_python():
    """LightGBM columns are parsed by orjson: correctly rounded, like float() and LightGBM."""
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**63, 20000, dtype=np.uint64)
    values = bits.view(np.float64)
    values = values[np.isfinite(values)]
    texts = [f"{v:.17g}" for v in values.tolist()] + [f"{v:g}" for v in values.tolist()]
    texts += ["9007199254740993", "2.2250738585072011e-308", "4.9406564584124654e-324",
              "0.1", "1e-05", "1e+20"]
    parsed = orjson.loads("[" + ",".join(texts) + "]")
    assert [float(t) for t in texts] == [float(v) for v in parsed]
    floats = np.array([float(t) for t in texts])
    assert np.array_equal(orjson.loads(orjson.dumps(floats, option=orjson.OPT_SERIALIZE_NUMPY)),
                          floats)


def test_ubjson_kernel_reproduces_xgboost_bytes():
    model = cases.model("xgb_categorical")
    raw = bytes(model.get_booster().save_raw("ubj"))
    assert bytes(_arrays.ubjson_encode(_arrays.ubjson_decode(raw))) == raw


def test_ubjson_kernel_refuses_malformed_documents():
    for bad in (b"", b"{", b"[$d#L\x00\x00\x00\x00\x00\x00\x00\x09", b"Sx", b"{}x", b"[" * 100,
                b"{L\x00\x00\x00\x00\x00\x00\x00\x05ab"):
        with pytest.raises(ValueError):
            _arrays.ubjson_decode(bad)


@pytest.mark.parametrize("name", sorted(n for n in cases.CASES if n.startswith("xgb")))
def test_packed_tree_decoding_gives_the_columns_of_the_tree_list(name):
    """Saving decodes XGBoost's trees packed; the columns equal those read tree by tree."""
    from milo_pack.handlers import xgboost_

    model = cases.model(name)
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    raw = bytes(booster.save_raw("ubj"))
    plain, packed = _arrays.ubjson_decode(raw), _arrays.ubjson_decode_packed(raw)
    listed, gathered = xgboost_.model_of(plain["learner"]), xgboost_.model_of(packed["learner"])
    if listed is None:  # gblinear
        assert gathered is None
        return
    trees = gathered.pop("trees")
    assert isinstance(trees, _arrays.UbjTrees)
    expected = xgboost_._listed_tree_columns(listed.pop("trees"), "trees")
    for want, got in zip(expected, xgboost_._tree_columns(trees, "trees"), strict=True):
        assert list(want) == list(got)
        for key in want:
            # Bit for bit (XGBoost 2.1 stores NaN base weights in some trees).
            assert want[key].dtype == got[key].dtype and want[key].shape == got[key].shape
            assert want[key].tobytes() == got[key].tobytes(), key
    assert repr(plain) == repr(packed)
