"""Image bytes in and out: JPEG encoding for the bus, and decoding that refuses bombs before allocating."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageError(ValueError):
    """Bytes that are not a usable image; the message is shown to users and kept in dead letters."""


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header alone (Pillow reads no pixels here)."""
    if not data:
        raise ImageError("empty image (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Image.DecompressionBombError as err:  # Pillow's own, larger limit
        raise ImageError(f"image is too large: {err}") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise ImageError("not a readable image (JPEG, PNG, BMP, GIF, TIFF or WebP expected)") from None


def still_image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from the header when the file is a still image (whatever its name), else None.
    ImageError for an image past Pillow's own decompression-bomb limit."""
    try:
        with Image.open(path) as image:
            return image.size
    except Image.DecompressionBombError as err:
        raise ImageError(f"{path}: image is too large: {err}") from None
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def size_text(size: int) -> str:
    """A file size as people read it, in binary units as the limits are set: 10485760 -> "10 MB"."""
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value >= 10 or value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


def read_image_file(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of a regular image file no larger than `max_bytes` (never a device, pipe or folder)."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"{path}: not a regular file")
    if info.st_size > max_bytes:
        raise ImageError(
            f"{path}: {size_text(info.st_size)} is over the limit of {size_text(max_bytes)} (FERVI_MAX_IMAGE_BYTES)"
        )
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew since stat
        raise ImageError(f"{path}: over the limit of {size_text(max_bytes)} (FERVI_MAX_IMAGE_BYTES)")
    return data


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """BGR uint8 image; the pixel count is checked from the header before any pixel is decoded."""
    width, height = image_size(data)
    if width * height > max_pixels:
        raise ImageError(f"image of {width}x{height} pixels is too large (limit {max_pixels} pixels)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError("corrupt image: decoding failed")
    return image


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageError("JPEG encoding failed")
    return buffer.tobytes()
