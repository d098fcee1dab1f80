"""`fervi analyze` and `fervi rq-worker`: submit videos, follow their jobs, and run RQ workers.

With no FERVI_REDIS_URL, `fervi analyze` brings its own embedded Redis and one RQ worker per core and
stops them at the end. The wait loop also runs RQ's registry cleanup, so the segment of a worker that died
without a word (kill -9, lost host) is retried once its heartbeat has expired.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fervi.bus import Bus, process_id
from fervi.bus.queue import VideoQueue, stop_jobs

from .jobs import QUEUE, Submitted, submit
from .video_io import VideoError

log = logging.getLogger(__name__)

CLEANUP_EVERY_S = 5.0


def preload() -> None:
    """Import what jobs use once, in the worker: RQ forks a work horse per job, which then starts warm
    (matplotlib alone takes about a second to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401 - imported to warm the work horses, not used here

    import fervi.vision.pipeline  # noqa: F401 - likewise
    from fervi.vision.tflite import interpreter_class

    interpreter_class()  # imports LiteRT (or TensorFlow's tf.lite)
    from . import jobs, outputs  # noqa: F401 - likewise


def rq_worker(redis_url: str, burst: bool = False) -> int:
    preload()
    queue = Bus.from_url(redis_url, socket_timeout=None).queue(QUEUE)  # RQ blocks on its queue for minutes
    queue.work(process_id("rq"), burst=burst, logging_level=logging.getLevelName(logging.getLogger().level))
    return 0


@dataclass
class VideoState:
    video: str
    submitted: Submitted | None
    error: str = ""
    done: bool = False
    result: dict = field(default_factory=dict)
    analysed: int = 0  # frames of the video analysed, then drawn into annotated.mp4
    annotated: int = 0

    @property
    def frames(self) -> int:
        """The video's frames (those its analysis segments cover)."""
        return sum(int(job.meta.get("total", 0)) for job in self.submitted.segments) if self.submitted else 0


@dataclass
class FramesDone:
    """`fervi analyze`'s progress over all its videos, in frames: each is analysed, then annotated."""

    analysed: int
    annotated: int
    frames: int


def follow(
    states: list[VideoState],
    queue: VideoQueue,
    on_progress: Callable[[FramesDone], None] | None = None,
    poll_s: float = 0.3,
    timeout_s: float | None = None,
) -> list[VideoState]:
    """Wait until every video's last job has finished or one of its jobs has failed for good; `on_progress`
    hears the frames analysed and annotated of all the videos (those done included) after each look."""
    cleaned = 0.0
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"videos not done after {timeout_s:.0f} s")
        if time.monotonic() - cleaned > CLEANUP_EVERY_S:
            queue.requeue_abandoned()  # jobs of dead workers: retried if they have retries left
            cleaned = time.monotonic()
        for state in states:
            if state.submitted is not None and not state.done:
                _look(state, state.submitted, queue)
        if on_progress:
            on_progress(
                FramesDone(
                    sum(s.analysed for s in states), sum(s.annotated for s in states), sum(s.frames for s in states)
                )
            )
        if all(s.done or s.submitted is None for s in states):
            return states
        time.sleep(poll_s)


def _look(state: VideoState, submitted: Submitted, queue: VideoQueue) -> None:
    """Where the jobs of one video (`state`, whose jobs are `submitted`) stand, into `state`: its frames
    analysed and annotated, and whether it is done."""
    progress = queue.progress(submitted.ids, final=submitted.finish.id)
    if progress.state == "finished":
        state.done, state.result = True, progress.result
        state.analysed = state.annotated = state.frames
        return
    if progress.state in ("failed", "canceled", "gone"):
        state.done, state.error = True, progress.error
        cancel([state])
        return
    state.analysed = min(state.frames, queue.progress([job.id for job in submitted.segments]).done)
    state.annotated = min(state.frames, queue.progress([job.id for job in submitted.parts]).done)


def cancel(states: list[VideoState]) -> None:
    """Stop the videos' running jobs and cancel the others. (`fervi analyze` still passes the queue's
    connection; each job is stopped on its own, so it is not used.)"""
    for state in states:
        if state.submitted is not None:
            stop_jobs(state.submitted.jobs)


def submit_all(
    queue: VideoQueue, videos: list[str], out: str, segments: int, every: int, detect_every: int | None = None
) -> list[VideoState]:
    states = []
    for video in videos:
        try:
            states.append(VideoState(video, submit(queue, video, out, segments, every, detect_every=detect_every)))
        except VideoError as err:
            states.append(VideoState(video, None, str(err), True))
    return states
