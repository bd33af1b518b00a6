"""The header checks that decide whether an image is fit to send, on hand-made bytes."""

from __future__ import annotations

import struct
import zlib

import pytest

from sandbox_mcp.sandbox.images import MAX_PIXELS, MAX_SIDE, image_problem


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width: int = 2, height: int = 2, *, ihdr: bytes | None = None) -> bytes:
    header = ihdr if ihdr is not None else struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    # The pixel data is never decoded: a row's worth stands in for any size.
    pixels = zlib.compress(b"\x00" + b"\x80" * 6)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def gif(width: int = 2, height: int = 2, *, signature: bytes = b"GIF89a") -> bytes:
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00" * 6
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return signature + screen + image + b";"


def jpeg(width: int = 16, height: int = 8, *, sof: int = 0xC0, end: bytes = b"\xff\xd9") -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    frame = bytes([0xFF, sof]) + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    scan = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00" + b"\x12\x34\xff\x00"
    return b"\xff\xd8" + app0 + frame + scan + end


def riff(kind: bytes, body: bytes) -> bytes:
    payload = b"WEBP" + kind + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


def webp_lossy(width: int = 4, height: int = 3) -> bytes:
    return riff(b"VP8 ", b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\0\0")


def webp_lossless(width: int = 4, height: int = 3) -> bytes:
    bits = (width - 1) | (height - 1) << 14
    return riff(b"VP8L", b"\x2f" + struct.pack("<I", bits) + b"\0")


def webp_extended(width: int = 4, height: int = 3) -> bytes:
    size = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return riff(b"VP8X", b"\x10\0\0\0" + size)


@pytest.mark.parametrize(
    ("mime_type", "data"),
    [
        ("image/png", png()),
        ("image/png", png(MAX_SIDE, MAX_PIXELS // MAX_SIDE)),
        ("image/gif", gif()),
        ("image/gif", gif(signature=b"GIF87a")),
        ("image/jpeg", jpeg()),
        ("image/jpeg", jpeg(sof=0xC2)),
        ("image/jpeg", jpeg(end=b"\xff\xd9" + b"\x00" * 100)),
        ("image/webp", webp_lossy()),
        ("image/webp", webp_lossless()),
        ("image/webp", webp_extended()),
    ],
)
def test_a_well_formed_image_within_the_caps_passes(mime_type: str, data: bytes) -> None:
    assert image_problem(mime_type, data) is None


def swap_crc(data: bytes) -> bytes:
    return data[:29] + b"\0\0\0\0" + data[33:]


@pytest.mark.parametrize(
    ("mime_type", "data", "reason"),
    [
        ("image/png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 20, "IHDR"),
        ("image/png", b"\x89PNG\r\n\x1a\n", "truncated"),
        ("image/png", png(100_000, 100_000), "over the cap"),
        ("image/png", png(MAX_SIDE + 1, 1), "over the cap"),
        ("image/png", png(7000, 7000), "over the cap"),
        ("image/png", png(0, 5), "0x5"),
        ("image/png", png(ihdr=struct.pack(">IIBBBBB", 2, 2, 3, 2, 0, 0, 0)), "invalid fields"),
        ("image/png", png()[:-12], "IEND"),
        ("image/png", png() + b"x", "after IEND"),
        ("image/png", png()[:-20], "past the end"),
        ("image/png", swap_crc(png()), "CRC"),
        ("image/png", png()[:33] + chunk(b"IEND", b""), "no IDAT"),
        ("image/gif", b"GIF89a" + b"\xff" * 20, "over the cap"),
        ("image/gif", gif(0, 2), "0x2"),
        ("image/gif", gif()[:-1], "trailer"),
        ("image/gif", b"GIF89a\x01", "truncated"),
        ("image/gif", jpeg(), "signature"),
        ("image/jpeg", b"\xff\xd8\xff" + b"junk" * 10, "truncated"),
        ("image/jpeg", b"\xff\xd8\x00\x00", "marker expected"),
        ("image/jpeg", jpeg(20000, 10), "over the cap"),
        ("image/jpeg", jpeg(end=b""), "EOI"),
        ("image/jpeg", jpeg(end=b"\xff\xd9" + b"\x00" * 1000), "EOI"),
        ("image/jpeg", b"\xff\xd8\xff\xda\x00\x08", "no frame header"),
        ("image/jpeg", gif(), "SOI"),
        ("image/webp", webp_lossy() + b"\0\0", "RIFF size"),
        ("image/webp", webp_lossy()[:-2], "RIFF size"),
        ("image/webp", webp_lossy(0x3FFF, 0x3FFF), "over the cap"),
        ("image/webp", webp_lossless(9000, 10), "over the cap"),
        ("image/webp", webp_extended(1 << 20, 1 << 20), "over the cap"),
        ("image/webp", riff(b"VP8 ", b"\x10\x02\x00junk......"), "start code"),
        ("image/webp", riff(b"ABCD", b"\0" * 10), "unknown chunk"),
        ("image/webp", b"RIFF\x04\x00\x00\x00WEBP", "truncated"),
        ("image/svg+xml", b"<svg/>", "not an image type"),
    ],
)
def test_a_malformed_or_oversized_image_is_refused_with_a_reason(
    mime_type: str, data: bytes, reason: str
) -> None:
    problem = image_problem(mime_type, data)

    assert problem is not None and reason in problem, problem
