"""The model card's figures as PNGs: training curves, confusion matrix, class counts, misclassified faces."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from fervi.emotions import EMOTIONS

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the Agg backend: no display on servers


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_curves(history_csv: Path, path: Path) -> Path:
    """Accuracy and loss per epoch: whichever of the Keras (train and validation) or PyTorch-run columns exist."""
    history = pd.read_csv(history_csv).drop_duplicates("epoch", keep="last")
    epochs = history["epoch"] + 1
    fig, (acc, loss) = plt.subplots(1, 2, figsize=(10, 4))
    curves = {
        acc: [
            ("accuracy", "train (augmented)"),
            ("val_accuracy", "validation"),
            ("val_accuracy_flip_averaged", "validation, flip-averaged"),
        ],
        loss: [("loss", "train (augmented)"), ("val_loss", "validation")],
    }
    for ax, columns in curves.items():
        for column, label in columns:
            if column in history:
                ax.plot(epochs, history[column], label=label)
        ax.set(title="Accuracy" if ax is acc else "Loss", xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def confusion_matrix_png(confusion: list[list[int]], path: Path, title: str) -> Path:
    counts = np.array(confusion, dtype=float)
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(EMOTIONS)):
        for j in range(len(EMOTIONS)):
            ax.text(
                j,
                i,
                f"{rows[i, j]:.2f}\n{int(counts[i, j])}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rows[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45)
    ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _save(fig, path)


def class_counts_png(before: dict[str, int], after: dict[str, int], path: Path) -> Path:
    x = np.arange(len(EMOTIONS))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(x - 0.2, [before[e] for e in EMOTIONS], 0.4, label="training split")
    ax.bar(x + 0.2, [after[e] for e in EMOTIONS], 0.4, label="after over-sampling")
    ax.set_xticks(x, EMOTIONS)
    ax.set(ylabel="faces", title="Training faces per class (over-sampling touches the training split only)")
    ax.legend()
    return _save(fig, path)


def misclassified_grid(
    images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, path: Path, count: int = 36, seed: int = 0
) -> Path:
    wrong = np.flatnonzero(y_true != y_pred)
    picks = np.random.default_rng(seed).choice(wrong, size=min(count, len(wrong)), replace=False)
    side = int(np.ceil(np.sqrt(max(len(picks), 1))))
    fig, axes = plt.subplots(side, side, figsize=(side * 1.5, side * 1.7))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, i in zip(np.ravel(axes), picks, strict=False):
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{EMOTIONS[y_true[i]]}\n→ {EMOTIONS[y_pred[i]]}", fontsize=7)
    fig.suptitle("Misclassified validation faces (true → predicted)", fontsize=9)
    return _save(fig, path)


def reliability_png(table: dict, path: Path, title: str) -> Path:
    """Reliability diagram: each confidence bin's share correct against its mean confidence, with bin sizes."""
    bins = table["bins"]
    conf = [b["confidence"] for b in bins]
    acc = [b["accuracy"] for b in bins]
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    ax.plot(conf, acc, "o-", label=f"model (ECE {table['ece']:.3f})")
    ax.set(ylabel="share agreeing with the crowd's majority", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    counts.bar(
        [(b["low"] + b["high"]) / 2 for b in bins],
        [b["n"] for b in bins],
        width=[b["high"] - b["low"] for b in bins],
        color="tab:blue",
        alpha=0.6,
    )
    counts.set(xlabel="confidence of the top emotion", ylabel="faces")
    return _save(fig, path)
