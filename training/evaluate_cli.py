"""`fervi evaluate`: measure a model (the shipped TFLite one by default) on a dataset's rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fervi.vision.classifier import MODEL_TFLITE, KerasClassifier, TFLiteClassifier

from .datasets import load_faces
from .evaluation import classification_metrics, crowd_metrics, timed_predict
from .figures import confusion_matrix_png, reliability_png


def _param_counts(model_file: Path) -> int:
    """Parameters of a model: the model card beside an export says them (no TensorFlow to import: its C++
    start-up lines would print); else the Keras file beside a TFLite export knows them."""
    card = model_file.with_name("model_card.json")
    try:
        described = json.loads(card.read_text())
        if model_file.name in described.get("files", {}).values():
            return int(described["params"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # no card, or not this model's
    keras_file = model_file if model_file.suffix == ".keras" else model_file.with_suffix(".keras")
    if not keras_file.exists():
        return 0
    import keras

    return int(keras.models.load_model(keras_file, compile=False).count_params())


def evaluate_model(
    data: str,
    usage: str,
    model_file: str | None,
    model_dir: str,
    limit: int | None,
    flip: bool,
    skip_bad: bool,
    confusion_png: str,
    votes: str | None = "auto",
    reliability_file: str = ".fervi/eval/reliability.png",
    make_bar: Callable[..., Any] | None = None,
) -> dict:
    """Metrics of a model on a dataset's rows. With crowd votes (`votes`: "auto" finds the FER+ file beside a
    FER-2013 CSV) the faces people could label are evaluated against the crowd's majority and against the
    original labels side by side (`crowd_metrics`), with a reliability diagram. `make_bar`: the progress bars'
    maker (tqdm's keywords), for reading the rows and classifying the faces."""
    rows_bar = (lambda rows: make_bar(iterable=rows, desc=f"read {Path(data).name}", unit="row")) if make_bar else None
    faces = load_faces(data, skip_bad=skip_bad, votes=votes, bar=rows_bar)
    if faces.has_usage:
        faces = faces.subset(faces.usage == usage)
        selection = f"Usage={usage}"
    else:
        selection = "all rows (no Usage column)"
    if limit:
        faces = faces.subset(np.arange(min(limit, len(faces))))
        selection += f", first {len(faces)}"
    path = Path(model_file) if model_file else Path(model_dir) / MODEL_TFLITE
    classifier = (
        KerasClassifier(path, flip_average=flip)
        if path.suffix == ".keras"
        else TFLiteClassifier(path, flip_average=flip)
    )
    classifier.predict(faces.images[:1])  # warm-up: interpreter allocation is not throughput
    probs, faces_per_s = timed_predict(classifier, faces.images, progress="classify", make_bar=make_bar)
    report = classification_metrics(faces.labels, probs)
    reference = "crowd's majority" if faces.votes is not None else "labels"
    png = confusion_matrix_png(
        report["confusion"],
        Path(confusion_png),
        f"{Path(data).name}: {selection} ({len(faces)} faces), {reference} vs model",
    )
    crowd: dict[str, Any] = {}
    if faces.votes is not None and faces.original is not None:  # loaded with votes: both are set
        crowd = {
            "labels": "crowd majority (FER+ votes)",
            "notes": faces.notes,
            "crowd": crowd_metrics(probs, faces),
            "original_labels": classification_metrics(faces.original, probs),
        }
        crowd["reliability_png"] = str(
            reliability_png(
                crowd["crowd"]["calibration_vs_majority"],
                Path(reliability_file),
                f"{Path(data).name}: {selection} ({len(faces)} faces)",
            )
        )
    return {
        **report,
        **crowd,
        "selection": selection,
        "model": str(path),
        "flip_average": flip,
        "params": _param_counts(path),
        "faces_per_s": round(faces_per_s, 1),
        "skipped_bad_rows": faces.skipped,
        "confusion_png": str(png),
    }
