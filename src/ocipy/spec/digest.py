"""Digests as descriptor.md defines them: ``algorithm ":" encoded``.

Grammar (descriptor.md, "Digests")::

    digest                ::= algorithm ":" encoded
    algorithm             ::= algorithm-component (algorithm-separator algorithm-component)*
    algorithm-component   ::= [a-z0-9]+
    algorithm-separator   ::= [+._-]
    encoded               ::= [a-zA-Z0-9=_-]+

sha256 and sha512 are verified (lower-case hex of the right length, as the
spec requires); other well-formed algorithms are accepted by :func:`parse`
but cannot be verified (:func:`hasher` raises).
"""

from __future__ import annotations

import re
from typing import Any

from ocipy.errors import ImageError

_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_ENCODED = {
    "sha256": re.compile(r"^[a-f0-9]{64}$"),
    "sha512": re.compile(r"^[a-f0-9]{128}$"),
    "blake3": re.compile(r"^[a-f0-9]{64}$"),
}
VERIFIABLE = ("sha256", "sha512")


def parse(digest: Any, field: str = "digest") -> tuple[str, str]:
    """Split a digest into (algorithm, encoded); ImageError naming `field` if malformed."""
    if not isinstance(digest, str) or not _GRAMMAR.match(digest):
        raise ImageError(f"{field}: {digest!r} is not a valid digest (algorithm:encoded)")
    alg, _, enc = digest.partition(":")
    pattern = _ENCODED.get(alg)
    if pattern is not None and not pattern.match(enc):
        # descriptor.md: "When the algorithm identifier is sha256, the encoded portion
        # MUST match /[a-f0-9]{64}/. Note that [A-F] MUST NOT be used here."
        raise ImageError(f"{field}: {digest!r} is not a valid {alg} digest")
    return alg, enc


def validate(digest: Any, field: str = "digest") -> str:
    parse(digest, field)
    return str(digest)


def hasher(algorithm: str) -> Any:
    """A hashlib object for a verifiable algorithm."""
    import hashlib

    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "sha512":
        return hashlib.sha512()
    raise ImageError(f"digest algorithm {algorithm!r} is not supported for verification")


def of_bytes(data: bytes, algorithm: str = "sha256") -> str:
    h = hasher(algorithm)
    h.update(data)
    return f"{algorithm}:{h.hexdigest()}"


def verify_bytes(data: bytes, digest: str, size: int | None = None, what: str = "blob") -> None:
    """Raise ImageError unless `data` has `digest` (and `size`, if given)."""
    alg, enc = parse(digest, what)
    if size is not None and len(data) != size:
        raise ImageError(f"{what} {digest}: size {len(data)} does not match descriptor size {size}")
    h = hasher(alg)
    h.update(data)
    if h.hexdigest() != enc:
        raise ImageError(f"{what} {digest}: digest mismatch (content is {alg}:{h.hexdigest()})")
