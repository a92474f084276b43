"""Layouts and building: init/new/ls/tag/rm/gc, config, add-layer, repack, archives,
concurrent writers, bad input, and `image run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from image_fixtures import OCIPY, build_layout, entry, leftovers, ocipy, read_json, tree

from ocipy import api_image
from ocipy.errors import ImageError
from ocipy.image.store import Layout

pytestmark = pytest.mark.integration


@pytest.fixture
def image(tmp_path: Path, busybox_rootfs: Path) -> str:
    layout = tmp_path / "layout"
    ocipy("image", "init", str(layout))
    ocipy("image", "new", f"oci:{layout}:base")
    ocipy("image", "add-layer", f"oci:{layout}:base", str(busybox_rootfs))
    return f"oci:{layout}:base"


def test_layout_files(tmp_path: Path) -> None:
    api_image.init(str(tmp_path / "l"))
    # image-layout.md: oci-layout "MUST contain an imageLayoutVersion field"; index.json MUST exist
    assert read_json(tmp_path / "l" / "oci-layout") == {"imageLayoutVersion": "1.0.0"}
    assert read_json(tmp_path / "l" / "index.json")["manifests"] == []
    assert (tmp_path / "l" / "blobs").is_dir()
    with pytest.raises(ImageError, match="already exists"):
        api_image.init(str(tmp_path / "l"))


def test_new_config_unpack(image: str, tmp_path: Path) -> None:
    ocipy("image", "config", image, "--cmd", "/bin/sh", "--cmd", "-c", "--cmd", "echo hi", "--env", "A=1",
          "--env", "B=2", "--workdir", "/tmp", "--user", "app", "--label", "k=v", "--port", "8080",
          "--volume", "/data", "--stop-signal", "SIGINT", "--author", "tester", "--history", "set things")
    ocipy("image", "config", image, "--env", "A=3", "--entrypoint", "/bin/env")
    out = {"config": json.loads(ocipy("image", "inspect", "--config", image).stdout)}
    cfg = out["config"]["config"]
    assert cfg["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert cfg["Entrypoint"] == ["/bin/env"]
    assert cfg["Env"] == ["B=2", "A=3"]
    assert cfg["ExposedPorts"] == {"8080/tcp": {}}
    assert out["config"]["author"] == "tester"
    assert [h.get("created_by") for h in out["config"]["history"]][-2] == "set things"
    ocipy("image", "config", image, "--clear", "entrypoint")
    bundle = tmp_path / "bundle"
    ocipy("image", "unpack", image, str(bundle))
    rc = read_json(bundle / "config.json")
    assert rc["process"]["args"] == ["/bin/sh", "-c", "echo hi"]
    assert rc["process"]["cwd"] == "/tmp"
    assert rc["process"]["user"]["uid"] == 1000
    assert "A=3" in rc["process"]["env"]
    assert rc["annotations"]["k"] == "v"
    assert (bundle / "rootfs" / "bin" / "busybox").is_file()
    ocipy("image", "validate", image)


def test_tag_ls_rm_gc(image: str, tmp_path: Path) -> None:
    layout = image.split(":")[1]
    ocipy("image", "tag", image, "v2")
    assert ocipy("image", "ls", layout).stdout.split() == ["base", "v2"]
    ocipy("image", "rm", f"oci:{layout}:base")
    assert ocipy("image", "ls", layout).stdout.split() == ["v2"]
    # only the empty image `new` made (its config and manifest) is garbage
    assert len(ocipy("image", "gc", layout).stdout.splitlines()) == 2
    assert ocipy("image", "gc", layout).stdout == ""
    ocipy("image", "validate", f"oci:{layout}:v2")
    ocipy("image", "rm", f"oci:{layout}:v2")
    assert len(ocipy("image", "gc", layout).stdout.splitlines()) == 3  # config, manifest, layer
    assert os.listdir(Path(layout) / "blobs" / "sha256") == []


def test_unknown_tag_and_missing_blob_errors(image: str, tmp_path: Path) -> None:
    layout = image.split(":")[1]
    p = ocipy("image", "unpack", f"oci:{layout}:nope", str(tmp_path / "b"), check=False)
    assert p.returncode == 1 and "tag 'nope' not found" in p.stderr and "Traceback" not in p.stderr
    manifest = Layout.open(layout).read_manifest(Layout.open(layout).resolve("base"))
    layer = manifest["layers"][0]["digest"]
    os.unlink(Path(layout) / "blobs" / "sha256" / layer.split(":")[1])
    p = ocipy("image", "unpack", image, str(tmp_path / "b"), check=False)
    assert p.returncode == 1 and f"blob {layer}: missing" in p.stderr
    assert not (tmp_path / "b").exists() and leftovers(tmp_path) == []
    p = ocipy("image", "validate", image, check=False)
    assert p.returncode == 1 and layer in p.stderr


def test_invalid_json_and_unknown_media_type(tmp_path: Path) -> None:
    layout = build_layout(tmp_path / "l", [[entry("a", data=b"x")]])
    desc = layout.resolve("latest")
    path = Path(layout.blob_path(desc["digest"]))
    data = path.read_bytes()
    os.chmod(path, 0o644)
    path.write_bytes(b"{not json")
    from ocipy.spec.digest import of_bytes

    # store the broken manifest under its own digest so only the JSON parse can fail
    bad_digest, size = layout.write_blob(b"{not json")
    from ocipy.image.build import set_tag

    set_tag(layout, "broken", {"mediaType": desc["mediaType"], "digest": bad_digest, "size": size})
    p = ocipy("image", "inspect", f"oci:{tmp_path / 'l'}:broken", check=False)
    assert p.returncode == 1 and "invalid JSON" in p.stderr and bad_digest in p.stderr
    path.write_bytes(data)
    set_tag(layout, "odd", {"mediaType": "application/vnd.example.unknown", "digest": of_bytes(data), "size": len(data)})
    p = ocipy("image", "unpack", f"oci:{tmp_path / 'l'}:odd", str(tmp_path / "b"), check=False)
    assert p.returncode == 1 and "unknown media type" in p.stderr


def test_repack_records_changes_with_whiteouts(image: str, tmp_path: Path) -> None:
    layout = image.split(":")[1]
    bundle = tmp_path / "bundle"
    api_image.unpack(image, str(bundle))
    rootfs = bundle / "rootfs"
    (rootfs / "etc" / "motd").write_text("new file\n")
    (rootfs / "bin" / "ls").unlink()
    os.rmdir(rootfs / "home")
    (rootfs / "etc" / "passwd").write_text((rootfs / "etc" / "passwd").read_text() + "extra:x:5:5::/:/bin/sh\n")
    os.chmod(rootfs / "tmp", 0o700)
    api_image.repack(f"oci:{layout}:v2", str(bundle), compression="zstd")
    out = api_image.inspect(f"oci:{layout}:v2")
    assert len(out["manifest"]["layers"]) == 2
    assert out["manifest"]["layers"][1]["mediaType"].endswith("+zstd")
    assert len(out["config"]["rootfs"]["diff_ids"]) == 2
    assert out["config"]["history"][-1]["created_by"] == "ocipy image repack"
    b2 = tmp_path / "b2"
    api_image.unpack(f"oci:{layout}:v2", str(b2))
    assert tree(b2 / "rootfs") == tree(rootfs)
    # the repacked layer holds only the changes
    import tarfile

    lay = Layout.open(layout)
    ldesc = out["manifest"]["layers"][1]
    import zstandard

    with lay.open_blob(ldesc["digest"]) as f:
        data = zstandard.ZstdDecompressor().stream_reader(f).read()
    import io

    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert "bin/.wh.ls" in names and ".wh.home" in names and "etc/motd" in names
    assert "bin/busybox" not in names
    # a second repack of the same bundle with no change adds an empty layer
    api_image.repack(f"oci:{layout}:v3", str(bundle))


def test_add_layer_from_tar(image: str, tmp_path: Path) -> None:
    from image_fixtures import make_tar

    tar = tmp_path / "extra.tar"
    tar.write_bytes(make_tar([entry("opt", "dir"), entry("opt/hello", data=b"hi")]))
    ocipy("image", "add-layer", "--compress", "none", image, str(tar))
    api_image.unpack(image, str(tmp_path / "b"))
    assert (tmp_path / "b" / "rootfs" / "opt" / "hello").read_bytes() == b"hi"


def test_archive_round_trips(image: str, tmp_path: Path) -> None:
    base = tmp_path / "b0"
    api_image.unpack(image, str(base))
    oa = tmp_path / "img.oci.tar"
    da = tmp_path / "img.docker.tar"
    ocipy("image", "export", image, f"oci-archive:{oa}:base")
    ocipy("image", "export", image, f"docker-archive:{da}:example/busybox:1")
    dm = json.loads(subprocess.run(["tar", "-xOf", str(da), "manifest.json"], capture_output=True,
                                   check=True).stdout)
    assert dm[0]["RepoTags"] == ["example/busybox:1"]
    ocipy("image", "import", f"oci-archive:{oa}", f"oci:{tmp_path / 'l2'}:a")
    ocipy("image", "import", f"docker-archive:{da}:example/busybox:1", f"oci:{tmp_path / 'l2'}:b")
    for tag in ("a", "b"):
        api_image.unpack(f"oci:{tmp_path / 'l2'}:{tag}", str(tmp_path / f"b-{tag}"))
        assert tree(tmp_path / f"b-{tag}" / "rootfs") == tree(base / "rootfs")
    # unpack straight from archives
    api_image.unpack(f"docker-archive:{da}", str(tmp_path / "b-d"))
    assert tree(tmp_path / "b-d" / "rootfs") == tree(base / "rootfs")
    assert leftovers(tmp_path) == []


def test_concurrent_writers_do_not_corrupt_the_layout(image: str, tmp_path: Path) -> None:
    layout = image.split(":")[1]
    script = (
        "import sys\nfrom ocipy import api_image as a\n"
        "for i in range(15):\n"
        "    a.tag(sys.argv[1], f'{sys.argv[2]}-{i}')\n"
        "    a.configure(sys.argv[1].rsplit(':',1)[0] + f':{sys.argv[2]}-{i}', env=[f'N={i}'])\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, image, f"w{n}"]) for n in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    tags = api_image.list_tags(layout)
    assert len(tags) == 1 + 4 * 15
    api_image.validate(f"oci:{layout}")
    assert leftovers(Path(layout)) == []


def test_unpack_refuses_existing_bundle(image: str, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "keep").write_text("mine")
    with pytest.raises(ImageError, match="already exists"):
        api_image.unpack(image, str(bundle))
    assert os.listdir(bundle) == ["keep"]


@pytest.mark.skipif(os.geteuid() != 0, reason="runs a container")
def test_image_run(image: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.run([OCIPY, "--root", str(state), "image", "run", "--rm", image, "--",
                           "/bin/sh", "-c", "echo hello from $(id -un); exit 7"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 7, proc.stderr
    assert "hello from root" in proc.stdout
    assert not state.exists() or os.listdir(state) == []
