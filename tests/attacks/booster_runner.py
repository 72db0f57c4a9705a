"""Load crafted booster files and predict with them, in subprocesses, many files per process.

``outcomes(cases)`` writes each file, runs one subprocess over all of them and returns, per case,
one of:

- ``REFUSED <error>``: the load raised a :class:`~milo_pack.errors.MiloError`;
- ``SAME``: every prediction of ``booster_cases.predictions`` equals the honest model's;
- ``RAISED <exceptions>``: the model loaded, and the predictions that differ from the honest
  model's raised ordinary Python exceptions;
- ``DIFFERENT <names>``: the model loaded and predicted, differently (a value the file may
  legitimately change, such as a threshold);
- ``CRASHED ...``: the process died (signal or abort) while on this case; the remaining cases
  run in a new process;
- ``GREW <MB>``: the process's peak memory rose by more than ``MAX_GROWTH_MB`` on this case.

"""

from __future__ import annotations

import os
import pathlib
import pickle
import subprocess
import sys
import tempfile
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[2]
MAX_GROWTH_MB = 200

_SCRIPT = textwrap.dedent("""
    import pickle, resource, sys
    from tests import booster_cases as cases
    import milo_pack
    # Keep a runaway allocation from taking the machine down (the growth check still reports
    # anything above MAX_GROWTH_MB that succeeded).
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, hard))
    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in sys.stdin:
        case, path, kind, expected = line.rstrip("\\n").split("\\t")
        print(case, "START", sep="\\t", flush=True)
        before = peak()
        try:
            model = milo_pack.load(path)
        except milo_pack.MiloError as exc:
            print(case, "REFUSED " + type(exc).__name__, sep="\\t", flush=True)
            continue
        got = cases.predictions(model, cases.data_for(kind))
        grown = peak() - before
        if grown > float(sys.argv[1]):
            print(case, f"GREW {grown:.0f}", sep="\\t", flush=True)
            continue
        with open(expected, "rb") as f:
            bad = cases.same_predictions(pickle.load(f), got)
        print(case, "DIFFERENT " + ",".join(bad) if bad else "SAME", sep="\\t", flush=True)
""")


def outcomes(cases: dict[str, tuple[bytes, str]], *, timeout: float = 600) -> dict[str, str]:
    """Outcome per case; ``cases`` maps a name to (file bytes, booster_cases case name)."""
    from tests import booster_cases

    results: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = pathlib.Path(tmp)
        lines = []
        expected: dict[str, pathlib.Path] = {}
        for i, (case, (data, kind)) in enumerate(cases.items()):
            path = directory / f"{i}.milo"
            path.write_bytes(data)
            if kind not in expected:
                expected[kind] = directory / f"expected-{len(expected)}.pkl"
                honest = booster_cases.predictions(booster_cases.model(kind),
                                                   booster_cases.data_for(kind))
                expected[kind].write_bytes(pickle.dumps(honest))
            lines.append(f"{case}\t{path}\t{kind}\t{expected[kind]}\n")
        while lines:
            proc = subprocess.run(
                [sys.executable, "-c", _SCRIPT, str(MAX_GROWTH_MB)], input="".join(lines),
                capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                env={**os.environ, "PYTHONFAULTHANDLER": "1"})
            started = None
            for out in proc.stdout.splitlines():
                case, _, outcome = out.partition("\t")
                if outcome == "START":
                    started = case
                else:
                    results[case] = outcome
                    started = None
            done = set(results)
            if started is not None:
                results[started] = (f"CRASHED exit {proc.returncode}: "
                                    f"{proc.stderr[-800:]}")
                done.add(started)
            elif proc.returncode != 0:
                raise RuntimeError(f"runner failed: {proc.stderr[-3000:]}")
            lines = [line for line in lines if line.split("\t", 1)[0] not in done]
    return results
