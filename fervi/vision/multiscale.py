"""The default face detector: BlazeFace short range over an image pyramid, each candidate verified.

Why this shape (measured with `bench/face_distances.py`, numbers in the README):
- BlazeFace short range is fully convolutional: it runs on any input size that is a multiple of 16 and
  finds faces from about 40 px to its whole 128 px input. So one pass over the frame scaled to
  40 / `min_face` finds every face from `min_face` up to about three times that; each further level,
  a third the size, covers the next range, until the frame is a close-up.
- The full-range model misses faces that fill the image and most faces under a tenth of the frame;
  on tiles it still missed a fifth of the pasted faces at every width.
- A pass at fine scale fires on textures (coins, gravel, stars). Each candidate is looked at again
  on a crop of twice its size, where a face is in the short-range model's favourite framing: it is kept
  when that second look is confident, or fairly confident and one independent detector (BlazeFace full
  range on the same crop, or OpenCV's Haar cascade) agrees.

Boxes are scaled to the full-range model's framing of a face (the classifier crop in `preprocess` is
calibrated to it), so the crop margin means the same whatever found the face.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from .detector import BlazeFaceDetector, _model_file, clip_boxes, decode_boxes, weighted_nms
from .tflite import load_interpreter

FACE_IN = 40  # px: the short-range model finds a face this wide in its input reliably
LEVEL_STEP = 3.0  # each pyramid level is a third of the one before
COARSEST = 192  # px: levels stop once the frame's long side is this small; a face filling it is found
CLOSE_UP = 128  # px: the model's own input size, where a face filling the image is found best
CONTEXT = 2.0  # the verification crop is this many times the candidate's side
SURE = 0.85  # second-look score that keeps a face on its own
LIKELY = 0.7  # second-look score that keeps a face when another detector agrees
# On FER-2013 faces pasted into photos (bench/distance_scenes.py), the median box side is 0.835 of the face
# image's side for short range and 0.86 for full range: boxes are scaled to the full-range framing the crop
# margin was tuned for (preprocess.py).
BOX_SCALE = 0.86 / 0.835


def pyramid_scales(width: int, height: int, min_face: int) -> list[float]:
    """Scales of the frame at which short range runs: the finest finds `min_face`, the last a close-up."""
    longest = max(width, height)
    scale = min(1.0, FACE_IN / max(1, min_face))
    scales = [scale]
    while longest * scale > COARSEST:
        scale /= LEVEL_STEP
        scales.append(scale)
    if longest * scale < CLOSE_UP * 0.75:  # a small image: also look at it enlarged to the model's size
        scales.append(CLOSE_UP / longest)
    return scales


class _AnyShapeShortRange:
    """BlazeFace short range at any input size (multiples of 16), one interpreter per size seen."""

    strides, anchors_per_cell = (8, 16), (2, 6)

    def __init__(self, threads: int = 1):
        self.model = _model_file("face_detection_short_range.tflite").read_bytes()
        self.threads = threads
        self._by_shape: dict[tuple[int, int], tuple] = {}

    def _prepared(self, height: int, width: int) -> tuple:
        key = (height, width)
        if key not in self._by_shape:
            interpreter = load_interpreter(self.model, self.threads)
            index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(index, [1, height, width, 3], strict=False)
            interpreter.allocate_tensors()
            outputs = sorted(interpreter.get_output_details(), key=lambda d: d["shape"][-1])
            anchors = []
            for stride, repeats in zip(self.strides, self.anchors_per_cell):
                ys, xs = np.meshgrid((np.arange(height // stride) + 0.5) * stride,
                                     (np.arange(width // stride) + 0.5) * stride, indexing="ij")
                anchors.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], 1), repeats, 0))
            self._by_shape[key] = (interpreter, index, outputs[0]["index"], outputs[-1]["index"],
                                   np.concatenate(anchors).astype(np.float32))
        return self._by_shape[key]

    def detect(self, image: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray]:
        """xywh boxes in `image` pixels and scores, before NMS."""
        h, w = image.shape[:2]
        height, width = -(-h // 16) * 16, -(-w // 16) * 16
        interpreter, index, score_index, box_index, anchors = self._prepared(height, width)
        padded = cv2.copyMakeBorder(image, 0, height - h, 0, width - w, cv2.BORDER_CONSTANT)
        rgb = cv2.cvtColor(padded, cv2.COLOR_BGR2RGB)
        interpreter.set_tensor(index, (rgb.astype(np.float32) * (1 / 127.5) - 1.0)[None])
        interpreter.invoke()
        logits = interpreter.get_tensor(score_index).reshape(-1)
        hit = logits >= math.log(min_score / (1 - min_score))
        if not hit.any():
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        boxes = decode_boxes(interpreter.get_tensor(box_index).reshape(len(anchors), -1)[hit], anchors[hit])
        return boxes, (1.0 / (1.0 + np.exp(-logits[hit]))).astype(np.float32)


def context_crop(frame: np.ndarray, box: np.ndarray, factor: float) -> np.ndarray:
    """A square `factor` times the box's side around its centre; outside the frame is black."""
    x, y, w, h = box
    side = max(1, int(round(max(w, h) * factor)))
    x0, y0 = int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2))
    height, width = frame.shape[:2]
    patch = frame[max(0, y0) : min(height, y0 + side), max(0, x0) : min(width, x0 + side)]
    return cv2.copyMakeBorder(patch, max(0, -y0), max(0, y0 + side - height), max(0, -x0),
                              max(0, x0 + side - width), cv2.BORDER_CONSTANT)


def _centred_score(boxes: np.ndarray, scores: np.ndarray, side: int) -> float:
    """Best score among detections centred near the middle of a `side` square crop."""
    if len(boxes) == 0:
        return 0.0
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    near = np.abs(centres - side / 2).max(axis=1) < side / 4
    return float(scores[near].max()) if near.any() else 0.0


def drop_nested(kept: list[tuple[np.ndarray, float]], inside: float = 0.5) -> list[tuple[np.ndarray, float]]:
    """Drop a box that lies mostly inside a larger kept one: a fine level sometimes finds part of a big face
    (eyes to chin) as a face of its own, and NMS by IoU keeps both."""
    by_size = sorted(kept, key=lambda item: -item[0][2] * item[0][3])
    out: list[tuple[np.ndarray, float]] = []
    for box, score in by_size:
        x, y, w, h = box
        covered = any(
            max(0.0, min(x + w, bx + bw) - max(x, bx)) * max(0.0, min(y + h, by + bh) - max(y, by)) >= inside * w * h
            for (bx, by, bw, bh), _ in out
        )
        if not covered:
            out.append((box, score))
    return out


class MultiScaleDetector:
    name = "multiscale"

    def __init__(self, min_face: int = 48, min_score: float = 0.5, iou: float = 0.3, threads: int = 1):
        self.min_face = min_face
        self.min_score = min_score
        self.iou = iou
        self.short = _AnyShapeShortRange(threads)
        self.second_look = BlazeFaceDetector("blazeface", min_score=0.3, threads=threads)
        self.full = BlazeFaceDetector("blazeface_full", min_score=0.3, threads=threads)
        cascades = getattr(getattr(cv2, "data", None), "haarcascades", None)
        self.haar = cv2.CascadeClassifier(str(Path(cascades) / "haarcascade_frontalface_default.xml")) \
            if cascades else None

    def candidates(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        height, width = frame.shape[:2]
        found_boxes, found_scores = [], []
        for scale in pyramid_scales(width, height, self.min_face):
            size = (max(16, round(width * scale)), max(16, round(height * scale)))
            shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            image = frame if scale == 1.0 else cv2.resize(frame, size, interpolation=shrink)
            boxes, scores = self.short.detect(image, self.min_score)
            found_boxes.append(boxes / np.float32(scale))
            found_scores.append(scores)
        boxes, scores = np.concatenate(found_boxes), np.concatenate(found_scores)
        if len(boxes) == 0:
            return boxes, scores
        return weighted_nms(boxes, scores, self.iou)

    def _haar_agrees(self, crop: np.ndarray) -> bool:
        if self.haar is None:
            return False
        gray = cv2.cvtColor(cv2.resize(crop, (96, 96), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
        return len(self.haar.detectMultiScale(gray, 1.1, 3, minSize=(40, 40))) > 0

    def verify(self, frame: np.ndarray, box: np.ndarray) -> float:
        """The second look's score, or 0 when the candidate is not kept."""
        crop = context_crop(frame, box, CONTEXT)
        score = _centred_score(*self.second_look.detect(crop), crop.shape[0])
        if score >= SURE:
            return score
        if score >= LIKELY and (
            _centred_score(*self.full.detect(crop), crop.shape[0]) > 0 or self._haar_agrees(context_crop(frame, box, 1.6))
        ):
            return score
        return 0.0

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        boxes, _ = self.candidates(frame)
        kept = [(box, score) for box in boxes if (score := self.verify(frame, box)) > 0]
        kept = drop_nested(kept)
        if not kept:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        boxes = np.array([b for b, _ in kept], np.float32)
        centres = boxes[:, :2] + boxes[:, 2:] / 2
        sides = boxes[:, 2:] * BOX_SCALE
        boxes = np.concatenate([centres - sides / 2, sides], axis=1)
        return clip_boxes(boxes, frame.shape[1], frame.shape[0]), np.array([s for _, s in kept], np.float32)
