"""The seven emotions FERVI predicts, in the label order of FER-2013 (0 angry ... 6 neutral)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where it is used: the emotion names alone need none
    from numpy.typing import ArrayLike

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_EMOTIONS = len(EMOTIONS)
FACE_SIZE = 48  # classifier input: 48x48 grayscale

# A face whose top emotion leads the next by less than this (in calibrated probability) is shown as uncertain,
# with its two leading emotions ("neutral / sad"): a coin toss is not a label. Measured on PublicTest with the
# crowd's votes (models/MODEL_CARD.md, "Uncertain"); FERVI_UNCERTAIN_MARGIN overrides it.
UNCERTAIN_MARGIN = 0.2


def uncertain_margin() -> float:
    """The margin in force: FERVI_UNCERTAIN_MARGIN (checked with the other settings when a process starts),
    else `UNCERTAIN_MARGIN`. Read here so that every writer of a face's JSON applies the same rule."""
    import os

    try:
        return min(1.0, max(0.0, float(os.environ.get("FERVI_UNCERTAIN_MARGIN", UNCERTAIN_MARGIN))))
    except ValueError:
        return UNCERTAIN_MARGIN


def leading_two(probs: ArrayLike) -> tuple[int, int, float]:
    """The indices of the two most probable emotions and the margin of the first over the second."""
    import numpy as np

    probs = np.asarray(probs, np.float64).reshape(-1)
    second, first = np.argsort(probs, kind="stable")[-2:]
    return int(first), int(second), float(probs[first] - probs[second])
