"""Checks of an internal object's decoded state, run *before* the state is set.

HistGradientBoosting's ``TreePredictor`` is not an estimator: its Cython ``predict`` follows node
indices and bitset rows without bounds checks, so its nodes are checked here, from the state
alone (the estimator's spec checks them again against the estimator's features).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ... import _arrays
from ...errors import InvariantError

__all__ = ["check_state", "STATE_CHECKS"]

# No bound from the predictor itself: its features are checked against the estimator.
_ANY_FEATURE = 1 << 62


def _is_array(value: object, ndim: int) -> bool:
    return isinstance(value, np.ndarray) and value.ndim == ndim


def _check_tree_predictor(state: dict[str, Any], path: str) -> None:
    from sklearn.ensemble._hist_gradient_boosting.common import (
        PREDICTOR_RECORD_DTYPE,
        X_BITSET_INNER_DTYPE,
    )

    where = path or "<root>"
    nodes: Any = state.get("nodes")
    if not _is_array(nodes, 1) or nodes.dtype != PREDICTOR_RECORD_DTYPE or not nodes.size:
        raise InvariantError("predictor nodes must be a 1-D PREDICTOR_RECORD_DTYPE array", where)
    code, at, reason = _arrays.check_hist_predictor(
        nodes["left"], nodes["right"], nodes["is_leaf"], nodes["feature_idx"], _ANY_FEATURE)
    if code:
        raise InvariantError(f"predictor node {at}: {reason}", where)
    rows = set()
    for name in ("binned_left_cat_bitsets", "raw_left_cat_bitsets"):
        bitsets: Any = state.get(name)
        if not (_is_array(bitsets, 2) and bitsets.dtype == X_BITSET_INNER_DTYPE
                and bitsets.shape[1] == 8 and bitsets.flags.c_contiguous):
            raise InvariantError(f"{name} must be a C-contiguous (n, 8) uint32 array", where)
        rows.add(bitsets.shape[0])
    categorical = (nodes["is_leaf"] == 0) & (nodes["is_categorical"] != 0)
    if categorical.any() and int(nodes["bitset_idx"][categorical].max()) >= min(rows):
        raise InvariantError("a categorical split points past the predictor's bitsets", where)
    if set(state) != {"nodes", "binned_left_cat_bitsets", "raw_left_cat_bitsets"}:
        raise InvariantError("a predictor holds exactly nodes and its two bitset arrays", where)


STATE_CHECKS: dict[str, Callable[[dict[str, Any], str], None]] = {
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor": _check_tree_predictor,
}


def check_state(cls: type, state: dict[str, Any], path: str) -> None:
    """Check the state of an internal object before it is set (see ``STATE_CHECKS``)."""
    check = STATE_CHECKS.get(f"{cls.__module__}.{cls.__qualname__}")
    if check is not None:
        check(state, path)
