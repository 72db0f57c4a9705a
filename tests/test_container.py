"""Tests of the canonical zip container (``milo_pack.container``).

Crafted archives come from :func:`craft`, a small zip builder written here independently of the
module under test (it follows the byte-layout rules of the module docstring), with knobs to break
one rule at a time.  ``test_craft_matches_writer`` checks that, without knobs, it produces exactly
the writer's bytes, so every crafted archive differs from a valid one only by the knob applied.
"""

from __future__ import annotations

import array
import doctest
import hashlib
import io
import os
import random
import shutil
import struct
import subprocess
import threading
import tracemalloc
import zipfile
import zlib
from dataclasses import dataclass, field

import pytest

from milo_pack import container
from milo_pack.container import (
    ALIGNMENT,
    ContainerReader,
    ContainerWriter,
    Member,
    section_name,
)
from milo_pack.errors import ContainerError, IntegrityError, LimitError, MiloError

UNZIP = shutil.which("unzip")

# --------------------------------------------------------------------------------------------
# An independent builder for crafted archives
# --------------------------------------------------------------------------------------------

LOCAL_FIELDS = "sig version flags method time date crc csize usize name_len extra_len".split()
CENTRAL_FIELDS = (
    "sig made_by version flags method time date crc csize usize name_len extra_len comment_len "
    "disk internal external offset"
).split()
EOCD_FIELDS = "sig disk cd_disk n_disk n_total cd_size cd_offset comment_len".split()
Z64_FIELDS = "sig rec_size made_by version disk cd_disk n_disk n_total cd_size cd_offset".split()
LOC_FIELDS = ("sig", "disk", "offset", "disks")


def padding(data_start: int) -> bytes:
    """Rule 4: the minimal 0xD935 record that aligns ``data_start`` to 64."""
    r = -data_start % 64
    if r == 0:
        return b""
    t = r if r >= 4 else r + 64
    return struct.pack("<HH", 0xD935, t - 4) + bytes(t - 4)


@dataclass
class Entry:
    """One member of a crafted archive; ``local``/``central`` override header fields."""

    name: bytes
    data: bytes = b""
    local: dict = field(default_factory=dict)
    central: dict = field(default_factory=dict)
    local_extra: bytes | None = None  # None: canonical alignment record
    central_extra: bytes = b""
    central_comment: bytes = b""
    gap: bytes = b""  # bytes placed before the local header


def craft(
    entries: list[Entry],
    *,
    prefix: bytes = b"",
    pre_cd: bytes = b"",
    cd_tail: bytes = b"",
    eocd: dict | None = None,
    zip64_end: bool = False,
    z64: dict | None = None,
    locator: dict | None = None,
    comment: bytes = b"",
    trailer: bytes = b"",
) -> bytes:
    """Build a (by default canonical, non-zip64) archive from ``entries``."""
    out = bytearray(prefix)
    offsets = []
    for e in entries:
        out += e.gap
        offsets.append(len(out))
        lname = e.local.get("name", e.name)
        extra = e.local_extra
        if extra is None:
            extra = padding(len(out) + 30 + len(lname))
        crc = zlib.crc32(e.data)
        values = dict(
            sig=0x04034B50,
            version=20,
            flags=0x0800,
            method=0,
            time=0,
            date=0x21,
            crc=crc,
            csize=len(e.data),
            usize=len(e.data),
            name_len=len(lname),
            extra_len=len(extra),
        )
        values.update({k: v for k, v in e.local.items() if k != "name"})
        out += struct.pack("<IHHHHHIIIHH", *(values[k] for k in LOCAL_FIELDS))
        out += lname + extra + e.data
    out += pre_cd
    cd_offset = len(out)
    for e, off in zip(entries, offsets, strict=True):
        cname = e.central.get("name", e.name)
        values = dict(
            sig=0x02014B50,
            made_by=0x0314,
            version=20,
            flags=0x0800,
            method=0,
            time=0,
            date=0x21,
            crc=zlib.crc32(e.data),
            csize=len(e.data),
            usize=len(e.data),
            name_len=len(cname),
            extra_len=len(e.central_extra),
            comment_len=len(e.central_comment),
            disk=0,
            internal=0,
            external=0o100644 << 16,
            offset=off,
        )
        values.update({k: v for k, v in e.central.items() if k != "name"})
        out += struct.pack("<IHHHHHHIIIHHHHHII", *(values[k] for k in CENTRAL_FIELDS))
        out += cname + e.central_extra + e.central_comment
    cd_size = len(out) - cd_offset
    out += cd_tail
    n = len(entries)
    if zip64_end:
        z64_offset = len(out)
        values = dict(
            sig=0x06064B50,
            rec_size=44,
            made_by=45,
            version=45,
            disk=0,
            cd_disk=0,
            n_disk=n,
            n_total=n,
            cd_size=cd_size,
            cd_offset=cd_offset,
        )
        values.update(z64 or {})
        out += struct.pack("<IQHHIIQQQQ", *(values[k] for k in Z64_FIELDS))
        values = dict(sig=0x07064B50, disk=0, offset=z64_offset, disks=1)
        values.update(locator or {})
        out += struct.pack("<IIQI", *(values[k] for k in LOC_FIELDS))
    values = dict(
        sig=0x06054B50,
        disk=0,
        cd_disk=0,
        n_disk=n,
        n_total=n,
        cd_size=cd_size,
        cd_offset=cd_offset,
        comment_len=len(comment),
    )
    values.update(eocd or {})
    out += struct.pack("<IHHHHIIH", *(values[k] for k in EOCD_FIELDS))
    return bytes(out + comment + trailer)


MANIFEST = b'{"format": 1, "model": "demo"}\n'
S0, S1, S2 = (section_name(i).encode() for i in range(3))


def good(**overrides: dict) -> list[Entry]:
    """Manifest plus three sections (one empty); ``overrides[i]`` edits entry ``i``."""
    entries = [
        Entry(b"manifest.json", MANIFEST),
        Entry(S0, b"first section"),
        Entry(S1, b""),
        Entry(S2, bytes(range(256)) * 3),
    ]
    for key, changes in overrides.items():
        e = entries[int(key[1:])]
        for attr, value in changes.items():
            setattr(e, attr, value)
    return entries


def write_archive(manifest: bytes, sections: list[bytes], out=None) -> bytes:
    out = io.BytesIO() if out is None else out
    with ContainerWriter(out) as writer:
        for i, data in enumerate(sections):
            with writer.open_section(section_name(i)) as sink:
                sink.write(data)
        writer.finish(manifest)
    return out.getvalue() if isinstance(out, io.BytesIO) else b""


def open_bytes(blob: bytes, **kwargs) -> ContainerReader:
    return ContainerReader(io.BytesIO(blob), **kwargs)


def expect(blob: bytes, cls: type[MiloError], match: str, **kwargs) -> MiloError:
    with pytest.raises(MiloError, match=match) as info:
        open_bytes(blob, **kwargs)
    assert type(info.value) is cls, repr(info.value)
    return info.value


def zip64_archive() -> bytes:
    """A small zip64 archive, built with the zip64 threshold lowered (call under the patch)."""
    return write_archive(MANIFEST, [b"", b"x" * 100, bytes(range(256)) * 2, b"tail"])


@pytest.fixture
def low_zip64(monkeypatch):
    monkeypatch.setattr(container, "_ZIP64_LIMIT", 300)


def test_craft_matches_writer():
    sections = [e.data for e in good()[1:]]
    assert craft(good()) == write_archive(MANIFEST, sections)


# --------------------------------------------------------------------------------------------
# Writer and round trips
# --------------------------------------------------------------------------------------------


def test_round_trip_and_alignment():
    rng = random.Random(1)
    big = rng.randbytes(5 << 20)
    sections = [b"abc", b"", big, rng.randbytes(63), rng.randbytes(64), rng.randbytes(65)]
    out = io.BytesIO()
    with ContainerWriter(out) as writer:
        for data in sections:
            sink = writer.open_section(writer.next_section_name)
            step = 4093 if len(data) > 1000 else 7
            for pos in range(0, len(data), step):
                sink.write(memoryview(data)[pos : pos + step])
            assert sink.tell() == len(data)
            sink.close()
        writer.finish(MANIFEST)
    reader = ContainerReader(out)
    assert [m.name for m in reader.members] == ["manifest.json"] + [
        section_name(i) for i in range(len(sections))
    ]
    assert reader.read_manifest() == MANIFEST
    assert reader.members[0].header_offset == 0
    for i, data in enumerate(sections):
        name = section_name(i)
        m = reader.member(name)
        assert m.data_offset % ALIGNMENT == 0
        assert m.size == len(data) and m.crc32 == zlib.crc32(data)
        assert reader.read(name) == data
        reader.verify_crc(name)
        if data:
            assert reader.read(name, 1, len(data) - 1) == data[1:]
            buf = bytearray(len(data) - 1)
            reader.readinto(name, 1, buf)
            assert buf == data[1:]
    assert reader.read(section_name(1)) == b""
    assert reader.file_size == len(out.getvalue())


def test_golden_bytes():
    # Pins the exact format: changing any byte of the layout must be a deliberate decision.
    # Offsets worked out by hand from the rules: manifest header 30 + 13 bytes + 21-byte record
    # -> data at 64; "sections/000000.bin" header at 66, 66 + 49 = 115 + 13-byte record -> 128;
    # next header at 128, 177 + 15 -> 192; 5 data bytes end at 197; central directory 59 + 2 * 65
    # bytes; EOCD 22 bytes.
    blob = write_archive(b"{}", [b"", b"hello"])
    reader = open_bytes(blob)
    assert [(m.header_offset, m.data_offset) for m in reader.members] == [
        (0, 64),
        (66, 128),
        (128, 192),
    ]
    assert len(blob) == 197 + 189 + 22
    assert blob[:4] == b"PK\x03\x04" and blob[197:201] == b"PK\x01\x02"
    assert blob[-22:] == struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 3, 3, 189, 197, 0)
    assert hashlib.sha256(blob).hexdigest() == (
        "067825196c5b77ffe3c9c1f188ac87b37b38f7978a5f4c297fb109c5c65b998f"
    )


def test_deterministic():
    sections = [b"a" * 1000, b"", os.urandom(10)]
    assert write_archive(MANIFEST, sections) == write_archive(MANIFEST, sections)


def test_padding_rule_covers_every_residue():
    # Manifest lengths 0..127 put the first section's header at every residue mod 64, including
    # the ones where the record must grow by 64 bytes because a record needs 4 bytes.
    for n in range(128):
        blob = write_archive(b"m" * n, [b"s"])
        reader = open_bytes(blob)
        m = reader.member(section_name(0))
        assert m.header_offset == 64 + n
        assert m.data_offset % 64 == 0
        assert 0 <= m.data_offset - (m.header_offset + 30 + 19) < 68


def test_python_zipfile_and_unzip_accept_output(tmp_path):
    blob = write_archive(MANIFEST, [b"abc", b"", os.urandom(3000)])
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.testzip() is None
        assert zf.read("manifest.json") == MANIFEST
        info = zf.getinfo("sections/000000.bin")
        assert info.compress_type == zipfile.ZIP_STORED
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert info.external_attr >> 16 == 0o100644
    run_unzip_t(tmp_path, blob)


def run_unzip_t(tmp_path, blob: bytes) -> None:
    if UNZIP is None:
        pytest.skip("unzip is not installed (apt-get install unzip)")
    path = tmp_path / "archive.milo"
    path.write_bytes(blob)
    proc = subprocess.run([UNZIP, "-t", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No errors detected" in proc.stdout


def test_zip64_entries_and_end_records(low_zip64, tmp_path):
    blob = zip64_archive()
    reader = open_bytes(blob)
    assert reader.read(section_name(2)) == bytes(range(256)) * 2
    assert reader.read(section_name(3)) == b"tail"
    assert all(m.data_offset % 64 == 0 for m in reader.members)
    # End records: zip64 record + locator precede the EOCD, whose offset field is the sentinel.
    assert blob[-98:-94] == b"PK\x06\x06" and blob[-42:-38] == b"PK\x06\x07"
    assert struct.unpack_from("<I", blob, len(blob) - 6)[0] == 0xFFFFFFFF
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.testzip() is None
        assert zf.read(section_name(2)) == bytes(range(256)) * 2
    run_unzip_t(tmp_path, blob)


def test_zip64_archive_rejected_when_not_needed(monkeypatch):
    monkeypatch.setattr(container, "_ZIP64_LIMIT", 300)
    blob = zip64_archive()
    monkeypatch.setattr(container, "_ZIP64_LIMIT", 0xFFFFFFFF)
    # Under the real threshold nothing needs zip64, so the same bytes are not canonical.
    expect(blob, ContainerError, "zip64")


def test_zip64_by_member_count(tmp_path):
    # 65,536 members: the count needs zip64 end records (real threshold, no patching).
    out = io.BytesIO()
    with ContainerWriter(out) as writer:
        for i in range(65535):
            writer.open_section(section_name(i)).close()
        writer.finish(b"{}")
    blob = out.getvalue()
    assert blob[-42:-38] == b"PK\x06\x07"
    assert struct.unpack_from("<HH", blob, len(blob) - 14) == (0xFFFF, 0xFFFF)
    reader = open_bytes(blob)
    assert len(reader.members) == 65536
    assert reader.members[-1].name == "sections/065534.bin"
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert len(zf.infolist()) == 65536
    expect(blob, LimitError, "max_members", max_members=65535)


class NonSeekable(io.RawIOBase):
    """A write-only stream without seek/tell, accepting at most 1000 bytes per call."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return self.buf.write(bytes(memoryview(data)[:1000]))

    def seekable(self) -> bool:
        return False

    def seek(self, *args):
        raise io.UnsupportedOperation("seek")

    def tell(self):
        raise io.UnsupportedOperation("tell")


def test_non_seekable_output():
    sections = [os.urandom(5000), b"", b"xyz"]
    sink = NonSeekable()
    write_archive(MANIFEST, sections, out=sink)
    assert sink.buf.getvalue() == write_archive(MANIFEST, sections)


@pytest.mark.parametrize("mode", ["wb", "w+b"])
def test_real_file_output_and_positional_reads(tmp_path, mode):
    sections = [os.urandom(100_000), b"", b"xyz"]
    path = tmp_path / "model.milo"
    with open(path, mode) as f:
        write_archive(MANIFEST, sections, out=f)
    assert path.read_bytes() == write_archive(MANIFEST, sections)
    with open(path, "rb") as f:
        reader = ContainerReader(f)
        assert reader._fd is not None  # real files use thread-safe positional reads
        assert reader.read(section_name(0)) == sections[0]
        buf = bytearray(10)
        reader.readinto(section_name(0), 5, buf)
        assert buf == sections[0][5:15]


def test_context_manager_aborts_and_leaves_no_spool(tmp_path):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    out = io.BytesIO()
    with pytest.raises(RuntimeError, match="boom"):
        with ContainerWriter(out, spool_dir=str(spool_dir)) as writer:
            with writer.open_section(section_name(0)) as sink:
                sink.write(b"data" * 1000)
                spool = writer._spool
                raise RuntimeError("boom")
    assert spool is not None and spool.closed
    assert writer._spool is None
    assert list(spool_dir.iterdir()) == []
    assert out.getvalue() == b""
    with pytest.raises(ContainerError, match="aborted"):
        writer.open_section(section_name(0))


def test_finish_closes_spool_and_missing_finish_is_an_error():
    writer = ContainerWriter(io.BytesIO())
    writer.open_section(section_name(0)).close()
    spool = writer._spool
    writer.finish(b"{}")
    assert spool.closed and writer._spool is None
    with pytest.raises(ContainerError, match="finished"):
        writer.finish(b"{}")
    with pytest.raises(ContainerError, match="without finish"):
        with ContainerWriter(io.BytesIO()) as w:
            w.open_section(section_name(0)).close()
    assert w._spool is None


def test_writer_misuse():
    writer = ContainerWriter(io.BytesIO())
    with pytest.raises(ContainerError, match="sections/000000.bin"):
        writer.open_section("sections/000001.bin")
    with pytest.raises(ContainerError, match="must be"):
        writer.open_section("manifest.json")
    sink = writer.open_section(section_name(0))
    with pytest.raises(ContainerError, match="already open"):
        writer.open_section(section_name(1))
    with pytest.raises(ContainerError, match="still open"):
        writer.finish(b"{}")
    sink.close()
    with pytest.raises(ContainerError, match="closed section"):
        sink.write(b"x")
    with pytest.raises(TypeError, match="contiguous"):
        writer.open_section(section_name(1)).write(memoryview(b"abcdef")[::2])
    writer.abort()
    writer.abort()
    with pytest.raises(LimitError):
        section_name(1_000_000)


def test_writer_limits_section_count(monkeypatch):
    monkeypatch.setattr(container, "MAX_SECTIONS", 2)
    writer = ContainerWriter(io.BytesIO())
    writer.open_section("sections/000000.bin").close()
    writer.open_section("sections/000001.bin").close()
    with pytest.raises(LimitError, match="at most 2 sections"):
        writer.open_section("sections/000002.bin")
    writer.abort()


# --------------------------------------------------------------------------------------------
# Reader API
# --------------------------------------------------------------------------------------------


def test_member_lookup_and_bounds():
    reader = open_bytes(craft(good()))
    assert reader.member(S0.decode()) == Member(
        "sections/000000.bin",
        reader.members[1].header_offset,
        reader.members[1].data_offset,
        13,
        zlib.crc32(b"first section"),
    )
    with pytest.raises(ContainerError, match="no such member"):
        reader.member("sections/000009.bin")
    with pytest.raises(ContainerError, match="outside the member"):
        reader.read(S0.decode(), 10, 4)
    with pytest.raises(ContainerError, match="outside the member"):
        reader.read(S0.decode(), -1)
    with pytest.raises(ContainerError, match="outside the member"):
        reader.readinto(S0.decode(), 0, bytearray(14))
    with pytest.raises(TypeError):
        reader.readinto(S0.decode(), 0, b"immutable")
    assert reader.read(S0.decode(), 13) == b""


def test_docstring_examples():
    assert doctest.testmod(container).failed == 0


class CountingFile(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, n: int = -1) -> bytes:
        data = super().read(n)
        self.bytes_read += len(data)
        return data


def test_open_reads_only_headers():
    blob = write_archive(MANIFEST, [os.urandom(2 << 20), b"", os.urandom(1 << 20)])
    f = CountingFile(blob)
    reader = ContainerReader(f)
    # End record + central directory + one bounded local-header read per member.
    assert f.bytes_read <= 22 + 59 + 3 * 65 + 4 * 136
    assert reader.read_manifest() == MANIFEST


def test_concurrent_reads_from_one_file_object():
    sections = [bytes([i]) * 100_000 for i in range(8)]
    reader = open_bytes(write_archive(MANIFEST, sections))
    errors = []

    def work(i: int) -> None:
        for _ in range(50):
            if reader.read(section_name(i), 1000, 5000) != sections[i][1000:6000]:
                errors.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_readinto_typed_buffer():
    values = array.array("i", range(1000))
    reader = open_bytes(write_archive(MANIFEST, [values.tobytes()]))
    out = array.array("i", bytes(4 * 999))
    reader.readinto(section_name(0), 4, out)
    assert out.tolist() == list(range(1, 1000))


def test_writer_accepts_sinks_returning_none():
    class HashSink:
        def __init__(self) -> None:
            self.h = hashlib.sha256()

        def write(self, data) -> None:
            self.h.update(data)

    sink = HashSink()
    write_archive(MANIFEST, [b"abc"], out=sink)
    assert sink.h.digest() == hashlib.sha256(write_archive(MANIFEST, [b"abc"])).digest()


def test_read_manifest_budget_checked_before_reading():
    blob = craft(good())
    reader = open_bytes(blob, max_manifest_bytes=len(MANIFEST))
    assert reader.read_manifest() == MANIFEST
    reader = open_bytes(blob, max_manifest_bytes=len(MANIFEST) - 1)
    reader.fileobj = None  # any read attempt would now fail with AttributeError
    with pytest.raises(LimitError, match="max_manifest_bytes"):
        reader.read_manifest()


def test_verify_crc_detects_corruption():
    blob = bytearray(craft(good()))
    reader = open_bytes(bytes(blob))
    m = reader.member(S2.decode())
    blob[m.data_offset + 5] ^= 1
    reader = open_bytes(bytes(blob))  # the CRC is not checked on open or read
    assert len(reader.read(S2.decode())) == m.size
    reader.verify_crc(S0.decode())
    with pytest.raises(IntegrityError, match="CRC-32"):
        reader.verify_crc(S2.decode())


class ShrinkingFile(io.BytesIO):
    """Reports its full size, but reads nothing past ``limit`` once ``active``."""

    def __init__(self, data: bytes, limit: int) -> None:
        super().__init__(data)
        self.limit = limit
        self.active = False

    def read(self, n: int = -1) -> bytes:
        if self.active:
            n = max(0, min(n, self.limit - self.tell()))
        return super().read(n)

    def readinto(self, buf) -> int:
        data = self.read(len(memoryview(buf)))
        memoryview(buf)[: len(data)] = data
        return len(data)


def test_short_read_is_a_container_error():
    blob = craft(good())
    f = ShrinkingFile(blob, limit=0)
    reader = ContainerReader(f)
    f.active = True
    f.limit = reader.member(S2.decode()).data_offset + 10
    with pytest.raises(ContainerError, match="unexpected end of file"):
        reader.read(S2.decode())
    with pytest.raises(ContainerError, match="unexpected end of file"):
        reader.readinto(S2.decode(), 0, bytearray(100))


def test_non_seekable_input_is_refused():
    class Pipe(io.RawIOBase):
        def readable(self) -> bool:
            return True

    with pytest.raises(ContainerError, match="seekable"):
        ContainerReader(Pipe())


def test_huge_member_count_refused_before_allocation():
    # A zip64 end record claiming 2**31 entries: refused from the end records alone.
    blob = craft(
        good(),
        zip64_end=True,
        z64={"n_disk": 2**31, "n_total": 2**31},
        eocd={"n_disk": 0xFFFF, "n_total": 0xFFFF},
    )
    tracemalloc.start()
    try:
        expect(blob, LimitError, "2147483648 members")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_random_corruption_only_raises_typed_errors():
    blob = craft(good())
    rng = random.Random(0)
    for _ in range(3000):
        mutated = bytearray(blob)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            open_bytes(bytes(mutated))
        except (ContainerError, LimitError):
            pass
    for cut in range(len(blob)):
        with pytest.raises((ContainerError, LimitError)):
            open_bytes(blob[:cut])


# --------------------------------------------------------------------------------------------
# Crafted archives: one per rule
# --------------------------------------------------------------------------------------------

CD_OFFSET = len(craft(good())) - 22 - (59 + 3 * 65)  # central directory offset of good()
E1_PAD = padding(64 + len(MANIFEST) + 30 + 19)  # canonical alignment record of good()[1]


def padding_record(total: int) -> bytes:
    return struct.pack("<HH", 0xD935, total - 4) + bytes(total - 4)


def zip64_patched(monkeypatch, patch) -> bytes:
    """A valid zip64 archive (lowered threshold) with ``patch(bytearray)`` applied."""
    monkeypatch.setattr(container, "_ZIP64_LIMIT", 300)
    blob = bytearray(zip64_archive())
    patch(blob)
    return bytes(blob)


CASES = [
    # -- end records --
    ("empty_file", lambda: b"", ContainerError, "too small"),
    ("tiny_file", lambda: b"PK\x05\x06", ContainerError, "too small"),
    ("trailing_byte", lambda: craft(good(), trailer=b"\0"), ContainerError, "last 22 bytes"),
    ("archive_comment", lambda: craft(good(), comment=b"hi"), ContainerError, "last 22 bytes"),
    (
        "archive_comment_length",
        lambda: craft(good(), eocd={"comment_len": 3}),
        ContainerError,
        "archive comment",
    ),
    ("eocd_disk", lambda: craft(good(), eocd={"disk": 1}), ContainerError, "multi-disk"),
    ("eocd_cd_disk", lambda: craft(good(), eocd={"cd_disk": 1}), ContainerError, "multi-disk"),
    (
        "entry_counts_disagree",
        lambda: craft(good(), eocd={"n_disk": 3}),
        ContainerError,
        "entry counts disagree",
    ),
    (
        "cd_offset_wrong",
        lambda: craft(good(), eocd={"cd_offset": CD_OFFSET - 1}),
        ContainerError,
        "not immediately followed",
    ),
    (
        "cd_size_beyond_file",
        lambda: craft(good(), eocd={"cd_size": 1 << 30}),
        ContainerError,
        "not immediately followed",
    ),
    (
        "bytes_between_cd_and_eocd",
        lambda: craft(good(), cd_tail=b"junk"),
        ContainerError,
        "not immediately followed",
    ),
    (
        "cd_size_impossible_for_count",
        lambda: craft(good(), eocd={"n_disk": 1, "n_total": 1}),
        ContainerError,
        "impossible for 1 entries",
    ),
    (
        "fewer_entries_declared",
        lambda: craft(good(), eocd={"n_disk": 3, "n_total": 3}),
        ContainerError,
        "after its 3 declared entries",
    ),
    ("no_members", lambda: craft([]), ContainerError, "no members"),
    # -- zip64 end records --
    (
        "zip64_end_not_needed",
        lambda: craft(
            good(),
            zip64_end=True,
            eocd={"n_disk": 0xFFFF, "n_total": 0xFFFF, "cd_offset": 0xFFFFFFFF},
        ),
        ContainerError,
        "present but not needed",
    ),
    (
        "zip64_end_not_needed_plain_eocd",
        lambda: craft(good(), zip64_end=True),
        ContainerError,
        "present but not needed",
    ),
    (
        "zip64_locator_missing",
        lambda: craft(good(), eocd={"n_disk": 0xFFFF, "n_total": 0xFFFF}),
        ContainerError,
        "locator not found",
    ),
    (
        "zip64_file_too_small",
        lambda: b"\0" * 10 + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0, 0, 0),
        ContainerError,
        "too small for it",
    ),
    # -- central directory entries --
    (
        "central_signature",
        lambda: craft(good(e1={"central": {"sig": 0x02014B51}})),
        ContainerError,
        "bad signature 0x02014b51 in central directory entry 1",
    ),
    (
        "method_deflated",
        lambda: craft(good(e1={"central": {"method": 8}, "local": {"method": 8}})),
        ContainerError,
        "compression method 8",
    ),
    (
        "flags_ascii",
        lambda: craft(good(e1={"central": {"flags": 0}, "local": {"flags": 0}})),
        ContainerError,
        "flags 0x0000",
    ),
    (
        "encrypted",
        lambda: craft(good(e2={"central": {"flags": 0x0801}})),
        ContainerError,
        "encrypted",
    ),
    (
        "strong_encryption",
        lambda: craft(good(e2={"central": {"flags": 0x0841}})),
        ContainerError,
        "encrypted",
    ),
    (
        "data_descriptor",
        lambda: craft(good(e1={"central": {"flags": 0x0808}})),
        ContainerError,
        "data descriptor",
    ),
    (
        "modification_time",
        lambda: craft(good(e0={"central": {"time": 0x6000}})),
        ContainerError,
        "time/date",
    ),
    (
        "modification_date",
        lambda: craft(good(e3={"central": {"date": 0x5A21}})),
        ContainerError,
        "time/date",
    ),
    (
        "version_made_by_dos",
        lambda: craft(good(e1={"central": {"made_by": 0x0014}})),
        ContainerError,
        "version made by",
    ),
    (
        "version_needed",
        lambda: craft(good(e1={"central": {"version": 10}})),
        ContainerError,
        "version made by",
    ),
    (
        "external_attributes",
        lambda: craft(good(e1={"central": {"external": 0o100755 << 16}})),
        ContainerError,
        "external attributes",
    ),
    (
        "internal_attributes",
        lambda: craft(good(e1={"central": {"internal": 1}})),
        ContainerError,
        "internal attributes",
    ),
    (
        "disk_number_start",
        lambda: craft(good(e1={"central": {"disk": 1}})),
        ContainerError,
        "disk number",
    ),
    (
        "member_comment",
        lambda: craft(good(e1={"central_comment": b"hello"})),
        ContainerError,
        "comment",
    ),
    (
        "central_extra_field",
        lambda: craft(good(e1={"central_extra": struct.pack("<HH", 0x5455, 0)})),
        ContainerError,
        "central extra field",
    ),
    (
        "sizes_differ",
        lambda: craft(good(e1={"central": {"csize": 12}})),
        ContainerError,
        "compressed size 12 differs",
    ),
    (
        "central_zip64_not_needed",
        lambda: craft(
            good(
                e1={
                    "central": {
                        "csize": 0xFFFFFFFF,
                        "usize": 0xFFFFFFFF,
                        "made_by": 0x032D,
                        "version": 45,
                    },
                    "central_extra": struct.pack("<HHQQ", 1, 16, 13, 13),
                }
            )
        ),
        ContainerError,
        "does not need zip64",
    ),
    (
        "central_zip64_offset_not_needed",
        lambda: craft(
            good(
                e1={
                    "central": {"offset": 0xFFFFFFFF, "made_by": 0x032D, "version": 45},
                    "central_extra": struct.pack("<HHQ", 1, 8, 64 + len(MANIFEST)),
                }
            )
        ),
        ContainerError,
        "zip64 offset 95 does not need zip64",
    ),
    (
        "central_zip64_malformed",
        lambda: craft(
            good(
                e1={
                    "central": {"csize": 0xFFFFFFFF, "usize": 0xFFFFFFFF},
                    "central_extra": struct.pack("<HHQ", 1, 8, 13),
                }
            )
        ),
        ContainerError,
        "one zip64 record",
    ),
    # -- names and order --
    (
        "duplicate_name",
        lambda: craft(good(e2={"name": S0})),
        ContainerError,
        "duplicate member name",
    ),
    (
        "duplicate_manifest_case_folded",
        lambda: craft(good(e1={"name": b"MANIFEST.JSON"})),
        ContainerError,
        "ignoring case",
    ),
    (
        "duplicate_section_case_folded",
        lambda: craft(good(e2={"name": S0.upper()})),
        ContainerError,
        "ignoring case",
    ),
    (
        "manifest_not_first",
        lambda: craft([Entry(S0, b"x"), Entry(b"manifest.json", MANIFEST)]),
        ContainerError,
        "first member must be 'manifest.json'",
    ),
    (
        "manifest_missing",
        lambda: craft([Entry(S0, b"x"), Entry(S1, b"y")]),
        ContainerError,
        "first member must be 'manifest.json'",
    ),
    (
        "section_numbers_gap",
        lambda: craft(good(e2={"name": S2})[:3]),
        ContainerError,
        "out of order: member 2 should be 'sections/000001.bin'",
    ),
    (
        "sections_swapped",
        lambda: craft(good(e1={"name": S1}, e2={"name": S0})),
        ContainerError,
        "out of order",
    ),
    (
        "sections_start_at_one",
        lambda: craft([Entry(b"manifest.json", MANIFEST), Entry(S1, b"x")]),
        ContainerError,
        "out of order",
    ),
    # -- local headers against the central directory --
    (
        "local_signature",
        lambda: craft(good(e2={"local": {"sig": 0x08074B50}})),
        ContainerError,
        "bad local header signature",
    ),
    (
        "local_name_differs",
        lambda: craft(good(e1={"local": {"name": b"sections/000009.bin"}})),
        ContainerError,
        "local header name 'sections/000009.bin' disagrees",
    ),
    (
        "local_name_length_differs",
        lambda: craft(good(e1={"local": {"name": b"sections/000000.bin.exe"}})),
        ContainerError,
        "local header name",
    ),
    (
        "local_size_differs",
        lambda: craft(good(e1={"local": {"usize": 12, "csize": 12}})),
        ContainerError,
        "local header sizes 12/12",
    ),
    (
        "local_compressed_size_differs",
        lambda: craft(good(e3={"local": {"csize": 0}})),
        ContainerError,
        "local header sizes",
    ),
    (
        "local_crc_differs",
        lambda: craft(good(e1={"local": {"crc": 0}})),
        ContainerError,
        "local header CRC",
    ),
    (
        "local_method_differs",
        lambda: craft(good(e1={"local": {"method": 8}})),
        ContainerError,
        "local header compression method 8",
    ),
    (
        "local_flags_differ",
        lambda: craft(good(e1={"local": {"flags": 0x0808}})),
        ContainerError,
        "local header flags 0x0808",
    ),
    (
        "local_version_differs",
        lambda: craft(good(e1={"local": {"version": 45}})),
        ContainerError,
        "local header version needed 45",
    ),
    (
        "local_time_differs",
        lambda: craft(good(e0={"local": {"time": 1}})),
        ContainerError,
        "local header time/date",
    ),
    # -- local extra field and alignment --
    (
        "local_extra_foreign_id",
        lambda: craft(good(e1={"local_extra": struct.pack("<HH", 0x5455, 11) + bytes(11)})),
        ContainerError,
        "unexpected local extra field id 0x5455",
    ),
    (
        "local_extra_nonzero_padding",
        lambda: craft(good(e1={"local_extra": struct.pack("<HH", 0xD935, 11) + b"\1" * 11})),
        ContainerError,
        "non-zero",
    ),
    (
        "local_extra_two_records",
        lambda: craft(
            good(e1={"local_extra": struct.pack("<HH", 0xD935, 3) + bytes(3) + padding(8)[:4]})
        ),
        ContainerError,
        "last and only",
    ),
    (
        "local_extra_truncated",
        lambda: craft(good(e1={"local_extra": b"\0\0"})),
        ContainerError,
        "truncated local extra",
    ),
    (
        "local_zip64_not_needed",
        lambda: craft(good(e1={"local_extra": struct.pack("<HHQQ", 1, 16, 13, 13) + bytes(0)})),
        ContainerError,
        "unexpected local extra field id 0x0001",
    ),
    (
        "padding_not_minimal",
        lambda: craft(good(e1={"local_extra": padding_record(len(E1_PAD) + 64)})),
        ContainerError,
        f"local extra field is {len(E1_PAD) + 64} bytes where the minimal alignment padding "
        f"gives {len(E1_PAD)}",
    ),
    (
        "data_not_aligned",
        lambda: craft(good(e1={"local_extra": b""})),
        ContainerError,
        "not 64-byte aligned",
    ),
    # -- tiling --
    (
        "bytes_before_first_member",
        lambda: craft(good(), prefix=b"\0" * 64),
        ContainerError,
        "before the first member",
    ),
    (
        "gap_between_members",
        lambda: craft(good(e2={"gap": bytes(64)})),
        ContainerError,
        "gap after the previous member",
    ),
    (
        "overlapping_members",
        lambda: craft(good(e2={"central": {"offset": 64 + len(MANIFEST)}})),
        ContainerError,
        "overlaps the previous member",
    ),
    (
        "stray_bytes_before_cd",
        lambda: craft(good(), pre_cd=b"\0" * 7),
        ContainerError,
        "7 stray bytes",
    ),
    (
        "declared_size_beyond_file",
        lambda: craft(
            good(
                e3={
                    "central": {"usize": 1 << 31, "csize": 1 << 31},
                    "local": {"usize": 1 << 31, "csize": 1 << 31},
                }
            )
        ),
        ContainerError,
        "exceeds the file size",
    ),
    (
        "declared_size_into_central_directory",
        lambda: craft(
            good(
                e3={"central": {"usize": 900, "csize": 900}, "local": {"usize": 900, "csize": 900}}
            )
        ),
        ContainerError,
        "runs past offset",
    ),
    (
        "local_header_offset_past_cd",
        lambda: craft(good(e1={"central": {"offset": 1 << 20}})),
        ContainerError,
        "gap after the previous member",
    ),
]


@pytest.mark.parametrize(("make", "cls", "match"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_crafted_archive_is_refused(make, cls, match):
    expect(make(), cls, match)


def test_too_many_members():
    expect(craft(good()), LimitError, "4 members, more than max_members=3", max_members=3)
    open_bytes(craft(good()), max_members=4)


def test_plain_count_over_budget_is_a_limit_error():
    expect(
        craft(good(), eocd={"n_disk": 65534, "n_total": 65534}),
        LimitError,
        "max_members",
        max_members=1000,
    )


BAD_NAMES = [
    b"/manifest.json",
    b"./manifest.json",
    b"manifest.json/",
    b"../sections/000000.bin",
    b"sections/../000000.bin",
    b"/sections/000000.bin",
    b"sections\\000000.bin",
    b"sections/000000.bin\x00",
    b"sections/000000.bin\n",
    b"SECTIONS/000000.BIN",
    b"sections/000000.BIN",
    b"Sections/000000.bin",
    b"sections/00000.bin",
    b"sections/0000000.bin",
    b"sections//000000.bin",
    b"sections/a/000000.bin",
    b"sections/-00000.bin",
    b"sections/ 00000.bin",
    b"C:/sections/000000.bin",
    b"",
    b"x" * 300,
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_section_name_is_refused(name):
    err = expect(craft(good(e1={"name": name})), ContainerError, "invalid member name|impossible")
    if "invalid" in str(err):
        assert repr(name.decode("ascii"))[:40] in str(err) or len(name) > 80


@pytest.mark.parametrize("name", [b"MANIFEST.JSON", b"Manifest.json", b"manifest.JSON"], ids=repr)
def test_upper_case_manifest_is_refused(name):
    expect(craft(good(e0={"name": name})), ContainerError, "invalid member name")


@pytest.mark.parametrize(
    "name", ["sections/00000\u0663.bin".encode(), b"sections/000000.bin\xff"], ids=repr
)
def test_non_ascii_name_is_refused(name):
    expect(craft(good(e1={"name": name})), ContainerError, "not ASCII")


def test_zip64_locator_offset_wrong(monkeypatch):
    def patch(blob: bytearray) -> None:
        struct.pack_into("<Q", blob, len(blob) - 42 + 8, 0)

    expect(zip64_patched(monkeypatch, patch), ContainerError, "locator points at offset 0")


def test_zip64_locator_multi_disk(monkeypatch):
    def patch(blob: bytearray) -> None:
        struct.pack_into("<I", blob, len(blob) - 42 + 16, 2)

    expect(zip64_patched(monkeypatch, patch), ContainerError, "multi-disk zip64 locator")


def test_zip64_record_size_wrong(monkeypatch):
    def patch(blob: bytearray) -> None:
        struct.pack_into("<Q", blob, len(blob) - 98 + 4, 52)

    expect(zip64_patched(monkeypatch, patch), ContainerError, "record size 52")


def test_zip64_record_signature_wrong(monkeypatch):
    def patch(blob: bytearray) -> None:
        blob[len(blob) - 98] ^= 0xFF

    expect(zip64_patched(monkeypatch, patch), ContainerError, "zip64 end of central directory")


def test_zip64_record_counts_disagree(monkeypatch):
    def patch(blob: bytearray) -> None:
        struct.pack_into("<Q", blob, len(blob) - 98 + 24, 9)

    expect(zip64_patched(monkeypatch, patch), ContainerError, "zip64 entry counts disagree")


def test_zip64_eocd_fields_disagree(monkeypatch):
    def patch(blob: bytearray) -> None:
        # The EOCD's count fields must hold the real (small) count, not the sentinel.
        struct.pack_into("<HH", blob, len(blob) - 14, 0xFFFF, 0xFFFF)

    expect(zip64_patched(monkeypatch, patch), ContainerError, "disagrees with the zip64")


def test_zip64_local_sizes_disagree(monkeypatch):
    monkeypatch.setattr(container, "_ZIP64_LIMIT", 300)
    blob = bytearray(zip64_archive())
    m = open_bytes(bytes(blob)).member(section_name(2))
    struct.pack_into("<Q", blob, m.header_offset + 30 + 19 + 4, 511)
    expect(bytes(blob), ContainerError, "local zip64 sizes disagree")


# --------------------------------------------------------------------------------------------
# Archives written by other tools
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_python_zipfile_archives_are_refused(compression):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        zf.writestr("manifest.json", MANIFEST)
        zf.writestr("sections/000000.bin", b"x" * 1000)
    expect(buf.getvalue(), ContainerError, "flags|compression|time")


def test_python_zipfile_near_canonical_archive_is_refused():
    # Same names, stored, 1980 timestamp, Unix attributes: zipfile still sets its own flags
    # (and would not align the data).
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in [("manifest.json", MANIFEST), ("sections/000000.bin", b"x" * 100)]:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.flag_bits |= 0x800
            info.external_attr = 0o100644 << 16
            info.create_system = 3
            zf.writestr(info, data)
    expect(buf.getvalue(), ContainerError, "flags 0x0000")
