"""`fervi bench`: speed of the parts and of one real worker, measured in one run on this machine.

Every figure comes from frames made of the real face photos (`fervi.demo`). The worker figures run a real
`fervi worker` process against a real Redis (embedded unless FERVI_REDIS_URL is set) and time how long it
takes to publish a result for every frame already queued, so they include decoding, Redis and JPEG.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fervi.bus import Bus, RedisError, connect
from fervi.demo import render_frame
from fervi.emotions import FACE_SIZE
from fervi.protocol import Frame
from fervi.service import spawn, stop_processes
from fervi.settings import Settings, load_settings
from fervi.vision.classifier import MODEL_TFLITE, TFLiteClassifier
from fervi.vision.detector import load_detector
from fervi.vision.images import encode_jpeg


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


def classifier_faces_per_s(
    settings: Settings, batches=(1, 8, 32), seconds: float = 3.0, flip_average: bool | None = None
) -> dict[str, float]:
    """Faces/s of the TFLite classifier on one thread, in the workers' view mode (FERVI_FLIP_AVERAGE) unless
    `flip_average` says otherwise."""
    flip = settings.flip_average if flip_average is None else flip_average
    return faces_per_s(
        lambda batch: TFLiteClassifier(Path(settings.models) / MODEL_TFLITE, max_batch=batch, flip_average=flip),
        batches,
        seconds,
    )


def faces_per_s(make_classifier, batches, seconds: float) -> dict[str, float]:
    """Faces/s of `make_classifier(batch)` at each batch size, on random faces, after one warm-up call."""
    rng = np.random.default_rng(0)
    out = {}
    for batch in batches:
        classifier = make_classifier(batch)
        faces = rng.integers(0, 256, (batch, FACE_SIZE, FACE_SIZE), dtype=np.uint8)
        classifier.predict(faces)  # warm up (a compiled classifier compiles here)
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            classifier.predict(faces)
            done += batch
        out[str(batch)] = round(done / (time.perf_counter() - started), 1)
    return out


def detector_ms(settings: Settings, frames: int = 60) -> float:
    detector = load_detector(settings.detector, settings.detector_min_score, settings.detector_min_face)
    images = [render_frame(i, frames) for i in range(frames)]
    detector.detect(images[0])
    started = time.perf_counter()
    for image in images:
        detector.detect(image)
    return round((time.perf_counter() - started) / frames * 1000, 2)


@contextlib.contextmanager
def one_core(cpu: int | None = None):
    """Run the block on a single CPU, so FERVI and the peer get the same resources whatever their thread pools."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before) if cpu is None else cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


CAMERA_FPS = 30.0  # the benchmark's frames are a 30 fps camera's: capture times 1/30 s apart


def pipeline_fps(settings: Settings, images: np.ndarray) -> float:
    """Frames/s of the face pipeline (detect + classify) on in-memory frames, one frame per call: what the
    peer's `detect_emotions` does, without FERVI's transport (JPEG, Redis)."""
    from fervi.vision.pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(settings)
    pipeline.analyze([images[0]])
    started = time.perf_counter()
    for i, image in enumerate(images):  # as a worker does: a camera's frames, followed by the detector
        pipeline.analyze([image], streams=[("bench", i, i / CAMERA_FPS)])
    return round(len(images) / (time.perf_counter() - started), 2)


def worker_fps(settings: Settings, redis_url: str, faces: int, frames: int = 200, workers: int = 1) -> float:
    """Frames/s of `workers` real worker processes on queued 640x480 frames with `faces` faces each, captured
    by a 30 fps camera (their capture times are 1/30 s apart)."""
    camera = f"bench-{faces}f-{workers}w-{os.getpid()}"
    bus = Bus(connect(redis_url))
    bus.register_camera(camera)
    bus.ensure_group(camera)
    jpegs = [encode_jpeg(render_frame(i, frames, faces=faces), settings.jpeg_quality) for i in range(frames)]
    env = {**os.environ, "FERVI_REDIS_URL": redis_url, "FERVI_LOG_LEVEL": "WARNING"}
    procs = [spawn(["worker"], env) for _ in range(workers)]
    try:
        # warm-up: wait until every worker has joined the camera and answered one frame each
        first = time.time()
        for i in range(workers):
            bus.add_frame(Frame(camera, first - 1 + i / CAMERA_FPS, 640, 480, jpegs[i], live=False, index=i))
        _wait_results(bus, camera, workers, timeout_s=120)
        start_count = bus.results_kept(camera)
        started = time.perf_counter()
        for i, jpeg in enumerate(jpegs):
            bus.add_frame(Frame(camera, first + i / CAMERA_FPS, 640, 480, jpeg, live=False, index=i))
        _wait_results(bus, camera, start_count + frames, timeout_s=600)
        return round(frames / (time.perf_counter() - started), 2)
    finally:
        stop_processes(procs, 30)


def _wait_results(bus: Bus, camera: str, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while bus.results_kept(camera) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: {camera} has fewer than {count} results after {timeout_s}s")
        time.sleep(0.01)


def jittered_frame(index: int, total: int, rng: np.random.Generator) -> np.ndarray:
    """A demo frame with camera-like noise: sensor noise, exposure drift, JPEG at quality 70."""
    import cv2

    image = render_frame(index, total).astype(np.float32)
    image = image * (1 + 0.08 * np.sin(index / 7)) + rng.normal(0, 6, image.shape)
    encoded = encode_jpeg(np.clip(image, 0, 255).astype(np.uint8), 70)
    decoded = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        raise ValueError(f"frame {index}: OpenCV could not decode the JPEG it was just encoded to")
    return decoded


def tracking_quality(settings: Settings, frames: int = 150, fps: float = 15.0) -> dict:
    """Label flips per face-second, raw vs smoothed, and tracker cost per frame, on noisy demo footage."""
    from fervi.tracking import FaceTracker
    from fervi.vision.pipeline import FacePipeline

    rng = np.random.default_rng(0)
    pipeline = FacePipeline.from_settings(settings)
    tracker = FaceTracker.from_settings(settings)
    last_raw: dict[int, int] = {}
    last_smooth: dict[int, int] = {}
    flips_raw = flips_smooth = faces_seen = 0
    tracker_s = 0.0
    for i in range(frames):
        faces = pipeline.analyze([jittered_frame(i, frames, rng)])[0]
        started = time.perf_counter()
        tracked = tracker.update(i, i / fps, faces)
        tracker_s += time.perf_counter() - started
        faces = tracked.faces
        # the tracker's output: classified (raw probabilities) and tracked (ids, smoothed probabilities)
        for track_id, raw_probs, smooth_probs in zip(
            faces.tracked_ids.tolist(), faces.classified_probs, faces.label_probs, strict=True
        ):
            raw, smooth = int(raw_probs.argmax()), int(smooth_probs.argmax())
            flips_raw += track_id in last_raw and last_raw[track_id] != raw
            flips_smooth += track_id in last_smooth and last_smooth[track_id] != smooth
            last_raw[track_id], last_smooth[track_id] = raw, smooth
            faces_seen += 1
    face_seconds = faces_seen / fps
    return {
        "frames": frames,
        "fps": fps,
        "tracks": len(last_raw),
        "face_seconds": round(face_seconds, 2),
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


def spawn_quiet(args: list[str], redis_url: str, **env: str) -> subprocess.Popen:
    """A fervi subcommand on `redis_url`, its output discarded (warnings only)."""
    full_env = {**os.environ, "FERVI_REDIS_URL": redis_url, "FERVI_LOG_LEVEL": "WARNING", **env}
    return spawn(args, full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else 0.0


@contextlib.contextmanager
def live_stack(redis_url: str, video: Path, cameras: list[str], fps: float, workers: int):
    """`workers` workers, a tracker and one looping live ingest per camera; yields the processes, workers
    first, and stops them all on the way out."""
    procs = [spawn_quiet(["worker"], redis_url) for _ in range(workers)] + [spawn_quiet(["tracker"], redis_url)]
    procs += [
        spawn_quiet(["ingest", str(video), "--camera", n, "--live", "--loop", "--fps", str(fps)], redis_url)
        for n in cameras
    ]
    try:
        yield procs
    finally:
        stop_processes(procs, 30)


def tracked_latencies_ms(bus: Bus, cameras: list[str], after: dict[str, str]) -> list[float]:
    """Capture-to-tracks latency of every tracks entry newer than `after[camera]`; moves `after` on."""
    latencies = []
    for name in cameras:
        for entry_id, entry in bus.track_entries(name, after[name]):
            after[name] = entry_id
            latencies.append((entry.tracked_at - entry.captured_at) * 1000)
    return latencies


def e2e_latency(
    settings: Settings,
    redis_url: str,
    cameras: int = 4,
    fps: float = 5.0,
    seconds: float = 30.0,
    workers: int = 2,
    workdir: Path | None = None,
) -> dict:
    """Capture-to-tracks-entry latency with `cameras` live cameras at `fps`, `workers` workers and a tracker."""
    import tempfile

    from fervi.demo import write_video

    bus = Bus(connect(redis_url))
    workdir = Path(workdir or tempfile.mkdtemp(prefix="fervi-bench-"))
    video = write_video(workdir / "live.mp4", frames=100, fps=fps)
    redis_before = bus.memory_info()["used_memory_rss"]
    names = [f"lat{i}-{os.getpid()}" for i in range(cameras)]
    with live_stack(redis_url, video, names, fps, workers) as procs:
        time.sleep(8.0)  # warm-up: models loaded, groups joined
        worker_rss_start = [process_rss_mb(p.pid) for p in procs[:workers]]
        after = {n: bus.last_tracks_id(n) for n in names}
        time.sleep(seconds)
        latencies = tracked_latencies_ms(bus, names, after)
        skipped = sum(bus.stats(n).get("skipped", 0) for n in names)
        return {
            "cameras": cameras,
            "fps_per_camera": fps,
            "workers": workers,
            "seconds": seconds,
            "frames_tracked": len(latencies),
            "frames_offered": int(cameras * fps * seconds),
            "skipped_stale_frames": skipped,
            "p50": _percentile(latencies, 50),
            "p95": _percentile(latencies, 95),
            "p99": _percentile(latencies, 99),
            "redis_rss_mb": {
                "before": round(redis_before / 2**20, 1),
                "after": round(bus.memory_info()["used_memory_rss"] / 2**20, 1),
            },
            "worker_rss_mb": {"start": worker_rss_start, "end": [process_rss_mb(p.pid) for p in procs[:workers]]},
        }


MEMORY_FLAT_MB = 20.0


def soak_sample(bus: Bus, names: list[str], after: dict[str, str], worker_pids: list[int], started: float) -> dict:
    """One sample of a soak: Redis's and the workers' memory, the latency of the tracks entries since the
    previous sample (`after`, moved on), and the cameras' counters so far."""
    latencies = tracked_latencies_ms(bus, names, after)
    memory = bus.memory_info()
    return {
        "t_s": round(time.time() - started, 1),
        "redis_rss_mb": round(memory["used_memory_rss"] / 2**20, 1),
        "redis_used_mb": round(memory["used_memory"] / 2**20, 2),
        # RSS over what the allocator holds for data: allocator fragmentation, not a leak
        "redis_fragmentation": memory.get("mem_fragmentation_ratio"),
        "load_avg_1m": round(os.getloadavg()[0], 2),  # anything else on the machine shows here
        "worker_rss_mb": [process_rss_mb(pid) for pid in worker_pids],
        "frames_tracked": len(latencies),
        "p50_ms": _percentile(latencies, 50),
        "p95_ms": _percentile(latencies, 95),
        "skipped_total": sum(bus.stats(n).get("skipped", 0) for n in names),
        "frames_in_total": sum(max(0, bus.last_seq(n)) for n in names),
        "pending_total": sum(bus.pending(n) for n in names),
        "stream_len_total": sum(bus.backlog(n) for n in names),
    }


def soak_report(samples: list[dict], settle_s: float, run: dict) -> dict:
    """A soak's report: the verdict on its samples, what was run (`run`), the start and end figures and every
    sample. Memory is judged once the bounded streams are full (MAXLEN reached, after `settle_s`): growth after
    that is a leak."""
    first = next((x for x in samples if x["t_s"] >= settle_s), samples[0])
    final = samples[-1]
    settings = load_settings()
    p95_bound_ms = (settings.frame_max_age_s + settings.reorder_wait_s) * 1000  # skipped when older, by design
    redis_growth = final["redis_used_mb"] - first["redis_used_mb"]
    worker_growth = max(e - s for s, e in zip(first["worker_rss_mb"], final["worker_rss_mb"], strict=True))
    return {
        "verdict": {
            "redis_used_growth_mb": round(redis_growth, 2),
            "worker_rss_growth_mb_max": round(worker_growth, 1),
            "memory_flat": redis_growth < MEMORY_FLAT_MB and worker_growth < MEMORY_FLAT_MB,
            "memory_flat_means": f"Redis used memory and every worker's RSS grew less than {MEMORY_FLAT_MB} MB "
            f"from t={first['t_s']} s (streams at their MAXLEN) to the end",
            "results_maxlen": settings.results_maxlen,
            "live_maxlen": settings.live_maxlen,
            "p95_bound_ms": p95_bound_ms,
            "p95_within_bound": max(s["p95_ms"] for s in samples) <= p95_bound_ms,
            "skipped_share": round(final["skipped_total"] / max(1, final["frames_in_total"]), 4),
        },
        **run,
        "machine_info": machine_info(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "redis_used_mb": {"start": first["redis_used_mb"], "end": final["redis_used_mb"]},
        "redis_rss_mb": {"start": first["redis_rss_mb"], "end": final["redis_rss_mb"]},
        "worker_rss_mb": {"start": first["worker_rss_mb"], "end": final["worker_rss_mb"]},
        "p95_ms_max": max(s["p95_ms"] for s in samples),
        "skipped_total": final["skipped_total"],
        "frames_in_total": final["frames_in_total"],
        "samples": samples,
    }


@dataclass(frozen=True)
class SoakPlan:
    """What a soak runs: live cameras, each at `fps`, for `minutes`, with `workers`; a sample every
    `sample_s`; memory judged from `settle_s` on (see `soak_report`)."""

    cameras: int = 8
    fps: float = 15.0
    minutes: float = 10.0
    workers: int = 2
    sample_s: float = 30.0
    settle_s: float = 120.0


def soak(
    redis_url: str, plan: SoakPlan, workdir: Path | None = None, on_sample: Callable[[dict], None] | None = None
) -> dict:
    """Live cameras for a bounded time (loopback only): memory of Redis and workers, latency per window,
    skipped frames. Returns every sample and a verdict on memory growth."""
    import tempfile

    from fervi.demo import write_video

    bus = Bus(connect(redis_url))
    workdir = Path(workdir or tempfile.mkdtemp(prefix="fervi-soak-"))
    video = write_video(workdir / "live.mp4", frames=150, fps=plan.fps)
    names = [f"soak{i}" for i in range(plan.cameras)]
    samples = []
    after = {n: "0-0" for n in names}
    started = time.time()
    with live_stack(redis_url, video, names, plan.fps, plan.workers) as procs:
        time.sleep(10.0)
        while time.time() - started < plan.minutes * 60:
            time.sleep(plan.sample_s)
            sample = soak_sample(bus, names, after, [p.pid for p in procs[: plan.workers]], started)
            samples.append(sample)
            if on_sample:
                on_sample(sample)
    run = {"cameras": plan.cameras, "fps_per_camera": plan.fps, "workers": plan.workers, "minutes": plan.minutes}
    return soak_report(samples, plan.settle_s, run)


PEER_VENV = Path.home() / ".cache" / "fervi" / "peer-venv"  # FERVI_PEER_VENV changes it
PEER_INSTALL = [  # `pip install fer` would pull torch (7.5 GB) for an option we do not use
    ["--no-deps", "fer==25.10.3"],
    ["tensorflow-cpu", "opencv-python-headless<5", "requests", "pillow", "pandas"],
]


def ensure_peer_venv(path: Path = PEER_VENV) -> Path:
    """The `fer` package in its own virtual environment, created once and reused; returns its python."""
    python = path / "bin" / "python"
    if not (
        python.exists() and subprocess.run([str(python), "-c", "import fer.fer"], capture_output=True).returncode == 0
    ):
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        for args in PEER_INSTALL:
            subprocess.run([str(python), "-m", "pip", "install", "-q", *args], check=True)
    return python


def peer_comparison(
    settings: Settings, worker_fps_by_faces: dict[str, float], fer_csv: str | None, frames: int = 100
) -> dict:
    """The `fer` package on the same frames and the same PublicTest faces, in the same run.

    Frame rates are like for like: both pipelines take the same in-memory 640x480 frames one at a time,
    each pinned to the same single CPU (a FERVI worker is one core; the peer's OpenCV would otherwise
    spread its Haar cascade over every core). The worker ratios set FERVI's whole worker (JPEG decode,
    Redis in and out) against the same peer figures.
    """
    import json
    import tempfile

    python = ensure_peer_venv(Path(settings.peer_venv) if settings.peer_venv else PEER_VENV)
    cpu = min(os.sched_getaffinity(0))
    out: dict = {}
    frames_1face = np.stack([render_frame(i, frames, faces=1) for i in range(frames)])
    frames_4faces = np.stack([render_frame(i, frames, faces=4) for i in range(frames)])
    faces, labels = np.zeros((0, FACE_SIZE, FACE_SIZE), np.uint8), np.zeros(0, np.int64)
    with one_core(cpu):
        fervi_fps = {
            "1face": pipeline_fps(settings, frames_1face),
            "4faces": pipeline_fps(settings, frames_4faces),
        }
    with tempfile.TemporaryDirectory() as tmp:
        if fer_csv:
            from fervi.training.datasets import load_fer_csv

            full = load_fer_csv(fer_csv)
            public_rows = np.flatnonzero(full.usage == "PublicTest")
            test = full.subset(public_rows)
            faces, labels = test.images, test.labels
            classifier = TFLiteClassifier(Path(settings.models) / MODEL_TFLITE, flip_average=settings.flip_average)
            fervi_predicted = classifier.predict(test.images).argmax(1)
            out["accuracy_fervi"] = round(float((fervi_predicted == test.labels).mean()), 4)
        np.savez(
            Path(tmp) / "input.npz", frames_1face=frames_1face, frames_4faces=frames_4faces, faces=faces, labels=labels
        )
        probe = subprocess.run(
            [str(python), str(Path(__file__).with_name("peer_probe.py")), str(Path(tmp) / "input.npz")],
            capture_output=True,
            text=True,
            check=True,
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        )
        fer = json.loads(probe.stdout.strip().splitlines()[-1])
    out.update(
        {
            "package": "fer 25.10.3 (Haar cascade + quantized TFLite mini-Xception, its defaults)",
            "how": "same in-memory 640x480 frames, one frame per call, both pinned to one CPU",
            "fps_fervi_1face": fervi_fps["1face"],
            "fps_fervi_4faces": fervi_fps["4faces"],
            "fps_fer_1face": fer["fps_1face"],
            "fps_fer_4faces": fer["fps_4faces"],
            "fps_ratio_1face": round(fervi_fps["1face"] / fer["fps_1face"], 2),
            "fps_ratio_4faces": round(fervi_fps["4faces"] / fer["fps_4faces"], 2),
            "worker_fps_ratio_1face": round(worker_fps_by_faces["1face"] / fer["fps_1face"], 2),
            "worker_fps_ratio_4faces": round(worker_fps_by_faces["4faces"] / fer["fps_4faces"], 2),
            "faces_found_fer": {
                "1face": f"{fer['faces_found_1face']}/{fer['frames_1face']}",
                "4faces": f"{fer['faces_found_4faces']}/{4 * fer['frames_4faces']}",
            },
        }
    )
    if fer_csv:
        out["accuracy_fer"] = fer["accuracy"]
        out["accuracy_n"] = fer["n"]
        out.update(
            crowd_agreement(fer_csv, test, public_rows, fervi_predicted, np.asarray(fer["predictions"], np.int64))
        )
    return out


def crowd_agreement(
    fer_csv: str, test, rows: np.ndarray, fervi_predicted: np.ndarray, fer_predicted: np.ndarray
) -> dict:
    """Both classifiers against people: on the PublicTest faces (`test`, the CSV's data rows `rows`) whose FER+
    crowd named one of the seven emotions, the share whose prediction is the crowd's majority (any emotion
    tied at the top counts), when the votes file is beside the CSV."""
    from fervi.training.votes import crowd_of_rows

    crowd = crowd_of_rows(fer_csv, test.images, rows)
    if crowd is None or len(fer_predicted) != len(rows):
        return {}
    usable, top = crowd.usable, crowd.top_set()

    def agreement(predicted: np.ndarray) -> float:
        return round(float(top[np.arange(len(predicted)), predicted][usable].mean()), 4)

    return {
        "crowd_agreement_fervi": agreement(fervi_predicted),
        "crowd_agreement_fer": agreement(fer_predicted),
        "crowd_n": int(usable.sum()),
    }


def run_bench(
    settings: Settings, redis_url: str, quick: bool = False, fer_csv: str | None = None, peer: bool = True
) -> dict:
    frames = 60 if quick else 200
    report = {
        "fervi_version": __import__("fervi").__version__,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine_info": machine_info(),
        "settings": {
            "detector": settings.detector,
            "flip_average": settings.flip_average,
            "batch_frames": settings.batch_frames,
            "classifier": "tflite fp32, 1 thread",
        },
        "classifier_faces_per_s": classifier_faces_per_s(settings, seconds=1.0 if quick else 3.0),
        # the other view mode, so both costs sit side by side whatever FERVI_FLIP_AVERAGE says
        f"classifier_faces_per_s_{'single_view' if settings.flip_average else 'flip_averaged'}": classifier_faces_per_s(
            settings, seconds=1.0 if quick else 3.0, flip_average=not settings.flip_average
        ),
        "detector_ms": detector_ms(settings, 20 if quick else 60),
        "worker_fps_1face": worker_fps(settings, redis_url, 1, frames),
        "worker_fps_4faces": worker_fps(settings, redis_url, 4, frames),
    }
    two = worker_fps(settings, redis_url, 1, frames, workers=2)
    report["worker_fps_1face_2workers"] = two
    report["scaling_2_workers"] = round(two / report["worker_fps_1face"], 2) if report["worker_fps_1face"] else 0.0
    latency = e2e_latency(settings, redis_url, cameras=4, fps=5.0, seconds=10.0 if quick else 30.0)
    report["e2e_latency_ms"] = {k: latency[k] for k in ("p50", "p95", "p99")}
    report["e2e"] = latency
    report["tracking"] = tracking_quality(settings, 60 if quick else 150)
    if peer:
        report["peer"] = peer_comparison(
            settings,
            {"1face": report["worker_fps_1face"], "4faces": report["worker_fps_4faces"]},
            fer_csv,
            frames=40 if quick else 100,
        )
    try:
        report["redis_rss_mb"] = round(Bus(connect(redis_url)).memory_info()["used_memory_rss"] / 2**20, 1)
    except RedisError:
        pass
    return report
