"""What the bus costs as workers and cameras grow: W null workers x C live cameras, on one Redis and on a
3-primary Redis Cluster (issue #28).

    python -m fervi.bench.worker_scaling [--workers 1,4,16,64] [--cameras 16,256,2048] [--topology single,cluster]
        [--cluster-workers 1,4,16,64] [--cluster-cameras 16,256,2048] [--fps 400] [--seconds 12] [--idle 7.5]
        [--out FILE] [--resume] [--no-doorbell]

Each worker is the production `fervi.workers.worker.Worker` in its own process, with a null pipeline (no
model: every image gets no faces), so its camera selection, reads, reclaims, camera refresh, heartbeat and
result script are the real ones: when the worker changes which cameras it reads, this bench measures the new
behaviour unchanged. One producer adds small live frames (64x48 JPEG) with the ingest's script, `--fps`
frames/s in all whatever C (so per-frame figures compare across cells: 400 frames/s is 25 fps per camera at
C=16, 0.2 at C=2048); a frame due more than LATE_S ago is dropped as a live camera would. Each cell gets a
fresh server, waits until every worker has made its first step (its heartbeat), warms up, then measures:
- busy (`--seconds`): Redis CPU, commands and network bytes per frame done (INFO deltas summed over the
  primaries), frames offered / sent / done (a result, not a skipped marker, written in the window), and
  latency capture -> result (`done_at - captured_at` of the results written);
- idle (`--idle`, no frames): commands Redis processes per second, divided by W. The default is half the
  claim timeout, the worker's longest period (its reclaim sweep), so each worker's periodic work
  (camera refresh, heartbeat, reclaim, empty reads or polls) is in the window once or more.
On one Redis each cell also reports the costliest commands per frame (INFO commandstats: calls and µs of
Redis time a frame, and µs a call). `--no-doorbell` runs the workers and the producer without the doorbell
(`Bus.bells` off: no rings, and an idle worker blocks on all its streams), for comparison.
A cell that cannot keep up is reported as measured (done/offered, p95), not skipped. The JSON is written
after each cell, so an interrupted run keeps the cells it finished; `--resume` runs only the cells missing
from `--out`.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from fervi.bench.capacity import camera_names, fresh_server, server_stats
from fervi.bench.harness import machine_info
from fervi.workers.worker import Worker

from fervi.bus import Bus, connect
from fervi.bus.core import BusCore
from fervi.faces import Faces
from fervi.protocol import Frame
from fervi.settings import load_settings
from fervi.vision.images import encode_jpeg
from fervi.vision.pipeline import FacePipeline, Timing

LIVE_MAXLEN = 256
FRAME_W, FRAME_H = 64, 48  # small frames: decoding costs the workers little, the bus is what is measured
TICK_S = 0.01  # the producer sends the frames due every 10 ms
LATE_S = 0.25  # a frame due longer ago than this is dropped (a live camera does not queue)
WARMUP_S = 3.0
DRAIN_S = 2.0  # after the producer stops, before the idle phase: frames in hand are finished or skipped
START_TIMEOUT_S = 300.0
LOCAL_ARGS = ("out", "resume")  # not part of the command that reproduces the numbers


class _Named:
    name = "null"


class NullPipeline(FacePipeline):
    """A FacePipeline stand-in with no model: no faces in any image."""

    def __init__(self) -> None:
        super().__init__(_Named(), _Named())  # type: ignore[arg-type]  # only `.name` is read by the worker

    def analyze(self, images: list[np.ndarray], timing: Timing | None = None, streams: Any = None) -> list[Faces]:
        empty = Faces.detected(np.zeros((0, 4)), np.zeros(0)).classified(np.zeros((0, 7)))
        return [empty for _ in images]


def small_jpeg() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (FRAME_H, FRAME_W, 3), dtype=np.uint8)
    return encode_jpeg(noise, 85)


def run_null_worker(url: str, name: str) -> None:
    """A child process: the production worker loop with the null pipeline, until SIGTERM (warm shutdown)."""
    logging.basicConfig(level=logging.WARNING)
    Worker(load_settings(), url, NullPipeline(), name=name).run()


def produce(url: str, cameras: list[str], fps: float, start_at: float, end_at: float, until: float, out) -> None:
    """Frames round-robin over the cameras, `fps` in all; counts what was due and sent in [start_at, end_at)."""
    bus = Bus(connect(url))
    jpeg = small_jpeg()
    interval = 1.0 / fps
    due_at = time.time()
    n = offered = sent = late = 0
    while due_at < until:
        now = time.time()
        if now < due_at:
            time.sleep(min(TICK_S, due_at - now))
            continue
        while due_at <= now and due_at < until:
            counted = start_at <= due_at < end_at
            offered += counted
            camera = cameras[n % len(cameras)]
            if now - due_at > LATE_S:
                late += counted
            else:
                bus.add_frame(Frame(camera, time.time(), FRAME_W, FRAME_H, jpeg, True, n // len(cameras)), LIVE_MAXLEN)
                sent += counted
            n += 1
            due_at += interval
    out.put({"offered": offered, "sent": sent, "late": late})


def wait_for_workers(bus: Bus, names: set[str], timeout_s: float) -> int:
    """Until every worker has made its first step (cameras refreshed, groups joined: its heartbeat is written)."""
    deadline = time.monotonic() + timeout_s
    while True:
        ready = len(names & set(bus.processes()))
        if ready == len(names) or time.monotonic() > deadline:
            return ready
        time.sleep(0.5)


def results_in(bus: Bus, cameras: list[str], start_at: float, end_at: float) -> tuple[list[float], int]:
    """Latencies (s) of the frames done in [start_at, end_at), and the number skipped there."""
    latencies, skipped = [], 0
    for camera in cameras:
        for _, result in bus.results(camera):
            if start_at <= result.done_at < end_at:
                if result.gap:
                    skipped += 1
                else:
                    latencies.append(result.done_at - result.captured_at)
    return latencies, skipped


def cell(url: str, workers: int, count: int, fps: float, seconds: float, idle_s: float) -> dict:
    cameras = camera_names(count)
    bus = Bus(connect(url, socket_timeout=60))
    for camera in cameras:
        bus.register_camera(camera)
        bus.ensure_group(camera)
    ctx = mp.get_context("fork")
    names = [f"null-{i:02d}" for i in range(workers)]
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    procs = [ctx.Process(target=run_null_worker, args=(url, name), daemon=True) for name in names]
    for proc in procs:
        proc.start()
    try:
        ready = wait_for_workers(bus, set(names), START_TIMEOUT_S)
        startup_s = time.monotonic() - started
        queue = ctx.Queue()
        start_at = time.time() + WARMUP_S
        end_at = start_at + seconds
        producer = ctx.Process(target=produce, args=(url, cameras, fps, start_at, end_at, end_at, queue), daemon=True)
        producer.start()
        time.sleep(max(0.0, start_at - time.time()))
        before, commands_before = server_stats(bus), command_stats(bus)
        time.sleep(max(0.0, end_at - time.time()))
        after, commands_after = server_stats(bus), command_stats(bus)
        sent = queue.get(timeout=120)
        producer.join(30)
        time.sleep(DRAIN_S)
        idle_before, idle_at = server_stats(bus), time.monotonic()
        time.sleep(idle_s)
        idle_after, idle_elapsed = server_stats(bus), time.monotonic() - idle_at
        load_after = os.getloadavg()[0]
    finally:
        for proc in procs:
            if proc.pid is not None:
                os.kill(proc.pid, 15)  # warm shutdown: the batch in hand is finished
        for proc in procs:
            proc.join(20)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    latencies_s, skipped = results_in(bus, cameras, start_at, end_at)
    latencies = np.array(latencies_s) * 1000
    done = len(latencies_s)
    frames = max(1, done)
    idle_commands_per_s = (idle_after["commands"] - idle_before["commands"]) / idle_elapsed
    return {
        "workers": workers,
        "cameras": count,
        "workers_ready": ready,
        "startup_s": round(startup_s, 1),
        "fps_per_camera": round(fps / count, 3),
        **sent,
        "done": done,
        "skipped": skipped,
        "done_share": round(done / max(1, sent["offered"]), 3),
        "done_fps": round(done / seconds, 1),
        "p50_latency_ms": round(float(np.percentile(latencies, 50)), 1) if done else None,
        "p95_latency_ms": round(float(np.percentile(latencies, 95)), 1) if done else None,
        "redis_cpu_share": round((after["cpu_s"] - before["cpu_s"]) / seconds, 3),
        "redis_cpu_us_per_frame": round((after["cpu_s"] - before["cpu_s"]) / frames * 1e6, 1),
        "redis_commands_per_frame": round((after["commands"] - before["commands"]) / frames, 2),
        "redis_net_bytes_per_frame": round((after["net_bytes"] - before["net_bytes"]) / frames),
        "idle_commands_per_s": round(idle_commands_per_s, 1),
        "idle_commands_per_s_per_worker": round(idle_commands_per_s / workers, 1),
        "idle_redis_cpu_share": round((idle_after["cpu_s"] - idle_before["cpu_s"]) / idle_elapsed, 3),
        "redis_used_memory_mb": round(after["used_memory"] / 2**20, 1),
        "load_avg_1m": [round(load_before, 2), round(load_after, 2)],
        **({"costliest_commands": costliest(commands_before, commands_after, frames)} if commands_after else {}),
    }


def command_stats(bus: Bus) -> dict[str, dict[str, int]]:
    """INFO commandstats on one Redis (calls and µs per command; empty on a cluster)."""
    return {} if bus.cluster else bus.server_info("commandstats")


def costliest(before: dict, after: dict, frames: int, top: int = 8) -> dict[str, dict[str, float]]:
    """The `top` commands by Redis time per frame between two `command_stats`."""
    rows = {}
    for key, stats in after.items():
        calls = stats["calls"] - before.get(key, {}).get("calls", 0)
        usec = stats["usec"] - before.get(key, {}).get("usec", 0)
        if calls > 0:
            rows[key.removeprefix("cmdstat_")] = {
                "calls_per_frame": round(calls / frames, 2),
                "us_per_frame": round(usec / frames, 1),
                "us_per_call": round(usec / calls, 1),
            }
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]["us_per_frame"])[:top])


def run_cell(topology: str, workers: int, count: int, fps: float, seconds: float, idle_s: float) -> dict:
    """One cell on a fresh server: no consumers, heartbeats or results left by the previous one."""
    with fresh_server(topology) as url:
        return {"topology": topology, **cell(url, workers, count, fps, seconds, idle_s)}


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,4,16,64")
    parser.add_argument("--cameras", default="16,256,2048")
    parser.add_argument("--topology", default="single,cluster")
    parser.add_argument("--cluster-workers", default="", help="the cluster's W values (default: --workers)")
    parser.add_argument("--cluster-cameras", default="", help="the cluster's C values (default: --cameras)")
    parser.add_argument("--fps", type=float, default=400.0, help="frames/s offered in all, spread over the cameras")
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--idle", type=float, default=0.0, help="idle phase (s); default: half FERVI_CLAIM_TIMEOUT")
    parser.add_argument("--out", default="")
    parser.add_argument("--resume", action="store_true", help="keep the cells already in --out, run the others")
    parser.add_argument("--no-doorbell", action="store_true", help="workers and producer without the doorbell")
    args = parser.parse_args()
    if args.no_doorbell:  # before the workers fork: they and the producer inherit it
        BusCore.bells = property(lambda self: False)  # type: ignore[method-assign, assignment]
    settings = load_settings()
    idle_s = args.idle or settings.claim_timeout_s / 2
    grid = {
        "single": (ints(args.workers), ints(args.cameras)),
        "cluster": (ints(args.cluster_workers or args.workers), ints(args.cluster_cameras or args.cameras)),
    }
    machine = machine_info()
    report: dict[str, Any] = {
        "bench": "worker_scaling",
        "date": date.today().isoformat(),
        "machine": machine,
        "command": "python -m fervi.bench.worker_scaling "
        + " ".join(
            f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
            for k, v in vars(args).items()
            if k not in LOCAL_ARGS and v not in ("", False)
        ),
        "settings": {
            "block_ms": settings.block_ms,
            "claim_timeout_s": settings.claim_timeout_s,
            "batch_frames": settings.batch_frames,
            "frame_max_age_s": settings.frame_max_age_s,
        },
        "frame": {"width": FRAME_W, "height": FRAME_H, "jpeg_bytes": len(small_jpeg())},
        "fps_offered": args.fps,
        "seconds": args.seconds,
        "idle_s": idle_s,
        "doorbell": not args.no_doorbell,
        "cells": {},
    }
    out = Path(
        args.out or f"bench/results/worker_scaling-{report['date']}-{machine['machine']}-{machine['cpus']}cpu.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    done = json.loads(out.read_text())["cells"] if args.resume and out.exists() else {}
    for topology in args.topology.split(","):
        workers, counts = grid[topology]
        report["cells"][topology] = []
        for count in counts:
            for w in workers:
                kept = [c for c in done.get(topology, []) if (c["workers"], c["cameras"]) == (w, count)]
                if kept:
                    report["cells"][topology].append(kept[0])
                    continue
                result = run_cell(topology, w, count, args.fps, args.seconds, idle_s)
                print(json.dumps(result), flush=True)
                report["cells"][topology].append(result)
                out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"out": str(out)}))


if __name__ == "__main__":
    main()
