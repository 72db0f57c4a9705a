"""``milo-pack diff``: what differs between two saved models, in model terms.

Both files are opened and validated first (:meth:`MiloFile.check`).  The comparison has two
levels:

* **Storage level** (shown with ``--verbose``): the two manifest graphs are compared as
  :class:`~milo_pack.inspect_view.ViewNode` trees matched by graph path: type changes, value
  changes, items added or removed, array dtype/shape changes, and, for arrays with the same
  dtype and shape, their decoded values (how many elements differ and by how much).  Arrays are
  decoded one at a time with :meth:`~milo_pack.engine.LoadContext.array` after their metadata
  passed :func:`~milo_pack.engine.check_array_node`, so an untrusted file is never read outside
  what its validated section table allows.  Whether two files are identical is decided here.
* **Model level** (the default report), derived from the storage level: per estimator, the
  parameters and fitted attributes that changed; an internal object (a ``Tree``, a loss) is one
  line naming the fields that differ; and an ensemble's members (forest trees, boosting stages,
  HistGradientBoosting predictors, XGBoost and LightGBM trees) are compared one by one and
  reported as ranges: ``0-49 identical, 50-59 added``.  Members stored packed (one node for all
  of them) and booster trees are built one at a time through the loader, with the same
  validation as a load, and compared by their content (XGBoost's and LightGBM's own JSON dump
  of each tree); nothing else is built.

Writer versions are reported as notes and do not count as differences: the same model saved in
another environment is the same model.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .engine import CheckContext, LoadContext, check_array_node
from .errors import MiloError
from .inspect_view import ViewNode, build_view, format_bytes, runs, short_tag
from .limits import Limits
from .reader import MiloFile
from .registry import get_registry

__all__ = ["Change", "DiffResult", "diff_files"]


@dataclass
class Change:
    """One difference.

    Attributes
    ----------
    kind : str
        Storage level: ``"type"``, ``"param"``, ``"attr"``, ``"value"``, ``"added"``,
        ``"removed"``, ``"array"`` (dtype or shape) or ``"values"`` (array contents).  Model
        level: ``"type"``, ``"param"``, ``"attr"``, ``"item"``, ``"field"``, ``"metadata"``,
        ``"members"`` (an ensemble's members) or ``"setting"`` (a booster's own setting).
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
    """All differences between two files, plus notes that do not count (writer versions).

    Attributes
    ----------
    changes : list of Change
        Storage-level differences; empty exactly when the two models are identical.
    model : list of Change
        The same differences in model terms (see the module documentation).
    notes : list of str
        Writer versions that differ (not counted).
    """

    changes: list[Change] = field(default_factory=list)
    model: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.changes

    def lines(self, *, verbose: bool = False, group_after: int | None = 3) -> list[str]:
        """Report lines: the model-level changes, then (``verbose``) the storage level.

        Parameters
        ----------
        verbose : bool
            Also list the storage-level differences (paths inside the file's layout).
        group_after : int or None
            In the storage-level list, show at most this many changes of one kind at paths
            that differ only by indices (``estimators_[*].tree_.max_depth``) and summarize the
            rest; None shows all.
        """
        out = [f"note: {note}" for note in self.notes]
        out.extend(change.line() for change in self.model)
        if verbose and self.changes:
            out.append("storage-level differences:")
            raw = ([change.line() for change in self.changes] if group_after is None
                   else list(_folded(self.changes, group_after)))
            out.extend("  " + line for line in raw)
        if not self.changes:
            out.append("identical")
        else:
            count = len(self.model)
            out.append(f"{count} difference{'s' if count != 1 else ''} in model terms"
                       + ("" if verbose else f" ({len(self.changes)} storage-level: --verbose)"))
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
    def open(cls, path: Any, limits: Limits | None = None,
             storage_options: dict[str, Any] | None = None) -> _Side:
        handle = MiloFile(path, limits=limits, storage_options=storage_options)
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

    def _trusted_below(self, path: str) -> bool:
        """Whether the subtree at ``path`` was validated: no untrusted type in it or above it
        (``check()`` does not validate below an untrusted type, so nothing there is built)."""
        for _, where in self.check.untrusted:
            at = "" if where == "<root>" else where
            if _under(path, at) or _under(at, path):
                return False
        return True

    def build(self, view: ViewNode) -> Any:
        """Build one validated object of the file through the loader (as a load does)."""
        if not self._trusted_below(view.path):
            raise MiloError("untrusted types below", view.path)
        return self.loader.decode(view.node, view.path)

    def members(self, view: ViewNode) -> tuple[str, list[_Member]] | None:
        """(class of the members, one :class:`_Member` each) of an ensemble node, or None.

        A packed node's members are built alone from their own rows, as a lazy load builds
        them; a list's or object array's items are built one by one.
        """
        if not self._trusted_below(view.path):
            return None
        if view.kind == "list" or view.tag == "numpy.object_array":
            items = [c for c in view.children if c.role == "item"]
            if not _ensemble(items):
                return None
            built = (self.loader.decode(item.node, item.path) for item in items)
            return short_tag(items[0].tag) if items else "members", [_member(m) for m in built]
        handler = self.loader.registry.for_tag(view.tag or "", self.check.trusted)
        if handler is None or handler.unpack is None:
            return None
        _, packed = handler.unpack(view.node, self.loader, view.path)
        return (short_tag(packed[0].tag if packed else view.tag),
                [_member(m.build(self.loader)) for m in packed])


@dataclass(frozen=True)
class _Member:
    """What identifies an ensemble member: its fitted state, and each parameter apart.

    Digests of the bytes :func:`milo_pack.dumps` writes (same model, same bytes).  Parameters
    are apart so that members fitted identically whose parameters differ (a shared
    ``random_state`` generator that moved on) are reported as such, not as "changed".
    """

    fitted: str
    params: tuple[tuple[str, str], ...] = ()


def _member(obj: Any) -> _Member:
    from . import dumps

    def digest(value: Any) -> str:
        return hashlib.sha256(dumps(value, level=0)).hexdigest()

    get_params = getattr(obj, "get_params", None)
    if not callable(get_params):
        return _Member(digest(obj))
    params = get_params(deep=False)
    # The writer's scikit-learn version is a note of the file, not part of the member.
    fitted = {k: v for k, v in vars(obj).items()
              if k not in params and k != "_sklearn_version"}
    return _Member(digest(fitted), tuple((k, digest(v)) for k, v in sorted(params.items())))


def diff_files(path_a: Any, path_b: Any, storage_a: dict[str, Any] | None = None,
               storage_b: dict[str, Any] | None = None, *,
               limits: Limits | None = None) -> DiffResult:
    """Compare two files.

    Parameters
    ----------
    path_a, path_b : str, os.PathLike, file object, bytes or URL
        The old and the new file.
    limits : Limits, optional
        Resource budgets, applied to each file (default: ``Limits()``).
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
    a = _Side.open(path_a, limits, storage_a)
    try:
        b = _Side.open(path_b, limits, storage_b)
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
    pairs = [(build_view(ma["metadata"], a.handle.sections, path="<metadata>"),
              build_view(mb["metadata"], b.handle.sections, path="<metadata>")),
             (build_view(ma["root"], a.handle.sections),
              build_view(mb["root"], b.handle.sections))]
    for old, new in pairs:
        differ.compare(old, new)
    model = _ModelDiffer(a, b, result.changes, result.model)
    for old, new in pairs:
        model.compare(old, new)
    if result.changes and not result.model:  # pragma: no cover - every change maps somewhere
        result.model.append(Change("value", "<root>", "storage differs (see --verbose)"))
    return result


def _writer_notes(old: dict[str, Any], new: dict[str, Any]) -> Iterator[str]:
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


def _same_storage(x: dict[str, Any], y: dict[str, Any], a: _Side, b: _Side) -> bool:
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


# --------------------------------------------------------------------------------------------
# Model level
# --------------------------------------------------------------------------------------------

# What a change is called by the role of the node it is at (plain dict keys: "value").
_ROLE_KINDS = {"param": "param", "attr": "attr", "item": "item", "state": "attr"}
_FIELDS_SHOWN = 4  # an internal object's line names at most this many differing fields


def _under(path: str, prefix: str) -> bool:
    """Whether ``path`` is ``prefix`` or below it in the graph."""
    if not prefix or prefix == "<root>":  # the model: everything but the metadata
        return not path.startswith("<metadata>")
    return path == prefix or (path.startswith(prefix)
                              and path[len(prefix)] in ".[")


def _relative(path: str, prefix: str) -> str:
    return path[len(prefix):].lstrip(".") if prefix and prefix != "<root>" else path


@dataclass
class _ModelDiffer:
    """Turns the storage-level changes into statements about the model (see the module doc)."""

    a: _Side
    b: _Side
    raw: list[Change]
    out: list[Change]

    def add(self, kind: str, path: str, text: str) -> None:
        self.out.append(Change(kind, path, text))

    def raw_under(self, path: str) -> list[Change]:
        return [c for c in self.raw if _under(_base_path(c.path), path)]

    def compare(self, old: ViewNode, new: ViewNode) -> None:
        path = new.path
        if not self.raw_under(path):
            return
        kind = "metadata" if path.startswith("<metadata>") else _ROLE_KINDS.get(new.role,
                                                                                 "value")
        if self.compare_members(old, new):
            return
        if (old.kind, old.tag) != (new.kind, new.tag):
            self.add("type", path, f"{_describe(old)} -> {_describe(new)}")
            return
        if old.kind in ("value", "ref", "array"):
            for change in self.raw_under(path):  # one change at exactly this path
                self.add(kind, path, _model_text(change))
            return
        if old.kind == "object" and old.tag not in _CONTAINERS and not _is_estimator(old.node):
            self.summarize(old, new, kind)
            return
        self.compare_children(old, new)

    def compare_children(self, old: ViewNode, new: ViewNode) -> None:
        old_children = {child.path: child for child in old.children}
        new_children = {child.path: child for child in new.children}
        for path, child in old_children.items():
            if path in new_children:
                self.compare(child, new_children[path])
        for kind, side, other in (("removed", old_children, new_children),
                                  ("added", new_children, old_children)):
            missing = [c for p, c in side.items() if p not in other]
            for run in runs(missing, lambda run, child: _continues(run[-1], child)):
                role = run[0].role
                what = (_describe(run[0]) if len(run) == 1
                        else f"{len(run)} x {_describe(run[0])}")
                where = run[0].path if len(run) == 1 else f"{run[0].path}..{run[-1].label}"
                self.add(kind, where, f"{role} {what}" if role in ("param", "attr") else what)

    def summarize(self, old: ViewNode, new: ViewNode, kind: str) -> None:
        """One line for an internal object (a ``Tree``, a loss): which of its fields differ."""
        fields = list(dict.fromkeys(_field_name(_relative(_base_path(c.path), new.path))
                                    for c in self.raw_under(new.path)))
        shown = ", ".join(fields[:_FIELDS_SHOWN]) + (
            f", ... {len(fields)} fields" if len(fields) > _FIELDS_SHOWN else "")
        self.add(kind, new.path, f"{short_tag(new.tag)} differs in {shown}")

    # -- ensembles ---------------------------------------------------------------------------

    def compare_members(self, old: ViewNode, new: ViewNode) -> bool:
        """Report an ensemble's members as ranges; False when ``old`` is not an ensemble."""
        try:
            found = self._members(old, new)
        except (MiloError, ImportError, KeyError, TypeError, ValueError, AttributeError):
            return False  # cannot build them here: the generic comparison says what differs
        if found is None:
            return False
        what, statuses, settings = found
        kind = _ROLE_KINDS.get(new.role, "value")
        for key, (before, after) in settings.items():
            self.add("setting", f"{new.path}.{key}" if new.path else key,
                     f"{_short(before)} -> {_short(after)}")
        if statuses and any(status != "identical" for status in statuses):
            counts = f"{_count(statuses, 'old')} -> {_count(statuses, 'new')} {what}"
            self.add("members", new.path or "<root>", f"{counts}: {_ranges(statuses)}")
        elif not settings:
            # Members and settings equal, yet the storage differs (layout only): say so.
            self.add(kind, new.path, f"{short_tag(new.tag)} stored differently, same content")
        return True

    def _members(self, old: ViewNode, new: ViewNode
                 ) -> tuple[str, list[str], dict[str, tuple[Any, Any]]] | None:
        """(what the members are, status of each position, changed settings), or None."""
        if old.kind == "object" and old.tag is not None and old.tag == new.tag:
            extract = _BOOSTERS.get(old.tag)
            if extract is not None:
                before, settings_a = extract(self.a.build(old))
                after, settings_b = extract(self.b.build(new))
                return "trees", _statuses(before, after), _settings(settings_a, settings_b)
        lists = [v.kind == "list" or v.tag == "numpy.object_array" for v in (old, new)]
        if all(lists) and (old.kind, old.tag) == (new.kind, new.tag):
            # Same layout: the storage-level comparison already went position by position.
            items = [c for c in old.children if c.role == "item"]
            others = [c for c in new.children if c.role == "item"]
            if not (_ensemble(items) and _ensemble(others)) or (
                    items and others and items[0].tag != others[0].tag):
                return None
            return short_tag((items or others)[0].tag), [
                self._position(items[i] if i < len(items) else None,
                               others[i] if i < len(others) else None)
                for i in range(max(len(items), len(others)))], {}
        found_a, found_b = self.a.members(old), self.b.members(new)
        if found_a is None or found_b is None or found_a[0] != found_b[0]:
            return None
        return found_a[0], _statuses(found_a[1], found_b[1]), {}

    def _position(self, old: ViewNode | None, new: ViewNode | None) -> str:
        if old is None:
            return "added"
        if new is None:
            return "removed"
        changes = self.raw_under(new.path)
        if not changes:
            return "identical"
        params = {c.path: c for c in new.children if c.role == "param"}
        keys = {next((p for p in params if _under(_base_path(ch.path), p)), None)
                for ch in changes}
        if None in keys:
            return "changed"
        return "identical except " + ", ".join(sorted(params[k].label for k in keys if k))


def _base_path(path: str) -> str:
    """The graph path of a change (``a[0]..[4]`` for added runs names the first)."""
    return path.split("..", 1)[0]


def _field_name(relative: str) -> str:
    """``nodes.threshold.splits`` -> ``nodes.threshold``: the field, not its storage parts."""
    parts = re.split(r"(?=[.\[])", relative)
    return "".join(parts[:2]).lstrip(".") or relative or "<itself>"


def _model_text(change: Change) -> str:
    return change.text


def _is_estimator(node: Any) -> bool:
    """Typed nodes with parameters or fitted attributes: compared field by field."""
    return isinstance(node, dict) and ("params" in node or "attrs" in node)


_CONTAINERS = frozenset({"tuple", "list", "dict", "set", "frozenset", "numpy.object_array"})


def _ensemble(items: list[ViewNode]) -> bool:
    """At least two objects of one type (the trees of a forest), or an empty list.

    Containers (a pipeline's ``(name, step)`` tuples) are not members: their items are compared
    one by one, so that a step's parameters are reported by name.
    """
    if not items:
        return True
    return (len(items) >= 2 and all(c.kind == "object" for c in items)
            and len({c.tag for c in items}) == 1 and items[0].tag not in _CONTAINERS)


def _statuses(before: list[Any], after: list[Any]) -> list[str]:
    """Position by position: identical, identical except some parameters, changed, added or
    removed."""
    out = []
    for i in range(max(len(before), len(after))):
        if i >= len(before):
            out.append("added")
        elif i >= len(after):
            out.append("removed")
        elif before[i] == after[i]:
            out.append("identical")
        elif isinstance(before[i], _Member) and before[i].fitted == after[i].fitted:
            old, new = dict(before[i].params), dict(after[i].params)
            keys = sorted(k for k in {*old, *new} if old.get(k) != new.get(k))
            out.append("identical except " + ", ".join(keys))
        else:
            out.append("changed")
    return out


def _count(statuses: list[str], side: str) -> int:
    gone = "added" if side == "old" else "removed"
    return sum(status != gone for status in statuses)


def _ranges(statuses: list[str]) -> str:
    """``0-49 identical, 50-59 added`` (``;`` between kinds when one has several ranges)."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for i, status in enumerate(statuses):
        span = spans.setdefault(status, [])
        if span and span[-1][1] == i - 1:
            span[-1] = (span[-1][0], i)
        else:
            span.append((i, i))
    rank = {"identical": 0, "changed": 2, "added": 3, "removed": 4}
    order = sorted(spans, key=lambda k: (rank.get(k, 1), k))
    texts = [", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans[k]) + f" {k}"
             for k in order]
    several = any(len(spans[k]) > 1 for k in order)
    return ("; " if several else ", ").join(texts)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _settings(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Flattened settings that differ, by dotted key."""
    flat_old, flat_new = _flatten(old), _flatten(new)
    return {key: (flat_old.get(key), flat_new.get(key))
            for key in dict.fromkeys([*flat_old, *flat_new])
            if _canonical(flat_old.get(key)) != _canonical(flat_new.get(key))
            or (key in flat_old) != (key in flat_new)}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _digest(value: Any) -> str:
    return hashlib.sha256(_canonical(value).encode()).hexdigest()


# -- boosters: trees and settings from the library's own JSON dump ---------------------------

_Extract = Callable[[Any], tuple[list[str], dict[str, Any]]]


def _xgboost_parts(booster: Any) -> tuple[list[str], dict[str, Any]]:
    """Each tree (with its output group) and the rest of XGBoost's JSON model."""
    model = json.loads(bytes(booster.save_raw(raw_format="json")))
    gradient = model["learner"]["gradient_booster"]
    inner = gradient.get("model") or gradient.get("gbtree", {}).get("model") or {}
    trees = inner.pop("trees", [])
    groups = inner.pop("tree_info", [0] * len(trees))
    # Counts that follow from the trees: the members line says how they changed.
    inner.pop("iteration_indptr", None)
    inner.get("gbtree_model_param", {}).pop("num_trees", None)
    members = [_digest({"group": group, **{k: v for k, v in tree.items() if k != "id"}})
               for tree, group in zip(trees, groups, strict=False)]
    return members, model


def _lightgbm_parts(booster: Any) -> tuple[list[str], dict[str, Any]]:
    """Each tree and the rest of LightGBM's JSON dump (importances follow from the trees)."""
    model = booster.dump_model()
    trees = model.pop("tree_info", [])
    model.pop("feature_importances", None)
    members = [_digest({k: v for k, v in tree.items() if k != "tree_index"}) for tree in trees]
    return members, model


_BOOSTERS: dict[str, _Extract] = {
    "xgboost.Booster": _xgboost_parts,
    "lightgbm.Booster": _lightgbm_parts,
}
