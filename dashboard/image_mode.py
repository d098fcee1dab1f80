"""Image mode: an uploaded image goes through the same workers as camera frames, as a one-off camera."""

from __future__ import annotations

import time
import uuid

from fervi.bus import Bus
from fervi.protocol import Frame, Result
from fervi.vision.images import ImageError, decode_image, size_text

MAX_UPLOAD_BYTES = 10 * 2**20
ALLOWED_TYPES = {"image/jpeg", "image/png", "image/webp", "image/bmp"}


class UploadError(ValueError):
    """Shown to the user as is."""


class NoWorker(UploadError):
    """No worker analysed the image in time: the service, not the image, is at fault (503)."""


def check_upload(data: bytes, content_type: str, max_pixels: int) -> tuple[int, int]:
    if not data:
        raise UploadError("empty upload")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"the image is {size_text(len(data))}: the limit is {size_text(MAX_UPLOAD_BYTES)}")
    if content_type and content_type.split(";")[0].strip() not in ALLOWED_TYPES:
        raise UploadError(f"unsupported type {content_type!r}: use JPEG, PNG, WebP or BMP")
    try:
        image = decode_image(data, max_pixels)
    except ImageError as err:  # one list of formats on this page: the one it accepts
        raise UploadError(
            str(err).replace("JPEG, PNG, BMP, GIF, TIFF or WebP expected", "use JPEG, PNG, WebP or BMP")
        ) from None
    return image.shape[1], image.shape[0]


def analyse_upload(bus: Bus, data: bytes, width: int, height: int, timeout_s: float = 30.0) -> Result:
    """Queue the image as the only frame of a fresh camera, wait for its result, then forget the camera."""
    camera = f"image-{uuid.uuid4().hex[:12]}"
    bus.add_one_off_camera(camera)
    try:
        seq, _ = bus.add_frame(Frame(camera, time.time(), width, height, data, live=False, index=0))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for _, result in bus.results(camera):
                if result.seq == seq:
                    if result.gap:
                        raise UploadError(
                            f"the worker could not analyse the image ({result.gap}); see the dead letters"
                        )
                    return result
            time.sleep(0.05)
        raise NoWorker("no worker answered in time: is `fervi worker` running?")
    finally:
        bus.forget_camera(camera)
