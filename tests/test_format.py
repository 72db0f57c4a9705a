"""The file itself: determinism, strict readable JSON, atomic writes, levels, the public API."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import milo_pack
from milo_pack.errors import ManifestError, MiloError, UnsupportedTypeError

from .common import assert_same


@pytest.fixture(scope="module")
def forest():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    return RandomForestClassifier(n_estimators=8, random_state=0).fit(X, y), X


def test_same_model_same_bytes(forest, tmp_path):
    model, _ = forest
    first = milo_pack.dumps(model)
    assert milo_pack.dumps(model) == first
    milo_pack.dump(model, tmp_path / "a.milo")
    assert (tmp_path / "a.milo").read_bytes() == first
    # A model rebuilt from the file writes the same bytes, in a fresh process too.
    code = (
        "import sys, milo_pack; m = milo_pack.load(sys.argv[1]);"
        "sys.stdout.buffer.write(milo_pack.dumps(m))"
    )
    out = subprocess.run([os.sys.executable, "-c", code, str(tmp_path / "a.milo")],
                         capture_output=True, check=True, env={**os.environ,
                                                               "PYTHONHASHSEED": "123"})
    assert out.stdout == first


def test_sets_are_deterministic_across_hash_seeds():
    code = "import sys, milo_pack; sys.stdout.buffer.write(milo_pack.dumps({'s': set('abcdefgh')}))"
    outputs = {
        subprocess.run([os.sys.executable, "-c", code], capture_output=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1


def test_manifest_is_first_member_and_strict_json(forest):
    model, _ = forest
    data = milo_pack.dumps({"model": model, "nan": float("nan"), "inf": [float("-inf")],
                            "arr": np.array([np.nan, np.inf, 1.0])})
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        assert infos[0].filename == "manifest.json"
        assert all(info.compress_type == zipfile.ZIP_STORED for info in infos)
        text = archive.read("manifest.json").decode("utf-8")

    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    doc = json.loads(text, parse_constant=refuse)
    assert doc["format"] == "milo_pack" and doc["format_version"] == 1
    assert {"milo_pack", "python", "numpy", "scipy", "scikit-learn"} <= set(doc["writer"])
    assert doc["root"]["nan"] == {"$type": "float", "value": "nan"}
    assert doc["root"]["arr"]["data"] == ["nan", "inf", 1.0]


@pytest.mark.skipif(shutil.which("jq") is None or shutil.which("unzip") is None,
                    reason="jq and unzip are installed by .ci/run")
def test_unzip_and_jq_read_the_manifest(forest, tmp_path):
    model, _ = forest
    path = tmp_path / "model.milo"
    milo_pack.dump(model, path)
    subprocess.run(["unzip", "-tq", str(path)], check=True, capture_output=True)
    manifest = subprocess.run(["unzip", "-p", str(path), "manifest.json"], check=True,
                              capture_output=True).stdout
    out = subprocess.run(["jq", "-r", ".root[\"$type\"], (.root.attrs.estimators_ | length)"],
                         input=manifest, check=True, capture_output=True).stdout.decode()
    assert out.split() == ["sklearn.ensemble.RandomForestClassifier", "8"]


def test_failed_dump_leaves_no_file(tmp_path):
    target = tmp_path / "model.milo"
    with pytest.raises(UnsupportedTypeError):
        milo_pack.dump({"ok": np.arange(10**6), "bad": object()}, target)
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"previous")
    with pytest.raises(UnsupportedTypeError):
        milo_pack.dump([lambda: 0], target)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.milo"]


def test_dump_to_file_object_and_load_from_file_object(forest, tmp_path):
    model, X = forest
    buffer = io.BytesIO()
    milo_pack.dump(model, buffer)
    buffer.seek(0)
    loaded = milo_pack.load(buffer)
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    with open(tmp_path / "m.milo", "wb") as f:
        milo_pack.dump(model, f)
    with open(tmp_path / "m.milo", "rb") as f:
        assert_same(model, milo_pack.load(f))


@pytest.mark.parametrize("level", [0, 1, 3, 9])
def test_levels(forest, level):
    model, X = forest
    data = milo_pack.dumps(model, level=level)
    loaded = milo_pack.loads(data)
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    codecs = {s["codec"] for s in milo_pack.inspect(data)["sections"]}
    assert codecs == ({"raw"} if level == 0 else {"zstd"})


def test_raw_sections_are_64_byte_aligned():
    data = milo_pack.dumps({"a": np.arange(10**5, dtype=np.float32), "b": np.arange(7.0) * 9},
                           level=0)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            local = data[info.header_offset:info.header_offset + 30]
            name_len = int.from_bytes(local[26:28], "little")
            extra_len = int.from_bytes(local[28:30], "little")
            assert (info.header_offset + 30 + name_len + extra_len) % 64 == 0


@pytest.mark.parametrize("level", [-1, 23, 1.5, "3"])
def test_bad_level(level):
    with pytest.raises(ValueError):
        milo_pack.dumps([1], level=level)


def test_inspect_reads_no_sections(forest, monkeypatch):
    model, _ = forest
    data = milo_pack.dumps(model)
    from milo_pack import codec

    def boom(*args, **kwargs):
        raise AssertionError("inspect decoded a section")

    monkeypatch.setattr(codec.SectionStore, "read", boom)
    manifest = milo_pack.inspect(data)
    assert manifest["root"]["$type"] == "sklearn.ensemble.RandomForestClassifier"


def test_errors_are_value_errors():
    assert issubclass(MiloError, ValueError)
    with pytest.raises(MiloError):
        milo_pack.loads(b"not a zip file at all")


def test_unknown_format_version_is_refused():
    data = bytearray(milo_pack.dumps([1, 2]))
    i = data.index(b'"format_version": 1')
    data[i:i + 19] = b'"format_version": 9'
    with pytest.raises(ManifestError, match="format_version"):
        milo_pack.loads(bytes(data))


def test_pipeline_paths_in_errors():
    class NotSaveable:
        pass

    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])
    pipe.steps[1][1].some_attr_ = NotSaveable()
    with pytest.raises(UnsupportedTypeError) as info:
        milo_pack.dumps(pipe)
    assert "steps[1][1].some_attr_" in str(info.value)


def test_user_estimator_needs_trust():
    loaded_tag = "tests.test_format.MyEstimator"
    data = milo_pack.dumps(MyEstimator(alpha=2.0).fit([[1.0]], [1]))
    assert milo_pack.untrusted_types(data) == [(loaded_tag, "<root>")]
    with pytest.raises(milo_pack.errors.UntrustedTypeError, match=loaded_tag):
        milo_pack.loads(data)
    loaded = milo_pack.loads(data, trusted=[loaded_tag])
    assert isinstance(loaded, MyEstimator) and loaded.alpha == 2.0 and loaded.fitted_ == 1


from sklearn.base import BaseEstimator  # noqa: E402


class MyEstimator(BaseEstimator):
    """A user's own estimator, refused unless trusted by name."""

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def fit(self, X, y):
        self.fitted_ = len(X)
        return self


def test_dumped_file_has_ordinary_permissions(tmp_path):
    target = tmp_path / "model.milo"
    milo_pack.dump([1, 2], target)
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
    target.chmod(0o640)
    milo_pack.dump([3], target)  # replacing keeps the file's mode
    assert target.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("chain", [
    [], ["relidx", "narrow4"], ["relidx", "narrow1"], ["relidx"], ["delta", "narrow2"],
    ["narrow2", "shuffle"], ["wholefloat", "shuffle"], ["shuffle"], ["wholefloat"]])
def test_decode_chain_inverts_the_filters_into_its_destination(chain):
    from milo_pack.filters import Delta, Narrow, RelativeIndex, Shuffle, WholeFloat, decode_chain

    rng = np.random.default_rng(0)
    start = 1000
    if "wholefloat" in chain:
        arr = rng.integers(0, 60_000, 5000).astype(np.float64)
    elif "relidx" in chain:
        pos = np.arange(start, start + 5000)
        arr = np.where(rng.random(5000) < 0.5, -1, pos + rng.integers(1, 100, 5000))
        if "narrow1" in chain:
            arr = np.where(arr == -1, -1, pos + 1)
    elif "delta" in chain:
        arr = np.cumsum(rng.integers(0, 5, 5000))
    else:
        arr = rng.integers(-300, 300, 5000) if "narrow2" in chain else rng.normal(size=5000)
    make = {"relidx": lambda: RelativeIndex(-1), "delta": Delta,
            "narrow1": lambda: Narrow("|i1", arr.dtype),
            "narrow2": lambda: Narrow("<i2", arr.dtype),
            "narrow4": lambda: Narrow("<i4", arr.dtype),
            "wholefloat": lambda: WholeFloat("<u2", arr.dtype),
            "shuffle": lambda: Shuffle(2 if {"narrow2", "wholefloat"} & set(chain) else 8)}
    filters = [make[name]() for name in chain]
    encoded = arr
    for f in filters:
        encoded = np.ascontiguousarray(f.encode(encoded, start))
    out = np.full_like(arr, 7)
    assert decode_chain(filters, encoded, start, out) is out
    np.testing.assert_array_equal(out, arr)

