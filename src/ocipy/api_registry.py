"""The public Python API of ocipy's registry client (distribution-spec).

Image names are the one reference grammar (:mod:`ocipy.content.reference`,
skopeo's): ``docker://HOST/REPO[:TAG|@DIGEST]``, ``oci:DIR[:TAG|@DIGEST]``,
``oci-archive:FILE[:TAG]`` and ``docker-archive:FILE[:NAME:TAG]``; copy,
inspect and tags take every transport (they are ``ocipy image copy|inspect|tags``).

Example::

    from ocipy import api_registry as reg

    digest = reg.copy("docker://127.0.0.1:5000/busybox:1", "oci:/tmp/layout:1")
    print(reg.tags("docker://127.0.0.1:5000/busybox"))

Every failure raises an :class:`ocipy.errors.OcipyError` (a
:class:`~ocipy.errors.RegistryError` for the network side, an
:class:`~ocipy.errors.ImageError` for layouts); nothing unverified is ever
stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ocipy.errors import RegistryError
from ocipy.registry.endpoints import RegistryOptions
from ocipy.spec.image import load_json

if TYPE_CHECKING:
    from ocipy.content.progress import ProgressCallback

__all__ = ["RegistryOptions", "copy", "delete", "inspect", "inspect_raw", "tags", "referrers"]


def copy(source: str, destination: str, *, all_platforms: bool = False,
         platform: str | dict[str, str] | None = None, dest_compress: str | None = None,
         src_options: RegistryOptions | None = None, dest_options: RegistryOptions | None = None,
         progress: ProgressCallback | bool | None = None, workers: int = 6) -> str:
    """Copy an image; return the digest of the manifest the destination now names.

    ``all_platforms`` copies every image of an index (and the index itself);
    otherwise the image for ``platform`` (``"os/arch[/variant]"``, default
    this host's) is chosen.  ``dest_compress`` (``"gzip"`` or ``"zstd"``)
    recompresses layers in another format, which changes their digests and so
    the manifest's.  Blobs the destination has are skipped; blobs on the
    same registry are mounted instead of copied.

    ``progress`` is called as ``progress(layer_digest, done_bytes,
    total_bytes)`` while blobs move, from several threads (see
    :mod:`ocipy.content.progress`; :func:`ocipy.content.progress.reporter`
    makes one that draws bars or lines).  ``True`` means
    ``reporter("auto")`` on stderr for this call, ``False``/``None`` none.
    """
    from ocipy.content.copy import Copier
    from ocipy.content.reference import parse
    from ocipy.content.store import open_destination, open_source

    src_ref = parse(source)
    dst_ref = parse(destination)
    plat = _platform(platform)
    owned = None
    if progress is True:  # the older bool switch
        from ocipy.content.progress import reporter

        progress = owned = reporter("auto")
    callback = progress if callable(progress) else None
    try:
        src = open_source(src_ref, src_options)
        try:
            dst = open_destination(dst_ref, dest_options)
            try:
                return Copier(src, dst, all_platforms=all_platforms, platform=plat, compress=dest_compress,
                              progress=callback, workers=workers).run()
            finally:
                dst.close()
        finally:
            src.close()
    finally:
        if owned is not None:
            owned.close()


def _platform(platform: str | dict[str, str] | None) -> dict[str, str] | None:
    from ocipy.spec.image import parse_platform

    if platform is None or isinstance(platform, dict):
        return platform
    return parse_platform(platform)


def inspect_raw(image: str, *, config: bool = False, options: RegistryOptions | None = None,
                platform: str | dict[str, str] | None = None) -> bytes:
    """The manifest's bytes as stored (``config=True``: the image config's bytes)."""
    from ocipy.content.reference import parse
    from ocipy.content.store import open_source

    src = open_source(parse(image), options)
    try:
        data, mt, digest = src.get_manifest(None)
        if not config:
            return data
        data, mt, digest = _image_manifest(src, data, mt, digest, _platform(platform))
        return _read_config(src, load_json(data, f"{src.name}: manifest {digest}"), digest)
    finally:
        src.close()


def inspect(image: str, *, options: RegistryOptions | None = None,
            platform: str | dict[str, str] | None = None, list_tags: bool = True) -> dict[str, Any]:
    """skopeo-inspect's summary: Name, Digest, RepoTags, Created, Architecture, Os, Layers, Env…

    For an index, ``Digest`` is the index's and the rest describes the image
    for ``platform`` (default this host's).  ``list_tags=False`` skips the
    tag listing (one request less).
    """
    from ocipy.content.reference import parse
    from ocipy.content.store import open_source

    ref = parse(image)
    src = open_source(ref, options)
    try:
        data, mt, top_digest = src.get_manifest(None)
        data, mt, digest = _image_manifest(src, data, mt, top_digest, _platform(platform))
        manifest = load_json(data, f"{src.name}: manifest {digest}")
        cfg = load_json(_read_config(src, manifest, digest), f"{src.name}: config {manifest['config']['digest']}")
        repo_tags: list[str] = []
        if list_tags and ref.docker is not None:  # as skopeo: a layout's names are not RepoTags
            repo_tags = src.list_tags()
        inner = cfg.get("config") if isinstance(cfg.get("config"), dict) else {}
        layers = [d for d in manifest.get("layers") or [] if isinstance(d, dict)]
        return {
            "Name": ref.docker.name if ref.docker is not None else str(ref),
            "Digest": top_digest,
            "RepoTags": repo_tags,
            "Created": cfg.get("created"),
            "DockerVersion": cfg.get("docker_version", ""),
            "Labels": inner.get("Labels"),
            "Architecture": cfg.get("architecture"),
            "Os": cfg.get("os"),
            "Layers": [d.get("digest") for d in layers],
            "LayersData": [{"MIMEType": d.get("mediaType"), "Digest": d.get("digest"),
                            "Size": d.get("size"), "Annotations": d.get("annotations")} for d in layers],
            "Env": inner.get("Env"),
        }
    finally:
        src.close()


def _image_manifest(src: Any, data: bytes, mt: str, digest: str,
                    platform: dict[str, str] | None) -> tuple[bytes, str, str]:
    """Down from an index by the platform rule (:func:`ocipy.spec.image.choose_platform`)."""
    from ocipy.content.walk import MAX_INDEX_DEPTH
    from ocipy.spec import image as spec

    for _ in range(MAX_INDEX_DEPTH + 1):
        if mt not in spec.INDEX_TYPES:
            return data, mt, digest
        what = f"{src.name}: index {digest}"
        index = spec.validate_index(load_json(data, what), what)
        chosen = spec.choose_platform(index["manifests"], platform, what)
        data, mt, digest = src.get_manifest(chosen["digest"])
    raise RegistryError(f"{src.name}: indexes nested too deeply")


def _read_config(src: Any, manifest: dict[str, Any], digest: str) -> bytes:
    from ocipy.spec import image as spec

    config = manifest.get("config") if isinstance(manifest, dict) else None
    if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
        raise RegistryError(f"{src.name}: manifest {digest} has no config descriptor")
    spec.validate_descriptor(config, f"{src.name}: manifest {digest}.config")
    if config["size"] > spec.MAX_DOCUMENT_SIZE:
        raise RegistryError(f"{src.name}: config {config['digest']} is larger than {spec.MAX_DOCUMENT_SIZE} bytes")

    class _Buf:
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, b: bytes, /) -> int:
            self.data += b
            return len(b)

        def reset(self) -> None:
            self.data.clear()

    buf = _Buf()
    src.fetch_blob(config, buf)
    return bytes(buf.data)


def tags(repository: str, *, options: RegistryOptions | None = None) -> list[str]:
    """Every tag of a repository (``docker://HOST/REPO``, pages followed), a layout
    (``oci:DIR``) or an archive's names."""
    from ocipy.content.reference import parse
    from ocipy.content.store import open_source

    ref = parse(repository, default_tag=None)
    if ref.docker is not None and (ref.docker.tag or ref.docker.digest):
        raise RegistryError(f"{repository}: tags takes a repository without a tag or digest")
    if ref.docker is None and (ref.tag or ref.digest) and ref.transport == "oci":
        raise RegistryError(f"{repository}: tags takes a layout without a tag (oci:DIR)")
    if ref.docker is not None:
        from ocipy.registry.endpoints import make_client

        with make_client(ref.docker, options) as client:
            return client.list_tags(ref.docker.repository)
    src = open_source(ref, options)
    try:
        return src.list_tags()
    finally:
        src.close()


def delete(image: str, *, options: RegistryOptions | None = None) -> str:
    """Delete an image; return its digest.

    ``docker://``: the manifest is deleted from the registry; a tag is
    resolved to its digest first (as skopeo does), so every tag of that
    manifest goes with it, and the registry must allow deletion.
    ``oci:DIR:TAG``: the tag is removed from index.json (blobs stay until
    ``ocipy image gc``).  Archives are not edited in place.
    """
    from ocipy.content.reference import parse
    from ocipy.registry.endpoints import make_client

    ref = parse(image)
    if ref.transport == "oci":
        from ocipy.content.reference import require_layout
        from ocipy.image import build
        from ocipy.image.store import Layout

        r = require_layout(image)
        layout = Layout.open(r.path)
        desc = layout.resolve(r.tag)
        assert r.tag
        build.remove_tag(layout, r.tag)
        return desc["digest"]  # type: ignore[no-any-return]
    if ref.docker is None:
        raise RegistryError(f"{image}: an archive is not edited in place; delete the file")
    d = ref.docker
    with make_client(d, options) as client:
        digest = d.digest
        if digest is None:
            head = client.head_manifest(d.repository, d.reference)
            if head is None:
                _, _, digest = client.get_manifest(d.repository, d.reference)
            else:
                digest = head[0]
        client.delete_manifest(d.repository, digest)
        return digest


def referrers(image: str, *, artifact_type: str | None = None,
              options: RegistryOptions | None = None) -> dict[str, Any]:
    """The referrers index of ``docker://HOST/REPO@DIGEST`` (API, or the tag-schema fallback)."""
    from ocipy.content.reference import parse
    from ocipy.registry.endpoints import make_client

    ref = parse(image)
    if ref.docker is None:
        raise RegistryError(f"{image}: referrers needs a docker:// reference")
    with make_client(ref.docker, options) as client:
        digest = ref.docker.digest
        if digest is None:
            _, _, digest = client.get_manifest(ref.docker.repository, ref.docker.reference)
        return client.referrers(ref.docker.repository, digest, artifact_type)
