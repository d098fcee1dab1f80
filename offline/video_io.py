"""Reading video files: probe a file, cut it into frame ranges, and seek to a range's first frame."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fervi.vision.images import ImageError, still_image_size
from fervi.vision.video import open_file, reopen_file

log = logging.getLogger(__name__)


class VideoError(ValueError):
    """A file that is not a readable video; the message is what users see."""


@dataclass
class VideoInfo:
    path: str
    frames: int
    fps: float
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


def _check_pixels(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise VideoError(
            f"{path}: frames of {width}x{height} pixels are too large (limit {max_pixels} pixels, "
            "FERVI_MAX_FRAME_PIXELS)"
        )


def video_fps(capture: cv2.VideoCapture) -> float:
    """The container's frame rate, or 25 where it says none (0) or an absurd one (1000 and over)."""
    fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    return fps if 0 < fps < 1000 else 25.0


def probe(path: str | Path, max_pixels: int = 4096 * 4096) -> VideoInfo:
    """The file's frame count, fps and size; frames over `max_pixels` are refused before any is decoded."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file")
    try:  # a still image (OpenCV reads one as a one-frame video): its header
        still = still_image_size(path)
    except ImageError as err:
        raise VideoError(str(err)) from None
    if still is not None:
        _check_pixels(path, *still, max_pixels)
    capture = open_file(str(path))
    try:
        if capture.isOpened():
            _check_pixels(
                path,
                int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                max_pixels,
            )
        ok, image = capture.read() if capture.isOpened() else (False, None)
        if not ok or image is None:
            raise VideoError(f"{path}: not a readable video (OpenCV could not decode a frame)")
        fps = video_fps(capture)
        # a still image has no frame count (OpenCV answers -2^63); a container may not know it (0)
        frames = 1 if still is not None else max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        return VideoInfo(str(path.resolve()), frames, fps, image.shape[1], image.shape[0])
    finally:
        capture.release()


def segment_bounds(frames: int, segments: int) -> list[tuple[int, int | None]]:
    """Frame ranges [start, stop); the last one runs to the end of the file (frame counts can be off)."""
    segments = max(1, min(segments, max(1, frames)))
    edges = np.linspace(0, frames, segments + 1).round().astype(int).tolist()
    return [(edges[i], edges[i + 1] if i < segments - 1 else None) for i in range(segments)]


def seek(capture: cv2.VideoCapture, video: str, start: int) -> int:
    """Position `capture` at frame `start` and return the index reached.

    OpenCV's FFmpeg backend seeks to the exact frame when the file's timestamps allow it, and then reports
    that position; if it reports another, the file is reopened and read up to `start` frame by frame, which
    is exact for every codec (and costs one decode of everything before the segment).
    """
    if start == 0:
        return 0
    if capture.set(cv2.CAP_PROP_POS_FRAMES, start) and int(capture.get(cv2.CAP_PROP_POS_FRAMES)) == start:
        return start
    log.warning("event=inexact_seek video=%s frame=%d fallback=sequential", video, start)
    reopen_file(capture, video)
    index = 0
    while index < start and capture.grab():
        index += 1
    return index
