"""Redis keys and stream calls: the only module that spells key names or talks the Streams commands.

Keys of one camera share the hash tag `{<camera>}`, so on a Redis Cluster a camera's streams live on one
shard and the Lua scripts below (which touch several of them) stay legal. Delivery is at least once:
workers read with XREADGROUP, publish, then ack; results are written once per (camera, seq) by a bitmap
checked in the same script, so a frame processed twice still yields one result entry.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Iterator

import redis

from .protocol import DeadLetter, Frame, ProtocolError, Result, check_camera

log = logging.getLogger(__name__)

PREFIX = "fervi"
CAMERAS = f"{PREFIX}:cameras"  # set of camera names
PROCESSES = f"{PREFIX}:proc:"  # + process id: heartbeat hash with a TTL
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


def latest_frame_key(camera: str) -> str:
    return f"{PREFIX}:{{{camera}}}:latest"


# The acting challenge: one hash tag, so a round and the leaderboard change in one transaction on a cluster.
LEADERBOARD = f"{PREFIX}:{{challenge}}:leaderboard"  # zset: player name -> points
LEADERBOARD_SIZE = 100  # names kept on the leaderboard
ROUNDS = f"{PREFIX}:{{challenge}}:rounds"  # set of players with a round
ROUND_TTL_S = 300  # a round left behind by a dashboard that died
ROUND_FIELDS = {"id", "player", "camera", "name", "target", "scored", "threshold", "hold_s", "round_s", "started_at",
                "deadline", "state", "held", "best", "last_ts", "points", "streak", "score", "won"}
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


ONE_OFF_CAMERAS = f"{PREFIX}:oneoff"  # zset: one-off cameras (image mode) -> time made
VIDEO_LIST = f"{PREFIX}:videolist"  # zset: uploaded video id -> time uploaded


def video_key(video_id: str) -> str:
    return f"{PREFIX}:{{video-{video_id}}}:record"


def video_progress_key(video_id: str) -> str:
    return f"{PREFIX}:{{video-{video_id}}}:progress"


def seen_key(camera: str, seq: int) -> str:
    return f"{PREFIX}:{{{camera}}}:seen:{seq // SEEN_BLOCK}"


# A camera's keys that every stage reads, and their type: a camera with one of another type is skipped.
CAMERA_KEY_TYPES = ((frames_key, "stream"), (results_key, "stream"), (tracks_key, "stream"), (seq_key, "string"),
                    (stats_key, "hash"), (live_key, "hash"), (latest_frame_key, "hash"),
                    (tracker_position_key, "string"), (track_id_key, "string"), (track_index_key, "zset"),
                    (dead_letter_key, "stream"))


# KEYS: frames, seq counter, results. ARGV: maxlen (0 = no trim), then field, value, ...
# A counter that is missing while the camera has frames or results (some client deleted it) starts again
# after the newest seq in them: seqs are never given twice (the workers' once-only bitmap is keyed by seq).
ADD_FRAME = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  local last = 0
  for _, key in ipairs({KEYS[1], KEYS[3]}) do
    local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
    if newest then
      local fields = newest[2]
      for i = 1, #fields, 2 do
        if fields[i] == 'seq' then last = math.max(last, tonumber(fields[i + 1]) or 0) end
      end
    end
  end
  redis.call('SET', KEYS[2], last)
end
local seq = redis.call('INCR', KEYS[2])
local args = {KEYS[1]}
if tonumber(ARGV[1]) > 0 then
  args[#args + 1] = 'MAXLEN'; args[#args + 1] = '~'; args[#args + 1] = ARGV[1]
end
args[#args + 1] = '*'; args[#args + 1] = 'seq'; args[#args + 1] = seq
for i = 2, #ARGV do args[#args + 1] = ARGV[i] end
local id = redis.call('XADD', unpack(args))
return {seq, id}
"""

# KEYS: results, seen bitmap, frames. ARGV: seq bit, ttl, maxlen, group, entry id, field, value, ...
# A camera whose frames stream is gone was forgotten (a browser that left): its result is dropped (-1)
# rather than creating its keys again.
PUBLISH_RESULT = """
if redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
local first = redis.call('SETBIT', KEYS[2], ARGV[1], 1) == 0
if first then
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  local args = {KEYS[1], 'MAXLEN', '~', ARGV[3], '*'}
  for i = 6, #ARGV do args[#args + 1] = ARGV[i] end
  redis.call('XADD', unpack(args))
end
redis.call('XACK', KEYS[3], ARGV[4], ARGV[5])
redis.call('XDEL', KEYS[3], ARGV[5])
return first and 1 or 0
"""


# KEYS: record. ARGV: field, value, ... Written only while the record exists (a deleted video stays deleted).
UPDATE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# KEYS: live, owners, leaving, sids. ARGV: camera, address, now, most cameras, most per address, client id.
# 1: a known camera (its time updated); 2: admitted; -1: too many browser cameras; -2: too many for the address.
ADMIT_WEBCAM = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return -1 end
local mine = 0
for _, owner in ipairs(redis.call('HVALS', KEYS[2])) do
  if owner == ARGV[2] then mine = mine + 1 end
end
if mine >= tonumber(ARGV[5]) then return -2 end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[6])
return 2
"""

# KEYS: live, owners, shared, leaving, sids. ARGV: camera, now. 1 if the camera was live.
LEAVE_WEBCAM = """
local was = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
if was == 1 then redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1]) end
return was
"""


@dataclass
class Entry:
    camera: str
    entry_id: str
    fields: dict


def connect(url: str, **kwargs) -> redis.Redis:
    """A client with timeouts and keepalive, so a lost server is noticed instead of hanging."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=5, socket_timeout=kwargs.pop("socket_timeout", 30),
        socket_keepalive=True, health_check_interval=10, **kwargs,
    )


def process_id(kind: str) -> str:
    return f"{kind}-{socket.gethostname()}-{os.getpid()}"


def _decode(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _stream_id(entry_id) -> tuple[int, int]:
    ms, _, seq = _decode(entry_id).partition("-")
    return int(ms), int(seq or 0)


class _Untrusted:
    """Anything in Redis may have been written by any client: what does not parse is skipped, counted, and
    logged once per value, never allowed to end a process."""

    def __init__(self, limit: int = 1000):
        self.seen: set = set()
        self.limit = limit

    def skip(self, kind: str, value, reason: str) -> None:
        from .metrics import BAD_REDIS_VALUES

        BAD_REDIS_VALUES.labels(kind).inc()
        if value not in self.seen and len(self.seen) < self.limit:
            self.seen.add(value)
            shown = repr(value)
            shown = shown if len(shown) <= 80 else f"{shown[:77]}..."
            log.warning("event=bad_redis_value kind=%s value=%s reason=%s", kind, shown, reason)


def camera_name(value) -> str:
    """A camera set member as a camera name; ProtocolError when it is not UTF-8 or not a valid name."""
    try:
        return check_camera(value.decode("utf-8") if isinstance(value, bytes) else str(value))
    except UnicodeDecodeError:
        raise ProtocolError(f"camera name {value!r} is not UTF-8") from None


class Bus:
    def __init__(self, client: redis.Redis):
        self.redis = client
        self._add_frame = client.register_script(ADD_FRAME)
        self._publish = client.register_script(PUBLISH_RESULT)
        self._admit_webcam = client.register_script(ADMIT_WEBCAM)
        self._leave_webcam = client.register_script(LEAVE_WEBCAM)
        self._update_if_exists = client.register_script(UPDATE_IF_EXISTS)
        self.untrusted = _Untrusted()

    # --- cameras -----------------------------------------------------------------------------
    def register_camera(self, camera: str) -> None:
        self.redis.sadd(CAMERAS, check_camera(camera))

    def cameras(self) -> list[str]:
        """Valid cameras of the camera set: a member that is not a valid name, or whose streams are keys of
        another type (any client may `SET fervi:{x}:frames`), is skipped (see `_Untrusted`)."""
        names = []
        for member in self.redis.smembers(CAMERAS):
            try:
                names.append(camera_name(member))
            except ProtocolError as err:
                self.untrusted.skip("camera_name", member, str(err))
        names.sort()
        pipe = self.redis.pipeline(transaction=False)
        for camera in names:
            for key_of, _ in CAMERA_KEY_TYPES:
                pipe.type(key_of(camera))
        types = [_decode(t) for t in pipe.execute()] if names else []
        valid, width = [], len(CAMERA_KEY_TYPES)
        for i, camera in enumerate(names):
            wrong = [(key_of(camera), t) for (key_of, kind), t in zip(CAMERA_KEY_TYPES, types[width * i : width * (i + 1)])
                     if t not in (kind, "none")]
            if wrong:
                self.untrusted.skip("camera_keys", camera, ", ".join(f"{k} is a {t}" for k, t in wrong))
            else:
                valid.append(camera)
        return valid

    def ensure_group(self, camera: str) -> None:
        try:
            self.redis.xgroup_create(frames_key(camera), WORKER_GROUP, id="0", mkstream=True)
        except redis.ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise

    # --- ingest ------------------------------------------------------------------------------
    def add_frame(self, frame: Frame, maxlen: int = 0) -> tuple[int, str]:
        """XADD a frame; Redis assigns its seq. `maxlen` > 0 trims the stream (live sources)."""
        flat: list = [maxlen]
        for key, value in frame.to_fields().items():
            flat += [key, value]
        seq, entry_id = self._add_frame(keys=[frames_key(frame.camera), seq_key(frame.camera),
                                              results_key(frame.camera)], args=flat)
        return int(seq), _decode(entry_id)

    def last_seq(self, camera: str) -> int:
        """The last seq ingest assigned to a camera's frames (-1 before the first, or when not a number)."""
        try:
            value = self.redis.get(seq_key(camera))
            return int(value) if value is not None else -1
        except (ValueError, redis.ResponseError) as err:  # a key of another type, or not a number
            self.untrusted.skip("seq", camera, str(err))
            return -1

    def frame_in_flight(self, camera: str, seq: int, results_read_to: str) -> bool:
        """Whether frame `seq` may still bring a result that a reader of the results stream, having read up
        to entry `results_read_to`, has not seen. A frame leaves its stream in the same script that writes its
        result (or when a live stream is trimmed), so: yes while a frame at or before `seq` is still in the
        frames stream (with a worker, or waiting to be reclaimed), and yes while results written before now
        are unread (the one for `seq` may be among them)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.xrange(frames_key(camera), count=1)
        pipe.xrevrange(results_key(camera), count=1)
        oldest_frame, newest_result = pipe.execute()
        if oldest_frame:
            fields = oldest_frame[0][1]
            try:
                if int(fields.get(b"seq", fields.get("seq"))) <= seq:
                    return True
            except (TypeError, ValueError):
                pass
        return bool(newest_result) and _stream_id(newest_result[0][0]) > _stream_id(results_read_to)

    def results_kept(self, camera: str) -> int:
        return int(self.redis.xlen(results_key(camera)))

    def backlog(self, camera: str) -> int:
        """Frames added but not yet done (workers delete frames once their result is written)."""
        return int(self.redis.xlen(frames_key(camera)))

    # --- workers -----------------------------------------------------------------------------
    def read_frames(self, consumer: str, cameras: list[str], count: int, block_ms: int) -> list[Entry]:
        if not cameras:
            time.sleep(block_ms / 1000)
            return []
        streams = {frames_key(c): ">" for c in cameras}
        reply = self.redis.xreadgroup(WORKER_GROUP, consumer, streams, count=count, block=block_ms)
        return list(self._entries(reply))

    def reclaim(self, consumer: str, camera: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Take over entries another consumer read but did not ack within `min_idle_ms` (XAUTOCLAIM)."""
        reply = self.redis.xautoclaim(frames_key(camera), WORKER_GROUP, consumer, min_idle_ms, "0-0", count=count)
        claimed = reply[1]
        # Entries trimmed from a live stream while pending: Redis 7 drops them from the PEL and lists them
        # in reply[2]; Redis 6.2 returns them with no fields and keeps them pending, so ack them here.
        gone = [i for i, f in claimed if not f]
        if gone:
            self.redis.xack(frames_key(camera), WORKER_GROUP, *gone)
        if gone or (len(reply) > 2 and reply[2]):
            log.info("event=reclaimed_trimmed camera=%s count=%d", camera, len(gone) + len(reply[2] if len(reply) > 2 else []))
        return [Entry(camera, _decode(i), f) for i, f in claimed if f]

    @staticmethod
    def _entries(reply) -> Iterator[Entry]:
        for stream, items in reply or []:
            camera = _decode(stream).split("{", 1)[1].rsplit("}", 1)[0]
            for entry_id, fields in items:
                yield Entry(camera, _decode(entry_id), fields)

    def publish_result(self, result: Result, entry_id: str, maxlen: int) -> bool:
        """Write the result once per (camera, seq), ack and delete the frame, atomically. True if new; False
        for a repeat, or when the camera was forgotten meanwhile (its result is dropped)."""
        flat: list = [result.seq % SEEN_BLOCK, SEEN_TTL_S, maxlen, WORKER_GROUP, entry_id]
        for key, value in result.to_fields().items():
            flat += [key, value]
        keys = [results_key(result.camera), seen_key(result.camera, result.seq), frames_key(result.camera)]
        return self._publish(keys=keys, args=flat) == 1

    def count(self, camera: str, counter: str, n: int = 1) -> None:
        """Add to one of a camera's counters (`fervi status`, dashboard metrics); a counter some client made
        into something else than a number is skipped."""
        try:
            self.redis.hincrby(stats_key(camera), counter, n)
        except redis.ResponseError as err:
            self.untrusted.skip("stats", (camera, counter), str(err))

    def execute(self, pipe, kind: str, what) -> list:
        """Run a pipeline of writes whose keys any client could have spoilt: every command runs, and one that
        Redis refuses (a key of another type, a field that is not a number) is skipped, not raised."""
        replies = pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                self.untrusted.skip(kind, what, str(reply))
        return replies

    def set_latest_frame(self, camera: str, seq: int, jpeg: bytes) -> None:
        """The newest analysed frame of a camera, for live displays (kept briefly)."""
        key = latest_frame_key(camera)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping={"seq": seq, "jpeg": jpeg, "ts": f"{time.time():.3f}"})
        pipe.expire(key, LATEST_FRAME_TTL_S)
        pipe.execute()

    def latest_frame(self, camera: str) -> tuple[int, bytes] | None:
        try:
            values = self.redis.hmget(latest_frame_key(camera), ["seq", "jpeg"])
            return (int(values[0]), values[1]) if values[0] is not None and values[1] else None
        except (redis.ResponseError, ValueError) as err:  # spoilt by some client: no preview
            self.untrusted.skip("latest_frame", camera, str(err))
            return None

    def add_one_off_camera(self, camera: str) -> None:
        """A camera for one request (an uploaded image): forgotten by its request, or by
        `sweep_one_off_cameras` if the process serving it died first."""
        self.redis.zadd(ONE_OFF_CAMERAS, {check_camera(camera): time.time()})
        self.ensure_group(camera)
        self.register_camera(camera)

    def sweep_one_off_cameras(self, max_age_s: float) -> list[str]:
        stale = [_decode(c) for c in self.redis.zrangebyscore(ONE_OFF_CAMERAS, "-inf", time.time() - max_age_s)]
        for camera in stale:
            self.forget_camera(camera)
        return stale

    def forget_camera(self, camera: str) -> None:
        """Remove a camera and its keys (one-off cameras such as an uploaded image, browsers that left)."""
        self.redis.zrem(ONE_OFF_CAMERAS, camera)
        self.redis.srem(CAMERAS, camera)
        for key in self.redis.scan_iter(match=f"{PREFIX}:{{{camera}}}:*", count=500):
            self.redis.delete(key)

    # --- browser cameras ---------------------------------------------------------------------
    def admit_webcam(self, camera: str, address: str, most: int, most_per_address: int, client: str = "") -> int:
        """Count a browser camera's frame: 1 known, 2 newly admitted (registered as a camera), -1 refused as
        one too many, -2 refused as one too many from `address`. `client`: its Socket.IO id."""
        outcome = int(self._admit_webcam(keys=[WEBCAMS, WEBCAM_OWNERS, WEBCAMS_LEAVING, WEBCAM_SIDS],
                                         args=[camera, address, f"{time.time():.3f}", most, most_per_address,
                                               client]))
        if outcome == 2:
            self.ensure_group(camera)
            self.register_camera(camera)
        return outcome

    def leave_webcam(self, camera: str) -> bool:
        """A browser camera's client left: it stops being a camera now, its keys go after a grace period
        (`sweep_webcams`), so frames the workers hold do not create them again."""
        left = bool(self._leave_webcam(keys=[WEBCAMS, WEBCAM_OWNERS, WEBCAMS_SHARED, WEBCAMS_LEAVING, WEBCAM_SIDS],
                                       args=[camera, f"{time.time():.3f}"]))
        self.redis.srem(CAMERAS, camera)
        return left

    def sweep_webcams(self, idle_s: float, grace_s: float) -> tuple[list[str], list[str]]:
        """Browser cameras with no frame for `idle_s` leave; those that left `grace_s` ago are forgotten.
        Returns (left, forgotten)."""
        now = time.time()
        left = [c for c in map(_decode, self.redis.zrangebyscore(WEBCAMS, "-inf", now - idle_s))
                if self.leave_webcam(c)]
        forgotten = []
        for camera in map(_decode, self.redis.zrangebyscore(WEBCAMS_LEAVING, "-inf", now - grace_s)):
            if self.redis.zrem(WEBCAMS_LEAVING, camera):
                self.forget_camera(camera)
                forgotten.append(camera)
        return left, forgotten

    def webcams(self) -> dict[str, str]:
        """Live browser cameras and the address each came from."""
        return {_decode(k): _decode(v) for k, v in self.redis.hgetall(WEBCAM_OWNERS).items()}

    def webcam_clients(self) -> dict[str, str]:
        """Live browser cameras and the Socket.IO id of the client each belongs to."""
        return {_decode(k): _decode(v) for k, v in self.redis.hgetall(WEBCAM_SIDS).items()}

    def share_webcam(self, camera: str, shared: bool) -> bool:
        """Show a live browser camera on the shared wall (or stop); False when it is not live."""
        if self.redis.zscore(WEBCAMS, camera) is None:
            return False
        (self.redis.sadd if shared else self.redis.srem)(WEBCAMS_SHARED, camera)
        return True

    def shared_webcams(self) -> set[str]:
        return {_decode(c) for c in self.redis.smembers(WEBCAMS_SHARED)}

    def is_shared_webcam(self, camera: str) -> bool:
        """Whether a browser camera is live and its user shares it (what others may see of it)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zscore(WEBCAMS, camera)
        pipe.sismember(WEBCAMS_SHARED, camera)
        live, shared = pipe.execute()
        return live is not None and bool(shared)

    def dead_letter(self, letter: DeadLetter, ack: bool = True) -> None:
        """Keep a bad entry's summary and count it; `ack=False` when a gap marker will ack the frame."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(dead_letter_key(letter.camera), letter.to_fields(), maxlen=DEAD_LETTER_MAXLEN, approximate=True)
        pipe.hincrby(stats_key(letter.camera), "dead_lettered", 1)
        if ack:
            pipe.xack(frames_key(letter.camera), WORKER_GROUP, letter.entry_id)
            pipe.xdel(frames_key(letter.camera), letter.entry_id)
        self.execute(pipe, "dead_letter", letter.camera)

    def dead_letters(self, camera: str, count: int = 100) -> list[DeadLetter]:
        return [DeadLetter.from_fields(f) for _, f in self.redis.xrange(dead_letter_key(camera), count=count)]

    def stats(self, camera: str) -> dict[str, int]:
        """A camera's counters; a field that is not a number (or a key of another type) is skipped."""
        try:
            raw = self.redis.hgetall(stats_key(camera))
        except redis.ResponseError as err:
            self.untrusted.skip("stats", camera, str(err))
            return {}
        out = {}
        for key, value in raw.items():
            try:
                out[_decode(key)] = int(value)
            except ValueError:
                self.untrusted.skip("stats", (camera, key), f"{_decode(key)}={value!r} is not a number")
        return out

    # --- reading results ---------------------------------------------------------------------
    def results(self, camera: str, start: str = "-", count: int | None = None) -> list[tuple[str, Result]]:
        return [(_decode(i), Result.from_fields(f)) for i, f in self.redis.xrange(results_key(camera), start, "+", count)]

    # --- acting challenge --------------------------------------------------------------------
    def save_round(self, player: str, record: dict) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(round_key(player), json.dumps(record), ex=ROUND_TTL_S)
        pipe.sadd(ROUNDS, player)
        pipe.execute()

    def load_round(self, player: str) -> dict | None:
        raw = self.redis.get(round_key(player))
        return json.loads(raw) if raw else None

    def rounds(self) -> dict[str, dict]:
        """Every player's current round; players whose record expired leave the index."""
        players = sorted(_decode(p) for p in self.redis.smembers(ROUNDS))
        if not players:
            return {}
        out = {}
        for player, raw in zip(players, self.redis.mget([round_key(p) for p in players])):
            if raw is None:
                self.redis.srem(ROUNDS, player)
                continue
            try:
                record = json.loads(raw)
                missing = ROUND_FIELDS - set(record) if isinstance(record, dict) else ROUND_FIELDS
                if missing:
                    raise ValueError(f"missing {', '.join(sorted(missing))}")
                out[player] = record
            except ValueError as err:
                self.untrusted.skip("challenge_round", player, str(err))
                self.drop_round(player)
        return out

    def drop_round(self, player: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(round_key(player))
        pipe.srem(ROUNDS, player)
        pipe.execute()

    def settle_round(self, player: str, round_id: str, settle) -> dict | None:
        """End round `round_id` of `player` once: `settle(record)` returns (new record, points for the
        leaderboard), written with the points in one transaction. None if the round is no longer that one
        or has already ended (another dashboard process, or a new round started)."""
        key = round_key(player)
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    record = json.loads(raw) if raw else None
                    if not record or record.get("id") != round_id or record.get("state") != "playing":
                        pipe.unwatch()
                        return None
                    record, points = settle(record)
                    pipe.multi()
                    pipe.set(key, json.dumps(record), ex=ROUND_TTL_S)
                    if points > 0:
                        pipe.zincrby(LEADERBOARD, points, record["name"])
                        pipe.zremrangebyrank(LEADERBOARD, 0, -LEADERBOARD_SIZE - 1)
                    pipe.execute()
                    return record
                except redis.WatchError:
                    continue

    def leaderboard(self, count: int = 10) -> list[dict]:
        return [{"name": _decode(n), "score": int(s)}
                for n, s in self.redis.zrevrange(LEADERBOARD, 0, count - 1, withscores=True)]

    # --- uploaded videos ---------------------------------------------------------------------
    def create_video(self, video_id: str, record: dict) -> None:
        """FERVI's own record of an uploaded video (state, progress, outputs, times): it outlives RQ's jobs."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(video_key(video_id), mapping={k: json.dumps(v) for k, v in record.items()})
        pipe.zadd(VIDEO_LIST, {video_id: record.get("created_at", time.time())})
        pipe.execute()

    def update_video(self, video_id: str, **fields) -> bool:
        flat = [x for k, v in fields.items() for x in (k, json.dumps(v))]
        return bool(self._update_if_exists(keys=[video_key(video_id)], args=flat))

    def video(self, video_id: str) -> dict | None:
        raw = self.redis.hgetall(video_key(video_id))
        if not raw:
            return None
        record = {_decode(k): json.loads(v) for k, v in raw.items()}
        progress = [json.loads(v) for v in self.redis.hvals(video_progress_key(video_id))]
        record["done"] = sum(p[0] for p in progress) if record.get("state") != "finished" else record.get("total", 0)
        record.setdefault("total", 0)
        record["total"] = max(record["total"], sum(p[1] for p in progress))
        return {"id": video_id, **record}

    def video_ids(self) -> list[str]:
        return [_decode(v) for v in self.redis.zrange(VIDEO_LIST, 0, -1)]

    def video_progress(self, video_id: str, job_id: str, done: int, total: int) -> None:
        """A job's units done/total; a video's progress is the sum over its jobs."""
        key = video_progress_key(video_id)
        if self.redis.exists(video_key(video_id)):
            self.redis.hset(key, job_id, json.dumps([int(done), int(total)]))

    def delete_video(self, video_id: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(video_key(video_id), video_progress_key(video_id))
        pipe.zrem(VIDEO_LIST, video_id)
        pipe.execute()

    # --- process registry --------------------------------------------------------------------
    def heartbeat(self, proc: str, info: dict, ttl_s: int) -> None:
        key = PROCESSES + proc
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping={k: str(v) for k, v in info.items()})
        pipe.expire(key, ttl_s)
        pipe.execute()

    def forget(self, proc: str) -> None:
        """Leave the process registry on exit; with Redis away, the heartbeat's TTL does it instead."""
        try:
            self.redis.delete(PROCESSES + proc)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            pass

    def processes(self) -> dict[str, dict[str, str]]:
        out = {}
        for key in self.redis.scan_iter(match=PROCESSES + "*", count=200):
            info = self.redis.hgetall(key)
            if info:
                out[_decode(key)[len(PROCESSES):]] = {_decode(k): _decode(v) for k, v in info.items()}
        return out
