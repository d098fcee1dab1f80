"""Calibrated probabilities: a temperature and one bias per emotion fitted on held-out faces, folded into the
model's last layer.

A classifier's softmax is often over- or under-confident; dividing its logits by a temperature T fitted on
held-out faces (Guo et al., "On Calibration of Modern Neural Networks", 2017) makes "70%" mean right about
70% of the time, without changing any label. A model trained on the crowd's vote distributions also leans to
the emotion that collects votes on many faces (neutral): one bias per emotion added to the logits, fitted
with T by maximum likelihood (bias-corrected temperature scaling, Alexandari et al., ICML 2020), corrects
that prior, which moves labels where the model hesitated. softmax(z / T + b) is p ** (1 / T) x e ** b
renormalised, so both are fitted on probabilities, and folding them into the last Dense layer's weights gives
the workers, the tracker's smoothing, the game and the summaries calibrated probabilities at no cost.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

ECE_BINS = 15
EPS = 1e-12


def apply_temperature(probs: np.ndarray, temperature: float, bias: np.ndarray | None = None) -> np.ndarray:
    """softmax(log(p) / T + b): the probabilities a model with logits divided by T and shifted by b gives."""
    logits = np.log(np.clip(np.asarray(probs, np.float64), EPS, 1.0)) / temperature
    if bias is not None:
        logits = logits + np.asarray(bias, np.float64)
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


def fit_bias_and_temperature(probs: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """T and one bias per class (the last class's held at 0) that minimise the NLL of `labels` under
    `apply_temperature(probs, T, b)`: bias-corrected temperature scaling."""
    from scipy.optimize import minimize

    classes = probs.shape[1]

    def loss(x: np.ndarray) -> float:
        return nll(apply_temperature(probs, float(np.exp(x[0])), np.r_[x[1:], 0.0]), labels)

    result = minimize(
        loss, np.zeros(classes), method="L-BFGS-B", bounds=[(np.log(0.2), np.log(5.0))] + [(-5.0, 5.0)] * (classes - 1)
    )
    return float(np.exp(result.x[0])), np.r_[result.x[1:], 0.0]


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


def cross_fitted_ece(
    probs: np.ndarray, labels: np.ndarray, seed: int = 0, bias: bool = False, right: np.ndarray | None = None
) -> dict:
    """ECE (and accuracy) measured on faces the calibration was not fitted on: fitted on one half of the
    faces (T, and with `bias` the per-class biases), measured on the other, both ways; the mean of the two and
    each half's T. `right` (N, classes) bool: which predictions count as right (default: the label's)."""
    order = np.random.default_rng(seed).permutation(len(labels))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    right = np.eye(probs.shape[1], dtype=bool)[labels] if right is None else right
    eces, accuracies, temps = [], [], []
    for fit, test in (halves, halves[::-1]):
        if bias:
            t, b = fit_bias_and_temperature(probs[fit], labels[fit])
        else:
            t, b = fit_temperature(probs[fit], labels[fit]), None
        calibrated = apply_temperature(probs[test], t, b)
        hit = right[test][np.arange(len(test)), calibrated.argmax(1)]
        eces.append(reliability(calibrated, hit)["ece"])
        accuracies.append(round(float(hit.mean()), 4))
        temps.append(round(t, 4))
    return {
        "ece": round(float(np.mean(eces)), 4),
        "per_half": eces,
        "accuracy_per_half": accuracies,
        "temperatures": temps,
    }


def fold_temperature(model, temperature: float, bias: np.ndarray | None = None, layer: str = "emotion") -> None:
    """Make `model`'s softmax layer give softmax(z / T + b), in place (its kernel and bias)."""
    dense = model.get_layer(layer)
    kernel, offset = dense.get_weights()
    shift = 0.0 if bias is None else np.asarray(bias, offset.dtype)
    dense.set_weights([kernel / temperature, offset / temperature + shift])
