"""The GPU worker's classifier path, tested on CPU: Keras on the installed backend (TensorFlow here; JAX or
PyTorch where installed), compiled once per padded batch size, giving the labels TFLite gives on real faces."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from fervi.demo import face_photos
from fervi.settings import default_model_dir
from fervi.vision.classifier import MODEL_KERAS, MODEL_TFLITE, KerasClassifier, TFLiteClassifier, padded_size
from fervi.vision.detector import load_detector
from fervi.vision.preprocess import face_crops


def test_batches_are_padded_to_powers_of_two_up_to_the_most():
    assert [padded_size(n, 256) for n in (1, 2, 3, 5, 33, 256)] == [1, 2, 4, 8, 64, 256]
    assert padded_size(300, 256) == 256


def _real_faces(count: int) -> np.ndarray:
    """Real faces (the astronaut and Grace Hopper), at several crop margins and mirrored: `count` crops."""
    detector = load_detector("blazeface")
    crops = []
    for photo in face_photos():
        boxes, _scores = detector.detect(photo)
        for margin in (0.05, 0.15, 0.25, 0.35, 0.45):
            crops.append(face_crops(photo, boxes[:1], margin)[0])
    crops += [c[:, ::-1] for c in crops]
    return np.stack([crops[i % len(crops)] for i in range(count)])


def test_keras_on_its_backend_gives_the_labels_tflite_gives():
    models = default_model_dir()
    faces = _real_faces(45)
    lite = TFLiteClassifier(f"{models}/{MODEL_TFLITE}", flip_average=False).predict(faces)
    keras_model = KerasClassifier(f"{models}/{MODEL_KERAS}", batch_size=16, flip_average=False)
    for n in (1, 3, 16, 45):  # padded (3 -> 4), exact, and over the batch (45 -> 16 + 16 + 16 padded)
        probs = keras_model.predict(faces[:n])
        assert probs.shape == (n, 7)
        assert (probs.argmax(1) == lite[:n].argmax(1)).all()
        assert np.abs(probs - lite[:n]).max() < 1e-3


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_keras_backends_when_installed(backend):
    """A GPU machine often has JAX or PyTorch and no TensorFlow: the same path on those backends."""
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed here (the TensorFlow backend is tested above)")
    script = (
        "import numpy as np; from fervi.settings import default_model_dir; "
        "from fervi.vision.classifier import KerasClassifier, TFLiteClassifier; "
        "from tests.test_gpu_classifier import _real_faces; m = default_model_dir(); f = _real_faces(20); "
        f"k = KerasClassifier(m + '/fervi_cnn_lstm.keras', batch_size=8); assert k.backend == {backend!r}, k.backend; "
        "t = TFLiteClassifier(m + '/fervi_cnn_lstm.tflite'); "
        "assert (k.predict(f).argmax(1) == t.predict(f).argmax(1)).all(); print('ok')"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        env={**__import__("os").environ, "KERAS_BACKEND": backend},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]


class _StubPipeline:
    """Counts the frames of each analyse call; its classifier's name picks the worker's batching."""

    def __init__(self, classifier: str):
        from types import SimpleNamespace

        self.classifier = SimpleNamespace(name=classifier)
        self.detector = SimpleNamespace(name="stub")
        self.calls: list[int] = []

    def analyze(self, images, timing=None, keys=None):
        from fervi.faces import Faces

        self.calls.append(len(images))
        return [Faces.detected(np.zeros((0, 4)), np.zeros(0)).classified(np.zeros((0, 7))) for _ in images]


@pytest.mark.parametrize("classifier, frames", [("tflite", 8), ("keras", 48)])
def test_a_gpu_worker_gathers_frames_of_every_camera_into_one_batch(redis_url, classifier, frames):
    """FERVI_GPU_MAX_WAIT_MS: a GPU worker reads on for a few ms to fill a batch (up to
    FERVI_GPU_BATCH_FRAMES) across cameras; a CPU worker takes FERVI_BATCH_FRAMES at a time."""
    import time

    import redis
    from fervi.workers.worker import Worker

    from fervi.bus import Bus
    from fervi.protocol import Frame
    from fervi.settings import Settings
    from fervi.vision.images import encode_jpeg

    bus = Bus(redis.Redis.from_url(redis_url))
    jpeg = encode_jpeg(np.full((48, 64, 3), 90, np.uint8), 80)
    for camera in ("north", "south"):
        bus.register_camera(camera)
        bus.ensure_group(camera)
        for i in range(30):
            bus.add_frame(Frame(camera, time.time(), 64, 48, jpeg, False, i), 0)
    settings = Settings(batch_frames=8, gpu_batch_frames=48, gpu_max_wait_ms=500, block_ms=100)
    pipeline = _StubPipeline(classifier)
    worker = Worker(settings, redis_url, pipeline, name=f"test-{classifier}")
    assert worker.step() == frames
    assert pipeline.calls == [frames]  # one classifier call for the whole batch, both cameras in it


def test_a_detector_pool_finds_what_one_detector_finds_keeping_each_cameras_order():
    """FERVI_DETECT_THREADS: detection on several threads, each camera on its own detector in frame order
    (the multiscale detector follows a camera's faces between full scans)."""
    from fervi.demo import render_frame
    from fervi.vision.pool import DetectorPool

    def make():
        return load_detector("multiscale", full_scan_every=3)

    frames = [render_frame(i, 30) for i in range(12)]
    streams = [(("east", "west", "north")[i % 3], i // 3) for i in range(12)]
    one = make()
    expected = [one.detect(f, s, p) for f, (s, p) in zip(frames, streams, strict=True)]
    pool = DetectorPool(make, 3)
    got = pool.detect_many(frames, streams)
    assert len({pool._index(s, 0) for s, _ in streams}) >= 2  # the cameras are spread over the threads
    for (boxes, _scores), (want_boxes, _want_scores) in zip(got, expected, strict=True):
        assert len(boxes) == len(want_boxes) == 2
        assert np.abs(np.asarray(boxes) - np.asarray(want_boxes)).max() < 1e-3
