"""/proc/PID/stat, read once here: the fields after the command name.

``fields[0]`` is the state letter, ``fields[1]`` the parent pid,
``fields[19]`` the start time (proc(5) numbers them from 3 and 22).  The
command name may hold spaces and parentheses, so the split starts after the
last ')'.  Builtins only: the runtime's hot path reads it.
"""

from __future__ import annotations

STATE, PPID, START_TIME = 0, 1, 19


def fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name, None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()
