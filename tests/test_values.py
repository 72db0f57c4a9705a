"""Round trips of Python, numpy and scipy values: exact, with shared references preserved."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

import milo_pack
from milo_pack.errors import UnsupportedTypeError

from .common import assert_same, roundtrip

PYTHON_VALUES = [
    None, True, False, 0, -1, 2**53, 2**53 + 1, -(2**63), 2**64 + 7, 10**5000, -(10**4500),
    0.0, -0.0, 1.5, math.nan, math.inf, -math.inf, 5e-324, 1.7976931348623157e308,
    1 + 2j, complex(math.nan, -math.inf), "", "héllo ☃ \x00 \n", "$type", b"", b"\x00\xff" * 3,
    b"x" * 100_000, bytearray(b"abc"), [], [1, [2, [3]]], (), (1, "a", None), {}, {"a": 1},
    {"$type": "not a tag", "$ref": 3}, {1: "a", (2, 3): [4], None: 5, 1.5: 6, frozenset({1}): 7},
    set(), {1, 2, 3}, {"b", "a"}, frozenset({"x", 1}), slice(1, None, -2), slice(None),
    [math.nan, -0.0, {"k": (1, 2)}],
]


@pytest.mark.parametrize("value", PYTHON_VALUES, ids=lambda v: type(v).__name__)
def test_python_values(value):
    loaded = roundtrip(value)
    assert_same(value, loaded)


def test_shared_references_come_back_shared():
    inner = [1, 2]
    d = {"x": 1}
    arr = np.arange(100.0)
    obj = {"a": inner, "b": inner, "c": (d, d), "e": [arr, arr]}
    loaded = roundtrip(obj)
    assert loaded["a"] is loaded["b"]
    assert loaded["c"][0] is loaded["c"][1]
    assert loaded["e"][0] is loaded["e"][1]
    assert loaded == {k: v for k, v in loaded.items()}


def test_self_referencing_list_and_dict():
    lst: list = [1]
    lst.append(lst)
    d: dict = {}
    d["me"] = d
    loaded = roundtrip([lst, d])
    assert loaded[0][1] is loaded[0]
    assert loaded[1]["me"] is loaded[1]


def test_views_of_the_same_memory_are_stored_once():
    base = np.random.default_rng(0).random((2000, 50))
    view = base[:]  # a different array object over the same memory
    data_once = milo_pack.dumps([base])
    data_twice = milo_pack.dumps([base, view])
    assert len(data_twice) < len(data_once) + 200
    a, b = milo_pack.loads(data_twice)
    assert a is b and np.array_equal(a, base)


NUMERIC_DTYPES = ["?", "i1", "u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4",
                  "<f8", "<c8", "<c16", ">i4", ">f8", ">u2", "<M8[ns]", "<m8[s]", "<U7", "|S5"]


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (3,), (5, 7), (40, 3, 2), (200_000,)])
@pytest.mark.parametrize("level", [0, 3])
def test_arrays_every_dtype_and_shape(dtype, shape, level):
    rng = np.random.default_rng(1)
    count = math.prod(shape)
    dt = np.dtype(dtype)
    if dt.kind in "US":
        raw = rng.integers(0, 10**6, size=count).astype(str)
        arr = np.array([s[: dt.itemsize // (4 if dt.kind == "U" else 1)] for s in raw],
                       dtype=dt).reshape(shape)
    elif dt.kind in "Mm":
        arr = rng.integers(-(10**12), 10**12, size=count).astype(dt).reshape(shape)
    else:
        arr = (rng.standard_normal(count) * 1000).astype(dt).reshape(shape)
        if dt.kind in "fc" and count:
            arr.reshape(-1)[0] = np.nan
    loaded = roundtrip(arr, level=level)
    assert loaded.dtype == arr.dtype and loaded.shape == arr.shape
    assert loaded.tobytes() == arr.tobytes()


def test_array_layouts():
    base = np.arange(600, dtype=np.float64).reshape(20, 30)
    fortran = np.asfortranarray(base)
    loaded = roundtrip(fortran)
    assert loaded.flags.f_contiguous and np.array_equal(loaded, base)
    strided = base[::3, ::2]
    assert np.array_equal(roundtrip(strided), strided)
    column = base[:, 7]
    assert np.array_equal(roundtrip(column), column)
    big_endian = base.astype(">f8")
    loaded = roundtrip(big_endian)
    assert loaded.dtype == np.dtype(">f8") and np.array_equal(loaded, base)


def test_int_filters_roundtrip_extremes():
    for dtype in (np.int64, np.uint64, np.int32, np.int8):
        info = np.iinfo(dtype)
        arr = np.array([info.min, info.max, 0, 1, info.max - 1] * 30_000, dtype=dtype)
        assert np.array_equal(roundtrip(arr), arr)
    monotone = np.cumsum(np.random.default_rng(0).integers(0, 5, 300_000)).astype(np.int64)
    assert np.array_equal(roundtrip(monotone), monotone)


def test_object_arrays():
    mixed = np.array(["a", None, 1, 2.5, "é"], dtype=object)
    assert_same(mixed, roundtrip(mixed))
    many = np.array([f"feature_{i}_☃" for i in range(5000)], dtype=object)
    loaded = roundtrip(many)
    assert_same(many, loaded)
    nested = np.empty(2, dtype=object)
    nested[0], nested[1] = np.arange(3), [1, 2]
    assert_same(nested, roundtrip(nested))
    two_d = np.array([["x", "y"], ["z", "w"]], dtype=object)
    assert_same(two_d, roundtrip(two_d))


def test_structured_array():
    dt = np.dtype([("a", "<i8"), ("b", "<f4"), ("c", "u1")])
    arr = np.zeros(1000, dtype=dt)
    arr["a"] = np.arange(1000)
    arr["b"] = np.linspace(0, 1, 1000)
    arr["c"] = 7
    loaded = roundtrip(arr)
    assert loaded.dtype == dt and loaded.tobytes() == arr.tobytes()


def test_numpy_scalars_and_dtypes():
    values = [np.float64(1.5), np.float32(np.nan), np.int8(-3), np.uint64(2**64 - 1),
              np.bool_(True), np.complex64(1 - 2j), np.str_("hé"), np.bytes_(b"\x01"),
              np.datetime64("2020-01-01T00:00:00"), np.dtype("float32"), np.dtype(">i2"),
              np.dtype(object), np.float64, np.int32, float, np.log1p, np.mean]
    for value in values:
        loaded = roundtrip(value)
        assert type(loaded) is type(value)
        if isinstance(value, np.generic):
            assert loaded.dtype == value.dtype and loaded.tobytes() == value.tobytes()
        else:
            assert loaded == value


def test_masked_array():
    arr = np.ma.MaskedArray(np.array(["a", "b", "c"], dtype=object), mask=[False, True, False])
    loaded = roundtrip(arr)
    assert isinstance(loaded, np.ma.MaskedArray)
    assert np.array_equal(loaded.mask, arr.mask)
    assert list(loaded.data) == list(arr.data)


def test_random_state_and_generator():
    rs = np.random.RandomState(42)
    rs.random_sample(7)
    loaded = roundtrip(rs)
    assert np.array_equal(loaded.random_sample(5), rs.random_sample(5))
    for bitgen in (np.random.PCG64, np.random.MT19937, np.random.Philox, np.random.SFC64,
                   np.random.PCG64DXSM):
        gen = np.random.Generator(bitgen(3))
        gen.random(3)
        loaded = roundtrip(gen)
        assert np.array_equal(loaded.random(4), gen.random(4))


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "bsr", "dia", "lil", "dok"])
@pytest.mark.parametrize("kind", ["matrix", "array"])
def test_sparse(fmt, kind):
    dense = sp.random(60, 40, density=0.1, random_state=0, format="csr").toarray()
    if fmt == "bsr":
        dense = np.kron(dense[:30, :20], np.ones((2, 2)))
    make = getattr(sp, f"{fmt}_{kind}")
    mat = make(dense)
    loaded = roundtrip(mat)
    assert type(loaded) is type(mat)
    assert np.array_equal(loaded.toarray(), mat.toarray())
    if fmt in ("csr", "csc", "bsr"):
        assert loaded.indices.dtype == mat.indices.dtype
        assert loaded.indptr.dtype == mat.indptr.dtype


def test_sparse_int64_indices_are_preserved():
    mat = sp.random(100, 100, density=0.05, random_state=0, format="csr")
    mat.indices = mat.indices.astype(np.int64)
    mat.indptr = mat.indptr.astype(np.int64)
    loaded = roundtrip(mat)
    assert loaded.indices.dtype == np.int64 and loaded.indptr.dtype == np.int64


def test_metadata():
    data = milo_pack.dumps([1, 2], metadata={"author": "me", "score": 0.93, "tags": ("a",)})
    with milo_pack.open(data) as handle:
        assert handle.manifest["metadata"]["author"] == "me"
        assert handle.metadata() == {"author": "me", "score": 0.93, "tags": ("a",)}
        assert handle.load() == [1, 2]


def test_unsupported_types_name_their_path():
    class Custom:
        pass

    with pytest.raises(UnsupportedTypeError) as info:
        milo_pack.dumps({"model": [1, {"x": Custom()}]})
    assert "model[1].x" in str(info.value) and "Custom" in str(info.value)
    with pytest.raises(UnsupportedTypeError, match=r"f\b|lambda"):
        milo_pack.dumps({"f": lambda x: x})
    with pytest.raises(UnsupportedTypeError):
        milo_pack.dumps(np.array([object()], dtype=object))
