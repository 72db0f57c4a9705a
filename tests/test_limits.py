"""Every entry point honours the same budgets (SECURITY.md rule 14), the CLI takes them.

Two files: a small one whose array nodes all point at one compressible section (each reader
would decode the section once per node: refused by default, the writer never shares section
data), and an honest 8 MB array, refused by each entry point once the budget is lowered.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import milo_pack
from milo_pack.cli import main
from milo_pack.diff import diff_files
from milo_pack.errors import ArrayError, LimitError, MiloError
from milo_pack.limits import Limits, capped, parse_size
from milo_pack.verify import verify_file

from .attacks.craft import split

SMALL = Limits(max_total_bytes=1 << 20)


def _aliasing(nodes: int, length: int = 1 << 17) -> bytes:
    parts = split(milo_pack.dumps({"a": np.zeros(length)}))
    node = parts.manifest["root"]["a"]
    parts.manifest["root"] = {"a": [dict(node) for _ in range(nodes)]}
    return parts.build()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    alias, big = root / "alias.milo", root / "big.milo"
    alias.write_bytes(_aliasing(20))
    milo_pack.dump({"a": np.arange(1 << 20, dtype=np.float64)}, big)
    assert len(alias.read_bytes()) < 20_000
    return {"alias": alias, "big": big}


ENTRY_POINTS = ["diff", "get", "inspect", "lazy load", "load", "loads", "read_array",
                "summary", "untrusted_types"]


def _api_entry_points(path, limits, array="a"):
    """Each public way of reading a file, given the limits; each returns when it succeeds."""
    def lazy():
        with milo_pack.open(path, limits=limits) as f:
            f.load(lazy=True)

    def get():
        with milo_pack.open(path, limits=limits) as f:
            f.get(array)

    def read_array():
        with milo_pack.open(path, limits=limits) as f:
            f.read_array(array, (0, 10))

    def summary():
        with milo_pack.open(path, limits=limits) as f:
            f.summary()

    return {
        "load": lambda: milo_pack.load(path, limits=limits),
        "loads": lambda: milo_pack.loads(path.read_bytes(), limits=limits),
        "lazy load": lazy,
        "get": get,
        "read_array": read_array,
        "summary": summary,
        "inspect": lambda: milo_pack.inspect(path, limits=limits),
        "untrusted_types": lambda: milo_pack.untrusted_types(path, limits=limits),
        "diff": lambda: diff_files(path, path, limits=limits),
    }


def test_entry_points_are_all_listed():
    assert sorted(_api_entry_points("x", None)) == ENTRY_POINTS


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_overlapping_array_data_is_refused_by_default(files, entry):
    with pytest.raises(ArrayError, match="overlaps"):
        _api_entry_points(files["alias"], None, "a[0]")[entry]()


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_lowered_budget_is_honoured(files, entry):
    calls = _api_entry_points(files["big"], SMALL)
    with pytest.raises(LimitError):
        calls[entry]()
    _api_entry_points(files["big"], None)[entry]()  # within the defaults: fine


def test_verify_refuses_before_decoding(files):
    report = verify_file(files["alias"])
    graph = next(stage for stage in report.stages if stage.name == "graph")
    assert not report.ok and "overlaps" in " ".join(graph.errors)
    assert [s.status for s in report.stages][-1] == "skip"
    assert not verify_file(files["big"], limits=SMALL).ok
    assert verify_file(files["big"]).ok


@pytest.mark.parametrize("command", ["inspect", "verify", "diff"])
def test_cli_refuses_overlapping_data_by_default(files, command, capsys):
    path = str(files["alias"])
    args = [command, path, path] if command == "diff" else [command, path]
    assert main(args) in (1, 2)
    out, err = capsys.readouterr()
    assert "overlaps" in out + err


@pytest.mark.parametrize("option", [["--max-memory", "1M"], ["--limit", "max_total_bytes=1MiB"]])
@pytest.mark.parametrize("command", ["inspect", "verify", "diff"])
def test_cli_takes_budgets(files, command, option, capsys):
    path = str(files["big"])
    args = [command, path, path] if command == "diff" else [command, path]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, *option]) in (1, 2)
    out, err = capsys.readouterr()
    assert "max_total_bytes" in out + err or "LimitError" in out + err or "exceeds" in out + err


def test_cli_rejects_bad_budget_options(files, capsys):
    path = str(files["big"])
    assert main(["verify", path, "--limit", "no_such_budget=3"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
    assert main(["verify", path, "--max-memory", "lots"]) == 2
    assert "not a size" in capsys.readouterr().err


def _verify_peak_kb(path) -> tuple[int, str]:
    """``milo-pack verify path`` in a fresh process: its exit status and peak RSS."""
    code = ("import resource, sys\n"
            "from milo_pack.cli import main\n"
            "status = main(['verify', sys.argv[1]])\n"
            "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
            "sys.exit(status)\n")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                            text=True, timeout=120)
    return int(result.stdout.rpartition("PEAK ")[2]), result.stdout


def test_cli_verify_of_a_small_hostile_file_stays_small(tmp_path):
    """The file of the report: hundreds of nodes over one 8 MiB zero section reached 1.8 GiB
    in ``milo-pack verify``; it is refused before anything is decoded more than once."""
    path = tmp_path / "alias.milo"
    path.write_bytes(_aliasing(300, 1 << 20))
    assert path.stat().st_size < 100_000
    honest = tmp_path / "honest.milo"
    milo_pack.dump({"a": np.zeros(1 << 20)}, honest)  # the same section, one node
    reference, _ = _verify_peak_kb(honest)
    peak, out = _verify_peak_kb(path)
    assert "FAIL graph" in out and "overlaps" in out, out
    # The 300 aliased nodes would have been 2.4 GB; allow 100 MB of noise over one node.
    assert peak < reference + 100_000, f"verify peaked at {peak} kB, one node at {reference}"


def test_read_array_rows_out_of_range_is_a_typed_error(files):
    with milo_pack.open(files["big"]) as f:
        with pytest.raises(ArrayError, match="out of range"):
            f.read_array("a", 1 << 20)
        with pytest.raises(MiloError):
            f.read_array("a", -(1 << 21))
        assert f.read_array("a", -1) == (1 << 20) - 1


def test_limits_helpers():
    assert parse_size("512M") == 512_000_000 and parse_size("2GiB") == 2 << 30
    assert parse_size("4096") == 4096 and parse_size("1.5k") == 1500
    for bad in ("", "lots", "-3", "1xb"):
        with pytest.raises(ValueError):
            parse_size(bad)
    small = capped(Limits(), 1 << 20)
    assert small.max_total_bytes == small.max_array_bytes == 1 << 20
    assert small.max_objects == Limits().max_objects
    with pytest.raises(TypeError):
        Limits().replace(max_bogus=3)
