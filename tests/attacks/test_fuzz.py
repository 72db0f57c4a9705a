"""Fuzzing: mutated bytes, manifest fields and (re-sealed) chunks of valid files.

The only acceptable outcomes are a correct load or a :class:`~milo_pack.errors.MiloError`.
Chunks are re-sealed after mutation so the digests match and the data reaches zstd, the filters
and the model validators.  Loading only: predicting with what loads runs in
``test_invariants`` under a subprocess.
"""

from __future__ import annotations

import json

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
