"""Declared migrations: files written under one scikit-learn load under another.

A manifest is plain data keyed by names, so a renamed parameter, a dropped parameter or an added
attribute is an edit of the parsed JSON.  This module holds a *declared table* of such changes,
each keyed by the class (its tag) and the scikit-learn release that made the change, and applies
the ones that lie between the writer's and the reader's versions to the parsed manifest **before
validation**: every security check then runs unchanged on the result, and nothing named by the
file is imported (tags select rules from the table; they never name code).

Transform kinds (see :data:`RULES`; each has an ``up`` for an older file under a newer library
and a ``down`` for the reverse):

- ``Moved(old_tag, new_tag)``: a class moved between private modules (its tag is its location).
- ``RenamedParam`` / ``RenamedAttr``: same value, new name.
- ``RemovedParam(name, faithful, restore)``: the parameter is gone; dropped when the stored value
  is one whose behaviour is today's (``faithful``, possibly checked against the rest of the
  state), **refused with the reason** otherwise.  Going down it is restored as ``restore``.
- ``RefusedValue(name, values, reason)``: values that stopped being supported: refused.
- ``MergedParam(old, new)`` / ``Superseded(old, new)``: a parameter folded into another
  (``n_alphas`` into ``alphas``, ``base_estimator`` into ``estimator``).
- ``AddedParam(name, old)``: a new parameter; an older file gets ``old``, the value that keeps the
  old behaviour.  Going down it is dropped when it holds ``old`` (or, for a parameter only
  fitting reads, any value, said so) and refused otherwise.
- ``ReplacedValue``: a value retired for its meaning (``"warn"`` -> ``None``);
  ``AttrToParam``: a fixed attribute became a parameter.
- ``RemovedAttr(name)`` / ``AddedAttr(name, derive)``: a fitted attribute disappeared or appeared;
  a derived attribute is computed from other stored JSON (never from section data) and marked
  *approximate* when it is not exactly what the newer version would have fitted.
- ``Replaced(tag, ...)``: an internal object (``_RemainderColsList``) became a plain value.
- ``NewerOnly(reason)``: what a newer version stores, older ones read differently: refused down.

Rules are keyed by scikit-learn releases, or XGBoost's (``library="xgboost"``); the writer's
versions come from the manifest's ``writer``, the reader's from the installed libraries.  A
development version counts as its release (``1.6.dev0`` is 1.6).

:func:`plan` finds the steps a manifest needs; :func:`apply` performs them (or raises
:class:`~milo_pack.errors.VersionError` for a refusal).  The reader calls both when it opens a
file with ``migrate=True`` (the default) and warns once per load (:class:`MigrationWarning`);
with ``migrate=False`` the manifest is validated as it is.  In either mode a file naming
parameters the installed class does not have is refused with both versions named
(:func:`diagnose`), not with a bare "not parameters of" message.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from .errors import ManifestError, MigrationWarning, VersionError, quote

if TYPE_CHECKING:
    from .registry import Registry

__all__ = ["Step", "plan", "apply", "diagnose", "describe", "warning_for", "RULES",
           "parse_version", "version_pairs", "MigrationWarning"]

Version = tuple[int, ...]
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: Any) -> Version | None:
    """``"1.5.2" -> (1, 5, 2)``; ``"1.6.dev0" -> (1, 6, 0)``; None when it is not a version."""
    if not isinstance(text, str) or len(text) > 40:
        return None
    if type(text) is not str:
        return _parse(str(text)) or None
    found = _PARSED.get(text)
    if found is None:
        found = _parse(text)
        if len(_PARSED) >= 256:  # keys come from files: bounded
            _PARSED.clear()
        _PARSED[text] = found
    return found or None


# parse_version's results by the exact text (a pure function of it): every load compares the
# writer's versions with the installed ones, twice (plan and diagnose).
_PARSED: dict[str, Version | tuple[()]] = {}


def _parse(text: str) -> Version | tuple[()]:
    match = _VERSION_RE.match(text)
    if match is None:
        return ()
    return tuple(int(g) if g is not None else 0 for g in match.groups())


def installed_sklearn() -> str:
    return installed("scikit-learn") or "?"


_MODULES = {"scikit-learn": "sklearn", "xgboost": "xgboost", "lightgbm": "lightgbm"}


def installed(library: str) -> str | None:
    """The installed version of ``library``: the imported module's if it is imported (that is
    what will build the objects), else its package metadata (nothing is imported for this)."""
    import sys

    module = sys.modules.get(_MODULES.get(library, library))
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    return _metadata_version(library)


@functools.lru_cache(maxsize=16)  # keys are our own library names
def _metadata_version(library: str) -> str | None:
    from importlib import metadata

    for distribution in _DISTRIBUTIONS.get(library, (library,)):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


# Distributions that install a library's module under another name (the CPU-only XGBoost).
_DISTRIBUTIONS = {"xgboost": ("xgboost", "xgboost-cpu")}


# Libraries whose versions key rules: the writer's version is in the manifest's "writer".
LIBRARIES = ("scikit-learn", "xgboost")


# -- transform kinds ------------------------------------------------------------------------------

# A JSON node as stored in the manifest, and a JSON object (an estimator node, the manifest).
Node = Any
JsonObject = dict[str, Any]
_MISSING = object()


class Refusal(Exception):
    """Internal: a rule found a value it cannot carry over faithfully (becomes VersionError)."""


@dataclass(frozen=True)
class Op:
    """One kind of change to an estimator node's ``params`` and ``attrs`` (see module doc)."""

    def up(self, node: JsonObject) -> str | None:  # pragma: no cover - interface
        """Transform an older file's node for a newer reader; a description, or None if idle."""
        raise NotImplementedError

    def down(self, node: JsonObject) -> str | None:  # pragma: no cover - interface
        """Transform a newer file's node for an older reader."""
        raise NotImplementedError

    approximate: bool = field(default=False, init=False)


def _params(node: JsonObject) -> JsonObject:
    params = node.get("params")
    if not isinstance(params, dict):
        raise ManifestError("params must be an object")
    return params


def _attrs(node: JsonObject) -> JsonObject:
    attrs = node.get("attrs")
    if not isinstance(attrs, dict):
        raise ManifestError("attrs must be an object")
    return attrs


def _show(value: Node) -> str:
    if isinstance(value, str):
        return quote(value, 40)
    if isinstance(value, (int, float, bool)) or value is None:
        return repr(value)[:40]  # not a string: shown without quotes (None, True, 1e-06)
    if isinstance(value, dict) and isinstance(value.get("$type"), str):
        return f"<{quote(value['$type'], 60)}>"
    return "<value>"


@dataclass(frozen=True)
class RenamedParam(Op):
    old: str
    new: str

    def up(self, node: JsonObject) -> str | None:
        return _rename(_params(node), self.old, self.new, "parameter")

    def down(self, node: JsonObject) -> str | None:
        return _rename(_params(node), self.new, self.old, "parameter")


@dataclass(frozen=True)
class RenamedAttr(Op):
    old: str
    new: str

    def up(self, node: JsonObject) -> str | None:
        return _rename(_attrs(node), self.old, self.new, "attribute")

    def down(self, node: JsonObject) -> str | None:
        return _rename(_attrs(node), self.new, self.old, "attribute")


def _rename(table: JsonObject, old: str, new: str, what: str) -> str | None:
    if old not in table:
        return None
    if new in table:
        raise Refusal(f"the file has both {what}s {old!r} and {new!r}")
    # Keep the position of the entry (manifest order is document order).
    items = [(new if k == old else k, v) for k, v in table.items()]
    table.clear()
    table.update(items)
    return f"renamed {what} {old!r} to {new!r}"


ANY = "<any value>"  # RemovedParam(faithful=ANY): the parameter had no effect on the model


def _plain(value: Node) -> bool:
    return type(value) in (str, int, float, bool, type(None))


@dataclass(frozen=True)
class RemovedParam(Op):
    """``name`` was removed; values in ``faithful`` behave as the newer version always does.

    ``faithful`` is a tuple of plain values, or :data:`ANY` when the parameter never changed
    what a fitted model computes.  ``check(node, value)``, when given, decides from the rest of
    the stored state and returns the reason the value is *not* faithful (or None).
    """

    name: str
    faithful: tuple[Node, ...] | str = ()
    restore: Node = _MISSING
    reason: str = ""
    check: Callable[[JsonObject, Node], str | None] | None = field(default=None, compare=False)

    def up(self, node: JsonObject) -> str | None:
        params = _params(node)
        if self.name not in params:
            return None
        value = params[self.name]
        if self.faithful != ANY and (not _plain(value) or value not in self.faithful):
            raise Refusal(f"parameter {self.name!r}={_show(value)} has no faithful equivalent: "
                          f"{self.reason}")
        problem = self.check(node, value) if self.check is not None else None
        if problem is not None:
            raise Refusal(f"parameter {self.name!r}={_show(value)} has no faithful equivalent "
                          f"here: {problem}")
        del params[self.name]
        why = "it had no effect" if self.faithful == ANY else "today's behaviour"
        return f"dropped parameter {self.name!r}={_show(value)} ({why})"

    def down(self, node: JsonObject) -> str | None:
        params = _params(node)
        if self.name in params:
            return None
        if self.restore is _MISSING:
            raise Refusal(f"the older version needs parameter {self.name!r}, which the file "
                          "does not have")
        params[self.name] = self.restore
        return f"added parameter {self.name!r}={_show(self.restore)} (the newer behaviour)"


@dataclass(frozen=True)
class RefusedValue(Op):
    """Values of ``name`` in ``values`` stopped being supported: a model using one is refused."""

    name: str
    values: tuple[Node, ...] = ()
    reason: str = ""

    def up(self, node: JsonObject) -> str | None:
        value = _params(node).get(self.name, _MISSING)
        if _plain(value) and value in self.values:
            raise Refusal(f"parameter {self.name!r}={_show(value)} has no faithful equivalent: "
                          f"{self.reason}")
        return None

    def down(self, node: JsonObject) -> str | None:
        return None


@dataclass(frozen=True)
class ReplacedValue(Op):
    """A value of ``name`` was retired for an equivalent one: ``mapping`` is (old, new) pairs."""

    name: str
    mapping: tuple[tuple[Node, Node], ...] = ()

    def up(self, node: JsonObject) -> str | None:
        params = _params(node)
        value = params.get(self.name, _MISSING)
        for old, new in self.mapping:
            if _plain(value) and type(value) is type(old) and value == old:
                params[self.name] = new
                return f"parameter {self.name!r}={_show(old)} is now {_show(new)} (same meaning)"
        return None

    def down(self, node: JsonObject) -> str | None:
        return None


@dataclass(frozen=True)
class FitOnlyValue(Op):
    """A value of ``name`` that only fitting reads was retired for ``new``: the fitted state (and
    so every prediction) is unchanged, and the step says that a refit here uses ``new``.

    ``given``: ``(parameter, values)`` under which the old value was legal at all (fitting
    refused it otherwise); a node outside it is refused rather than given a value it never had.
    """

    name: str
    old: Node = None
    new: Node = None
    given: tuple[str, tuple[Node, ...]] | None = None

    def up(self, node: JsonObject) -> str | None:
        params = _params(node)
        value = params.get(self.name, _MISSING)
        if not (_plain(value) and type(value) is type(self.old) and value == self.old):
            return None
        if self.given is not None:
            other, allowed = self.given
            found = params.get(other, _MISSING)
            if not (_plain(found) and found in allowed):
                raise Refusal(f"parameter {self.name!r}={_show(value)} was only valid with "
                              f"{other!r} in {list(allowed)!r}, not {_show(found)}")
        params[self.name] = self.new
        return (f"parameter {self.name!r}={_show(self.old)} is now {_show(self.new)} (used only "
                "when fitting: predictions are unchanged; a refit here uses the new value)")

    def down(self, node: JsonObject) -> str | None:
        return None


@dataclass(frozen=True)
class MergedParam(Op):
    """``old`` was removed in favour of ``new`` (``base_estimator`` -> ``estimator``).

    Going up, the old value moves to ``new`` when ``new`` holds one of ``new_unset``
    (``default`` when the old one is unset too); the old parameter is dropped.  Going down,
    ``old`` is restored as ``restore``.
    """

    old: str
    new: str
    old_unset: tuple[Node, ...] = ("deprecated",)
    new_unset: tuple[Node, ...] = (None,)
    default: Node = None
    restore: Node = "deprecated"
    # Whether a set ``new`` made the old value irrelevant (``alphas`` given: ``n_alphas`` was
    # ignored); otherwise both set is a conflict the old version refused to fit, refused here.
    new_wins: bool = False

    def up(self, node: JsonObject) -> str | None:
        params = _params(node)
        if self.old not in params:
            return None
        value = params.pop(self.old)
        current = params.get(self.new, _MISSING)
        old_set = not (_plain(value) and value in self.old_unset)
        new_unset = current is _MISSING or (_plain(current) and current in self.new_unset)
        if not new_unset:
            if old_set and not self.new_wins:
                raise Refusal(f"both {self.old!r} and {self.new!r} are set")
            if old_set:
                return (f"dropped parameter {self.old!r}={_show(value)} (ignored: {self.new!r} "
                        "is set)")
            return f"dropped unset parameter {self.old!r}"
        params[self.new] = value if old_set else self.default
        return (f"moved parameter {self.old!r} to {self.new!r}={_show(params[self.new])}"
                if old_set else
                f"dropped unset parameter {self.old!r}; {self.new!r}={_show(self.default)} "
                "(its behaviour)")

    def down(self, node: JsonObject) -> str | None:
        params = _params(node)
        if self.old in params:
            return None
        params[self.old] = self.restore
        return f"added parameter {self.old!r}={_show(self.restore)} (unused)"


@dataclass(frozen=True)
class NewerOnly(Op):
    """What the newer version stores, older versions read differently: refused going down."""

    reason: str = ""

    def up(self, node: JsonObject) -> str | None:
        return None

    def down(self, node: JsonObject) -> str | None:
        raise Refusal(self.reason)


@dataclass(frozen=True)
class AttrToParam(Op):
    """``name`` was a fixed attribute and became a constructor parameter, same value."""

    name: str

    def up(self, node: JsonObject) -> str | None:
        params, attrs = _params(node), _attrs(node)
        if self.name not in attrs or self.name in params:
            return None
        params[self.name] = attrs.pop(self.name)
        return f"attribute {self.name!r} is now a parameter"

    def down(self, node: JsonObject) -> str | None:
        params, attrs = _params(node), _attrs(node)
        if self.name not in params or self.name in attrs:
            return None
        attrs[self.name] = params.pop(self.name)
        return f"parameter {self.name!r} is an attribute in the older version"


@dataclass(frozen=True)
class Superseded(Op):
    """``new`` was added to replace ``old``, which stayed as a deprecated parameter set to
    ``unset`` (``base_estimator`` -> ``estimator``).  Up: the value moves to ``new``; down:
    back to ``old``, and ``new`` is dropped."""

    old: str
    new: str
    unset: Node = "deprecated"

    def up(self, node: JsonObject) -> str | None:
        params = _params(node)
        if self.new in params:
            return None
        value = params.get(self.old)
        params[self.new] = value
        params[self.old] = self.unset
        return f"moved parameter {self.old!r} to {self.new!r}={_show(value)}"

    def down(self, node: JsonObject) -> str | None:
        params = _params(node)
        if self.new not in params:
            return None
        value = params.pop(self.new)
        old = params.get(self.old, self.unset)
        if not (_plain(old) and old == self.unset):
            raise Refusal(f"both {self.old!r} and {self.new!r} are set")
        if value is None:
            raise Refusal(f"{self.new!r} is unset and the older version requires {self.old!r}")
        params[self.old] = value
        return f"moved parameter {self.new!r} back to {self.old!r}={_show(value)}"


@dataclass(frozen=True)
class AddedParam(Op):
    """``name`` was added; ``old`` is the value that keeps the older version's behaviour."""

    name: str
    old: Node = None
    equivalent: tuple[Node, ...] = ()  # other values that also mean the old behaviour ("warn")
    # Only fitting reads it (the fitted state holds its effect): any value is dropped going
    # down, and the step says that refitting there uses the older behaviour.
    fit_only: bool = False

    def up(self, node: JsonObject) -> str | None:
        params = _params(node)
        if self.name in params:
            return None
        params[self.name] = self.old
        return f"added parameter {self.name!r}={_show(self.old)} (the old behaviour)"

    def down(self, node: JsonObject) -> str | None:
        params = _params(node)
        if self.name not in params:
            return None
        value = params[self.name]
        same = (value == self.old and type(value) is type(self.old)) or (
            _plain(value) and value in self.equivalent)
        if not same and self.fit_only:
            del params[self.name]
            return (f"dropped parameter {self.name!r}={_show(value)} (used only when fitting; "
                    "a refit here uses the older behaviour)")
        if not same:
            raise Refusal(f"parameter {self.name!r}={_show(value)} does not exist in the older "
                          f"version (only {_show(self.old)}, its behaviour there, can be dropped)")
        del params[self.name]
        return f"dropped parameter {self.name!r}={_show(value)} (the older version's behaviour)"


@dataclass(frozen=True)
class RemovedAttr(Op):
    """The fitted attribute ``name`` is no longer used (dropped going up)."""

    name: str

    def up(self, node: JsonObject) -> str | None:
        attrs = _attrs(node)
        if self.name not in attrs:
            return None
        del attrs[self.name]
        return f"dropped attribute {self.name!r} (no longer used)"

    def down(self, node: JsonObject) -> str | None:
        return None


@dataclass(frozen=True)
class AddedAttr(Op):
    """The fitted attribute ``name`` appeared; ``derive(node)`` computes it from stored state.

    ``derive`` returns a manifest node, or raises :class:`Refusal`; it reads JSON only.
    Going down the attribute is dropped (older versions do not read it).
    """

    name: str
    derive: Callable[[JsonObject], Node] = field(default=lambda node: None, compare=False)
    exact: bool = True
    how: str = ""

    # A property over the base's field: dataclasses keep it (the field has no __init__ slot),
    # mypy does not model that.
    @property  # type: ignore[misc]
    def approximate(self) -> bool:
        return not self.exact

    def up(self, node: JsonObject) -> str | None:
        attrs = _attrs(node)
        if self.name in attrs or not _fitted(node):
            return None  # an unfitted template (a meta-estimator's estimator=) has none
        attrs[self.name] = self.derive(node)
        note = "" if self.exact else " [approximate]"
        return f"added attribute {self.name!r} {self.how}{note}".rstrip()

    def down(self, node: JsonObject) -> str | None:
        attrs = _attrs(node)
        if self.name not in attrs:
            return None
        del attrs[self.name]
        return f"dropped attribute {self.name!r} (the older version does not use it)"


# -- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """``tag`` changed in ``library`` release ``version`` by ``op``; ``why`` is shown."""

    tag: str
    version: str
    op: Op
    why: str = ""
    library: str = "scikit-learn"


@dataclass(frozen=True)
class Moved:
    """A class moved between (private) modules in ``version``: its tag changed."""

    old_tag: str
    new_tag: str
    version: str


@dataclass(frozen=True)
class Replaced:
    """In ``version``, nodes of ``tag`` became plain values: ``convert(node) -> node``."""

    tag: str
    version: str
    convert: Callable[[JsonObject], Node] = field(compare=False)
    how: str = ""


def _remainder_cols_list(node: JsonObject) -> Node:
    state = node.get("state")
    if not isinstance(state, dict) or not isinstance(state.get("data"), list):
        raise ManifestError("a _RemainderColsList holds its columns in state.data")
    if "$id" in node:
        return {"$type": "list", "$id": node["$id"], "items": state["data"]}
    return state["data"]


# -- derivations (JSON only) ------------------------------------------------------------------


def _has_id(value: Node) -> bool:
    if isinstance(value, dict):
        return "$id" in value or any(_has_id(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_id(v) for v in value)
    return False


def _same_as(*steps: str) -> Callable[[JsonObject], Node]:
    """Derive an attribute equal to another stored value (``attrs`` steps from the node)."""

    def derive(node: JsonObject) -> Node:
        value: Node = node
        for step in steps:
            if not isinstance(value, dict) or step not in value:
                raise Refusal(f"the file has no {'.'.join(steps)!r} to derive it from")
            value = value[step]
        if isinstance(value, dict) and "$id" in value:
            return {"$ref": value["$id"]}  # the very same object, as a newer fit shares it
        if _has_id(value) or (isinstance(value, dict) and "$ref" in value):
            raise Refusal(f"{'.'.join(steps)!r} is shared in a way a copy cannot keep")
        import copy

        return copy.deepcopy(value)

    return derive


def _fitted(node: JsonObject) -> bool:
    """scikit-learn's convention: fitted attributes end with an underscore."""
    attrs = node.get("attrs")
    return isinstance(attrs, dict) and any(
        isinstance(k, str) and k.endswith("_") and not k.startswith("__") for k in attrs)


def _n_classes(node: JsonObject) -> int | None:
    classes = node.get("attrs", {}).get("classes_")
    if isinstance(classes, dict) and isinstance(classes.get("shape"), list) and len(
            classes["shape"]) == 1 and type(classes["shape"][0]) is int:
        return classes["shape"][0]
    return None


def _logistic_multi_class(node: JsonObject, value: Node) -> str | None:
    """Whether LogisticRegression's old ``multi_class`` predicts as today's (no parameter):
    binary problems use the one-vs-rest sigmoid, more classes the softmax (multinomial)."""
    if not _fitted(node):
        # An unfitted template (a meta-estimator's estimator=): nothing predicts with it, and
        # refitting it today gives what 'auto' gave (binary: one-vs-rest, else multinomial).
        return None if value in ("auto", "deprecated", "warn") else (
            "an explicit multi_class cannot be kept for refitting")
    n_classes = _n_classes(node)
    if n_classes is None:
        return "the number of classes is not readable from classes_"
    solver = node["params"].get("solver")
    if value in ("auto", "deprecated", "warn"):
        if n_classes > 2 and solver == "liblinear":
            return ("'auto' fitted one-vs-rest with liblinear; today's multiclass "
                    "probabilities are the softmax of a multinomial model")
        return None
    if value == "ovr":
        return None if n_classes <= 2 else (
            "one-vs-rest probabilities of a multiclass model are computed as a softmax today")
    if value == "multinomial":
        return None if n_classes > 2 else (
            "a binary 'multinomial' model predicted softmax([-d, d]); today binary "
            "probabilities are the sigmoid of d")
    return "unknown value"


def _uniform_prior(node: JsonObject) -> Node:
    """NearestCentroid's ``class_prior_`` for ``priors="uniform"``, as 1.6's fit computes it."""
    n_classes = _n_classes(node)
    if n_classes is None or n_classes < 1:
        raise Refusal("the number of classes is not readable from classes_")
    return {"$type": "numpy.ndarray", "dtype": "<f8", "shape": [n_classes],
            "data": [1 / n_classes] * n_classes}


def _dictionary_axis(axis: int) -> Callable[[JsonObject], Node]:
    """SparseCoder's ``n_components_``/``n_features_in_``: before 1.8 properties returning
    ``dictionary.shape[0]``/``[1]``."""

    def derive(node: JsonObject) -> Node:
        dictionary = node["params"].get("dictionary")
        shape = dictionary.get("shape") if isinstance(dictionary, dict) else None
        if not (isinstance(shape, list) and len(shape) == 2 and type(shape[axis]) is int):
            raise Refusal("the dictionary's shape is not readable")
        return shape[axis]

    return derive


def _empty_features(node: JsonObject) -> Node:
    """IterativeImputer's ``_is_empty_feature``: before 1.6 a feature was empty when its
    initial imputer's statistic was NaN, which is what this computes (from inline data)."""
    if node["params"].get("keep_empty_features") is not False:
        raise Refusal("keep_empty_features=True kept empty features in a way 1.6 changed")
    imputer = node["attrs"].get("initial_imputer_")
    stats = imputer.get("attrs", {}).get("statistics_") if isinstance(imputer, dict) else None
    data = stats.get("data") if isinstance(stats, dict) else None
    # data is a list only when stats is a dict.
    if not isinstance(data, list) or cast(JsonObject, stats).get("dtype") not in ("<f8", "<f4"):
        raise Refusal("the initial imputer's statistics_ are not stored inline")
    return {"$type": "numpy.ndarray", "dtype": "|b1", "shape": [len(data)],
            "data": [v == "nan" for v in data]}


_ADA = "sklearn.ensemble.AdaBoostClassifier"
_SAMME_R = ("SAMME.R (real boosting on class probabilities) was removed in scikit-learn 1.6; "
            "its estimator weights and decision function differ from SAMME's, so the model "
            "would predict other labels")
_LOGISTIC = ("sklearn.linear_model.LogisticRegression",
             "sklearn.linear_model.LogisticRegressionCV")
_ALPHA_CV = ("sklearn.linear_model.ElasticNetCV", "sklearn.linear_model.LassoCV",
             "sklearn.linear_model.MultiTaskElasticNetCV", "sklearn.linear_model.MultiTaskLassoCV")
_CHAINS = ("sklearn.multioutput.ClassifierChain", "sklearn.multioutput.RegressorChain")

RULES: tuple[Rule, ...] = (
    # 1.6
    Rule(_ADA, "1.6", RefusedValue("algorithm", ("SAMME.R",), reason=_SAMME_R),
         why="AdaBoostClassifier's SAMME.R algorithm was removed"),
    Rule("sklearn.semi_supervised.SelfTrainingClassifier", "1.6",
         Superseded("base_estimator", "estimator"),
         why="estimator was added to replace base_estimator"),
    *(Rule(tag, "1.6", ReplacedValue("n_components", (("warn", None),)),
           why="the 'warn' default (meaning None: all features) was retired")
      for tag in ("sklearn.decomposition.NMF", "sklearn.decomposition.MiniBatchNMF")),
    Rule("sklearn.semi_supervised.SelfTrainingClassifier", "1.6",
         RenamedAttr("base_estimator_", "estimator_"), why="the fitted estimator was renamed"),
    Rule("sklearn.pipeline.Pipeline", "1.6", AddedParam("transform_input", None),
         why="transform_input was added (None: the old behaviour)"),
    *(Rule(tag, "1.6", ReplacedValue("categorical_features", (("warn", None),)),
           why="the 'warn' default (1.4, 1.5) was removed; it fitted as None")
      for tag in ("sklearn.ensemble.HistGradientBoostingClassifier",
                  "sklearn.ensemble.HistGradientBoostingRegressor")),
    Rule("sklearn.neighbors.NearestCentroid", "1.6", AddedParam("priors", "uniform"),
         why="priors was added ('uniform': plain nearest centroid, the old behaviour)"),
    Rule("sklearn.neighbors.NearestCentroid", "1.6",
         AddedAttr("class_prior_", _uniform_prior, how="= 1 / n_classes (priors='uniform')"),
         why="class_prior_ was added"),
    Rule("sklearn.impute.IterativeImputer", "1.6",
         AddedAttr("_is_empty_feature", _empty_features,
                   how="= isnan(initial_imputer_.statistics_), 1.5's test for empty features"),
         why="empty features became a stored mask"),
    # 1.7
    Rule("sklearn.manifold.TSNE", "1.7",
         MergedParam("n_iter", "max_iter", default=1000), why="n_iter was renamed max_iter"),
    *(Rule(tag, "1.7", MergedParam("store_cv_values", "store_cv_results", default=False),
           why="store_cv_values was renamed store_cv_results")
      for tag in ("sklearn.linear_model.RidgeCV", "sklearn.linear_model.RidgeClassifierCV")),
    *(Rule(tag, "1.7", Superseded("base_estimator", "estimator"),
           why="estimator was added to replace base_estimator") for tag in _CHAINS),
    Rule("sklearn.preprocessing.KBinsDiscretizer", "1.7",
         AddedParam("quantile_method", "linear", equivalent=("warn",), fit_only=True),
         why="quantile_method was added ('linear': numpy's percentile, the old behaviour)"),
    Rule("sklearn.neural_network.MLPRegressor", "1.7", AttrToParam("loss"),
         why="loss became a parameter (it was a fixed attribute, 'squared_error')"),
    Rule("sklearn.neural_network.MLPRegressor", "1.7", AddedParam("loss", "squared_error"),
         why="loss became a parameter"),
    Rule("sklearn.linear_model.LinearRegression", "1.7", AddedParam("tol", 1e-6),
         why="tol was added (1e-6: scipy lsqr's tolerance, used before for sparse input)"),
    # 1.8
    Rule("sklearn.linear_model.LogisticRegressionCV", "1.8",
         AddedParam("use_legacy_attributes", True, equivalent=("warn",)),
         why="use_legacy_attributes was added (True: the attributes as they were)"),
    *(Rule("sklearn.discriminant_analysis.QuadraticDiscriminantAnalysis", "1.8",
           AddedParam(name, value), why=f"{name} was added ({value!r}: the old behaviour)")
      for name, value in (("solver", "svd"), ("shrinkage", None),
                          ("covariance_estimator", None))),
    *(Rule("sklearn.decomposition.SparseCoder", "1.8",
           AddedAttr(name, _dictionary_axis(axis), how=f"= dictionary.shape[{axis}]"),
           why=f"{name} became a stored attribute (a property before)")
      for name, axis in (("n_components_", 0), ("n_features_in_", 1))),
    # MDS: the boolean `metric` became `metric_mds`; `metric` now names the distance.
    Rule("sklearn.manifold.MDS", "1.8", RenamedParam("metric", "metric_mds"),
         why="metric (metric or non-metric MDS) was renamed metric_mds"),
    *(Rule("sklearn.manifold.MDS", "1.8", AddedParam(name, value, equivalent=equivalent),
           why=f"{name} was added ({value!r}: the old behaviour)")
      for name, value, equivalent in (("metric", "euclidean", ()), ("metric_params", None, ()),
                                      ("init", "random", ("warn",)))),
    Rule(_ADA, "1.8", RemovedParam(
        "algorithm", faithful=("SAMME", "deprecated"), restore="SAMME", reason=_SAMME_R),
         why="AdaBoostClassifier's algorithm parameter was removed"),
    *(Rule(tag, "1.8", RemovedParam("multi_class", faithful=("auto", "deprecated", "ovr",
                                                             "multinomial", "warn"),
                                    restore="deprecated", check=_logistic_multi_class),
           why="multi_class was removed: binary is one-vs-rest, multiclass multinomial")
      for tag in _LOGISTIC),
    Rule("sklearn.semi_supervised.SelfTrainingClassifier", "1.8",
         MergedParam("base_estimator", "estimator"), why="base_estimator was removed"),
    Rule("sklearn.linear_model.TheilSenRegressor", "1.8",
         RemovedParam("copy_X", faithful=ANY, restore=True), why="copy_X had no effect"),
    Rule("sklearn.cluster.Birch", "1.8", RemovedParam("copy", faithful=ANY, restore=True),
         why="copy had no effect"),
    Rule("sklearn.impute.SimpleImputer", "1.8",
         AddedAttr("_fill_dtype", _same_as("attrs", "_fit_dtype"),
                   how="= _fit_dtype (the dtype fit saw, as 1.8 stores it)"),
         why="transform casts statistics to the fitted dtype"),
    Rule("sklearn.preprocessing.MaxAbsScaler", "1.8", AddedParam("clip", False),
         why="clip was added (False: no clipping, the old behaviour)"),
    Rule("sklearn.preprocessing.SplineTransformer", "1.8", AddedParam("handle_missing", "error"),
         why="handle_missing was added ('error': the old behaviour)"),
    *(Rule(tag, "1.8", AddedAttr("classes_", _same_as("attrs", "_label_binarizer", "attrs",
                                                      "classes_"),
                                 how="= _label_binarizer.classes_ (a property before 1.8)"),
           why="classes_ became a stored attribute")
      for tag in ("sklearn.linear_model.RidgeClassifier",
                  "sklearn.linear_model.RidgeClassifierCV")),
    # 1.9
    Rule("sklearn.preprocessing.KBinsDiscretizer", "1.9",
         ReplacedValue("quantile_method", (("warn", "linear"),)),
         why="the 'warn' default (1.7, 1.8) was removed; it fitted as 'linear'"),
    *(Rule(tag, "1.9", FitOnlyValue("eta0", 0.0, 0.01, given=("learning_rate", ("optimal",))),
           why="eta0 must now be positive; 0.0, the old default, was unused by "
               "learning_rate='optimal'")
      for tag in ("sklearn.linear_model.SGDClassifier", "sklearn.linear_model.SGDOneClassSVM")),
    *(Rule(tag, "1.9", FitOnlyValue("criterion", "friedman_mse", "squared_error"),
           why="the 'friedman_mse' tree criterion was removed (gradient boosting now grows its "
               "trees with 'squared_error')")
      for tag in ("sklearn.tree.DecisionTreeRegressor", "sklearn.tree.ExtraTreeRegressor",
                  "sklearn.ensemble.RandomForestRegressor",
                  "sklearn.ensemble.ExtraTreesRegressor")),
    *(Rule(tag, "1.9", MergedParam("base_estimator", "estimator"),
           why="base_estimator was removed") for tag in _CHAINS),
    Rule("sklearn.compose.ColumnTransformer", "1.9",
         RemovedParam("force_int_remainder_cols", faithful=ANY, restore=False),
         why="force_int_remainder_cols was removed (it only named the remainder columns)"),
    # XGBoost
    Rule("xgboost.Booster", "3.1", NewerOnly(
        "XGBoost 3.1 stores the base score as a vector (one intercept per target, "
        "\"[0.5]\"), which earlier versions read as another value: predictions would change"),
         why="the base score became a vector", library="xgboost"),
    *(Rule(f"xgboost.{name}", "3.0", AddedParam("feature_weights", None),
           why="feature_weights became a constructor parameter", library="xgboost")
      for name in ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier",
                   "XGBRFRegressor")),
    *(Rule(tag, "1.9", MergedParam("n_alphas", "alphas", new_unset=(None, "warn"),
                                   default=100, restore=100, new_wins=True),
           why="n_alphas was merged into alphas (an int is the number of alphas)")
      for tag in _ALPHA_CV),
)

MOVES: tuple[Moved, ...] = (
    Moved("sklearn.model_selection._classification_threshold._CurveScorer",
          "sklearn.metrics._scorer._CurveScorer", "1.6"),
)

REPLACEMENTS: tuple[Replaced, ...] = (
    Replaced("sklearn.compose._column_transformer._RemainderColsList", "1.7",
             _remainder_cols_list, how="became a plain list of the remainder columns"),
)


# -- planning and applying ------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One transform a file needs: where, on which class, what, and whether it is exact."""

    path: str
    tag: str
    description: str
    approximate: bool = False

    def __str__(self) -> str:
        return f"{self.path or '<root>'} ({self.tag}): {self.description}"


@dataclass
class _Plan:
    writer: str
    reader: str
    steps: list[Step]


def _direction(writer: Version, reader: Version, version: str) -> int:
    """+1 when the change lies between an older writer and a newer reader, -1 the reverse."""
    changed = parse_version(version)
    assert changed is not None
    if writer < changed <= reader:
        return 1
    if reader < changed <= writer:
        return -1
    return 0


def _join(path: str, key: Any) -> str:
    from .engine import join_path

    return join_path(path, key)


# (container, key, value, path): the container is None for the root, else a list or an object.
_Slot = tuple[list[Any] | JsonObject | None, Any, Any, str]


def _walk(root: Any) -> Iterator[tuple[list[Any] | JsonObject | None, Any, JsonObject, str]]:
    """Yield ``(container, key, node, path)`` for every typed node, parents before children."""
    stack: list[_Slot] = [(None, None, root, "")]
    while stack:
        parent, key, value, path = stack.pop()
        if isinstance(value, list):
            for i in range(len(value) - 1, -1, -1):
                if isinstance(value[i], (list, dict)):
                    stack.append((value, i, value[i], f"{path}[{i}]"))
            continue
        if not isinstance(value, dict) or "$ref" in value:
            continue
        if isinstance(value.get("$type"), str):
            yield parent, key, value, path
        children: list[_Slot] = []
        for k, item in value.items():
            if not isinstance(item, (list, dict)) or k in ("$type", "data"):
                continue
            if k in ("params", "attrs", "state", "items") and isinstance(value.get("$type"), str):
                if isinstance(item, dict):
                    children.extend((item, kk, v, _join(path, kk)) for kk, v in item.items()
                                    if isinstance(v, (list, dict)))
                else:
                    children.extend((item, i, v, f"{path}[{i}]") for i, v in enumerate(item)
                                    if isinstance(v, (list, dict)))
            else:
                children.append((value, k, item, _join(path, k)))
        stack.extend(reversed(children))


_Pair = tuple[str, str, Version, Version]  # writer text, reader text, parsed versions


def _pairs(manifest: JsonObject, reader: str | None) -> dict[str, _Pair]:
    """Per library of :data:`LIBRARIES`: writer and reader versions, when both are known and
    differ (``reader`` overrides the installed scikit-learn, for tests and tools)."""
    writer = manifest.get("writer")
    if not isinstance(writer, dict):
        return {}
    found = {}
    for library in LIBRARIES:
        writer_text = writer.get(library)
        if writer_text is None:
            continue
        reader_text = reader if (reader is not None and library == "scikit-learn") else (
            installed(library))
        writer_v, reader_v = parse_version(writer_text), parse_version(reader_text)
        if writer_v is not None and reader_v is not None and writer_v != reader_v:
            found[library] = (str(writer_text), str(reader_text), writer_v, reader_v)
    return found


def version_pairs(manifest: JsonObject) -> dict[str, _Pair]:
    """The libraries whose writer and installed versions differ (empty: :func:`plan` finds
    nothing and :func:`diagnose` refuses nothing, so a reader need not call them)."""
    return _pairs(manifest, None)


def _versions(manifest: JsonObject, reader: str | None) -> _Pair | None:
    return _pairs(manifest, reader).get("scikit-learn")


def plan(manifest: JsonObject, *, reader: str | None = None, execute: bool = False) -> list[Step]:
    """The migrations ``manifest`` needs under scikit-learn ``reader`` (default: installed).

    With ``execute=True`` the manifest is transformed in place as the steps are found (the
    reader does this before validating).  A rule that refuses raises
    :class:`~milo_pack.errors.VersionError` naming the writer's and reader's versions, the
    parameter and the reason; without ``execute`` the refusal is reported as a step whose
    description starts with ``REFUSED``.  Nothing here imports or builds anything.
    """
    pairs = _pairs(manifest, reader)
    if not pairs:
        return []
    # Moves and replacements are scikit-learn's; without its pair they never apply.
    writer_text, reader_text, writer_v, reader_v = pairs.get(
        "scikit-learn", ("", "", (0,), (0,)))
    rules: dict[str, list[tuple[Rule, int]]] = {}
    order = {id(rule): i for i, rule in enumerate(RULES)}
    for rule in RULES:
        pair = pairs.get(rule.library)
        d = _direction(pair[2], pair[3], rule.version) if pair is not None else 0
        if d:
            rules.setdefault(rule.tag, []).append((rule, d))
    for tag_rules in rules.values():
        # Up: oldest change first, in table order; down: the exact reverse.
        tag_rules.sort(key=lambda rd: tuple(rd[1] * v for v in (*_key(rd[0].version),
                                                                 order[id(rd[0])])))
    moves: dict[str, tuple[str, Moved]] = {}
    for move in MOVES:
        d = _direction(writer_v, reader_v, move.version)
        if d == 1:
            moves[move.old_tag] = (move.new_tag, move)
        elif d == -1:
            moves[move.new_tag] = (move.old_tag, move)
    replacements = {r.tag: r for r in REPLACEMENTS
                    if _direction(writer_v, reader_v, r.version) == 1}
    steps: list[Step] = []

    def refuse(path: str, tag: str, message: str, library: str) -> None:
        w, r = pairs[library][:2]
        text = f"{message} (written by {library} {quote(w, 20)}, loading under {r})"
        if execute:
            raise VersionError(text, path or "<root>", writer=w, reader=r)
        steps.append(Step(path, tag, "REFUSED: " + text))

    root = manifest.get("root")
    holder = {"root": root}
    for parent, key, node, path in _walk(root):
        tag = node["$type"]
        if tag in replacements:
            rep = replacements[tag]
            steps.append(Step(path, tag, f"{rep.how} (scikit-learn {rep.version})"))
            if execute:
                try:
                    new = rep.convert(node)
                except ManifestError as exc:
                    raise ManifestError(exc.message, path or "<root>") from None
                (holder if parent is None else parent)[key] = new
            continue
        if tag in moves:
            new_tag, move = moves[tag]
            steps.append(Step(path, tag, f"class moved to {new_tag} (scikit-learn "
                                         f"{move.version})"))
            if execute:
                node["$type"] = new_tag
            tag = new_tag
        packed = _packed_members(node)
        if packed is not None:
            tag = node["class"]  # the rules of the members' class, on the parameters they share
        for rule, d in rules.get(tag, ()):
            target = (node if execute else _shadow(node)) if packed is None else (
                _packed_target(node, execute))
            try:
                text = rule.op.up(target) if d == 1 else rule.op.down(target)
                if packed is not None:
                    _packed_commit(node, target, execute)
            except Refusal as exc:
                refuse(path, tag, f"{tag.rpartition('.')[2]}: {exc}", rule.library)
                break  # one refusal per object: later rules would only repeat it
            except ManifestError as exc:
                raise ManifestError(exc.message, path or "<root>") from None
            except (TypeError, AttributeError, KeyError, IndexError, ValueError):
                # A rule reads fields validation has not checked yet: malformed ones refuse.
                raise ManifestError(f"malformed {tag.rpartition('.')[2]} state for the "
                                    "declared migrations", path or "<root>") from None
            if text is not None:
                where = f"{rule.library} {rule.version}"
                steps.append(Step(path, tag, f"{text} ({where})", rule.op.approximate))
    if execute and holder["root"] is not root:  # the root itself was replaced
        manifest["root"] = holder["root"]
    return steps


# -- ensembles stored packed ----------------------------------------------------------------------
# A packed node (``sklearn.tree.packed``...) stores its members' fields once: ``shared`` (the
# same value for every member) and ``varying`` (one value per member), ``fields`` naming them
# in order.  Its members' rules run on the shared values; a rule that would touch a varying
# field cannot be applied member by member and refuses the file.


class _Varying:
    """Stands for a member field stored per member (never a plain value: value rules skip it)."""


_VARYING = _Varying()


def _packed_members(node: JsonObject) -> JsonObject | None:
    if (isinstance(node.get("class"), str) and isinstance(node.get("shared"), dict)
            and isinstance(node.get("varying"), dict) and isinstance(node.get("fields"), list)):
        return node
    return None


def _packed_target(node: JsonObject, execute: bool) -> JsonObject:
    fields = dict(node["shared"])  # value rules replace values, never change them in place
    fields.update((name, _VARYING) for name in node["varying"])
    return {"params": fields, "attrs": fields}


def _packed_commit(node: JsonObject, target: JsonObject, execute: bool) -> None:
    fields = target["params"]
    varying = {name for name, value in fields.items() if value is _VARYING}
    if varying != set(node["varying"]):
        raise Refusal("a migrated field is stored per member in this packed ensemble")
    if not execute:
        return
    shared = {name: value for name, value in fields.items() if value is not _VARYING}
    before = set(node["shared"]) | varying  # other fields (tree_) are not parameters
    kept = [name for name in node["fields"]
            if name in shared or name in varying or name not in before]
    node["fields"] = kept + [name for name in shared if name not in kept]
    node["shared"] = shared


def _key(version: str) -> tuple[int, ...]:
    parsed = parse_version(version)
    assert parsed is not None
    return parsed


def _shadow(node: JsonObject) -> JsonObject:
    """A copy of a node deep enough for a dry run (params and attrs tables are copied)."""
    copy = dict(node)
    for k in ("params", "attrs"):
        if isinstance(copy.get(k), dict):
            copy[k] = dict(copy[k])
    return copy


def apply(manifest: JsonObject, *, reader: str | None = None) -> list[Step]:
    """Transform ``manifest`` in place for scikit-learn ``reader``; return the steps taken."""
    return plan(manifest, reader=reader, execute=True)


def describe(steps: list[Step]) -> str:
    """The steps as lines of text (``inspect``/``verify`` print this)."""
    return "\n".join(f"  {step}" for step in steps)


def warning_for(steps: list[Step], writer: str, reader: str) -> MigrationWarning:
    """The one warning a load emits for the migrations it applied."""
    approx = sum(step.approximate for step in steps)
    head = (f"file written by scikit-learn {writer} was migrated to {reader} "
            f"({len(steps)} transform{'s' if len(steps) != 1 else ''}"
            f"{f', {approx} approximate' if approx else ''}):")
    return MigrationWarning(head + "\n" + describe(steps), tuple(steps))


# -- diagnosis ------------------------------------------------------------------------------------


def diagnose(manifest: JsonObject, registry: Registry, *, reader: str | None = None) -> None:
    """Refuse, naming both versions, what the installed libraries cannot hold.

    Runs before validation (after migrations), on files written by another scikit-learn (or
    XGBoost): a scikit-learn class the installed version does not have, parameters it does not
    know, and, for a file from a *newer* version, parameters the installed class needs that the
    file lacks (the newer version removed them; predicting would fail on the missing
    attribute) and plain parameter values the installed class's constraints refuse (a newer
    version's ``"deprecated"`` or ``"warn"`` default).  The validator would refuse most of
    these anyway, with a message that does not say why.  Tags only select registry entries,
    as in validation; nothing is imported by name from the file.
    """
    pairs = _pairs(manifest, reader)
    if not pairs:
        return
    for _, _, node, path in _walk(manifest.get("root")):
        tag = node["$type"]
        library = ("scikit-learn" if tag.startswith("sklearn.") else
                   "xgboost" if tag.startswith("xgboost.") else None)
        if library is None:
            continue
        pair = pairs.get(library)
        if pair is None:
            continue
        writer_text, reader_text, writer_v, reader_v = pair
        where = path or "<root>"

        def refuse(message: str, w: str = writer_text, r: str = reader_text,
                   lib: str = library, newer: bool = writer_v > reader_v,
                   at: str = where) -> None:
            side = "a newer" if newer else "an older"
            raise VersionError(f"{message} in {lib} {r}; the file was written by {side} "
                               f"{lib} ({quote(w, 20)}) and no migration is declared for it",
                               at, writer=w, reader=r)

        handler = registry.for_tag(tag)
        if handler is None:
            if library == "scikit-learn":
                refuse(f"{quote(tag)} does not exist")
            continue
        params = node.get("params")
        cls = getattr(handler, "cls", None)
        if not isinstance(params, dict) or not isinstance(node.get("attrs"), dict) or cls is None:
            continue
        names = _param_names(cls, library)
        if names is None:
            continue
        unknown = sorted(set(params) - names)
        if unknown:
            what = "is not a parameter" if len(unknown) == 1 else "are not parameters"
            refuse(f"{quote(unknown)} {what} of {cls.__name__}")
        missing = sorted(names - set(params))
        if missing and writer_v > reader_v and library == "scikit-learn":
            what = "is a parameter" if len(missing) == 1 else "are parameters"
            refuse(f"{quote(missing)} {what} of {cls.__name__} that the file lacks")
        if writer_v > reader_v and library == "scikit-learn":
            invalid = _invalid_value(cls, params)
            if invalid is not None:
                refuse(f"parameter {invalid[0]!r}={_show(invalid[1])} is not a value "
                       f"{cls.__name__} accepts")


def _invalid_value(cls: type, params: dict[str, Any]) -> tuple[str, Node] | None:
    """A plain parameter value (a newer version's default such as ``"deprecated"``) that the
    installed class's declared constraints refuse: the first one, or None.  Values that are not
    plain JSON scalars are left to validation."""
    from .handlers.invariants.params import satisfies

    for name, value in params.items():
        if _plain(value) and satisfies(cls, name, value) is False:
            return name, value
    return None


def _param_names(cls: type, library: str) -> frozenset[str] | None:
    if library == "xgboost":  # XGBoost's estimators take **kwargs: ask an instance
        try:
            return frozenset(cls().get_params(deep=False))
        except Exception:  # noqa: BLE001 - an unusual class: its handler checks it
            return None
    names_of = getattr(cls, "_get_param_names", None)
    return frozenset(names_of()) if names_of is not None else None
