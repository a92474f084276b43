"""Reading a layer blob: the decompressed tar as a forward-only file, and its entries.

:class:`LayerStream` decompresses (through the codec table of
:mod:`.compression`), hashes the tar for the diff_id and counts every byte
against the unpack's size budget, so a decompression bomb stops at the cap.
:func:`entries` reads the tar headers one by one (nothing is ever extracted by
tarfile) and tells a clean end from a truncated or corrupt stream.
"""

from __future__ import annotations

import os
from typing import Any

from ocipy.errors import ImageError
from ocipy.image.layers import compression
from ocipy.spec import digest as _digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    import tarfile  # imported by entries(): `image copy` reaches this module for parse_size
    from collections.abc import Iterator

CHUNK = compression.CHUNK
DEFAULT_MAX_SIZE = 32 << 30
_ZERO_BLOCK = bytes(512)


def max_size_default() -> int:
    env = os.environ.get("OCIPY_MAX_UNPACK_SIZE")
    if env:
        return parse_size(env)
    return DEFAULT_MAX_SIZE


def parse_size(text: str) -> int:
    """'512M', '2G', '1048576' -> bytes."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    if t and t[-1] in "KMGT":
        mult = 1 << (10 * ("KMGT".index(t[-1]) + 1))
        t = t[:-1]
    try:
        value = int(float(t) * mult)
    except ValueError:
        raise ImageError(f"size {text!r}: not a number of bytes (e.g. 512M, 4G)") from None
    if value <= 0:
        raise ImageError(f"size {text!r}: must be positive")
    return value


class LayerStream:
    """The decompressed content of a layer blob as a forward-only file.

    ``read(n)`` returns exactly n bytes unless the stream ends; ``seek`` may
    only move forward (tarfile's sequential reads need nothing else).  The
    decompressed bytes are hashed for the diff_id and counted against
    ``budget`` (a one-element list shared by all layers of an unpack).
    """

    def __init__(self, raw: Any, codec: str | compression.Codec, what: str, budget: list[int],
                 diff_algorithm: str | None = "sha256") -> None:
        self.codec = codec if isinstance(codec, compression.Codec) else compression.get(codec, what)
        self.what = what
        self.budget = budget
        self.pos = 0
        self._buf = b""
        self._off = 0
        self.last_block = b""
        self._d = self.codec.decompressor(raw.read, what)
        self._hash = _digest.hasher(diff_algorithm) if diff_algorithm and self.codec.name != "none" else None
        self._diff_alg = diff_algorithm

    def _produce(self) -> bytes:
        """The next chunk of decompressed data, b'' at the end (checked for truncation)."""
        out = self._d.produce()
        if out:
            if self._hash is not None:
                self._hash.update(out)
            self.budget[0] -= len(out)
            if self.budget[0] < 0:
                raise ImageError(f"{self.what}: expanded size exceeds the limit "
                                 f"(decompression bomb?); raise it with --max-size")
        return out

    # -- file interface for tarfile --------------------------------------------

    def read(self, n: int = -1) -> bytes:
        buf, off = self._buf, self._off
        if n < 0:
            parts = [buf[off:]]
            while True:
                chunk = self._produce()
                if not chunk:
                    break
                parts.append(chunk)
            self._buf, self._off = b"", 0
            out = b"".join(parts)
            self.pos += len(out)
            return out
        end = off + n
        if end <= len(buf):
            self._off = end
            self.pos += n
            out = buf[off:end]
        else:
            parts = [buf[off:]]
            have = len(buf) - off
            buf, off = b"", 0
            while have < n:
                chunk = self._produce()
                if not chunk:
                    break
                take = n - have
                if len(chunk) > take:
                    parts.append(chunk[:take])
                    buf, off = chunk, take
                    have = n
                else:
                    parts.append(chunk)
                    have += len(chunk)
            self._buf, self._off = buf, off
            out = b"".join(parts)
            self.pos += len(out)
        if n == 512:
            self.last_block = out
        return out

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence != 0 or pos < self.pos:
            raise ImageError(f"{self.what}: tar stream is not sequential (seek back to {pos})")
        while self.pos < pos:
            if not self.read(min(pos - self.pos, CHUNK)):
                gap = pos - self.pos
                if gap >= 512 or self._buf:
                    raise ImageError(f"{self.what}: truncated tar stream")
                # the data is complete but the padding after the last member and the end
                # marker are missing (umoci writes layers so): supply them as zeros
                self._buf, self._off = bytes(gap + 1024), 0
        return self.pos

    def drain(self) -> None:
        """Read to the end (checking the compression stream is complete)."""
        self._buf, self._off = b"", 0
        while self._produce():
            pass

    def diff_id(self) -> str | None:
        if self._hash is None:
            return None
        return f"{self._diff_alg}:{self._hash.hexdigest()}"


def open_layer_stream(raw: Any, media_type: str, what: str, budget: list[int]) -> LayerStream:
    """A LayerStream of blob `raw` of a layer with `media_type` (unknown types are an error)."""
    return LayerStream(raw, compression.for_media_type(media_type, what), what, budget)


def entries(stream: LayerStream, what: str) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """The tar headers of `stream` in order (an empty stream has none)."""
    import tarfile

    try:
        tf = tarfile.TarFile(fileobj=stream, mode="r")  # type: ignore[arg-type]
    except tarfile.ReadError as e:
        if "empty file" in str(e):
            return
        raise ImageError(f"{what}: not a tar archive: {e}") from None
    while True:
        try:
            info = tf.next()
        except tarfile.TarError as e:
            raise ImageError(f"{what}: corrupt tar stream at offset {tf.offset}: {e}") from None
        if info is None:
            # a clean end is the zero-block marker or plain end of data (some writers,
            # umoci among them, omit the marker); a partial or non-zero block is not
            if stream.last_block and stream.last_block != _ZERO_BLOCK:
                raise ImageError(f"{what}: truncated or corrupt tar stream at offset {tf.offset}")
            return
        tf.members = []  # type: ignore[attr-defined]  # keep no history: layers can be huge
        yield tf, info


def split_name(name: str, entry: str, what: str, kind: str = "") -> list[str]:
    """The components of a layer path; absolute names and '..' are refused."""
    where = f"{what}: entry {entry!r}" + (f": {kind} {name!r}" if kind else "")
    if name.startswith("/"):
        raise ImageError(f"{where}: absolute path not allowed in a layer")
    parts = [p for p in name.split("/") if p and p != "."]
    if ".." in parts:
        raise ImageError(f"{where}: '..' component not allowed in a layer")
    return parts


def mtime_ns(info: tarfile.TarInfo) -> int:
    """The entry's mtime in ns (a PAX mtime record keeps the fraction)."""
    pax = info.pax_headers.get("mtime") if info.pax_headers else None
    if pax:
        whole, _, frac = pax.partition(".")
        try:
            return int(whole) * 1_000_000_000 + (int((frac + "000000000")[:9]) if frac else 0) * (
                -1 if whole.startswith("-") else 1)
        except ValueError:
            pass
    return int(info.mtime * 1_000_000_000)
