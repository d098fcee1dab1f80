"""Real training on a small real subset, through the `fervi train` command, with export.

The runs build on each other (one epoch, --resume to a second, --init a new run from that export, --export-only
that run again), so each is a module fixture that runs once; the tests read what each run wrote."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from .helpers_training import TrainingRun, train

TRAINING_ROWS, VALIDATION_ROWS = 500, 100


def write_subset(fer_csv: Path, subset: Path, votes: Path) -> None:
    """The first training and validation (PublicTest) rows of FER-2013 to `subset`, and the FER+ votes of the
    same rows to `votes`."""
    wanted = {"Training": TRAINING_ROWS, "PublicTest": VALIDATION_ROWS}
    with (
        gzip.open(fer_csv, "rt") as src,
        open(subset, "w") as dst,
        gzip.open(fer_csv.with_name("ferplus_votes.csv.gz"), "rt") as votes_src,
        open(votes, "w") as votes_dst,
    ):
        dst.write(next(src))
        votes_dst.write(next(votes_src))
        kept = {"Training": 0, "PublicTest": 0}
        for line, vote_line in zip(src, votes_src, strict=True):
            usage = line.rstrip().rsplit(",", 1)[1]
            if kept[usage] < wanted[usage]:
                kept[usage] += 1
                dst.write(line)
                votes_dst.write(vote_line)
            if kept == wanted:
                break


@pytest.fixture(scope="module")
def folder(tmp_path_factory, fer_csv) -> Path:
    """Where the runs write; it holds the subset (fer_subset.csv) and its votes (subset_votes.csv: not beside
    the subset by the auto name)."""
    folder = tmp_path_factory.mktemp("training")
    write_subset(fer_csv, folder / "fer_subset.csv", folder / "subset_votes.csv")
    return folder


@pytest.fixture(scope="module")
def data(folder, ckplus_dir) -> list[Path]:
    return [folder / "fer_subset.csv", ckplus_dir]


@pytest.fixture(scope="module")
def first_run(folder, data) -> TrainingRun:
    """One epoch from scratch, over-sampling the rare emotions."""
    return train(data=data, epochs=1, oversample=0.5, out=folder / "models", work_dir=folder / "work")


@pytest.fixture(scope="module")
def resumed_run(first_run, folder, data) -> TrainingRun:
    """--resume to two epochs, in the first run's folders."""
    return train(data=data, epochs=2, oversample=0.5, resume=True, out=first_run.out, work_dir=folder / "work")


@pytest.fixture(scope="module")
def tuned_run(resumed_run, folder, data) -> TrainingRun:
    """--init a new run from the resumed run's export; --agreement trains on pairs of framings of each face
    (crops at four more margins and the dataset's); --votes learns the crowd's vote distributions, is selected
    and calibrated on the crowd's majority."""
    return train(
        data=data,
        epochs=1,
        init=resumed_run.out / "fervi_cnn_lstm.keras",
        out=folder / "models2",
        augment="flip",
        weight_decay="0.05",
        learning_rate="3e-5",
        agreement=2,
        votes=folder / "subset_votes.csv",
        posed_repeat=2,
        label_smoothing=0,
        work_dir=folder / "work2",
    )


@pytest.fixture(scope="module")
def exported_run(tuned_run, resumed_run, folder, data) -> TrainingRun:
    """--export-only the tuned run again (its work folder, its votes): its last epoch, with a note for the card."""
    return train(
        data=data,
        epochs=1,
        init=resumed_run.out / "fervi_cnn_lstm.keras",
        out=folder / "models3",
        work_dir=folder / "work2",
        export_only=True,
        select="last",
        votes=folder / "subset_votes.csv",
        note="exported again",
    )


def test_one_epoch_trains_the_model_on_the_subset(first_run):
    assert first_run.summary["n"] == VALIDATION_ROWS
    card = first_run.card
    assert card["params"] == 457_863
    assert card["training"]["epochs_run"] == 1
    assert card["class_counts_after_oversampling"]["disgust"] > card["class_counts_before_oversampling"]["disgust"]
    assert card["overlap_by_pixel_hash"]["train&ckplus48"] == 0


def test_every_split_is_framed_as_the_workers_frame_live_faces(first_run):
    # the detector finds nearly all of these faces
    reframed = first_run.card["reframed"]
    assert reframed["detector"] == "multiscale" and reframed["margin"] == 0.15
    assert reframed["train"]["found_by_detector"] >= 0.85 * reframed["train"]["faces"]
    assert reframed["val"]["faces"] == VALIDATION_ROWS
    # framing "both" (the default): trained on both framings, measured on the detector's and the dataset's crops
    assert reframed["framing"] == "both"
    assert first_run.card["metrics"]["validation_dataset_crops_single_view"]["n"] == VALIDATION_ROWS
    assert "dataset crops, single view" in first_run.card_text
    # how many labels change when the crop margin is 0.1 smaller or larger, over the faces the detector found
    flips = first_run.card["metrics"]["validation_label_flips_between_margins"]
    assert set(flips["per_margin"]) == {"0.05", "0.25"} and 0 <= flips["mean"] <= 1
    assert flips["faces"] == reframed["val"]["found_by_detector"]


def test_the_export_writes_the_model_its_card_and_figures(first_run):
    for name in (
        "fervi_cnn_lstm.keras",
        "fervi_cnn_lstm.tflite",
        "MODEL_CARD.md",
        "figures/confusion_matrix.png",
        "figures/training_curves.png",
        "figures/class_counts.png",
        "figures/misclassified.png",
    ):
        assert first_run.sizes.get(name, 0) > 0, name


def test_resume_continues_the_same_run_with_a_second_epoch(resumed_run):
    assert resumed_run.card["training"]["epochs_run"] == 2


def test_init_starts_a_new_run_from_the_exported_weights_and_the_card_counts_both(tuned_run):
    training = tuned_run.card["training"]
    assert training["init_from"]["epochs_run"] == 2 and training["epochs_total"] == 3
    assert training["augment"] == "flip" and training["weight_decay"] == 0.05 and training["agreement"] == 2
    assert tuned_run.card["reframed"]["train_margins"] == [0.05, 0.1, 0.2, 0.25]
    card_text = tuned_run.card_text
    assert "Started from the weights" in card_text and "AdamW (weight decay 0.05)" in card_text
    assert "mirror images only" in card_text and "Jensen-Shannon" in card_text


def test_votes_measure_agreement_with_the_crowd_and_calibrate(tuned_run):
    metrics = tuned_run.card["metrics"]
    crowd = metrics["crowd"]["validation_single_view"]
    assert crowd["n"] == metrics["validation_single_view"]["n"] < VALIDATION_ROWS  # unknown / not-a-face left out
    assert 0 < crowd["majority_accuracy"] <= 1 and 0 < crowd["original_label_accuracy"] <= 1
    calibration = tuned_run.card["calibration"]
    assert 0.2 <= calibration["temperature"] <= 5 and calibration["ece_after_in_sample"] <= calibration["ece_before"]
    card_text = tuned_run.card_text
    assert "Agreement with people" in card_text and "## Calibration" in card_text and "## Uncertain" in card_text
    assert "The model is selected on PublicTest's agreement" in card_text  # --select best, the default
    assert tuned_run.sizes.get("figures/reliability.png", 0) > 0


def test_export_only_exports_the_finished_run_again(exported_run):
    training = exported_run.card["training"]
    assert training["selected_checkpoint"] == "last.keras" and training["history_note"] == "exported again"
    assert "The last epoch is exported (--select last)" in exported_run.card_text  # not "selected on PublicTest"
    assert exported_run.sizes.get("fervi_cnn_lstm.tflite", 0) > 0
