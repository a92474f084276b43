"""Image references in the containers-transports syntax skopeo uses.

``docker://HOST/REPO[:TAG|@DIGEST]``, ``oci:DIR[:TAG]``,
``oci-archive:FILE[:TAG]`` and ``docker-archive:FILE[:NAME:TAG]``.  Parsing
is pure: nothing here touches the network or the disk.
"""

from __future__ import annotations

import re

from ocipy.errors import RegistryError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

# distribution-spec "Pulling manifests": <name> and <tag> grammars.
_NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_HOST_RE = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$")

TRANSPORTS = ("docker", "oci", "oci-archive", "docker-archive")


class DockerReference:
    """A repository on a registry, with at most one of a tag or a digest."""

    __slots__ = ("host", "repository", "tag", "digest")

    def __init__(self, host: str, repository: str, tag: str | None = None,
                 digest: str | None = None) -> None:
        self.host = host
        self.repository = repository
        self.tag = tag
        self.digest = digest

    @property
    def api_host(self) -> str:
        """The host the HTTP API is served from (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API if self.host == DOCKER_HUB else self.host

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest if there is one, else the tag."""
        return self.digest or self.tag or "latest"

    def with_reference(self, tag: str | None = None, digest: str | None = None) -> DockerReference:
        return DockerReference(self.host, self.repository, tag, digest)

    @property
    def name(self) -> str:
        return f"{self.host}/{self.repository}"

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def __repr__(self) -> str:
        return f"DockerReference({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DockerReference) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


def parse_docker_reference(text: str, *, default_tag: str | None = "latest") -> DockerReference:
    """Parse ``HOST/REPO[:TAG][@DIGEST]`` (the part after ``docker://``).

    As docker does, a first component without ``.`` or ``:`` that is not
    ``localhost`` is a Docker Hub repository, and a one-component Hub name
    gets ``library/``.  Without a tag or digest the tag is ``default_tag``.
    """
    orig = text
    if not text:
        raise RegistryError("invalid image reference '': empty")
    digest: str | None = None
    if "@" in text:
        text, _, digest = text.partition("@")
        if not DIGEST_RE.match(digest):
            raise RegistryError(f"invalid image reference {orig!r}: bad digest {digest!r}")
    tag: str | None = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1:]
        if not TAG_RE.match(tag):
            raise RegistryError(f"invalid image reference {orig!r}: bad tag {tag!r}")
    first, sep, rest = text.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        host, repo = first, rest
        if not _HOST_RE.match(host):
            raise RegistryError(f"invalid image reference {orig!r}: bad host {host!r}")
    else:
        host, repo = DOCKER_HUB, text
        if "/" not in repo:
            repo = "library/" + repo
    if host in ("index.docker.io", "registry-1.docker.io"):
        host = DOCKER_HUB
    if not NAME_RE.match(repo):
        raise RegistryError(
            f"invalid image reference {orig!r}: repository {repo!r} must be lowercase "
            "components of [a-z0-9] joined by '.', '_', '__' or '-', separated by '/'")
    if tag is None and digest is None:
        tag = default_tag
    return DockerReference(host, repo, tag, digest)


class ImageReference:
    """A parsed ``TRANSPORT:…`` argument of copy/inspect/tags/delete."""

    __slots__ = ("transport", "docker", "path", "tag")

    def __init__(self, transport: str, *, docker: DockerReference | None = None,
                 path: str = "", tag: str | None = None) -> None:
        self.transport = transport
        self.docker = docker
        self.path = path
        self.tag = tag

    def __str__(self) -> str:
        if self.docker is not None:
            return "docker://" + str(self.docker)
        return f"{self.transport}:{self.path}" + (f":{self.tag}" if self.tag else "")


def parse_image_reference(text: str, *, default_tag: str | None = "latest") -> ImageReference:
    """Parse one of the four transports; the error names the argument."""
    transport, sep, rest = text.partition(":")
    if not sep or transport not in TRANSPORTS:
        raise RegistryError(
            f"invalid image name {text!r}: expected docker://, oci:, oci-archive: or docker-archive:")
    if transport == "docker":
        if not rest.startswith("//"):
            raise RegistryError(f"invalid image name {text!r}: docker references start with docker://")
        return ImageReference("docker", docker=parse_docker_reference(rest[2:], default_tag=default_tag))
    # Like containers/image: the path ends at the first ':'; the rest is the tag/name.
    path, sep, tag = rest.partition(":")
    if not path:
        raise RegistryError(f"invalid image name {text!r}: empty path")
    if sep and not tag:
        raise RegistryError(f"invalid image name {text!r}: empty reference after ':'")
    if transport in ("oci", "oci-archive") and tag:
        # OCI layouts name images with org.opencontainers.image.ref.name, which may hold
        # more than a docker tag, but never '/'-led paths or control characters.
        if any(ord(c) < 0x20 for c in tag):
            raise RegistryError(f"invalid image name {text!r}: bad reference {tag!r}")
    return ImageReference(transport, path=path, tag=tag or None)
