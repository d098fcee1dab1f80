"""Offline analysis speed: frames/s and x real time of `fervi analyze` for 640x480 and 1280x720 demo videos
(30 fps, two real faces) with 1 and 2 RQ workers on the embedded Redis, every frame analysed and every
second frame (`--every 2`), with the default keyframe detection (`--detect-every` auto: the detector runs
every 0.1 s of video, the classifier on every analysed frame).

    python -m fervi.bench.analyze_speed [--seconds 60] [--out bench/results/analyze_speed.json]

Each run is the whole command as a user runs it (start Redis and workers, analyse, write every output),
timed from the outside, so fixed costs (starting Redis and the workers, about 2 s) are included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fervi.bench.harness import machine_info

from fervi.demo import write_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each test video")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--out", default="bench/results/analyze_speed.json")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in ("640x480", "1280x720"):
            width, height = (int(v) for v in size.split("x"))
            frames = int(args.seconds * args.fps)
            video = write_video(Path(tmp) / f"talk-{size}.mp4", frames, args.fps, width, height, faces=2)
            for workers, every in ((1, 1), (2, 1), (2, 2)):
                segments = 2 * workers
                out = Path(tmp) / f"out-{size}-{workers}-{every}"
                command = [
                    sys.executable,
                    "-m",
                    "fervi",
                    "--log-level",
                    "WARNING",
                    "analyze",
                    str(video),
                    "--out",
                    str(out),
                    "--workers",
                    str(workers),
                    "--segments",
                    str(segments),
                    "--every",
                    str(every),
                ]
                started = time.perf_counter()
                subprocess.run(
                    command, check=True, capture_output=True, env={**os.environ, "FERVI_HOME": str(Path(tmp) / "home")}
                )
                wall = time.perf_counter() - started
                summary = json.loads((out / video.stem / "summary.json").read_text())
                run = {
                    "size": size,
                    "frames": frames,
                    "video_seconds": args.seconds,
                    "rq_workers": workers,
                    "every": every,
                    "analysed_frames": summary["analysed_frames"],
                    "detect_every": summary["detect_every"],
                    "face_rows": summary["face_rows"],
                    "wall_s": round(wall, 2),
                    "frames_per_s": round(frames / wall, 1),
                    "x_real_time": round(args.seconds / wall, 2),
                    "command": f"fervi analyze talk-{size}.mp4 --workers {workers} --segments {segments} "
                    f"--every {every}",
                }
                print(json.dumps(run), flush=True)
                runs.append(run)
    report = {
        "machine_info": machine_info(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
