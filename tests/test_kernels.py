"""Tests of the Cython kernels in ``milo_pack._arrays``.

Every kernel is compared with a plain Python/numpy reference written here from the specification
(the formulas in the kernel docstrings), on random inputs from hypothesis that include empty and
odd-length arrays, every supported dtype and extreme values; round trips are checked both ways;
every argument check raises :class:`ArrayError`.  The tree validators are also run against
targeted mutations of valid random trees, each of which must be reported with the right node, and
against trees fitted by scikit-learn.
"""

from __future__ import annotations

import doctest
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from milo_pack import _arrays as K
from milo_pack.errors import ArrayError

SETTINGS = settings(max_examples=150, deadline=None)
FEW = settings(max_examples=60, deadline=None)

INT_DTYPES = [np.dtype(c) for c in ("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8")]
REL_DTYPES = [np.dtype("i4"), np.dtype("i8")]
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


def strided(a: np.ndarray, step: int = 3) -> np.ndarray:
    """A non-contiguous view holding the values of ``a``."""
    big = np.zeros(a.shape[0] * step, dtype=a.dtype)
    big[::step] = a
    return big[::step]


def wrap(value: int, dtype: np.dtype) -> int:
    """``value`` reduced modulo 2**bits into the range of ``dtype``."""
    bits = 8 * dtype.itemsize
    value %= 2**bits
    if dtype.kind == "i" and value >= 2 ** (bits - 1):
        value -= 2**bits
    return value


def test_docstring_examples():
    result = doctest.testmod(K, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


# --- shuffle -------------------------------------------------------------------------------------


def ref_shuffle(data: bytes, es: int) -> bytes:
    n = len(data) // es
    body = bytes(data[i * es + j] for j in range(es) for i in range(n))
    return body + data[n * es :]


def ref_unshuffle(data: bytes, es: int) -> bytes:
    n = len(data) // es
    body = bytes(data[j * n + i] for i in range(n) for j in range(es))
    return body + data[n * es :]


@SETTINGS
@given(data=st.binary(max_size=300), es=st.integers(1, 16))
def test_shuffle_matches_reference(data, es):
    out = np.empty(len(data), np.uint8)
    K.shuffle(data, out, es)
    assert out.tobytes() == ref_shuffle(data, es)
    back = np.empty(len(data), np.uint8)
    K.unshuffle(out, back, es)
    assert back.tobytes() == data
    K.unshuffle(data, out, es)
    assert out.tobytes() == ref_unshuffle(data, es)


@pytest.mark.parametrize("es", range(1, 17))
def test_shuffle_large_against_numpy(es):
    # Long enough for many blocks, with a ragged tail.
    rng = np.random.default_rng(es)
    src = rng.integers(0, 256, size=es * 3001 + es // 2, dtype=np.uint8)
    n = src.shape[0] // es
    expected = np.concatenate([src[: n * es].reshape(n, es).T.ravel(), src[n * es :]])
    out = np.empty_like(src)
    K.shuffle(src, out, es)
    np.testing.assert_array_equal(out, expected)
    back = np.empty_like(src)
    K.unshuffle(out, back, es)
    np.testing.assert_array_equal(back, src)


def test_shuffle_accepts_buffers_and_typed_arrays():
    values = np.arange(10, dtype="<u4")
    expected = values.view(np.uint8).reshape(10, 4).T.ravel()
    for src in (
        values,
        values.tobytes(),
        bytearray(values.tobytes()),
        memoryview(values.tobytes()),
        readonly(values),
    ):
        out = np.zeros(40, np.uint8)
        K.shuffle(src, out, 4)
        np.testing.assert_array_equal(out, expected)
    out = bytearray(40)
    K.shuffle(values, out, 4)
    assert bytes(out) == expected.tobytes()
    out2d = np.zeros((5, 8), np.uint8)
    K.shuffle(values, out2d, 4)
    assert out2d.tobytes() == expected.tobytes()


@pytest.mark.parametrize("func", [K.shuffle, K.unshuffle])
def test_shuffle_errors(func):
    src = np.arange(16, dtype=np.uint8)
    out = np.empty(16, np.uint8)
    with pytest.raises(ArrayError, match="elemsize"):
        func(src, out, 0)
    with pytest.raises(ArrayError, match="elemsize"):
        func(src, out, 17)
    with pytest.raises(ArrayError, match="integer"):
        func(src, out, 4.0)
    with pytest.raises(ArrayError, match="length"):
        func(src, np.empty(15, np.uint8), 4)
    with pytest.raises(ArrayError, match="read-only"):
        func(src, bytes(16), 4)
    with pytest.raises(ArrayError, match="read-only"):
        func(src, readonly(out), 4)
    with pytest.raises(ArrayError, match="share memory"):
        func(src, src, 4)
    buf = np.arange(24, dtype=np.uint8)
    with pytest.raises(ArrayError, match="share memory"):
        func(buf[:16], buf[8:], 4)
    with pytest.raises(ArrayError, match="contiguous"):
        func(np.arange(32, dtype=np.uint8)[::2], out, 4)
    with pytest.raises(ArrayError, match="contiguous"):
        func(src, np.empty(32, np.uint8)[::2], 4)
    with pytest.raises(ArrayError, match="objects"):
        func(np.array([None] * 2, dtype=object), out, 4)
    with pytest.raises(ArrayError, match="buffer"):
        func("not bytes", out, 4)
    with pytest.raises(ArrayError, match="buffer"):
        func(memoryview(bytes(32))[::2], out, 4)


# --- delta ---------------------------------------------------------------------------------------


def ref_delta_encode(values: list[int], dtype: np.dtype) -> list[int]:
    return [wrap(v - (values[i - 1] if i else 0), dtype) for i, v in enumerate(values)]


def ref_delta_decode(values: list[int], dtype: np.dtype) -> list[int]:
    out, acc = [], 0
    for v in values:
        acc = wrap(acc + v, dtype)
        out.append(acc)
    return out


@st.composite
def int_arrays(draw, dtypes=INT_DTYPES, max_size=60):
    dtype = draw(st.sampled_from(dtypes))
    return draw(hnp.arrays(dtype, st.integers(0, max_size)))


@SETTINGS
@given(src=int_arrays())
def test_delta_matches_reference(src):
    enc = np.empty_like(src)
    K.delta_encode(readonly(src), enc)
    assert enc.tolist() == ref_delta_encode(src.tolist(), src.dtype)
    dec = np.empty_like(src)
    K.delta_decode(enc, dec)
    np.testing.assert_array_equal(dec, src)
    K.delta_decode(src, dec)
    assert dec.tolist() == ref_delta_decode(src.tolist(), src.dtype)


def test_delta_wraps():
    src = np.array([127, -128, 0, 127], np.int8)
    out = np.empty_like(src)
    K.delta_encode(src, out)
    assert out.tolist() == [127, 1, -128, 127]
    src64 = np.array([I64_MAX, I64_MIN], np.int64)
    out64 = np.empty_like(src64)
    K.delta_encode(src64, out64)
    assert out64.tolist() == [I64_MAX, 1]


@pytest.mark.parametrize("func", [K.delta_encode, K.delta_decode])
def test_delta_errors(func):
    a = np.arange(10, dtype=np.int32)
    with pytest.raises(ArrayError, match="dtype"):
        func(a.astype(np.float64), np.empty(10))
    with pytest.raises(ArrayError, match="dtype"):
        func(a.astype(bool), np.empty(10, bool))
    with pytest.raises(ArrayError, match="differs"):
        func(a, np.empty(10, np.int64))
    with pytest.raises(ArrayError, match="differs"):
        func(a, np.empty(10, np.uint32))
    with pytest.raises(ArrayError, match="length"):
        func(a, np.empty(9, np.int32))
    with pytest.raises(ArrayError, match="share memory"):
        func(a, a)
    with pytest.raises(ArrayError, match="share memory"):
        func(a[:6], a[4:])
    with pytest.raises(ArrayError, match="contiguous"):
        func(strided(a), np.empty(10, np.int32))
    with pytest.raises(ArrayError, match="contiguous"):
        func(a, np.empty(20, np.int32)[::2])
    with pytest.raises(ArrayError, match="read-only"):
        func(a, readonly(np.empty(10, np.int32)))
    with pytest.raises(ArrayError, match="numpy array"):
        func(a, [0] * 10)
    with pytest.raises(ArrayError, match="1-D"):
        func(a.reshape(2, 5), np.empty((2, 5), np.int32))
    with pytest.raises(ArrayError, match="byte order"):
        func(a.astype(">i4"), np.empty(10, ">i4"))


# --- relidx --------------------------------------------------------------------------------------


def ref_relidx_encode(values, start, sentinel, dtype):
    info = np.iinfo(dtype)
    out = []
    for i, v in enumerate(values):
        if v == sentinel:
            out.append(0)
            continue
        r = v - (start + i)
        e = r + 1 if r >= 0 else r
        if not info.min <= e <= info.max:
            return None
        out.append(e)
    return out


def ref_relidx_decode(values, start, sentinel, dtype):
    info = np.iinfo(dtype)
    out = []
    for i, e in enumerate(values):
        if e == 0:
            out.append(sentinel)
            continue
        v = (e - 1 if e > 0 else e) + start + i
        if not info.min <= v <= info.max:
            return None
        out.append(v)
    return out


@st.composite
def relidx_inputs(draw):
    src_dtype = draw(st.sampled_from(REL_DTYPES))
    out_dtype = draw(st.sampled_from(REL_DTYPES))
    info = np.iinfo(src_dtype)
    n = draw(st.integers(0, 40))
    start = draw(
        st.one_of(
            st.integers(0, 1000),
            st.integers(-(2**40), 2**40),
            st.sampled_from([I64_MIN, I64_MIN + 1, -(2**31), 2**31, I64_MAX - n - 1]),
            st.integers(I64_MIN, I64_MAX - max(n - 1, 0)),
        )
    )
    sentinel = draw(st.sampled_from([-1, 0, int(info.min), int(info.max)]))
    near = st.integers(-50, 50).map(lambda d: min(max(start + d, int(info.min)), int(info.max)))
    element = st.one_of(
        st.just(sentinel),
        near,
        st.integers(int(info.min), int(info.max)),
        st.sampled_from([int(info.min), int(info.max), 0, -1, 1]),
    )
    values = draw(st.lists(element, min_size=n, max_size=n))
    return np.array(values, dtype=src_dtype), out_dtype, start, sentinel


@SETTINGS
@given(args=relidx_inputs(), contiguous=st.booleans())
def test_relidx_encode_matches_reference(args, contiguous):
    src, out_dtype, start, sentinel = args
    expected = ref_relidx_encode(src.tolist(), start, sentinel, out_dtype)
    out = np.empty(src.shape[0], out_dtype)
    ok = K.relidx_encode(src if contiguous else strided(src), out, start, sentinel)
    assert ok is (expected is not None)
    if ok:
        assert out.tolist() == expected
        back = np.empty(src.shape[0], src.dtype)
        K.relidx_decode(out, back, start, sentinel)
        np.testing.assert_array_equal(back, src)


@SETTINGS
@given(args=relidx_inputs())
def test_relidx_decode_matches_reference(args):
    enc, out_dtype, start, sentinel = args
    info = np.iinfo(out_dtype)
    sentinel = min(max(sentinel, int(info.min)), int(info.max))
    expected = ref_relidx_decode(enc.tolist(), start, sentinel, out_dtype)
    out = np.empty(enc.shape[0], out_dtype)
    if expected is None:
        with pytest.raises(ArrayError, match="decodes outside"):
            K.relidx_decode(readonly(enc), out, start, sentinel)
        return
    K.relidx_decode(readonly(enc), out, start, sentinel)
    assert out.tolist() == expected
    # Straight into a strided field of a structured array.
    nodes = np.zeros(enc.shape[0], dtype=[("a", "i8"), ("child", out_dtype), ("b", "f8")])
    K.relidx_decode(enc, nodes["child"], start, sentinel)
    assert nodes["child"].tolist() == expected
    assert not nodes["a"].any() and not nodes["b"].any()


def test_relidx_overflow_edges():
    out64 = np.empty(1, np.int64)
    assert not K.relidx_encode(np.array([I64_MIN]), out64, 1, -1)  # v - p overflows
    assert not K.relidx_encode(np.array([I64_MAX]), out64, 0, -1)  # r + 1 overflows
    assert K.relidx_encode(np.array([I64_MAX]), out64, 1, -1) and out64[0] == I64_MAX
    assert K.relidx_encode(np.array([I64_MIN]), out64, 0, -1) and out64[0] == I64_MIN
    assert not K.relidx_encode(np.array([5]), out64, I64_MIN, -1)
    out32 = np.empty(2, np.int32)
    assert not K.relidx_encode(np.array([2**31 - 1, 0]), out32, 0, -1)
    assert K.relidx_encode(np.array([2**31 - 1, 0]), out32, 1, -1)
    with pytest.raises(ArrayError, match="element 0"):
        K.relidx_decode(np.array([I64_MAX]), np.empty(1, np.int64), 2, -1)
    with pytest.raises(ArrayError, match="element 1"):
        K.relidx_decode(np.array([0, 2**31 - 1], np.int32), np.empty(2, np.int32), 1, -1)
    wide = np.empty(2, np.int64)
    K.relidx_decode(np.array([0, 2**31 - 1], np.int32), wide, 1, -1)
    assert wide.tolist() == [-1, 2**31]


def test_relidx_sklearn_layout():
    # Left children are the next node, so a depth-first tree encodes to mostly 1s.
    left = np.array([1, 2, -1, -1, 5, -1, -1])
    right = np.array([4, 3, -1, -1, 6, -1, -1])
    out = np.empty(7, np.int32)
    assert K.relidx_encode(left, out, 0, -1)
    assert out.tolist() == [2, 2, 0, 0, 2, 0, 0]
    assert K.relidx_encode(right, out, 0, -1)
    assert out.tolist() == [5, 3, 0, 0, 3, 0, 0]
    # Chunks carry their start, so each chunk encodes on its own.
    assert K.relidx_encode(right[4:], out[:3], 4, -1)
    assert out[:3].tolist() == [3, 0, 0]


@pytest.mark.parametrize("func", [K.relidx_encode, K.relidx_decode])
def test_relidx_errors(func):
    a = np.arange(6, dtype=np.int64)
    out = np.empty(6, np.int64)
    for bad in (a.astype(np.int16), a.astype(np.uint32), a.astype(np.float64)):
        with pytest.raises(ArrayError, match="dtype"):
            func(bad, out, 0, -1)
        with pytest.raises(ArrayError, match="dtype"):
            func(a, np.empty(6, bad.dtype), 0, -1)
    with pytest.raises(ArrayError, match="length"):
        func(a, np.empty(5, np.int64), 0, -1)
    with pytest.raises(ArrayError, match="share memory"):
        func(a, a, 0, -1)
    with pytest.raises(ArrayError, match="read-only"):
        func(a, readonly(out), 0, -1)
    with pytest.raises(ArrayError, match="overflow"):
        func(a, out, I64_MAX - 4, -1)
    with pytest.raises(ArrayError, match="overflow"):
        func(a, out, I64_MIN - 1, -1)
    with pytest.raises(ArrayError, match="sentinel"):
        func(a.astype(np.int32), out.astype(np.int32), 0, 2**31)
    with pytest.raises(ArrayError, match="integer"):
        func(a, out, 0.5, -1)
    with pytest.raises(ArrayError, match="integer"):
        func(a, out, 0, None)
    with pytest.raises(ArrayError, match="aligned"):
        packed = np.zeros(6, dtype=np.dtype([("pad", "u1"), ("x", "<i8")], align=False))
        func(a, packed["x"], 0, -1)
    # The documented contiguity requirements: encode writes, decode reads, contiguous memory.
    if func is K.relidx_encode:
        with pytest.raises(ArrayError, match="contiguous"):
            func(a, np.empty(12, np.int64)[::2], 0, -1)
    else:
        with pytest.raises(ArrayError, match="contiguous"):
            func(strided(a), out, 0, -1)
    assert func(np.empty(0, np.int64), np.empty(0, np.int32), I64_MAX, -1) in (None, True)


# --- minmax --------------------------------------------------------------------------------------


def ref_minmax(values):
    vals = [v for v in values if v == v]
    if not vals:
        return float("nan"), float("nan")
    return min(vals), max(vals)


@st.composite
def minmax_arrays(draw):
    dtype = draw(st.sampled_from([*INT_DTYPES, np.dtype("f4"), np.dtype("f8")]))
    n = st.integers(1, 60)
    if dtype.kind == "f":
        elements = st.floats(width=8 * dtype.itemsize, allow_nan=True, allow_infinity=True)
        return draw(hnp.arrays(dtype, n, elements=elements))
    return draw(hnp.arrays(dtype, n))


@SETTINGS
@given(a=minmax_arrays(), contiguous=st.booleans())
def test_minmax_matches_reference(a, contiguous):
    lo, hi = K.minmax(a if contiguous else strided(a))
    ref_lo, ref_hi = ref_minmax(a.tolist())
    if ref_lo != ref_lo:
        assert lo != lo and hi != hi
    else:
        assert (lo, hi) == (ref_lo, ref_hi)
    expected_type = float if a.dtype.kind == "f" else int
    assert type(lo) is expected_type and type(hi) is expected_type


def test_minmax_special_values():
    assert K.minmax(np.array([np.nan, np.nan])) == pytest.approx((np.nan, np.nan), nan_ok=True)
    assert K.minmax(np.array([np.inf])) == (np.inf, np.inf)
    assert K.minmax(np.array([-np.inf, np.nan], np.float32)) == (-np.inf, -np.inf)
    assert K.minmax(np.array([2**64 - 1, 0], np.uint64)) == (0, 2**64 - 1)
    assert K.minmax(np.array([I64_MIN, I64_MAX])) == (I64_MIN, I64_MAX)
    assert K.minmax(np.arange(10)[::-1]) == (0, 9)
    assert K.minmax(readonly(np.arange(3))) == (0, 2)
    assert K.minmax([3, 1, 2]) == (1, 3)


def test_minmax_errors():
    with pytest.raises(ArrayError, match="empty"):
        K.minmax(np.array([], np.int32))
    for bad in (
        np.array([True]),
        np.array([1], np.float16),
        np.array([1j]),
        np.array(["a"]),
        np.array([None]),
    ):
        with pytest.raises(ArrayError, match="dtype"):
            K.minmax(bad)
    with pytest.raises(ArrayError, match="1-D"):
        K.minmax(np.zeros((2, 2)))


# --- record columns ------------------------------------------------------------------------------


@st.composite
def record_layouts(draw, disjoint=False):
    recsize = draw(st.integers(1, 40))
    n = draw(st.integers(0, 30))
    raw = draw(st.binary(min_size=n * recsize, max_size=n * recsize))
    records = np.frombuffer(raw, dtype=np.uint8).reshape(n, recsize).copy()
    fields = []
    if disjoint:
        pos = 0
        while pos < recsize:
            size = draw(st.integers(1, min(16, recsize - pos)))
            if draw(st.booleans()):
                fields.append((pos, size))
            pos += size
        fields = draw(st.permutations(fields))
    else:
        for _ in range(draw(st.integers(0, 6))):
            off = draw(st.integers(0, recsize - 1))
            fields.append((off, draw(st.integers(1, recsize - off))))
    return records, [f[0] for f in fields], [f[1] for f in fields]


def ref_split(records: np.ndarray, offsets, sizes):
    rows = [bytes(r) for r in records]
    return [b"".join(r[o : o + s] for r in rows) for o, s in zip(offsets, sizes, strict=True)]


@SETTINGS
@given(layout=record_layouts(), as_struct=st.booleans(), step=st.integers(1, 3))
def test_split_records_matches_reference(layout, as_struct, step):
    records, offsets, sizes = layout
    expected = ref_split(records, offsets, sizes)
    big = np.zeros((records.shape[0] * step, records.shape[1]), np.uint8)
    big[::step] = records
    view = big[::step]  # rows strided when step > 1
    if as_struct:
        view = big.view(f"V{records.shape[1]}").reshape(-1)[::step]
    columns = K.split_records(readonly(view) if step == 1 else view, offsets, sizes)
    assert [c.tobytes() for c in columns] == expected
    for c in columns:
        assert c.dtype == np.uint8 and c.flags.c_contiguous and c.ndim == 1


@SETTINGS
@given(layout=record_layouts(disjoint=True), as_struct=st.booleans(), step=st.integers(1, 3))
def test_merge_records_inverts_split(layout, as_struct, step):
    records, offsets, sizes = layout
    columns = K.split_records(records, offsets, sizes)
    n, recsize = records.shape
    big = np.full((n * step, recsize), 0xAB, np.uint8)
    out = big[::step] if not as_struct else big.view(f"V{recsize}").reshape(-1)[::step]
    K.merge_records([bytes(c) for c in columns], offsets, sizes, out)
    merged = big[::step]
    covered = np.zeros(recsize, bool)
    for o, s in zip(offsets, sizes, strict=True):
        covered[o : o + s] = True
    np.testing.assert_array_equal(merged[:, covered], records[:, covered])
    assert (merged[:, ~covered] == 0xAB).all()  # padding left alone
    if step > 1:
        assert (big[1::step] == 0xAB).all()  # rows between the strided ones untouched


def test_split_merge_fields_sklearn_nodes():
    from sklearn.tree._tree import NODE_DTYPE

    rng = np.random.default_rng(0)
    nodes = np.zeros(5000, dtype=NODE_DTYPE)
    for name in NODE_DTYPE.names:
        nodes[name] = rng.integers(0, 100, size=5000)
    columns = K.split_fields(nodes)
    assert list(columns) == list(NODE_DTYPE.names)
    for name, col in columns.items():
        assert col.dtype == NODE_DTYPE.fields[name][0] and col.flags.c_contiguous
        np.testing.assert_array_equal(col, nodes[name])
    out = np.zeros(nodes.shape, nodes.dtype)  # zeros_like leaves padding uninitialised
    K.merge_fields(columns, out)
    assert out.tobytes() == nodes.tobytes()


def test_split_merge_fields_subarrays_and_strides():
    dt = np.dtype([("a", "<i2"), ("v", "<f4", (3,)), ("s", "S3"), ("n", [("x", "u1")])])
    rec = np.zeros(8, dt)
    rec["a"] = np.arange(8)
    rec["v"] = np.arange(24).reshape(8, 3)
    rec["s"] = b"xyz"
    rec["n"]["x"] = 7
    cols = K.split_fields(rec[::2])
    assert cols["v"].shape == (4, 3) and cols["v"].dtype == np.float32
    np.testing.assert_array_equal(cols["v"], rec["v"][::2])
    assert cols["s"].tolist() == [b"xyz"] * 4
    assert cols["n"].dtype == dt["n"] and cols["n"]["x"].tolist() == [7] * 4
    out = np.zeros(4, dt)
    K.merge_fields(cols, out)
    assert out.tobytes() == rec[::2].tobytes()
    empty = K.split_fields(rec[:0])
    assert all(c.shape[0] == 0 for c in empty.values())
    K.merge_fields(empty, np.zeros(0, dt))


def test_record_errors():
    rec = np.zeros(4, dtype=[("a", "<i4"), ("b", "<f8")])
    with pytest.raises(ArrayError, match="objects"):
        K.split_records(np.zeros(2, dtype=[("a", "O")]), [0], [8])
    with pytest.raises(ArrayError, match="objects"):
        K.merge_records([b"\0" * 16], [0], [8], np.zeros(2, dtype=[("a", "O")]))
    with pytest.raises(ArrayError, match="structured"):
        K.split_records(np.zeros(4, np.int64), [0], [8])
    with pytest.raises(ArrayError, match="structured"):
        K.split_records(np.zeros((2, 2, 2), np.uint8), [0], [1])
    with pytest.raises(ArrayError, match="numpy array"):
        K.split_records(b"abcd", [0], [1])
    with pytest.raises(ArrayError, match="contiguous"):
        K.split_records(np.zeros((4, 8), np.uint8)[:, ::2], [0], [1])
    for offsets, sizes in (([0], [0]), ([-1], [4]), ([10], [4]), ([0], [17]), ([0, 4], [4])):
        with pytest.raises(ArrayError):
            K.split_records(rec, offsets, sizes)
    with pytest.raises(ArrayError, match="integers"):
        K.split_records(rec, [0.5], [4])
    cols = K.split_records(rec, [0, 4], [4, 8])
    with pytest.raises(ArrayError, match="overlap"):
        K.merge_records(cols, [0, 2], [4, 8], rec.copy())
    with pytest.raises(ArrayError, match="bytes, expected"):
        K.merge_records([cols[0][:-1], cols[1]], [0, 4], [4, 8], rec.copy())
    with pytest.raises(ArrayError, match="columns but"):
        K.merge_records(cols[:1], [0, 4], [4, 8], rec.copy())
    with pytest.raises(ArrayError, match="read-only"):
        K.merge_records(cols, [0, 4], [4, 8], readonly(rec))
    raw = rec.view(np.uint8).reshape(4, 12)
    with pytest.raises(ArrayError, match="share memory"):
        K.merge_records([raw[:, :4].copy(), raw.reshape(-1)[:32]], [0, 4], [4, 8], rec)
    # merge_fields
    good = K.split_fields(rec)
    with pytest.raises(ArrayError, match="lacks"):
        K.merge_fields({"a": good["a"]}, rec.copy())
    with pytest.raises(ArrayError, match="no field"):
        K.merge_fields({**good, "c": good["a"]}, rec.copy())
    with pytest.raises(ArrayError, match="expected"):
        K.merge_fields({**good, "a": good["a"].astype(np.int64)}, rec.copy())
    with pytest.raises(ArrayError, match="expected"):
        K.merge_fields({**good, "a": good["a"][:3]}, rec.copy())
    with pytest.raises(ArrayError, match="numpy array"):
        K.merge_fields({**good, "a": [1, 2, 3, 4]}, rec.copy())
    with pytest.raises(ArrayError, match="dict"):
        K.merge_fields(list(good.values()), rec.copy())
    with pytest.raises(ArrayError, match="structured"):
        K.split_fields(np.zeros(3))
    with pytest.raises(ArrayError, match="structured"):
        K.merge_fields({}, np.zeros(3))


# --- string tables -------------------------------------------------------------------------------


@SETTINGS
@given(strings=st.lists(st.text(max_size=20), max_size=30), kind=st.sampled_from("ltoU"))
def test_string_table_roundtrip(strings, kind):
    arg = {
        "l": strings,
        "t": tuple(strings),
        "o": np.array(strings + [None], object)[:-1],
        "U": np.array(strings, dtype="U"),
    }[kind]
    if kind == "U":
        strings = [s.rstrip("\x00") for s in strings]  # numpy unicode arrays drop trailing NULs
    offsets, blob = K.string_table_encode(arg)
    encoded = [s.encode("utf-8") for s in strings]
    assert blob == b"".join(encoded)
    assert offsets.dtype == np.int64 and offsets.shape == (len(strings) + 1,)
    assert offsets.tolist() == np.cumsum([0] + [len(b) for b in encoded]).tolist()
    assert K.string_table_decode(offsets, blob) == strings
    assert K.string_table_decode(readonly(offsets), bytearray(blob)) == strings
    assert K.string_table_decode(offsets, np.frombuffer(blob, np.uint8)) == strings


@SETTINGS
@given(blob=st.binary(max_size=40), cuts=st.lists(st.integers(0, 40), max_size=8))
def test_string_table_decode_matches_reference(blob, cuts):
    bounds = sorted({0, len(blob), *(c for c in cuts if c <= len(blob))})
    offsets = np.array(bounds, np.int64)
    try:
        expected = [blob[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    except UnicodeDecodeError:
        expected = None
    if expected is None:
        with pytest.raises(ArrayError, match="not valid UTF-8"):
            K.string_table_decode(offsets, blob)
    else:
        assert K.string_table_decode(offsets, blob) == expected


def test_string_table_encode_errors():
    for bad, name in ((b"x", "bytes"), (1, "int"), (None, "NoneType")):
        with pytest.raises(ArrayError, match=rf"strings\[1\] is {name}"):
            K.string_table_encode(["ok", bad])
    with pytest.raises(ArrayError, match=r"strings\[0\].*surrogate"):
        K.string_table_encode(["\ud800"])
    with pytest.raises(ArrayError, match="list, tuple"):
        K.string_table_encode("abc")
    with pytest.raises(ArrayError, match="list, tuple"):
        K.string_table_encode(iter(["a"]))
    with pytest.raises(ArrayError, match="object or unicode"):
        K.string_table_encode(np.array([1, 2]))
    with pytest.raises(ArrayError, match="object or unicode"):
        K.string_table_encode(np.array([["a"]], object))

    class Str(str):
        pass

    assert K.string_table_encode([Str("é")])[1] == "é".encode()
    offsets, blob = K.string_table_encode([])
    assert offsets.tolist() == [0] and blob == b""


def test_string_table_decode_errors():
    blob = b"abcdef"
    cases = [
        (np.array([], np.int64), "empty"),
        (np.array([1, 6], np.int64), r"offsets\[0\]"),
        (np.array([0, 5], np.int64), r"offsets\[-1\]"),
        (np.array([0, 7], np.int64), r"offsets\[-1\]"),
        (np.array([0, 4, 2, 6], np.int64), "decrease at position 2"),
        (np.array([0, -1, 6], np.int64), "decrease at position 1"),
        (np.array([0, 6], np.int32), "int64"),
        (np.array([0.0, 6.0]), "int64"),
        (np.array([[0, 6]], np.int64), "1-D"),
    ]
    for offsets, message in cases:
        with pytest.raises(ArrayError, match=message):
            K.string_table_decode(offsets, blob)
    with pytest.raises(ArrayError, match="buffer"):
        K.string_table_decode(np.array([0, 1]), "a")
    for bad in (b"\xff", b"\xed\xa0\x80", b"\xc3", b"\xe2\x82", b"\xc0\xaf"):
        with pytest.raises(ArrayError, match="string 1 is not valid UTF-8"):
            K.string_table_decode(np.array([0, 1, 1 + len(bad)]), b"a" + bad)
    assert K.string_table_decode(np.array([0]), b"") == []
    assert K.string_table_decode(strided(np.array([0, 2, 6])), blob) == ["ab", "cdef"]


# --- check_indices / check_monotone --------------------------------------------------------------


@SETTINGS
@given(
    a=int_arrays(),
    upper=st.one_of(st.integers(-3, 300), st.integers(-(2**65), 2**65)),
    contiguous=st.booleans(),
)
def test_check_indices_matches_reference(a, upper, contiguous):
    bad = [i for i, v in enumerate(a.tolist()) if not 0 <= v < upper]
    assert K.check_indices(a if contiguous else strided(a), upper) == (bad[0] if bad else -1)


@SETTINGS
@given(a=int_arrays(max_size=3000), contiguous=st.booleans())
def test_check_monotone_matches_reference(a, contiguous):
    values = a.tolist()
    bad = [i for i in range(1, len(values)) if values[i] < values[i - 1]]
    assert K.check_monotone(a if contiguous else strided(a)) == (bad[0] if bad else -1)


def test_checks_find_late_positions():
    a = np.arange(10_000, dtype=np.int64)
    assert K.check_monotone(a) == -1
    a[7777] = 0
    assert K.check_monotone(a) == 7777
    assert K.check_indices(a, 10_000) == -1
    assert K.check_indices(a, 9_999) == 9_999
    a[5000] = -1
    assert K.check_indices(a, 10_000) == 5000
    assert K.check_indices(a.astype(np.uint64), 2**64) == -1
    assert K.check_indices(a.astype(np.uint64), 2**63 + 5) == 5000
    assert K.check_indices(np.array([2**63 + 5], np.uint64), 2**63 + 5) == 0


def test_check_errors():
    for func, args in ((K.check_indices, (10,)), (K.check_monotone, ())):
        with pytest.raises(ArrayError, match="dtype"):
            func(np.zeros(3), *args)
        with pytest.raises(ArrayError, match="dtype"):
            func(np.zeros(3, bool), *args)
        with pytest.raises(ArrayError, match="1-D"):
            func(np.zeros((3, 3), np.int64), *args)
    with pytest.raises(ArrayError, match="integer"):
        K.check_indices(np.zeros(3, np.int64), 2.0)


# --- tree validators -----------------------------------------------------------------------------


def random_tree(rnd: random.Random, n_internal: int, shuffled: bool):
    """A random full binary tree: (left, right) with -1 for leaves, root 0.

    Nodes are numbered in depth-first preorder (scikit-learn's layout) or, when ``shuffled``, in
    a random order that keeps the root at 0.
    """
    n = 2 * n_internal + 1
    left, right = [-1] * n, [-1] * n
    stack = [(0, n)]
    while stack:
        node, size = stack.pop()
        if size > 1:
            a = 2 * rnd.randrange((size - 1) // 2) + 1
            left[node], right[node] = node + 1, node + 1 + a
            stack += [(node + 1 + a, size - 1 - a), (node + 1, a)]
    if shuffled:
        perm = [0] + rnd.sample(range(1, n), n - 1)
        new_left, new_right = [-1] * n, [-1] * n
        for i in range(n):
            if left[i] != -1:
                new_left[perm[i]], new_right[perm[i]] = perm[left[i]], perm[right[i]]
        left, right = new_left, new_right
    return left, right


def ref_tree_valid(left, right, feature, n_features, leaf=-1):
    """Order-independent definition: record rules hold and the child graph is a tree at 0."""
    n = len(left)
    if n == 0:
        return False
    parents = [0] * n
    for i in range(n):
        if left[i] == leaf:
            if right[i] != leaf:
                return False
            continue
        if not (0 <= left[i] < n and 0 <= right[i] < n and 0 <= feature[i] < n_features):
            return False
        parents[left[i]] += 1
        parents[right[i]] += 1
    if parents[0] != 0 or any(p != 1 for p in parents[1:]):
        return False
    seen, todo = {0}, [0]
    while todo:
        i = todo.pop()
        if left[i] != leaf:
            for c in (left[i], right[i]):
                if c not in seen:
                    seen.add(c)
                    todo.append(c)
    return len(seen) == n


def ref_tree_walk(left, right, feature, n_features, leaf=-1):
    """The documented walk: depth-first, left subtree first; returns (code, node)."""
    n = len(left)
    if n == 0:
        return K.TREE_EMPTY, -1
    seen = [False] * n
    seen[0] = True
    stack = [0]
    while stack:
        node = stack.pop()
        lc, rc = left[node], right[node]
        if lc == leaf:
            if rc != leaf:
                return K.TREE_LEAF_WITH_ONE_CHILD, node
            continue
        if not (0 <= lc < n and 0 <= rc < n):
            return K.TREE_CHILD_OUT_OF_RANGE, node
        if not 0 <= feature[node] < n_features:
            return K.TREE_FEATURE_OUT_OF_RANGE, node
        for c in (rc, lc):
            if seen[c]:
                return K.TREE_NODE_REACHED_TWICE, node
            seen[c] = True
            stack.append(c)
    if not all(seen):
        return K.TREE_UNREACHABLE_NODE, seen.index(False)
    return K.TREE_OK, -1


def tree_arrays(left, right, feature, dtype="i8", feature_dtype="i8", layout="plain"):
    """Node columns as plain arrays or as strided fields of a structured array."""
    n = len(left)
    if layout == "plain":
        return (np.array(left, dtype), np.array(right, dtype), np.array(feature, feature_dtype))
    nodes = np.zeros(n, [("l", dtype), ("r", dtype), ("f", feature_dtype), ("t", "f8")])
    nodes["l"], nodes["r"], nodes["f"] = left, right, feature
    return nodes["l"], nodes["r"], nodes["f"]


def subtree(children, root):
    """Nodes of the subtree at ``root`` of a tree given as ``(left, right)`` lists."""
    left, right = children
    out, todo = set(), [root]
    while todo:
        i = todo.pop()
        out.add(i)
        if left[i] != -1:
            todo += [left[i], right[i]]
    return out


MUTATIONS = [
    "child_out_of_range",
    "negative_child",
    "self_loop",
    "cycle_to_root",
    "two_parents",
    "unreachable",
    "extra_node",
    "feature_out_of_range",
    "negative_feature",
    "leaf_with_one_child",
    "internal_with_one_child",
    "swap_to_sibling",
]


@st.composite
def mutated_trees(draw):
    rnd = random.Random(draw(st.integers(0, 2**32)))
    left, right = random_tree(rnd, draw(st.integers(1, 40)), draw(st.booleans()))
    n = len(left)
    n_features = draw(st.integers(1, 10))
    feature = [rnd.randrange(n_features) if c != -1 else -2 for c in left]
    internal = [i for i in range(n) if left[i] != -1]
    leaves = [i for i in range(n) if left[i] == -1]
    node = rnd.choice(internal)
    kind = draw(st.sampled_from(MUTATIONS))
    expect_node = node
    if kind == "child_out_of_range":
        right[node] = n + rnd.randrange(3)
        code = K.TREE_CHILD_OUT_OF_RANGE
    elif kind == "negative_child":
        left[node] = -2 - rnd.randrange(5)
        code = K.TREE_CHILD_OUT_OF_RANGE
    elif kind == "self_loop":
        (left if rnd.random() < 0.5 else right)[node] = node
        code = K.TREE_NODE_REACHED_TWICE
    elif kind == "cycle_to_root":
        (left if rnd.random() < 0.5 else right)[node] = 0
        code = K.TREE_NODE_REACHED_TWICE
    elif kind == "two_parents":
        cut = subtree((left, right), right[node])
        candidates = [c for c in range(1, n) if c not in cut]
        target = rnd.choice(candidates)
        parent = next(i for i in internal if target in (left[i], right[i]))
        right[node] = target
        code = K.TREE_NODE_REACHED_TWICE
        expect_node = (node, parent)
    elif kind == "unreachable":
        # Turn an internal node whose children are leaves into a leaf: they become orphans.
        bottom = [i for i in internal if left[left[i]] == -1 and left[right[i]] == -1]
        node = rnd.choice(bottom)
        expect_node = min(left[node], right[node])
        left[node] = right[node] = -1
        code = K.TREE_UNREACHABLE_NODE
    elif kind == "extra_node":
        left.append(-1)
        right.append(-1)
        feature.append(-2)
        expect_node = n
        code = K.TREE_UNREACHABLE_NODE
    elif kind == "feature_out_of_range":
        feature[node] = n_features + rnd.randrange(3)
        code = K.TREE_FEATURE_OUT_OF_RANGE
    elif kind == "negative_feature":
        feature[node] = -1 - rnd.randrange(3)
        code = K.TREE_FEATURE_OUT_OF_RANGE
    elif kind == "leaf_with_one_child":
        node = rnd.choice(leaves)
        expect_node = node
        right[node] = rnd.randrange(n)
        code = K.TREE_LEAF_WITH_ONE_CHILD
    elif kind == "internal_with_one_child":
        left[node] = -1
        code = K.TREE_LEAF_WITH_ONE_CHILD
    else:  # both children the same node
        left[node] = right[node]
        code = K.TREE_NODE_REACHED_TWICE
    return left, right, feature, n_features, code, expect_node


@SETTINGS
@given(
    seed=st.integers(0, 2**32),
    n_internal=st.integers(0, 60),
    shuffled=st.booleans(),
    layout=st.sampled_from(["plain", "fields"]),
    dtype=st.sampled_from(["i4", "i8"]),
)
def test_check_binary_tree_accepts_valid_trees(seed, n_internal, shuffled, layout, dtype):
    rnd = random.Random(seed)
    left, right = random_tree(rnd, n_internal, shuffled)
    feature = [rnd.randrange(7) if c != -1 else -2 for c in left]
    arrays = tree_arrays(left, right, feature, dtype, dtype, layout)
    assert K.check_binary_tree(*arrays, 7) == (0, -1, "")
    # The same tree with another leaf marker.
    marked = [c if c != -1 else -7 for c in left], [c if c != -1 else -7 for c in right]
    assert K.check_binary_tree(*tree_arrays(*marked, feature), 7, leaf=-7) == (0, -1, "")


@SETTINGS
@given(case=mutated_trees(), layout=st.sampled_from(["plain", "fields"]))
def test_check_binary_tree_detects_mutations(case, layout):
    left, right, feature, n_features, code, expect_node = case
    result = K.check_binary_tree(*tree_arrays(left, right, feature, layout=layout), n_features)
    assert result[0] == code, result
    if isinstance(expect_node, tuple):
        assert result[1] in expect_node
    else:
        assert result[1] == expect_node
    assert result[2] == K._TREE_REASONS[code]
    assert (result[0], result[1]) == ref_tree_walk(left, right, feature, n_features)
    assert not ref_tree_valid(left, right, feature, n_features)


@SETTINGS
@given(n=st.integers(1, 12), data=st.data())
def test_check_binary_tree_matches_references_on_arbitrary_arrays(n, data):
    # Arbitrary small arrays: mostly invalid, sometimes valid; both references must agree.
    child = st.integers(-3, n + 1)
    left = data.draw(st.lists(child, min_size=n, max_size=n))
    right = data.draw(st.lists(child, min_size=n, max_size=n))
    feature = data.draw(st.lists(st.integers(-2, 3), min_size=n, max_size=n))
    code, node, reason = K.check_binary_tree(*tree_arrays(left, right, feature), 3)
    assert (code, node) == ref_tree_walk(left, right, feature, 3)
    assert (code == 0) == ref_tree_valid(left, right, feature, 3)


def test_check_binary_tree_edges():
    empty = np.zeros(0, np.int64)
    assert K.check_binary_tree(empty, empty, empty, 3) == (K.TREE_EMPTY, -1, "empty tree")
    one = np.array([-1])
    assert K.check_binary_tree(one, one, np.array([-2]), 0) == (0, -1, "")
    assert (
        K.check_binary_tree(np.array([1, -1, -1]), np.array([2, -1, -1]), np.array([0, -2, -2]), 0)[
            0
        ]
        == K.TREE_FEATURE_OUT_OF_RANGE
    )
    # A long chain (depth n) needs no recursion.
    n = 200_001
    left = np.full(n, -1)
    right = np.full(n, -1)
    left[0 : n - 1 : 2] = np.arange(1, n, 2)
    right[0 : n - 1 : 2] = np.arange(2, n + 1, 2)
    assert K.check_binary_tree(left, right, np.zeros(n, np.int64), 1) == (0, -1, "")
    right[n - 3] = 0  # the bottom internal node points back at the root
    assert K.check_binary_tree(left, right, np.zeros(n, np.int64), 1)[:2] == (
        K.TREE_NODE_REACHED_TWICE,
        n - 3,
    )


def test_check_binary_tree_errors():
    a = np.array([-1], np.int64)
    with pytest.raises(ArrayError, match="dtype"):
        K.check_binary_tree(a.astype(np.uint32), a.astype(np.uint32), a, 1)
    with pytest.raises(ArrayError, match="dtype"):
        K.check_binary_tree(a, a, a.astype(float), 1)
    with pytest.raises(ArrayError, match="differ in dtype"):
        K.check_binary_tree(a, a.astype(np.int32), a, 1)
    with pytest.raises(ArrayError, match="length"):
        K.check_binary_tree(a, np.array([-1, -1]), a, 1)
    with pytest.raises(ArrayError, match="length"):
        K.check_binary_tree(a, a, np.array([-1, -1]), 1)
    with pytest.raises(ArrayError, match="n_features"):
        K.check_binary_tree(a, a, a, -1)
    with pytest.raises(ArrayError, match="leaf"):
        K.check_binary_tree(a, a, a, 1, leaf=2**63)
    with pytest.raises(ArrayError, match="1-D"):
        K.check_binary_tree(a.reshape(1, 1), a, a, 1)


def test_check_binary_tree_on_fitted_sklearn_trees():
    from sklearn.datasets import make_classification
    from sklearn.ensemble import ExtraTreesRegressor
    from sklearn.tree import DecisionTreeClassifier

    X, y = make_classification(n_samples=600, n_features=8, random_state=0)
    trees = [DecisionTreeClassifier(random_state=0).fit(X, y).tree_]
    trees += [e.tree_ for e in ExtraTreesRegressor(n_estimators=3, random_state=0).fit(X, y)]
    for tree in trees:
        nodes = tree.__getstate__()["nodes"]
        assert nodes.shape[0] > 10
        assert K.check_binary_tree(
            nodes["left_child"], nodes["right_child"], nodes["feature"], 8
        ) == (0, -1, "")
        uses_last = bool((nodes["feature"] == 7).any())
        code = K.check_binary_tree(nodes["left_child"], nodes["right_child"], nodes["feature"], 7)
        assert code[0] == (K.TREE_FEATURE_OUT_OF_RANGE if uses_last else 0)
        # relidx through the node fields and back
        for field in ("left_child", "right_child"):
            enc = np.empty(nodes.shape[0], np.int32)
            assert K.relidx_encode(nodes[field], enc, 0, -1)
            copy = np.zeros(nodes.shape, nodes.dtype)
            K.relidx_decode(enc, copy[field], 0, -1)
            np.testing.assert_array_equal(copy[field], nodes[field])
        columns = K.split_fields(nodes)
        rebuilt = np.zeros(nodes.shape, nodes.dtype)
        K.merge_fields(columns, rebuilt)
        for name in nodes.dtype.names:  # scikit-learn leaves the padding bytes uninitialised
            np.testing.assert_array_equal(rebuilt[name], nodes[name])


# --- leaf-coded trees (LightGBM layout) ----------------------------------------------------------


def leaf_coded(rnd: random.Random, n_internal: int):
    """A random tree as internal-node arrays with leaves coded ``~leaf``, both numberings
    shuffled (root 0)."""
    if n_internal == 0:
        return [], [], 1
    left, right = random_tree(rnd, n_internal, shuffled=True)
    internal = [i for i in range(len(left)) if left[i] != -1]
    leaves = [i for i in range(len(left)) if left[i] == -1]
    inner_ids = {0: 0}
    for k, i in enumerate(rnd.sample([i for i in internal if i != 0], len(internal) - 1)):
        inner_ids[i] = k + 1
    leaf_ids = dict(zip(leaves, rnd.sample(range(len(leaves)), len(leaves)), strict=True))

    def code(c):
        return inner_ids[c] if c in inner_ids else ~leaf_ids[c]

    lc, rc = [0] * len(internal), [0] * len(internal)
    for i in internal:
        lc[inner_ids[i]], rc[inner_ids[i]] = code(left[i]), code(right[i])
    return lc, rc, len(leaves)


def inner_subtree(left, right, c):
    """Internal nodes of the subtree at child ``c`` (empty for a leaf) in leaf-coded arrays."""
    out, todo = set(), [c] if c >= 0 else []
    while todo:
        j = todo.pop()
        out.add(j)
        todo += [x for x in (left[j], right[j]) if x >= 0]
    return out


def ref_leaf_coded_valid(left, right, feature, n_features, n_leaves):
    n = len(left)
    if n_leaves != n + 1:
        return False
    if n == 0:
        return True
    inner, leaves = [0] * n, [0] * n_leaves
    for i in range(n):
        if not 0 <= feature[i] < n_features:
            return False
        for c in (left[i], right[i]):
            if c >= n or ~c >= n_leaves:
                return False
            if c >= 0:
                inner[c] += 1
            else:
                leaves[~c] += 1
    if inner[0] != 0 or any(k != 1 for k in inner[1:]) or any(k != 1 for k in leaves):
        return False
    seen, todo = {0}, [0]
    while todo:
        i = todo.pop()
        for c in (left[i], right[i]):
            if c >= 0 and c not in seen:
                seen.add(c)
                todo.append(c)
    return len(seen) == n


@SETTINGS
@given(
    seed=st.integers(0, 2**32),
    n_internal=st.integers(0, 40),
    layout=st.sampled_from(["plain", "fields"]),
    dtype=st.sampled_from(["i4", "i8"]),
    mutate=st.sampled_from(
        [
            "none",
            "leaf_range",
            "leaf_twice",
            "inner_twice",
            "root",
            "inner_range",
            "feature",
            "orphan",
            "count",
        ]
    ),
)
def test_check_leaf_coded_tree(seed, n_internal, layout, dtype, mutate):
    rnd = random.Random(seed)
    left, right, n_leaves = leaf_coded(rnd, n_internal)
    n = len(left)
    feature = [rnd.randrange(5) for _ in range(n)]
    expected = (0, -1)
    if n and mutate != "none":
        node = rnd.randrange(n)
        side = left if rnd.random() < 0.5 else right
        if mutate == "leaf_range":
            side[node] = ~(n_leaves + rnd.randrange(3))
            expected = (K.TREE_LEAF_OUT_OF_RANGE, node)
        elif mutate == "leaf_twice":
            # A leaf referenced by another node that stays reachable after the change.
            cut = inner_subtree(left, right, side[node]) | {node}
            taken = [c for i in range(n) if i not in cut for c in (left[i], right[i]) if c < 0]
            if taken:
                side[node] = rnd.choice(taken)
                expected = (K.TREE_LEAF_REACHED_TWICE, None)
        elif mutate in ("inner_twice", "root"):
            # An internal node whose other parent stays reachable (or the root itself).
            cut = inner_subtree(left, right, side[node])
            side[node] = (
                0 if mutate == "root" else rnd.choice([c for c in range(n) if c not in cut])
            )
            expected = (K.TREE_NODE_REACHED_TWICE, None)
        elif mutate == "inner_range":
            side[node] = n + rnd.randrange(3)
            expected = (K.TREE_CHILD_OUT_OF_RANGE, node)
        elif mutate == "feature":
            feature[node] = rnd.choice([-1, 5, 6])
            expected = (K.TREE_FEATURE_OUT_OF_RANGE, node)
        elif mutate == "orphan":
            # Replace a pointer to an internal child by one of that subtree's own leaves:
            # no leaf is referenced twice, but the subtree's internal nodes become orphans.
            pointers = [(i, s) for i in range(n) for s in (left, right) if s[i] > 0]
            if pointers:
                i, s = rnd.choice(pointers)
                orphans, todo, own = set(), [s[i]], []
                while todo:
                    j = todo.pop()
                    orphans.add(j)
                    for c in (left[j], right[j]):
                        (todo if c >= 0 else own).append(c)
                s[i] = rnd.choice(own)
                expected = (K.TREE_UNREACHABLE_NODE, min(orphans))
        elif mutate == "count":
            n_leaves += rnd.choice([-1, 1])
            expected = (K.TREE_LEAF_COUNT_MISMATCH, -1)
    elif mutate == "count":
        n_leaves = 2
        expected = (K.TREE_LEAF_COUNT_MISMATCH, -1)
    arrays = tree_arrays(left, right, feature, dtype, dtype, layout)
    code, where, reason = K.check_leaf_coded_tree(*arrays, 5, n_leaves)
    assert code == expected[0], (code, where, reason)
    if expected[1] is not None:
        assert where == expected[1]
    assert reason == ("" if code == 0 else K._TREE_REASONS[code])
    assert (code == 0) == ref_leaf_coded_valid(left, right, feature, 5, n_leaves)


def test_check_leaf_coded_tree_on_lightgbm_model():
    import lightgbm
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=500, n_features=6, random_state=0)
    booster = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y).booster_
    for info in booster.dump_model()["tree_info"]:
        left, right, feature = [], [], []

        def visit(node, left=left, right=right, feature=feature):
            if "leaf_index" in node:
                return ~node["leaf_index"]
            idx = node["split_index"]
            grow = idx + 1 - len(left)
            left += [0] * grow
            right += [0] * grow
            feature += [0] * grow
            feature[idx] = node["split_feature"]
            left[idx] = visit(node["left_child"])
            right[idx] = visit(node["right_child"])
            return idx

        visit(info["tree_structure"])
        arrays = tree_arrays(left, right, feature, "i4", "i4")
        assert K.check_leaf_coded_tree(*arrays, 6, info["num_leaves"]) == (0, -1, "")


def test_check_leaf_coded_tree_edges_and_errors():
    empty = np.zeros(0, np.int32)
    assert K.check_leaf_coded_tree(empty, empty, empty, 0, 1) == (0, -1, "")
    assert K.check_leaf_coded_tree(empty, empty, empty, 0, 0)[0] == K.TREE_LEAF_COUNT_MISMATCH
    # A forged leaf count is refused before anything is allocated for it.
    assert K.check_leaf_coded_tree(empty, empty, empty, 0, 2**62)[0] == (K.TREE_LEAF_COUNT_MISMATCH)
    a = np.array([-1], np.int32)
    with pytest.raises(ArrayError, match="dtype"):
        K.check_leaf_coded_tree(a.astype(np.int16), a.astype(np.int16), a, 1, 2)
    with pytest.raises(ArrayError, match="length"):
        K.check_leaf_coded_tree(a, a, empty, 1, 2)
    with pytest.raises(ArrayError, match="integer"):
        K.check_leaf_coded_tree(a, a, a, 1, "2")


# --- HistGradientBoosting predictors -------------------------------------------------------------


def hist_nodes(left, right, feature):
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

    nodes = np.zeros(len(left), PREDICTOR_RECORD_DTYPE)
    is_leaf = [c == -1 for c in left]
    nodes["left"] = [0 if leaf else c for c, leaf in zip(left, is_leaf, strict=True)]
    nodes["right"] = [0 if leaf else c for c, leaf in zip(right, is_leaf, strict=True)]
    nodes["is_leaf"] = is_leaf
    nodes["feature_idx"] = [0 if leaf else f for f, leaf in zip(feature, is_leaf, strict=True)]
    return nodes


def check_hist(nodes, n_features):
    return K.check_hist_predictor(
        nodes["left"], nodes["right"], nodes["is_leaf"], nodes["feature_idx"], n_features
    )


@FEW
@given(
    seed=st.integers(0, 2**32),
    n_internal=st.integers(0, 40),
    shuffled=st.booleans(),
    mutate=st.sampled_from(["none", "range", "root", "twice", "feature", "orphan"]),
)
def test_check_hist_predictor(seed, n_internal, shuffled, mutate):
    rnd = random.Random(seed)
    left, right = random_tree(rnd, n_internal, shuffled)
    feature = [rnd.randrange(4) for _ in left]
    nodes = hist_nodes(left, right, feature)
    internal = np.flatnonzero(nodes["is_leaf"] == 0).tolist()
    expected = (0, -1)
    if internal and mutate != "none":
        node = rnd.choice(internal)
        side = "left" if rnd.random() < 0.5 else "right"
        if mutate == "range":
            nodes[side][node] = len(left) + rnd.randrange(2**31)
            expected = (K.TREE_CHILD_OUT_OF_RANGE, node)
        elif mutate == "root":
            nodes[side][node] = 0
            expected = (K.TREE_NODE_REACHED_TWICE, node)
        elif mutate == "twice":
            nodes["left"][node] = nodes["right"][node]
            expected = (K.TREE_NODE_REACHED_TWICE, node)
        elif mutate == "feature":
            nodes["feature_idx"][node] = rnd.choice([-1, 4, 2**40])
            expected = (K.TREE_FEATURE_OUT_OF_RANGE, node)
        else:
            nodes["is_leaf"][node] = 1
            orphans = subtree((left, right), left[node]) | subtree((left, right), right[node])
            expected = (K.TREE_UNREACHABLE_NODE, min(orphans))
    code, where, reason = check_hist(nodes, 4)
    assert (code, where) == expected
    # Leaves' children and features are ignored.
    if mutate == "none":
        leaves = nodes["is_leaf"] == 1
        nodes["left"][leaves] = 2**32 - 1
        nodes["feature_idx"][leaves] = -5
        assert check_hist(nodes, 4) == (0, -1, "")


def test_check_hist_predictor_on_fitted_model():
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = make_classification(
        n_samples=800, n_features=6, n_classes=3, n_informative=4, random_state=0
    )
    model = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, y)
    for predictors in model._predictors:
        for predictor in predictors:
            nodes = predictor.nodes
            assert check_hist(nodes, 6) == (0, -1, "")
            assert K.check_hist_predictor(
                np.ascontiguousarray(nodes["left"]).astype(np.int64),
                np.ascontiguousarray(nodes["right"]).astype(np.int64),
                nodes["is_leaf"].astype(bool),
                nodes["feature_idx"].astype(np.int32),
                6,
            ) == (0, -1, "")


def test_check_hist_predictor_errors():
    nodes = hist_nodes([-1], [-1], [0])
    assert check_hist(nodes[:0], 1) == (K.TREE_EMPTY, -1, "empty tree")
    with pytest.raises(ArrayError, match="is_leaf"):
        K.check_hist_predictor(
            nodes["left"], nodes["right"], nodes["left"], nodes["feature_idx"], 1
        )
    with pytest.raises(ArrayError, match="nodes_left"):
        K.check_hist_predictor(
            nodes["gain"], nodes["right"], nodes["is_leaf"], nodes["feature_idx"], 1
        )
    with pytest.raises(ArrayError, match="length"):
        K.check_hist_predictor(
            nodes["left"], nodes["right"], np.zeros(2, np.uint8), nodes["feature_idx"], 1
        )


# --- tree-node columns: depth and split/leaf interleaving ---------------------------------------


def ref_depth(left, right):
    depth, todo = 0, [(0, 0)]
    while todo:
        node, d = todo.pop()
        depth = max(depth, d)
        if left[node] != -1:
            todo += [(left[node], d + 1), (right[node], d + 1)]
    return depth


@SETTINGS
@given(seed=st.integers(0, 2**32), n_internal=st.integers(0, 80), shuffled=st.booleans(),
       dtype=st.sampled_from(["i4", "i8"]))
def test_binary_tree_depth_matches_reference(seed, n_internal, shuffled, dtype):
    left, right = random_tree(random.Random(seed), n_internal, shuffled)
    expected = ref_depth(left, right)
    assert K.binary_tree_depth(np.array(left, dtype), np.array(right, dtype)) == expected


@pytest.mark.parametrize("left,right", [
    ([1, 0, -1], [2, 0, -1]),          # cycle back to the root
    ([1, 1, -1], [2, 2, -1]),          # node reached twice
    ([5, -1, -1], [1, -1, -1]),        # child out of range
    ([1, 2, 0], [2, 0, 1]),            # no leaf at all
])
def test_binary_tree_depth_stays_bounded_on_malformed_trees(left, right):
    assert K.binary_tree_depth(np.array(left), np.array(right)) == -1


def test_binary_tree_depth_of_a_deep_chain():
    n_internal = 100_000
    left = np.full(2 * n_internal + 1, -1)
    right = np.full(2 * n_internal + 1, -1)
    left[0:2 * n_internal:2] = np.arange(1, 2 * n_internal, 2)
    right[0:2 * n_internal:2] = np.arange(2, 2 * n_internal + 1, 2)
    assert K.binary_tree_depth(left, right) == n_internal



@SETTINGS
@given(seed=st.integers(0, 2**32), sizes=st.lists(st.integers(0, 30), min_size=1, max_size=8),
       dtype=st.sampled_from(["i4", "i8"]), corrupt=st.booleans())
def test_check_binary_forest_finds_each_depth_in_the_same_walk(seed, sizes, dtype, corrupt):
    rnd = random.Random(seed)
    forest = [random_tree(rnd, n, rnd.random() < 0.5) for n in sizes]
    left = np.array([c for lt, _ in forest for c in lt], dtype)
    right = np.array([c for _, rt in forest for c in rt], dtype)
    feature = np.zeros(left.shape[0], np.int64)
    if corrupt:
        at = rnd.randrange(left.shape[0])
        (left if rnd.random() < 0.5 else right)[at] = rnd.randrange(-2, 8)
    offsets = np.cumsum([0] + [len(lt) for lt, _ in forest]).astype(np.int64)
    depths = np.full(len(forest), -7, np.int64)
    code, tree = K.check_binary_forest(left, right, feature, offsets, 1, depths=depths)[:2]
    assert code == K.check_binary_forest(left, right, feature, offsets, 1)[0]
    valid = len(forest) if not code else tree  # trees before the first invalid one
    for t, (a, b) in enumerate(zip(offsets[:-1], offsets[1:], strict=True)):
        # A valid tree's depth is binary_tree_depth's; from the first invalid one, untouched.
        want = K.binary_tree_depth(left[a:b], right[a:b]) if t < valid else -7
        assert depths[t] == want


def test_check_binary_forest_depths_argument():
    left, right = np.array([1, -1, -1, -1]), np.array([2, -1, -1, -1])
    feature, offsets = np.zeros(4, np.int64), np.array([0, 3, 4])
    depths = np.zeros(2, np.int64)
    assert K.check_binary_forest(left, right, feature, offsets, 1, depths=depths)[0] == 0
    assert depths.tolist() == [1, 0]
    read_only = np.zeros(2, np.int64)
    read_only.flags.writeable = False
    for bad in (np.zeros(3, np.int64), np.zeros(2, np.int32), np.zeros((2, 2), np.int64)[:, 0],
                read_only, [0, 0]):
        with pytest.raises(ArrayError, match="depths"):
            K.check_binary_forest(left, right, feature, offsets, 1, depths=bad)


@SETTINGS
@given(seed=st.integers(0, 2**32), sizes=st.lists(st.integers(0, 30), min_size=1, max_size=8),
       dtype=st.sampled_from(["u4", "i4", "i8"]), corrupt=st.integers(0, 3))
def test_check_hist_forest_matches_each_predictor(seed, sizes, dtype, corrupt):
    rnd = random.Random(seed)
    forest = [random_tree(rnd, n, rnd.random() < 0.5) for n in sizes]
    # HistGradientBoosting layout: leaves flagged, their children 0.
    left = np.array([max(c, 0) for lt, _ in forest for c in lt], dtype)
    right = np.array([max(c, 0) for _, rt in forest for c in rt], dtype)
    is_leaf = np.array([c == -1 for lt, _ in forest for c in lt], np.uint8)
    feature = np.array([rnd.randrange(3) for _ in range(left.shape[0])], np.int64)
    offsets = np.cumsum([0] + [len(lt) for lt, _ in forest]).astype(np.int64)
    for _ in range(corrupt):
        at = rnd.randrange(left.shape[0])
        column = rnd.choice([left, right, is_leaf, feature])
        column[at] = rnd.randrange(0, 4) if column is not feature else rnd.randrange(-1, 5)
    found = K.check_hist_forest(left, right, is_leaf, feature, offsets, 3)
    expected = (0, -1, -1, "")
    for t, (a, b) in enumerate(zip(offsets[:-1], offsets[1:], strict=True)):
        code, node, reason = K.check_hist_predictor(left[a:b], right[a:b], is_leaf[a:b],
                                                    feature[a:b], 3)
        if code:
            expected = (code, t, node, reason)
            break
    assert found == expected


def test_check_hist_forest_arguments():
    left = right = np.zeros(3, np.uint32)
    leaf, feature = np.ones(3, np.uint8), np.zeros(3, np.int64)
    assert K.check_hist_forest(left, right, leaf, feature, np.array([0, 1, 2, 3]), 1)[0] == 0
    assert K.check_hist_forest(left, right, leaf, feature, np.array([0, 0, 3]), 1)[:3] == (
        K.TREE_EMPTY, 0, -1)
    for bad in (np.array([0, 2]), np.array([0.0, 3.0])):
        with pytest.raises(ArrayError):
            K.check_hist_forest(left, right, leaf, feature, bad, 1)
    with pytest.raises(ArrayError):
        K.check_hist_forest(left, right, leaf.astype(np.int64), feature, np.array([0, 3]), 1)

def ref_scatter(splits, leaves, is_leaf):
    out, s, k = [], 0, 0
    for flag in is_leaf:
        if flag:
            out.append(leaves[k])
            k += 1
        else:
            out.append(splits[s])
            s += 1
    return out


@SETTINGS
@given(mask=hnp.arrays(np.bool_, st.integers(0, 300)),
       dtype=st.sampled_from(["u1", "i4", "i8", "f4", "f8", "u2", "c16"]),
       tail=st.sampled_from([(), (1, 2), (3,)]),
       layout=st.sampled_from(["plain", "field"]))
def test_scatter_rows_matches_reference(mask, dtype, tail, layout):
    rng = np.random.default_rng(len(mask))
    n, n_leaves = len(mask), int(mask.sum())
    splits = (rng.standard_normal((n - n_leaves, *tail)) * 100).astype(dtype)
    leaves = (rng.standard_normal((n_leaves, *tail)) * 100).astype(dtype)
    if layout == "field" and not tail:
        record = np.zeros(n, dtype=[("pad", "u1"), ("x", dtype), ("y", "f8")])
        out = record["x"]
    else:
        out = np.zeros((n, *tail), dtype)
    K.scatter_rows(splits, leaves, mask, out)
    expected = np.array(ref_scatter(list(splits), list(leaves), mask), dtype).reshape(out.shape)
    assert out.tobytes() == np.ascontiguousarray(expected).tobytes()


def test_scatter_rows_errors():
    out = np.zeros(4)
    mask = np.array([True, False, True, False])
    with pytest.raises(ArrayError):
        K.scatter_rows(np.zeros(3), np.zeros(2), mask, out)  # wrong split count
    with pytest.raises(ArrayError):
        K.scatter_rows(np.zeros(2, np.float32), np.zeros(2), mask, out)  # dtype mismatch
    with pytest.raises(ArrayError):
        K.scatter_rows(np.zeros(2), np.zeros(2), mask[:3], out)  # mask length
    with pytest.raises(ArrayError):
        K.scatter_rows(np.zeros(2), np.zeros(2), mask.astype(np.int64), out)  # mask dtype


_RECORD = np.dtype([("a", "<i8"), ("b", "<f8"), ("c", "u1"), ("d", "<i4"), ("e", "<f8")],
                   align=True)


@SETTINGS
@given(mask=hnp.arrays(np.bool_, st.integers(0, 1300)), split=st.sets(
    st.sampled_from(_RECORD.names)), leave_out=st.sets(st.sampled_from(_RECORD.names)))
def test_assemble_records_matches_field_by_field(mask, split, leave_out):
    # Tiles of 256 rows: lengths around and across them, fields from whole columns or parts.
    rng = np.random.default_rng(len(mask))
    n, n_leaves = len(mask), int(mask.sum())
    out = np.zeros(n, _RECORD)
    expected = np.zeros(n, _RECORD)
    columns = {}
    for name in _RECORD.names:
        if name in leave_out:
            continue
        dtype = _RECORD.fields[name][0]
        if name in split:
            splits = (rng.standard_normal(n - n_leaves) * 100).astype(dtype)
            leaves = (rng.standard_normal(n_leaves) * 100).astype(dtype)
            columns[name] = (splits, leaves)
            expected[name] = np.array(ref_scatter(list(splits), list(leaves), mask), dtype)
        else:
            columns[name] = (rng.standard_normal(n) * 100).astype(dtype)
            expected[name] = columns[name]
    K.assemble_records(out, columns, mask.view(np.uint8) * 3 if n % 2 else mask)
    assert out.tobytes() == expected.tobytes()


def test_assemble_records_errors():
    out = np.zeros(4, _RECORD)
    mask = np.array([True, False, True, False])
    good = np.zeros(4, np.int64)
    for columns in ({"z": good}, {"a": np.zeros(3, np.int64)}, {"a": np.zeros(4, np.int32)},
                    {"a": (np.zeros(3, np.int64), np.zeros(1, np.int64))},
                    {"a": (good, good, good)}, {"a": [1, 2, 3, 4]}):
        with pytest.raises(ArrayError):
            K.assemble_records(out, columns, mask)
    with pytest.raises(ArrayError, match="is_leaf"):
        K.assemble_records(out, {"a": good}, mask[:3])
    with pytest.raises(ArrayError, match="is_leaf"):
        K.assemble_records(out, {"a": good}, mask.astype(np.int64))
    for bad_out in (np.zeros(4, np.int64), out[::2], np.zeros((2, 2), _RECORD)):
        with pytest.raises(ArrayError, match="out"):
            K.assemble_records(bad_out, {"a": good[:bad_out.shape[0]]}, mask[:bad_out.shape[0]])
    K.assemble_records(out[:0], {"a": good[:0], "b": (np.zeros(0), np.zeros(0))}, mask[:0])


# -- ubjson_tree_list ---------------------------------------------------------------------------

_TREE_DTYPES = {"a": ">i4", "b": ">f4", "c": "|u1", "d": ">i8", "e": ">f8", "f": "|i1"}


@FEW
@given(counts=st.lists(st.lists(st.integers(0, 40), min_size=6, max_size=6), min_size=1,
                       max_size=30),
       params=st.lists(st.integers(0, 2**62), min_size=2, max_size=2))
def test_ubjson_tree_list_matches_encoding_each_tree(counts, params):
    """The packed writer gives the bytes of ubjson_encode over one dict per tree."""
    rng = np.random.default_rng(len(counts))
    names = sorted(_TREE_DTYPES)
    cuts = np.array(counts, dtype=np.int64).T  # column -> per-tree counts
    columns, offsets = {}, {}
    for name, per_tree in zip(names, cuts, strict=True):
        total = int(per_tree.sum())
        raw = rng.integers(-(2**31), 2**31, size=total * 8, dtype=np.int64).view(np.uint8)
        columns[name] = np.frombuffer(raw[:total * np.dtype(_TREE_DTYPES[name]).itemsize],
                                      dtype=_TREE_DTYPES[name]).copy()
        offsets[name] = np.concatenate([[0], np.cumsum(per_tree)]).astype(np.int64)
    n = len(counts)
    tree_params = {"zeta": np.full(n, params[0], np.int64),
                   "alpha": (np.arange(n, dtype=np.int64) * 7 + params[1]) % (2**62)}
    keys = sorted([*names, "id", "tree_param"])
    expected = []
    for i in range(n):
        tree: dict[str, object] = {}
        for key in keys:
            if key == "id":
                tree[key] = i
            elif key == "tree_param":
                tree[key] = {k: str(int(v[i])) for k, v in tree_params.items()}
            else:
                tree[key] = columns[key][offsets[key][i]:offsets[key][i + 1]]
        expected.append(tree)
    got = K.ubjson_tree_list(keys, columns, offsets, tree_params)
    assert got == bytes(K.ubjson_encode(expected))
    assert bytes(K.ubjson_encode({"t": K.UbjRaw(got)})) == bytes(K.ubjson_encode(
        {"t": expected}))


def test_ubjson_tree_list_refuses_unusable_arguments():
    col = np.arange(6, dtype=">i4")
    cut = np.array([0, 2, 6], dtype=np.int64)
    par = {"p": np.array([1, 2], dtype=np.int64)}
    assert K.ubjson_tree_list(["x", "id"], {"x": col}, {"x": cut}, par)
    bad_cases = [
        ({"x": col.astype("<i8")}, {"x": cut}, par),  # not a UBJSON dtype (little-endian)
        ({"x": col[::2]}, {"x": np.array([0, 1, 3], np.int64)}, par),  # not contiguous
        ({"x": col}, {"x": np.array([0, 2, 7], np.int64)}, par),  # offsets past the end
        ({"x": col}, {"x": np.array([0, 4, 2, 6], np.int64)}, {}),  # offsets decrease
        ({"x": col}, {"x": np.array([1, 2, 6], np.int64)}, par),  # offsets not from 0
        ({"x": col}, {"x": cut}, {"p": np.array([1], np.int64)}),  # params of other length
        ({"x": col}, {"x": cut}, {"p": np.array([1, -2], np.int64)}),  # negative param
        ({"x": col}, {"x": cut}, {"p": np.array([1, 2], np.int32)}),  # param dtype
    ]
    for columns, offsets, params in bad_cases:
        with pytest.raises(ArrayError):
            K.ubjson_tree_list(["x", "id", "tree_param"], columns, offsets, params)
    with pytest.raises(ArrayError):
        K.ubjson_tree_list(["id"], {}, {}, {})  # nothing to count trees by


# -- lightgbm_model_text ------------------------------------------------------------------------


def ref_lightgbm_text(head, items, n_trees, tail):
    """The model text written token by token (what LightGBM's own writer lays out)."""
    blocks = []
    for i in range(n_trees):
        lines = [f"Tree={i}".encode()]
        for prefix, values, offsets, present, groups, group_offsets in items:
            tokens = values.split(b",") if values else []
            mine = tokens[offsets[i]:offsets[i + 1]]
            if present is not None and not present[i]:
                assert not mine
                continue
            if groups is None:
                lines.append(prefix + b" ".join(mine))
            else:
                text, at = b"", 0
                for count in groups[group_offsets[i]:group_offsets[i + 1]]:
                    text += b"".join(t + b" " for t in mine[at:at + count]) + b" "
                    at += count
                assert at == len(mine)
                lines.append(prefix + text)
        blocks.append(b"".join(lines) + b"\n\n\n")
    sizes = " ".join(str(len(b)) for b in blocks)
    return head + f"tree_sizes={sizes}\n\n" + b"".join(blocks).decode() + tail


@FEW
@given(per_tree=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3), st.booleans(),
                                   st.booleans()), max_size=25),
       head=st.sampled_from(["tree\nversion=v4\n", "tree\nfeature_names=é ü\n"]),
       tail=st.sampled_from(["end of trees\n", "end of trees\n\nfeature_importances:\nα=1\n"]))
def test_lightgbm_model_text_matches_reference(per_tree, head, tail):
    rng = random.Random(len(per_tree))
    n = len(per_tree)

    def tokens(count):
        pool = [b"0", b"-1", b"12", b"3.25", b"-0.001", b"1e-07", b"inf", b"nan", b"123456789"]
        return b",".join(rng.choice(pool) for _ in range(count))

    def offsets(counts):
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    leaves = [t[0] for t in per_tree]
    cats = [t[1] if t[2] else 0 for t in per_tree]
    linear = np.array([t[3] for t in per_tree], dtype=np.uint8)
    has_cat = np.array([c > 0 for c in cats], dtype=np.uint8)
    groups = np.array([rng.randint(0, 3) for _ in range(sum(leaves))], dtype=np.int64)
    leaf_offsets = offsets(leaves)
    per_tree_linear = [int(groups[leaf_offsets[i]:leaf_offsets[i + 1]].sum()) if linear[i]
                       else 0 for i in range(n)]
    groups_used = np.concatenate([groups[leaf_offsets[i]:leaf_offsets[i + 1]]
                                  for i in range(n) if linear[i]] or [np.zeros(0, np.int64)])
    group_counts = [leaves[i] if linear[i] else 0 for i in range(n)]
    one = np.arange(n + 1, dtype=np.int64)
    items = [
        (b"\nnum_leaves=", b",".join(str(v).encode() for v in leaves), one, None, None, None),
        (b"\nsplit=", tokens(sum(leaves)), offsets(leaves), None, None, None),
        (b"\ncat=", tokens(sum(cats)), offsets(cats), has_cat, None, None),
        (b"\nlinear=", tokens(sum(per_tree_linear)), offsets(per_tree_linear), linear,
         groups_used.astype(np.int64), offsets(group_counts)),
        (b"\nshrinkage=", tokens(n), one, None, None, None),
    ]
    expected = ref_lightgbm_text(head, items, n, tail)
    assert K.lightgbm_model_text(head, items, n, tail) == expected


def test_lightgbm_model_text_refuses_unusable_arguments():
    one = np.arange(3, dtype=np.int64)
    good = (b"\nx=", b"1,2", one, None, None, None)
    assert K.lightgbm_model_text("", [good], 2, "") == "tree_sizes=13 13\n\nTree=0\nx=1\n\n\n" \
        "Tree=1\nx=2\n\n\n"
    bad_items = [
        (b"\nx=", b"1,,2", np.array([0, 1, 3]), None, None, None),  # empty token
        (b"\nx=", b",1", one, None, None, None),  # leading comma
        (b"\nx=", b"1,", one, None, None, None),  # trailing comma
        (b"\nx=", b"1,2,3", one, None, None, None),  # more tokens than the offsets count
        (b"\nx=", b"1", one, None, None, None),  # fewer
        (b"\nx=", b"1,2", np.array([0, 2, 1]), None, None, None),  # offsets decrease
        (b"\nx=", b"1,2", np.array([1, 1, 2]), None, None, None),  # not from 0
        (b"\nx=", b"1,2", np.array([0, 2]), None, None, None),  # wrong length
        (b"\nx=", b"1,2", one.astype(np.int32), None, None, None),  # dtype
        (b"\nx=", "1,2", one, None, None, None),  # values not bytes
        (b"\nx=", "é,2".encode(), one, None, None, None),  # not ASCII
        ("\nx=", b"1,2", one, None, None, None),  # prefix not bytes
        (b"\nx=", b"1,2", one, np.array([1, 0], np.uint8), None, None),  # absent with values
        (b"\nx=", b"1,2", one, np.array([1], np.uint8), None, None),  # present's length
        (b"\nx=", b"1,2", one, None, np.array([2, 0], np.int64), one),  # group beyond tree
        (b"\nx=", b"1,2", one, None, np.array([0, 0], np.int64), one),  # groups cover less
    ]
    for item in bad_items:
        with pytest.raises(ArrayError):
            K.lightgbm_model_text("", [item], 2, "")
    with pytest.raises(ArrayError):
        K.lightgbm_model_text("", [good], -1, "")
    with pytest.raises(ArrayError):
        K.lightgbm_model_text(b"", [good], 2, "")



def test_lightgbm_model_text_cuts_and_empty_tokens_at_every_word_position():
    # The token scan reads eight bytes at a time: tokens of 1 to 11 characters put the cuts
    # between trees, and the commas of an empty token, at every position in and across words.
    rng = random.Random(13)
    for _ in range(300):
        n = rng.randint(1, 6)
        counts = [rng.randint(0, 6) for _ in range(n)]
        tokens = [str(rng.randint(1, 9)).encode() * rng.randint(1, 11)
                  for _ in range(sum(counts))]
        values = b",".join(tokens)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        item = (b"\nx=", values, offsets, None, None, None)
        assert K.lightgbm_model_text("", [item], n, "") == ref_lightgbm_text("", [item], n, "")
        if not tokens:
            continue
        # One more comma: after an existing one (two in a row), first or last.  The offsets
        # count one more token, so only the empty token is wrong.
        commas = [i + 1 for i, c in enumerate(values) if c == ord(",")]
        at = rng.choice([0, len(values), *commas])
        broken = values[:at] + b"," + values[at:]
        more = offsets.copy()
        more[-1] += 1
        with pytest.raises(ArrayError):
            K.lightgbm_model_text("", [(b"\nx=", broken, more, None, None, None)], n, "")


# -- ubjson_decode_packed -----------------------------------------------------------------------


def _packed_reference(trees):
    """What ubjson_decode_packed gathers from a list of tree dicts (decoded the plain way)."""
    keys = list(trees[0])
    arrays = {k: (np.concatenate([t[k] for t in trees]), [t[k].size for t in trees])
              for k in keys if isinstance(trees[0][k], np.ndarray)}
    ints = {k: [t[k] for t in trees] for k in keys if type(trees[0][k]) is int}
    objects = {k: {s: [t[k][s] for t in trees] for s in trees[0][k]}
               for k in keys if isinstance(trees[0][k], dict)}
    return keys, arrays, ints, objects


@FEW
@given(sizes=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 5)), min_size=1,
                      max_size=20),
       dtypes=st.tuples(st.sampled_from([">i4", ">f4", ">i8", ">f8", "|u1", "|i1", ">i2"]),
                        st.sampled_from([">i4", ">f4", "|u1"])))
def test_ubjson_decode_packed_gathers_what_ubjson_decode_reads(sizes, dtypes):
    rng = np.random.default_rng(len(sizes))
    trees = []
    for i, (a, b) in enumerate(sizes):
        trees.append({
            "alpha": rng.integers(-100, 100, a).astype(dtypes[0]),
            "id": i * 1000 - 5,
            "param": {"x": str(a), "y": "é" * b},
            "beta": rng.integers(0, 100, b).astype(dtypes[1]),
        })
    raw = bytes(K.ubjson_encode({"learner": {"model": {"trees": trees}, "n": 1}}))
    plain = K.ubjson_decode(raw)
    packed = K.ubjson_decode_packed(raw)
    got = packed["learner"]["model"].pop("trees")
    expected = plain["learner"]["model"].pop("trees")
    assert packed == plain  # everything but the trees is decoded alike
    assert isinstance(got, K.UbjTrees)
    keys, arrays, ints, objects = _packed_reference(expected)
    assert got.packed["count"] == len(trees) and got.packed["keys"] == keys
    assert set(got.packed["arrays"]) == set(arrays)
    for k, (values, lengths) in arrays.items():
        column, counts = got.packed["arrays"][k]
        assert column.dtype == expected[0][k].dtype  # the typed arrays' own (big-endian)
        assert column.tobytes() == values.astype(column.dtype).tobytes()
        assert counts.dtype == np.int64 and counts.tolist() == lengths
    assert {k: v.tolist() for k, v in got.packed["ints"].items()} == ints
    assert got.packed["objects"] == objects


def test_ubjson_decode_packed_falls_back_to_plain_values():
    a = np.arange(3, dtype=">i4")
    cases = [
        [{"a": a, "id": 0}, {"id": 1, "a": a}],  # keys in another order
        [{"a": a, "id": 0}, {"a": a}],  # a key missing
        [{"a": a}, {"a": a, "id": 1}],  # a key more
        [{"a": a}, {"a": a.astype(">f4")}],  # arrays of other types
        [{"a": a}, {"a": [1, 2]}],  # an untyped array
        [{"a": "text"}],  # a string value
        [{"a": {"s": 1}}],  # an object of non-strings
        [{"a": {"s": "x"}}, {"a": {"t": "x"}}],  # objects with other keys
        [1, 2],  # not objects
        [],  # no trees
    ]
    for trees in cases:
        raw = bytes(K.ubjson_encode({"trees": trees}))
        got = K.ubjson_decode_packed(raw)
        if trees:
            assert repr(got) == repr(K.ubjson_decode(raw))
        else:
            assert isinstance(got["trees"], K.UbjTrees) and got["trees"].packed["count"] == 0
    # Malformed documents are refused as ubjson_decode refuses them.
    raw = bytes(K.ubjson_encode({"trees": [{"a": a, "id": 0}]}))
    for bad in (raw[:-3], raw + b"}", raw.replace(b"$l", b"$q")):
        with pytest.raises(ValueError):
            K.ubjson_decode(bad)
        with pytest.raises(ValueError):
            K.ubjson_decode_packed(bad)
