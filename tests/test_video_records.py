"""Dashboard videos keep FERVI's own record: the page outlives RQ's job records, retention and the delete
button remove everything, failed uploads leave nothing, and a job run again cannot fail a finished video.

The dashboard app runs in this process (its HTTP routes through Flask's test client); the jobs run in a
real `fervi rq-worker` process on the session's real redis-server.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from fervi.dashboard.app import create_app
from fervi.offline.jobs import QUEUE, analyze_segment, annotate_part, finish_video, merge_segments
from rq import Queue

from fervi.bus import VIDEO_QUEUE
from fervi.demo import write_video
from fervi.settings import load_settings

from .conftest import Processes, fervi_env, wait_for


@pytest.fixture(scope="module")
def rq_worker(tmp_path_factory, redis_server):
    procs = Processes(tmp_path_factory.mktemp("rq"))
    procs.start(["rq-worker"], fervi_env(redis_server.url), "rq-worker")
    yield
    procs.stop_all()


@pytest.fixture
def dashboard(tmp_path, redis_url, rq_worker):
    home = tmp_path / "home"
    app, _ = create_app(
        load_settings({"FERVI_HOME": str(home), "FERVI_VIDEO_RETENTION": "1h"}), redis_url, start_relay=False
    )
    return {"http": app.test_client(), "videos": app.extensions["fervi_videos"], "home": home}


def upload(http, path: Path):
    return http.post(
        "/api/videos", data={"video": (io.BytesIO(path.read_bytes()), path.name)}, content_type="multipart/form-data"
    )


def finished(http, video_id: str, timeout_s: float = 120) -> dict:
    def done():
        status = http.get(f"/api/videos/{video_id}").get_json()
        assert status["state"] not in ("failed", "canceled"), status
        return status if status["state"] == "finished" else None

    return wait_for(done, timeout_s, "the video to finish", interval_s=0.3)


def folders(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.glob("*/*"))


def test_the_videos_page_outlives_rq_job_records(dashboard, tmp_path, client):
    """Before: RQ dropped finished job records after 500 s and /api/videos/<id> returned 500."""
    http = dashboard["http"]
    response = upload(http, write_video(tmp_path / "talk.mp4", frames=30, fps=10))
    assert response.status_code == 200
    video_id = response.get_json()["id"]
    status = finished(http, video_id)
    assert status["done"] == status["total"] > 0 and status["files"] == [
        "faces.csv",
        "summary.json",
        "annotated.mp4",
        "timeline.png",
    ]
    assert status["ended_at"] >= status["created_at"]
    removed = sum(client.delete(k) for k in client.scan_iter(match="rq:job:*"))  # as RQ's TTLs would
    assert removed >= 6
    again = http.get(f"/api/videos/{video_id}")
    assert again.status_code == 200 and again.get_json()["state"] == "finished"
    assert [v["id"] for v in http.get("/api/videos").get_json()] == [video_id]
    assert http.get(f"/videos/{video_id}/faces.csv").data.startswith(b"frame,time_s,track_id")


def test_retention_and_the_delete_button_remove_everything(dashboard, tmp_path):
    http, videos, home = dashboard["http"], dashboard["videos"], dashboard["home"]
    ids = [upload(http, write_video(tmp_path / f"v{i}.mp4", frames=20, fps=10)).get_json()["id"] for i in range(2)]
    ended = [finished(http, i)["ended_at"] for i in ids]
    assert folders(home) == sorted([f"uploads/{i}" for i in ids] + [f"videos/{i}" for i in ids])
    assert videos.sweep(now=max(ended) + 60)["expired"] == 0  # within FERVI_VIDEO_RETENTION=1h: kept
    assert http.delete(f"/api/videos/{ids[0]}").get_json() == {"ok": True}
    assert http.get(f"/api/videos/{ids[0]}").status_code == 404
    assert folders(home) == [f"uploads/{ids[1]}", f"videos/{ids[1]}"]
    assert videos.sweep(now=max(ended) + 3601)["expired"] == 1
    assert folders(home) == [] and http.get("/api/videos").get_json() == []
    assert http.delete("/api/videos/../../etc").status_code == 404


def test_a_running_video_can_be_deleted(dashboard, tmp_path, client):
    http, home = dashboard["http"], dashboard["home"]
    video_id = upload(http, write_video(tmp_path / "long.mp4", frames=400, fps=20)).get_json()["id"]
    wait_for(lambda: http.get(f"/api/videos/{video_id}").get_json()["state"] == "running", 60, "the video to start")
    assert http.delete(f"/api/videos/{video_id}").status_code == 200
    assert folders(home) == [] and client.keys(f"fervi:{{video-{video_id}}}:*") == []
    queue = Queue(QUEUE, connection=client)
    wait_for(lambda: queue.count == 0 and not queue.started_job_registry.get_job_ids(), 30, "its jobs to stop")
    time.sleep(1.0)
    assert folders(home) == []  # nothing written after the delete


def test_failed_uploads_leave_nothing_behind(dashboard, tmp_path):
    http, home = dashboard["http"], dashboard["home"]
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video at all\n" * 100)
    response = upload(http, notes)
    assert response.status_code == 400 and "not a readable video" in response.get_json()["error"]
    assert str(tmp_path) not in response.get_json()["error"]  # the server's paths stay private
    assert folders(home) == [] and http.get("/api/videos").get_json() == []


def test_a_video_whose_jobs_fail_is_recorded_as_failed(dashboard, tmp_path):
    http, home = dashboard["http"], dashboard["home"]
    video_id = upload(http, write_video(tmp_path / "gone.mp4", frames=20, fps=10)).get_json()["id"]
    (home / "uploads" / video_id / "gone.mp4").write_bytes(b"")  # lost before any worker read it
    status = wait_for(
        lambda: (s := http.get(f"/api/videos/{video_id}").get_json())["state"] == "failed" and s,
        120,
        "the video to fail",
    )
    assert "not a readable video" in status["error"] and status["ended_at"]
    assert http.delete(f"/api/videos/{video_id}").status_code == 200 and folders(home) == []


def test_jobs_run_again_after_the_video_finished_do_not_fail_it(dashboard, tmp_path, client):
    """Before: RQ's registry clean-up re-queued a finished segment, which ran again and ended FAILED."""
    http = dashboard["http"]
    video_id = upload(http, write_video(tmp_path / "twice.mp4", frames=20, fps=10)).get_json()["id"]
    finished(http, video_id)
    out = Path(dashboard["videos"].bus.video(video_id)["out"])
    stamps = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
    jobs = [client.hgetall(f"rq:job:{j}") for j in dashboard["videos"].bus.video(video_id)["jobs"]]
    assert len(jobs) == 6
    # each job function again, with a finished video's outputs in place
    segment = analyze_segment(str(tmp_path / "twice.mp4"), 0, 10, 1, str(out / ".segments" / "000.npz"))
    assert "already done" in segment["skipped"]
    assert "already done" in merge_segments({}, [], str(out), 1)["skipped"]
    assert "already done" in annotate_part({}, 0, 10, str(out), str(out / ".segments" / "annotated-000.mp4"))["skipped"]
    assert finish_video([], str(out))["frames"] == 20
    # and through RQ, as a re-queued job would run
    job = Queue(QUEUE, connection=client).enqueue(
        analyze_segment, str(tmp_path / "twice.mp4"), 0, 10, 1, str(out / ".segments" / "000.npz")
    )
    wait_for(lambda: job.get_status(refresh=True) in ("finished", "failed"), 60, "the re-run")
    assert job.get_status() == "finished"
    assert {f.name: f.stat().st_mtime_ns for f in out.iterdir()} == stamps  # outputs untouched
    assert http.get(f"/api/videos/{video_id}").get_json()["state"] == "finished"


def test_a_video_whose_job_records_vanish_mid_run_ends_failed_not_running(dashboard, tmp_path, client):
    """Before (found by the independent run): RQ's job records removed 1.5 s into a video left it "running"
    for good, so retention never deleted its upload."""
    http, videos, home = dashboard["http"], dashboard["videos"], dashboard["home"]
    video_id = upload(http, write_video(tmp_path / "lost.mp4", frames=400, fps=20)).get_json()["id"]
    wait_for(lambda: http.get(f"/api/videos/{video_id}").get_json()["state"] == "running", 60, "the video to start")
    for key in client.scan_iter(match="rq:job:*"):
        client.delete(key)
    status = wait_for(
        lambda: (s := http.get(f"/api/videos/{video_id}").get_json())["state"] == "failed" and s, 30, "the video to end"
    )
    assert "jobs are gone" in status["error"] and status["ended_at"]
    assert videos.sweep(now=status["ended_at"] + 3601)["expired"] == 1
    wait_for(lambda: folders(home) == [], 30, "its files to go (a segment in flight may write one last file)")


def test_fervi_status_lists_rq_workers(tmp_path, redis_server):
    """Its own RQ worker: RQ registers a worker once, at start, and other tests here flush Redis."""
    import json

    from click.testing import CliRunner

    from fervi.app.cli import main

    redis_url = redis_server.url
    procs = Processes(tmp_path)
    procs.start(["rq-worker"], fervi_env(redis_url), "rq-worker-listed")

    def listed():
        result = CliRunner().invoke(main, ["status", "--json"], env={"FERVI_REDIS_URL": redis_url})
        assert result.exit_code == 0, result.output
        workers = [p for p in json.loads(result.stdout)["processes"].values() if p["kind"] == "rq-worker"]
        return workers if workers and workers[0]["state"] != "?" else None  # RQ sets it just after registering

    try:
        workers = wait_for(listed, 60, "the RQ worker to register")
        assert workers[0]["state"] in ("idle", "busy", "started")
    finally:
        procs.stop_all()


def test_a_canceled_video_can_be_retried_and_the_jobs_view_shows_the_queue(dashboard, tmp_path):
    http = dashboard["http"]
    video_id = upload(http, write_video(tmp_path / "long.mp4", frames=150, fps=10)).get_json()["id"]
    assert http.post(f"/api/videos/{video_id}/retry").status_code == 409  # queued: nothing to retry
    assert http.post(f"/api/videos/{video_id}/cancel").get_json()["ok"]
    assert http.get(f"/api/videos/{video_id}").get_json()["state"] == "canceled"
    jobs = http.get("/api/jobs").get_json()  # (RQ's worker registry was flushed with Redis by the fixture)
    assert set(jobs) == {"queued", "failed", "canceled", "workers"}
    # a cancel is not a failure: none of this video's jobs failed, and the failed count is RQ's failed jobs
    # only (a job an earlier test left running may have failed meanwhile: it is counted, and rightly)
    from rq.job import Job, JobStatus
    from rq.registry import FailedJobRegistry

    bus = dashboard["videos"].bus
    own = [Job.fetch(j, connection=bus.jobs).get_status() for j in bus.video(video_id)["jobs"]]
    assert own and JobStatus.FAILED not in own and jobs["canceled"] >= 1
    registry = FailedJobRegistry(queue=bus.queue(VIDEO_QUEUE))

    def consistent() -> bool:  # read twice: a leftover job may fail between the two reads
        failed = [Job.fetch(j, connection=bus.jobs).get_status() for j in registry.get_job_ids()]
        return http.get("/api/jobs").get_json()["failed"] == failed.count(JobStatus.FAILED)

    wait_for(consistent, 10, "the jobs line to count RQ's failed jobs only")
    assert http.post(f"/api/videos/{video_id}/retry").get_json() == {"ok": True}
    status = finished(http, video_id, timeout_s=180)
    assert status["retries"] == 1 and status["done"] == status["total"] > 0  # progress counts the new jobs only
    assert status["summary"]["tracks"] == 2 and abs(sum(status["summary"]["emotion_share"].values()) - 1) < 1e-3
    again = http.post(f"/api/videos/{video_id}/retry")
    assert again.status_code == 409 and "finished" in again.get_json()["error"]
    assert http.post("/api/videos/0123456789ab/retry").status_code == 404


def test_stopping_a_job_the_moment_it_starts_kills_the_horse_not_the_worker(redis_url):
    """RQ kills a stopped job's work horse by process group, which the horse makes its own right after the
    fork; a stop in between (found by the clean-clone run: a video canceled as its job started) killed the
    RQ worker itself. Here the horse has not made its group yet: it alone is killed."""
    import subprocess
    import sys

    script = (
        "import os, sys, time\n"
        "from fervi.bus import Bus\n"
        "from fervi.bus.queue import VideoWorker\n"
        "queue = Bus.from_url(sys.argv[1]).queue('fervi-test-horse')\n"
        "worker = VideoWorker([queue], connection=queue.connection, name='horse-test')\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    time.sleep(30); os._exit(0)  # a horse that has not called setpgrp yet\n"
        "worker._horse_pid = child\n"
        "worker.kill_horse()\n"
        "pid, status = os.waitpid(child, 0)\n"
        "print('horse', 'killed' if os.WIFSIGNALED(status) else 'exited', 'worker alive')\n"
    )
    # its own process group, so a wrong killpg would hit only this child process and not pytest
    done = subprocess.run(
        [sys.executable, "-c", script, redis_url], capture_output=True, text=True, timeout=60, start_new_session=True
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip().endswith("horse killed worker alive"), done.stdout
