"""Labels people agree with: the FER+ votes join, the soft-label loss, the crowd metrics, calibration, and
"uncertain" faces and face-time by probability mass."""

from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import pytest
from click.testing import CliRunner
from fervi.training.calibration import (
    apply_temperature,
    cross_fitted_ece,
    fit_bias_and_temperature,
    fit_temperature,
    fold_temperature,
    reliability,
)
from fervi.training.datasets import load_faces
from fervi.training.evaluation import crowd_metrics
from fervi.training.votes import VOTE_COLUMNS, CrowdVotes, VotesError, pixels_sha1

from fervi.app.cli import main
from fervi.emotions import EMOTIONS, NUM_EMOTIONS
from fervi.faces import Faces
from fervi.tracking import FaceTracker

E = {name: i for i, name in enumerate(EMOTIONS)}


def _pixels(value: int) -> str:
    return " ".join([str(value)] * 48 * 48)


def _write_pack(folder, rows):
    """A tiny FER-2013 CSV and its votes file: rows of (label, pixel value, usage, {FER+ column: votes})."""
    data = folder / "fer2013.csv"
    with open(data, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        for label, value, usage, _ in rows:
            writer.writerow([label, _pixels(value), usage])
    votes = folder / "ferplus_votes.csv.gz"
    with gzip.open(votes, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*VOTE_COLUMNS, "pixels_sha1"])
        for _, value, _, counts in rows:
            writer.writerow([*(counts.get(c, 0) if counts else "" for c in VOTE_COLUMNS), pixels_sha1(_pixels(value))])
    return data, votes


ROWS = [
    (2, 10, "Training", {"neutral": 7, "fear": 3}),  # fear in FER-2013, neutral for the crowd
    (3, 20, "Training", {"happiness": 10}),
    (4, 30, "PublicTest", {"sadness": 5, "neutral": 5}),  # people tied
    (0, 40, "PublicTest", {"anger": 6, "contempt": 4}),  # contempt votes dropped
    (6, 50, "PublicTest", {"unknown": 6, "neutral": 4}),  # plurality unknown: left out
    (5, 60, "PublicTest", None),  # no votes (FER+ dropped it): left out
]


def test_votes_join_gives_the_crowds_distribution_and_keeps_the_original_label(tmp_path):
    data, votes = _write_pack(tmp_path, ROWS)
    faces = load_faces(data, votes="auto")  # found beside the CSV
    assert len(faces) == 4
    assert faces.labels.tolist() == [E["neutral"], E["happy"], E["sad"], E["angry"]]
    assert faces.original.tolist() == [2, 3, 4, 0]
    targets = faces.targets()
    assert targets[0, E["neutral"]] == pytest.approx(0.7) and targets[0, E["fear"]] == pytest.approx(0.3)
    assert targets[3, E["angry"]] == pytest.approx(1.0)  # 6 anger, contempt dropped
    assert np.allclose(targets.sum(axis=1), 1.0)
    assert "1 without votes and 1 whose plurality is unknown" in faces.notes[0]
    # without votes the CSV's own labels, all rows
    assert load_faces(data).labels.tolist() == [2, 3, 4, 0, 6, 5]


def test_a_misaligned_votes_file_is_refused_with_one_clear_line(tmp_path):
    data, _ = _write_pack(tmp_path, ROWS)
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    _, votes = _write_pack(shifted, [ROWS[1], ROWS[0], *ROWS[2:]])  # two rows swapped
    with pytest.raises(VotesError, match="row 2 is for another face than fer2013.csv row 2"):
        load_faces(data, votes=votes)
    result = CliRunner().invoke(main, ["evaluate", "--data", str(data), "--votes", str(votes), "--json"])
    assert result.exit_code == 1
    message = [line for line in result.output.splitlines() if line.strip()]
    assert len(message) == 1 and "not aligned with this CSV" in message[0], result.output
    short = tmp_path / "short"
    short.mkdir()
    _, votes = _write_pack(short, ROWS[:-1])
    with pytest.raises(VotesError, match="fewer rows than fer2013.csv"):
        load_faces(data, votes=votes)
    longer = tmp_path / "longer"
    longer.mkdir()
    _, votes = _write_pack(longer, [*ROWS, (3, 70, "Training", {"happiness": 10})])
    with pytest.raises(VotesError, match="has 7 rows and fer2013.csv 6"):
        load_faces(data, votes=votes)


def test_the_soft_label_loss_is_the_cross_entropy_against_the_vote_distribution():
    keras = pytest.importorskip("keras")
    from fervi.training.agreement import CrossEntropyWithAgreement

    votes = np.zeros((2, NUM_EMOTIONS), np.float32)
    votes[0, [E["neutral"], E["sad"]]] = [0.6, 0.4]
    votes[1, E["happy"]] = 1.0
    probs = np.full((2, NUM_EMOTIONS), 0.05, np.float32)
    probs[0, [E["neutral"], E["sad"]]] = [0.5, 0.25]
    probs[1, [E["happy"], E["neutral"]]] = [0.6, 0.15]
    # by hand: -(0.6 ln 0.5 + 0.4 ln 0.25) and -ln 0.6, averaged
    by_hand = (-(0.6 * np.log(0.5) + 0.4 * np.log(0.25)) - np.log(0.6)) / 2
    plain = keras.losses.CategoricalCrossentropy()
    assert float(plain(votes, probs)) == pytest.approx(by_hand, rel=1e-5)
    paired = CrossEntropyWithAgreement(weight=20.0)  # the same view twice: no divergence is added
    assert float(paired(np.concatenate([votes, votes]), np.concatenate([probs, probs]))) == pytest.approx(
        by_hand, rel=1e-5
    )


def test_crowd_metrics_on_a_small_fixture(tmp_path):
    data, _ = _write_pack(tmp_path, ROWS)
    faces = load_faces(data, votes="auto")
    probs = np.full((4, NUM_EMOTIONS), 0.02, np.float32)
    for row, (emotion, p) in enumerate([("neutral", 0.88), ("happy", 0.88), ("neutral", 0.88), ("sad", 0.88)]):
        probs[row, E[emotion]] = p
    m = crowd_metrics(probs, faces)
    # right: neutral (crowd 7/10), happy, neutral (tied with sad); wrong: sad where the crowd says angry
    assert m["majority_accuracy"] == pytest.approx(0.75)
    assert m["tied_faces"] == 1 and m["majority_accuracy_strict"] == pytest.approx(2 / 3)
    assert m["original_label_accuracy"] == pytest.approx(1 / 4)  # only the happy face matches FER-2013's label
    expected_p = np.mean([0.7 * 0.88 + 0.3 * 0.02, 0.88, 0.5 * 0.88 + 0.5 * 0.02, 0.02])
    assert m["mean_probability_of_votes"] == pytest.approx(expected_p, rel=1e-5)
    assert m["shares"]["neutral"] == {"predicted": 0.5, "crowd": 0.25}
    assert m["calibration_vs_majority"]["ece"] == pytest.approx(abs(0.88 - 0.75), abs=1e-4)  # one bin
    assert m["confusion_vs_crowd"][E["angry"]][E["sad"]] == 1
    # the paper's protocol: the tied face has no emotion over half the votes; 2 of the other 3 right
    assert m["paper_protocol"] == {"n": 3, "accuracy": pytest.approx(2 / 3)}


def test_the_paper_protocol_drops_single_votes_before_it_asks_for_more_than_half():
    counts = np.zeros((4, len(VOTE_COLUMNS)), np.int64)
    col = VOTE_COLUMNS.index
    counts[0, [col("neutral"), col("happiness"), col("sadness"), col("fear"), col("unknown")]] = [4, 3, 1, 1, 1]
    counts[1, [col("neutral"), col("happiness"), col("sadness")]] = [4, 3, 3]  # 4 of 10: no majority
    counts[2, [col("contempt"), col("anger")]] = [6, 4]  # contempt: FERVI has no such class
    counts[3, [col("NF"), col("anger")]] = [2, 8]
    emotion = CrowdVotes(counts).paper_majority()
    # face 0: 4 of the 7 votes left once the single ones go, over half; without dropping them 4 of 10 is not;
    # -1: the face does not count
    assert emotion.tolist() == [E["neutral"], -1, -1, E["angry"]]


def test_evaluate_reports_the_crowd_beside_the_original_labels(tmp_path):
    data, _ = _write_pack(tmp_path, ROWS)
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--data",
            str(data),
            "--json",
            "--confusion-png",
            str(tmp_path / "cm.png"),
            "--reliability-png",
            str(tmp_path / "rel.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.splitlines()[-1])
    assert report["n"] == 2 and report["labels"] == "crowd majority (FER+ votes)"  # PublicTest with a crowd label
    assert {
        "majority_accuracy",
        "original_label_accuracy",
        "mean_probability_of_votes",
        "shares",
        "calibration_vs_majority",
    } <= set(report["crowd"])
    assert (tmp_path / "rel.png").stat().st_size > 0
    text = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--data",
            str(data),
            "--confusion-png",
            str(tmp_path / "cm.png"),
            "--reliability-png",
            str(tmp_path / "rel.png"),
        ],
    )
    assert "crowd majority" in text.output and "original label" in text.output and "calibration" in text.output


def _sampled_labels(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` faces' true emotion probabilities and a label drawn from each: a perfectly calibrated model."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, NUM_EMOTIONS))
    true_p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return true_p, np.array([rng.choice(NUM_EMOTIONS, p=p) for p in true_p])


def test_a_temperature_fitted_on_overconfident_probabilities_calibrates_them():
    true_p, labels = _sampled_labels(4000, seed=0)
    overconfident = apply_temperature(true_p, 0.5)  # logits doubled
    before = reliability(overconfident, overconfident.argmax(1) == labels)["ece"]
    t = fit_temperature(overconfident, labels)
    assert t == pytest.approx(2.0, rel=0.1)
    calibrated = apply_temperature(overconfident, t)
    assert (calibrated.argmax(1) == overconfident.argmax(1)).all()  # no label changes
    after = reliability(calibrated, calibrated.argmax(1) == labels)["ece"]
    assert after < 0.03 < before
    assert cross_fitted_ece(overconfident, labels)["ece"] < 0.04


def test_biases_fitted_with_the_temperature_undo_a_leaning_to_one_emotion():
    true_p, labels = _sampled_labels(6000, seed=3)
    lean = np.zeros(NUM_EMOTIONS)
    lean[E["neutral"]] = 1.0  # a model that over-calls neutral: its logit raised by 1
    leaning = apply_temperature(true_p, 1.0, lean)
    t, bias = fit_bias_and_temperature(leaning, labels)
    assert t == pytest.approx(1.0, abs=0.1)
    relative = bias - bias[E["neutral"]]  # biases are defined up to a constant
    assert np.allclose(np.delete(relative, E["neutral"]), 1.0, atol=0.2)
    fixed = apply_temperature(leaning, t, bias)
    share = lambda p: (p.argmax(1) == E["neutral"]).mean()  # noqa: E731 - a one-line measure
    assert abs(share(fixed) - share(true_p)) < 0.02 < share(leaning) - share(true_p)
    assert cross_fitted_ece(leaning, labels, bias=True)["ece"] < 0.04


def test_folding_the_temperature_into_the_last_layer_gives_the_calibrated_probabilities():
    pytest.importorskip("keras")
    from fervi.training.architectures import build

    model = build("cnn_lstm")
    faces = np.random.default_rng(1).integers(0, 256, (4, 48, 48, 1)).astype(np.float32)
    before = np.asarray(model(faces, training=False))
    bias = np.linspace(-0.5, 0.5, NUM_EMOTIONS)
    fold_temperature(model, 0.7, bias)
    after = np.asarray(model(faces, training=False))
    assert np.allclose(after, apply_temperature(before, 0.7, bias), atol=1e-5)


def test_a_face_without_a_clear_leader_is_marked_uncertain_with_its_two_leading_emotions(monkeypatch):
    probs = np.full((2, NUM_EMOTIONS), 0.0, np.float32)
    probs[0, [E["neutral"], E["sad"], E["happy"]]] = [0.40, 0.35, 0.25]
    probs[1, [E["happy"], E["neutral"]]] = [0.80, 0.20]
    faces = Faces.detected([[0, 0, 50, 50], [60, 0, 50, 50]], [0.9, 0.9]).classified(probs)
    listed = faces.to_list()
    assert (listed[0]["label"], listed[0]["runner_up"], listed[0]["uncertain"]) == ("neutral", "sad", True)
    assert (listed[1]["label"], listed[1]["uncertain"]) == ("happy", False)
    monkeypatch.setenv("FERVI_UNCERTAIN_MARGIN", "0.01")
    assert [f["uncertain"] for f in faces.to_list()] == [False, False]
    # a tracked face: the rule reads the track's smoothed probabilities
    tracked = faces.tracked([1, 2], probs[::-1])
    monkeypatch.setenv("FERVI_UNCERTAIN_MARGIN", "0.15")
    assert [f["uncertain"] for f in tracked.to_list()] == [False, True]


def test_face_time_is_shared_by_probability_mass():
    tracker = FaceTracker(half_life_s=0.0)  # no smoothing: each frame's probabilities as they are
    probs = np.zeros((1, NUM_EMOTIONS), np.float32)
    probs[0, [E["happy"], E["neutral"]]] = [0.55, 0.45]
    faces = Faces.detected([[10, 10, 50, 50]], [0.9]).classified(probs)
    for i in range(11):
        frame = tracker.update(i, i * 0.1, faces)
    track = tracker.tracks[0]
    assert track.emotion_seconds[E["happy"]] == pytest.approx(0.55, abs=1e-6)  # 10 steps of 0.1 s
    assert track.emotion_seconds[E["neutral"]] == pytest.approx(0.45, abs=1e-6)
    assert frame.emotion_seconds.sum() == pytest.approx(0.1)
    assert track.dominant == "happy"
