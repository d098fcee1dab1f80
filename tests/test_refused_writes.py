"""A Redis that refuses writes (OOM under maxmemory with noeviction; MISCONF after a failed save) is waited out
like an unreachable one: the worker and the ingest stay up, say why in /healthz and the log, and resume by
themselves when writes are accepted again, every frame with exactly one result."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis

from fervi.bus import Bus
from fervi.demo import write_video
from fervi.embedded import EmbeddedRedis, free_port

from .conftest import fervi_env, health_json, wait_for
from .test_pipeline_e2e import results_by_index


def refuse_oom(client: redis.Redis) -> None:
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", max(1, int(client.info("memory")["used_memory"]) // 2))


def accept_oom(client: redis.Redis) -> None:
    client.config_set("maxmemory", 0)


def refuse_misconf(client: redis.Redis, tmp_path) -> None:
    """A save that fails (its folder gone) with save points set: Redis answers writes with MISCONF."""
    gone = tmp_path / "gone"
    gone.mkdir()
    client.config_set("dir", str(gone))
    gone.rmdir()
    client.config_set("save", "3600 1")
    client.bgsave()
    wait_for(lambda: client.info("persistence")["rdb_last_bgsave_status"] == "err", 10, "the failed save")


def accept_misconf(client: redis.Redis, data_dir) -> None:
    client.config_set("dir", str(data_dir))
    client.config_set("save", "")
    client.bgsave()
    wait_for(lambda: client.info("persistence")["rdb_last_bgsave_status"] == "ok", 10, "a good save")


@pytest.mark.parametrize("refusal", ["OOM", "MISCONF"])
def test_workers_and_ingest_wait_out_a_redis_refusing_writes(tmp_path, restartable_redis, processes, refusal):
    frames = 60
    video = write_video(tmp_path / "file.mp4", frames=frames, fps=15)
    url = restartable_redis.url
    client = redis.Redis.from_url(url)
    env = fervi_env(url, FERVI_CLAIM_TIMEOUT="2", FERVI_BLOCK_MS="200", FERVI_BATCH_FRAMES="4")
    worker_port, ingest_port = free_port(), free_port()
    worker = processes.start(["worker", "--metrics-port", str(worker_port)], env, "worker")
    ingest = processes.start(
        ["ingest", str(video), "--camera", "full", "--fps", "10", "--metrics-port", str(ingest_port)], env, "ingest"
    )
    bus = Bus(redis.Redis.from_url(url))
    wait_for(lambda: len(results_by_index(bus, "full")) >= 8, 90, "the first results")

    if refusal == "OOM":
        refuse_oom(client)
    else:
        refuse_misconf(client, tmp_path)
    with pytest.raises(redis.ResponseError):
        client.set("probe", "x")  # Redis does refuse writes now
    said = wait_for(
        lambda: "refusing writes" in health_json(worker_port).get("redis", "") and health_json(worker_port),
        30,
        "the worker's why",
    )
    assert refusal in said["redis"] and said["ok"] is False
    assert "EVALSHA" not in said["redis"] and "\\x" not in said["redis"]  # the reason, not the failed command
    status = subprocess.run(
        [sys.executable, "-m", "fervi", "status"], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert f"warning: Redis refusing writes: {refusal}" in status
    wait_for(lambda: "refusing writes" in health_json(ingest_port).get("redis", ""), 30, "the ingest's why")
    time.sleep(2)  # a few more refused tries each
    assert worker.poll() is None, worker.log_path.read_text()[-2000:]
    assert ingest.poll() is None, ingest.log_path.read_text()[-2000:]

    if refusal == "OOM":
        accept_oom(client)
    else:
        accept_misconf(client, restartable_redis.data_dir)
    assert ingest.wait(180) == 0, ingest.log_path.read_text()[-2000:]
    done = wait_for(
        lambda: len(results_by_index(bus, "full")) == frames and results_by_index(bus, "full"),
        120,
        "every frame of the file",
    )
    assert sorted(done) == list(range(frames))
    seqs = [r.seq for _, r in bus.results("full")]
    assert len(seqs) == len(set(seqs)), "a frame has two result entries"
    wait_for(lambda: health_json(worker_port).get("ok") is True, 30, "the worker healthy again")
    log = worker.log_path.read_text()
    assert "event=refusing_writes" in log and "bad_redis_value" not in log
    assert "bad_redis_value" not in ingest.log_path.read_text()


def test_the_embedded_redis_log_stays_bounded(tmp_path):
    with EmbeddedRedis(tmp_path / "redis", log_max_bytes=4000) as server:
        client = redis.Redis.from_url(server.url)
        for i in range(300):  # a Redis that logs a line at every write (a full disk) looks like this
            client.execute_command("DEBUG", "LOG", f"line {i} " + "x" * 60)
        client.ping()
    log_file = tmp_path / "redis" / "redis.log"
    older = log_file.with_name("redis.log.1")
    assert log_file.stat().st_size <= 4000 and older.stat().st_size <= 4000
    assert "line 299" in log_file.read_text() + older.read_text()  # the newest lines are kept


def test_a_damaged_append_only_file_is_one_line_with_its_repair(tmp_path):
    home = tmp_path / "home"
    with EmbeddedRedis(home / "redis") as server:
        client = redis.Redis.from_url(server.url)
        for i in range(50):
            client.set(f"k{i}", "v" * 50)
    aof = home / "redis" / "appendonly.aof"
    data = aof.read_bytes()
    cut = data.index(b"*3", len(data) // 2)
    aof.write_bytes(data[:cut] + b"*x3\r\n" + data[cut:])  # a command broken in the middle of the file

    env = {**os.environ, "FERVI_HOME": str(home), "FERVI_REDIS_URL": ""}
    up = subprocess.run(
        [sys.executable, "-m", "fervi", "up", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert up.returncode == 1
    assert up.stderr.strip().splitlines() == [up.stderr.strip()]  # one line, no traceback
    assert "append-only file" in up.stderr and "fervi redis-repair" in up.stderr
    assert "redis-check-aof" not in up.stderr and "Traceback" not in up.stderr

    repair = subprocess.run(
        [sys.executable, "-m", "fervi", "redis-repair"], env=env, capture_output=True, text=True, timeout=120
    )
    assert repair.returncode == 0, repair.stderr
    assert len(list((home / "redis").glob("appendonly.aof.damaged-*"))) == 1  # the damaged file is kept
    again = subprocess.run(
        [sys.executable, "-m", "fervi", "redis-repair"], env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0 and "nothing to repair" in again.stdout, again.stdout + again.stderr
    assert len(list((home / "redis").glob("appendonly.aof.damaged-*"))) == 1  # a sound file is not copied
    with EmbeddedRedis(home / "redis") as server:  # starts again, with the commands before the damage
        kept = redis.Redis.from_url(server.url).dbsize()
    assert 0 < kept < 50
