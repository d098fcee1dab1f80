"""`fervi worker`: the loop around the worker core. Read a batch across cameras, analyse, publish, ack.

Read the cameras it is assigned (`assignment`, refreshed while running) with XREADGROUP: on one Redis an
idle worker waits on its doorbell (one key that each frame of its cameras rings, `_read_rung`), on a
cluster it polls its streams; take over entries of silent workers with XAUTOCLAIM, skip stale live frames,
dead-letter bad entries, and on SIGTERM finish the batch in hand before leaving.

Fair and even under overload: each batch takes FERVI_BATCH_FRAMES (a GPU worker: FERVI_GPU_BATCH_FRAMES)
divided among the cameras with frames. A read takes up to READ_AHEAD frames per camera, all that came while
the worker was busy: a live camera's are thinned to its share, spread evenly (`core.triage`); a file's
beyond its share wait in the worker (`_held`, still pending in Redis, so a crash loses none) for the next
batches, and its stream is not read again until they are done.

Bounded whatever the number of cameras: a read takes at most READ_BUDGET frames across cameras (cameras
beyond it are read in turn, a window at a time), a reclaim at most a batch, and a batch decodes frames only
while it holds less than `core.BATCH_PIXEL_FRAMES` of the largest size allowed (the rest wait in `_held`,
still pending).
"""

from __future__ import annotations

import collections
import logging
import time

from fervi.bus import Bus, Entry, RedisRefused, connect, process_id, redis_trouble
from fervi.clock import ServerClock
from fervi.metrics import BATCH_SECONDS, DEAD_LETTERS, FACES, FRAMES_DONE, FRAMES_RECLAIMED, FRAMES_SKIPPED, LATENCY
from fervi.protocol import is_live_frame, metric_camera
from fervi.service import Heartbeat, Shutdown, run_redis_loop, serve
from fervi.settings import Settings
from fervi.vision.pipeline import FacePipeline, Timing

from .assignment import Owners, helped
from .core import analyse, triage

log = logging.getLogger(__name__)

CAMERA_REFRESH_S = 1.0  # how often a worker renews its lease and takes its cameras again
FORGET_DEAD_EVERY_S = 60.0
NAMES_EVERY_S = 30.0  # the camera set read again at least this often (a camera added by some other client)
RECLAIM_EVERY_S = 2.0  # how often a camera just taken over is asked for entries its last reader left
HOT_TTL_S = 5.0  # a camera stays hot this long after its owner last could not keep up


def lease_seconds(claim_timeout_s: float) -> float:
    """How long a worker's lease runs without renewal: a third of the claim timeout (at least three
    refreshes), so a dead worker's cameras move well before its pending frames may be reclaimed."""
    return max(3 * CAMERA_REFRESH_S, claim_timeout_s / 3)


READ_AHEAD = 64  # frames read per camera at once: what came while the worker was busy, for even thinning
READ_BUDGET = 256  # frames read at once across cameras (their JPEGs are in memory until the batch is done)
RECLAIM_CHUNK = 64  # cameras asked for idle entries in one round trip
PREVIEW_EVERY_S = 0.1  # newest frame per camera for live displays, at most 10 a second
BELL_SWEEP_S = 1.0  # with the doorbell, all its cameras are still read this often (a bell rang elsewhere)
REASSERT_REFRESHES = 3  # with the doorbell, a camera's new owner sets its reader at this many refreshes more
HELP_WAIT_MS = 50  # with the doorbell, how long a worker helping hot cameras (never rung) waits for a bell


class Worker:
    def __init__(self, settings: Settings, redis_url: str, pipeline: FacePipeline, name: str | None = None):
        self.settings = settings
        self.name = name or process_id("worker")
        self.bus = Bus(connect(redis_url, socket_timeout=max(10, settings.block_ms / 1000 + 5)))
        self.pipeline = pipeline
        self.shutdown = Shutdown(self.name)
        self.cameras: list[str] = []
        self.frames_done = 0
        self.started_at = time.time()
        self._refreshed_at = 0.0
        self._claimed_at = 0.0
        self.heartbeat = Heartbeat(self.bus, self.name, "worker", settings.heartbeat_ttl_s)
        self._preview_at: dict[str, float] = {}
        self.clock = ServerClock(self.bus.server_time)  # frame ages by Redis's clock
        self._held: dict[str, collections.deque[Entry]] = {}  # file frames beyond a camera's share, deferred ones
        self._window_at = 0  # where the next read's window of cameras starts (more cameras than READ_BUDGET)
        self._file_cameras: set[str] = set()  # cameras whose last frames read were a file's (never thinned)
        self.redis_ok = False
        self.redis_error = ""  # why Redis is not usable (unreachable, refusing writes), for /healthz
        # A GPU classifier pays off on large batches: gather frames of every camera for a few ms more
        gpu = getattr(pipeline.classifier, "name", "") == "keras"
        self.gather_s = settings.gpu_max_wait_ms / 1000 if gpu else 0.0
        self.gather_frames = settings.gpu_batch_frames if gpu else settings.batch_frames
        # its share of the cameras: a GPU worker batching 64 frames where a CPU one takes 8 weighs 8
        self.weight = max(1.0, self.gather_frames / max(1, settings.batch_frames))
        self.lease_s = lease_seconds(settings.claim_timeout_s)
        self._assigned: list[str] = []
        self._owned: list[str] | None = None  # none yet: the first assignment is logged
        self._owners = Owners()  # every camera's owner among the live workers
        self._workers_seen = 0
        self._assigned_for: tuple = ()
        self._names: list[str] = []
        self._names_version: str | None = None
        self._names_at = 0.0
        self._reclaim_until: dict[str, float] = {}  # camera just taken over -> reclaim often until then
        self._swept_at = 0.0
        self._forgot_at = 0.0
        self._hot_at = 0.0
        self._behind: set[str] = set()  # file cameras whose last read came back full
        self._idle = True  # its last read found nothing
        # the doorbell (`Bus.bells`, one Redis): an idle worker waits on its bell, not on all its streams
        self._rings_me: set[str] = set()  # the cameras whose frames ring this worker (it set their reader)
        self._reassert: dict[str, int] = {}  # cameras it owns lately -> refreshes left to set their reader again
        self._unrung: set[str] = set()  # cameras to read at the next read without a bell (taken, full, rung)
        self._bell_swept_at = 0.0  # when all its cameras were last read (monotonic)
        self._idle_at = 0.0  # when a read last found nothing (time.time()): it has capacity to spare

    # --- housekeeping ------------------------------------------------------------------------
    def _refresh_cameras(self, now: float) -> None:
        """Renew this worker's lease and take the cameras assigned to it (`assignment`): those it owns among
        the live workers, and the hot cameras of others it helps. Its cost does not grow with all cameras:
        the camera set is read again only when its version changed (or every NAMES_EVERY_S), and only
        cameras newly taken are type-checked."""
        if now - self._refreshed_at < CAMERA_REFRESH_S:
            return
        names = self.bus.camera_names_since(self._names_version, force=now - self._names_at > NAMES_EVERY_S)
        if names is not None:
            self._names_version, self._names, self._names_at = names[0], names[1], now
        workers = self.bus.hold_worker_lease(self.name, self.weight, self.lease_s)
        key = (tuple(self._names), tuple(sorted(workers.items())))
        if key != self._assigned_for:  # computed again only when the cameras or the workers changed
            self._owners.update(self._names, workers)  # what moved only: a join is one hash per camera
            own = self._owners.owned_by(self.name)
            if (own, len(workers)) != (self._owned, self._workers_seen):  # its share, or the workers, changed
                log.info(
                    "event=cameras_assigned worker=%s own=%d workers=%d cameras=%d",
                    self.name,
                    len(own),
                    len(workers),
                    len(self._names),
                )
            self._owned, self._assigned_for, self._workers_seen = own, key, len(workers)
        if self.bus.bells:
            self._ring_me(set(self._owned or ()))
        # hot cameras of others: helped only by a worker with capacity to spare (a read came back empty
        # lately); where every worker is busy, helping would only add reads
        spare = now - self._idle_at < 2 * CAMERA_REFRESH_S
        hot = [c for c in self.bus.hot_cameras() if c in set(self._names)] if spare else []
        self._assigned = sorted({*(self._owned or []), *helped(hot, workers, self.name)})
        kept = [c for c in self.cameras if c in set(self._assigned)]
        taken = self.bus.valid_cameras([c for c in self._assigned if c not in set(kept)])
        for camera in taken:
            self.bus.ensure_group(camera)
            log.info("event=camera_joined worker=%s camera=%s", self.name, camera)
            # what its last reader left pending is reclaimed as soon as it may be: every RECLAIM_EVERY_S
            # until a claim timeout has passed since now
            self._reclaim_until[camera] = now + self.settings.claim_timeout_s + RECLAIM_EVERY_S
        self.cameras = sorted(kept + taken)
        self._refreshed_at = now
        if self.bus.bells:  # cameras just taken are read at once
            self._unrung |= set(taken)
        for camera in set(self._held) - set(self.cameras):  # given up: its pending entries go with it
            del self._held[camera]
        self._file_cameras &= set(self.cameras)
        if now - self._forgot_at > FORGET_DEAD_EVERY_S:
            self.bus.forget_dead_workers()
            self._forgot_at = now

    def _ring_me(self, owned: set[str]) -> None:
        """The doorbell: the frames of the cameras it owns ring it from now on. A worker that saw the workers
        before the last one joined may set a camera's reader after its new owner did: a camera's new owner
        sets it again at its next REASSERT_REFRESHES refreshes, a worker that gives a camera up hands its
        reader to the new owner it sees (where it is still the reader), and a sweep of `_read_rung` sets it
        whenever an own camera's frames did not ring."""
        for camera in owned - self._rings_me:
            self._reassert[camera] = REASSERT_REFRESHES + 1
        self._reassert = {c: n - 1 for c, n in self._reassert.items() if c in owned and n > 0}
        self.bus.ring_me(self.name, sorted(self._reassert))
        given = {c: self._owners.best[c][1] for c in self._rings_me - owned if c in self._owners.best}
        self.bus.hand_bells_over(self.name, given)
        self._rings_me = owned

    def _reclaim(self, now: float) -> list[Entry]:
        """Entries idle past the claim timeout in another consumer's pending list become ours: on cameras just
        taken over, every RECLAIM_EVERY_S for a claim timeout; on all it reads, once a claim timeout (a
        worker that died while helping). At most a batch at a time."""
        if now - self._claimed_at < RECLAIM_EVERY_S:
            return []
        self._claimed_at = now
        if now - self._swept_at >= self.settings.claim_timeout_s:
            self._swept_at = now
            due = list(self.cameras)
        else:
            due = [c for c in self.cameras if self._reclaim_until.get(c, 0.0) >= now]
        self._reclaim_until = {c: t for c, t in self._reclaim_until.items() if t >= now}
        claimed: list[Entry] = []
        for start in range(0, len(due), RECLAIM_CHUNK):  # a round trip a chunk of cameras
            left = self.gather_frames - len(claimed)
            if left <= 0:  # a batch at most: the rest at the next step
                self._claimed_at = 0.0
                self._swept_at = 0.0 if len(due) == len(self.cameras) else self._swept_at
                break
            chunk = due[start : start + RECLAIM_CHUNK]
            entries = self.bus.reclaim_many(self.name, chunk, int(self.settings.claim_timeout_s * 1000), left)
            for camera, n in collections.Counter(entry.camera for entry in entries).items():
                FRAMES_RECLAIMED.labels(metric_camera(camera)).inc(n)
                log.info("event=reclaimed worker=%s camera=%s frames=%d", self.name, camera, n)
            claimed += entries
        # beyond a batch (each camera of a chunk may give `left`): still pending on this worker, for the next
        for entry in claimed[self.gather_frames :]:
            self._held.setdefault(entry.camera, collections.deque()).append(entry)
        return claimed[: self.gather_frames]

    # --- one batch ---------------------------------------------------------------------------
    def per_camera(self, cameras: int | None = None) -> int:
        """Each camera's share of a batch (FERVI_BATCH_FRAMES, or FERVI_GPU_BATCH_FRAMES on a GPU worker), among
        `cameras` (default: all the worker reads)."""
        return max(1, self.gather_frames // max(1, len(self.cameras) if cameras is None else cameras))

    def _read(self) -> list[Entry]:
        """New frames across cameras, after the file frames held from earlier reads; a GPU worker then keeps
        reading up to `gather_s` (its latency bound) or `gather_frames`, so one classifier call takes the
        faces of many frames and cameras."""
        per_camera = self.per_camera()
        entries = self._take_held(per_camera)
        unread = self._window([c for c in self.cameras if not self._held.get(c)])
        files = [c for c in unread if c in self._file_cameras]
        live = [c for c in unread if c not in self._file_cameras]  # or not seen yet
        if files:  # their share only, without blocking: they are never thinned
            got = self.bus.read_frames(self.name, files, per_camera, None)
            # a full share: more frames wait, this worker is behind the file (helpers read it: `_mark_hot`)
            counts = collections.Counter(entry.camera for entry in got)
            self._behind = {c for c, n in counts.items() if n >= per_camera}
            entries += got
        if self.bus.bells and not entries:  # nothing at hand: wait for a bell, then read the cameras that rang
            entries += self._read_rung(per_camera)
        elif live or (files and not entries):  # block only when nothing is at hand
            block_ms = None if entries else self._block_ms()
            # read ahead only when busy (frames came meanwhile, thinned evenly); an idle worker takes a share,
            # so a file that starts on it is not all pending on it before a helper can join (`_mark_hot`)
            ahead = live and not self._idle
            count = max(1, min(READ_AHEAD, READ_BUDGET // len(live))) if ahead else per_camera
            entries += self._hold_back(self.bus.read_frames(self.name, live or files, count, block_ms), per_camera)
        elif not entries:
            time.sleep(self.settings.block_ms / 1000)
        self._idle = not entries
        if self._idle:
            self._idle_at = time.time()
        deadline = time.monotonic() + self.gather_s
        while entries and self.gather_s and len(entries) < self.gather_frames and not self.shutdown.requested:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms < 1:  # (BLOCK 0 would wait forever)
                break
            count = max(1, min(per_camera, self.gather_frames - len(entries)))
            more = self.bus.read_frames(self.name, self._window(self.cameras), count, left_ms)
            if not more:
                break
            entries += more
        return entries

    def _read_rung(self, per_camera: int) -> list[Entry]:
        """With the doorbell: wait up to FERVI_BLOCK_MS on this worker's one bell key, then read the cameras
        that rang, those just taken, and those whose last read came back full, without blocking. A blocking
        read of all its streams registers and releases the worker on each of them at every frame (the cost
        that grew with its cameras); this costs the same for 1 camera or 1,000. Hot cameras it helps (their
        frames ring their owner) are read at every turn, waiting HELP_WAIT_MS at most; every BELL_SWEEP_S all
        its cameras are read (a camera whose reader key names another worker, still or for a moment)."""
        readable = [c for c in self.cameras if not self._held.get(c)]
        if not readable:
            time.sleep(self.settings.block_ms / 1000)
            return []
        helping = set(self.cameras) - set(self._owned or ())
        now = time.monotonic()
        sweep = now - self._bell_swept_at >= BELL_SWEEP_S
        wait_ms = min(self.settings.block_ms, HELP_WAIT_MS) if helping else self.settings.block_ms
        answered = self.bus.wait_for_bell(self.name, 0 if sweep or self._unrung else wait_ms, READ_BUDGET)
        sweep = sweep or answered is None  # all of them: the sweep, or a spoilt bell
        rung = answered or []
        if sweep:
            self._bell_swept_at = now
            wanted = set(readable)
        else:
            wanted = (set(rung) | self._unrung | helping) & set(readable)
        chosen = sorted(wanted)
        self._unrung = set(chosen[READ_BUDGET:])  # the rest at the next read
        chosen = chosen[:READ_BUDGET]
        if not chosen and not rung:
            return []
        # busy: read ahead (thinned evenly); idle: a share and one more, which says whether more wait
        ahead = not self._idle
        count = max(1, min(READ_AHEAD, READ_BUDGET // max(1, len(chosen)))) if ahead else per_camera + 1
        got = self.bus.read_rung(self.name, chosen, count, rung)
        full = collections.Counter(entry.camera for entry in got)
        self._unrung |= {c for c, n in full.items() if n >= count}  # more may wait: read again without a bell
        if sweep:  # an own camera with frames that did not ring: it rings another worker (one with an older
            # view of the workers set its reader last)
            strays = set(full) & set(self._owned or ()) - set(rung)
            self.bus.ring_me(self.name, sorted(strays))
        files = {c for c in chosen if c in self._file_cameras}
        self._behind = {c for c in files if full.get(c, 0) >= per_camera}
        return self._hold_back(got, per_camera)

    def _window(self, cameras: list[str]) -> list[str]:
        """At most READ_BUDGET of `cameras`, a different window at each read, so every camera is read in turn."""
        if len(cameras) <= READ_BUDGET:
            return cameras
        start = self._window_at % len(cameras)
        self._window_at = start + READ_BUDGET
        return (cameras[start:] + cameras[:start])[:READ_BUDGET]

    def _block_ms(self) -> int:
        """How long an empty read waits: with cameras read a window at a time, a turn of all windows waits
        about FERVI_BLOCK_MS, so no camera's frames wait longer than with one read of all."""
        windows = -(-len(self.cameras) // READ_BUDGET)
        return max(1, self.settings.block_ms // max(1, windows))

    def _hold_back(self, entries: list[Entry], per_camera: int) -> list[Entry]:
        """A camera's file frames beyond its share wait in `_held` (in order) for the next batches; a camera
        whose frames are a file's is read for its share only from then on."""
        taken: collections.Counter[str] = collections.Counter()
        out = []
        for entry in entries:
            live = is_live_frame(entry.fields)
            (self._file_cameras.discard if live else self._file_cameras.add)(entry.camera)
            if not live and taken[entry.camera] >= per_camera:
                self._held.setdefault(entry.camera, collections.deque()).append(entry)
                continue
            taken[entry.camera] += not live
            out.append(entry)
        return out

    def _take_held(self, per_camera: int) -> list[Entry]:
        out = []
        for camera, held in list(self._held.items()):
            for _ in range(min(per_camera, len(held))):
                out.append(held.popleft())
            if not held:
                del self._held[camera]
        return out

    def step(self) -> int:
        """Read and finish one batch; returns the number of entries handled."""
        now = time.time()
        self._refresh_cameras(now)
        self.heartbeat.beat(now, started=f"{self.started_at:.0f}", frames=self.frames_done, cameras=len(self.cameras))
        entries = self._reclaim(now)
        if not entries:
            entries = self._read()
        if not entries:
            return 0
        self.clock.measure()
        dequeued_at = time.time()
        batch = triage(
            entries,
            self.name,
            dequeued_at,
            self.settings.frame_max_age_s,
            self.settings.max_frame_pixels,
            self.per_camera(len({entry.camera for entry in entries})),  # shared among the cameras with frames
            self.clock.server_now(),
        )
        self._mark_hot(batch.skipped, now)
        for entry in reversed(batch.deferred):  # past the batch's pixel budget: first in the next batches
            self._held.setdefault(entry.camera, collections.deque()).appendleft(entry)
        marked = {entry.entry_id for entry, _ in batch.gaps}  # acked below, with their gap markers
        for letter in batch.dead:
            self.bus.dead_letter(letter, ack=letter.entry_id not in marked)
            DEAD_LETTERS.labels(metric_camera(letter.camera)).inc()
            log.warning(
                "event=dead_letter worker=%s camera=%s entry=%s reason=%r",
                self.name,
                letter.camera,
                letter.entry_id,
                letter.reason,
            )
        if batch.gaps:  # acked with their markers, in one round trip: the tracker passes these seqs at once
            self.bus.publish_results(
                [(marker, entry.entry_id) for entry, marker in batch.gaps], self.settings.results_maxlen
            )
        for camera, skipped in collections.Counter(entry.camera for entry in batch.skipped).items():
            self.bus.count(camera, "skipped", skipped)
            FRAMES_SKIPPED.labels(metric_camera(camera)).inc(skipped)
        if batch.work:
            timing = Timing()
            started = time.perf_counter()
            results = analyse(batch.work, self.pipeline, self.name, dequeued_at, timing)
            BATCH_SECONDS.labels("detect").observe(timing.detect_ms / 1000)
            BATCH_SECONDS.labels("classify").observe(timing.classify_ms / 1000)
            BATCH_SECONDS.labels("analyse").observe(time.perf_counter() - started)
            previews = []  # each camera's newest frame for live displays, in the same round trip
            for work, result in zip(batch.work, results, strict=True):
                if result.done_at - self._preview_at.get(result.camera, 0.0) >= PREVIEW_EVERY_S:
                    previews.append((result.camera, result.seq, work.frame.jpeg))
                    self._preview_at[result.camera] = result.done_at
            self.bus.publish_results(
                [(result, work.entry.entry_id) for work, result in zip(batch.work, results, strict=True)],
                self.settings.results_maxlen,
                previews,
            )
            for result in results:
                FRAMES_DONE.labels(metric_camera(result.camera)).inc()
                FACES.labels(metric_camera(result.camera)).inc(len(result.faces))
                LATENCY.observe(result.done_at - result.captured_at)
            self.frames_done += len(results)
            log.debug(
                "event=batch worker=%s frames=%d faces=%d detect_ms=%.1f classify_ms=%.1f",
                self.name,
                len(results),
                timing.faces,
                timing.detect_ms,
                timing.classify_ms,
            )
        return len(entries)

    def _mark_hot(self, skipped: list[Entry], now: float) -> None:
        """Own cameras it could not keep up with (live frames thinned or stale, file frames waiting) are hot
        for HOT_TTL_S: other workers help with them (`assignment.HOT_HELPERS`)."""
        if now - self._hot_at < 1.0:
            return
        owned = set(self._owned or ())
        behind = {e.camera for e in skipped} | {c for c, held in self._held.items() if held} | self._behind
        if behind & owned:
            self.bus.mark_hot(sorted(behind & owned), HOT_TTL_S)
            self._hot_at = now

    def health(self) -> dict:
        return {
            "ok": self.redis_ok and not self.shutdown.requested,
            **({"redis": self.redis_error} if self.redis_error else {}),
            "worker": self.name,
            "cameras": self.cameras,
            "frames_done": self.frames_done,
        }

    def _step_or_rejoin(self) -> None:
        try:
            self.step()
            self.redis_ok, self.redis_error = True, ""
        except RedisRefused as err:
            # NOGROUP: a stream or group deleted under us; WRONGTYPE: a camera's key replaced by another type
            # (the camera refresh skips such cameras). Either way: join the cameras again.
            if "NOGROUP" not in str(err) and "WRONGTYPE" not in str(err):
                raise
            # a one-off camera (an uploaded image) forgotten by its request is routine, not a warning
            routine = "NOGROUP" in str(err) and "{image-" in str(err)
            log.log(
                logging.INFO if routine else logging.WARNING,
                "event=cameras_rejoined worker=%s reason=%r",
                self.name,
                str(err)[:120],
            )
            self._forget_cameras()

    def _forget_cameras(self, err: Exception | None = None) -> None:
        self.redis_ok = False
        if err is not None:  # an outage or a refusal of writes (not a camera rejoined)
            self.redis_error = redis_trouble(err)
        self._refreshed_at = 0.0  # the server may have lost its groups: recreate them on return
        self._names_version, self._assigned_for = None, ()  # and its camera set's version: read it again
        self.cameras = []
        self._held.clear()  # still pending in Redis: reclaimed after the claim timeout
        self._rings_me.clear()  # the server may have lost its reader keys: set again on return

    def run(self) -> int:
        self.shutdown.install()
        log.info(
            "event=worker_started worker=%s detector=%s classifier=%s",
            self.name,
            self.pipeline.detector.name,
            self.pipeline.classifier.name,
        )
        run_redis_loop(self._step_or_rejoin, self.shutdown, self._forget_cameras)
        self.bus.leave_workers(self.name)  # its cameras move at the others' next refresh, not at its lease's end
        self.heartbeat.forget()
        log.info("event=worker_stopped worker=%s frames=%d", self.name, self.frames_done)
        return 0


def run_worker(settings: Settings, redis_url: str, metrics_port: int | None = None) -> int:
    return serve(Worker(settings, redis_url, FacePipeline.from_settings(settings)), metrics_port, settings)
