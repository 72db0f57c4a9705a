"""Describe the machine and the library versions a benchmark ran with."""

from __future__ import annotations

import os
import platform
import sys
import textwrap
from importlib import metadata
from pathlib import Path

__all__ = ["machine_info", "format_machine"]

_DISTRIBUTIONS = (
    "milo_pack",
    "numpy",
    "scipy",
    "scikit-learn",
    "joblib",
    "skops",
    "xgboost",
    "lightgbm",
    "zstandard",
)


def _cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo``, else what :mod:`platform` knows."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def _ram_bytes() -> int | None:
    """Total memory from ``/proc/meminfo`` (or ``sysconf``), ``None`` when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _usable_cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


# The same import package from another distribution (XGBoost's CPU-only build).
_ALIASES = {"xgboost": ("xgboost-cpu",)}


def _version(dist: str) -> str | None:
    for name in (dist, *_ALIASES.get(dist, ())):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    if dist == "milo_pack":  # running from a source checkout that is not installed
        try:
            import milo_pack
        except ImportError:
            return None
        return f"{getattr(milo_pack, '__version__', '?')} (not installed)"
    return None


def machine_info() -> dict[str, object]:
    """Return CPU, cores, RAM, OS, Python and library versions.

    Returns
    -------
    dict
        ``cpu``, ``cores`` (logical), ``usable_cores`` (affinity), ``ram_bytes``, ``os``,
        ``python`` and ``versions`` (distribution name to version, ``None`` if not installed).
    """
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "ram_bytes": _ram_bytes(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "versions": {dist: _version(dist) for dist in _DISTRIBUTIONS},
    }


def format_machine(info: dict[str, object], width: int | None = 100) -> list[str]:
    """Human-readable lines describing ``info`` (as returned by :func:`machine_info`), the
    versions wrapped at ``width`` characters (None: one line, as a Markdown list item needs)."""
    ram = info.get("ram_bytes")
    ram_text = f"{ram / 2**30:.1f} GiB" if isinstance(ram, int) else "unknown"
    versions = info.get("versions") or {}
    assert isinstance(versions, dict)
    installed = ", ".join(f"{k} {v}" for k, v in versions.items() if v is not None)
    missing = ", ".join(k for k, v in versions.items() if v is None)
    lines = [
        f"CPU:      {info['cpu']}",
        f"Cores:    {info['cores']} logical, {info['usable_cores']} usable",
        f"RAM:      {ram_text}",
        f"OS:       {info['os']}",
        f"Python:   {info['python']}",
        *(textwrap.wrap(f"Versions: {installed}", width=width, subsequent_indent=" " * 10)
          if width is not None else [f"Versions: {installed}"]),
    ]
    if missing:
        lines.append(f"Missing:  {missing}")
    return lines
