"""Helpers for the engine interop tests (containerd, podman, CRI).

Each engine runs on private directories under a temp dir and is torn down
completely: daemon, shims, containers, mounts and files, also when a test
fails.  The same steps run once with runc and once with ocipy as the
runtime binary, and the tests compare what the engine reports.
"""

from __future__ import annotations

import hashlib
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))

from support.rootfs import build_busybox_rootfs  # noqa: E402

OCIPY = str(REPO / ".venv" / "bin" / "ocipy")
RUNC = shutil.which("runc") or "/usr/sbin/runc"
IMAGE = "docker.io/library/ocipy-busybox:latest"
# the name ctr gives the oci-archive import: --base-name + the archive's ref.name
OCI_IMAGE = "docker.io/library/ocipy-busybox-oci:v1"


def missing(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None and not os.path.exists(t)]


# --- images -------------------------------------------------------------------------


@dataclass
class Archives:
    oci_archive: Path  # ref.name "v1"
    docker_archive: Path  # RepoTags [IMAGE]


def build_busybox_image(workdir: Path) -> Archives:
    """A busybox image built with `ocipy image` and exported as both archive kinds."""
    workdir.mkdir(parents=True, exist_ok=True)
    rootfs = build_busybox_rootfs(str(workdir / "rootfs"))
    layout = workdir / "layout"

    def image(*args: str) -> None:
        proc = subprocess.run([OCIPY, "image", *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"ocipy image {' '.join(args)}: {proc.stderr}"

    image("init", str(layout))
    image("new", f"oci:{layout}:v1")
    image("add-layer", f"oci:{layout}:v1", rootfs)
    image("config", f"oci:{layout}:v1", "--cmd", "/bin/sh",
          "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")  # fmt: skip
    archives = Archives(workdir / "busybox-oci.tar", workdir / "busybox-docker.tar")
    image("export", f"oci:{layout}:v1", f"oci-archive:{archives.oci_archive}:v1")
    image("export", f"oci:{layout}:v1", f"docker-archive:{archives.docker_archive}:{IMAGE}")
    shutil.rmtree(rootfs)
    return archives


# --- processes, mounts, ptys ----------------------------------------------------------


def pids_matching(*words: str) -> list[int]:
    """Pids whose command line contains every word as one argument."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if all(w.encode() in argv for w in words):
            found.append(int(entry))
    return found


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def unmount_under(path: Path) -> None:
    """Lazily unmount everything mounted at or below path, deepest first."""
    prefix = str(path).rstrip("/")
    targets = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].replace("\\040", " ")
            if target == prefix or target.startswith(prefix + "/"):
                targets.append(target)
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)


def remove_empty_cgroups(name: str) -> None:
    """rmdir /sys/fs/cgroup/*/NAME and its subtree where empty: the parents an
    engine made (containerd's namespace, podman's libpod_parent). A cgroup
    still in use refuses rmdir, so nothing anyone uses is touched."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / name
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda item: -len(item[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def remove_tree(path: Path) -> None:
    unmount_under(path)
    shutil.rmtree(path, ignore_errors=True)


def run_in_pty(argv: list[str], keys: bytes = b"", timeout: float = 30,
               env: dict[str, str] | None = None) -> tuple[int, str]:  # fmt: skip
    """Run argv on a new pty (24x80); type keys once it prints something; return (exit code, output)."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            import fcntl
            import struct
            import termios

            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            os.execvpe(argv[0], argv, env if env is not None else os.environ)
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + timeout
    typed = not keys
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: the other side is closed
                    break
                if not data:
                    break
                out += data
                if not typed:
                    time.sleep(0.3)
                    os.write(fd, keys)
                    typed = True
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace").replace("\r", "")


# --- containerd --------------------------------------------------------------------

SHIM = "containerd-shim-runc-v2"


class Containerd:
    """A containerd daemon on a private socket, root and state dir under base.

    `runtime_config` is TOML appended to the config (e.g. a CRI runtime with
    BinaryName = ocipy).  The CRI plugin is disabled unless `cri` is true.
    """

    def __init__(self, base: Path, runtime_config: str = "", cri: bool = False) -> None:
        self.base = base
        self.socket = base / "containerd.sock"
        self.config = base / "config.toml"
        self.logfile = base / "containerd.log"
        self.runc_roots = base / "runtime-state"  # --runc-root for each binary
        self.runtime_config = runtime_config
        self.cri = cri
        self.proc: subprocess.Popen[bytes] | None = None
        self.binaries = [OCIPY, RUNC]  # the runtimes whose leftover containers stop() deletes

    def config_text(self) -> str:
        disabled = "" if self.cri else 'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        return (
            "version = 2\n"
            f'root = "{self.base}/root"\n'
            f'state = "{self.base}/state"\n'
            f"{disabled}"
            "[grpc]\n"
            f'  address = "{self.socket}"\n'
            "[ttrpc]\n"
            f'  address = "{self.socket}.ttrpc"\n'
            f"{self.runtime_config}"
        )

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.runc_roots.mkdir(exist_ok=True)
        self.config.write_text(self.config_text())
        with open(self.logfile, "wb") as log:
            self.proc = subprocess.Popen(["containerd", "--config", str(self.config)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"containerd exited {self.proc.returncode}: {self.log_tail()}")
            if self.socket.exists() and self.ctr("version").returncode == 0:
                return
            time.sleep(0.05)
        raise AssertionError(f"containerd did not start: {self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def ctr_cmd(self, *args: str, namespace: str | None = None) -> list[str]:
        ns = ["--namespace", namespace] if namespace else []
        return ["ctr", "--address", str(self.socket), *ns, *args]

    def ctr(self, *args: str, namespace: str | None = None, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return subprocess.run(self.ctr_cmd(*args, namespace=namespace), capture_output=True, text=True,
                              timeout=timeout, input=input, stdin=None if input is not None else subprocess.DEVNULL)  # fmt: skip

    def runc_root(self, binary: str) -> str:
        return str(self.runc_roots / Path(binary).name)

    def namespaces(self) -> list[str]:
        return self.ctr("namespaces", "ls", "-q").stdout.split()

    def remove_everything(self, namespace: str) -> None:
        """Kill and delete every task and container of namespace (best effort)."""
        for task in self.ctr("tasks", "ls", "-q", namespace=namespace).stdout.split():
            self.ctr("tasks", "kill", "-a", "-s", "SIGKILL", task, namespace=namespace, timeout=20)
            self.ctr("tasks", "delete", "-f", task, namespace=namespace, timeout=20)
        for container in self.ctr("containers", "ls", "-q", namespace=namespace).stdout.split():
            self.ctr("containers", "delete", container, namespace=namespace, timeout=20)

    def stop(self) -> None:
        """Stop the daemon and its shims; delete every container; remove every file and mount."""
        shim_sockets = []
        try:
            if self.proc is not None and self.proc.poll() is None:
                for ns in self.namespaces():
                    ids = self.ctr("containers", "ls", "-q", namespace=ns).stdout.split()
                    shim_sockets += [self.shim_socket(ns, i) for i in ids]
                    self.remove_everything(ns)
        finally:
            if self.proc is not None:
                if self.proc.poll() is None:
                    self.proc.terminate()
                    try:
                        self.proc.wait(10)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait()
            kill_pids(pids_matching(SHIM, "-address", str(self.socket)))
            for binary in self.binaries:  # containers the shims left behind
                top = self.runc_root(binary)  # the shim adds the namespace: TOP/NS/ID
                for ns in os.listdir(top) if os.path.isdir(top) else []:
                    root = os.path.join(top, ns)
                    for cid in os.listdir(root):
                        subprocess.run([binary, "--root", root, "delete", "-f", cid], capture_output=True, timeout=30)
            for sock in shim_sockets:
                try:
                    os.unlink(sock)
                except OSError:
                    pass
            for ns in ("default", "k8s.io", "ocipy-interop"):  # containerd's per-namespace cgroup parents
                remove_empty_cgroups(ns)
            remove_tree(self.base)

    def shim_socket(self, namespace: str, container_id: str) -> str:
        """Where containerd 1.6 puts a runc.v2 shim's socket (runtime/v2/shim SocketAddress)."""
        digest = hashlib.sha256(os.path.join(str(self.socket), namespace, container_id).encode()).hexdigest()
        return f"/run/containerd/s/{digest}"


# --- podman --------------------------------------------------------------------------

# podman passes --log-format=json (and reads the runtime's JSON error log) only
# to the runtimes it knows, by name: ocipy is added here.
PODMAN_CONF = """[engine]
runtime_supports_json = ["crun", "runc", "kata", "runsc", "youki", "krun", "ocipy"]
events_logger = "file"
cgroup_manager = "cgroupfs"
"""

# This machine lacks CAP_SYS_RESOURCE: podman's default rlimits fail even with runc.
PODMAN_ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


class Podman:
    """podman on private --root/--runroot dirs (vfs storage, cgroupfs, file events)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.conf = base / "containers.conf"
        self.binaries = [OCIPY, RUNC]  # the runtimes whose leftover containers teardown() deletes

    def setup(self) -> None:
        for d in ("root", "runroot", "tmp"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(PODMAN_CONF)

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, CONTAINERS_CONF=str(self.conf))

    def cmd(self, *args: str, runtime: str | None = None) -> list[str]:
        rt = ["--runtime", runtime] if runtime else []
        return ["podman", "--root", str(self.base / "root"), "--runroot", str(self.base / "runroot"),
                "--tmpdir", str(self.base / "tmp"), "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
                "--events-backend", "file", *rt, *args]  # fmt: skip

    def __call__(self, *args: str, runtime: str | None = None, timeout: float = 90,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return subprocess.run(self.cmd(*args, runtime=runtime), capture_output=True, text=True, timeout=timeout,
                              env=self.env, input=input, stdin=None if input is not None else subprocess.DEVNULL)  # fmt: skip

    def teardown(self) -> None:
        """Remove every container (conmon, runtime state) and the private dirs."""
        ids: list[str] = []
        try:
            ids = self("ps", "-a", "-q", "--no-trunc", timeout=30).stdout.split()
            self("rm", "-a", "-f", "-t", "0", timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            kill_pids([p for p in pids_matching("conmon") if _cmdline_has(p, str(self.base))])
            for cid in ids:  # podman passes no --root: the runtimes' default state dirs
                for binary in self.binaries:
                    subprocess.run([binary, "delete", "-f", cid], capture_output=True, timeout=30)
            remove_empty_cgroups("libpod_parent")
            remove_tree(self.base)


def _cmdline_has(pid: int, text: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False


def build_pause_archive(workdir: Path, name: str = "docker.io/library/ocipy-pause:latest") -> Path:
    """The busybox image of build_busybox_image (same layout) as a pod's pause image: sleeps forever."""
    layout = workdir / "layout"
    archive = workdir / "pause-docker.tar"
    for args in (["tag", f"oci:{layout}:v1", "pause"],
                 ["config", f"oci:{layout}:pause", "--entrypoint", "/bin/sleep", "--cmd", "2147483647"],
                 ["export", f"oci:{layout}:pause", f"docker-archive:{archive}:{name}"]):  # fmt: skip
        proc = subprocess.run([OCIPY, "image", *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"ocipy image {' '.join(args)}: {proc.stderr}"
    return archive


# --- a minimal CRI client: gRPC over HTTP/2 (h2c) on containerd's unix socket -----------
# Debian has no crictl; the few CRI calls the tests need are encoded here by hand.


def pb(*fields: tuple[int, object]) -> bytes:
    """Protobuf: (number, value) pairs; int -> varint, str/bytes -> length-delimited, list -> repeated."""
    out = b""
    for num, value in fields:
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, bool | int):
                out += _varint(num << 3) + _varint(int(v))
            else:
                data = v.encode() if isinstance(v, str) else bytes(v)  # type: ignore[arg-type]
                out += _varint(num << 3 | 2) + _varint(len(data)) + data
    return out


def pb_map(num: int, mapping: dict[str, str]) -> list[tuple[int, object]]:
    return [(num, pb((1, k), (2, v))) for k, v in mapping.items()]


def pb_decode(data: bytes) -> dict[int, list[int | bytes]]:
    fields: dict[int, list[int | bytes]] = {}
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        num, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, i = _read_varint(data, i)
        elif wire == 2:
            size, i = _read_varint(data, i)
            value, i = data[i:i + size], i + size
        elif wire == 1:
            value, i = int.from_bytes(data[i:i + 8], "little"), i + 8
        elif wire == 5:
            value, i = int.from_bytes(data[i:i + 4], "little"), i + 4
        else:
            raise ValueError(f"protobuf wire type {wire}")
        fields.setdefault(num, []).append(value)
    return fields


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([low])
        out += bytes([low | 0x80])


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, i


class CriError(Exception):
    pass


class CriClient:
    """Unary gRPC calls to containerd's CRI services (runtime.v1), one connection per call."""

    def __init__(self, socket_path: str, log: Callable[[], str] | None = None) -> None:
        self.socket_path = socket_path
        self.log = log  # the daemon's log tail, for the error message (gRPC's own is Huffman-coded)

    def call(self, method: str, request: bytes, timeout: float = 60) -> dict[int, list[int | bytes]]:
        import socket
        import struct

        def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
            return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + struct.pack(">I", stream) + payload

        def literal(name: str, value: str) -> bytes:  # HPACK: literal, not indexed, no Huffman
            return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()

        service = "ImageService" if method in ("PullImage", "ListImages", "ImageStatus") else "RuntimeService"
        headers = b"".join(literal(k, v) for k, v in (
            (":method", "POST"), (":scheme", "http"), (":path", f"/runtime.v1.{service}/{method}"),
            (":authority", "localhost"), ("content-type", "application/grpc"), ("te", "trailers")))  # fmt: skip
        body = b"\x00" + struct.pack(">I", len(request)) + request
        data, blocks = b"", []
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.socket_path)
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + frame(1, 4, 1, headers)
                      + frame(0, 1, 1, body))  # fmt: skip
            buf = b""
            while True:
                while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
                    chunk = s.recv(65536)
                    if not chunk:
                        raise CriError(f"{method}: connection closed")
                    buf += chunk
                size, kind, flags = int.from_bytes(buf[:3], "big"), buf[3], buf[4]
                stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                payload, buf = buf[9:9 + size], buf[9 + size:]
                if kind == 4 and not flags & 1:  # SETTINGS: acknowledge
                    s.sendall(frame(4, 1, 0, b""))
                elif kind == 7:
                    raise CriError(f"{method}: GOAWAY {payload!r}")
                elif stream == 1 and kind == 0:
                    data += payload
                    if payload:  # keep the flow-control windows open for long replies
                        update = struct.pack(">I", len(payload))
                        s.sendall(frame(8, 0, 0, update) + frame(8, 0, 1, update))
                elif stream == 1 and kind == 1:
                    blocks.append(payload)
                if stream == 1 and flags & 1:  # END_STREAM
                    break
        status = _grpc_status(blocks[-1]) if blocks else None
        if status != 0 or len(data) < 5:
            raise CriError(f"{method}: grpc-status {status}\n" + (self.log() if self.log else ""))
        return pb_decode(data[5:])


def _grpc_status(block: bytes) -> int | None:
    """grpc-status from the trailers: the first literal header's value (Go sends it un-Huffman'd)."""
    i = 0
    while i < len(block):
        b = block[i]
        if b & 0x80:  # indexed field
            i += 1
            continue
        name_index = b & 0x3F if b & 0x40 else b & 0x0F  # literal with / without indexing
        i += 1
        if name_index == 0x3F or (name_index == 0x0F and not b & 0x40):
            raise CriError(f"HPACK integer continuation in trailers {block!r}")
        if name_index == 0:  # a new name: its string follows
            i += 1 + (block[i] & 0x7F)
        huffman, value_len = block[i] & 0x80, block[i] & 0x7F
        value = block[i + 1:i + 1 + value_len]
        if not huffman and value.isdigit():
            return int(value)
        i += 1 + value_len
    return None
