"""Image dimensions read from the header, before anything decodes the pixels.

A 900 kB PNG can declare 30000 x 30000 pixels (2.7 GB once decoded): whoever takes an
image from outside (an enrolment upload, a device's snapshot reply) reads its size here
first and refuses what is too large, then decodes. Only JPEG, PNG and WebP are read; other
formats are refused, whatever a decoder could make of them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ringwatch.contract.errors import ContractError

MAX_SIDE = 16384
MAX_PIXELS = 40_000_000  # 8000 x 5000; decoded as BGR that is 120 MB


class ImageRefused(ContractError):
    """An image that cannot be taken; ``code`` is machine-readable, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ImageSize:
    format: str
    width: int
    height: int


def image_size(data: bytes) -> ImageSize:
    """The format and size an image declares; :class:`ImageRefused` if it is neither a
    JPEG, a PNG nor a WebP, or its header is cut off or malformed."""
    if data.startswith(b"\xff\xd8"):
        return ImageSize("jpeg", *_jpeg_size(data))
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ImageSize("png", *_png_size(data))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageSize("webp", *_webp_size(data))
    raise ImageRefused("unsupported_format", "not a JPEG, PNG or WebP image")


def check_image(data: bytes, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE) -> ImageSize:
    """:func:`image_size`, refusing images wider or taller than ``max_side`` or with more
    than ``max_pixels`` pixels (code ``too_many_pixels``)."""
    size = image_size(data)
    if size.width <= 0 or size.height <= 0:
        raise ImageRefused("malformed", f"{size.format} declares {size.width}x{size.height}")
    if max(size.width, size.height) > max_side or size.width * size.height > max_pixels:
        raise ImageRefused(
            "too_many_pixels",
            f"{size.format} of {size.width}x{size.height} pixels; limit {max_pixels} pixels,"
            f" {max_side} a side",
        )
    return size


# JPEG start-of-frame markers (baseline, progressive, lossless, ...): not DHT, JPG, DAC.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ImageRefused("malformed", f"JPEG: no marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in _SOF:
            if pos + 9 > len(data):
                break
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return width, height
        if marker == 0xDA or length < 2:
            raise ImageRefused("malformed", "JPEG: no frame header before the image data")
        pos += 2 + length
    raise ImageRefused("malformed", "JPEG: header cut off before the frame size")


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageRefused("malformed", "PNG: no IHDR header")
    width, height = struct.unpack_from(">II", data, 16)
    return width, height


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    raise ImageRefused("malformed", "WebP: no VP8/VP8L/VP8X header")
