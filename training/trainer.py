"""`fervi train`: load, split honestly, over-sample and augment the training split, fit, export.

Resumable: a backup every epoch (Keras BackupAndRestore) lets `--resume` continue an interrupted run
at the epoch it reached; the learning-rate schedule is a function of the epoch so it resumes exactly.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import AUGMENTATIONS, FRAMINGS, TrainConfig
from .datasets import FaceSet, load_faces
from .splits import overlap_report, oversample_indices, split_faces

log = logging.getLogger(__name__)

FLIP_MARGIN_STEP = 0.1  # the card's label flip rate: crops at the workers' margin -0.1 and +0.1


@dataclass
class PreparedData:
    train: FaceSet
    val: FaceSet
    holdouts: dict[str, FaceSet]
    train_index: np.ndarray  # over-sampled row indices into train
    report: dict
    train_alt: FaceSet | None = None  # framing "both": the training faces in their dataset crops, row for row
    val_as_cropped: FaceSet | None = None  # reframed runs: the validation faces in their dataset crops
    # reframed runs: the validation faces cropped at the workers' margin -0.1 and +0.1 (the card's flip rate)
    val_margins: dict[float, np.ndarray] = field(default_factory=dict)
    # --agreement: the training faces in every framing it draws pairs from, (K, N, 48, 48) row for row
    train_views: np.ndarray | None = None


def prepare(config: TrainConfig) -> PreparedData:
    """Split every dataset first, then over-sample the training rows only."""
    trains: list[FaceSet] = []
    vals: list[FaceSet] = []
    holdouts: dict[str, FaceSet] = {}
    report: dict[str, Any] = {"datasets": []}
    for i, path in enumerate(config.data):
        faces = load_faces(path, skip_bad=config.skip_bad, include_contempt=config.include_contempt, votes=config.votes)
        split = split_faces(faces, config.holdout_fraction, config.seed)
        name = Path(path).name.split(".")[0]
        entry: dict[str, Any] = {
            "path": str(path),
            "rows": len(faces),
            "skipped_bad_rows": faces.skipped,
            "split": split.how,
            "train": len(split.train),
            "val": len(split.val),
            "overlap_by_pixel_hash": overlap_report({"train": split.train, "val": split.val, "test": split.test}),
        }
        if faces.votes is not None:
            entry["labels"] = "FER+ crowd votes (vote distributions; majority for metrics and over-sampling)"
            entry["notes"] = list(faces.notes)
        if split.how != "usage column":
            entry["val_subjects"] = sorted(set(split.val.groups) - {""})
        report["datasets"].append(entry)
        trains.append(split.train)
        if i == 0:
            vals.append(split.val)  # the first dataset's validation split selects the model
        else:
            holdouts[name] = split.val
    posed = np.concatenate([np.full(len(t), i > 0) for i, t in enumerate(trains)])
    train = FaceSet.concat(trains)
    if config.limit:
        posed = posed[: min(config.limit, len(train))]
        train = train.subset(np.arange(min(config.limit, len(train))))
    val = vals[0]
    if config.framing not in FRAMINGS:
        raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, not {config.framing!r}")
    train_alt = val_as_cropped = train_views = None
    val_margins: dict[float, np.ndarray] = {}
    if config.framing != "dataset":
        cropped_train, val_as_cropped = train, val
        train, val, holdouts, train_margins, val_margins = reframe_splits(
            train, val, holdouts, report, with_train_margins=config.agreement > 0
        )
        report["reframed"]["framing"] = config.framing
        if config.framing == "both":
            train_alt = cropped_train
        if config.agreement > 0:
            framings = [train.images, *train_margins.values()] + ([cropped_train.images] if train_alt else [])
            train_views = np.stack(framings)
    elif config.agreement > 0:
        train_views = train.images[None]  # one framing: the two views differ by mirroring and augmentation only
    index = oversample_indices(train.labels, config.oversample_min_share, config.seed)
    if config.posed_repeat > 1 and posed.any():
        # posed expressions (CK+) are few against FER-2013's faces; repeating them keeps them taught
        index = np.concatenate([index, *[np.flatnonzero(posed)] * (config.posed_repeat - 1)])
        report["posed_repeat"] = {"repeat": config.posed_repeat, "faces": int(posed.sum())}
    report["class_counts_before"] = train.class_counts()
    report["class_counts_after"] = train.subset(index).class_counts()
    report["overlap_train_val"] = overlap_report({"train": train, "val": val, **holdouts})
    return PreparedData(train, val, holdouts, index, report, train_alt, val_as_cropped, val_margins, train_views)


def reframe_splits(
    train: FaceSet, val: FaceSet, holdouts: dict[str, FaceSet], report: dict, with_train_margins: bool = False
):
    """Every split framed as the workers frame faces (`reframe.py`), with the default detector settings; the
    validation faces also at margin -0.1 and +0.1 (label flips), the training faces at `MARGIN_OFFSETS` too
    when `with_train_margins`."""
    from fervi.settings import Settings
    from fervi.vision.detector import load_detector

    from .agreement import MARGIN_OFFSETS
    from .reframe import reframe_set

    defaults = Settings()
    margin = defaults.face_margin
    detector = load_detector(defaults.detector, defaults.detector_min_score, defaults.detector_min_face)
    report["reframed"] = {"detector": defaults.detector, "margin": margin}
    train_offsets = MARGIN_OFFSETS if with_train_margins else ()
    if train_offsets:
        report["reframed"]["train_margins"] = [round(margin + d, 4) for d in train_offsets]
    train, report["reframed"]["train"], train_margins = reframe_set(
        train, detector, margin, "train", [margin + d for d in train_offsets]
    )
    val, report["reframed"]["val"], val_margins = reframe_set(
        val, detector, margin, "val", [margin - FLIP_MARGIN_STEP, margin + FLIP_MARGIN_STEP]
    )
    for name in list(holdouts):
        holdouts[name], report["reframed"][name], _ = reframe_set(holdouts[name], detector, margin, name)
    return train, val, holdouts, train_margins, val_margins


def lr_schedule(config: TrainConfig):
    """Linear warm-up, then cosine decay to zero at the last epoch."""

    def rate(epoch: int, _current: float = 0.0) -> float:
        if epoch < config.warmup_epochs:
            return config.learning_rate * (epoch + 1) / (config.warmup_epochs + 1)
        progress = (epoch - config.warmup_epochs) / max(1, config.epochs - config.warmup_epochs)
        return 0.5 * config.learning_rate * (1 + math.cos(math.pi * progress))

    return rate


def wall_clock(path: Path):
    """A callback adding each epoch's wall time to `path`, so resumed runs report their whole cost."""
    import keras

    class WallClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.time()

        def on_epoch_end(self, epoch, logs=None):
            spent = json.loads(path.read_text())["seconds"] if path.exists() else 0.0
            path.write_text(json.dumps({"seconds": spent + time.time() - self.started}))

    return WallClock()


def train(config: TrainConfig) -> dict:
    """Train as `config` says and export; or, by its options, pack the data for a GPU machine, import a run
    made there, or export the run in the work folder again."""
    import keras

    keras.utils.set_random_seed(config.seed)
    check_options(config)
    work = Path(config.work_dir)
    if config.device_pack:
        return pack_for_device(config, config.device_pack)
    if config.from_torch:
        return import_torch_run(config, work, config.from_torch)
    from .export import export_run

    if config.export_only:
        if not (work / "last.keras").exists():
            raise SystemExit(f"{work} holds no finished epoch to export")
        return export_run(config, prepare(config), work)
    if not config.resume and (work / "backup").exists():
        raise SystemExit(f"{work / 'backup'} holds an earlier run: pass --resume to continue it, or remove it")
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps(asdict(config), indent=2))
    data = prepare(config)
    (work / "split_report.json").write_text(json.dumps(data.report, indent=2))
    log.info(
        "event=data_ready train=%d oversampled=%d val=%d overlap=%s",
        len(data.train),
        len(data.train_index),
        len(data.val),
        data.report["overlap_train_val"],
    )
    fit(config, data, work)
    return export_run(config, data, work)


def check_options(config: TrainConfig) -> None:
    """Refuse option values and combinations that cannot train, before any data is read."""
    if config.select not in ("best", "last"):
        raise ValueError(f"select must be best or last, not {config.select!r}")
    if config.augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, not {config.augment!r}")
    if config.agreement and (config.device_pack or config.from_torch):
        raise SystemExit(
            "--agreement trains here (Keras) only: training/gpu_train.py does not train on pairs of "
            "framings, so it cannot go with --device-pack or --from-torch"
        )


def pack_for_device(config: TrainConfig, folder: str) -> dict:
    """`--device-pack`: the split, over-sampled training data for training/gpu_train.py, written to `folder`."""
    from .device_pack import write_pack

    data = prepare(config)
    if data.train.votes is not None:
        raise SystemExit(
            "--device-pack packs one label per face: training/gpu_train.py does not learn vote "
            "distributions yet; pass --no-votes to pack the CSV's own labels"
        )
    manifest = write_pack(data, folder)
    log.info("event=device_pack_written folder=%s sets=%s", folder, manifest["sets"])
    return {"device_pack": folder, "sets": manifest["sets"]}


def fit(config: TrainConfig, data: PreparedData, work: Path) -> None:
    """Fit the model on `data`, with a backup, the last and the best checkpoint, and the history in `work`."""
    import keras

    from .architectures import build

    model = build(config.model)
    if config.init:
        model.set_weights(keras.models.load_model(config.init, compile=False).get_weights())
        log.info("event=weights_loaded from=%s", config.init)
    optimizer = (
        keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay)
        if config.weight_decay
        else keras.optimizers.Adam(config.learning_rate)
    )
    loss, batches, validation = training_batches(config, data)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    callbacks = [
        keras.callbacks.BackupAndRestore(str(work / "backup")),
        keras.callbacks.LearningRateScheduler(lr_schedule(config)),
        keras.callbacks.ModelCheckpoint(str(work / "last.keras")),
        keras.callbacks.ModelCheckpoint(str(work / "best.keras"), monitor="val_accuracy", save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=config.patience),
        keras.callbacks.CSVLogger(str(work / "history.csv"), append=True),
        wall_clock(work / "wall_seconds.json"),
    ]
    model.fit(
        batches,
        validation_data=validation,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=1 if sys.stderr.isatty() else 2,
    )


def training_batches(config: TrainConfig, data: PreparedData) -> tuple[Any, Any, Any]:
    """The loss, the training batches and the validation batches: pairs of framings with `--agreement`,
    single augmented faces without."""
    import keras

    from .augment import eval_pipeline, train_pipeline

    if data.train_views is not None:  # prepare() draws the views exactly when config.agreement > 0
        from .agreement import CrossEntropyWithAgreement, PairedViews, paired_eval_batches
        from .augment import augmenter

        batches = PairedViews(
            data.train_views,
            data.train.targets(),
            data.train_index,
            config.batch_size,
            config.seed,
            augmenter(config.seed) if config.augment == "full" else None,
        )
        log.info("event=agreement weight=%g framings=%d", config.agreement, len(data.train_views))
        return (
            CrossEntropyWithAgreement(config.agreement, config.label_smoothing),
            batches,
            paired_eval_batches(data.val.images, data.val.targets(), 128),
        )
    alternate = data.train_alt.images[data.train_index] if data.train_alt is not None else None
    batches = train_pipeline(
        data.train.images[data.train_index],
        data.train.targets()[data.train_index],
        config.batch_size,
        config.seed,
        config.augment,
        alternate,
    )
    return (
        keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        batches,
        eval_pipeline(data.val.images, data.val.targets(), 256),
    )


def import_torch_run(config: TrainConfig, work: Path, run_file: str) -> dict:
    """Turn a `training/gpu_train.py` run into this run's checkpoints and history, then export it as usual.

    The Keras model gets the mirror's weights (`torch_port`); export then measures the TFLite model here, on
    the same validation and holdout faces, so the card's figures never come from the other machine.
    """
    import pandas as pd

    from .architectures import build
    from .export import export_run
    from .torch_port import load_into

    run = np.load(run_file)
    meta = json.loads(str(run["meta"]))
    work.mkdir(parents=True, exist_ok=True)
    for which in ("last", "best"):
        model = build(config.model)
        load_into(model, {k.split("/", 1)[1]: run[k] for k in run.files if k.startswith(f"{which}/")})
        model.save(work / f"{which}.keras")
    history = pd.DataFrame(meta["history"]).rename(columns={"val_accuracy_flip": "val_accuracy_flip_averaged"})
    history.to_csv(work / "history.csv", index=False)
    (work / "wall_seconds.json").write_text(json.dumps({"seconds": meta["wall_seconds"]}))
    run_info = {k: v for k, v in meta.items() if k != "history"}
    (work / "torch_run.json").write_text(json.dumps(run_info, indent=2))
    config.epochs = meta["epochs_run"]
    config.batch_size = meta["batch"]
    config.learning_rate = meta["lr"]
    config.label_smoothing = meta["smoothing"]
    config.augment = "full"
    config.extra = {"trained_with": run_info}
    log.info(
        "event=torch_run_imported file=%s recipe=%s epochs=%d", config.from_torch, meta["recipe"], meta["epochs_run"]
    )
    return export_run(config, prepare(config), work)
