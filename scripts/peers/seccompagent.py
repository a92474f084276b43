#!/usr/bin/python3 -IS
import os as _os
import sys as _sys

# The pid file first (the harness kills the agent through it, possibly very
# soon after starting it), and no hold on the harness's stdio (bats waits
# for EOF on it).
for _i, _a in enumerate(_sys.argv):
    if _a.lstrip("-").startswith("pid-file"):
        _k, _eq, _v = _a.lstrip("-").partition("=")
        _pf = _v if _eq else (_sys.argv[_i + 1] if _i + 1 < len(_sys.argv) else "")
        if _pf:
            with open(_pf, "w") as _f:
                _f.write(str(_os.getpid()))
_null = _os.open("/dev/null", _os.O_RDWR)
for _fd in (0, 1, 2):
    _os.dup2(_null, _fd)
_os.closerange(3, 65536)  # bats' TAP pipe (fd 3 and others) must not stay open in a leaked agent
# Listen as early as possible too (runc is started right after the agent).
import socket as _socket
_sf = "/run/seccomp-agent.socket"
for _i, _a in enumerate(_sys.argv):
    if _a.lstrip("-").startswith("socketfile"):
        _k, _eq, _v = _a.lstrip("-").partition("=")
        _sf = _v if _eq else (_sys.argv[_i + 1] if _i + 1 < len(_sys.argv) else _sf)
try:
    _os.unlink(_sf)
except FileNotFoundError:
    pass
SERVER = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
SERVER.bind(_sf)
SERVER.listen(16)
"""Test-harness stand-in for runc's contrib seccompagent (not part of ocipy).

Listens on -socketfile; each connection brings a ContainerProcessState JSON
with the seccomp notify fd (SCM_RIGHTS).  Per fd, a thread answers:
  mkdir(path)              -> creates "<path>-<metadata>" in the container, returns 0
                              (ENOSYS if that fails)
  chmod/fchmod/fchmodat    -> ENOMEDIUM
  anything else            -> SECCOMP_USER_NOTIF_FLAG_CONTINUE
"""
import array
import errno
import fcntl
import json
import os
import socket
import struct
import sys
import threading

NOTIF_RECV = 0xC0502100
NOTIF_SEND = 0xC0182101
NOTIF_ID_VALID = 0x40082102
FLAG_CONTINUE = 1
SYS_MKDIR, SYS_CHMOD, SYS_FCHMOD, SYS_FCHMODAT = 83, 90, 91, 268
NOTIF = struct.Struct("=QIIiIQ6Q")   # id pid flags | nr arch ip args[6]
RESP = struct.Struct("=QqiI")         # id val error flags


def log(msg):
    print(f"seccompagent: {msg}", file=sys.stderr, flush=True)


def read_string(pid, addr):
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        data = os.pread(fd, 4096, addr)
    finally:
        os.close(fd)
    return data.split(b"\0", 1)[0].decode(errors="replace")


def do_mkdir(pid, name, mode, metadata):
    target = f"{name}-{metadata}"
    base = f"/proc/{pid}/root/" if target.startswith("/") else f"/proc/{pid}/cwd/"
    parts = [p for p in target.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise OSError(errno.EPERM, "refusing ..")
    os.mkdir(base + "/".join(parts), mode)


def respond(fd, nid, val=0, error=0, flags=0):
    fcntl.ioctl(fd, NOTIF_SEND, bytearray(RESP.pack(nid, val, error, flags)))


def handler(fd, metadata):
    import select

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    try:
        while True:
            events = poller.poll()
            if any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in events):
                return  # every process using the filter is gone
            buf = bytearray(NOTIF.size)
            try:
                fcntl.ioctl(fd, NOTIF_RECV, buf)
            except OSError as e:
                if e.errno in (errno.EINTR, errno.ENOENT):
                    continue  # interrupted, or the caller went away: poll again
                log(f"recv: {e}")
                return
            nid, pid, _flags, nr, _arch, _ip, *args = NOTIF.unpack(buf)
            try:
                fcntl.ioctl(fd, NOTIF_ID_VALID, bytearray(struct.pack("=Q", nid)))
            except OSError:
                continue
            try:
                if nr == SYS_MKDIR:
                    try:
                        do_mkdir(pid, read_string(pid, args[0]), args[1] & 0o7777, metadata)
                        respond(fd, nid)
                    except OSError as e:
                        log(f"mkdir: {e}")
                        respond(fd, nid, -1, -errno.ENOSYS)
                elif nr in (SYS_CHMOD, SYS_FCHMOD, SYS_FCHMODAT):
                    respond(fd, nid, -1, -errno.ENOMEDIUM)
                else:
                    respond(fd, nid, 0, 0, FLAG_CONTINUE)
            except OSError as e:
                log(f"respond: {e}")
    finally:
        os.close(fd)


def main():
    socket_file, pid_file = "/run/seccomp-agent.socket", ""
    argv = sys.argv[1:]
    while argv:
        arg = argv.pop(0).lstrip("-")
        key, eq, value = arg.partition("=")
        if not eq:
            value = argv.pop(0) if argv else ""
        if key == "socketfile":
            socket_file = value
        elif key == "pid-file":
            pid_file = value
        else:
            log(f"unknown flag {key}")
            sys.exit(2)
    srv = SERVER
    while True:
        conn, _ = srv.accept()
        try:
            msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 8)
        except OSError as e:
            log(f"recvmsg: {e}")
            conn.close()
            continue
        conn.close()
        try:
            state = json.loads(msg)
            names = state.get("fds") or []
            idx = names.index("seccompFd")
            if names.count("seccompFd") != 1 or idx >= len(fds):
                raise ValueError("malformed fds")
        except (ValueError, json.JSONDecodeError) as e:
            log(f"bad message: {e}")
            for fd in fds:
                os.close(fd)
            continue
        for i, fd in enumerate(fds):
            if i != idx:
                os.close(fd)
        metadata = os.path.basename(state.get("metadata") or "")
        if "/" in metadata or not metadata:
            metadata = metadata or ""
        threading.Thread(target=handler, args=(fds[idx], metadata), daemon=True).start()


if __name__ == "__main__":
    main()
