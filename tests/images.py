"""Test images: frames built from the real face photos that ship in wheels, and broken JPEGs."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

from fervi.demo import render_frame
from fervi.vision.images import encode_jpeg


def demo_jpeg(index: int = 0, total: int = 10, faces: int = 2) -> bytes:
    return encode_jpeg(render_frame(index, total, faces=faces))


def jpeg_claiming_size(width: int, height: int) -> bytes:
    """A small valid JPEG whose SOF header is rewritten to claim width x height pixels."""
    data = bytearray(encode_jpeg(np.full((16, 16, 3), 128, np.uint8)))
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker")


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's header, without the bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def corrupt_jpeg() -> bytes:
    good = demo_jpeg()
    return good[:200] + b"\x00" * 50  # header survives, image data does not


def gray_frame() -> np.ndarray:
    return cv2.cvtColor(render_frame(0, 10), cv2.COLOR_BGR2GRAY)
