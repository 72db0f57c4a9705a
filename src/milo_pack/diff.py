"""``milo-pack diff``: what differs between two saved models, by graph path.

Both files are opened and validated first (:meth:`MiloFile.check`); nothing is built.  The two
manifest graphs are compared as :class:`~milo_pack.inspect_view.ViewNode` trees matched by graph
path: type changes, parameter and attribute changes, items added or removed, array dtype/shape
changes, and, for arrays with the same dtype and shape, their decoded values (how many elements
differ and by how much).  Arrays are decoded one at a time with
:meth:`~milo_pack.engine.LoadContext.array` after their metadata passed
:func:`~milo_pack.engine.check_array_node`, so an untrusted file is never read outside what its
validated section table allows.

Writer versions are reported as notes and do not count as differences: the same model saved in
another environment is the same model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .engine import CheckContext, LoadContext, check_array_node
from .errors import MiloError
from .inspect_view import ViewNode, build_view, format_bytes, runs, short_tag
from .reader import MiloFile
from .registry import get_registry

__all__ = ["Change", "DiffResult", "diff_files"]


@dataclass
class Change:
    """One difference.

    Attributes
    ----------
    kind : str
        ``"type"``, ``"param"``, ``"attr"``, ``"value"``, ``"added"``, ``"removed"``,
        ``"array"`` (dtype or shape) or ``"values"`` (array contents).
    path : str
        Graph path (``estimators_[3].tree_.nodes.threshold``).
    text : str
        What changed, ``old -> new``.
    """

    kind: str
    path: str
    text: str

    def line(self) -> str:
        return f"{self.kind:<7} {self.path or '<root>'}: {self.text}"


@dataclass
class DiffResult:
    """All differences between two files, plus notes that do not count (writer versions)."""

    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.changes

    def lines(self, *, group_after: int | None = 3) -> list[str]:
        """Report lines; repeated changes (one per tree of a forest) are folded.

        Parameters
        ----------
        group_after : int or None
            Show at most this many changes of one kind at paths that differ only by indices
            (``estimators_[*].tree_.max_depth``) and summarize the rest; None shows all.
        """
        out = [f"note: {note}" for note in self.notes]
        if group_after is None:
            out.extend(change.line() for change in self.changes)
        else:
            out.extend(_folded(self.changes, group_after))
        count = len(self.changes)
        out.append("identical" if not count
                   else f"{count} difference{'s' if count != 1 else ''}")
        return out


def _folded(changes: list[Change], keep: int) -> Iterator[str]:
    groups: dict[tuple[str, str], list[Change]] = {}
    for change in changes:
        groups.setdefault((change.kind, _pattern(change.path)), []).append(change)
    for (kind, pattern), members in groups.items():
        yield from (change.line() for change in members[:keep])
        if len(members) > keep:
            yield f"{'':<7} ... {len(members) - keep} more {kind} changes at {pattern}"


def _pattern(path: str) -> str:
    return re.sub(r"\[\d+\]", "[*]", path) or "<root>"


# --------------------------------------------------------------------------------------------
# Comparing two files
# --------------------------------------------------------------------------------------------


@dataclass
class _Side:
    """One open, validated file: what is needed to decode its arrays."""

    handle: MiloFile
    check: CheckContext
    loader: LoadContext

    @classmethod
    def open(cls, path: Any, storage_options: dict[str, Any] | None = None) -> _Side:
        handle = MiloFile(path, storage_options=storage_options)
        try:
            check = handle.check()
        except BaseException:
            handle.close()
            raise
        return cls(handle, check, LoadContext(get_registry(), handle.store, check))

    def array(self, view: ViewNode) -> np.ndarray:
        # check() skips the subtrees of untrusted types: validate every array we decode.
        check_array_node(view.node, view.path, self.check)
        return self.loader.array(view.node, view.path or "<root>")


def diff_files(path_a: Any, path_b: Any, storage_a: dict[str, Any] | None = None,
               storage_b: dict[str, Any] | None = None) -> DiffResult:
    """Compare two files.

    Parameters
    ----------
    path_a, path_b : str, os.PathLike, file object, bytes or URL
        The old and the new file.
    storage_a, storage_b : dict, optional
        fsspec options for either when it is a URL.

    Returns
    -------
    DiffResult

    Raises
    ------
    milo_pack.errors.MiloError
        Either file is invalid.
    OSError
        Either file cannot be read.
    """
    a = _Side.open(path_a, storage_a)
    try:
        b = _Side.open(path_b, storage_b)
        try:
            return _diff_sides(a, b)
        finally:
            b.handle.close()
    finally:
        a.handle.close()


def _diff_sides(a: _Side, b: _Side) -> DiffResult:
    result = DiffResult()
    ma, mb = a.handle.manifest, b.handle.manifest
    result.notes.extend(_writer_notes(ma["writer"], mb["writer"]))
    differ = _Differ(a, b, result.changes)
    differ.compare(build_view(ma["metadata"], a.handle.sections, path="<metadata>"),
                   build_view(mb["metadata"], b.handle.sections, path="<metadata>"))
    differ.compare(build_view(ma["root"], a.handle.sections),
                   build_view(mb["root"], b.handle.sections))
    return result


def _writer_notes(old: dict, new: dict) -> Iterator[str]:
    for name in dict.fromkeys([*old, *new]):
        if old.get(name) != new.get(name):
            yield f"writer {name}: {old.get(name)} -> {new.get(name)} (not counted)"


@dataclass
class _Differ:
    a: _Side
    b: _Side
    changes: list[Change]

    def add(self, kind: str, path: str, text: str) -> None:
        self.changes.append(Change(kind, path, text))

    def compare(self, old: ViewNode, new: ViewNode) -> None:
        """Compare two nodes at the same path (recursively, in document order)."""
        if (old.kind, old.tag) != (new.kind, new.tag):
            self.add("type", new.path, f"{_describe(old)} -> {_describe(new)}")
        elif old.kind == "array":
            self.compare_arrays(old, new)
        elif old.kind in ("value", "ref"):
            if _canonical(old.node) != _canonical(new.node):
                kind = old.role if old.role in ("param", "attr") else "value"
                self.add(kind, new.path, f"{old.text} -> {new.text}")
        else:
            self.compare_children(old, new)

    def compare_children(self, old: ViewNode, new: ViewNode) -> None:
        old_children = {child.path: child for child in old.children}
        new_children = {child.path: child for child in new.children}
        for path, child in old_children.items():
            if path in new_children:
                self.compare(child, new_children[path])
        self.report_missing([c for p, c in old_children.items() if p not in new_children],
                            "removed")
        self.report_missing([c for p, c in new_children.items() if p not in old_children],
                            "added")

    def report_missing(self, children: list[ViewNode], kind: str) -> None:
        """Added or removed children; runs of similar list items become one line."""
        for run in runs(children, lambda run, child: _continues(run[-1], child)):
            first, last = run[0], run[-1]
            if len(run) == 1:
                self.add(kind, first.path, _describe(first))
                continue
            path = f"{first.path}..{last.label}"
            self.add(kind, path, f"{len(run)} x {_describe(first)}, "
                                 f"{format_bytes(sum(c.decoded for c in run))} decoded")

    def compare_arrays(self, old: ViewNode, new: ViewNode) -> None:
        if _array_key(old) != _array_key(new):
            self.add("array", new.path, f"{_array_meta(old)} -> {_array_meta(new)}")
            return
        if _same_storage(old.node, new.node, self.a, self.b):
            return  # same section bytes (equal digests) at the same place: same values
        try:
            x, y = self.a.array(old), self.b.array(new)
        except MiloError as exc:
            self.add("values", new.path, f"cannot decode: {exc}")
            return
        text = _value_difference(x, y)
        if text:
            self.add("values", new.path, text)


def _continues(prev: ViewNode, child: ViewNode) -> bool:
    match_prev = re.fullmatch(r"(.*)\[(\d+)\]", prev.path)
    match_child = re.fullmatch(r"(.*)\[(\d+)\]", child.path)
    return bool(match_prev and match_child and match_prev[1] == match_child[1]
                and int(match_child[2]) == int(match_prev[2]) + 1
                and (prev.kind, prev.tag) == (child.kind, child.tag))


def _describe(view: ViewNode) -> str:
    if view.kind == "object":
        return short_tag(view.tag)
    if view.kind == "array":
        return _array_meta(view)
    if view.kind in ("value", "ref"):
        return view.text if view.kind == "value" else f"-> {view.text}"
    return f"{view.kind} of {len(view.children)}"


def _array_key(view: ViewNode) -> tuple[Any, Any]:
    return view.node.get("dtype"), view.node.get("shape")


def _array_meta(view: ViewNode) -> str:
    return "array " + view.text.split(" = ")[0]


def _canonical(node: Any) -> str:
    # Type-strict equality: 1, 1.0 and true are different values in a model's parameters.
    return json.dumps(node, sort_keys=True)


def _same_storage(x: dict, y: dict, a: _Side, b: _Side) -> bool:
    """Whether two array nodes point at identical stored bytes (no need to decode)."""
    if "data" in x or "data" in y:
        return x.get("data") == y.get("data") and x.get("order") == y.get("order")
    ix, iy = x.get("section"), y.get("section")
    if type(ix) is not int or type(iy) is not int:
        return False
    if not (0 <= ix < len(a.handle.sections) and 0 <= iy < len(b.handle.sections)):
        return False
    sx, sy = a.handle.sections[ix], b.handle.sections[iy]
    return (sx.to_json() == sy.to_json() and x.get("start") == y.get("start")
            and x.get("order") == y.get("order"))


def _value_difference(x: np.ndarray, y: np.ndarray) -> str | None:
    """``"37 of 91 elements differ, max |diff| 0.25"``, or None when equal."""
    if x.dtype.kind in "fc":
        differ = ~((x == y) | (np.isnan(x) & np.isnan(y)))
    else:
        differ = x != y
    count = int(np.count_nonzero(differ))
    if not count:
        return None
    text = f"{count} of {x.size} elements differ"
    kind = x.dtype.kind
    if kind in "iufcmM":
        xs, ys = x[differ], y[differ]
        if kind in "mM":
            xs, ys = xs.view(np.int64), ys.view(np.int64)
        # float64 (or complex) differences: int64 subtraction could overflow.
        delta = np.abs(xs.astype(np.complex128 if kind == "c" else np.float64)
                       - ys.astype(np.complex128 if kind == "c" else np.float64))
        finite = delta[np.isfinite(delta)]
        if finite.size:
            text += f", max |diff| {float(finite.max()):.6g}"
        if finite.size < delta.size:
            text += f", {delta.size - finite.size} non-finite"
    return text
