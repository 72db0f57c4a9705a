"""Type tags and their handlers: the allow-list.

Every node of the object graph names its type by one *tag*.  The registry maps tags to handlers
(save and load code, side by side in one module per family under :mod:`milo_pack.handlers`) and
Python types to tags.  Nothing a file says can add to it: a tag only selects among entries that
our own static tables declare.  The tag that :func:`milo_pack.untrusted_types` reports is exactly
the key used to construct.

**No dependence on history.**  What ``for_tag(tag)``, ``for_object(obj)`` and the allow-list
answer is a function of the tag (or object) and of the installed libraries only, never of what the
process did before.  Handlers are built on first need, from three kinds of entries:

- handlers registered up front (``add``);
- *sources* (``add_source``): a function from a tag to a handler, over a static table, such as
  "every scikit-learn estimator under its public path"; each also lists every tag it can answer,
  for :meth:`Registry.load_all`;
- *lazy module loaders* (``add_lazy(module, loader)``): the loader runs the first time a tag or an
  object of ``module`` (or of a module below it) is needed.  A loader must register only tags
  whose module path starts with ``module`` and types defined under ``module``, so that asking
  for any of them, first thing in a fresh process, finds it (tests check this for every tag and
  every type of the fully loaded registry).

Third-party libraries add their types with :func:`register`.  A user's own estimator class
(a scikit-learn ``BaseEstimator`` subclass outside the allow-list) is saved under its import path
and only loaded when the caller passes that exact tag in ``trusted=``; see
:func:`resolve_trusted_class`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .errors import UntrustedTypeError, quote

if TYPE_CHECKING:  # pragma: no cover
    from .engine import CheckContext, LoadContext, SaveContext

__all__ = ["Handler", "PackedMember", "register", "get_registry", "new_registry", "Registry",
           "resolve_trusted_class", "resolve_trusted_function", "valid_tag"]

SaveFn = Callable[[Any, "SaveContext", str], "dict[str, Any]"]
LoadFn = Callable[["dict[str, Any]", "LoadContext", str], Any]
CheckFn = Callable[["dict[str, Any]", "CheckContext", str], None]
# Given an object whose exact type has no handler, return a handler (or None).
Resolver = Callable[[Any], "Handler | None"]
# ``unpack(node, ctx, path) -> (container, members)``: see Handler.
UnpackFn = Callable[["dict[str, Any]", "LoadContext", str], "tuple[Any, list[PackedMember]]"]

# Plain classes with __slots__ rather than dataclasses: a dataclass costs ~0.3 ms to define at
# import time (generated code is exec'd), and `import milo_pack` is part of every first load.


class _Frozen:
    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __repr__(self) -> str:
        names: tuple[str, ...] = self.__slots__
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{type(self).__name__}({fields})"


class PackedMember(_Frozen):
    """One member of a packed ensemble node, as a lazy load builds it (see ``Handler.unpack``).

    ``path`` is its graph path, ``tag`` the tag of its class, ``nbytes`` roughly what it holds
    built, ``place(obj)`` puts an object in its slot of the container and ``build(ctx)`` builds
    it (reading only its own rows) with the load context given.
    """

    __slots__ = ("path", "tag", "nbytes", "place", "build")
    path: str
    tag: str
    nbytes: int
    place: Callable[[Any], None]
    build: Callable[[LoadContext], Any]

    def __init__(self, path: str, tag: str, nbytes: int, place: Callable[[Any], None],
                 build: Callable[[LoadContext], Any]) -> None:
        for name, value in zip(self.__slots__, (path, tag, nbytes, place, build), strict=True):
            object.__setattr__(self, name, value)


def valid_tag(tag: Any) -> bool:
    """Whether ``tag`` has the tag grammar: ASCII identifiers joined by ``.`` or ``:``."""
    return (isinstance(tag, str) and tag.isascii()
            and all(map(str.isidentifier, tag.replace(":", ".").split("."))))


class Handler(_Frozen):
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
        For a node packing an ensemble's members (a forest's or a boosting model's trees):
        returns the container with empty slots and one :class:`PackedMember` per member, so
        that a lazy load builds each member on first use, from its own rows.
    """

    __slots__ = ("tag", "save", "load", "keys", "required", "check", "types", "trusted", "cls",
                 "memo", "unpack")
    tag: str
    save: SaveFn
    load: LoadFn
    keys: frozenset[str]
    required: frozenset[str]
    check: CheckFn | None
    types: tuple[type, ...]
    trusted: bool
    cls: type | None
    memo: bool
    unpack: UnpackFn | None

    def __init__(self, tag: str, save: SaveFn, load: LoadFn, keys: frozenset[str],
                 required: frozenset[str] = frozenset(), check: CheckFn | None = None,
                 types: tuple[type, ...] = (), trusted: bool = True, cls: type | None = None,
                 memo: bool = True, unpack: UnpackFn | None = None) -> None:
        values = (tag, save, load, keys, required, check, types, trusted, cls, memo, unpack)
        for name, value in zip(self.__slots__, values, strict=True):
            object.__setattr__(self, name, value)


class Source:
    """A family of tags answered by a pure function over a static table (see ``add_source``).

    ``resolve(tag)`` returns the handler for ``tag`` or None; ``tags()`` lists every tag it may
    answer in this installation (importing what it must), for :meth:`Registry.load_all`.
    """

    __slots__ = ("resolve", "tags")

    def __init__(self, resolve: Callable[[str], Handler | None],
                 tags: Callable[[], Iterable[str]]) -> None:
        self.resolve = resolve
        self.tags = tags


class Registry:
    """Tag and type tables.  One process-wide instance, see :func:`get_registry`."""

    def __init__(self) -> None:
        self.by_tag: dict[str, Handler] = {}
        self.by_type: dict[type, Handler] = {}
        self.resolvers: list[Resolver] = []
        # Consulted first for long plain lists/dicts/sets (msgpack payloads, see handlers/bulk).
        self.bulk_resolvers: list[Resolver] = []
        # Consulted first for object arrays: ``resolver(array, save_context)`` may claim the
        # whole array as one packed node (small decision trees of an ensemble, handlers/trees).
        self.pack_resolvers: list[Callable[[Any, Any], Handler | None]] = []
        # Catch-alls consulted only after lazy loading found nothing (user estimators,
        # functions, refusals that explain themselves).
        self.fallback_resolvers: list[Resolver] = []
        # Tag factories for classes a caller trusts by name (user estimators): tag -> builder.
        self.trusted_factories: list[Callable[[Any, str], Handler | None]] = []
        # Module name -> loaders registering that module's handlers, run once on first need.
        # Keys are static (our own tables); a tag from a file only selects among them.
        self.lazy: dict[str, list[Callable[[Registry], None]]] = {}
        self.sources: list[Source] = []
        # Per-registry state of a family (the callables' identity table), by family.
        self.state: dict[str, Any] = {}

    def add(self, handler: Handler, *, replace: bool = False) -> None:
        if not valid_tag(handler.tag):
            raise ValueError(f"bad tag {handler.tag!r}")
        if handler.tag in self.by_tag and not replace:
            raise ValueError(f"tag {handler.tag!r} is already registered")
        self.by_tag[handler.tag] = handler
        for t in handler.types:
            self.by_type[t] = handler

    def add_lazy(self, module: str, loader: Callable[[Registry], None]) -> None:
        """Run ``loader(registry)`` the first time a type of ``module`` (or below) is needed.

        The loader must register only tags whose module path starts with ``module`` and types
        whose ``__module__`` does: anything else would be found or not depending on what the
        process asked for before.
        """
        self.lazy.setdefault(module, []).append(loader)

    def add_source(self, resolve: Callable[[str], Handler | None],
                   tags: Callable[[], Iterable[str]]) -> None:
        """Answer tags missing from ``by_tag`` with ``resolve(tag)`` (a pure function).

        Handlers it returns are registered (cached), types included.  ``tags()`` lists every tag
        it can answer, for :meth:`load_all`.
        """
        self.sources.append(Source(resolve, tags))

    def load_all(self) -> None:
        """Register everything now: the whole allow-list, as an eager registry would hold.

        For tools and tests that want every family registered up front (it imports every
        scikit-learn module, as ``all_estimators()`` does).
        """
        with _LOCK:
            while self.lazy:
                _, loaders = self.lazy.popitem()
                for loader in loaders:
                    loader(self)
            for source in list(self.sources):
                for tag in source.tags():
                    self.for_tag(tag)

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
        """The handler that saves ``obj``, or None."""
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
        """The handler that loads ``tag``: allow-listed, or trusted by name, else None."""
        handler = self.by_tag.get(tag)
        if handler is not None:
            return handler
        if not valid_tag(tag):
            return None
        # Sources first: each answers only its own static table, and asking them does not run
        # the lazy loaders of the tag's module (loading StandardScaler need not build the
        # sklearn.preprocessing function table).
        handler = self._from_sources(tag)
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

    def _from_sources(self, tag: str) -> Handler | None:
        for source in self.sources:
            handler = source.resolve(tag)
            if handler is not None:
                with _LOCK:
                    existing = self.by_tag.get(tag)
                    if existing is not None:
                        return existing
                    self.add(handler)
                return handler
        return None

    def _trusted_handler(self, tag: str) -> Handler | None:
        prefix, _, rest = tag.partition(":")
        if tag.startswith("function:"):
            target: Any = resolve_trusted_function(tag)
        elif rest and prefix in _CLASS_PREFIXES:
            target = resolve_trusted_class(rest)
        else:
            target = resolve_trusted_class(tag)
        for factory in self.trusted_factories:
            handler = factory(target, tag)
            if handler is not None:
                return handler
        raise UntrustedTypeError(
            f"{quote(tag)} is trusted but milo_pack has no way to build it", tags=(tag,))


# Tag prefixes naming a class by its import path (``enum:mypkg.Colour``).
_CLASS_PREFIXES = frozenset({"enum"})


def _import_path(name: str) -> tuple[Any, str, list[str]] | None:
    """``(object, module name, attribute names)`` for a dotted path the *caller* trusted.

    Tries the longest importable module prefix; None if nothing imports or an attribute is
    missing.
    """
    import importlib

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
    if not valid_tag(tag) or ":" in tag:
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
    if not valid_tag(name) or ":" in name or "." not in name:
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
    """Register a handler for a third-party type (see ``docs/ARCHITECTURE.md``).

    Parameters
    ----------
    handler : Handler
        Tag, save/load/check functions, allowed keys and the Python types it saves.
    replace : bool
        Allow replacing an existing tag.
    """
    with _LOCK:
        get_registry().add(handler, replace=replace)


def new_registry() -> Registry:
    """A registry filled as the process-wide one is on first use (nothing resolved yet)."""
    from .handlers import register_all

    registry = Registry()
    register_all(registry)
    return registry


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
