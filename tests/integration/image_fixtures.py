"""Helpers for the image tests: hand-made layers and layouts, tree snapshots.

Layers are written with tarfile (writing a tar is fine; only extraction must
never use it), so tests can put anything in them: `..` names, absolute
names, symlinks, hardlinks, devices, duplicates, whiteouts.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import zstandard

from ocipy.image.store import Layout
from ocipy.spec import image as spec

REPO = Path(__file__).resolve().parents[2]
OCIPY = str(REPO / ".venv" / "bin" / "ocipy")


def entry(name: str, kind: str = "file", data: bytes = b"", mode: int | None = None, uid: int = 0,
          gid: int = 0, link: str = "", mtime: int = 1_600_000_000, major: int = 0, minor: int = 0,
          xattrs: dict[str, str] | None = None) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.uid, info.gid, info.mtime = uid, gid, mtime
    info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                 "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE,
                 "fifo": tarfile.FIFOTYPE}[kind]
    info.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    info.linkname = link
    info.devmajor, info.devminor = major, minor
    if kind == "file":
        info.size = len(data)
    if xattrs:
        info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    return info, data


def make_tar(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def dir_tar(root: Path) -> bytes:
    """A layer holding the tree under `root` as it is (owners, modes, links)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for p in sorted(root.rglob("*")):
            tf.add(p, arcname=str(p.relative_to(root)), recursive=False)
    return buf.getvalue()


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, 6)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_layout(path: Path, layers: list[bytes | list[tuple[tarfile.TarInfo, bytes]]], tag: str = "latest",
                 compression: str = "gzip", config: dict[str, Any] | None = None,
                 media_type: str | None = None, raw_blobs: list[bytes] | None = None) -> Layout:
    """A layout with one image: each layer is a tar (bytes) or an entry list.

    `raw_blobs` replaces the compressed bytes of each layer as stored (for truncation
    tests: the descriptor then matches the broken blob, and only decompression can tell).
    """
    layout = Layout.init(str(path), exist_ok=True)
    descs, diff_ids = [], []
    for i, layer in enumerate(layers):
        tar = layer if isinstance(layer, bytes) else make_tar(layer)
        blob = raw_blobs[i] if raw_blobs else compress(tar, compression)
        digest, size = layout.write_blob(blob)
        mt = media_type or spec.COMPRESSED_LAYER_TYPE[compression]
        descs.append({"mediaType": mt, "digest": digest, "size": size})
        diff_ids.append(sha256(tar))
    cfg = {"architecture": spec.host_platform()["architecture"], "os": "linux",
           "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}}
    if config:
        cfg["config"].update(config)
    cdesc = layout.put_json(cfg, spec.MEDIA_CONFIG)
    mdesc = layout.put_json({"schemaVersion": 2, "mediaType": spec.MEDIA_MANIFEST, "config": cdesc,
                             "layers": descs}, spec.MEDIA_MANIFEST)
    from ocipy.image.build import set_tag

    set_tag(layout, tag, mdesc)
    return layout


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """path -> (type+mode, uid, gid, size, mtime, content hash or link) for a whole tree."""
    out: dict[str, tuple[Any, ...]] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    extra: Any = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            else:
                extra = st.st_rdev
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
                        st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else 0, extra)
    return out


def tree(root: Path, mtimes: bool = False) -> dict[str, tuple[Any, ...]]:
    """path -> (type, mode, uid, gid, symlink target / content hash / rdev) — for comparing unpacks."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    extra: Any = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = st.st_rdev
            else:
                extra = None
            row: tuple[Any, ...] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra)
            if mtimes and not stat.S_ISDIR(st.st_mode):
                row += (int(st.st_mtime),)
            out[rel] = row
    return out


def ocipy(*args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([OCIPY, *args], capture_output=True, text=True, timeout=120, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"ocipy {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def leftovers(parent: Path) -> list[str]:
    """Temp files/dirs an operation may have left next to its target."""
    return sorted(n for n in os.listdir(parent) if n.startswith((".ocipy-", "ocipy-tmp")))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
