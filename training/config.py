"""What a training run is given: one dataclass whose defaults are the defaults of `fervi train` too (the
command line reads them from here, so they are written once). Light: importing it loads no framework."""

from __future__ import annotations

from dataclasses import dataclass, field

FRAMINGS = ("both", "detector", "dataset")
AUGMENTATIONS = ("full", "flip", "none")


@dataclass
class TrainConfig:
    data: list[str]
    model: str = "cnn_lstm"
    epochs: int = 48
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    oversample_min_share: float = 0.15
    augment: str = "full"  # training-split augmentation: "full" (flip, rotation, zoom, shift, light), "flip", "none"
    weight_decay: float = 0.0  # AdamW's decoupled weight decay (0: Adam)
    patience: int = 10
    seed: int = 42
    holdout_fraction: float = 0.2
    out: str = "models"
    work_dir: str = ".fervi/train"
    resume: bool = False
    skip_bad: bool = False
    include_contempt: bool = False
    limit: int | None = None  # first N training faces only (smoke runs)
    init: str | None = None  # start from this trained model's weights (continue or fine-tune)
    select: str = "best"  # exported checkpoint: "best" validation accuracy (single view) or the "last" epoch
    export_only: bool = False  # export the run in work_dir again without training
    note: str = ""  # how the run went (resumed, shared machine...), printed in the model card
    device_pack: str | None = None  # write the prepared data here for training/gpu_train.py, then stop
    from_torch: str | None = None  # import a gpu_train.py run (its .npz) instead of training here
    # "detector": every split framed as the workers frame faces (detector box + crop margin); "both": that, and
    # each training face shown in either framing at random, its dataset crop or the detector's, every epoch;
    # "dataset": the datasets' own crops only
    framing: str = "both"
    # > 0: every batch shows each training face in two framings (crop margins around the detector's box, its
    # dataset crop) and the loss adds this weight x the Jensen-Shannon divergence of their predictions
    agreement: float = 0.0
    # FER+ crowd votes for a FER-2013 CSV: "auto" (the votes file beside the CSV, if there is one), a path, or
    # None (the CSV's own single labels). With votes the model learns each face's vote distribution.
    votes: str | None = "auto"
    # each training face of the posed datasets (every --data after the first: CK+) shown this many times an epoch
    posed_repeat: int = 1
    extra: dict = field(default_factory=dict)
