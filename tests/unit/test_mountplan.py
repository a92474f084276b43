"""Mount planning (runtime/mountplan.py) as a pure function, and the rootfs
executor (runtime/rootfs.py) run through a recording fake of the kernel seam:
the exact operations a config asks for, without root, in well under a second.

The flag values are written out from the kernel's headers (include/uapi/linux/
mount.h), not taken from the module under test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocipy.errors import ConfigError
from ocipy.runtime import mountplan as mp
from ocipy.runtime import rootfs
from ocipy.spec.config import Linux, parse
from ocipy.spec.runtime import default_spec
from support.helpers import parsed_config
from support.kernel import RecordingKernel  # tests/ is on sys.path (conftest.py)

RDONLY, NOSUID, NODEV, NOEXEC, SYNCHRONOUS, REMOUNT, MANDLOCK, DIRSYNC = 1, 2, 4, 8, 0x10, 0x20, 0x40, 0x80
NOSYMFOLLOW, NOATIME, NODIRATIME, BIND, MOVE, REC, SILENT = 0x100, 0x400, 0x800, 0x1000, 0x2000, 0x4000, 0x8000
UNBINDABLE, PRIVATE, SLAVE, SHARED, RELATIME = 1 << 17, 1 << 18, 1 << 19, 1 << 20, 1 << 21
IVERSION, STRICTATIME, LAZYTIME = 1 << 23, 1 << 24, 1 << 25

# config.md "Mount options": option -> (flag it sets, flag it clears)
FLAG_OPTIONS = {
    "async": (0, SYNCHRONOUS), "atime": (0, NOATIME), "defaults": (0, 0), "dev": (0, NODEV),
    "diratime": (0, NODIRATIME), "dirsync": (DIRSYNC, 0), "exec": (0, NOEXEC), "iversion": (IVERSION, 0),
    "lazytime": (LAZYTIME, 0), "loud": (0, SILENT), "mand": (MANDLOCK, 0), "noatime": (NOATIME, 0),
    "nodev": (NODEV, 0), "nodiratime": (NODIRATIME, 0), "noexec": (NOEXEC, 0), "noiversion": (0, IVERSION),
    "nolazytime": (0, LAZYTIME), "nomand": (0, MANDLOCK), "norelatime": (0, RELATIME),
    "nostrictatime": (0, STRICTATIME), "nosuid": (NOSUID, 0), "nosymfollow": (NOSYMFOLLOW, 0),
    "relatime": (RELATIME, 0), "ro": (RDONLY, 0), "rw": (0, RDONLY), "silent": (SILENT, 0),
    "strictatime": (STRICTATIME, 0), "suid": (0, NOSUID), "symfollow": (0, NOSYMFOLLOW), "sync": (SYNCHRONOUS, 0),
}  # fmt: skip
PROPAGATIONS = {
    "private": PRIVATE, "rprivate": PRIVATE | REC, "shared": SHARED, "rshared": SHARED | REC,
    "slave": SLAVE, "rslave": SLAVE | REC, "unbindable": UNBINDABLE, "runbindable": UNBINDABLE | REC,
}  # fmt: skip
A_RDONLY, A_NOSUID, A_NODEV, A_NOEXEC, A_ATIME, A_NOATIME, A_STRICT, A_NODIRATIME, A_NOSYMFOLLOW = (
    1, 2, 4, 8, 0x70, 0x10, 0x20, 0x80, 0x200000)
RECURSIVE_OPTIONS = {  # option -> (attr_set, attr_clr) for mount_setattr(AT_RECURSIVE)
    "rro": (A_RDONLY, 0), "rrw": (0, A_RDONLY), "rnosuid": (A_NOSUID, 0), "rsuid": (0, A_NOSUID),
    "rnodev": (A_NODEV, 0), "rdev": (0, A_NODEV), "rnoexec": (A_NOEXEC, 0), "rexec": (0, A_NOEXEC),
    "rnodiratime": (A_NODIRATIME, 0), "rdiratime": (0, A_NODIRATIME),
    "rnosymfollow": (A_NOSYMFOLLOW, 0), "rsymfollow": (0, A_NOSYMFOLLOW),
    "rnoatime": (A_NOATIME, A_ATIME), "rstrictatime": (A_STRICT, A_ATIME), "rrelatime": (0, A_ATIME),
    "rnorelatime": (0, A_ATIME), "ratime": (0, A_ATIME), "rnostrictatime": (0, A_ATIME),
}  # fmt: skip


def plan_of(*entries: dict, bundle: str = "/b") -> mp.Plan:
    return mp.plan(parsed_config({"mounts": list(entries)}).mounts, bundle)


def test_every_option_is_known():
    known = set(mp.FLAGS) | set(mp.PROPAGATION) | set(mp.RECURSIVE) | set(mp.RECURSIVE_ATIME)
    assert known >= set(FLAG_OPTIONS) | set(PROPAGATIONS) | set(RECURSIVE_OPTIONS) | {"bind", "rbind", "remount"}


@pytest.mark.parametrize("option", sorted(FLAG_OPTIONS))
def test_a_flag_option_on_a_new_filesystem_goes_to_mount(option):
    set_, _ = FLAG_OPTIONS[option]
    p = plan_of({"destination": "/mnt", "type": "ext4", "source": "/dev/sda1", "options": [option, "data=x"]})
    assert p.ops() == [mp.MountFs("/mnt", "/dev/sda1", "ext4", set_, "data=x", "mounts[0]")]
    assert p.deferred == []  # only tmpfs and /dev wait to be made read-only


@pytest.mark.parametrize("option", sorted(FLAG_OPTIONS))
def test_a_flag_option_on_a_bind_mount_is_a_remount(option):
    """A bind mount ignores flags: they take a remount (and a clearing option is passed on)."""
    set_, clear = FLAG_OPTIONS[option]
    p = plan_of({"destination": "/mnt", "source": "src", "options": ["rbind", option]})
    expect: list[mp.Op] = [mp.Bind("/mnt", "/b/src", True, 0, "mounts[0]")]
    if set_ or clear:
        expect.append(mp.Remount("/mnt", set_, clear, "mounts[0]"))
    assert p.ops() == expect


def test_a_later_option_wins():
    assert plan_of({"destination": "/m", "type": "tmpfs", "options": ["nosuid", "suid", "noexec"]}).ops() == [
        mp.MountFs("/m", "tmpfs", "tmpfs", NOEXEC, None, "mounts[0]")]


@pytest.mark.parametrize("option", sorted(PROPAGATIONS))
def test_propagation_follows_the_mount(option):
    p = plan_of({"destination": "/m", "type": "bind", "source": "/s", "options": [option]})
    assert p.ops() == [mp.Bind("/m", "/s", False, 0, "mounts[0]"), mp.Propagate("/m", PROPAGATIONS[option], "mounts[0]")]


def test_several_propagations_keep_their_order():
    p = plan_of({"destination": "/m", "type": "tmpfs", "options": ["rshared", "slave"]})
    assert [op.flag for op in p.ops() if isinstance(op, mp.Propagate)] == [SHARED | REC, SLAVE]


@pytest.mark.parametrize("option", sorted(RECURSIVE_OPTIONS))
def test_recursive_options_are_one_mount_setattr(option):
    p = plan_of({"destination": "/m", "source": "/s", "options": ["rbind", option]})
    assert p.ops()[-1] == mp.SetAttr("/m", *RECURSIVE_OPTIONS[option], "mounts[0]")


def test_rbind_ro_rro_remounts_and_sets_recursively():
    """mounts_recursive.bats: ro is the top mount only, rro the whole tree."""
    p = plan_of({"destination": "/m", "source": "/s", "options": ["rbind", "ro", "rro"]})
    assert p.ops() == [mp.Bind("/m", "/s", True, 0, "mounts[0]"), mp.Remount("/m", RDONLY, 0, "mounts[0]"),
                       mp.SetAttr("/m", A_RDONLY, 0, "mounts[0]")]  # fmt: skip


def test_proc_and_sysfs_are_checked_first():
    p = plan_of({"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro", "nosuid"]})  # fmt: skip
    assert p.ops() == [
        mp.CheckDir("/proc", "proc", "mounts[0]"), mp.MountFs("/proc", "proc", "proc", 0, None, "mounts[0]"),
        mp.CheckDir("/sys", "sysfs", "mounts[1]"), mp.MountFs("/sys", "sysfs", "sysfs", RDONLY | NOSUID, None, "mounts[1]"),
    ]  # fmt: skip


@pytest.mark.parametrize("dest,fstype", [("/dev", "tmpfs"), ("/mnt", "tmpfs"), ("/dev/", "devtmpfs")])
def test_read_only_tmpfs_and_dev_are_remounted_later(dest, fstype):
    """mounts.bats "ro /dev mount": /dev/pts and the nodes are made in it first (runc does the same)."""
    p = plan_of({"destination": dest, "type": fstype, "options": ["ro", "nosuid", "mode=755"]})
    assert p.steps == [[mp.MountFs(dest, fstype, fstype, NOSUID, "mode=755", "mounts[0]")]]
    assert p.deferred == [mp.RemountRo(dest, NOSUID, "mounts[0]")]


def test_a_ro_bind_of_dev_stays_immediate_and_marks_dev_bound():
    p = plan_of({"destination": "/dev", "source": "/dev", "options": ["rbind", "ro"]},
                {"destination": "/dev", "type": "tmpfs"})  # fmt: skip
    assert p.deferred == [] and p.dev_bound  # the first /dev entry decides


def test_destinations_and_sources():
    """config.md: a bind source relative to the bundle; a relative destination
    is taken as relative to / (runc's reading); type "bind" means a bind."""
    p = plan_of({"destination": "rel/dir", "type": "bind", "source": "data"},
                {"destination": "/abs", "type": "none", "source": "/host", "options": ["bind"]},
                {"destination": "/t", "type": "tmpfs", "source": "relsrc"})  # fmt: skip
    assert p.ops() == [mp.Bind("/rel/dir", "/b/data", False, 0, "mounts[0]"),
                       mp.Bind("/abs", "/host", False, 1, "mounts[1]"),
                       mp.MountFs("/t", "relsrc", "tmpfs", 0, None, "mounts[2]")]  # fmt: skip


def test_idmap_is_kept_on_the_mount():
    m = mp.parse_mounts(parsed_config({"mounts": [{"destination": "/m", "source": "/s", "options": ["rbind", "ridmap"]}]}).mounts, "/b")[0]
    assert m.options.idmap and m.options.recursive_idmap and m.is_bind
    with pytest.raises(ConfigError, match=r"mounts\[0\]\.options"):
        mp.idmap_mappings(m, Linux())  # config.md: no mappings anywhere MUST be an error


def test_the_plan_is_pure_and_cheap():
    config = default_spec()
    before = repr(config)
    p = mp.plan(parse(config).mounts, "/nonexistent/bundle")  # no filesystem access: the bundle need not exist
    assert repr(config) == before and len(p.steps) == len(config["mounts"])


# --- the executor, through the recording kernel -------------------------------------


@pytest.fixture
def root(tmp_path: Path):
    r = tmp_path / "rootfs"
    for d in ("proc", "dev", "sys", "etc"):
        (r / d).mkdir(parents=True)
    fd = os.open(r, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    yield r, fd
    os.close(fd)


def run_plan(root: tuple[Path, int], config: dict, bundle: str = "/b", **kw) -> RecordingKernel:
    path, fd = root
    k = RecordingKernel(str(path), **kw)
    parsed = parsed_config(config)
    p = mp.plan(parsed.mounts, bundle)
    for ops in p.steps:
        rootfs.execute(fd, ops, {}, k)
    rootfs.create_devices(fd, parsed.linux.devices, False, p.dev_bound, k)
    rootfs.execute(fd, p.deferred, {}, k)
    return k


def test_default_spec_mount_sequence(root):
    config = default_spec()
    config["mounts"] = [m for m in config["mounts"] if m["type"] != "cgroup"]
    k = run_plan(root, config)
    assert k.mounts() == [
        ("mount", "proc", "/proc", "proc", 0, None),
        ("mount", "tmpfs", "/dev", "tmpfs", NOSUID | STRICTATIME, "mode=755,size=65536k"),
        ("mount", "devpts", "/dev/pts", "devpts", NOSUID | NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"),
        ("mount", "shm", "/dev/shm", "tmpfs", NOSUID | NOEXEC | NODEV, "mode=1777,size=65536k"),
        ("mount", "mqueue", "/dev/mqueue", "mqueue", NOSUID | NOEXEC | NODEV, None),
        ("mount", "sysfs", "/sys", "sysfs", NOSUID | NOEXEC | NODEV | RDONLY, None),
    ]
    nodes = [c[1] for c in k.calls if c[0] == "mknod"]
    assert nodes == ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"]
    assert ("symlink", "/proc/self/fd", "fd") in k.calls


def test_ro_dev_is_made_read_only_after_its_nodes(root):
    config = default_spec()
    config["mounts"] = [dict(m, options=m.get("options", []) + ["ro"]) if m["destination"] == "/dev" else m
                        for m in config["mounts"] if m["type"] != "cgroup"]  # fmt: skip
    k = run_plan(root, config)
    names = [c[0] + ":" + str(c[1] if c[0] != "mount" else c[2]) for c in k.calls]
    last_node = max(i for i, n in enumerate(names) if n.startswith(("mknod", "symlink")))
    remount = names.index("mount:/dev", names.index("mount:/dev") + 1)
    assert remount > last_node and names.index("mount:/dev/pts") < remount
    assert k.calls[remount] == ("mount", None, "/dev", None, REMOUNT | NOSUID | STRICTATIME | RDONLY, None)
    assert k.calls[names.index("mount:/dev")][4] & RDONLY == 0


def test_bind_remount_keeps_locked_flags(root, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    k = run_plan(root, {"mounts": [{"destination": "/data", "source": str(src), "options": ["bind", "ro"]}]},
                 locked=NODEV | NOSUID)  # fmt: skip
    assert k.mounts() == [("mount", str(src), "/data", None, BIND, None),
                          ("mount", None, "/data", None, REMOUNT | BIND | RDONLY | NODEV | NOSUID, None)]  # fmt: skip
    # "rw"/"dev" options ask to clear: then a locked flag is not re-added
    k = run_plan(root, {"mounts": [{"destination": "/data", "source": str(src), "options": ["bind", "ro", "dev"]}]},
                 locked=NODEV)  # fmt: skip
    assert k.mounts()[-1] == ("mount", None, "/data", None, REMOUNT | BIND | RDONLY, None)


def test_a_file_source_makes_a_file_destination(root, tmp_path):
    src = tmp_path / "hosts"
    src.write_text("x")
    run_plan(root, {"mounts": [{"destination": "/etc/newdir/hosts", "source": str(src), "options": ["bind"]}]})
    assert (root[0] / "etc/newdir/hosts").is_file() and (root[0] / "etc/newdir").is_dir()


def test_a_missing_bind_source_names_the_field(root):
    with pytest.raises(ConfigError, match=r"mounts\[0\]\.source: /nope/x: No such file"):
        run_plan(root, {"mounts": [{"destination": "/m", "source": "/nope/x", "options": ["bind"]}]})


def test_absolute_symlink_destination_is_resolved_inside_the_root(root):
    """mounts.bats "tmpfs mount with absolute symlink": /conf -> /real/conf."""
    path, _ = root
    (path / "real/conf").mkdir(parents=True)
    (path / "conf").symlink_to("/real/conf")
    k = run_plan(root, {"mounts": [{"destination": "/conf/stack", "type": "tmpfs", "source": "tmpfs", "options": ["ro"]}]})
    assert k.mounts()[0][2] == "/real/conf/stack"
    assert (path / "real/conf/stack").is_dir()


@pytest.mark.parametrize("link", ["/../../../..", "../../../../..", "/proc/self/root/.."])
def test_symlinks_and_dotdot_pointing_out_stay_inside(root, tmp_path, link):
    """config.md: the destination is inside the container; a symlink or `..`
    leading out of the rootfs resolves at the rootfs's /, never on the host."""
    path, _ = root
    (path / "escape").symlink_to(link)
    k = run_plan(root, {"mounts": [
        {"destination": "/escape/etc/target", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/../../../outside", "type": "tmpfs", "source": "tmpfs"},
    ]})  # fmt: skip
    targets = [c[2] for c in k.mounts()]
    assert all(t.startswith("/") and not t.startswith(str(tmp_path)) for t in targets), targets
    assert targets[1] == "/outside" and (path / "outside").is_dir()
    assert not (tmp_path / "outside").exists() and not (tmp_path.parent / "outside").exists()


def test_a_dangling_symlink_gets_its_target_made_inside(root):
    path, _ = root
    (path / "data").symlink_to("/var/lib/data")
    k = run_plan(root, {"mounts": [{"destination": "/data", "type": "tmpfs", "source": "tmpfs"}]})
    assert k.mounts()[0][2] == "/var/lib/data" and (path / "var/lib/data").is_dir()


@pytest.mark.parametrize("dest,fstype", [("/proc", "proc"), ("/sys", "sysfs")])
@pytest.mark.parametrize("kind", ["symlink", "file"])
def test_proc_or_sys_on_a_non_directory_is_refused(root, dest, fstype, kind):
    """runc's mask.bats "prohibit symlink /proc|/sys": must be mounted on ordinary directory."""
    path, _ = root
    target = path / dest.lstrip("/")
    target.rmdir()
    if kind == "symlink":
        target.symlink_to("/etc")
    else:
        target.write_text("")
    k = RecordingKernel(str(path))
    with pytest.raises(ConfigError, match="must be mounted on ordinary directory"):
        rootfs.execute(root[1], plan_of({"destination": dest, "type": fstype, "source": fstype}).ops(), {}, k)
    assert k.mounts() == []


def test_devices_anywhere_in_the_rootfs(root):
    """runc creates linux.devices outside /dev too (e.g. /mydev/null)."""
    config = {"mounts": [], "linux": {"devices": [
        {"path": "/mydev/sub/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 7, "gid": 8},
        {"path": "/dev/../etc/fifo", "type": "p"},
    ]}}  # fmt: skip
    k = run_plan(root, config)
    assert ("mknod", "/mydev/sub/null", 0o20600, os.makedev(1, 3)) in k.calls
    assert ("chown", "/mydev/sub/null", 7, 8) in k.calls
    assert ("mknod", "/etc/fifo", 0o10666, 0) in k.calls
    assert (root[0] / "mydev/sub").is_dir()
    with pytest.raises(ConfigError, match=r"linux.devices\[0\].path"):
        run_plan(root, {"mounts": [], "linux": {"devices": [{"path": "/", "type": "c", "major": 1, "minor": 3}]}})


def test_parent_opened_trees_are_moved_and_made_slaves(root, tmp_path):
    src = tmp_path / "inaccessible" / "dir"
    src.mkdir(parents=True)
    config = {"mounts": [{"destination": "/m", "source": str(src), "options": ["rbind", "ro"]},
                         {"destination": "/t", "type": "tmpfs"}]}  # fmt: skip
    p = mp.plan(parsed_config(config).mounts, "/b")
    k = RecordingKernel(str(root[0]))
    trees = rootfs.prepare_mount_sources(p, Linux(), userns=True, k=k)
    try:
        assert list(trees) == [0] and k.calls == [("open_tree", str(src), 1 | 0o2000000 | 0x8000)]
        for ops in p.steps:
            rootfs.execute(root[1], ops, {"trees": trees}, k)
    finally:
        for fd in trees.values():
            os.close(fd)
    assert k.mounts() == [("move_mount", "/m", 0x44), ("mount", None, "/m", None, SLAVE | REC, None),
                          ("mount", None, "/m", None, REMOUNT | BIND | RDONLY, None),
                          ("mount", "tmpfs", "/t", "tmpfs", 0, None)]  # fmt: skip
    # without a user namespace nothing is opened in the parent
    assert rootfs.prepare_mount_sources(p, Linux(), userns=False, k=RecordingKernel(str(root[0]))) == {}


def test_no_pivot_finds_the_hosts_proc_and_sysfs():
    info = "\n".join([
        "22 1 0:21 / /proc rw,nosuid - proc proc rw",
        "23 1 0:22 / /sys rw,nosuid - sysfs sysfs rw",
        "24 23 0:6 / /sys/kernel/security rw - securityfs securityfs rw",
        "25 22 0:23 / /proc/sys/fs/binfmt_misc rw - autofs systemd-1 rw",
        "26 1 0:21 / /run/with\\040space/proc rw - proc proc rw",
        "27 1 0:21 / /b/rootfs/proc rw - proc proc rw",
        "28 23 0:24 / /sys/fs/cgroup ro - tmpfs tmpfs ro",
        "29 1 0:21 / /b/rootfs rw - sysfs sysfs rw",
    ])  # fmt: skip
    assert rootfs.host_proc_sys_mounts(info, "/b/rootfs") == ["/run/with space/proc", "/proc", "/sys"]


def test_no_pivot_detaches_them_before_the_move(root, monkeypatch):
    monkeypatch.chdir("/")
    k = RecordingKernel(str(root[0]))
    rootfs.move_root(str(root[0]), k)
    names = [c[0] for c in k.calls]
    assert names[-2:] == ["mount", "chroot"] and k.calls[-2] == ("mount", str(root[0]), "/", None, MOVE, None)
    detached = [c[1] for c in k.calls if c[0] == "umount2"]
    assert "/proc" in detached and "/sys" in detached
    # each is made a slave first, so the detach does not reach the host
    for point in detached:
        assert k.calls.index(("mount", None, point, None, SLAVE | REC, None)) < k.calls.index(("umount2", point, 2))


@pytest.mark.parametrize("errno_code", [1, 22])
def test_no_pivot_covers_what_it_may_not_detach(root, monkeypatch, errno_code):
    monkeypatch.chdir("/")
    k = RecordingKernel(str(root[0]))
    k.fail["umount2"] = errno_code  # EPERM: a rootless runtime; EINVAL: locked by a user namespace
    rootfs.move_root(str(root[0]), k)
    assert ("mount", "tmpfs", "/proc", "tmpfs", 0, None) in k.calls


SEAM = ["mount", "umount2", "pivot_root", "chroot", "openat2", "open_tree", "move_mount", "mount_setattr",
        "mount_flags", "mknod", "chown", "symlink", "setns", "unshare"]  # fmt: skip


@pytest.mark.parametrize("name", SEAM)
def test_the_fake_and_the_real_kernel_share_the_seam(name):
    """syscalls.Kernel (checked statically by mypy against the module) and the fake agree."""
    import inspect

    from ocipy.linux import syscalls

    real = list(inspect.signature(getattr(syscalls, name)).parameters)
    fake = list(inspect.signature(getattr(RecordingKernel, name)).parameters)[1:]
    assert real == fake
    source = inspect.getsource(syscalls)
    assert f"        def {name}(self" in source  # listed in the Kernel protocol


def test_the_parent_imports_what_the_cgroup_mount_needs():
    """i12 class 5: nothing may be imported after the namespaces are entered."""
    import subprocess
    import sys

    code = ("import sys; from ocipy.runtime import rootfs; from ocipy.spec.runtime import default_spec; "
            "from ocipy.spec.config import parse; "
            "rootfs.mount_plan(parse(default_spec()).mounts, '/b'); print('ocipy.linux.cgroups.mount' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


def test_the_shared_mount_holding_the_rootfs():
    info = "\n".join([
        "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw",
        "45 27 0:48 / /tmp/shared rw,relatime shared:7 - tmpfs t rw",
        "46 27 0:49 / /tmp/sharedx rw,relatime - tmpfs t rw",
        "47 45 0:50 / /tmp/shared/priv rw,relatime - tmpfs t rw",
        "48 45 0:50 / /tmp/shared/over rw,relatime - tmpfs t rw",
        "49 48 0:51 / /tmp/shared/over rw,relatime shared:9 master:3 - tmpfs t rw",
    ])  # fmt: skip
    assert rootfs.shared_mount_holding(info, "/tmp/shared/b/rootfs") == "/tmp/shared"
    assert rootfs.shared_mount_holding(info, "/tmp/sharedx/rootfs") is None
    assert rootfs.shared_mount_holding(info, "/tmp/shared/priv/rootfs") is None
    assert rootfs.shared_mount_holding(info, "/var/b/rootfs") == "/"
    assert rootfs.shared_mount_holding(info, "/tmp/shared/over/r") == "/tmp/shared/over"  # the top of two
