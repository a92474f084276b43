"""JSON for the runtime's hot path without the `json` package.

`json.decoder` and `json.encoder` import `re` (and with it `enum`): ~6 ms of
the start-up every `state`, `start`, `kill` and `delete` pays.  This module
uses the C scanner of `_json` directly for reading, and a small encoder for
the plain documents the runtime writes (dicts, lists, strings, numbers,
booleans, None).  On a parse error it defers to `json` for the message.

Nesting is bounded (:data:`MAX_DEPTH`): a deeper document is a ValueError
naming the limit, never a RecursionError from the C scanner or from the
code that walks the result later (validation, the encoder, deepcopy).
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _Context:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return float(name.replace("Infinity", "inf"))  # NaN, Infinity, -Infinity


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]
_WHITESPACE = " \t\n\r"

# Go's encoding/json allows 10000 levels; Python code that walks a document
# recursively has ~1000 frames in all.  Real configs nest fewer than 10 deep.
MAX_DEPTH = 200


class TooDeep(ValueError):
    """A document nested deeper than MAX_DEPTH."""

    def __init__(self) -> None:
        super().__init__(f"nested deeper than {MAX_DEPTH} levels")


def _check_depth(text: str, value: Any) -> None:
    # Fewer brackets than the limit cannot nest deeper: the common case costs two counts.
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise TooDeep()
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, dict | list))


def loads(data: str | bytes) -> Any:
    """Parse a JSON document; raises ValueError (json.JSONDecodeError) with json's message."""
    if isinstance(data, bytes):
        # a BOM is allowed (as json.loads does); "utf-8-sig" would import its codec module
        text = (data[3:] if data[:3] == b"\xef\xbb\xbf" else data).decode()
    else:
        text = data
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except RecursionError:
        raise TooDeep() from None
    except Exception:  # StopIteration, ValueError, or SystemError from the bare C scanner
        value, end = None, -1
    if end < 0 or text[end:].strip(_WHITESPACE):
        import json

        try:
            return json.loads(text)  # raises with line and column
        except RecursionError:
            raise TooDeep() from None
        except ValueError as e:
            if "integer string conversion" in str(e):  # Python's 4300-digit guard, in its words
                raise ValueError("a number has more than 4300 digits") from None
            raise
    _check_depth(text, value)
    return value


def loads_at(text: str, index: int) -> Any:
    """The JSON value that starts at text[index] (the rest of the text is not
    looked at): salvaging fields from a damaged document."""
    try:
        value, end = _scan(text, index)
    except RecursionError:
        raise TooDeep() from None
    except Exception:
        raise ValueError(f"no JSON value at character {index}") from None
    _check_depth(text[index:end], value)
    return value


# The C encoder (compact output only): markers=None skips the cycle check,
# which plain runtime documents do not need.  Compact is Go's encoding/json
# (runc's `list -f json`, log lines, events): no space after ':' or ','.
_encode_compact = _json.make_encoder(None, None, _json.encode_basestring_ascii, None, ":", ",", False, False, True)  # type: ignore[arg-type]


def dumps(value: Any, indent: str | None = None, _level: int = 0) -> str:
    """Encode plain data as JSON (ASCII-safe strings).  Without `indent` the text is
    compact as runc's (json.dumps with separators=(",", ":")); with it, the text of
    json.dumps(value, indent=indent) (runc's `state` is indented the same way)."""
    if indent is None and _level == 0:
        return "".join(_encode_compact(value, 0))
    if isinstance(value, str):
        return _json.encode_basestring_ascii(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return float.__repr__(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{_json.encode_basestring_ascii(str(k))}: {dumps(v, indent, _level + 1)}" for k, v in value.items()]
        return _join("{", items, "}", indent, _level)
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        return _join("[", [dumps(v, indent, _level + 1) for v in value], "]", indent, _level)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _join(open_: str, items: list[str], close: str, indent: str | None, level: int) -> str:
    if indent is None:
        return open_ + ", ".join(items) + close
    inner = "\n" + indent * (level + 1)
    return open_ + inner + ("," + inner).join(items) + "\n" + indent * level + close
