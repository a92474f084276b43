"""JSON as runc's Go encoder writes it: compact (``{"a":1,"b":[2]}``) or
MarshalIndent's layout; strings keep UTF-8 and escape ``<``, ``>`` and ``&``.

Keys come out in the order of the dicts given (callers build them in runc's
field order); no `json` import (start-up time).
"""

from __future__ import annotations

from ocipy.log import json_string

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def dumps(value: Any, indent: str | None = None) -> str:
    """Compact without `indent`; with it, one member per line as json.MarshalIndent(v, "", indent)."""
    out: list[str] = []
    _encode(value, indent, "", out)
    return "".join(out)


def _encode(value: Any, indent: str | None, prefix: str, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(json_string(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(repr(value) if value == value and value not in (float("inf"), float("-inf")) else "null")
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = prefix + indent if indent is not None else ""
        out.append("{")
        first = True
        for key, item in value.items():
            if not first:
                out.append(",")
            first = False
            if indent is not None:
                out.append("\n" + inner)
            out.append(json_string(str(key)))
            out.append(": " if indent is not None else ":")
            _encode(item, indent, inner, out)
        if indent is not None:
            out.append("\n" + prefix)
        out.append("}")
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[]")
            return
        inner = prefix + indent if indent is not None else ""
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            if indent is not None:
                out.append("\n" + inner)
            _encode(item, indent, inner, out)
        if indent is not None:
            out.append("\n" + prefix)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")
