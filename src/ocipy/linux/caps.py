"""Capabilities: bounding set, capset (effective/permitted/inheritable), ambient."""

from __future__ import annotations

from ocipy.errors import KernelError
from ocipy.linux import syscalls
from ocipy.spec.runtime import CAPABILITIES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocipy.spec.config import Capabilities


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return max(CAPABILITIES.values())


def _mask(names: list[str] | None) -> int:
    mask = 0
    for name in names or []:
        mask |= 1 << CAPABILITIES[name.upper()]
    return mask


def drop_bounding(keep: list[str] | None, top: int) -> None:
    """Drop every capability not in `keep` from the bounding set (needs CAP_SETPCAP)."""
    wanted = _mask(keep)
    for cap in range(top + 1):
        if not wanted & (1 << cap):
            try:
                syscalls.prctl(syscalls.PR_CAPBSET_DROP, cap)  # a no-op for one already dropped
            except KernelError as e:
                # without CAP_SETPCAP even a no-op drop is refused: fine if it is not there
                if e.errno != 1 or syscalls.prctl(syscalls.PR_CAPBSET_READ, cap) != 0:
                    raise


def apply(caps: Capabilities, top: int) -> None:
    """Set the process capabilities after setuid (which ran with PR_SET_KEEPCAPS).

    Capabilities absent from the config are empty sets, as runc does.
    """
    syscalls.capset(_mask(caps.effective), _mask(caps.permitted), _mask(caps.inheritable))
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    for name in caps.ambient:
        cap = CAPABILITIES[name.upper()]
        if cap <= top:
            # Raising an ambient cap needs it in permitted and inheritable;
            # runc ignores the failure, and so do we.
            try:
                syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_RAISE, cap)
            except KernelError:
                pass
