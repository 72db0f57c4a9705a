"""The manifest: strict JSON, budgets, schema, filters, ``$id``/``$ref``, wrong types."""

from __future__ import annotations

import json

import pytest

import milo_pack
from milo_pack.errors import LimitError, ManifestError, MiloError

from .craft import floats_file, manifest_edit, model_file, raw_manifest, refused

_META = b'"metadata": null'


def _meta(text: str) -> bytes:
    """The floats file with ``metadata`` replaced by raw JSON text."""
    base = floats_file()
    manifest = milo_pack.container.ContainerReader(__import__("io").BytesIO(base)).read_manifest()
    assert manifest.count(_META) == 1
    return raw_manifest(base, manifest.replace(_META, b'"metadata": ' + text.encode()))


RAW_JSON = [
    ("nan_literal", "NaN", ManifestError),
    ("infinity_literal", "Infinity", ManifestError),
    ("minus_infinity_literal", "[-Infinity]", ManifestError),
    ("overflowing_number", "1e999", ManifestError),
    ("huge_int_literal", "1" * 5000, ManifestError),
    ("duplicate_key", '{"a": 1, "a": 2}', ManifestError),
    ("deep_nesting_1e5", "[" * 100_000 + "]" * 100_000, LimitError),
    ("deep_nesting_300", '{"a":' * 300 + "1" + "}" * 300, LimitError),
    ("huge_string", '"' + "x" * (17 << 20) + '"', LimitError),
    ("bad_json", "[1, 2", ManifestError),
    ("lone_surrogate_escape", '"\\udc80"', None),  # valid JSON: loads
]


@pytest.mark.parametrize("text, error", [c[1:] for c in RAW_JSON], ids=[c[0] for c in RAW_JSON])
def test_raw_json(text, error):
    data = _meta(text)
    if error is None:
        milo_pack.loads(data)
    else:
        refused(data, error)


@pytest.mark.parametrize("text, error", [
    (b"\xff\xfe{}", ManifestError),
    (b"[]", ManifestError),
    (b'{"format": "milo_pack"} {"x": 1}', ManifestError),
], ids=["not_utf8", "not_an_object", "two_documents"])
def test_whole_manifest(text, error):
    refused(raw_manifest(floats_file(), text), error)


def test_duplicate_top_level_key():
    base = floats_file()
    text = milo_pack.container.ContainerReader(__import__("io").BytesIO(base)).read_manifest()
    refused(raw_manifest(base, text.replace(_META, _META + b', "metadata": 1')), ManifestError)


def test_too_many_nodes():
    data = _meta(json.dumps(list(range(2000))))
    with pytest.raises(LimitError):
        milo_pack.loads(data, limits=milo_pack.Limits(max_nodes=1000))


def test_too_many_objects():
    data = _meta(json.dumps([{"$type": "tuple", "items": []}] * 50))
    with pytest.raises(LimitError):
        milo_pack.loads(data, limits=milo_pack.Limits(max_objects=10))


def _set(*keys, value):
    def edit(doc):
        node = doc
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return edit


def _delete(key):
    return lambda doc: doc.pop(key)


def _section(key, value):
    return _set("sections", 0, key, value=value)


def _filters(*configs):
    return _set("sections", 0, "filters", value=list(configs))


# Edits of the floats file's manifest (section 0 is a float64 section, root a dict).
SCHEMA = [
    ("format_version_2", _set("format_version", value=2), ManifestError),
    ("format_version_str", _set("format_version", value="1"), ManifestError),
    ("format_version_true", _set("format_version", value=True), ManifestError),
    ("format_version_float", _set("format_version", value=1.0), ManifestError),
    ("format_name", _set("format", value="pickle"), ManifestError),
    ("extra_top_level_key", _set("exec", value="rm -rf /"), ManifestError),
    ("missing_top_level_key", _delete("writer"), ManifestError),
    ("writer_not_dict", _set("writer", value=["x"]), ManifestError),
    ("sections_not_list", _set("sections", value={}), ManifestError),
    ("section_extra_key", _section("path", "/etc/passwd"), ManifestError),
    ("section_length_negative", _section("length", -1), ManifestError),
    ("section_length_bool", _section("length", True), ManifestError),
    ("section_length_huge", _section("length", 10**10), LimitError),
    ("section_length_big_tiny_data", _section("length", 10**9), ManifestError),
    ("section_codec_unknown", _section("codec", "lz4"), ManifestError),
    ("section_digest_md5", _section("digest", "md5:00"), ManifestError),
    ("section_chunk_too_big", _section("chunk_length", 1 << 30), LimitError),
    ("filter_unknown", _filters({"id": "pickle"}), ManifestError),
    ("filter_not_object", _filters("shuffle"), ManifestError),
    ("filter_shuffle_elemsize", _filters({"id": "shuffle", "elemsize": 4}), ManifestError),
    ("filter_delta_on_floats", _filters({"id": "delta"}), ManifestError),
    ("filter_narrow_on_floats", _filters({"id": "narrow", "dtype": "|i1"}), ManifestError),
    ("filter_extra_param", _filters({"id": "shuffle", "elemsize": 8, "x": 1}), ManifestError),
    ("filter_twice", _filters({"id": "shuffle", "elemsize": 8}, {"id": "shuffle",
                                                                  "elemsize": 8}),
     ManifestError),
    ("ref_unknown_id", _set("root", "b", value={"$ref": 99}), ManifestError),
    ("ref_extra_key", _set("root", "b", value={"$ref": 0, "x": 1}), ManifestError),
    ("ref_not_int", _set("root", "b", value={"$ref": "0"}), ManifestError),
    ("id_reused", _set("root", "b", value=[{"$type": "tuple", "$id": 1, "items": []},
                                           {"$type": "tuple", "$id": 1, "items": []}]),
     ManifestError),
    ("id_negative", _set("root", "b", value={"$type": "tuple", "$id": -1, "items": []}),
     ManifestError),
    ("cycle_through_tuple", _set("root", "b", value={"$type": "tuple", "$id": 0,
                                                     "items": [{"$ref": 0}]}), ManifestError),
    ("cycle_through_two_tuples", _set("root", "b", value={
        "$type": "tuple", "$id": 0, "items": [
            {"$type": "tuple", "$id": 1, "items": [{"$ref": 0}]}]}), ManifestError),
    ("type_not_string", _set("root", "b", value={"$type": ["tuple"], "items": []}),
     ManifestError),
    ("dollar_key_in_dict", _set("root", "b", value={"$class": "os.system"}), ManifestError),
    ("handler_extra_key", _set("root", "b", value={"$type": "tuple", "items": [], "x": 1}),
     ManifestError),
    ("handler_missing_key", _set("root", "b", value={"$type": "tuple"}), ManifestError),
    ("items_not_list", _set("root", "b", value={"$type": "tuple", "items": "abc"}),
     ManifestError),
    ("int_node_bad_value", _set("root", "b", value={"$type": "int", "value": "1e9"}),
     ManifestError),
    ("float_node_bad_value", _set("root", "b", value={"$type": "float", "value": "1.5"}),
     ManifestError),
    ("bytes_bad_base64", _set("root", "b", value={"$type": "bytes", "base64": "!!"}),
     ManifestError),
    ("dict_items_not_pairs", _set("root", "b", value={"$type": "dict", "items": [[1]]}),
     ManifestError),
    ("unreferenced_section", _set("root", value={"a": 1}), ManifestError),
]


@pytest.mark.parametrize("edit, error", [c[1:] for c in SCHEMA], ids=[c[0] for c in SCHEMA])
def test_schema(edit, error):
    refused(manifest_edit(floats_file(), edit), error)


def test_deep_reference_chain_is_a_limit_error():
    chain = [{"$type": "tuple", "$id": i, "items": [{"$ref": i + 1}]} for i in range(20_000)]
    chain.append({"$type": "tuple", "$id": 20_000, "items": []})
    refused(manifest_edit(floats_file(), _set("root", "b", value=chain)), LimitError)


_ALTERNATIVES = [None, True, -1, 2**70, 1.5, "x", "nan", [], [1, "a"], {}, {"$ref": 0},
                 {"$type": "tuple", "items": [None]}]


def _positions(node, keys=()):
    """Every (keys) path to a value in the manifest's root."""
    yield keys
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _positions(v, (*keys, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:4]):
            yield from _positions(v, (*keys, i))


@pytest.mark.parametrize("model", ["tree", "pipeline", "hgb", "sparse"])
def test_wrong_types_everywhere(model):
    """Replace every manifest value under root by values of other types: the only outcomes
    are a load or a MiloError (no TypeError, KeyError, AttributeError... leaks)."""
    base = model_file(model)
    doc = milo_pack.inspect(base)
    positions = [("root", *p) for p in _positions(doc["root"]) if p]
    positions += [("sections", 0, k) for k in doc["sections"][0]] if doc["sections"] else []
    step = max(1, len(positions) // 150)  # bounded time: about 150 edits per model
    for i, keys in enumerate(positions[::step]):
        value = _ALTERNATIVES[i % len(_ALTERNATIVES)]
        data = manifest_edit(base, _set(*keys, value=value))
        try:
            milo_pack.loads(data)
        except MiloError:
            pass


def _retype_first(tag: str, key: str, value):
    def edit(doc):
        stack = [doc["root"]]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if node.get("$type") == tag:
                    node[key] = value
                    return
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
        raise AssertionError(f"no {tag} node")
    return edit


def test_a_check_that_cannot_run_refuses_the_node(monkeypatch):
    """Fail closed as a mechanism: a handler's check that raises anything on a crafted node is a
    ManifestError at the node's path.  (Found by the predict fuzzer: a list as a GradientBoosting
    loss's float bound made the float check's lookup raise TypeError: unhashable type.)"""
    from milo_pack.handlers import builtins

    class Unhashing(dict):  # the lookup raises as it did for a list
        def __contains__(self, key):
            raise TypeError("unhashable type: 'list'")

    data = milo_pack.dumps({"bound": float("inf")})
    monkeypatch.setattr(builtins, "_FLOATS", Unhashing(builtins._FLOATS))
    with pytest.raises(ManifestError, match=r"malformed 'float' node \(TypeError") as info:
        milo_pack.loads(data)
    assert info.value.path == "bound"


def test_a_list_as_a_float_value_is_refused():
    data = manifest_edit(milo_pack.dumps({"bound": float("inf")}),
                         _retype_first("float", "value", []))
    with pytest.raises(ManifestError, match="'float' value must be"):
        milo_pack.loads(data)


def test_a_loader_that_cannot_build_refuses_the_node(monkeypatch):
    """Whatever a validated node still makes a loader raise is an InvariantError naming the node,
    never an untyped exception escaping ``load``."""
    from milo_pack.handlers import builtins

    class Unbuildable(dict):  # passes the check's membership test, fails the loader's lookup
        def __getitem__(self, key):
            raise KeyError(key)

    data = milo_pack.dumps({"when": float("nan")})
    monkeypatch.setattr(builtins, "_FLOATS", Unbuildable(builtins._FLOATS))
    with pytest.raises(milo_pack.errors.InvariantError,
                       match=r"'float' could not be built \(KeyError") as info:
        milo_pack.loads(data)
    assert info.value.path == "when"
