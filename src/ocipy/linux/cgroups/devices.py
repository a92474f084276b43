"""Device access rules: parsing, runc's default allow list, and the v1 emulation.

A rule is a tuple ``(allow, type, major, minor, access)`` with type one of
``a c b``, major/minor ``-1`` for the wildcard, access a subset of ``rwm``.

config-linux.md "Allowed Device list": the runtime MUST apply entries in the
listed order.  :func:`reduce` applies them in order the way the cgroup v1
devices controller does (an ``a *:* rwm`` rule resets the list and sets the
default; later rules add or remove exceptions) and returns the resulting
default plus exceptions.  The v1 writer writes that result; the v2 eBPF
program (``ebpf.py``) encodes the same result, so both versions agree.
"""

from __future__ import annotations

from ocipy.errors import ConfigError

Rule = tuple[bool, str, int, int, str]

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


def parse_rules(entries: list[object], where: str = "linux.resources.devices") -> list[Rule]:
    rules: list[Rule] = []
    for i, e in enumerate(entries):
        w = f"{where}[{i}]"
        if not isinstance(e, dict):
            raise ConfigError(w, "must be an object")
        allow = e.get("allow")
        if not isinstance(allow, bool):
            raise ConfigError(f"{w}.allow", "is required and must be true or false")
        typ = e.get("type") or "a"
        if typ not in ("a", "c", "b", "u", "p"):
            raise ConfigError(f"{w}.type", f"{typ!r} is not a, c or b")
        if typ in ("u", "p"):  # unbuffered char device / fifo: the kernel's "c" class
            typ = "c"
        nums = []
        for k in ("major", "minor"):
            v = e.get(k)
            if v is None:
                nums.append(-1)
            elif isinstance(v, bool) or not isinstance(v, int) or v < -1 or v > 0xFFFFFFFF:
                raise ConfigError(f"{w}.{k}", f"{v!r} is not a device number")
            else:
                nums.append(v)
        access = e.get("access")
        if access is None or access == "":
            access = "rwm"
        if not isinstance(access, str) or not access or any(ch not in "rwm" for ch in access):
            raise ConfigError(f"{w}.access", f"{access!r} must be made of r, w and m")
        access = "".join(ch for ch in "rwm" if ch in access)
        rules.append((allow, typ, nums[0], nums[1], access))
    return rules


def config_rules(config: dict[str, object]) -> list[Rule]:
    """The device rules a container gets, in order, as runc builds them:
    linux.resources.devices, then an allow rule for each linux.devices node,
    then the defaults."""
    linux = config.get("linux") or {}
    assert isinstance(linux, dict)
    resources = linux.get("resources") or {}
    rules = parse_rules(list(resources.get("devices") or []))
    for i, dev in enumerate(linux.get("devices") or []):
        if not isinstance(dev, dict):
            continue
        typ = dev.get("type")
        major, minor = dev.get("major"), dev.get("minor")
        if typ in ("c", "b", "u") and isinstance(major, int) and isinstance(minor, int):
            rules.append((True, "c" if typ == "u" else str(typ), major, minor, "rwm"))
        elif typ not in (None, "p"):
            raise ConfigError(f"linux.devices[{i}]", "needs type c, b, u or p with major and minor")
    rules.extend(DEFAULT_RULES)
    return rules


def _expand(rule: Rule) -> list[Rule]:
    """The kernel's "a" type only means "everything": split a narrower a-rule into c and b."""
    allow, typ, major, minor, access = rule
    if typ == "a" and not (major == -1 and minor == -1 and access == "rwm"):
        return [(allow, "c", major, minor, access), (allow, "b", major, minor, access)]
    return [rule]


def reduce(rules: list[Rule]) -> tuple[bool, list[Rule]]:
    """Apply rules in order, as the v1 controller does; return (default_allow, exceptions).

    Exceptions are the rules opposite to the default (allow rules when the
    default is deny), merged per (type, major, minor)."""
    default_allow = True
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


def set_v1(directory: str, rules: list[Rule]) -> None:
    """Write the reduced rule set to devices.allow / devices.deny.

    The default is written first ("a" to devices.deny or devices.allow), then
    each exception, so the result does not depend on what was there before."""
    from ocipy.linux.cgroups.common import read_opt, write, write_each

    default_allow, exceptions = reduce(rules)
    if default_allow:
        current = (read_opt(directory, "devices.list") or "").strip()
        if current != "a *:* rwm":
            write(directory, "devices.allow", "a")
        write_each(directory, "devices.deny", [v1_line(rule) for rule in exceptions])
    else:
        write(directory, "devices.deny", "a")
        write_each(directory, "devices.allow", [v1_line(rule) for rule in exceptions])
