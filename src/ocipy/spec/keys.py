"""config.json keys matched as runc matches them.

runc decodes config.json with Go's encoding/json, which matches an object key
to a struct field exactly or, failing that, case-insensitively
(`strings.EqualFold`): configs in the wild write ``Process``, ``CPU`` or
``noNewPrivileges`` as ``NoNewPrivileges``, and runc accepts them.  `canonical`
renames such keys, in place, to the spelling the runtime-spec uses, so the rest
of ocipy reads one spelling.  Keys it does not know are left as they are
(config.md "Extensibility": unknown properties are ignored), and so are the
keys of free-form maps (annotations, sysctl, ...).  ``linux.resources`` has
its own table, next to its validation (linux/cgroups/validate.py).

Pure data and dict walking: on the path of every create, so no imports.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# A shape: None = a value (or a subtree with its own rules), a dict = an object
# with these fields, a one-item list = an array of that shape, ("map", shape) =
# an object whose keys are data and whose values have that shape.
_ID_MAP = [{"containerID": None, "hostID": None, "size": None}]
_HOOKS = [{"path": None, "args": None, "env": None, "timeout": None}]
_SHAPE: dict[str, Any] = {
    "ociVersion": None,
    "root": {"path": None, "readonly": None},
    "mounts": [{"destination": None, "type": None, "source": None, "options": None,
                "uidMappings": _ID_MAP, "gidMappings": _ID_MAP}],
    "process": {
        "terminal": None, "consoleSize": {"height": None, "width": None}, "cwd": None, "env": None,
        "args": None, "commandLine": None,
        "rlimits": [{"type": None, "soft": None, "hard": None}],
        "apparmorProfile": None,
        "capabilities": {k: None for k in ("effective", "bounding", "inheritable", "permitted", "ambient")},
        "noNewPrivileges": None, "oomScoreAdj": None,
        "scheduler": {k: None for k in ("policy", "nice", "priority", "flags", "runtime", "deadline", "period")},
        "selinuxLabel": None, "ioPriority": {"class": None, "priority": None},
        "execCPUAffinity": {"initial": None, "final": None},
        "user": {"uid": None, "gid": None, "umask": None, "additionalGids": None, "username": None},
    },
    "hostname": None,
    "domainname": None,
    "hooks": {k: _HOOKS for k in ("prestart", "createRuntime", "createContainer", "startContainer",
                                  "poststart", "poststop")},
    "annotations": ("map", None),
    "linux": {
        "namespaces": [{"type": None, "path": None}],
        "uidMappings": _ID_MAP, "gidMappings": _ID_MAP,
        "timeOffsets": ("map", {"secs": None, "nanosecs": None}),
        "devices": [{k: None for k in ("type", "path", "major", "minor", "fileMode", "uid", "gid")}],
        "netDevices": ("map", {"name": None}),
        "cgroupsPath": None, "rootfsPropagation": None,
        "resources": None,  # linux/cgroups/validate.canonical
        "intelRdt": {k: None for k in ("closID", "l3CacheSchema", "memBwSchema", "schemata", "enableMonitoring")},
        "sysctl": ("map", None),
        "seccomp": {
            "defaultAction": None, "defaultErrnoRet": None, "architectures": None, "flags": None,
            "listenerPath": None, "listenerMetadata": None,
            "syscalls": [{"names": None, "action": None, "errnoRet": None,
                          "args": [{"index": None, "value": None, "valueTwo": None, "op": None}]}],
        },
        "maskedPaths": None, "readonlyPaths": None, "mountLabel": None,
        "personality": {"domain": None, "flags": None},
        "memoryPolicy": {"mode": None, "nodes": None, "flags": None},
    },
}  # fmt: skip

# The process object alone (exec -p process.json).
PROCESS_SHAPE: dict[str, Any] = _SHAPE["process"]


def fold_key(key: str) -> str:
    """Go's encoding/json matches a key to a field with `strings.EqualFold`
    (simple case folding): lower case, plus the long s that folds to s (the
    Kelvin sign already lowers to k)."""
    return key.lower().replace("\u017f", "s")


_FOLDED: dict[int, dict[str, str]] = {}


def _folded(shape: dict[str, Any]) -> dict[str, str]:
    table = _FOLDED.get(id(shape))
    if table is None:
        table = _FOLDED[id(shape)] = {fold_key(k): k for k in shape}
    return table


def canonical(value: Any, shape: Any = None) -> Any:
    """Rename, in place, the keys of `value` (config.json, or a part with its
    `shape`) that runc would match case-insensitively; returns `value`."""
    if shape is None:
        shape = _SHAPE
    if isinstance(shape, list):
        if isinstance(value, list):
            for item in value:
                canonical(item, shape[0])
        return value
    if isinstance(shape, tuple):
        if isinstance(value, dict) and shape[1] is not None:
            for item in value.values():
                canonical(item, shape[1])
        return value
    if not isinstance(value, dict):
        return value
    folded = _folded(shape)
    for key in list(value):
        name = key if key in shape else folded.get(fold_key(key))
        if name is None:
            continue  # unknown: ignored, as the spec says
        if name != key:
            item = value.pop(key)
            old = value.get(name)
            # Go decodes a second, differently cased key into the same field: objects merge
            value[name] = {**old, **item} if isinstance(old, dict) and isinstance(item, dict) else item
        sub = shape[name]
        if sub is not None:
            canonical(value[name], sub)
    return value
