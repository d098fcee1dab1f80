"""The face record: every face of one frame, columnar, from detection to CSV.

Each stage adds its columns to the same type, as `supervision`'s tracker adds `tracker_id` to
`Detections`: the detector fills `boxes` and `scores`, the classifier `probs` (`classified`), the tracker
`track_ids` and `smoothed` (`tracked`). A result entry, a tracks entry, the dashboard's JSON and the rows of
faces.csv are all this type written out (`to_list`, `fervi.offline.outputs`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NotRequired, TypedDict

import numpy as np
from numpy.typing import ArrayLike

from .emotions import EMOTIONS, NUM_EMOTIONS, leading_two, uncertain_margin


class ShownFace(TypedDict):
    """What a page shows of a face (`Faces.shown`)."""

    label: str
    score: float
    runner_up: str
    uncertain: bool


class FaceItem(ShownFace):
    """One face of an entry's JSON (`Faces.to_list`); `track` and `smooth` once tracked."""

    box: list[float]
    det: float
    probs: list[float]
    track: NotRequired[int]
    smooth: NotRequired[list[float]]


def _floats(values: ArrayLike) -> np.ndarray:
    """Probabilities as given: float32 from the models, float64 as read from JSON (the wire's precision)."""
    array = np.asarray(values)
    return array if array.dtype.kind == "f" else array.astype(np.float64)


class ProtocolError(ValueError):
    """An entry that does not follow the protocol; the message is the dead-letter reason."""


@dataclass
class Faces:
    """All faces of one frame: boxes (N, 4) xywh pixels, detector scores (N,); once classified, emotion
    probabilities (N, 7); once tracked, track ids (N,) and the track's smoothed probabilities (N, 7)."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    probs: np.ndarray | None = field(default_factory=lambda: np.zeros((0, NUM_EMOTIONS), np.float32))
    track_ids: np.ndarray | None = None
    smoothed: np.ndarray | None = None

    @classmethod
    def detected(cls, boxes: ArrayLike, scores: ArrayLike) -> Faces:
        """Faces as a detector found them (not yet classified)."""
        return cls(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32).reshape(-1), None)

    def classified(self, probs: ArrayLike) -> Faces:
        return replace(self, probs=_floats(probs).reshape(-1, NUM_EMOTIONS))

    def tracked(self, track_ids: ArrayLike, smoothed: ArrayLike) -> Faces:
        return replace(
            self,
            track_ids=np.asarray(track_ids, np.int64).reshape(-1),
            smoothed=_floats(smoothed).reshape(-1, NUM_EMOTIONS),
        )

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def is_tracked(self) -> bool:
        return self.track_ids is not None

    @property
    def tracked_ids(self) -> np.ndarray:
        """`track_ids`, for a reader of the tracker's output: ValueError before the faces were tracked."""
        if self.track_ids is None:
            raise ValueError("faces not tracked yet")
        return self.track_ids

    @property
    def classified_probs(self) -> np.ndarray:
        """`probs`, for a reader that needs the classifier's output: ValueError before it has run."""
        if self.probs is None:
            raise ValueError("faces not classified yet")
        return self.probs

    @property
    def label_probs(self) -> np.ndarray:
        """The probabilities a face's label comes from: the track's smoothed ones once tracked."""
        return self.smoothed if self.smoothed is not None else self.classified_probs

    @property
    def labels(self) -> list[str]:
        return [EMOTIONS[i] for i in self.label_probs.argmax(axis=1)] if len(self) else []

    @property
    def label_scores(self) -> np.ndarray:
        return self.label_probs.max(axis=1) if len(self) else np.zeros(0, np.float32)

    def largest(self) -> int:
        """Index of the face with the largest box (-1 when none)."""
        return int(np.argmax(self.boxes[:, 2] * self.boxes[:, 3])) if len(self) else -1

    def shown(self) -> list[ShownFace]:
        """What a page shows of each face: label, score, runner_up (the second emotion) and uncertain (the
        label leads it by less than FERVI_UNCERTAIN_MARGIN), from `label_probs`."""
        margin = uncertain_margin()
        out: list[ShownFace] = []
        for probs in self.label_probs if len(self) else []:
            first, second, lead = leading_two(probs)
            out.append(
                {
                    "label": EMOTIONS[first],
                    "score": round(float(probs[first]), 4),
                    "runner_up": EMOTIONS[second],
                    "uncertain": bool(lead < margin),
                }
            )
        return out

    def to_list(self) -> list[FaceItem]:
        """One dict per face (the entries' JSON): box, det, probs and what is shown (`shown`: label, score,
        runner_up, uncertain); tracked: track and smooth (the probabilities its label comes from)."""
        out: list[FaceItem] = []
        for i, shown in enumerate(self.shown()):
            face: FaceItem = {
                "box": [round(float(v), 1) for v in self.boxes[i]],
                "det": round(float(self.scores[i]), 4),
                "label": shown["label"],
                "score": shown["score"],
                "runner_up": shown["runner_up"],
                "uncertain": shown["uncertain"],
                "probs": [round(float(v), 5) for v in self.classified_probs[i]],
            }
            if self.track_ids is not None:
                face["track"] = int(self.track_ids[i])
                face["smooth"] = [round(float(v), 5) for v in self.label_probs[i]]
            out.append(face)
        return out

    @classmethod
    def from_list(cls, items: Sequence[Mapping[str, Any]]) -> Faces:
        if not items:
            return cls()
        try:
            boxes = np.array([item["box"] for item in items], np.float32).reshape(-1, 4)
            scores = np.array([item.get("det", 1.0) for item in items], np.float32)
            probs = np.array([item["probs"] for item in items], np.float64).reshape(-1, NUM_EMOTIONS)
            faces = cls(boxes, scores, probs)
            if all("track" in item for item in items):
                faces = faces.tracked(
                    [int(item["track"]) for item in items], [item.get("smooth", item["probs"]) for item in items]
                )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ProtocolError(f"malformed faces: {err}") from None
        return faces
