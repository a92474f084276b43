"""Small helpers shared by the v1 and v2 code: reading and writing cgroup files.

Every write that the kernel refuses becomes a :class:`KernelError` naming the
file and the value, e.g. ``write '1k' to /sys/fs/cgroup/memory/x/memory.limit_in_bytes:
Invalid argument (errno 22)``.
"""

from __future__ import annotations

import errno
import os

from ocipy.errors import ConfigError, KernelError


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


def init_cpuset(d: str, parent: str) -> None:
    """A new v1 cpuset (here, not in v1.py: every create on a v1 host makes one
    and need not import the v1 writers for it) starts with empty
    cpus/mems: copy the parent's, or no task may join."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not (read_opt(d, name) or "").strip():
            value = read(parent, name).strip()
            if value:
                write(d, name, value)


def set_hugetlb_limits(d: str, pages: list[tuple[str, int]], suffix: str) -> None:
    """hugepageLimits, (page size, limit); `suffix` is the file name's end: v1 limit_in_bytes, v2 max."""
    for i, (size, limit) in enumerate(pages):
        name = f"hugetlb.{size}.{suffix}"
        if not exists(d, name):
            raise ConfigError(f"linux.resources.hugepageLimits[{i}].pageSize",
                              f"hugepage size {size} is not supported by this kernel (no {name})")
        write(d, name, limit)
        rsvd = f"hugetlb.{size}.rsvd.{suffix}"
        if exists(d, rsvd):
            write(d, rsvd, limit)
