"""The reference grammar, one for every command: skopeo's transports.

* ``docker://HOST/REPO[:TAG|@DIGEST]`` -- a registry (Docker Hub names as docker
  expands them: ``busybox`` is ``docker.io/library/busybox:latest``);
* ``oci:DIR[:TAG|@DIGEST]`` -- an OCI image layout directory;
* ``oci-archive:FILE[:TAG]`` -- a tar of a layout;
* ``docker-archive:FILE[:NAME[:TAG]|@N]`` -- a ``docker save`` archive;
* a bare ``NAME[:TAG]`` (no transport) parses as ``oci:NAME[:TAG]`` marked
  ``bare``: :func:`ocipy.storage.names.names_layout` decides what it names -- an OCI
  layout directory of that name if there is one (what it always meant),
  else an image in the local store, as in podman (parsing stays pure).

As in containers/image, the path of ``oci:``-like references ends at the first
``:``; what follows is the tag (an empty one is an error, never "no tag").
Parsing is pure: nothing here touches the network or the disk.  Every error
is an :class:`InvalidReference` (an ImageError and a RegistryError) naming
the argument.
"""

from __future__ import annotations

import re

from ocipy.errors import ImageError, RegistryError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

# distribution-spec "Pulling manifests": <name> and <tag> grammars.
_NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
_DIGEST = r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"
DIGEST_RE = re.compile(rf"^{_DIGEST}$")
_AT_DIGEST = re.compile(rf"^([^:]*)@({_DIGEST})$")
_HOST_RE = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$")

TRANSPORTS = ("docker", "oci", "oci-archive", "docker-archive")
# skopeo transports ocipy does not speak: named in the error instead of read as a path
_OTHER_TRANSPORTS = ("containers-storage", "dir", "docker-daemon", "sif", "tarball", "ostree")


class InvalidReference(ImageError, RegistryError):
    """An image reference that does not parse."""


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
        raise InvalidReference("invalid image reference '': empty")
    digest: str | None = None
    if "@" in text:
        text, _, digest = text.partition("@")
        if not DIGEST_RE.match(digest):
            raise InvalidReference(f"invalid image reference {orig!r}: bad digest {digest!r}")
    tag: str | None = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1:]
        if not TAG_RE.match(tag):
            raise InvalidReference(f"invalid image reference {orig!r}: bad tag {tag!r}")
    first, sep, rest = text.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        host, repo = first, rest
        if not _HOST_RE.match(host):
            raise InvalidReference(f"invalid image reference {orig!r}: bad host {host!r}")
    else:
        host, repo = DOCKER_HUB, text
        if "/" not in repo:
            repo = "library/" + repo
    if host in ("index.docker.io", "registry-1.docker.io"):
        host = DOCKER_HUB
    if not NAME_RE.match(repo):
        raise InvalidReference(
            f"invalid image reference {orig!r}: repository {repo!r} must be lowercase "
            "components of [a-z0-9] joined by '.', '_', '__' or '-', separated by '/'")
    if tag is None and digest is None:
        tag = default_tag
    return DockerReference(host, repo, tag, digest)


class ImageReference:
    """A parsed reference: ``transport`` and either ``docker`` or ``path`` (+ ``tag``/``digest``)."""

    __slots__ = ("transport", "docker", "path", "tag", "digest", "bare", "text")

    def __init__(self, transport: str, *, docker: DockerReference | None = None,
                 path: str = "", tag: str | None = None, digest: str | None = None,
                 bare: bool = False, text: str = "") -> None:
        self.bare = bare  # written without a transport: a layout or a store name
        self.text = text
        self.transport = transport
        self.docker = docker
        self.path = path
        self.tag = tag
        self.digest = digest

    @property
    def is_local(self) -> bool:
        return self.transport != "docker"

    def __str__(self) -> str:
        if self.docker is not None:
            return "docker://" + str(self.docker)
        if self.digest:
            return f"{self.transport}:{self.path}@{self.digest}"
        return f"{self.transport}:{self.path}" + (f":{self.tag}" if self.tag else "")

    def __repr__(self) -> str:
        return f"ImageReference({self!s})"


def parse(text: str, *, default_tag: str | None = "latest") -> ImageReference:
    """Parse any reference (see the module docstring); the error names the argument."""
    if not isinstance(text, str) or not text:
        raise InvalidReference("invalid image name '': empty")
    if any(ord(c) < 0x20 or c == "\x7f" for c in text):
        raise InvalidReference(f"invalid image name {text!r}: control characters")
    transport, sep, rest = text.partition(":")
    if not sep or transport not in TRANSPORTS:
        if transport in _OTHER_TRANSPORTS or (sep and rest.startswith("//")) or (
                transport == "docker" and sep):
            raise InvalidReference(
                f"invalid image name {text!r}: transport {transport!r} is not supported "
                "(docker://, oci:, oci-archive:, docker-archive:)")
        transport, rest, bare = "oci", text, True
    else:
        bare = False
    if transport == "docker":
        if not rest.startswith("//"):
            raise InvalidReference(f"invalid image name {text!r}: docker references start with docker://")
        return ImageReference("docker", docker=parse_docker_reference(rest[2:], default_tag=default_tag))
    digest = None
    m = _AT_DIGEST.match(rest) if transport == "oci" else None
    if m:
        rest, digest = m.group(1), m.group(2)
        path, sep, tag = rest, "", ""
    else:
        path, sep, tag = rest.partition(":")
    if not path:
        raise InvalidReference(f"invalid image name {text!r}: empty path")
    if sep and not tag:
        raise InvalidReference(f"invalid image name {text!r}: empty reference after ':'")
    return ImageReference(transport, path=path, tag=tag or None, digest=digest, bare=bare, text=text)


def require_layout(text: str, need_tag: bool = True) -> ImageReference:
    """An ``oci:DIR:TAG`` reference (what commands that edit a layout take)."""
    ref = parse(text)
    if ref.transport != "oci":
        raise InvalidReference(f"image reference {text!r}: expected oci:DIR{':TAG' if need_tag else '[:TAG]'}")
    if need_tag and not ref.tag:
        raise InvalidReference(f"image reference {text!r}: a tag is required (oci:DIR:TAG)")
    return ref
