"""The RQ queue of offline video jobs, and the only module that imports RQ (RQ is Redis): jobs enqueued with
retries, their progress read back, stopping and canceling them, RQ's registries (abandoned, failed and
canceled jobs), its workers, and what a running job reports. `Bus.queue(name)` gives the queue on `Bus.jobs`."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rq import Queue, Retry, Worker, get_current_job
from rq.command import send_stop_job_command
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry, FailedJobRegistry, StartedJobRegistry

from .videos import Videos

log = logging.getLogger("fervi.bus")

QueuedJob = Job  # what `VideoQueue.add` returns: the stages name the type from here, never from RQ
ENDED = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED)


JOB_MONITORING_S = 5  # how often an RQ worker renews its heartbeat while its work-horse runs a job
HEARTBEAT_MARGIN_S = 20  # how long past its next heartbeat a job is taken for abandoned (RQ's own: 60 s)


@dataclass
class Progress:
    """Where a video's jobs stand: work units done/total over them, and a state."""

    done: int
    total: int
    state: str  # queued | running | finished | failed | canceled | gone
    error: str = ""
    result: dict[str, Any] = field(default_factory=dict)


class VideoQueue(Queue):
    """RQ's queue, with what FERVI does with its jobs: callers hold job ids and never RQ's connection."""

    def add(self, func: Callable[..., Any], *args: Any, retries: int = 0, **options: Any) -> Job:
        """`func(*args)` as a job, run again up to `retries` times when it fails or its worker dies; `options`
        are RQ's (`depends_on`, `job_timeout`, `result_ttl`, `meta`, `description`)."""
        return self.enqueue(func, *args, retry=Retry(max=retries) if retries else None, **options)

    def progress(self, job_ids: list[str], final: str | None = None) -> Progress:
        """Units done/total over the jobs and where they stand, without waiting: `failed` (with the first
        failed job's error), `finished` once `final` (the job whose end is the video's end) has, `canceled`,
        `gone` (RQ's records of some were removed: they will never run), else `running` or `queued`."""
        fetched = Job.fetch_many(job_ids, connection=self.connection)
        jobs = [job for job in fetched if job is not None]
        states = [job.get_status(refresh=False) for job in jobs]
        done = sum(int(job.meta.get("done", 0)) for job in jobs)
        total = sum(int(job.meta.get("total", 0)) for job in jobs)
        failed = next((job for job, state in zip(jobs, states, strict=True) if state == JobStatus.FAILED), None)
        if failed is not None:
            return Progress(done, total, "failed", failure_message(failed))
        last = next(
            (job for job, state in zip(jobs, states, strict=True) if job.id == final and state == JobStatus.FINISHED),
            None,
        )
        if last is not None:
            return Progress(total, total, "finished", result=last.return_value() or {})
        if JobStatus.CANCELED in states:
            return Progress(done, total, "canceled", "canceled")
        if len(jobs) < len(fetched):
            return Progress(
                done, total, "gone", f"{len(fetched) - len(jobs)} of its jobs are gone (RQ's records were removed)"
            )
        return Progress(done, total, "running" if JobStatus.STARTED in states or done else "queued")

    def stop(self, job_ids: list[str]) -> None:
        """Stop the running ones of these jobs and cancel those not started (see `stop_jobs`)."""
        stop_jobs(job for job in Job.fetch_many(job_ids, connection=self.connection) if job is not None)

    def requeue_abandoned(self) -> None:
        """RQ's clean-up of jobs whose worker died without a word (kill -9, a lost host) once its heartbeat has
        expired: retried if they have retries left, else failed."""
        StartedJobRegistry(queue=self).cleanup()

    def stats(self) -> dict[str, int]:
        """Jobs waiting; jobs that failed, apart from those stopped by a cancel (RQ keeps both in its failed-job
        registry); and jobs canceled before they ran."""
        failed_ids = FailedJobRegistry(queue=self).get_job_ids(0, 999)
        statuses = [
            job.get_status(refresh=False) if job else None
            for job in Job.fetch_many(failed_ids, connection=self.connection)
        ]
        stopped = sum(status == JobStatus.STOPPED for status in statuses)
        return {
            "queued": self.count,
            "failed": len(failed_ids) - stopped,
            "canceled": stopped + CanceledJobRegistry(queue=self).count,
        }

    def workers(self) -> dict[str, dict[str, str]]:
        """RQ's own registry of the workers on this Redis (they keep no FERVI heartbeat): name -> kind, host,
        state, job."""
        out = {}
        for worker in Worker.all(connection=self.connection):
            job = worker.get_current_job_id()
            out[worker.name] = {
                "kind": "rq-worker",
                "hostname": worker.hostname or "",
                "state": worker.get_state(),
                **({"job": job} if job else {}),
            }
        return out

    def work(self, name: str, burst: bool = False, logging_level: str = "INFO") -> None:
        """Run the queue's jobs in this process (an RQ worker) until stopped, or until empty with `burst`."""
        # the work-horse's heartbeat every JOB_MONITORING_S: the segment of a worker that vanished whole is
        # retried once its heartbeat is JOB_MONITORING_S + HEARTBEAT_MARGIN_S old, 25 s instead of RQ's 90
        worker = VideoWorker([self], connection=self.connection, name=name, job_monitoring_interval=JOB_MONITORING_S)
        worker.work(burst=burst, logging_level=logging_level)


def stop_jobs(jobs: Iterable[Job]) -> None:
    """Stop a running job (RQ's stop command to its worker) and cancel the ones not started."""
    for job in jobs:
        status = job.get_status()
        if status == JobStatus.STARTED:
            try:
                send_stop_job_command(job.connection, job.id)
            except Exception:  # noqa: BLE001 - the job may have just ended
                pass
        elif status not in ENDED:
            job.cancel()


def failure_message(job: Job) -> str:
    """The last line of a failed job's exception (`VideoError: x.mp4: not a readable video`)."""
    result = job.latest_result()
    exc = (result.exc_string if result is not None else None) or ""
    lines = [line for line in exc.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"job {job.id} {job.get_status()}"


class _SavesMeta(Protocol):
    """RQ's `Job.save_meta` as RQ documents it (its code leaves it unannotated): it writes `job.meta` alone,
    where `Job.save` would write every field of the job over a stop that came meanwhile."""

    def save_meta(self) -> None: ...


def _save_meta(job: _SavesMeta) -> None:
    job.save_meta()


def report_progress(done: int, total: int) -> None:
    """The running job's units done/total, in its RQ record (`fervi analyze` follows it there) and, for a
    dashboard upload, in FERVI's record of the video (which outlives RQ's). Nothing outside a job."""
    job = get_current_job()
    if job is None:
        return
    job.meta.update({"done": done, "total": total})
    _save_meta(job)
    if job.meta.get("video_id"):
        Videos(job.connection).video_progress(job.meta["video_id"], job.id, done, total)


def update_running_video(**fields: Any) -> None:
    """Change FERVI's record of the video the running job works for (a dashboard upload); nothing for a
    video of `fervi analyze` or outside a job."""
    job = get_current_job()
    if job is not None and job.meta.get("video_id"):
        Videos(job.connection).update_video(job.meta["video_id"], **fields)


class VideoWorker(Worker):
    """RQ's worker, except that stopping a job never kills the worker itself.

    RQ kills a stopped job's work horse by its process group, which the horse makes its own right after the
    fork. A stop that arrives in between (a video canceled the moment its job starts) found the worker's own
    group and killed the worker, and with it every process of that group: the queue then stood still. Such a
    horse is killed alone."""

    def get_heartbeat_ttl(self, job: Job) -> int:
        """RQ's heartbeat TTL with FERVI's margin (HEARTBEAT_MARGIN_S, not RQ's fixed 60 s): a job whose
        worker vanished (kill -9, a lost host) is found abandoned that much after its last heartbeat. The
        heartbeat comes from the worker's own loop every JOB_MONITORING_S, whatever the work-horse does."""
        if job.timeout and job.timeout > 0:
            left = job.timeout - self.current_job_working_time
            return int(min(left, self.job_monitoring_interval)) + HEARTBEAT_MARGIN_S
        return int(self.job_monitoring_interval) + HEARTBEAT_MARGIN_S

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
