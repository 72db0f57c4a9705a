"""Values users hit beyond numbers and arrays: each round-trips as data, types and state exact.

collections (OrderedDict, defaultdict with an allow-listed factory, Counter, deque), dates and
times with their zones, enum members, ``functools.partial`` of allow-listed functions,
``operator`` functions and getters, ``range`` and the ``map``/``range`` types, numpy seed
sequences; and the things refused by design, with a message saying why and what to do.
"""

from __future__ import annotations

import collections
import datetime
import enum
import functools
import io
import json
import operator
import re
import zipfile
import zoneinfo

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.preprocessing import FunctionTransformer

import milo_pack
from milo_pack.errors import ManifestError, UnsupportedTypeError, UntrustedTypeError

from .attacks.craft import manifest_edit
from .common import assert_same, roundtrip


def _manifest(data: bytes) -> dict:
    return json.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))


class Colour(enum.Enum):  # a user's own enum: saved by name, loaded when trusted
    RED = 1
    GREEN = "g"


class MyEstimator(BaseEstimator):  # a user's own estimator
    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def fit(self, X, y=None):
        self.mean_ = np.mean(X, axis=0)
        return self


def _user_square(x):
    return x * x


VALUES = {
    "ordered": collections.OrderedDict([("b", 1), ("a", [2, 3]), (3, None)]),
    "defaultdict-list": collections.defaultdict(list, {"x": [1], "y": []}),
    "defaultdict-int": collections.defaultdict(int, {1: 2}),
    "defaultdict-none": collections.defaultdict(None, {"k": "v"}),
    "defaultdict-numpy": collections.defaultdict(np.float64),
    "counter": collections.Counter("mississippi"),
    "deque": collections.deque([1, "a", (2, 3)]),
    "deque-maxlen": collections.deque([1, 2], maxlen=5),
    "nested": collections.OrderedDict(a=collections.Counter(a=1), b=collections.deque([[]])),
    "datetime": datetime.datetime(2024, 2, 29, 23, 59, 58, 123456),
    "datetime-utc": datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
    "datetime-offset": datetime.datetime(1999, 12, 31, 12, tzinfo=datetime.timezone(
        datetime.timedelta(hours=5, minutes=30), "IST")),
    "datetime-zone-fold": datetime.datetime(2021, 10, 31, 2, 30, fold=1,
                                            tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
    "date": datetime.date(1, 1, 1),
    "time": datetime.time(13, 14, 15, 16),
    "time-zone": datetime.time(1, 2, tzinfo=datetime.timezone(-datetime.timedelta(hours=3))),
    "timedelta": datetime.timedelta(days=-3, seconds=5, microseconds=7),
    "timedelta-max": datetime.timedelta.max,
    "timezone": datetime.timezone(datetime.timedelta(minutes=-90)),
    "zone": zoneinfo.ZoneInfo("America/New_York"),
    "regex-flag": re.IGNORECASE,
    "regex-flags": re.IGNORECASE | re.MULTILINE,
    "range": range(1, 100, 7),
    "range-negative": range(10, -10, -3),
    "range-big": range(2**70),
    "types": [map, range, filter, zip, frozenset],
    "operator": [operator.neg, operator.add, operator.getitem, operator.truth],
    "attrgetter": operator.attrgetter("real", "imag"),
    "itemgetter": operator.itemgetter(0, "a", (1, 2)),
}


@pytest.mark.parametrize("name", sorted(VALUES))
def test_values_roundtrip_with_exact_types(name: str) -> None:
    value = VALUES[name]
    loaded = roundtrip(value)
    assert type(loaded) is type(value)
    if isinstance(value, (operator.attrgetter, operator.itemgetter)):
        assert loaded.__reduce__() == value.__reduce__()
    else:
        assert_same(value, loaded)
        assert loaded == value


def test_collections_keep_what_makes_them_what_they_are() -> None:
    d = roundtrip(collections.defaultdict(list))
    d["new"].append(1)  # the factory works
    assert d == {"new": [1]} and d.default_factory is list
    assert roundtrip(collections.deque([1, 2], maxlen=2)).maxlen == 2
    assert list(roundtrip(collections.OrderedDict([(2, 0), (1, 0)]))) == [2, 1]
    assert roundtrip(collections.Counter(a=3)).most_common(1) == [("a", 3)]
    shared = collections.OrderedDict(x=1)
    a, b = roundtrip([shared, shared])
    assert a is b


def test_dates_keep_zone_and_fold() -> None:
    value = VALUES["datetime-zone-fold"]
    loaded = roundtrip(value)
    assert loaded.fold == 1 and loaded.tzinfo is zoneinfo.ZoneInfo("Europe/Paris")
    assert loaded.utcoffset() == value.utcoffset()
    assert roundtrip(datetime.timezone.utc) is datetime.timezone.utc
    assert roundtrip(VALUES["datetime-offset"]).tzname() == "IST"


def test_a_defaultdict_factory_must_be_allow_listed() -> None:
    with pytest.raises(UnsupportedTypeError, match="lambda"):
        milo_pack.dumps(collections.defaultdict(lambda: 0))


def test_partial_of_allow_listed_functions_is_data() -> None:
    add10 = functools.partial(np.add, 10)
    loaded = roundtrip(add10)
    assert type(loaded) is functools.partial and loaded.func is np.add
    assert loaded(5) == 15 and loaded.args == (10,)
    clip = roundtrip(functools.partial(np.clip, a_min=0, a_max=1))
    assert clip.keywords == {"a_min": 0, "a_max": 1}
    model = FunctionTransformer(func=functools.partial(np.clip, a_min=0.0, a_max=2.0))
    assert roundtrip(model.fit([[1.0], [2.0]])).transform([[3.0]]).tolist() == [[2.0]]
    node = _manifest(milo_pack.dumps(add10))["root"]
    assert node == {"$type": "functools.partial", "func": {"$type": "function:numpy.add"},
                    "args": [10], "keywords": {}}


def test_partial_of_a_user_function_is_untrusted_and_of_a_lambda_refused() -> None:
    data = milo_pack.dumps(functools.partial(_user_square))
    tag = f"function:{__name__}._user_square"
    assert milo_pack.untrusted_types(data) == [(tag, "func")]
    assert milo_pack.loads(data, trusted=[tag]).func is _user_square
    with pytest.raises(UnsupportedTypeError, match="lambda"):
        milo_pack.dumps(functools.partial(lambda x: x, 1))


def test_a_crafted_partial_cannot_name_anything_but_a_function() -> None:
    data = milo_pack.dumps(functools.partial(np.add, 1))

    def edit(doc):
        doc["root"]["func"] = {"$type": "sklearn.linear_model.LogisticRegression",
                               "params": {}, "attrs": {}}

    with pytest.raises(ManifestError, match="function node"):
        milo_pack.loads(manifest_edit(data, edit))


def test_methodcaller_needs_trust_because_it_calls_a_method_named_by_the_file() -> None:
    caller = operator.methodcaller("sum", axis=0)
    data = milo_pack.dumps(caller)
    assert milo_pack.untrusted_types(data) == [("operator.methodcaller", "<root>")]
    with pytest.raises(UntrustedTypeError):
        milo_pack.loads(data)
    loaded = milo_pack.loads(data, trusted=["operator.methodcaller"])
    assert loaded(np.ones((2, 3))).tolist() == [2.0, 2.0, 2.0]
    assert repr(loaded.__reduce__()) == repr(caller.__reduce__())
    with pytest.raises(UnsupportedTypeError, match="private or dunder"):
        milo_pack.dumps(operator.methodcaller("__reduce__"))
    with pytest.raises(UnsupportedTypeError, match="private or dunder"):
        milo_pack.dumps(operator.attrgetter("__class__"))


def test_user_enum_is_untrusted_until_trusted() -> None:
    data = milo_pack.dumps([Colour.RED, Colour.GREEN])
    tag = f"enum:{__name__}.Colour"
    assert milo_pack.untrusted_types(data) == [(tag, "[0]"), (tag, "[1]")]
    assert milo_pack.loads(data, trusted=[tag]) == [Colour.RED, Colour.GREEN]
    assert _manifest(milo_pack.dumps(re.I | re.M))["root"] == {
        "$type": "enum:re.RegexFlag", "value": 10}


def test_seed_sequence_state_survives_so_spawn_agrees() -> None:
    rng = np.random.default_rng(12345)
    rng.spawn(2)  # children already drawn: the next spawn must not repeat them
    loaded = roundtrip(rng)
    # Compared with the original itself: numpy < 2 deep-copies a Generator without its
    # SeedSequence, so a copy would not be a reference.
    assert [c.random() for c in loaded.spawn(3)] == [c.random() for c in rng.spawn(3)]
    assert loaded.random() == rng.random()
    seq = np.random.SeedSequence(2**100 + 7, spawn_key=(1, 2), pool_size=8, n_children_spawned=4)
    back = roundtrip(seq)
    assert (back.entropy, back.spawn_key, back.pool_size, back.n_children_spawned) == (
        seq.entropy, seq.spawn_key, seq.pool_size, seq.n_children_spawned)
    assert (back.generate_state(4) == seq.generate_state(4)).all()
    bitgen = np.random.PCG64(seq)
    loaded_bitgen = roundtrip(bitgen)
    assert loaded_bitgen.seed_seq.spawn_key == (1, 2)
    assert loaded_bitgen.state == bitgen.state
    # A generator seeded the legacy way has no seed sequence, and keeps none.
    legacy = np.random.MT19937()
    legacy._legacy_seeding(5)
    assert roundtrip(legacy).seed_seq is None


def test_a_seed_sequence_pool_is_bounded() -> None:
    data = milo_pack.dumps(np.random.SeedSequence(1))

    def edit(doc):
        doc["root"]["pool_size"] = 1 << 40

    with pytest.raises(milo_pack.errors.InvariantError, match="pool_size"):
        milo_pack.loads(manifest_edit(data, edit))


def test_user_estimators_do_not_gain_sklearn_version() -> None:
    tag = f"{__name__}.MyEstimator"
    model = MyEstimator(alpha=2.0).fit(np.ones((3, 2)))
    loaded = milo_pack.loads(milo_pack.dumps(model), trusted=[tag])
    assert "_sklearn_version" not in vars(loaded) and vars(loaded) == vars(model) | {
        "mean_": loaded.mean_}
    model._sklearn_version = "mine"  # a user's own attribute of that name is kept
    loaded = milo_pack.loads(milo_pack.dumps(model), trusted=[tag])
    assert loaded._sklearn_version == "mine"


def test_identity_is_kept_for_mutable_objects_only() -> None:
    """Documented in docs/FORMAT.md: shared mutable objects come back shared; immutable values
    (str, bytes, numbers, tuples, frozensets) come back equal, as JSON values do."""
    text, items, array = "a string" * 3, [1], np.arange(3)
    loaded = roundtrip({"a": text, "b": text, "c": items, "d": items, "e": array, "f": array})
    assert loaded["a"] == loaded["b"] == text
    assert loaded["c"] is loaded["d"] and loaded["e"] is loaded["f"]


def test_refusals_by_design_say_why() -> None:
    class Reducing:
        def __reduce__(self):
            return (print, ("hello",))

    with pytest.raises(UnsupportedTypeError, match=r"bound method.*save the object itself"):
        milo_pack.dumps({"f": [].append})
    with pytest.raises(UnsupportedTypeError, match=r"bound method"):
        milo_pack.dumps(MyEstimator().fit)
    with pytest.raises(UnsupportedTypeError, match=r"__reduce__.*milo_pack.register"):
        milo_pack.dumps(Reducing())
    with pytest.raises(UnsupportedTypeError, match="iterator|no handler|__reduce__"):
        milo_pack.dumps(map(abs, [1]))


@pytest.mark.parametrize("edit, error", [
    (lambda d: d["root"].update(value="2020-01-01T00:00:00+01:00"), "naive"),
    (lambda d: d["root"].update(value="not a date"), "ISO"),
    (lambda d: d["root"].update(fold=2), "fold"),
    (lambda d: d["root"].update(tzinfo={"$type": "function:numpy.add"}), "time-zone"),
])
def test_crafted_datetimes_are_refused(edit, error) -> None:
    data = milo_pack.dumps(datetime.datetime(2020, 1, 1))
    with pytest.raises(milo_pack.MiloError, match=error):
        milo_pack.loads(manifest_edit(data, edit))


@pytest.mark.parametrize("key", ["../../etc/passwd", "/etc/localtime", "Europe/../x", "",
                                 "a" * 300, "Not/A_Zone"])
def test_crafted_zone_keys_are_refused(key) -> None:
    data = milo_pack.dumps(zoneinfo.ZoneInfo("UTC"))

    def edit(doc):
        doc["root"]["key"] = key

    with pytest.raises(milo_pack.MiloError):
        milo_pack.loads(manifest_edit(data, edit))


def test_crafted_enum_and_defaultdict_are_refused() -> None:
    data = milo_pack.dumps(re.IGNORECASE)

    def bad_value(doc):
        doc["root"]["value"] = "2"

    with pytest.raises(ManifestError, match="int 'value'"):
        milo_pack.loads(manifest_edit(data, bad_value))
    data = milo_pack.dumps(Colour.RED)

    def bad_name(doc):
        doc["root"]["name"] = "__class__"

    with pytest.raises(ManifestError, match="not a member"):
        milo_pack.loads(manifest_edit(data, bad_name), trusted=[f"enum:{__name__}.Colour"])
    data = milo_pack.dumps(collections.defaultdict(list))

    def bad_factory(doc):
        doc["root"]["default_factory"] = {"$type": "numpy.ndarray", "dtype": "<f8",
                                          "shape": [0], "data": []}

    with pytest.raises(ManifestError, match="default_factory"):
        milo_pack.loads(manifest_edit(data, bad_factory))
