"""Resource budgets for reading files.

A file may come from a stranger, so every size it declares is checked against a budget *before*
anything is allocated, and actual byte counts are checked again while reading.  The defaults are
generous for real models (a 300-tree forest uses a small fraction of each) and every one can be
raised per call: ``milo_pack.load(path, limits=Limits(max_total_bytes=64 << 30))``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["Limits", "DEFAULT_LIMITS"]

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
