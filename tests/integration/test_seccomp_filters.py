"""Real seccomp filters on this kernel, without the container runtime.

Each test forks a child that builds a filter with ``prepare()``, loads it
with ``load()`` and then tries syscalls; the child reports what it saw
through a pipe (JSON) and the parent asserts.  The filter only ever
confines the forked child, never the pytest process.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import select
import signal
import socket
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest

from ocipy.errors import OcipyError
from ocipy.linux import seccomp
from ocipy.spec.seccomp import parse_seccomp

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loads filters without no_new_privs"),
]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

SYS_getpid = 39
SYS_personality = 135
SYS_pidfd_getfd = 438


def prepare(doc: Any) -> seccomp.Filter:
    """linux.seccomp as create hands it to the filter builder: parsed first."""
    return seccomp.prepare(parse_seccomp(doc))


def raw_syscall(nr: int, *args: int) -> tuple[int, int]:
    """(return value, errno) of syscall(nr, args...) with full 64-bit arguments."""
    ctypes.set_errno(0)
    ret = _libc.syscall(ctypes.c_long(nr), *(ctypes.c_ulong(a) for a in args))
    return int(ret), ctypes.get_errno() if ret == -1 else 0


def try_call(fn: Callable[[], object]) -> int:
    """0 when fn succeeds, else the errno it failed with."""
    try:
        fn()
    except OSError as exc:
        return exc.errno or -1
    return 0


def run_filtered(config: dict[str, Any], body: Callable[[], Any],
                 after_load: Callable[[int | None], None] | None = None,
                 timeout: float = 20) -> tuple[Any, int]:
    """Fork; the child loads the filter and runs body(); returns (body's result, wait status).

    The result is None when the child died before reporting.
    """
    flt = prepare(config)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)
            fd = flt.load()
            if after_load:
                after_load(fd)
            result = body()
            os.write(w, json.dumps({"ok": result}).encode())
        except BaseException:
            try:
                os.write(w, json.dumps({"error": traceback.format_exc()}).encode())
            finally:
                code = 1
        finally:
            os._exit(code)
    os.close(w)
    flt.release()
    try:
        data = b""
        while select.select([r], [], [], timeout)[0]:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if not data:
        return None, status
    doc = json.loads(data)
    if "error" in doc:
        raise AssertionError(f"child failed:\n{doc['error']}")
    return doc["ok"], status


def allow(**kw: Any) -> dict[str, Any]:
    return {"defaultAction": "SCMP_ACT_ALLOW", **kw}


def mkdir_probe(tmp: str) -> Callable[[], dict[str, int]]:
    def body() -> dict[str, int]:
        return {"mkdir": try_call(lambda: os.mkdir(os.path.join(tmp, "d"))),
                "getpid": 0 if os.getpid() > 0 else -1}
    return body


def test_errno_default_eperm(tmp_path: Any) -> None:
    # config-linux.md errnoRet: "The default is `EPERM`."
    res, status = run_filtered(allow(syscalls=[{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]),
                               mkdir_probe(str(tmp_path)))
    assert res == {"mkdir": errno.EPERM, "getpid": 0}
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert not (tmp_path / "d").exists()


def test_errno_ret(tmp_path: Any) -> None:
    # errnoRet: "the errno return code to use" with SCMP_ACT_ERRNO.
    res, _ = run_filtered(allow(syscalls=[{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                                           "errnoRet": errno.ENOSYS}]), mkdir_probe(str(tmp_path)))
    assert res == {"mkdir": errno.ENOSYS, "getpid": 0}


def test_trace_without_tracer_is_enosys(tmp_path: Any) -> None:
    # SCMP_ACT_TRACE with no ptracer attached: the kernel fails the call with ENOSYS.
    res, _ = run_filtered(allow(syscalls=[{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_TRACE",
                                           "errnoRet": 7}]), mkdir_probe(str(tmp_path)))
    assert res["mkdir"] == errno.ENOSYS


def test_log_allows(tmp_path: Any) -> None:
    res, _ = run_filtered(allow(flags=["SECCOMP_FILTER_FLAG_LOG"],
                                syscalls=[{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_LOG"}]),
                          mkdir_probe(str(tmp_path)))
    assert res == {"mkdir": 0, "getpid": 0}
    assert (tmp_path / "d").is_dir()


def test_default_errno_ret(tmp_path: Any) -> None:
    # defaultAction SCMP_ACT_ERRNO with defaultErrnoRet: everything not listed
    # fails with that errno.  Allow every syscall libseccomp knows on this
    # arch except mkdir/mkdirat (also exercises the >32-rule binary tree).
    names = [n for n in (seccomp.syscall_name(nr) for nr in range(0, 600)) if n]
    allowed = [n for n in names if n not in ("mkdir", "mkdirat")]
    assert len(allowed) > 300
    config = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EROFS,
              "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]}
    res, _ = run_filtered(config, mkdir_probe(str(tmp_path)))
    assert res == {"mkdir": errno.EROFS, "getpid": 0}


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"])
def test_kill_actions_sigsys(tmp_path: Any, action: str) -> None:
    res, status = run_filtered(allow(syscalls=[{"names": ["mkdir", "mkdirat"], "action": action}]),
                               mkdir_probe(str(tmp_path)))
    assert res is None
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS
    assert not (tmp_path / "d").exists()


def test_trap_delivers_sigsys(tmp_path: Any) -> None:
    def body() -> dict[str, Any]:
        got: list[int] = []
        signal.signal(signal.SIGSYS, lambda signum, frame: got.append(signum))
        rc = try_call(lambda: os.mkdir(os.path.join(str(tmp_path), "d")))
        return {"signals": got, "created": os.path.exists(os.path.join(str(tmp_path), "d")), "rc": rc}

    res, status = run_filtered(allow(syscalls=[{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_TRAP"}]), body)
    assert res["signals"] == [signal.SIGSYS]
    assert res["created"] is False
    assert os.WIFEXITED(status)


def test_no_new_privs_left_to_the_runtime() -> None:
    # load() must not set no_new_privs (SCMP_FLTATR_CTL_NNP off): the runtime
    # decides it from process.noNewPrivileges.
    def body() -> dict[str, str]:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return {k: fields[k].strip() for k in ("NoNewPrivs", "Seccomp", "Seccomp_filters")}

    res, _ = run_filtered(allow(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]), body)
    assert res == {"NoNewPrivs": "0", "Seccomp": "2", "Seccomp_filters": "1"}


def test_flags_load(tmp_path: Any) -> None:
    supported = seccomp.features()["supportedFlags"]
    res, status = run_filtered(allow(flags=supported,
                                     syscalls=[{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]),
                               mkdir_probe(str(tmp_path)))
    assert res == {"mkdir": errno.EPERM, "getpid": 0}, supported


def test_arg_eq_64bit() -> None:
    # Deny personality only when arg0 == 0xffffffff (the query form).
    cfg = allow(syscalls=[{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                           "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}]}])

    def body() -> dict[str, int]:
        return {"query": raw_syscall(SYS_personality, 0xFFFFFFFF)[1],
                "set0": raw_syscall(SYS_personality, 0)[1]}

    res, _ = run_filtered(cfg, body)
    assert res == {"query": errno.EPERM, "set0": 0}


# getpid ignores its arguments, but seccomp sees the registers: a harmless
# syscall to probe every operator with any 64-bit value.
OPS_CASES = [
    ("SCMP_CMP_EQ", 5, 0, {5: True, 4: False, 6: False, (1 << 32) | 5: False}),
    ("SCMP_CMP_NE", 5, 0, {5: False, 4: True, (1 << 32) | 5: True}),
    ("SCMP_CMP_LT", 5, 0, {4: True, 5: False, 6: False, 0: True}),
    ("SCMP_CMP_LE", 5, 0, {4: True, 5: True, 6: False}),
    ("SCMP_CMP_GT", 5, 0, {4: False, 5: False, 6: True, 1 << 40: True}),
    ("SCMP_CMP_GE", 5, 0, {4: False, 5: True, 6: True}),
    ("SCMP_CMP_GT", 1 << 33, 0, {1 << 32: False, 1 << 33: False, (1 << 33) + 1: True, (1 << 64) - 1: True}),
    # MASKED_EQ: (arg & value) == valueTwo
    ("SCMP_CMP_MASKED_EQ", 0xFF00, 0x1200, {0x1234: True, 0x12FF: True, 0x1334: False, 0x34: False}),
]


@pytest.mark.parametrize(("op", "value", "value2", "probes"), OPS_CASES)
def test_operators(op: str, value: int, value2: int, probes: dict[int, bool]) -> None:
    cfg = allow(syscalls=[{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EDOM,
                           "args": [{"index": 0, "value": value, "valueTwo": value2, "op": op}]}])

    def body() -> dict[str, bool]:
        return {str(v): raw_syscall(SYS_getpid, v)[1] == errno.EDOM for v in probes}

    res, _ = run_filtered(cfg, body)
    assert res == {str(v): denied for v, denied in probes.items()}


def test_args_on_different_indexes_are_anded() -> None:
    cfg = allow(syscalls=[{"names": ["getpid"], "action": "SCMP_ACT_ERRNO",
                           "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                                    {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]}])

    def body() -> list[int]:
        return [raw_syscall(SYS_getpid, a, b)[1] for a, b in ((1, 2), (1, 3), (0, 2))]

    res, _ = run_filtered(cfg, body)
    assert res == [errno.EPERM, 0, 0]


def test_args_on_the_same_index_are_ored_like_runc() -> None:
    # runc: conditions sharing an index become separate rules, so the call
    # matches when ANY of them holds (arg0 > 10 or arg0 < 5).
    cfg = allow(syscalls=[{"names": ["getpid"], "action": "SCMP_ACT_ERRNO",
                           "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_GT"},
                                    {"index": 0, "value": 5, "op": "SCMP_CMP_LT"}]}])

    def body() -> list[int]:
        return [raw_syscall(SYS_getpid, a)[1] for a in (3, 7, 20)]

    res, _ = run_filtered(cfg, body)
    assert res == [errno.EPERM, 0, errno.EPERM]


def test_unknown_syscalls_skipped_and_rest_enforced(tmp_path: Any) -> None:
    cfg = allow(syscalls=[{"names": ["not_a_syscall", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}])
    res, _ = run_filtered(cfg, mkdir_probe(str(tmp_path)))
    assert res == {"mkdir": errno.EPERM, "getpid": 0}


def test_extra_architectures_load(tmp_path: Any) -> None:
    cfg = allow(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                syscalls=[{"names": ["mkdir", "mkdirat", "socketcall"], "action": "SCMP_ACT_ERRNO"}])
    res, _ = run_filtered(cfg, mkdir_probe(str(tmp_path)))
    assert res == {"mkdir": errno.EPERM, "getpid": 0}


# --- SCMP_ACT_NOTIFY and the listener protocol -------------------------------

def pidfd_getfd(pid: int, fd: int) -> int:
    pidfd = os.pidfd_open(pid)
    try:
        ret, err = raw_syscall(SYS_pidfd_getfd, pidfd, fd, 0)
        if ret < 0:
            raise OSError(err, os.strerror(err))
        return ret
    finally:
        os.close(pidfd)


def test_notify_listener_answers(tmp_path: Any) -> None:
    """The runtime-side flow: the child loads, the parent takes the notify fd
    with pidfd_getfd (as runc), send_listener() hands it to an agent over a
    unix socket, and the agent answers the notified syscalls."""
    sock_dir = tempfile.mkdtemp(prefix="ocipy-agent-")
    sock_path = os.path.join(sock_dir, "agent.sock")
    agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    agent.bind(sock_path)
    agent.listen(1)
    agent.settimeout(10)
    target = str(tmp_path / "d")
    cfg = allow(listenerPath=sock_path, listenerMetadata="MKDIR=answer",
                syscalls=[{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}])
    flt = prepare(cfg)
    assert flt.needs_notify
    fdpipe_r, fdpipe_w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(fdpipe_r)
            os.close(res_r)
            fd = flt.load()
            cloexec = bool(__import__("fcntl").fcntl(fd, 1) & 1)  # F_GETFD & FD_CLOEXEC
            os.write(fdpipe_w, str(fd).encode())  # like runc: write the fd number
            first = try_call(lambda: os.mkdir(target))   # agent fails it with EXDEV
            second = try_call(lambda: os.mkdir(target))  # agent lets it run
            os.write(res_w, json.dumps({"first": first, "second": second, "cloexec": cloexec,
                                        "created": os.path.isdir(target)}).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(fdpipe_w)
    os.close(res_w)
    flt.release()
    fds: list[int] = []
    notify_fd = -1
    try:
        assert select.select([fdpipe_r], [], [], 10)[0], "child never sent its notify fd"
        child_fd = int(os.read(fdpipe_r, 32))
        notify_fd = pidfd_getfd(pid, child_fd)
        state = {"ociVersion": "1.2.0", "id": "seccomp-test", "status": "creating", "pid": pid,
                 "bundle": "/nonexistent", "annotations": {"k": "v"}}
        # connect() completes against the listen backlog before accept().
        seccomp.send_listener(sock_path, notify_fd, state, "MKDIR=answer")
        conn, _ = agent.accept()
        with conn:
            conn.settimeout(10)
            doc, fds = seccomp.recv_listener(conn)
        # config-linux.md: the container process state, JSON, fds via SCM_RIGHTS.
        assert doc == {"ociVersion": "1.2.0", "fds": ["seccompFd"], "pid": pid,
                       "metadata": "MKDIR=answer", "state": state}
        assert len(fds) == 1
        agent_fd = fds[0]
        answers = []
        for reply in ({"error": errno.EXDEV}, {"continue_syscall": True}):
            assert select.select([agent_fd], [], [], 10)[0], "no notification arrived"
            note = seccomp.notify_receive(agent_fd)
            answers.append(note.syscall)
            assert note.pid == pid
            assert seccomp.notify_id_valid(agent_fd, note.id)
            seccomp.notify_respond(agent_fd, note.id, **reply)
        assert select.select([res_r], [], [], 10)[0]
        res = json.loads(os.read(res_r, 4096))
    finally:
        for fd in [*fds, notify_fd, fdpipe_r, res_r]:
            if fd >= 0:
                os.close(fd)
        agent.close()
        os.unlink(sock_path)
        os.rmdir(sock_dir)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, status = os.waitpid(pid, 0)
    assert answers[0] in ("mkdir", "mkdirat")
    assert res == {"first": errno.EXDEV, "second": 0, "cloexec": True, "created": True}


def test_notify_fd_is_none_without_notify() -> None:
    def after(fd: int | None) -> None:
        assert fd is None

    res, _ = run_filtered(allow(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]),
                          lambda: True, after_load=after)
    assert res is True


def test_send_listener_failure_is_an_error(tmp_path: Any) -> None:
    # config-linux.md listenerPath: "If sending to this socket fails, the
    # runtime MUST generate an error."
    r, w = os.pipe()
    try:
        with pytest.raises(OcipyError) as exc:
            seccomp.send_listener(str(tmp_path / "nobody-listens.sock"), r, {"pid": 1}, "")
        assert "nobody-listens.sock" in str(exc.value)
        assert "failed to connect with seccomp agent" in str(exc.value)  # runc's wording
    finally:
        os.close(r)
        os.close(w)


def test_send_listener_omits_empty_metadata() -> None:
    a, b = socket.socketpair()
    path_dir = tempfile.mkdtemp(prefix="ocipy-agent-")
    path = os.path.join(path_dir, "s")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(path)
        srv.listen(1)
        seccomp.send_listener(path, a.fileno(), {"ociVersion": "1.2.0", "pid": 42, "status": "creating"}, "")
        conn, _ = srv.accept()
        with conn:
            doc, fds = seccomp.recv_listener(conn)
        for fd in fds:
            os.close(fd)
        assert "metadata" not in doc
        assert doc["pid"] == 42 and doc["fds"] == ["seccompFd"] and len(fds) == 1
    finally:
        srv.close()
        a.close()
        b.close()
        os.unlink(path)
        os.rmdir(path_dir)


@pytest.mark.parametrize("wait_killable", [False, True])
def test_wait_killable_recv(tmp_path: Any, wait_killable: bool) -> None:
    """SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: once the agent has received a
    notification, a non-fatal signal no longer interrupts the notified
    syscall (without the flag it does, and the notification id goes stale).

    libseccomp 2.5 cannot pass this flag; ocipy then loads libseccomp's
    compiled program with seccomp(2) itself."""
    flag = "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
    if wait_killable and flag not in seccomp.features()["supportedFlags"]:
        pytest.skip(f"{flag} needs Linux >= 5.19")
    target = str(tmp_path / "d")
    cfg = allow(listenerPath="/unused", flags=[flag] if wait_killable else [],
                syscalls=[{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}])
    flt = prepare(cfg)
    fd_r, fd_w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(fd_r)
            os.close(res_r)
            got: list[int] = []
            signal.signal(signal.SIGUSR1, lambda signum, frame: got.append(signum))
            fd = flt.load()
            os.write(fd_w, str(fd).encode())
            rc = try_call(lambda: os.mkdir(target))
            os.write(res_w, json.dumps({"mkdir": rc, "signals": got}).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(fd_w)
    os.close(res_w)
    flt.release()
    notify_fd = -1
    try:
        assert select.select([fd_r], [], [], 10)[0]
        notify_fd = pidfd_getfd(pid, int(os.read(fd_r, 32)))
        assert select.select([notify_fd], [], [], 10)[0]
        first = seccomp.notify_receive(notify_fd)
        os.kill(pid, signal.SIGUSR1)
        time.sleep(0.3)
        still_valid = seccomp.notify_id_valid(notify_fd, first.id)
        if still_valid:
            seccomp.notify_respond(notify_fd, first.id, error=errno.EXDEV)
        assert select.select([res_r], [], [], 10)[0]
        res = json.loads(os.read(res_r, 4096))
    finally:
        for fd in (notify_fd, fd_r, res_r):
            if fd >= 0:
                os.close(fd)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    assert still_valid is wait_killable
    # Without the flag the signal interrupts the notified mkdir (EINTR; Python
    # does not retry mkdir); with it the agent's answer is what mkdir returns.
    expected = errno.EXDEV if wait_killable else errno.EINTR
    assert res == {"mkdir": expected, "signals": [signal.SIGUSR1]}


def test_all_supported_flags_with_notify() -> None:
    # Every flag features() reports as supported loads together with a
    # listener (TSYNC + NEW_LISTENER needs TSYNC_ESRCH; WAIT_KILLABLE_RECV
    # needs NEW_LISTENER).
    supported = seccomp.features()["supportedFlags"]
    fds: list[int | None] = []

    def body() -> dict[str, Any]:
        return {"rmdir": try_call(lambda: os.rmdir("/nonexistent-ocipy")), "fd": fds[0] is not None}

    res, _ = run_filtered(allow(listenerPath="/unused", flags=supported,
                                syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"},
                                          {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77}]),
                          body, after_load=fds.append)
    assert res == {"rmdir": 77, "fd": True}, supported


def test_recv_listener_does_not_need_eof() -> None:
    # runc leaks its end of the connection until it exits: an agent must
    # stop at the end of the JSON document, not wait for EOF.
    a, b = socket.socketpair()
    r, w = os.pipe()
    fds: list[int] = []
    try:
        msg = json.dumps({"ociVersion": "1.0.2", "fds": ["seccompFd"], "pid": 7, "state": {"id": "x"}}).encode()
        a.sendmsg([msg[:10]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, r.to_bytes(4, "little"))])
        a.sendall(msg[10:])  # only the first sendmsg carries the fd
        b.settimeout(5)
        doc, fds = seccomp.recv_listener(b)
        assert doc["pid"] == 7 and len(fds) == 1
        assert os.path.sameopenfile(fds[0], r)
    finally:
        for fd in (*fds, r, w):
            os.close(fd)
        a.close()
        b.close()
