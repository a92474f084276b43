"""config.json keys matched as runc matches them.

runc decodes config.json with Go's encoding/json, which matches an object key
to a struct field exactly or, failing that, case-insensitively
(`strings.EqualFold`): configs in the wild write ``Process``, ``CPU`` or
``noNewPrivileges`` as ``NoNewPrivileges``, and runc accepts them.  `fold`
renames such keys of one object, in place, to the spelling the runtime-spec
uses; the one parse (spec/config.py) calls it on every object it reads, so
the rest of ocipy reads one spelling.  Keys it does not know are left as they
are (config.md "Extensibility": unknown properties are ignored), and so are
the keys of free-form maps (annotations, sysctl, ...), which the parse never
folds.

Pure dict work: on the path of every create, so no imports but the error.
"""

from __future__ import annotations

from ocipy.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def fold_key(key: str) -> str:
    """Go's encoding/json matches a key to a field with `strings.EqualFold`
    (simple case folding): lower case, plus the long s that folds to s (the
    Kelvin sign already lowers to k)."""
    return key.lower().replace("\u017f", "s")


def names(*spellings: str) -> frozenset[str]:
    """An object's field names as the spec spells them, for `fold`."""
    return frozenset(spellings)


_FOLDED: dict[int, dict[str, str]] = {}


def fold(obj: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """Rename, in place, the keys of `obj` that match one of `names` (the
    spec's spellings) only case-insensitively; returns `obj`."""
    for key in obj:
        if key not in names:
            break
    else:
        return obj  # the common case: every key spelled as the spec spells it
    table = _FOLDED.get(id(names))
    if table is None:
        table = _FOLDED[id(names)] = {fold_key(k): k for k in names}
    for key in list(obj):
        if key in names or not isinstance(key, str):
            continue
        name = table.get(fold_key(key))
        if name is None:
            continue  # unknown: ignored, as the spec says
        item = obj.pop(key)
        old = obj.get(name)
        # Go decodes a second, differently cased key into the same field: objects merge
        obj[name] = {**old, **item} if isinstance(old, dict) and isinstance(item, dict) else item
    return obj


def fold_entry(value: Any, field: str, names: frozenset[str]) -> dict[str, Any]:
    """An entry of an array of objects (linux.resources, linux.seccomp): checked
    to be an object, in those sections' wording, and its keys folded."""
    if not isinstance(value, dict):
        raise ConfigError(field, "must be an object")
    return fold(value, names)
