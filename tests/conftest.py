"""Shared fixtures: a busybox rootfs, bundles, and the ocipy CLI on a private --root.

Every fixture cleans up after itself, also when the test fails: containers
are force-deleted and the private state directory must be empty.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from support.helpers import IS_ROOT, OCIPY, REPO, needs_root, unique_id  # noqa: E402,F401
from support.rootfs import build_busybox_rootfs  # noqa: E402


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not os.path.exists("/bin/busybox"):
        pytest.fail("busybox-static is not installed: run `make install`")
    return Path(build_busybox_rootfs(str(tmp_path_factory.mktemp("busybox") / "rootfs")))


@pytest.fixture(scope="session", autouse=True)
def private_image_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every `ocipy image run|pull` of the session (the tests' own processes and
    what they start) uses a private store, never /var/lib/ocipy/storage; at the
    end nothing may be mounted below it."""
    store = tmp_path_factory.mktemp("image-store") / "storage"
    old = os.environ.get("OCIPY_STORAGE")
    os.environ["OCIPY_STORAGE"] = str(store)
    try:
        yield store
    finally:
        if old is None:
            os.environ.pop("OCIPY_STORAGE", None)
        else:
            os.environ["OCIPY_STORAGE"] = old
        with open("/proc/self/mountinfo") as f:
            mounted = [line.split()[4] for line in f if line.split()[4].startswith(str(store))]
        for mnt in reversed(mounted):
            subprocess.run(["umount", "-l", mnt], check=False)
        shutil.rmtree(store, ignore_errors=True)
        assert mounted == [], f"mounts left below the image store: {mounted}"


class Runtime:
    """The ocipy CLI on a private --root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.binary = OCIPY

    def cmd(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    def __call__(self, *args: str, check: bool = True, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run ocipy; stdout/stderr go through temp files, not pipes: a detached
        container inherits them and would hold a pipe open forever."""
        import tempfile

        if "stdout" in kw or "capture_output" in kw:
            proc = subprocess.run(self.cmd(*args), text=True, timeout=timeout, **kw)
        else:
            with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
                kw.setdefault("stdin", subprocess.DEVNULL)
                code = subprocess.run(self.cmd(*args), stdout=out, stderr=err, timeout=timeout, **kw).returncode
                out.seek(0)
                err.seek(0)
                proc = subprocess.CompletedProcess(self.cmd(*args), code, out.read(), err.read())
        if check and proc.returncode != 0:
            raise AssertionError(f"ocipy {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc

    def state(self, container_id: str) -> dict[str, Any]:
        return json.loads(self("state", container_id).stdout)  # type: ignore[no-any-return]

    def cleanup(self) -> None:
        if not self.root.exists():
            return
        for entry in self.root.iterdir():
            if entry.is_dir():
                self("delete", "-f", entry.name, check=False)


@pytest.fixture
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    root = tmp_path_factory.mktemp("state")
    rt = Runtime(root)
    yield rt
    rt.cleanup()
    left = [p.name for p in root.iterdir()] if root.exists() else []
    shutil.rmtree(root, ignore_errors=True)
    assert left == [], f"containers left behind in --root: {left}"


@pytest.fixture
def make_bundle(tmp_path: Path, busybox_rootfs: Path) -> Callable[..., Path]:
    """make_bundle(args=[...], **edits): a bundle with a copy of the busybox rootfs.

    The config starts from `ocipy spec` defaults with terminal off and a
    writable root; `edit` is
    a function that may change the config dict in place.
    """
    from ocipy.spec.runtime import default_spec

    counter = iter(range(1000))

    def make(args: list[str] | None = None, edit: Callable[[dict[str, Any]], None] | None = None,
             rootfs: bool = True) -> Path:
        bundle = tmp_path / f"bundle{next(counter)}"
        bundle.mkdir()
        if rootfs:
            subprocess.run(["cp", "-a", str(busybox_rootfs), str(bundle / "rootfs")], check=True)
        config = copy.deepcopy(default_spec())
        config["process"]["terminal"] = False
        config["process"]["args"] = args or ["true"]
        config["root"]["readonly"] = False  # tests write markers into the rootfs
        if edit:
            edit(config)
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle

    return make
