"""Calibrated probabilities: one temperature fitted on held-out faces, folded into the model's last layer.

A classifier's softmax is often over- or under-confident; dividing its logits by a temperature T fitted on
held-out faces (Guo et al., "On Calibration of Modern Neural Networks", 2017) makes "70%" mean right about
70% of the time, without changing any label. softmax(z / T) is the same as p ** (1 / T) renormalised, so T is
fitted on probabilities, and folding 1 / T into the last Dense layer's weights gives the workers, the
tracker's smoothing, the game and the summaries calibrated probabilities at no cost.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

ECE_BINS = 15
EPS = 1e-12


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T): the probabilities a model with logits divided by T gives."""
    logits = np.log(np.clip(np.asarray(probs, np.float64), EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of label ids."""
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], EPS, 1.0)).mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The T (0.2 .. 5) that minimises the NLL of `labels` (ids) under `apply_temperature(probs, T)`."""
    result = minimize_scalar(
        lambda log_t: nll(apply_temperature(probs, float(np.exp(log_t))), labels),
        bounds=(np.log(0.2), np.log(5.0)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def reliability(probs: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Expected calibration error of the top label and its reliability table: faces binned by confidence
    (equal widths), each bin's mean confidence against its share correct; ECE weighs the gaps by bin size.
    `correct` may be fractional (e.g. the share of the crowd that chose the predicted emotion)."""
    confidence = np.asarray(probs).max(axis=1)
    correct = np.asarray(correct, np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        conf, acc = float(confidence[mask].mean()), float(correct[mask].mean())
        ece += mask.mean() * abs(conf - acc)
        table.append(
            {
                "low": round(float(edges[b]), 4),
                "high": round(float(edges[b + 1]), 4),
                "n": int(mask.sum()),
                "confidence": round(conf, 4),
                "accuracy": round(acc, 4),
            }
        )
    return {"ece": round(float(ece), 4), "bins": table}


def cross_fitted_ece(probs: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """ECE measured on faces the temperature was not fitted on: T fitted on one half of the faces, ECE
    measured on the other, both ways; the mean of the two and each half's T."""
    order = np.random.default_rng(seed).permutation(len(labels))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    eces, temps = [], []
    for fit, test in (halves, halves[::-1]):
        t = fit_temperature(probs[fit], labels[fit])
        calibrated = apply_temperature(probs[test], t)
        eces.append(reliability(calibrated, calibrated.argmax(1) == labels[test])["ece"])
        temps.append(round(t, 4))
    return {"ece": round(float(np.mean(eces)), 4), "per_half": eces, "temperatures": temps}


def fold_temperature(model, temperature: float, layer: str = "emotion") -> None:
    """Divide the logits of `model`'s softmax layer by `temperature`, in place (its kernel and bias)."""
    dense = model.get_layer(layer)
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel / temperature, bias / temperature])
