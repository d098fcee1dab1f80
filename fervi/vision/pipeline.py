"""The face pipeline's pure core: images in, `Faces` out. Detect per image, classify all faces in one call.

Workers, `fervi predict` and offline analysis all call this; none of them repeats detection or cropping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from fervi.faces import Faces
from fervi.settings import Settings

from .classifier import EmotionClassifier, load_classifier
from .detector import FaceDetector, load_detector
from .pool import DetectorPool
from .preprocess import face_crops


@dataclass
class Timing:
    detect_ms: float = 0.0
    classify_ms: float = 0.0
    faces: int = 0


class FacePipeline:
    def __init__(self, detector: FaceDetector, classifier: EmotionClassifier, margin: float = 0.15):
        self.detector = detector
        self.classifier = classifier
        self.margin = margin

    @classmethod
    def from_settings(cls, settings: Settings) -> FacePipeline:
        def make() -> FaceDetector:
            return load_detector(
                settings.detector,
                settings.detector_min_score,
                settings.detector_min_face,
                settings.detector_full_scan_every,
                settings.detector_full_scan_s,
            )

        detector = make() if settings.detect_threads == 1 else DetectorPool(make, settings.detect_threads)
        return cls(
            detector,
            load_classifier(settings.models, settings.device, settings.flip_average, settings.classifier_batch),
            settings.face_margin,
        )

    def analyze(
        self, images: list[np.ndarray], timing: Timing | None = None, streams: list[tuple[Any, ...]] | None = None
    ) -> list[Faces]:
        """One `Faces` per image; all faces of all images go through the classifier together. `streams`
        gives each image's camera, position in it (seq) and optionally its time on the camera's clock
        (capture time), so a detector may follow a camera's faces."""
        started = time.perf_counter()
        detections = self.detect(images, streams)
        if timing is not None:
            timing.detect_ms += (time.perf_counter() - started) * 1000
        return self.classify(images, detections, timing)

    def detect(self, images: list[np.ndarray], streams: list[tuple[Any, ...]] | None = None) -> list[Faces]:
        """One unclassified `Faces` (boxes, scores) per image."""
        if isinstance(self.detector, DetectorPool):
            found = self.detector.detect_many(images, streams)
        elif streams is None:
            found = [self.detector.detect(image) for image in images]
        else:
            found = [self.detector.detect(image, *stream) for image, stream in zip(images, streams, strict=True)]
        return [Faces.detected(boxes, scores) for boxes, scores in found]

    def classify(self, images: list[np.ndarray], detections: list[Faces], timing: Timing | None = None) -> list[Faces]:
        """Classify the faces at the given boxes (detected, or interpolated between keyframes) in one call."""
        started = time.perf_counter()
        crops = [face_crops(image, faces.boxes, self.margin) for image, faces in zip(images, detections, strict=True)]
        counts = [len(c) for c in crops]
        probs = self.classifier.predict(np.concatenate(crops)) if sum(counts) else np.zeros((0, 7), np.float32)
        if timing is not None:
            timing.classify_ms += (time.perf_counter() - started) * 1000
            timing.faces += sum(counts)
        out, start = [], 0
        for faces, n in zip(detections, counts, strict=True):
            out.append(faces.classified(probs[start : start + n]))
            start += n
        return out
