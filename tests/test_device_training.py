"""Training on a lent GPU: the data pack travels losslessly, and PyTorch-named weights become the Keras model."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from fervi.training.architectures import build
from fervi.training.datasets import load_ckplus, load_fer_csv
from fervi.training.device_pack import read_pack, write_pack
from fervi.training.torch_port import keras_layer_weights, layers_of, load_into, torch_state

from fervi.settings import default_model_dir
from fervi.vision.classifier import MODEL_KERAS, MODEL_TFLITE, TFLiteClassifier

from .helpers_training import train


def test_pack_returns_the_same_pixels_labels_and_oversampling(fer_csv, ckplus_dir, tmp_path):
    faces = load_fer_csv(fer_csv, limit=700)
    data = SimpleNamespace(
        train=faces.subset(np.arange(600)),
        val=faces.subset(np.arange(600, 700)),
        holdouts={"ckplus48": load_ckplus(ckplus_dir)},
        train_index=np.r_[np.arange(600), np.arange(20)],
        report={"note": "test"},
        train_alt=faces.subset(np.arange(100, 700)),
    )  # framing "both": the other framing
    write_pack(data, tmp_path / "pack")
    back = read_pack(tmp_path / "pack")
    assert np.array_equal(back["train"], data.train.images) and np.array_equal(back["val"], data.val.images)
    assert np.array_equal(back["train_alt"], data.train_alt.images)
    assert np.array_equal(back["holdout_ckplus48"], data.holdouts["ckplus48"].images)
    assert np.array_equal(back["train_labels"], data.train.labels)
    assert np.array_equal(back["train_index"], data.train_index)

    manifest = json.loads((tmp_path / "pack" / "pack.json").read_text())
    manifest["pixel_sums"]["val"] += 1
    (tmp_path / "pack" / "pack.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="pixels differ"):
        read_pack(tmp_path / "pack")


def test_weight_mapping_round_trips():
    model = build("cnn_lstm")
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])
    layers = layers_of(model)
    back = keras_layer_weights(torch_state(layers))
    assert set(back) == set(layers)
    for name in layers:
        for a, b in zip(layers[name], back[name], strict=True):
            assert a.shape == b.shape and np.array_equal(a, b), name


def test_torch_mirror_computes_what_keras_computes():
    torch = pytest.importorskip("torch")  # not a FERVI dependency: the GPU machines have it
    from fervi.training.gpu_train import CnnLstm

    torch.manual_seed(0)
    mirror = CnnLstm().eval()
    with torch.no_grad():
        for module in mirror.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    x = np.random.default_rng(1).uniform(0, 255, (4, 1, 48, 48)).astype(np.float32)
    with torch.no_grad():
        expected = torch.softmax(mirror(torch.from_numpy(x)), 1).numpy()
    model = build("cnn_lstm")
    load_into(model, {k: v.numpy() for k, v in mirror.state_dict().items() if "num_batches" not in k})
    assert np.abs(model.predict(x.transpose(0, 2, 3, 1), verbose=0) - expected).max() < 1e-5


def test_from_torch_exports_the_run_it_was_given(ckplus_dir, tmp_path):
    """A run holding the shipped model's weights, imported, exports a TFLite model that predicts the same."""
    import keras

    shipped = keras.models.load_model(f"{default_model_dir()}/{MODEL_KERAS}", compile=False)
    state = torch_state(layers_of(shipped))
    meta = {
        "recipe": "adamw",
        "optimizer": "adamw",
        "lr": 2e-3,
        "weight_decay": 0.05,
        "batch": 128,
        "smoothing": 0.1,
        "degrees": 10,
        "zoom": 0.1,
        "shift": 0.1,
        "erase": 0.25,
        "minutes": 1.0,
        "epochs_run": 2,
        "wall_seconds": 12.0,
        "device": "test device",
        "torch": "test",
        "train_rows": 10,
        "history": [
            {"epoch": 0, "loss": 1.5, "val_accuracy": 0.5, "val_accuracy_flip": 0.5},
            {"epoch": 1, "loss": 1.2, "val_accuracy": 0.6, "val_accuracy_flip": 0.6},
        ],
    }
    np.savez(
        tmp_path / "run.npz",
        meta=np.array(json.dumps(meta)),
        **{f"last/{k}": v for k, v in state.items()},
        **{f"best/{k}": v for k, v in state.items()},
    )
    run = train(
        data=ckplus_dir,
        from_torch=tmp_path / "run.npz",
        select="last",
        out=tmp_path / "models",
        work_dir=tmp_path / "work",
    )
    training = run.card["training"]
    assert training["trained_with"]["device"] == "test device" and training["epochs_run"] == 2
    assert "training/gpu_train.py" in run.card_text
    faces = load_ckplus(ckplus_dir).images[:64]
    ours = TFLiteClassifier(run.out / MODEL_TFLITE, flip_average=False).predict(faces)
    theirs = TFLiteClassifier(f"{default_model_dir()}/{MODEL_TFLITE}", flip_average=False).predict(faces)
    assert np.abs(ours - theirs).max() < 1e-5
