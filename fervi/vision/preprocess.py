"""Turn detector boxes into classifier input, framed as the training faces are.

FER-2013 faces are square grayscale crops from forehead to chin. Placed in a frame and found by BlazeFace
(full range), a FER-2013 face gets a box 0.88 of its side, centred: so a square around the box centre,
enlarged by `margin` = 0.15 (1 / 0.88 - 1 = 0.136), reproduces the training framing. On 754 PublicTest
faces found that way, margins 0.1-0.25 gave the best accuracy and 0.4-0.5 clearly worse. The crop is
padded by replicating the border where it leaves the frame and resized to 48x48.
"""

from __future__ import annotations

import cv2
import numpy as np

from fervi.emotions import FACE_SIZE


def to_gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame


def square_crop_boxes(boxes: np.ndarray, margin: float) -> np.ndarray:
    """(N, 4) xywh -> (N, 4) integer squares x, y, side, side around each box centre."""
    side = np.maximum(boxes[:, 2], boxes[:, 3]) * (1.0 + margin)
    cx = boxes[:, 0] + boxes[:, 2] / 2
    cy = boxes[:, 1] + boxes[:, 3] / 2
    squares = np.stack([cx - side / 2, cy - side / 2, side, side], axis=1)
    return np.round(squares).astype(np.int64)


def face_crops(frame: np.ndarray, boxes: np.ndarray, margin: float = 0.15) -> np.ndarray:
    """(N, 48, 48) uint8 grayscale faces for (N, 4) xywh boxes in `frame` (BGR or gray)."""
    gray = to_gray(frame)
    height, width = gray.shape
    crops = np.zeros((len(boxes), FACE_SIZE, FACE_SIZE), np.uint8)
    for i, (x, y, side, _) in enumerate(square_crop_boxes(np.asarray(boxes, np.float32), margin)):
        side = max(int(side), 1)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, width), min(y + side, height)
        if x1 <= x0 or y1 <= y0:
            continue
        patch = gray[y0:y1, x0:x1]
        patch = cv2.copyMakeBorder(patch, y0 - y, (y + side) - y1, x0 - x, (x + side) - x1, cv2.BORDER_REPLICATE)
        interpolation = cv2.INTER_AREA if side > FACE_SIZE else cv2.INTER_LINEAR
        crops[i] = cv2.resize(patch, (FACE_SIZE, FACE_SIZE), interpolation=interpolation)
    return crops
