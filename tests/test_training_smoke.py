"""One epoch of real training on a small real subset, through the `fervi train` command, with export."""

from __future__ import annotations

import gzip
import json

from click.testing import CliRunner

from fervi.app.cli import main


def test_one_epoch_train_and_export(tmp_path, fer_csv, ckplus_dir):
    subset = tmp_path / "fer_subset.csv"
    votes = tmp_path / "subset_votes.csv"  # the FER+ votes of the same rows (not beside it by the auto name)
    with (
        gzip.open(fer_csv, "rt") as src,
        open(subset, "w") as dst,
        gzip.open(fer_csv.with_name("ferplus_votes.csv.gz"), "rt") as votes_src,
        open(votes, "w") as votes_dst,
    ):
        header = next(src)
        dst.write(header)
        votes_dst.write(next(votes_src))
        kept = {"Training": 0, "PublicTest": 0}
        for line, vote_line in zip(src, votes_src, strict=True):
            usage = line.rstrip().rsplit(",", 1)[1]
            if kept[usage] < (1000 if usage == "Training" else 200):
                kept[usage] += 1
                dst.write(line)
                votes_dst.write(vote_line)
            if kept == {"Training": 1000, "PublicTest": 200}:
                break
    out, work = tmp_path / "models", tmp_path / "work"
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            str(subset),
            "--data",
            str(ckplus_dir),
            "--epochs",
            "1",
            "--oversample",
            "0.5",
            "--out",
            str(out),
            "--work-dir",
            str(work),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["n"] == 200
    card = json.loads((out / "model_card.json").read_text())
    assert card["params"] == 457_863
    assert card["training"]["epochs_run"] == 1
    assert card["class_counts_after_oversampling"]["disgust"] > card["class_counts_before_oversampling"]["disgust"]
    assert card["overlap_by_pixel_hash"]["train&ckplus48"] == 0
    # every split was framed as the workers frame live faces; the detector finds nearly all of these faces
    reframed = card["reframed"]
    assert reframed["detector"] == "multiscale" and reframed["margin"] == 0.15
    assert reframed["train"]["found_by_detector"] >= 0.85 * reframed["train"]["faces"]
    assert reframed["val"]["faces"] == 200
    # framing "both" (the default): trained on both framings, measured on the detector's and the dataset's crops
    assert reframed["framing"] == "both"
    assert card["metrics"]["validation_dataset_crops_single_view"]["n"] == 200
    assert "dataset crops, single view" in (out / "MODEL_CARD.md").read_text()
    # how many labels change when the crop margin is 0.1 smaller or larger, over the faces the detector found
    flips = card["metrics"]["validation_label_flips_between_margins"]
    assert set(flips["per_margin"]) == {"0.05", "0.25"} and 0 <= flips["mean"] <= 1
    assert flips["faces"] == reframed["val"]["found_by_detector"]
    for name in (
        "fervi_cnn_lstm.keras",
        "fervi_cnn_lstm.tflite",
        "MODEL_CARD.md",
        "figures/confusion_matrix.png",
        "figures/training_curves.png",
        "figures/class_counts.png",
        "figures/misclassified.png",
    ):
        assert (out / name).stat().st_size > 0, name
    # --resume continues the same run: a second epoch, not a fresh first one
    again = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            str(subset),
            "--data",
            str(ckplus_dir),
            "--epochs",
            "2",
            "--oversample",
            "0.5",
            "--resume",
            "--out",
            str(out),
            "--work-dir",
            str(work),
        ],
    )
    assert again.exit_code == 0, again.output
    assert json.loads((out / "model_card.json").read_text())["training"]["epochs_run"] == 2
    # --init starts a new run from the exported model's weights; the card counts both runs; --agreement trains
    # on pairs of framings of each face (crops at four more margins and the dataset's); --votes learns the
    # crowd's vote distributions, is selected and calibrated on the crowd's majority
    out2 = tmp_path / "models2"
    tuned = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            str(subset),
            "--data",
            str(ckplus_dir),
            "--epochs",
            "1",
            "--init",
            str(out / "fervi_cnn_lstm.keras"),
            "--out",
            str(out2),
            "--augment",
            "flip",
            "--weight-decay",
            "0.05",
            "--learning-rate",
            "3e-5",
            "--agreement",
            "2",
            "--votes",
            str(votes),
            "--posed-repeat",
            "2",
            "--label-smoothing",
            "0",
            "--work-dir",
            str(tmp_path / "work2"),
        ],
    )
    assert tuned.exit_code == 0, tuned.output
    tuned_card = json.loads((out2 / "model_card.json").read_text())
    training = tuned_card["training"]
    assert training["init_from"]["epochs_run"] == 2 and training["epochs_total"] == 3
    assert training["augment"] == "flip" and training["weight_decay"] == 0.05 and training["agreement"] == 2
    assert tuned_card["reframed"]["train_margins"] == [0.05, 0.1, 0.2, 0.25]
    card_text = (out2 / "MODEL_CARD.md").read_text()
    assert "Started from the weights" in card_text and "AdamW (weight decay 0.05)" in card_text
    assert "mirror images only" in card_text and "Jensen-Shannon" in card_text
    crowd = tuned_card["metrics"]["crowd"]["validation_single_view"]
    assert crowd["n"] == tuned_card["metrics"]["validation_single_view"]["n"] < 200  # unknown / not-a-face left out
    assert 0 < crowd["majority_accuracy"] <= 1 and 0 < crowd["original_label_accuracy"] <= 1
    calibration = tuned_card["calibration"]
    assert 0.2 <= calibration["temperature"] <= 5 and calibration["ece_after_in_sample"] <= calibration["ece_before"]
    assert "Agreement with people" in card_text and "## Calibration" in card_text and "## Uncertain" in card_text
    assert (out2 / "figures" / "reliability.png").stat().st_size > 0
    # --export-only exports the finished run again: here its last epoch, with a note for the card
    out3 = tmp_path / "models3"
    again = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            str(subset),
            "--data",
            str(ckplus_dir),
            "--epochs",
            "1",
            "--init",
            str(out / "fervi_cnn_lstm.keras"),
            "--out",
            str(out3),
            "--work-dir",
            str(tmp_path / "work2"),
            "--export-only",
            "--select",
            "last",
            "--note",
            "exported again",
        ],
    )
    assert again.exit_code == 0, again.output
    training = json.loads((out3 / "model_card.json").read_text())["training"]
    assert training["selected_checkpoint"] == "last.keras" and training["history_note"] == "exported again"
    assert (out3 / "fervi_cnn_lstm.tflite").stat().st_size > 0
