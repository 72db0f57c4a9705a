"""Fuzzing: mutated bytes, manifest fields and (re-sealed) chunks of valid files.

The only acceptable outcomes are a correct load or a :class:`~milo_pack.errors.MiloError`.
Chunks are re-sealed after mutation so the digests match and the data reaches zstd, the filters
and the model validators.  Loading only: predicting with what loads runs in
``test_invariants`` under a subprocess, and for accepted mutants of every model family whose
state reaches native code in ``test_accepted_mutants_predict_without_crashing`` below.
"""

from __future__ import annotations

import copy
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import milo_pack
from milo_pack.errors import MiloError

from .craft import manifest_edit, model_file, split

MODELS = ["forest", "deep_forest", "pipeline", "knn", "hgb", "sparse"]
_SETTINGS = settings(max_examples=250, deadline=None, derandomize=True,
                     suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False,
                                                                        allow_infinity=False)
    | st.sampled_from(["nan", "inf", "<f8", "|O", "sklearn.pipeline.Pipeline", "os.system",
                       "numpy.ndarray", "tuple", "$ref", ""]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["$type", "$id", "$ref", "items", "shape", "dtype",
                                       "data", "section", "start", "params", "attrs", "x"]),
                      children, max_size=4),
    max_leaves=8)


def _outcome(data: bytes) -> None:
    try:
        milo_pack.loads(data)
    except MiloError:
        pass


def _paths(node, keys=()):
    yield keys
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*keys, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:6]):
            yield from _paths(v, (*keys, i))


@_SETTINGS
@given(model=st.sampled_from(MODELS), edits=st.lists(
    st.tuples(st.integers(0, 2**31), st.integers(0, 255)), min_size=1, max_size=8))
def test_byte_mutations(model, edits):
    data = bytearray(model_file(model))
    for position, value in edits:
        data[position % len(data)] = value
    _outcome(bytes(data))


@_SETTINGS
@given(model=st.sampled_from(MODELS), pick=st.integers(0, 2**31), value=json_values)
def test_manifest_field_mutations(model, pick, value):
    base = model_file(model)
    doc = milo_pack.inspect(base)
    paths = [p for p in _paths(doc) if p]
    keys = paths[pick % len(paths)]

    def edit(d):
        node = d
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = json.loads(json.dumps(value))

    _outcome(manifest_edit(base, edit))


@_SETTINGS
@given(model=st.sampled_from([m for m in MODELS if m != "pipeline"]),
       section=st.integers(0, 2**31),
       edits=st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), min_size=1,
                      max_size=4))
def test_resealed_chunk_mutations(model, section, edits):
    parts = split(model_file(model))
    index = section % len(parts.sections)
    chunks = [bytearray(c) for c in parts.chunks(index)]
    for position, value in edits:
        chunk = chunks[position % len(chunks)]
        chunk[(position // 7) % len(chunk)] = value
    parts.seal(index, [bytes(c) for c in chunks])
    _outcome(parts.build())


# -- fuzzing that reaches predict --------------------------------------------------------------
#
# The fuzzers above only load.  Here every mutant that *loads* is also used: for each family of
# models whose state reaches native code, hypothesis mutates manifest fields and (re-sealed)
# chunk bytes, the mutants that load are collected, and one subprocess loads each of them again
# (eagerly, and lazily for ensembles) and calls every method of its predict family.  A crash,
# a hang, unbounded memory or a non-MiloError escaping load fails the test; a Python exception
# or a different answer does not (fuzzed values are nonsense by design).

PREDICT_FAMILIES = ["forest_packed", "forest_deep", "extra_trees_reg", "iforest", "bagging",
                    "gb_clf", "hgb_clf", "hgb_cat", "kmeans", "bisecting_kmeans", "birch",
                    "logreg_multi", "svc", "svc_proba_sparse", "nusvc_precomputed", "knn_kd",
                    "knn_brute", "radius_clf", "lda", "polynomial_sparse", "count_vectorizer",
                    "one_hot", "feature_hasher"]
PREDICT_EXAMPLES = 400 if os.environ.get("MILO_DIFFERENTIAL") == "full" else 40


def _mutate_manifest(parts, pick: int, value) -> bytes:
    doc = copy.deepcopy(parts.manifest)
    paths = [p for p in _paths(doc) if p and p[0] == "root"]
    keys = paths[pick % len(paths)]
    node = doc
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = json.loads(json.dumps(value))
    return type(parts)(doc, parts.sections).build()


def _mutate_chunk(parts, section: int, edits) -> bytes:
    if not parts.sections:
        return parts.build()
    mutant = type(parts)(copy.deepcopy(parts.manifest), list(parts.sections))
    index = section % len(mutant.sections)
    chunks = [bytearray(c) for c in mutant.chunks(index)]
    for position, value in edits:
        chunk = chunks[position % len(chunks)]
        chunk[(position // 7) % len(chunk)] = value
    mutant.seal(index, [bytes(c) for c in chunks])
    return mutant.build()


@pytest.mark.parametrize("name", PREDICT_FAMILIES)
def test_accepted_mutants_predict_without_crashing(name, tmp_path):
    from .differential import Mutant, expected_outputs, run_mutants
    from .families import FAMILIES

    family = FAMILIES[name]
    model, X = family.make(), family.X()
    parts = split(milo_pack.dumps(model))
    accepted: list[Mutant] = []

    @settings(max_examples=PREDICT_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(
        st.tuples(st.just("manifest"), st.integers(0, 2**31), json_values),
        st.tuples(st.just("chunk"), st.integers(0, 2**31),
                  st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)),
                           min_size=1, max_size=4))))
    def search(mutation):
        kind, where, what = mutation
        try:
            data = (_mutate_manifest(parts, where, what) if kind == "manifest"
                    else _mutate_chunk(parts, where, what))
            milo_pack.loads(data)
        except MiloError:
            return
        accepted.append(Mutant(f"{kind}{len(accepted)}", data))

    search()
    outcomes = run_mutants(family, accepted, tmp_path, expected_outputs(model, X, family.methods),
                           X)
    bad = {case: outcome for case, outcome in outcomes.items()
           if outcome.startswith(("CRASHED", "HANG", "LOADERR", "NOT RUN"))
           or "MEMORY" in outcome}
    assert not bad, "\n".join(f"{c}: {o}" for c, o in sorted(bad.items()))
