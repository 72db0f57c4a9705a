"""Resource budgets for reading files.

A file may come from a stranger, so every size it declares is checked against a budget *before*
anything is allocated, and actual byte counts are checked again while reading.  The defaults are
generous for real models (a 300-tree forest uses a small fraction of each) and every one can be
raised per call: ``milo_pack.load(path, limits=Limits(max_total_bytes=64 << 30))``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["Limits", "DEFAULT_LIMITS", "BYTE_BUDGETS", "capped", "parse_size"]

_MiB = 1 << 20
_GiB = 1 << 30


@dataclass(frozen=True)
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

    max_manifest_bytes: int = 256 * _MiB
    max_depth: int = 200
    max_nodes: int = 20_000_000
    max_string_length: int = 16 * _MiB
    max_members: int = 1_000_000
    max_sections: int = 1_000_000
    max_ndim: int = 32
    max_dim: int = 1 << 40
    max_array_bytes: int = 64 * _GiB
    max_section_bytes: int = 64 * _GiB
    max_total_bytes: int = 256 * _GiB
    max_chunk_bytes: int = 64 * _MiB
    max_window_bytes: int = 128 * _MiB
    max_objects: int = 10_000_000
    max_tree_nodes: int = 1 << 31
    max_msgpack_items: int = 100_000_000

    def replace(self, **changes: int) -> Limits:
        """Return a copy with some budgets changed."""
        return dataclasses.replace(self, **changes)


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
