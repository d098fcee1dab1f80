"""The model that ships in models/: its accuracy on real PublicTest rows, and TFLite agreeing with Keras."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from fervi.training.datasets import load_fer_csv

from fervi.app.cli import main
from fervi.emotions import EMOTIONS
from fervi.settings import default_model_dir
from fervi.vision.classifier import MODEL_KERAS, MODEL_TFLITE, KerasClassifier, TFLiteClassifier


def test_shipped_model_scores_on_first_1000_public_test_rows(fer_csv, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--data",
            str(fer_csv),
            "--usage",
            "PublicTest",
            "--limit",
            "1000",
            "--json",
            "--confusion-png",
            str(tmp_path / "cm.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["n"] == 1000
    assert report["params"] == 457_863
    assert report["accuracy"] >= 0.65, report["accuracy"]
    # beside the votes file: scored against the crowd's majority and the original labels side by side
    assert report["labels"] == "crowd majority (FER+ votes)" and report["crowd"]["majority_accuracy"] >= 0.8
    assert set(report) >= {"accuracy", "macro_f1", "per_class", "confusion", "params", "n"}
    assert (tmp_path / "cm.png").stat().st_size > 0


def test_tflite_and_keras_give_the_same_labels(fer_csv):
    faces = load_fer_csv(fer_csv, limit=300)
    models = default_model_dir()
    lite = TFLiteClassifier(f"{models}/{MODEL_TFLITE}").predict(faces.images)
    keras_probs = KerasClassifier(f"{models}/{MODEL_KERAS}").predict(faces.images)
    assert (lite.argmax(1) == keras_probs.argmax(1)).all()
    assert np.abs(lite - keras_probs).max() < 1e-3


def test_model_card_matches_files():
    card = json.loads((__import__("pathlib").Path(default_model_dir()) / "model_card.json").read_text())
    assert card["params"] == 457_863 and card["non_trainable_params"] == 832
    # validated on the PublicTest faces whose FER+ crowd named one of the seven emotions, against its majority
    assert card["metrics"]["validation_flip_averaged"]["n"] == 3489
    crowd = card["metrics"]["crowd"]["validation_single_view"]
    assert crowd["majority_accuracy"] >= 0.83 and crowd["calibration_vs_majority"]["ece"] <= 0.05
    assert card["calibration"]["temperature"] > 0 and set(card["calibration"]["bias"]) == set(EMOTIONS)
