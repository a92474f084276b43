"""The local image store (`ocipy image pull|ls|tag|rm|prune`, `image run` from it):
names, snapshots shared between images and containers, nothing left behind,
and parallel processes that never corrupt it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from image_fixtures import build_layout, entry, ocipy

from support.helpers import OCIPY, unique_id, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.skipif(os.geteuid() != 0, reason="mounts overlayfs, runs containers")]


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


@pytest.fixture
def layout(tmp_path: Path, busybox_rootfs: Path) -> Path:
    """oci:LAYOUT:bb — busybox, a second layer, and an Entrypoint/Cmd."""
    path = tmp_path / "layout"
    ocipy("image", "init", str(path))
    ocipy("image", "new", f"oci:{path}:bb")
    ocipy("image", "add-layer", f"oci:{path}:bb", str(busybox_rootfs))
    extra = tmp_path / "extra"
    (extra / "etc").mkdir(parents=True)
    (extra / "etc" / "motd").write_text("second layer\n")
    ocipy("image", "add-layer", f"oci:{path}:bb", str(extra))
    ocipy("image", "config", f"oci:{path}:bb", "--entrypoint", "/bin/sh", "--cmd", "-c", "--cmd", "cat /etc/motd")
    return path


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    store = tmp_path / "storage"
    yield store
    # nothing may stay mounted below a store a test made, whatever happened
    for mnt in reversed(_mounts_under(store)):
        subprocess.run(["umount", "-l", mnt], check=False)
    assert not _mounts_under(store)


def _ocipy(storage: Path, state: Path, *args: str, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([OCIPY, "--root", str(state), "image", *args], capture_output=True, text=True,
                          timeout=180, env=dict(os.environ, OCIPY_STORAGE=str(storage)), **kw)  # type: ignore[call-overload]
    if check:
        assert proc.returncode == 0, f"ocipy image {' '.join(args)}: {proc.stderr}"
    return proc  # type: ignore[no-any-return]


def _snapshots(storage: Path) -> list[str]:
    """The complete snapshots (named by chain id; .tmp-* and the driver probe are not)."""
    return sorted(n for n in os.listdir(storage / "snapshots") if len(n) == 64)


def test_pull_names_tag_rm_prune(layout: Path, storage: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    out = _ocipy(storage, state, "pull", "-q", f"oci:{layout}:bb").stdout.strip()
    assert out.startswith("sha256:")
    assert len(_snapshots(storage)) == 2  # one per layer, unpacked at pull
    listed = json.loads(_ocipy(storage, state, "ls", "--json").stdout)
    assert [i["name"] for i in listed] == ["localhost/layout:bb"] and listed[0]["digest"] == out
    # a short name resolves where it is unambiguous
    _ocipy(storage, state, "tag", "layout:bb", "example.com/team/app:2")
    _ocipy(storage, state, "tag", "localhost/layout:bb", "example.org/other/app:2")
    names = {i["name"] for i in json.loads(_ocipy(storage, state, "ls", "--json").stdout)}
    assert names == {"localhost/layout:bb", "example.com/team/app:2", "example.org/other/app:2"}
    amb = _ocipy(storage, state, "run", "--rm", "--network", "none", "--pull", "never", "app:2", check=False)
    assert amb.returncode != 0 and "ambiguous" in amb.stderr and len(amb.stderr.strip().splitlines()) == 1
    # removing names keeps what another name uses; prune then takes only what nothing uses
    _ocipy(storage, state, "rm", "example.com/team/app:2", "example.org/other/app:2")
    assert _ocipy(storage, state, "prune").stdout == ""
    assert len(_snapshots(storage)) == 2
    _ocipy(storage, state, "rm", "layout:bb")
    pruned = _ocipy(storage, state, "prune").stdout.splitlines()
    assert sum(line.startswith("removed snapshot") for line in pruned) == 2
    assert sum(line.startswith("removed blob") for line in pruned) == 4  # 2 layers, config, manifest
    assert _snapshots(storage) == [] and os.listdir(storage / "content" / "blobs" / "sha256") == []
    missing = _ocipy(storage, state, "rm", "layout:bb", check=False)
    assert missing.returncode != 0 and "not in the store" in missing.stderr


def test_run_from_store_shares_snapshots_and_leaves_nothing(layout: Path, storage: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    _ocipy(storage, state, "pull", "-q", f"oci:{layout}:bb")
    snaps = _snapshots(storage)
    # the image's Cmd, from the store by its short name; --pull never: nothing is read again
    proc = _ocipy(storage, state, "run", "--rm", "--network", "none", "--pull", "never", "layout:bb")
    assert proc.stdout == "second layer\n"
    # a write lands in the container's upper dir, never in a snapshot
    cid = unique_id("store")
    proc = _ocipy(storage, state, "run", "-d", "--name", cid, "--network", "none", "layout:bb", "-c",
                  "echo changed > /etc/motd; rm /bin/ls; sleep 60", stdin=subprocess.DEVNULL)
    try:
        cdir = storage / "containers" / cid
        assert wait_for(lambda: (cdir / "upper" / "etc" / "motd").exists(), 10)
        assert (cdir / "upper" / "etc" / "motd").read_text() == "changed\n"
        assert wait_for(lambda: (cdir / "upper" / "bin" / "ls").exists(), 10)
        assert os.stat(cdir / "upper" / "bin" / "ls").st_rdev == 0  # an overlay whiteout, 0:0
        assert _mounts_under(cdir) == [str(cdir / "rootfs")]
        # a second container from the same image: same snapshots, the old file
        proc = _ocipy(storage, state, "run", "--rm", "--network", "none", "layout:bb")
        assert proc.stdout == "second layer\n"
        assert _snapshots(storage) == snaps
        # prune keeps what a container uses even when no name does
        _ocipy(storage, state, "rm", "layout:bb")
        _ocipy(storage, state, "prune")
        assert _snapshots(storage) == snaps
    finally:
        subprocess.run([OCIPY, "--root", str(state), "delete", "-f", cid], capture_output=True, timeout=60)
    # delete's poststop hook unmounted and removed the container's directory
    assert os.listdir(storage / "containers") == [] and not _mounts_under(storage)
    _ocipy(storage, state, "prune")
    assert _snapshots(storage) == []
    assert not state.exists() or os.listdir(state) == []


def test_duplicate_name_refused_before_any_work(layout: Path, storage: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    cid = unique_id("dup")
    _ocipy(storage, state, "run", "-d", "--name", cid, "--network", "none", f"oci:{layout}:bb", "-c", "sleep 60",
           stdin=subprocess.DEVNULL)
    try:
        shutil.rmtree(layout)  # the second run must not even read its image
        proc = _ocipy(storage, state, "run", "--rm", "--name", cid, "--network", "none", f"oci:{layout}:bb",
                      check=False)
        assert proc.returncode != 0 and f"container with id exists: {cid}" in proc.stderr, proc.stderr
        assert os.listdir(storage / "containers") == [cid]
    finally:
        subprocess.run([OCIPY, "--root", str(state), "delete", "-f", cid], capture_output=True, timeout=60)
    assert os.listdir(storage / "containers") == []


def test_failures_leave_no_container_directory(layout: Path, storage: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    # bad options are refused before anything is read or made: not even the store
    proc = _ocipy(storage, state, "run", "--rm", "--network", "none", "-w", "relative", f"oci:{layout}:bb",
                  check=False)
    assert proc.returncode != 0 and "-w relative" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not storage.exists()
    # fails after the image is ready and the rootfs mounted: a user the image's /etc/passwd lacks
    proc = _ocipy(storage, state, "run", "--rm", "--network", "none", "-u", "nosuchuser", f"oci:{layout}:bb",
                  check=False)
    assert proc.returncode != 0 and "-u nosuchuser" in proc.stderr, proc.stderr
    assert os.listdir(storage / "containers") == [] and not _mounts_under(storage)
    # fails in the runtime: the program does not exist
    proc = _ocipy(storage, state, "run", "--rm", "--network", "none", "--entrypoint", "/no/such",
                  f"oci:{layout}:bb", check=False)
    assert proc.returncode != 0
    assert os.listdir(storage / "containers") == [] and not _mounts_under(storage)
    assert not state.exists() or os.listdir(state) == []
    proc = _ocipy(storage, state, "run", "--rm", "--network", "none", "--pull", "never", "nosuch:1", check=False)
    assert proc.returncode != 0 and "not in the store" in proc.stderr


def test_sigkilled_engine_is_swept(layout: Path, storage: Path, tmp_path: Path) -> None:
    """SIGKILL of `image run --rm` (the runtime runs in it): `ocipy delete` of the
    container cleans up, and a directory whose container never came to be is
    swept by the next run or prune."""
    state = tmp_path / "state"
    cid = unique_id("kill")
    proc = subprocess.Popen([OCIPY, "--root", str(state), "image", "run", "--rm", "--name", cid, "--network",
                             "none", f"oci:{layout}:bb", "-c", "sleep 60"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, OCIPY_STORAGE=str(storage)))  # fmt: skip
    try:
        assert wait_for(lambda: (state / cid / "state.json").exists(), 30)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        subprocess.run([OCIPY, "--root", str(state), "delete", "-f", cid], capture_output=True, timeout=60)
    assert os.listdir(storage / "containers") == [] and not _mounts_under(storage)
    # a directory left by an engine killed before its container existed
    stale = storage / "containers" / "stale-one"
    (stale / "rootfs").mkdir(parents=True)
    (stale / "owner.json").write_text(json.dumps({"id": "stale-one", "root": str(state), "chains": []}))
    # and half an unpack (a killed pull's .tmp-* that no process holds)
    (storage / "snapshots" / ".tmp-killed" / "fs" / "etc").mkdir(parents=True)
    _ocipy(storage, state, "run", "--rm", "--network", "none", f"oci:{layout}:bb")
    assert os.listdir(storage / "containers") == []
    assert not (storage / "snapshots" / ".tmp-killed").exists()


@pytest.mark.parametrize("round_", range(3))
def test_parallel_pulls_and_prune_never_corrupt(tmp_path: Path, storage: Path, round_: int) -> None:
    """Four processes pull the same image (sharing a layer with a second image)
    into a store that does not exist yet while a fifth prunes in a loop: every
    pull succeeds, the store verifies and holds one snapshot per distinct layer.
    (Three rounds: making the store itself is part of the race.)"""
    shared = [entry("shared/file", data=b"s" * 100_000)]
    a = build_layout(tmp_path / "a", [shared, [entry("a/only", data=b"a")]], tag="1")
    b = build_layout(tmp_path / "b", [shared, [entry("b/only", data=b"b")]], tag="1")
    env = dict(os.environ, OCIPY_STORAGE=str(storage))
    pullers = [subprocess.Popen([OCIPY, "image", "pull", "-q", f"oci:{(a if i % 2 else b).path}:1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for i in range(4)]
    pruner = subprocess.Popen(["sh", "-c", f"for i in 1 2 3 4 5 6 7 8; do {OCIPY} image prune >/dev/null || exit 1; done"],
                              env=env)  # fmt: skip
    for p in pullers:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert pruner.wait(120) == 0
    names = {i["name"] for i in json.loads(ocipy("image", "ls", "--json", env=env).stdout)}
    assert names == {"localhost/a:1", "localhost/b:1"}
    for name in names:
        ocipy("image", "validate", name, env=env)
    assert len(_snapshots(storage)) == 3  # shared, a/only, b/only
    assert not [n for n in os.listdir(storage / "snapshots") if n.startswith(".tmp")]


def test_run_from_archives(layout: Path, storage: Path, tmp_path: Path) -> None:
    """Both archive kinds run in one step; a docker-archive's NAME:TAG names the image."""
    state = tmp_path / "state"
    ocipy("image", "export", f"oci:{layout}:bb", f"oci-archive:{tmp_path / 'bb-oci.tar'}:v1")
    ocipy("image", "export", f"oci:{layout}:bb", f"docker-archive:{tmp_path / 'bb.tar'}:example.com/team/bb:2")
    out = _ocipy(storage, state, "run", "--rm", "--network", "none", f"oci-archive:{tmp_path / 'bb-oci.tar'}:v1")
    assert out.stdout == "second layer\n"
    out = _ocipy(storage, state, "run", "--rm", "--network", "none",
                 f"docker-archive:{tmp_path / 'bb.tar'}:example.com/team/bb:2", "-c", "echo from docker-archive")
    assert out.stdout == "from docker-archive\n"
    names = {i["name"] for i in json.loads(_ocipy(storage, state, "ls", "--json").stdout)}
    assert names == {"localhost/bb-oci:v1", "example.com/team/bb:2"}
    assert len(_snapshots(storage)) == 2  # the same two layers: one snapshot each, shared
    assert os.listdir(storage / "containers") == []
