"""Micro-benchmark of the Cython kernels in ``milo_pack._arrays`` against plain numpy.

Run ``python benchmarks/bench_kernels.py`` (``--json`` for machine-readable output,
``--mb`` for the input size, ``--repeat`` for the number of timings, ``--only`` to filter).

Each row times one kernel on an input of about ``--mb`` megabytes and the natural numpy (or pure
Python) way to compute the same result, best of ``--repeat`` runs; the two results are compared
once, so a row cannot report a speed-up for a wrong answer.  Throughput is input bytes per second.

Kernels that write into ``out`` are timed twice: ``cython`` allocates a fresh ``out`` on every
run, like the numpy expression does (so page faults of the new memory count on both sides; the
speed-up column uses this figure), and ``reused`` writes into one preallocated ``out``, as a
decoder filling its destination buffer does.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from milo_pack import _arrays as K

MB = 1 << 20


@dataclass
class Case:
    kernel: str
    size: str
    nbytes: int
    cython: Callable[[], Any]
    numpy: Callable[[], Any]
    reused: Callable[[], Any] | None = None
    same: Callable[[Any, Any], bool] | None = None


@dataclass
class Row:
    kernel: str
    size: str
    cython_mb_s: float
    reused_mb_s: float | None
    numpy_mb_s: float
    speedup: float


def best_of(fns: list[Callable[[], Any]], repeat: int) -> list[float]:
    """Best time of each function; runs are interleaved so that load from other processes
    affects every function alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) and a.dtype.names is not None:
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b or (a != a and b != b)


def _label(nbytes: int) -> str:
    return f"{nbytes / MB:.0f} MB" if nbytes >= MB else f"{nbytes / 1024:.0f} kB"


# --- the cases -----------------------------------------------------------------------------------


def shuffle_cases(nbytes: int, rng: np.random.Generator) -> list[Case]:
    # Smooth float data, as shuffle is meant for; the byte pattern does not change the speed.
    size = nbytes // 48 * 48  # divisible by every element size below
    src = np.cumsum(rng.normal(size=size // 8)).view(np.uint8)
    reused = np.empty_like(src)
    cases = []
    for es in (2, 3, 4, 8, 16):

        def cy(es: int = es) -> np.ndarray:
            out = np.empty_like(src)
            K.shuffle(src, out, es)
            return out

        cases.append(
            Case(
                f"shuffle elemsize={es}",
                _label(size),
                size,
                cy,
                lambda es=es: src.reshape(-1, es).T.copy().reshape(-1),
                lambda es=es: K.shuffle(src, reused, es),
            )
        )
    for es in (4, 8):
        shuffled = src.reshape(-1, es).T.copy().reshape(-1)

        def cy_un(es: int = es, shuffled: np.ndarray = shuffled) -> np.ndarray:
            out = np.empty_like(shuffled)
            K.unshuffle(shuffled, out, es)
            return out

        cases.append(
            Case(
                f"unshuffle elemsize={es}",
                _label(size),
                size,
                cy_un,
                lambda es=es, shuffled=shuffled: shuffled.reshape(es, -1).T.copy().reshape(-1),
                lambda es=es, shuffled=shuffled: K.unshuffle(shuffled, reused, es),
            )
        )
    return cases


def delta_cases(nbytes: int, rng: np.random.Generator) -> list[Case]:
    cases = []
    for dtype in (np.int32, np.int64):
        n = nbytes // np.dtype(dtype).itemsize
        # Monotone, like sparse indptr or string offsets.
        src = np.cumsum(rng.integers(0, 50, size=n)).astype(dtype)
        diff = np.diff(src, prepend=dtype(0))
        reused = np.empty_like(src)

        def enc(src: np.ndarray = src) -> np.ndarray:
            out = np.empty_like(src)
            K.delta_encode(src, out)
            return out

        def dec(diff: np.ndarray = diff) -> np.ndarray:
            out = np.empty_like(diff)
            K.delta_decode(diff, out)
            return out

        name = np.dtype(dtype).name
        cases.append(
            Case(
                f"delta_encode {name}",
                _label(src.nbytes),
                src.nbytes,
                enc,
                lambda src=src: np.diff(src, prepend=src.dtype.type(0)),
                lambda src=src, reused=reused: K.delta_encode(src, reused),
            )
        )
        cases.append(
            Case(
                f"delta_decode {name}",
                _label(src.nbytes),
                src.nbytes,
                dec,
                lambda diff=diff: np.cumsum(diff, dtype=diff.dtype),
                lambda diff=diff, reused=reused: K.delta_decode(diff, reused),
            )
        )
    return cases


def _tree_children(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Children of a random full binary tree of about ``n`` nodes in scikit-learn's layout.

    Depth-first preorder: an internal node's left child is the next node, its right child
    follows the whole left subtree.
    """
    rnd = random.Random(seed)
    n -= 1 - n % 2  # a full binary tree has an odd node count
    left = [-1] * n
    right = [-1] * n
    stack = [(0, n)]
    while stack:
        node, size = stack.pop()
        if size > 1:
            a = 2 * rnd.randrange((size - 1) // 2) + 1  # odd size of the left subtree
            left[node], right[node] = node + 1, node + 1 + a
            stack.append((node + 1 + a, size - 1 - a))
            stack.append((node + 1, a))
    return np.array(left, dtype=np.int64), np.array(right, dtype=np.int64)


def relidx_cases(nbytes: int, rng: np.random.Generator) -> list[Case]:
    # Right children of a random depth-first tree: leaves hold the sentinel, internal nodes point
    # past their left subtree (a random odd size, mostly small, as in trained trees).
    n = nbytes // 8
    sentinel = -1
    internal = rng.random(n) < 0.5
    jump = 2 * rng.geometric(0.05, size=n) - 1
    right = np.where(internal, np.arange(n) + 1 + jump, sentinel).astype(np.int64)

    def np_encode(src: np.ndarray, dtype: Any) -> np.ndarray:
        r = src - np.arange(n, dtype=np.int64)
        enc = np.where(src == sentinel, 0, np.where(r >= 0, r + 1, r))
        info = np.iinfo(dtype)
        if enc.min() < info.min or enc.max() > info.max:
            raise OverflowError
        return enc.astype(dtype, copy=False)

    cases = []
    for dtype in (np.int64, np.int32):
        reused = np.empty(n, dtype=dtype)

        def cy(dtype: Any = dtype) -> np.ndarray:
            out = np.empty(n, dtype=dtype)
            assert K.relidx_encode(right, out, 0, sentinel)
            return out

        cases.append(
            Case(
                f"relidx_encode int64->{np.dtype(dtype).name}",
                _label(right.nbytes),
                right.nbytes,
                cy,
                lambda dtype=dtype: np_encode(right, dtype),
                lambda reused=reused: K.relidx_encode(right, reused, 0, sentinel),
            )
        )

    enc32 = np_encode(right, np.int32)
    from sklearn.tree._tree import NODE_DTYPE

    nodes = np.zeros(n, dtype=NODE_DTYPE)
    decoded = np.empty(n, dtype=np.int64)

    def np_decode(e: np.ndarray) -> np.ndarray:
        e = e.astype(np.int64)
        p = np.arange(n, dtype=np.int64)
        return np.where(e == 0, sentinel, np.where(e > 0, e - 1 + p, e + p))

    def cy_dec() -> np.ndarray:
        out = np.empty(n, dtype=np.int64)
        K.relidx_decode(enc32, out, 0, sentinel)
        return out

    cases.append(
        Case(
            "relidx_decode int32->int64",
            _label(enc32.nbytes),
            enc32.nbytes,
            cy_dec,
            lambda: np_decode(enc32),
            lambda: K.relidx_decode(enc32, decoded, 0, sentinel),
        )
    )

    def np_dec_field() -> np.ndarray:
        nodes["right_child"] = np_decode(enc32)
        return nodes["right_child"]

    def cy_dec_field() -> np.ndarray:
        K.relidx_decode(enc32, nodes["right_child"], 0, sentinel)
        return nodes["right_child"]

    cases.append(
        Case(
            "relidx_decode int32->nodes field",
            _label(enc32.nbytes),
            enc32.nbytes,
            cy_dec_field,
            np_dec_field,
        )
    )
    return cases


def minmax_cases(nbytes: int, rng: np.random.Generator) -> list[Case]:
    cases = []
    for dtype in (np.int32, np.int64):
        a = rng.integers(-(10**6), 10**6, size=nbytes // np.dtype(dtype).itemsize).astype(dtype)
        cases.append(
            Case(
                f"minmax {np.dtype(dtype).name}",
                _label(a.nbytes),
                a.nbytes,
                lambda a=a: K.minmax(a),
                lambda a=a: (int(a.min()), int(a.max())),
            )
        )
    f = rng.normal(size=nbytes // 8)
    f[::1000] = np.nan
    cases.append(
        Case(
            "minmax float64 with NaN",
            _label(f.nbytes),
            f.nbytes,
            lambda: K.minmax(f),
            lambda: (float(np.nanmin(f)), float(np.nanmax(f))),
        )
    )
    from sklearn.tree._tree import NODE_DTYPE

    nodes = np.zeros(nbytes // NODE_DTYPE.itemsize, dtype=NODE_DTYPE)
    nodes["feature"] = rng.integers(-2, 100, size=nodes.shape[0])
    field = nodes["feature"]
    cases.append(
        Case(
            "minmax int64 strided field",
            _label(field.nbytes),
            field.nbytes,
            lambda: K.minmax(field),
            lambda: (int(field.min()), int(field.max())),
        )
    )
    return cases


def _random_nodes(n: int, rng: np.random.Generator) -> np.ndarray:
    from sklearn.tree._tree import NODE_DTYPE

    nodes = np.zeros(n, dtype=NODE_DTYPE)
    for name in NODE_DTYPE.names:
        kind = NODE_DTYPE.fields[name][0].kind
        if kind == "f":
            nodes[name] = rng.normal(size=n)
        else:
            nodes[name] = rng.integers(0, 100, size=n)
    return nodes


def record_cases(nbytes: int, rng: np.random.Generator) -> list[Case]:
    nodes = _random_nodes(nbytes // 64, rng)
    names = nodes.dtype.names
    columns = {name: np.ascontiguousarray(nodes[name]) for name in names}
    reused = np.zeros(nodes.shape, nodes.dtype)

    def np_merge() -> np.ndarray:
        out = np.zeros(nodes.shape, nodes.dtype)
        for name in names:
            out[name] = columns[name]
        return out

    def cy_merge() -> np.ndarray:
        out = np.zeros(nodes.shape, nodes.dtype)
        K.merge_fields(columns, out)
        return out

    return [
        Case(
            "split_fields (sklearn nodes)",
            _label(nodes.nbytes),
            nodes.nbytes,
            lambda: K.split_fields(nodes),
            lambda: {name: np.ascontiguousarray(nodes[name]) for name in names},
        ),
        Case(
            "merge_fields (sklearn nodes)",
            _label(nodes.nbytes),
            nodes.nbytes,
            cy_merge,
            np_merge,
            lambda: K.merge_fields(columns, reused),
        ),
    ]


def string_cases(nbytes: int, rng: np.random.Generator) -> list[Case]:
    # Vocabulary-like: short words, one in ten with a non-ASCII letter.
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    n = nbytes // 10
    lengths = rng.integers(1, 16, size=n)
    flat = letters[rng.integers(0, 26, size=int(lengths.sum()))].tolist()
    strings, pos = [], 0
    for i, k in enumerate(lengths.tolist()):
        word = "".join(flat[pos : pos + k])
        pos += k
        strings.append(word + "é" if i % 10 == 0 else word)

    def np_encode() -> tuple[np.ndarray, bytes]:
        encoded = [s.encode("utf-8") for s in strings]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        return offsets, b"".join(encoded)

    offsets, blob = np_encode()

    def np_decode() -> list[str]:
        bounds = offsets.tolist()
        return [blob[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    return [
        Case(
            "string_table_encode",
            _label(len(blob)),
            len(blob),
            lambda: K.string_table_encode(strings),
            np_encode,
        ),
        Case(
            "string_table_decode",
            _label(len(blob)),
            len(blob),
            lambda: K.string_table_decode(offsets, blob),
            np_decode,
        ),
    ]


def _numpy_check_tree(
    left: np.ndarray, right: np.ndarray, feature: np.ndarray, n_features: int
) -> bool:
    """Level-synchronous BFS in numpy: the vectorised way to validate a tree without Cython."""
    n = left.shape[0]
    reached = np.zeros(n, dtype=np.int64)
    reached[0] = 1
    frontier = np.array([0])
    while frontier.size:
        lf, rf = left[frontier], right[frontier]
        is_leaf = lf == -1
        if np.any(is_leaf & (rf != -1)):
            return False
        inner = frontier[~is_leaf]
        children = np.concatenate([left[inner], right[inner]])
        if np.any((children < 0) | (children >= n)):
            return False
        f = feature[inner]
        if np.any((f < 0) | (f >= n_features)):
            return False
        counts = np.bincount(children, minlength=n)
        reached += counts
        if reached.max() > 1:
            return False
        frontier = np.unique(children)
    return bool(reached.min() == 1)


def _python_check_tree(left: list, right: list, feature: list, n_features: int) -> bool:
    n = len(left)
    seen = bytearray(n)
    seen[0] = 1
    stack = [0]
    while stack:
        node = stack.pop()
        lc, rc = left[node], right[node]
        if lc == -1:
            if rc != -1:
                return False
            continue
        if not (0 <= lc < n and 0 <= rc < n and 0 <= feature[node] < n_features):
            return False
        if seen[lc] or seen[rc] or lc == rc:
            return False
        seen[lc] = seen[rc] = 1
        stack += (rc, lc)
    return all(seen)


def tree_cases(nbytes: int, rng: np.random.Generator) -> list[Case]:
    left, right = _tree_children(nbytes // 64, 0)
    n = left.shape[0]
    nodes = np.zeros(
        n,
        dtype=[
            ("left_child", "<i8"),
            ("right_child", "<i8"),
            ("feature", "<i8"),
            ("threshold", "<f8"),
            ("pad", "V32"),
        ],
    )
    nodes["left_child"], nodes["right_child"] = left, right
    nodes["feature"] = np.where(left == -1, -2, rng.integers(0, 50, size=n))
    l_f, r_f, f_f = nodes["left_child"], nodes["right_child"], nodes["feature"]
    size = 3 * 8 * n
    lists = (l_f.tolist(), r_f.tolist(), f_f.tolist())
    cases = [
        Case(
            f"check_binary_tree ({n / 1e6:.1f}M nodes) vs numpy BFS",
            _label(size),
            size,
            lambda: K.check_binary_tree(l_f, r_f, f_f, 50)[0] == 0,
            lambda: _numpy_check_tree(l_f, r_f, f_f, 50),
        ),
        Case(
            f"check_binary_tree ({n / 1e6:.1f}M nodes) vs Python walk",
            _label(size),
            size,
            lambda: K.check_binary_tree(l_f, r_f, f_f, 50)[0] == 0,
            lambda: _python_check_tree(*lists, 50),
        ),
    ]
    idx = rng.integers(0, 1000, size=nbytes // 8)
    indptr = np.cumsum(rng.integers(0, 5, size=nbytes // 8))
    cases += [
        Case(
            "check_indices int64",
            _label(idx.nbytes),
            idx.nbytes,
            lambda: K.check_indices(idx, 1000),
            lambda: int(next(iter(np.flatnonzero((idx < 0) | (idx >= 1000))), -1)),
        ),
        Case(
            "check_monotone int64",
            _label(indptr.nbytes),
            indptr.nbytes,
            lambda: K.check_monotone(indptr),
            lambda: int(next(iter(np.flatnonzero(np.diff(indptr) < 0) + 1), -1)),
        ),
    ]
    return cases


GROUPS = (
    shuffle_cases,
    delta_cases,
    relidx_cases,
    minmax_cases,
    record_cases,
    string_cases,
    tree_cases,
)


def run(mb: float, repeat: int, only: str | None) -> list[Row]:
    rng = np.random.default_rng(0)
    nbytes = int(mb * MB)
    rows = []
    for group in GROUPS:
        for case in group(nbytes, rng):
            if only and only not in case.kernel:
                continue
            same = case.same or _equal
            if not same(case.cython(), case.numpy()):
                raise AssertionError(f"{case.kernel}: Cython and numpy results differ")
            fns = [case.cython, case.numpy] + ([case.reused] if case.reused else [])
            t_cy, t_np, *t_more = best_of(fns, repeat)
            t_re = t_more[0] if t_more else None
            rows.append(
                Row(
                    case.kernel,
                    case.size,
                    case.nbytes / MB / t_cy,
                    case.nbytes / MB / t_re if t_re else None,
                    case.nbytes / MB / t_np,
                    t_np / t_cy,
                )
            )
            print(f"  {case.kernel}", file=sys.stderr, flush=True)
    return rows


def table(rows: list[Row]) -> str:
    head = ("kernel", "size", "cython MB/s", "reused out MB/s", "numpy MB/s", "speed-up")
    body = [
        (
            r.kernel,
            r.size,
            f"{r.cython_mb_s:,.0f}",
            "-" if r.reused_mb_s is None else f"{r.reused_mb_s:,.0f}",
            f"{r.numpy_mb_s:,.0f}",
            f"{r.speedup:.2f}x",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    lines = []
    for k, row in enumerate((head, *body)):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=32.0, help="input size in MB (default 32)")
    parser.add_argument("--repeat", type=int, default=5, help="timings per figure, best kept")
    parser.add_argument("--only", help="run only kernels whose name contains this text")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    rows = run(args.mb, args.repeat, args.only)
    if args.json:
        print(
            json.dumps(
                {
                    "machine": {
                        "python": platform.python_version(),
                        "numpy": np.__version__,
                        "processor": platform.processor() or platform.machine(),
                    },
                    "config": {"mb": args.mb, "repeat": args.repeat},
                    "rows": [asdict(r) for r in rows],
                },
                indent=2,
            )
        )
    else:
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
