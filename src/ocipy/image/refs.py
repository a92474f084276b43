"""Image references in the containers-transports convention (as skopeo):

``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]``, ``docker-archive:FILE[:NAME[:TAG]]``.
A reference without a transport is taken as ``oci:``.  As in skopeo, the
path ends at the first ``:`` for ``oci:`` and ``oci-archive:``.
"""

from __future__ import annotations

from ocipy.errors import ImageError

TRANSPORTS = ("oci", "oci-archive", "docker-archive")


class ImageRef:
    def __init__(self, transport: str, path: str, tag: str | None) -> None:
        self.transport = transport
        self.path = path
        self.tag = tag

    def __str__(self) -> str:
        return f"{self.transport}:{self.path}" + (f":{self.tag}" if self.tag else "")

    def __repr__(self) -> str:
        return f"ImageRef({self!s})"


def parse(text: str, default_transport: str = "oci") -> ImageRef:
    transport, sep, rest = text.partition(":")
    if not sep or transport not in TRANSPORTS:
        if transport in ("docker", "containers-storage", "dir", "docker-daemon"):
            raise ImageError(f"image reference {text!r}: transport {transport!r} is not handled by "
                             "`ocipy image` (use `ocipy copy` for registries)")
        transport, rest = default_transport, text
    if rest.startswith("//") and transport != "oci":
        rest = rest[2:]
    path, _, tag = rest.partition(":")
    if not path:
        raise ImageError(f"image reference {text!r}: no path")
    return ImageRef(transport, path, tag or None)


def require_oci(text: str, need_tag: bool = True) -> ImageRef:
    ref = parse(text)
    if ref.transport != "oci":
        raise ImageError(f"image reference {text!r}: expected oci:DIR{':TAG' if need_tag else '[:TAG]'}")
    if need_tag and not ref.tag:
        raise ImageError(f"image reference {text!r}: a tag is required (oci:DIR:TAG)")
    return ref
