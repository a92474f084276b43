"""Image → runtime bundle (image-spec conversion.md).

The bundle is built in a temp directory next to the target and renamed into
place at the end, so a failed unpack leaves nothing behind.  Besides
``rootfs/`` and ``config.json`` the bundle holds:

* ``ocipy-image.json``: the layout and the manifest/config descriptors the
  bundle came from (what ``repack`` builds on);
* ``ocipy-mtree.json``: an mtree-like record of the unpacked tree (type,
  mode, owner, size, mtime, ctime, inode, symlink target per path) that
  ``repack`` diffs against.  A file's ctime changes whenever its content,
  mode, owner or xattrs change, so no content hashes are needed.

The generated config.json is :func:`ocipy.image.conversion.runtime_config`'s.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ocipy.content.progress import BlobProgress, ProgressCallback
from ocipy.errors import ImageError
from ocipy.image.conversion import runtime_config
from ocipy.image.layers import compression
from ocipy.image.layers.apply import Applier, ApplyOptions
from ocipy.image.layers.diff import scan_tree
from ocipy.image.layers.stream import LayerStream
from ocipy.image.store import Layout
from ocipy.spec.digest import VerifyingReader
from ocipy.spec.image import layer_diff_ids

BUNDLE_META = "ocipy-image.json"
BUNDLE_MTREE = "ocipy-mtree.json"


def apply_layers(layout: Layout, manifest: dict[str, Any], config: dict[str, Any], rootfs: str,
                 options: ApplyOptions | None = None, progress: ProgressCallback | None = None) -> None:
    """Apply the manifest's layers in order onto `rootfs`, verifying digests and diff_ids.

    `progress` (:mod:`ocipy.content.progress`) sees each layer's compressed bytes as they are read."""
    layers = manifest["layers"]
    diff_ids = layer_diff_ids(manifest, config)
    with Applier(rootfs, options) as applier:  # finish()es on the way out
        for i, desc in enumerate(layers):
            apply_layer(applier, layout, desc, diff_ids[i], i, progress)


def apply_layer(applier: Applier, image: Any, desc: dict[str, Any], want: str, index: int,
                progress: ProgressCallback | None = None) -> int:
    """Apply the layer `desc` of `image` (anything with ``open_blob(digest, desc)``),
    verifying its digest and size as it streams and its diff_id against `want`
    (config rootfs.diff_ids[`index`]).  `progress(digest, done, total)` is told
    the compressed bytes read.  Returns the uncompressed size."""
    what = f"layer {desc['digest']}"
    # manifest.md: unknown layer media types must not be parsed; for unpacking
    # there is nothing sensible to do but refuse (before the blob is opened)
    codec = compression.for_media_type(desc["mediaType"], what)
    before = applier.budget[0]
    bar = BlobProgress(progress, desc["digest"], desc.get("size") or 0)
    bar.start()
    with image.open_blob(desc["digest"], desc) as raw:
        verifier = VerifyingReader(_Counting(raw, bar.add) if progress else raw,
                                   desc["digest"], desc.get("size"), "layer")
        stream = LayerStream(verifier, codec, what, applier.budget)
        applier.apply(stream, what)
        stream.drain()
        verifier.finish()
    bar.finish()
    diff_id = stream.diff_id() or desc["digest"]
    if want.partition(":")[0] == diff_id.partition(":")[0] and want != diff_id:
        raise ImageError(f"{what}: uncompressed digest {diff_id} does not match "
                         f"config rootfs.diff_ids[{index}] {want}")
    return before - applier.budget[0]


class _Counting:
    """A reader that tells `add` how many bytes each read gave."""

    def __init__(self, raw: Any, add: Any) -> None:
        self.raw = raw
        self.add = add

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.raw.read(n)
        if data:
            self.add(len(data))
        return data


def write_json(path: str, doc: Any, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    # json.dumps, not json.dump: only the one-shot call uses the C encoder (the mtree of
    # a large rootfs took ~40 ms through the pure-Python one)
    text = json.dumps(doc, indent=2 if path.endswith("config.json") else None)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def unpack(layout: Layout, manifest_desc: dict[str, Any], bundle: str,
           options: ApplyOptions | None = None, ref: str | None = None,
           progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Unpack the image `manifest_desc` of `layout` into a new bundle directory.

    `bundle` must not exist (or be an empty directory).  Returns the runtime config.
    """
    import tempfile

    from ocipy import fstree

    bundle = os.path.abspath(bundle)
    if os.path.lexists(bundle):
        if not os.path.isdir(bundle) or os.path.islink(bundle) or os.listdir(bundle):
            raise ImageError(f"bundle {bundle}: already exists and is not an empty directory")
    parent = os.path.dirname(bundle)
    if not os.path.isdir(parent):
        raise ImageError(f"bundle {bundle}: parent directory does not exist")
    with layout.lock(shared=True):
        manifest = layout.read_manifest(manifest_desc)
        config = layout.read_config(manifest["config"])
        tmp = tempfile.mkdtemp(prefix=".ocipy-unpack-", dir=parent)
        try:
            rootfs = os.path.join(tmp, "rootfs")
            os.mkdir(rootfs, 0o755)
            apply_layers(layout, manifest, config, rootfs, options, progress)
            rc = runtime_config(config, rootfs)
            write_json(os.path.join(tmp, "config.json"), rc)
            write_json(os.path.join(tmp, BUNDLE_META), {
                "layout": layout.path, "ref": ref, "manifest": manifest_desc,
                "config": manifest["config"],
                # for `image run`: podman's rules replace the Cmd and keep the Entrypoint
                "entrypoint": (config.get("config") or {}).get("Entrypoint"),
                "cmd": (config.get("config") or {}).get("Cmd")})
            write_json(os.path.join(tmp, BUNDLE_MTREE), scan_tree(rootfs), 0o600)
            os.chmod(tmp, 0o700)
            if os.path.isdir(bundle):
                os.rmdir(bundle)
            os.rename(tmp, bundle)
        except BaseException:
            fstree.remove_quietly(tmp)  # any depth; a non-root user's 0500 dirs included
            raise
    return rc
