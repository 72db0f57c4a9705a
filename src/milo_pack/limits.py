"""Resource budgets for reading files.

A file may come from a stranger, so every size it declares is checked against a budget *before*
anything is allocated, and actual byte counts are checked again while reading.  The defaults are
generous for real models (a 300-tree forest uses a small fraction of each) and every one can be
raised per call: ``milo_pack.load(path, limits=Limits(max_total_bytes=64 << 30))``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Limits", "DEFAULT_LIMITS", "BYTE_BUDGETS", "capped", "parse_size"]

_MiB = 1 << 20
_GiB = 1 << 30

_DEFAULTS: dict[str, int] = {
    "max_manifest_bytes": 256 * _MiB,
    "max_depth": 200,
    "max_nodes": 20_000_000,
    "max_string_length": 16 * _MiB,
    "max_members": 1_000_000,
    "max_sections": 1_000_000,
    "max_ndim": 32,
    "max_dim": 1 << 40,
    "max_array_bytes": 64 * _GiB,
    "max_section_bytes": 64 * _GiB,
    "max_total_bytes": 256 * _GiB,
    "max_chunk_bytes": 64 * _MiB,
    "max_window_bytes": 128 * _MiB,
    "max_objects": 10_000_000,
    "max_tree_nodes": 1 << 31,
    "max_msgpack_items": 100_000_000,
}


class Limits:
    """Budgets a reader enforces; every field can be overridden per call.

    Parameters
    ----------
    max_manifest_bytes : int
        Size of ``manifest.json``.
    max_depth : int
        Nesting depth of the manifest's JSON.
    max_nodes : int
        JSON values (objects, arrays, scalars) in the manifest.
    max_string_length : int
        Characters in one JSON string.
    max_members : int
        Zip members in the archive.
    max_sections : int
        Sections listed by the manifest.
    max_ndim : int
        Dimensions of one array.
    max_dim : int
        Length of one array dimension.
    max_array_bytes : int
        Decoded bytes of one array.
    max_section_bytes : int
        Decoded bytes of one section.
    max_total_bytes : int
        Decoded bytes of all sections together.
    max_chunk_bytes : int
        Decoded bytes of one chunk (what one zstd frame may expand to).
    max_window_bytes : int
        zstd window size a frame may ask for.
    max_objects : int
        Objects (tagged nodes) the loader builds.
    max_tree_nodes : int
        Nodes in one decision tree.
    max_msgpack_items : int
        Items in one msgpack payload.
    """

    # A plain immutable class rather than a frozen dataclass: defining a dataclass of 16 fields
    # costs ~1 ms at import, paid by every process before its first load.
    __slots__ = tuple(_DEFAULTS)

    max_manifest_bytes: int
    max_depth: int
    max_nodes: int
    max_string_length: int
    max_members: int
    max_sections: int
    max_ndim: int
    max_dim: int
    max_array_bytes: int
    max_section_bytes: int
    max_total_bytes: int
    max_chunk_bytes: int
    max_window_bytes: int
    max_objects: int
    max_tree_nodes: int
    max_msgpack_items: int

    def __init__(self, *args: int, **kwargs: int) -> None:
        if len(args) > len(_DEFAULTS):
            raise TypeError(f"Limits takes at most {len(_DEFAULTS)} positional arguments")
        values = dict(_DEFAULTS)
        for name, value in zip(_DEFAULTS, args, strict=False):
            values[name] = value
        for name, value in kwargs.items():
            if name not in _DEFAULTS:
                raise TypeError(f"Limits has no budget {name!r}")
            if name in list(_DEFAULTS)[:len(args)]:
                raise TypeError(f"Limits got two values for {name!r}")
            values[name] = value
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Limits is immutable; use .replace(...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Limits is immutable")

    def _values(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in _DEFAULTS)

    def __eq__(self, other: object) -> bool:
        if type(other) is not Limits:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in _DEFAULTS)
        return f"Limits({fields})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Limits, self._values())

    def replace(self, **changes: int) -> Limits:
        """Return a copy with some budgets changed."""
        values = {name: getattr(self, name) for name in _DEFAULTS}
        for name in changes:
            if name not in _DEFAULTS:
                raise TypeError(f"Limits has no budget {name!r}")
        values.update(changes)
        return Limits(**values)


DEFAULT_LIMITS = Limits()

# -- budgets from the command line ---------------------------------------------------------------

BYTE_BUDGETS = ("max_manifest_bytes", "max_array_bytes", "max_section_bytes",
                "max_total_bytes", "max_chunk_bytes", "max_window_bytes")
"""The budgets counted in bytes: what a reader may decode from the file."""


def capped(limits: Limits, max_memory: int) -> Limits:
    """A copy of ``limits`` in which no byte budget exceeds ``max_memory``.

    With every byte budget (manifest, one array, one section, all arrays together, one chunk,
    the zstd window) at most ``max_memory``, opening, loading, verifying or comparing a file
    decodes at most that many bytes of it (the model's Python objects come on top).
    ``milo-pack ... --max-memory SIZE`` uses it.
    """
    if type(max_memory) is not int or max_memory < 1:
        raise ValueError("max_memory must be a positive int")
    return limits.replace(**{name: min(getattr(limits, name), max_memory)
                             for name in BYTE_BUDGETS})


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20,
          "gib": 1 << 30, "tib": 1 << 40}


def parse_size(text: str) -> int:
    """``"512M"``, ``"2GiB"``, ``"1e6"``, ``"4096"`` -> bytes (SI units; ``KiB``... binary).

    Raises
    ------
    ValueError
        Not a size.
    """
    cleaned = text.strip().lower().replace("_", "")
    number = cleaned.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = cleaned[len(number):].strip()
    if unit not in _UNITS or not number:
        raise ValueError(f"not a size: {text!r} (e.g. 4096, 512M, 2GiB)")
    try:
        value = float(number) if any(c in number for c in ".e") else int(number)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (e.g. 4096, 512M, 2GiB)") from None
    if value != value or value < 0:
        raise ValueError(f"not a size: {text!r}")
    return int(value * _UNITS[unit])
