"""Declared migrations: files written under one scikit-learn load under another.

A manifest is plain data keyed by names, so a renamed parameter, a dropped parameter or an added
attribute is an edit of the parsed JSON.  This module holds a *declared table* of such changes,
each keyed by the class (its tag) and the scikit-learn release that made the change, and applies
the ones that lie between the writer's and the reader's versions to the parsed manifest **before
validation**: every security check then runs unchanged on the result, and nothing named by the
file is imported (tags select rules from the table; they never name code).

Transform kinds (see :data:`RULES`):

- ``Moved(old_tag, new_tag)``: a class moved between private modules (its tag is its location).
- ``RenamedParam`` / ``RenamedAttr``: same value, new name.
- ``RemovedParam(name, faithful, restore)``: the parameter is gone; dropped when the stored value
  is one whose behaviour is today's (``faithful``), **refused with the reason** otherwise.  Going
  down (a newer file, an older reader) it is restored with the value ``restore`` that behaves as
  the newer version does.
- ``AddedParam(name, old)``: a new parameter; an older file gets ``old``, the value that keeps the
  old behaviour.  Going down it is dropped when it holds ``old`` and refused otherwise.
- ``RemovedAttr(name)`` / ``AddedAttr(name, derive)``: a fitted attribute disappeared or appeared;
  a derived attribute computed from other stored state is marked *approximate* when it is not
  exactly what the newer version would have fitted.
- ``Replaced(tag, ...)``: an internal object (``_RemainderColsList``) became a plain value.

:func:`plan` finds the steps a manifest needs; :func:`apply` performs them (or raises
:class:`~milo_pack.errors.VersionError` for a refusal).  The reader calls both when it opens a
file with ``migrate=True`` (the default) and warns once per load (:class:`MigrationWarning`);
with ``migrate=False`` the manifest is validated as it is.  In either mode a file naming
parameters the installed class does not have is refused with both versions named
(:func:`diagnose`), not with a bare "not parameters of" message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ManifestError, MigrationWarning, VersionError, quote

__all__ = ["Step", "plan", "apply", "diagnose", "describe", "warning_for", "RULES",
           "parse_version", "MigrationWarning"]

Version = tuple[int, ...]
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: Any) -> Version | None:
    """``"1.5.2" -> (1, 5, 2)``; ``"1.6.dev0" -> (1, 6, 0)``; None when it is not a version."""
    if not isinstance(text, str) or len(text) > 40:
        return None
    match = _VERSION_RE.match(text)
    if match is None:
        return None
    return tuple(int(g) if g is not None else 0 for g in match.groups())


def installed_sklearn() -> str:
    import sklearn

    return str(sklearn.__version__)


# -- transform kinds ------------------------------------------------------------------------------

# A JSON node as stored in the manifest.
Node = Any
_MISSING = object()


class Refusal(Exception):
    """Internal: a rule found a value it cannot carry over faithfully (becomes VersionError)."""


@dataclass(frozen=True)
class Op:
    """One kind of change to an estimator node's ``params`` and ``attrs`` (see module doc)."""

    def up(self, node: dict) -> str | None:  # pragma: no cover - interface
        """Transform an older file's node for a newer reader; a description, or None if idle."""
        raise NotImplementedError

    def down(self, node: dict) -> str | None:  # pragma: no cover - interface
        """Transform a newer file's node for an older reader."""
        raise NotImplementedError

    approximate: bool = field(default=False, init=False)


def _params(node: dict) -> dict:
    params = node.get("params")
    if not isinstance(params, dict):
        raise ManifestError("params must be an object")
    return params


def _attrs(node: dict) -> dict:
    attrs = node.get("attrs")
    if not isinstance(attrs, dict):
        raise ManifestError("attrs must be an object")
    return attrs


def _show(value: Node) -> str:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return quote(value, 40)
    if isinstance(value, dict) and isinstance(value.get("$type"), str):
        return f"<{quote(value['$type'], 60)}>"
    return "<value>"


@dataclass(frozen=True)
class RenamedParam(Op):
    old: str
    new: str

    def up(self, node: dict) -> str | None:
        return _rename(_params(node), self.old, self.new, "parameter")

    def down(self, node: dict) -> str | None:
        return _rename(_params(node), self.new, self.old, "parameter")


@dataclass(frozen=True)
class RenamedAttr(Op):
    old: str
    new: str

    def up(self, node: dict) -> str | None:
        return _rename(_attrs(node), self.old, self.new, "attribute")

    def down(self, node: dict) -> str | None:
        return _rename(_attrs(node), self.new, self.old, "attribute")


def _rename(table: dict, old: str, new: str, what: str) -> str | None:
    if old not in table:
        return None
    if new in table:
        raise Refusal(f"the file has both {what}s {old!r} and {new!r}")
    # Keep the position of the entry (manifest order is document order).
    items = [(new if k == old else k, v) for k, v in table.items()]
    table.clear()
    table.update(items)
    return f"renamed {what} {old!r} to {new!r}"


@dataclass(frozen=True)
class RemovedParam(Op):
    """``name`` was removed; values in ``faithful`` behave as the newer version always does."""

    name: str
    faithful: tuple = ()
    restore: Node = _MISSING
    reason: str = ""

    def up(self, node: dict) -> str | None:
        params = _params(node)
        if self.name not in params:
            return None
        value = params[self.name]
        if value not in self.faithful or type(value) not in (str, int, float, bool, type(None)):
            raise Refusal(f"parameter {self.name!r}={_show(value)} has no faithful equivalent: "
                          f"{self.reason}")
        del params[self.name]
        return f"dropped parameter {self.name!r}={_show(value)} (today's behaviour)"

    def down(self, node: dict) -> str | None:
        params = _params(node)
        if self.name in params:
            return None
        if self.restore is _MISSING:
            raise Refusal(f"the older version needs parameter {self.name!r}, which the file "
                          "does not have")
        params[self.name] = self.restore
        return f"added parameter {self.name!r}={_show(self.restore)} (the newer behaviour)"


@dataclass(frozen=True)
class AddedParam(Op):
    """``name`` was added; ``old`` is the value that keeps the older version's behaviour."""

    name: str
    old: Node = None

    def up(self, node: dict) -> str | None:
        params = _params(node)
        if self.name in params:
            return None
        params[self.name] = self.old
        return f"added parameter {self.name!r}={_show(self.old)} (the old behaviour)"

    def down(self, node: dict) -> str | None:
        params = _params(node)
        if self.name not in params:
            return None
        value = params[self.name]
        if value != self.old or type(value) is not type(self.old):
            raise Refusal(f"parameter {self.name!r}={_show(value)} does not exist in the older "
                          f"version (only {_show(self.old)}, its behaviour there, can be dropped)")
        del params[self.name]
        return f"dropped parameter {self.name!r}={_show(value)} (the older version's behaviour)"


@dataclass(frozen=True)
class RemovedAttr(Op):
    """The fitted attribute ``name`` is no longer used (dropped going up)."""

    name: str

    def up(self, node: dict) -> str | None:
        attrs = _attrs(node)
        if self.name not in attrs:
            return None
        del attrs[self.name]
        return f"dropped attribute {self.name!r} (no longer used)"

    def down(self, node: dict) -> str | None:
        return None


@dataclass(frozen=True)
class AddedAttr(Op):
    """The fitted attribute ``name`` appeared; ``derive(node)`` computes it from stored state.

    ``derive`` returns a manifest node, or raises :class:`Refusal`; it reads JSON only.
    Going down the attribute is dropped (older versions do not read it).
    """

    name: str
    derive: Callable[[dict], Node] = field(default=lambda node: None, compare=False)
    exact: bool = True
    how: str = ""

    @property
    def approximate(self) -> bool:  # type: ignore[override]
        return not self.exact

    def up(self, node: dict) -> str | None:
        attrs = _attrs(node)
        if self.name in attrs:
            return None
        attrs[self.name] = self.derive(node)
        note = "" if self.exact else " [approximate]"
        return f"added attribute {self.name!r} {self.how}{note}".rstrip()

    def down(self, node: dict) -> str | None:
        attrs = _attrs(node)
        if self.name not in attrs:
            return None
        del attrs[self.name]
        return f"dropped attribute {self.name!r} (the older version does not use it)"


# -- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """``tag`` changed in scikit-learn ``version`` by ``op``; ``why`` is shown to the user."""

    tag: str
    version: str
    op: Op
    why: str = ""


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
    convert: Callable[[dict], Node] = field(compare=False)
    how: str = ""


def _remainder_cols_list(node: dict) -> Node:
    state = node.get("state")
    if not isinstance(state, dict) or not isinstance(state.get("data"), list):
        raise ManifestError("a _RemainderColsList holds its columns in state.data")
    if "$id" in node:
        return {"$type": "list", "$id": node["$id"], "items": state["data"]}
    return state["data"]


_ADA = "sklearn.ensemble.AdaBoostClassifier"

RULES: tuple[Rule, ...] = (
    Rule(_ADA, "1.8", RemovedParam(
        "algorithm", faithful=("SAMME", "deprecated"), restore="SAMME",
        reason="SAMME.R (real boosting on class probabilities) was removed in scikit-learn 1.6; "
               "its estimator weights and decision function differ from SAMME's, so the model "
               "would predict other labels"),
         why="AdaBoostClassifier's algorithm parameter was removed"),
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


def _walk(root: Any) -> Any:
    """Yield ``(container, key, node, path)`` for every typed node, parents before children."""
    stack: list[tuple[Any, Any, Any, str]] = [(None, None, root, "")]
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
        children = []
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


def _versions(manifest: dict, reader: str | None) -> tuple[str, str, Version, Version] | None:
    writer_text = manifest.get("writer", {}).get("scikit-learn") if isinstance(
        manifest.get("writer"), dict) else None
    reader_text = reader if reader is not None else installed_sklearn()
    writer_v, reader_v = parse_version(writer_text), parse_version(reader_text)
    if writer_v is None or reader_v is None or writer_v == reader_v:
        return None
    return str(writer_text), reader_text, writer_v, reader_v


def plan(manifest: dict, *, reader: str | None = None, execute: bool = False) -> list[Step]:
    """The migrations ``manifest`` needs under scikit-learn ``reader`` (default: installed).

    With ``execute=True`` the manifest is transformed in place as the steps are found (the
    reader does this before validating).  A rule that refuses raises
    :class:`~milo_pack.errors.VersionError` naming the writer's and reader's versions, the
    parameter and the reason; without ``execute`` the refusal is reported as a step whose
    description starts with ``REFUSED``.  Nothing here imports or builds anything.
    """
    found = _versions(manifest, reader)
    if found is None:
        return []
    writer_text, reader_text, writer_v, reader_v = found
    rules: dict[str, list[tuple[Rule, int]]] = {}
    for rule in RULES:
        d = _direction(writer_v, reader_v, rule.version)
        if d:
            rules.setdefault(rule.tag, []).append((rule, d))
    for tag_rules in rules.values():
        # Up: oldest change first; down: newest change first.
        tag_rules.sort(key=lambda rd: rd[1] * _key(rd[0].version))
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

    def refuse(path: str, tag: str, message: str) -> None:
        text = (f"{message} (written by scikit-learn {quote(writer_text, 20)}, "
                f"loading under {reader_text})")
        if execute:
            raise VersionError(text, path or "<root>", writer=writer_text, reader=reader_text)
        steps.append(Step(path, tag, "REFUSED: " + text))

    root = manifest.get("root")
    holder = {"root": root}
    for parent, key, node, path in _walk(root):
        tag = node["$type"]
        if tag in replacements:
            rep = replacements[tag]
            steps.append(Step(path, tag, f"{rep.how} (scikit-learn {rep.version})"))
            if execute:
                new = rep.convert(node)
                (holder if parent is None else parent)[key] = new
            continue
        if tag in moves:
            new_tag, move = moves[tag]
            steps.append(Step(path, tag, f"class moved to {new_tag} (scikit-learn "
                                         f"{move.version})"))
            if execute:
                node["$type"] = new_tag
            tag = new_tag
        for rule, d in rules.get(tag, ()):
            target = node if execute else _shadow(node)
            try:
                text = rule.op.up(target) if d == 1 else rule.op.down(target)
            except Refusal as exc:
                refuse(path, tag, f"{tag.rpartition('.')[2]}: {exc}")
                continue
            except ManifestError as exc:
                raise ManifestError(exc.message, path or "<root>") from None
            if text is not None:
                where = f"scikit-learn {rule.version}"
                steps.append(Step(path, tag, f"{text} ({where})", rule.op.approximate))
    if execute and holder["root"] is not root:  # the root itself was replaced
        manifest["root"] = holder["root"]
    return steps


def _key(version: str) -> tuple[int, ...]:
    parsed = parse_version(version)
    assert parsed is not None
    return parsed


def _shadow(node: dict) -> dict:
    """A copy of a node deep enough for a dry run (params and attrs tables are copied)."""
    copy = dict(node)
    for k in ("params", "attrs"):
        if isinstance(copy.get(k), dict):
            copy[k] = dict(copy[k])
    return copy


def apply(manifest: dict, *, reader: str | None = None) -> list[Step]:
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


def diagnose(manifest: dict, registry: Any, *, reader: str | None = None) -> None:
    """Refuse, naming both versions, estimators whose parameters the installed class lacks.

    Runs before validation (after migrations), on files written by another scikit-learn: the
    validator would refuse them anyway, with a message that does not say why.  Tags only
    select registry entries, as in validation; nothing is imported by name from the file.
    """
    found = _versions(manifest, reader)
    if found is None:
        return
    writer_text, reader_text, writer_v, reader_v = found
    for _, _, node, path in _walk(manifest.get("root")):
        tag = node["$type"]
        if tag.startswith("sklearn.") and registry.for_tag(tag) is None:
            newer = "a newer" if writer_v > reader_v else "an older"
            raise VersionError(
                f"{quote(tag)} does not exist in scikit-learn {reader_text}; the file was "
                f"written by {newer} scikit-learn ({quote(writer_text, 20)}) and no migration "
                "is declared for it", path or "<root>", writer=writer_text, reader=reader_text)
        params = node.get("params")
        if not isinstance(params, dict) or not isinstance(node.get("attrs"), dict):
            continue
        cls = getattr(registry.for_tag(tag), "cls", None)
        names_of = getattr(cls, "_get_param_names", None)
        if names_of is None:
            continue
        unknown = sorted(set(params) - set(names_of()))
        if unknown:
            what = "is not a parameter" if len(unknown) == 1 else "are not parameters"
            raise VersionError(
                f"{quote(unknown)} {what} of {cls.__name__} in scikit-learn {reader_text}; the "
                "file was written by "
                f"scikit-learn {quote(writer_text, 20)} and no migration is declared for "
                f"{'it' if len(unknown) == 1 else 'them'}", path or "<root>",
                writer=writer_text, reader=reader_text)
