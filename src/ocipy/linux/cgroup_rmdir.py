"""`delete`'s common case: a stopped container's cgroup directories removed from its saved state.

Engines delete every container (containerd twice: `delete`, then `delete
--force`), and importing the cgroup manager (:mod:`ocipy.linux.cgroups`, and
`os` with it) costs ~1.7 ms of a ~10 ms command (bench/FINDINGS.md).  When
the container left nothing behind -- no process, no child cgroup -- removing
its cgroups is one rmdir per directory, in the order
:meth:`ocipy.linux.cgroups.Manager.destroy` uses.  Anything else (a busy or
non-empty directory, an unexpected error) is the manager's to handle: this
stops at the first such directory and says so.  Imports nothing but posix.
"""

import posix


def remove(data: dict[str, object]) -> bool:
    """rmdir the cgroups that ``Manager.destroy`` would remove, for the saved
    manager state `data` (``Manager.to_state``); True when every one is gone.

    False (the rest left as it was) at the first directory that cannot simply
    be removed: processes still in it (EBUSY), child cgroups (ENOTEMPTY,
    EBUSY), anything else; the caller then runs the manager's destroy, which
    retries, walks children, kills and reports as before.  The directory that
    tells whether processes are left (the one ``Manager.pids`` reads) goes
    first: once it is gone, no process was left in the container's cgroup."""
    paths = data.get("paths")
    if not isinstance(paths, dict) or data.get("version") != 1:
        return False
    created = [str(d) for d in _strings(data.get("created"))]
    planned = [str(d) for d in _strings(data.get("planned"))]
    dirs: list[str] = []  # Manager._dirs: v1 hierarchies first, then cgroup2; distinct
    for key in sorted(paths, key=lambda k: (k == "", k)):
        d = paths[key]
        if isinstance(d, str) and d not in dirs:
            dirs.append(d)
    order: list[str] = []
    if data.get("owned") is True:  # the container's own directories, there before it (destroy's first loop)
        order += [d for d in reversed(dirs) if d not in created]
    order += sorted(dict.fromkeys(planned + created), key=lambda p: -p.count("/"))  # children first
    first = paths.get("") if data.get("mode") == "v2" else (
        paths.get("freezer") or paths.get("devices") or paths.get("pids") or (dirs[0] if dirs else None))
    if first in order:  # only a directory destroy removes too
        order.insert(0, str(first))
    for d in dict.fromkeys(order):
        try:
            posix.rmdir(d)
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return True


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
