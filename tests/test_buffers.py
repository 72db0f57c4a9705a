"""The buffer pool (buffers.py): memory handed back is reused, never while anything sees it."""

from __future__ import annotations

import numpy as np
import pytest

from milo_pack.buffers import MIN_BYTES, BufferPool, owner_of

from .common import stored_array

N = MIN_BYTES // 8  # float64 elements of the smallest pooled size


def memory(arr: np.ndarray) -> int:
    """Where the memory ``arr`` lies in starts (holding no reference to it)."""
    return int(owner_of(arr).__array_interface__["data"][0])


def handed_back(pool: BufferPool, count: int) -> int:
    """Take ``count`` float64 from ``pool`` and hand them back; where their memory lies."""
    a = pool.empty(count, np.float64)
    where = memory(a)
    pool.give(a)
    return where


def test_a_buffer_handed_back_is_reused_for_the_same_or_a_smaller_size():
    pool = BufferPool()
    owner = handed_back(pool, 2 * N)
    b = pool.empty((N + 8, 2), np.int32)  # fewer bytes, other dtype and shape
    assert memory(b) == owner and b.shape == (N + 8, 2) and b.dtype == np.int32
    b[...] = 7
    assert (b == 7).all()


def test_a_buffer_still_viewed_is_never_handed_out():
    pool = BufferPool()
    a = pool.empty(N, np.float64)
    a[...] = 1.5
    view = a[10:20]
    pool.give(a)
    del a
    b = pool.empty(N, np.float64)  # the only spare one is still viewed: fresh memory
    assert not np.shares_memory(b, view)
    b[...] = -1.0
    assert (view == 1.5).all()
    spare = memory(view)
    del view
    c = pool.empty(N, np.float64)  # now it is free
    assert memory(c) == spare


def test_sizes_outside_half_to_all_of_a_spare_buffer_get_fresh_memory():
    pool = BufferPool()
    owner = handed_back(pool, 4 * N)
    assert memory(pool.empty(N, np.float64)) != owner  # a quarter: too small a use of it
    assert memory(pool.empty(4 * N + 1, np.float64)) != owner  # larger
    assert memory(pool.empty(3 * N, np.float64)) == owner


def test_slack_leaves_room_for_a_slightly_larger_next_array():
    pool = BufferPool()
    a = pool.empty(N * 4, np.float64, slack=True)
    owner = memory(a)
    assert owner_of(a).nbytes >= a.nbytes * 5 // 4
    pool.give(a)
    del a
    assert memory(pool.empty(N * 4 + N // 2, np.float64)) == owner


def test_spare_memory_is_bounded_and_foreign_arrays_are_ignored():
    pool = BufferPool(max_bytes=3 * N * 8)
    arrays = [pool.empty(N, np.float64) for _ in range(5)]
    for a in arrays:
        pool.give(a)
    del arrays, a
    assert pool._bytes <= 3 * N * 8 and len(pool._spare) == 3
    before = len(pool._spare)
    pool.give(np.empty(2 * N))  # not from the pool
    pool.give(np.empty(16, np.uint8))  # small
    pool.give(np.frombuffer(bytearray(2 * N * 8), np.float64))  # not an owner array
    assert len(pool._spare) == before
    small = pool.empty(4, np.float64)  # below MIN_BYTES: plain numpy memory
    assert small.base is None
    pool.clear()
    assert pool._spare == [] and pool._bytes == 0


@pytest.mark.parametrize("cache_bytes", [0, None])
def test_views_of_decoded_chunks_survive_later_reads(tmp_path, cache_bytes):
    """Rows read as a view of a decoded chunk keep their values while later reads decode
    other chunks of the section into recycled buffers (streaming keeps one chunk a section)."""
    a = np.arange(600_000, dtype=np.float64) * 0.5
    with stored_array(tmp_path, a) as (store, cl):
        if cache_bytes == 0:
            store.stream()
        views = [store.read(0, k * cl + 3, 100, view=True) for k in range(4)]
        for _ in range(3):  # every chunk again: each decode may reuse a retired buffer
            for k in range(4):
                assert store.read(0, k * cl + 5, 50).tolist() == a[k * cl + 5:k * cl + 55].tolist()
        for k, view in enumerate(views):
            assert view.tolist() == a[k * cl + 3:k * cl + 103].tolist()


def test_rows_across_chunks_are_copied_into_buffers_handed_back(tmp_path):
    """A read across two chunks copies into a spare buffer once one was handed back (a
    forest's blocks); the copy holds the right rows, and a copy still held is never reused."""
    a = np.arange(600_000, dtype=np.float64) * 0.5
    with stored_array(tmp_path, a) as (store, cl):
        count = 2 * N
        first = store.read(0, cl - N, count)  # across chunks 0 and 1: a copy
        assert first.flags.writeable and first.tolist() == a[cl - N:cl + N].tolist()
        held = store.read(0, 2 * cl - N, count)  # not handed back: never reused
        assert memory(held) != memory(first)
        where = memory(first)
        store.buffers.give(first)
        del first
        again = store.read(0, 3 * cl - N, count)
        assert memory(again) == where
        assert again.tolist() == a[3 * cl - N:3 * cl + N].tolist()
        assert held.tolist() == a[2 * cl - N:2 * cl + N].tolist()
