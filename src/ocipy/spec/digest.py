"""The digest check: digests as descriptor.md defines them, and the one
verification of content against its descriptor (layouts, archives and
registries all use it).

Grammar (descriptor.md, "Digests")::

    digest                ::= algorithm ":" encoded
    algorithm             ::= algorithm-component (algorithm-separator algorithm-component)*
    algorithm-component   ::= [a-z0-9]+
    algorithm-separator   ::= [+._-]
    encoded               ::= [a-zA-Z0-9=_-]+

sha256 and sha512 are verified (lower-case hex of the right length, as the
spec requires); other well-formed algorithms are accepted by :func:`parse`
but cannot be verified (:func:`hasher` raises).

:class:`Verifier` hashes content as it streams with the descriptor's size
as a bound (more bytes than the descriptor gives fail at once, not after a
hostile source has sent gigabytes); :class:`VerifyingReader` wraps a file
so that reading to EOF verifies.  Every failure is a
:class:`ocipy.errors.DigestError` naming the content.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from ocipy.errors import DigestError

_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_ENCODED = {
    "sha256": re.compile(r"^[a-f0-9]{64}$"),
    "sha512": re.compile(r"^[a-f0-9]{128}$"),
    "blake3": re.compile(r"^[a-f0-9]{64}$"),
}
VERIFIABLE = ("sha256", "sha512")
CHUNK = 1 << 20


def parse(digest: Any, field: str = "digest") -> tuple[str, str]:
    """Split a digest into (algorithm, encoded); DigestError naming `field` if malformed."""
    if not isinstance(digest, str) or not _GRAMMAR.match(digest):
        raise DigestError(f"{field}: {digest!r} is not a valid digest (algorithm:encoded)")
    alg, _, enc = digest.partition(":")
    pattern = _ENCODED.get(alg)
    if pattern is not None and not pattern.match(enc):
        # descriptor.md: "When the algorithm identifier is sha256, the encoded portion
        # MUST match /[a-f0-9]{64}/. Note that [A-F] MUST NOT be used here."
        raise DigestError(f"{field}: {digest!r} is not a valid {alg} digest")
    return alg, enc


def validate(digest: Any, field: str = "digest") -> str:
    parse(digest, field)
    return str(digest)


def is_valid(digest: Any) -> bool:
    try:
        parse(digest)
    except DigestError:
        return False
    return True


def parse_verifiable(digest: Any, field: str = "digest") -> tuple[str, str]:
    """:func:`parse`, and the algorithm must be one this code can verify."""
    alg, enc = parse(digest, field)
    if alg not in VERIFIABLE:
        raise DigestError(f"{field} {digest!r}: unsupported digest algorithm {alg!r}")
    return alg, enc


def hasher(algorithm: str) -> Any:
    """A hashlib object for a verifiable algorithm."""
    import hashlib

    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "sha512":
        return hashlib.sha512()
    raise DigestError(f"digest algorithm {algorithm!r} is not supported for verification")


def of_bytes(data: bytes, algorithm: str = "sha256") -> str:
    h = hasher(algorithm)
    h.update(data)
    return f"{algorithm}:{h.hexdigest()}"


class Verifier:
    """Feed bytes in order; ``finish()`` raises unless digest and size match.

    ``size`` (the descriptor's) bounds the content: one byte more fails in
    :meth:`update`.  ``what`` names the content in every error."""

    __slots__ = ("digest", "size", "what", "_h", "count", "_enc")

    def __init__(self, digest: str, size: int | None, what: str = "blob") -> None:
        alg, self._enc = parse_verifiable(digest, what)
        self.digest = digest
        self.size = size if size is not None and size >= 0 else None
        self.what = what
        self._h: Any = hasher(alg)
        self.count = 0

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        self.count += len(chunk)
        if self.size is not None and self.count > self.size:
            raise DigestError(f"{self.what} {self.digest}: more than the {self.size} bytes "
                              "its descriptor gives (larger than descriptor size)")
        self._h.update(chunk)

    def copy_state(self) -> Any:
        return self._h.copy(), self.count

    def restore_state(self, state: Any) -> None:
        h, count = state
        self._h, self.count = h.copy(), count

    def finish(self) -> None:
        if self.size is not None and self.count != self.size:
            raise DigestError(f"{self.what} {self.digest}: size mismatch: {self.count} bytes, "
                              f"descriptor size {self.size}")
        got = self._h.hexdigest()
        if got != self._enc:
            raise DigestError(f"{self.what} {self.digest}: digest mismatch (content is "
                              f"{self.digest.partition(':')[0]}:{got})")


def verify_bytes(data: bytes, digest: str, size: int | None = None, what: str = "blob") -> None:
    """Raise DigestError unless `data` has `digest` (and `size`, if given)."""
    v = Verifier(digest, size, what)
    v.update(data)
    v.finish()


def verified(chunks: Iterable[bytes], digest: str, size: int | None, what: str) -> Iterator[bytes]:
    """Yield ``chunks`` unchanged; raise at the end (or early, past the size) unless they match."""
    v = Verifier(digest, size, what)
    for chunk in chunks:
        v.update(chunk)
        yield chunk
    v.finish()


class VerifyingReader:
    """A file-like reader over `f` that verifies: the read that reaches EOF raises
    unless digest and size matched (so a consumer that reads to the end cannot
    take unverified content for good).  ``finish()`` drains the rest and checks."""

    def __init__(self, f: Any, digest: str, size: int | None, what: str = "blob") -> None:
        self._v = Verifier(digest, size, what)
        self._f = f
        self.digest = digest
        self.expect_size = size
        self.what = what
        self._done = False

    @property
    def size(self) -> int:
        return self._v.count

    def read(self, n: int = CHUNK) -> bytes:
        if self._done or n == 0:
            return b""
        if n is None or n < 0:
            parts = []
            while chunk := self.read(CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        data = self._f.read(n)
        if data:
            self._v.update(data)
            return bytes(data)
        self._v.finish()
        self._done = True
        return b""

    def finish(self) -> None:
        while self.read(CHUNK):
            pass

    def close(self) -> None:
        close = getattr(self._f, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
