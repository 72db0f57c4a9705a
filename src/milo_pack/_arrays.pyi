"""Type stub of the Cython kernels in ``_arrays.pyx`` (every public function and constant).

The kernels validate their arguments themselves and raise :class:`~milo_pack.errors.ArrayError`
on anything unusable, so the types below are what a caller may pass, not what is checked.
``tests/test_packaging.py`` checks that this stub names everything the compiled module exports
and that the signatures agree.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .errors import ArrayError as ArrayError

# A readable buffer: a C-contiguous numpy array (read as raw bytes) or a bytes-like object.
_Buffer = npt.NDArray[Any] | bytes | bytearray | memoryview
# A writable buffer of the same kind.
_OutBuffer = npt.NDArray[Any] | bytearray | memoryview
_IntArray = npt.NDArray[np.integer[Any]]
_TreeCheck = tuple[int, int, str]

TREE_OK: Final[int]
TREE_EMPTY: Final[int]
TREE_CHILD_OUT_OF_RANGE: Final[int]
TREE_NODE_REACHED_TWICE: Final[int]
TREE_UNREACHABLE_NODE: Final[int]
TREE_FEATURE_OUT_OF_RANGE: Final[int]
TREE_LEAF_WITH_ONE_CHILD: Final[int]
TREE_LEAF_OUT_OF_RANGE: Final[int]
TREE_LEAF_REACHED_TWICE: Final[int]
TREE_LEAF_COUNT_MISMATCH: Final[int]
_TREE_REASONS: Final[dict[int, str]]
_ALL_INTS: Final[tuple[np.dtype[Any], ...]]
_REL_INTS: Final[tuple[np.dtype[Any], ...]]

# Byte shuffle (numcodecs/blosc layout).
def shuffle(src: _Buffer, out: _OutBuffer, elemsize: int) -> None: ...
def unshuffle(src: _Buffer, out: _OutBuffer, elemsize: int) -> None: ...

# First differences of integer arrays, wrapping on overflow.
def delta_encode(src: _IntArray, out: _IntArray) -> None: ...
def delta_decode(src: _IntArray, out: _IntArray) -> None: ...

# Child indices relative to their node's position.
def relidx_encode(src: _IntArray, out: _IntArray, start: int, sentinel: int) -> bool: ...
def relidx_decode(src: _IntArray, out: _IntArray, start: int, sentinel: int) -> None: ...

# One-pass (min, max) ignoring NaN: ints for integer input, floats for float input.
def minmax(src: npt.NDArray[Any]) -> tuple[int, int] | tuple[float, float]: ...

# Records <-> byte columns and typed columns.
def split_records(
    records: npt.NDArray[Any], offsets: Sequence[int], itemsizes: Sequence[int]
) -> list[npt.NDArray[np.uint8]]: ...
def merge_records(
    columns: Sequence[_Buffer],
    offsets: Sequence[int],
    itemsizes: Sequence[int],
    out: npt.NDArray[Any],
) -> None: ...
def split_fields(records: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]: ...
def merge_fields(columns: Mapping[str, npt.NDArray[Any]], out: npt.NDArray[Any]) -> None: ...

# String tables: UTF-8 blob + int64 offsets.
def string_table_encode(
    strings: Sequence[str] | npt.NDArray[Any],
) -> tuple[npt.NDArray[np.int64], bytes]: ...
def string_table_decode(offsets: npt.NDArray[np.int64], blob: _Buffer) -> list[str]: ...

# Validators: -1, or the first offending position.
def check_indices(idx: _IntArray, upper: int) -> int: ...
def check_monotone(a: _IntArray) -> int: ...

# Tree validators: (0, -1, "") or (TREE_* code, node, reason).
def check_binary_tree(
    left: _IntArray, right: _IntArray, feature: _IntArray, n_features: int, leaf: int = -1
) -> _TreeCheck: ...
def check_leaf_coded_tree(
    left: _IntArray, right: _IntArray, feature: _IntArray, n_features: int, n_leaves: int
) -> _TreeCheck: ...
def check_hist_predictor(
    nodes_left: _IntArray,
    nodes_right: _IntArray,
    is_leaf: npt.NDArray[np.uint8] | npt.NDArray[np.bool_],
    feature_idx: _IntArray,
    n_features: int,
) -> _TreeCheck: ...
def binary_tree_depth(left: _IntArray, right: _IntArray, leaf: int = -1) -> int: ...

# Split rows and leaf rows back into node order.
def scatter_rows(
    splits: npt.NDArray[Any],
    leaves: npt.NDArray[Any],
    is_leaf: npt.NDArray[np.uint8] | npt.NDArray[np.bool_],
    out: npt.NDArray[Any],
) -> None: ...
# Fields of a record array from whole columns or (splits, leaves) pairs, a tile of rows at a time.
def assemble_records(
    out: npt.NDArray[np.void],
    columns: Mapping[str, npt.NDArray[Any] | tuple[npt.NDArray[Any], npt.NDArray[Any]]],
    is_leaf: npt.NDArray[np.uint8] | npt.NDArray[np.bool_],
) -> None: ...

# Whole packed forests in one call: (0, -1, -1, "") or (TREE_* code, tree, node, reason).
_ForestCheck = tuple[int, int, int, str]
def check_binary_forest(
    left: _IntArray,
    right: _IntArray,
    feature: _IntArray,
    offsets: npt.NDArray[np.int64],
    n_features: int,
    leaf: int = -1,
    depths: npt.NDArray[np.int64] | None = None,
) -> _ForestCheck: ...
def check_hist_forest(
    nodes_left: _IntArray,
    nodes_right: _IntArray,
    is_leaf: npt.NDArray[np.uint8] | npt.NDArray[np.bool_],
    feature_idx: _IntArray,
    offsets: npt.NDArray[np.int64],
    n_features: int,
) -> _ForestCheck: ...
def check_leaf_coded_forest(
    left: _IntArray,
    right: _IntArray,
    feature: _IntArray,
    offsets: npt.NDArray[np.int64],
    n_features: int,
) -> _ForestCheck: ...

# XGBoost's UBJSON (the subset it writes).
class UbjRaw:
    """A ready UBJSON fragment that ``ubjson_encode`` writes as it is (a tree list)."""

    data: bytes
    def __init__(self, data: bytes) -> None: ...

def ubjson_decode(data: _Buffer) -> Any: ...
def ubjson_encode(value: Any) -> bytearray: ...
def ubjson_tree_list(
    keys: list[str],
    columns: dict[str, npt.NDArray[Any]],
    offsets: dict[str, npt.NDArray[np.int64]],
    params: dict[str, npt.NDArray[np.int64]],
) -> bytes: ...

# LightGBM's model text from formatted number columns.
def lightgbm_model_text(
    head: str,
    items: list[tuple[Any, ...]],
    n_trees: int,
    tail: str,
) -> str: ...

# XGBoost's tree list decoded packed.
class UbjTrees:
    """XGBoost's tree list decoded by ``ubjson_decode_packed``, its values per key."""

    packed: dict[str, Any]
    def __init__(self, packed: dict[str, Any]) -> None: ...

def ubjson_decode_packed(data: bytes) -> Any: ...
