"""FERVI on a real Redis Cluster: three primaries started by the fixture (redis-server in cluster mode, slots
assigned with CLUSTER ADDSLOTS / MEET), `redis+cluster://` URLs, cameras on every shard, and a primary
restarted in the middle of a file with nothing lost."""

from __future__ import annotations

import time

import pytest
from redis.crc import key_slot

from fervi.bus import Bus, connect, frames_key, tracks_key
from fervi.demo import write_video
from fervi.embedded import EmbeddedCluster

from .conftest import fervi_env, wait_for
from .test_pipeline_e2e import FAST, results_by_index


@pytest.fixture
def cluster(tmp_path):
    with EmbeddedCluster(tmp_path / "cluster", masters=3) as running:
        yield running


def node_of(cluster: EmbeddedCluster, key: str) -> int:
    """Which of the cluster's nodes holds `key`'s slot."""
    slot = key_slot(key.encode())
    return next(i for i, (low, high) in enumerate(cluster.slot_ranges()) if low <= slot < high)


def restart(cluster: EmbeddedCluster, index: int, down_s: float = 0.0) -> None:
    """Stop one primary and start it again on its port and data (its AOF and nodes.conf): a crashed and
    restarted shard."""
    cluster.nodes[index].stop()
    time.sleep(down_s)
    cluster.nodes[index].start()
    cluster.wait_ok()


def cameras_on_each_shard(cluster: EmbeddedCluster, prefix: str) -> list[str]:
    """One camera name per primary (a camera's keys share its hash tag, so a camera lives on one shard)."""
    found: dict[int, str] = {}
    for i in range(200):
        name = f"{prefix}{i}"
        found.setdefault(node_of(cluster, frames_key(name)), name)
        if len(found) == len(cluster.nodes):
            return [found[n] for n in sorted(found)]
    raise AssertionError("no camera name found for every shard")


def test_cameras_on_every_shard_go_through_workers_and_the_tracker(cluster, processes, tmp_path):
    cameras = cameras_on_each_shard(cluster, "shard")
    frames = 20
    env = fervi_env(cluster.url, **FAST)
    for i in range(2):
        processes.start(["worker"], env, f"worker{i}")
    processes.start(["tracker"], env, "tracker")
    ingests = [
        processes.start(
            ["ingest", str(write_video(tmp_path / f"{c}.mp4", frames=frames, fps=10)), "--camera", c],
            env,
            f"ingest-{c}",
        )
        for c in cameras
    ]
    assert all(p.wait(120) == 0 for p in ingests), [p.log_path.read_text()[-800:] for p in ingests]
    bus = Bus(connect(cluster.url))
    assert bus.cluster
    for camera in cameras:
        done = wait_for(
            lambda camera=camera: len(results_by_index(bus, camera)) == frames and results_by_index(bus, camera),
            120,
            f"every frame of {camera}",
        )
        assert sorted(done) == list(range(frames))
        wait_for(lambda camera=camera: bus.redis.xlen(tracks_key(camera)) == frames, 60, f"{camera}'s tracks")
        assert bus.tracks(camera)  # the tracker's statistics, on the camera's own shard
    assert set(cameras) <= set(bus.cameras())
    kinds = {info["kind"] for info in bus.processes().values()}  # heartbeats: scanned on every primary
    assert {"worker", "tracker"} <= kinds


def test_a_primary_restarted_mid_file_loses_nothing(cluster, processes, tmp_path):
    camera = cameras_on_each_shard(cluster, "crash")[1]
    frames = 50
    env = fervi_env(cluster.url, **FAST)
    worker = processes.start(["worker"], env, "worker")
    ingest = processes.start(
        ["ingest", str(write_video(tmp_path / "crash.mp4", frames=frames, fps=15)), "--camera", camera, "--fps", "8"],
        env,
        "ingest",
    )
    bus = Bus(connect(cluster.url))
    wait_for(lambda: len(results_by_index(bus, camera)) >= 8, 60, "results before the restart")
    restart(cluster, node_of(cluster, frames_key(camera)), down_s=2.0)
    assert ingest.wait(120) == 0, ingest.log_path.read_text()[-2000:]
    done = wait_for(
        lambda: len(results_by_index(bus, camera)) == frames and results_by_index(bus, camera),
        120,
        "every frame after the restart",
    )
    assert sorted(done) == list(range(frames))
    assert worker.poll() is None
    time.sleep(0.5)


def test_the_dashboard_and_the_cameras_registry_on_a_cluster_with_rq_on_a_standalone_redis(
    cluster, redis_url, processes, tmp_path
):
    """The dashboard's API, Socket.IO (Pub/Sub through one node), the camera supervisor and `fervi status` on
    the cluster; video jobs on FERVI_RQ_REDIS_URL (RQ does not support Redis Cluster)."""
    import json
    import subprocess
    import sys
    import urllib.request

    from fervi.embedded import free_port

    from .conftest import http_ok

    port = free_port()
    env = fervi_env(cluster.url, **FAST, FERVI_RQ_REDIS_URL=redis_url, FERVI_DASHBOARD_PORT=port)
    processes.start(["worker"], env, "worker")
    processes.start(["tracker"], env, "tracker")
    processes.start(["dashboard"], env, "dashboard")
    processes.start(["cameras", "supervise"], env, "cameras")
    processes.start(["rq-worker"], env, "rq-worker")
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: http_ok(base + "/healthz"), 60, "the dashboard")
    video = write_video(tmp_path / "loop.mp4", frames=30, fps=10)
    added = subprocess.run(
        [sys.executable, "-m", "fervi", "cameras", "add", "lobby", str(video), "--loop", "--live"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr

    def get(path):
        with urllib.request.urlopen(base + path, timeout=5) as reply:
            return json.loads(reply.read())

    wait_for(
        lambda: any(c["camera"] == "lobby" and c["state"] == "live" for c in get("/api/sources")["cameras"]),
        60,
        "the camera live on the Cameras page",
    )
    wait_for(lambda: any(c["camera"] == "lobby" for c in get("/api/cameras")), 60, "lobby on the live wall")
    wait_for(lambda: get("/api/series/lobby?seconds=60")["active"] >= 1, 60, "faces in lobby's statistics")
    assert get("/api/jobs")["workers"]  # RQ's workers, from the standalone Redis
    status = subprocess.run(
        [sys.executable, "-m", "fervi", "status", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 0, status.stderr
    kinds = {p["kind"] for p in json.loads(status.stdout)["processes"].values()}
    assert {"worker", "tracker", "dashboard", "cameras", "ingest", "rq-worker"} <= kinds


def test_a_password_in_the_cluster_url(tmp_path):
    import redis

    with EmbeddedCluster(tmp_path / "locked", masters=3, password="s3cret-pw") as locked:
        assert locked.url.startswith("redis+cluster://:s3cret-pw@")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=locked.nodes[0].port).ping()
        bus = Bus(connect(locked.url))
        for camera in cameras_on_each_shard(locked, "pw"):
            bus.register_camera(camera)
            bus.ensure_group(camera)
        assert len(bus.cameras()) == 3


def test_stream_reads_on_a_cluster_do_not_ask_a_node_for_their_keys(cluster):
    """redis-py asked a node `COMMAND GETKEYS` before every XREADGROUP on a cluster (its keys follow STREAMS):
    the idle poll of a worker's cameras cost twice its commands. Now the read's keys are found locally."""
    import redis

    from fervi.bus.core import stream_read_keys

    assert stream_read_keys(("XREADGROUP", "GROUP", "g", "c", "COUNT", 8, "STREAMS", "a", "b", ">", ">")) == ["a", "b"]
    assert stream_read_keys((b"XREAD", b"BLOCK", 5, b"STREAMS", b"k", b"0-0")) == [b"k"]
    assert stream_read_keys(("GET", "k")) is None
    bus = Bus(connect(cluster.url))
    cameras = cameras_on_each_shard(cluster, "keys")
    for camera in cameras:
        bus.register_camera(camera)
        bus.ensure_group(camera)

    def asked() -> int:
        stats = [redis.Redis(port=node.port).info("commandstats") for node in cluster.nodes]
        return sum(
            s.get(name, {}).get("calls", 0) for s in stats for name in ("cmdstat_command", "cmdstat_command|getkeys")
        )

    before = asked()
    for _ in range(20):
        assert bus.read_frames("w", cameras, 8, None) == []
    assert asked() == before
