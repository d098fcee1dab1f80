"""`fervi bench --quick` runs on this install and prints the documented keys (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_bench_quick_prints_one_json_object(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FERVI_REDIS_URL"}
    env["FERVI_HOME"] = str(tmp_path / "home")
    run = subprocess.run([sys.executable, "-m", "fervi", "--log-level", "WARNING", "bench", "--quick", "--no-peer",
                          "--json"], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert set(report["classifier_faces_per_s"]) == {"1", "8", "32"}
    for key in ("detector_ms", "worker_fps_1face", "worker_fps_4faces", "scaling_2_workers"):
        assert report[key] > 0, key
    assert set(report["e2e_latency_ms"]) == {"p50", "p95", "p99"}
    assert report["e2e"]["frames_tracked"] > 0
    assert report["tracking"]["tracks"] >= 2
    assert report["machine_info"]["cpus"] >= 1
