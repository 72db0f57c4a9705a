"""Object reconstruction: tags outside the registry, parameters, attribute hygiene, trust."""

from __future__ import annotations

import pytest

import milo_pack
from milo_pack.errors import InvariantError, ManifestError, UntrustedTypeError

from .craft import manifest_edit, model_file, refused

EVIL_TAGS = [
    "os.system", "builtins.eval", "builtins.exec", "function:os.system",
    "function:builtins.eval", "type:subprocess.Popen", "type:builtins.type",
    "function:numpy.load", "partial:os.system", "posix.system", "pickle.loads",
    "joblib.load", "sklearn.utils._joblib.load", "__import__", "getattr", "method:os.system",
    "reduce", "sklearn.pipeline._pipeline.Pipeline",
    # one character away from trusted tags: case, whitespace, unicode look-alikes
    "sklearn.pipeline.pipeline", "SKLEARN.pipeline.Pipeline", "sklearn.pipeline.Pipeline ",
    " sklearn.pipeline.Pipeline", "sklearn.pipeline.Pipel\u0456ne",
    "sklearn.pipeline.Pipeline\u200b",
    "sklearn.pipeline.Pipeline\n", "sklearn\uff0epipeline.Pipeline",
]


@pytest.mark.parametrize("tag", EVIL_TAGS)
def test_unknown_tags_are_untrusted(tag):
    def edit(doc):
        doc["root"]["$type"] = tag

    data = manifest_edit(model_file("pipeline"), edit)
    error = refused(data, UntrustedTypeError)
    assert error.tags == (tag,)
    # Trusting the real tag does not make a look-alike acceptable.
    refused(data, UntrustedTypeError, trusted=["sklearn.pipeline.Pipeline"])


def test_trusting_a_non_estimator_class_builds_nothing():
    def edit(doc):
        doc["root"] = {"$type": "subprocess.Popen", "params": {"args": "true"}, "attrs": {}}

    refused(manifest_edit(model_file("pipeline"), edit), UntrustedTypeError,
            trusted=["subprocess.Popen"])


def _params(**changes):
    def edit(doc):
        doc["root"]["params"].update(changes)
    return edit


def _attrs(**changes):
    def edit(doc):
        doc["root"]["attrs"].update(changes)
    return edit


def _step_attrs(**changes):
    def edit(doc):
        doc["root"]["params"]["steps"][1]["items"][1]["attrs"].update(changes)
    return edit


OBJECTS = [
    ("param_not_in_signature", _params(evil=1), ManifestError),
    ("param_dunder", _params(__class__="x"), ManifestError),
    ("memory_path", _params(memory="/tmp/x"), ManifestError),
    ("memory_object", _params(memory={"$type": "tuple", "items": ["/tmp/x"]}), ManifestError),
    ("attr_dunder_class", _attrs(__class__="x"), ManifestError),
    ("attr_dunder_dict", _attrs(__dict__={}), ManifestError),
    ("attr_dunder_reduce", _attrs(__reduce__=1), ManifestError),
    ("attr_dunder_setstate", _attrs(__setstate__=1), ManifestError),
    ("attr_shadows_predict", _attrs(predict=1), ManifestError),
    ("attr_shadows_fit", _attrs(fit=1), ManifestError),
    ("attr_shadows_property_n_features_in_", _attrs(n_features_in_=4), ManifestError),
    ("attr_shadows_property_classes_", _attrs(classes_=[0, 1]), ManifestError),
    ("attr_not_identifier", _attrs(**{"a b": 1}), ManifestError),
    ("attr_both_param_and_attr", _attrs(verbose=True), ManifestError),
    ("nested_attr_shadows_method", _step_attrs(predict_proba=1), ManifestError),
    ("nested_attr_dunder", _step_attrs(__class__=1), ManifestError),
    ("params_not_object", lambda doc: doc["root"].update(params=[1]), ManifestError),
    ("attrs_not_object", lambda doc: doc["root"].update(attrs="x"), ManifestError),
]


@pytest.mark.parametrize("edit, error", [c[1:] for c in OBJECTS], ids=[c[0] for c in OBJECTS])
def test_objects(edit, error):
    refused(manifest_edit(model_file("pipeline"), edit), error)


def _root_value(value):
    def edit(doc):
        doc["root"]["params"]["verbose"] = value
    return edit


VALUES = [
    ("partial_unknown_keyword", {"$type": "partial:sklearn.utils.check_array",
                                 "keywords": {"func": 1}}, ManifestError),
    ("random_state_bogus", {"$type": "numpy.random.RandomState",
                            "state": {"bit_generator": "MT19937", "state": {"key": [1]}}},
     InvariantError),
    ("generator_named_os_system", {"$type": "numpy.random.Generator",
                                   "bit_generator": "os.system", "state": {}}, InvariantError),
    ("bit_generator_huge_state", {"$type": "numpy.random.PCG64", "state": {
        "bit_generator": "PCG64", "state": {"state": 2**200, "inc": 1}, "has_uint32": 0,
        "uinteger": 0}}, InvariantError),
    ("bunch_items_list", {"$type": "sklearn.utils.Bunch", "items": [1]}, ManifestError),
]


@pytest.mark.parametrize("value, error", [c[1:] for c in VALUES], ids=[c[0] for c in VALUES])
def test_values(value, error):
    refused(manifest_edit(model_file("pipeline"), _root_value(value)), error)


def test_untrusted_types_lists_nested_tags_with_paths():
    def edit(doc):
        steps = doc["root"]["params"]["steps"]
        inner = {"$type": "my.Inner", "$id": 900, "params": {}, "attrs": {}}
        steps[1]["items"][1] = {"$type": "my.Outer", "params": {"inner": inner,
                                                                "again": {"$ref": 900}},
                                "attrs": {"deep": [{"$type": "other.Thing", "state": {}}]}}

    data = manifest_edit(model_file("pipeline"), edit)
    found = milo_pack.untrusted_types(data)
    assert [tag for tag, _ in found] == ["my.Outer", "my.Inner", "other.Thing"]
    paths = dict(found)
    assert paths["my.Outer"].endswith("steps[1][1]")
    assert paths["my.Inner"].endswith("steps[1][1].inner")
    assert paths["other.Thing"].endswith("steps[1][1].deep[0]")
    error = refused(data, UntrustedTypeError)
    assert set(error.tags) == {"my.Outer", "my.Inner", "other.Thing"}
