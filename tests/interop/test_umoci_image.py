"""Interop with umoci: the same trees from both tools, each reading the other's layouts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from image_fixtures import entry, ocipy, tree  # noqa: E402

from ocipy import api_image  # noqa: E402

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci not installed"),
              pytest.mark.skipif(os.geteuid() != 0, reason="umoci unpack keeps ownership only as root")]


def umoci(*args: str) -> None:
    subprocess.run(["umoci", *args], check=True, capture_output=True, timeout=120)


@pytest.mark.parametrize("compress", ["gzip", "zstd", "none"])
def test_umoci_unpacks_ocipy_images_identically(tmp_path: Path, busybox_rootfs: Path, compress: str) -> None:
    layout = tmp_path / "layout"
    ref = f"oci:{layout}:img"
    ocipy("image", "init", str(layout))
    ocipy("image", "new", ref)
    ocipy("image", "add-layer", "--compress", compress, ref, str(busybox_rootfs))
    # a second layer with whiteouts, an opaque dir, a hardlink, a fifo, odd modes and owners
    second = [entry("bin/.wh.ls"), entry("home", "dir"), entry("home/.wh..wh..opq"),
              entry("home/app", "dir", mode=0o750, uid=1000, gid=1000),
              entry("home/app/notes", data=b"hello\n", mode=0o600, uid=1000, gid=1000),
              entry("home/app/hard", "hardlink", link="home/app/notes"),
              entry("srv", "dir", mode=0o1777), entry("srv/pipe", "fifo"),
              entry("srv/suid", data=b"#!/bin/sh\n", mode=0o4755),
              entry("srv/abs", "symlink", link="/etc/passwd")]
    from image_fixtures import make_tar

    extra = tmp_path / "extra.tar"
    extra.write_bytes(make_tar(second))
    ocipy("image", "add-layer", "--compress", compress, ref, str(extra))
    ocipy("image", "config", ref, "--cmd", "/bin/sh", "--user", "app")
    if compress == "zstd":
        # umoci 0.4.7 does not read zstd layers; check ocipy against the gzip rendering instead
        ocipy("image", "unpack", ref, str(tmp_path / "ocipy"))
        gz = tmp_path / "gz"
        ocipy("image", "init", str(gz))
        ocipy("image", "new", f"oci:{gz}:img")
        ocipy("image", "add-layer", f"oci:{gz}:img", str(busybox_rootfs))
        ocipy("image", "add-layer", f"oci:{gz}:img", str(extra))
        umoci("unpack", "--image", f"{gz}:img", str(tmp_path / "umoci"))
    else:
        umoci("unpack", "--image", f"{layout}:img", str(tmp_path / "umoci"))
        ocipy("image", "unpack", ref, str(tmp_path / "ocipy"))
    assert tree(tmp_path / "ocipy" / "rootfs", mtimes=True) == tree(tmp_path / "umoci" / "rootfs", mtimes=True)


def test_ocipy_unpacks_umoci_built_images(tmp_path: Path, busybox_rootfs: Path) -> None:
    layout = tmp_path / "layout"
    umoci("init", "--layout", str(layout))
    umoci("new", "--image", f"{layout}:t")
    umoci("insert", "--image", f"{layout}:t", str(busybox_rootfs), "/")
    umoci("config", "--image", f"{layout}:t", "--config.cmd", "/bin/echo", "--config.env", "X=1",
          "--config.workingdir", "/tmp")
    ocipy("image", "validate", f"oci:{layout}:t")
    ocipy("image", "unpack", f"oci:{layout}:t", str(tmp_path / "b1"))
    umoci("unpack", "--image", f"{layout}:t", str(tmp_path / "u1"))
    assert tree(tmp_path / "b1" / "rootfs", mtimes=True) == tree(tmp_path / "u1" / "rootfs", mtimes=True)
    # umoci repack: changes recorded by umoci, read back by ocipy
    rootfs = tmp_path / "u1" / "rootfs"
    (rootfs / "etc" / "added").write_text("from umoci repack\n")
    (rootfs / "bin" / "cat").unlink()
    shutil.rmtree(rootfs / "home")
    umoci("repack", "--image", f"{layout}:t2", str(tmp_path / "u1"))
    ocipy("image", "unpack", f"oci:{layout}:t2", str(tmp_path / "b2"))
    assert tree(tmp_path / "b2" / "rootfs") == tree(rootfs)
    cfg = api_image.inspect(f"oci:{layout}:t2")["config"]["config"]
    assert cfg["Cmd"] == ["/bin/echo"] and cfg["WorkingDir"] == "/tmp"


def test_umoci_reads_ocipy_repacked_images(tmp_path: Path, busybox_rootfs: Path) -> None:
    layout = tmp_path / "layout"
    ocipy("image", "init", str(layout))
    ocipy("image", "new", f"oci:{layout}:a")
    ocipy("image", "add-layer", f"oci:{layout}:a", str(busybox_rootfs))
    ocipy("image", "unpack", f"oci:{layout}:a", str(tmp_path / "b"))
    rootfs = tmp_path / "b" / "rootfs"
    (rootfs / "bin" / "sh").unlink()
    (rootfs / "etc" / "group").write_text("root:x:0:\n")
    ocipy("image", "repack", f"oci:{layout}:b", str(tmp_path / "b"))
    umoci("unpack", "--image", f"{layout}:b", str(tmp_path / "u"))
    assert tree(tmp_path / "u" / "rootfs") == tree(rootfs)
    # and umoci's own layout checks accept ours
    umoci("stat", "--image", f"{layout}:b")
    umoci("ls", "--layout", str(layout))
