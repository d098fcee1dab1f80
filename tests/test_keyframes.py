"""Offline analysis detects on keyframes and interpolates the boxes between: the rows match per-frame detection."""

from __future__ import annotations

import numpy as np
import pytest
from fervi.offline.jobs import analyze_segment

from fervi.demo import write_video
from fervi.faces import Faces
from fervi.tracking import iou_matrix
from fervi.vision.keyframes import detect_every_for, interpolate


def _dets(*boxes):
    return Faces.detected(np.array(boxes, np.float32).reshape(-1, 4), np.full(len(boxes), 0.9, np.float32))


def test_matched_faces_move_linearly_and_unmatched_ones_stay_on_their_half():
    before = _dets([0, 0, 100, 100], [400, 0, 100, 100])  # the second face leaves
    after = _dets([30, 10, 100, 100], [0, 300, 80, 80])  # a new face enters
    middle = interpolate(before, after, 1 / 3)
    boxes, scores = middle.boxes, middle.scores
    assert len(boxes) == 2 and np.allclose(boxes[0], [10, 10 / 3, 100, 100])
    assert np.allclose(boxes[1], [400, 0, 100, 100]) and np.allclose(scores, 0.9)
    boxes = interpolate(before, after, 2 / 3).boxes
    assert np.allclose(boxes[0], [20, 20 / 3, 100, 100]) and np.allclose(boxes[1], [0, 300, 80, 80])
    assert np.array_equal(interpolate(before, None, 0.5).boxes, before.boxes)  # the end of a video holds the boxes
    assert interpolate(_dets(), _dets(), 0.5).boxes.shape == (0, 4)


@pytest.mark.parametrize("fps, every, expected", [(30, 1, 3), (30, 2, 1), (60, 1, 6), (12, 1, 1), (25, 1, 2)])
def test_keyframes_are_at_most_a_tenth_of_a_second_apart(fps, every, expected):
    assert detect_every_for(fps, every) == expected


def test_interpolated_rows_match_per_frame_detection(tmp_path):
    """Two moving faces, 91 frames, in two segments: with keyframes every 3rd frame the faces, boxes, class
    probabilities and decisive labels are those that detecting on every frame gives."""
    video = str(write_video(tmp_path / "move.mp4", 91, 30.0, 640, 480, faces=2))
    runs = {}
    for detect_every in (1, 3):
        for start, stop in ((0, 50), (50, None)):
            analyze_segment(video, start, stop, 1, str(tmp_path / f"{detect_every}-{start}.npz"), detect_every)
        parts = [np.load(tmp_path / f"{detect_every}-{start}.npz") for start in (0, 50)]
        runs[detect_every] = {k: np.concatenate([p[k] for p in parts]) for k in ("frames", "counts", "boxes", "probs")}
    full, keyed = runs[1], runs[3]
    assert full["frames"].tolist() == keyed["frames"].tolist() == list(range(91))
    assert full["counts"].tolist() == keyed["counts"].tolist() == [2] * 91
    overlaps, same_label, distance = [], [], []
    for i in range(0, len(full["boxes"]), 2):
        iou = iou_matrix(full["boxes"][i : i + 2], keyed["boxes"][i : i + 2])
        match = iou.argmax(1)
        overlaps += iou.max(1).tolist()
        per_frame, interpolated = full["probs"][i : i + 2], keyed["probs"][i + match]
        # total variation between the two rows' probabilities: what the interpolated box changes in the result
        distance += (np.abs(per_frame - interpolated).sum(axis=1) / 2).tolist()
        # labels the per-frame row gives decisively (top class 0.1 above the next); a face whose two top classes
        # are a few hundredths apart changes label with any one-pixel change of its box, per-frame detection too
        top2 = np.sort(per_frame, axis=1)[:, -2:]
        decisive = top2[:, 1] - top2[:, 0] >= 0.1
        same_label += (per_frame.argmax(1) == interpolated.argmax(1))[decisive].tolist()
    assert min(overlaps) > 0.8, min(overlaps)
    assert np.mean(distance) < 0.1, np.mean(distance)
    assert len(same_label) >= 91 and np.mean(same_label) >= 0.95, (len(same_label), np.mean(same_label))
