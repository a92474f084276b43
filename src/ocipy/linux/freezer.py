"""Whether a container's cgroup is frozen, read from the directories saved in its state.

Every `state`, `start`, `kill` and `delete` asks this of a live container
(to tell ``paused``): it is kept out of :mod:`ocipy.linux.cgroups` so those
commands need not import the whole cgroup manager (~0.8 ms of a ~10 ms
command, bench/FINDINGS.md).  Imports nothing.
"""


def is_frozen(paths: dict[str, str]) -> bool:
    """v1: the freezer hierarchy's ``freezer.state`` is FROZEN; v2: ``cgroup.freeze`` is 1.

    `paths` maps a controller to the container's directory (``""``: cgroup2),
    as :meth:`ocipy.linux.cgroups.Manager.paths` does."""
    d = paths.get("freezer")
    if d:
        return _read(d + "/freezer.state") == "FROZEN"
    d2 = paths.get("")
    if d2:
        return _read(d2 + "/cgroup.freeze") == "1"
    return False


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""
