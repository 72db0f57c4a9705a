"""zstd frames and section integrity: forged headers, bombs, trailing data, flipped bytes."""

from __future__ import annotations

import io

import pytest

import milo_pack
from milo_pack.errors import ArrayError, ContainerError, IntegrityError, LimitError

from .craft import FLOATS_CONTENT as C
from .craft import chunk_table, floats_file, frame, refused, split

SKIPPABLE = b"\x50\x2a\x4d\x18" + len(C).to_bytes(4, "little") + C

# (id, chunk bytes, error): each replaces the only chunk of a 100-float section, re-sealed so
# the digests match and only the frame is wrong.
FRAMES = [
    ("declares_more", frame(C, declared=len(C) + 8), ArrayError),
    ("declares_less", frame(C, declared=len(C) - 8), ArrayError),
    ("no_content_size", frame(C, declared=None), ArrayError),
    ("no_checksum", frame(C, checksum=False), ArrayError),
    ("wrong_checksum", frame(C, checksum=b"\0\0\0\0"), ArrayError),
    ("dictionary", frame(C, dict_id=7), ArrayError),
    ("window_2GiB", frame(C, window_log=31), LimitError),
    ("window_256MiB", frame(C, window_log=28), LimitError),
    ("second_frame", frame(C) + frame(b"x"), ArrayError),
    ("trailing_bytes", frame(C) + b"junk", ArrayError),
    ("truncated", frame(C)[:-10], ArrayError),
    ("header_only", frame(C)[:14], ArrayError),
    ("bomb_declares_small", frame(C, rle_extra=1 << 30), ArrayError),
    ("bomb_no_size", frame(b"", declared=None, rle_extra=1 << 30), ArrayError),
    ("not_zstd", b"hello, world", ArrayError),
    ("empty", b"", ArrayError),
    ("skippable_frame", SKIPPABLE, ArrayError),
    ("reserved_block", frame(C)[:14] + b"\x07\x00\x00" + frame(C)[14:], ArrayError),
]


def _with_chunk(chunk: bytes) -> bytes:
    parts = split(floats_file())
    parts.seal(0, [chunk])
    return parts.build()


def test_forged_frame_baseline_loads():
    assert milo_pack.loads(_with_chunk(frame(C)))["a"].tobytes() == C


@pytest.mark.parametrize("chunk, error", [c[1:] for c in FRAMES], ids=[c[0] for c in FRAMES])
def test_bad_frames(chunk, error):
    refused(_with_chunk(chunk), error)


# -- integrity --------------------------------------------------------------------------------


def _flip_chunk_byte(parts):
    data = bytearray(parts.sections[0])
    data[20] ^= 0x40
    parts.sections[0] = bytes(data)


def _bad_manifest_digest(parts):
    parts.manifest["sections"][0]["digest"] = "sha256:" + "0" * 64


def _sizes_do_not_add_up(parts):
    chunks = parts.chunks(0)
    table = bytearray(chunk_table(chunks))
    table[0] += 1
    parts.seal(0, chunks, table=bytes(table))


def _bad_chunk_digest(parts):
    chunks = parts.chunks(0)
    table = bytearray(chunk_table(chunks))
    table[8] ^= 1
    parts.seal(0, chunks, table=bytes(table))


def _bad_magic(parts):
    chunks = parts.chunks(0)
    parts.seal(0, chunks, table=chunk_table(chunks)[:-8] + b"MILOIDX2")


def _nbytes_lies(parts):
    parts.manifest["sections"][0]["nbytes"] += 1


INTEGRITY = [
    ("flipped_chunk_byte", _flip_chunk_byte, IntegrityError),
    ("manifest_digest", _bad_manifest_digest, IntegrityError),
    ("chunk_sizes_do_not_add_up", _sizes_do_not_add_up, IntegrityError),
    ("chunk_digest", _bad_chunk_digest, IntegrityError),
    ("table_magic", _bad_magic, IntegrityError),
    ("member_size_vs_nbytes", _nbytes_lies, ContainerError),
]


@pytest.mark.parametrize("edit, error", [c[1:] for c in INTEGRITY],
                         ids=[c[0] for c in INTEGRITY])
@pytest.mark.parametrize("level", [0, 3])
def test_integrity(edit, error, level):
    import numpy as np

    parts = split(milo_pack.dumps({"a": np.linspace(0.0, 1.0, 100)}, level=level))
    edit(parts)
    refused(parts.build(), error)


def test_raw_chunk_of_wrong_size():
    import numpy as np

    parts = split(milo_pack.dumps({"a": np.linspace(0.0, 1.0, 100)}, level=0))
    parts.seal(0, [C[:-8], b"\0" * 8])
    refused(parts.build(), IntegrityError)


def test_bytes_changed_after_open_are_caught(tmp_path):
    """Lazy reads use the already-open file and still verify every chunk they use."""
    path = tmp_path / "m.milo"
    data = floats_file()
    path.write_bytes(data)
    offset = data.index(frame(C)[:4], data.index(b"sections/000000.bin")) + 20
    with open(path, "rb") as f, milo_pack.open(f) as handle:
        with open(path, "r+b") as g:
            g.seek(offset)
            g.write(b"\xff")
        with pytest.raises(IntegrityError):
            handle.load()


@pytest.mark.parametrize("how", ["path", "fileobj", "bytes"])
def test_every_entry_point_verifies(tmp_path, how):
    parts = split(floats_file())
    _flip_chunk_byte(parts)
    data = parts.build()
    path = tmp_path / "m.milo"
    path.write_bytes(data)
    source = {"path": path, "fileobj": io.BytesIO(data), "bytes": data}[how]
    with pytest.raises(IntegrityError):
        milo_pack.load(source) if how != "bytes" else milo_pack.loads(source)
