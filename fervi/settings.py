"""Every FERVI setting in one validated object, read from `FERVI_*` environment variables.

`fervi config` prints the effective values. Processes load settings once at start and log them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from .emotions import UNCERTAIN_MARGIN

REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
DETECTORS = ("multiscale", "blazeface", "blazeface_full", "haar")
DEVICES = ("auto", "cpu", "gpu")

T = TypeVar("T")
SettingValue = str | int | float | bool  # the type of every setting


def default_model_dir() -> str:
    """The trained model shipped in the `fervi.models` package (works for editable and regular installs)."""
    import importlib.util

    spec = importlib.util.find_spec("fervi.models")
    if spec is not None and spec.submodule_search_locations:
        return str(Path(next(iter(spec.submodule_search_locations))))
    return str(Path(__file__).resolve().parent.parent / "models")


def _setting(env: str, default: T, doc: str) -> T:
    """A setting: read from `env` (else `default`), shown by `fervi config` with `doc`."""
    return field(default=default, metadata={"env": env, "doc": doc})


@dataclass(frozen=True)
class Settings:
    redis_url: str = _setting("FERVI_REDIS_URL", "", "Redis to use; empty: start the embedded redis-server")
    rq_redis_url: str = _setting(
        "FERVI_RQ_REDIS_URL",
        "",
        "Standalone Redis for video jobs (RQ) and their records; empty: FERVI_REDIS_URL. "
        "Required when FERVI_REDIS_URL is a redis+cluster:// URL",
    )
    home: str = _setting("FERVI_HOME", ".fervi", "Folder for the embedded Redis data, runs and outputs")
    redis_port: int = _setting("FERVI_REDIS_PORT", 0, "Port of the embedded Redis (0: a free one)")
    live_maxlen: int = _setting("FERVI_LIVE_MAXLEN", 256, "Frames kept per live camera stream (MAXLEN ~)")
    results_maxlen: int = _setting("FERVI_RESULTS_MAXLEN", 10000, "Entries kept per results/tracks stream")
    file_max_lag: int = _setting("FERVI_FILE_MAX_LAG", 64, "File ingest waits while this many frames are unacked")
    frame_max_age_s: float = _setting("FERVI_FRAME_MAX_AGE", 1.0, "Live frames older than this are skipped")
    claim_timeout_s: float = _setting("FERVI_CLAIM_TIMEOUT", 15.0, "Idle time before another worker reclaims")
    batch_frames: int = _setting("FERVI_BATCH_FRAMES", 8, "Frames a worker reads per batch, across cameras")
    block_ms: int = _setting(
        "FERVI_BLOCK_MS", 500, "How long an idle worker waits for frames (ms): on its doorbell, or a blocking read"
    )
    detector: str = _setting("FERVI_DETECTOR", "multiscale", f"Face detector: {', '.join(DETECTORS)}")
    detector_min_face: int = _setting(
        "FERVI_DETECTOR_MIN_FACE", 48, "Smallest face (px wide) the multiscale detector looks for; larger is faster"
    )
    detector_full_scan_s: float = _setting(
        "FERVI_DETECTOR_FULL_SCAN_S",
        0.3,
        "The multiscale detector scans a camera in full every this many seconds of its capture time (offline: "
        "of video time) and in between follows the faces it found, so a face entering is found within it",
    )
    detector_full_scan_every: int = _setting(
        "FERVI_DETECTOR_FULL_SCAN_EVERY",
        10,
        "The multiscale detector scans a camera in full at the latest every N frames a worker gets of it (the "
        "only rule for frames without a time; 1: every frame)",
    )
    detector_min_score: float = _setting("FERVI_DETECTOR_MIN_SCORE", 0.5, "Minimum face detection score")
    face_margin: float = _setting("FERVI_FACE_MARGIN", 0.15, "Crop margin around a detected face")
    model_dir: str = _setting("FERVI_MODEL_DIR", "", "Folder with the trained model (empty: the shipped one)")
    device: str = _setting("FERVI_DEVICE", "auto", "auto | cpu (TFLite) | gpu (Keras)")
    flip_average: bool = _setting(
        "FERVI_FLIP_AVERAGE",
        False,
        "Average each face with its mirror image (+0.4 to 0.6 points on PublicTest, half the speed)",
    )
    detect_threads: int = _setting(
        "FERVI_DETECT_THREADS", 1, "Detector threads per worker (a GPU worker: one per spare core keeps the GPU fed)"
    )
    gpu_max_wait_ms: float = _setting(
        "FERVI_GPU_MAX_WAIT_MS",
        20.0,
        "A GPU worker keeps reading frames this long (ms) after the first, to classify "
        "faces of many frames and cameras in one batch (0: no wait)",
    )
    gpu_batch_frames: int = _setting("FERVI_GPU_BATCH_FRAMES", 64, "Most frames a GPU worker gathers into one batch")
    classifier_batch: int = _setting("FERVI_CLASSIFIER_BATCH", 32, "Faces per classifier call (CPU)")
    track_half_life_s: float = _setting("FERVI_TRACK_HALF_LIFE", 0.5, "Half-life (s) of a track's emotion smoothing")
    uncertain_margin: float = _setting(
        "FERVI_UNCERTAIN_MARGIN",
        UNCERTAIN_MARGIN,
        "A face whose top emotion leads the next by less than this (probability) is shown as uncertain, with its "
        "two leading emotions (0: never)",
    )
    track_iou: float = _setting("FERVI_TRACK_IOU", 0.3, "Minimum box overlap (or closeness) to continue a track")
    track_hold_s: float = _setting(
        "FERVI_TRACK_HOLD",
        1.0,
        "Seconds a gap between processed frames is bridged in face-time, and an unseen track lives (2 frames at least)",
    )
    track_confirm_s: float = _setting(
        "FERVI_TRACK_CONFIRM",
        0.25,
        "Face-seconds a face must be seen for, in 2 frames at least, before it counts as a track (flickers: no one)",
    )
    reorder_window: int = _setting("FERVI_REORDER_WINDOW", 16, "Results held to restore seq order")
    reorder_wait_s: float = _setting("FERVI_REORDER_WAIT", 0.5, "Longest wait (s) for a missing seq")
    jpeg_quality: int = _setting("FERVI_JPEG_QUALITY", 85, "JPEG quality of ingested frames")
    max_frame_pixels: int = _setting("FERVI_MAX_FRAME_PIXELS", 4096 * 4096, "Larger frames are dead-lettered")
    max_image_bytes: int = _setting(
        "FERVI_MAX_IMAGE_BYTES", 64 * 1024 * 1024, "Image files larger than this are refused before reading"
    )
    heartbeat_ttl_s: int = _setting("FERVI_HEARTBEAT_TTL", 15, "A process missing heartbeats this long is gone")
    metrics_port: int = _setting("FERVI_METRICS_PORT", 0, "Port for /healthz and /metrics (0: a free one)")
    dashboard_host: str = _setting("FERVI_DASHBOARD_HOST", "127.0.0.1", "Address the dashboard binds to")
    dashboard_port: int = _setting("FERVI_DASHBOARD_PORT", 8000, "Port of the dashboard")
    dashboard_token: str = _setting("FERVI_DASHBOARD_TOKEN", "", "Access token for the dashboard (empty: none)")
    metrics_host: str = _setting("FERVI_METRICS_HOST", "127.0.0.1", "Address /healthz and /metrics bind to")
    dashboard_proxies: int = _setting(
        "FERVI_DASHBOARD_PROXIES",
        0,
        "Reverse proxies in front of the dashboard whose X-Forwarded-For is trusted "
        "(client addresses for the per-address limits)",
    )
    web_cameras_max: int = _setting("FERVI_WEB_CAMERAS_MAX", 16, "Browser cameras at once, all clients together")
    web_cameras_per_address: int = _setting(
        "FERVI_WEB_CAMERAS_PER_ADDRESS", 4, "Browser cameras at once from one client address"
    )
    web_connects_per_minute: int = _setting(
        "FERVI_WEB_CONNECTS_PER_MINUTE", 30, "Socket.IO connections a client address may open per minute"
    )
    web_idle_s: float = _setting(
        "FERVI_WEB_IDLE", 30.0, "A browser camera with no frame for this long (s) is removed with its streams"
    )
    cameras_max: int = _setting(
        "FERVI_CAMERAS_MAX", 64, "Cameras the registry holds at most (each runs an ingest process)"
    )
    camera_file_roots: str = _setting(
        "FERVI_CAMERA_FILE_ROOTS",
        "~",
        "Folders (':'-separated) whose videos, images and folders the dashboard's "
        "Cameras page may add as cameras, besides the videos uploaded on its Videos page "
        "(FERVI_HOME/uploads, always; empty: those only)",
    )
    challenge_targets: str = _setting(
        "FERVI_CHALLENGE_TARGETS", "", "Emotions a scored challenge round draws from, comma-separated (empty: all 7)"
    )
    video_retention: str = _setting(
        "FERVI_VIDEO_RETENTION",
        "7d",
        "Uploaded videos and their outputs are deleted this long after they end (s, or with m/h/d; 0: kept)",
    )
    fer2013_csv: str = _setting(
        "FERVI_FER2013_CSV",
        "",
        "FER-2013 CSV whose PublicTest rows `fervi bench` scores both classifiers on (empty: accuracy not measured)",
    )
    peer_venv: str = _setting(
        "FERVI_PEER_VENV",
        "",
        "Virtual environment of the `fer` peer that `fervi bench` "
        "creates once and reuses (empty: ~/.cache/fervi/peer-venv)",
    )

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"FERVI_DETECTOR must be one of {', '.join(DETECTORS)}, not {self.detector!r}")
        if self.device not in DEVICES:
            raise ValueError(f"FERVI_DEVICE must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if not self.detector_full_scan_s > 0:
            raise ValueError("FERVI_DETECTOR_FULL_SCAN_S must be more than 0 (seconds)")
        if self.detector_min_face < 8:
            raise ValueError("FERVI_DETECTOR_MIN_FACE must be at least 8 (pixels)")
        for name in (
            "live_maxlen",
            "results_maxlen",
            "file_max_lag",
            "batch_frames",
            "classifier_batch",
            "gpu_batch_frames",
            "detect_threads",
            "detector_full_scan_every",
            "web_cameras_max",
            "web_cameras_per_address",
            "web_connects_per_minute",
            "cameras_max",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{_env(name)} must be at least 1")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("FERVI_JPEG_QUALITY must be within 1..100")
        if not 0 <= self.gpu_max_wait_ms <= 1000:
            raise ValueError("FERVI_GPU_MAX_WAIT_MS must be within 0..1000 (ms)")
        if not 0 <= self.uncertain_margin <= 1:
            raise ValueError("FERVI_UNCERTAIN_MARGIN must be within 0..1 (a probability)")
        if self.web_idle_s <= 0:
            raise ValueError("FERVI_WEB_IDLE must be above 0 (seconds)")
        if self.track_hold_s <= 0:
            raise ValueError("FERVI_TRACK_HOLD must be above 0 (seconds)")
        if not 0 <= self.track_confirm_s < self.track_hold_s:
            raise ValueError("FERVI_TRACK_CONFIRM must be at least 0 and below FERVI_TRACK_HOLD (seconds)")
        for name in ("redis_url", "rq_redis_url"):
            url = getattr(self, name)
            if url and not url.startswith(REDIS_SCHEMES):
                raise ValueError(
                    f"{_env(name)} must start with one of {', '.join(REDIS_SCHEMES)} "
                    f"(for example redis://127.0.0.1:6379/0), not {mask_password(url)!r}"
                )
        if self.rq_redis_url.startswith(("redis+cluster://", "rediss+cluster://")):
            raise ValueError("FERVI_RQ_REDIS_URL must be a standalone Redis: RQ does not support Redis Cluster")
        self.video_retention_s  # noqa: B018 - validates FERVI_VIDEO_RETENTION
        self.challenge_target_list  # noqa: B018 - validates FERVI_CHALLENGE_TARGETS

    @property
    def video_retention_s(self) -> float:
        """FERVI_VIDEO_RETENTION in seconds (0: videos are kept)."""
        return parse_duration(self.video_retention, "FERVI_VIDEO_RETENTION")

    @property
    def challenge_target_list(self) -> list[str]:
        from .emotions import EMOTIONS

        targets = [t.strip() for t in self.challenge_targets.split(",") if t.strip()] or list(EMOTIONS)
        unknown = [t for t in targets if t not in EMOTIONS]
        if unknown:
            raise ValueError(f"FERVI_CHALLENGE_TARGETS: {', '.join(unknown)} not among {', '.join(EMOTIONS)}")
        return targets

    @property
    def camera_file_root_list(self) -> list[Path]:
        """FERVI_CAMERA_FILE_ROOTS as resolved folders, and FERVI's own uploads folder: a video uploaded on the
        Videos page may play as a camera without a restart with other settings."""
        configured = [Path(p).expanduser().resolve() for p in self.camera_file_roots.split(":") if p.strip()]
        return [*configured, self.uploads_dir.resolve()]

    @property
    def uploads_dir(self) -> Path:
        """Where the dashboard keeps uploaded videos: `<id>/<file name>` each."""
        return Path(self.home).expanduser() / "uploads"

    @property
    def models(self) -> str:
        return self.model_dir or default_model_dir()

    @property
    def embedded(self) -> bool:
        return not self.redis_url

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def describe(self) -> list[tuple[str, str, str]]:
        """(env var, effective value, doc) rows; passwords in the Redis URL are masked."""
        rows = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "redis_url":
                value = mask_password(value) or "(embedded)"
            if f.name == "rq_redis_url":
                value = mask_password(value) or "(FERVI_REDIS_URL)"
            if f.name == "dashboard_token" and value:
                value = "***"
            if f.name == "model_dir":
                value = self.models
            rows.append((_env_of(f), str(value), _doc_of(f)))
        return rows


def _env_of(setting: Field[Any]) -> str:
    env: str = setting.metadata["env"]
    return env


def _doc_of(setting: Field[Any]) -> str:
    doc: str = setting.metadata["doc"]
    return doc


def _env(name: str) -> str:
    return next(_env_of(f) for f in fields(Settings) if f.name == name)


def _parse(default: object, raw: str, env: str) -> SettingValue:
    """`raw` as a value of the type of the setting's `default`."""
    if not isinstance(default, SettingValue):
        raise TypeError(f"{env}: a setting's default must be one of {SettingValue}, not {default!r}")
    kind = type(default)
    try:
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        return kind(raw)
    except ValueError:
        raise ValueError(f"{env}={raw!r} is not a valid {kind.__name__}") from None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}  # of each field's own type: `_parse` reads a value as its default's type
    for f in fields(Settings):
        raw = env.get(_env_of(f))
        if raw is not None and raw != "":
            values[f.name] = _parse(f.default, raw, _env_of(f))
    return Settings(**values)


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(raw: str, env: str) -> float:
    """ "90", "90s", "15m", "12h", "7d" -> seconds."""
    text = str(raw).strip().lower()
    unit = DURATION_UNITS.get(text[-1:], None)
    try:
        seconds = float(text[:-1] if unit else text) * (unit or 1)
    except ValueError:
        raise ValueError(f"{env}={raw!r} is not a duration (e.g. 3600, 90m, 12h, 7d)") from None
    if seconds < 0:
        raise ValueError(f"{env} must not be negative")
    return seconds


def describe_duration(seconds: float) -> str:
    """7 days, 12 hours, 90 minutes, 45 seconds ("" for 0)."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}{'s' if seconds != size else ''}"
    return f"{seconds:g} seconds" if seconds else ""


SECRET_QUERY_KEYS = {
    "password",
    "passwd",
    "pass",
    "pwd",
    "token",
    "key",
    "secret",
    "auth",
    "api_key",
    "apikey",
    "access_token",
    "signature",
    "sig",
}


def mask_password(url: str) -> str:
    """A URL as logs and pages may show it: the password of `user:password@` and the values of secret-looking
    query parameters (`?password=...`, `token`, `key`, ...) as `***`. Never raises: a URL that does not
    parse keeps only its scheme."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    if not url or "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            host = parts.hostname or ""
            if ":" in host:
                host = f"[{host}]"
            if parts.port:
                host = f"{host}:{parts.port}"
            netloc = f"{parts.username or ''}:***@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(k.lower() in SECRET_QUERY_KEYS for k, _ in pairs):
                query = urlencode([(k, "***" if k.lower() in SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*")
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return url.split("://", 1)[0] + "://(an address that does not parse)"
