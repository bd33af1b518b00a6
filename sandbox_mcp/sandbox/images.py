"""Whether an image's bytes are fit to send to a model as an image, judged from its headers.

A model API that cannot decode an image, or finds it too large, fails the whole request, and
the image stays in the conversation's history, so one bad file would break every later
request. `image_problem` reads the format's header and framing (no pixel is decoded, the
server holds no image library) and says what is wrong, or None:
- PNG: the signature, an IHDR chunk of length 13 first with valid fields, every chunk's
  length and CRC, at least one IDAT, and IEND exactly at the end of the file;
- GIF: `GIF87a`/`GIF89a`, the logical screen's width and height, and the trailer (`;`) last;
- JPEG: SOI, the markers walked to the first SOFn for height and width, no scan before it,
  and EOI (FF D9) among the last bytes;
- WEBP: a RIFF size matching the file's, `WEBP`, and the VP8, VP8L or VP8X dimensions.
Both sides must be non-zero, at most `MAX_SIDE`, and the area at most `MAX_PIXELS`.

Known shortcoming: the compressed pixel data itself (PNG's zlib stream, JPEG's entropy-coded
scan, WEBP's bitstream) is not checked, so a file with sound headers around corrupt data
still passes.

Only the standard library.
"""

from __future__ import annotations

import struct
import zlib

# Some model APIs refuse an image with a side over 8000 px; 40 megapixels is 8000 x 5000,
# far above any plot, small enough to stay cheap for whoever decodes it.
MAX_SIDE = 8000
MAX_PIXELS = 40_000_000
# JPEG writers may pad after EOI; more than this after it is taken for a broken file.
_JPEG_TAIL = 256

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
# SOF0..SOF15 but DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length: TEM and RST0..RST7.
_JPEG_BARE = frozenset({0x01, *range(0xD0, 0xD8)})


def image_problem(mime_type: str, data: bytes) -> str | None:
    """What makes `data` unfit to send as an image of `mime_type`, or None if it is fit."""
    check = _CHECKS.get(mime_type)
    if check is None:
        return f"{mime_type} is not an image type sent as an image"
    try:
        return check(data)
    except (struct.error, IndexError):
        return f"truncated {mime_type} header"


def _size_problem(width: int, height: int) -> str | None:
    if width <= 0 or height <= 0:
        return f"image declares {width}x{height} pixels"
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        return (
            f"image of {width}x{height} pixels is over the cap "
            f"({MAX_SIDE} px a side, {MAX_PIXELS // 1_000_000} megapixels)"
        )
    return None


def _png_problem(data: bytes) -> str | None:
    if not data.startswith(_PNG_SIGNATURE):
        return "no PNG signature"
    length, kind = struct.unpack(">I4s", data[8:16])
    if kind != b"IHDR" or length != 13:
        return "PNG does not start with a 13-byte IHDR chunk"
    width, height, depth, color, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", data[16:29]
    )
    if depth not in _PNG_DEPTHS.get(color, ()) or compression or filtering or interlace > 1:
        return "PNG IHDR has invalid fields"
    problem = _size_problem(width, height)
    if problem:
        return problem
    return _png_chunks_problem(data)


def _png_chunks_problem(data: bytes) -> str | None:
    position, seen_data = 8, False
    while position + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        end = position + 12 + length
        if end > len(data):
            return f"PNG chunk {kind!r} runs past the end of the file"
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(data[position + 4 : end - 4]) != crc:
            return f"PNG chunk {kind!r} has a bad CRC"
        seen_data = seen_data or kind == b"IDAT"
        if kind == b"IEND":
            if end != len(data):
                return "PNG has bytes after IEND"
            return None if seen_data else "PNG has no IDAT chunk"
        position = end
    return "PNG does not end with an IEND chunk"


def _gif_problem(data: bytes) -> str | None:
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        return "no GIF87a/GIF89a signature"
    width, height = struct.unpack("<HH", data[6:10])
    problem = _size_problem(width, height)
    if problem:
        return problem
    if len(data) < 14 or not data.endswith(b";"):
        return "GIF does not end with its trailer"
    return None


def _jpeg_problem(data: bytes) -> str | None:
    if not data.startswith(b"\xff\xd8"):
        return "no JPEG SOI marker"
    position = 2
    while True:
        if data[position] != 0xFF:
            return "JPEG marker expected"
        while data[position] == 0xFF:  # fill bytes
            position += 1
        marker = data[position]
        position += 1
        if marker in _JPEG_BARE:
            continue
        if marker in (0xD8, 0xD9, 0xDA):
            return "JPEG has no frame header (SOF) before its scan"
        (length,) = struct.unpack(">H", data[position : position + 2])
        if length < 2:
            return "JPEG segment with an invalid length"
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[position + 3 : position + 7])
            return _size_problem(width, height) or _jpeg_end_problem(data, position)
        position += length


def _jpeg_end_problem(data: bytes, frame: int) -> str | None:
    end = data.rfind(b"\xff\xd9", max(frame, len(data) - _JPEG_TAIL))
    return None if end >= 0 else "JPEG does not end with an EOI marker"


def _webp_problem(data: bytes) -> str | None:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return "no RIFF/WEBP header"
    (riff_size,) = struct.unpack("<I", data[4:8])
    if riff_size + 8 != len(data):
        return f"WEBP RIFF size {riff_size} does not match a file of {len(data)} bytes"
    kind, chunk_size = struct.unpack("<4sI", data[12:20])
    if 20 + chunk_size > len(data):
        return f"WEBP chunk {kind!r} runs past the end of the file"
    body = data[20 : 20 + chunk_size]
    if kind == b"VP8 ":
        if body[3:6] != b"\x9d\x01\x2a":
            return "WEBP VP8 frame has no start code"
        width, height = struct.unpack("<HH", body[6:10])
        return _size_problem(width & 0x3FFF, height & 0x3FFF)
    if kind == b"VP8L":
        if body[0] != 0x2F:
            return "WEBP VP8L has no signature"
        (bits,) = struct.unpack("<I", body[1:5])
        return _size_problem((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if kind == b"VP8X":
        if len(body) < 10:
            return "truncated image/webp header"
        width = int.from_bytes(body[4:7], "little") + 1
        height = int.from_bytes(body[7:10], "little") + 1
        return _size_problem(width, height)
    return f"WEBP starts with an unknown chunk {kind!r}"


_CHECKS = {
    "image/png": _png_problem,
    "image/gif": _gif_problem,
    "image/jpeg": _jpeg_problem,
    "image/webp": _webp_problem,
}
