"""Standard-library values models and their metadata hold: collections, dates, enums.

Each is data: a node of plain fields rebuilt by its own class, never by calling anything the file
names.

- ``collections.OrderedDict``, ``defaultdict`` (its ``default_factory`` must itself be an
  allow-listed type or function, or None), ``Counter`` and ``deque`` keep their exact type,
  order and contents.
- ``datetime.datetime``/``date``/``time`` as ISO strings (naive; the time zone is a node of its
  own and ``fold`` is kept), ``timedelta`` as days, seconds and microseconds, ``timezone`` as its
  offset and name, ``zoneinfo.ZoneInfo`` by its key (loading reads the system's time-zone data,
  as ``ZoneInfo(key)`` does).
- Members of allow-listed enums (:data:`ENUMS`) by name (or value, for flags).  A member of
  your own enum is saved under ``enum:module.Class`` and, like your own estimators, loads only
  when the caller trusts that tag.
"""

from __future__ import annotations

import collections
import datetime
import enum
import sys
from collections.abc import MutableMapping
from typing import Any, TypeVar

from ..engine import CheckContext, LoadContext, SaveContext, join_path
from ..errors import InvariantError, ManifestError, UnsupportedTypeError, quote
from ..registry import Handler, Registry

# Enums whose members a model may hold: ``enum:<tag>`` -> (module, class name).
ENUMS: dict[str, tuple[str, str]] = {
    "enum:re.RegexFlag": ("re", "RegexFlag"),
}
_MAX_ZONE_KEY = 256


def _pairs(obj: Any, ctx: SaveContext, path: str) -> list[list[Any]]:
    return [[ctx.encode(k, f"{path}.<key {i}>"), ctx.encode(v, f"{path}[{k!r}]")]
            for i, (k, v) in enumerate(obj.items())]


def _check_pairs(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    items = node["items"]
    if not isinstance(items, list) or not all(
            isinstance(p, list) and len(p) == 2 for p in items):
        raise ManifestError("items must be a list of [key, value] pairs", path)


_M = TypeVar("_M", bound=MutableMapping[Any, Any])


def _fill(result: _M, node: dict[str, Any], ctx: LoadContext, path: str) -> _M:
    ctx.register(node, result)
    for i, (k, v) in enumerate(node["items"]):
        key = ctx.decode(k, f"{path}.<key {i}>")
        try:
            hash(key)
        except TypeError:
            raise ManifestError(f"unhashable {type(key).__name__} as a key", path) from None
        result[key] = ctx.decode(v, f"{path}[{key!r}]")
    return result


# -- collections ------------------------------------------------------------------------------


def _save_mapping(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
    return {"items": _pairs(obj, ctx, path)}


def _load_ordered(node: dict[str, Any], ctx: LoadContext,
                  path: str) -> collections.OrderedDict[Any, Any]:
    return _fill(collections.OrderedDict(), node, ctx, path)


def _load_counter(node: dict[str, Any], ctx: LoadContext,
                  path: str) -> collections.Counter[Any]:
    return _fill(collections.Counter(), node, ctx, path)


def _save_defaultdict(obj: collections.defaultdict[Any, Any], ctx: SaveContext,
                      path: str) -> dict[str, Any]:
    factory = ctx.encode(obj.default_factory, join_path(path, "default_factory"))
    if factory is not None and not _is_callable_node(factory):
        raise UnsupportedTypeError("a defaultdict's default_factory must be an allow-listed "
                                   "type or function, or None", path)
    return {"default_factory": factory, "items": _pairs(obj, ctx, path)}


def _is_callable_node(node: Any) -> bool:
    return (isinstance(node, dict) and set(node) == {"$type"} and isinstance(node["$type"], str)
            and node["$type"].partition(":")[0] in ("type", "function"))


def _check_defaultdict(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    factory = node["default_factory"]
    if factory is not None and not _is_callable_node(factory):
        raise ManifestError("default_factory must be null or a type or function node", path)
    _check_pairs(node, ctx, path)


def _load_defaultdict(node: dict[str, Any], ctx: LoadContext,
                      path: str) -> collections.defaultdict[Any, Any]:
    factory = ctx.decode(node["default_factory"], join_path(path, "default_factory"))
    if factory is not None and not callable(factory):
        raise InvariantError("default_factory must be callable", path)
    return _fill(collections.defaultdict(factory), node, ctx, path)


def _save_deque(obj: collections.deque[Any], ctx: SaveContext, path: str) -> dict[str, Any]:
    return {"items": [ctx.encode(v, f"{path}[{i}]") for i, v in enumerate(obj)],
            "maxlen": obj.maxlen}


def _check_deque(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    maxlen = node["maxlen"]
    if not isinstance(node["items"], list) or not (
            maxlen is None or (type(maxlen) is int and maxlen >= len(node["items"]))):
        raise ManifestError("a deque has items and a maxlen (null or at least its length)",
                            path)


def _load_deque(node: dict[str, Any], ctx: LoadContext, path: str) -> collections.deque[Any]:
    result: collections.deque[Any] = collections.deque(maxlen=node["maxlen"])
    ctx.register(node, result)
    result.extend(ctx.decode(v, f"{path}[{i}]") for i, v in enumerate(node["items"]))
    return result


# -- dates and times --------------------------------------------------------------------------


def _tz_node(tz: Any, ctx: SaveContext, path: str) -> Any:
    node = ctx.encode(tz, join_path(path, "tzinfo"))
    if node is not None and not (isinstance(node, dict) and node.get("$type") in _TZ_TAGS):
        raise UnsupportedTypeError("time zones are saved as datetime.timezone or "
                                   "zoneinfo.ZoneInfo", path)
    return node


def _tz(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:
    tz = ctx.decode(node["tzinfo"], join_path(path, "tzinfo"))
    if tz is not None and not isinstance(tz, datetime.tzinfo):
        raise InvariantError("tzinfo must be a time zone", path)
    return tz


def _check_clock(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    fold = node["fold"]
    if not isinstance(node["value"], str) or len(node["value"]) > 40 or type(fold) is not int \
            or fold not in (0, 1):
        raise ManifestError("a date or time is an ISO string with fold 0 or 1", path)
    tz = node["tzinfo"]
    if tz is not None and not (isinstance(tz, dict) and tz.get("$type") in _TZ_TAGS):
        raise ManifestError("tzinfo must be null or a time-zone node", path)


def _save_datetime(obj: datetime.datetime, ctx: SaveContext, path: str) -> dict[str, Any]:
    return {"value": obj.replace(tzinfo=None, fold=0).isoformat(timespec="microseconds"),
            "tzinfo": _tz_node(obj.tzinfo, ctx, path), "fold": obj.fold}


# Constrained, not bound: each class's fromisoformat returns that class.
_Clock = TypeVar("_Clock", datetime.datetime, datetime.date, datetime.time)


def _parse(kind: type[_Clock], text: str, path: str) -> _Clock:
    try:
        value = kind.fromisoformat(text)
    except ValueError:
        raise InvariantError(f"{quote(text)} is not an ISO {kind.__name__}", path) from None
    if getattr(value, "tzinfo", None) is not None:
        raise InvariantError("the ISO string must be naive; the zone is 'tzinfo'", path)
    return value


def _load_datetime(node: dict[str, Any], ctx: LoadContext, path: str) -> datetime.datetime:
    value = _parse(datetime.datetime, node["value"], path)
    return value.replace(tzinfo=_tz(node, ctx, path), fold=node["fold"])


def _save_time(obj: datetime.time, ctx: SaveContext, path: str) -> dict[str, Any]:
    return {"value": obj.replace(tzinfo=None, fold=0).isoformat(timespec="microseconds"),
            "tzinfo": _tz_node(obj.tzinfo, ctx, path), "fold": obj.fold}


def _load_time(node: dict[str, Any], ctx: LoadContext, path: str) -> datetime.time:
    value = _parse(datetime.time, node["value"], path)
    return value.replace(tzinfo=_tz(node, ctx, path), fold=node["fold"])


def _save_date(obj: datetime.date, ctx: SaveContext, path: str) -> dict[str, Any]:
    return {"value": obj.isoformat()}


def _check_date(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    if not isinstance(node["value"], str) or len(node["value"]) > 20:
        raise ManifestError("a date is an ISO string", path)


def _load_date(node: dict[str, Any], ctx: LoadContext, path: str) -> datetime.date:
    return _parse(datetime.date, node["value"], path)


def _save_timedelta(obj: datetime.timedelta, ctx: SaveContext, path: str) -> dict[str, Any]:
    return {"days": obj.days, "seconds": obj.seconds, "microseconds": obj.microseconds}


def _check_timedelta(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    if not all(type(node[k]) is int for k in ("days", "seconds", "microseconds")):
        raise ManifestError("a timedelta has int days, seconds and microseconds", path)


def _load_timedelta(node: dict[str, Any], ctx: LoadContext, path: str) -> datetime.timedelta:
    try:
        return datetime.timedelta(days=node["days"], seconds=node["seconds"],
                                  microseconds=node["microseconds"])
    except OverflowError:
        raise InvariantError("timedelta out of range", path) from None


def _save_timezone(obj: datetime.timezone, ctx: SaveContext, path: str) -> dict[str, Any]:
    offset = obj.utcoffset(None)
    name = obj.tzname(None)
    default = datetime.timezone(offset).tzname(None)
    return {"offset": ctx.encode(offset, join_path(path, "offset")),
            "name": None if name == default else name}


def _check_timezone(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    name = node["name"]
    if not (isinstance(node["offset"], dict) and node["offset"].get("$type")
            == "datetime.timedelta") or not (name is None or isinstance(name, str)):
        raise ManifestError("a timezone has a timedelta offset and a name (or null)", path)


def _load_timezone(node: dict[str, Any], ctx: LoadContext, path: str) -> datetime.timezone:
    offset = ctx.decode(node["offset"], join_path(path, "offset"))
    try:
        if node["name"] is None:
            return datetime.timezone(offset)
        return datetime.timezone(offset, node["name"])
    except (TypeError, ValueError) as exc:
        raise InvariantError(f"invalid timezone: {exc}", path) from None


def _zone_key_ok(key: Any) -> bool:
    # IANA keys: no absolute paths, no "..", no empty components (zoneinfo checks this too).
    return (isinstance(key, str) and 0 < len(key) <= _MAX_ZONE_KEY and key.isascii()
            and all(part and part not in (".", "..") and all(
                c.isalnum() or c in "_+-" for c in part) for part in key.split("/")))


def _save_zone(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
    if not _zone_key_ok(obj.key):
        raise UnsupportedTypeError("a ZoneInfo without an IANA key (from_file?)", path)
    return {"key": obj.key}


def _check_zone(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
    if not _zone_key_ok(node["key"]):
        raise ManifestError("a ZoneInfo key is an IANA name such as 'Europe/Paris'", path)


def _load_zone(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:
    import zoneinfo

    try:
        return zoneinfo.ZoneInfo(node["key"])
    except (KeyError, ValueError, OSError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise InvariantError(f"unknown time zone {quote(node['key'])}: "
                             f"{type(exc).__name__}", path) from None


_TZ_TAGS = frozenset({"datetime.timezone", "zoneinfo.ZoneInfo"})


# -- enums ------------------------------------------------------------------------------------


def _enum_handler(cls: type[enum.Enum], tag: str, trusted: bool) -> Handler:
    flag = issubclass(cls, enum.Flag)

    def save(obj: Any, ctx: SaveContext, path: str) -> dict[str, Any]:
        if flag:
            if type(obj.value) is not int:
                raise UnsupportedTypeError("a flag enum with non-int values", path)
            return {"value": obj.value}
        return {"name": obj.name}

    def check(node: dict[str, Any], ctx: CheckContext, path: str) -> None:
        if flag and (set(node) - {"$type", "$id"} != {"value"} or type(node["value"]) is not int):
            raise ManifestError(f"a {cls.__name__} member is an int 'value'", path)
        if not flag and (set(node) - {"$type", "$id"} != {"name"}
                         or node["name"] not in cls.__members__):
            raise ManifestError(f"{quote(node.get('name'))} is not a member of {cls.__name__}",
                                path)

    def load(node: dict[str, Any], ctx: LoadContext, path: str) -> Any:
        if not flag:
            return cls.__members__[node["name"]]
        try:
            return cls(node["value"])
        except (ValueError, TypeError):
            raise InvariantError(f"{node['value']} is not a {cls.__name__} value", path) from None

    return Handler(tag, save, load, frozenset({"name", "value"}), check=check, types=(cls,),
                   trusted=trusted, cls=cls, memo=False)


def enum_source(tag: str) -> Handler | None:
    found = ENUMS.get(tag)
    if found is None:
        return None
    module = sys.modules.get(found[0])
    if module is None:
        import importlib

        module = importlib.import_module(found[0])
    cls = getattr(module, found[1], None)
    if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
        return None
    return _enum_handler(cls, tag, True)


def _enum_tag(cls: type) -> str:
    return f"enum:{cls.__module__}.{cls.__qualname__}"


def resolve_enum(obj: Any, registry: Registry) -> Handler | None:
    cls = type(obj)
    if not isinstance(obj, enum.Enum):
        return None
    tag = _enum_tag(cls)
    handler = registry.for_tag(tag)
    if handler is not None and handler.cls is cls:
        return handler
    if cls.__module__ == "__main__" or "<" in cls.__qualname__:
        return None
    # Your own enum: saved by name, loaded only when trusted (like your own estimators).
    handler = _enum_handler(cls, tag, False)
    registry.by_type[cls] = handler
    return handler


def trusted_enum(target: Any, tag: str) -> Handler | None:
    if tag.startswith("enum:") and isinstance(target, type) and issubclass(target, enum.Enum) \
            and _enum_tag(target) == tag:
        return _enum_handler(target, tag, False)
    return None


def enum_tags() -> list[str]:
    return list(ENUMS)


def register(registry: Registry) -> None:
    """The collections, datetime and zoneinfo handlers (enum members are resolved through
    handlers/__init__.py); idempotent, as each of those modules' lazy keys runs it."""
    import zoneinfo

    F = frozenset
    items = F({"items"})
    clock = F({"value", "tzinfo", "fold"})
    for handler in (
        Handler("collections.OrderedDict", _save_mapping, _load_ordered, items, items,
                check=_check_pairs, types=(collections.OrderedDict,)),
        Handler("collections.Counter", _save_mapping, _load_counter, items, items,
                check=_check_pairs, types=(collections.Counter,)),
        Handler("collections.defaultdict", _save_defaultdict, _load_defaultdict,
                F({"default_factory", "items"}), F({"default_factory", "items"}),
                check=_check_defaultdict, types=(collections.defaultdict,)),
        Handler("collections.deque", _save_deque, _load_deque, F({"items", "maxlen"}),
                F({"items", "maxlen"}), check=_check_deque, types=(collections.deque,)),
        Handler("datetime.datetime", _save_datetime, _load_datetime, clock, clock,
                check=_check_clock, types=(datetime.datetime,), memo=False),
        Handler("datetime.time", _save_time, _load_time, clock, clock, check=_check_clock,
                types=(datetime.time,), memo=False),
        Handler("datetime.date", _save_date, _load_date, F({"value"}), F({"value"}),
                check=_check_date, types=(datetime.date,), memo=False),
        Handler("datetime.timedelta", _save_timedelta, _load_timedelta,
                F({"days", "seconds", "microseconds"}), F({"days", "seconds", "microseconds"}),
                check=_check_timedelta, types=(datetime.timedelta,), memo=False),
        Handler("datetime.timezone", _save_timezone, _load_timezone, F({"offset", "name"}),
                F({"offset", "name"}), check=_check_timezone, types=(datetime.timezone,),
                memo=False),
        Handler("zoneinfo.ZoneInfo", _save_zone, _load_zone, F({"key"}), F({"key"}),
                check=_check_zone, types=(zoneinfo.ZoneInfo,), memo=False),
    ):
        if handler.tag not in registry.by_tag:
            registry.add(handler)
