"""A readable tree of a manifest: types, parameters, arrays and sizes, without reading sections.

:func:`build_view` turns the manifest's JSON graph into :class:`ViewNode` objects that mirror the
graph paths the loader uses (``estimators_[3].tree_.nodes.threshold``), with the decoded and
stored bytes of every array summed up each sub-object.  :func:`render` prints that tree for
``milo-pack inspect``; :mod:`milo_pack.diff` compares two such trees.

The manifest may come from a stranger and may not even be valid: everything here only reads JSON
values, never imports or builds anything, tolerates unexpected shapes, and passes every string
taken from the file through :func:`~milo_pack.errors.quote` before it reaches the terminal.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .codec import SectionInfo
from .engine import join_path
from .errors import quote

__all__ = ["ViewNode", "build_view", "render", "render_header", "format_bytes", "short_tag"]

# Fields of typed nodes whose dict/list value holds children named by their own keys/indices;
# the loader's paths skip them (engine._TRANSPARENT), so ours do too.
_TRANSPARENT = ("params", "attrs", "state", "items")
_ROLES = {"params": "param", "attrs": "attr", "state": "state", "items": "item"}
# Container tags whose "items" are a sequence of values (rendered like Python literals).
_SEQUENCES = {"tuple": ("(", ")"), "list": ("[", "]"), "set": ("{", "}"),
              "frozenset": ("frozenset({", "})")}
_INLINE_WIDTH = 60  # a value whose text fits this many characters is shown inline
_INLINE_ITEMS = 4  # inline arrays show at most this many values
_SAFE_TAG = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:]{0,200}$")


@dataclass
class ViewNode:
    """One value of the manifest graph, as shown by ``inspect`` and compared by ``diff``.

    Attributes
    ----------
    label : str
        How the parent names it: a key (``n_estimators``), an index (``[3]``) or ``<root>``.
    path : str
        The graph path, as in the loader's error messages.
    kind : str
        ``"object"`` (a typed node), ``"array"`` (a plain numpy array), ``"value"`` (a scalar or
        short literal), ``"ref"`` (a reference to an object shown elsewhere), ``"list"`` or
        ``"dict"`` (plain JSON containers).
    role : str
        What the parent holds it as: ``"param"``, ``"attr"``, ``"field"``, ``"item"``...
    tag : str or None
        The ``$type`` of objects and arrays.
    text : str
        Rendered value (scalars), array description, or reference target.
    node : object
        The JSON value itself (array nodes are decoded from it by ``diff``).
    children : list of ViewNode
    decoded : int
        Decoded bytes of the arrays at or below this node (shared objects counted once),
        wherever their values are: in sections, inline in the manifest, or one fill value.
    stored : float
        The share of the section bytes in the file (compressed size) of those in sections.
    inline : int
        Decoded bytes of the arrays whose values are written in the manifest (``data``).
    filled : int
        Decoded bytes of the arrays stored as one constant (``fill``), expanded at load.
    ident : int or None
        The node's ``$id`` when other nodes refer to it.
    target : ViewNode or None
        For a reference, the node it refers to (None when the ``$id`` is unknown).
    """

    label: str
    path: str
    kind: str
    role: str = "field"
    tag: str | None = None
    text: str = ""
    node: Any = None
    children: list[ViewNode] = field(default_factory=list)
    decoded: int = 0
    stored: float = 0.0
    inline: int = 0
    filled: int = 0
    ident: int | None = None
    target: ViewNode | None = None

    @property
    def in_sections(self) -> int:
        """Decoded bytes of the arrays at or below this node whose values are in sections."""
        return self.decoded - self.inline - self.filled

    def walk(self) -> Iterator[ViewNode]:
        """This node and every node below it, depth first, in document order."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


# --------------------------------------------------------------------------------------------
# Building the view
# --------------------------------------------------------------------------------------------


def build_view(value: Any, sections: Sequence[SectionInfo], *, label: str = "<root>",
               path: str = "") -> ViewNode:
    """Build the view of one manifest value (``manifest["root"]`` or ``["metadata"]``).

    Parameters
    ----------
    value : object
        A parsed JSON value from the manifest.
    sections : sequence of SectionInfo
        The file's section table, to attribute stored bytes to arrays.
    label, path : str
        Name and graph path of ``value``.

    Returns
    -------
    ViewNode
    """
    view = _build(value, label, path, "field", sections)
    targets = {n.ident: n for n in view.walk() if n.ident is not None}
    for node in view.walk():
        if node.kind == "ref":
            ident = node.node.get("$ref")
            node.target = targets.get(ident) if type(ident) is int else None
            node.text = ("same object as " + (node.target.path or "<root>")
                         if node.target is not None else f"unknown $id {quote(ident)}")
    return view


def _ident(value: Any) -> int | None:
    ident = value.get("$id") if isinstance(value, dict) else None
    return ident if type(ident) is int else None


def _build(value: Any, label: str, path: str, role: str,
           sections: Sequence[SectionInfo]) -> ViewNode:
    scalar = _scalar_text(value)
    if scalar is not None:  # a short tuple or list may be shared: keep its $id
        return ViewNode(label, path, "value", role, text=scalar, node=value, ident=_ident(value))
    if isinstance(value, list):
        view = ViewNode(label, path, "list", role, node=value)
        view.children = [_build(v, f"[{i}]", f"{path}[{i}]", "item", sections)
                         for i, v in enumerate(value)]
        return _summed(view)
    if not isinstance(value, dict):  # pragma: no cover - JSON has no other values
        return ViewNode(label, path, "value", role, text=quote(value), node=value)
    if "$ref" in value:
        return ViewNode(label, path, "ref", role, node=value)
    tag = value.get("$type")
    if tag is None:
        view = ViewNode(label, path, "dict", role, node=value)
        view.children = [_build(v, _key_label(k), join_path(path, k), "field", sections)
                         for k, v in value.items()]
        return _summed(view)
    ident = _ident(value)
    if tag == "numpy.ndarray":
        view = _array_view(value, label, path, role, sections)
        view.ident = ident
        return view
    view = ViewNode(label, path, "object", role, tag=str(tag), node=value, ident=ident)
    view.children = list(_object_children(value, path, sections))
    return _summed(view)


def _object_children(value: dict[str, Any], path: str,
                     sections: Sequence[SectionInfo]) -> Iterator[ViewNode]:
    """Children of a typed node, with the loader's paths (transparent keys skipped)."""
    for key, item in value.items():
        if key in ("$type", "$id"):
            continue
        if key in _TRANSPARENT and isinstance(item, dict):
            for k, v in item.items():
                yield _build(v, _key_label(k), join_path(path, k), _ROLES[key], sections)
        elif key == "items" and value.get("$type") == "dict" and isinstance(item, list):
            yield from _dict_items(item, path, sections)
        elif key in _TRANSPARENT and isinstance(item, list):
            for i, v in enumerate(item):
                yield _build(v, f"[{i}]", f"{path}[{i}]", _ROLES[key], sections)
        else:
            yield _build(item, _key_label(key), join_path(path, key), "field", sections)


def _dict_items(pairs: list[Any], path: str,
                sections: Sequence[SectionInfo]) -> Iterator[ViewNode]:
    """A dict with non-string keys is a list of ``[key, value]`` pairs; label values by key."""
    for i, pair in enumerate(pairs):
        if isinstance(pair, list) and len(pair) == 2:
            key = _scalar_text(pair[0]) or f"[{i}]"
            yield _build(pair[1], f"[{key}]", f"{path}[{i}][1]", "item", sections)
        else:
            yield _build(pair, f"[{i}]", f"{path}[{i}]", "item", sections)


def _array_view(value: dict[str, Any], label: str, path: str, role: str,
                sections: Sequence[SectionInfo]) -> ViewNode:
    dtype, shape = _dtype(value.get("dtype")), value.get("shape")
    view = ViewNode(label, path, "array", role, tag="numpy.ndarray", node=value)
    if dtype is None or not isinstance(shape, list) or not _is_shape(shape):
        view.text = f"array with bad metadata (dtype {quote(value.get('dtype'))})"
        return view
    view.decoded = math.prod(shape) * dtype.itemsize
    text = f"{dtype.name} {_shape_text(shape)}"
    if isinstance(value.get("data"), list):
        view.text = f"{text} = {_inline_values(value['data'])}"
        view.inline = view.decoded
        return view
    if "fill" in value:  # one value repeated: nothing stored but the value itself
        view.text = f"{text} filled with {_inline_values([value['fill']])[1:-1]}"
        view.filled = view.decoded
        return view
    index = value.get("section")
    if type(index) is int and 0 <= index < len(sections):
        info = sections[index]
        section_bytes = info.length * info.dtype.itemsize
        # Arrays share sections: apportion the section's stored bytes by decoded share.
        view.stored = view.decoded / section_bytes * info.nbytes if section_bytes else 0.0
    view.text = text
    return view


def _summed(view: ViewNode) -> ViewNode:
    # References add nothing: the shared object's bytes are counted where it is defined.
    view.decoded = sum(c.decoded for c in view.children)
    view.stored = sum(c.stored for c in view.children)
    view.inline = sum(c.inline for c in view.children)
    view.filled = sum(c.filled for c in view.children)
    return view


# --------------------------------------------------------------------------------------------
# Scalars and small values as text
# --------------------------------------------------------------------------------------------


def _scalar_text(value: Any) -> str | None:
    """Python-like text for scalars and short literals, or None when ``value`` is not one."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        return quote(value, 48)
    if isinstance(value, list):  # shapes, feature names: short lists read best inline
        return _sequence_text(value, "[", "]")
    if not isinstance(value, dict):
        return None
    tag = value.get("$type")
    text = value.get("value")
    if tag in ("int", "float") and isinstance(text, str):
        return text[:40] + ("..." if len(text) > 40 else "")
    if tag == "numpy.scalar" and _scalar_text(value.get("value")) is not None:
        return _scalar_text(value.get("value"))
    if tag == "numpy.dtype":
        return f"dtype({quote(value.get('dtype'), 40)})"
    if tag in _SEQUENCES and isinstance(value.get("items"), list):
        return _sequence_text(value["items"], *_SEQUENCES[tag])
    return None


def _sequence_text(items: list[Any], opening: str, closing: str) -> str | None:
    texts = [_scalar_text(v) for v in items]
    present = [t for t in texts if t is not None]
    if len(present) != len(texts):
        return None
    shown: list[str] = []
    for text in present:  # as many items as fit the inline width, then a count
        if shown and sum(len(t) + 2 for t in shown) + len(text) > _INLINE_WIDTH - 20:
            break
        shown.append(text)
    more = f", ... {len(items)} items" if len(shown) < len(items) else ""
    comma = "," if opening == "(" and len(items) == 1 else ""
    return opening + ", ".join(shown) + comma + more + closing


def _inline_values(data: list[Any]) -> str:
    # Short forms: the exact values are in `--json`; this line is for reading.
    texts = [f"{v:.6g}" if type(v) is float else (_scalar_text(v) or "?")
             for v in data[:_INLINE_ITEMS]]
    shown = ", ".join(texts)
    return "[" + shown + (f", ... {len(data)} values" if len(data) > _INLINE_ITEMS else "") + "]"


def _dtype(text: Any) -> np.dtype[Any] | None:
    # Only the plain kinds the format allows; anything else is shown as bad metadata.
    if not isinstance(text, str) or len(text) > 16 or text[1:2] not in tuple("biufcUSMm"):
        return None
    try:
        return np.dtype(text)
    except (TypeError, ValueError):
        return None


def _is_shape(shape: Any) -> bool:
    return (isinstance(shape, list) and len(shape) <= 64
            and all(type(n) is int and 0 <= n < 1 << 62 for n in shape))


def _shape_text(shape: list[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _key_label(key: Any) -> str:
    if isinstance(key, str) and key.isidentifier() and len(key) <= 80:
        return key
    return quote(key, 40)


def _plain(value: Any) -> str:
    """A short printable string as is (versions, names); anything else quoted."""
    text = str(value)
    if type(value) in (str, int) and len(text) <= 40 and text.isprintable() and " " not in text:
        return text
    return quote(value, 40)


def short_tag(tag: str | None) -> str:
    """The class name of a tag (``sklearn.tree.DecisionTreeClassifier`` -> its last part)."""
    if tag is None:
        return "?"
    if not _SAFE_TAG.match(tag):
        return quote(tag, 60)
    return tag.rsplit(".", 1)[-1].rsplit(":", 1)[-1]


def safe_tag(tag: str) -> str:
    """The tag itself when it is a plain dotted name, else a quoted, bounded form."""
    return tag if _SAFE_TAG.match(tag) else quote(tag, 60)


def format_bytes(n: float) -> str:
    """Human-readable size with decimal units (``12.3 MB``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def _sizes(view: ViewNode) -> str:
    """Decoded bytes, and where the values are: sections (stored bytes), inline, or fills."""
    if not view.decoded:
        return ""
    if view.in_sections:
        return f"{format_bytes(view.decoded)} decoded / {format_bytes(view.stored)} stored"
    if not view.filled:  # every array below is written in the manifest
        return f"{format_bytes(view.decoded)} inline"
    if not view.inline:
        return f"{format_bytes(view.decoded)} as fills"
    return (f"{format_bytes(view.decoded)} decoded: {format_bytes(view.inline)} inline, "
            f"{format_bytes(view.filled)} as fills")


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@dataclass
class RenderOptions:
    """How much of the tree ``render`` prints.

    Attributes
    ----------
    depth : int or None
        Deepest level printed (the root is level 0); None prints everything.
    items : int
        Children shown from a long list of similar objects.
    width : int
        Line width for wrapped parameter lists.
    """

    depth: int | None = None
    items: int = 3
    width: int = 100


def render(view: ViewNode, options: RenderOptions | None = None) -> list[str]:
    """Render a view as indented lines.

    Parameters
    ----------
    view : ViewNode
        From :func:`build_view`.
    options : RenderOptions, optional

    Returns
    -------
    list of str
    """
    options = options or RenderOptions()
    lines: list[str] = []
    _render_node(view, 0, options, lines, root=True)
    return lines


def _render_node(view: ViewNode, level: int, options: RenderOptions, lines: list[str],
                 *, root: bool = False) -> None:
    pad = "  " * level
    name = "" if root else f"{view.label}: "
    if view.kind in ("value", "array", "ref"):
        lines.append(_join(f"{pad}{name}{_leaf_text(view)}", _sizes(view)))
        return
    if view.kind == "list" and _similar(view.children) and len(view.children) > options.items:
        _render_long_list(view, level, options, lines, name)
        return
    children = view.children
    head = _head(view, root)
    member = _named_member(view)
    if member is not None:  # ('scaler', StandardScaler): show the pair as one node
        head = "(" + ", ".join(short_tag(c.tag) if c is member else _value_text(c) or c.text
                               for c in children) + ")"
        children = member.children
    lines.append(_join(f"{pad}{name}{head}", _sizes(view)))
    if options.depth is not None and level >= options.depth:
        if children:
            lines[-1] += "  ..."
        return
    _render_children(children, level + 1, options, lines)


def _named_member(view: ViewNode) -> ViewNode | None:
    """The one object of a tuple like a pipeline step ``(name, estimator)``, if it is one."""
    if view.tag != "tuple" or len(view.children) > 4:
        return None
    objects = [c for c in view.children if c.kind == "object"]
    rest = [c for c in view.children if len(_value_text(c) or "x" * (_INLINE_WIDTH + 1))
            <= _INLINE_WIDTH]
    if len(objects) == 1 and len(objects) + len(rest) == len(view.children):
        return objects[0]
    return None


def _value_text(view: ViewNode) -> str | None:
    """The text of a short value, or of the value a reference points to."""
    if view.kind == "value":
        return view.text
    if view.kind == "ref" and view.target is not None and view.target.kind == "value":
        return view.target.text
    return None


def _render_children(children: list[ViewNode], level: int, options: RenderOptions,
                     lines: list[str]) -> None:
    # Short scalars go on one wrapped line per role (params, attrs...), the rest one per line.
    groups: dict[str, list[str]] = {}
    for child in children:
        if child.kind == "value" and len(child.text) <= _INLINE_WIDTH:
            groups.setdefault(child.role, []).append(f"{child.label}={child.text}")
    pad = "  " * level
    for role, pairs in groups.items():
        lines.extend(_wrap(f"{pad}{_group_name(role)}: ", pairs, options.width))
    rest = [c for c in children if not (c.kind == "value" and len(c.text) <= _INLINE_WIDTH)]
    for run in _item_runs(rest):
        for child in run[:options.items] if len(run) > options.items + 1 else run:
            _render_node(child, level, options, lines)
        if len(run) > options.items + 1:
            hidden = run[options.items:]
            what = short_tag(run[0].tag) if run[0].kind == "object" else run[0].kind
            sizes = _sizes(_summed(ViewNode("", "", "list", children=hidden)))
            lines.append(f"{pad}... {len(hidden)} more {what}" + (f" ({sizes})" if sizes else ""))


def runs(children: list[ViewNode],
         continues: Callable[[list[ViewNode], ViewNode], bool]) -> Iterator[list[ViewNode]]:
    """Split ``children`` into runs of consecutive nodes for which ``continues(run, child)``."""
    run: list[ViewNode] = []
    for child in children:
        if run and continues(run, child):
            run.append(child)
            continue
        if run:
            yield run
        run = [child]
    if run:
        yield run


def _item_runs(children: list[ViewNode]) -> Iterator[list[ViewNode]]:
    """Consecutive items of one kind and type (the trees of an object array) form one run."""
    return runs(children, lambda run, child: child.role == "item" and run[-1].role == "item"
                and _similar([run[0], child]))


def _render_long_list(view: ViewNode, level: int, options: RenderOptions, lines: list[str],
                      name: str) -> None:
    """``estimators_: 300 x DecisionTreeClassifier, 12.3 MB decoded / 1.4 MB stored``."""
    first = view.children[0]
    what = short_tag(first.tag) if first.kind == "object" else first.kind
    sizes = _sizes(view)
    lines.append("  " * level + f"{name}{len(view.children)} x {what}"
                 + (f", {sizes}" if sizes else ""))
    if options.depth is not None and level >= options.depth:
        lines[-1] += "  ..."
        return
    for child in view.children[:options.items]:
        _render_node(child, level + 1, options, lines)
    rest = len(view.children) - options.items
    lines.append("  " * (level + 1) + f"... {rest} more {what}")


def _similar(children: list[ViewNode]) -> bool:
    """Whether a list is made of children of one kind and type (trees of a forest)."""
    if not children:
        return False
    first = children[0]
    return all(c.kind == first.kind and c.tag == first.tag for c in children)


def _head(view: ViewNode, root: bool) -> str:
    if view.kind == "object":
        tag = view.tag or "?"
        head = f"{short_tag(tag)} [{safe_tag(tag)}]" if root else short_tag(tag)
        if tag == "numpy.object_array" and _is_shape(view.node.get("shape")):
            head += " " + _shape_text(view.node["shape"])
        return head
    if view.kind == "list":
        return f"list of {len(view.children)}"
    return "dict" if view.children else "{}"


def _leaf_text(view: ViewNode) -> str:
    if view.kind == "ref":
        shared = _value_text(view)
        return f"{shared}  (-> {view.text})" if shared is not None else f"-> {view.text}"
    return view.text


def _join(text: str, sizes: str) -> str:
    return f"{text}  ({sizes})" if sizes else text


def _group_name(role: str) -> str:
    return {"param": "params", "attr": "attrs", "item": "items", "field": "fields"}.get(role, role)


def _wrap(prefix: str, pairs: list[str], width: int) -> list[str]:
    return textwrap.wrap(", ".join(pairs), width=max(width, len(prefix) + 20),
                         initial_indent=prefix, subsequent_indent=" " * len(prefix),
                         break_long_words=False, break_on_hyphens=False)


# --------------------------------------------------------------------------------------------
# Header: file, writer, metadata, untrusted types
# --------------------------------------------------------------------------------------------


def _arrays_line(view: ViewNode) -> str:
    parts = []
    if view.in_sections:
        parts.append(f"{format_bytes(view.in_sections)} in sections "
                     f"({format_bytes(view.stored)} stored)")
    if view.filled:
        parts.append(f"{format_bytes(view.filled)} fills")
    if view.inline:
        parts.append(f"{format_bytes(view.inline)} inline")
    return (f"arrays: {format_bytes(view.decoded)} decoded" + (" = " if parts else "")
            + " + ".join(parts))


def render_header(manifest: dict[str, Any], sections: Sequence[SectionInfo], *, file_name: str,
                  file_size: int, manifest_size: int,
                  untrusted: Sequence[tuple[str, str]] | None, problem: str | None,
                  view: ViewNode | None = None) -> list[str]:
    """The lines above the tree: sizes, format, writer versions, metadata, trust.

    The ``arrays`` line adds up to the root line of the tree: the decoded bytes of every array
    of the model (shared ones once), split by where their values are: in sections (whose
    stored, compressed size is given), written inline in the manifest, or one fill value.

    Parameters
    ----------
    manifest : dict
        The parsed manifest.
    sections : sequence of SectionInfo
    file_name : str
    file_size, manifest_size : int
        Bytes of the whole file and of ``manifest.json``.
    untrusted : list of (tag, path) or None
        Types outside the default allow-list; None when validation failed (see ``problem``).
    problem : str or None
        Why the graph did not validate.
    view : ViewNode, optional
        The view of ``manifest["root"]`` (built here when not given).
    """
    if view is None:
        view = build_view(manifest.get("root"), sections)
    stored = sum(info.nbytes for info in sections)
    lines = [
        f"file: {file_name} ({format_bytes(file_size)}: manifest {format_bytes(manifest_size)}, "
        f"{len(sections)} sections {format_bytes(stored)})",
        f"format: {_plain(manifest.get('format'))} version "
        f"{_plain(manifest.get('format_version'))}",
        "writer: " + ", ".join(f"{_plain(k)} {_plain(v)}"
                               for k, v in dict(manifest.get("writer") or {}).items()),
        _arrays_line(view),
    ]
    metadata = build_view(manifest.get("metadata"), sections, label="metadata",
                          path="<metadata>")
    if metadata.kind in ("value", "array"):
        lines.append(f"metadata: {metadata.text}")
    elif metadata.kind == "dict" and all(c.kind == "value" for c in metadata.children):
        lines.extend(_wrap("metadata: ", [f"{c.label}={c.text}" for c in metadata.children],
                           100))
    else:
        head = f" {short_tag(metadata.tag)}" if metadata.kind == "object" else ""
        lines.append(f"metadata:{head}")
        _render_children(metadata.children, 1, RenderOptions(depth=3), lines)
    if problem is not None:
        lines.append(f"validation: FAILED: {problem}")
    elif untrusted:
        lines.append("untrusted types (load needs trusted=[...] for these):")
        lines.extend(f"  {safe_tag(tag)} at {path}" for tag, path in untrusted)
    else:
        lines.append("untrusted types: none")
    return lines
