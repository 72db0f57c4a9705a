"""Lazy loading, graph paths and summaries for an open file (:class:`~milo_pack.MiloFile`).

Lazy members
------------
``MiloFile.load(lazy=True)`` builds the model's skeleton eagerly but leaves the members of its
ensembles unbuilt: every item of an attribute named in :data:`LAZY_ATTRS` (forest, bagging,
boosting, voting and stacking ``estimators_``, HistGradientBoosting ``_predictors``), whether a
list, a list of lists, an object array or a packed node (trees stored together, which
their handler's ``unpack`` splits into members built from their own rows), becomes a *member
proxy*.

A member proxy is an instance of a subclass of the member's own class (same name and module) whose
``__dict__`` starts empty.  Why a proxy item rather than a lazy container: scikit-learn reaches
members in every possible way — a Python loop over a list, ``joblib.Parallel`` over a generator,
and Cython code indexing an ``object[:, :]`` memoryview (gradient boosting's ``predict_stages``),
which no container subclass can intercept.  With proxies the containers stay exactly the list or
ndarray scikit-learn expects (``isinstance(x, list)``, ``len``, numpy, Cython all work) and
``isinstance(member, DecisionTreeClassifier)`` holds.

The first use *materializes* the member: its manifest node, already validated with the whole
file at open, is built through the same handlers as an eager load, so its arrays are read,
digest-verified and decoded, and model invariants (tree structure...) are checked, right then.
The built state is published whole, by one reference assignment, and never emptied afterwards
(see "Thread safety" below): members built while they fit in ``cache_bytes`` stay for good
(*resident*: the proxy's ``__dict__`` becomes theirs); past the budget, a member is *transient*:
its state is a plain object that a small ring of recently used members keeps, which inference
methods run on and the ring drops again, so ``cache_bytes=0`` streams.  A member whose
attributes are *set* (by the user) becomes resident, so no change is lost.

Pickling or copying a proxy gives a plain object of the original class; saving a lazily loaded
model with :func:`milo_pack.dump` writes the same bytes as the eager model.
"""

from __future__ import annotations

import ast
import copyreg
import functools
import inspect
import itertools
import math
import os
import re
import threading
import types
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from .codec import SectionInfo, SectionStore
from .engine import CheckContext, LoadContext
from .errors import ContainerError, ManifestError
from .registry import Handler, Registry, UnpackFn

__all__ = [
    "LAZY_ATTRS",
    "DEFAULT_CACHE_BYTES",
    "LazyLoadContext",
    "LazySession",
    "is_lazy_member",
    "is_unbuilt_member",
    "member_of",
    "member_state",
    "plain_type",
    "parse_path",
    "format_path",
    "resolve_path",
    "node_sizes",
    "summarize",
    "format_summary",
]

# Attribute names whose list/array items are ensemble members, for every estimator class alike.
LAZY_ATTRS = frozenset({"estimators_", "_predictors"})
DEFAULT_CACHE_BYTES = 256 << 20
# Transient members kept built however small cache_bytes is (the ring): a member is often read
# again right after a call (IsolationForest reads tree_ after apply), by several joblib threads.
_KEEP = max(2, min(os.cpu_count() or 1, 8) + 1)
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class defined in Python (not a Cython/C type)
_TRANSPARENT = ("params", "attrs", "state", "items")


# --------------------------------------------------------------------------------------------
# Graph paths
# --------------------------------------------------------------------------------------------

_STEP = re.compile(
    r"\.?([A-Za-z_][A-Za-z0-9_]*)"  # .name (the first step has no dot)
    r"|\[(-?\d+)\]"  # [index]
    r"""|\[('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\]""")  # ['quoted key']


def parse_path(path: str) -> list[str | int]:
    """Split a graph path as :func:`~milo_pack.engine.join_path` writes it into its steps.

    ``"estimators_[17].tree_"`` gives ``["estimators_", 17, "tree_"]``; quoted keys
    (``["a key"]``) are read as string literals.  ``""`` and ``"<root>"`` are the root.
    """
    if path in ("", "<root>"):
        return []
    steps: list[str | int] = []
    pos = 0
    while pos < len(path):
        match = _STEP.match(path, pos)
        if match is None or (pos == 0 and path[0] == "."):
            raise KeyError(f"bad graph path {path!r} at character {pos}")
        name, index, quoted = match.groups()
        if name is not None:
            steps.append(name)
        elif index is not None:
            steps.append(int(index))
        else:
            steps.append(ast.literal_eval(quoted))  # a string literal only, by the regex
        pos = match.end()
    return steps


def format_path(steps: list[str | int]) -> str:
    """Join steps as :func:`parse_path` reads them back (the inverse of parsing)."""
    path = ""
    for step in steps:
        if isinstance(step, int):
            path += f"[{step}]"
        elif step.isidentifier():
            path += f".{step}" if path else step
        else:
            path += f"[{step!r}]"
    return path


def _follow_ref(node: Any, ids: dict[int, dict[str, Any]]) -> Any:
    if isinstance(node, dict) and "$ref" in node:
        return ids[node["$ref"]]
    return node


def _step(node: Any, step: str | int) -> Any:
    """One step down from a manifest node, the way the handlers named their children."""
    if isinstance(step, int):
        items = node if isinstance(node, list) else (
            node.get("items") if isinstance(node, dict) else None)
        if isinstance(items, list) and -len(items) <= step < len(items):
            return items[step]
        raise KeyError(step)
    if not isinstance(node, dict) or step.startswith("$"):
        raise KeyError(step)
    if step in node:
        return node[step]
    if "$type" not in node:
        raise KeyError(step)
    # Estimators and objects keep their children under params/attrs/state/items, which the
    # paths leave out; a tree keeps its columns under "nodes", also left out.
    for key in _TRANSPARENT:
        holder = node.get(key)
        if isinstance(holder, dict) and step in holder:
            return holder[step]
    for value in node.values():
        if isinstance(value, dict) and "$type" not in value and step in value:
            return value[step]
    raise KeyError(step)


def resolve_path(root: Any, path: str, ids: dict[int, dict[str, Any]]) -> Any:
    """The manifest node at ``path`` (following ``$ref``); ``KeyError`` when there is none."""
    node = _follow_ref(root, ids)
    for i, step in enumerate(parse_path(path)):
        try:
            node = _follow_ref(_step(node, step), ids)
        except KeyError:
            raise KeyError(f"no object at {path!r} (step {i}: {step!r})") from None
    return node


# --------------------------------------------------------------------------------------------
# Sizes and summaries
# --------------------------------------------------------------------------------------------


def _array_sizes(node: dict[str, Any], sections: list[SectionInfo]) -> tuple[int, int]:
    count = math.prod(node["shape"])
    decoded = count * np.dtype(node["dtype"]).itemsize
    if "section" not in node:
        return decoded, 0  # inline: stored as numbers in the manifest
    info = sections[node["section"]]
    # A section's stored bytes are shared in proportion to elements (chunks compress unevenly,
    # so this is an estimate; reading the chunk tables would cost a request per section).
    return decoded, round(info.nbytes * count / info.length)


def node_sizes(node: Any, sections: list[SectionInfo]) -> tuple[int, int]:
    """``(decoded, stored)`` bytes of every array under a validated node (``$ref`` count 0)."""
    decoded = stored = 0
    stack = [node]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(v for v in value if isinstance(v, (list, dict)))
        elif isinstance(value, dict):
            if value.get("$type") == "numpy.ndarray":
                d, s = _array_sizes(value, sections)
                decoded += d
                stored += s
            else:
                stack.extend(v for k, v in value.items()
                             if isinstance(v, (list, dict)) and not k.startswith("$"))
    return decoded, stored


def _children(node: Any) -> list[tuple[str | int, Any]]:
    if isinstance(node, list):  # plain numbers and strings (a shape, field names) are leaves
        return [(i, v) for i, v in enumerate(node) if isinstance(v, (list, dict))]
    if not isinstance(node, dict) or "$ref" in node or node.get("$type") == "numpy.ndarray":
        return []
    if "$type" not in node:
        return [(k, v) for k, v in node.items() if isinstance(v, (list, dict))]
    out: list[tuple[str | int, Any]] = []
    for key, value in node.items():
        if key.startswith("$"):
            continue
        if key in _TRANSPARENT and isinstance(value, dict):
            out.extend(value.items())
        elif key in _TRANSPARENT and isinstance(value, list):
            out.extend(enumerate(value))
        elif isinstance(value, dict) and "$type" not in value and "$ref" not in value:
            out.extend(value.items())  # a tree's columns: paths leave "nodes" out
        else:
            out.append((key, value))
    return [(k, v) for k, v in out if isinstance(v, (list, dict))]


def _describe(node: Any) -> dict[str, Any]:
    if isinstance(node, list):
        return {"type": "list", "length": len(node)}
    if "$ref" in node:
        return {"type": "$ref", "ref": node["$ref"]}
    tag = node.get("$type", "dict")
    info: dict[str, Any] = {"type": tag}
    if tag == "numpy.ndarray":
        info.update(shape=list(node["shape"]), dtype=node["dtype"])
    elif "shape" in node and isinstance(node["shape"], list):
        info["shape"] = list(node["shape"])
    return info


def summarize(node: Any, sections: list[SectionInfo], *, path: str = "", max_items: int = 3,
              max_depth: int | None = None, _depth: int = 0) -> dict[str, Any]:
    """A readable tree of a validated manifest node: type, shape, dtype, sizes per sub-object.

    Long lists show their first ``max_items`` items and one line for the rest.
    """
    from .engine import join_path

    entry = {"path": path or "<root>", **_describe(node)}
    entry["decoded_bytes"], entry["stored_bytes"] = node_sizes(node, sections)
    kids = _children(node)
    if not kids or (max_depth is not None and _depth >= max_depth):
        return entry
    children = []
    for i, (key, value) in enumerate(kids):
        if isinstance(key, int) and i >= max_items:
            rest = [v for _, v in kids[i:]]
            decoded, stored = node_sizes(rest, sections)
            children.append({"path": f"{path}[{i}:{len(kids)}]", "type": "...",
                             "count": len(rest), "decoded_bytes": decoded,
                             "stored_bytes": stored})
            break
        where = f"{path}[{key}]" if isinstance(key, int) else join_path(path, key)
        children.append(summarize(value, sections, path=where, max_items=max_items,
                                  max_depth=max_depth, _depth=_depth + 1))
    entry["children"] = children
    return entry


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)  # pragma: no cover


def format_summary(entry: dict[str, Any], indent: int = 0) -> str:
    """Render :func:`summarize`'s tree as indented text, one sub-object per line."""
    what = entry["type"]
    if "shape" in entry:
        what += f" {tuple(entry['shape'])}"
    if "dtype" in entry:
        what += f" {entry['dtype']}"
    if "length" in entry:
        what += f" [{entry['length']}]"
    if "count" in entry:
        what = f"{entry['count']} more"
    line = (f"{'  ' * indent}{entry['path']}: {what}  "
            f"(decoded {_size(entry['decoded_bytes'])}, stored {_size(entry['stored_bytes'])})")
    lines = [line] + [format_summary(c, indent + 1) for c in entry.get("children", ())]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Member proxies
# --------------------------------------------------------------------------------------------
#
# Thread safety.  A member's state is built whole, checked, and only then published by one
# reference assignment (``_Member.built``); a published state is never cleared.  Dropping a
# member over budget only forgets that reference: a thread that fetched the state keeps a
# complete object for as long as it uses it, and its memory goes when the last user lets go.
# So no thread sees a half-built or emptied member whatever the others do, and what is held is
# the budget plus the members that threads are using at that moment.
#
# Where the state lives:
# - members built while the resident ones fit in ``cache_bytes``, and members the user changed,
#   are *resident*: the proxy's ``__dict__`` becomes the built object's ``__dict__`` (one
#   pointer swap, so never half there) and stays, and attribute reads run at normal speed;
# - the others are *transient*: the proxy's ``__dict__`` stays empty and the state is a plain
#   object of the member's class held by ``_Member.built``, kept in a small ring of recently
#   used members (``_KEEP``).  Inference methods (``_DELEGATED``) run on that object directly:
#   one look-up per call, normal attribute speed inside, and the call's frame holds the object.
#   Any other attribute read goes through ``__getattr__``, which reads the state it fetched.
# Resident members are never dropped, so a model predicted repeatedly keeps what fits in the
# budget (a scan over more members than fit rebuilds only the ones past the budget, where an
# LRU would rebuild every one of them on every pass).

# Read-only inference methods a transient member runs on its built state.  Methods that may
# change the member (fit, set_params...) run on the proxy, whose first attribute write makes it
# resident (pinned), so the change is kept.
_DELEGATED = frozenset({
    "predict", "predict_proba", "predict_log_proba", "decision_function", "transform",
    "score_samples", "apply", "decision_path", "score", "get_depth", "get_n_leaves",
    "get_params", "predict_binned", "get_n_leaf_nodes", "get_max_depth",
    "compute_partial_dependence", "_validate_X_predict", "_raw_predict",
    "staged_predict", "staged_predict_proba", "staged_decision_function",
})
# The proxy's slot holding its _Member (a slot, not the __dict__: the state lives there).
_SLOT = "_milo_member"
# Use counter: ``next()`` on this C iterator is one atomic step under the GIL, so readers mark
# a member used without taking the session lock.
_CLOCK = itertools.count(1)


@dataclass(eq=False)
class _Member:
    """What a proxy needs to build itself: its node, where it is, and who loads it."""

    node: dict[str, Any]
    path: str
    nbytes: int
    session: LazySession
    parent: LoadContext  # resolves $refs that point outside the member
    inner_ids: frozenset[int]
    # Inner $ids also referenced from outside the member (gradient boosting stages share one
    # RandomState): built once by the parent context, so every reference sees one object.
    shared_ids: frozenset[int] = frozenset()
    # The complete, checked state (a plain object of the member's class), or None.  Assigned
    # once per build; the object is never emptied.
    built: Any = None
    # The proxy's __dict__ is built.__dict__ (kept for good): admitted within the budget, or
    # pinned because the user changed it (pinned members do not count against the budget).
    resident: bool = False
    pinned: bool = False
    # The estimator holding this member, and its path: its cross-member invariants (a stage's
    # features against the estimator's) are checked again when the member is built.
    owner: Any = None
    owner_path: str = ""
    # A packed ensemble's member has no node of its own: its handler's builder reads its rows.
    build: Callable[[LoadContext], Any] | None = None
    # Last use (from _CLOCK), and the last use seen by the ring: a member used since it was
    # last looked at gets a second chance before it is dropped.
    tick: int = 0
    ring_tick: int = 0
    # (thread id, state) while the building thread checks the owner's invariants with it.
    pending: tuple[int, object] | None = None

    @property
    def loaded(self) -> bool:
        """Whether a built state is published (resident or transient)."""
        return self.built is not None


# proxy class -> the descriptor of its member slot.
_PROXY_CLASSES: dict[type, type] = {}
_SLOTS: dict[type, Any] = {}
_PROXY_LOCK = threading.Lock()


def member_of(obj: Any) -> _Member | None:
    """The :class:`_Member` behind a lazy member proxy, or None for any other object."""
    slot = _SLOTS.get(type(obj))
    return None if slot is None else slot.__get__(obj)


def is_lazy_member(obj: Any) -> bool:
    """Whether ``obj`` is a lazily loaded ensemble member (materialized or not)."""
    return type(obj) in _SLOTS


def member_state(obj: Any) -> dict[str, Any] | None:
    """The attributes ``obj`` is built with, for invariant checks.

    ``obj.__dict__`` for an ordinary object; for a lazy member, the ``__dict__`` of its
    published state, or None when it is not built (its checks run when it is).  The thread
    building a member sees the state it is checking before it is published.
    """
    member = member_of(obj)
    if member is None:
        state: dict[str, Any] | None = getattr(obj, "__dict__", None)
        return state
    pending = member.pending
    if pending is not None and pending[0] == threading.get_ident():
        return pending[1].__dict__
    built = member.built
    return None if built is None else built.__dict__


def is_unbuilt_member(obj: Any) -> bool:
    """Whether ``obj`` is a lazy member with no built state (invariant checks skip it: they
    run for it when it is built)."""
    return member_of(obj) is not None and member_state(obj) is None


def plain_type(obj: Any) -> type:
    """``type(obj)``, or the original class for a lazy member proxy."""
    cls = type(obj)
    return cls.__mro__[1] if cls in _SLOTS else cls


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _state_of(proxy: Any) -> Any:
    """The built state of a proxy (a plain object of its class), built first if needed."""
    member = proxy._milo_member
    return member.session.state(proxy, member)


def _delegate(func: Callable[..., Any]) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return func(_state_of(self), *args, **kwargs)

    return functools.update_wrapper(method, func)


def _proxy_methods(base: type[object]) -> dict[str, Any]:
    base_getattr = getattr(base, "__getattr__", None)
    base_fitted = getattr(base, "__sklearn_is_fitted__", None)

    def __getattr__(self: Any, name: str) -> Any:
        # Dunders are protocol probes (numpy, copy, pickle): never fitted state, never a build.
        if not _is_dunder(name) and name != _SLOT:
            # The state fetched here is complete, whatever other threads drop meanwhile.
            state = _state_of(self).__dict__
            if name in state:
                return state[name]
        if base_getattr is not None:
            return base_getattr(self, name)
        raise AttributeError(f"{base.__name__!r} object has no attribute {name!r}")

    def __setattr__(self: Any, name: str, value: Any) -> None:
        member = self._milo_member
        member.session.pin(self, member)  # a changed member must never be dropped and rebuilt
        base.__setattr__(self, name, value)

    def __delattr__(self: Any, name: str) -> None:
        member = self._milo_member
        member.session.pin(self, member)
        base.__delattr__(self, name)

    def __getstate__(self: Any) -> Any:
        # object.__getstate__ exists from Python 3.11 (mypy checks 3.10); estimators define one.
        return base.__getstate__(_state_of(self))  # type: ignore[attr-defined]

    def __reduce_ex__(self: Any, protocol: int) -> Any:
        # Pickle and copy see a plain object of the original class (no milo_pack needed);
        # _reconstructor because pickle refuses __newobj__ with a class other than type(self).
        # copyreg._reconstructor is private: typeshed does not list it.
        return (copyreg._reconstructor,  # type: ignore[attr-defined]
                (base, object, None), self.__getstate__())

    def __sklearn_is_fitted__(self: Any) -> bool:
        state = _state_of(self)
        if base_fitted is not None:
            return bool(base_fitted(state))
        return any(k.endswith("_") and not k.startswith("__") for k in vars(state))

    methods: dict[str, Any] = {
        "__getattr__": __getattr__, "__setattr__": __setattr__, "__delattr__": __delattr__,
        "__getstate__": __getstate__, "__reduce_ex__": __reduce_ex__,
        "__sklearn_is_fitted__": __sklearn_is_fitted__, "__slots__": (_SLOT,),
        "__module__": base.__module__, "__qualname__": base.__qualname__,
        "__doc__": base.__doc__}
    for name in _DELEGATED:
        try:
            func = inspect.getattr_static(base, name)
        except AttributeError:
            continue
        if isinstance(func, types.FunctionType):  # not properties, available_if, classmethods
            methods[name] = _delegate(func)
    return methods


def _proxy_class(handler: Handler, registry: Registry) -> type | None:
    """The proxy subclass for a handler's class, or None when it cannot have one."""
    base = handler.cls
    if base is None or not base.__flags__ & _HEAPTYPE or not base.__dictoffset__:
        return None  # Cython/C types and __slots__ classes keep state outside __dict__
    with _PROXY_LOCK:
        proxy = _PROXY_CLASSES.get(base)
        if proxy is None:
            proxy = type(base.__name__, (base,), _proxy_methods(base))
            _SLOTS[proxy] = proxy.__dict__[_SLOT]
            _PROXY_CLASSES[base] = proxy
        # Saving a proxy is saving the original class: same handler, same tag.
        registry.by_type.setdefault(proxy, handler)
    return proxy


def _new_proxy(proxy_cls: type[object], member: _Member) -> Any:
    proxy = proxy_cls.__new__(proxy_cls)  # as the handlers do: no __init__ runs
    _SLOTS[proxy_cls].__set__(proxy, member)
    return proxy


class _Ring:
    """The few most recently used transient members (the session lock guards it).

    Second chance: a member used since the ring last looked at it goes to the back instead of
    being dropped, so members that threads are predicting with stay built.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[int, _Member] = OrderedDict()

    def add(self, member: _Member) -> list[_Member]:
        member.ring_tick = member.tick = next(_CLOCK)
        self.items[id(member)] = member
        dropped: list[_Member] = []
        chances = len(self.items)
        while len(self.items) > self.size:
            key, oldest = self.items.popitem(last=False)
            if chances > 0 and oldest.tick > oldest.ring_tick:
                chances -= 1
                oldest.ring_tick = oldest.tick
                self.items[key] = oldest
                continue
            dropped.append(oldest)
        return dropped

    def discard(self, member: _Member) -> None:
        self.items.pop(id(member), None)


class LazySession:
    """State shared by the members of one lazy load: the open file, the budget, one lock.

    The lock serializes builds (one member is never built twice at once) and the budget's
    book-keeping; reading a published member takes no lock.
    """

    def __init__(self, handle: Any, check: CheckContext, cache_bytes: int | None,
                 mmap: bool) -> None:
        self.handle = handle  # keeps the file open while the model lives
        self.check = check
        self.mmap = mmap
        self.lock = threading.RLock()
        self.cache_bytes = cache_bytes
        self.resident_bytes = 0
        self.ring = _Ring(_KEEP)
        if cache_bytes == 0:
            store = getattr(handle, "store", None)
            if store is not None:
                store.stream()  # least memory: one decoded chunk per section at most
        self.builds = 0
        self.checked: dict[int, Any] = {}  # invariants.check_member's memo (under self.lock)
        # $id -> graph paths of the $refs to it: decides which members may be lazy.
        self.ref_paths: dict[int, list[str]] = {}
        for ident, where in check.refs:
            self.ref_paths.setdefault(ident, []).append(where)

    def state(self, proxy: Any, member: _Member) -> Any:
        """The member's published state, built (and published) first if there is none."""
        built = member.built
        if built is None:
            built = self._build(proxy, member)
        member.tick = next(_CLOCK)
        return built

    def _build(self, proxy: Any, member: _Member) -> Any:
        with self.lock:
            if member.built is not None:  # another thread built it while this one waited
                return member.built
            if getattr(self.handle, "closed", False):
                raise ContainerError(
                    "the file this model was lazily loaded from is closed; keep the "
                    "handle open while using the model", member.path)
            obj = _MemberContext(self, member, proxy).build()
            member.pending = (threading.get_ident(), obj)
            try:
                _check_owner(member, proxy, self.checked)
            finally:
                member.pending = None
            self.builds += 1
            if self.cache_bytes is None or self.resident_bytes + member.nbytes <= self.cache_bytes:
                self.resident_bytes += member.nbytes
                _install(proxy, obj)
                member.resident = True
                member.built = obj
            else:
                member.built = obj  # published whole; the ring may drop others now
                for dropped in self.ring.add(member):
                    dropped.built = None
            return obj

    def pin(self, proxy: Any, member: _Member) -> None:
        """Make a member resident for good: the user is changing it."""
        with self.lock:
            obj = self.state(proxy, member)
            member.pinned = True
            if not member.resident:
                self.ring.discard(member)
                _install(proxy, obj)
                member.resident = True

    def referenced_outside(self, ids: frozenset[int], path: str) -> frozenset[int]:
        """Those of ``ids`` that a ``$ref`` outside ``path``'s subtree points at."""
        def inside(where: str) -> bool:
            return where.startswith(path) and where[len(path):len(path) + 1] in (".", "[")

        return frozenset(ident for ident in ids
                         if not all(inside(w) for w in self.ref_paths.get(ident, ())))


def _install(proxy: Any, obj: Any) -> None:
    """Give the proxy the built object's ``__dict__`` (the same dict: one pointer swap)."""
    object.__setattr__(proxy, "__dict__", obj.__dict__)


def _check_owner(member: _Member, proxy: Any, memo: dict[int, Any]) -> None:
    """Run the owner's load-time invariants again for this member, now that it has state."""
    if member.owner is not None:
        from .handlers.invariants import check_member

        check_member(member.owner, member.owner_path, proxy, memo)


def _inner_ids(node: dict[str, Any]) -> frozenset[int]:
    """``$id``s defined strictly inside a member node."""
    ids = set()
    stack: list[Any] = [v for k, v in node.items() if not k.startswith("$")]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(v for v in value if isinstance(v, (list, dict)))
        elif isinstance(value, dict):
            if type(value.get("$id")) is int:
                ids.add(value["$id"])
            stack.extend(v for v in value.values() if isinstance(v, (list, dict)))
    return frozenset(ids)


class LazyLoadContext(LoadContext):
    """A :class:`LoadContext` that leaves ensemble members as proxies (see the module doc)."""

    def __init__(self, registry: Registry, store: SectionStore | None, check: CheckContext,
                 session: LazySession) -> None:
        super().__init__(registry, store, check, mmap=session.mmap)
        self.session = session
        if session.cache_bytes == 0:
            self.prefetch = 0  # streaming for least memory: no chunks decoded ahead
        self._orphans: list[_Member] = []  # members whose owner is still being built

    def decode(self, value: Any, path: str) -> Any:
        if isinstance(value, (list, dict)) and _is_member_slot(path):
            built = self._members(value, path)
            if built is not None:
                return built
        obj = super().decode(value, path)
        if self._orphans and isinstance(value, dict) and "$type" in value:
            self._adopt(obj, path)
        return obj

    def _adopt(self, obj: Any, path: str) -> None:
        """Give members created under ``path`` their owner, now that it is built."""
        for member in [m for m in self._orphans if m.owner_path == path]:
            member.owner = obj
            self._orphans.remove(member)

    def _members(self, value: Any, path: str) -> Any:
        """The container of an ensemble attribute, its items proxies; None if not one."""
        if isinstance(value, dict) and isinstance(value.get("$type"), str):
            handler = self.registry.for_tag(value["$type"], self.trusted)
            if handler is not None and handler.unpack is not None:
                return self._unpacked(handler, value, path)
        if isinstance(value, list):
            return [self._member(v, f"{path}[{i}]", path) for i, v in enumerate(value)]
        if value.get("$type") == "numpy.object_array" and isinstance(value.get("items"), list):
            result = np.empty(tuple(value["shape"]), dtype=object)
            self.register(value, result)
            flat = result.reshape(-1)
            for i, item in enumerate(value["items"]):
                flat[i] = self._member(item, f"{path}[{i}]", path)
            return result
        return None

    def _unpacked(self, handler: Handler, value: dict[str, Any], path: str) -> Any:
        """A packed ensemble (trees): proxies, each built from its own rows of the pack."""
        # _members() sends here only handlers that have an unpack.
        container, members = cast(UnpackFn, handler.unpack)(value, self, path)
        self.register(value, container)
        proxy_classes: dict[str, type | None] = {}  # one class for every member, as a rule
        for packed in members:
            if packed.tag not in proxy_classes:
                member_handler = self.registry.for_tag(packed.tag, self.trusted)
                proxy_classes[packed.tag] = (_proxy_class(member_handler, self.registry)
                                             if member_handler is not None else None)
            proxy_cls = proxy_classes[packed.tag]
            if proxy_cls is None:
                packed.place(packed.build(self))
                continue
            member = _Member(node={}, path=packed.path, nbytes=packed.nbytes,
                             session=self.session, parent=self, inner_ids=frozenset(),
                             owner_path=path.rpartition(".")[0], build=packed.build)
            self._orphans.append(member)
            packed.place(_new_proxy(proxy_cls, member))
        return container

    def _member(self, value: Any, path: str, slot: str) -> Any:
        if isinstance(value, list):  # HistGradientBoosting: one list of predictors per stage
            return [self._member(v, f"{path}[{i}]", slot) for i, v in enumerate(value)]
        proxy = self._proxy(value, path, slot) if isinstance(value, dict) else None
        return self.decode(value, path) if proxy is None else proxy

    def _proxy(self, node: dict[str, Any], path: str, slot: str) -> Any:
        tag = node.get("$type")
        if not isinstance(tag, str) or "$ref" in node:
            return None
        handler = self.registry.for_tag(tag, self.trusted)
        proxy_cls = _proxy_class(handler, self.registry) if handler is not None else None
        if proxy_cls is None:
            return None
        inner = _inner_ids(node)
        member = _Member(node=node, path=path,
                         nbytes=node_sizes(node, self.session.check.sections)[0],
                         session=self.session, parent=self, inner_ids=inner,
                         shared_ids=self.session.referenced_outside(inner, path),
                         owner_path=slot.rpartition(".")[0])
        proxy = _new_proxy(proxy_cls, member)
        self.register(node, proxy)
        self._orphans.append(member)
        return proxy


def _is_member_slot(path: str) -> bool:
    return path.rpartition(".")[2] in LAZY_ATTRS


class _MemberContext(LazyLoadContext):
    """Builds one member: its own ``$id``s stay inside, others resolve in the parent context."""

    def __init__(self, session: LazySession, member: _Member, proxy: Any) -> None:
        super().__init__(member.parent.registry, member.parent.store, session.check, session)
        self.member = member
        self.proxy = proxy

    def build(self) -> Any:
        if self.member.build is not None:
            # Shared values ($ids of the pack) resolve in the parent, which memoizes them.
            return self.member.build(self.member.parent)
        node = self.member.node
        handler = self.registry.for_tag(node["$type"], self.trusted)
        if handler is None:  # pragma: no cover - validated at load
            raise ManifestError("unknown type", self.member.path)
        return handler.load(node, self, self.member.path)

    def decode(self, value: Any, path: str) -> Any:
        if isinstance(value, dict) and value.get("$id") in self.member.shared_ids:
            return self.member.parent.decode(value, path)  # memoized there, built once
        return super().decode(value, path)

    def register(self, node: dict[str, Any], obj: Any) -> None:
        if node is not self.member.node:  # the member's own $id stays the proxy
            super().register(node, obj)

    def _resolve(self, ident: int, path: str) -> Any:
        if ident == self.member.node.get("$id"):
            return self.proxy
        if ident in self.member.inner_ids and ident not in self.member.shared_ids:
            return super()._resolve(ident, path)
        return self.member.parent._resolve(ident, path)
