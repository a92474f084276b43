"""linux.sysctl and linux.namespaces validation (spec/runtime.py), without the kernel."""

from __future__ import annotations

import copy

import pytest

from ocipy.errors import ConfigError
from ocipy.spec.config import parse
from ocipy.spec.runtime import default_spec


def config_with(sysctl: dict[str, str], drop: tuple[str, ...] = (), paths: dict[str, str] | None = None) -> dict:
    c = copy.deepcopy(default_spec())
    c["linux"]["namespaces"] = [ns for ns in c["linux"]["namespaces"] if ns["type"] not in drop]
    for ns in c["linux"]["namespaces"]:
        if paths and ns["type"] in paths:
            ns["path"] = paths[ns["type"]]
    c["linux"]["sysctl"] = sysctl
    return c


@pytest.mark.parametrize("key", ["net.ipv4.ip_forward", "net.core.somaxconn", "fs.mqueue.msg_max", "kernel.shmmni",
                                 "kernel.msgmax", "kernel.sem", "kernel.shm_rmid_forced"])  # fmt: skip
def test_namespaced_sysctls_with_their_namespace_pass(key):
    parse(config_with({key: "1"}))
    parse(config_with({key: "1"}, paths={"network": "/proc/1/ns/net", "ipc": "/proc/1/ns/ipc"}))


@pytest.mark.parametrize("key", ["vm.swappiness", "kernel.panic", "kernel.pid_max", "fs.file-max", "kernel.randomize_va_space",
                                 "dev.tty.ldisc_autoload", "user.max_user_namespaces"])  # fmt: skip
def test_host_sysctls_are_refused(key):
    """Not in any namespace: writing them would change the host's kernel."""
    with pytest.raises(ConfigError, match=rf"linux\.sysctl\.{key}: .*not in a separate kernel namespace"):
        parse(config_with({key: "1"}))


@pytest.mark.parametrize("key,ns", [("net.ipv4.ip_forward", "network"), ("kernel.shmmax", "ipc"),
                                    ("fs.mqueue.queues_max", "ipc"), ("kernel.msgmnb", "ipc")])  # fmt: skip
def test_namespaced_sysctls_without_their_namespace_are_refused(key, ns):
    with pytest.raises(ConfigError, match=rf"linux\.sysctl\.{key}: sysctl \"{key}\" is not allowed in the hosts {ns} namespace"):
        parse(config_with({key: "1"}, drop=(ns,)))


def test_uts_sysctls_conflict_with_the_fields():
    """runc 1.1.5: kernel.hostname always conflicts with the `hostname` field;
    kernel.domainname is allowed with a uts namespace (runc 1.1.5 writes it),
    unless the `domainname` field is set too."""
    with pytest.raises(ConfigError, match=r'sysctl "kernel.hostname" is not allowed as it conflicts with the OCI "hostname" field'):
        parse(config_with({"kernel.hostname": "x"}))
    parse(config_with({"kernel.domainname": "x"}))
    c = config_with({"kernel.domainname": "x"})
    c["domainname"] = "y"
    with pytest.raises(ConfigError, match=r'conflicts with the OCI "domainname" field'):
        parse(c)
    with pytest.raises(ConfigError, match="not in a separate kernel namespace"):
        parse(config_with({"kernel.domainname": "x"}, drop=("uts",)))


def test_duplicate_namespaces_are_an_error_even_when_identical():
    """config-linux.md: "If a `namespaces` field contains duplicated namespaces
    with same `type`, the runtime MUST generate an error." (runc 1.1.5 agrees:
    "malformed spec file: duplicated ns".)"""
    c = copy.deepcopy(default_spec())
    c["linux"]["namespaces"] = [{"type": t} for t in ("pid", "mount", "cgroup", "cgroup")]
    with pytest.raises(ConfigError, match=r"linux\.namespaces\[3\]\.type: namespace cgroup is listed twice"):
        parse(c)
    c["linux"]["namespaces"][-1] = {"type": "cgroup", "path": "/proc/1/ns/cgroup"}
    with pytest.raises(ConfigError, match="listed twice"):
        parse(c)


@pytest.mark.parametrize("path,ok", [("/dev/null", True), ("/mydev/null", True), ("/a/../b", True),
                                     ("/", False), ("//", False), ("/..", False), ("/./", False)])  # fmt: skip
def test_device_paths_anywhere_but_the_root(path, ok):
    c = copy.deepcopy(default_spec())
    c["linux"]["devices"] = [{"path": path, "type": "c", "major": 1, "minor": 3}]
    if ok:
        parse(c)
    else:
        with pytest.raises(ConfigError, match=r"linux\.devices\[0\]\.path: .* is not a valid device path"):
            parse(c)


def test_idmap_needs_a_bind_mount_and_both_mappings():
    """config.md: with `idmap` "the mount MUST have an idmapping applied" (only a
    bind mount can); mount uidMappings "MUST be specified along with gidMappings"."""
    c = copy.deepcopy(default_spec())
    c["mounts"].append({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"]})
    with pytest.raises(ConfigError, match=r"mounts\[7\]\.options: idmap/ridmap is only supported on bind mounts"):
        parse(c)
    c["mounts"][-1] = {"destination": "/t", "source": "/s", "options": ["rbind", "ridmap"],
                       "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}  # fmt: skip
    with pytest.raises(ConfigError, match=r"mounts\[7\]\.uidMappings"):
        parse(c)
    c["mounts"][-1]["gidMappings"] = c["mounts"][-1]["uidMappings"]
    parse(c)
