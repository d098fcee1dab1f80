"""Emotion classifier runtime: the trained model from `models/`, batched, on TFLite (CPU) or Keras (GPU, on
any Keras backend).

Both back ends take (N, 48, 48) uint8 faces made by `preprocess.face_crops` and return (N, 7)
probabilities in `EMOTIONS` order. With `flip_average` the prediction is the mean over the face and its
mirror image, as evaluated in the model card.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

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
    mean: np.ndarray = (probs[:half] + probs[half:]) / 2
    return mean


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
        self._interpreters: dict[int, Any] = {}

    def _interpreter(self, batch: int) -> Any:
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


def padded_size(n: int, most: int) -> int:
    """The batch a compiled function sees for `n` faces: the next power of two, at most `most` (so a stream
    of odd batch sizes compiles log2(most) + 1 functions, not one per size)."""
    return min(most, 1 << max(0, (n - 1).bit_length()))


class KerasClassifier:
    """The Keras model on the backend Keras runs (`KERAS_BACKEND`: TensorFlow, JAX or PyTorch; a GPU machine
    often has PyTorch or JAX and no TensorFlow), for GPU workers. Inference is compiled once per padded batch
    size (`tf.function`, `jax.jit`; PyTorch runs under `inference_mode`), and the output comes back as NumPy
    through `keras.ops.convert_to_numpy` (a CUDA tensor included)."""

    name = "keras"

    def __init__(self, path: str | Path, batch_size: int = 256, flip_average: bool = True):
        import keras

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"emotion model not found: {self.path}")
        self.backend = keras.backend.backend()
        self.model = keras.models.load_model(self.path, compile=False)
        self.batch_size = batch_size
        self.flip_average = flip_average
        self._to_numpy = keras.ops.convert_to_numpy
        self._infer = self._compiled()

    def _compiled(self) -> Callable[[np.ndarray], Any]:
        model = self.model
        if self.backend == "tensorflow":
            import tensorflow as tf

            compiled: Callable[[np.ndarray], Any] = tf.function(lambda x: model(x, training=False), jit_compile=False)
            return compiled
        if self.backend == "jax":
            import jax

            trainable = [v.value for v in model.trainable_variables]
            fixed = [v.value for v in model.non_trainable_variables]
            call = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])
            return lambda x: call(trainable, fixed, x)
        if self.backend == "torch":
            import torch

            def infer(x: np.ndarray) -> Any:
                with torch.inference_mode():
                    return model(x, training=False)

            return infer
        return lambda x: model(x, training=False)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            size = padded_size(len(chunk), self.batch_size)
            if size > len(chunk):
                chunk = np.concatenate([chunk, np.zeros((size - len(chunk), *chunk.shape[1:]), chunk.dtype)])
            out.append(np.asarray(self._to_numpy(self._infer(chunk)), np.float32)[: min(len(batch) - start, size)])
        return np.concatenate(out)

    def predict(self, faces: np.ndarray) -> np.ndarray:
        if len(faces) == 0:
            return np.zeros((0, NUM_EMOTIONS), np.float32)
        batch = (_with_mirrors(faces) if self.flip_average else faces).astype(np.float32)[..., None]
        probs = self._run(batch)
        return _mean_of_mirrors(probs) if self.flip_average else probs


def gpu_available() -> bool:
    """A GPU the installed Keras backend can use. Importing a framework costs seconds and memory: only ask it
    where an NVIDIA driver is present."""
    if not Path("/dev/nvidiactl").exists():
        return False
    try:
        import keras

        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_physical_devices("GPU"))
        if backend == "jax":
            import jax

            return any(d.platform in ("gpu", "cuda") for d in jax.devices())
        if backend == "torch":
            import torch

            return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - no GPU runtime for the backend means no GPU
        return False
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
    log.info(
        "event=classifier_loaded runtime=%s backend=%s model_dir=%s flip_average=%s",
        classifier.name,
        getattr(classifier, "backend", "tflite"),
        model_dir,
        flip_average,
    )
    return classifier


MODEL_KERAS = "fervi_cnn_lstm.keras"
MODEL_TFLITE = "fervi_cnn_lstm.tflite"
