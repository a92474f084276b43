"""`ocipy image run` as podman run: options, -p through slirp4netns, -d, and nothing left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from image_fixtures import ocipy

from support.helpers import OCIPY, alive, free_port, read_through_port, unique_id

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="runs containers"),
    pytest.mark.skipif(shutil.which("slirp4netns") is None, reason="slirp4netns is not installed (make install)"),
]


@pytest.fixture
def image(tmp_path: Path, busybox_rootfs: Path) -> str:
    layout = tmp_path / "layout"
    ocipy("image", "init", str(layout))
    ocipy("image", "new", f"oci:{layout}:bb")
    ocipy("image", "add-layer", f"oci:{layout}:bb", str(busybox_rootfs))
    ocipy("image", "config", f"oci:{layout}:bb", "--entrypoint", "/bin/sh", "--cmd", "-c", "--cmd", "echo from-cmd")
    return f"oci:{layout}:bb"




def test_options_reach_the_container(image: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    data = tmp_path / "data"
    data.mkdir()
    (data / "in").write_text("mounted")
    env_file = tmp_path / "env"
    env_file.write_text("FROM_FILE=1\n")
    storage = tmp_path / "storage"
    script = ('echo "$FOO $FROM_FILE $(cat /data/in) $(pwd) $(hostname) $(id -u)"; '
              'touch /data/ro 2>/dev/null || echo read-only-volume; touch / 2>/dev/null; '
              'touch /x 2>/dev/null || echo read-only-root; touch /tmp/ok && echo tmp-writable; '
              'cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null; true')  # fmt: skip
    proc = subprocess.run([OCIPY, "--root", str(state), "image", "run", "--rm", "--network", "none",
                           "-e", "FOO=bar", "--env-file", str(env_file), "-v", f"{data}:/data:ro", "-w", "/tmp",
                           "--hostname", "box", "-u", "1000", "--read-only", "--pids-limit", "50", image,
                           "-c", script], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OCIPY_STORAGE=str(storage)))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[0] == "bar 1 mounted /tmp box 1000", proc.stdout  # the Entrypoint kept, the Cmd replaced (podman)
    assert {"read-only-volume", "read-only-root", "tmp-writable", "50"} <= set(lines), proc.stdout
    assert os.listdir(storage / "containers") == [] and (not state.exists() or os.listdir(state) == [])


def test_image_cmd_and_bad_options(image: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.run([OCIPY, "--root", str(state), "image", "run", "--rm", "--network", "none", image],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout == "from-cmd\n", proc.stderr
    for bad, words in ((["-p", "80"], "-p 80: expected"), (["--network", "none", "-p", "1:2"], "-p needs"),
                       (["--memory", "lots"], "--memory lots"), (["-v", "rel:/x"], "-v rel:/x")):  # fmt: skip
        proc = subprocess.run([OCIPY, "--root", str(state), "image", "run", "--rm", *bad, image],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode != 0 and words in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_publish_detached_and_delete_cleans_up(image: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    storage = tmp_path / "storage"
    port = free_port()
    cid = unique_id("run")
    out, err = tmp_path / "out", tmp_path / "err"  # files: the detached container keeps its stdio open
    with out.open("w") as o, err.open("w") as e:
        code = subprocess.run([OCIPY, "--root", str(state), "image", "run", "-d", "--name", cid, "-p",
                               f"127.0.0.1:{port}:8080", image, "-c",
                               "while true; do echo served-from-inside | nc -l -p 8080; done"],
                              stdout=o, stderr=e, timeout=120, stdin=subprocess.DEVNULL,
                              env=dict(os.environ, OCIPY_STORAGE=str(storage))).returncode  # fmt: skip
    try:
        assert code == 0 and out.read_text().strip() == cid, err.read_text()
        read_through_port(port, b"served-from-inside")
        engine_dir = storage / "containers" / cid  # the container's directory: network.json names its slirp4netns
        slirp = int(json.loads((engine_dir / "network.json").read_text())["pid"])
        assert alive(slirp)
    finally:
        subprocess.run([OCIPY, "--root", str(state), "delete", "-f", cid], capture_output=True, timeout=60)
    deadline = time.monotonic() + 10
    while alive(slirp):
        assert time.monotonic() < deadline, "slirp4netns left running after delete"
        time.sleep(0.05)
    assert os.listdir(storage / "containers") == [], "delete left the bundle behind"  # its poststop hook removes it
    assert not state.exists() or os.listdir(state) == []
