"""Manifest parsing: the orjson fast path gives exactly what the strict parser gives, or steps
aside (duplicate keys, long integers, escaped colons), so the answer never depends on whether
orjson is installed."""

from __future__ import annotations

import json
import random
import struct

import pytest

from milo_pack import manifest
from milo_pack.errors import LimitError, ManifestError
from milo_pack.limits import DEFAULT_LIMITS, Limits


def _strict(data: bytes) -> object:
    """What the strict parser alone answers: the document, or the error type and message."""
    try:
        text = data.decode("utf-8")
        document = manifest._DECODER.decode(text)
    except (ManifestError, ValueError, RecursionError) as exc:
        return ("error", type(exc).__name__)
    return document


def _same(a: object, b: object) -> bool:
    # repr tells -0.0 from 0.0, 1 from 1.0 and True from 1.
    return repr(a) == repr(b)


def _random_float(rng: random.Random) -> float:
    while True:
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if value == value and abs(value) != float("inf"):
            return value


def _random_doc(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return _random_float(rng)
    if kind == 1:
        return rng.choice([0, -1, 2**53, -(2**63), 2**64 - 1, rng.randrange(-10**18, 10**18)])
    if kind == 2:
        return rng.choice(["", "a:b", "::", "é", "\u2028", "x" * 30, "\\u003a", '"q"'])
    if kind == 3:
        return rng.choice([None, True, False])
    if kind == 4:
        return float(rng.choice(["1e-5", "1e300", "-0.0", "0.000123456789012345678", "5e-324"]))
    if kind == 5:
        return [_random_doc(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["a", "b:c", "$type", "k" * 3, "é"]) + str(i): _random_doc(rng, depth + 1)
            for i in range(rng.randrange(4))}


def test_fast_path_agrees_on_random_documents():
    rng = random.Random(13)
    fast = 0
    for _ in range(400):
        doc = {"root": _random_doc(rng)}
        data = json.dumps(doc, ensure_ascii=rng.random() < 0.5,
                          indent=rng.choice([None, 1])).encode()
        parsed = manifest.loads_json(data, DEFAULT_LIMITS)
        assert _same(parsed, _strict(data))
        assert _same(parsed, doc)
        fast += manifest._fast_parse(data) is not None
    # The fast path is taken for most documents when orjson is installed, never without it.
    assert (fast > 200) if manifest._orjson is not None else fast == 0


@pytest.mark.parametrize("text", [
    b'{"a": 1, "a": 2}',
    b'{"a": {"b": 1, "b": 1}}',
    b'{"a": [{"x:y": 1}], "a": 2}',  # the dropped value holds a colon in a string
    b'{"a": "p:q", "b": {"c": 1, "c": "::"}}',
    b'{"a": 1, "\\u0061": 2}',  # the same key, escaped
    b'{"a": "\\u003a", "a": 1}',
    b'{"a": 1, "a": 1, "b": "\\u003A\\u003a"}',
], ids=["top", "nested", "colon_in_dropped", "colon_values", "escaped_key", "escaped_colon",
        "escaped_colons_upper"])
def test_duplicate_keys_refused(text):
    assert manifest._fast_parse(text) is None
    with pytest.raises(ManifestError, match="duplicate key"):
        manifest.loads_json(text, DEFAULT_LIMITS)


@pytest.mark.parametrize("text", [
    b'{"a": 12345678901234567890123}',
    b'{"a": -9223372036854775809}',
    b'{"a": 18446744073709551616}',
    b'{"a": [1, 2, 3' + b", 1" * 3 + b', 1234567890123456789]}',
], ids=["long", "below_int64", "above_uint64", "nineteen_digits"])
def test_long_integers_stay_ints(text):
    assert manifest._fast_parse(text) is None
    doc = manifest.loads_json(text, DEFAULT_LIMITS)
    assert _same(doc, _strict(text))
    value = doc["a"][-1] if isinstance(doc["a"], list) else doc["a"]
    assert type(value) is int


@pytest.mark.parametrize("text, error", [
    (b'{"a": 1e999}', ManifestError),
    (b'{"a": -1e400}', ManifestError),
    (b'{"a": NaN}', ManifestError),
    (b'{"a": Infinity}', ManifestError),
    (b'{"a": "\xff"}', ManifestError),
    (b'{"a": 1,}', ManifestError),
    (b'[1]', ManifestError),
    (b'{"a":' * 300 + b"1" + b"}" * 300, LimitError),
])
def test_refusals_are_the_strict_parsers(text, error):
    with pytest.raises(error):
        manifest.loads_json(text, DEFAULT_LIMITS)


def test_budgets_hold_on_the_fast_path():
    text = json.dumps({"a": list(range(50)), "b": "x" * 100}).encode()
    assert manifest.loads_json(text, DEFAULT_LIMITS)["b"] == "x" * 100
    with pytest.raises(LimitError):
        manifest.loads_json(text, Limits(max_nodes=20))
    with pytest.raises(LimitError):
        manifest.loads_json(text, Limits(max_string_length=50))
    with pytest.raises(LimitError):
        manifest.loads_json(b'{"a": [[[[1]]]]}', Limits(max_depth=3))


def test_decimal_texts_parse_to_the_same_floats():
    """Numbers as any writer may spell them (long fractions, exponents, subnormals): the fast
    path rounds each to the same double as the strict parser."""
    rng = random.Random(7)
    numbers = []
    for _ in range(3000):
        mantissa = str(rng.randrange(1, 10)) + "." + "".join(
            rng.choice("0123456789") for _ in range(rng.randrange(1, 30)))
        exponent = rng.choice(["", f"e{rng.randrange(-330, 308)}", f"E+{rng.randrange(0, 300)}"])
        numbers.append(rng.choice(["", "-"]) + mantissa + exponent)
    text = ('{"v": [' + ", ".join(numbers) + "]}").encode()
    assert (manifest._fast_parse(text) is not None) == (manifest._orjson is not None)
    parsed = manifest.loads_json(text, DEFAULT_LIMITS)["v"]
    assert [struct.pack("<d", v) for v in parsed] == [
        struct.pack("<d", float(n)) for n in numbers]
