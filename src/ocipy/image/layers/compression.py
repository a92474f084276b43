"""Layer compression: the one table of codecs (gzip, zstd, none).

Everything that compresses or decompresses a layer goes through
:data:`CODECS` (by name) or :func:`for_media_type` (by layer media type; the
media type → compression name mapping itself is ``spec.image.LAYER_COMPRESSION``,
the image-spec's media-type table).  zstd is the `zstandard` library, imported
only when a zstd layer is met.  gzip is inflated by ISA-L (the `isal` library,
zlib's interface at twice its speed: most of an unpack's own CPU time was
zlib's) when it is installed, else by zlib; layers are written by zlib, so a
layer's bytes do not depend on which is there.

A decompressor produces bounded chunks (a tiny zstd or gzip input can expand
to gigabytes, and the caller counts every chunk against its size budget),
reads concatenated gzip members and zstd frames as one stream, and tells a
truncated stream from a complete one.
"""

from __future__ import annotations

import zlib
from typing import Any

from ocipy.errors import ImageError

CHUNK = 1 << 20  # decompressed bytes per produce() at most (gzip; zstd is bounded by ZSTD_FEED)
RAW_CHUNK = 1 << 18
ZSTD_FEED = 1 << 12  # a 4 KiB zstd input expands to at most ~180 MiB


class Decompressor:
    """`produce()` -> the next chunk of decompressed data, b'' at the (checked) end."""

    def __init__(self, read: Any, what: str) -> None:
        self.read = read  # read(n) -> bytes of the compressed stream
        self.what = what

    def produce(self) -> bytes:
        raise NotImplementedError


class _Plain(Decompressor):
    def produce(self) -> bytes:
        data: bytes = self.read(CHUNK)
        return data


_inflate: Any = None


def _inflater() -> Any:
    """isal.isal_zlib, or zlib: the same decompressobj(wbits), decompress(data, max_length),
    unconsumed_tail, unused_data, eof and error."""
    global _inflate
    if _inflate is None:
        try:
            from isal import isal_zlib

            _inflate = isal_zlib
        except ImportError:
            _inflate = zlib
    return _inflate


class _Gzip(Decompressor):
    def __init__(self, read: Any, what: str) -> None:
        super().__init__(read, what)
        self.lib = _inflater()
        self.z: Any = self.lib.decompressobj(31)
        self.done = False

    def produce(self) -> bytes:
        if self.done:
            return b""
        z = self.z
        out = b""
        while not out:
            # eof first: a member that ends in a call fed from unconsumed_tail leaves
            # both set, and feeding the tail to the finished object again loops forever
            if z.eof:
                rest = z.unused_data or self.read(RAW_CHUNK)
                while rest and not rest.strip(b"\0"):
                    rest = self.read(RAW_CHUNK)  # zero padding after the last member
                if not rest:
                    self.done = True
                    return b""
                z = self.z = self.lib.decompressobj(31)  # another gzip member follows
                src = rest
            elif z.unconsumed_tail:
                src = z.unconsumed_tail
            else:
                src = self.read(RAW_CHUNK)
                if not src:
                    raise ImageError(f"{self.what}: truncated gzip stream (unexpected end of data)")
            try:
                out = z.decompress(src, CHUNK)
            except self.lib.error as e:
                raise ImageError(f"{self.what}: corrupt gzip stream: {e}") from None
        return out


class _Zstd(Decompressor):
    def __init__(self, read: Any, what: str) -> None:
        super().__init__(read, what)
        import zstandard

        self.error = zstandard.ZstdError
        self.dctx = zstandard.ZstdDecompressor()
        self.z: Any = self.dctx.decompressobj()
        self.pending = b""
        self.done = False

    def produce(self) -> bytes:
        if self.done:
            return b""
        z = self.z
        out = b""
        while not out:
            if z.eof:
                rest = z.unused_data + self.pending
                if not rest:
                    rest = self.read(RAW_CHUNK)
                if not rest:
                    self.done = True
                    return b""
                z = self.z = self.dctx.decompressobj()  # next frame
                self.pending = rest
            if not self.pending:
                self.pending = self.read(RAW_CHUNK)
                if not self.pending:
                    raise ImageError(f"{self.what}: truncated zstd stream (unexpected end of data)")
            src, self.pending = self.pending[:ZSTD_FEED], self.pending[ZSTD_FEED:]
            try:
                out = z.decompress(src)
            except self.error as e:
                raise ImageError(f"{self.what}: corrupt zstd stream: {e}") from None
        return out


class Compressor:
    """compress(data) -> bytes so far; flush() -> the rest (once)."""

    def compress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _GzipCompressor(Compressor):
    def __init__(self, level: int | None) -> None:
        self.z = zlib.compressobj(6 if level is None else level, zlib.DEFLATED, 31)

    def compress(self, data: bytes) -> bytes:
        return self.z.compress(data)

    def flush(self) -> bytes:
        return self.z.flush()


class _ZstdCompressor(Compressor):
    def __init__(self, level: int | None) -> None:
        import zstandard

        self.z = zstandard.ZstdCompressor(level=3 if level is None else level).compressobj()

    def compress(self, data: bytes) -> bytes:
        out: bytes = self.z.compress(data)
        return out

    def flush(self) -> bytes:
        out: bytes = self.z.flush()
        return out


class Codec:
    """One compression: its name, magic bytes and (de)compressor factories."""

    def __init__(self, name: str, magic: bytes, decompressor: type[Decompressor],
                 compressor: type[Compressor] | None) -> None:
        self.name = name
        self.magic = magic
        self._decompressor = decompressor
        self._compressor = compressor

    def decompressor(self, read: Any, what: str) -> Decompressor:
        return self._decompressor(read, what)

    def compressor(self, level: int | None = None) -> Compressor:
        if self._compressor is None:
            return Compressor()
        return self._compressor(level)  # type: ignore[call-arg]

    @property
    def media_type(self) -> str:
        """The OCI layer media type of a layer written with this codec."""
        from ocipy.spec import image as spec

        return spec.COMPRESSED_LAYER_TYPE[self.name]


CODECS: dict[str, Codec] = {
    "gzip": Codec("gzip", b"\x1f\x8b", _Gzip, _GzipCompressor),
    "zstd": Codec("zstd", b"\x28\xb5\x2f\xfd", _Zstd, _ZstdCompressor),
    "none": Codec("none", b"", _Plain, None),
}
NAMES = tuple(CODECS)  # for --compress choices and error messages


def get(name: str, what: str = "layer") -> Codec:
    codec = CODECS.get(name)
    if codec is None:
        raise ImageError(f"{what}: unknown compression {name!r} ({', '.join(NAMES)})")
    return codec


def for_media_type(media_type: str, what: str = "layer") -> Codec:
    """The codec of a layer media type (OCI, nondistributable, Docker schema2)."""
    from ocipy.spec import image as spec

    name = spec.LAYER_COMPRESSION.get(media_type)
    if name is None:
        raise ImageError(f"{what}: unknown layer media type {media_type!r}")
    return CODECS[name]


def sniff(head: bytes) -> Codec:
    """The codec whose magic bytes start `head` (uncompressed when none matches)."""
    for codec in CODECS.values():
        if codec.magic and head.startswith(codec.magic):
            return codec
    return CODECS["none"]


class DecompressedReader:
    """A read-only file of the decompressed bytes of `raw` (for copying a layer's tar)."""

    def __init__(self, raw: Any, codec: Codec, what: str = "layer") -> None:
        self._d = codec.decompressor(raw.read, what)
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        parts, have = [self._buf], len(self._buf)
        while n < 0 or have < n:
            chunk = self._d.produce()
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        if n < 0 or have <= n:
            self._buf = b""
            return data
        self._buf = data[n:]
        return data[:n]


class CompressingWriter:
    """A write-only file that compresses into `out` (close() writes the end, not closing `out`)."""

    def __init__(self, out: Any, codec: Codec, level: int | None = None) -> None:
        self.out = out
        self._z = codec.compressor(level)
        self._plain = codec.name == "none"

    def write(self, data: bytes) -> int:
        if self._plain:
            self.out.write(data)
        else:
            chunk = self._z.compress(data)
            if chunk:
                self.out.write(chunk)
        return len(data)

    def close(self) -> None:
        tail = self._z.flush()
        if tail:
            self.out.write(tail)
