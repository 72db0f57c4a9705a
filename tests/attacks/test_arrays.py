"""Array nodes: closed dtypes, exact shapes and byte counts, inline data, records, strings."""

from __future__ import annotations

import numpy as np
import pytest

import milo_pack
from milo_pack.errors import ArrayError, LimitError, ManifestError

from .craft import floats_file, manifest_edit, refused


def _array(**changes):
    """Edit the section-backed array node ``root.a`` (float64[100] in section 0)."""
    def edit(doc):
        doc["root"]["a"].update(changes)
    return edit


def _put(value):
    """Add ``root.b`` = ``value`` next to the valid array."""
    def edit(doc):
        doc["root"]["b"] = value
    return edit


def _inline(dtype, shape, data):
    return _put({"$type": "numpy.ndarray", "dtype": dtype, "shape": shape, "data": data})


def _record(names, formats, offsets, itemsize=16):
    fields = {n: {"$type": "numpy.ndarray", "dtype": f, "shape": [1], "data": [0]}
              for n, f in zip(names, formats, strict=True)}
    return _put({"$type": "numpy.record_array", "shape": [1], "fields": fields,
                 "dtype": {"names": names, "formats": formats, "offsets": offsets,
                           "itemsize": itemsize}})


ARRAYS = [
    ("dtype_O", _array(dtype="O"), ArrayError),
    ("dtype_pipe_O", _array(dtype="|O"), ArrayError),
    ("dtype_void", _array(dtype="|V8"), ArrayError),
    ("dtype_U0", _array(dtype="<U0"), ArrayError),
    ("dtype_structured_object", _array(dtype="[('a','O')]"), ArrayError),
    ("dtype_trailing_space", _array(dtype="<f8 "), ArrayError),
    ("dtype_not_string", _array(dtype=8), ArrayError),
    ("dtype_huge_itemsize", _array(dtype="<U99999999999999"), ArrayError),
    ("dtype_datetime_generic", _array(dtype="<M8[generic]"), ArrayError),
    ("dtype_big_endian_vs_section", _array(dtype=">f8"), ArrayError),
    ("dtype_int_vs_section", _array(dtype="<i8"), ArrayError),
    ("shape_overflows_64_bits", _array(shape=[1 << 40] * 4), LimitError),
    ("shape_zero_times_huge", _array(shape=[0, 1 << 40, 1 << 40]), LimitError),
    ("shape_negative", _array(shape=[-1, -100]), ArrayError),
    ("shape_float", _array(shape=[100.0]), ArrayError),
    ("shape_not_list", _array(shape=100), ArrayError),
    ("shape_ndim_33", _array(shape=[1] * 33), ArrayError),
    ("shape_dim_over_max_dim", _array(shape=[1 << 41]), LimitError),
    ("declares_1e12_bytes", _array(shape=[125_000_000_000]), LimitError),
    ("start_beyond_section", _array(start=1000), ArrayError),
    ("start_negative", _array(start=-1), ArrayError),
    ("start_plus_count_beyond", _array(start=1), ArrayError),
    ("start_string", _array(start="0"), ArrayError),
    ("section_missing", _array(section=5), ManifestError),
    ("section_bool", _array(section=False), ManifestError),
    ("extra_key_offset", _array(offset=8), ManifestError),
    ("strides_key", _array(strides=[8]), ManifestError),
    ("order_bad", _array(order="X"), ManifestError),
    ("inline_and_section", _array(data=[0.0] * 100), ManifestError),
    ("inline_wrong_length", _inline("<f8", [3], [1.0, 2.0]), ArrayError),
    ("inline_wrong_type", _inline("<f8", [2], [1.0, "one"]), ArrayError),
    ("inline_nested_list", _inline("<f8", [2], [[1.0], 2.0]), ArrayError),
    ("inline_int_too_big_for_float", _inline("<f8", [1], [10**400]), ArrayError),
    ("inline_int_out_of_range", _inline("|i1", [1], [300]), ArrayError),
    ("inline_bool_as_int", _inline("|b1", [2], [0, 1]), ArrayError),
    ("inline_not_list", _inline("<i8", [1], {"0": 1}), ArrayError),
    ("inline_string_too_long", _inline("<U2", [1], ["abc"]), ArrayError),
    ("inline_zero_times_huge", _inline("<f8", [0, 1 << 40, 1 << 40], []), LimitError),
    ("scalar_object_dtype", _put({"$type": "numpy.scalar", "dtype": "|O", "value": 1}),
     ArrayError),
    ("dtype_node_void", _put({"$type": "numpy.dtype", "dtype": "|V8"}), ArrayError),
    ("record_object_field", _record(["a"], ["|O"], [0]), ArrayError),
    ("record_overlapping_fields", _record(["a", "b"], ["<f8", "<f8"], [0, 4]), ManifestError),
    ("record_duplicate_names", _record(["a", "a"], ["<f8", "<f8"], [0, 8]), ManifestError),
    ("record_dunder_name", _record(["__class__"], ["<f8"], [0]), ManifestError),
    ("record_field_past_itemsize", _record(["a"], ["<f8"], [12]), ManifestError),
    ("object_array_count", _put({"$type": "numpy.object_array", "shape": [3], "items": [1]}),
     ArrayError),
    ("object_array_zero_times_huge", _put({"$type": "numpy.object_array",
                                           "shape": [0, 1 << 40, 1 << 40], "items": []}),
     LimitError),
    ("string_table_bad_offsets", _put({"$type": "numpy.object_array", "shape": [2], "strings": {
        "offsets": {"$type": "numpy.ndarray", "dtype": "<i8", "shape": [3], "data": [0, 5, 99]},
        "utf8": {"$type": "numpy.ndarray", "dtype": "|u1", "shape": [2], "data": [65, 66]}}}),
     ArrayError),
]


@pytest.mark.parametrize("edit, error", [c[1:] for c in ARRAYS], ids=[c[0] for c in ARRAYS])
def test_arrays(edit, error):
    refused(manifest_edit(floats_file(), edit), error)


def test_many_nodes_over_one_section_are_refused():
    """Twenty nodes over one 800-byte section would decode 16 kB: each counts against
    max_total_bytes, and overlapping array data is refused outright (the writer never shares
    section data between nodes), so a small file cannot multiply what readers decode."""
    def edit(doc):
        doc["root"]["b"] = [dict(doc["root"]["a"]) for _ in range(20)]

    data = manifest_edit(floats_file(), edit)
    error = refused(data, ArrayError)
    assert "overlaps" in str(error)
    with pytest.raises(LimitError):
        milo_pack.loads(data, limits=milo_pack.Limits(max_total_bytes=4000))


def test_section_data_no_array_covers_is_refused():
    def edit(doc):
        doc["root"]["a"]["shape"] = [99]  # the section holds 100 floats

    assert "not entirely covered" in str(refused(manifest_edit(floats_file(), edit), ManifestError))



def test_every_scalar_node_is_checked():
    """Scalar nodes are checked through a temporary array node each: a check remembered by
    the temporary's id would skip a later scalar that got the same id (found by fuzzing)."""
    data = milo_pack.dumps({f"s{i}": np.float64(i) for i in range(8)})

    def edit(doc):
        doc["root"]["s7"]["value"] = []

    refused(manifest_edit(data, edit), ArrayError)


def test_files_without_sections_load():
    assert milo_pack.loads(milo_pack.dumps({"a": [1, 2], "b": np.arange(3)}))["a"] == [1, 2]
