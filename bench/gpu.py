"""The GPU worker's numbers, in one prepared run: the Keras classifier on its backend and the face pipeline.

    KERAS_BACKEND=jax python -m fervi.bench.gpu [--batches 1,32,256,4096] [--seconds 5] [--processes 1,2,4]
                                                [--detect-threads N] [--out FILE]

- faces/s of `KerasClassifier` (compiled per padded batch) at each batch size, on the backend's device;
- one pipeline's frames/s (decode-free: frames in memory, detect on `--detect-threads` threads, then one
  classifier call per batch of 32 frames) with 1 and 4 faces, at 640x480 and 1920x1080;
- several processes sharing the device: total frames/s with 1 face at 640x480.
The same run works on a CPU (it says which device it ran on); the GPU numbers in docs/scaling.md come from
it. No Redis is involved: the bus's cost per frame is `bench/capacity.py`'s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from datetime import date
from pathlib import Path

from fervi.bench.harness import faces_per_s, machine_info

from fervi.demo import render_frame
from fervi.settings import default_model_dir
from fervi.vision.classifier import MODEL_KERAS, KerasClassifier
from fervi.vision.detector import load_detector
from fervi.vision.pipeline import FacePipeline
from fervi.vision.pool import DetectorPool

FRAMES_PER_CALL = 32


def device_name() -> str:
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            return f"jax:{jax.devices()[0].device_kind}"
        if backend == "torch":
            import torch

            return f"torch:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "torch:cpu"
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            return f"tensorflow:{gpus[0].name}" if gpus else "tensorflow:cpu"
    except Exception as err:  # noqa: BLE001 - the numbers still say which backend ran
        return f"{backend}:unknown ({err})"
    return backend


def classifier_faces_per_s(batches: list[int], seconds: float) -> dict[str, float]:
    return faces_per_s(
        lambda batch: KerasClassifier(Path(default_model_dir()) / MODEL_KERAS, batch_size=batch, flip_average=False),
        batches,
        seconds,
    )


def pipeline(detect_threads: int) -> FacePipeline:
    def make():
        return load_detector("multiscale", full_scan_every=5)

    detector = make() if detect_threads == 1 else DetectorPool(make, detect_threads)
    return FacePipeline(detector, KerasClassifier(Path(default_model_dir()) / MODEL_KERAS, flip_average=False))


def frames_per_s(faces: int, size: tuple[int, int], seconds: float, detect_threads: int) -> float:
    """One pipeline over a looping clip of 60 frames from 4 cameras, FRAMES_PER_CALL frames per call."""
    run = pipeline(detect_threads)
    clip = [render_frame(i, 60, size[0], size[1], faces=faces) for i in range(60)]
    streams = [(f"cam{i % 4}", i // 4) for i in range(10**6)]
    run.analyze(clip[:FRAMES_PER_CALL], streams=streams[:FRAMES_PER_CALL])
    done, position, started = 0, FRAMES_PER_CALL, time.perf_counter()
    while time.perf_counter() - started < seconds:
        batch = [clip[(position + i) % len(clip)] for i in range(FRAMES_PER_CALL)]
        run.analyze(batch, streams=streams[position : position + FRAMES_PER_CALL])
        position += FRAMES_PER_CALL
        done += FRAMES_PER_CALL
    return round(done / (time.perf_counter() - started), 1)


def _shared(seconds: float, detect_threads: int, out) -> None:
    out.put(frames_per_s(1, (640, 480), seconds, detect_threads))


def shared_device(processes: int, seconds: float, detect_threads: int) -> float:
    """Total frames/s of `processes` pipelines at once (each its own process, all on the one device)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_shared, args=(seconds, detect_threads, queue)) for _ in range(processes)]
    for proc in procs:
        proc.start()
    total = sum(queue.get(timeout=seconds * 20 + 600) for _ in procs)
    for proc in procs:
        proc.join(60)
    return round(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,32,256,4096")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--detect-threads", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    report = {
        "bench": "gpu",
        "date": date.today().isoformat(),
        "machine": machine_info(),
        "device": device_name(),
        "detect_threads": args.detect_threads,
        "classifier_faces_per_s": classifier_faces_per_s([int(b) for b in args.batches.split(",")], args.seconds),
    }
    print(json.dumps(report), flush=True)
    report["pipeline_frames_per_s"] = {
        f"{faces}face_{w}x{h}": frames_per_s(faces, (w, h), args.seconds, args.detect_threads)
        for faces in (1, 4)
        for w, h in ((640, 480), (1920, 1080))
    }
    print(json.dumps(report["pipeline_frames_per_s"]), flush=True)
    report["shared_device_frames_per_s"] = {
        p: shared_device(int(p), args.seconds, args.detect_threads) for p in args.processes.split(",")
    }
    out = args.out or f"bench/results/gpu-{report['date']}-{report['device'].split(':')[0]}.json"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"out": out, **report}))


if __name__ == "__main__":
    main()
