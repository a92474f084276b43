"""The public Python API of ocipy's registry client (distribution-spec).

Image names use the containers-transports syntax skopeo uses:
``docker://HOST/REPO[:TAG|@DIGEST]``, ``oci:DIR[:TAG]``,
``oci-archive:FILE[:TAG]`` and ``docker-archive:FILE[:NAME:TAG]``.

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

import json
from typing import Any

from ocipy.errors import RegistryError
from ocipy.registry.endpoints import RegistryOptions

__all__ = ["RegistryOptions", "copy", "delete", "inspect", "inspect_raw", "tags", "referrers"]


def copy(source: str, destination: str, *, all_platforms: bool = False,
         platform: str | dict[str, str] | None = None, dest_compress: str | None = None,
         src_options: RegistryOptions | None = None, dest_options: RegistryOptions | None = None,
         progress: bool | None = None, workers: int = 6) -> str:
    """Copy an image; return the digest of the manifest the destination now names.

    ``all_platforms`` copies every image of an index (and the index itself);
    otherwise the image for ``platform`` (``"os/arch[/variant]"``, default
    this host's) is chosen.  ``dest_compress`` (``"gzip"`` or ``"zstd"``)
    recompresses layers in another format, which changes their digests and so
    the manifest's.  ``progress`` shows a status line on stderr (default: when
    stderr is a TTY).  Blobs the destination has are skipped; blobs on the
    same registry are mounted instead of copied.
    """
    from ocipy.registry.copy import Copier, Progress
    from ocipy.registry.endpoints import open_destination, open_source
    from ocipy.registry.reference import parse_image_reference

    src_ref = parse_image_reference(source)
    dst_ref = parse_image_reference(destination)
    plat = _platform(platform)
    src = open_source(src_ref, src_options)
    try:
        dst = open_destination(dst_ref, dest_options)
        try:
            return Copier(src, dst, all_platforms=all_platforms, platform=plat, compress=dest_compress,
                          progress=Progress(progress), workers=workers).run()
        finally:
            dst.close()
    finally:
        src.close()


def _platform(platform: str | dict[str, str] | None) -> dict[str, str] | None:
    if platform is None or isinstance(platform, dict):
        return platform
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise RegistryError(f"--platform {platform!r}: expected OS/ARCH[/VARIANT]")
    p = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        p["variant"] = parts[2]
    return p


def inspect_raw(image: str, *, config: bool = False, options: RegistryOptions | None = None,
                platform: str | dict[str, str] | None = None) -> bytes:
    """The manifest's bytes as stored (``config=True``: the image config's bytes)."""
    from ocipy.registry.endpoints import open_source
    from ocipy.registry.reference import parse_image_reference

    src = open_source(parse_image_reference(image), options)
    try:
        data, mt, digest = src.get_manifest(None)
        if not config:
            return data
        data, mt, digest = _image_manifest(src, data, mt, digest, _platform(platform))
        return _read_config(src, json.loads(data), digest)
    finally:
        src.close()


def inspect(image: str, *, options: RegistryOptions | None = None,
            platform: str | dict[str, str] | None = None, list_tags: bool = True) -> dict[str, Any]:
    """skopeo-inspect's summary: Name, Digest, RepoTags, Created, Architecture, Os, Layers, Env…

    For an index, ``Digest`` is the index's and the rest describes the image
    for ``platform`` (default this host's).  ``list_tags=False`` skips the
    tag listing (one request less).
    """
    from ocipy.registry.endpoints import open_source
    from ocipy.registry.reference import parse_image_reference

    ref = parse_image_reference(image)
    src = open_source(ref, options)
    try:
        data, mt, top_digest = src.get_manifest(None)
        data, mt, digest = _image_manifest(src, data, mt, top_digest, _platform(platform))
        manifest = json.loads(data)
        cfg = json.loads(_read_config(src, manifest, digest))
        repo_tags: list[str] = []
        if list_tags and ref.docker is not None:
            from ocipy.registry.transports import RegistrySource

            assert isinstance(src, RegistrySource)
            repo_tags = src.client.list_tags(ref.docker.repository)
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
    from ocipy.registry.client import INDEX_TYPES
    from ocipy.registry.copy import choose_platform

    for _ in range(4):
        if mt not in INDEX_TYPES:
            return data, mt, digest
        chosen = choose_platform(json.loads(data), platform, f"{src.name}: index {digest}")
        data, mt, digest = src.get_manifest(chosen["digest"])
    raise RegistryError(f"{src.name}: indexes nested too deeply")


def _read_config(src: Any, manifest: dict[str, Any], digest: str) -> bytes:
    config = manifest.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
        raise RegistryError(f"{src.name}: manifest {digest} has no config descriptor")
    if isinstance(config.get("size"), int) and config["size"] > 16 << 20:
        raise RegistryError(f"{src.name}: config {config['digest']} is larger than 16 MiB")

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
    """Every tag of ``docker://HOST/REPO`` (pages followed)."""
    from ocipy.registry.endpoints import make_client
    from ocipy.registry.reference import parse_image_reference

    ref = parse_image_reference(repository, default_tag=None)
    if ref.docker is None:
        raise RegistryError(f"{repository}: tags needs a docker:// repository")
    if ref.docker.tag or ref.docker.digest:
        raise RegistryError(f"{repository}: tags takes a repository without a tag or digest")
    with make_client(ref.docker, options) as client:
        return client.list_tags(ref.docker.repository)


def delete(image: str, *, options: RegistryOptions | None = None) -> str:
    """Delete a manifest from a registry; return its digest.

    A tag is resolved to its digest first (as skopeo does), so every tag of
    that manifest goes with it.  The registry must allow deletion.
    """
    from ocipy.registry.endpoints import make_client
    from ocipy.registry.reference import parse_image_reference

    ref = parse_image_reference(image)
    if ref.docker is None:
        raise RegistryError(f"{image}: delete needs a docker:// reference")
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
    from ocipy.registry.endpoints import make_client
    from ocipy.registry.reference import parse_image_reference

    ref = parse_image_reference(image)
    if ref.docker is None:
        raise RegistryError(f"{image}: referrers needs a docker:// reference")
    with make_client(ref.docker, options) as client:
        digest = ref.docker.digest
        if digest is None:
            _, _, digest = client.get_manifest(ref.docker.repository, ref.docker.reference)
        return client.referrers(ref.docker.repository, digest, artifact_type)
