"""Capacity of FERVI's bus: N live cameras at 15 fps through one Redis and through a 3-primary Redis Cluster.

    python -m fervi.bench.capacity [--cameras 8,16,32,64,128,256] [--fps 15] [--seconds 8]
                                   [--topology single,cluster] [--producers 2] [--consumers 2] [--out FILE]

Producers add 640x480 JPEG frames (a demo frame with two faces and sensor-like noise, about 50 KB) with the
ingest's script (live, MAXLEN 256). Null workers read them through the workers' own path (`Bus.read_frames`:
one XREADGROUP on one Redis; on a cluster one read per camera, pipelined per node) and publish an empty result with the
workers' script: no model runs, so this measures FERVI's bus, not detection (`fervi bench` measures that).
Per step: frames offered and done per second, p95 latency from capture to result, and from every primary's
INFO deltas: Redis CPU seconds, commands and network bytes per frame, and memory. The knee is the first N
where fewer than 95% of the offered frames are done or the p95 latency passes 1 s; the run stops there.
Redis CPU per frame is what carries to other machines: cameras per Redis core = 1 / (CPU per frame x fps).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
from fervi.bench.harness import machine_info

from fervi.bus import Bus, connect
from fervi.demo import render_frame
from fervi.embedded import EmbeddedCluster, EmbeddedRedis
from fervi.faces import Faces
from fervi.protocol import Frame, Result
from fervi.vision.images import encode_jpeg

LIVE_MAXLEN = 256
RESULTS_MAXLEN = 2000
WARMUP_S = 2.0


def camera_jpeg() -> bytes:
    """A demo frame with sensor-like noise: about 50 KB at quality 85, as a real 640x480 camera frame."""
    frame = render_frame(10, 60).astype(np.int16)
    noisy = frame + np.random.default_rng(0).normal(0, 5, frame.shape)
    return encode_jpeg(np.clip(noisy, 0, 255).astype(np.uint8), 85)


def camera_names(count: int) -> list[str]:
    return [f"cap{i:04d}" for i in range(count)]


def produce(url: str, cameras: list[str], fps: float, until: float, jpeg: bytes, out) -> None:
    """Add a frame to each camera every 1/fps s (a live camera never waits: late frames are counted, not sent)."""
    bus = Bus(connect(url))
    interval = 1.0 / fps
    next_at = time.monotonic()
    sent = late = 0
    index = 0
    while time.monotonic() < until:
        now = time.monotonic()
        if now < next_at:
            time.sleep(next_at - now)
        elif now - next_at > interval:  # a whole round behind: this round is dropped, as a live camera would
            late += len(cameras)
            next_at += interval
            continue
        for camera in cameras:
            bus.add_frame(Frame(camera, time.time(), 640, 480, jpeg, True, index), LIVE_MAXLEN)
            sent += 1
        index += 1
        next_at += interval
    out.put({"sent": sent, "late": late})


def consume(url: str, cameras: list[str], name: str, start_at: float, end_at: float, until: float, out) -> None:
    """The worker's bus path with no model: read, parse, publish an empty result (ack and delete). Results
    written between `start_at` and `end_at` are counted."""
    bus = Bus(connect(url, socket_timeout=10))
    empty = Faces.detected(np.zeros((0, 4)), np.zeros(0)).classified(np.zeros((0, 7)))
    latencies, done = [], 0
    per_camera = max(1, 32 // max(1, len(cameras)))
    while time.time() < until:
        entries = bus.read_frames(name, cameras, per_camera, 100)
        dequeued = time.time()
        for entry in entries:
            frame = Frame.from_fields(entry.fields)
            now = time.time()
            bus.publish_result(
                Result(
                    frame.camera,
                    frame.seq,
                    frame.index,
                    frame.captured_at,
                    dequeued,
                    now,
                    name,
                    frame.width,
                    frame.height,
                    empty,
                ),
                entry.entry_id,
                RESULTS_MAXLEN,
            )
            if start_at <= now < end_at:
                done += 1
                latencies.append(time.time() - frame.captured_at)
    out.put({"done": done, "latencies": latencies})


def server_stats(bus: Bus) -> dict:
    """Sums over the primaries: CPU seconds, commands, network bytes, memory."""
    info = bus.server_info()
    return {
        "cpu_s": float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
        "commands": int(info["total_commands_processed"]),
        "net_bytes": int(info["total_net_input_bytes"]) + int(info["total_net_output_bytes"]),
        "used_memory": int(info["used_memory"]),
    }


def step(url: str, count: int, fps: float, seconds: float, producers: int, consumers: int, jpeg: bytes) -> dict:
    cameras = camera_names(count)
    bus = Bus(connect(url))
    for camera in cameras:
        bus.register_camera(camera)
        bus.ensure_group(camera)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + WARMUP_S
    until_wall = start_at + seconds
    until_mono = time.monotonic() + WARMUP_S + seconds
    procs = [
        ctx.Process(target=produce, args=(url, cameras[i::producers], fps, until_mono, jpeg, queue))
        for i in range(producers)
    ]
    procs += [
        ctx.Process(target=consume, args=(url, cameras, f"null-{i}", start_at, until_wall, until_wall + 1.0, queue))
        for i in range(consumers)
    ]
    for proc in procs:
        proc.start()
    time.sleep(WARMUP_S)
    before = server_stats(bus)
    time.sleep(seconds)
    after = server_stats(bus)
    reports = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
    sent = sum(r.get("sent", 0) for r in reports)
    done = sum(r.get("done", 0) for r in reports)
    latencies = np.array([x for r in reports for x in r.get("latencies", [])])
    offered_per_s = count * fps
    frames = max(1, done)
    result = {
        "cameras": count,
        "offered_fps": round(offered_per_s, 1),
        "sent_fps": round(sent / (WARMUP_S + seconds), 1),
        "done_fps": round(done / seconds, 1),
        "done_share": round(done / seconds / offered_per_s, 3),
        "p50_latency_ms": round(float(np.percentile(latencies, 50)) * 1000, 1) if latencies.size else None,
        "p95_latency_ms": round(float(np.percentile(latencies, 95)) * 1000, 1) if latencies.size else None,
        "redis_cpu_share": round((after["cpu_s"] - before["cpu_s"]) / seconds, 3),
        "redis_cpu_us_per_frame": round((after["cpu_s"] - before["cpu_s"]) / frames * 1e6, 1),
        "redis_commands_per_frame": round((after["commands"] - before["commands"]) / frames, 2),
        "redis_net_bytes_per_frame": round((after["net_bytes"] - before["net_bytes"]) / frames),
        "redis_used_memory_mb": round(after["used_memory"] / 2**20, 1),
    }
    result["knee"] = result["done_share"] < 0.95 or (result["p95_latency_ms"] or 1e9) > 1000
    for camera in cameras:
        bus.forget_camera(camera)
    return result


@contextlib.contextmanager
def fresh_server(topology: str) -> Iterator[str]:
    """A new embedded server of the topology ("single": one Redis without AOF; "cluster": 3 primaries), its
    URL while the block runs, and nothing of it left after."""
    with tempfile.TemporaryDirectory() as tmp:
        server: EmbeddedCluster | EmbeddedRedis
        if topology == "cluster":
            server = EmbeddedCluster(Path(tmp) / "cluster", masters=3).start()
        else:
            server = EmbeddedRedis(Path(tmp) / "redis", appendonly=False).start()
        try:
            yield server.url
        finally:
            server.stop()


def run_topology(
    topology: str, counts: list[int], fps: float, seconds: float, producers: int, consumers: int, jpeg: bytes, on_step
) -> list[dict]:
    with fresh_server(topology) as url:
        steps = []
        for count in counts:
            result = {"topology": topology, **step(url, count, fps, seconds, producers, consumers, jpeg)}
            on_step(result)
            steps.append(result)
            if result["knee"]:
                break
        return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", default="8,16,32,64,128,256")
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--topology", default="single,cluster")
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    jpeg = camera_jpeg()
    counts = [int(c) for c in args.cameras.split(",")]
    runs = {
        t: run_topology(
            t,
            counts,
            args.fps,
            args.seconds,
            args.producers,
            args.consumers,
            jpeg,
            lambda s: print(json.dumps(s), flush=True),
        )
        for t in args.topology.split(",")
    }
    report = {
        "bench": "capacity",
        "date": date.today().isoformat(),
        "machine": machine_info(),
        "command": "python -m fervi.bench.capacity "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "frame_jpeg_bytes": len(jpeg),
        "fps_per_camera": args.fps,
        "runs": runs,
        "knees": {t: next((s["cameras"] for s in steps if s["knee"]), None) for t, steps in runs.items()},
    }
    out = (
        args.out
        or f"bench/results/capacity-{report['date']}-{report['machine']['machine']}-{report['machine']['cpus']}cpu.json"
    )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"knees": report["knees"], "out": out}))


if __name__ == "__main__":
    main()
