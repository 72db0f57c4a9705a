"""Differential check of the promise: a mutant of a checked attribute is refused, or harmless.

For an honest fitted model, every attribute that the declared invariants read
(:data:`milo_pack.handlers.invariants.SPECS`: the spec's attributes and the ``reads`` of its rules,
on the model and on its members and sub-objects) is mutated, one mutant at a time, by operators
chosen from its declared kind: removed; retyped (numpy scalar, float, string, bool, list, other
dtype); each array axis shrunk and grown by one; out-of-range values (negative, one past the
bound, huge).  Each mutant is written with :func:`milo_pack.dumps` (the writer writes whatever
state it is given, so the file is canonical and only the attribute is wrong) and then, in a
subprocess, loaded eagerly (and lazily for ensembles) and used with every method of the family's
predict family.  The only acceptable outcomes are

- ``REFUSED``: a :class:`~milo_pack.errors.MiloError` at load, or
- ``SAME``: every method returns exactly what the honest model returns, or raises an ordinary
  Python exception (``PYERR``), as the honest model's own input checks would.

Anything else fails the test: ``DIFFERENT`` (the model loads and answers otherwise: a check
is missing), ``CRASHED`` (a signal: native code read or wrote out of bounds), ``HANG``,
``MEMORY`` (``MemoryError``, or the process grew by more than :data:`MAX_GROWTH`), ``LOADERR``
(load raised something other than a ``MiloError``).

Mutants are batched: one subprocess runs a whole family; after a crash or a hang the parent
restarts it with the remaining mutants, so one bad mutant never hides another.

Adding a family (for instance XGBoost or LightGBM boosters) takes a few lines in
``tests/attacks/families.py``::

    Family("xgb_clf", make=lambda: XGBClassifier(n_estimators=3).fit(X, y), X=lambda: X[:40],
           methods=("predict", "predict_proba", "apply"),
           # where the checked attributes live and what they must be
           targets=lambda model: [Target((), "n_features_in_", Int(lo=1)),
                                  Target(("_Booster",), "num_class", Int(lo=0))])

``targets`` defaults to :func:`spec_targets` (every declared spec covering the model, its
``member_paths`` and its sub-estimators); a family whose checks are not declared as specs (the
booster handlers) lists its own :class:`Target` entries, whose kinds (from
:mod:`milo_pack.handlers.invariants.kinds`) pick the mutation operators.  Then
``test_mutants_are_refused_or_harmless[xgb_clf]`` runs its mutants, and adding its name to
``PREDICT_FAMILIES`` in ``test_fuzz.py`` fuzzes it through predict.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import queue
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

import milo_pack
from milo_pack.errors import MiloError
from milo_pack.handlers.invariants import kinds as K
from milo_pack.handlers.invariants import specs_for

MAX_GROWTH = 200 << 20  # bytes a process may grow by while loading and using one mutant
CASE_TIMEOUT = 60.0  # seconds for one mutant (load and every method)
FAILURES = ("DIFFERENT", "CRASHED", "HANG", "MEMORY", "LOADERR", "NOT RUN")

Step = str | int | tuple[int, ...]
Path_ = tuple[Step, ...]


@dataclass(frozen=True)
class Target:
    """One checked attribute: where its object is, its name, its declared kind, and whether its
    values are data (labels, weights: only kind and shape are checked, so values are kept)."""

    place: Path_
    name: str
    kind: K.Kind
    data: bool = False
    dims: tuple[tuple[str, int], ...] = ()  # the honest object's bound symbols


@dataclass
class Family:
    """An honest model, its test input, the methods to compare, where its checked state is."""

    name: str
    make: Callable[[], Any]
    X: Callable[[], Any]
    methods: tuple[str, ...]
    targets: Callable[[Any], list[Target]] | None = None
    lazy: bool = False  # also load lazily (ensembles: members built on first use)
    member_paths: tuple[Path_, ...] = ()  # members whose own specs are mutated too


@dataclass
class Mutant:
    case: str
    data: bytes
    target: str = ""


# -- where the checked attributes are ----------------------------------------------------------


def get_at(obj: Any, path: Path_) -> Any:
    for step in path:
        obj = getattr(obj, step) if isinstance(step, str) else obj[step]
    return obj


def format_steps(path: Path_) -> str:
    text = ""
    for step in path:
        text += f".{step}" if isinstance(step, str) else f"[{step}]"
    return text.lstrip(".")


def spec_targets(model: Any, member_paths: tuple[Path_, ...] = ()) -> list[Target]:
    """``(path, attribute, kind)`` for every attribute a declared spec reads, on the model,
    on the given members and on sub-estimators that specs cover (a bin mapper...)."""
    found: list[Target] = []
    places: list[Path_] = [(), *member_paths]
    for name, value in vars(model).items():
        if specs_for(type(value)) and not isinstance(value, list):
            places.append((name,))
    seen: set[tuple[Path_, str]] = set()
    for place in places:
        obj = get_at(model, place)
        for spec in specs_for(type(obj)):
            env = K.Env(obj, vars(obj), "")
            try:
                spec.check(env)  # the honest object passes; its symbols bound the mutations
            except MiloError:
                continue  # an unfitted template (a forest's estimator_): no checked state
            dims = tuple(sorted(env.dims.items()))
            for attr in spec.attrs:
                if (place, attr.name) not in seen:
                    seen.add((place, attr.name))
                    found.append(Target(place, attr.name, attr.kind, attr.data, dims))
            for name in spec.reads:
                if (place, name) not in seen:
                    seen.add((place, name))
                    found.append(Target(place, name, K.Anything(), data=True))
    return found


# -- mutation operators, chosen by declared kind ------------------------------------------------

_REMOVE = object()


def _int_values(kind: K.Int, value: int, data: bool) -> Iterator[tuple[str, Any]]:
    yield "numpy_int", np.int64(value)
    yield "float", float(value)
    yield "string", str(value)
    yield "bool", True
    yield "none", None
    if not data:  # a count or an index: one more or less is inconsistent
        yield "plus_one", value + 1
        yield "minus_one", value - 1
    yield "negative", -1
    yield "zero", 0
    yield "huge", 2**40
    if isinstance(kind.hi, int):
        yield "above_bound", kind.hi + 1


def _array_values(value: np.ndarray, kind: K.Kind, data: bool,
                  dims: dict[str, int]) -> Iterator[tuple[str, Any]]:
    kinds = getattr(kind, "kinds", "biufcUSOM" if data else "")
    yield "list", value.tolist()
    yield "scalar", (value.reshape(-1)[0] if value.size else np.float64(0.0))
    # Other dtypes: those the declaration refuses (a data array accepts any of its kinds).
    for name, dtype in (("as_float", np.float64), ("as_int", np.int64), ("as_str", str),
                        ("as_bool", bool)):
        if np.dtype(dtype).kind != value.dtype.kind and np.dtype(dtype).kind not in kinds:
            try:
                yield name, value.astype(dtype)
            except (TypeError, ValueError):
                pass
    if value.ndim:
        yield "flat", value.reshape(-1)
        yield "extra_axis", value[np.newaxis]
    if value.ndim >= 2:
        yield "fortran", np.asfortranarray(value)
    for axis in range(value.ndim):
        if value.shape[axis] > 0:
            yield f"shrink_axis{axis}", np.take(value, range(value.shape[axis] - 1), axis=axis)
            grown = np.concatenate([value, np.take(value, [-1], axis=axis)], axis=axis)
            yield f"grow_axis{axis}", grown
        else:
            yield f"grow_axis{axis}", np.zeros(
                tuple(1 if a == axis else n for a, n in enumerate(value.shape)), value.dtype)
    if value.dtype.kind in "iu" and value.size and not data:
        bounds = getattr(kind, "values", None)
        if bounds is not None:  # an index array: exactly one past each end of its range
            lo, hi = (dims.get(b, b) if isinstance(b, str) else b for b in bounds)
            extremes = [("below", lo - 1)] if lo is not None else []
            extremes += [("above", hi)] if hi is not None else []
        else:  # a count: one more than the largest changes the totals
            extremes = [("past_max", int(value.max()) + 1)]
        for name, number in (("negative", -1), *extremes, ("int32_max", 2**31 - 1),
                             ("huge", 2**62)):
            info = np.iinfo(value.dtype)
            if info.min <= number <= info.max:
                bad = value.copy()
                bad.reshape(-1)[-1] = number
                yield f"element_{name}", bad


def _sequence_values(value: list | tuple) -> Iterator[tuple[str, Any]]:
    yield "tuple" if type(value) is list else "list", (tuple(value) if type(value) is list
                                                       else list(value))
    yield "empty", type(value)()
    if value:
        yield "shrink", type(value)(value[:-1])
        yield "grow", type(value)([*value, value[-1]])
        yield "item_none", type(value)([None, *value[1:]])
        yield "item_int", type(value)([7, *value[1:]])


def concrete(kind: K.Kind, value: Any) -> K.Kind:
    """The option of a :class:`~K.OneOf` that the honest value matches (else ``kind``)."""
    if isinstance(kind, K.OneOf):
        for option in kind.options:
            try:
                option.check(value, K.Env(None, {}, ""))
            except K.Reject:
                continue
            return concrete(option, value)
    return kind


def mutations(kind: K.Kind, value: Any, data: bool = False,
              dims: dict[str, int] | None = None) -> Iterator[tuple[str, Any]]:
    """``(operator, new value)`` pairs for one attribute (``_REMOVE`` deletes it).

    The operators follow the declared kind: a retype is only tried when the declaration
    refuses the new type; values are changed only where the declaration gives them a range
    (ints, index arrays), never for data (labels, weights) whose every value is valid.
    """
    yield "remove", _REMOVE
    if isinstance(kind, K.Absent):
        yield "set_true", True
        return
    dims = dims or {}
    kind = concrete(kind, value)
    if type(value) is bool or isinstance(value, np.bool_):
        yield "numpy_bool", np.bool_(value)
        yield "int", int(value)
        yield "string", str(value)
        yield "none", None
    elif isinstance(value, (int, np.integer)):
        yield from _int_values(kind if isinstance(kind, K.Int) else K.Int(), int(value), data)
    elif isinstance(value, (float, np.floating)):
        yield "numpy_float", np.float64(value)
        yield "string", "x"
        yield "bool", True
        yield "none", None
        yield "nan", float("nan")
        yield "inf", float("inf")
    elif isinstance(value, str):
        yield "unknown", "not-an-option"
        yield "int", 7
        yield "none", None
    elif type(value) is np.ndarray:
        if value.dtype == object:
            yield "list", list(value.reshape(-1))
            for axis in range(value.ndim):
                if value.shape[axis] > 1:
                    yield f"shrink_axis{axis}", np.take(value, range(value.shape[axis] - 1),
                                                        axis=axis)
                grown = np.concatenate([value, np.take(value, [-1], axis=axis)], axis=axis)
                yield f"grow_axis{axis}", grown
        else:
            yield from _array_values(value, kind, data, dims)
        yield "none", None
    elif sp.issparse(value):
        dense = value.toarray()
        yield "dense", dense
        yield "csc", value.tocsc()
        for axis in range(2):
            grown = np.concatenate([dense, np.take(dense, [-1], axis=axis)], axis=axis)
            yield f"grow_axis{axis}", type(value)(grown)
            if dense.shape[axis]:
                shrunk = np.take(dense, range(dense.shape[axis] - 1), axis=axis)
                yield f"shrink_axis{axis}", type(value)(shrunk)
    elif isinstance(value, (list, tuple)):
        yield from _sequence_values(value)
        yield "none", None
        item = getattr(kind, "item", None)
        if value and type(value[0]) is np.ndarray and isinstance(item, K.Array):
            for operator, new in _array_values(value[0], item, data, dims):
                yield f"item0_{operator}", type(value)([new, *value[1:]])
    elif isinstance(value, dict):
        yield "list", list(value.items())
        yield "none", None
        if value and not data:
            key = next(iter(value))
            yield "value_negative", {**value, key: -1}
            yield "value_past_end", {**value, key: len(value)}
            if len(value) > 1:
                second = list(value)[1]
                yield "value_duplicate", {**value, key: value[second]}
        for forbidden in getattr(kind, "forbidden", ()):
            yield f"with_{forbidden}", {**value, forbidden: np.zeros(1)}
    else:
        yield "none", None
        yield "int", 7
        yield "string", "x"


def make_mutants(family: Family, model: Any) -> list[Mutant]:
    """Every mutant of the family's model, written to bytes (unwritable ones are left out)."""
    targets = (family.targets(model) if family.targets is not None
               else spec_targets(model, family.member_paths))
    mutants = [Mutant("honest", milo_pack.dumps(model))]
    for target in targets:
        place, name, kind = target.place, target.name, target.kind
        holder = get_at(model, place)
        if name not in vars(holder) and not isinstance(kind, K.Absent):
            continue
        value = vars(holder).get(name)
        where = ".".join(filter(None, (format_steps(place), name)))
        for operator, new in mutations(kind, value, target.data, dict(target.dims)):
            if new is _REMOVE and name not in vars(holder):
                continue
            mutant = copy.deepcopy(model)
            target = get_at(mutant, place)
            if new is _REMOVE:
                delattr(target, name)
            else:
                target.__dict__[name] = new
            try:
                data = milo_pack.dumps(mutant)
            except MiloError:
                continue  # the writer cannot express it (nor a file, then)
            mutants.append(Mutant(f"{where}:{operator}", data, where))
    return mutants


# -- running mutants in a subprocess -----------------------------------------------------------

_CHILD = textwrap.dedent('''
    import json, pickle, resource, sys, warnings
    import numpy as np, scipy.sparse as sp
    import milo_pack
    warnings.simplefilter("ignore")
    config = pickle.load(open(sys.argv[1], "rb"))
    X, methods, expected = config["X"], config["methods"], config["expected"]

    def same(a, b):
        if isinstance(a, (list, tuple)):
            return (type(b) is type(a) and len(a) == len(b)
                    and all(same(x, y) for x, y in zip(a, b)))
        if sp.issparse(a) or sp.issparse(b):
            return sp.issparse(a) and sp.issparse(b) and a.shape == b.shape and same(
                a.toarray(), b.toarray())
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype == object or b.dtype == object:
            return (a.dtype == b.dtype and a.shape == b.shape
                    and all(same(x, y) for x, y in zip(a.reshape(-1), b.reshape(-1))))
        return (a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))

    def call(model, name):
        value = getattr(model, name)(X)
        return list(value) if name.startswith("staged_") else value

    def use(model):
        for name in methods:
            try:
                got = call(model, name)
            except MemoryError:
                return "MEMORY " + name
            except Exception as exc:  # an ordinary Python error: harmless
                continue
            try:
                equal = expected[name][0] == "ok" and same(expected[name][1], got)
            except Exception:  # outputs that cannot even be compared differ
                equal = False
            if not equal:
                return "DIFFERENT " + name
        return "SAME"

    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    for line in sys.stdin:
        case, path, lazy = json.loads(line)
        print("START", case, flush=True)
        before = peak()
        try:
            with milo_pack.open(path) as handle:
                model = handle.load(lazy=lazy, cache_bytes=0)
                outcome = use(model)
        except milo_pack.MiloError as exc:
            outcome = "REFUSED " + type(exc).__name__
        except MemoryError:
            outcome = "MEMORY load"
        except Exception as exc:
            outcome = f"LOADERR {type(exc).__name__}: {str(exc)[:200]}"
        if peak() - before > config["max_growth"]:
            outcome = "MEMORY grew " + outcome
        print("END", json.dumps([case, outcome]), flush=True)
''')


def expected_outputs(model: Any, X: Any, methods: tuple[str, ...]) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for name in methods:
        try:
            value = getattr(model, name)(X)
            out[name] = ("ok", list(value) if name.startswith("staged_") else value)
        except Exception as exc:  # noqa: BLE001 - recorded: the mutant may raise too
            out[name] = ("err", type(exc).__name__)
    return out


def run_mutants(family: Family, mutants: list[Mutant], directory: Path,
                expected: dict[str, tuple], X: Any) -> dict[str, str]:
    """Run every mutant (eagerly, and lazily too for ensembles) in subprocesses; return
    ``{case: outcome}`` (a case is ``attribute:operator``, ``@lazy`` appended for lazy runs)."""
    config = directory / "config.pkl"
    with open(config, "wb") as f:
        pickle.dump({"X": X, "methods": family.methods, "expected": expected,
                     "max_growth": MAX_GROWTH}, f)
    lines = []
    for i, mutant in enumerate(mutants):
        path = directory / f"{i}.milo"
        path.write_bytes(mutant.data)
        lines.append((mutant.case, str(path), False))
        if family.lazy:
            lines.append((f"{mutant.case}@lazy", str(path), True))
    outcomes: dict[str, str] = {}
    pending = list(lines)
    while pending:
        outcomes.update(_run_batch(pending, config))
        pending = [line for line in pending if line[0] not in outcomes]
    return outcomes


def _run_batch(lines: list[tuple[str, str, bool]], config: Path) -> dict[str, str]:
    """Run lines until done or until the child dies or hangs; the culprit gets the blame."""
    env = {**os.environ, "PYTHONFAULTHANDLER": "1", "OMP_NUM_THREADS": "2"}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(config)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("".join(json.dumps(line) + "\n" for line in lines))
    proc.stdin.close()
    stream: queue.Queue[str | None] = queue.Queue()

    def reader() -> None:
        assert proc.stdout is not None
        for text in proc.stdout:
            stream.put(text)
        stream.put(None)

    threading.Thread(target=reader, daemon=True).start()
    outcomes: dict[str, str] = {}
    running = None
    while True:
        try:
            text = stream.get(timeout=CASE_TIMEOUT)
        except queue.Empty:
            proc.kill()
            proc.wait()
            if running is not None:
                outcomes[running] = "HANG"
            return outcomes
        if text is None:
            break
        kind, _, rest = text.rstrip("\n").partition(" ")
        if kind == "START":
            running = rest
        elif kind == "END":
            case, outcome = json.loads(rest)
            outcomes[case] = outcome
            running = None
    code = proc.wait()
    stderr = proc.stderr.read() if proc.stderr is not None else ""
    if running is not None:
        outcomes[running] = f"CRASHED (exit {code}): {stderr[-800:]}"
    elif code != 0 and not outcomes:
        raise RuntimeError(f"the mutant runner failed (exit {code}): {stderr[-2000:]}")
    return outcomes


def failures(outcomes: dict[str, str]) -> dict[str, str]:
    return {case: outcome for case, outcome in outcomes.items()
            if outcome.startswith(FAILURES) or "MEMORY" in outcome}
