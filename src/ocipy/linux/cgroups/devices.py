"""Device access rules: runc's default allow list, and the v1 emulation (the rules are parsed by spec/config.py).

A rule is a tuple ``(allow, type, major, minor, access)`` with type one of
``a c b``, major/minor ``-1`` for the wildcard, access a subset of ``rwm``.

config-linux.md "Allowed Device list": the runtime MUST apply entries in the
listed order.  :func:`reduce` applies them in order the way the cgroup v1
devices controller does (an ``a *:* rwm`` rule resets the list and sets the
default; later rules add or remove exceptions) and returns the resulting
default plus exceptions.  The v1 writer writes that result; the v2 eBPF
program (``ebpf.py``) encodes the same result, so both versions agree.

The list starts from **deny all**, as runc's does: a config without
``linux.resources.devices`` (or with only allow rules) gets the default allow
list below and nothing else, so a container root with CAP_MKNOD can create
``/dev/kmsg`` or a disk node but not open it.  ``linux.devices`` entries are
created in the container but get no rule of their own: access to them is
what ``linux.resources.devices`` says (runc's "device cgroup deny" test).
"""

from __future__ import annotations

from ocipy.spec.resources import Rule

# runc's default allow list (libcontainer/specconv AllowedDevices), appended after the
# config's rules: mknod of anything, the standard character devices, ptys, tun.
DEFAULT_RULES: tuple[Rule, ...] = (
    (True, "c", -1, -1, "m"),
    (True, "b", -1, -1, "m"),
    (True, "c", 1, 3, "rwm"),     # /dev/null
    (True, "c", 1, 8, "rwm"),     # /dev/random
    (True, "c", 1, 7, "rwm"),     # /dev/full
    (True, "c", 5, 0, "rwm"),     # /dev/tty
    (True, "c", 1, 5, "rwm"),     # /dev/zero
    (True, "c", 1, 9, "rwm"),     # /dev/urandom
    (True, "c", 136, -1, "rwm"),  # /dev/pts/*
    (True, "c", 5, 2, "rwm"),     # /dev/ptmx
    (True, "c", 10, 200, "rwm"),  # /dev/net/tun
)


def default_device_rules() -> list[dict[str, object]]:
    """runc's default device rules in config.json form (linux.resources.devices entries).

    The runtime appends these after the config's own rules, so a config that
    starts with ``{"allow": false, "access": "rwm"}`` ends up with the standard
    devices allowed and everything else denied."""
    out: list[dict[str, object]] = []
    for allow, typ, major, minor, access in DEFAULT_RULES:
        entry: dict[str, object] = {"allow": allow, "type": typ, "access": access}
        if major >= 0:
            entry["major"] = major
        if minor >= 0:
            entry["minor"] = minor
        out.append(entry)
    return out


def config_rules(rules: list[Rule] | None) -> list[Rule]:
    """The device rules a container gets, in order, as runc builds them: deny
    all (where :func:`reduce` starts), linux.resources.devices (parsed:
    spec/config.parse_device_rules), then the defaults.

    linux.devices adds no rule: a node the rules deny is created but cannot
    be opened (runc 1.1 does the same; see docs/compat.md)."""
    out = list(rules or [])
    out.extend(DEFAULT_RULES)
    return out


def _expand(rule: Rule) -> list[Rule]:
    """The kernel's "a" type only means "everything": split a narrower a-rule into c and b."""
    allow, typ, major, minor, access = rule
    if typ == "a" and not (major == -1 and minor == -1 and access == "rwm"):
        return [(allow, "c", major, minor, access), (allow, "b", major, minor, access)]
    return [rule]


def reduce(rules: list[Rule]) -> tuple[bool, list[Rule]]:
    """Apply rules in order, as the v1 controller does, starting from deny all;
    return (default_allow, exceptions).

    Exceptions are the rules opposite to the default (allow rules when the
    default is deny), merged per (type, major, minor)."""
    default_allow = False
    exc: dict[tuple[str, int, int], str] = {}
    for rule in rules:
        for allow, typ, major, minor, access in _expand(rule):
            if typ == "a":
                default_allow = allow
                exc.clear()
                continue
            key = (typ, major, minor)
            if allow != default_allow:
                merged = set(exc.get(key, "")) | set(access)
                exc[key] = "".join(ch for ch in "rwm" if ch in merged)
            elif key in exc:
                left = "".join(ch for ch in exc[key] if ch not in access)
                if left:
                    exc[key] = left
                else:
                    del exc[key]
    return default_allow, [(not default_allow, t, ma, mi, acc) for (t, ma, mi), acc in exc.items()]


def v1_line(rule: Rule) -> str:
    _, typ, major, minor, access = rule
    if typ == "a":
        return "a"
    ma = "*" if major < 0 else str(major)
    mi = "*" if minor < 0 else str(minor)
    return f"{typ} {ma}:{mi} {access}"


def parse_v1_list(text: str) -> tuple[bool, dict[tuple[str, int, int], str]]:
    """devices.list as (default_allow, {(type, major, minor): access}).

    The kernel lists only ``a *:* rwm`` for a cgroup whose default is allow
    (its deny exceptions are not shown), else the allow exceptions."""
    exc: dict[tuple[str, int, int], str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[1]:
            continue
        typ, (ma, _, mi), access = parts[0], parts[1].partition(":"), parts[2]
        if typ == "a":
            return True, {}
        try:
            key = (typ, -1 if ma == "*" else int(ma), -1 if mi == "*" else int(mi))
        except ValueError:
            continue
        exc[key] = "".join(ch for ch in "rwm" if ch in access + exc.get(key, ""))
    return False, exc


def v1_transitions(current: str, rules: list[Rule]) -> list[tuple[str, str]]:
    """The writes (file, line) that take a v1 devices cgroup whose devices.list
    reads `current` to the result of `rules`, with the fewest transitions.

    From a deny-all list to another (the usual case, and every re-apply) only
    the differences are written, allows before denies: a running container
    never passes through a state that refuses what both the old and the new
    rules allow (runc's "minimal transition rules").  Otherwise the default
    is reset first ("a" to devices.deny or devices.allow), then each exception
    is written, so the result does not depend on what was there before."""
    default_allow, exceptions = reduce(rules)
    cur_allow, cur_exc = parse_v1_list(current)
    if default_allow:
        return [("devices.allow", "a")] + [("devices.deny", v1_line(r)) for r in exceptions]
    if cur_allow:
        return [("devices.deny", "a")] + [("devices.allow", v1_line(r)) for r in exceptions]
    want = {(t, ma, mi): acc for _, t, ma, mi, acc in exceptions}
    writes: list[tuple[str, str]] = []
    for (t, ma, mi), acc in want.items():
        missing = "".join(ch for ch in acc if ch not in cur_exc.get((t, ma, mi), ""))
        if missing:
            writes.append(("devices.allow", v1_line((True, t, ma, mi, missing))))
    for (t, ma, mi), acc in cur_exc.items():
        extra = "".join(ch for ch in acc if ch not in want.get((t, ma, mi), ""))
        if extra:
            writes.append(("devices.deny", v1_line((False, t, ma, mi, extra))))
    return writes


def set_v1(directory: str, rules: list[Rule]) -> None:
    """Bring devices.allow / devices.deny to the reduced rule set (see `v1_transitions`)."""
    from ocipy.linux.cgroups.common import read_opt, write_each

    writes = v1_transitions(read_opt(directory, "devices.list") or "a *:* rwm", rules)
    i = 0
    while i < len(writes):  # consecutive writes to one file share one open
        name = writes[i][0]
        j = i
        while j < len(writes) and writes[j][0] == name:
            j += 1
        write_each(directory, name, [line for _, line in writes[i:j]])
        i = j
