"""Open a source or destination for an ``ImageReference`` with its options."""

from __future__ import annotations

from ocipy.errors import RegistryError
from ocipy.registry.auth import resolve_credentials
from ocipy.registry.client import RegistryClient
from ocipy.registry.reference import DockerReference, ImageReference
from ocipy.registry.transports import ImageDestination, ImageSource


class RegistryOptions:
    """How to reach a registry: credentials, TLS and retries (skopeo's flags)."""

    __slots__ = ("creds", "authfile", "tls_verify", "retry_times", "chunk_size", "timeout")

    def __init__(self, creds: str | None = None, authfile: str | None = None,
                 tls_verify: bool = True, retry_times: int = 3, chunk_size: int | None = None,
                 timeout: float = 60.0) -> None:
        self.creds = creds
        self.authfile = authfile
        self.tls_verify = tls_verify
        self.retry_times = retry_times
        self.chunk_size = chunk_size
        self.timeout = timeout


def make_client(ref: DockerReference, options: RegistryOptions | None, flag: str = "--creds") -> RegistryClient:
    opts = options or RegistryOptions()
    creds = resolve_credentials(ref.host, ref.repository, opts.creds, opts.authfile, flag)
    return RegistryClient(ref.api_host, credentials=creds, tls_verify=opts.tls_verify,
                          retry_times=opts.retry_times, timeout=opts.timeout)


def open_source(ref: ImageReference, options: RegistryOptions | None = None) -> ImageSource:
    if ref.transport == "docker":
        from ocipy.registry.transports import RegistrySource

        assert ref.docker is not None
        return RegistrySource(ref.docker, make_client(ref.docker, options, "--src-creds"))
    if ref.transport == "oci":
        from ocipy.registry.layout import LayoutSource

        return LayoutSource(ref.path, ref.tag)
    if ref.transport in ("oci-archive", "docker-archive"):
        from ocipy.registry.archives import open_archive_source

        return open_archive_source(ref)
    raise RegistryError(f"{ref}: unsupported transport {ref.transport!r}")


def open_destination(ref: ImageReference, options: RegistryOptions | None = None) -> ImageDestination:
    if ref.transport == "docker":
        from ocipy.registry.transports import RegistryDestination

        assert ref.docker is not None
        opts = options or RegistryOptions()
        return RegistryDestination(ref.docker, make_client(ref.docker, opts, "--dest-creds"),
                                   chunk_size=opts.chunk_size)
    if ref.transport == "oci":
        from ocipy.registry.layout import LayoutDestination

        return LayoutDestination(ref.path, ref.tag)
    if ref.transport in ("oci-archive", "docker-archive"):
        from ocipy.registry.archives import open_archive_destination

        return open_archive_destination(ref)
    raise RegistryError(f"{ref}: unsupported transport {ref.transport!r}")
