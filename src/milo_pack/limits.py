"""Resource budgets for reading files.

A file may come from a stranger, so every size it declares is checked against a budget *before*
anything is allocated, and actual byte counts are checked again while reading.  The defaults are
generous for real models (a 300-tree forest uses a small fraction of each) and every one can be
raised per call: ``milo_pack.load(path, limits=Limits(max_total_bytes=64 << 30))``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Limits", "DEFAULT_LIMITS"]

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
