"""Emotion classifier runtime: the trained model from `models/`, batched, on TFLite (CPU) or Keras (GPU).

Both back ends take (N, 48, 48) uint8 faces made by `preprocess.face_crops` and return (N, 7)
probabilities in `EMOTIONS` order. With `flip_average` the prediction is the mean over the face and its
mirror image, as evaluated in the model card.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from fervi.emotions import FACE_SIZE, NUM_EMOTIONS

from .tflite import load_interpreter

log = logging.getLogger(__name__)


class EmotionClassifier(Protocol):
    name: str

    def predict(self, faces: np.ndarray) -> np.ndarray: ...


def _with_mirrors(faces: np.ndarray) -> np.ndarray:
    return np.concatenate([faces, faces[:, :, ::-1]])


def _mean_of_mirrors(probs: np.ndarray) -> np.ndarray:
    half = len(probs) // 2
    return (probs[:half] + probs[half:]) / 2


def batch_sizes(n: int, max_batch: int) -> list[int]:
    """Full batches, then the rest as powers of two (23 -> 16, 4, 2, 1): no padding, and a worker holds
    at most one interpreter per power of two, so its memory stops growing after the first minutes."""
    sizes = [max_batch] * (n // max_batch)
    rest = n % max_batch
    bit = 1 << max(0, rest.bit_length() - 1)
    while rest:
        if rest & bit:
            sizes.append(bit)
            rest -= bit
        bit >>= 1
    return sizes


class TFLiteClassifier:
    """TFLite fp32 model; one interpreter per batch size used (see `batch_sizes`), so a batch never
    re-allocates tensors."""

    name = "tflite"

    def __init__(self, path: str | Path, max_batch: int = 32, flip_average: bool = True, threads: int = 1):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"emotion model not found: {self.path}")
        self.max_batch = max_batch
        self.flip_average = flip_average
        self.threads = threads
        self._model_bytes = self.path.read_bytes()
        self._interpreters: dict[int, object] = {}

    def _interpreter(self, batch: int):
        if batch not in self._interpreters:
            interpreter = load_interpreter(self._model_bytes, self.threads)
            index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(index, [batch, FACE_SIZE, FACE_SIZE, 1], strict=False)
            interpreter.allocate_tensors()
            self._interpreters[batch] = interpreter
        return self._interpreters[batch]

    def _run(self, faces: np.ndarray) -> np.ndarray:
        out, start = [], 0
        for size in batch_sizes(len(faces), self.max_batch):
            chunk = faces[start : start + size]
            start += size
            interpreter = self._interpreter(size)
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], chunk.astype(np.float32)[..., None])
            interpreter.invoke()
            out.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy())
        return np.concatenate(out)

    def predict(self, faces: np.ndarray) -> np.ndarray:
        if len(faces) == 0:
            return np.zeros((0, NUM_EMOTIONS), np.float32)
        if not self.flip_average:
            return self._run(faces)
        return _mean_of_mirrors(self._run(_with_mirrors(faces)))


class KerasClassifier:
    """The Keras model, for GPU workers (large batches) and for checking TFLite against it."""

    name = "keras"

    def __init__(self, path: str | Path, batch_size: int = 256, flip_average: bool = True):
        import keras

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"emotion model not found: {self.path}")
        self.model = keras.models.load_model(self.path, compile=False)
        self.batch_size = batch_size
        self.flip_average = flip_average

    def predict(self, faces: np.ndarray) -> np.ndarray:
        if len(faces) == 0:
            return np.zeros((0, NUM_EMOTIONS), np.float32)
        batch = (_with_mirrors(faces) if self.flip_average else faces).astype(np.float32)[..., None]
        probs = np.concatenate(
            [np.asarray(self.model(batch[i : i + self.batch_size], training=False)) for i in range(0, len(batch), self.batch_size)]
        )
        return _mean_of_mirrors(probs) if self.flip_average else probs


def gpu_available() -> bool:
    # Importing TensorFlow costs seconds and memory: only ask it where an NVIDIA driver is present.
    if not Path("/dev/nvidiactl").exists():
        return False
    try:
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    except Exception:  # noqa: BLE001 - no TensorFlow GPU runtime means no GPU
        return False


def load_classifier(
    model_dir: str | Path, device: str = "auto", flip_average: bool = True, max_batch: int = 32
) -> EmotionClassifier:
    """The classifier for this process: Keras on a GPU when one is seen (device auto|gpu), else TFLite."""
    model_dir = Path(model_dir)
    if device not in ("auto", "cpu", "gpu"):
        raise ValueError(f"FERVI_DEVICE must be auto, cpu or gpu, not {device!r}")
    use_gpu = device == "gpu" or (device == "auto" and gpu_available())
    if use_gpu:
        classifier: EmotionClassifier = KerasClassifier(model_dir / MODEL_KERAS, flip_average=flip_average)
    else:
        classifier = TFLiteClassifier(model_dir / MODEL_TFLITE, max_batch=max_batch, flip_average=flip_average)
    log.info("event=classifier_loaded backend=%s model_dir=%s flip_average=%s", classifier.name, model_dir, flip_average)
    return classifier


MODEL_KERAS = "fervi_cnn_lstm.keras"
MODEL_TFLITE = "fervi_cnn_lstm.tflite"
