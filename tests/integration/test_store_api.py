"""The store through the Python API: pull with a progress callback, run with
captured output, create a container of a store image and clean up with it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from image_fixtures import ocipy
from test_store import _mounts_under

from support.helpers import unique_id

pytestmark = [pytest.mark.integration, pytest.mark.skipif(os.geteuid() != 0, reason="mounts overlayfs, runs containers")]


def test_pull_progress_run_capture_and_create(tmp_path: Path, busybox_rootfs: Path) -> None:
    from ocipy import api_image

    layout, storage, root = tmp_path / "app", str(tmp_path / "storage"), str(tmp_path / "state")
    ocipy("image", "init", str(layout))
    ocipy("image", "new", f"oci:{layout}:1")
    ocipy("image", "add-layer", f"oci:{layout}:1", str(busybox_rootfs))
    ocipy("image", "config", f"oci:{layout}:1", "--entrypoint", "/bin/sh")

    seen: dict[str, tuple[int, int]] = {}
    pulled = api_image.pull(f"oci:{layout}:1", storage=storage,
                            progress=lambda digest, done, total: seen.__setitem__(digest, (done, total)))
    assert pulled["name"] == "localhost/app:1" and pulled["digest"].startswith("sha256:")
    assert seen and all(done == total for done, total in seen.values()), seen
    assert [i["name"] for i in api_image.images(storage=storage)] == ["localhost/app:1"]
    image = api_image.open("app:1", storage=storage)  # an Image object of a store name
    assert image.tags == ["localhost/app:1"] and image.digest == pulled["digest"] and image.entrypoint == ["/bin/sh"]

    result = api_image.run("app:1", ["-c", "echo out; echo err >&2; exit 3"], capture=True, storage=storage,
                           root=root, pull="never")  # fmt: skip
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")

    cid = unique_id("apicreate")
    with api_image.create("app:1", ["-c", "sleep 60"], container_id=cid, storage=storage, root=root) as c:
        assert c.status == "created"
        c.start()
        r = c.exec(["sh", "-c", "echo written > /tmp/f; cat /tmp/f"], capture=True)
        assert (r.exit_code, r.stdout) == (0, b"written\n")
        assert (Path(storage) / "containers" / cid / "upper" / "tmp" / "f").read_text() == "written\n"
        c.kill("KILL")
        c.wait()
    assert os.listdir(Path(storage) / "containers") == [] and not _mounts_under(Path(storage))
    assert os.listdir(root) == []
    pruned = api_image.prune(storage=storage)
    assert pruned["snapshots"] == [] and pruned["blobs"] == []  # the name still uses them
