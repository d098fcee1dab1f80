"""Frame sources. Each names its buffering choice, as Roboflow's InferencePipeline does:

- `Buffering.DROP_OLDEST` (live: webcam, RTSP/HTTP): capture never waits; the camera stream is bounded and
  old frames fall off; frames faster than the requested fps are dropped at the source.
- `Buffering.WAIT` (file, image, folder): every frame is delivered; the publisher waits while the
  workers' backlog is above a bound.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fervi.protocol import resolved_within
from fervi.vision.images import ImageError, decode_image, read_image_file, still_image_size
from fervi.vision.video import open_file, open_stream

from .diagnose import why_file_failed, why_stream_failed

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class Buffering(enum.Enum):
    DROP_OLDEST = "drop_oldest"
    WAIT = "wait"


class SourceError(RuntimeError):
    """A source that cannot be opened or read (message says which and why)."""


@dataclass
class Captured:
    index: int  # position in the source
    image: np.ndarray | None  # BGR; None when this item of the source could not be read
    captured_at: float  # unix seconds
    error: str = ""  # why the item could not be read (a file source goes on with the next one)


class Source:
    buffering: Buffering
    name: str

    def frames(self) -> Iterator[Captured]:
        raise NotImplementedError

    @property
    def fps(self) -> float | None:
        return None

    def close(self) -> None:
        """Release what the source holds open (a capture device or stream); nothing by default."""


class VideoSource(Source):
    """A webcam index, an RTSP/HTTP URL (live) or a video file (every frame) through OpenCV."""

    def __init__(self, spec: str | int, live: bool, max_pixels: int = 4096 * 4096):
        self.spec = spec
        self.name = str(spec)
        self.buffering = Buffering.DROP_OLDEST if live else Buffering.WAIT
        # a file (no webcam index) may be a still image named like a video: its header, before OpenCV decodes it
        if not live and isinstance(spec, str):
            try:
                self._check_pixels(still_image_size(spec), max_pixels)
            except ImageError as err:
                raise SourceError(str(err)) from None
        if isinstance(spec, int):
            self.capture = cv2.VideoCapture(spec)  # a webcam, through the platform's camera backend
        else:
            self.capture = open_stream(spec) if live else open_file(spec)
        if not self.capture.isOpened():  # OpenCV does not say why: ask the file system or the server
            if isinstance(spec, int):
                raise SourceError(  # a webcam may be plugged in later: live sources are retried anyway
                    f"not found: webcam {spec} cannot be opened (no such device, or another program has it)"
                )
            raise SourceError(why_stream_failed(spec) if live else why_file_failed(spec))
        self._check_pixels(
            (int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))),
            max_pixels,
        )
        if not live and self.capture.get(cv2.CAP_PROP_FRAME_COUNT) <= 0 and not self.capture.grab():
            raise SourceError(f"not a video: {spec}: no video frames could be read")
        if not live:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)

    def _check_pixels(self, size: tuple[int, int] | None, max_pixels: int) -> None:
        if size and size[0] * size[1] > max_pixels:
            if getattr(self, "capture", None) is not None:
                self.capture.release()
            raise SourceError(
                f"{self.spec}: frames of {size[0]}x{size[1]} pixels are over the limit of "
                f"{max_pixels} (FERVI_MAX_FRAME_PIXELS)"
            )

    @property
    def fps(self) -> float | None:
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        return fps if fps and fps > 0 else None

    def frames(self) -> Iterator[Captured]:
        index = 0
        while True:
            ok, image = self.capture.read()
            if not ok or image is None:
                if self.buffering is Buffering.DROP_OLDEST:
                    raise SourceError(f"lost video source {self.spec!r}")
                if index == 0:
                    raise SourceError(f"{self.spec}: no video frame could be decoded")
                return
            yield Captured(index, image, time.time())
            index += 1

    def close(self) -> None:
        self.capture.release()


class ImageSource(Source):
    """One image or a folder of images, in name order; each file is one frame. A file of a folder that is not
    a readable image within the size limits is reported (`Captured.error`) and the source goes on; a single
    image that is not is the source failing (`SourceError`): nothing can be sent."""

    buffering = Buffering.WAIT

    def __init__(self, path: Path, max_pixels: int, max_bytes: int, within: list[str] | None = None):
        self.name = str(path)
        self.within = within or []
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
        if not files:
            raise SourceError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.files = files
        self.folder = path.is_dir()

    def frames(self) -> Iterator[Captured]:
        for index, file in enumerate(self.files):
            try:
                check_within(file, self.within)
                image = decode_image(read_image_file(file, self.max_bytes), self.max_pixels)
            except (SourceError, ImageError) as err:
                message = str(err) if str(file) in str(err) else f"{file}: {err}"
                if not self.folder:  # a file that does not decode never will: `diagnose.PERMANENT`
                    kind = "not a usable image: " if isinstance(err, ImageError) else ""
                    raise SourceError(kind + message) from None
                yield Captured(index, None, time.time(), message)
                continue
            yield Captured(index, image, time.time())


def check_within(path: Path, within: list[str]) -> None:
    """A file source (or a file of a folder) must resolve inside one of `within` (symlinks followed), checked
    each time it is opened: a link swapped in after the camera was added is refused too."""
    if not within:
        return
    resolved = resolved_within(path, within)
    if resolved is None:
        raise SourceError(f"{path}: outside the folders this camera may read ({', '.join(within)})")
    if resolved.exists() and not (resolved.is_file() or resolved.is_dir()):
        raise SourceError(f"{path}: not a regular file or a folder")


def is_live_spec(spec: str) -> bool:
    """A webcam index or a stream URL: sources that may come back after failing, so they are retried."""
    return spec.isdigit() or "://" in spec


def open_source(
    spec: str, max_pixels: int = 4096 * 4096, max_bytes: int = 64 * 1024 * 1024, within: list[str] | None = None
) -> Source:
    """`0` (webcam index), `rtsp://...`/`http(s)://...` (live stream), a video file, an image or a folder.
    `within`: folders a file source must resolve inside (see `check_within`)."""
    if spec.isdigit():
        return VideoSource(int(spec), live=True, max_pixels=max_pixels)
    if "://" in spec:
        return VideoSource(spec, live=True, max_pixels=max_pixels)
    path = Path(spec)
    check_within(path, within or [])
    if not path.exists():
        raise SourceError(f"not found: {spec}: no such file, folder, webcam index or URL")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path, max_pixels, max_bytes, within or [])
    return VideoSource(str(path), live=False, max_pixels=max_pixels)
