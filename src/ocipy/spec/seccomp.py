"""linux.seccomp parsed: the plan `linux/seccomp.prepare` builds the filter from.

Part of the one parse of config.json (spec/config.py calls `parse_seccomp`
for a non-empty linux.seccomp): every name, type and range is checked here,
without libseccomp; what this libseccomp and kernel support is checked when
the filter is built.  A module of its own so that a config without a filter
does not pay for importing it.
"""

from __future__ import annotations

from ocipy.errors import ConfigError
from ocipy.spec.keys import fold_entry
from ocipy.spec.runtime import SECCOMP_ACTIONS, SECCOMP_ARCHS, SECCOMP_FLAGS, SECCOMP_OPERATORS

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any

_SECCOMP = "linux.seccomp"
_SECCOMP_KEYS = frozenset(("defaultAction", "defaultErrnoRet", "architectures", "flags", "listenerPath",
                           "listenerMetadata", "syscalls"))  # fmt: skip
_SYSCALL = frozenset(("names", "action", "errnoRet", "args"))
_ARG = frozenset(("index", "value", "valueTwo", "op"))
_EPERM = 1
_MAX_ARGS = 6
_U64 = (1 << 64) - 1


def _uint(value: object, field: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > limit:
        raise ConfigError(field, f"must be an integer from 0 to {limit}, got {value!r}")
    return value


def _action(name: object, errno_ret: object, field: str, errno_field: str) -> tuple[str, int]:
    """(name, libseccomp action value) for an action name and optional errnoRet."""
    if not isinstance(name, str):
        raise ConfigError(field, f"must be a string, got {name!r}")
    if name not in SECCOMP_ACTIONS:
        raise ConfigError(field, f"unknown seccomp action {name!r} (known: {', '.join(sorted(SECCOMP_ACTIONS))})")
    base, takes_errno, _ = SECCOMP_ACTIONS[name]
    if not takes_errno:
        if errno_ret is not None:
            # config-linux.md: "When the action doesn't support an errno, the
            # runtime MUST print and error and fail."
            raise ConfigError(errno_field, f"action {name} does not take an errno; only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do")
        return name, base
    # The kernel keeps 16 bits of data in the filter's return value.
    err = _EPERM if errno_ret is None else _uint(errno_ret, errno_field, 0xFFFF)
    return name, base | (err & 0xFFFF)


class SeccompRule:
    __slots__ = ("index", "name", "action", "action_name", "args")

    def __init__(self, index: int, name: str, action: int, action_name: str,
                 args: list[tuple[int, int, int, int]]) -> None:  # fmt: skip
        self.index = index  # in linux.seccomp.syscalls
        self.name = name
        self.action = action
        self.action_name = action_name
        self.args = args  # (arg index, op, datum_a, datum_b)


class SeccompPlan:
    """linux.seccomp checked: what `seccomp.prepare` builds the filter from."""

    __slots__ = ("default_action", "default_name", "archs", "flags", "rules", "needs_notify", "listener_path",
                 "listener_metadata", "source")  # fmt: skip

    def __init__(self) -> None:
        self.source: dict[str, Any] = {}  # linux.seccomp as given (keys folded): the compiled-program cache's key
        self.default_action = SECCOMP_ACTIONS["SCMP_ACT_ALLOW"][0]
        self.default_name = "SCMP_ACT_ALLOW"
        self.archs: list[tuple[int, str]] = []  # (index in config, SCMP_ARCH_* name)
        self.flags: list[tuple[int, str]] = []
        self.rules: list[SeccompRule] = []
        self.needs_notify = False
        self.listener_path = ""
        self.listener_metadata = ""


def _known_names(seccomp: dict[str, Any], key: str, known: dict[str, Any], what: str,
                 hint: str) -> list[tuple[int, str]]:  # fmt: skip
    """architectures or flags: (index, name) for names of `known`."""
    value = seccomp.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{_SECCOMP}.{key}", "must be an array of strings")
    for i, name in enumerate(value):
        if not isinstance(name, str) or name not in known:
            raise ConfigError(f"{_SECCOMP}.{key}[{i}]", f"unknown {what} {name!r}{hint}")
    return list(enumerate(value))


def parse_seccomp(value: Any) -> SeccompPlan:
    """Check every field of linux.seccomp; raise ConfigError naming the first bad one."""
    seccomp = fold_entry(value, _SECCOMP, _SECCOMP_KEYS)
    plan = SeccompPlan()
    plan.source = seccomp
    if "defaultAction" not in seccomp:
        raise ConfigError(f"{_SECCOMP}.defaultAction", "is required")
    plan.default_name, plan.default_action = _action(
        seccomp["defaultAction"], seccomp.get("defaultErrnoRet"),
        f"{_SECCOMP}.defaultAction", f"{_SECCOMP}.defaultErrnoRet")  # fmt: skip
    if plan.default_name == "SCMP_ACT_NOTIFY":
        # As runc: the init process could not even tell its parent about the fd.
        raise ConfigError(f"{_SECCOMP}.defaultAction", "SCMP_ACT_NOTIFY cannot be used as the default action")

    plan.archs = _known_names(seccomp, "architectures", SECCOMP_ARCHS, "seccomp architecture", "")
    plan.flags = _known_names(seccomp, "flags", SECCOMP_FLAGS, "seccomp flag", f" (known: {', '.join(SECCOMP_FLAGS)})")

    for key in ("listenerPath", "listenerMetadata"):
        if key in seccomp and not isinstance(seccomp[key], str):
            raise ConfigError(f"{_SECCOMP}.{key}", "must be a string")
    plan.listener_path = seccomp.get("listenerPath") or ""
    plan.listener_metadata = seccomp.get("listenerMetadata") or ""
    if plan.listener_metadata and not plan.listener_path:
        # config-linux.md: listenerMetadata "MUST NOT be set if listenerPath is not set".
        raise ConfigError(f"{_SECCOMP}.listenerMetadata", "must not be set without listenerPath")

    syscalls = seccomp.get("syscalls")
    if syscalls is None:
        syscalls = []
    if not isinstance(syscalls, list):
        raise ConfigError(f"{_SECCOMP}.syscalls", "must be an array")
    for i, call in enumerate(syscalls):
        where = f"{_SECCOMP}.syscalls[{i}]"
        call = fold_entry(call, where, _SYSCALL)
        names = call.get("names")
        if not isinstance(names, list) or not names:
            # config-linux.md: "`names` MUST contain at least one entry."
            raise ConfigError(f"{where}.names", "must be a non-empty array of syscall names")
        for j, name in enumerate(names):
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{where}.names[{j}]", f"must be a non-empty string, got {name!r}")
        if "action" not in call:
            raise ConfigError(f"{where}.action", "is required")
        action_name, action = _action(call["action"], call.get("errnoRet"), f"{where}.action", f"{where}.errnoRet")
        if action_name == "SCMP_ACT_NOTIFY":
            plan.needs_notify = True
            if "write" in names:
                # runc: the init process writes the notify fd number to its
                # parent after loading; a notified write would hang it forever.
                raise ConfigError(f"{where}.names", "SCMP_ACT_NOTIFY cannot be used for the write syscall")
        args = call.get("args")
        cmps: list[tuple[int, int, int, int]] = []
        if args is not None:
            if not isinstance(args, list):
                raise ConfigError(f"{where}.args", "must be an array")
            for k, arg in enumerate(args):
                aw = f"{where}.args[{k}]"
                arg = fold_entry(arg, aw, _ARG)
                for req in ("index", "value", "op"):
                    if req not in arg:
                        raise ConfigError(f"{aw}.{req}", "is required")
                index = _uint(arg["index"], f"{aw}.index", _MAX_ARGS - 1)
                value1 = _uint(arg["value"], f"{aw}.value", _U64)
                value2 = _uint(arg.get("valueTwo", 0), f"{aw}.valueTwo", _U64)
                op = arg["op"]
                if not isinstance(op, str) or op not in SECCOMP_OPERATORS:
                    raise ConfigError(f"{aw}.op", f"unknown seccomp operator {op!r} (known: {', '.join(SECCOMP_OPERATORS)})")
                cmps.append((index, SECCOMP_OPERATORS[op], value1, value2))
        for name in names:
            plan.rules.append(SeccompRule(i, name, action, action_name, cmps))
        if action_name == "SCMP_ACT_NOTIFY" and not plan.listener_path:
            # runc fails too ("seccomp listenerPath is not set"): with no agent
            # the notified syscalls would block the container forever.
            raise ConfigError(f"{_SECCOMP}.listenerPath", f"must be set: {where}.action is SCMP_ACT_NOTIFY")
    return plan
