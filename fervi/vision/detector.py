"""Face detectors behind one interface: `detect(bgr_frame) -> (boxes (N, 4) xywh pixels, scores (N,))`,
and `load_detector`, the one factory of them all.

BlazeFace in one pass (`blazeface.py`: MediaPipe's short- and full-range models). The default,
`multiscale` (`multiscale.py`), runs short range over an image pyramid and verifies each face. OpenCV's
Haar cascade is the fallback that needs no model file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from fervi.settings import DETECTORS

from .blazeface import BLAZEFACE_MODELS, BlazeFaceDetector
from .multiscale import MultiScaleDetector

log = logging.getLogger(__name__)


class FaceDetector(Protocol):
    name: str

    def detect(
        self, frame: np.ndarray, stream: str | None = None, position: int | None = None, at: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Faces in `frame`; `stream` names the camera it comes from, `position` its place in that stream
        (its seq) and `at` its time on the stream's own clock (capture time, video time), for detectors
        that follow faces."""


class HaarDetector:
    name = "haar"

    def __init__(self, min_size: int = 24):
        root = getattr(getattr(cv2, "data", None), "haarcascades", None)
        if not root:
            raise RuntimeError("this OpenCV build ships no Haar cascades (use opencv-python-headless 4.x)")
        self.cascade = cv2.CascadeClassifier(str(Path(root) / "haarcascade_frontalface_default.xml"))
        self.min_size = min_size

    def detect(
        self, frame: np.ndarray, stream: str | None = None, position: int | None = None, at: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        boxes, _, weights = self.cascade.detectMultiScale3(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(self.min_size, self.min_size), outputRejectLevels=True
        )
        if len(boxes) == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        scores = 1.0 / (1.0 + np.exp(-np.asarray(weights, np.float32).ravel()))
        return np.asarray(boxes, np.float32).reshape(-1, 4), scores


def load_detector(
    name: str, min_score: float = 0.5, min_face: int = 48, full_scan_every: int = 1, full_scan_s: float | None = None
) -> FaceDetector:
    if name == "multiscale":
        return MultiScaleDetector(
            min_face=min_face, min_score=min_score, full_scan_every=full_scan_every, full_scan_s=full_scan_s
        )
    if name == "haar":
        return HaarDetector()
    if name in BLAZEFACE_MODELS:
        return BlazeFaceDetector(name, min_score=min_score)
    raise ValueError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
