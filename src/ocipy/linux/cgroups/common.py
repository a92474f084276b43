"""Small helpers shared by the v1 and v2 code: reading and writing cgroup files.

Every write that the kernel refuses becomes a :class:`KernelError` naming the
file and the value, e.g. ``write '1k' to /sys/fs/cgroup/memory/x/memory.limit_in_bytes:
Invalid argument (errno 22)``.
"""

from __future__ import annotations

import errno
import os

from ocipy.errors import ConfigError, KernelError

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any


def write(directory: str, name: str, value: str | int) -> None:
    write_each(directory, name, [str(value)])


def write_each(directory: str, name: str, values: list[str]) -> None:
    """One write(2) per value on a single open of the file: the kernel takes
    each write as one entry (devices.allow/deny read one rule per write)."""
    if not values:
        return
    path = os.path.join(directory, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_TRUNC)
    except OSError as e:
        raise KernelError(f"write {values[0]!r} to", path, e.errno or errno.EIO) from None
    try:
        for data in values:
            try:
                os.write(fd, data.encode())
            except OSError as e:
                raise KernelError(f"write {data!r} to", path, e.errno or errno.EIO) from None
    finally:
        os.close(fd)


def read(directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError as e:
        raise KernelError("read", path, e.errno or errno.EIO) from None


def read_opt(directory: str, name: str) -> str | None:
    """The file's text, or None if it does not exist (or cannot be read)."""
    try:
        with open(os.path.join(directory, name), "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None


def read_int(directory: str, name: str, default: int = 0) -> int:
    """An integer file; "max" reads as 0 (runc's convention for 'no limit' in stats)."""
    text = read_opt(directory, name)
    if text is None:
        return default
    text = text.strip()
    if text in ("max", ""):
        return 0
    try:
        return int(text)
    except ValueError:
        return default


def read_keyed(directory: str, name: str) -> dict[str, int]:
    """A flat-keyed file ("key value" per line: memory.stat, cpu.stat, ...)."""
    out: dict[str, int] = {}
    text = read_opt(directory, name)
    if not text:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def exists(directory: str, name: str) -> bool:
    return os.path.exists(os.path.join(directory, name))


def parse_list(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7] (cpuset lists)."""
    out: list[int] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            start = int(lo)
            end = int(hi) if hi else start
        except ValueError:
            continue
        out.extend(range(start, min(end, start + 65536) + 1))
    return out


# --- validation helpers -------------------------------------------------------------

def want_int(obj: dict[str, object], key: str, where: str, lo: int | None = None,
             hi: int | None = None) -> int | None:
    """obj[key] as an int within [lo, hi], None if absent; ConfigError otherwise."""
    if key not in obj or obj[key] is None:
        return None
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}.{key}", f"must be an integer, not {value!r}")
    if lo is not None and value < lo:
        raise ConfigError(f"{where}.{key}", f"{value} is out of range (minimum {lo})")
    if hi is not None and value > hi:
        raise ConfigError(f"{where}.{key}", f"{value} is out of range (maximum {hi})")
    return value


def want_bool(obj: dict[str, object], key: str, where: str) -> bool | None:
    if key not in obj or obj[key] is None:
        return None
    value = obj[key]
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}", f"must be true or false, not {value!r}")
    return value


def want_dict(obj: dict[str, object], key: str, where: str) -> dict[str, object] | None:
    if key not in obj or obj[key] is None:
        return None
    value = obj[key]
    if not isinstance(value, dict):
        raise ConfigError(f"{where}.{key}", f"must be an object, not {type(value).__name__}")
    return value


def want_list(obj: dict[str, object], key: str, where: str) -> list[object] | None:
    if key not in obj or obj[key] is None:
        return None
    value = obj[key]
    if not isinstance(value, list):
        raise ConfigError(f"{where}.{key}", f"must be an array, not {type(value).__name__}")
    return value


INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1
UINT32_MAX = (1 << 32) - 1
UINT16_MAX = (1 << 16) - 1


def set_hugetlb_limits(d: str, pages: list[dict[str, Any]], suffix: str) -> None:
    """hugepageLimits; `suffix` is the file name's end: v1 limit_in_bytes, v2 max."""
    for i, p in enumerate(pages):
        name = f"hugetlb.{p['pageSize']}.{suffix}"
        if not exists(d, name):
            raise ConfigError(f"linux.resources.hugepageLimits[{i}].pageSize",
                              f"hugepage size {p['pageSize']} is not supported by this kernel (no {name})")
        write(d, name, p["limit"])
        rsvd = f"hugetlb.{p['pageSize']}.rsvd.{suffix}"
        if exists(d, rsvd):
            write(d, rsvd, p["limit"])
