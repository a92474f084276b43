"""The public Python API for OCI images (what ``ocipy image …`` calls).

References are the one grammar of :mod:`ocipy.content.reference` (skopeo's):
``docker://HOST/REPO[:TAG|@DIGEST]``, ``oci:DIR[:TAG|@DIGEST]``,
``oci-archive:FILE[:TAG]``, ``docker-archive:FILE[:NAME:TAG]`` (a bare
``DIR[:TAG]`` means ``oci:``).  The commands that read an image (inspect,
validate, unpack, run, export, import) take any of them -- a registry image
is streamed and verified as it is read, nothing unverified kept; the ones
that edit a layout take ``oci:DIR:TAG``.  ``options`` (an
:class:`ocipy.registry.endpoints.RegistryOptions`) says how to reach a
registry.  Every function raises
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

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ocipy.content.progress import ProgressCallback, Reporter, reporter
from ocipy.errors import ImageError

if TYPE_CHECKING:
    from ocipy._image import Image

__all__ = [
    "init", "new", "list_tags", "inspect", "validate", "tag", "remove", "gc", "unpack", "repack",
    "add_layer", "configure", "import_image", "export", "run", "create", "pull", "images", "prune",
    "copy", "push", "ProgressCallback", "Reporter", "reporter", "Image", "open",
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
def _source(ref: str, options: Any = None, storage: str | None = None) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(image, top descriptor) for any reference.  An ``oci:`` layout is read as
    it is (its index.json entry is the top); any other source through
    :class:`ocipy.content.store.Image`, which reads the same way."""
    from ocipy.content import reference
    from ocipy.content.store import Image, open_source
    from ocipy.storage.names import names_layout

    r = reference.parse(ref)
    if r.transport == "oci" and not r.digest and names_layout(r):
        layout = _layout(r.path)
        yield layout, layout.resolve(r.tag)
        return
    image = Image(open_source(r, options, storage))
    try:
        yield image, image.top()
    finally:
        image.close()


def _store(storage: str | None) -> Any:
    from ocipy.storage.store import Store

    return Store(storage)


def _names_layout(ref: str) -> bool:
    """`ref` names a layout (``oci:DIR``, or a bare DIR that is one), not a store image."""
    from ocipy.content import reference
    from ocipy.storage.names import names_layout

    return names_layout(reference.parse(ref))


@contextmanager
def _whole_layout(path: str) -> Iterator[tuple[Any, dict[str, Any]]]:
    yield _layout(path), {}


def init(path: str) -> None:
    """Create an empty OCI image layout at `path` (image-layout.md)."""
    from ocipy.image.store import Layout

    Layout.init(path)


def new(ref: str, platform: str | None = None) -> dict[str, Any]:
    """Create an empty image (no layers) `oci:DIR:TAG`; returns its manifest descriptor."""
    from ocipy.content import reference
    from ocipy.image import build

    r = reference.require_layout(ref)
    assert r.tag
    return build.new_image(_layout(r.path), r.tag, _platform(platform))


def list_tags(path: str) -> list[dict[str, Any]]:
    """The tagged descriptors of the layout at `path` (oci: prefix optional)."""
    from ocipy.content import reference

    r = reference.parse(path)
    if r.transport != "oci":
        raise ImageError(f"ls: {path!r}: expected an image layout directory")
    return [{"tag": name, **desc} for name, desc in _layout(r.path).tags()]


def inspect(ref: str, platform: str | None = None, options: Any = None) -> dict[str, Any]:
    """Descriptor, manifest (and index) and config of an image, as one JSON-able dict."""
    from ocipy.spec import image as spec

    with _source(ref, options) as (layout, top):
        out: dict[str, Any] = {"reference": ref, "descriptor": top}
        if top["mediaType"] not in spec.MANIFEST_TYPES:
            out["index"] = layout.read_manifest(top)
        mdesc, manifest = layout.resolve_image(top, _platform(platform))
        config = layout.read_config(manifest["config"])
        out.update({"digest": mdesc["digest"], "manifest": manifest, "config": config,
                    "layers": len(manifest["layers"]),
                    "size": sum(layer["size"] for layer in manifest["layers"])})
        return out


def validate(ref: str, options: Any = None) -> list[str]:
    """Verify everything an image (or, without a tag, a whole layout) references.

    Checks every document against the image-spec, every blob's digest and
    size, and every layer's decompressed digest against the config's diff_ids.
    Any source: a registry image is streamed and verified, nothing stored.
    Returns the digests checked.
    """
    from ocipy.content import reference
    from ocipy.content.walk import walk
    from ocipy.image.layers.stream import open_layer_stream
    from ocipy.spec import image as spec
    from ocipy.storage.names import names_layout

    r = reference.parse(ref)
    whole = names_layout(r) and r.tag is None and r.digest is None
    with _whole_layout(r.path) if whole else _source(ref, options) as (image, top):
        tops = image.index()["manifests"] if whole else [top]
        checked: list[str] = []
        for desc in walk(image.read_manifest, tops):
            mt = desc.get("mediaType")
            if mt in spec.MANIFEST_TYPES:
                manifest = image.read_manifest(desc)
                config = image.read_config(manifest["config"])
                diff_ids = config["rootfs"]["diff_ids"]
                if len(diff_ids) != len(manifest["layers"]):
                    raise ImageError(f"manifest {desc['digest']}: {len(manifest['layers'])} layers but "
                                     f"config has {len(diff_ids)} diff_ids")
                for i, ldesc in enumerate(manifest["layers"]):
                    if ldesc["mediaType"] not in spec.LAYER_COMPRESSION or ldesc["digest"] in checked:
                        continue
                    with image.open_blob(ldesc["digest"]) as raw:
                        from ocipy.spec.digest import VerifyingReader

                        v = VerifyingReader(raw, ldesc["digest"], ldesc.get("size"), "layer")
                        stream = open_layer_stream(v, ldesc["mediaType"], f"layer {ldesc['digest']}", [1 << 62])
                        stream.drain()
                        v.finish()
                    diff = stream.diff_id() or ldesc["digest"]
                    if diff != diff_ids[i]:
                        raise ImageError(f"layer {ldesc['digest']}: uncompressed digest {diff} does not "
                                         f"match config rootfs.diff_ids[{i}]")
                    checked.append(ldesc["digest"])
            elif mt in spec.INDEX_TYPES or desc["digest"] in checked:
                pass  # read (verified, validated) by the walk
            else:
                with image.open_blob(desc["digest"], desc) as raw:
                    from ocipy.spec.digest import VerifyingReader

                    VerifyingReader(raw, desc["digest"], desc.get("size")).finish()
            checked.append(desc["digest"])
        return checked


def tag(ref: str, new_tag: str, *, storage: str | None = None) -> dict[str, Any]:
    """Give the image `oci:DIR:TAG` another tag in the same layout, or the store
    image `ref` names (``busybox``) another name (``NAME[:TAG]``)."""
    from ocipy.content import reference
    from ocipy.image import build

    if not _names_layout(ref):
        stored = _store(storage).tag(ref, new_tag)
        return {"name": stored.name, **stored.descriptor}
    r = reference.require_layout(ref)
    layout = _layout(r.path)
    with layout.lock():
        desc = layout.resolve(r.tag)
        build.set_tag(layout, new_tag, desc)
    return desc  # type: ignore[no-any-return]


def remove(ref: str, *, storage: str | None = None) -> None:
    """Remove the tag `oci:DIR:TAG` (blobs stay until :func:`gc`), or a name from
    the store (its blobs and snapshots stay until :func:`prune`)."""
    from ocipy.content import reference
    from ocipy.image import build

    if not _names_layout(ref):
        _store(storage).remove(ref)
        return
    r = reference.require_layout(ref)
    assert r.tag
    build.remove_tag(_layout(r.path), r.tag)


def gc(path: str) -> list[str]:
    """Remove blobs no tag reaches (and stale temp files); return their digests."""
    from ocipy.content import reference

    return _layout(reference.parse(path).path).gc()  # type: ignore[no-any-return]


def unpack(ref: str, bundle: str, platform: str | None = None, max_size: int | None = None,
           options: Any = None, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Unpack an image from any source into a new runtime bundle (rootfs/ + config.json);
    return the config.  A registry image's layers stream from the registry into the
    rootfs, each verified (digest, size, diff_id) as it is applied; a failure
    leaves no bundle.

    `max_size` caps the expanded bytes (default 32 GiB or $OCIPY_MAX_UNPACK_SIZE).
    `progress` is called with (layer digest, compressed bytes read, layer size)
    as each layer is applied (:mod:`ocipy.content.progress`).
    """
    from ocipy.image.layers.apply import ApplyOptions
    from ocipy.image.unpack import unpack as _unpack

    with _source(ref, options) as (image, top):
        mdesc, _ = image.resolve_image(top, _platform(platform))
        return _unpack(image, mdesc, bundle, ApplyOptions(max_size=max_size), ref, progress)


def repack(ref: str, bundle: str, compression: str = "gzip", history: str | None = None,
           mask_volumes: bool = True) -> dict[str, Any]:
    """Turn the changes made to an unpacked bundle's rootfs into a new image `oci:DIR:TAG`."""
    from ocipy.content import reference
    from ocipy.image import build

    r = reference.require_layout(ref)
    assert r.tag
    return build.repack(_layout(r.path), r.tag, bundle, compression, history, mask_volumes)


def add_layer(ref: str, path: str, compression: str = "gzip", history: str | None = None) -> dict[str, Any]:
    """Append a layer made of a directory (its content becomes /) or a tar file."""
    from ocipy.content import reference
    from ocipy.image import build

    r = reference.require_layout(ref)
    assert r.tag
    return build.add_layer(_layout(r.path), r.tag, path, compression, history)


def configure(ref: str, history: str | None = None, no_history: bool = False, **changes: Any) -> dict[str, Any]:
    """Edit an image config: entrypoint, cmd, env, workdir, user, label, port, volume,
    stop_signal, author, os, architecture, created, clear=[field, …] (see umoci config)."""
    from ocipy.content import reference
    from ocipy.image import build

    r = reference.require_layout(ref)
    assert r.tag
    return build.configure(_layout(r.path), r.tag, changes, history, no_history)


def import_image(source: str, destination: str, compression: str = "gzip",
                 options: Any = None) -> dict[str, Any]:
    """Copy an image from any source into `oci:DIR:TAG` (created if needed); layers
    not already in `compression` are recompressed ("none": kept as they are).
    Returns the new tag's descriptor."""
    from ocipy.content import reference

    dst = reference.require_layout(destination)
    _copy(source, destination, dest_compress=None if compression == "none" else compression,
          options=options, all_platforms=True)
    return _layout(dst.path).resolve(dst.tag)  # type: ignore[no-any-return]


def export(source: str, destination: str, platform: str | None = None, options: Any = None) -> str:
    """Write an image from any source as oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG]
    or oci:DIR:TAG: a copy (every platform of an index, unless `platform` or the
    destination, a docker-archive, asks for one).  Returns the written manifest's digest."""
    from ocipy.content import reference

    s, d = reference.parse(source), reference.parse(destination)
    if d.transport == "docker":
        raise ImageError(f"export: {destination!r}: use `ocipy image copy` to push to a registry")
    if d.transport == "oci" and not d.tag:
        raise ImageError(f"export: {destination!r}: a tag is required (oci:DIR:TAG)")
    if d.transport == "oci-archive" and not d.tag and s.tag and s.transport != "docker":
        destination = f"{destination}:{s.tag}"  # the archive keeps the image's name
    return _copy(source, destination, platform=_platform(platform), options=options,
                 all_platforms=platform is None and d.transport != "docker-archive")


def _copy(source: str, destination: str, *, options: Any = None, **kw: Any) -> str:
    from ocipy import api_registry

    return api_registry.copy(source, destination, src_options=options, progress=False, **kw)


def run(ref: str, args: list[str] | None = None, *, rm: bool = True, detach: bool = False, capture: bool = False,
        root: str | None = None, container_id: str | None = None, platform: str | None = None,
        storage: str | None = None, pull: str = "missing", options: Any = None, run_options: Any = None,
        network: str = "none", ports: list[str] | None = None, progress: Any = None,
        unpack_progress: Any = None, forward_signals: bool = False) -> Any:  # fmt: skip
    """Run the image `ref` as a container: in the foreground an
    :class:`ocipy.api.Result` (``exit_code``; with `capture` also ``stdout``
    and ``stderr`` as bytes), detached the running :class:`ocipy.api.Container`.

    `ref` is a store name (``busybox``, ``localhost:5000/app:1``) or any
    reference; what is not in the store is pulled into it first (`pull`:
    ``missing``, ``always``, ``never`` or ``newer``, as podman's --pull; a
    layout or archive is read every time).  The container's root filesystem
    is an overlay of the image's layer snapshots in the store (`storage`,
    default :func:`ocipy.storage.names.default_root`).

    `args` replace the image's Cmd (podman's rule; `run_options.entrypoint`
    replaces its Entrypoint): see :class:`ocipy.engine.options.RunOptions` for
    the rest of podman run's options.  `network` is ``none`` (loopback only,
    the API's default), ``host`` or ``private`` (slirp4netns, with `ports`
    as ``-p`` gives them): :mod:`ocipy.engine.network`.  With `rm` the
    container and its directory in the store are deleted afterwards;
    otherwise both are kept until ``ocipy delete``.  `detach` returns once
    the container runs (not with `rm`: nothing would be left to delete it
    when it exits).  `progress(layer_digest, done, total)` sees a pull's
    bytes, `unpack_progress` its layers being unpacked.  `forward_signals` (main thread only) passes the caller's SIGINT,
    SIGTERM... on to the container, as the CLI does.
    """
    from ocipy.engine import run as engine

    return engine.run(ref, args, rm=rm, detach=detach, capture=capture, forward_signals=forward_signals,
                      root=root, container_id=container_id, platform=platform, storage=storage, pull=pull,
                      options=options, run_options=run_options, network=network, ports=ports,
                      progress=progress, unpack_progress=unpack_progress)  # fmt: skip


def create(ref: str, args: list[str] | None = None, *, root: str | None = None, container_id: str | None = None,
           platform: str | None = None, storage: str | None = None, pull: str = "missing", options: Any = None,
           run_options: Any = None, network: str = "none", ports: list[str] | None = None,
           progress: Any = None, unpack_progress: Any = None) -> Any:  # fmt: skip
    """Create (not start) a container of the image `ref`, as :func:`run` would;
    return its :class:`ocipy.api.Container` (``with api_image.create(...) as c``
    deletes it, and its directory in the store, on the way out)."""
    from ocipy.engine import run as engine

    return engine.create(ref, args, root=root, container_id=container_id, platform=platform, storage=storage,
                         pull=pull, options=options, run_options=run_options, network=network, ports=ports,
                         progress=progress, unpack_progress=unpack_progress)  # fmt: skip


# ---------------------------------------------------------------- the store


def pull(ref: str, *, storage: str | None = None, progress: Any = None, platform: str | None = None,
         options: Any = None, unpack_progress: Any = None) -> dict[str, Any]:
    """Copy the image `ref` into the local store and unpack its layers' snapshots;
    return ``{"name", "digest"}``.  `ref` is any reference; a bare name
    (``busybox``, ``localhost:5000/app:1``) is read from its registry.
    `progress(layer_digest, done_bytes, total_bytes)` is called as bytes move,
    `unpack_progress` likewise as each layer is unpacked into its snapshot.
    Blobs and snapshots the store has are not fetched again."""
    stored = _store(storage).pull(ref, platform=platform, options=options, progress=progress,
                                  unpack_progress=unpack_progress)
    return {"name": stored.name, "digest": stored.digest}


def images(*, storage: str | None = None) -> list[dict[str, Any]]:
    """The store's images: ``{"name", "digest", "size", "created"}`` per name."""
    return _store(storage).images()  # type: ignore[no-any-return]


def prune(*, storage: str | None = None) -> dict[str, list[str]]:
    """Remove from the store what no name and no container uses; return what went
    (``containers``, ``snapshots``, ``blobs``)."""
    return _store(storage).prune()  # type: ignore[no-any-return]


# --- copies with progress, and the Image object (ocipy._image) -------------------------------


def copy(source: str, destination: str, *, progress: ProgressCallback | None = None,
         platform: str | dict[str, str] | None = None, all_platforms: bool = False,
         dest_compress: str | None = None, src_options: Any = None, dest_options: Any = None) -> str:
    """Copy an image between any two references; return the destination's manifest digest.

    `progress` is called as ``progress(layer_digest, done_bytes, total_bytes)``
    as blobs move (:func:`reporter` makes one that draws bars or lines).  The
    rest is :func:`ocipy.api_registry.copy`'s: `platform` picks one image of
    an index (default this host's), `all_platforms` copies them all,
    `dest_compress` recompresses layers (``"gzip"`` or ``"zstd"``).
    """
    from ocipy import api_registry

    return api_registry.copy(source, destination, all_platforms=all_platforms, platform=platform,
                             dest_compress=dest_compress, src_options=src_options,
                             dest_options=dest_options, progress=progress)


def push(source: str, destination: str, *, progress: ProgressCallback | None = None,
         options: Any = None, src_options: Any = None, platform: str | dict[str, str] | None = None,
         all_platforms: bool = False, dest_compress: str | None = None) -> str:
    """Copy an image from any source to a registry, ``docker://HOST/REPO[:TAG]``;
    `options` say how to reach it.  Returns the pushed manifest's digest."""
    from ocipy.content import reference
    from ocipy.errors import RegistryError

    if reference.parse(destination).docker is None:
        raise RegistryError(f"push: {destination!r}: the destination must be docker://HOST/REPO[:TAG]")
    return copy(source, destination, progress=progress, platform=platform, all_platforms=all_platforms,
                dest_compress=dest_compress, src_options=src_options, dest_options=options)


def open(ref: str, *, platform: str | dict[str, str] | None = None, options: Any = None,  # noqa: A001
         storage: str | None = None) -> Image:
    """Read the image `ref` names, from any reference, into an :class:`Image`
    (descriptors, manifest, config, platform, tags...).  For an index,
    `platform` (``"os/arch[/variant]"``, default this host's) picks the image.
    `options` say how to reach a registry.  A store name (``app:1``) reads the
    image from the store at `storage`; its ``tags`` are then the store's names
    for it.  Raises ImageError/RegistryError."""
    from ocipy._image import open_image

    return open_image(ref, platform=platform, options=options, storage=storage)


def __getattr__(name: str) -> Any:
    """Image lives in an internal module, loaded when first used."""
    if name == "Image":
        from ocipy._image import Image

        return Image
    raise AttributeError(f"module 'ocipy.api_image' has no attribute {name!r}")
