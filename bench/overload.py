"""Overload: how one worker that cannot keep up shares itself among live cameras, and what the statistics say.

    python -m fervi.bench.overload [--seconds 40] [--out bench/results/overload.json]

On the embedded Redis (loopback only), with the real worker, tracker and live ingests of the demo video (two
real faces always in view), one worker and three live cameras:
1. three identical cameras at 46, 55 and 64 fps each, which overload the worker (the overload is measured:
   frames sent / frames processed, all cameras together: 2.4x, 7.1x and 7.8x on the 2-core machine of the
   committed results, where the ingests' own CPU, and the reading and marking of every skipped frame, lower
   what the worker can take as the rate grows);
2. fairness: one camera 4x busier than the two others, together about 3x.

Per camera, over the measured window: frames sent and processed, the share skipped, the spacing of the
processed frames (their capture times: median, 90th percentile, largest, coefficient of variation), and the
face-time the charts' series hold against two faces for the seconds watched (1.0: every second of both faces
counted), with the seconds counted as not observed. Prints one JSON object and writes it to --out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
from fervi.bench.harness import machine_info, spawn_quiet

from fervi.bus import Bus, connect
from fervi.demo import write_video
from fervi.embedded import EmbeddedRedis, free_port
from fervi.emotions import EMOTIONS
from fervi.service import stop_processes

FACES_IN_VIEW = 2  # the demo video's two portraits never leave the picture
WARM_UP_S = 12.0  # model loading and the first backlog
# per camera, frames a second sent: found by measurement on the 2-core machine of bench/results/overload.json
RUNS = {
    "three_at_46fps": {f"same{i}": 46.0 for i in range(3)},
    "three_at_55fps": {f"same{i}": 55.0 for i in range(3)},
    "three_at_64fps": {f"same{i}": 64.0 for i in range(3)},
    "one_4x_busier": {"busy": 96.0, "quiet0": 24.0, "quiet1": 24.0},
}


def run_cameras(
    redis_url: str, video: Path, fps: dict[str, float], seconds: float, screenshots: Path | None = None
) -> dict[str, dict]:
    """One worker, the tracker and a looping live ingest per camera at its fps, on a Redis of their own; per
    camera what came through in `seconds` after the warm-up. `screenshots`: a dashboard runs too, and the
    wall and the first camera's charts are taken at 1280 and 390 px wide into that folder at the end."""
    bus = Bus(connect(redis_url))
    procs = [spawn_quiet(["worker"], redis_url), spawn_quiet(["tracker"], redis_url)]
    procs += [
        spawn_quiet(["ingest", str(video), "--camera", name, "--live", "--loop", "--fps", str(rate)], redis_url)
        for name, rate in fps.items()
    ]
    port = free_port()
    if screenshots:
        procs.append(spawn_quiet(["dashboard"], redis_url, FERVI_DASHBOARD_PORT=str(port)))
    try:
        time.sleep(WARM_UP_S)
        after = {name: bus.last_tracks_id(name) for name in fps}
        started = time.time()
        time.sleep(seconds)
        ended = time.time()
        if screenshots:
            take_screenshots(f"http://127.0.0.1:{port}", next(iter(fps)), seconds, screenshots)
        return {name: camera_report(bus, name, after[name], started, ended) for name in fps}
    finally:
        stop_processes(procs, 30)


def take_screenshots(url: str, camera: str, seconds: float, folder: Path) -> None:
    """The live wall (a warning on each tile) and `camera`'s charts over the run (no holes for faces that
    stay), at 1280 and 390 px wide: overload-wall*.png, overload-charts*.png."""
    from playwright.sync_api import sync_playwright

    folder.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium")
        for width, suffix in ((1280, ""), (390, "-phone")):
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(url + "/")
            page.wait_for_function("document.querySelectorAll('.tile[data-warning*=\"keep up\"]').length > 0")
            time.sleep(1.0)
            page.screenshot(path=str(folder / f"overload-wall{suffix}.png"), full_page=True)
            page.goto(f"{url}/charts?camera={camera}&minutes={max(1, round(seconds / 60 + 0.5))}")
            page.wait_for_function("Number(document.getElementById('summary').dataset.faceSeconds || 0) > 1")
            time.sleep(1.0)
            page.screenshot(path=str(folder / f"overload-charts{suffix}.png"), full_page=True)
            page.close()
        browser.close()


def camera_report(bus: Bus, camera: str, after: str, start: float, end: float) -> dict:
    entries = [entry for _, entry in bus.track_entries(camera, after) if entry.captured_at <= end]
    if len(entries) < 2:
        return {"processed": len(entries)}
    times = np.array([entry.captured_at for entry in entries])
    sent = entries[-1].seq - entries[0].seq + 1
    spacing = np.diff(times)
    # whole seconds inside the window: the buckets at its edges hold only part of it
    series = bus.emotion_series(camera, "1s", start + 1, end - 1)
    watched = len(series["t"]) - 1  # the last bucket is still filling
    face_s = sum(sum(series[e][:-1]) for e in EMOTIONS)
    return {
        "sent": sent,
        "processed": len(entries),
        "sent_fps": round(sent / (times[-1] - times[0]), 2),
        "processed_fps": round((len(entries) - 1) / (times[-1] - times[0]), 2),
        "skipped_pct": round(100 * (1 - len(entries) / sent), 1),
        "spacing_ms": {
            "median": round(1000 * float(np.median(spacing)), 1),
            "p90": round(1000 * float(np.percentile(spacing, 90)), 1),
            "max": round(1000 * float(spacing.max()), 1),
            "cv": round(float(spacing.std() / spacing.mean()), 3),
        },
        "face_time_vs_in_view": round(face_s / (FACES_IN_VIEW * watched), 3) if watched > 0 else None,
        "not_observed_s": round(sum(series["unobserved"][:-1]), 2),
        "seconds": watched,
    }


def spread(cameras: dict[str, dict], key: str) -> float:
    values = [c[key] for c in cameras.values() if key in c]
    return round(max(values) - min(values), 2) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="measured window of each run")
    parser.add_argument("--out", default="bench/results/overload.json", help="committed as overload-<date>-<machine>")
    parser.add_argument(
        "--screenshots",
        type=Path,
        help="also run the first case again with a dashboard, and take the wall and the charts into this folder",
    )
    args = parser.parse_args()
    report: dict = {"date": date.today().isoformat(), "machine": machine_info(), "seconds": args.seconds}
    with tempfile.TemporaryDirectory() as tmp:
        video = write_video(Path(tmp) / "live.mp4", frames=150, fps=15, seamless=True)
        for name, fps in RUNS.items():
            with EmbeddedRedis(Path(tmp) / name) as server:
                cameras = run_cameras(server.url, video, fps, args.seconds)
            sent = sum(c.get("sent_fps", 0) for c in cameras.values())
            processed = sum(c.get("processed_fps", 0) for c in cameras.values())
            report[name] = {
                "fps_sent_per_camera": fps,
                "overload": round(sent / processed, 2) if processed else None,
                "cameras": cameras,
                "skipped_pct_spread": spread(cameras, "skipped_pct"),
                "processed_fps_spread": spread(cameras, "processed_fps"),
            }
            print(json.dumps({name: report[name]}), flush=True)
        if args.screenshots:  # a run of its own: the dashboard's CPU is not in the figures above
            name, fps = next(iter(RUNS.items()))
            with EmbeddedRedis(Path(tmp) / "screenshots") as server:
                run_cameras(server.url, video, fps, args.seconds, args.screenshots)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}))


if __name__ == "__main__":
    main()
