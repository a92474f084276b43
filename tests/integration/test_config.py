"""What the container gets from config.json (config.md, config-linux.md), checked from inside."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from support.helpers import IS_ROOT, unique_id, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not IS_ROOT, reason="needs root: namespaces and mounts")]


def run_sh(runtime, make_bundle, script: str, edit=None, **kw: Any) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    bundle = make_bundle(["sh", "-c", script], edit=edit)
    return runtime("run", "-b", str(bundle), unique_id(), **kw)


@pytest.mark.parametrize("cgroupns", [True, False])
def test_cgroup_namespace_is_rooted_at_the_containers_cgroups(runtime, make_bundle, cgroupns):
    """config-linux.md: a new cgroup namespace shows the container's cgroup as its
    root (every hierarchy, v1 included, reads "/"), as runc's does; without one,
    /proc/self/cgroup shows the container's own paths from the host's root."""
    cid = unique_id()

    def edit(c):  # type: ignore[no-untyped-def]
        c["linux"]["namespaces"] = [ns for ns in c["linux"]["namespaces"] if ns["type"] != "cgroup"]
        if cgroupns:
            c["linux"]["namespaces"].append({"type": "cgroup"})

    bundle = make_bundle(["cat", "/proc/self/cgroup"], edit=edit)
    lines = runtime("run", "-b", str(bundle), cid).stdout.split()
    assert len(lines) >= 1
    paths = {line.split(":", 2)[2] for line in lines}
    if cgroupns:
        assert paths == {"/"}, lines
    else:
        assert all(p.endswith(f"/{cid}") or p == f"/{cid}" for p in paths if p != "/"), lines
        assert any(p != "/" for p in paths), lines


def test_namespaces_hostname_and_pid_one(runtime, make_bundle):
    out = run_sh(runtime, make_bundle, "hostname; echo $$; ls /sys/class/net; for n in mnt ipc uts net; do readlink /proc/self/ns/$n; done",
                 edit=lambda c: c.update(hostname="box", domainname="example.org")).stdout.split()  # fmt: skip
    assert out[0] == "box"
    assert out[1] == "1"  # first process of a new pid namespace
    assert out[2] == "lo"  # a new network namespace has only loopback
    for link, ns in zip(out[3:], ("mnt", "ipc", "uts", "net"), strict=True):
        assert link != os.readlink(f"/proc/self/ns/{ns}")


def test_domainname(runtime, make_bundle):
    out = run_sh(runtime, make_bundle, "cat /proc/sys/kernel/domainname", edit=lambda c: c.update(domainname="example.org"))
    assert out.stdout.strip() == "example.org"


def test_hostname_without_uts_namespace_is_an_error(runtime, make_bundle):
    def edit(c):  # type: ignore[no-untyped-def]
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "uts"]

    proc = runtime("create", "-b", str(make_bundle(["true"], edit=edit)), unique_id(), check=False)
    assert proc.returncode != 0 and "hostname" in proc.stderr


def test_join_namespace_by_path_and_wrong_type(runtime, make_bundle):
    holder = subprocess.Popen(["unshare", "--net", "--uts", "sleep", "60"])
    try:
        net = f"/proc/{holder.pid}/ns/net"
        import time

        time.sleep(0.2)

        def join(c):  # type: ignore[no-untyped-def]
            for ns in c["linux"]["namespaces"]:
                if ns["type"] == "network":
                    ns["path"] = net

        out = run_sh(runtime, make_bundle, "readlink /proc/self/ns/net", edit=join).stdout.strip()
        assert out == os.readlink(net)

        def wrong(c):  # type: ignore[no-untyped-def]
            for ns in c["linux"]["namespaces"]:
                if ns["type"] == "ipc":
                    ns["path"] = net  # a network namespace where ipc is wanted

        cid = unique_id()
        proc = runtime("create", "-b", str(make_bundle(["true"], edit=wrong)), cid, check=False)
        assert proc.returncode != 0 and "not ipc" in proc.stderr
        assert not (runtime.root / cid).exists()
    finally:
        holder.kill()
        holder.wait()


def test_user_namespace_with_mappings(runtime, make_bundle):
    def userns(c):  # type: ignore[no-untyped-def]
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"].pop("resources", None)

    bundle = make_bundle(["sh", "-c", "id -u; cat /proc/self/uid_map; touch /tmp/owned"], edit=userns)
    subprocess.run(["chown", "-R", "100000:100000", str(bundle / "rootfs")], check=True)
    # As with runc, the mapped root must be able to reach the bundle.
    for parent in bundle.parents:
        if parent == Path("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o005)
    out = runtime("run", "-b", str(bundle), unique_id()).stdout.split()
    assert out[0] == "0"
    assert out[1:4] == ["0", "100000", "65536"]
    assert os.stat(bundle / "rootfs/tmp/owned").st_uid == 100000


def test_process_user_env_cwd_umask_and_groups(runtime, make_bundle):
    def edit(c):  # type: ignore[no-untyped-def]
        c["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [100, 5], "umask": 0o077}
        c["process"]["env"].append("GREETING=hi there")
        c["process"]["cwd"] = "/home/app"

    out = run_sh(runtime, make_bundle, 'id -u; id -g; id -G; pwd; echo "$GREETING"; umask; echo $HOME', edit=edit).stdout.splitlines()
    assert out[0:2] == ["1000", "1000"]
    assert set(out[2].split()) == {"1000", "100", "5"}
    assert out[3] == "/home/app"
    assert out[4] == "hi there"
    assert out[5] == "0077"
    assert out[6] == "/home/app"  # HOME from /etc/passwd when env has none


def _cap_mask(names: list[str]) -> int:
    from ocipy.spec.runtime import CAPABILITIES

    return sum(1 << CAPABILITIES[n] for n in names)


def test_capabilities_all_sets(runtime, make_bundle):
    caps = ["CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL"]

    def edit(c):  # type: ignore[no-untyped-def]
        c["process"]["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps,
                                        "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]}  # fmt: skip

    out = run_sh(runtime, make_bundle, "grep ^Cap /proc/self/status", edit=edit).stdout
    fields = {line.split(":")[0]: int(line.split()[1], 16) for line in out.splitlines()}
    assert fields["CapBnd"] == _cap_mask(caps)
    assert fields["CapInh"] == _cap_mask(["CAP_KILL"])
    assert fields["CapAmb"] == _cap_mask(["CAP_KILL"])
    # after execve as root: permitted/effective are recomputed from bounding (root's file caps)
    assert fields["CapPrm"] == _cap_mask(caps) and fields["CapEff"] == _cap_mask(caps)


def test_capabilities_non_root_keep_only_ambient(runtime, make_bundle):
    def edit(c):  # type: ignore[no-untyped-def]
        caps = ["CAP_NET_BIND_SERVICE"]
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
        c["process"]["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps,
                                        "inheritable": caps, "ambient": caps}  # fmt: skip

    out = run_sh(runtime, make_bundle, "grep ^CapEff /proc/self/status", edit=edit).stdout
    assert int(out.split()[1], 16) == _cap_mask(["CAP_NET_BIND_SERVICE"])


def test_rlimits_and_no_new_privileges_and_oom_score(runtime, make_bundle):
    def edit(c):  # type: ignore[no-untyped-def]
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
                                   {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]  # fmt: skip
        c["process"]["noNewPrivileges"] = True
        c["process"]["oomScoreAdj"] = 123

    out = run_sh(runtime, make_bundle, "ulimit -Sn; ulimit -Hn; grep NoNewPrivs /proc/self/status; cat /proc/self/oom_score_adj", edit=edit).stdout.split()
    # config.md: rlim_cur and rlim_max MUST match the configured values
    assert out[0:2] == ["100", "200"]
    assert out[2:4] == ["NoNewPrivs:", "1"]
    assert out[4] == "123"


def test_rlimit_above_hard_limit_is_a_clear_error(runtime, make_bundle):
    def edit(c):  # type: ignore[no-untyped-def]
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 10**9, "hard": 10**9}]

    cid = unique_id()
    proc = runtime("create", "-b", str(make_bundle(["true"], edit=edit)), cid, check=False)
    assert proc.returncode != 0 and "process.rlimits[0]" in proc.stderr
    assert not (runtime.root / cid).exists()


def test_mounts_in_order_with_options(runtime, make_bundle, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "file").write_text("from host\n")

    def edit(c):  # type: ignore[no-untyped-def]
        c["mounts"] += [
            {"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "size=1m", "mode=700"]},
            {"destination": "/data/ro", "type": "bind", "source": str(shared), "options": ["rbind", "ro", "nosuid"]},
            {"destination": "/data/rw", "type": "none", "source": str(shared), "options": ["bind", "rw"]},
            {"destination": "/deep/new/dir", "type": "tmpfs", "source": "tmpfs"},
        ]

    out = run_sh(runtime, make_bundle, "cat /data/ro/file; touch /data/ro/x 2>&1 | grep -c Read-only; echo ok > /data/rw/written; "
                 "grep -E ' /data(/ro)? ' /proc/self/mountinfo; stat -c %a /data; test -d /deep/new/dir && echo deep", edit=edit).stdout  # fmt: skip
    lines = out.splitlines()
    assert lines[0] == "from host"
    assert lines[1] == "1"
    assert (shared / "written").read_text() == "ok\n"
    data = next(line for line in lines if " /data " in line)
    ro = next(line for line in lines if " /data/ro " in line)
    assert "nosuid" in data and "nodev" in data
    assert " ro," in ro and "nosuid" in ro
    assert "700" in lines and "deep" in lines
    assert not (shared / "x").exists()


def test_bind_mount_relative_source_is_relative_to_bundle(runtime, make_bundle):
    def edit(c):  # type: ignore[no-untyped-def]
        c["mounts"].append({"destination": "/b", "type": "bind", "source": "extra", "options": ["bind"]})

    bundle = make_bundle(["cat", "/b/f"], edit=edit)
    (bundle / "extra").mkdir()
    (bundle / "extra/f").write_text("relative")
    assert runtime("run", "-b", str(bundle), unique_id()).stdout == "relative"


def test_mount_destination_symlink_stays_inside_rootfs(runtime, make_bundle, tmp_path):
    # A symlink in the rootfs pointing at a host path must resolve inside the rootfs.
    outside = tmp_path / "outside"
    outside.mkdir()
    bundle = make_bundle(["sh", "-c", "grep -c ' /escape ' /proc/self/mountinfo; ls /etc/passwd"],
                         edit=lambda c: c["mounts"].append({"destination": "/escape/sub", "type": "tmpfs", "source": "tmpfs"}))  # fmt: skip
    os.symlink(str(outside), bundle / "rootfs/escape")
    runtime("run", "-b", str(bundle), unique_id())
    assert list(outside.iterdir()) == []  # nothing created on the host side
    assert (bundle / "rootfs" / str(outside).lstrip("/") / "sub").is_dir()


def test_devices_default_and_extra(runtime, make_bundle):
    def edit(c):  # type: ignore[no-untyped-def]
        c["linux"]["devices"] = [{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o660, "uid": 1000, "gid": 0}]
        c["linux"]["resources"]["devices"].append({"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"})

    out = run_sh(runtime, make_bundle, "stat -c '%n %t:%T %a %u' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty /dev/mynull; "
                 "for l in ptmx fd stdin stdout stderr; do readlink /dev/$l; done; echo x > /dev/mynull && echo wrote", edit=edit).stdout.splitlines()  # fmt: skip
    assert out[0] == "/dev/null 1:3 666 0"
    assert out[1].startswith("/dev/zero 1:5") and out[5].startswith("/dev/tty 5:0")
    assert out[6] == "/dev/mynull 1:3 660 1000"
    assert out[7:12] == ["pts/ptmx", "/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1", "/proc/self/fd/2"]
    assert out[12] == "wrote"


def test_masked_and_readonly_paths_and_readonly_root(runtime, make_bundle):
    def edit(c):  # type: ignore[no-untyped-def]
        c["root"]["readonly"] = True

    out = run_sh(runtime, make_bundle, "cat /proc/kcore | wc -c; ls /sys/firmware | wc -l; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || echo ro-sys; "
                 "touch /newfile 2>/dev/null || echo ro-root; echo ok > /dev/shm/w && echo shm-ok", edit=edit).stdout.split()  # fmt: skip
    assert out == ["0", "0", "ro-sys", "ro-root", "shm-ok"]


def test_sysctl(runtime, make_bundle):
    out = run_sh(runtime, make_bundle, "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni",
                 edit=lambda c: c["linux"].update(sysctl={"net.ipv4.ip_forward": "1", "kernel.shmmni": "1000"})).stdout.split()  # fmt: skip
    assert out == ["1", "1000"]


def test_bad_sysctl_names_the_key(runtime, make_bundle):
    cid = unique_id()
    proc = runtime("create", "-b", str(make_bundle(["true"], edit=lambda c: c["linux"].update(sysctl={"net.nope.nothing": "1"}))), cid, check=False)
    assert proc.returncode != 0 and "linux.sysctl.net.nope.nothing" in proc.stderr
    assert not (runtime.root / cid).exists()


def test_preserve_fds_and_no_leaked_fds(runtime, make_bundle, tmp_path):
    extra = tmp_path / "extra.txt"
    extra.write_text("passed through fd 3")
    bundle = make_bundle(["sh", "-c", "cat <&3; ls /proc/self/fd | sort -n | tr '\\n' ' '"])
    with open(extra) as f3, open(extra) as f4:
        fd3, fd4 = f3.fileno(), f4.fileno()

        def child_fds() -> None:  # fd 3 is the one to preserve, fd 4 must not leak
            os.dup2(fd3, 100)
            os.dup2(fd4, 101)
            os.dup2(100, 3)
            os.dup2(101, 4)
            os.closerange(5, 4096)

        proc = subprocess.run(runtime.cmd("run", "--preserve-fds", "1", "-b", str(bundle), unique_id()),
                              capture_output=True, text=True, preexec_fn=child_fds, close_fds=False, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("passed through fd 3")
    # 0-2, the preserved 3, and ls's own directory fd; nothing else
    assert proc.stdout[len("passed through fd 3"):].split() == ["0", "1", "2", "3", "4"] or \
        proc.stdout[len("passed through fd 3"):].split() == ["0", "1", "2", "3"]


def test_only_stdio_reaches_the_container(runtime, make_bundle, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    bundle = make_bundle(["sh", "-c", "for f in /proc/self/fd/*; do readlink $f; done; true"])
    with open(secret) as f:
        os.set_inheritable(f.fileno(), True)
        proc = subprocess.run(runtime.cmd("run", "-b", str(bundle), unique_id()), capture_output=True, text=True,
                              close_fds=False, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert str(secret) not in proc.stdout


def _hook(tmp_path: Path, name: str, exit_code: int = 0) -> dict[str, Any]:
    out = tmp_path / f"{name}.json"
    return {"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}; exit {exit_code}"], "env": ["X=1"], "timeout": 10}


def test_hooks_run_at_their_points_with_state(runtime, make_bundle, tmp_path):
    # config.md: each hook gets the container state on stdin
    hooks = {kind: [_hook(tmp_path, kind)] for kind in ("prestart", "createRuntime", "poststart", "poststop")}
    hooks["createContainer"] = [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {tmp_path}/createContainer.json"]}]
    hooks["startContainer"] = [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /startContainer.json"]}]
    bundle = make_bundle(["sh", "-c", "sleep 0.2"], edit=lambda c: c.update(hooks=hooks))
    cid = unique_id()
    runtime("create", "-b", str(bundle), cid)
    created = runtime.state(cid)
    for kind in ("prestart", "createRuntime", "createContainer"):
        state = json.loads((tmp_path / f"{kind}.json").read_text())
        assert state["id"] == cid and state["bundle"] == str(bundle) and state["status"] == "creating"
    assert json.loads((tmp_path / "prestart.json").read_text())["pid"] == created["pid"]
    assert json.loads((tmp_path / "createContainer.json").read_text())["pid"] == 1  # as seen in the container
    assert not (tmp_path / "poststart.json").exists()
    runtime("start", cid)
    assert json.loads((tmp_path / "poststart.json").read_text())["id"] == cid
    assert json.loads((bundle / "rootfs/startContainer.json").read_text())["id"] == cid
    import time

    time.sleep(0.5)
    runtime("delete", cid)
    assert json.loads((tmp_path / "poststop.json").read_text())["status"] == "stopped"


def test_failing_prestart_hook_fails_create_and_leaves_nothing(runtime, make_bundle, tmp_path):
    hooks = {"prestart": [_hook(tmp_path, "prestart", exit_code=3)], "poststart": [_hook(tmp_path, "poststart")]}
    cid = unique_id()
    proc = runtime("create", "-b", str(make_bundle(["true"], edit=lambda c: c.update(hooks=hooks))), cid, check=False)
    assert proc.returncode != 0 and "prestart hook #0" in proc.stderr and "exit status 3" in proc.stderr
    assert not (runtime.root / cid).exists()
    assert not any(os.path.isdir(f"/sys/fs/cgroup/{c}/{cid}") for c in os.listdir("/sys/fs/cgroup"))


def test_hook_timeout(runtime, make_bundle):
    hooks = {"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]}
    cid = unique_id()
    proc = runtime("create", "-b", str(make_bundle(["true"], edit=lambda c: c.update(hooks=hooks))), cid, check=False)
    assert proc.returncode != 0 and "timed out" in proc.stderr
    assert not (runtime.root / cid).exists()


def test_failing_poststop_hook_only_warns(runtime, make_bundle, tmp_path):
    hooks = {"poststop": [_hook(tmp_path, "poststop", exit_code=1)]}
    cid = unique_id()
    runtime("run", "--keep", "-b", str(make_bundle(["true"], edit=lambda c: c.update(hooks=hooks))), cid)
    proc = runtime("delete", cid)
    assert proc.returncode == 0 and "poststop hook" in proc.stderr
    assert not (runtime.root / cid).exists()


class ConsoleServer:
    """Receives the pty master over --console-socket, as containerd and conmon do."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.master: int | None = None
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        conn, _ = self.sock.accept()
        _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        self.master = fds[0]
        conn.close()

    def read_all(self) -> bytes:
        self.thread.join(10)
        assert self.master is not None
        data = b""
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()
        if self.master is not None:
            os.close(self.master)


def test_terminal_through_console_socket(runtime, make_bundle, tmp_path):
    server = ConsoleServer(tmp_path / "console.sock")
    try:
        def edit(c):  # type: ignore[no-untyped-def]
            c["process"]["terminal"] = True
            c["process"]["consoleSize"] = {"height": 30, "width": 100}

        bundle = make_bundle(["sh", "-c", "tty; stty size; test -t 0 && echo stdin-is-tty"], edit=edit)
        cid = unique_id()
        runtime("create", "--console-socket", server.path, "-b", str(bundle), cid)
        runtime("start", cid)
        out = server.read_all().decode().replace("\r", "").split("\n")
        assert out[0].startswith("/dev/pts/")
        assert out[1] == "30 100"
        assert out[2] == "stdin-is-tty"
    finally:
        server.close()


def test_terminal_without_console_socket_is_refused_on_create(runtime, make_bundle):
    cid = unique_id()
    proc = runtime("create", "-b", str(make_bundle(["true"], edit=lambda c: c["process"].update(terminal=True))), cid, check=False)
    assert proc.returncode != 0 and "console socket" in proc.stderr
    assert not (runtime.root / cid).exists()


def test_no_pivot(runtime, make_bundle):
    out = runtime("run", "--no-pivot", "-b", str(make_bundle(["cat", "/etc/passwd"])), unique_id()).stdout
    assert out.startswith("root:x:0:0")


def test_python_api_lifecycle(runtime, make_bundle):
    from ocipy import api

    root = str(runtime.root)
    bundle = make_bundle(["sleep", "30"])
    cid = unique_id()
    container = api.create(cid, str(bundle), root=root)
    assert container.status == "created" and container.id == cid
    api.start(cid, root=root)
    assert api.state(cid, root=root)["status"] == "running"
    assert [c.id for c in api.list_containers(root=root)] == [cid]
    api.kill(cid, "KILL", root=root)
    api.delete(cid, root=root, force=True)
    assert api.list_containers(root=root) == []
    from ocipy.errors import ContainerNotFound

    with pytest.raises(ContainerNotFound):
        api.state(cid, root=root)


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] == "Z"


def test_python_api_init_is_the_callers_child_and_delete_reaps_it(runtime, make_bundle):
    """Without user/time namespaces the init is cloned straight into its
    namespaces (no bootstrap), so it is the caller's child, as runc's init is
    runc's (CLONE_PARENT); api.delete collects it: no zombie is left."""
    from ocipy import api

    root = str(runtime.root)
    cid = unique_id()
    pid = api.create(cid, str(make_bundle(["true"])), root=root).pid
    assert _ppid(pid) == os.getpid()
    nspid = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("NSpid:"))
    assert nspid.split()[1:] == [str(pid), "1"]  # pid 1 of its own pid namespace
    api.start(cid, root=root)
    assert wait_for(lambda: _zombie(pid)), "the init did not exit"
    assert api.state(cid, root=root)["status"] == "stopped"
    api.delete(cid, root=root)
    assert not _zombie(pid)


def test_python_api_from_a_threaded_caller_takes_the_bootstrap_path(runtime, make_bundle, monkeypatch):
    """A raw clone is only safe with one thread: a caller with threads gets os.fork's
    bookkeeping and a bootstrap; the API's caller is the subreaper, so the init
    (orphaned when the bootstrap exits) is still the caller's child to wait for."""
    import threading

    from ocipy import api
    from ocipy.runtime import init

    direct: list[bool] = []
    real = init.can_clone_init

    def spy(ctx):  # type: ignore[no-untyped-def]
        direct.append(real(ctx))
        return direct[-1]

    monkeypatch.setattr(init, "can_clone_init", spy)

    root = str(runtime.root)
    cid = unique_id()
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        container = api.create(cid, str(make_bundle(["sleep", "30"])), root=root)
        assert direct == [False]
        assert _ppid(container.pid) == os.getpid()
        api.start(cid, root=root)
        assert api.state(cid, root=root)["status"] == "running"
        container.kill("KILL")
        assert container.wait(timeout=10) == 128 + 9
    finally:
        stop.set()
        worker.join()
        api.delete(cid, root=root, force=True)
    assert not (runtime.root / cid).exists()


def test_scheduler_io_priority_and_personality(runtime, make_bundle):
    def edit(c):  # type: ignore[no-untyped-def]
        c["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 5}
        c["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 7}
        c["linux"]["personality"] = {"domain": "LINUX32"}

    out = run_sh(runtime, make_bundle, "uname -m; cut -d' ' -f19,41 /proc/self/stat", edit=edit).stdout.split()
    assert out[0] in ("i686", "armv8l", "armv7l")  # LINUX32: a 32-bit machine name
    assert out[1] == "5"  # nice
    assert out[2] == "3"  # policy SCHED_BATCH


def test_bad_scheduler_policy_names_the_field(runtime, make_bundle):
    cid = unique_id()
    proc = runtime("create", "-b", str(make_bundle(["true"], edit=lambda c: c["process"].update(scheduler={"policy": "SCHED_FAST"}))), cid, check=False)
    assert proc.returncode != 0 and "process.scheduler.policy" in proc.stderr
    assert not (runtime.root / cid).exists()


def test_session_keyring(runtime, make_bundle):
    # runc joins a new session keyring named after the container unless --no-new-keyring
    with_ring, without = unique_id(), unique_id()
    runtime("run", "-d", "-b", str(make_bundle(["sleep", "30"])), with_ring)
    runtime("run", "-d", "--no-new-keyring", "-b", str(make_bundle(["sleep", "30"])), without)
    keys = Path("/proc/keys").read_text()
    assert f"_ses.{with_ring}" in keys
    assert f"_ses.{without}" not in keys


def test_foreground_run_with_terminal_proxies_the_pty(runtime, make_bundle):
    # No --console-socket: like runc, `run` in the foreground copies between its tty and the pty.
    import pty
    import select
    import time

    bundle = make_bundle(["sh"], edit=lambda c: c["process"].update(terminal=True))
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(runtime.binary, [runtime.binary, "--root", str(runtime.root), "run", "-b", str(bundle), unique_id()])
    out = b""
    os.write(fd, b"tty; echo hi-$((1+2)); exit 5\n")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    for _ in range(100):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
    os.close(fd)
    text = out.decode(errors="replace")
    assert "/dev/pts/0" in text and "hi-3" in text
    assert os.waitstatus_to_exitcode(status) == 5


def test_lsm_labels_without_the_lsm_are_an_error(runtime, make_bundle):
    # A label that cannot be honoured must not be dropped silently.
    if os.path.exists("/sys/module/apparmor/parameters/enabled"):
        pytest.skip("AppArmor is enabled on this kernel: the profile would apply")
    for key, value in (("apparmorProfile", "ocipy-test"), ("selinuxLabel", "system_u:system_r:container_t:s0")):
        cid = unique_id()
        proc = runtime("create", "-b", str(make_bundle(["true"], edit=lambda c, k=key, v=value: c["process"].update({k: v}))), cid, check=False)
        assert proc.returncode != 0 and f"process.{key}" in proc.stderr
        assert not (runtime.root / cid).exists()


def test_masked_paths_without_mount_namespace_is_an_error(runtime, make_bundle):
    def edit(c):  # type: ignore[no-untyped-def]
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "mount"]

    cid = unique_id()
    proc = runtime("create", "-b", str(make_bundle(["true"], edit=edit)), cid, check=False)
    assert proc.returncode != 0 and "linux.maskedPaths" in proc.stderr


def test_idmapped_bind_mount(runtime, make_bundle, tmp_path):
    # config.md `idmap`: the mount gets the container's user namespace mapping.
    shared = tmp_path / "idmapped"
    shared.mkdir()
    (shared / "owned-by-host-root").write_text("x")
    shared.chmod(0o755)

    def edit(c):  # type: ignore[no-untyped-def]
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"].pop("resources", None)
        c["mounts"] += [
            {"destination": "/plain", "type": "bind", "source": str(shared), "options": ["bind"]},
            {"destination": "/mapped", "type": "bind", "source": str(shared), "options": ["bind", "idmap"]},
        ]

    bundle = make_bundle(["sh", "-c", "stat -c %u /plain/owned-by-host-root /mapped/owned-by-host-root"], edit=edit)
    subprocess.run(["chown", "-R", "100000:100000", str(bundle / "rootfs")], check=True)
    for parent in bundle.parents:
        if parent == Path("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o005)
    out = runtime("run", "-b", str(bundle), unique_id()).stdout.split()
    assert out == ["65534", "0"]  # unmapped without idmap; the container's root with it


@pytest.mark.parametrize(("propagation", "expected"), [("rprivate", ""), ("rslave", ""), ("shared", "shared:"),
                                                       ("rshared", "shared:"), ("unbindable", "unbindable"),
                                                       ("runbindable", "unbindable")])  # fmt: skip
def test_rootfs_propagation(runtime, make_bundle, propagation, expected):
    # config-linux.md rootfsPropagation; shared and unbindable are applied after pivot_root
    # (pivot_root refuses a shared root), so the container still starts.
    script = "grep -E '^[0-9]+ [0-9]+ [0-9:]+ [^ ]+ / ' /proc/self/mountinfo | cut -d' ' -f7"
    out = run_sh(runtime, make_bundle, script, edit=lambda c: c["linux"].update(rootfsPropagation=propagation)).stdout
    if expected:
        assert out.startswith(expected), out
    else:
        assert not out.startswith(("shared:", "unbindable")), out


def test_no_capabilities_object_leaves_root_its_capabilities(runtime, make_bundle):
    # As runc: without process.capabilities nothing is dropped; with an empty object everything is.
    full = run_sh(runtime, make_bundle, "grep ^CapEff /proc/self/status", edit=lambda c: c["process"].pop("capabilities")).stdout
    empty = run_sh(runtime, make_bundle, "grep ^CapEff /proc/self/status", edit=lambda c: c["process"].update(capabilities={})).stdout
    ours = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("CapEff"))
    assert int(full.split()[1], 16) == int(ours.split()[1], 16)  # everything the runtime had
    assert int(empty.split()[1], 16) == 0


def test_time_namespace_offsets(runtime, make_bundle):
    def edit(c):  # type: ignore[no-untyped-def]
        c["linux"]["namespaces"].append({"type": "time"})
        c["linux"]["timeOffsets"] = {"boottime": {"secs": 86400, "nanosecs": 0}}

    host_uptime = float(Path("/proc/uptime").read_text().split()[0])
    out = run_sh(runtime, make_bundle, "cut -d' ' -f1 /proc/uptime; readlink /proc/self/ns/time", edit=edit).stdout.split()
    assert float(out[0]) - host_uptime >= 86400 - 5
    assert out[1] != os.readlink("/proc/self/ns/time")


def test_net_devices_move_with_addresses(runtime, make_bundle):
    # config-linux.md netDevices: moved in, renamed, permanent global addresses kept, set up.
    suffix = unique_id("")[-6:]
    dev, peer = f"oc{suffix}a", f"oc{suffix}b"
    subprocess.run(["ip", "link", "add", dev, "type", "veth", "peer", "name", peer], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.253.7.1/24", "dev", dev], check=True)
        bundle = make_bundle(["sh", "-c", "ip -o addr show dev ctr0; ip -o link show dev ctr0"],
                             edit=lambda c: c["linux"].update(netDevices={dev: {"name": "ctr0"}}))  # fmt: skip
        out = runtime("run", "-b", str(bundle), unique_id()).stdout
        assert "10.253.7.1/24" in out
        flags = out.strip().splitlines()[-1].split("<", 1)[1].split(">", 1)[0].split(",")
        assert "UP" in flags
        assert not Path(f"/sys/class/net/{dev}").exists()  # it was moved, not copied
    finally:
        subprocess.run(["ip", "link", "del", peer], capture_output=True)


def test_net_device_that_does_not_exist_is_an_error(runtime, make_bundle):
    cid = unique_id()
    bundle = make_bundle(["true"], edit=lambda c: c["linux"].update(netDevices={"nosuchdev0": {}}))
    proc = runtime("create", "-b", str(bundle), cid, check=False)
    assert proc.returncode != 0 and "linux.netDevices.nosuchdev0" in proc.stderr
    assert not (runtime.root / cid).exists()


def test_memory_policy(runtime, make_bundle):
    # config-linux.md memoryPolicy: set_mempolicy(2) for the container's process (inherited).
    out = run_sh(runtime, make_bundle, "grep -c . /proc/self/numa_maps >/dev/null; head -1 /proc/self/numa_maps",
                 edit=lambda c: c["linux"].update(memoryPolicy={"mode": "MPOL_BIND", "nodes": "0"})).stdout  # fmt: skip
    assert "bind:0" in out
    cid = unique_id()
    bad = make_bundle(["true"], edit=lambda c: c["linux"].update(memoryPolicy={"mode": "MPOL_FAST"}))
    proc = runtime("create", "-b", str(bad), cid, check=False)
    assert proc.returncode != 0 and "linux.memoryPolicy.mode" in proc.stderr
