"""Soak: 8 live cameras at 15 fps for 20 minutes with 2 workers on the embedded Redis (loopback only).

    python -m fervi.bench.soak [--cameras 8] [--fps 15] [--minutes 20] [--workers 2] [--results-maxlen N]
                               [--out bench/results/soak.json]

Prints one JSON line per sample and writes the whole run (the memory curve, p95 latency per window,
skipped frames) to --out. Results and tracks streams are capped at --results-maxlen entries per camera
(default: the product's FERVI_RESULTS_MAXLEN, 10000, which a 15 fps camera fills in about 11 minutes):
memory is judged from the first sample after the streams are full (maxlen / fps + 60 s) to the end,
when any further growth is a leak.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from fervi.bench.harness import SoakPlan, soak

from fervi.embedded import EmbeddedRedis
from fervi.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument(
        "--results-maxlen",
        type=int,
        default=None,
        help="entries kept per results/tracks stream (default: FERVI_RESULTS_MAXLEN)",
    )
    parser.add_argument("--out", default="bench/results/soak.json")
    args = parser.parse_args()
    if args.results_maxlen:
        os.environ["FERVI_RESULTS_MAXLEN"] = str(args.results_maxlen)  # the soak's processes and its verdict
    settle_s = max(120.0, load_settings().results_maxlen / args.fps + 60)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        plan = SoakPlan(args.cameras, args.fps, args.minutes, args.workers, args.sample, settle_s)
        report = soak(server.url, plan, Path(tmp), on_sample=lambda s: print(json.dumps(s), flush=True))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}))


if __name__ == "__main__":
    main()
