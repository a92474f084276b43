"""containerd runs its containers through ocipy (issue 8).

A private containerd (socket, root and state under a temp dir) runs the same
steps twice: with runc as the shim's runtime binary and with ocipy
(`ctr run --runc-binary …`).  Exit codes and output must be the same.
Images are ocipy's own oci-archive and docker-archive exports, imported with
`ctr images import`.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from engines import (
    IMAGE,
    OCI_IMAGE,
    OCIPY,
    RUNC,
    Containerd,
    build_busybox_image,
    missing,
    run_in_pty,
)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: containerd creates namespaces and mounts"),
    pytest.mark.skipif(bool(missing("containerd", "ctr", "containerd-shim-runc-v2", RUNC)),
                       reason=f"not installed: {missing('containerd', 'ctr', 'containerd-shim-runc-v2', RUNC)}"),
]

NS = "ocipy-interop"
BINARIES = {"runc": RUNC, "ocipy": OCIPY}


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    work = tmp_path_factory.mktemp("ctd-images")
    daemon = Containerd(tmp_path_factory.mktemp("ctd"))
    try:
        archives = build_busybox_image(work)
        daemon.start()
        imported = daemon.ctr("images", "import", str(archives.docker_archive), namespace=NS)
        assert imported.returncode == 0, imported.stderr
        imported = daemon.ctr("images", "import", "--base-name", OCI_IMAGE.rsplit(":", 1)[0],
                              str(archives.oci_archive), namespace=NS)  # fmt: skip
        assert imported.returncode == 0, imported.stderr
        names = daemon.ctr("images", "ls", "-q", namespace=NS).stdout.split()
        assert IMAGE in names and OCI_IMAGE in names, names
        yield daemon
    finally:
        daemon.stop()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def ctd(containerd: Containerd) -> Iterator[Containerd]:
    """The module's containerd; every task and container a test made is removed after it."""
    yield containerd
    containerd.remove_everything(NS)
    for binary in BINARIES.values():
        root = Path(containerd.runc_root(binary)) / NS  # the shim adds the namespace
        left = sorted(os.listdir(root)) if root.is_dir() else []
        assert left == [], f"{binary} state left behind in {root}: {left}"


def name(binary: str) -> str:
    return f"{binary}-{uuid.uuid4().hex[:8]}"


def run_args(ctd: Containerd, binary: str, *args: str) -> list[str]:
    """`ctr run` options that make the shim call `binary` with a private --root."""
    return ["run", "--runc-binary", BINARIES[binary], "--runc-root", ctd.runc_root(BINARIES[binary]), *args]


def normalize(text: str, *ids: str) -> str:
    # ctr resizes the pty in the background and may log (in colour) that the process is gone: a race
    text = "".join(line for line in text.splitlines(keepends=True) if "resize pty" not in line)
    for i in ids:
        text = text.replace(i, "ID")
    text = re.sub(r'time="[^"]*"', 'time="T"', text)
    return re.sub(r"\b\d{4,}\b", "N", text)  # pids, timestamps


def compare(steps: Callable[[Containerd, str], Any], ctd: Containerd) -> Any:
    """Run steps with runc, then with ocipy; the results must be equal. Returns ocipy's."""
    results = {binary: steps(ctd, binary) for binary in BINARIES}
    assert results["ocipy"] == results["runc"]
    return results["ocipy"]


def wait_status(ctd: Containerd, cid: str, status: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [line.split() for line in ctd.ctr("tasks", "ls", namespace=NS).stdout.splitlines()[1:]]
        if any(r[0] == cid and r[-1] == status for r in rows):
            return
        time.sleep(0.1)
    raise AssertionError(f"task {cid} never became {status}: {ctd.ctr('tasks', 'ls', namespace=NS).stdout}")


# --- ctr run (foreground) ------------------------------------------------------------


@pytest.mark.parametrize("image", [IMAGE, OCI_IMAGE], ids=["docker-archive", "oci-archive"])
def test_run_foreground_output_and_exit_code(ctd: Containerd, image: str) -> None:
    script = "echo out; echo err >&2; id; pwd; echo $PATH; hostname; ls /dev; grep ^Cap /proc/self/status; exit 3"

    def steps(ctd: Containerd, binary: str) -> Any:
        cid = name(binary)
        p = ctd.ctr(*run_args(ctd, binary, "--rm", image, cid, "sh", "-c", script), namespace=NS)
        return p.returncode, normalize(p.stdout, cid), normalize(p.stderr, cid)

    rc, out, err = compare(steps, ctd)
    assert rc == 3
    assert out.startswith("out\nuid=0(root) gid=0(root)") and "CapBnd" in out
    assert err == "err\n"


def test_run_stdin_signal_exit_and_true(ctd: Containerd) -> None:
    def steps(ctd: Containerd, binary: str) -> Any:
        results = []
        for args, stdin in ((["true"], None), (["sh", "-c", "kill -KILL $$; echo pid 1 ignores it"], None), (["head", "-n", "1"], "hello stdin\n"),
                            (["sh", "-c", "exit 255"], None)):  # fmt: skip
            cid = name(binary)
            p = ctd.ctr(*run_args(ctd, binary, "--rm", IMAGE, cid, *args), namespace=NS, input=stdin)
            results.append((p.returncode, p.stdout, normalize(p.stderr, cid)))
        return results

    results = compare(steps, ctd)
    assert [r[0] for r in results] == [0, 0, 0, 255]
    assert results[1][1] == "pid 1 ignores it\n"
    assert results[2][1] == "hello stdin\n"


def test_run_missing_executable(ctd: Containerd) -> None:
    """A failed create: same exit code; the error is ocipy's message from its JSON log."""
    errors = {}
    for binary in BINARIES:
        cid = name(binary)
        p = ctd.ctr(*run_args(ctd, binary, "--rm", IMAGE, cid, "/nonexistent"), namespace=NS)
        assert p.returncode == 1, p
        errors[binary] = p.stderr
        ctd.ctr("containers", "delete", cid, namespace=NS)
    for err in errors.values():
        assert 'OCI runtime create failed' in err and 'exec: "/nonexistent"' in err, errors
        assert "no such file or directory" in err, errors
    assert "runc" not in errors["ocipy"], errors


# --- ctr run --tty -----------------------------------------------------------------


def test_run_tty(ctd: Containerd) -> None:
    def steps(ctd: Containerd, binary: str) -> Any:
        cid = name(binary)
        rc, out = run_in_pty(ctd.ctr_cmd(*run_args(ctd, binary, "-t", "--rm", IMAGE, cid, "sh", "-c",
                                                   "tty; [ -t 0 ] && echo stdin-tty; echo hi; exit 5"),
                                         namespace=NS))  # fmt: skip
        return rc, normalize(out, cid)

    rc, out = compare(steps, ctd)
    assert rc == 5 and "/dev/pts/0\n" in out and "stdin-tty\n" in out and "hi\n" in out


def test_run_tty_interactive_shell(ctd: Containerd) -> None:
    def steps(ctd: Containerd, binary: str) -> Any:
        cid = name(binary)
        rc, out = run_in_pty(ctd.ctr_cmd(*run_args(ctd, binary, "-t", "--rm", IMAGE, cid, "sh"), namespace=NS),
                             keys=b"echo $((6*7))\nexit 2\n")  # fmt: skip
        return rc, "\n42\n" in out

    assert compare(steps, ctd) == (2, True)


# --- ctr run -d, then task pause/resume/ps/metrics/kill/delete ---------------------------

LOOP = "trap 'echo got TERM; exit 7' TERM; echo started; while :; do sleep 0.1; done"


def test_detached_task_lifecycle(ctd: Containerd) -> None:
    def steps(ctd: Containerd, binary: str) -> Any:
        cid = name(binary)
        log = ctd.base / f"{cid}.log"
        seen: list[Any] = []
        p = ctd.ctr(*run_args(ctd, binary, "-d", "--log-uri", f"file://{log}", IMAGE, cid, "sh", "-c", LOOP),
                    namespace=NS)  # fmt: skip
        seen.append(("run -d", p.returncode, p.stdout, p.stderr))
        wait_status(ctd, cid, "RUNNING")
        for op, status in (("pause", "PAUSED"), ("resume", "RUNNING")):
            p = ctd.ctr("tasks", op, cid, namespace=NS)
            seen.append((op, p.returncode, p.stdout, p.stderr))
            wait_status(ctd, cid, status)
        p = ctd.ctr("tasks", "ps", cid, namespace=NS)
        rows = p.stdout.splitlines()
        seen.append(("ps", p.returncode, rows[0].split(), len(rows) >= 2))
        p = ctd.ctr("tasks", "metrics", cid, namespace=NS)
        metrics = {line.split()[0] for line in p.stdout.splitlines() if line.strip()}
        seen.append(("metrics", p.returncode, {"memory.usage_in_bytes", "pids.current"} <= metrics))
        p = ctd.ctr("tasks", "delete", cid, namespace=NS)  # running: refused by containerd
        seen.append(("delete running", p.returncode))
        p = ctd.ctr("tasks", "kill", cid, namespace=NS)  # SIGTERM
        seen.append(("kill", p.returncode, p.stdout, p.stderr))
        wait_status(ctd, cid, "STOPPED")
        p = ctd.ctr("tasks", "delete", cid, namespace=NS)
        seen.append(("delete", p.returncode, p.stdout, normalize(p.stderr, cid)))
        p = ctd.ctr("containers", "delete", cid, namespace=NS)
        seen.append(("containers delete", p.returncode, p.stdout, p.stderr))
        seen.append(("log", log.read_text()))
        return seen

    seen = compare(steps, ctd)
    assert [s[1] for s in seen[:-1]] == [0, 0, 0, 0, 0, 1, 0, 0, 0], seen
    assert "exit code 7" in seen[-3][3], seen
    assert seen[-1] == ("log", "started\ngot TERM\n")


def test_kill_all_and_signal_by_name(ctd: Containerd) -> None:
    def steps(ctd: Containerd, binary: str) -> Any:
        cid = name(binary)
        p = ctd.ctr(*run_args(ctd, binary, "-d", "--null-io", IMAGE, cid, "sh", "-c",
                              "sleep 1000 & sleep 1000 & wait"), namespace=NS)  # fmt: skip
        assert p.returncode == 0, p.stderr
        wait_status(ctd, cid, "RUNNING")
        deadline = time.monotonic() + 10
        while len(ctd.ctr("tasks", "ps", cid, namespace=NS).stdout.splitlines()) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        nprocs = len(ctd.ctr("tasks", "ps", cid, namespace=NS).stdout.splitlines()) - 1
        p = ctd.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", cid, namespace=NS)
        wait_status(ctd, cid, "STOPPED")
        d = ctd.ctr("tasks", "delete", cid, namespace=NS)
        ctd.ctr("containers", "delete", cid, namespace=NS)
        return nprocs, p.returncode, p.stderr, d.returncode, normalize(d.stderr, cid)

    nprocs, rc, _, drc, derr = compare(steps, ctd)
    assert (nprocs, rc, drc) == (3, 0, 0) and "exit code 137" in derr


# --- ctr task exec ---------------------------------------------------------------------


def started(ctd: Containerd, binary: str) -> str:
    cid = name(binary)
    p = ctd.ctr(*run_args(ctd, binary, "-d", "--null-io", IMAGE, cid, "sleep", "100000"), namespace=NS)
    assert p.returncode == 0, p.stderr
    wait_status(ctd, cid, "RUNNING")
    return cid


def test_task_exec(ctd: Containerd) -> None:
    def steps(ctd: Containerd, binary: str) -> Any:
        cid = started(ctd, binary)
        out = []
        for i, (opts, cmd, stdin) in enumerate((
            ([], ["sh", "-c", "echo in exec; echo err >&2; id -u; exit 4"], None),
            ([], ["head", "-n", "1"], "piped\n"),
            (["--cwd", "/tmp", "--user", "1000"], ["sh", "-c", "pwd; id"], None),
        )):
            p = ctd.ctr("tasks", "exec", "--exec-id", f"x{i}", *opts, cid, *cmd, namespace=NS, input=stdin)
            out.append((p.returncode, p.stdout, p.stderr))
        return out

    results = compare(steps, ctd)
    assert results[0] == (4, "in exec\n0\n", "err\n")
    assert results[1] == (0, "piped\n", "")
    assert results[2][0] == 0 and results[2][1].startswith("/tmp\nuid=1000(app)")


def test_task_exec_tty(ctd: Containerd) -> None:
    def steps(ctd: Containerd, binary: str) -> Any:
        cid = started(ctd, binary)
        rc, out = run_in_pty(ctd.ctr_cmd("tasks", "exec", "-t", "--exec-id", "tty1", cid, "sh", "-c",
                                         "tty; [ -t 1 ] && echo is-tty; exit 6", namespace=NS))  # fmt: skip
        return rc, normalize(out, cid)

    rc, out = compare(steps, ctd)
    assert rc == 6 and out.startswith("/dev/pts/") and "is-tty\n" in out


def test_task_exec_missing_executable(ctd: Containerd) -> None:
    errors = {}
    for binary in BINARIES:
        cid = started(ctd, binary)
        p = ctd.ctr("tasks", "exec", "--exec-id", "bad", cid, "/nonexistent", namespace=NS)
        assert p.returncode == 1, p
        errors[binary] = p.stderr
        # the container is unharmed
        p = ctd.ctr("tasks", "exec", "--exec-id", "good", cid, "true", namespace=NS)
        assert p.returncode == 0, p.stderr
    for err in errors.values():
        assert "OCI runtime exec failed" in err and 'exec: "/nonexistent"' in err, errors
