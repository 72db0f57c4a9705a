"""Hostile XGBoost and LightGBM files: refused at load, or harmless when predicted with.

Both libraries trust their model documents and crash (or allocate gigabytes) in ``predict`` on a
malformed tree or header.  Three kinds of tests:

- corrupted trees and header fields that must be refused with an ``InvariantError`` (the tree
  files are made by disabling the writer's own checks, which refuse them at dump);
- a differential test that mutates every header field and the metadata of every column (remove,
  retype, resize, out of range) and loads then predicts with every accepted mutant, in
  subprocesses (``booster_runner``);
- hypothesis fuzzers over booster manifests and (re-sealed) section chunks whose accepted
  mutants are predicted on too.

A crash, an abort or more than 200 MB of growth in a subprocess fails the case that ran.  The
larger fuzzing sweep runs in ``.ci/steps/50-boosters-fuzz.sh`` (``MILO_BOOSTER_FUZZ`` examples).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import milo_pack
from milo_pack.errors import InvariantError, ManifestError, MiloError
from milo_pack.handlers import lightgbm_, xgboost_

from .. import booster_cases as cases
from .booster_runner import outcomes
from .craft import manifest_edit, split

FUZZ_EXAMPLES = int(os.environ.get("MILO_BOOSTER_FUZZ", "40"))


def _file(name: str) -> bytes:
    return milo_pack.dumps(cases.model(name))


def _booster(doc: dict) -> dict:
    root = doc["root"]
    return root if root["$type"].endswith("Booster") else root["attrs"]["_Booster"]


def _edited(name: str, edit) -> bytes:
    def apply(doc):
        edit(_booster(doc), doc["root"])
    return manifest_edit(_file(name), apply)


# -- corrupted trees --------------------------------------------------------------------------


def _xgb_corrupted(monkeypatch, name: str, mutate) -> bytes:
    """A file whose first tree was altered by ``mutate`` (the writer's checks disabled)."""
    real = xgboost_._tree_columns

    def columns(trees, path):
        counts, params, cols = real(trees, path)
        mutate(counts, params, cols)
        return counts, params, cols

    with monkeypatch.context() as patch:
        patch.setattr(xgboost_, "_tree_columns", columns)
        patch.setattr(xgboost_, "_check_saved", lambda *args: None)
        return milo_pack.dumps(cases.model(name))


def _at(column, index, value):
    def mutate(counts, params, cols):
        cols[column][index] = value
    return mutate


XGB_CORRUPTIONS = {
    "child_out_of_range": ("xgb_binary", _at("left_children", 0, 1 << 28)),
    "feature_out_of_range": ("xgb_binary", _at("split_indices", 0, 99)),
    "cycle": ("xgb_binary", lambda c, p, cols: (cols["left_children"].__setitem__(1, 0),
                                                cols["right_children"].__setitem__(1, 2))),
    "reached_twice": ("xgb_binary", lambda c, p, cols: cols["right_children"].__setitem__(
        0, cols["left_children"][0])),
    "bad_parent": ("xgb_binary", _at("parents", 1, 2)),
    "split_type": ("xgb_binary", _at("split_type", 0, 7)),
    "wrong_length": ("xgb_binary", lambda c, p, cols: cols.__setitem__(
        "split_conditions", cols["split_conditions"][:-1])),
    "node_count": ("xgb_binary", lambda c, p, cols: c["num_nodes"].__setitem__(0, 3)),
    "tree_features": ("xgb_binary", lambda c, p, cols: p["num_feature"].__setitem__(0, 9)),
    "category_segment": ("xgb_categorical", _at("categories_segments", 0, 1 << 40)),
    "category_value": ("xgb_categorical", _at("categories", 0, 1 << 30)),
    "multi_target_leaf_index": ("xgb_multi_output_tree", lambda c, p, cols: cols[
        "right_children"].__setitem__(int(np.flatnonzero(cols["left_children"] == -1)[0]),
                                      1000)),
    "leaf_vector_size": ("xgb_multi_output_tree", lambda c, p, cols: p[
        "size_leaf_vector"].__setitem__(0, 9)),
}


@pytest.mark.parametrize("case", sorted(XGB_CORRUPTIONS))
def test_xgboost_corrupted_trees_are_refused(monkeypatch, case):
    name, mutate = XGB_CORRUPTIONS[case]
    data = _xgb_corrupted(monkeypatch, name, mutate)
    with pytest.raises(InvariantError):
        milo_pack.loads(data)


def _lgb_corrupted(monkeypatch, name: str, column: str, mutate) -> bytes:
    real = lightgbm_._parse_column

    def parse(col, parts, path):
        arr = real(col, parts, path)
        return mutate(arr.copy()) if col == column else arr

    with monkeypatch.context() as patch:
        patch.setattr(lightgbm_, "_parse_column", parse)
        patch.setattr(lightgbm_, "_check_model", lambda *args: None)
        return milo_pack.dumps(cases.model(name))


def _set(index, value):
    def mutate(arr):
        arr[index] = value
        return arr
    return mutate


LGB_CORRUPTIONS = {
    "child_out_of_range": ("lgb_binary", "left_child", _set(0, 1 << 28)),
    "feature_out_of_range": ("lgb_binary", "split_feature", _set(0, 99)),
    "cycle": ("lgb_binary", "left_child", _set(1, 0)),
    "leaf_twice": ("lgb_binary", "right_child", _set(0, -1)),
    "wrong_length": ("lgb_binary", "leaf_value", lambda a: a[:-1]),
    "bad_decision_type": ("lgb_binary", "decision_type", _set(0, 13)),
    "categorical_without_bitset": ("lgb_binary", "decision_type", _set(0, 1)),
    "cat_boundaries": ("lgb_categorical", "cat_boundaries", _set(1, 1 << 20)),
    "linear_feature": ("lgb_linear_tree", "leaf_features", _set(0, 1000)),
}


@pytest.mark.parametrize("case", sorted(LGB_CORRUPTIONS))
def test_lightgbm_corrupted_trees_are_refused(monkeypatch, case):
    data = _lgb_corrupted(monkeypatch, *LGB_CORRUPTIONS[case])
    with pytest.raises(InvariantError):
        milo_pack.loads(data)


def test_native_libraries_crash_on_the_same_corruption(monkeypatch):
    """What the validator prevents: XGBoost segfaults on an out-of-range child index."""
    data = _xgb_corrupted(monkeypatch, *XGB_CORRUPTIONS["child_out_of_range"])
    with pytest.raises(InvariantError):
        milo_pack.loads(data)
    script = textwrap.dedent("""
        import numpy as np, xgboost as xgb
        from milo_pack import _arrays
        X = np.random.RandomState(0).rand(200, 5)
        y = (X[:, 0] > 0.5).astype(int)
        model = xgb.XGBClassifier(n_jobs=1, n_estimators=3, max_depth=3).fit(X, y)
        doc = _arrays.ubjson_decode(bytes(model.get_booster().save_raw("ubj")))
        tree = doc["learner"]["gradient_booster"]["model"]["trees"][0]
        left = tree["left_children"].copy()
        left[0] = 1 << 28
        tree["left_children"] = left
        loaded = xgb.Booster()
        loaded.load_model(_arrays.ubjson_encode(doc))  # XGBoost accepts it...
        print("loaded", flush=True)
        loaded.predict(xgb.DMatrix(X))                 # ...and follows the index (segfault)
        print("survived", flush=True)
    """)
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        return  # a hang is the other failure mode
    assert b"loaded" in proc.stdout, proc.stderr[-2000:]
    assert proc.returncode != 0 and b"survived" not in proc.stdout


# -- header fields: derived from the trees or refused ----------------------------------------


def _param(key, value):
    def edit(node, root):
        node["learner"]["learner_model_param"][key] = value
    return edit


def _model(edit):
    def apply(node, root):
        edit(node["learner"]["gradient_booster"]["model"])
    return apply


XGB_HEADERS = {
    "num_class_huge": ("xgb_multiclass", _param("num_class", "1000000")),
    "num_class_more": ("xgb_multiclass", _param("num_class", "4")),
    "num_target_huge": ("xgb_multi_output_tree", _param("num_target", "100000")),
    "num_feature_huge": ("xgb_binary", _param("num_feature", "100000000")),
    "objective_num_class": ("xgb_multiclass", lambda n, r: n["learner"]["objective"][
        "softmax_multiclass_param"].__setitem__("num_class", "50")),
    "num_parallel_tree": ("xgb_binary", _model(lambda m: m["gbtree_model_param"].__setitem__(
        "num_parallel_tree", "4"))),
    "tree_info": ("xgb_multiclass", _model(lambda m: m.__setitem__(
        "tree_info", [2] * len(m["tree_info"])))),
    "iteration_indptr": ("xgb_multiclass", _model(lambda m: m.__setitem__(
        "iteration_indptr", [0, 1000]))),
    "best_iteration": ("xgb_early_stopped", lambda n, r: n["learner"]["attributes"].__setitem__(
        "best_iteration", "10000")),
    "config_threads": ("xgb_binary", lambda n, r: n["config"]["learner"][
        "generic_param"].__setitem__("nthread", "1000000")),
    "config_objective": ("xgb_multiclass", lambda n, r: n["config"]["learner"]["objective"][
        "softmax_multiclass_param"].__setitem__("num_class", "50")),
    "wrapper_n_jobs": ("xgb_binary", lambda n, r: r["params"].__setitem__("n_jobs", 10**6)),
    "base_score_count": ("xgb_multiclass", _param("base_score", "[1,2]")),
    "feature_names": ("xgb_categorical", lambda n, r: n["learner"]["feature_names"].pop()),
}
# XGBoost 3.1 added the model's own category index ("cats"); 2.1 (the floor) has none to attack.
if cases.version_at_least("xgboost", (3, 1)):
    XGB_HEADERS["category_sorted_idx"] = ("xgb_categorical", _model(
        lambda m: m["cats"]["sorted_idx"]["data"].__setitem__(0, 4)))


@pytest.mark.parametrize("case", sorted(XGB_HEADERS))
def test_xgboost_header_fields_are_checked_against_the_trees(case):
    name, edit = XGB_HEADERS[case]
    with pytest.raises(InvariantError):
        milo_pack.loads(_edited(name, edit))


def _header(key, value):
    def edit(node, root):
        node["header"][key] = value
    return edit


LGB_HEADERS = {
    "num_class_huge": ("lgb_multiclass", _header("num_class", "1000000")),
    "num_class_vs_trees": ("lgb_multiclass", _header("num_class", "4")),
    "trees_per_iteration": ("lgb_multiclass", _header("num_tree_per_iteration", "1")),
    "objective_num_class": ("lgb_multiclass", _header("objective", "multiclass num_class:40")),
    "objective_multiclass": ("lgb_binary", _header("objective", "multiclass num_class:2")),
    "objective_unknown": ("lgb_binary", _header("objective", "binary sigmoid:1 huge:9")),
    "max_feature_idx": ("lgb_binary", _header("max_feature_idx", "100000")),
    "feature_infos": ("lgb_binary", lambda n, r: n["header"]["feature_infos"].pop()),
    "version": ("lgb_binary", _header("version", "v9")),
    "unknown_line": ("lgb_binary", _header("linear", "1")),
    "wrapper_n_jobs": ("lgb_binary", lambda n, r: r["params"].__setitem__("n_jobs", 10**6)),
    "other_params_threads": ("lgb_binary", lambda n, r: r["attrs"].__setitem__(
        "_other_params", {"num_threads": 10**6})),
    "booster_params_threads": ("lgb_booster", lambda n, r: n["attrs"]["params"].__setitem__(
        "nthread", 10**6)),
    "best_iteration_type": ("lgb_booster", lambda n, r: n["attrs"].__setitem__(
        "best_iteration", "3")),
    # Shapes of header lines and columns (found by the fuzzer: each reached a TypeError or
    # AttributeError inside the loader instead of a typed refusal).
    "list_line_as_flag": ("lgb_dart", _header("feature_names", True)),
    "flag_inside_list": ("lgb_dart", lambda n, r: n["header"]["feature_names"].__setitem__(
        0, True)),
    "text_line_as_flag": ("lgb_binary", _header("num_class", True)),
    "flag_as_text": ("lgb_binary", _header("average_output", "1")),
    "column_not_a_node": ("lgb_dart", lambda n, r: n["trees"]["columns"].__setitem__(
        "split_gain", None)),
}


@pytest.mark.parametrize("case", sorted(LGB_HEADERS))
def test_lightgbm_header_fields_are_checked_against_the_trees(case):
    name, edit = LGB_HEADERS[case]
    with pytest.raises((InvariantError, ManifestError)):  # unknown lines: schema
        milo_pack.loads(_edited(name, edit))


def test_thread_counts_are_bounded_at_dump_too():
    model = copy.deepcopy(cases.model("lgb_binary"))
    model.n_jobs = 10**6
    data = milo_pack.dumps(model)  # the wrapper's own state: refused when loaded
    with pytest.raises(InvariantError):
        milo_pack.loads(data)
    model.n_jobs = -1  # "all cores": fine
    milo_pack.loads(milo_pack.dumps(model))


# -- differential: every header field and column, mutated ------------------------------------

# The default run mutates two models; the CI step (MILO_BOOSTER_FUZZ set) all of these.
DIFFERENTIAL = ("xgb_categorical", "lgb_categorical", "xgb_multiclass", "xgb_multi_output_tree",
                "xgb_dart", "lgb_multiclass", "lgb_linear_tree")
DIFFERENTIAL_DEFAULT = 2


def _sites(node: dict, prefix: tuple = ()):
    """(keys, value) of every header field and array node under a booster node."""
    for key, value in node.items():
        keys = (*prefix, key)
        if isinstance(value, dict) and value.get("$type") == "numpy.ndarray":
            yield keys, value
        elif isinstance(value, dict) and "$type" not in value:
            yield keys, value
            yield from _sites(value, keys)
        elif isinstance(value, list) and len(value) <= 64:
            yield keys, value
        elif not isinstance(value, (dict, list)):
            yield keys, value


def _bulky(keys: tuple) -> bool:
    """Sites the default run leaves to the CI sweep: LightGBM's ~150 training parameters and
    feature importances, XGBoost's training configuration (thread counts stay)."""
    if keys[0] in ("parameters", "feature_importances"):
        return keys[-1] != "linear_tree"
    return keys[0] == "config" and "generic_param" not in keys


def _mutations(value):
    """(label, new value or _REMOVE) for one site: remove, retype, resize, out of range."""
    yield "remove", _REMOVE
    if isinstance(value, dict) and value.get("$type") == "numpy.ndarray":
        other = "<f8" if value["dtype"] != "<f8" else "<i4"
        yield "retype", {**value, "dtype": other}
        n = value["shape"][0] if value["shape"] else 0
        yield "shrink", {**value, "shape": [max(n - 1, 0)],
                         **({"data": value["data"][:-1]} if "data" in value else {})}
        if "data" in value and value["data"]:
            yield "huge", {**value, "data": [2**31 - 1 if isinstance(v, int) else 1e300
                                             for v in value["data"]]}
            yield "negative", {**value, "data": [-5 if isinstance(v, int) else -1e300
                                                 for v in value["data"]]}
        return
    if isinstance(value, str):
        yield "retype", 5
        if value.lstrip("-").isdigit():
            yield "huge", "1000000000"
            yield "negative", "-7"
            yield "plus_one", str(int(value) + 1)
        return
    if isinstance(value, list):
        yield "shrink", value[:-1]
        yield "grow", value + value[-1:] if value else [0]
        yield "retype", "x"
        return
    if isinstance(value, bool) or value is None:
        yield "retype", "x"
        return
    if isinstance(value, int):
        yield "huge", 10**9
        yield "negative", -7
        yield "retype", "7"


_REMOVE = object()


def _mutant(base: bytes, keys: tuple, new) -> bytes:
    def apply(doc):
        node = _booster(doc)
        for key in keys[:-1]:
            node = node[key]
        if new is _REMOVE:
            del node[keys[-1]]
        else:
            node[keys[-1]] = json.loads(json.dumps(new))
    return manifest_edit(base, apply)


def test_differential_every_field_refused_or_harmless():
    """Each mutant is refused at load, or predicts like the honest model or raises; never a
    crash or a runaway allocation.  Structural mutations (remove, retype, resize) must not
    silently change predictions."""
    mutants: dict[str, tuple[bytes, str]] = {}
    names = DIFFERENTIAL if "MILO_BOOSTER_FUZZ" in os.environ else DIFFERENTIAL[
        :DIFFERENTIAL_DEFAULT]
    for name in names:
        base = _file(name)
        node = _booster(milo_pack.inspect(base))
        for keys, value in _sites(node):
            if names != DIFFERENTIAL and _bulky(keys):
                continue
            for label, new in _mutations(value):
                case = f"{name}:{'.'.join(map(str, keys))}:{label}"
                data = _mutant(base, keys, new)
                try:
                    milo_pack.loads(data)
                except MiloError:
                    continue  # refused in-process: nothing reached native code
                mutants[case] = (data, name)
    results = outcomes(mutants)
    # pandas_categorical lists the categories LightGBM's Python codes a DataFrame with: like
    # a threshold, a file may change it (how many lists: one per categorical column of the
    # training frame, which the model does not record) and with it the predictions.
    bad = {case: outcome for case, outcome in results.items()
           if outcome.startswith(("CRASHED", "GREW"))
           or (outcome.startswith("DIFFERENT") and case.rsplit(":", 1)[1] in (
               "remove", "retype", "shrink", "grow")
               and ":pandas_categorical:" not in case)}
    assert bad == {}
    assert len(results) == len(mutants)


# -- fuzzing that reaches predict -------------------------------------------------------------

FUZZ_MODELS = ("xgb_categorical", "xgb_multiclass", "xgb_ranker", "xgb_dart",
               "xgb_multi_output_tree", "lgb_categorical", "lgb_linear_tree", "lgb_multiclass",
               "lgb_ranker", "lgb_dart")
_FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
                 suppress_health_check=list(HealthCheck))
_VALUES = st.one_of(
    st.integers(-(2**40), 2**40), st.sampled_from(["-1", "0", "1", "3", "1000000", "v4", ""]),
    st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none(),
    st.lists(st.integers(-3, 1000), max_size=4))


def _paths(node, keys=()):
    yield keys
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*keys, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:8]):
            yield from _paths(v, (*keys, i))


def _accepted(data: bytes) -> bool:
    try:
        milo_pack.loads(data)
    except MiloError:
        return False
    return True


def test_fuzzed_manifests_refused_or_harmless():
    accepted: dict[str, tuple[bytes, str]] = {}

    @_FUZZ
    @given(name=st.sampled_from(FUZZ_MODELS), pick=st.integers(0, 2**31), value=_VALUES)
    def run(name, pick, value):
        base = _file(name)
        paths = [p for p in _paths(_booster(milo_pack.inspect(base))) if p]
        keys = paths[pick % len(paths)]
        data = _mutant(base, keys, value)
        if _accepted(data):
            accepted[f"{name}:{keys}:{value!r}"] = (data, name)

    run()
    bad = {k: v for k, v in outcomes(accepted).items() if v.startswith(("CRASHED", "GREW"))}
    assert bad == {}


def test_fuzzed_section_chunks_refused_or_harmless():
    """Chunk bytes changed and re-sealed (digests match): the data reaches the validators."""
    accepted: dict[str, tuple[bytes, str]] = {}

    @_FUZZ
    @given(name=st.sampled_from(FUZZ_MODELS), section=st.integers(0, 2**31),
           edits=st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), min_size=1,
                          max_size=4))
    def run(name, section, edits):
        parts = split(_file(name))
        index = section % len(parts.sections)
        chunks = [bytearray(c) for c in parts.chunks(index)]
        for position, byte in edits:
            chunk = chunks[position % len(chunks)]
            chunk[(position // 7) % len(chunk)] = byte
        parts.seal(index, [bytes(c) for c in chunks])
        data = parts.build()
        if _accepted(data):
            accepted[f"{name}:{section}:{edits}"] = (data, name)

    run()
    bad = {k: v for k, v in outcomes(accepted).items() if v.startswith(("CRASHED", "GREW"))}
    assert bad == {}
