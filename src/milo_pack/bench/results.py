"""Records of what was measured (plain dataclasses, JSON-ready through :func:`as_dict`)."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["TargetCheck", "Result", "ModelRecord", "median", "ratio", "as_dict"]


@dataclass
class TargetCheck:
    """One project target evaluated on one result.

    Attributes
    ----------
    key : str
        Short name shown in the table (``size``, ``save``, ``load``, ``small-save``,
        ``small-load``).
    description : str
        The target in words, e.g. ``"file size <= 0.12x pickle (forests)"``.
    value : float or None
        The measured figure compared (a ratio or seconds); ``None`` when it could not be.
    limit : float
        The bound the figure must not exceed.
    passed : bool or None
        ``None`` when the figure was missing.
    to_pickle : float or None
        For the small-model targets (whose value is in seconds): the ratio to pickle's time.
    """

    key: str
    description: str
    value: float | None
    limit: float
    passed: bool | None
    to_pickle: float | None = None


@dataclass
class Result:
    """Figures for one model saved and loaded with one method.

    Times are medians over the repeats, in seconds; sizes and memory in bytes. Ratios are to
    pickle's figure for the same model in the same run.
    """

    model: str
    method: str
    status: str = "ok"  # "ok", "n/a" (method unavailable) or "error"
    error: str | None = None
    size_bytes: int | None = None
    save_s: float | None = None
    save_times: list[float] = field(default_factory=list)
    load_s: float | None = None
    load_times: list[float] = field(default_factory=list)
    warm_load_s: float | None = None
    # "forked" (from the fork server) or "new interpreter": how each load's process started.
    load_process: str | None = None
    peak_mem_bytes: int | None = None
    peak_mem_samples: list[int] = field(default_factory=list)
    predict_peak_mem_bytes: int | None = None
    inspect_s: float | None = None
    identical: bool | None = None
    outputs_checked: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    file_from: str | None = None
    ratios: dict[str, float | None] = field(default_factory=dict)
    targets: list[TargetCheck] = field(default_factory=list)


@dataclass
class ModelRecord:
    """What was benchmarked: the model and where it came from."""

    name: str
    family: str
    class_name: str
    params: dict[str, Any]
    pickle_bytes: int | None
    build_s: float
    cached: bool
    source: str
    sample_rows: int | None


def median(values: list[float] | list[int]) -> float | None:
    """Median of ``values``, ``None`` when empty."""
    return float(statistics.median(values)) if values else None


def ratio(value: float | None, reference: float | None) -> float | None:
    """``value / reference``, ``None`` when either is missing or the reference is zero."""
    if value is None or reference is None or reference <= 0:
        return None
    return value / reference


def as_dict(record: Any) -> dict[str, Any]:
    """A dataclass record as JSON-ready dict."""
    return asdict(record)
