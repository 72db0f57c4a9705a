"""Model outputs used to check that a round trip changed nothing.

The parent process computes reference outputs on a fixed sample ``X`` and stores them with
:func:`save_outputs` (``.npz``, no pickle); each measuring subprocess recomputes them on the loaded
model and compares them exactly with :func:`compare_outputs`.

Like ``methods.py`` this module imports only numpy and uses no relative imports: the measuring
subprocess loads it by file path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "OUTPUT_METHODS",
    "single_threaded",
    "compute_outputs",
    "save_outputs",
    "load_outputs",
    "compare_outputs",
]

OUTPUT_METHODS = ("predict", "predict_proba", "decision_function", "transform")
"""Estimator methods whose outputs are compared, when the model has them."""


def _storable(value: Any) -> np.ndarray:
    """Return ``value`` as an array that ``np.save`` can write without pickle."""
    arr = np.asarray(value)
    if arr.dtype.hasobject:
        # Labels such as Python strings: compare their text.
        arr = np.asarray([str(v) for v in arr.ravel()]).reshape(arr.shape)
    return arr


@contextmanager
def single_threaded(model: Any) -> Iterator[None]:
    """Predict single-threaded: every ``n_jobs`` set to 1, OpenMP and BLAS to one thread.

    The ``n_jobs`` parameters (nested ones too) are restored on exit.

    Forests sum their trees' outputs from several threads in whatever order the threads finish,
    so with ``n_jobs > 1`` two predictions of the *same* object can differ in the last bits.
    Predicting single-threaded makes the comparison exact.
    """
    changed: dict[str, Any] = {}
    get_params = getattr(model, "get_params", None)
    if callable(get_params):
        try:
            params = get_params(deep=True)
        except Exception:  # noqa: BLE001 - an estimator with an unusual get_params
            params = {}
        changed = {
            key: value
            for key, value in params.items()
            if (key == "n_jobs" or key.endswith("__n_jobs")) and value not in (None, 1)
        }
    if changed:
        model.set_params(**dict.fromkeys(changed, 1))
    try:
        with _native_threads_limited():
            yield
    finally:
        if changed:
            model.set_params(**changed)


@contextmanager
def _native_threads_limited() -> Iterator[None]:
    """One OpenMP/BLAS thread (threadpoolctl, a scikit-learn dependency) while predicting.

    OpenMP barriers spin: with two threads on a busy two-core machine, HistGradientBoosting's
    hundreds of small parallel regions took seconds instead of milliseconds.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1):
        yield


def compute_outputs(
    model: Any, X: np.ndarray, names: tuple[str, ...] | list[str] = OUTPUT_METHODS
) -> dict[str, np.ndarray]:
    """Call each of ``names`` the model has on ``X``.

    Parameters
    ----------
    model : object
        A fitted estimator.
    X : ndarray
        The fixed sample.
    names : sequence of str
        Methods to try; the ones the model lacks or that raise are left out. They are called
        with every ``n_jobs`` set to 1 (see :func:`single_threaded`).

    Returns
    -------
    dict of str to ndarray
        The outputs by method name.
    """
    outputs: dict[str, np.ndarray] = {}
    with single_threaded(model):
        for name in names:
            if not hasattr(model, name):
                continue
            try:
                outputs[name] = _storable(getattr(model, name)(X))
            except Exception:  # noqa: BLE001 - a method the model only pretends to have
                continue
    return outputs


def save_outputs(outputs: dict[str, np.ndarray], path: Path) -> None:
    """Write outputs to an ``.npz`` file (no pickled objects)."""
    # Object arrays are the only ones .npz would pickle; refuse them here.  (numpy < 2.1's
    # savez has no allow_pickle argument: it would store the keyword as an array.)
    for name, array in outputs.items():
        if array.dtype.hasobject:
            raise TypeError(f"output {name!r} is an object array; it would be pickled")
    savez: Any = np.savez  # numpy >= 2.1's stubs read **outputs as its allow_pickle flag
    with open(path, "wb") as f:
        savez(f, **outputs)


def load_outputs(path: Path) -> dict[str, np.ndarray]:
    """Read outputs written by :func:`save_outputs`."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Exact equality, NaN equal to NaN in float arrays."""
    if a.dtype.kind in "fc" and b.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def compare_outputs(
    model: Any, X: np.ndarray, reference: dict[str, np.ndarray]
) -> tuple[bool, list[str]]:
    """Recompute the reference outputs on ``model`` and compare them exactly.

    Returns
    -------
    identical : bool
        ``True`` when every output is exactly equal (shape, dtype and values).
    mismatches : list of str
        Names of the outputs that differ or could not be computed.
    """
    got = compute_outputs(model, X, tuple(reference))
    mismatches = [
        name
        for name, expected in reference.items()
        if name not in got
        or got[name].shape != expected.shape
        or got[name].dtype != expected.dtype
        or not _equal(got[name], expected)
    ]
    return not mismatches, mismatches
