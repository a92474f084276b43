"""The public Python API for OCI images (what ``ocipy image …`` calls).

References use the skopeo convention: ``oci:DIR[:TAG]``,
``oci-archive:FILE[:TAG]``, ``docker-archive:FILE[:NAME:TAG]`` (a bare
``DIR[:TAG]`` means ``oci:``).  Every function raises
:class:`ocipy.errors.ImageError` with a one-line message naming the blob,
entry or field at fault; a failed call leaves layouts and targets as they were.

Example::

    from ocipy import api_image as img
    img.init("/tmp/layout")
    img.new("oci:/tmp/layout:base")
    img.add_layer("oci:/tmp/layout:base", "/path/to/rootfs")
    img.configure("oci:/tmp/layout:base", cmd=["/bin/sh", "-c", "echo hi"])
    img.unpack("oci:/tmp/layout:base", "/tmp/bundle")
    img.export("oci:/tmp/layout:base", "docker-archive:/tmp/base.tar:base:latest")
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ocipy.errors import ImageError

__all__ = [
    "init", "new", "list_tags", "inspect", "validate", "tag", "remove", "gc", "unpack", "repack",
    "add_layer", "configure", "import_image", "export", "run",
]


def _layout(path: str) -> Any:
    from ocipy.image.store import Layout

    return Layout.open(path)


def _platform(platform: str | dict[str, str] | None) -> dict[str, str] | None:
    from ocipy.spec.image import parse_platform

    if platform is None or isinstance(platform, dict):
        return platform
    return parse_platform(platform)


@contextmanager
def _source(ref: str) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(layout, top descriptor) for any reference; archives go through a temp layout."""
    import shutil
    import tempfile

    from ocipy.image import archive, refs
    from ocipy.image.store import Layout

    r = refs.parse(ref)
    if r.transport == "oci":
        layout = _layout(r.path)
        yield layout, layout.resolve(r.tag)
        return
    tmp = tempfile.mkdtemp(prefix="ocipy-image-")
    try:
        layout = Layout.init(tmp, exist_ok=True)
        if r.transport == "oci-archive":
            desc = archive.import_oci_archive(r.path, r.tag, layout, "image")
        else:
            desc = archive.import_docker_archive(r.path, r.tag, layout, "image", "none")
        yield layout, desc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _whole_layout(path: str) -> Iterator[tuple[Any, dict[str, Any]]]:
    yield _layout(path), {}


def init(path: str) -> None:
    """Create an empty OCI image layout at `path` (image-layout.md)."""
    from ocipy.image.store import Layout

    Layout.init(path)


def new(ref: str, platform: str | None = None) -> dict[str, Any]:
    """Create an empty image (no layers) `oci:DIR:TAG`; returns its manifest descriptor."""
    from ocipy.image import build, refs

    r = refs.require_oci(ref)
    assert r.tag
    return build.new_image(_layout(r.path), r.tag, _platform(platform))


def list_tags(path: str) -> list[dict[str, Any]]:
    """The tagged descriptors of the layout at `path` (oci: prefix optional)."""
    from ocipy.image import refs

    r = refs.parse(path)
    if r.transport != "oci":
        raise ImageError(f"ls: {path!r}: expected an image layout directory")
    return [{"tag": name, **desc} for name, desc in _layout(r.path).tags()]


def inspect(ref: str, platform: str | None = None) -> dict[str, Any]:
    """Descriptor, manifest (and index) and config of an image, as one JSON-able dict."""
    with _source(ref) as (layout, top):
        out: dict[str, Any] = {"reference": ref, "descriptor": top}
        if top["mediaType"] not in ("application/vnd.oci.image.manifest.v1+json",
                                    "application/vnd.docker.distribution.manifest.v2+json"):
            out["index"] = layout.read_manifest(top)
        mdesc, manifest = layout.resolve_image(top, _platform(platform))
        config = layout.read_config(manifest["config"])
        out.update({"digest": mdesc["digest"], "manifest": manifest, "config": config,
                    "layers": len(manifest["layers"]),
                    "size": sum(layer["size"] for layer in manifest["layers"])})
        return out


def validate(ref: str) -> list[str]:
    """Verify everything an image (or, without a tag, a whole layout) references.

    Checks every document against the image-spec, every blob's digest and
    size, and every layer's decompressed digest against the config's diff_ids.
    Returns the digests checked.
    """
    from ocipy.image import archive, refs
    from ocipy.image.layer import open_layer_stream
    from ocipy.image.store import VerifyingReader
    from ocipy.spec import image as spec

    r = refs.parse(ref)
    whole = r.transport == "oci" and r.tag is None
    with _whole_layout(r.path) if whole else _source(ref) as (layout, top):
        tops = layout.index()["manifests"] if whole else [top]
        checked: list[str] = []
        for t in tops:
            for desc in archive.image_blobs(layout, t):
                if desc["digest"] in checked:
                    continue
                mt = desc.get("mediaType")
                if mt in spec.MANIFEST_TYPES:
                    manifest = layout.read_manifest(desc)
                    config = layout.read_config(manifest["config"])
                    if len(config["rootfs"]["diff_ids"]) != len(manifest["layers"]):
                        raise ImageError(f"manifest {desc['digest']}: {len(manifest['layers'])} layers but "
                                         f"config has {len(config['rootfs']['diff_ids'])} diff_ids")
                    for i, ldesc in enumerate(manifest["layers"]):
                        if ldesc["mediaType"] not in spec.LAYER_COMPRESSION:
                            continue
                        with layout.open_blob(ldesc["digest"]) as raw:
                            v = VerifyingReader(raw, ldesc["digest"], ldesc.get("size"), "layer")
                            stream = open_layer_stream(v, ldesc["mediaType"], f"layer {ldesc['digest']}", [1 << 62])
                            stream.drain()
                            v.finish()
                        diff = stream.diff_id() or ldesc["digest"]
                        if diff != config["rootfs"]["diff_ids"][i]:
                            raise ImageError(f"layer {ldesc['digest']}: uncompressed digest {diff} does not "
                                             f"match config rootfs.diff_ids[{i}]")
                        checked.append(ldesc["digest"])
                elif mt in spec.INDEX_TYPES:
                    layout.read_manifest(desc)
                elif not layout.has_blob(desc["digest"]):
                    raise ImageError(f"blob {desc['digest']}: missing from image layout {layout.path}")
                else:
                    with layout.open_blob(desc["digest"]) as raw:
                        VerifyingReader(raw, desc["digest"], desc.get("size")).finish()
                checked.append(desc["digest"])
        return checked


def tag(ref: str, new_tag: str) -> dict[str, Any]:
    """Give the image `oci:DIR:TAG` another tag in the same layout."""
    from ocipy.image import build, refs

    r = refs.require_oci(ref)
    layout = _layout(r.path)
    with layout.lock():
        desc = layout.resolve(r.tag)
        build.set_tag(layout, new_tag, desc)
    return desc  # type: ignore[no-any-return]


def remove(ref: str) -> None:
    """Remove the tag `oci:DIR:TAG` (blobs stay until :func:`gc`)."""
    from ocipy.image import build, refs

    r = refs.require_oci(ref)
    assert r.tag
    build.remove_tag(_layout(r.path), r.tag)


def gc(path: str) -> list[str]:
    """Remove blobs no tag reaches (and stale temp files); return their digests."""
    from ocipy.image import refs

    return _layout(refs.parse(path).path).gc()  # type: ignore[no-any-return]


def unpack(ref: str, bundle: str, platform: str | None = None, max_size: int | None = None) -> dict[str, Any]:
    """Unpack an image into a new runtime bundle (rootfs/ + config.json); return the config.

    `max_size` caps the expanded bytes (default 32 GiB or $OCIPY_MAX_UNPACK_SIZE).
    """
    from ocipy.image.layer import ApplyOptions
    from ocipy.image.unpack import unpack as _unpack

    with _source(ref) as (layout, top):
        mdesc, _ = layout.resolve_image(top, _platform(platform))
        return _unpack(layout, mdesc, bundle, ApplyOptions(max_size=max_size), ref)


def repack(ref: str, bundle: str, compression: str = "gzip", history: str | None = None,
           mask_volumes: bool = True) -> dict[str, Any]:
    """Turn the changes made to an unpacked bundle's rootfs into a new image `oci:DIR:TAG`."""
    from ocipy.image import build, refs

    r = refs.require_oci(ref)
    assert r.tag
    return build.repack(_layout(r.path), r.tag, bundle, compression, history, mask_volumes)


def add_layer(ref: str, path: str, compression: str = "gzip", history: str | None = None) -> dict[str, Any]:
    """Append a layer made of a directory (its content becomes /) or a tar file."""
    from ocipy.image import build, refs

    r = refs.require_oci(ref)
    assert r.tag
    return build.add_layer(_layout(r.path), r.tag, path, compression, history)


def configure(ref: str, history: str | None = None, no_history: bool = False, **changes: Any) -> dict[str, Any]:
    """Edit an image config: entrypoint, cmd, env, workdir, user, label, port, volume,
    stop_signal, author, os, architecture, created, clear=[field, …] (see umoci config)."""
    from ocipy.image import build, refs

    r = refs.require_oci(ref)
    assert r.tag
    return build.configure(_layout(r.path), r.tag, changes, history, no_history)


def import_image(source: str, destination: str, compression: str = "gzip") -> dict[str, Any]:
    """Copy an oci-archive:, docker-archive: or oci: image into `oci:DIR:TAG` (created if needed)."""
    from ocipy.image import archive, build, refs
    from ocipy.image.store import Layout

    src = refs.parse(source)
    dst = refs.require_oci(destination)
    assert dst.tag
    layout = Layout.init(dst.path, exist_ok=True)
    if src.transport == "oci-archive":
        return archive.import_oci_archive(src.path, src.tag, layout, dst.tag)
    if src.transport == "docker-archive":
        return archive.import_docker_archive(src.path, src.tag, layout, dst.tag, compression)
    s = _layout(src.path)
    desc = s.resolve(src.tag)
    archive.copy_image(s, desc, layout)
    build.set_tag(layout, dst.tag, desc)
    return desc  # type: ignore[no-any-return]


def export(source: str, destination: str, platform: str | None = None) -> None:
    """Write `oci:DIR:TAG` as an oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG]."""
    from ocipy.image import archive, build, refs
    from ocipy.image.store import Layout

    s = refs.parse(source)
    d = refs.parse(destination)
    with _source(source) as (layout, desc):
        if d.transport == "oci-archive":
            archive.export_oci_archive(layout, desc, d.path, d.tag or s.tag)
        elif d.transport == "docker-archive":
            archive.export_docker_archive(layout, desc, d.path, d.tag, _platform(platform))
        else:
            if not d.tag:
                raise ImageError(f"export: {destination!r}: a tag is required (oci:DIR:TAG)")
            dst = Layout.init(d.path, exist_ok=True)
            archive.copy_image(layout, desc, dst)
            build.set_tag(dst, d.tag, desc)


def run(ref: str, args: list[str] | None = None, *, rm: bool = True, root: str | None = None,
        container_id: str | None = None, platform: str | None = None, workdir: str | None = None) -> int:
    """Unpack `ref` into a temp bundle and run it in the foreground; return its exit status.

    `args` replaces the image's command.  With `rm` the container and the bundle
    are deleted afterwards; otherwise both are kept (the bundle path is in the
    container's state).
    """
    import json
    import shutil
    import tempfile
    import uuid

    from ocipy import api

    base = workdir or os.environ.get("OCIPY_IMAGE_RUN_DIR") or "/var/tmp"
    os.makedirs(base, exist_ok=True)
    holder = tempfile.mkdtemp(prefix="ocipy-run-", dir=base)
    bundle = os.path.join(holder, "bundle")
    cid = container_id or f"ocipy-{uuid.uuid4().hex[:12]}"
    try:
        config = unpack(ref, bundle, platform)
        if args:
            config["process"]["args"] = list(args)
            path = os.path.join(bundle, "config.json")
            with open(path, "w") as f:
                json.dump(config, f, indent=2)
        return api.run(cid, bundle, root=root, keep=not rm, forward_signals=True).exit_code
    finally:
        if rm:
            shutil.rmtree(holder, ignore_errors=True)
