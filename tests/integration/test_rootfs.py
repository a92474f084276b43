"""The container's filesystem and kernel settings on the real kernel: proc/sysfs
on symlinks, read-only /dev, devices outside /dev, bind sources only the
runtime can reach, --no-pivot, and sysctls that must never reach the host."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.helpers import IS_ROOT, unique_id

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not IS_ROOT, reason="needs root: namespaces and mounts")]

MakeBundle = Callable[..., Path]


def run(runtime: Any, bundle: Path, cid: str | None = None, *flags: str) -> subprocess.CompletedProcess[str]:
    return runtime("run", *flags, "-b", str(bundle), cid or unique_id(), check=False)  # type: ignore[no-any-return]


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if line.split()[4].startswith(str(path))]


@pytest.mark.parametrize("dest", ["proc", "sys"])
def test_proc_or_sys_symlink_is_refused(runtime: Any, make_bundle: MakeBundle, dest: str) -> None:
    """runc's mask.bats "prohibit symlink /proc|/sys" (the kernel's files must
    not land where a symlink in the rootfs points)."""
    bundle = make_bundle(["true"])
    (bundle / "rootfs" / dest).rmdir()
    (bundle / "rootfs" / dest).symlink_to("/symlink")
    cid = unique_id()
    proc = run(runtime, bundle, cid)
    assert proc.returncode == 1, proc.stderr
    assert "must be mounted on ordinary directory" in proc.stderr and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
    assert not (runtime.root / cid).exists() and mounts_under(bundle) == []
    assert not (bundle / "rootfs/symlink").exists()


def test_read_only_dev_tmpfs(runtime: Any, make_bundle: MakeBundle) -> None:
    """mounts.bats "ro /dev mount": /dev/pts and the nodes are made first, then /dev is read-only."""
    def edit(c: dict[str, Any]) -> None:
        for m in c["mounts"]:
            if m["destination"] == "/dev":
                m["options"].append("ro")

    proc = run(runtime, make_bundle(["sh", "-c", "grep '^tmpfs /dev ' /proc/mounts; ls /dev/pts/ptmx /dev/null; "
                                     "touch /dev/x 2>/dev/null || echo ro"], edit=edit))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[3].startswith("ro,") and lines[1:] == ["/dev/null", "/dev/pts/ptmx", "ro"]


def test_devices_outside_dev(runtime: Any, make_bundle: MakeBundle) -> None:
    """runc creates linux.devices wherever the path says, inside the rootfs."""
    def edit(c: dict[str, Any]) -> None:
        c["linux"]["devices"] = [{"path": "/mydev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666}]
        c["linux"]["resources"]["devices"].append({"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"})

    proc = run(runtime, make_bundle(["sh", "-c", "stat -c '%t:%T %F' /mydev/null; echo x > /mydev/null && echo w"], edit=edit))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["1:3 character special file", "w"]


def test_bind_source_the_mapped_root_cannot_reach(runtime: Any, make_bundle: MakeBundle, tmp_path: Path) -> None:
    """userns.bats "2 inaccessible mounts": the runtime opens the sources
    before the container's user namespace exists."""
    srcs = []
    for n in (1, 2):
        d = tmp_path / f"inaccessible-{n}" / "dir"
        d.mkdir(parents=True)
        (d / "foo.txt").write_text(f"secret {n}\n")
        d.parent.chmod(0o700)
        srcs.append(d)

    def edit(c: dict[str, Any]) -> None:
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        for s in ("bounding", "permitted", "effective"):
            c["process"]["capabilities"][s].append("CAP_SYS_ADMIN")
        c["mounts"] += [{"destination": f"/tmp/mount-{n}", "source": str(s), "options": ["bind"]} for n, s in ((1, srcs[0]), (2, srcs[1]))]

    bundle = make_bundle(["sh", "-c", "cat /tmp/mount-1/foo.txt /tmp/mount-2/foo.txt; mount -t tmpfs t /tmp/mount-1 && echo mounted"],
                         edit=edit)  # fmt: skip
    for parent in [bundle, *bundle.parents]:
        if parent == Path("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o005)
    proc = run(runtime, bundle)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["secret 1", "secret 2", "mounted"]
    # the tree came from the host's namespace: a mount made on it inside must not reach the host
    assert mounts_under(srcs[0]) == [] and (srcs[0] / "foo.txt").exists()


def test_no_pivot_hides_the_hosts_proc(runtime: Any, make_bundle: MakeBundle) -> None:
    """no_pivot.bats: with --no-pivot a container root may not mount a bare /proc."""
    def edit(c: dict[str, Any]) -> None:
        caps = c["process"]["capabilities"]
        for s in ("bounding", "permitted", "effective"):
            caps[s] = sorted(set(caps[s]) | {"CAP_SYS_ADMIN", "CAP_SETFCAP", "CAP_SETUID", "CAP_SETGID"})

    proc = run(runtime, make_bundle(["unshare", "-mrpf", "sh", "-c", "mount -t proc none /proc && echo MOUNTED"], edit=edit),
               None, "--no-pivot")  # fmt: skip
    assert "MOUNTED" not in proc.stdout
    assert "permission denied" in (proc.stdout + proc.stderr).lower()


def _host_sysctl(key: str) -> str:
    return Path("/proc/sys/" + key.replace(".", "/")).read_text().strip()


@pytest.mark.parametrize("key,value,drop", [
    ("vm.swappiness", "17", ()),
    ("kernel.printk_ratelimit", "7", ()),
    ("net.ipv4.ip_forward", None, ("network",)),
    ("kernel.shmmni", "1234", ("ipc",)),
    ("kernel.hostname", "hacked", ()),
])  # fmt: skip
def test_sysctl_never_reaches_the_host(runtime: Any, make_bundle: MakeBundle, key: str, value: str | None,
                                       drop: tuple[str, ...]) -> None:  # fmt: skip
    path = Path("/proc/sys/" + key.replace(".", "/"))
    if not path.exists():
        pytest.skip(f"no {key} on this kernel")
    before = _host_sysctl(key)
    if value is None:
        value = "0" if before == "1" else "1"

    def edit(c: dict[str, Any]) -> None:
        c["linux"]["namespaces"] = [ns for ns in c["linux"]["namespaces"] if ns["type"] not in drop]
        c["linux"]["sysctl"] = {key: value}

    cid = unique_id()
    proc = runtime("create", "-b", str(make_bundle(["true"], edit=edit)), cid, check=False)
    assert proc.returncode != 0 and f"linux.sysctl.{key}" in proc.stderr and proc.stderr.count("\n") == 1
    assert _host_sysctl(key) == before
    assert not (runtime.root / cid).exists()


def test_sysctl_in_the_hosts_namespace_by_path_is_refused(runtime: Any, make_bundle: MakeBundle) -> None:
    before = _host_sysctl("net.ipv4.ip_forward")

    def edit(c: dict[str, Any]) -> None:
        for ns in c["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = "/proc/self/ns/net"  # opened by the runtime: its own, the host's
        c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "0" if before == "1" else "1"}

    cid = unique_id()
    proc = runtime("create", "-b", str(make_bundle(["true"], edit=edit)), cid, check=False)
    assert proc.returncode != 0 and "not allowed in host network namespace" in proc.stderr
    assert _host_sysctl("net.ipv4.ip_forward") == before and not (runtime.root / cid).exists()


def test_duplicate_namespace_is_refused(runtime: Any, make_bundle: MakeBundle) -> None:
    """config-linux.md: "If a `namespaces` field contains duplicated namespaces
    with same `type`, the runtime MUST generate an error." """
    cid = unique_id()
    proc = runtime("create", "-b", str(make_bundle(["true"], edit=lambda c: c["linux"]["namespaces"].append({"type": "ipc"}))),
                   cid, check=False)  # fmt: skip
    assert proc.returncode == 1 and "type: namespace ipc is listed twice" in proc.stderr, proc.stderr
    assert not (runtime.root / cid).exists()


def test_domainname_sysctl_stays_in_the_uts_namespace(runtime: Any, make_bundle: MakeBundle) -> None:
    """runc 1.1.5 allows kernel.domainname with a uts namespace: the container's, not the host's."""
    before = _host_sysctl("kernel.domainname")
    proc = run(runtime, make_bundle(["cat", "/proc/sys/kernel/domainname"],
                                    edit=lambda c: c["linux"].update(sysctl={"kernel.domainname": "ctr.example"})))  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "ctr.example", proc.stderr
    assert _host_sysctl("kernel.domainname") == before


@pytest.fixture
def shared_dir(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A shared tmpfs mount on the host (as on systemd machines, where / is shared)."""
    d = tmp_path / "shared"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "ocipy-test-shared", str(d)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(d)], check=True)
        yield d
    finally:
        subprocess.run(["umount", "-R", "-l", str(d)], check=False)


@pytest.mark.parametrize("prop", ["private", "slave", "rprivate", "rslave", "shared", "unbindable"])
def test_no_container_mount_reaches_a_shared_host_mount(runtime: Any, make_bundle: MakeBundle, shared_dir: Path,
                                                        prop: str) -> None:  # fmt: skip
    """rootfsPropagation private/slave (not recursive) left the rootfs's mount a
    peer of the host's: proc, dev, sys appeared on the host (and stayed when
    create failed).  runc makes that mount private."""
    bundle = make_bundle(["sleep", "30"], edit=lambda c: c["linux"].update(rootfsPropagation=prop))
    subprocess.run(["cp", "-a", str(bundle), str(shared_dir / "b")], check=True)
    cid = unique_id()
    proc = runtime("run", "-d", "-b", str(shared_dir / "b"), cid, check=False)
    try:
        assert proc.returncode == 0, proc.stderr
        assert mounts_under(shared_dir / "b") == []
    finally:
        runtime("delete", "-f", cid, check=False)
    # and a create that fails after its first mounts
    (shared_dir / "b/rootfs/sys").rmdir()
    (shared_dir / "b/rootfs/sys").symlink_to("/etc")
    assert runtime("run", "-d", "-b", str(shared_dir / "b"), unique_id(), check=False).returncode == 1
    assert mounts_under(shared_dir / "b") == []
