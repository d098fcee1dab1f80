"""`fervi bench`: speed of the parts and of one real worker, measured in one run on this machine.

Every figure comes from frames made of the real face photos (`fervi.demo`). The worker figures run a real
`fervi worker` process against a real Redis (embedded unless FERVI_REDIS_URL is set) and time how long it
takes to publish a result for every frame already queued, so they include decoding, Redis and JPEG.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import redis

from .bus import Bus, connect
from .demo import render_frame
from .emotions import FACE_SIZE
from .protocol import Frame
from .settings import Settings
from .vision.classifier import MODEL_TFLITE, TFLiteClassifier
from .vision.detector import load_detector
from .vision.images import encode_jpeg


def machine_info() -> dict:
    info = {"machine": platform.machine(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def classifier_faces_per_s(settings: Settings, batches=(1, 8, 32), seconds: float = 3.0) -> dict[str, float]:
    """Faces/s of the TFLite classifier (one thread, flip-averaging as the workers run it)."""
    rng = np.random.default_rng(0)
    out = {}
    for batch in batches:
        classifier = TFLiteClassifier(Path(settings.models) / MODEL_TFLITE, max_batch=batch,
                                      flip_average=settings.flip_average)
        faces = rng.integers(0, 256, (batch, FACE_SIZE, FACE_SIZE), dtype=np.uint8)
        classifier.predict(faces)
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            classifier.predict(faces)
            done += batch
        out[str(batch)] = round(done / (time.perf_counter() - started), 1)
    return out


def detector_ms(settings: Settings, frames: int = 60) -> float:
    detector = load_detector(settings.detector, settings.detector_min_score)
    images = [render_frame(i, frames) for i in range(frames)]
    detector.detect(images[0])
    started = time.perf_counter()
    for image in images:
        detector.detect(image)
    return round((time.perf_counter() - started) / frames * 1000, 2)


def worker_fps(settings: Settings, redis_url: str, faces: int, frames: int = 200, workers: int = 1) -> float:
    """Frames/s of `workers` real worker processes on queued 640x480 frames with `faces` faces each."""
    camera = f"bench-{faces}f-{workers}w-{os.getpid()}"
    bus = Bus(connect(redis_url))
    bus.register_camera(camera)
    bus.ensure_group(camera)
    jpegs = [encode_jpeg(render_frame(i, frames, faces=faces), settings.jpeg_quality) for i in range(frames)]
    env = {**os.environ, "FERVI_REDIS_URL": redis_url, "FERVI_LOG_LEVEL": "WARNING"}
    procs = [subprocess.Popen([sys.executable, "-m", "fervi.cli", "worker"], env=env) for _ in range(workers)]
    try:
        # warm-up: wait until every worker has joined the camera and answered one frame each
        for i in range(workers):
            bus.add_frame(Frame(camera, time.time(), 640, 480, jpegs[i], live=False, index=i))
        _wait_results(bus, camera, workers, timeout_s=120)
        start_count = bus.redis.xlen(_results(camera))
        started = time.perf_counter()
        for i, jpeg in enumerate(jpegs):
            bus.add_frame(Frame(camera, time.time(), 640, 480, jpeg, live=False, index=i))
        _wait_results(bus, camera, start_count + frames, timeout_s=600)
        return round(frames / (time.perf_counter() - started), 2)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def _results(camera: str) -> str:
    from .bus import results_key

    return results_key(camera)


def _wait_results(bus: Bus, camera: str, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while bus.redis.xlen(_results(camera)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: {camera} has fewer than {count} results after {timeout_s}s")
        time.sleep(0.01)


def jittered_frame(index: int, total: int, rng: np.random.Generator) -> np.ndarray:
    """A demo frame with camera-like noise: sensor noise, exposure drift, JPEG at quality 70."""
    import cv2

    image = render_frame(index, total).astype(np.float32)
    image = image * (1 + 0.08 * np.sin(index / 7)) + rng.normal(0, 6, image.shape)
    encoded = encode_jpeg(np.clip(image, 0, 255).astype(np.uint8), 70)
    return cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)


def tracking_quality(settings: Settings, frames: int = 150, fps: float = 15.0) -> dict:
    """Label flips per face-second, raw vs smoothed, and tracker cost per frame, on noisy demo footage."""
    from .tracking import FaceTracker
    from .vision.pipeline import FacePipeline

    rng = np.random.default_rng(0)
    pipeline = FacePipeline.from_settings(settings)
    tracker = FaceTracker(settings.track_iou, settings.track_max_misses, settings.track_half_life_s)
    last_raw: dict[int, int] = {}
    last_smooth: dict[int, int] = {}
    flips_raw = flips_smooth = faces_seen = 0
    tracker_s = 0.0
    for i in range(frames):
        faces = pipeline.analyze([jittered_frame(i, frames, rng)])[0]
        started = time.perf_counter()
        tracked = tracker.update(i, i / fps, faces)
        tracker_s += time.perf_counter() - started
        for face in tracked.faces:
            raw, smooth = int(face.raw.argmax()), int(face.smoothed.argmax())
            flips_raw += face.track_id in last_raw and last_raw[face.track_id] != raw
            flips_smooth += face.track_id in last_smooth and last_smooth[face.track_id] != smooth
            last_raw[face.track_id], last_smooth[face.track_id] = raw, smooth
            faces_seen += 1
    face_seconds = faces_seen / fps
    return {
        "frames": frames, "fps": fps, "tracks": len(last_raw), "face_seconds": round(face_seconds, 2),
        "half_life_s": settings.track_half_life_s,
        "flips_per_face_second_raw": round(flips_raw / face_seconds, 3) if face_seconds else 0.0,
        "flips_per_face_second_smoothed": round(flips_smooth / face_seconds, 3) if face_seconds else 0.0,
        "tracker_ms_per_frame": round(tracker_s / frames * 1000, 4),
    }


def process_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def run_bench(settings: Settings, redis_url: str, quick: bool = False) -> dict:
    frames = 60 if quick else 200
    report = {
        "fervi_version": __import__("fervi").__version__,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine_info": machine_info(),
        "settings": {"detector": settings.detector, "flip_average": settings.flip_average,
                     "batch_frames": settings.batch_frames, "classifier": "tflite fp32, 1 thread"},
        "classifier_faces_per_s": classifier_faces_per_s(settings, seconds=1.0 if quick else 3.0),
        "detector_ms": detector_ms(settings, 20 if quick else 60),
        "worker_fps_1face": worker_fps(settings, redis_url, 1, frames),
        "worker_fps_4faces": worker_fps(settings, redis_url, 4, frames),
        "tracking": tracking_quality(settings, 60 if quick else 150),
    }
    try:
        report["redis_rss_mb"] = round(redis.Redis.from_url(redis_url).info("memory")["used_memory_rss"] / 2**20, 1)
    except redis.RedisError:
        pass
    return report
