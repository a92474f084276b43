"""linux.seccomp in real containers: `ocipy run` with a busybox bundle."""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ocipy.linux import seccomp

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates namespaces and mounts"),
]

MakeBundle = Callable[..., Path]


def with_seccomp(sc: dict[str, Any], nnp: bool | None = None) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        config.setdefault("linux", {})["seccomp"] = sc
        if nnp is not None:
            config["process"]["noNewPrivileges"] = nnp
    return edit


def run(runtime: Any, bundle: Path, cid: str, timeout: float = 60) -> Any:
    return runtime("run", "--bundle", str(bundle), cid, check=False, timeout=timeout)


def unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(4).hex()}"


DENY_MKDIR = {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}
SCRIPT = "mkdir /tmp/x; echo rc=$?; test -d /tmp/x && echo exists || echo absent"


@pytest.mark.parametrize("nnp", [True, False])
def test_mkdir_denied_eperm(runtime: Any, make_bundle: MakeBundle, nnp: bool) -> None:
    # SCMP_ACT_ERRNO without errnoRet: "The default is `EPERM`."  Both load
    # orders (before dropping caps without no_new_privs, last with it).
    bundle = make_bundle(["sh", "-c", SCRIPT],
                         edit=with_seccomp({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [DENY_MKDIR]}, nnp))
    proc = run(runtime, bundle, unique("sc-eperm"))
    assert proc.returncode == 0, proc.stderr
    assert "Operation not permitted" in proc.stderr
    assert "rc=1" in proc.stdout and "absent" in proc.stdout


def test_errno_ret(runtime: Any, make_bundle: MakeBundle) -> None:
    rule = dict(DENY_MKDIR, errnoRet=errno.ENOSYS)
    bundle = make_bundle(["sh", "-c", SCRIPT],
                         edit=with_seccomp({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]}))
    proc = run(runtime, bundle, unique("sc-errnoret"))
    assert proc.returncode == 0, proc.stderr
    assert os.strerror(errno.ENOSYS) in proc.stderr


def test_default_errno_ret(runtime: Any, make_bundle: MakeBundle) -> None:
    # defaultAction SCMP_ACT_ERRNO + defaultErrnoRet: every syscall not
    # allowed fails with that errno.  Allow all syscalls of this arch but mkdir.
    names = [n for n in (seccomp.syscall_name(nr) for nr in range(600)) if n and n not in ("mkdir", "mkdirat")]
    sc = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EXDEV,
          "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}
    bundle = make_bundle(["sh", "-c", SCRIPT], edit=with_seccomp(sc))
    proc = run(runtime, bundle, unique("sc-deferrno"))
    assert proc.returncode == 0, proc.stderr
    assert os.strerror(errno.EXDEV) in proc.stderr
    assert "absent" in proc.stdout


def test_kill_process(runtime: Any, make_bundle: MakeBundle) -> None:
    sc = {"defaultAction": "SCMP_ACT_ALLOW",
          "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]}
    bundle = make_bundle(["mkdir", "/tmp/x"], edit=with_seccomp(sc))
    proc = run(runtime, bundle, unique("sc-kill"))
    # runc reports a signalled container process as 128 + signal.
    assert proc.returncode == 128 + signal.SIGSYS, proc.stderr


def test_args_filter(runtime: Any, make_bundle: MakeBundle) -> None:
    # Deny kill(2) only for signal 0 (arg1 == 0): `kill -0` fails, `kill -CONT` works.
    sc = {"defaultAction": "SCMP_ACT_ALLOW",
          "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]}]}
    bundle = make_bundle(["sh", "-c", "kill -0 $$; echo zero=$?; kill -CONT $$; echo cont=$?"],
                         edit=with_seccomp(sc))
    proc = run(runtime, bundle, unique("sc-args"))
    assert proc.returncode == 0, proc.stderr
    assert "zero=1" in proc.stdout and "cont=0" in proc.stdout


def test_bad_action_fails_create(runtime: Any, make_bundle: MakeBundle) -> None:
    sc = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOPE"}]}
    bundle = make_bundle(["true"], edit=with_seccomp(sc))
    proc = run(runtime, bundle, unique("sc-bad"))
    assert proc.returncode != 0
    assert "linux.seccomp.syscalls[0].action" in proc.stderr


class Agent:
    """A seccomp agent on a unix socket: records the container process state
    and answers every notification with a fake success (val 0)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.sock.settimeout(30)
        self.state: dict[str, Any] | None = None
        self.fds: list[int] = []
        self.seen: list[str | None] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(30)
                self.state, self.fds = seccomp.recv_listener(conn)
            fd = self.fds[0]
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            while not self.stop.is_set():
                events = poller.poll(200)
                if not events:
                    continue
                if events[0][1] & select.POLLIN:
                    note = seccomp.notify_receive(fd)
                    self.seen.append(note.syscall)
                    seccomp.notify_respond(fd, note.id, val=0)  # pretend it worked
                elif events[0][1] & (select.POLLHUP | select.POLLERR):
                    break  # no task uses the filter any more
        except BaseException as exc:  # reported by close()
            self.error = exc

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.sock.close()
        for fd in self.fds:
            os.close(fd)
        if self.error is not None:
            raise self.error


@pytest.fixture
def agent() -> Iterator[Agent]:
    d = tempfile.mkdtemp(prefix="ocipy-agent-")
    a = Agent(os.path.join(d, "agent.sock"))
    try:
        yield a
    finally:
        try:
            a.close()
        finally:
            os.unlink(a.path)
            os.rmdir(d)


def test_listener_path(runtime: Any, make_bundle: MakeBundle, agent: Agent) -> None:
    sc = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": agent.path, "listenerMetadata": "meta=1",
          "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}
    bundle = make_bundle(["sh", "-c", SCRIPT], edit=with_seccomp(sc))
    cid = unique("sc-notify")
    proc = run(runtime, bundle, cid)
    assert proc.returncode == 0, proc.stderr
    # The agent answered 0 without creating anything: mkdir "succeeded".
    assert "rc=0" in proc.stdout and "absent" in proc.stdout
    assert agent.seen and set(agent.seen) <= {"mkdir", "mkdirat"}
    # config-linux.md: one container process state per connection, as JSON,
    # the fd via SCM_RIGHTS named in `fds`; `metadata` from listenerMetadata.
    st = agent.state
    assert st is not None
    assert set(st) == {"ociVersion", "fds", "pid", "metadata", "state"}  # as runc sends it
    assert st["pid"] == st["state"]["pid"]
    assert st["fds"] == ["seccompFd"] and len(agent.fds) == 1
    assert st["metadata"] == "meta=1"
    assert st["ociVersion"]
    assert st["state"]["id"] == cid
    assert st["state"]["bundle"] == str(bundle)
    assert st["state"]["status"] == "creating"
    assert isinstance(st["pid"], int) and st["pid"] > 0


def test_listener_unreachable_is_an_error(runtime: Any, make_bundle: MakeBundle, tmp_path: Path) -> None:
    # "If sending to this socket fails, the runtime MUST generate an error."
    sc = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": str(tmp_path / "nobody.sock"),
          "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}
    bundle = make_bundle(["true"], edit=with_seccomp(sc))
    proc = run(runtime, bundle, unique("sc-nolistener"), timeout=30)
    assert proc.returncode != 0
    assert "nobody.sock" in proc.stderr


def test_features_match_module(runtime: Any) -> None:
    proc = runtime("features", check=False)
    if proc.returncode != 0:
        pytest.skip("ocipy features not available")
    feats = json.loads(proc.stdout)
    assert feats["linux"]["seccomp"] == seccomp.features()


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("runc") is None, reason="runc not installed")
def test_agent_helpers_serve_runc(make_bundle: MakeBundle, agent: Agent, tmp_path: Path) -> None:
    """The reference: runc sends its ContainerProcessState to our agent
    helpers (recv_listener, notify_receive/respond), with the fields
    send_listener produces for ocipy."""
    sc = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": agent.path, "listenerMetadata": "meta=1",
          "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}
    bundle = make_bundle(["sh", "-c", SCRIPT], edit=with_seccomp(sc))
    root = tmp_path / "runc-root"
    cid = unique("sc-runc")
    try:
        proc = subprocess.run(["runc", "--root", str(root), "run", "--bundle", str(bundle), cid],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run(["runc", "--root", str(root), "delete", "-f", cid], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "rc=0" in proc.stdout and "absent" in proc.stdout
    st = agent.state
    assert st is not None
    assert set(st) == {"ociVersion", "fds", "pid", "metadata", "state"}
    assert st["fds"] == ["seccompFd"] and st["metadata"] == "meta=1"
    assert st["state"]["id"] == cid and st["state"]["status"] == "creating"
    assert st["pid"] == st["state"]["pid"]
    assert agent.seen and set(agent.seen) <= {"mkdir", "mkdirat"}
