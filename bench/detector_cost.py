"""What the default detector costs per frame in the three ways workers and tools call it.

On the demo camera's 640x480 frames (`fervi.demo.render_frame`, 1, 2 and 4 faces), one core, best of 3:
- `followed`: one stream, every frame, full scans every 0.3 s of a 30 fps clock (a live worker keeping up);
- `stale`: every 6th frame of a stream, so each is a full scan (a worker falling behind);
- `image`: frames on their own, no stream (image mode, `fervi predict`, training's reframing).
Prints JSON (ms per frame by faces).

    python bench/detector_cost.py
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fervi.demo import render_frame  # noqa: E402 - after sys.path: the bench runs as a script from a checkout
from fervi.vision.detector import load_detector  # noqa: E402 - after sys.path: the bench runs as a script from a checkout

FPS = 30.0
REPEATS = 3


def ms_per_frame(frames: list, step: int, stream: bool) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        detector = load_detector("multiscale", full_scan_every=10, full_scan_s=0.3)
        picked = range(0, len(frames), step)
        started = time.perf_counter()
        for i in picked:
            if stream:
                detector.detect(frames[i], "camera", i, i / FPS)
            else:
                detector.detect(frames[i])
        best = min(best, (time.perf_counter() - started) / len(picked) * 1000)
    return round(best, 2)


def main() -> None:
    result: dict = {"bench": "detector_cost", "machine": platform.platform(), "frame": "640x480 demo"}
    for faces in (1, 2, 4):
        frames = [render_frame(i, 240, faces=faces) for i in range(240)]
        load_detector("multiscale").detect(frames[0])  # models loaded once before timing
        result.setdefault("followed_ms", {})[faces] = ms_per_frame(frames, 1, stream=True)
        result.setdefault("stale_every_6th_ms", {})[faces] = ms_per_frame(frames, 6, stream=True)
        result.setdefault("image_no_stream_ms", {})[faces] = ms_per_frame(frames[:40], 1, stream=False)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
