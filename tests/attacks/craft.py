"""Tools to craft hostile ``.milo`` files that break exactly one rule.

A valid file is split into its manifest (a dict) and section bytes (:class:`Parts`), edited, and
re-assembled by the library's own canonical :class:`~milo_pack.container.ContainerWriter`, so the
container stays canonical and the chunk tables and digests can be re-sealed: only the intended
rule is broken.  zstd frames are forged byte by byte (:func:`frame`) to control the header
fields the reader must check.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import zstandard

import milo_pack
from milo_pack.codec import INDEX_MAGIC
from milo_pack.container import ContainerReader, ContainerWriter, section_name
from milo_pack.errors import MiloError
from milo_pack.manifest import dumps_json

_ENTRY = struct.Struct("<Q32s")
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


# -- the file as parts ------------------------------------------------------------------------


@dataclass
class Parts:
    """A file taken apart: the manifest document and each section's bytes."""

    manifest: dict
    sections: list[bytes]
    raw_manifest: bytes | None = None  # written verbatim instead of ``manifest`` when set
    extra: dict = field(default_factory=dict)

    @classmethod
    def of(cls, data: bytes) -> Parts:
        reader = ContainerReader(io.BytesIO(data))
        manifest = json.loads(reader.read_manifest())
        sections = [reader.read(m.name) for m in reader.members[1:]]
        return cls(manifest, sections)

    def build(self) -> bytes:
        text = self.raw_manifest if self.raw_manifest is not None else dumps_json(self.manifest)
        return assemble(text, self.sections)

    def at(self, *keys: Any) -> Any:
        """The manifest value at ``keys`` (``"root", "attrs", "tree_"``...)."""
        node = self.manifest
        for key in keys:
            node = node[key]
        return node

    # -- sections -----------------------------------------------------------------------------
    def chunks(self, index: int) -> list[bytes]:
        """The stored chunk payloads of section ``index``."""
        data = self.sections[index]
        n = self.manifest["sections"][index]
        count = -(-n["length"] // n["chunk_length"])
        table = data[len(data) - count * _ENTRY.size - len(INDEX_MAGIC):]
        out, pos = [], 0
        for k in range(count):
            size, _ = _ENTRY.unpack_from(table, k * _ENTRY.size)
            out.append(data[pos:pos + size])
            pos += size
        return out

    def seal(self, index: int, chunks: list[bytes], *, table: bytes | None = None) -> None:
        """Replace section ``index`` by ``chunks`` with a correct table, size and digest."""
        table = chunk_table(chunks) if table is None else table
        self.sections[index] = b"".join(chunks) + table
        entry = self.manifest["sections"][index]
        entry["nbytes"] = len(self.sections[index])
        entry["digest"] = "sha256:" + hashlib.sha256(table).hexdigest()


def split(data: bytes) -> Parts:
    return Parts.of(data)


def assemble(manifest: bytes, sections: list[bytes]) -> bytes:
    """A canonical container around ``manifest`` and ``sections`` (as the writer emits)."""
    out = io.BytesIO()
    with ContainerWriter(out) as writer:
        for i, payload in enumerate(sections):
            with writer.open_section(section_name(i)) as sink:
                sink.write(payload)
        writer.finish(manifest)
    return out.getvalue()


def chunk_table(chunks: list[bytes]) -> bytes:
    return b"".join(_ENTRY.pack(len(c), hashlib.sha256(c).digest()) for c in chunks) + INDEX_MAGIC


def edited(data: bytes, edit: Any) -> bytes:
    """Apply ``edit(parts)`` to a copy of ``data``'s parts and re-assemble."""
    parts = split(data)
    edit(parts)
    return parts.build()


def manifest_edit(data: bytes, edit: Any) -> bytes:
    """Apply ``edit(manifest_dict)`` (in place or returning a new one) and re-assemble."""
    parts = split(data)
    result = edit(parts.manifest)
    if result is not None:
        parts.manifest = result
    return parts.build()


def raw_manifest(data: bytes, text: bytes) -> bytes:
    parts = split(data)
    parts.raw_manifest = text
    return parts.build()


# -- zstd frames by hand ----------------------------------------------------------------------

_BLOCK_MAX = 1 << 17


def _block(kind: int, size: int, payload: bytes, last: bool) -> bytes:
    header = int(last) | (kind << 1) | (size << 3)
    return header.to_bytes(3, "little") + payload


def frame(content: bytes, *, declared: int | None = -1, checksum: bool | bytes = True,
          dict_id: int = 0, window_log: int = 17, rle_extra: int = 0) -> bytes:
    """A zstd frame holding ``content`` in raw blocks, header fields chosen by the caller.

    ``declared`` is the frame content size (-1: the true size; None: no content size field);
    ``rle_extra`` appends RLE blocks expanding to that many more zero bytes (a bomb: a few
    bytes that decode to far more than declared); ``checksum`` True computes it, bytes forges
    it, False omits the checksum flag.
    """
    total = len(content) + rle_extra
    if declared == -1:
        declared = total
    fcs_flag = 0 if declared is None else 3
    dict_flag = 3 if dict_id else 0
    descriptor = (fcs_flag << 6) | (bool(checksum) << 2) | dict_flag
    window = (window_log - 10) << 3
    header = _ZSTD_MAGIC + bytes([descriptor, window])
    if dict_id:
        header += struct.pack("<I", dict_id)
    if declared is not None:
        header += struct.pack("<Q", declared)
    blocks = [content[i:i + _BLOCK_MAX] for i in range(0, len(content), _BLOCK_MAX)] or [b""]
    body = b""
    for i, piece in enumerate(blocks):
        body += _block(0, len(piece), piece, last=not rle_extra and i == len(blocks) - 1)
    remaining = rle_extra
    while remaining:
        n = min(remaining, _BLOCK_MAX)
        remaining -= n
        body += _block(1, n, b"\0", last=not remaining)
    if checksum is True:
        body += _checksum(content + bytes(rle_extra)) if rle_extra < (1 << 24) else b"\0" * 4
    elif checksum:
        body += checksum
    return header + body


def _checksum(content: bytes) -> bytes:
    """The 4-byte XXH64 frame checksum, taken from a frame zstd itself writes."""
    return zstandard.ZstdCompressor(write_checksum=True).compress(content)[-4:]


def values_bytes(values: Any, dtype: str = "<f8") -> bytes:
    return np.asarray(values, dtype=dtype).tobytes()


# -- sample files -----------------------------------------------------------------------------

_RNG_SEED = 0


@functools.cache
def data_xy(n_features: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_RNG_SEED)
    X = rng.standard_normal((120, n_features))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y


@functools.cache
def floats_file() -> bytes:
    """A dict with one 100-float array: section 0, one chunk, no filters."""
    return milo_pack.dumps({"a": np.linspace(0.0, 1.0, 100)})


FLOATS_CONTENT = np.linspace(0.0, 1.0, 100).tobytes()


@functools.cache
def tree_model() -> Any:
    from sklearn.tree import DecisionTreeClassifier

    X, y = data_xy()
    return DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y)


@functools.cache
def model_file(name: str) -> bytes:
    return milo_pack.dumps(make_model(name))


def make_model(name: str) -> Any:
    """Small fitted models of the kinds the suite attacks."""
    from sklearn.cluster import KMeans
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    X, y = data_xy()
    if name == "tree":
        return copy.deepcopy(tree_model())
    if name == "forest":  # small trees: stored packed, one node for the three
        return RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0).fit(X, y)
    if name == "deep_forest":  # noisy labels, deep trees (packed too, unless made unequal)
        from sklearn.datasets import make_classification

        Xd, yd = make_classification(3000, 4, n_informative=3, n_redundant=1, flip_y=0.3,
                                     random_state=0)
        return RandomForestClassifier(n_estimators=3, random_state=0).fit(Xd, yd)
    if name == "pipeline":
        return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(X, y)
    if name == "knn":
        return KNeighborsClassifier(algorithm="kd_tree", leaf_size=5).fit(X, y)
    if name == "balltree_knn":
        return KNeighborsClassifier(algorithm="ball_tree", leaf_size=5).fit(X, y)
    if name == "hgb":
        return HistGradientBoostingClassifier(max_iter=3, random_state=0).fit(X, y)
    if name == "hgb_cat":
        Xc = X.copy()
        Xc[:, 3] = (np.abs(Xc[:, 3]) * 3).astype(int)
        y_cat = y + (Xc[:, 3].astype(int) % 2) * 3  # make the category matter
        return HistGradientBoostingClassifier(max_iter=3, categorical_features=[3],
                                              random_state=0).fit(Xc, y_cat)
    if name == "sparse":
        import scipy.sparse as sp

        return sp.random(30, 20, density=0.2, format="csr", random_state=0, dtype=np.float64)
    if name == "kmeans":
        return KMeans(n_clusters=3, n_init=1, random_state=0).fit(X)
    if name == "svc":
        return SVC().fit(X, y)
    if name == "logreg":
        return LogisticRegression().fit(X, y)
    raise KeyError(name)


# -- assertions -------------------------------------------------------------------------------


def refused(data: bytes, error: type[MiloError], *, trusted: Any = ()) -> MiloError:
    """Assert that loading ``data`` raises exactly ``error`` (and nothing else leaks)."""
    with pytest.raises(MiloError) as info:
        milo_pack.loads(data, trusted=trusted)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    return info.value


def run_python(code: str, *args: str, cwd: str | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd,
                          env={**os.environ, "PYTHONFAULTHANDLER": "1"})


_BATCH = textwrap.dedent("""
    import sys, numpy as np, milo_pack
    for line in sys.stdin:
        case, path, n_features = line.split("\\t")
        print(case, end="\\t", flush=True)
        try:
            model = milo_pack.load(path)
        except milo_pack.MiloError as exc:
            print(type(exc).__name__, flush=True)
            continue
        X = np.random.default_rng(0).standard_normal((50, int(n_features)))
        try:
            model.predict(X)
        except Exception as exc:  # a Python error from a loaded model is not a crash
            print("LOADED, predict raised", type(exc).__name__, flush=True)
            continue
        print("LOADED", flush=True)
""")


def isolated_outcomes(cases: dict[str, tuple[bytes, int]], directory: Any) -> dict[str, str]:
    """Load each crafted file (then predict, if it loads) in one subprocess.

    Returns ``{case: error class name | "LOADED" | "CRASHED: ..." | "NOT RUN"}``; a crash in
    native code is pinned on the case that was running and fails that case's test, not pytest.
    """
    lines = []
    for i, (case, (data, n_features)) in enumerate(cases.items()):
        path = directory / f"{i}.milo"
        path.write_bytes(data)
        lines.append(f"{case}\t{path}\t{n_features}\n")
    result = subprocess.run([sys.executable, "-c", _BATCH], input="".join(lines),
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    outcomes = dict.fromkeys(cases, "NOT RUN")
    for line in result.stdout.splitlines():
        case, _, outcome = line.partition("\t")
        outcomes[case] = outcome or (f"CRASHED: exit {result.returncode}: "
                                     f"{result.stderr[-1500:]}")
    return outcomes
