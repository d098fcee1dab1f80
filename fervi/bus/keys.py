"""Every Redis key FERVI uses, in one place. Keys of one camera share the hash tag `{<camera>}`, so on a
Redis Cluster a camera's streams live on one shard and the bus's scripts (which touch several) stay legal."""

from __future__ import annotations

PREFIX = "fervi"
CAMERAS = f"{PREFIX}:cameras"  # set of camera names
PROCESSES = f"{PREFIX}:proc:"  # + process id: heartbeat hash with a TTL
SOURCES = f"{PREFIX}:sources"  # hash: camera -> CameraSource JSON (the cameras the ingest supervisor runs)
SOURCE_STATE_TTL_S = 86400  # a camera's ingest state outlives its process by a day at most
WORKER_GROUP = "workers"
SEEN_BLOCK = 1 << 20  # seqs per dedupe bitmap key
SEEN_TTL_S = 86400
DEAD_LETTER_MAXLEN = 1000


def frames_key(camera: str) -> str:
    return f"{PREFIX}:{{{camera}}}:frames"


def results_key(camera: str) -> str:
    return f"{PREFIX}:{{{camera}}}:results"


def tracks_key(camera: str) -> str:
    return f"{PREFIX}:{{{camera}}}:tracks"


def dead_letter_key(camera: str) -> str:
    return f"{PREFIX}:{{{camera}}}:deadletter"


def stats_key(camera: str) -> str:
    return f"{PREFIX}:{{{camera}}}:stats"


def seq_key(camera: str) -> str:
    return f"{PREFIX}:{{{camera}}}:seq"


def aggregate_key(camera: str, resolution: str, bucket: int) -> str:
    """Face-seconds per emotion: resolution "1s" holds a minute per key, "1m" an hour per key."""
    return f"{PREFIX}:{{{camera}}}:agg:{resolution}:{bucket}"


def track_key(camera: str, track_id: int) -> str:
    return f"{PREFIX}:{{{camera}}}:track:{track_id}"


def track_index_key(camera: str) -> str:
    return f"{PREFIX}:{{{camera}}}:tracklist"


def track_id_key(camera: str) -> str:
    return f"{PREFIX}:{{{camera}}}:track_id"


def live_key(camera: str) -> str:
    return f"{PREFIX}:{{{camera}}}:live"


def tracker_position_key(camera: str) -> str:
    return f"{PREFIX}:{{{camera}}}:tracker_pos"


def source_state_key(camera: str) -> str:
    """Hash: the camera's ingest state (state, reason, sent, updated_at, ...), written by its `fervi ingest`."""
    return f"{PREFIX}:{{{camera}}}:source"


def source_lease_key(camera: str) -> str:
    """String with a TTL: the ingest supervisor that runs this camera (one across hosts)."""
    return f"{PREFIX}:{{{camera}}}:source_lease"


def latest_frame_key(camera: str) -> str:
    return f"{PREFIX}:{{{camera}}}:latest"


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
    return f"{PREFIX}:{{{camera}}}:seen:{seq // SEEN_BLOCK}"


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
    (track_id_key, "string"),
    (track_index_key, "zset"),
    (dead_letter_key, "stream"),
)


def camera_of(key: object) -> str:
    """The camera a per-camera key belongs to: `fervi:{lobby}:results` -> `lobby`."""
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
    return text.split("{", 1)[1].rsplit("}", 1)[0]
