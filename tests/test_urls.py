"""URLs as sources and targets (fsspec), the block-cached remote reader, and the remote handle.

An S3 server runs on loopback (moto's ThreadedMotoServer) for the object-store tests.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import fsspec
import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

import milo_pack
from milo_pack.blockfile import BlockFile
from milo_pack.cli import main as cli_main
from milo_pack.errors import (
    ChangedError,
    LimitError,
    UnsupportedTypeError,
    UntrustedTypeError,
)
from milo_pack.limits import Limits
from milo_pack.remote_model import clear

from .common import assert_same, noisy_data

X, Y = noisy_data(2000, 6)


@pytest.fixture(scope="module")
def forest():
    return RandomForestClassifier(12, random_state=0).fit(X, Y)


@pytest.fixture(autouse=True)
def _fresh():
    MemoryFileSystem.store.clear()
    clear()  # no model opened by an earlier test in this process
    yield
    clear()
    MemoryFileSystem.store.clear()


# -- BlockFile ------------------------------------------------------------------------------


def test_block_file_fetches_each_block_once_and_coalesces():
    data = bytes(range(256)) * 40  # 10,240 bytes: 10 blocks of 1,024 (the last one short)
    calls: list[tuple[int, int]] = []

    def fetch(start: int, end: int) -> bytes:
        calls.append((start, end))
        return data[start:end]

    f = BlockFile(fetch, len(data), block_bytes=1024, cache_bytes=1 << 20)
    assert f.read_at(100, 3000) == data[100:3100]
    assert calls == [(0, 4096)]  # blocks 0-3 in one ranged request
    f.seek(2000)
    assert f.read(3000) == data[2000:5000]
    assert calls[1:] == [(4096, 5120)]  # only the missing block 4
    assert f.read_at(10_000, 500) == data[10_000:]  # clipped at the end
    assert f.read_at(20_000, 5) == b""
    assert f.requests == 3 and f.bytes_fetched == 5120 + 1024  # block 9: 9216-10240


def test_block_file_keeps_at_most_its_budget():
    data = bytes(8192)
    f = BlockFile(lambda s, e: data[s:e], len(data), block_bytes=1024, cache_bytes=2048)
    for offset in range(0, 8192, 1024):
        f.read_at(offset, 10)
    assert f._cached <= 2048 and len(f._blocks) == 2
    assert f.read_at(0, 5000) == data[:5000]  # one read larger than the budget still works


def test_block_file_refuses_a_short_object():
    f = BlockFile(lambda s, e: b"x" * (e - s - 1), 4096, block_bytes=1024)
    with pytest.raises(OSError, match="short read"):
        f.read_at(0, 10)


# -- URLs through the public API ------------------------------------------------------------


def test_memory_urls_round_trip_everywhere(forest):
    url = "memory://models/forest.milo"
    milo_pack.dump(forest, url, metadata={"run": 7})
    assert_same(milo_pack.load(url), forest)
    assert milo_pack.inspect(url)["metadata"] == {"run": 7}
    assert milo_pack.untrusted_types(url) == []
    with milo_pack.open(url) as handle:
        assert handle.identity["size"] == len(fsspec.filesystem("memory").cat_file(url))
        lazy = handle.load(lazy=True, cache_bytes=0)
        np.testing.assert_array_equal(lazy.predict_proba(X), forest.predict_proba(X))
    with pytest.raises(TypeError, match="only for URLs"):
        milo_pack.load("model.milo", storage_options={"anon": True})


def test_failed_dump_leaves_no_object(forest):
    url = "memory://models/bad.milo"
    with pytest.raises(UnsupportedTypeError):
        milo_pack.dump({"f": lambda x: x}, url)
    assert not fsspec.filesystem("memory").exists(url)


class _RenameFS(MemoryFileSystem):
    """A store without atomic uploads (like sftp or hdfs): uploads go to a temporary name."""

    protocol = "milotestfs"
    fail_after: int | None = None

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.removeprefix("milotestfs://"))

    def put_file(self, lpath, rpath, **kwargs):
        data = open(lpath, "rb").read()
        if self.fail_after is not None:
            self.pipe_file(rpath, data[:self.fail_after])  # a half-written temporary object
            raise OSError("connection lost")
        self.pipe_file(rpath, data)


def test_stores_without_atomic_uploads_rename_into_place(forest):
    fsspec.register_implementation("milotestfs", _RenameFS, clobber=True)
    fs = fsspec.filesystem("milotestfs")
    url = "milotestfs://models/forest.milo"
    milo_pack.dump(forest, url)
    assert_same(milo_pack.load(url), forest)
    before = fs.cat_file("/models/forest.milo")
    _RenameFS.fail_after = 1000
    try:
        with pytest.raises(OSError, match="connection lost"):
            milo_pack.dump(RandomForestClassifier(3, random_state=1).fit(X, Y), url)
    finally:
        _RenameFS.fail_after = None
    assert fs.cat_file("/models/forest.milo") == before  # the old object, whole
    assert fs.ls("/models", detail=False) == ["/models/forest.milo"]  # no temporary left


def test_cli_reads_and_writes_urls(forest, tmp_path, capsys):
    url = "memory://models/forest.milo"
    milo_pack.dump(forest, url)
    assert cli_main(["inspect", url, "--storage-option", "skip_instance_cache=true"]) == 0
    assert "RandomForestClassifier" in capsys.readouterr().out
    assert cli_main(["verify", url, "-q"]) == 0
    pkl = tmp_path / "forest.pkl"
    pkl.write_bytes(pickle.dumps(forest))
    assert cli_main(["convert", str(pkl), "memory://models/converted.milo",
                     "--trust-pickle"]) == 0
    assert cli_main(["diff", url, "memory://models/converted.milo"]) == 0
    assert cli_main(["inspect", url, "--storage-option", "novalue"]) == 2


# -- the remote handle ----------------------------------------------------------------------


def test_remote_handle_is_small_and_opens_once(forest):
    url = "memory://models/forest.milo"
    milo_pack.dump(forest, url)
    handle = milo_pack.remote(url, cache_bytes=0)
    data = pickle.dumps(handle)
    assert len(data) < 1024
    copy = pickle.loads(data)
    assert copy == handle and hash(copy) == hash(handle)
    np.testing.assert_array_equal(copy.predict_proba(X), forest.predict_proba(X))
    np.testing.assert_array_equal(copy.predict(X), forest.predict(X))
    opened = copy.opened()
    assert handle.opened() is opened  # one model per process for one identity
    assert copy.model is handle.model
    copy.close()
    assert handle.opened() is None


def test_remote_handle_scores_batches_together(forest):
    url = "memory://models/forest.milo"
    milo_pack.dump(forest, url)
    handle = pickle.loads(pickle.dumps(milo_pack.remote(url, cache_bytes=0)))
    batches = [X[i:i + 300] for i in range(0, 2000, 300)]
    got = list(handle.map_batches("predict_proba", batches, rows=900))
    assert len(got) == len(batches)
    for batch, proba in zip(batches, got, strict=True):
        np.testing.assert_array_equal(proba, forest.predict_proba(batch))


def test_remote_handle_carries_its_limits(forest):
    url = "memory://models/forest.milo"
    milo_pack.dump(forest, url)
    handle = milo_pack.remote(url, limits=Limits(max_depth=150, max_tree_nodes=1 << 20))
    assert handle.limits_changes == {"max_depth": 150, "max_tree_nodes": 1 << 20}
    copy = pickle.loads(pickle.dumps(handle))
    assert copy.limits_changes == handle.limits_changes
    np.testing.assert_array_equal(copy.predict(X), forest.predict(X))
    assert milo_pack.remote(url, limits=Limits()).limits_changes == {}
    with pytest.raises(LimitError):
        milo_pack.remote(url, limits=Limits(max_depth=2))


def test_remote_handle_refuses_a_changed_object(forest):
    url = "memory://models/forest.milo"
    milo_pack.dump(forest, url)
    handle = milo_pack.remote(url)
    milo_pack.dump(RandomForestClassifier(3, random_state=1).fit(X, Y), url)
    with pytest.raises(ChangedError, match="changed since this handle was made"):
        handle.predict(X)


def test_remote_handle_checks_trust_on_the_driver():
    from .test_lazy import MyEstimator

    url = "memory://models/mine.milo"
    milo_pack.dump(MyEstimator(), url)
    with pytest.raises(UntrustedTypeError, match="MyEstimator"):
        milo_pack.remote(url)
    tag = f"{MyEstimator.__module__}.MyEstimator"
    assert milo_pack.remote(url, trusted=[tag]).model.a == 1


def test_remote_handle_in_a_fresh_interpreter(forest, tmp_path):
    path = tmp_path / "forest.milo"
    milo_pack.dump(forest, path)
    handle = milo_pack.remote(str(path), cache_bytes=0)
    np.save(tmp_path / "X.npy", X)
    (tmp_path / "handle.pkl").write_bytes(pickle.dumps(handle))
    code = textwrap.dedent(f"""
        import pickle, threading, numpy as np
        handle = pickle.loads(open({str(tmp_path / 'handle.pkl')!r}, 'rb').read())
        X = np.load({str(tmp_path / 'X.npy')!r})
        out = [None] * 4
        def run(i): out[i] = handle.predict_proba(X)
        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert all(o is not None and (o == out[0]).all() for o in out)
        np.save({str(tmp_path / 'out.npy')!r}, out[0])
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), forest.predict_proba(X))


# -- a real object store on loopback --------------------------------------------------------


@pytest.fixture(scope="module")
def s3():
    from moto import server as moto_server

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"key": "test", "secret": "test", "skip_instance_cache": True,
               "client_kwargs": {"endpoint_url": f"http://{host}:{port}",
                                 "region_name": "eu-west-1"}}
    # moto keeps its buckets for the whole process, across servers
    fsspec.filesystem("s3", **options).makedirs("models", exist_ok=True)
    try:
        yield options
    finally:
        server.stop()


def test_s3_dump_and_lazy_reads_fetch_each_block_once(s3):
    Xb, yb = make_classification(20000, 20, random_state=0)
    forest = RandomForestClassifier(8, random_state=0).fit(Xb, yb)
    url = "s3://models/big.milo"
    milo_pack.dump(forest, url, storage_options=s3)
    size = fsspec.filesystem("s3", **s3).size(url)
    handle = milo_pack.remote(url, storage_options=s3, cache_bytes=0)
    assert handle.identity["etag"] and handle.identity["size"] == size
    for _ in range(3):  # three streaming passes: every member built three times
        np.testing.assert_array_equal(handle.predict_proba(Xb), forest.predict_proba(Xb))
    source = handle.opened().source
    assert source.bytes_fetched <= size  # each byte once, whatever the passes
    assert source.requests <= size // (1 << 20) + 2
    assert_same(milo_pack.load(url, storage_options=s3), forest)


def test_s3_replaced_object_is_refused(s3, forest):
    url = "s3://models/swap.milo"
    milo_pack.dump(forest, url, storage_options=s3)
    handle = milo_pack.remote(url, storage_options=s3)
    milo_pack.dump(RandomForestClassifier(3, random_state=1).fit(X, Y), url,
                   storage_options=s3)
    with pytest.raises(ChangedError, match="ETag"):
        handle.model  # noqa: B018
