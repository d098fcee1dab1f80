"""The real pipeline: a real redis-server, `fervi ingest` and `fervi worker` processes, the shipped model."""

from __future__ import annotations

import json
import os
import signal

import redis
from click.testing import CliRunner

from fervi.app.cli import main
from fervi.bus import Bus, dead_letter_key, frames_key
from fervi.demo import write_video
from fervi.protocol import DeadLetter, Frame

from .conftest import fervi_env, wait_for
from .images import corrupt_jpeg, demo_jpeg, jpeg_claiming_size

FAST = {"FERVI_CLAIM_TIMEOUT": "2", "FERVI_BLOCK_MS": "200", "FERVI_HEARTBEAT_TTL": "5"}


def dead_letters(bus: Bus, camera: str, count: int = 100) -> list[DeadLetter]:
    """A camera's dead letters, oldest first (what an operator reads with XRANGE)."""
    return [DeadLetter.from_fields(f) for _, f in bus.redis.xrange(dead_letter_key(camera), count=count)]


def results_by_index(bus: Bus, camera: str) -> dict[int, list]:
    """All result entries of a camera grouped by frame index (after dedupe by seq, one per frame)."""
    by_seq = {}
    for _, result in bus.results(camera):
        by_seq.setdefault(result.seq, result)
    out: dict[int, list] = {}
    for result in by_seq.values():
        out.setdefault(result.index, []).append(result)
    return out


def results_of_every_frame(bus: Bus, camera: str, frames: int, what: str) -> dict[int, list]:
    """Wait until each of the file's frames 0..frames-1, and no other frame, has a result; returns the results
    by frame index."""
    done = wait_for(lambda: len(results_by_index(bus, camera)) == frames and results_by_index(bus, camera), 120, what)
    assert sorted(done) == list(range(frames))
    return done


def test_file_through_two_workers_gives_every_frame_one_result(tmp_path, redis_url, processes):
    frames = 90  # long enough that the owner is still behind when the other worker sees the camera hot
    video = write_video(tmp_path / "faces.mp4", frames=frames, fps=15)
    env = fervi_env(redis_url, **FAST)
    bus = Bus(redis.Redis.from_url(redis_url))
    bus.register_camera("file1")
    workers = [processes.start(["worker"], env, f"worker{i}") for i in range(2)]
    # both hold their leases before the frames come: one owns the camera, and the other helps once the
    # owner falls behind the file (a hot camera), so both get some
    wait_for(
        lambda: all(
            "event=cameras_assigned" in w.log_path.read_text() and "workers=2" in w.log_path.read_text()
            for w in workers
        ),
        120,
        "both workers in the assignment",
    )
    ingest = processes.start(["ingest", str(video), "--camera", "file1"], env, "ingest")
    assert ingest.wait(120) == 0, ingest.log_path.read_text()
    done = results_of_every_frame(bus, "file1", frames, "a result for every frame")
    assert all(len(v) == 1 for v in done.values())
    raw = bus.results("file1")
    assert len(raw) == len({r.seq for _, r in raw}), "a frame was published twice"
    with_two_faces = sum(len(v[0].faces) == 2 for v in done.values())
    assert with_two_faces >= frames * 0.9, with_two_faces
    assert len({r.worker for _, r in raw}) == 2, "both workers should share the file"
    assert bus.backlog("file1") == 0
    assert all(w.poll() is None for w in workers)
    status = CliRunner(env={"FERVI_REDIS_URL": redis_url}).invoke(main, ["status", "--json"])
    state = json.loads(status.output)
    assert sum(p["kind"] == "worker" for p in state["processes"].values()) == 2
    assert state["cameras"]["file1"]["backlog"] == 0
    for worker in workers:  # SIGTERM: finish the batch, ack, exit 0, leave the registry
        worker.send_signal(signal.SIGTERM)
    assert [w.wait(30) for w in workers] == [0, 0]
    assert all("event=worker_stopped" in w.log_path.read_text() for w in workers)
    assert not bus.processes()


def test_killed_worker_loses_no_frame(tmp_path, redis_url, processes):
    frames = 60
    video = write_video(tmp_path / "faces.mp4", frames=frames, fps=15)
    env = fervi_env(redis_url, **FAST, FERVI_BATCH_FRAMES="4")
    victim = processes.start(["worker"], env, "victim")
    survivor = processes.start(["worker"], env, "survivor")
    processes.start(["ingest", str(video), "--camera", "file2"], env, "ingest")
    bus = Bus(redis.Redis.from_url(redis_url))
    wait_for(lambda: len(results_by_index(bus, "file2")) >= 10, 120, "the first results")
    os.kill(victim.pid, signal.SIGKILL)
    results_of_every_frame(bus, "file2", frames, "every frame after the kill")
    assert survivor.poll() is None
    pending = bus.redis.xpending(frames_key("file2"), "workers")
    assert pending["pending"] == 0


def test_bad_entries_go_to_dead_letters_and_the_worker_keeps_serving(redis_url, processes, client):
    env = fervi_env(redis_url, **FAST)
    bus = Bus(client)
    bus.register_camera("bad")
    bus.ensure_group("bad")
    worker = processes.start(["worker"], env, "worker")
    good = Frame("bad", 0.0, 640, 480, demo_jpeg(), live=False)
    bad_jpegs = {"corrupt": corrupt_jpeg(), "empty": b"", "huge": jpeg_claiming_size(20000, 20000)}
    for jpeg in bad_jpegs.values():
        bus.add_frame(Frame("bad", 0.0, 640, 480, jpeg, live=False))
    client.xadd(frames_key("bad"), {"v": "1", "camera": "bad", "seq": "99"})  # missing fields
    good_seq, _ = bus.add_frame(good)
    wait_for(lambda: client.xlen(dead_letter_key("bad")) == 4, 60, "four dead letters")
    reasons = sorted(letter.reason for letter in dead_letters(bus, "bad"))
    assert any("corrupt image" in r or "not a readable image" in r for r in reasons)
    assert any("empty jpeg" in r for r in reasons)
    assert any("too large" in r for r in reasons)
    assert any("missing field" in r for r in reasons)
    wait_for(lambda: any(r.seq == good_seq for _, r in bus.results("bad")), 60, "the good frame's result")
    # the corrupt and the huge frame had readable headers: their seqs are marked for the tracker
    assert sorted(r.gap for _, r in bus.results("bad") if r.gap) == ["dead", "dead"]
    assert worker.poll() is None
    assert bus.stats("bad")["dead_lettered"] == 4


def test_redis_restart_under_running_ingest_and_worker(tmp_path, restartable_redis, processes):
    frames = 50
    video = write_video(tmp_path / "faces.mp4", frames=frames, fps=15)
    url = restartable_redis.url
    env = fervi_env(url, **FAST)
    worker = processes.start(["worker"], env, "worker")
    ingest = processes.start(["ingest", str(video), "--camera", "restart", "--fps", "8"], env, "ingest")
    bus = Bus(redis.Redis.from_url(url))
    wait_for(lambda: len(results_by_index(bus, "restart")) >= 8, 60, "results before the restart")
    restartable_redis.stop()
    import time

    time.sleep(2.0)
    restartable_redis.start()
    assert ingest.wait(120) == 0, ingest.log_path.read_text()
    results_of_every_frame(bus, "restart", frames, "every frame after the restart")
    assert worker.poll() is None
    assert "event=reconnected" in worker.log_path.read_text()
    assert "event=reconnected" in ingest.log_path.read_text()
