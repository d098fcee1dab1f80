"""Metrics for the emotion classifier: accuracy, macro-F1, per-class precision/recall/F1, confusion, faces/s."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from fervi.emotions import EMOTIONS


def classification_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict:
    y_pred = probs.argmax(axis=1)
    labels = list(range(len(EMOTIONS)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    present = support > 0
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(EMOTIONS)
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


PROGRESS_CHUNK = 512  # faces a progress step classifies


def timed_predict(
    classifier, faces: np.ndarray, progress: str | None = None, make_bar: Callable[..., Any] | None = None
) -> tuple[np.ndarray, float]:
    """Probabilities and faces/s (wall clock, this process). `progress`: a progress bar with this title on a
    terminal (stderr), in steps of PROGRESS_CHUNK faces; `make_bar`: the tqdm-like bar to use (keywords)."""
    from tqdm import tqdm

    started = time.perf_counter()
    parts = []
    options: dict[str, Any] = {"total": len(faces), "unit": "face", "desc": progress}
    with make_bar(**options) if make_bar else tqdm(disable=None if progress else True, **options) as bar:
        for start in range(0, len(faces), PROGRESS_CHUNK):
            parts.append(classifier.predict(faces[start : start + PROGRESS_CHUNK]))
            bar.update(len(parts[-1]))
    seconds = time.perf_counter() - started
    probs = np.concatenate(parts) if parts else classifier.predict(faces)
    return probs, (len(faces) / seconds if seconds > 0 else 0.0)


def crowd_metrics(probs: np.ndarray, faces) -> dict:
    """How a model agrees with people, on faces loaded with FER+ votes (`FaceSet.votes`):
    - accuracy against the crowd's majority (a face where people tied counts the model right on any of the
      tied emotions; `majority_accuracy_strict` leaves those faces out);
    - accuracy against the dataset's original single label, on the same faces;
    - accuracy as the FER+ paper scored its models (`CrowdVotes.paper_majority`: single votes dropped, faces
      without an emotion over half the rest left out), for comparison with published figures;
    - the mean probability the model gives to the crowd's votes (sum over emotions of p x vote share);
    - each emotion's share of predictions against its share of the crowd's majorities;
    - expected calibration error of the top label against the crowd's majority (and against the share of
      people who chose it), with the reliability table;
    - the confusion matrix against the crowd's majority (rows: crowd, columns: model)."""
    from .calibration import reliability

    crowd = faces.crowd
    if crowd is None:
        raise ValueError("these faces were loaded without crowd votes")
    predicted = probs.argmax(axis=1)
    top = crowd.top_set()
    tied = top.sum(axis=1) > 1
    rows = np.arange(len(predicted))
    hit = top[rows, predicted]
    shares = crowd.distributions()
    n = len(predicted)
    paper_label = crowd.paper_majority()
    paper = paper_label >= 0
    predicted_share = np.bincount(predicted, minlength=len(EMOTIONS)) / max(n, 1)
    crowd_share = np.bincount(faces.labels, minlength=len(EMOTIONS)) / max(n, 1)
    return {
        "n": int(n),
        "majority_accuracy": float(hit.mean()) if n else 0.0,
        "majority_accuracy_strict": float((predicted == faces.labels)[~tied].mean()) if (~tied).any() else 0.0,
        "tied_faces": int(tied.sum()),
        "original_label_accuracy": float((predicted == faces.original).mean()) if n else 0.0,
        "paper_protocol": {
            "n": int(paper.sum()),
            "accuracy": float((predicted == paper_label)[paper].mean()) if paper.any() else 0.0,
        },
        "mean_probability_of_votes": float((probs * shares).sum(axis=1).mean()) if n else 0.0,
        "shares": {
            name: {"predicted": round(float(predicted_share[i]), 4), "crowd": round(float(crowd_share[i]), 4)}
            for i, name in enumerate(EMOTIONS)
        },
        "calibration_vs_majority": reliability(probs, hit),
        "calibration_vs_vote_share": reliability(probs, shares[rows, predicted]),
        "per_class_vs_crowd": classification_metrics(faces.labels, probs)["per_class"],
        "confusion_vs_crowd": confusion_matrix(faces.labels, predicted, labels=list(range(len(EMOTIONS)))).tolist(),
    }
