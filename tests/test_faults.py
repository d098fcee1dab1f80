"""Faults during a run: frozen, killed and restarted parts; a file still gets exactly one result per frame,
a live camera recovers within a stated time, and the dashboard comes back with Redis."""

from __future__ import annotations

import os
import signal
import time

import redis

from fervi.bus import Bus
from fervi.demo import write_video
from fervi.embedded import free_port

from .conftest import fervi_env, http_ok, wait_for
from .test_pipeline_e2e import results_by_index

LIVE_RECOVERY_S = 15  # a live camera has fresh results this soon after Redis is back


def test_frozen_killed_workers_and_a_redis_restart_lose_no_frame(tmp_path, restartable_redis, processes):
    frames = 90
    video = write_video(tmp_path / "file.mp4", frames=frames, fps=15)
    live = write_video(tmp_path / "live.mp4", frames=30, fps=10)
    url = restartable_redis.url
    port = free_port()
    env = fervi_env(
        url, FERVI_CLAIM_TIMEOUT="2", FERVI_BLOCK_MS="200", FERVI_BATCH_FRAMES="4", FERVI_DASHBOARD_PORT=str(port)
    )
    frozen = processes.start(["worker"], env, "frozen")
    killed = processes.start(["worker"], env, "killed")
    survivor = processes.start(["worker"], env, "survivor")
    dashboard = processes.start(["dashboard"], env, "dashboard")
    ingest = processes.start(["ingest", str(video), "--camera", "faults", "--fps", "10"], env, "ingest")
    live_ingest = processes.start(["ingest", str(live), "--camera", "cam-live", "--live", "--loop"], env, "live")
    bus = Bus(redis.Redis.from_url(url))
    wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "the dashboard")
    wait_for(lambda: len(results_by_index(bus, "faults")) >= 10, 90, "the first results")

    os.kill(frozen.pid, signal.SIGSTOP)  # frozen with frames in hand, past the claim timeout
    os.kill(killed.pid, signal.SIGKILL)
    time.sleep(3)
    restartable_redis.stop()
    time.sleep(2)
    restartable_redis.start()
    restarted = time.time()
    os.kill(frozen.pid, signal.SIGCONT)

    def fresh_live_result():
        return any(r.captured_at > restarted and not r.gap for _, r in bus.results("cam-live"))

    wait_for(fresh_live_result, LIVE_RECOVERY_S, f"a live result within {LIVE_RECOVERY_S} s of the restart")
    assert ingest.wait(180) == 0, ingest.log_path.read_text()[-2000:]
    done = wait_for(
        lambda: len(results_by_index(bus, "faults")) == frames and results_by_index(bus, "faults"),
        120,
        "every frame of the file",
    )
    assert sorted(done) == list(range(frames))
    seqs = [r.seq for _, r in bus.results("faults")]
    assert len(seqs) == len(set(seqs)), "a frame has two result entries"
    assert frozen.poll() is None and survivor.poll() is None and live_ingest.poll() is None
    assert dashboard.poll() is None
    wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 30, "the dashboard after the restart")
