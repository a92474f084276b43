"""The runtime-spec's vocabulary: name tables, `ocipy spec`'s default config,
and the small checks the one parse of config.json (spec/config.py) uses.

The name tables (capabilities, rlimits, namespaces, seccomp actions...) are
kernel and libseccomp ABI facts, pure data: importing this module costs
nothing on the runtime's hot path.
"""

from __future__ import annotations

from ocipy.errors import ConfigError

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any

SUPPORTED_MAJOR = 1

# Capability names to numbers (include/uapi/linux/capability.h).
CAPABILITIES: dict[str, int] = {
    name: number
    for number, name in enumerate(
        (
            "CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL "
            "CAP_SETGID CAP_SETUID CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE "
            "CAP_NET_BROADCAST CAP_NET_ADMIN CAP_NET_RAW CAP_IPC_LOCK CAP_IPC_OWNER "
            "CAP_SYS_MODULE CAP_SYS_RAWIO CAP_SYS_CHROOT CAP_SYS_PTRACE CAP_SYS_PACCT "
            "CAP_SYS_ADMIN CAP_SYS_BOOT CAP_SYS_NICE CAP_SYS_RESOURCE CAP_SYS_TIME "
            "CAP_SYS_TTY_CONFIG CAP_MKNOD CAP_LEASE CAP_AUDIT_WRITE CAP_AUDIT_CONTROL "
            "CAP_SETFCAP CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG CAP_WAKE_ALARM "
            "CAP_BLOCK_SUSPEND CAP_AUDIT_READ CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE"
        ).split()
    )
}
CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")

# rlimit names to resource numbers (include/uapi/asm-generic/resource.h).
RLIMITS: dict[str, int] = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}  # fmt: skip

# Namespace type (config-linux.md) to (CLONE_* flag, /proc/PID/ns entry).
NAMESPACES: dict[str, tuple[int, str]] = {
    "pid": (0x20000000, "pid"),
    "network": (0x40000000, "net"),
    "mount": (0x00020000, "mnt"),
    "ipc": (0x08000000, "ipc"),
    "uts": (0x04000000, "uts"),
    "user": (0x10000000, "user"),
    "cgroup": (0x02000000, "cgroup"),
    "time": (0x00000080, "time"),
}

SCHED_POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
                  "SCHED_ISO": 4, "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}  # fmt: skip
SCHED_FLAGS = {"SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02, "SCHED_FLAG_DL_OVERRUN": 0x04,
               "SCHED_FLAG_KEEP_POLICY": 0x08, "SCHED_FLAG_KEEP_PARAMS": 0x10,
               "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20, "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}  # fmt: skip
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
MEMPOLICY_MODES = {"MPOL_DEFAULT": 0, "MPOL_PREFERRED": 1, "MPOL_BIND": 2, "MPOL_INTERLEAVE": 3,
                   "MPOL_LOCAL": 4, "MPOL_PREFERRED_MANY": 5, "MPOL_WEIGHTED_INTERLEAVE": 6}  # fmt: skip
MEMPOLICY_FLAGS = {"MPOL_F_STATIC_NODES": 1 << 15, "MPOL_F_RELATIVE_NODES": 1 << 14, "MPOL_F_NUMA_BALANCING": 1 << 13}
PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}

# linux.seccomp names (config-linux.md "Seccomp") with libseccomp's values (seccomp.h):
# action -> (base value, takes errnoRet, minimum libseccomp API level)
SECCOMP_ACTIONS: dict[str, tuple[int, bool, int]] = {
    "SCMP_ACT_KILL": (0x00000000, False, 1),
    "SCMP_ACT_KILL_THREAD": (0x00000000, False, 1),
    "SCMP_ACT_KILL_PROCESS": (0x80000000, False, 3),
    "SCMP_ACT_TRAP": (0x00030000, False, 1),
    "SCMP_ACT_ERRNO": (0x00050000, True, 1),  # | (errno & 0xffff)
    "SCMP_ACT_TRACE": (0x7FF00000, True, 1),  # | (msg & 0xffff)
    "SCMP_ACT_ALLOW": (0x7FFF0000, False, 1),
    "SCMP_ACT_LOG": (0x7FFC0000, False, 3),
    # runc requires API level 6 (libseccomp >= 2.5.0, Linux >= 5.7) for notify,
    # so that TSYNC and a listener can be combined.
    "SCMP_ACT_NOTIFY": (0x7FC00000, False, 6),
}
# enum scmp_compare
SECCOMP_OPERATORS: dict[str, int] = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}  # fmt: skip
# SCMP_ARCH_* -> libseccomp's architecture name (seccomp_arch_resolve_name)
SECCOMP_ARCHS: dict[str, str] = {
    "SCMP_ARCH_X86": "x86", "SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm", "SCMP_ARCH_AARCH64": "aarch64", "SCMP_ARCH_MIPS": "mips",
    "SCMP_ARCH_MIPS64": "mips64", "SCMP_ARCH_MIPS64N32": "mips64n32", "SCMP_ARCH_MIPSEL": "mipsel",
    "SCMP_ARCH_MIPSEL64": "mipsel64", "SCMP_ARCH_MIPSEL64N32": "mipsel64n32", "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_PPC64": "ppc64", "SCMP_ARCH_PPC64LE": "ppc64le", "SCMP_ARCH_S390": "s390",
    "SCMP_ARCH_S390X": "s390x", "SCMP_ARCH_PARISC": "parisc", "SCMP_ARCH_PARISC64": "parisc64",
    "SCMP_ARCH_RISCV64": "riscv64", "SCMP_ARCH_LOONGARCH64": "loongarch64", "SCMP_ARCH_M68K": "m68k",
    "SCMP_ARCH_SH": "sh", "SCMP_ARCH_SHEB": "sheb",
}  # fmt: skip
# flag -> (libseccomp filter attribute, enum scmp_filter_attr; minimum API level)
SECCOMP_FLAGS: dict[str, tuple[int, int]] = {
    "SECCOMP_FILTER_FLAG_TSYNC": (4, 2),  # SCMP_FLTATR_CTL_TSYNC
    "SECCOMP_FILTER_FLAG_LOG": (6, 3),  # SCMP_FLTATR_CTL_LOG
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": (7, 4),  # SCMP_FLTATR_CTL_SSB
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": (10, 7),  # SCMP_FLTATR_CTL_WAITKILL
}

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def default_spec(rootless: bool = False) -> dict[str, Any]:
    """The config.json `ocipy spec` writes: the same defaults as `runc spec`."""
    from ocipy import OCI_RUNTIME_SPEC_VERSION

    spec: dict[str, Any] = {
        "ociVersion": OCI_RUNTIME_SPEC_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [DEFAULT_PATH, "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": list(_DEFAULT_CAPS),
                "effective": list(_DEFAULT_CAPS),
                "permitted": list(_DEFAULT_CAPS),
                "ambient": list(_DEFAULT_CAPS),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "ocipy",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/sys/devices/virtual/powercap",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    }  # fmt: skip
    if unified_cgroup_host():
        # As newer runc: a cgroup namespace of its own where the host is cgroup v2 only
        # (on v1 and hybrid hosts runc's tools expect the host's cgroup paths inside).
        spec["linux"]["namespaces"].append({"type": "cgroup"})
    if rootless:
        _make_rootless(spec)
    return spec


def unified_cgroup_host() -> bool:
    """True when /sys/fs/cgroup is a cgroup2 mount (no v1 hierarchies)."""
    import os

    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _make_rootless(spec: dict[str, Any]) -> None:
    """Adjust a default spec for an unprivileged user, as `runc spec --rootless` does:
    no network namespace but a user namespace mapping the caller to root, no
    resources, /sys bound from the host, devpts without gid=5."""
    import os

    old = spec["linux"]
    namespaces = [ns for ns in old["namespaces"] if ns["type"] not in ("network", "user")] + [{"type": "user"}]
    spec["linux"] = {
        "uidMappings": [{"containerID": 0, "hostID": os.geteuid(), "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": os.getegid(), "size": 1}],
        "namespaces": namespaces,
        **{key: value for key, value in old.items() if key not in ("resources", "namespaces")},
    }
    mounts = []
    for m in spec["mounts"]:
        if m["destination"] == "/sys":
            m = {"destination": "/sys", "type": "none", "source": "/sys",
                 "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}  # fmt: skip
        elif m["type"] == "devpts":
            m = dict(m, options=[o for o in m["options"] if not o.startswith("gid=")])
        mounts.append(m)
    spec["mounts"] = mounts


# --- checks the one parse (spec/config.py) uses ------------------------------------


HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def parse_id_list(text: str) -> list[int] | None:
    """"0-3,7" -> [0, 1, 2, 3, 7]; None when malformed (cpu and memory-node lists)."""
    out: list[int] = []
    for item in text.split(","):
        lo, dash, hi = item.strip().partition("-")
        if not (lo.isdigit() and lo.isascii()) or (dash and not (hi.isdigit() and hi.isascii())):
            return None
        first, last = int(lo), int(hi) if dash else int(lo)
        if last < first or last > 65535:
            return None
        out.extend(range(first, last + 1))
    return out


# The ipc namespace's sysctls (ipc/ipc_sysctl.c, ipc/mq_sysctl.c: fs.mqueue.*).
IPC_SYSCTLS = frozenset(("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                         "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"))  # fmt: skip


def sysctl_namespace(key: str) -> str | None:
    """The namespace type a sysctl belongs to; None for one that is the host's."""
    if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
        return "ipc"
    if key.startswith("net."):
        return "network"
    if key in ("kernel.hostname", "kernel.domainname"):
        return "uts"
    return None


def check_sysctl(key: str, types: set[str], domainname: object = None) -> None:
    """linux.sysctl: only a sysctl of a namespace the container has (writing
    any other changes the host's kernel), as runc allows, in runc's words.

    kernel.hostname is refused (the `hostname` field sets it, runc 1.1.5);
    kernel.domainname is allowed with a uts namespace, as runc 1.1.5 allows
    it, unless the `domainname` field sets it too.  A namespace joined by
    `path` may be the host's: the runtime checks that at create, where it
    can stat the path (rootfs.check_sysctl_namespaces).
    """
    field = f"linux.sysctl.{key}"
    kind = sysctl_namespace(key)
    if kind == "uts" and "uts" in types:
        if key == "kernel.domainname" and not domainname:
            return
        name = "hostname" if key == "kernel.hostname" else "domainname"
        raise ConfigError(field, f'sysctl "{key}" is not allowed as it conflicts with the OCI "{name}" field')
    if kind is None or kind == "uts":
        raise ConfigError(field, f'sysctl "{key}" is not in a separate kernel namespace')
    if kind not in types:
        raise ConfigError(field, f'sysctl "{key}" is not allowed in the hosts {"ipc" if kind == "ipc" else "network"} namespace')



def find_nul(value: Any, field: str = "") -> str | None:
    """The field of the first string (or key) with a NUL character: no path,
    argument or name can hold one, and the kernel would cut it short there."""
    if isinstance(value, str):
        return field if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            sub = f"{field}.{key}" if field else str(key)
            if "\x00" in key:
                return sub
            found = find_nul(item, sub)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = find_nul(item, f"{field}[{i}]")
            if found:
                return found
    return None


