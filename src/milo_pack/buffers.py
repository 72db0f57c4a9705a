"""Spare array buffers for a reader that decodes the same sizes again and again.

Why: a process whose allocator returns every large free block to the system maps fresh pages
for each large array and faults them in one at a time.  Dask's worker processes are such
processes (they set ``MALLOC_TRIM_THRESHOLD_``, which also pins glibc's mmap threshold at
128 kB): there, rebuilding a lazily loaded forest's tree (its decoded chunks, its record array)
cost twice as much as elsewhere, nearly all of it page faults.  A store that decodes chunk
after chunk, and a builder that assembles tree after tree, hand their buffers back here and
take them again instead.

Invariant: a buffer handed back may still be referenced (a chunk's rows read as a view, a
decode still running); it is handed out again only once nothing but this pool refers to it
(its reference count), so no live array ever sees its memory change.  Spare memory is bounded
(``max_bytes``, 4 MiB by default); the oldest spare buffer is dropped first.  The bound is part
of what a streaming lazy model (``cache_bytes=0``) holds beside the member in use, within its
8 MB allowance: measured on the README forest in a Dask-like process, 4 MiB of spare buffers
kept nearly all of what 16 MiB saved (274 against 261 page faults a tree rebuilt, 570 with no
pool), where 16 MiB kept 8 MiB of spare buffers between calls.
"""

from __future__ import annotations

import math
import sys
import threading

import numpy as np

# Smaller arrays come from malloc's heap, which keeps them: nothing to save.
MIN_BYTES = 64 * 1024

# References to a buffer that only the pool's list holds, as ``sys.getrefcount(spare[i])``
# counts them (the list's and the call's own); found once, the same way, not assumed.
_probe = [np.empty(1, np.uint8)]
_ONLY_LISTED = sys.getrefcount(_probe[0])
del _probe
# A free-threaded build may change reference counts from another thread at any time.
_ENABLED = getattr(sys, "_is_gil_enabled", lambda: True)()


def owner_of(arr: np.ndarray) -> np.ndarray:
    """The array that owns ``arr``'s memory (numpy does not always shorten a chain of views
    to it); ``arr`` itself if it owns its memory, or the last array before a foreign base."""
    while isinstance(arr.base, np.ndarray):
        arr = arr.base
    return arr


class BufferPool:
    """Buffers handed back by their users, handed out again for arrays of the same size.

    Parameters
    ----------
    max_bytes : int
        Most spare memory kept (buffers in use are not counted).
    """

    def __init__(self, max_bytes: int = 4 << 20) -> None:
        self.max_bytes = max_bytes
        self._spare: list[np.ndarray] = []  # owners: 1-D uint8, oldest first
        self._bytes = 0
        self._lock = threading.Lock()

    def empty(self, shape: int | tuple[int, ...], dtype: np.dtype | type | str,
              slack: bool = False) -> np.ndarray:
        """An uninitialized array, in a spare buffer when one fits (the smallest that does,
        at most twice the size).

        ``slack``: a new buffer gets a quarter more room, so that the next array of about
        the same size (a forest's next tree) fits in it once it is handed back.
        """
        dtype = np.dtype(dtype)
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        nbytes = math.prod(dims) * dtype.itemsize
        if nbytes < MIN_BYTES or not _ENABLED:
            return np.empty(dims, dtype)
        with self._lock:
            spare = self._spare
            best = -1
            for i in range(len(spare)):
                size = spare[i].nbytes
                if (nbytes <= size <= 2 * nbytes
                        and (best < 0 or size < spare[best].nbytes)
                        and sys.getrefcount(spare[i]) <= _ONLY_LISTED):
                    best = i
            if best >= 0:
                owner = spare.pop(best)
                self._bytes -= owner.nbytes
                return owner[:nbytes].view(dtype).reshape(dims)
        size = nbytes + (nbytes // 4 + 4095) // 4096 * 4096 if slack else nbytes
        return np.empty(size, np.uint8)[:nbytes].view(dtype).reshape(dims)

    def give(self, arr: np.ndarray) -> None:
        """Hand back an array from :meth:`empty` (others are ignored); it is reused once
        nothing else refers to its memory."""
        owner = owner_of(arr)
        if (not _ENABLED or not isinstance(owner, np.ndarray) or owner.base is not None
                or owner.dtype != np.uint8 or owner.ndim != 1 or owner.nbytes < MIN_BYTES
                or not owner.flags.owndata or not owner.flags.writeable):
            return
        with self._lock:
            if any(s is owner for s in self._spare):
                return
            self._spare.append(owner)
            self._bytes += owner.nbytes
            while self._bytes > self.max_bytes:
                self._bytes -= self._spare.pop(0).nbytes

    def clear(self) -> None:
        """Drop every spare buffer."""
        with self._lock:
            self._spare.clear()
            self._bytes = 0
