"""Layer snapshots (ocipy.storage.snapshots) on the real kernel: overlay form, mounts, races, crashes.

The oracle for every merged tree is ocipy's flat unpack of the same image
(``api_image.unpack``, itself compared with umoci in tests/interop): a
container must see on its overlay mount exactly what a flat unpack gives.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from image_fixtures import build_layout, dir_tar, entry, make_tar, snapshot, tree

from ocipy import api_image
from ocipy.errors import ImageError
from ocipy.image.store import Layout
from ocipy.spec.image import chain_ids
from ocipy.storage.snapshots import Snapshots, unmount

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="snapshots (whiteout devices, trusted xattrs, mounts) need root")]

REPO = Path(__file__).resolve().parents[2]
DRIVERS = ["overlay", "copy"]


def mounts_below(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def image(path: Path, layers: list[Any], **kw: Any) -> tuple[Layout, dict[str, Any], dict[str, Any]]:
    layout = build_layout(path, layers, **kw)
    _, manifest = layout.resolve_image(layout.resolve("latest"))
    return layout, manifest, layout.read_config(manifest["config"])


def links(root: Path) -> list[list[str]]:
    """The hardlink groups of a tree (names sharing an inode)."""
    groups: dict[int, list[str]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                groups.setdefault(st.st_ino, []).append(os.path.relpath(p, root))
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


class Store:
    def __init__(self, tmp: Path, driver: str) -> None:
        self.tmp = tmp
        self.snaps = Snapshots(str(tmp / "store" / "snapshots"), driver)
        self.containers: list[Path] = []

    def run(self, layers: list[Any], name: str = "c") -> Path:
        """Prepare and mount; check the tree against the flat unpack; return the rootfs."""
        layout, manifest, config = image(self.tmp / f"layout-{name}", layers)
        chains = self.snaps.prepare(layout, manifest, config)
        assert chains == chain_ids(config["rootfs"]["diff_ids"])
        cdir = self.tmp / name
        self.containers.append(cdir)
        rootfs = Path(self.snaps.mount(chains, str(cdir)))
        flat = self.tmp / f"flat-{name}"
        api_image.unpack(f"oci:{layout.path}:latest", str(flat))
        assert tree(rootfs, mtimes=True) == tree(flat / "rootfs", mtimes=True)
        assert links(rootfs) == links(flat / "rootfs")
        root_st, flat_st = os.stat(rootfs), os.stat(flat / "rootfs")
        assert (root_st.st_mode, root_st.st_uid) == (flat_st.st_mode, flat_st.st_uid)
        return rootfs

    def close(self) -> None:
        for c in self.containers:
            unmount(str(c))
        assert mounts_below(self.tmp) == []


@pytest.fixture(params=DRIVERS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    s = Store(tmp_path, request.param)
    yield s
    s.close()


BASE = [entry("etc", "dir", mode=0o750, uid=5, gid=6, mtime=1_500_000_000),
        entry("etc/a", data=b"a"), entry("etc/b", data=b"b", uid=3), entry("etc/sub", "dir"),
        entry("etc/sub/deep", data=b"deep"), entry("d", "dir", mode=0o711), entry("d/x", data=b"x"),
        entry("d/sub", "dir"), entry("d/sub/y", data=b"y"), entry("f", data=b"file"),
        entry("lnk", "symlink", link="etc/a"), entry("fifo", "fifo"), entry("g", "dir"),
        entry("g/h", data=b"h")]


def test_whiteouts_hide_files_and_directories(store: Store) -> None:
    root = store.run([BASE, [entry("etc/.wh.a"), entry(".wh.d"), entry(".wh.lnk"), entry(".wh.fifo"),
                             entry("etc/.wh.missing"), entry("nodir/.wh.x")]])
    assert not (root / "etc/a").exists() and not (root / "d").exists() and not (root / "lnk").is_symlink()
    assert not (root / "nodir").exists()  # nothing was there to hide: no directory made for it
    # layer.md: whiteout "MUST only apply to resources in lower/parent layers": the snapshot
    # holds overlayfs whiteouts (char 0:0), the merged tree none
    snap = Path(store.snaps.path(store.snaps.list()[0])).parent
    devs = [p for p in snap.rglob("*") if p.is_char_device()]
    assert devs or store.snaps.driver == "copy"


def test_whiteout_form_is_overlayfs_own(tmp_path: Path) -> None:
    s = Snapshots(str(tmp_path / "snaps"), "overlay")
    layout, manifest, config = image(tmp_path / "l", [BASE, [entry("etc/.wh.a"), entry("d/.wh..wh..opq"),
                                                              entry("d/new", data=b"n")]])
    chains = s.prepare(layout, manifest, config)
    top = Path(s.path(chains[1])) / "fs"
    st = os.lstat(top / "etc/a")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(top / "d", "trusted.overlay.opaque") == b"y"
    assert (top / "d/new").read_bytes() == b"n" and not (top / "d/x").exists()
    # the implicit parent etc/ keeps the lower's mode and owner (an upper dir's inode wins in overlayfs)
    st = os.lstat(top / "etc")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (0o750, 5, 6, 1_500_000_000)
    info = json.loads((top.parent / "info.json").read_text())
    assert info["chain_id"] == chains[1] and info["parent"] == chains[0]
    assert info["diff_id"] == config["rootfs"]["diff_ids"][1] and info["size"] > 0
    assert s.disk_usage(chains[1]) == info["size"]


def test_opaque_directories(store: Store) -> None:
    root = store.run([BASE, [entry("d/.wh..wh..opq"), entry("d/new", data=b"n"), entry("g", "dir", mode=0o700),
                             entry("g/.wh..wh..opq")]])
    assert sorted(os.listdir(root / "d")) == ["new"] and os.listdir(root / "g") == []


def test_opaque_root(store: Store) -> None:
    store.run([BASE, [entry(".wh..wh..opq"), entry("only", data=b"o")]])


def test_same_layer_whiteouts_keep_what_the_layer_adds(store: Store) -> None:
    # layer.md: "Whiteout files MUST only apply to resources in lower/parent layers"
    root = store.run([BASE, [entry("d/added", data=b"1"), entry(".wh.d"),  # after: d keeps `added` only
                             entry(".wh.g"), entry("g/again", data=b"2"),   # before: a new g
                             entry("f2", data=b"f2"), entry(".wh.f2"),      # a file of this layer stays
                             entry("etc/.wh.sub"), entry("etc/sub", "dir", mode=0o700),
                             entry("etc/sub/new", data=b"3")]])
    assert os.listdir(root / "d") == ["added"] and os.listdir(root / "g") == ["again"]
    assert os.listdir(root / "etc/sub") == ["new"] and (root / "f2").read_bytes() == b"f2"


def test_hardlinks_across_layers(store: Store) -> None:
    root = store.run([BASE, [entry("hl", "hardlink", link="etc/b"), entry("newdir/hl2", "hardlink", link="d/sub/y"),
                             entry("etc/b2", "hardlink", link="etc/b")],
                      [entry("etc/.wh.b2"), entry("third", "hardlink", link="hl"),
                       entry("fourth", "hardlink", link="etc/a")]])
    # a link to a name that is hardlinked in a lower layer copies up the whole visible group
    # (etc/b, hl; not the whited-out etc/b2): one group in the merged tree, as a flat unpack has
    assert (root / "third").read_bytes() == b"b" and (root / "fourth").read_bytes() == b"a"
    assert os.stat(root / "third").st_ino == os.stat(root / "etc/b").st_ino == os.stat(root / "hl").st_ino
    assert not (root / "etc/b2").exists()


def test_hardlink_to_a_whited_out_file_is_refused(store: Store) -> None:
    with pytest.raises(ImageError, match="hardlink target 'etc/a' does not exist"):
        store.run([BASE, [entry("etc/.wh.a"), entry("hl", "hardlink", link="etc/a")]])
    # nothing of a failed prepare is kept (its layers are renamed into place together, at the end)
    assert [n for n in os.listdir(store.snaps.root) if n.startswith(".tmp-")] == []
    assert store.snaps.list() == []


def test_directory_and_file_replace_each_other(store: Store) -> None:
    store.run([BASE, [entry("d", data=b"now a file"), entry("f", "dir"), entry("f/inside", data=b"i"),
                      entry("lnk", "dir")],
               [entry("d", "dir", mode=0o700), entry("d/again", data=b"a"), entry("f", data=b"file again")],
               [entry("d/x", data=b"new x")]])


def test_implicit_parents_keep_the_lower_metadata(store: Store) -> None:
    root = store.run([BASE, [entry("etc/sub/more", data=b"m"), entry("d/sub/z", data=b"z")]])
    st = os.lstat(root / "etc")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 5, 6)
    assert stat.S_IMODE(os.lstat(root / "d").st_mode) == 0o711


def test_symlinked_parent_in_a_lower_layer(store: Store, tmp_path: Path) -> None:
    # overlay form does not write through a lower layer's symlink (as containerd): `lnk/x`
    # makes a directory `lnk` that hides the link; nothing outside any root changes
    layout, manifest, config = image(tmp_path / "sl", [BASE, [entry("lnk/x", data=b"x")]])
    chains = store.snaps.prepare(layout, manifest, config)
    root = Path(store.snaps.mount(chains, str(tmp_path / "sl-c")))
    store.containers.append(tmp_path / "sl-c")
    assert (root / "lnk").is_dir() and not (root / "lnk").is_symlink()
    assert (root / "lnk/x").read_bytes() == b"x" and (root / "etc/a").read_bytes() == b"a"


def test_zero_layers(store: Store, tmp_path: Path) -> None:
    layout, manifest, config = image(tmp_path / "empty", [])
    assert store.snaps.prepare(layout, manifest, config) == []
    root = Path(store.snaps.mount([], str(tmp_path / "e")))
    store.containers.append(tmp_path / "e")
    assert os.listdir(root) == []
    (root / "w").write_text("x")


def test_overlay_and_copy_drivers_give_the_same_tree(tmp_path: Path, busybox_rootfs: Path) -> None:
    layers = [dir_tar(busybox_rootfs), BASE,
              [entry("bin/.wh.ls"), entry("etc/.wh..wh..opq"), entry("etc/passwd", data=b"root:x:0:0::/:/bin/sh\n"),
               entry("hl", "hardlink", link="bin/busybox"), entry("d", data=b"f")]]
    layout, manifest, config = image(tmp_path / "l", layers)
    trees = []
    for driver in DRIVERS:
        s = Snapshots(str(tmp_path / "store"), driver)
        chains = s.prepare(layout, manifest, config)
        root = Path(s.mount(chains, str(tmp_path / driver)))
        trees.append((tree(root, mtimes=True), links(root)))
        unmount(str(tmp_path / driver))
    assert trees[0] == trees[1]
    assert mounts_below(tmp_path) == []


# -- deep trees and deep images --------------------------------------------------------

DEPTH = 2000


def test_deep_tree_2000_levels(tmp_path: Path) -> None:
    deep = "/".join(["d"] * DEPTH)
    low = [entry("/".join(["d"] * i), "dir", mode=0o750 if i == DEPTH // 2 else 0o755) for i in range(1, DEPTH + 1)]
    low += [entry(deep + "/f", data=b"bottom"), entry(deep + "/g", data=b"gone")]
    up = [entry(deep + "/.wh.g"), entry(deep + "/new", data=b"new"), entry(deep + "/h", "hardlink", link=deep + "/f")]
    layout, manifest, config = image(tmp_path / "l", [low, up])
    out = []
    for driver in DRIVERS:
        s = Snapshots(str(tmp_path / "store"), driver)
        chains = s.prepare(layout, manifest, config)
        root = Path(s.mount(chains, str(tmp_path / driver)))
        find = subprocess.run(["find", str(root), "-mindepth", "1", "(", "-type", "d", "-printf", r"%P %y %m %U\n",
                               ")", "-o", "-printf", r"%P %y %m %U %s %n\n"],
                              capture_output=True, text=True, check=True, timeout=300).stdout.splitlines()
        out.append(sorted(line.replace("d/", "") for line in find))
        unmount(str(tmp_path / driver))
    assert out[0] == out[1]
    bottom = [line for line in out[0] if not line.startswith("d ")]
    assert sorted(bottom) == sorted(["f f 644 0 6 2", "h f 644 0 6 2", "new f 644 0 3 1"]), bottom
    mid = [line for line in out[0] if line.endswith(" d 750 0")]
    assert len(mid) == 1  # the implicit parents kept the lower's 0750 at level 1000
    s.remove(chains[1])
    s.remove(chains[0])
    assert s.list() == []
    from ocipy import fstree

    fstree.rmtree(str(tmp_path / "copy"))  # pytest's own cleanup recurses


def test_eighty_layers_mount(tmp_path: Path) -> None:
    layers = [[entry(f"l{i:03d}", data=str(i).encode())] + ([entry(f"l{i - 1:03d}.gone"), entry(f".wh.l{i - 1:03d}")] if i % 10 == 0 and i else [])
              for i in range(80)]
    layout, manifest, config = image(tmp_path / "l", layers)
    s = Snapshots(str(tmp_path / "store" / "snapshots"), "overlay")
    chains = s.prepare(layout, manifest, config)
    assert len(s.list()) == 80
    root = Path(s.mount(chains, str(tmp_path / "c")))
    try:
        names = sorted(os.listdir(root))
        assert len(names) == 80 - 7 + 7  # l009, l019, ... whited out; l009.gone etc. added
        assert (root / "l079").read_text() == "79" and not (root / "l069").exists()
    finally:
        unmount(str(tmp_path / "c"))
    assert mounts_below(tmp_path) == []


def test_more_layers_than_a_mount_page_holds(tmp_path: Path) -> None:
    # ~18 bytes per /proc/self/fd/N lower: 260 layers need fsconfig's lowerdir+ (Linux >= 6.8)
    layers = [[entry(f"f{i}", data=b"x")] for i in range(260)]
    layout, manifest, config = image(tmp_path / "l", layers, compression="none")
    s = Snapshots(str(tmp_path / "store"), "overlay")
    chains = s.prepare(layout, manifest, config)
    try:
        root = Path(s.mount(chains, str(tmp_path / "c")))
    except Exception as e:  # noqa: BLE001 - an old kernel: the error names the dir, nothing left
        assert "lowerdir+" in str(e) or "fsconfig" in str(e) or "fsopen" in str(e), e
        assert mounts_below(tmp_path) == []
        pytest.skip(f"kernel lacks overlayfs lowerdir+: {e}")
    try:
        assert len(os.listdir(root)) == 260
    finally:
        unmount(str(tmp_path / "c"))
    assert mounts_below(tmp_path) == []


# -- failures leave nothing ---------------------------------------------------------------


def test_failed_mount_leaves_nothing(tmp_path: Path) -> None:
    s = Snapshots(str(tmp_path / "store"), "overlay")
    layout, manifest, config = image(tmp_path / "l", [BASE])
    chains = s.prepare(layout, manifest, config)
    cdir = tmp_path / "c"
    cdir.mkdir()
    (cdir / "work").write_text("not a directory")  # overlayfs refuses it
    with pytest.raises(ImageError) as exc:
        s.mount(chains, str(cdir))
    assert "\n" not in str(exc.value) and str(cdir / "work") in str(exc.value)
    assert mounts_below(tmp_path) == []
    assert sorted(os.listdir(cdir)) == ["work"]
    # a symlinked rootfs is never mounted over (the mount would land on its target)
    (cdir / "work").unlink()
    target = tmp_path / "elsewhere"
    target.mkdir()
    (cdir / "rootfs").symlink_to(target)
    with pytest.raises(ImageError, match="symlink"):
        s.mount(chains, str(cdir))
    (cdir / "rootfs").unlink()
    # the kernel refusing the mount (workdir inside upperdir): a KernelError naming the target
    from ocipy.errors import KernelError
    from ocipy.storage import overlay

    for d in ("rootfs", "upper", "upper/w"):
        (cdir / d).mkdir()
    with pytest.raises(KernelError) as kexc:
        overlay.mount([str(Path(s.path(chains[0])) / "fs")], str(cdir / "upper"), str(cdir / "upper/w"),
                      str(cdir / "rootfs"))
    assert str(cdir / "rootfs") in str(kexc.value) and "\n" not in str(kexc.value)
    assert mounts_below(tmp_path) == [] and os.listdir(target) == []
    with pytest.raises(ImageError, match="missing"):
        s.mount(["sha256:" + "0" * 64], str(tmp_path / "c2"))


def test_unmount_is_idempotent(tmp_path: Path) -> None:
    s = Snapshots(str(tmp_path / "store"), "overlay")
    layout, manifest, config = image(tmp_path / "l", [BASE])
    chains = s.prepare(layout, manifest, config)
    root = s.mount(chains, str(tmp_path / "c"))
    assert mounts_below(tmp_path) == [root]
    with pytest.raises(ImageError, match="already"):
        s.mount(chains, str(tmp_path / "c"))
    assert mounts_below(tmp_path) == [root]
    for _ in range(3):
        unmount(str(tmp_path / "c"))
    unmount(str(tmp_path / "never-made"))
    assert mounts_below(tmp_path) == []


def test_bad_layer_digest_leaves_no_snapshot(tmp_path: Path) -> None:
    s = Snapshots(str(tmp_path / "store"), "overlay")
    layout, manifest, config = image(tmp_path / "l", [BASE, [entry("x", data=b"x")]])
    config["rootfs"]["diff_ids"][1] = "sha256:" + "1" * 64
    with pytest.raises(ImageError, match=r"rootfs.diff_ids\[1\]"):
        s.prepare(layout, manifest, config)
    assert s.list() == [] and [n for n in os.listdir(s.root) if n.startswith(".tmp-")] == []


# -- hostile layers -------------------------------------------------------------------------

def _hostile(outside: Path) -> list[tuple[str, list[Any], str | None]]:
    """(name, layers, words the refusal names or None when accepted) -- test_image_hostile.py's attacks."""
    return [
        ("dotdot", [[entry("ok"), entry("../../outside/pwned", data=b"x")]], "'..'"),
        ("dotdot-inside", [[entry("a", "dir"), entry("a/../../outside/pwned", data=b"x")]], "'..'"),
        ("absolute", [[entry(str(outside / "pwned"), data=b"x")]], "absolute"),
        ("symlink-same-layer", [[entry("evil", "symlink", link=str(outside)), entry("evil/pwned", data=b"PWNED"),
                                 entry("rel", "symlink", link="../../../../../../" + str(outside)),
                                 entry("rel/secret", data=b"PWNED")]], None),
        ("symlink-across-layers", [[entry("etc", "dir"), entry("etc/link", "symlink", link=str(outside / "sub"))],
                                   [entry("etc/link/pwned", data=b"PWNED")]], None),
        ("symlink-replaced", [[entry("secret", "symlink", link=str(outside / "secret"))],
                              [entry("secret", data=b"PWNED")]], None),
        ("whiteout-through-symlink", [[entry("s", "symlink", link=str(outside))], [entry("s/.wh.secret"),
                                      entry("s/.wh..wh..opq")]], None),
        ("hardlink-absolute", [[entry("passwd", "hardlink", link="/etc/passwd")]], "/etc/passwd"),
        ("hardlink-dotdot", [[entry("x", "hardlink", link="../../../../../../../etc/passwd")]], ".."),
        ("hardlink-through-symlink", [[entry("s", "symlink", link="/etc"), entry("h", "hardlink", link="s/passwd")]],
         "does not exist in the rootfs"),
        ("hardlink-lower-symlink", [[entry("s", "symlink", link=str(outside))],
                                    [entry("h", "hardlink", link="s/secret")]], "does not exist in the rootfs"),
        ("duplicate", [[entry("a", data=b"one"), entry("a", "symlink", link=str(outside / "secret")),
                        entry("a", data=b"PWNED")]], "duplicate"),
        ("overlay-xattr", [[entry("d", "dir", xattrs={"trusted.overlay.opaque": "y"}), entry("d/f")],
                           [entry("d", "dir", xattrs={"trusted.overlay.redirect": "/etc"})]], None),
        ("wh-without-name", [[entry("a/.wh.")]], "whiteout without a name"),
    ]


@pytest.mark.parametrize("attack", range(14))
def test_hostile_layers_fail_in_overlay_form(tmp_path: Path, attack: int) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("do not touch\n")
    (outside / "sub").mkdir()
    name, layers, refused = _hostile(outside)[attack]
    before, passwd = snapshot(outside), Path("/etc/passwd").read_bytes()
    s = Snapshots(str(tmp_path / "store"), "overlay")
    layout, manifest, config = image(tmp_path / "l", layers)
    if refused is not None:
        with pytest.raises(ImageError) as exc:
            s.prepare(layout, manifest, config)
        assert refused in str(exc.value) and "\n" not in str(exc.value), (name, exc.value)
    else:
        chains = s.prepare(layout, manifest, config)
        root = Path(s.mount(chains, str(tmp_path / "c")))
        try:
            for p in root.rglob("*"):  # read everything through the mount
                if p.is_file() and not p.is_symlink():
                    p.read_bytes()
            snaps_xattrs = [os.listxattr(p, follow_symlinks=False) for p in Path(s.root).rglob("*")
                            if not p.is_symlink()]
            assert not any("trusted.overlay.redirect" in x for x in snaps_xattrs)
        finally:
            unmount(str(tmp_path / "c"))
    assert snapshot(outside) == before, f"{name}: something outside the rootfs changed"
    assert Path("/etc/passwd").read_bytes() == passwd
    assert [n for n in os.listdir(s.root) if n.startswith(".tmp-")] == []
    assert mounts_below(tmp_path) == []


@pytest.mark.parametrize("attack", ["bomb", "many-small", "truncated", "other-blob"])
def test_bad_blobs_fail_in_overlay_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, attack: str) -> None:
    from image_fixtures import compress

    monkeypatch.setenv("OCIPY_MAX_UNPACK_SIZE", "8M")  # the unpack's size cap (decompression bombs)
    good = [entry("ok", data=b"fine")]
    if attack == "bomb":
        layers: list[Any] = [good, [entry("zeros", data=bytes(64 << 20))]]
        kw: dict[str, Any] = {}
        words = ["'zeros'", "exceeds the limit"]
    elif attack == "many-small":
        layers, kw, words = [good, [entry(f"f{i}", data=bytes(1 << 20)) for i in range(40)]], {}, ["exceeds the limit"]
    else:
        tar = make_tar([entry(f"f{i}", data=os.urandom(4096)) for i in range(64)])
        blob = compress(tar, "gzip")
        if attack == "truncated":  # the descriptor matches the broken blob: only gunzip can tell
            bad = blob[: len(blob) // 2]
            words = ["truncated gzip"]
        else:  # a valid gzip stream that is not the layer the config's diff_id names
            bad = compress(make_tar([entry("a", data=b"HELLO")]), "gzip")
            words = ["rootfs.diff_ids[1]"]
        layers, kw = [make_tar(good), tar], {"raw_blobs": [compress(make_tar(good), "gzip"), bad]}
    s = Snapshots(str(tmp_path / "store"), "overlay")
    layout, manifest, config = image(tmp_path / "l", layers, **kw)
    with pytest.raises(ImageError) as exc:
        s.prepare(layout, manifest, config)
    for w in words:
        assert w in str(exc.value), exc.value
    assert "\n" not in str(exc.value)
    assert s.list() == [] and os.listdir(s.root) == []


# -- races and crashes ---------------------------------------------------------------------

PREPARE = r"""
import sys
from ocipy.image.store import Layout
from ocipy.storage.snapshots import Snapshots
layout = Layout.open(sys.argv[1])
_, manifest = layout.resolve_image(layout.resolve("latest"))
config = layout.read_config(manifest["config"])
print(len(Snapshots(sys.argv[2], "overlay").prepare(layout, manifest, config)))
"""


def _big_layers(n: int, files: int) -> list[Any]:
    return [[entry(f"l{i}", "dir")] + [entry(f"l{i}/f{j}", data=hashlib.sha256(f"{i}/{j}".encode()).digest() * 64)
                                      for j in range(files)] for i in range(n)]


def test_parallel_prepares_leave_one_snapshot_per_layer(tmp_path: Path) -> None:
    layout, manifest, config = image(tmp_path / "l", _big_layers(4, 300))
    store = tmp_path / "store"
    procs = [subprocess.Popen([sys.executable, "-c", PREPARE, str(tmp_path / "l"), str(store)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, results
    s = Snapshots(str(store), "overlay")
    assert sorted(s.list()) == sorted(chain_ids(config["rootfs"]["diff_ids"]))
    assert sorted(os.listdir(store)) == sorted(os.path.basename(s.path(c)) for c in s.list())  # no .tmp-*
    root = Path(s.mount(chain_ids(config["rootfs"]["diff_ids"]), str(tmp_path / "c")))
    try:
        assert len(os.listdir(root / "l3")) == 300
    finally:
        unmount(str(tmp_path / "c"))


def test_sigkilled_prepare_leaves_only_temp_dirs(tmp_path: Path) -> None:
    layers = [[entry("a", data=b"a")], [entry(f"f{j}", data=b"x" * 2048) for j in range(30000)]]
    layout, manifest, config = image(tmp_path / "l", layers)
    store = tmp_path / "store"
    s = Snapshots(str(store), "overlay")
    proc = subprocess.Popen([sys.executable, "-c", PREPARE, str(tmp_path / "l"), str(store)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:  # kill it in the middle of the big layer
            tmps = [n for n in os.listdir(store) if n.startswith(".tmp-")]
            if len(tmps) == 2 and any(os.path.exists(store / t / "fs" / "f100") for t in tmps):
                break
            time.sleep(0.005)
        else:
            pytest.fail("the unpack never got under way")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert s.list() == []  # nothing renamed: nothing trusted
    assert len([n for n in os.listdir(store) if n.startswith(".tmp-")]) == 2
    s.clean_temp()
    assert [n for n in os.listdir(store) if n.startswith(".tmp-")] == []
    chains = s.prepare(layout, manifest, config)
    assert s.list() == sorted(chains)


def test_clean_temp_spares_a_live_unpack(tmp_path: Path) -> None:
    import fcntl

    s = Snapshots(str(tmp_path / "store"), "overlay")
    live = tmp_path / "store" / ".tmp-live"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    dead = tmp_path / "store" / ".tmp-dead"
    (dead / "fs").mkdir(parents=True)
    pid = os.fork()
    if pid == 0:  # another process: flock is per open file, so our own lock would not count
        s.clean_temp()
        os._exit(0)
    os.waitpid(pid, 0)
    os.close(fd)
    assert live.exists() and not dead.exists()


# -- a real container on a mounted rootfs -----------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_container_runs_on_the_snapshots(tmp_path: Path, busybox_rootfs: Path, make_bundle: Any,
                                         runtime: Any, driver: str) -> None:
    from support.helpers import unique_id

    layers = [dir_tar(busybox_rootfs), [entry("etc/.wh.group"), entry("srv", "dir"), entry("srv/hello", data=b"hi\n")]]
    layout, manifest, config = image(tmp_path / "l", layers)
    s = Snapshots(str(tmp_path / "store"), driver)
    chains = s.prepare(layout, manifest, config)
    bundle = make_bundle(["sh", "-c", "cat /srv/hello; test ! -e /etc/group && echo nogroup; "
                                      "echo written > /srv/new; rm /srv/hello; ls /srv"], rootfs=False)
    s.mount(chains, str(bundle))
    try:
        proc = runtime("run", "--bundle", str(bundle), unique_id("snap"), timeout=60)
        assert proc.stdout.split() == ["hi", "nogroup", "new"], proc.stderr
        if driver == "overlay":  # the writes went to upper/
            assert (bundle / "upper" / "srv" / "new").read_text() == "written\n"
            wh = os.lstat(bundle / "upper" / "srv" / "hello")
            assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
        else:  # to the copy
            assert (bundle / "rootfs" / "srv" / "new").read_text() == "written\n"
            assert not os.path.lexists(bundle / "rootfs" / "srv" / "hello")
        # the snapshots are untouched
        assert (Path(s.path(chains[1])) / "fs" / "srv" / "hello").read_text() == "hi\n"
    finally:
        unmount(str(bundle))
    assert mounts_below(tmp_path) == []


def test_warning_once_when_falling_back_to_copy(tmp_path: Path) -> None:
    code = ("import logging, sys; logging.basicConfig(stream=sys.stdout, format='%(name)s %(message)s');"
            "from ocipy.storage.snapshots import Snapshots;"
            f"s = Snapshots({str(tmp_path / 's')!r}); t = Snapshots({str(tmp_path / 's')!r}); print(s.driver)")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "driver.json").write_text(json.dumps({"driver": "copy", "reason": "no overlayfs (test)"}))
    env = {k: v for k, v in os.environ.items() if k != "OCIPY_STORAGE_DRIVER"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    lines = out.splitlines()
    assert lines[-1] == "copy" and len(lines) == 2 and "no overlayfs (test)" in lines[0], out
    # and the probe itself: overlay works on this machine's filesystem
    (tmp_path / "p").mkdir()
    assert Snapshots(str(tmp_path / "p")).driver in ("overlay", "copy")
    assert json.loads((tmp_path / "p" / "driver.json").read_text())["driver"] == "overlay"
    assert mounts_below(tmp_path) == []


# -- sources, progress, sharing ---------------------------------------------------------------


def test_prepare_reads_any_source_and_reports_progress(tmp_path: Path) -> None:
    from image_fixtures import ocipy

    from ocipy.content import reference
    from ocipy.content.store import Image, open_source

    layout, _, _ = image(tmp_path / "l", [BASE, [entry("big", data=os.urandom(3 << 20))]])
    archive = tmp_path / "img.tar"
    ocipy("image", "export", f"oci:{layout.path}:latest", f"oci-archive:{archive}:latest")
    img = Image(open_source(reference.parse(f"oci-archive:{archive}:latest")))
    try:
        _, manifest = img.resolve_image(img.top())
        config = img.read_config(manifest["config"])
        seen: list[tuple[str, int, int]] = []
        s = Snapshots(str(tmp_path / "store"), "overlay")
        chains = s.prepare(img, manifest, config, lambda d, done, total: seen.append((d, done, total)))
    finally:
        img.close()
    for desc in manifest["layers"]:
        mine = [(done, total) for d, done, total in seen if d == desc["digest"]]
        assert mine and mine[-1] == (desc["size"], desc["size"])  # compressed bytes, to the end
        assert [d for d, _ in mine] == sorted(d for d, _ in mine)
    assert sorted(s.list()) == sorted(chains)


def test_existing_snapshots_are_shared_and_not_opened(tmp_path: Path) -> None:
    s = Snapshots(str(tmp_path / "store"), "overlay")
    layout, manifest, config = image(tmp_path / "a", [BASE, [entry("one", data=b"1")]])
    first = s.prepare(layout, manifest, config)
    # a second image on the same bottom layers: only its new top is unpacked -- the shared
    # layers' blobs are not even opened (they are gone from this layout)
    layout2, manifest2, config2 = image(tmp_path / "b", [BASE, [entry("one", data=b"1")], [entry("two", data=b"2")]])
    for desc in manifest2["layers"][:2]:
        os.unlink(layout2.blob_path(desc["digest"]))
    second = s.prepare(layout2, manifest2, config2)
    assert second[:2] == first and len(s.list()) == 3
    root = Path(s.mount(second, str(tmp_path / "c")))
    try:
        assert (root / "one").read_text() == "1" and (root / "two").read_text() == "2"
    finally:
        unmount(str(tmp_path / "c"))
    # list() shows complete snapshots only; remove() takes one at any depth of the chain
    (Path(s.root) / ".tmp-junk").mkdir()
    assert len(s.list()) == 3
    s.remove(first[0])
    s.remove(first[0])  # missing is fine
    assert sorted(s.list()) == sorted(second[1:])
    s.clean_temp()
    assert sorted(os.listdir(s.root)) == sorted(os.path.basename(s.path(c)) for c in second[1:])


def test_non_root_gets_one_line_error(tmp_path: Path) -> None:
    import tempfile

    layout, manifest, config = image(tmp_path / "l", [BASE, [entry("d/.wh..wh..opq")]])
    public = tempfile.mkdtemp(prefix="ocipy-snap-nonroot-")
    os.chmod(public, 0o777)
    store = os.path.join(public, "store")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a non-root process (the layout was read before, as root)
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            Snapshots(store, "copy").prepare(layout, manifest, config)
            os.write(w, b"no error")
        except ImageError as e:
            os.write(w, str(e).encode())
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            os.write(w, f"{type(e).__name__}: {e}".encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read().decode()
    os.waitpid(pid, 0)
    import shutil

    shutil.rmtree(public)
    assert msg.startswith(f"snapshots {store}: layer snapshots can only be made as root ("), msg
