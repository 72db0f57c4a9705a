"""The vocabulary of declared invariants: kinds of values, attributes, rules and specs.

A :class:`Spec` states, for every instance of one scikit-learn class (and its subclasses), which
attributes must exist (:class:`Attr`), their exact kinds (:class:`Kind`) and how their shapes
relate, through *dimension symbols*: the first attribute that mentions a symbol (``"F"`` for the
feature count) binds it to what it holds, every later mention must hold the same number.  What a
symbol cannot say is a :class:`Rule`, a documented function of the checked values.

Checking fails closed: an attribute that is missing, of another type, or of another shape raises
:class:`~milo_pack.errors.InvariantError` naming it and the graph path; nothing is skipped.  Only
two things are normalised, for checking only (the object keeps what the file holds): numpy integer
scalars count as ints, numpy floats as reals.  A bool is never an int, a float never an int.

Attributes are read from the instance ``__dict__``, never through properties (which would run code
on unchecked state).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from itertools import chain, repeat
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:  # typing has it from Python 3.11 only; the checker's stubs know both
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**_: Any) -> Callable[[Any], Any]:
        return lambda f: f

import numpy as np

from ...errors import InvariantError, quote
from ...lazy import is_lazy_member, member_state

__all__ = [
    "Reject", "Env", "Kind", "Int", "Real", "Flag", "Choice", "Array", "Shape", "Sparse",
    "Instance",
    "Estimator", "Anything", "Absent", "NoneValue", "OneOf", "Seq", "Objects", "Dict", "Attr",
    "Rule", "Spec", "loaded_class", "MAX_THREADS",
]

# Thread counts a file may ask native code to start (OpenMP ``num_threads``, joblib workers): a
# fixed bound, so that a file loads the same on every machine; far above any real core count
# that a model is fitted on, far below what makes thread creation fail and abort the process.
MAX_THREADS = 1024


_T = TypeVar("_T")


@dataclass_transform()
def record(cls: type[_T]) -> type[_T]:
    """A light ``dataclass``: an ``__init__`` taking the annotated fields (defaults from the
    class body) and a ``__repr__``.  ``dataclasses`` generates and compiles code per class,
    ~0.5 ms each, paid by every process at its first load."""
    names = [n for klass in reversed(cls.__mro__) for n in getattr(klass, "__annotations__", {})
             if not n.startswith("_")]
    names = list(dict.fromkeys(names))
    defaults = {n: getattr(cls, n) for n in names if hasattr(cls, n)}

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__} takes at most {len(names)} arguments")
        values = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key not in names or key in values:
                raise TypeError(f"{cls.__name__}: unexpected or repeated argument {key!r}")
            values[key] = value
        for name in names:
            if name in values:
                self.__dict__[name] = values[name]
            elif name not in defaults:
                raise TypeError(f"{cls.__name__}: missing argument {name!r}")

    def __repr__(self: Any) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{cls.__name__}({fields})"

    cls.__init__ = __init__  # type: ignore[method-assign]
    cls.__repr__ = __repr__  # type: ignore[method-assign]
    return cls


class Reject(Exception):
    """A value is not of its declared kind (turned into an ``InvariantError`` with its path)."""


def loaded_class(module: str, name: str) -> type | None:
    """``module.name`` if ``module`` is already imported, else None.

    An object can only be an instance of a class whose module is loaded, so checks never import
    scikit-learn modules a model does not use (loading a linear model must not pull in the tree
    or SVM code).
    """
    key = (module, name)
    cached = _CLASSES.get(key)
    if cached is not None:
        return cached
    found = sys.modules.get(module)
    value = getattr(found, name, None) if found is not None else None
    if not isinstance(value, type):
        return None  # not loaded yet: looked up again next time
    _CLASSES[key] = value
    return value


_CLASSES: dict[tuple[str, str], type] = {}


class Env:
    """The state of one object being checked: its ``__dict__``, the checked values, the dims."""

    __slots__ = ("obj", "d", "path", "values", "dims", "focus")

    def __init__(self, obj: Any, d: dict[str, Any], path: str) -> None:
        self.obj = obj
        self.d = d
        self.path = path or "<root>"
        self.values: dict[str, Any] = {}  # attribute -> checked (normalised) value
        self.dims: dict[str, int] = {}  # dimension symbol -> its bound size
        self.focus: Any = None  # a member just built: member rules look at it alone

    def fail(self, message: str, attr: str | None = None) -> NoReturn:
        if attr is None:
            raise InvariantError(message, self.path)
        where = attr if self.path == "<root>" else f"{self.path}.{attr}"
        raise InvariantError(f"{attr} {message}", where)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def has(self, name: str) -> bool:
        return name in self.values

    def bind(self, symbol: str, size: int, what: str) -> None:
        """Bind ``symbol`` to ``size``, or require ``size`` if it is bound already."""
        bound = self.dims.get(symbol)
        if bound is None:
            self.dims[symbol] = size
        elif bound != size:
            raise Reject(f"{what} is {size}, but {symbol} is {bound}")

    def bound(self, value: int | str | None) -> int | None:
        """A literal size, or the size a symbol is bound to (None: unbound or no bound)."""
        if isinstance(value, str):
            return self.dims.get(value)
        return value

    def members(self, name: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(flat index, its __dict__)`` of the built members of a checked container.

        Unbuilt lazy members are left out: the lazy loader checks their owner again once a member
        is built (``lazy._check_owner``), so every member is checked before it is first used.
        """
        value = self.values.get(name)
        if value is None:
            return
        items = value.reshape(-1) if isinstance(value, np.ndarray) else value
        if len(items) and isinstance(items[0], list):  # HistGradientBoosting: a list per stage
            items = [item for stage in items for item in stage]
        if self.focus is None and not any(map(is_lazy_member, {type(item): item
                                                               for item in items}.values())):
            # No lazy member among them (one of each type asked): their own __dict__.
            for i, item in enumerate(items):
                state = getattr(item, "__dict__", None)
                if state is not None:
                    yield i, state
            return
        for i, item in enumerate(items):
            # A lazy member's state is its published (or, in the thread building it, pending)
            # state; None: not built yet, checked against this container when it is.
            if self.focus is not None and item is not self.focus:
                continue
            state = member_state(item)
            if state is not None:
                yield i, state


# -- kinds ---------------------------------------------------------------------------------------


class Kind:
    """What one attribute must hold; ``check`` returns the value normalised for checking."""

    def check(self, value: Any, env: Env) -> Any:
        raise NotImplementedError

    def check_all(self, values: list[Any], env: Env) -> None:
        """:meth:`check` on every item of ``values`` in order; the first refusal is raised as
        ``item {i} {reason}``.  Kinds may answer for a whole list at once where that is
        cheaper, provided they accept exactly what the loop accepts (and, refusing, let the
        loop name the item)."""
        for i, item in enumerate(values):
            try:
                self.check(item, env)
            except Reject as exc:
                raise Reject(f"item {i} {exc}") from None

    def describe(self) -> str:
        raise NotImplementedError


def _size_text(value: int | str | None) -> str:
    return "any" if value is None else str(value)


@record
class Int(Kind):
    """A Python or numpy integer (not a bool), optionally within bounds and binding a symbol.

    ``lo``/``hi`` are inclusive; a bound may be a symbol bound by an earlier array shape.
    """

    lo: int | str | None = None
    hi: int | str | None = None
    dim: str | None = None

    def check(self, value: Any, env: Env) -> int:
        if type(value) is int:
            number = value
        elif isinstance(value, np.integer):
            number = int(value)
        else:
            raise Reject(f"must be an int, not {type(value).__name__}")
        lo = env.bound(self.lo) if type(self.lo) is str else self.lo
        hi = env.bound(self.hi) if type(self.hi) is str else self.hi
        assert not isinstance(lo, str) and not isinstance(hi, str)
        if (isinstance(self.lo, str) and lo is None) or (isinstance(self.hi, str) and hi is None):
            raise Reject("its bound is not established")  # pragma: no cover - spec order
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            raise Reject(f"must be in [{_size_text(self.lo)}, {_size_text(self.hi)}], "
                         f"not {number}")
        if self.dim is not None:
            env.bind(self.dim, number, "it")
        return number

    def describe(self) -> str:
        text = "int"
        if self.lo is not None or self.hi is not None:
            text += f" in [{_size_text(self.lo)}, {_size_text(self.hi)}]"
        return text + (f" (= {self.dim})" if self.dim else "")


@record
class Real(Kind):
    """A real number: Python/numpy int or float (not a bool); ``finite`` refuses NaN and inf."""

    finite: bool = False

    def check(self, value: Any, env: Env) -> float:
        if type(value) is bool or not isinstance(value, (int, float, np.integer, np.floating)):
            raise Reject(f"must be a real number, not {type(value).__name__}")
        number = float(value)
        if self.finite and not np.isfinite(number):
            raise Reject("must be finite")
        return number

    def describe(self) -> str:
        return "finite real" if self.finite else "real"


@record
class Flag(Kind):
    """A bool (Python or numpy)."""

    def check(self, value: Any, env: Env) -> bool:
        if not isinstance(value, (bool, np.bool_)):
            raise Reject(f"must be a bool, not {type(value).__name__}")
        return bool(value)

    def describe(self) -> str:
        return "bool"


_QUOTED_TYPES = frozenset({str, bytes, int, float, bool, type(None), np.str_, np.bool_})


@record
class Choice(Kind):
    """One of a few exact values (strings, None)."""

    options: tuple[Any, ...]

    def check(self, value: Any, env: Env) -> Any:
        for option in self.options:
            if type(value) is type(option) and value == option:
                return value
        # Unions try a Choice before other kinds ("zero" or an estimator): an object is named
        # by its type, as its repr (scikit-learn's pretty-printer) costs a millisecond.
        shown = (quote(value, 40) if type(value) in _QUOTED_TYPES
                 else f"a {type(value).__name__}")
        raise Reject(f"must be one of {list(self.options)}, not {shown}")

    def describe(self) -> str:
        return " or ".join(repr(o) for o in self.options)


_KIND_NAMES = {"b": "bool", "i": "signed int", "u": "unsigned int", "f": "float",
               "c": "complex", "U": "str", "S": "bytes", "O": "object", "M": "datetime"}


@record
class Array(Kind):
    """A numpy ``ndarray`` (exactly), of a dtype kind, with one entry per axis in ``dims``.

    Each entry of ``dims`` is a symbol (bound by its first mention), an int, or None (any size).
    ``dtype`` pins the exact dtype; ``contiguous`` requires C order; ``values`` = ``(lo, hi)``
    makes it an index array: every element in ``[lo, hi)`` (``hi`` may be a symbol).
    """

    kinds: str
    dims: tuple[int | str | None, ...]
    dtype: str | None = None
    contiguous: bool = False
    values: tuple[int | str | None, int | str | None] | None = None

    def check(self, value: Any, env: Env) -> np.ndarray:
        if type(value) is not np.ndarray:
            raise Reject(f"must be a numpy array, not {type(value).__name__}")
        if value.dtype.kind not in self.kinds or value.dtype.fields is not None or (
                self.dtype is not None and value.dtype != np.dtype(self.dtype)):
            raise Reject(f"must have dtype {self._dtype_text()}, not {value.dtype}")
        if value.ndim != len(self.dims):
            raise Reject(f"must have {len(self.dims)} dimensions, not {value.ndim}")
        if self.contiguous and not value.flags.c_contiguous:
            raise Reject("must be C-contiguous")
        _check_dims(value.shape, self.dims, env)
        if self.values is not None and value.size:
            lo, hi = (env.bound(v) for v in self.values)
            if (lo is not None and int(value.min()) < lo) or (
                    hi is not None and int(value.max()) >= hi):
                raise Reject(f"values must lie in [{_size_text(self.values[0])}, "
                             f"{_size_text(self.values[1])})")
        return value

    def _dtype_text(self) -> str:
        if self.dtype is not None:
            return str(np.dtype(self.dtype))
        return "/".join(_KIND_NAMES.get(k, k) for k in self.kinds)

    def describe(self) -> str:
        shape = ", ".join(_size_text(d) for d in self.dims)
        extra = ", C-contiguous" if self.contiguous else ""
        if self.values is not None:
            extra += f", values in [{_size_text(self.values[0])}, {_size_text(self.values[1])})"
        return f"{self._dtype_text()} array ({shape}{',' if len(self.dims) == 1 else ''}){extra}"


def _check_dims(shape: tuple[int, ...], dims: tuple[int | str | None, ...], env: Env) -> None:
    for axis, (size, want) in enumerate(zip(shape, dims, strict=True)):
        if want is None:
            continue
        if isinstance(want, str):
            env.bind(want, size, f"axis {axis}")
        elif size != want:
            raise Reject(f"axis {axis} must be {want}, not {size}")


@record
class Shape(Kind):
    """A tuple of non-negative ints (a recorded shape), each entry binding ``dims``."""

    dims: tuple[int | str | None, ...]

    def check(self, value: Any, env: Env) -> tuple[int, ...]:
        if type(value) is not tuple or len(value) != len(self.dims) or not all(
                (type(v) is int or isinstance(v, np.integer)) and v >= 0 for v in value):
            raise Reject(f"must be a tuple of {len(self.dims)} non-negative ints")
        shape = tuple(int(v) for v in value)
        _check_dims(shape, self.dims, env)
        return shape

    def describe(self) -> str:
        return f"tuple of ints ({', '.join(_size_text(d) for d in self.dims)})"


@record
class Sparse(Kind):
    """A scipy sparse matrix or array of one format, with ``dims`` as for :class:`Array`.

    Its index arrays were checked when it was loaded (``scipy_sparse`` handler: indices within
    its shape, monotone ``indptr``).
    """

    fmt: str
    kinds: str
    dims: tuple[int | str | None, ...]

    def check(self, value: Any, env: Env) -> Any:
        sparse = sys.modules.get("scipy.sparse")
        if sparse is None or not sparse.issparse(value) or value.format != self.fmt:
            raise Reject(f"must be a scipy {self.fmt} matrix, not {type(value).__name__}")
        if value.dtype.kind not in self.kinds:
            raise Reject(f"must hold {'/'.join(_KIND_NAMES[k] for k in self.kinds)}")
        _check_dims(value.shape, self.dims, env)
        return value

    def describe(self) -> str:
        shape = ", ".join(_size_text(d) for d in self.dims)
        return f"scipy {self.fmt} of {'/'.join(_KIND_NAMES[k] for k in self.kinds)} ({shape})"


@record
class Instance(Kind):
    """An instance of a class given by module and name (looked up, never imported)."""

    module: str
    name: str

    def check(self, value: Any, env: Env) -> Any:
        cls = loaded_class(self.module, self.name)
        if cls is None or not isinstance(value, cls):
            raise Reject(f"must be a {self.name}, not {type(value).__name__}")
        return value

    def check_all(self, values: list[Any], env: Env) -> None:
        # isinstance on every item in one C loop; the loop names the first that is not one.
        cls = loaded_class(self.module, self.name)
        if cls is None or not all(map(isinstance, values, repeat(cls))):
            super().check_all(values, env)

    def describe(self) -> str:
        return f"`{self.name}`"


@record
class Estimator(Kind):
    """A scikit-learn estimator (``BaseEstimator`` instance)."""

    def check(self, value: Any, env: Env) -> Any:
        cls = loaded_class("sklearn.base", "BaseEstimator")
        if cls is None or not isinstance(value, cls):
            raise Reject(f"must be an estimator, not {type(value).__name__}")
        return value

    def describe(self) -> str:
        return "estimator"


@record
class Anything(Kind):
    """Present, of any type (a :class:`Rule` checks it)."""

    def check(self, value: Any, env: Env) -> Any:
        return value

    def describe(self) -> str:
        return "present"


@record
class NoneValue(Kind):
    """Exactly ``None``."""

    def check(self, value: Any, env: Env) -> None:
        if value is not None:
            raise Reject(f"must be None, not {type(value).__name__}")

    def describe(self) -> str:
        return "None"


@record
class Absent(Kind):
    """Must not be set at all (state that only exists while fitting)."""

    def check(self, value: Any, env: Env) -> Any:  # pragma: no cover - Attr handles absence
        raise Reject("must not be set")

    def describe(self) -> str:
        return "absent"


@record
class OneOf(Kind):
    """The first of several kinds that the value matches (dims bound only by the match)."""

    options: tuple[Kind, ...]

    def check(self, value: Any, env: Env) -> Any:
        reasons = []
        for option in self.options:
            saved = dict(env.dims)
            try:
                return option.check(value, env)
            except Reject as exc:
                env.dims.clear()
                env.dims.update(saved)
                reasons.append(str(exc))
        raise Reject("; or ".join(reasons))

    def describe(self) -> str:
        return " or ".join(o.describe() for o in self.options)


@record
class Seq(Kind):
    """A list (exactly) of items of one kind, its length optionally a symbol or an int."""

    item: Kind
    length: int | str | None = None
    min_length: int = 0

    def check(self, value: Any, env: Env) -> list[Any]:
        if type(value) is not list:
            raise Reject(f"must be a list, not {type(value).__name__}")
        if len(value) < self.min_length:
            raise Reject(f"must have at least {self.min_length} items")
        if self.length is not None:
            _check_dims((len(value),), (self.length,), env)
        self.item.check_all(value, env)
        return value

    def check_all(self, values: list[Any], env: Env) -> None:
        # Lists of one length (a HistGradientBoosting model's stages): the length checked
        # once, as the first list's check would, and their items as one list.  Anything else,
        # or any refusal, goes through the loop, which names the list and the reason.
        saved = dict(env.dims)
        try:
            if values and set(map(type, values)) == {list}:
                lengths = set(map(len, values))
                if len(lengths) == 1:
                    self.check(values[0], env)  # checks the shared length (and first items)
                    self.item.check_all(list(chain.from_iterable(values[1:])), env)
                    return
        except Reject:
            env.dims.clear()
            env.dims.update(saved)
        super().check_all(values, env)

    def describe(self) -> str:
        length = "" if self.length is None else f" of {self.length}"
        return f"list{length} of {self.item.describe()}"


@record
class Objects(Kind):
    """An object ``ndarray`` with ``dims`` as for :class:`Array`, every item of one kind."""

    item: Kind
    dims: tuple[int | str | None, ...]

    def check(self, value: Any, env: Env) -> np.ndarray:
        if type(value) is not np.ndarray or value.dtype != object:
            raise Reject(f"must be an object array, not {type(value).__name__}")
        if value.ndim != len(self.dims):
            raise Reject(f"must have {len(self.dims)} dimensions, not {value.ndim}")
        _check_dims(value.shape, self.dims, env)
        self.item.check_all(value.reshape(-1).tolist(), env)
        return value

    def describe(self) -> str:
        shape = ", ".join(_size_text(d) for d in self.dims)
        return f"object array ({shape}) of {self.item.describe()}"


@record
class Dict(Kind):
    """A dict (exactly); ``forbidden`` keys must not appear."""

    forbidden: tuple[str, ...] = ()

    def check(self, value: Any, env: Env) -> dict[str, Any]:
        if type(value) is not dict:
            raise Reject(f"must be a dict, not {type(value).__name__}")
        bad = [k for k in self.forbidden if k in value]
        if bad:
            raise Reject(f"must not hold {bad}")
        return value

    def describe(self) -> str:
        return "dict" + (f" without {list(self.forbidden)}" if self.forbidden else "")


# -- attributes, rules, specs --------------------------------------------------------------------


@record
class Attr:
    """One attribute: its name, kind, why native code needs it, whether it may be absent.

    ``data`` marks an array whose values are data (labels, targets, weights): any value is
    valid, only its kind and shape are checked.
    """

    name: str
    kind: Kind
    why: str = ""
    optional: bool = False
    data: bool = False


@record
class Rule:
    """A relation between checked values that dimension symbols cannot state.

    ``check(env)`` raises through ``env.fail`` (or :class:`Reject`); ``text`` documents it.
    ``members`` marks a rule over ensemble members (through :meth:`Env.members`): it runs
    again, for that member alone, each time a lazily loaded member is built.
    """

    text: str
    check: Callable[[Env], None]
    members: bool = False


@record
class Spec:
    """The declared invariants of one class and its subclasses.

    Parameters
    ----------
    title : str
        The classes covered, as the documentation names them.
    base : (module, class name)
        Every instance of this class (and subclasses) is checked; looked up in ``sys.modules``.
    native : str
        Which native code consumes the state, and how (the reason for the checks).
    attrs : tuple of Attr
        Checked in order: symbols are bound by their first mention.
    rules : tuple of Rule
        Run after every attribute was checked.
    reads : tuple of str
        Other attributes the rules read (parameters such as ``kernel``, labels): listed so that
        the documentation and the differential tests know every input of the checks.
    exclude : tuple of (module, class name)
        Subclasses of ``base`` that another spec covers instead.
    alike : tuple of (attribute, function)
        For checking many instances at once (``check_fitted_alike``): the attribute's value
        enters this spec's kinds and rules only through what the function returns, so two
        instances whose values give equal results, and whose other attributes are the same
        objects, pass or fail this spec alike.
    """

    title: str
    base: tuple[str, str]
    native: str
    attrs: tuple[Attr, ...] = ()
    rules: tuple[Rule, ...] = ()
    reads: tuple[str, ...] = ()
    exclude: tuple[tuple[str, str], ...] = ()
    alike: tuple[tuple[str, Callable[[Any], Any]], ...] = ()

    def base_class(self) -> type | None:
        return loaded_class(*self.base)

    def covers(self, cls: type) -> bool:
        base = self.base_class()
        if base is None or not issubclass(cls, base):
            return False
        return not any((other := loaded_class(*ex)) is not None and issubclass(cls, other)
                       for ex in self.exclude)

    def names(self) -> frozenset[str]:
        return frozenset(a.name for a in self.attrs)

    def check(self, env: Env) -> None:
        d = env.d
        for attr in self.attrs:
            present = attr.name in d
            if isinstance(attr.kind, Absent):
                if present:
                    env.fail("must not be set (it exists only while fitting)", attr.name)
                continue
            if not present:
                if attr.optional:
                    continue
                env.fail(f"is missing ({self.title} needs it: {attr.why or 'see the spec'})",
                         attr.name)
            try:
                env.values[attr.name] = attr.kind.check(d[attr.name], env)
            except Reject as exc:
                env.fail(str(exc), attr.name)
            except Exception as exc:  # noqa: BLE001 - fail closed: a check that cannot run
                env.fail(f"cannot be checked ({type(exc).__name__})", attr.name)
        for rule in self.rules:
            try:
                rule.check(env)
            except Reject as exc:
                env.fail(str(exc))
            except InvariantError:
                raise
            except Exception as exc:  # noqa: BLE001 - fail closed: a check that cannot run
                env.fail(f"cannot be checked ({type(exc).__name__}): {rule.text}")
