"""runtime-spec features.md: what this runtime really implements."""

from __future__ import annotations

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any


def features() -> dict[str, Any]:
    from ocipy import OCI_RUNTIME_SPEC_VERSION
    from ocipy.runtime.mountplan import FLAGS, PROPAGATION, RECURSIVE, RECURSIVE_ATIME
    from ocipy.spec.runtime import (
        CAPABILITIES,
        HOOK_KINDS,
        MEMPOLICY_FLAGS,
        MEMPOLICY_MODES,
        NAMESPACES,
    )

    options = sorted(set(FLAGS) | set(PROPAGATION) | set(RECURSIVE) | set(RECURSIVE_ATIME) | {"idmap", "ridmap"})
    linux: dict[str, Any] = {
        "namespaces": sorted(NAMESPACES),
        "capabilities": sorted(CAPABILITIES, key=CAPABILITIES.__getitem__),
        "cgroup": _cgroup_features(),
        "seccomp": _seccomp_features(),
        "apparmor": {"enabled": True},  # applied at execve when the kernel has AppArmor
        "selinux": {"enabled": True},  # the exec label, when the kernel has SELinux
        "intelRdt": {"enabled": False},
        "mountExtensions": {"idmap": {"enabled": True}},
        "netDevices": {"enabled": True},
        "memoryPolicy": {"modes": sorted(MEMPOLICY_MODES), "flags": sorted(MEMPOLICY_FLAGS)},
    }
    annotations = {"org.opencontainers.runtime-spec.features.version": OCI_RUNTIME_SPEC_VERSION}
    seccomp_version = _libseccomp_version()
    if seccomp_version:
        annotations["io.github.seccomp.libseccomp.version"] = seccomp_version  # as runc's (features.md example)
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_RUNTIME_SPEC_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": options,
        "linux": linux,
        "annotations": annotations,
    }


def _cgroup_features() -> dict[str, Any]:
    from ocipy.linux import cgroups

    return dict(cgroups.features())


def _seccomp_features() -> dict[str, Any]:
    try:
        from ocipy.linux import seccomp

        return dict(seccomp.features())
    except (ImportError, AttributeError, OSError):
        return {"enabled": False}


def _libseccomp_version() -> str | None:
    try:
        from ocipy.linux import seccomp

        return seccomp.library_version()
    except Exception:  # noqa: BLE001 - no libseccomp: no annotation
        return None
