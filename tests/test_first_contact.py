"""The first things a newcomer tries get an error saying what is wrong and what to do.

Loading a pickle, a joblib file, a skops file or anything that is not a milo_pack file names the
file and says what it is; an empty or truncated file says so; wrong argument types raise
``TypeError`` naming the argument; a dump into a missing directory names the path given.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import milo_pack
from milo_pack.errors import ContainerError

MODEL = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _joblib(path: Path, compress) -> Path:
    joblib = pytest.importorskip("joblib")  # a dev dependency: always there in CI
    joblib.dump(MODEL, path, compress=compress)
    return path


def _skops(path: Path) -> Path:
    skops_io = pytest.importorskip("skops.io")
    skops_io.dump(MODEL, path)
    return path


FILES = {
    "pickle": (lambda p: _write(p, pickle.dumps(MODEL)), r"is a pickle file.*milo-pack convert"),
    "joblib": (lambda p: _joblib(p, 0), r"is a joblib file.*milo-pack convert.*--trust-pickle"),
    "joblib-zlib": (lambda p: _joblib(p, 3), r"zlib-compressed.*milo-pack convert"),
    "gzip": (lambda p: _write(p, gzip.compress(pickle.dumps(MODEL))), r"gzip-compressed"),
    "bz2": (lambda p: _write(p, bz2.compress(pickle.dumps(MODEL))), r"bz2-compressed"),
    "xz": (lambda p: _write(p, lzma.compress(pickle.dumps(MODEL))), r"xz-compressed"),
    "skops": (_skops, r"is a skops file.*skops.io.load"),
    "npy": (lambda p: (np.save(p, np.arange(3)), p.with_suffix(".npy"))[1], r"numpy .npy"),
    "zip": (lambda p: (zipfile.ZipFile(p, "w").writestr("a.txt", "x"), p)[1],
            r"is a zip archive but not a milo_pack file"),
    "text": (lambda p: _write(p, b"just some text\n"), r"is not a milo_pack file.*b'just som"),
    "empty": (lambda p: _write(p, b""), r"is empty \(0 bytes\)"),
    "truncated": (lambda p: _write(p, milo_pack.dumps(MODEL)[:700]),
                  r"starts like a milo_pack file but is truncated or damaged"),
}


@pytest.mark.parametrize("kind", sorted(FILES))
def test_a_file_that_is_not_milo_pack_says_what_it_is(kind: str, tmp_path: Path) -> None:
    make, message = FILES[kind]
    path = make(tmp_path / f"model.{kind}")
    for call in (milo_pack.load, milo_pack.inspect, milo_pack.untrusted_types):
        with pytest.raises(ContainerError, match=message) as info:
            call(path)
        assert repr(str(path)) in str(info.value)  # the file is named
    with open(path, "rb") as f, pytest.raises(ContainerError, match=message):
        milo_pack.load(f)
    with pytest.raises(ContainerError, match=message.replace(r"\(0 bytes\)", ".")):
        milo_pack.loads(path.read_bytes())


def test_bytes_are_named_as_such() -> None:
    with pytest.raises(ContainerError, match="the data given is a pickle file"):
        milo_pack.loads(pickle.dumps(MODEL))


@pytest.mark.parametrize("call, message", [
    (lambda: milo_pack.loads("a string"), r"loads\(\) takes the bytes that dumps\(\) returned"),
    (lambda: milo_pack.loads(Path("x.milo")), r"loads\(\) takes the bytes.*use load\(path\)"),
    (lambda: milo_pack.load(123), r"load\(\) takes a path.*not int"),
    (lambda: milo_pack.load(None), r"load\(\) takes a path.*not NoneType"),
    (lambda: milo_pack.open(1.5), r"open\(\) takes a path.*not float"),
    (lambda: milo_pack.dump(MODEL, 123), r"dump\(\) takes a path or a binary file.*dumps\(obj\)"),
    (lambda: milo_pack.dump(MODEL, io.StringIO()), r"binary file: open it with 'wb'"),
    (lambda: milo_pack.load(io.StringIO("x")), r"binary file: open it with 'rb'"),
    (lambda: milo_pack.loads(milo_pack.dumps(1), trusted=True), r"trusted= takes a list"),
    (lambda: milo_pack.load(io.BytesIO(milo_pack.dumps(1)), trusted=1), r"trusted= takes"),
    (lambda: milo_pack.loads(milo_pack.dumps(1), trusted=[1]), r"trusted= takes a list"),
])
def test_wrong_arguments_raise_type_error_naming_them(call, message) -> None:
    with pytest.raises(TypeError, match=message):
        call()


def test_a_single_trusted_tag_may_be_a_string() -> None:
    assert milo_pack.loads(milo_pack.dumps([1]), trusted="mypkg.Thing") == [1]


def test_dump_into_a_missing_directory_names_the_path_given(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "dir" / "model.milo"
    with pytest.raises(FileNotFoundError) as info:
        milo_pack.dump(MODEL, target)
    assert info.value.filename == str(target)
    assert ".tmp" not in str(info.value) and str(target.parent) in str(info.value)
    assert not (tmp_path / "no").exists()


def test_a_missing_file_is_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        milo_pack.load(tmp_path / "missing.milo")
