"""Small helpers shared by the tests (import as `from support.helpers import ...`)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from ocipy.spec.config import Config, parse

REPO = Path(__file__).resolve().parent.parent.parent
OCIPY = str(REPO / ".venv" / "bin" / "ocipy")
IS_ROOT = os.geteuid() == 0

needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root: creates namespaces and mounts")


def unique_id(prefix: str = "t") -> str:
    """A container id no other test (or test run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def parsed_config(partial: dict) -> Config:
    """A config.json fragment (no ociVersion or root needed) through the one parse, as create reads it."""
    return parse({"ociVersion": "1.0.2", "root": {"path": "rootfs"}, **partial})


NOBODY = 65534
_AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def nobody_command(view: Path, *argv: str, python: bool = False) -> list[str]:
    """`argv` run as nobody: the ocipy CLI (or, with `python`, the venv's
    interpreter with `argv` as its arguments) from checkout `view` (see
    `nobody_view`).  When the checkout itself is out of nobody's reach (a
    clone under a 0700 directory, as CI's), `view` is a bind of it made in a
    private mount namespace of that command alone: nothing to unmount after."""
    interpreter = str(view / ".venv" / "bin" / "python")
    if python:
        # the editable install's .pth names the checkout's real path: give the view's src instead
        inner = [interpreter, *argv] if view == REPO else ["env", f"PYTHONPATH={view / 'src'}", interpreter, *argv]
    elif view == REPO:
        inner = [OCIPY, *argv]
    else:
        code = (f"import sys; sys.path[:0] = [{str(view / 'src')!r}]\n"
                "from ocipy.cli.main import entry\nentry()")  # fmt: skip
        inner = [interpreter, "-I", "-c", code, *argv]
    if view == REPO:
        return _AS_NOBODY + inner
    script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh", str(REPO), str(view), *_AS_NOBODY, *inner]


def nobody_can_reach_checkout() -> bool:
    import subprocess

    probe = _AS_NOBODY + ["test", "-r", str(REPO / "src" / "ocipy" / "__init__.py")]
    return subprocess.run(probe, capture_output=True).returncode == 0


def nobody_view(tmp_root: str = "/var/tmp") -> tuple[Path, Callable[[], None]]:
    """(where nobody finds the checkout, cleanup): REPO itself when nobody can
    read it, else an empty 0755 directory that `nobody_command` binds it on."""
    if nobody_can_reach_checkout():
        return REPO, lambda: None
    import tempfile

    view = Path(tempfile.mkdtemp(prefix="ocipy-nobody-view-", dir=tmp_root))
    os.chmod(view, 0o755)
    return view, lambda: os.rmdir(view)


def alive(pid: int) -> bool:
    """`pid` runs (a zombie counts as gone)."""
    from ocipy.linux import procstat

    fields = procstat.fields(pid)
    return fields is not None and fields[procstat.STATE] != b"Z"


def zombie_children() -> set[int]:
    """This process's children that exited and were not reaped."""
    from ocipy.linux import procstat

    me = os.getpid()
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = procstat.fields(int(entry))
            if fields is not None and fields[procstat.STATE] == b"Z" and int(fields[procstat.PPID]) == me:
                out.add(int(entry))
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_through_port(port: int, marker: bytes, timeout: float = 20) -> bytes:
    """What a server answers on 127.0.0.1:`port`, retried until it says `marker`."""
    import socket

    got = b""
    deadline = time.monotonic() + timeout
    while marker not in got:
        assert time.monotonic() < deadline, f"no {marker!r} through 127.0.0.1:{port}: {got!r}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.shutdown(socket.SHUT_WR)
                got = s.recv(100)
        except OSError:
            time.sleep(0.1)
    return got


def load_script(name: str) -> ModuleType:
    """scripts/NAME.py as a module (the build scripts' functions, without running their main)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
