"""Soak: 8 live cameras at 15 fps for 10 minutes with 2 workers on the embedded Redis (loopback only).

    python bench/soak.py [--cameras 8] [--fps 15] [--minutes 10] [--workers 2] [--results-maxlen 1000]
                         [--out bench/results/soak.json]

Prints one JSON line per sample and writes the whole run (start/end memory, p95 latency per window,
skipped frames) to --out. Results and tracks streams are capped at --results-maxlen entries per camera
(default 1000, so they fill within the first two minutes; the product default is 10000): memory is
judged from the first sample after two minutes to the end, when any further growth is a leak.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from fervi.bench import soak
from fervi.embedded import EmbeddedRedis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--results-maxlen", type=int, default=1000)
    parser.add_argument("--out", default="bench/results/soak.json")
    args = parser.parse_args()
    os.environ["FERVI_RESULTS_MAXLEN"] = str(args.results_maxlen)  # the soak's processes and its verdict
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        report = soak(server.url, args.cameras, args.fps, args.minutes, args.workers, args.sample, Path(tmp),
                      on_sample=lambda s: print(json.dumps(s), flush=True))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}))


if __name__ == "__main__":
    main()
