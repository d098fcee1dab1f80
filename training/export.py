"""Export a trained run to `models/`: Keras model, TFLite model for workers, model card and figures.

Metrics in the card are measured here on the exported TFLite model, through the same runtime the
workers use, on the validation split (PublicTest for FER-2013) and on each held-out dataset (CK+ subjects
never seen in training).
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fervi.emotions import EMOTIONS
from fervi.vision.classifier import MODEL_KERAS, MODEL_TFLITE, TFLiteClassifier

from . import figures
from .calibration import (
    apply_temperature,
    cross_fitted_ece,
    fit_bias_and_temperature,
    fold_temperature,
    nll,
    reliability,
)
from .evaluation import classification_metrics, crowd_metrics, timed_predict

log = logging.getLogger(__name__)


def file_sha256(path: str | Path) -> str:
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(file.relative_to(path).as_posix().encode())
            digest.update(file.read_bytes())
        return digest.hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def to_tflite(model) -> bytes:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def _evaluate(classifier, faces) -> tuple[dict, np.ndarray]:
    probs, faces_per_s = timed_predict(classifier, faces.images)
    metrics = classification_metrics(faces.labels, probs)
    metrics["faces_per_s"] = round(faces_per_s, 1)
    return metrics, probs


def _margin_flips(classifier, data) -> dict:
    """The share of validation faces whose single-view label changes when the crop margin is 0.1 smaller or
    larger than the workers' (over the faces the detector found; the others keep their crop at every margin)."""
    base = classifier.predict(data.val.images).argmax(1)
    changed = {
        f"{margin:g}": float((classifier.predict(images).argmax(1) != base).mean())
        for margin, images in data.val_margins.items()
    }
    found = data.report.get("reframed", {}).get("val", {}).get("found_by_detector", len(base))
    scale = len(base) / found if found else 0.0  # faces not found keep their crop: they never flip
    return {
        "per_margin": {m: round(v * scale, 4) for m, v in changed.items()},
        "mean": round(float(np.mean(list(changed.values()))) * scale, 4),
        "faces": int(found),
    }


def calibrate(model, classifier, val) -> dict:
    """Fit the temperature and the per-emotion biases on the validation faces (single view, as the workers run
    it by default) against the crowd's majority (`fit_bias_and_temperature`), fold them into `model`, and say
    what it did: T, the biases, NLL, ECE and agreement with the crowd before and after, and ECE and agreement
    measured on halves the calibration was not fitted on (`cross_fitted_ece`)."""
    probs = classifier.predict(val.images)
    right = val.crowd.top_set()  # any emotion tied at the top of the votes counts as right

    def hit(p: np.ndarray) -> np.ndarray:
        return right[np.arange(len(p)), p.argmax(1)]

    temperature, bias = fit_bias_and_temperature(probs, val.labels)
    calibrated = apply_temperature(probs, temperature, bias)
    fold_temperature(model, temperature, bias)
    info = {
        "temperature": round(temperature, 4),
        "bias": {emotion: round(float(b), 4) for emotion, b in zip(EMOTIONS, bias, strict=True)},
        "fitted_on": f"validation (PublicTest) faces with crowd votes, single view, {len(val)} faces, against the "
        "crowd's majority (NLL)",
        "nll_before": round(nll(probs, val.labels), 4),
        "nll_after": round(nll(calibrated, val.labels), 4),
        "ece_before": reliability(probs, hit(probs))["ece"],
        "ece_after_in_sample": reliability(calibrated, hit(calibrated))["ece"],
        "agreement_before": round(float(hit(probs).mean()), 4),
        "agreement_after_in_sample": round(float(hit(calibrated).mean()), 4),
        "ece_cross_fitted": cross_fitted_ece(probs, val.labels, bias=True, right=right),
        "temperature_only_cross_fitted": cross_fitted_ece(probs, val.labels, right=right),
    }
    log.info(
        "event=calibrated temperature=%.4f ece_before=%.4f ece_after=%.4f",
        temperature,
        info["ece_before"],
        info["ece_after_in_sample"],
    )
    return info


UNCERTAIN_MARGINS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


def uncertain_table(probs: np.ndarray, val) -> list[dict]:
    """For each candidate margin: the share of faces shown uncertain (top emotion ahead of the second by less),
    how often their label agrees with the crowd's majority, how often the crowd's majority is one of the two
    emotions they show, and how often the other faces' label agrees."""
    order = np.argsort(probs, axis=1)
    rows = np.arange(len(probs))
    first, second = order[:, -1], order[:, -2]
    lead = probs[rows, first] - probs[rows, second]
    top = val.crowd.top_set()
    right, right_in_two = top[rows, first], top[rows, first] | top[rows, second]

    def share(hits: np.ndarray, mask: np.ndarray) -> float | None:
        return round(float(hits[mask].mean()), 4) if mask.any() else None

    table = []
    for margin in UNCERTAIN_MARGINS:
        unsure = lead < margin
        table.append(
            {
                "margin": margin,
                "uncertain_share": round(float(unsure.mean()), 4),
                "uncertain_top_right": share(right, unsure),
                "uncertain_top2_right": share(right_in_two, unsure),
                "clear_right": share(right, ~unsure),
            }
        )
    return table


def export_run(config, data, work: Path) -> dict:
    """Export the run in `work` to `config.out`: the selected checkpoint, calibrated where the validation faces
    carry crowd votes, as Keras and TFLite, measured through the TFLite runtime, with its card and figures."""
    import keras

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    best = work / "best.keras"
    checkpoint = best if config.select == "best" and best.exists() else work / "last.keras"
    model = keras.models.load_model(checkpoint, compile=False)
    calibration = None
    if data.val.votes is not None:
        (out / MODEL_TFLITE).write_bytes(to_tflite(model))
        calibration = calibrate(model, TFLiteClassifier(out / MODEL_TFLITE, flip_average=False), data.val)
    model.save(out / MODEL_KERAS)
    (out / MODEL_TFLITE).write_bytes(to_tflite(model))

    flip = TFLiteClassifier(out / MODEL_TFLITE, flip_average=True)
    plain = TFLiteClassifier(out / MODEL_TFLITE, flip_average=False)
    val_metrics, val_probs = _evaluate(flip, data.val)
    plain_metrics, plain_probs = _evaluate(plain, data.val)
    crowd = {}
    if calibration is not None:
        crowd = _crowd_section(plain, plain_probs, val_probs, data)
        calibration["uncertain_margins"] = uncertain_table(plain_probs, data.val)
    as_cropped = {}
    if data.val_as_cropped is not None:  # the same faces in the dataset's crops: comparable with other models
        as_cropped = {
            "validation_dataset_crops_single_view": _evaluate(plain, data.val_as_cropped)[0],
            "validation_dataset_crops_flip_averaged": _evaluate(flip, data.val_as_cropped)[0],
        }
    margin_flips = _margin_flips(plain, data) if getattr(data, "val_margins", None) else None
    metrics = {
        "validation_flip_averaged": val_metrics,
        "validation_single_view": plain_metrics,
        **as_cropped,
        **{f"holdout_{name}_flip_averaged": _evaluate(flip, faces)[0] for name, faces in data.holdouts.items()},
        **({"validation_label_flips_between_margins": margin_flips} if margin_flips else {}),
        **({"crowd": crowd} if crowd else {}),
    }
    figure_files = _export_figures(
        out / "figures", work / "history.csv", data, val_metrics, val_probs, crowd, calibration
    )
    card = {
        "model": config.model,
        "files": {"keras": MODEL_KERAS, "tflite": MODEL_TFLITE},
        "emotions": list(EMOTIONS),
        "input": "48x48 grayscale face, values 0..255 (the model scales them); see fervi.vision.preprocess",
        "params": int(model.count_params()),
        "non_trainable_params": int(sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)),
        "data": [{**entry, "sha256": file_sha256(entry["path"])} for entry in data.report["datasets"]],
        "class_counts_before_oversampling": data.report["class_counts_before"],
        "class_counts_after_oversampling": data.report["class_counts_after"],
        "overlap_by_pixel_hash": data.report["overlap_train_val"],
        **({"reframed": data.report["reframed"]} if "reframed" in data.report else {}),
        "training": _training_section(config, work, checkpoint),
        "metrics": metrics,
        **({"calibration": calibration} if calibration else {}),
        "figures": [str(p.relative_to(out)) for p in figure_files],
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    (out / "MODEL_CARD.md").write_text(model_card_markdown(card))
    log.info(
        "event=model_exported out=%s accuracy=%.4f macro_f1=%.4f", out, val_metrics["accuracy"], val_metrics["macro_f1"]
    )
    return card


def _crowd_section(plain, plain_probs: np.ndarray, flip_probs: np.ndarray, data) -> dict:
    """Agreement with the crowd on the validation faces: single view, flip-averaged and, for reframed runs,
    in the dataset's own crops."""
    crowd = {
        "validation_single_view": crowd_metrics(plain_probs, data.val),
        "validation_flip_averaged": crowd_metrics(flip_probs, data.val),
    }
    if data.val_as_cropped is not None:
        crowd["validation_dataset_crops_single_view"] = crowd_metrics(
            plain.predict(data.val_as_cropped.images), data.val_as_cropped
        )
    return crowd


def _training_section(config, work: Path, checkpoint: Path) -> dict:
    """The card's `training` entry: the options, the epochs and time it took (with the runs it continued),
    the checkpoint exported and the machine."""
    epochs_run = len(_history_epochs(work / "history.csv"))
    wall_file = work / "wall_seconds.json"
    wall = json.loads(wall_file.read_text())["seconds"] if wall_file.exists() else None
    left_out = ("extra", "resume", "export_only", "note", "device_pack")
    return {
        **{k: v for k, v in asdict(config).items() if k not in left_out},
        "epochs_run": epochs_run,
        "selected_checkpoint": checkpoint.name,
        "wall_seconds": round(wall, 1) if wall else None,
        **_totals(epochs_run, wall, parent_run(config.init)),
        "machine": _machine(config),
        **({"trained_with": config.extra["trained_with"]} if "trained_with" in config.extra else {}),
        **({"history_note": config.note} if config.note else {}),
    }


def _export_figures(
    fig_dir: Path,
    history_csv: Path,
    data,
    val_metrics: dict,
    val_probs: np.ndarray,
    crowd: dict,
    calibration: dict | None,
) -> list[Path]:
    """The card's figures: training curves, confusion matrices, class counts, misclassified faces and, with
    crowd votes, the reliability diagram."""
    figure_files = [
        figures.training_curves(history_csv, fig_dir / "training_curves.png"),
        figures.confusion_matrix_png(
            val_metrics["confusion"],
            fig_dir / "confusion_matrix.png",
            f"Validation ({len(data.val)} faces), flip-averaged",
        ),
        figures.class_counts_png(
            data.report["class_counts_before"], data.report["class_counts_after"], fig_dir / "class_counts.png"
        ),
        figures.misclassified_grid(
            data.val.images, data.val.labels, val_probs.argmax(1), fig_dir / "misclassified.png"
        ),
    ]
    if crowd and calibration is not None:
        figure_files += [
            figures.reliability_png(
                crowd["validation_single_view"]["calibration_vs_majority"],
                fig_dir / "reliability.png",
                f"PublicTest ({crowd['validation_single_view']['n']} faces), single view, "
                f"T = {calibration['temperature']:.3f}",
            ),
            figures.confusion_matrix_png(
                crowd["validation_single_view"]["confusion_vs_crowd"],
                fig_dir / "confusion_vs_crowd.png",
                "PublicTest, single view: crowd majority (rows) vs model",
            ),
        ]
    return figure_files


def _totals(epochs_run: int, wall: float | None, parent: dict | None) -> dict:
    if parent is None:
        return {}
    return {
        "init_from": parent,
        "epochs_total": epochs_run + (parent.get("epochs_run") or 0),
        "wall_seconds_total": round((wall or 0) + (parent.get("wall_seconds") or 0), 1),
    }


def parent_run(init: str | None) -> dict | None:
    """What the model a run started from (`--init`) had behind it, read from the card beside it."""
    if not init:
        return None
    card_file = Path(init).with_name("model_card.json")
    if not card_file.exists():
        return {"file": str(init)}
    parent = json.loads(card_file.read_text())
    training = parent.get("training", {})
    return {
        "file": str(init),
        "epochs_run": training.get("epochs_run"),
        "wall_seconds": training.get("wall_seconds"),
        "learning_rate": training.get("learning_rate"),
        "history_note": training.get("history_note"),
        "validation_accuracy": parent.get("metrics", {}).get("validation_flip_averaged", {}).get("accuracy"),
        "exported_at": parent.get("exported_at"),
    }


def _machine(config) -> str:
    torch_run = config.extra.get("trained_with")
    if torch_run:
        return f"{torch_run['device']} (PyTorch {torch_run['torch']}, training/gpu_train.py)"
    return f"{platform.machine()} {platform.processor() or ''} cpu_count={_cpus()}".strip()


def _augmentation(augment) -> str:
    """Cards before augmentation modes said on (True) or off (False)."""
    return {
        True: "on",
        False: "off",
        "full": "on (flip, rotation, zoom, shift, light)",
        "flip": "mirror images only",
        "none": "off",
    }.get(augment, str(augment))


def _optimizer(training: dict) -> str:
    torch_run = training.get("trained_with")
    if not torch_run:
        return f"AdamW (weight decay {training['weight_decay']:g})" if training.get("weight_decay") else "Adam"
    if torch_run["optimizer"] == "sgd":
        return f"SGD (Nesterov momentum 0.9, weight decay {torch_run['weight_decay']:g})"
    return f"AdamW (weight decay {torch_run['weight_decay']:g})"


def _torch_line(run: dict) -> str:
    return (
        f"Trained by `training/gpu_train.py` (recipe `{run['recipe']}`, the PyTorch mirror of this "
        f"architecture, weights mapped by `training/torch_port.py`) on {run['device']}, on the same split "
        f"and over-sampled rows ({run['train_rows']} per epoch). Augmentation, training split only: "
        f"horizontal flip, rotation ±{run['degrees']}°, zoom ±{run['zoom']:.0%}, shift ±{run['shift']:.0%}, "
        f"brightness ±15%, contrast ±20%, random erasing p={run['erase']}; the epoch count was fixed after "
        f"the first epoch to fit a {run.get('minutes', '?')}-minute budget."
    )


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def _history_epochs(history_csv: Path) -> list[int]:
    if not history_csv.exists():
        return []
    import pandas as pd

    return sorted(set(pd.read_csv(history_csv)["epoch"].tolist()))


def _init_line(training: dict) -> str:
    parent = training["init_from"]
    line = (
        f"Started from the weights of an earlier run (`--init`): {parent.get('epochs_run')} epochs, peak rate "
        f"{parent.get('learning_rate')}, validation accuracy {parent.get('validation_accuracy') or 0:.4f}, "
        f"{parent.get('wall_seconds')} s. In all: {training['epochs_total']} epochs, "
        f"{training['wall_seconds_total']} s."
    )
    if parent.get("history_note"):
        line += f" That run: {parent['history_note']}"
    return line


def _agreement_line(training: dict) -> str:
    return (
        f"Agreement between framings (`--agreement {training['agreement']:g}`, training/agreement.py): every "
        "batch shows each face in two framings drawn from its crops at the margins above and its dataset "
        "crop, each mirrored at random; the loss adds to both views' cross-entropy "
        f"{training['agreement']:g} x the Jensen-Shannon divergence between their predictions."
    )


def _reframed_line(reframed: dict) -> str:
    found = ", ".join(
        f"{name} {info['found_by_detector']}/{info['faces']}"
        for name, info in reframed.items()
        if isinstance(info, dict)
    )
    both = (
        (
            " Framing `both`: each epoch shows every training face in either framing at random, the "
            "detector's or the dataset's own crop."
        )
        if reframed.get("framing") == "both"
        else ""
    )
    if reframed.get("train_margins"):
        both += (
            f" Training faces are also cropped at margins {', '.join(map(str, reframed['train_margins']))} "
            "around the detector's box (`--agreement`)."
        )
    return (
        f"- Every split framed as the workers frame live faces (training/reframe.py): detector "
        f"`{reframed['detector']}`, crop margin {reframed['margin']}; faces found by it: {found} (the others "
        "keep their original crop). Validation and hold-out metrics below are on these framings, except the "
        f"rows that say dataset crops.{both}"
    )


WHY_LOWER_ON_ORIGINAL = (
    "Why agreeing with people scores lower on the original labels: each FER-2013 label is one person's guess, and "
    "ten people relabelling the same faces (FER+) overrule that guess on about a third of them, most often "
    'turning "fear" or "sad" into "neutral". A model that learns what the crowd says therefore agrees '
    "more with people and less with those single guesses; the crowd's majority is the better reference."
)


def _labels_line(card: dict) -> str:
    notes = [n for entry in card["data"] for n in entry.get("notes", [])]
    posed = card["training"].get("posed_repeat", 1)
    return (
        "Labels: each FER-2013 face's FER+ crowd votes as a distribution over the seven emotions (the loss is "
        "the cross-entropy against it: the FER+ paper's PLD); contempt votes are dropped, and faces whose "
        "plurality is unknown, not a face or contempt are left out of training and validation ("
        + "; ".join(notes)
        + "). CK+ faces keep their one-hot posed label"
        + (f", each shown {posed} times an epoch" if posed > 1 else "")
        + ". "
        + (
            "The last epoch is exported (--select last): PublicTest's agreement with the crowd's majority is "
            "measured, not used to pick the epoch."
            if card["training"].get("selected_checkpoint") == "last.keras"
            else "The model is selected on PublicTest's agreement with the crowd's majority."
        )
    )


def _paper_cell(metrics: dict) -> str:
    """The FER+ paper's protocol as a card cell; "-" in cards measured before FERVI reported it."""
    paper = metrics.get("paper_protocol")
    return f"{paper['accuracy']:.4f} ({paper['n']})" if paper else "-"


def _crowd_lines(card: dict) -> list[str]:
    crowd = card["metrics"].get("crowd")
    if not crowd:
        return []
    rows = {
        "validation_dataset_crops_single_view": "PublicTest, dataset crops, single view",
        "validation_single_view": "PublicTest, framed by the detector, single view",
        "validation_flip_averaged": "PublicTest, framed by the detector, flip-averaged",
    }
    lines = [
        "",
        "## Agreement with people (FER+ crowd votes)",
        "",
        "Validation labels are the crowd's majority of ten votes (FER+); faces whose plurality is unknown, "
        "not a face or contempt are left out, and contempt votes are dropped. Accuracy below counts a face "
        "where people tied as right on any tied emotion (strict: tied faces left out). The FER+ paper's "
        "protocol (microsoft/FERPlus, majority mode) drops each face's single votes and counts only faces where "
        "one emotion has more than half of the rest: it leaves out faces people disagreed on, so it reads higher.",
        "",
        "| set | n | crowd majority | strict | original FER-2013 label | mean p of the votes | ECE "
        "| FER+ paper's protocol (n) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, label in rows.items():
        if key in crowd:
            m = crowd[key]
            lines.append(
                f"| {label} | {m['n']} | {m['majority_accuracy']:.4f} | {m['majority_accuracy_strict']:.4f} "
                f"| {m['original_label_accuracy']:.4f} | {m['mean_probability_of_votes']:.4f} "
                f"| {m['calibration_vs_majority']['ece']:.4f} "
                f"| {_paper_cell(m)} |"
            )
    shares = crowd["validation_single_view"]["shares"]
    lines += [
        "",
        "Share of each emotion (PublicTest, detector framing, single view): predicted / crowd's majority: "
        + ", ".join(f"{e} {v['predicted']:.1%} / {v['crowd']:.1%}" for e, v in shares.items())
        + ".",
        "",
        WHY_LOWER_ON_ORIGINAL,
    ]
    cal = card.get("calibration")
    if cal:
        cross = cal["ece_cross_fitted"]
        lines += [
            "",
            "## Calibration",
            "",
            f"Temperature T = {cal['temperature']} and one bias per emotion ("
            + ", ".join(f"{e} {b:+.2f}" for e, b in cal.get("bias", {}).items())
            + f") fitted on {cal['fitted_on']} (bias-corrected temperature scaling) and folded into the last "
            f"layer (training/calibration.py): NLL {cal['nll_before']} -> {cal['nll_after']}, ECE "
            f"{cal['ece_before']} -> {cal['ece_after_in_sample']}, agreement with the crowd "
            f"{cal.get('agreement_before', 0):.4f} -> {cal.get('agreement_after_in_sample', 0):.4f} on the faces it "
            f"was fitted on. Fitted on one half of them and measured on the other (both ways): ECE {cross['ece']} "
            f"{cross['per_half']}, agreement {cross.get('accuracy_per_half')} (T {cross['temperatures']}); with the "
            f"temperature alone: ECE {cal.get('temperature_only_cross_fitted', {}).get('ece')}, agreement "
            f"{cal.get('temperature_only_cross_fitted', {}).get('accuracy_per_half')}. The biases move the labels "
            "where the model hesitated between neutral and another emotion. Reliability diagram: "
            "figures/reliability.png.",
        ]
        if cal.get("uncertain_margins"):
            lines += [
                "",
                "## Uncertain",
                "",
                "A face is shown as uncertain, with its two leading emotions, when the top emotion leads the "
                "second by less than a margin (FERVI_UNCERTAIN_MARGIN). On PublicTest, single view:",
                "",
                "| margin | faces uncertain | their label = crowd | crowd's in their two | clear faces' label "
                "= crowd |",
                "|---|---|---|---|---|",
            ]
            for row in cal["uncertain_margins"]:
                lines.append(
                    f"| {row['margin']} | {row['uncertain_share']:.1%} | {_pct(row['uncertain_top_right'])} "
                    f"| {_pct(row['uncertain_top2_right'])} | {_pct(row['clear_right'])} |"
                )
    return lines


def _pct(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def model_card_markdown(card: dict) -> str:
    """models/MODEL_CARD.md: the card's JSON (`model_card.json`) for people."""
    lines = [
        f"# FERVI emotion classifier: {card['model']}",
        "",
        f"{card['params']:,} parameters ({card['non_trainable_params']} non-trainable); input {card['input']}.",
        "",
        *_data_lines(card),
        "",
        *_training_lines(card),
        "",
        *_metrics_lines(card),
        *_crowd_lines(card),
        *_per_class_lines(card["metrics"]["validation_flip_averaged"]),
        "",
        "## How this compares",
        "",
        "The 2023 report this architecture comes from claims 82.45% test accuracy, but it over-sampled before "
        "splitting, so copies of training faces sat in its test set. Here the split comes first (the CSV's "
        "`Usage` column; CK+ by subject), over-sampling and augmentation see the training split only, and the "
        "figures above are measured on PublicTest faces the model never trained on. For reference, the widely "
        "used mini-Xception of the `fer` package scores 65.6% on the same PublicTest rows (`fervi bench` "
        "measures both side by side).",
        "",
        "## Figures",
        "",
        *[f"![{Path(f).stem}]({f})" for f in card["figures"]],
        "",
        "## Limits",
        "",
        "FER-2013 faces are low-resolution web images, mostly frontal; accuracy on other data, camera angles "
        "and lighting is lower. Disgust has few training faces. Do not use the labels to judge individuals.",
        "",
    ]
    return "\n".join(lines)


def _data_lines(card: dict) -> list[str]:
    lines = ["## Data and split", ""]
    for entry in card["data"]:
        lines.append(
            f"- `{entry['path']}` (sha256 `{entry['sha256'][:16]}…`): {entry['rows']} faces; split: "
            f"{entry['split']}; {entry['train']} train / {entry['val']} held out."
        )
    return [
        *lines,
        f"- Identical images across splits (pixel hash): {card['overlap_by_pixel_hash']}. The FER-2013 "
        "duplicates are in the original data; over-sampling and augmentation touch the training split only.",
        *([_reframed_line(card["reframed"])] if card.get("reframed") else []),
    ]


def _training_lines(card: dict) -> list[str]:
    training = card["training"]
    return [
        "## Training",
        "",
        f"{training['epochs_run']} epochs, batch {training['batch_size']}, {_optimizer(training)} peak "
        f"{training['learning_rate']:g} (warm-up, cosine decay), label smoothing "
        f"{training['label_smoothing']}, over-sampling to {training['oversample_min_share']:g} of "
        f"the largest class, augmentation {_augmentation(training['augment'])}; wall time "
        f"{training['wall_seconds']} s on {training['machine']}.",
        *(["", _torch_line(training["trained_with"])] if training.get("trained_with") else []),
        *(["", training["history_note"]] if training.get("history_note") else []),
        *(["", _init_line(training)] if training.get("init_from") else []),
        *(["", _agreement_line(training)] if training.get("agreement") else []),
        *(["", _labels_line(card)] if card["metrics"].get("crowd") else []),
    ]


def _metrics_lines(card: dict) -> list[str]:
    """The accuracy table (validation, its dataset crops, the holdouts) and the label flips between margins."""
    metrics = card["metrics"]
    rows = [
        ("validation_flip_averaged", "validation, flip-averaged"),
        ("validation_single_view", "validation, single view"),
        ("validation_dataset_crops_flip_averaged", "validation, dataset crops, flip-averaged"),
        ("validation_dataset_crops_single_view", "validation, dataset crops, single view"),
        *[(name, name) for name in metrics if name.startswith("holdout_")],
    ]
    lines = [
        "## Metrics (TFLite model, as the workers run it)",
        "",
        "| set | n | accuracy | macro-F1 |",
        "|---|---|---|---|",
    ]
    for name, label in rows:
        if name in metrics:
            m = metrics[name]
            lines.append(f"| {label} | {m['n']} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} |")
    flips = metrics.get("validation_label_flips_between_margins")
    if flips:
        per = ", ".join(f"{v:.1%} at margin {m}" for m, v in flips["per_margin"].items())
        lines += [
            "",
            f"Label flips between crop margins (validation, single view, the {flips['faces']} faces the "
            f"detector found): {flips['mean']:.1%} of labels change when the margin is "
            f"{card['reframed']['margin']} ± 0.1 ({per}).",
        ]
    return lines


def _per_class_lines(val: dict) -> list[str]:
    lines = [
        "",
        "Per class (validation, flip-averaged):",
        "",
        "| emotion | precision | recall | F1 | n |",
        "|---|---|---|---|---|",
    ]
    for name, m in val["per_class"].items():
        lines.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    return lines
