"""`fervi analyze` and `fervi rq-worker`: submit videos, follow their jobs, and run RQ workers.

With no FERVI_REDIS_URL, `fervi analyze` brings its own embedded Redis and one RQ worker per core and
stops them at the end. The wait loop also runs RQ's registry cleanup, so the segment of a worker that died
without a word (kill -9, lost host) is retried once its heartbeat has expired.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass, field

from rq import Queue, Worker
from rq.command import send_stop_job_command
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from fervi.bus import Bus, process_id

from .jobs import QUEUE, Submitted, submit
from .video_io import VideoError

log = logging.getLogger(__name__)

CLEANUP_EVERY_S = 5.0


def preload() -> None:
    """Import what jobs use once, in the worker: RQ forks a work horse per job, which then starts warm
    (matplotlib alone takes about a second to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401

    import fervi.vision.pipeline  # noqa: F401
    from fervi.vision.tflite import interpreter_class

    interpreter_class()  # imports LiteRT (or TensorFlow's tf.lite)
    from . import jobs, outputs  # noqa: F401


class VideoWorker(Worker):
    """RQ's worker, except that stopping a job never kills the worker itself.

    RQ kills a stopped job's work horse by its process group, which the horse makes its own right after the
    fork. A stop that arrives in between (a video canceled the moment its job starts) found the worker's own
    group and killed the worker, and with it every process of that group: the queue then stood still. Such a
    horse is killed alone."""

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        try:
            shares_our_group = os.getpgid(self.horse_pid) == os.getpgrp()
        except ProcessLookupError:
            return  # already gone
        if not shares_our_group:
            super().kill_horse(sig)
            return
        try:
            os.kill(self.horse_pid, sig)
            log.info("event=horse_killed_alone worker=%s pid=%d", self.name, self.horse_pid)
        except ProcessLookupError:
            pass


def rq_worker(redis_url: str, burst: bool = False) -> int:
    preload()
    queue = Bus.from_url(redis_url, socket_timeout=None).queue(QUEUE)  # RQ blocks on its queue for minutes
    worker = VideoWorker([queue], connection=queue.connection, name=process_id("rq"))
    worker.work(burst=burst, logging_level=logging.getLevelName(logging.getLogger().level))
    return 0


def failure_message(job: Job) -> str:
    """The last line of a failed job's exception (`VideoError: x.mp4: not a readable video`)."""
    result = job.latest_result()
    exc = (result.exc_string if result is not None else None) or ""
    lines = [line for line in exc.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"job {job.id} {job.get_status()}"


@dataclass
class VideoState:
    video: str
    submitted: Submitted | None
    error: str = ""
    done: bool = False
    result: dict = field(default_factory=dict)


@dataclass
class Progress:
    done: int
    total: int
    state: str  # queued | running | finished | failed | canceled
    error: str = ""
    result: dict = field(default_factory=dict)


def progress_of(jobs: list[Job], final: Job) -> Progress:
    """Work units done/total over a video's jobs (frames analysed, then frames drawn) and where it stands,
    without waiting. `final` is the job whose end is the video's end."""
    done = total = 0
    states = []
    for job in jobs:
        job.refresh()
        status = job.get_status()
        states.append(status)
        done += int(job.meta.get("done", 0))
        total += int(job.meta.get("total", 0))
        if status == JobStatus.FAILED:
            return Progress(done, total, "failed", failure_message(job))
    if final.get_status() == JobStatus.FINISHED:
        return Progress(total, total, "finished", result=final.return_value() or {})
    if JobStatus.CANCELED in states:
        return Progress(done, total, "canceled", "canceled")
    return Progress(done, total, "running" if JobStatus.STARTED in states or done else "queued")


def follow(states: list[VideoState], queue: Queue, on_progress=None, poll_s: float = 0.3,
           timeout_s: float | None = None) -> list[VideoState]:
    """Wait until every video's last job has finished or one of its jobs has failed for good."""
    registry = StartedJobRegistry(queue=queue)
    cleaned = 0.0
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"videos not done after {timeout_s:.0f} s")
        if time.monotonic() - cleaned > CLEANUP_EVERY_S:
            registry.cleanup()  # abandoned jobs of dead workers: retried if they have retries left
            cleaned = time.monotonic()
        done = total = 0
        for state in states:
            if state.submitted is None or state.done:
                continue
            progress = progress_of(state.submitted.jobs, state.submitted.finish)
            done, total = done + progress.done, total + progress.total
            if progress.state == "finished":
                state.done, state.result = True, progress.result
            elif progress.state in ("failed", "canceled"):
                state.done, state.error = True, progress.error
                cancel([state], queue.connection)
        if on_progress:
            on_progress(done, total)
        if all(s.done or s.submitted is None for s in states):
            return states
        time.sleep(poll_s)


def cancel_jobs(jobs: list[Job], connection) -> None:
    """Stop a running job (RQ stop command) and cancel the ones not started."""
    for job in jobs:
        status = job.get_status()
        if status == JobStatus.STARTED:
            try:
                send_stop_job_command(connection, job.id)
            except Exception:  # noqa: BLE001 - the job may have just ended
                pass
        elif status not in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED):
            job.cancel()


def cancel(states: list[VideoState], connection) -> None:
    for state in states:
        if state.submitted is not None:
            cancel_jobs(state.submitted.jobs, connection)


def submit_all(queue: Queue, videos: list[str], out: str, segments: int, every: int,
               detect_every: int | None = None) -> list[VideoState]:
    states = []
    for video in videos:
        try:
            states.append(VideoState(video, submit(queue, video, out, segments, every, detect_every=detect_every)))
        except VideoError as err:
            states.append(VideoState(video, None, str(err), True))
    return states

