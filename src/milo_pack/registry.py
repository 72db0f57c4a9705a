"""Type tags and their handlers: the allow-list.

Every node of the object graph names its type by one *tag*.  The registry maps tags to handlers
(save and load code, side by side in one module per family under :mod:`milo_pack.handlers`) and
Python types to tags.  It is filled at import time from static lists and from scikit-learn's own
estimator list; nothing a file says can add to it.  The tag that :func:`milo_pack.untrusted_types`
reports is exactly the key used to construct.

Third-party libraries add their types with :func:`register`.  A user's own estimator class
(a scikit-learn ``BaseEstimator`` subclass outside the allow-list) is saved under its import path
and only loaded when the caller passes that exact tag in ``trusted=``; see
:func:`resolve_trusted_class`.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import UntrustedTypeError, quote

if TYPE_CHECKING:  # pragma: no cover
    from .engine import CheckContext, LoadContext, SaveContext

__all__ = ["Handler", "PackedMember", "register", "get_registry", "Registry",
           "resolve_trusted_class", "resolve_trusted_function"]

SaveFn = Callable[[Any, "SaveContext", str], dict]
LoadFn = Callable[[dict, "LoadContext", str], Any]
CheckFn = Callable[[dict, "CheckContext", str], None]
# Given an object whose exact type has no handler, return a handler (or None).
Resolver = Callable[[Any], "Handler | None"]



@dataclass(frozen=True)
class PackedMember:
    """One member of a packed ensemble node, as a lazy load builds it (see ``Handler.unpack``).

    ``path`` is its graph path, ``tag`` the tag of its class, ``nbytes`` roughly what it holds
    built, ``place(obj)`` puts an object in its slot of the container and ``build(ctx)`` builds
    it (reading only its own rows) with the load context given.
    """

    path: str
    tag: str
    nbytes: int
    place: Callable[[Any], None]
    build: Callable[[LoadContext], Any]


# ``unpack(node, ctx, path) -> (container, members)``: see Handler.
UnpackFn = Callable[[dict, "LoadContext", str], "tuple[Any, list[PackedMember]]"]

_TAG_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*([.:][A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Handler:
    """How one tag is saved, checked and loaded.

    Parameters
    ----------
    tag : str
        The registry key written in ``"$type"``.
    save : callable
        ``save(obj, ctx, path) -> dict``: the node's fields (without ``$type``), children encoded
        through ``ctx.encode``/``ctx.array``, in document order.
    load : callable
        ``load(node, ctx, path) -> object``.  Called only after the whole manifest was validated.
    keys : frozenset of str
        The fields a node of this tag may have; anything else is refused.
    required : frozenset of str
        Fields it must have.
    check : callable, optional
        ``check(node, ctx, path)``: extra validation run in the validation pass, before anything
        is built (parameter names, array metadata...).
    types : tuple of type
        Python types saved by this handler (matched exactly, not by ``isinstance``).
    trusted : bool
        Whether files may use the tag without the caller trusting it by name.
    cls : type, optional
        The class a generic handler builds (estimators, plain objects).
    memo : bool
        Whether identity is tracked (shared references become ``$ref``).
    unpack : callable, optional
        For a node packing an ensemble's members (a boosting model's small trees): returns the
        container with empty slots and one :class:`PackedMember` per member, so that a lazy
        load builds each member on first use, from its own rows, like a forest's trees.
    """

    tag: str
    save: SaveFn
    load: LoadFn
    keys: frozenset[str]
    required: frozenset[str] = frozenset()
    check: CheckFn | None = None
    types: tuple[type, ...] = ()
    trusted: bool = True
    cls: type | None = None
    memo: bool = True
    unpack: UnpackFn | None = None


@dataclass
class Registry:
    """Tag and type tables.  One process-wide instance, see :func:`get_registry`."""

    by_tag: dict[str, Handler] = field(default_factory=dict)
    by_type: dict[type, Handler] = field(default_factory=dict)
    resolvers: list[Resolver] = field(default_factory=list)
    # Consulted first for long plain lists/dicts/sets (msgpack payloads, see handlers/bulk.py).
    bulk_resolvers: list[Resolver] = field(default_factory=list)
    # Consulted first for object arrays: ``resolver(array, save_context)`` may claim the whole
    # array as one packed node (small decision trees of a boosting model, handlers/trees.py).
    pack_resolvers: list[Callable[[Any, Any], Handler | None]] = field(default_factory=list)
    # Catch-alls consulted only after lazy loading found nothing (user estimators, functions).
    fallback_resolvers: list[Resolver] = field(default_factory=list)
    # Tag factories for classes a caller trusts by name (user estimators): tag -> builder.
    trusted_factories: list[Callable[[type, str], Handler | None]] = field(default_factory=list)
    # Module name -> loaders registering that module's handlers, run once on first need, so that
    # loading a linear model does not import every scikit-learn module (or xgboost).  Keys are
    # static (our own tables); a tag from a file only selects among them.
    lazy: dict[str, list[Callable[[Registry], None]]] = field(default_factory=dict)

    def add(self, handler: Handler, *, replace: bool = False) -> None:
        if not _TAG_RE.match(handler.tag):
            raise ValueError(f"bad tag {handler.tag!r}")
        if handler.tag in self.by_tag and not replace:
            raise ValueError(f"tag {handler.tag!r} is already registered")
        self.by_tag[handler.tag] = handler
        for t in handler.types:
            self.by_type[t] = handler

    def add_lazy(self, module: str, loader: Callable[[Registry], None]) -> None:
        """Run ``loader(registry)`` the first time a type of ``module`` (or below) is needed."""
        self.lazy.setdefault(module, []).append(loader)

    def load_all(self) -> None:
        """Run every pending lazy loader: the whole allow-list, as an eager registry would hold.

        For tools and tests that want every family registered up front (it imports every
        scikit-learn module, as ``all_estimators()`` does).
        """
        with _LOCK:
            while self.lazy:
                _, loaders = self.lazy.popitem()
                for loader in loaders:
                    loader(self)

    def _load_lazy(self, dotted: str) -> bool:
        """Run the pending loaders of ``dotted`` and of each package above it."""
        parts = dotted.split(".")
        ran = False
        with _LOCK:
            for i in range(len(parts), 0, -1):
                for loader in self.lazy.pop(".".join(parts[:i]), ()):
                    loader(self)
                    ran = True
        return ran

    def _specific(self, obj: Any) -> Handler | None:
        handler = self.by_type.get(type(obj))
        if handler is not None:
            return handler
        for resolver in self.resolvers:
            handler = resolver(obj)
            if handler is not None:
                return handler
        return None

    def for_object(self, obj: Any) -> Handler | None:
        handler = self._specific(obj)
        if handler is not None:
            return handler
        modules = {type(obj).__module__, getattr(obj, "__module__", None)}
        if any(self._load_lazy(m) for m in modules if isinstance(m, str)):
            handler = self._specific(obj)
            if handler is not None:
                return handler
        for resolver in self.fallback_resolvers:
            handler = resolver(obj)
            if handler is not None:
                return handler
        return None

    def for_tag(self, tag: str, trusted: frozenset[str] = frozenset()) -> Handler | None:
        handler = self.by_tag.get(tag)
        if handler is not None:
            return handler
        module = tag.rpartition(":")[2].rpartition(".")[0]
        if module and self._load_lazy(module):
            handler = self.by_tag.get(tag)
            if handler is not None:
                return handler
        if tag in trusted:
            return self._trusted_handler(tag)
        return None

    def _trusted_handler(self, tag: str) -> Handler | None:
        if tag.startswith("function:"):
            target: Any = resolve_trusted_function(tag)
        else:
            target = resolve_trusted_class(tag)
        for factory in self.trusted_factories:
            handler = factory(target, tag)
            if handler is not None:
                return handler
        raise UntrustedTypeError(
            f"{quote(tag)} is trusted but milo_pack has no way to build it", tags=(tag,))


def _import_path(name: str) -> tuple[Any, str, list[str]] | None:
    """``(object, module name, attribute names)`` for a dotted path the *caller* trusted.

    Tries the longest importable module prefix; None if nothing imports or an attribute is
    missing.
    """
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name, attrs = ".".join(parts[:split]), parts[split:]
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        for attr in attrs:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return obj, module_name, attrs
    return None


def resolve_trusted_class(tag: str) -> type:
    """Import the class a caller trusted by name (``package.module.Class``).

    Only ever called with a tag that the *caller* listed in ``trusted=``: importing a module named
    by the file alone is exactly what SECURITY.md rule 1 forbids.
    """
    if not _TAG_RE.match(tag) or ":" in tag:
        raise UntrustedTypeError(f"trusted tag {quote(tag)} is not an import path", tags=(tag,))
    found = _import_path(tag)
    if found is not None and isinstance(found[0], type):
        return found[0]
    raise UntrustedTypeError(f"trusted type {quote(tag)} cannot be imported", tags=(tag,))


def resolve_trusted_function(tag: str) -> Any:
    """Import the plain Python function a caller trusted by name (``function:module.f``).

    Like :func:`resolve_trusted_class`, only ever called with a tag the *caller* listed in
    ``trusted=``; anything but a plain function defined under that very name is refused.
    """
    import types

    name = tag[len("function:"):]
    if not _TAG_RE.match(name) or ":" in name or "." not in name:
        raise UntrustedTypeError(f"trusted tag {quote(tag)} is not a function path", tags=(tag,))
    found = _import_path(name)
    if found is not None:
        obj, module_name, attrs = found
        if (type(obj) is types.FunctionType and obj.__module__ == module_name
                and obj.__qualname__ == ".".join(attrs)):
            return obj
    raise UntrustedTypeError(f"trusted function {quote(tag)} cannot be imported as a plain "
                             "Python function", tags=(tag,))


_REGISTRY = Registry()
_LOADED = False
_LOCK = threading.RLock()


def register(handler: Handler, *, replace: bool = False) -> None:
    """Register a handler for a third-party type (see ``docs/EXTENDING.md`` in the README).

    Parameters
    ----------
    handler : Handler
        Tag, save/load/check functions, allowed keys and the Python types it saves.
    replace : bool
        Allow replacing an existing tag.
    """
    with _LOCK:
        _REGISTRY.add(handler, replace=replace)


def get_registry() -> Registry:
    """The process-wide registry, filled on first use; families load lazily by module."""
    global _LOADED
    if not _LOADED:
        with _LOCK:
            if not _LOADED:
                from .handlers import register_all

                register_all(_REGISTRY)
                _LOADED = True
    return _REGISTRY
