"""Hashing content while it streams, and checking it against its descriptor."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from typing import Any

from ocipy.errors import RegistryError

_ALGORITHMS = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"^[a-f0-9]+$")

# containers/image and the distribution spec's "at least 4 MB".
MAX_MANIFEST_SIZE = 4 * 1024 * 1024


def check_digest(digest: str, what: str = "digest") -> tuple[str, str]:
    """Split ``alg:hex`` and make sure this client can verify it."""
    alg, sep, hexpart = digest.partition(":")
    if not sep:
        raise RegistryError(f"{what} {digest!r}: not of the form algorithm:hex")
    length = _ALGORITHMS.get(alg)
    if length is None:
        raise RegistryError(f"{what} {digest!r}: unsupported digest algorithm {alg!r}")
    if len(hexpart) != length or not _HEX.match(hexpart):
        raise RegistryError(f"{what} {digest!r}: encoded part must be {length} lowercase hex digits")
    return alg, hexpart


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


class Verifier:
    """Feed bytes in order; ``finish()`` raises unless digest and size match."""

    __slots__ = ("digest", "size", "what", "_h", "count")

    def __init__(self, digest: str, size: int | None, what: str) -> None:
        alg, _ = check_digest(digest, what)
        self.digest = digest
        self.size = size if size is not None and size >= 0 else None
        self.what = what
        self._h: Any = hashlib.new(alg)
        self.count = 0

    def update(self, chunk: bytes) -> None:
        self.count += len(chunk)
        if self.size is not None and self.count > self.size:
            raise RegistryError(
                f"{self.what}: received more than the {self.size} bytes its descriptor gives")
        self._h.update(chunk)

    def copy_state(self) -> Any:
        return self._h.copy(), self.count

    def restore_state(self, state: Any) -> None:
        h, count = state
        self._h, self.count = h.copy(), count

    def finish(self) -> None:
        if self.size is not None and self.count != self.size:
            raise RegistryError(
                f"{self.what}: size mismatch: got {self.count} bytes, descriptor says {self.size}")
        got = f"{self.digest.partition(':')[0]}:{self._h.hexdigest()}"
        if got != self.digest:
            raise RegistryError(f"{self.what}: digest mismatch: expected {self.digest}, got {got}")


def verified(chunks: Iterable[bytes], digest: str, size: int | None, what: str) -> Iterator[bytes]:
    """Yield ``chunks`` unchanged; raise before the end if they do not match."""
    v = Verifier(digest, size, what)
    for chunk in chunks:
        v.update(chunk)
        yield chunk
    v.finish()


def verify_bytes(data: bytes, digest: str, size: int | None, what: str) -> None:
    v = Verifier(digest, size, what)
    v.update(data)
    v.finish()
