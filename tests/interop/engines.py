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
            for binary in (OCIPY, RUNC):  # containers the shims left behind
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
                for binary in (OCIPY, RUNC):
                    subprocess.run([binary, "delete", "-f", cid], capture_output=True, timeout=30)
            remove_tree(self.base)


def _cmdline_has(pid: int, text: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False
