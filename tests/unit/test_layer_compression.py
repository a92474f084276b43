"""The layer codec table: every media type maps to a codec; streams round-trip and are checked."""

from __future__ import annotations

import gzip
import io
import os

import pytest
import zstandard

from ocipy.errors import ImageError
from ocipy.image.layers import compression
from ocipy.spec import image as spec

DATA = os.urandom(300_000) + bytes(3_000_000)


def roundtrip(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    w = compression.CompressingWriter(out, compression.get(name))
    for i in range(0, len(data), 65536):
        w.write(data[i:i + 65536])
    w.close()
    blob = out.getvalue()
    codec = compression.sniff(blob[:4])
    assert codec.name == name
    return compression.DecompressedReader(io.BytesIO(blob), codec).read()


@pytest.mark.parametrize("name", compression.NAMES)
def test_roundtrip(name: str) -> None:
    assert roundtrip(name, DATA) == DATA


def test_every_layer_media_type_has_a_codec() -> None:
    for media_type, name in spec.LAYER_COMPRESSION.items():
        assert compression.for_media_type(media_type).name == name
    for name, media_type in spec.COMPRESSED_LAYER_TYPE.items():
        assert compression.get(name).media_type == media_type
    with pytest.raises(ImageError, match="unknown layer media type"):
        compression.for_media_type("application/vnd.oci.image.layer.v1.tar+lz4")
    with pytest.raises(ImageError, match="unknown compression 'lz4'"):
        compression.get("lz4")


def test_concatenated_members_and_frames_are_one_stream() -> None:
    gz = gzip.compress(b"one") + gzip.compress(b"two") + bytes(512)  # zero padding after the last member
    assert compression.DecompressedReader(io.BytesIO(gz), compression.get("gzip")).read() == b"onetwo"
    z = zstandard.ZstdCompressor()
    zs = z.compress(b"one") + z.compress(b"two")
    assert compression.DecompressedReader(io.BytesIO(zs), compression.get("zstd")).read() == b"onetwo"


@pytest.mark.parametrize("name", ["gzip", "zstd"])
def test_truncated_and_corrupt_streams_are_errors(name: str) -> None:
    blob = gzip.compress(DATA) if name == "gzip" else zstandard.ZstdCompressor().compress(DATA)
    with pytest.raises(ImageError, match=f"truncated {name}"):
        compression.DecompressedReader(io.BytesIO(blob[: len(blob) // 2]), compression.get(name)).read()
    if name == "zstd":
        return  # zstd frames carry no checksum by default: the blob digest catches a flipped bit
    bad = bytearray(blob)
    bad[len(bad) // 3] ^= 0xFF
    with pytest.raises(ImageError, match=f"(corrupt|truncated) {name}"):
        compression.DecompressedReader(io.BytesIO(bytes(bad)), compression.get(name)).read()


@pytest.mark.parametrize("name", ["gzip", "zstd"])
def test_output_per_step_is_bounded(name: str) -> None:
    # a bomb: 256 MiB of zeros compresses to ~250 KiB (gzip) / a few KiB (zstd); no single
    # step may expand to more than a bounded chunk, so the caller's budget check is timely
    zeros = bytes(16 << 20)
    blob = gzip.compress(zeros * 16, 9) if name == "gzip" else zstandard.ZstdCompressor().compress(zeros * 16)
    raw = io.BytesIO(blob)
    d = compression.get(name).decompressor(raw.read, "bomb")
    biggest = total = 0
    while total < (128 << 20):
        chunk = d.produce()
        assert chunk
        biggest = max(biggest, len(chunk))
        total += len(chunk)
    assert biggest <= 256 << 20 and (name == "zstd" or biggest <= compression.CHUNK)


@pytest.mark.parametrize("inflate", ["zlib", "isal"])
def test_member_ending_inside_a_bounded_step_then_another(inflate: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A member whose end comes in a step fed from the previous step's unconsumed input,
    # followed by more input: this looped forever (growing memory) before.
    import zlib

    lib = zlib if inflate == "zlib" else pytest.importorskip("isal.isal_zlib")
    monkeypatch.setattr(compression, "_inflate", lib)
    data = os.urandom(100_000) + bytes(3_000_000)
    blob = gzip.compress(data) + gzip.compress(b"tail") + bytes(100)
    assert compression.DecompressedReader(io.BytesIO(blob), compression.get("gzip")).read() == data + b"tail"


def test_gzip_is_inflated_by_isal_when_installed() -> None:
    pytest.importorskip("isal")
    compression._inflater()
    assert compression._inflate.__name__ == "isal.isal_zlib"
