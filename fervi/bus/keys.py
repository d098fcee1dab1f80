"""Every Redis key FERVI uses, in one place. Keys of one camera share the hash tag `{<camera>}`, so on a
Redis Cluster a camera's streams live on one shard and the bus's scripts (which touch several) stay legal."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # not at run time: `from .keys import *` in the bus exports key names, not this
    from collections.abc import Callable

PREFIX = "fervi"
CAMERAS = f"{PREFIX}:cameras"  # set of camera names
CAMERAS_VERSION = f"{PREFIX}:cameras_version"  # counter: changes whenever FERVI adds or removes a camera
PROCESSES = f"{PREFIX}:proc:"  # + process id: heartbeat hash with a TTL
SOURCES = f"{PREFIX}:sources"  # hash: camera -> CameraSource JSON (the cameras the ingest supervisor runs)
REMOVED_SOURCES = f"{PREFIX}:removed"  # hash: camera -> when it left SOURCES (Redis time), until added again
SOURCE_STATE_TTL_S = 86400  # a camera's ingest state outlives its process by a day at most
WORKER_GROUP = "workers"
WORKER_LEASES = f"{PREFIX}:workers"  # zset: live worker -> when its lease runs out (unix ms)
WORKER_WEIGHTS = f"{PREFIX}:worker_weights"  # hash: worker -> its weight in the cameras' assignment
HOT_CAMERAS = f"{PREFIX}:hot"  # zset: camera whose owner cannot keep up -> until when (unix ms)
SEEN_BLOCK = 1 << 20  # seqs per dedupe bitmap key
SEEN_TTL_S = 86400
DEAD_LETTER_MAXLEN = 1000


def _camera_key(camera: str, *parts: object) -> str:
    """A key of one camera: `fervi:{<camera>}:<parts>`, in the camera's hash tag."""
    return ":".join((PREFIX, f"{{{camera}}}", *map(str, parts)))


def _per_camera(name: str) -> Callable[[str], str]:
    """camera -> its key `name`: `frames_key("lobby")` is `fervi:{lobby}:frames`."""

    def key(camera: str) -> str:
        return _camera_key(camera, name)

    return key


# Each camera's keys (their Redis types: CAMERA_KEY_TYPES below).
frames_key = _per_camera("frames")
results_key = _per_camera("results")
tracks_key = _per_camera("tracks")
dead_letter_key = _per_camera("deadletter")
stats_key = _per_camera("stats")
seq_key = _per_camera("seq")
track_index_key = _per_camera("tracklist")
track_id_key = _per_camera("track_id")
live_key = _per_camera("live")
tracker_position_key = _per_camera("tracker_pos")
# string: the tracker's state snapshot (JSON), written in the same transaction as its tracks and position
tracker_state_key = _per_camera("tracker_state")
latest_frame_key = _per_camera("latest")
# hash: the camera's ingest state (state, reason, sent, updated_at, ...), written by its `fervi ingest`
source_state_key = _per_camera("source")
# string with a TTL: the ingest supervisor that runs this camera (one across hosts)
source_lease_key = _per_camera("source_lease")
# string: the worker that owns the camera (workers/assignment.py): its frames ring that worker's bell
reader_key = _per_camera("reader")
BELLS = f"{PREFIX}:bell:"  # + worker: list of its cameras with new frames; + ":rung": the same, as a set


def bell_key(worker: str) -> str:
    return f"{BELLS}{worker}"


def rung_key(worker: str) -> str:
    return f"{BELLS}{worker}:rung"


def bell_keys(worker: str) -> tuple[str, str]:
    """A worker's doorbell keys: its bell list and its rung set (deleted together)."""
    return bell_key(worker), rung_key(worker)


def aggregate_key(camera: str, resolution: str, bucket: int) -> str:
    """Face-seconds per emotion: resolution "1s" holds a minute per key, "1m" an hour per key."""
    return _camera_key(camera, "agg", resolution, bucket)


def track_key(camera: str, track_id: int) -> str:
    return _camera_key(camera, "track", track_id)


# The acting challenge: one hash tag, so a round and the leaderboard change in one transaction on a cluster.
LEADERBOARD = f"{PREFIX}:{{challenge}}:leaderboard"  # zset: player name -> points
LEADERBOARD_SIZE = 100  # names kept on the leaderboard
GAMES = f"{PREFIX}:{{challenge}}:games"  # zset: player name -> best game score
GAME_DATES = f"{PREFIX}:{{challenge}}:gamedates"  # hash: player name -> when that best game ended
ROUNDS = f"{PREFIX}:{{challenge}}:rounds"  # set of players with a round
ROUND_TTL_S = 300  # a round left behind by a dashboard that died
ROUND_FIELDS = {
    "id",
    "player",
    "camera",
    "name",
    "target",
    "scored",
    "threshold",
    "hold_s",
    "round_s",
    "started_at",
    "deadline",
    "state",
    "held",
    "best",
    "last_ts",
    "points",
    "streak",
    "score",
    "won",
}
# Browser cameras (one per connected browser that sends its camera). One hash tag, so the scripts below
# stay legal on a Redis Cluster.
WEBCAMS = f"{PREFIX}:{{webcams}}:live"  # zset: camera -> time of its last frame
WEBCAM_OWNERS = f"{PREFIX}:{{webcams}}:owner"  # hash: camera -> client address
WEBCAM_SIDS = f"{PREFIX}:{{webcams}}:sid"  # hash: camera -> Socket.IO id of its client (its private room)
WEBCAMS_SHARED = f"{PREFIX}:{{webcams}}:shared"  # set: cameras their users show on the live wall
WEBCAMS_LEAVING = f"{PREFIX}:{{webcams}}:leaving"  # zset: camera -> time it left (keys deleted after a grace)
WEBCAM_TITLES = f"{PREFIX}:{{webcams}}:title"  # hash: camera -> the name its user shows it under
DASHBOARD_RELAY_LOCK = f"{PREFIX}:dashboard:relay"
LATEST_FRAME_TTL_S = 10


def round_key(player: str) -> str:
    return f"{PREFIX}:{{challenge}}:round:{player}"


VIDEO_QUEUE = "fervi-video"  # RQ's queue of offline video jobs (RQ names its keys rq:queue:<name>, ...)
ONE_OFF_CAMERAS = f"{PREFIX}:oneoff"  # zset: one-off cameras (image mode) -> time made
VIDEO_LIST = f"{PREFIX}:videolist"  # zset: uploaded video id -> time uploaded


def video_key(video_id: str) -> str:
    return f"{PREFIX}:{{video-{video_id}}}:record"


def video_progress_key(video_id: str) -> str:
    return f"{PREFIX}:{{video-{video_id}}}:progress"


def seen_key(camera: str, seq: int) -> str:
    return _camera_key(camera, "seen", seq // SEEN_BLOCK)


# A camera's keys that every stage reads, and their type: a camera with one of another type is skipped.
CAMERA_KEY_TYPES = (
    (frames_key, "stream"),
    (results_key, "stream"),
    (tracks_key, "stream"),
    (seq_key, "string"),
    (stats_key, "hash"),
    (live_key, "hash"),
    (latest_frame_key, "hash"),
    (tracker_position_key, "string"),
    (tracker_state_key, "string"),
    (track_id_key, "string"),
    (track_index_key, "zset"),
    (dead_letter_key, "stream"),
)


def camera_of(key: object) -> str:
    """The camera a per-camera key belongs to: `fervi:{lobby}:results` -> `lobby`."""
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
    return text.split("{", 1)[1].rsplit("}", 1)[0]
