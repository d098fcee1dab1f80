"""Detection on several threads, for workers whose classifier waits on detection (a GPU worker).

One detector per thread; each camera always goes to the same one (a stable hash of its name), so a detector
that follows a camera's faces from frame to frame sees that camera's frames in order. TFLite and OpenCV
release the GIL while they compute, so the threads run on separate cores.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .detector import FaceDetector


class DetectorPool:
    def __init__(self, make: Callable[[], FaceDetector], threads: int):
        if threads < 1:
            raise ValueError("a detector pool needs at least one thread")
        self.detectors = [make() for _ in range(threads)]
        self.name = f"{self.detectors[0].name}x{threads}"
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="detect")

    def _index(self, stream: str | None, position: int) -> int:
        if stream is None:
            return position % len(self.detectors)
        return zlib.crc32(stream.encode()) % len(self.detectors)

    def detect(
        self, frame: np.ndarray, stream: str | None = None, position: int | None = None, at: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.detectors[self._index(stream, 0)].detect(frame, stream, position, at)

    def detect_many(
        self, images: list[np.ndarray], streams: list[tuple[Any, ...]] | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each image's (boxes, scores); a camera's images in their order on its own detector."""
        keys = streams or [(None, i) for i in range(len(images))]
        groups: dict[int, list[int]] = {}
        for i, (stream, *_) in enumerate(keys):
            groups.setdefault(self._index(stream, i), []).append(i)

        def run(detector_index: int, indices: list[int]) -> list[tuple[int, tuple[np.ndarray, np.ndarray]]]:
            detector = self.detectors[detector_index]
            return [(i, detector.detect(images[i], *(keys[i] if streams else (None, None)))) for i in indices]

        out: list[Any] = [None] * len(images)
        for part in self.executor.map(lambda item: run(*item), groups.items()):
            for i, found in part:
                out[i] = found
        return out
