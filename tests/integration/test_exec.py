"""`ocipy exec` in real containers, with runc's flags and semantics.

runtime-spec runtime.md has no exec operation; runc's `exec` is the de facto
contract (containerd, podman/conmon and CRI-O call it).  What the spec does
say applies to the new process: config.md "process" (cwd, env, user,
capabilities, rlimits, noNewPrivileges) and config-linux.md (namespaces,
cgroups, seccomp).  The `runtime` fixture force-deletes every container.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates namespaces and mounts"),
]

MakeBundle = Callable[..., Path]
NS = ("ipc", "mnt", "net", "pid", "uts", "cgroup")


def uid(prefix: str) -> str:
    return f"{prefix}-{os.urandom(4).hex()}"


def start_sleeper(runtime: Any, make_bundle: MakeBundle, edit: Callable[[dict[str, Any]], None] | None = None) -> tuple[str, int]:
    cid = uid("ex")
    bundle = make_bundle(["sleep", "300"], edit=edit)
    runtime("run", "-d", "--bundle", str(bundle), cid, stdin=subprocess.DEVNULL)
    return cid, runtime.state(cid)["pid"]


def status_fields(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def wait_for_file(path: Path, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.01)
    raise AssertionError(f"{path} never written")


def with_limits(config: dict[str, Any]) -> None:
    config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 777, "hard": 888}]
    config["process"]["noNewPrivileges"] = False
    # config-linux.md seccomp: the filter applies to the container's processes
    config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                  "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}


def test_exec_joins_namespaces_cgroups_caps_rlimits_seccomp(runtime: Any, make_bundle: MakeBundle, tmp_path: Path) -> None:
    cid, init_pid = start_sleeper(runtime, make_bundle, with_limits)
    pid_file = tmp_path / "exec.pid"
    # -d: runc returns as soon as the process runs; --pid-file: its host pid
    runtime("exec", "-d", "--pid-file", str(pid_file), cid, "sleep", "300")
    pid = int(wait_for_file(pid_file))
    try:
        for ns in NS:
            assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/{init_pid}/ns/{ns}"), ns
        assert os.readlink(f"/proc/{pid}/ns/user") == os.readlink(f"/proc/{init_pid}/ns/user")
        assert Path(f"/proc/{pid}/cgroup").read_text() == Path(f"/proc/{init_pid}/cgroup").read_text()
        mine, init = status_fields(pid), status_fields(init_pid)
        for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters"):
            assert mine[key] == init[key], key
        assert mine["Seccomp"] == "2"  # SECCOMP_MODE_FILTER
        assert mine["NSpid"].split()[-1] != str(pid)  # a pid of the container's pid namespace
        limits = Path(f"/proc/{pid}/limits").read_text()
        assert any(line.startswith("Max open files") and "777" in line and "888" in line for line in limits.splitlines())
        # the same filter, for real: mkdir is denied in the exec'd process too
        proc = runtime("exec", cid, "sh", "-c", "mkdir /tmp/x; echo rc=$?", check=False)
        assert "rc=1" in proc.stdout, proc.stdout + proc.stderr
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def test_exit_status_and_signal_death(runtime: Any, make_bundle: MakeBundle) -> None:
    cid, _ = start_sleeper(runtime, make_bundle)
    assert runtime("exec", cid, "sh", "-c", "exit 7", check=False).returncode == 7
    assert runtime("exec", cid, "sh", "-c", "kill -TERM $$", check=False).returncode == 128 + 15
    assert runtime("exec", cid, "sh", "-c", "kill -KILL $$", check=False).returncode == 128 + 9


def test_env_cwd_user_groups(runtime: Any, make_bundle: MakeBundle) -> None:
    cid, _ = start_sleeper(runtime, make_bundle)
    script = 'echo "$FOO|$TERM|$HOME"; pwd; id -u; id -g; id -G'
    proc = runtime("exec", "-e", "FOO=bar", "--env", "TERM=dumb", "--cwd", "/tmp", "-u", "1000:100",
                   "-g", "5", "--additional-gids", "65534", cid, "sh", "-c", script)
    lines = proc.stdout.split("\n")
    assert lines[0] == "bar|dumb|/home/app"  # -e overrides the container's TERM; HOME from /etc/passwd
    assert lines[1] == "/tmp"
    assert lines[2:4] == ["1000", "100"]
    assert set(lines[4].split()) == {"100", "5", "65534"}
    # -u UID alone: gid 0, as runc
    assert runtime("exec", "-u", "65534", cid, "id", "-g").stdout.strip() == "0"


def _cap_eff(runtime: Any, cid: str, *flags: str) -> int:
    out = runtime("exec", *flags, cid, "grep", "CapEff", "/proc/self/status").stdout
    return int(out.split()[1], 16)


def test_cap_and_no_new_privs(runtime: Any, make_bundle: MakeBundle) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["process"]["noNewPrivileges"] = False

    cid, _ = start_sleeper(runtime, make_bundle, edit)
    cap_sys_admin, cap_kill = 1 << 21, 1 << 5
    plain = _cap_eff(runtime, cid)
    assert plain & cap_kill and not plain & cap_sys_admin
    assert _cap_eff(runtime, cid, "--cap", "CAP_SYS_ADMIN") & cap_sys_admin
    bnd = runtime("exec", "--cap", "CAP_SYS_ADMIN", cid, "grep", "CapBnd", "/proc/self/status").stdout
    assert int(bnd.split()[1], 16) & cap_sys_admin
    nnp = "grep NoNewPrivs /proc/self/status"
    assert runtime("exec", cid, "sh", "-c", nnp).stdout.split()[1] == "0"
    assert runtime("exec", "--no-new-privs", cid, "sh", "-c", nnp).stdout.split()[1] == "1"


def test_process_file(runtime: Any, make_bundle: MakeBundle, tmp_path: Path) -> None:
    cid, _ = start_sleeper(runtime, make_bundle)
    process = {"terminal": False, "user": {"uid": 1000, "gid": 1000, "additionalGids": [100]},
               "args": ["sh", "-c", 'echo "$ONLY"; pwd; id -u; id -G; grep CapEff /proc/self/status'],
               "env": ["PATH=/bin:/usr/bin", "ONLY=from-json"], "cwd": "/home",
               "capabilities": {"bounding": ["CAP_CHOWN"]}}
    (tmp_path / "process.json").write_text(json.dumps(process))
    out = runtime("exec", "--process", str(tmp_path / "process.json"), cid).stdout.split("\n")
    assert out[0:3] == ["from-json", "/home", "1000"]
    assert set(out[3].split()) == {"1000", "100"}
    assert int(out[4].split()[1], 16) == 0  # only what the process file grants
    (tmp_path / "bad.json").write_text("{not json")
    bad = runtime("exec", "--process", str(tmp_path / "bad.json"), cid, check=False)
    assert bad.returncode != 0 and "malformed JSON" in bad.stderr
    (tmp_path / "nul.json").write_text(json.dumps(dict(process, args=["sh", "-c", "echo a\x00b"])))
    nul = runtime("exec", "--process", str(tmp_path / "nul.json"), cid, check=False)
    # runc's exec exits 255 for every failure of the runtime, a bad process included
    assert nul.returncode == 255 and "process.args[2]: contains a NUL character" in nul.stderr


class ConsoleServer:
    """The --console-socket peer: receives the pty master (SCM_RIGHTS) and reads it to EOF."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(1)
        self.sock.settimeout(20)
        self.output = b""
        self.master_received = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 4)
        assert len(fds) == 1
        self.master_received.set()
        master = fds[0]
        try:
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every slave fd is closed
                    break
                if not chunk:
                    break
                self.output += chunk
        finally:
            os.close(master)

    def close(self) -> None:
        self.thread.join(20)
        self.sock.close()


def test_tty_console_socket(runtime: Any, make_bundle: MakeBundle, tmp_path: Path) -> None:
    cid, _ = start_sleeper(runtime, make_bundle)
    server = ConsoleServer(tmp_path / "console.sock")
    try:
        runtime("exec", "-t", "--console-socket", str(tmp_path / "console.sock"), cid,
                "sh", "-c", "tty; test -t 0 && test -t 1 && echo all-tty; echo done")
        server.thread.join(20)
        assert server.master_received.is_set()
        text = server.output.decode(errors="replace")
        assert "/dev/pts/" in text and "all-tty" in text and "done" in text, text
    finally:
        server.close()
    # runc: a tty with --detach needs somewhere to send it
    proc = runtime("exec", "-t", "-d", cid, "true", check=False)
    assert proc.returncode != 0 and "console socket" in proc.stderr


def test_preserve_fds_and_no_leaks(runtime: Any, make_bundle: MakeBundle, tmp_path: Path) -> None:
    cid, _ = start_sleeper(runtime, make_bundle)
    out3, out4 = tmp_path / "three", tmp_path / "four"
    list_fds = "ls /proc/$$/fd; true"  # the shell's fds (a lone command would be exec'd)
    # The caller holds fds 3 and 4 open; without --preserve-fds none reaches the process.
    base = shlex.join(runtime.cmd("exec", cid, "sh", "-c", list_fds))
    leak = subprocess.run(["bash", "-c", f'{base} 3>"{out3}" 4>"{out4}"'], capture_output=True, text=True, timeout=30)
    assert leak.returncode == 0, leak.stderr
    assert leak.stdout.split() == ["0", "1", "2"]
    # --preserve-fds 1: fd 3 only, and it is the caller's file
    cmd = shlex.join(runtime.cmd("exec", "--preserve-fds", "1", cid, "sh", "-c", f"{list_fds}; echo via-3 >&3"))
    kept = subprocess.run(["bash", "-c", f'{cmd} 3>"{out3}" 4>"{out4}"'], capture_output=True, text=True, timeout=30)
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.split() == ["0", "1", "2", "3"]
    assert out3.read_text() == "via-3\n" and out4.read_text() == ""


def _has_pause(runtime: Any) -> bool:
    proc = subprocess.run([runtime.binary, "--help"], capture_output=True, text=True, timeout=30)
    return any(line.split()[:1] == ["pause"] for line in (proc.stdout + proc.stderr).splitlines())


def test_paused_container_and_ignore_paused(runtime: Any, make_bundle: MakeBundle, tmp_path: Path) -> None:
    if not _has_pause(runtime):
        pytest.skip("`ocipy pause` is not there yet (cgroups)")
    cid, _ = start_sleeper(runtime, make_bundle)
    runtime("pause", cid)
    try:
        proc = runtime("exec", cid, "true", check=False)
        assert proc.returncode != 0
        assert "cannot exec in a paused container (use --ignore-paused to override)" in proc.stderr
        # --ignore-paused: the process joins the frozen cgroup and runs once resumed
        late = subprocess.Popen(runtime.cmd("exec", "--ignore-paused", cid, "sh", "-c", "echo thawed"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(0.3)
            assert late.poll() is None  # frozen, not refused
            runtime("resume", cid)
            out, err = late.communicate(timeout=20)
        finally:
            if late.poll() is None:
                late.kill()
                late.wait()
        assert late.returncode == 0, err
        assert out.strip() == "thawed"
    finally:
        if runtime.state(cid)["status"] == "paused":
            runtime("resume", cid, check=False)


def test_exec_into_stopped_missing_and_created(runtime: Any, make_bundle: MakeBundle) -> None:
    missing = runtime("exec", "no-such-container", "true", check=False)
    assert missing.returncode != 0 and "container does not exist" in missing.stderr
    cid = uid("stopped")
    runtime("run", "-d", "--bundle", str(make_bundle(["true"])), cid)
    deadline = time.monotonic() + 10
    while runtime.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    stopped = runtime("exec", cid, "true", check=False)
    assert stopped.returncode != 0 and "cannot exec in a stopped container" in stopped.stderr
    # runc allows exec into a created container: it joins the init's namespaces
    created = uid("created")
    runtime("create", "--bundle", str(make_bundle(["true"])), created)
    assert runtime("exec", created, "sh", "-c", "echo in-created").stdout.strip() == "in-created"


def test_exec_errors_are_reported(runtime: Any, make_bundle: MakeBundle) -> None:
    cid, _ = start_sleeper(runtime, make_bundle)
    nothere = runtime("exec", cid, "/no/such/binary", check=False)
    assert nothere.returncode != 0 and "no such file or directory" in nothere.stderr
    noexec = runtime("exec", cid, "/etc/passwd", check=False)
    assert noexec.returncode != 0 and "ermission denied" in noexec.stderr
    badcwd = runtime("exec", "--cwd", "/no/such/dir", cid, "true", check=False)
    assert badcwd.returncode != 0 and "/no/such/dir" in badcwd.stderr


def test_failed_exec_leaves_no_process_in_the_container(runtime: Any, make_bundle: MakeBundle) -> None:
    """An exec that fails before execve (no such binary) exits 255 and leaves
    neither a process nor a zombie in the container, in the foreground and with -d."""
    cid, init_pid = start_sleeper(runtime, make_bundle)
    for flags in ([], ["-d"]):
        proc = runtime("exec", *flags, cid, "/no/such/binary", check=False)
        assert proc.returncode == 255 and "no such file or directory" in proc.stderr, proc.stderr
    # the container's own view: a zombie is no longer in the cgroup, but still in its pid namespace
    table = runtime("exec", cid, "ps", "-o", "pid,stat,comm").stdout.split("\n")[1:]
    rows = [line.split() for line in table if line.strip()]
    assert [r for r in rows if r[2] != "ps"] == [["1", "S", "sleep"]], rows
    assert json.loads(runtime("ps", "-f", "json", cid).stdout) == [init_pid]
