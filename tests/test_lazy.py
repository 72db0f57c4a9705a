"""Lazy, streaming, partial and memory-mapped loading through ``milo_pack.open`` (issue 5).

These check behaviour (what is read, built, shared and kept), never speed.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.datasets import make_classification
from sklearn.ensemble import (
    BaggingClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    IsolationForest,
    RandomForestClassifier,
    StackingClassifier,
    VotingClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.validation import check_is_fitted

import milo_pack
from milo_pack import codec
from milo_pack.codec import _WORKERS
from milo_pack.errors import ContainerError, IntegrityError, UntrustedTypeError
from milo_pack.handlers import trees
from milo_pack.lazy import _KEEP, is_lazy_member, member_of

from .common import assert_same, assert_same_predictions, noisy_data, stored_array

X, Y = make_classification(300, 6, n_informative=4, n_classes=3, random_state=0)


class CountingFile(io.RawIOBase):
    """A seekable in-memory file that counts the bytes handed out (not a real file)."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def readinto(self, buffer) -> int:
        n = self._inner.readinto(buffer)
        self.bytes_read += n
        return n


@pytest.fixture(scope="module")
def forest():
    # Big trees (noisy labels), packed like small ones: one manifest node for all.
    return RandomForestClassifier(24, max_depth=30, random_state=0).fit(
        *noisy_data(3000, X.shape[1], n_classes=3))


@pytest.fixture(scope="module")
def forest_bytes(forest):
    return milo_pack.dumps(forest)


def _loaded_members(model) -> int:
    return sum(1 for m in model.estimators_ if member_of(m).loaded)


# -- the handle -------------------------------------------------------------------------------


def test_open_reads_only_directory_and_manifest(forest_bytes):
    f = CountingFile(forest_bytes)
    with milo_pack.open(f) as handle:
        assert handle.manifest["root"]["$type"] == "sklearn.ensemble.RandomForestClassifier"
        manifest = handle.container.members[0].size
        sections = sum(m.size for m in handle.container.members[1:])
        assert f.bytes_read < manifest + 2048 * len(handle.container.members)
        assert f.bytes_read < len(forest_bytes) - sections // 2
        assert handle.store.bytes_read == 0


def test_summary_tree_and_text(forest_bytes, forest):
    with milo_pack.open(forest_bytes) as handle:
        tree = handle.summary()
        text = handle.summary(text=True)
        assert handle.store.bytes_read == 0  # sizes come from the manifest alone
    assert tree["type"] == "sklearn.ensemble.RandomForestClassifier"
    nodes = sum(e.tree_.node_count for e in forest.estimators_)
    assert tree["decoded_bytes"] >= nodes * 7 * 8  # at least 7 int64/float64 columns
    assert 0 < tree["stored_bytes"] < tree["decoded_bytes"]
    members = next(c for c in tree["children"] if c["path"] == "estimators_")
    assert members["type"] == "sklearn.tree.packed" and members["shape"] == [24]
    assert members["decoded_bytes"] >= nodes * 7 * 8
    counts = next(c for c in members["children"] if c["path"] == "estimators_.node_count")
    assert counts["shape"] == [24]
    assert "\n  estimators_: sklearn.tree.packed (24,)" in text
    assert "estimators_.classes_: numpy.ndarray (3,) <f8" in text  # shared by every tree
    assert "estimators_.nodes.threshold.splits: numpy.ndarray" in text


def test_get_builds_one_member(forest, monkeypatch):
    # Chunks of 16 KiB, so that this small forest's columns span many chunks, as a big one's do.
    monkeypatch.setattr(codec, "GROUP_CHUNK_BYTES", 16 << 10)
    forest_bytes = milo_pack.dumps(forest)
    with milo_pack.open(forest_bytes) as handle:
        tree = handle.get("estimators_[17]")
        read = handle.store.bytes_read
        tree_classes = handle.get("estimators_[17].classes_")
        # A member's array: that member is built from its own rows.
        np.testing.assert_array_equal(
            handle.read_array("estimators_[17].tree_.threshold", (0, 3)),
            forest.estimators_[17].tree_.threshold[:3])
        # A leaf placeholder column is a "fill" node: no section, still readable by rows.
        np.testing.assert_array_equal(
            handle.read_array("estimators_.nodes.threshold.leaves", (5, 8)), [-2.0] * 3)
        classes = handle.get("classes_")
        with pytest.raises(KeyError):
            handle.get("estimators_[99]")
        with pytest.raises(KeyError):
            handle.get("nope.x")
    assert type(tree) is DecisionTreeClassifier
    assert_same(tree, forest.estimators_[17])
    np.testing.assert_array_equal(tree_classes, forest.estimators_[17].classes_)
    np.testing.assert_array_equal(classes, forest.classes_)
    assert read < len(forest_bytes) // 2


def test_get_goes_through_trust(forest_bytes):
    data = milo_pack.dumps([MyEstimator()])
    with milo_pack.open(data) as handle:
        with pytest.raises(UntrustedTypeError):
            handle.get("[0]")
        assert handle.untrusted_types() == [(f"{__name__}.MyEstimator", "[0]")]


class MyEstimator(BaseEstimator):
    def __init__(self, a: int = 1) -> None:
        self.a = a


# -- lazy loading -----------------------------------------------------------------------------


ENSEMBLES = {
    "forest": lambda: RandomForestClassifier(12, max_depth=6, random_state=0),
    "gradient_boosting": lambda: GradientBoostingClassifier(n_estimators=8, random_state=0),
    "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(max_iter=8,
                                                                     random_state=0),
    "bagging": lambda: BaggingClassifier(DecisionTreeClassifier(), n_estimators=5,
                                         random_state=0),
    "voting": lambda: VotingClassifier([("lr", LogisticRegression(max_iter=300)),
                                        ("dt", DecisionTreeClassifier(random_state=0))],
                                       voting="soft"),
    "stacking": lambda: StackingClassifier([("lr", LogisticRegression(max_iter=300)),
                                            ("dt", DecisionTreeClassifier(random_state=0))]),
    "isolation_forest": lambda: IsolationForest(n_estimators=10, random_state=0),
}


def _members(model):
    items = model._predictors if hasattr(model, "_predictors") else model.estimators_
    return [m for m in np.asarray(items, dtype=object).ravel()]



@pytest.mark.parametrize("name", sorted(ENSEMBLES))
def test_lazy_load_predicts_identically(name):
    model = ENSEMBLES[name]().fit(X, Y)
    data = milo_pack.dumps(model)
    with milo_pack.open(data) as handle:
        lazy = handle.load(lazy=True, cache_bytes=0)
        members = _members(lazy)
        # Boosting stages and HistGradientBoosting predictors are stored packed (one node for
        # all, see handlers/trees.py) and are proxies all the same, built from their own rows.
        assert members and all(is_lazy_member(m) for m in members)
        assert not any(member_of(m).loaded for m in members)  # nothing built yet
        assert type(lazy.estimators_ if hasattr(lazy, "estimators_") else lazy._predictors) is \
            type(model.estimators_ if hasattr(model, "estimators_") else model._predictors)
        check_is_fitted(lazy)
        assert assert_same_predictions(model, lazy, X)
        # Saving the lazy model is saving the model: same bytes.
        assert milo_pack.dumps(lazy) == data
        # Pickle gives back plain objects of the original classes.
        plain = pickle.loads(pickle.dumps(lazy))
        assert not any(is_lazy_member(m) for m in _members(plain))
        assert_same_predictions(model, plain, X)


@pytest.mark.parametrize("name", ["gradient_boosting", "hist_gradient_boosting"])
def test_packed_members_stream_within_the_budget(name, monkeypatch):
    # Tiny chunks, so that building one member visibly reads only its own rows.
    monkeypatch.setattr(codec, "GROUP_CHUNK_BYTES", 1 << 10)
    model = (GradientBoostingClassifier(n_estimators=60, max_depth=4, random_state=0)
             if name == "gradient_boosting" else
             HistGradientBoostingClassifier(max_iter=60, early_stopping=False, random_state=0))
    model.fit(X, Y)
    data = milo_pack.dumps(model)
    with milo_pack.open(data) as handle:
        lazy = handle.load(lazy=True, cache_bytes=0)
        members = _members(lazy)
        session = member_of(members[0]).session
        opened = handle.store.bytes_read
        assert_same(handle.get(member_of(members[-1]).path), _members(model)[-1])
        assert handle.store.bytes_read - opened < len(data) // 4
        np.testing.assert_array_equal(lazy.predict_proba(X), model.predict_proba(X))
        assert session.builds == len(members)
        assert sum(member_of(m).loaded for m in members) <= _KEEP
        np.testing.assert_array_equal(lazy.predict(X), model.predict(X))
        assert session.builds > len(members)  # dropped, built again from the open file


def test_get_builds_one_packed_member():
    model = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(X, Y)
    stages = model.estimators_.ravel()
    with milo_pack.open(milo_pack.dumps(model)) as handle:
        assert handle.manifest["root"]["attrs"]["estimators_"]["$type"] == "sklearn.tree.packed"
        assert_same(handle.get("estimators_[7]"), stages[7])
        np.testing.assert_array_equal(handle.get("estimators_[7].tree_.threshold"),
                                      stages[7].tree_.threshold)
        for missing in ("estimators_[30]", "estimators_[7].nope", "estimators_[7][0]"):
            with pytest.raises(KeyError):
                handle.get(missing)
        assert "estimators_: sklearn.tree.packed (10, 3)" in handle.summary(text=True)
    hgb = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, Y)
    with milo_pack.open(milo_pack.dumps(hgb)) as handle:
        assert_same(handle.get("_predictors[4][2]"), hgb._predictors[4][2])
        assert "_predictors: sklearn.hist_gradient_boosting.predictors (5, 3)" in \
            handle.summary(text=True)


def test_lazy_forest_behaves_like_a_list(forest_bytes, forest):
    with milo_pack.open(forest_bytes) as handle:
        lazy = handle.load(lazy=True)
        assert isinstance(lazy.estimators_, list) and len(lazy.estimators_) == 24
        tree = lazy.estimators_[5]
        assert isinstance(tree, DecisionTreeClassifier)
        assert type(tree).__name__ == "DecisionTreeClassifier"
        check_is_fitted(tree)
        assert tree.get_depth() == forest.estimators_[5].get_depth()
        assert "max_depth=30" in repr(tree)
        assert _loaded_members(lazy) == 1
        np.testing.assert_array_equal(lazy.feature_importances_, forest.feature_importances_)
        assert _loaded_members(lazy) == 24  # default cache: built once, kept


def test_voting_named_members_are_the_same_proxies():
    model = ENSEMBLES["voting"]().fit(X, Y)
    with milo_pack.open(milo_pack.dumps(model)) as handle:
        lazy = handle.load(lazy=True)
        assert lazy.named_estimators_["dt"] is lazy.estimators_[1]
        assert is_lazy_member(lazy.estimators_[1])


def test_cache_zero_streams_through_members(forest_bytes, forest):
    with milo_pack.open(forest_bytes) as handle:
        lazy = handle.load(lazy=True, cache_bytes=0)
        session = member_of(lazy.estimators_[0]).session
        np.testing.assert_array_equal(lazy.predict_proba(X), forest.predict_proba(X))
        assert session.builds == 24
        assert _loaded_members(lazy) <= _KEEP
        # A second pass builds the dropped trees again, from the still-open file.
        np.testing.assert_array_equal(lazy.predict(X), forest.predict(X))
        assert session.builds > 24


def test_cache_budget_is_respected(forest_bytes):
    with milo_pack.open(forest_bytes) as handle:
        lazy = handle.load(lazy=True, cache_bytes=1)
        lazy.predict(X)
        assert _loaded_members(lazy) == _KEEP
        unlimited = handle.load(lazy=True, cache_bytes=None)
        unlimited.predict(X)
        assert _loaded_members(unlimited) == 24
        with pytest.raises(ValueError):
            handle.load(lazy=True, cache_bytes=-1)


def test_changed_member_is_never_dropped(forest_bytes):
    with milo_pack.open(forest_bytes) as handle:
        lazy = handle.load(lazy=True, cache_bytes=0)
        lazy.estimators_[0].note = "kept"
        lazy.predict(X)
        assert lazy.estimators_[0].note == "kept"
        assert member_of(lazy.estimators_[0]).pinned


def test_closed_handle_is_reported_at_first_use(forest_bytes):
    with milo_pack.open(forest_bytes) as handle:
        lazy = handle.load(lazy=True)
    with pytest.raises(ContainerError, match="closed"):
        lazy.predict(X)


def _first_section(node) -> int:
    """The section of the first sectioned array under a manifest node."""
    stack = [node]
    while stack:
        value = stack.pop()
        if isinstance(value, dict) and "section" in value:
            return value["section"]
        if isinstance(value, dict):
            stack.extend(reversed(list(value.values())))
        elif isinstance(value, list):
            stack.extend(reversed(value))
    raise AssertionError("no sectioned array")


def _corrupt_member_data(data: bytes, section: int) -> bytes:
    with milo_pack.open(data) as handle:
        member = handle.container.member(f"sections/{section:06d}.bin")
    corrupted = bytearray(data)
    corrupted[member.data_offset + 3] ^= 0xFF
    return bytes(corrupted)


def test_lazy_reads_are_verified(forest_bytes):
    with milo_pack.open(forest_bytes) as handle:
        section = _first_section(handle.manifest["root"]["attrs"]["estimators_"]["trees"])
    bad = _corrupt_member_data(forest_bytes, section)
    with milo_pack.open(bad) as handle:
        lazy = handle.load(lazy=True)  # the manifest is fine: nothing is read yet
        with pytest.raises(IntegrityError):
            lazy.predict(X)
    with pytest.raises(IntegrityError):
        milo_pack.loads(bad)


def test_lazy_refuses_untrusted_types_before_building():
    data = milo_pack.dumps({"estimators_": [MyEstimator()]})
    with milo_pack.open(data) as handle:
        with pytest.raises(UntrustedTypeError):
            handle.load(lazy=True)
        loaded = handle.load(lazy=True, trusted=[f"{__name__}.MyEstimator"])
    assert isinstance(loaded["estimators_"][0], MyEstimator)


# -- arrays: partial reads, decoding in place, memory-mapping --------------------------------


@pytest.fixture(scope="module")
def big_arrays():
    rng = np.random.default_rng(0)
    c_order = rng.normal(size=(400_000, 5))  # 16 MB: 16 chunks of 1 MiB
    return {"c": c_order, "f": np.asfortranarray(c_order[:, :3]), "small": np.arange(10)}


def test_read_array_decodes_only_needed_chunks(big_arrays):
    data = milo_pack.dumps(big_arrays)
    with milo_pack.open(data) as handle:
        rows = handle.read_array("c", slice(200_000, 200_010))
        assert handle.store.chunks_read == 1
        np.testing.assert_array_equal(rows, big_arrays["c"][200_000:200_010])
        np.testing.assert_array_equal(handle.read_array("c", -1), big_arrays["c"][-1])
        np.testing.assert_array_equal(handle.read_array("c", (5, 7)), big_arrays["c"][5:7])
        before = handle.store.chunks_read
        np.testing.assert_array_equal(handle.read_array("f", slice(1000, 1100)),
                                      big_arrays["f"][1000:1100])
        assert handle.store.chunks_read - before <= 3  # one per column
        np.testing.assert_array_equal(handle.read_array("small", slice(2, 4)), [2, 3])
        with pytest.raises(ValueError):
            handle.read_array("c", slice(0, 10, 2))


def test_arrays_decode_into_their_final_buffer(big_arrays):
    data = milo_pack.dumps({"c": big_arrays["c"]})
    nbytes = big_arrays["c"].nbytes
    tracemalloc.start()
    try:
        loaded = milo_pack.loads(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(loaded["c"], big_arrays["c"])
    # One full-size buffer plus a few chunks in flight, never a second full-size copy.
    assert peak < nbytes + 12 * (1 << 20)


def test_forest_sections_use_group_chunks(forest_bytes):
    with milo_pack.open(forest_bytes) as handle:
        infos = handle.store.infos
    # Every tree column is one section of many arrays: half-size chunks (see chunk_length_for).
    assert infos and all(
        info.chunk_length == codec.GROUP_CHUNK_BYTES // info.dtype.itemsize for info in infos)
    single = milo_pack.dumps(np.arange(300_000.0))
    with milo_pack.open(single) as handle:
        (info,) = handle.store.infos
    assert info.chunk_length == codec.CHUNK_BYTES // 8


def test_eager_forest_load_holds_a_bounded_set_of_chunks(monkeypatch):
    # A forest whose ~12 sections have many chunks each: the load must hold about one partly
    # read chunk per section plus a bounded read-ahead, not a read-ahead chunk per section.
    monkeypatch.setattr(codec, "GROUP_CHUNK_BYTES", 4 << 10)
    monkeypatch.setattr(codec, "_AHEAD", 2)
    monkeypatch.setattr(trees, "_BLOCK_ROWS", 1024)  # many blocks of trees, as a big forest
    Xn, yn = noisy_data(3000, 8)
    model = RandomForestClassifier(30, random_state=0).fit(Xn, yn)
    data = milo_pack.dumps(model)
    most = {"bytes": 0, "ahead": 0}
    put = codec._ChunkCache.put

    def watch(self, key, fut, nbytes):
        result = put(self, key, fut, nbytes)
        most["bytes"] = max(most["bytes"], self.bytes)
        most["ahead"] = max(most["ahead"], len(self.ahead))
        return result

    monkeypatch.setattr(codec._ChunkCache, "put", watch)
    with milo_pack.open(data) as handle:
        n_sections = len(handle.store.infos)
        assert all(info.n_chunks > 4 for info in handle.store.infos if info.dtype.itemsize == 8)
        loaded = handle.load()
    assert most["ahead"] == 2
    # One partly read chunk per section, the next one of the section being read, read-ahead.
    assert 0 < most["bytes"] <= (n_sections + 1 + 2) * (4 << 10)
    assert_same_predictions(model, loaded, Xn)


def test_dump_streams_sections(tmp_path, big_arrays):
    payload = {f"x{k}": big_arrays["c"] * k for k in range(1, 5)}
    size = sum(a.nbytes for a in payload.values())  # 64 MB, incompressible
    tracemalloc.start()
    try:
        milo_pack.dump(payload, tmp_path / "big.milo", level=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A bounded window of chunks in flight (a few MiB per worker), not the sections.
    assert peak < max(0.5 * size, (8 + 6 * _WORKERS) << 20)
    np.testing.assert_array_equal(milo_pack.load(tmp_path / "big.milo")["x4"], payload["x4"])


def test_raw_files_are_memory_mapped_and_verified(tmp_path, big_arrays):
    path = tmp_path / "raw.milo"
    milo_pack.dump({"c": big_arrays["c"]}, path, level=0)
    with milo_pack.open(path) as handle:
        loaded = handle.load()
        assert handle.store.chunks_read == 0  # nothing copied: hashed through the mapping
        copied = handle.load(mmap=False)
    assert not loaded["c"].flags.writeable and copied["c"].flags.writeable
    np.testing.assert_array_equal(loaded["c"], big_arrays["c"])
    raw = path.read_bytes()
    with milo_pack.open(raw) as handle:
        section = handle.manifest["root"]["c"]["section"]
    (tmp_path / "bad.milo").write_bytes(_corrupt_member_data(raw, section))
    with pytest.raises(IntegrityError):
        milo_pack.load(tmp_path / "bad.milo")


_SHARE_CHILD = textwrap.dedent("""
    import sys, milo_pack
    with milo_pack.open(sys.argv[1]) as handle:
        data = handle.load()
    float(data["c"].sum())  # touch every page
    # The mapping of the model file: its resident and proportional (shared-out) sizes.
    rss = pss = 0
    with open("/proc/self/smaps") as f:
        in_file = False
        for line in f:
            if "-" in line.split()[0] and ":" not in line.split()[0]:
                in_file = line.rstrip().endswith(sys.argv[1])
            elif in_file and line.startswith(("Rss:", "Pss:")):
                value = int(line.split()[1]) * 1024
                rss, pss = (value, pss) if line.startswith("Rss:") else (rss, value)
    print(rss, pss, flush=True)
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux smaps")
def test_two_processes_share_mapped_pages(tmp_path, big_arrays):
    path = tmp_path / "raw.milo"
    milo_pack.dump({"c": big_arrays["c"]}, path, level=0)
    nbytes = big_arrays["c"].nbytes
    with milo_pack.open(path) as handle:
        mine = handle.load()
    assert float(mine["c"].sum()) == float(big_arrays["c"].sum())  # this process maps it too
    out = subprocess.run([sys.executable, "-c", _SHARE_CHILD, str(path)], check=True,
                         capture_output=True, text=True).stdout
    rss, pss = map(int, out.split())
    # The child's pages of the file are the ones this process maps: each pays half of them.
    assert rss >= 0.9 * nbytes
    assert pss <= 0.6 * rss
    del mine


_RELEASE_CHILD = textwrap.dedent("""
    import pickle, sys, milo_pack
    from sklearn.neighbors import KNeighborsClassifier
    path, sample = sys.argv[1], sys.argv[2]

    def resident():
        # Resident bytes of the model file's mapping(s) in this process.
        total, in_file = 0, False
        with open("/proc/self/smaps") as f:
            for line in f:
                if "-" in line.split()[0] and ":" not in line.split()[0]:
                    in_file = line.rstrip().endswith(path)
                elif in_file and line.startswith("Rss:"):
                    total += int(line.split()[1]) * 1024
        return total

    with milo_pack.open(path) as handle:
        model = handle.load()
    after_load = resident()
    X = pickle.loads(open(sample, "rb").read())
    proba = model["forest"].predict_proba(X)
    distances, _ = model["knn"].kneighbors(X)   # its data is a view of the mapping
    print(after_load, model["knn"]._fit_X.flags.writeable, resident(), flush=True)
    sys.stdout.buffer.write(pickle.dumps((proba, distances)))
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux smaps")
def test_level0_load_leaves_no_mapped_page_resident(tmp_path):
    """Issue 13: once the trees copied their nodes, no page of a level-0 file stays in the
    loading process; the arrays scikit-learn keeps as given (KNN data) stay mapped, and fault
    their pages back in from the page cache when used."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neighbors import KNeighborsClassifier

    X, y = make_classification(4000, 10, random_state=0)
    model = {"forest": RandomForestClassifier(30, random_state=0).fit(X, y),
             "knn": KNeighborsClassifier(algorithm="brute").fit(X, y)}
    path = tmp_path / "raw.milo"
    milo_pack.dump(model, path, level=0)
    (tmp_path / "X.pkl").write_bytes(pickle.dumps(X[:300]))
    out = subprocess.run([sys.executable, "-c", _RELEASE_CHILD, str(path),
                          str(tmp_path / "X.pkl")], check=True, capture_output=True).stdout
    head, _, payload = out.partition(b"\n")
    after_load, writeable, after_use = head.decode().split()
    assert int(after_load) == 0, "mapped pages stayed resident after the load"
    assert writeable == "False"  # still a view of the file, not a copy
    assert int(after_use) >= X.nbytes // 2  # the KNN data came back from the file when used
    proba, distances = pickle.loads(payload)
    np.testing.assert_array_equal(proba, model["forest"].predict_proba(X[:300]))
    np.testing.assert_array_equal(distances, model["knn"].kneighbors(X[:300])[0])


# -- object storage ---------------------------------------------------------------------------


@pytest.fixture()
def s3_server():
    from moto import server as moto_server

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_open_from_s3_with_range_reads(s3_server, monkeypatch):
    import s3fs

    # Full-depth trees, so array data rather than the manifest makes most of the file, and
    # 16 KiB chunks, so this small forest has as many chunks per column as a large forest has
    # with the default sizes.
    Xb, yb = make_classification(20000, 20, random_state=0)
    forest = RandomForestClassifier(8, random_state=0).fit(Xb, yb)
    with monkeypatch.context() as patch:
        patch.setattr(codec, "CHUNK_BYTES", 16 << 10)
        patch.setattr(codec, "GROUP_CHUNK_BYTES", 16 << 10)
        forest_bytes = milo_pack.dumps(forest)

    fetched: list[int] = []
    original = s3fs.core.S3File._fetch_range

    def counting(self, start, end):
        data = original(self, start, end)
        fetched.append(len(data))
        return data

    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", counting)
    fs = s3fs.S3FileSystem(key="test", secret="test", client_kwargs={
        "endpoint_url": s3_server, "region_name": "eu-west-1"}, skip_instance_cache=True)
    fs.mkdir("models")
    fs.pipe("models/forest.milo", forest_bytes)
    # No read-ahead cache: every byte the reader asks for is one ranged GET, and counted.
    with fs.open("models/forest.milo", "rb", cache_type="none") as f:
        with milo_pack.open(f) as handle:
            opened = sum(fetched)
            tree = handle.get("estimators_[3]")
            one_tree = sum(fetched)
            lazy = handle.load(lazy=True, cache_bytes=0)
            np.testing.assert_array_equal(lazy.predict_proba(Xb), forest.predict_proba(Xb))
    print(f"opened {opened}, +1 tree {one_tree}, of {len(forest_bytes)}")
    assert opened < len(forest_bytes) * 0.25
    assert one_tree < len(forest_bytes) * 0.4
    assert_same(tree, forest.estimators_[3])


# -- what a lazy model keeps ----------------------------------------------------------------


def test_members_within_the_budget_stay_built(forest_bytes, forest):
    with milo_pack.open(forest_bytes) as handle:
        sizes = [member_of(m).nbytes
                 for m in handle.load(lazy=True).estimators_]
        half = sum(sizes[:12])
        lazy = handle.load(lazy=True, cache_bytes=half)
        session = member_of(lazy.estimators_[0]).session
        for _ in range(3):
            np.testing.assert_array_equal(lazy.predict_proba(X), forest.predict_proba(X))
        # The first 12 fit and stay; each pass rebuilds only the 12 past the budget (an LRU
        # would rebuild all 24 on every pass of a scan).
        assert session.builds == 24 + 2 * 12
        assert all(member_of(m).resident for m in lazy.estimators_[:12])
        assert session.resident_bytes == half
        full = handle.load(lazy=True, cache_bytes=None)
        full.predict(X)
        full.predict(X)
        assert member_of(full.estimators_[0]).session.builds == 24


def test_transient_members_keep_an_empty_dict(forest_bytes, forest):
    # A transient member's state is a separate plain object: its proxy's __dict__ stays empty,
    # so dropping it never empties anything a thread could be reading.
    with milo_pack.open(forest_bytes) as handle:
        lazy = handle.load(lazy=True, cache_bytes=0)
        tree = lazy.estimators_[3]
        assert tree.get_depth() == forest.estimators_[3].get_depth()
        assert vars(tree) == {} and not member_of(tree).resident
        state = member_of(tree).built
        assert type(state) is DecisionTreeClassifier
        check_is_fitted(tree)
        for other in lazy.estimators_[4:]:
            other.get_depth()
        assert member_of(tree).built is None and "tree_" in vars(state)  # dropped, not emptied


def test_lazy_models_are_freed(forest_bytes):
    import gc
    import weakref

    with milo_pack.open(forest_bytes) as handle:
        lazy = handle.load(lazy=True, cache_bytes=None)
        lazy.predict(X)
        ref = weakref.ref(lazy)
    del lazy
    gc.collect()
    assert ref() is None  # nothing global keeps a lazily loaded model (or its file) alive


# -- scoring many batches per member build (issue 14) ------------------------------------------


def test_map_batches_builds_each_member_once_per_call():
    from milo_pack.remote_model import map_batches

    forest = RandomForestClassifier(12, random_state=0).fit(X, Y)
    batches = [X[i:i + 40] for i in range(0, 300, 40)]  # 8 batches, the last of 20 rows
    with milo_pack.open(milo_pack.dumps(forest)) as handle:
        lazy = handle.load(lazy=True, cache_bytes=0)
        session = member_of(lazy.estimators_[0]).session
        got = list(map_batches(lazy, "predict_proba", batches, rows=120))
        # Groups of at most 120 rows: 3 + 3 + 2 batches, each member built once per group.
        assert session.builds == 3 * 12
        assert len(got) == len(batches)
        for batch, proba in zip(batches, got, strict=True):
            assert proba.shape == (len(batch), 3)
            np.testing.assert_array_equal(proba, forest.predict_proba(batch))
        # One by one: a build per member per batch.
        for batch in batches:
            lazy.predict_proba(batch)
        assert session.builds == 3 * 12 + 8 * 12
        # A batch larger than rows is scored alone; predict's labels come back per batch.
        labels = list(map_batches(lazy, "predict", [X[:10], X[10:300], X[:5]], rows=100))
        assert [len(x) for x in labels] == [10, 290, 5]
        np.testing.assert_array_equal(np.concatenate(labels),
                                      forest.predict(np.concatenate([X[:10], X[10:300], X[:5]])))


def test_map_batches_keeps_frames_and_refuses_bad_arguments():
    import pandas as pd
    from sklearn.preprocessing import StandardScaler

    from milo_pack.remote_model import map_batches

    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    scaler = StandardScaler().set_output(transform="pandas").fit(frame)
    parts = [frame.iloc[:100], frame.iloc[100:130], frame.iloc[130:]]
    out = list(map_batches(scaler, "transform", parts))
    for part, got in zip(parts, out, strict=True):
        pd.testing.assert_frame_equal(got, scaler.transform(part))
    forest = RandomForestClassifier(5, random_state=0).fit(frame, Y)
    lazy = milo_pack.open(milo_pack.dumps(forest)).load(lazy=True, cache_bytes=0)
    got = list(map_batches(lazy, "predict_proba", iter(parts)))
    np.testing.assert_array_equal(np.concatenate(got), forest.predict_proba(frame))
    assert list(map_batches(lazy, "predict", [])) == []
    with pytest.raises(ValueError, match="no method"):
        list(map_batches(lazy, "fit_transform_nothing", parts))
    with pytest.raises(ValueError, match="no method"):
        list(map_batches(lazy, "_validate_X_predict", parts))
    with pytest.raises(ValueError, match="rows"):
        list(map_batches(lazy, "predict", parts, rows=0))


def test_streaming_predict_holds_the_members_in_use_not_the_model():
    # Issue 14's memory bound: a cache_bytes=0 predict holds the members in use (and the few
    # the ring keeps) plus about 8 MB of decoded chunks, whatever the model's size.  Tree nodes
    # live in scikit-learn's own C allocations, which tracemalloc does not see: members held
    # are counted by their decoded sizes at every build, the rest (chunks, a build's
    # temporaries, numpy arrays) traced.
    Xn, Yn = noisy_data(20000, 8)
    forest = RandomForestClassifier(80, random_state=0, n_jobs=2).fit(Xn, Yn)
    forest.n_jobs = None
    batch = Xn[:2000]
    data = milo_pack.dumps(forest)
    for cache_bytes in (0, None):
        with milo_pack.open(data) as handle:
            lazy = handle.load(lazy=True, cache_bytes=cache_bytes)
            members = [member_of(m) for m in lazy.estimators_]
            sizes = [m.nbytes for m in members]
            session = members[0].session
            held: list[int] = []
            build = session._build

            def counting(proxy, member, build=build, members=members, held=held):
                state = build(proxy, member)
                held.append(sum(m.nbytes for m in members if m.loaded))
                return state

            session._build = counting
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                proba = lazy.predict_proba(batch)
                traced = tracemalloc.get_traced_memory()[1] - base
            finally:
                tracemalloc.stop()
            np.testing.assert_array_equal(proba, forest.predict_proba(batch))
        assert len(held) == len(members)
        if cache_bytes is None:  # the bound below would catch a model kept whole
            assert max(held) == sum(sizes) > 2 * ((_KEEP + 1) * max(sizes))
            continue
        assert max(held) <= _KEEP * max(sizes), (max(held), max(sizes))
        assert traced < (8 << 20) + 2 * max(sizes) + 4 * batch.nbytes, (traced, max(sizes))


def test_section_reads_as_views_match_copies(tmp_path):
    """``read(view=True)``: rows inside one chunk come back as a read-only view of the decoded
    chunk; any other read as a fresh array.  Either way the same values as a plain read."""
    a = np.arange(300_000, dtype=np.int64) * 3
    with stored_array(tmp_path, a) as (store, cl):
        assert store.infos[0].n_chunks >= 3
        spans = [(5, 100), (cl - 10, 10), (cl - 10, 20), (cl, cl), (0, 300_000), (cl + 1, 0)]
        for start, count in spans:
            copy = store.read(0, start, count)
            view = store.read(0, start, count, view=True)
            assert view.tolist() == copy.tolist() == a[start:start + count].tolist()
            inside = count and start // cl == (start + count - 1) // cl
            whole = start % cl == 0 and count == cl
            assert view.flags.writeable is not (inside and not whole), (start, count)
            assert copy.flags.writeable
        with pytest.raises(ValueError):  # the cache's chunk is never written through a view
            store.read(0, 5, 10, view=True)[0] = 1
        assert store.read(0, 5, 10).tolist() == a[5:15].tolist()
