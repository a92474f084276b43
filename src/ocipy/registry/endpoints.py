"""How to reach a registry (skopeo's flags) and a client made from them.

Opening a source or destination for any reference is
:func:`ocipy.content.store.open_source` / :func:`~ocipy.content.store.open_destination`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # every image command builds RegistryOptions; only a registry needs a client
    from ocipy.content.reference import DockerReference
    from ocipy.registry.client import RegistryClient


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
    from ocipy.registry.auth import resolve_credentials
    from ocipy.registry.client import RegistryClient

    opts = options or RegistryOptions()
    creds = resolve_credentials(ref.host, ref.repository, opts.creds, opts.authfile, flag)
    return RegistryClient(ref.api_host, credentials=creds, tls_verify=opts.tls_verify,
                          retry_times=opts.retry_times, timeout=opts.timeout)
