"""`fervi bench --quick` runs on this install and prints the documented keys (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run_bench_module(module: str, args: list[str], tmp_path) -> dict:
    """`python -m <module> <args> --out FILE` in `tmp_path`, checked to exit 0; the JSON it wrote."""
    out = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, "-m", module, *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(out.read_text())


def test_bench_quick_prints_one_json_object(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FERVI_REDIS_URL"}
    env["FERVI_HOME"] = str(tmp_path / "home")
    run = subprocess.run(
        [sys.executable, "-m", "fervi", "--log-level", "WARNING", "bench", "--quick", "--no-peer", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert set(report["classifier_faces_per_s"]) == {"1", "8", "32"}
    for key in ("detector_ms", "worker_fps_1face", "worker_fps_4faces", "scaling_2_workers"):
        assert report[key] > 0, key
    assert set(report["e2e_latency_ms"]) == {"p50", "p95", "p99"}
    assert report["e2e"]["frames_tracked"] > 0
    assert report["tracking"]["tracks"] >= 2
    assert report["machine_info"]["cpus"] >= 1


def test_capacity_bench_drives_cameras_through_one_redis_and_a_cluster(tmp_path):
    """The capacity bench's own run, small: every step reports what docs/scaling.md is built from."""
    args = ["--cameras", "2,4", "--seconds", "2", "--producers", "1", "--consumers", "1"]
    report = run_bench_module("fervi.bench.capacity", args, tmp_path)
    assert set(report["runs"]) == {"single", "cluster"}
    for steps in report["runs"].values():
        assert [s["cameras"] for s in steps] == [2, 4]
        for s in steps:
            # frames went through and their latency was measured (how fast is the bench's to report)
            assert s["done_fps"] > 0 and s["p95_latency_ms"] is not None
            assert s["redis_net_bytes_per_frame"] > report["frame_jpeg_bytes"]  # the frame goes in and out once
            assert s["redis_cpu_us_per_frame"] > 0 and s["redis_commands_per_frame"] > 3


def test_worker_scaling_bench_runs_production_workers_per_cell(tmp_path):
    """The workers x cameras bench, one small cell per topology: real `Worker` processes (null pipeline) are
    all up, frames come back as results, and the busy and idle figures of issue #28 are there."""
    args = ["--workers", "2", "--cameras", "3", "--fps", "30", "--seconds", "2", "--idle", "1"]
    report = run_bench_module("fervi.bench.worker_scaling", args, tmp_path)
    assert set(report["cells"]) == {"single", "cluster"}
    for cells in report["cells"].values():
        [cell] = cells
        assert (cell["workers"], cell["cameras"], cell["workers_ready"]) == (2, 3, 2)
        assert cell["done"] > 0 and cell["p95_latency_ms"] is not None
        assert cell["redis_cpu_us_per_frame"] > 0 and cell["redis_commands_per_frame"] > 3
        assert cell["idle_commands_per_s_per_worker"] > 0  # workers keep reading (or polling) with no frames
    # where one Redis spends its time (the ingest and publish scripts are EVALSHA), with the doorbell on
    assert report["doorbell"] is True and "evalsha" in report["cells"]["single"][0]["costliest_commands"]
    assert "costliest_commands" not in report["cells"]["cluster"][0]
