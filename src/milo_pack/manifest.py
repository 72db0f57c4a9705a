"""The manifest: JSON text in and out, under budgets.

Writing: a small pretty-printer that keeps short lists and objects on one line (shapes, filter
configs, small arrays) and indents the rest, so ``jq .`` and a plain pager both read well.  Only
strict JSON comes out: non-finite floats never appear as bare ``NaN``/``Infinity`` (the object
graph encodes them as strings before they get here).

Reading: the text is size-checked before parsing, parsed with duplicate keys and the non-standard
constants refused, then walked once to check depth, value count and string lengths.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import LimitError, ManifestError
from .limits import Limits

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "dumps_json", "loads_json"]

FORMAT_NAME = "milo_pack"
FORMAT_VERSION = 1

_LINE = 120  # a container whose one-line form fits this width stays on one line


_encode_str = json.encoder.encode_basestring  # the C-accelerated JSON string escaper


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    t = type(value)
    if t is str:
        return _encode_str(value)
    if t is int:
        return str(value)
    if t is float:
        if not math.isfinite(value):  # pragma: no cover - the encoder never hands these over
            raise ValueError("non-finite float reached the JSON writer")
        return repr(value)
    raise TypeError(f"not a JSON value: {t.__name__}")


def _one_line(value: Any, memo: dict[int, str | None]) -> str | None:
    """The one-line form of ``value`` if it is at most ``_LINE`` characters, else None.

    Memoised per container, and abandoned as soon as it grows too long, so printing the whole
    manifest stays linear in its size.
    """
    if not isinstance(value, (dict, list)):
        return _scalar(value)
    key = id(value)
    if key in memo:
        return memo[key]
    parts: list[str] = []
    used = 2
    result: str | None = None
    if isinstance(value, dict):
        for k, item in value.items():
            child = _one_line(item, memo)
            if child is None:
                break
            piece = f"{_scalar(k)}: {child}"
            used += len(piece) + 2
            if used > _LINE:
                break
            parts.append(piece)
        else:
            result = "{" + ", ".join(parts) + "}"
    else:
        for item in value:
            child = _one_line(item, memo)
            if child is None:
                break
            used += len(child) + 2
            if used > _LINE:
                break
            parts.append(child)
        else:
            result = "[" + ", ".join(parts) + "]"
    memo[key] = result
    return result


def _pretty(value: Any, indent: int, out: list[str], memo: dict[int, str | None],
            prefix: int = 0) -> None:
    if not isinstance(value, (dict, list)) or not value:
        out.append(_scalar(value) if not isinstance(value, (dict, list)) else
                   ("{}" if isinstance(value, dict) else "[]"))
        return
    one = _one_line(value, memo)
    if one is not None and indent + prefix + len(one) <= _LINE:
        out.append(one)
        return
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        out.append("{\n")
        last = len(value) - 1
        for i, (k, v) in enumerate(value.items()):
            key = f"{_scalar(k)}: "
            out.append(pad + key)
            _pretty(v, indent + 2, out, memo, len(key))
            out.append(",\n" if i < last else "\n")
        out.append(" " * indent + "}")
    elif all(not isinstance(v, (dict, list)) for v in value):
        # Long flat lists (inline array data): wrap like text instead of one item a line.
        out.append("[\n" + pad)
        width = indent + 2
        last = len(value) - 1
        for i, v in enumerate(value):
            piece = _scalar(v) + ("," if i < last else "")
            if width + len(piece) > _LINE and width > indent + 2:
                out.append("\n" + pad)
                width = indent + 2
            elif width > indent + 2:
                out.append(" ")
                width += 1
            out.append(piece)
            width += len(piece)
        out.append("\n" + " " * indent + "]")
    else:
        out.append("[\n")
        last = len(value) - 1
        for i, v in enumerate(value):
            out.append(pad)
            _pretty(v, indent + 2, out, memo)
            out.append(",\n" if i < last else "\n")
        out.append(" " * indent + "]")


def dumps_json(document: dict[str, Any]) -> bytes:
    """Serialize the manifest document: UTF-8, deterministic, readable, strict JSON."""
    out: list[str] = []
    _pretty(document, 0, out, {})
    out.append("\n")
    return "".join(out).encode("utf-8")


def _reject_constant(name: str) -> Any:
    raise ManifestError(f"the manifest uses the non-JSON constant {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 is Infinity in disguise
        raise ManifestError(f"the manifest number {text[:40]} is not a finite float")
    return value


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ManifestError(f"duplicate key {json.dumps(key)[:80]} in the manifest")
            seen.add(key)
    return result


# Built once (json.loads with hooks builds a decoder per call); it holds no state between calls.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_pairs,
                            parse_float=_finite_float)

_orjson: Any
try:  # optional (the boost extra installs it): a faster parser, used only where it agrees
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None

# Bytes mapped for _fast_parse's integer check: digits to "0", "." and "e"/"E" kept, the rest
# to a space.
_DIGIT_RUNS = bytes(
    0x30 if 0x30 <= b <= 0x39 else b if b in b".eE" else 0x20 for b in range(256))
# orjson keeps integers exact in the int64 and uint64 ranges (every one of up to 18 digits);
# others become floats where the standard parser keeps them ints.
_LONG_INT = b" " + b"0" * 19


def loads_json(data: bytes, limits: Limits) -> dict[str, Any]:
    """Parse and budget-check manifest bytes; return the document object."""
    if len(data) > limits.max_manifest_bytes:
        raise LimitError(
            f"manifest of {len(data)} bytes exceeds max_manifest_bytes "
            f"({limits.max_manifest_bytes})", "manifest.json")
    document = _fast_parse(data)
    if document is not None:
        # At most len(data) characters: a bound as good as the exact count below.
        if not _within_budgets_by_size(data, len(data), limits):
            _check_budgets(document, limits)
        return document
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError("manifest is not valid UTF-8", "manifest.json") from None
    try:
        document = _DECODER.decode(text)
    except ManifestError:
        raise
    except RecursionError:
        raise LimitError("manifest nesting is too deep", "manifest.json") from None
    except ValueError as exc:  # JSONDecodeError, and int conversion limits
        raise ManifestError(f"manifest is not valid JSON: {str(exc)[:120]}",
                            "manifest.json") from None
    if not isinstance(document, dict):
        raise ManifestError("manifest must be a JSON object", "manifest.json")
    if not _within_budgets_by_size(data, len(text), limits):
        _check_budgets(document, limits)
    return document


def _fast_parse(data: bytes) -> dict[str, Any] | None:
    """The document, parsed by orjson when it is installed and provably gives what the strict
    parser above would; None for anything else (the strict parser then decides, with its own
    errors).

    orjson refuses everything the strict parser refuses here (invalid UTF-8, lone surrogates,
    ``NaN``/``Infinity``, numbers that overflow to infinity, bad syntax) and parses the rest to
    the same values, except two things checked around it:

    - integers beyond 64 bits become floats: a run of 19 or more digits that does not follow
      a decimal point or an exponent sends the file to the strict parser;
    - duplicate keys keep the last value: serialising the result back counts one ``:`` per
      key plus those inside strings.  A colon in the text is a key's separator or a literal
      character of a string (written ``\\u003a`` it is not counted, so such files go to the
      strict parser), so a document with a duplicate key, which loses that key and its value's
      strings, always counts fewer colons than its text.
    """
    if _orjson is None or b"\\u003" in data:
        return None
    digits = data.translate(_DIGIT_RUNS)
    if _LONG_INT in digits or digits.startswith(_LONG_INT[1:]):
        return None
    del digits
    try:
        document = _orjson.loads(data)
        if type(document) is not dict or _orjson.dumps(document).count(b":") != data.count(
                b":"):
            return None
    except Exception:  # noqa: BLE001 - anything orjson refuses, the strict parser explains
        return None
    return document


def _within_budgets_by_size(data: bytes, chars: int, limits: Limits) -> bool:
    """Whether the text's size alone proves every budget :func:`_check_budgets` walks for.

    Every value :func:`_check_budgets` counts (a container, a key, a scalar) starts at a
    character of its own, so there are at most ``chars`` of them and no string is longer than
    ``chars``; nesting is at most the number of ``{`` and ``[`` bytes (those inside strings
    only raise the bound).  When these bounds are within the budgets (any manifest of a small
    model), the walk could not fail and is skipped; otherwise it runs and counts exactly.
    """
    return (chars <= limits.max_nodes and chars <= limits.max_string_length
            and (chars <= limits.max_depth
                 or data.count(b"{") + data.count(b"[") <= limits.max_depth))


def _check_budgets(document: Any, limits: Limits) -> None:
    """Walk the parsed JSON once, iteratively, checking depth, value count and string sizes."""
    count = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    max_depth, max_nodes, max_str = limits.max_depth, limits.max_nodes, limits.max_string_length
    while stack:
        value, depth = stack.pop()
        count += 1
        if depth > max_depth:
            raise LimitError(f"manifest nesting exceeds max_depth ({max_depth})", "manifest.json")
        if isinstance(value, dict):
            count += len(value)
            for key, item in value.items():
                if len(key) > max_str:
                    raise LimitError("a manifest key exceeds max_string_length", "manifest.json")
                if isinstance(item, (dict, list)):
                    stack.append((item, depth + 1))
                elif isinstance(item, str) and len(item) > max_str:
                    raise LimitError("a manifest string exceeds max_string_length",
                                     "manifest.json")
                else:
                    count += 1
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, (dict, list)):
                    stack.append((item, depth + 1))
                elif isinstance(item, str) and len(item) > max_str:
                    raise LimitError("a manifest string exceeds max_string_length",
                                     "manifest.json")
                else:
                    count += 1
        if count > max_nodes:
            raise LimitError(f"manifest has more than max_nodes ({max_nodes}) values",
                             "manifest.json")
