"""Metrics for the emotion classifier: accuracy, macro-F1, per-class precision/recall/F1, confusion, faces/s."""

from __future__ import annotations

import time

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from fervi.emotions import EMOTIONS


def classification_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict:
    y_pred = probs.argmax(axis=1)
    labels = list(range(len(EMOTIONS)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
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


def timed_predict(classifier, faces: np.ndarray) -> tuple[np.ndarray, float]:
    """Probabilities and faces/s (wall clock, this process)."""
    started = time.perf_counter()
    probs = classifier.predict(faces)
    seconds = time.perf_counter() - started
    return probs, (len(faces) / seconds if seconds > 0 else 0.0)
