"""Networking for containers the engine runs (`ocipy image run --network`).

The runtime only makes namespaces; giving a container a way out is the
engine's job, as it is podman's:

- ``none``: a network namespace with loopback only (the runtime's default).
- ``host``: no network namespace: the host's interfaces.
- ``private``: a network namespace whose `tap0` is served by slirp4netns, a
  user-mode TCP/IP stack on the host side (the container is 10.0.2.100, its
  gateway 10.0.2.2, DNS 10.0.2.3).  Outbound connections leave from the
  host's own address; the host's loopback is not reachable from inside.
  ``-p [IP:]HOSTPORT:PORT[/tcp|/udp]`` forwards a host port to the container
  through slirp4netns's API socket (``add_hostfwd``).

slirp4netns is started by the container's createRuntime hook (after
`create` made the namespaces, before `start`: the program finds its network
up; the hook gets the init's pid in the state on its stdin).  It outlives no
container: its pid is recorded (with its start time, so a recycled pid is
never killed) in the engine's directory of the container before anything
else happens, `down()` stops it, and the container's poststop hook (run by
`delete`, also after the engine was killed) calls `down()` too.  The engine
calls `down()` itself when a foreground container exits.  A program that
starts slirp4netns itself (`Private(..., foreground=True)`) also holds its
--exit-fd, so that it exits by itself if that program dies.
"""

from __future__ import annotations

import json
import os
import sys

from ocipy.errors import OcipyError

TYPE_CHECKING = False
if TYPE_CHECKING:  # socket, subprocess...: loaded where used (`image run --network none` needs none of them)
    import subprocess
    from typing import Any

MODES = ("private", "host", "none")
GUEST_ADDR = "10.0.2.100"
_STATE = "network.json"
_SOCKET = "slirp4netns.sock"
_SHORT_SOCKETS = "/run/ocipy-net"  # where an API socket goes whose path would pass sun_path's 108 bytes


def _socket_path(engine_dir: str) -> str:
    """slirp4netns's API socket for `engine_dir`: in it, or (a long path) a short
    name derived from it, so every caller finds the same one."""
    path = os.path.join(engine_dir, _SOCKET)
    if len(path.encode()) < 100:
        return path
    import hashlib

    return os.path.join(_SHORT_SOCKETS, hashlib.sha256(engine_dir.encode()).hexdigest()[:24] + ".sock")


class Port:
    """One `-p [IP:]HOSTPORT:PORT[/PROTO]` forward."""

    __slots__ = ("host_ip", "host_port", "port", "proto")

    def __init__(self, host_ip: str, host_port: int, port: int, proto: str) -> None:
        self.host_ip, self.host_port, self.port, self.proto = host_ip, host_port, port, proto

    def __repr__(self) -> str:
        return f"{self.host_ip}:{self.host_port}:{self.port}/{self.proto}"


def parse_port(text: str) -> Port:
    """`-p` as podman reads it; a one-line error naming the value otherwise."""
    import socket

    spec, _, proto = text.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise OcipyError(f"-p {text}: protocol must be tcp or udp")
    parts = spec.rsplit(":", 2)
    if len(parts) == 2:
        host_ip, host_port, port = "0.0.0.0", parts[0], parts[1]
    elif len(parts) == 3:
        host_ip, host_port, port = parts[0].strip("[]") or "0.0.0.0", parts[1], parts[2]
    else:
        raise OcipyError(f"-p {text}: expected [IP:]HOSTPORT:PORT[/tcp|udp]")
    numbers = []
    for name, value in (("host port", host_port), ("port", port)):
        if not (value.isascii() and value.isdigit()) or not 0 < int(value) < 65536:
            raise OcipyError(f"-p {text}: {name} {value!r} is not a number in 1-65535")
        numbers.append(int(value))
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host_ip else socket.AF_INET, host_ip)
    except OSError:
        raise OcipyError(f"-p {text}: {host_ip!r} is not an IP address") from None
    return Port(host_ip, numbers[0], numbers[1], proto)


def configure(config: dict[str, Any], mode: str, ports: list[Port], engine_dir: str) -> None:
    """Shape config.json for `mode`: the network namespace, and for `private`
    the poststop hook that stops slirp4netns even if the engine is gone."""
    if mode not in MODES:
        raise OcipyError(f"--network {mode!r}: expected one of {', '.join(MODES)}")
    if ports and mode != "private":
        raise OcipyError(f"-p needs --network private (not {mode})")
    linux = config.setdefault("linux", {})
    namespaces = [ns for ns in linux.get("namespaces") or [] if ns.get("type") != "network"]
    if mode != "host":
        namespaces.append({"type": "network"})
    linux["namespaces"] = namespaces
    if mode == "host":
        resolv = "/etc/resolv.conf"
    elif mode == "private":
        hooks = config.setdefault("hooks", {})
        hooks.setdefault("createRuntime", []).append(_hook(f"hook_up({engine_dir!r}, {[repr(p) for p in ports]!r})"))
        hooks.setdefault("poststop", []).append(_hook(f"down({engine_dir!r})"))
        # slirp4netns answers DNS on 10.0.2.3 with the host's resolver
        resolv = os.path.join(engine_dir, "resolv.conf")
        from ocipy.fsutil import write_file

        write_file(resolv, b"nameserver 10.0.2.3\n", 0o644)
    else:
        return
    if os.path.exists(resolv):
        config.setdefault("mounts", []).append({"destination": "/etc/resolv.conf", "type": "bind", "source": resolv,
                                                "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]})  # fmt: skip


def _hook(call: str) -> dict[str, Any]:
    from ocipy.engine.hooks import python_hook

    return python_hook("from ocipy.engine.network import down, hook_up", call)


def hook_up(engine_dir: str, ports: list[str]) -> None:
    """The createRuntime hook: serve the container (state on stdin) with slirp4netns."""
    try:
        state = json.loads(sys.stdin.read(1 << 20))
        Private(engine_dir, int(state["pid"]), [parse_port(p) for p in ports], foreground=False)
    except (OcipyError, OSError, ValueError, KeyError, TypeError) as e:
        sys.stderr.write(f"--network private: {e}\n")
        raise SystemExit(1) from None


def _start_time(pid: int) -> str | None:
    """The process's start time (/proc/PID/stat field 22), None once it is gone (or a zombie)."""
    from ocipy.linux import procstat

    f = procstat.fields(pid)
    return None if f is None or f[procstat.STATE] == b"Z" else f[procstat.START_TIME].decode()


def _write_state(engine_dir: str, doc: dict[str, Any]) -> None:
    from ocipy.fsutil import write_file

    write_file(os.path.join(engine_dir, _STATE), json.dumps(doc).encode())


class Private:
    """slirp4netns serving one container's network namespace."""

    def __init__(self, engine_dir: str, pid: int, ports: list[Port], *, foreground: bool) -> None:
        import shutil
        import subprocess

        binary = shutil.which("slirp4netns")
        if binary is None:
            raise OcipyError("--network private needs slirp4netns (apt-get install slirp4netns)")
        self.engine_dir = engine_dir
        api = _socket_path(engine_dir)
        if os.path.dirname(api) == _SHORT_SOCKETS:
            os.makedirs(_SHORT_SOCKETS, 0o700, exist_ok=True)  # made only when a socket goes there
        ready_r, ready_w = os.pipe()
        exit_r = exit_w = -1
        cmd = [binary, "--configure", "--mtu=65520", "--disable-host-loopback", "--api-socket", api,
               "--ready-fd", str(ready_w)]  # fmt: skip
        keep = [ready_w]
        if foreground:
            exit_r, exit_w = os.pipe()
            cmd += ["--exit-fd", str(exit_r)]
            keep.append(exit_r)
        cmd += [str(pid), "tap0"]
        try:
            log = open(os.path.join(engine_dir, "slirp4netns.log"), "wb")
            with log:
                proc = subprocess.Popen(cmd, pass_fds=keep, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        start_new_session=True)  # fmt: skip
            # Recorded before anything can fail: whoever cleans up finds it.
            _write_state(self.engine_dir, {"pid": proc.pid, "start": _start_time(proc.pid)})
            self.proc = proc
            self.exit_w = exit_w
        finally:
            os.close(ready_w)
            if exit_r >= 0:
                os.close(exit_r)
        try:
            with os.fdopen(ready_r, "rb") as ready:
                if ready.read(1) != b"1":
                    raise OcipyError(f"slirp4netns did not bring up the network: {self._log_tail()}")
            for port in ports:
                self._forward(api, port)
        except BaseException:
            self.stop()
            raise

    def _log_tail(self) -> str:
        try:
            with open(os.path.join(self.engine_dir, "slirp4netns.log"), "rb") as f:
                lines = f.read().decode(errors="replace").strip().splitlines()
            return lines[-1] if lines else "no output"
        except OSError:
            return "no log"

    def _forward(self, api: str, port: Port) -> None:
        request = {"execute": "add_hostfwd", "arguments": {
            "proto": port.proto, "host_addr": port.host_ip, "host_port": port.host_port,
            "guest_addr": GUEST_ADDR, "guest_port": port.port}}  # fmt: skip
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(api)
            s.sendall(json.dumps(request).encode())
            s.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
                if len(answer) > 65536:
                    break
        try:
            doc = json.loads(answer)
        except ValueError:
            doc = {"error": {"desc": answer[:200].decode(errors="replace")}}
        if "error" in doc:
            desc = (doc["error"] or {}).get("desc", "refused")
            raise OcipyError(f"-p {port}: slirp4netns: {desc}")

    def stop(self) -> None:
        if self.exit_w >= 0:
            os.close(self.exit_w)
            self.exit_w = -1
        down(self.engine_dir, self.proc)


def down(engine_dir: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Stop the container's slirp4netns if it still runs (idempotent)."""
    import signal
    import time

    path = os.path.join(engine_dir, _STATE)
    try:
        with open(path) as f:
            doc = json.load(f)
        pid, start = int(doc["pid"]), doc.get("start")
    except (OSError, ValueError, KeyError, TypeError):
        return
    if _start_time(pid) == start and start is not None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while _start_time(pid) == start and time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.01)
        if _start_time(pid) == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if proc is not None:
        proc.wait()
    for path in (os.path.join(engine_dir, _STATE), _socket_path(engine_dir)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
