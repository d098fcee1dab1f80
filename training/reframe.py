"""Frame training faces as the workers frame live faces: each face is placed in a canvas, found by the
default detector and cropped with the workers' margin (`fervi.vision.preprocess.face_crops`).

FER-2013 and CK+ faces were cropped by their authors; live faces are cropped around the detector's box.
Passing every split through the same detector and crop gives the classifier, at training and at
evaluation, the framing it sees at inference, including the detector's per-face variation (boxes move
with pose and expression). A face the detector misses keeps its original crop, and is counted.
"""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np

from fervi.vision.preprocess import face_crops

from .datasets import FaceSet

log = logging.getLogger(__name__)

FACE_PX = 96  # the 48 px face enlarged, so the detector sees it well above its smallest size
BORDER_PX = 32  # replicated around it: the detector needs room around a face to frame it


def reframe_faces_at(images: np.ndarray, detector, margins) -> tuple[np.ndarray, np.ndarray]:
    """(N, 48, 48) faces -> (len(margins), N, 48, 48): each face found once, cropped at every margin; and
    which faces were found (the others keep their crop at every margin)."""
    out = np.repeat(images[None], len(margins), axis=0)
    found = np.zeros(len(images), bool)
    truth = np.array([BORDER_PX, BORDER_PX, FACE_PX, FACE_PX], np.float32)
    for i, image in enumerate(images):
        face = cv2.resize(image, (FACE_PX, FACE_PX), interpolation=cv2.INTER_CUBIC)
        canvas = cv2.copyMakeBorder(face, BORDER_PX, BORDER_PX, BORDER_PX, BORDER_PX, cv2.BORDER_REPLICATE)
        boxes, _ = detector.detect(cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR))
        if len(boxes) == 0:
            continue
        centres = boxes[:, :2] + boxes[:, 2:] / 2
        best = int(np.argmin(np.abs(centres - (truth[:2] + truth[2:] / 2)).sum(axis=1)))
        if np.abs(centres[best] - (truth[:2] + truth[2:] / 2)).max() > FACE_PX / 4:
            continue  # something else in the canvas, not this face
        for k, margin in enumerate(margins):
            out[k, i] = face_crops(canvas, boxes[best : best + 1], max(0.0, margin))[0]
        found[i] = True
    return out, found


def reframe_set(
    faces: FaceSet, detector, margin: float, name: str, extra_margins=()
) -> tuple[FaceSet, dict, dict[float, np.ndarray]]:
    """`faces` framed at `margin`, a report, and the same faces cropped at each of `extra_margins`."""
    started = time.perf_counter()
    margins = [margin, *extra_margins]
    crops, found = reframe_faces_at(faces.images, detector, margins)
    reframed = faces.with_images(crops[0])
    info = {
        "faces": len(faces),
        "found_by_detector": int(found.sum()),
        "seconds": round(time.perf_counter() - started, 1),
    }
    log.info(
        "event=reframed split=%s faces=%d found=%d seconds=%.1f",
        name,
        len(faces),
        info["found_by_detector"],
        info["seconds"],
    )
    return reframed, info, {round(m, 4): crops[k + 1] for k, m in enumerate(extra_margins)}
