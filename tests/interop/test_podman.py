"""podman (through conmon) runs its containers with ocipy (issue 8).

podman runs on private --root/--runroot dirs with the vfs storage driver,
cgroupfs and file events (no systemd here); the same steps run with
`--runtime runc` and `--runtime ocipy` and must give the same results.
The image is ocipy's own docker-archive export, loaded with `podman load`.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from engines import (
    IMAGE,
    OCIPY,
    PODMAN_ULIMITS,
    RUNC,
    Podman,
    build_busybox_image,
    missing,
    run_in_pty,
)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: podman creates namespaces and mounts"),
    pytest.mark.skipif(bool(missing("podman", "conmon", RUNC)), reason=f"not installed: {missing('podman', 'conmon', RUNC)}"),
]

BINARIES = {"runc": RUNC, "ocipy": OCIPY}
# no systemd, no CNI config: no network; no CAP_SYS_RESOURCE: rlimits podman can set
RUN = ["--network", "none", *PODMAN_ULIMITS]


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    work = tmp_path_factory.mktemp("pm-images")
    pm = Podman(tmp_path_factory.mktemp("pm"))
    try:
        archives = build_busybox_image(work)
        pm.setup()
        p = pm("load", "-i", str(archives.docker_archive))
        assert p.returncode == 0, p.stderr
        assert f"Loaded image: {IMAGE}" in p.stdout, p.stdout
        yield pm
    finally:
        pm.teardown()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def pm(podman: Podman) -> Iterator[Podman]:
    """The module's podman; every container a test made is removed after it."""
    yield podman
    left = podman("ps", "-a", "-q").stdout.split()
    podman("rm", "-a", "-f", "-t", "0")
    assert left == [], f"containers left behind: {left}"


def name(binary: str) -> str:
    return f"{binary}-{uuid.uuid4().hex[:8]}"


def normalize(text: str, *ids: str) -> str:
    for i in ids:
        text = text.replace(i, "ID")
    text = re.sub(r'time="[^"]*"', 'time="T"', text)
    return re.sub(r"\b[0-9a-f]{64}\b", "HASH", text)


def compare(steps: Callable[[Podman, str], Any], pm: Podman) -> Any:
    """Run steps with runc, then with ocipy; the results must be equal. Returns ocipy's."""
    results = {binary: steps(pm, binary) for binary in BINARIES}
    assert results["ocipy"] == results["runc"]
    return results["ocipy"]


def status(pm: Podman, cid: str, runtime: str) -> str:
    return pm("inspect", "--format", "{{.State.Status}}", cid, runtime=runtime).stdout.strip()


def wait_status(pm: Podman, cid: str, runtime: str, want: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if status(pm, cid, runtime) == want:
            return
        time.sleep(0.1)
    raise AssertionError(f"{cid} never became {want}: {status(pm, cid, runtime)}")


def test_run_rm(pm: Podman) -> None:
    script = "echo out; echo err >&2; id; pwd; hostname | wc -c; ls /dev; grep ^Cap /proc/self/status; exit 3"

    def steps(pm: Podman, binary: str) -> Any:
        results = []
        for args, stdin in ((["sh", "-c", script], None), (["true"], None), (["-i", IMAGE, "head", "-n1"], "piped\n")):
            cmd = args if args[0] == "-i" else [IMAGE, *args]
            p = pm("run", "--rm", *RUN, *cmd, runtime=BINARIES[binary], input=stdin)
            results.append((p.returncode, p.stdout, p.stderr))
        return results

    results = compare(steps, pm)
    assert [r[0] for r in results] == [3, 0, 0]
    assert results[0][1].startswith("out\nuid=0(root) gid=0(root)") and results[0][2] == "err\n"
    assert results[2][1] == "piped\n"


def test_detached_exec_logs_pause_stop_rm(pm: Podman) -> None:
    loop = "trap 'echo got TERM; exit 7' TERM; echo started; while :; do sleep 0.1; done"

    def steps(pm: Podman, binary: str) -> Any:
        rt, cid = BINARIES[binary], name(binary)
        seen: list[Any] = []
        p = pm("run", "-d", "--name", cid, *RUN, IMAGE, "sh", "-c", loop, runtime=rt)
        seen.append(("run -d", p.returncode, len(p.stdout.strip()), p.stderr))
        wait_status(pm, cid, rt, "running")
        assert pm("inspect", "--format", "{{.OCIRuntime}}", cid, runtime=rt).stdout.strip() == rt
        p = pm("exec", cid, "sh", "-c", "echo in exec; echo err >&2; exit 4", runtime=rt)
        seen.append(("exec", p.returncode, p.stdout, p.stderr))
        p = pm("exec", "-i", "--user", "1000", "--workdir", "/tmp", cid, "sh", "-c", "pwd; id -u; head -n1",
               runtime=rt, input="to exec\n")  # fmt: skip
        seen.append(("exec -i", p.returncode, p.stdout, p.stderr))
        p = pm("exec", cid, "/nonexistent", runtime=rt)
        seen.append(("exec missing", p.returncode))
        p = pm("pause", cid, runtime=rt)
        seen.append(("pause", p.returncode, status(pm, cid, rt)))
        p = pm("exec", cid, "true", runtime=rt)
        seen.append(("exec paused", p.returncode))
        p = pm("unpause", cid, runtime=rt)
        seen.append(("unpause", p.returncode, status(pm, cid, rt)))
        p = pm("top", cid, "pid", "args", runtime=rt)
        seen.append(("top", p.returncode, "sh -c trap" in p.stdout))
        p = pm("stop", "-t", "10", cid, runtime=rt)
        seen.append(("stop", p.returncode, p.stdout, p.stderr))
        p = pm("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", cid, runtime=rt)
        seen.append(("inspect", p.stdout))
        p = pm("logs", cid, runtime=rt)
        seen.append(("logs", p.returncode, p.stdout))
        p = pm("rm", cid, runtime=rt)
        seen.append(("rm", p.returncode, p.stdout.strip() == cid))
        return normalize(repr(seen), cid)

    seen = eval(compare(steps, pm))  # noqa: S307 - our own repr
    assert seen[0] == ("run -d", 0, 64, "")
    assert seen[1] == ("exec", 4, "in exec\n", "err\n")
    assert seen[2] == ("exec -i", 0, "/tmp\n1000\nto exec\n", "")
    assert seen[3][1] != 0
    assert seen[4] == ("pause", 0, "paused") and seen[5][1] != 0 and seen[6] == ("unpause", 0, "running")
    assert seen[7] == ("top", 0, True)
    assert seen[8][1] == 0 and seen[9] == ("inspect", "exited 7\n")
    assert seen[10] == ("logs", 0, "started\ngot TERM\n") and seen[11] == ("rm", 0, True)


def test_kill(pm: Podman) -> None:
    def steps(pm: Podman, binary: str) -> Any:
        rt, cid = BINARIES[binary], name(binary)
        pm("run", "-d", "--name", cid, *RUN, IMAGE, "sleep", "1000", runtime=rt)
        wait_status(pm, cid, rt, "running")
        k = pm("kill", "-s", "KILL", cid, runtime=rt)
        w = pm("wait", cid, runtime=rt)
        r = pm("rm", cid, runtime=rt)
        return k.returncode, w.stdout, r.returncode

    assert compare(steps, pm) == (0, "137\n", 0)


def test_run_interactive_tty(pm: Podman) -> None:
    def steps(pm: Podman, binary: str) -> Any:
        rc, out = run_in_pty(pm.cmd("run", "-it", "--rm", *RUN, IMAGE, "sh", runtime=BINARIES[binary]),
                             keys=b"tty; stty size; echo $((6*7))\nexit 2\n", env=pm.env)  # fmt: skip
        return rc, "/dev/pts/0\n" in out, "\n24 80\n" in out, "\n42\n" in out

    assert compare(steps, pm) == (2, True, True, True)


def test_exec_tty(pm: Podman) -> None:
    def steps(pm: Podman, binary: str) -> Any:
        rt, cid = BINARIES[binary], name(binary)
        pm("run", "-d", "--name", cid, *RUN, IMAGE, "sleep", "1000", runtime=rt)
        wait_status(pm, cid, rt, "running")
        rc, out = run_in_pty(pm.cmd("exec", "-it", cid, "sh", "-c", "[ -t 0 ] && tty; exit 5", runtime=rt),
                             env=pm.env)  # fmt: skip
        pm("rm", "-f", "-t", "0", cid, runtime=rt)
        return rc, out.startswith("/dev/pts/")

    assert compare(steps, pm) == (5, True)


def test_resource_limits_and_security_options(pm: Podman) -> None:
    script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max;"
              " grep -E '^Cap(Prm|Eff|Bnd)' /proc/self/status; touch /x; echo touch=$?; touch /tmp/x && echo tmp-ok;"
              " chown 1 /tmp/x; echo chown=$?")  # fmt: skip

    def steps(pm: Podman, binary: str) -> Any:
        p = pm("run", "--rm", *RUN, "--memory", "64m", "--pids-limit", "50", "--cap-drop", "CHOWN",
               "--cap-drop", "NET_RAW", "--read-only", IMAGE, "sh", "-c", script, runtime=BINARIES[binary])  # fmt: skip
        return p.returncode, p.stdout, p.stderr

    rc, out, err = compare(steps, pm)
    lines = out.splitlines()
    assert rc == 0 and lines[:2] == [str(64 << 20), "50"], out
    assert int(lines[2].split()[1], 16) & (1 << 0) == 0  # CAP_CHOWN dropped
    assert "touch=1" in out and "tmp-ok" in out and "chown=1" in out
    assert "Read-only file system" in err


def test_failed_start_shows_ocipy_error(pm: Podman) -> None:
    """podman shows the message ocipy wrote to its --log (JSON); exit code as with runc."""
    results = {}
    for binary, rt in BINARIES.items():
        p = pm("run", "--rm", *RUN, IMAGE, "/nonexistent", runtime=rt)
        results[binary] = (p.returncode, p.stderr)
    assert results["ocipy"][0] == results["runc"][0] == 127, results
    err = results["ocipy"][1]
    assert f'{OCIPY}: exec: "/nonexistent": stat /nonexistent: no such file or directory' in err, err
    assert "runc" not in err, err
