"""Train the CNN-LSTM on a lent GPU machine, which has PyTorch but no TensorFlow.

    fervi train DATA... --device-pack pack/            # here: split, over-sample, pack (lossless WebP)
    python -m fervi.training.gpu_train --pack pack --out $OUT --minutes 6 --recipes sgd,adamw   # there
    fervi train DATA... --from-torch $OUT/sgd.npz      # here: load into Keras, evaluate, export to models/

`CnnLstm` mirrors `architectures.cnn_lstm` layer for layer (457,863 parameters; `torch_port` maps the
weights). The faces stay on the GPU and are augmented there (flip, rotation, zoom, shift, brightness,
contrast, random erasing: training split only). Each recipe trains in its own process for a time budget:
the first epoch's time fixes the epoch count, so the cosine schedule ends at zero when the budget does.
Every epoch rewrites `<recipe>.npz` (last and best weights, history), so a run cut off still returns
what it reached. Needs: torch, numpy, opencv (for the pack).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from fervi.training.device_pack import read_pack
from torch import nn

# name -> recipe. Augmentation: degrees, zoom, shift (fraction of the side), erase probability.
_AUGMENT = dict(degrees=10, zoom=0.1, shift=0.1, erase=0.25)
_AUGMENT_STRONG = dict(degrees=15, zoom=0.15, shift=0.12, erase=0.5)
_SGD = dict(optimizer="sgd", lr=0.05, weight_decay=5e-4, batch=128, smoothing=0.1)
_ADAMW = dict(optimizer="adamw", lr=2e-3, weight_decay=0.05, batch=128, smoothing=0.1)
RECIPES: dict[str, dict] = {
    "sgd": {**_SGD, **_AUGMENT, "seed": 1},
    "sgd_strong": {**_SGD, **_AUGMENT_STRONG, "seed": 2},
    "sgd_b64": {**_SGD, **_AUGMENT, "lr": 0.03, "batch": 64, "seed": 3},
    "adamw": {**_ADAMW, **_AUGMENT, "seed": 4},
    "adamw_strong": {**_ADAMW, **_AUGMENT_STRONG, "seed": 5},
    "finetune": {**_ADAMW, **_AUGMENT, "lr": 5e-4, "seed": 6, "init": True},
}


class ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, padding: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=padding)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)  # Keras's epsilon

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class CnnLstm(nn.Module):
    """`architectures.cnn_lstm` in PyTorch; returns logits (Keras's last layer adds the softmax)."""

    def __init__(self):
        super().__init__()
        self.block1, self.block2 = ConvBN(1, 32, 0), ConvBN(32, 64, 1)
        self.block3, self.block4 = ConvBN(64, 64, 0), ConvBN(64, 128, 1)
        self.block5 = ConvBN(128, 128, 0)
        self.lstm1 = nn.LSTM(128, 128, batch_first=True)
        self.lstm2 = nn.LSTM(64, 64, batch_first=True)
        self.dense = nn.Linear(64, 200)
        self.dropout = nn.Dropout(0.6)
        self.emotion = nn.Linear(200, 7)

    def forward(self, x):  # (N, 1, 48, 48) in 0..255
        x = self.block2(self.block1(x / 255.0))
        x = F.max_pool2d(x, 2)
        x = F.max_pool2d(self.block4(self.block3(x)), 2)
        x = F.max_pool2d(self.block5(x), 2)  # (N, 128, 4, 4)
        n = x.shape[0]
        x = x.permute(0, 2, 3, 1).reshape(n, 16, 128)  # Keras's Reshape of NHWC
        _, (h, _) = self.lstm1(x)
        _, (h, _) = self.lstm2(h[-1].reshape(n, 2, 64))
        return self.emotion(self.dropout(F.relu(self.dense(h[-1]))))


def augment(x: torch.Tensor, r: dict, gen: torch.Generator) -> torch.Tensor:
    """Random flip, rotation, zoom, shift, brightness, contrast and erasing on a (N, 1, 48, 48) batch."""
    n, dev = x.shape[0], x.device

    def uniform(lo, hi):
        return torch.rand(n, device=dev, generator=gen) * (hi - lo) + lo

    angle = uniform(-r["degrees"], r["degrees"]) * math.pi / 180
    scale = uniform(1 - r["zoom"], 1 + r["zoom"])
    flip = torch.where(torch.rand(n, device=dev, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, uniform(-2 * r["shift"], 2 * r["shift"])], 1),
            torch.stack([sin * flip, cos, uniform(-2 * r["shift"], 2 * r["shift"])], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * uniform(0.8, 1.2).view(n, 1, 1, 1) + mean + uniform(-0.15, 0.15).view(n, 1, 1, 1) * 255
    if r["erase"]:
        area = uniform(0.02, 0.2) * 48 * 48
        aspect = torch.exp(uniform(math.log(0.3), math.log(3.3)))
        h = (area * aspect).sqrt().clamp(4, 40)
        w = (area / aspect).sqrt().clamp(4, 40)
        top, left = uniform(0, 1) * (48 - h), uniform(0, 1) * (48 - w)
        ys = torch.arange(48, device=dev).view(1, 48, 1)
        xs = torch.arange(48, device=dev).view(1, 1, 48)
        box = (
            (ys >= top.view(n, 1, 1))
            & (ys < (top + h).view(n, 1, 1))
            & (xs >= left.view(n, 1, 1))
            & (xs < (left + w).view(n, 1, 1))
        )
        box &= (torch.rand(n, device=dev, generator=gen) < r["erase"]).view(n, 1, 1)
        fill = torch.rand(n, 1, 1, device=dev, generator=gen) * 255
        x = torch.where(box.unsqueeze(1), fill.unsqueeze(1), x)
    return x.clamp(0, 255)


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(single view, flip-averaged) accuracy."""
    model.eval()
    single, flipped = [], []
    for start in range(0, len(images), 1024):
        x = images[start : start + 1024]
        p = F.softmax(model(x), 1)
        single.append(p)
        flipped.append((p + F.softmax(model(x.flip(3)), 1)) / 2)
    model.train()
    single, flipped = torch.cat(single), torch.cat(flipped)
    return (float((single.argmax(1) == labels).float().mean()), float((flipped.argmax(1) == labels).float().mean()))


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv and dense weights only: not on biases, BatchNorm or the LSTMs (`weight_ih_l0`...)."""
    decay: list[nn.Parameter] = []
    rest: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        (decay if name.endswith("weight") and ".bn." not in name else rest).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _state(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items() if "num_batches" not in k}


def _save(path: Path, last: dict, best: dict, meta: dict) -> None:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        meta=np.array(json.dumps(meta)),
        **{f"last/{k}": v for k, v in last.items()},
        **{f"best/{k}": v for k, v in best.items()},
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)


class _TrainingFaces(NamedTuple):
    faces: torch.Tensor  # (N, 48, 48) uint8, on the device
    alternate: torch.Tensor | None  # framing "both": the same faces in their dataset crops, row for row
    labels: torch.Tensor
    index: torch.Tensor  # over-sampled rows of the training split


def _load_pack(pack: Path, dev: torch.device) -> tuple[_TrainingFaces, torch.Tensor, torch.Tensor]:
    """The pack's training faces, and its validation faces and labels, on `dev`."""
    data = read_pack(pack)
    train = _TrainingFaces(
        torch.from_numpy(data["train"]).to(dev),
        torch.from_numpy(data["train_alt"]).to(dev) if "train_alt" in data else None,
        torch.from_numpy(data["train_labels"]).to(dev),
        torch.from_numpy(data["train_index"]).to(dev),
    )
    return (
        train,
        torch.from_numpy(data["val"]).to(dev).float().unsqueeze(1),
        torch.from_numpy(data["val_labels"]).to(dev),
    )


def _optimizer(model: nn.Module, r: dict) -> torch.optim.Optimizer:
    groups = _param_groups(model, r["weight_decay"])
    if r["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=r["lr"], momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=r["lr"])


def _rate(r: dict, step: int, warmup: int, total: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to zero at step `total`."""
    if step < warmup:
        return r["lr"] * (step + 1) / warmup
    return 0.5 * r["lr"] * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def _train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    train: _TrainingFaces,
    r: dict,
    gen: torch.Generator,
    step: int,
    warmup: int,
    total: int,
) -> tuple[float, float, int]:
    """One pass over the over-sampled rows in a new order: the mean loss, the last rate and the step reached."""
    dev = train.index.device
    order = train.index[torch.randperm(len(train.index), device=dev, generator=gen)]
    steps = len(train.index) // r["batch"]
    loss_sum = torch.zeros((), device=dev)
    lr = r["lr"]
    for b in range(steps):
        lr = _rate(r, step, warmup, total)
        for g in opt.param_groups:
            g["lr"] = lr
        rows = order[b * r["batch"] : (b + 1) * r["batch"]]
        faces = train.faces[rows]
        if train.alternate is not None:  # each face in its dataset crop or the detector's, drawn anew each time
            other = torch.rand(len(rows), device=dev, generator=gen) < 0.5
            faces = torch.where(other[:, None, None], train.alternate[rows], faces)
        x = augment(faces.float().unsqueeze(1), r, gen)
        loss = F.cross_entropy(model(x), train.labels[rows], label_smoothing=r["smoothing"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)  # LSTMs under SGD: no exploding step
        opt.step()
        loss_sum += loss.detach()
        step += 1
    return float(loss_sum) / steps, lr, step


def train_recipe(name: str, pack: Path, out: Path, minutes: float, init: Path | None) -> None:
    """Train recipe `name` on the pack for about `minutes`, rewriting `out/<name>.npz` every epoch."""
    r = RECIPES[name]
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(r["seed"])
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    train, val_x, val_y = _load_pack(pack, dev)
    model = CnnLstm().to(dev)
    if r.get("init") and init:
        weights = np.load(init)
        model.load_state_dict({k: torch.from_numpy(weights[k]) for k in weights.files}, strict=False)
    opt = _optimizer(model, r)
    gen = torch.Generator(device=dev).manual_seed(r["seed"])
    steps_per_epoch = len(train.index) // r["batch"]
    warmup, epochs = 2 * steps_per_epoch, None
    history: list[dict] = []
    best_acc, best_state, step = -1.0, {}, 0
    started = time.time()
    for epoch in range(10_000):
        epoch_start = time.time()
        total = (epochs or 1000) * steps_per_epoch
        loss, lr, step = _train_epoch(model, opt, train, r, gen, step, warmup, total)
        single, flipped = accuracy(model, val_x, val_y)
        if epochs is None:  # the first epoch's time sets how many fit the budget
            spent = time.time() - epoch_start
            epochs = max(3, int(minutes * 60 / (spent * 1.05)))
        seconds = round(time.time() - started, 1)
        history.append(
            {
                "epoch": epoch,
                "loss": round(loss, 4),
                "lr": lr,
                "val_accuracy": round(single, 4),
                "val_accuracy_flip": round(flipped, 4),
                "seconds": seconds,
            }
        )
        last_state = _state(model)
        if single > best_acc:
            best_acc, best_state = single, last_state
        meta = {
            "recipe": name,
            **r,
            "minutes": minutes,
            "epochs_planned": epochs,
            "epochs_run": epoch + 1,
            "history": history,
            "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
            "torch": torch.__version__,
            "wall_seconds": round(time.time() - started, 1),
            "train_rows": int(len(train.index)),
            "steps_per_epoch": steps_per_epoch,
        }
        _save(out / f"{name}.npz", last_state, best_state, meta)
        if epoch % 10 == 0 or epoch + 1 >= epochs:
            print(
                f"{name} epoch {epoch + 1}/{epochs} loss {loss:.3f} val {single:.4f} flip {flipped:.4f} {seconds:.0f}s",
                flush=True,
            )
        if epoch + 1 >= epochs:
            break


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", type=Path, required=True, help="folder written by fervi train --device-pack")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=6.0, help="training budget per recipe")
    parser.add_argument("--recipes", default="sgd", help=f"comma-separated, run in parallel: {', '.join(RECIPES)}")
    parser.add_argument("--init", type=Path, help="npz of PyTorch-named weights for recipes with init")
    args = parser.parse_args(argv)
    names = args.recipes.split(",")
    unknown = set(names) - set(RECIPES)
    if unknown:
        parser.error(f"unknown recipe(s) {', '.join(sorted(unknown))}")
    args.out.mkdir(parents=True, exist_ok=True)
    if len(names) == 1:
        train_recipe(names[0], args.pack, args.out, args.minutes, args.init)
        return
    base = [
        sys.executable,
        "-m",
        "fervi.training.gpu_train",
        "--pack",
        str(args.pack),
        "--out",
        str(args.out),
        "--minutes",
        str(args.minutes),
    ] + (["--init", str(args.init)] if args.init else [])
    procs = [subprocess.Popen(base + ["--recipes", name]) for name in names]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"recipes failed: {dict(zip(names, codes, strict=True))}")


if __name__ == "__main__":
    main()
