"""Detection on keyframes only, for offline video: the boxes of the frames between two keyframes are
interpolated, since a recorded video's next keyframe is known before the frames before it are classified.

Every analysed frame is still classified at its own face crops; only the detector, the costlier half of a
frame's work, is skipped. A face matched between the two keyframes (by IoU, as the tracker matches) moves
linearly; a face found on one side only is kept for the half of the gap nearer its keyframe.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from fervi.faces import Faces
from fervi.tracking import similarity_matrix

KEYFRAME_INTERVAL_S = 0.1  # the detector runs at least 10 times per second of video
MIN_SIMILARITY = 0.3


def detect_every_for(fps: float, every: int, interval_s: float = KEYFRAME_INTERVAL_S) -> int:
    """Analysed frames per keyframe so that keyframes are at most `interval_s` of video apart (at least 1)."""
    return max(1, int(interval_s * fps / every + 1e-9))


def interpolate(before: Faces, after: Faces | None, t: float) -> Faces:
    """Boxes at fraction `t` (0 < t < 1) of the way from keyframe `before` to keyframe `after`.

    With no later keyframe (the end of the video) the earlier boxes hold.
    """
    boxes_a, scores_a = before.boxes, before.scores
    if after is None:
        return Faces.detected(boxes_a.copy(), scores_a.copy())
    boxes_b, scores_b = after.boxes, after.scores
    pairs: list[tuple[int, int]] = []
    if len(boxes_a) and len(boxes_b):
        similarity = similarity_matrix(boxes_a, boxes_b)
        rows, cols = linear_sum_assignment(-similarity)
        pairs = [(r, c) for r, c in zip(rows, cols, strict=True) if similarity[r, c] >= MIN_SIMILARITY]
    matched_a = {r for r, _ in pairs}
    matched_b = {c for _, c in pairs}
    boxes = [boxes_a[r] * (1 - t) + boxes_b[c] * t for r, c in pairs]
    scores = [scores_a[r] * (1 - t) + scores_b[c] * t for r, c in pairs]
    # a face found on one side only stays for the half of the gap nearer its keyframe
    near_boxes, near_scores, matched = (boxes_a, scores_a, matched_a) if t < 0.5 else (boxes_b, scores_b, matched_b)
    alone = [i for i in range(len(near_boxes)) if i not in matched]
    boxes += [near_boxes[i] for i in alone]
    scores += [near_scores[i] for i in alone]
    return Faces.detected(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32))
