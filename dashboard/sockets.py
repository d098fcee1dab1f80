"""The dashboard's Socket.IO events: watching cameras, the browser camera, sharing it, challenge rounds.

A browser camera exists while its client sends frames: it is admitted on its first frame (within
`FERVI_WEB_CAMERAS_MAX` and `FERVI_WEB_CAMERAS_PER_ADDRESS`), leaves when the client disconnects or after
`FERVI_WEB_IDLE` seconds without a frame (the relay sweeps), and its streams are deleted shortly after.
It is private to its client unless the user shares it to the live wall. Frames are limited per connection
(`WEB_FPS`) and per client address; connections per address per minute are limited too, so reconnecting
does not reset a limit.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time

from flask import request
from flask_socketio import ConnectionRefusedError, Namespace, SocketIO, join_room, leave_room

from fervi.bus import Bus
from fervi.metrics import FRAMES_INGESTED, WEB_CAMERAS, WEB_CONNECTIONS, WEB_FRAMES
from fervi.protocol import Frame, ProtocolError, check_camera, is_browser_camera, metric_camera
from fervi.settings import Settings
from fervi.vision.images import ImageError, image_size

from . import challenge
from .limits import AddressLimits, TokenBucket
from .relay import WALL_ROOM

log = logging.getLogger(__name__)

WEB_FRAME_MAX_BYTES = 512 * 1024
SHOWN_WINDOW_S = 600  # a round on another camera draws its target from the emotions shown in this window
CAMERA_KEY = re.compile(r"[A-Za-z0-9_-]{22,64}")  # a tab's camera key: 128 bits or more, base64url
WEB_FPS = 8.0


def client_sid() -> str:
    """The Socket.IO session of the event being handled, which Flask-SocketIO sets on Flask's request."""
    sid: str = request.sid  # type: ignore[attr-defined]  # set by Flask-SocketIO; flask.Request does not declare it
    return sid


def client_address() -> str:
    return request.remote_addr or "unknown"


def webcam_title(camera: str) -> str:
    """What a viewer reads for a browser camera its user did not name: "Browser camera 8goB"."""
    return f"Browser camera {camera[-4:]}"


def webcam_name(sid: str) -> str:
    """The browser camera of a Socket.IO client that sent no camera key."""
    return f"web-{sid[:12].replace('_', '-')}"


def keyed_webcam_name(key: object) -> str | None:
    """The browser camera of a tab that keeps a camera key (sessionStorage: the same key after a reload, a
    reconnect or a server restart, so its history stays one camera); None for a missing or malformed key.
    The key is the tab's secret: only its hash names the camera, so knowing the name does not let anyone
    else send to it."""
    if not isinstance(key, str) or not CAMERA_KEY.fullmatch(key):
        return None
    return "web-" + hashlib.sha256(b"fervi-browser-camera\0" + key.encode()).hexdigest()[:12]


class FrameRefused(Exception):
    """A browser frame not taken: why (the `fervi_web_frames_total` outcome) and the answer to its client."""

    def __init__(self, outcome: str, reply: dict):
        super().__init__(reply.get("error", outcome))
        self.outcome, self.reply = outcome, reply


class DashboardEvents(Namespace):
    """The events of the default namespace, one `on_<event>` method each (Flask-SocketIO calls them in the
    client's request context: `client_sid()`, its address). Limits and the clients' own cameras are kept per
    process; a camera's admission, sharing and rounds are in Redis, through the bus."""

    def __init__(self, bus: Bus, settings: Settings, authorized, token: str, namespace: str = "/"):
        super().__init__(namespace)
        self.bus, self.settings, self.authorized, self.token = bus, settings, authorized, token
        self.connections = AddressLimits(settings.web_connects_per_minute / 60.0, settings.web_connects_per_minute)
        per_address = WEB_FPS * settings.web_cameras_per_address
        self.address_frames = AddressLimits(per_address, per_address)
        self.frame_buckets: dict[str, TokenBucket] = {}
        self.own: dict[str, str] = {}  # sid -> its browser camera, once admitted
        self.keyed: dict[str, str] = {}  # sid -> the camera its tab's key names (`keyed_webcam_name`)
        self.stopped_run: dict[str, int] = {}  # sid -> the newest run of its camera its user stopped

    # --- what the events share ------------------------------------------------------------------
    def camera_of(self) -> str:
        """This client's browser camera: the one its tab's key names, else one named from its Socket.IO id."""
        return self.keyed.get(client_sid()) or webcam_name(client_sid())

    def take_key(self, key: object) -> None:
        """A connection that brings its tab's camera key: the camera is this connection's from now. An older
        connection of the same tab (a reconnect the server has not yet seen drop) gives it up without
        leaving, and sends to a camera of its own from then on."""
        camera = keyed_webcam_name(key)
        if camera is None:
            return
        for sid, held in list(self.keyed.items()):
            if held == camera:
                del self.keyed[sid]
                if self.own.get(sid) == camera:
                    del self.own[sid]
        self.keyed[client_sid()] = camera

    def visible(self, camera: str) -> bool:
        """A browser camera to its own client, and to others only while live and shared; every other camera."""
        return (
            not is_browser_camera(camera) or camera == self.own.get(client_sid()) or self.bus.is_shared_webcam(camera)
        )

    def refusal(self, camera) -> str:
        """Why this client may not watch `camera` ("" when it may)."""
        try:
            check_camera(camera)
        except ProtocolError as err:
            return str(err)
        return "" if self.visible(camera) else f"{camera} is a browser camera its user has not shared"

    def join_camera(self, camera: str) -> None:
        if camera != self.own.get(client_sid()):  # a client gets its own camera in its private room
            join_room(camera)

    def stop_watchers(self, camera: str) -> None:
        """Take every client out of a browser camera's room (it stopped being shared, or its client left).
        Its own client is never in that room: the relay sends it its camera through its private room."""
        self.close_room(camera)

    def leave(self, reason: str) -> bool:
        """The client's browser camera stops being a camera now (its keys go after a grace period)."""
        camera = self.own.pop(client_sid(), None)
        if camera:
            self.bus.leave_webcam(camera)
            self.stop_watchers(camera)
            WEB_CAMERAS.set(len(self.own))
            log.info("event=webcam_left camera=%s reason=%s", camera, reason)
        return camera is not None

    def checked_frame(self, data) -> tuple[bytes, int, int]:
        """A browser frame's JPEG and the size its header claims; FrameRefused when it is malformed, too
        large, or over this client's (or its address's) frame rate."""
        jpeg = data.get("jpeg") if isinstance(data, dict) else None
        if not isinstance(jpeg, (bytes, bytearray)) or not jpeg:
            raise FrameRefused("bad", {"ok": False, "error": "send {jpeg: <bytes>}"})
        if len(jpeg) > WEB_FRAME_MAX_BYTES:
            raise FrameRefused("too_large", {"ok": False, "error": f"frame larger than {WEB_FRAME_MAX_BYTES} bytes"})
        if not (
            self.frame_buckets.setdefault(client_sid(), TokenBucket(WEB_FPS, WEB_FPS)).take()
            and self.address_frames.take(client_address())
        ):
            raise FrameRefused("rate_limited", {"ok": False, "camera": self.camera_of(), "slow_down": True})
        try:  # the header alone: the size the frame claims, checked before any worker decodes it
            width, height = image_size(bytes(jpeg))
        except ImageError as err:
            raise FrameRefused("bad", {"ok": False, "error": str(err)}) from None
        limit = self.settings.max_frame_pixels
        if width * height > limit:
            raise FrameRefused(
                "too_large",
                {
                    "ok": False,
                    "error": f"frame of {width}x{height} pixels is over the limit of {limit} (FERVI_MAX_FRAME_PIXELS)",
                },
            )
        return bytes(jpeg), width, height

    def admit(self, camera: str) -> None:
        """Count a frame of this client's camera, admitting the camera on its first; FrameRefused when as many
        browser cameras as may be are live (in all, or from this address)."""
        settings = self.settings
        admitted = self.bus.admit_webcam(
            camera, client_address(), settings.web_cameras_max, settings.web_cameras_per_address, client_sid()
        )
        if admitted < 0:
            limit = (
                f"{settings.web_cameras_max} browser cameras are live, the most this FERVI takes"
                if admitted == -1
                else f"{settings.web_cameras_per_address} browser cameras are live from your "
                "address, the most it may have"
            )
            raise FrameRefused("refused", {"ok": False, "full": True, "error": f"{limit}: try again later"})
        if self.own.get(client_sid()) != camera:  # admitted now, or live before (this process restarted)
            self.own[client_sid()] = camera
            WEB_CAMERAS.set(len(self.own))
            log.info("event=webcam_admitted camera=%s address=%s again=%s", camera, client_address(), admitted == 1)

    # --- the events ---------------------------------------------------------------------------------
    def on_connect(self, auth=None):
        given = (auth or {}).get("token") if isinstance(auth, dict) else None
        # no token: `authorized` checks the Host (loopback names only); a token: the cookie, or the one sent here
        token = self.token
        if not (self.authorized() or token and hmac.compare_digest(str(given or "").encode(), token.encode())):
            WEB_CONNECTIONS.labels("unauthorized").inc()
            return False
        if not self.connections.take(client_address()):
            WEB_CONNECTIONS.labels("rate_limited").inc()
            raise ConnectionRefusedError(
                f"too many connections from {client_address()}: at most "
                f"{self.settings.web_connects_per_minute} a minute"
            )
        WEB_CONNECTIONS.labels("ok").inc()
        self.frame_buckets[client_sid()] = TokenBucket(WEB_FPS, WEB_FPS)
        self.take_key(auth.get("camera_key") if isinstance(auth, dict) else None)
        return True

    def on_disconnect(self, *_args):
        self.frame_buckets.pop(client_sid(), None)
        self.bus.drop_round(client_sid())
        self.leave("disconnected")
        self.keyed.pop(client_sid(), None)
        self.stopped_run.pop(client_sid(), None)

    def on_webcam_stop(self, data=None):
        """The user pressed Stop: the camera leaves at once, not after FERVI_WEB_IDLE. `run`: the run stopped
        (the page numbers each start of its camera): its frames still on their way are refused, so they do
        not admit the camera again (events are handled in threads, not always in the order sent)."""
        run = data.get("run") if isinstance(data, dict) else None
        if isinstance(run, int) and not isinstance(run, bool):
            self.stopped_run[client_sid()] = max(run, self.stopped_run.get(client_sid(), 0))
        return {"ok": True, "stopped": self.leave("stopped")}

    def on_watch(self, data=None):
        data = data if isinstance(data, dict) else {}
        camera = data.get("camera", "")
        for room in data.get("leave", []) if isinstance(data.get("leave"), list) else []:
            leave_room(str(room))
        if camera == WALL_ROOM:
            join_room(WALL_ROOM)
            return {"ok": True}
        error = self.refusal(camera)
        if error:
            return {"ok": False, "error": error}
        self.join_camera(camera)
        return {"ok": True}

    def on_webcam(self, data=None):
        """A JPEG from the browser's camera, into this browser's own camera stream."""
        camera = self.camera_of()
        run = data.get("run") if isinstance(data, dict) else None
        if isinstance(run, int) and run <= self.stopped_run.get(client_sid(), 0):
            WEB_FRAMES.labels("stopped").inc()
            return {"ok": False, "stopped": True, "error": "this camera was stopped"}
        try:
            jpeg, width, height = self.checked_frame(data)
            self.admit(camera)
        except FrameRefused as refused:
            WEB_FRAMES.labels(refused.outcome).inc()
            return refused.reply
        self.bus.add_frame(Frame(camera, time.time(), width, height, jpeg, live=True), self.settings.live_maxlen)
        FRAMES_INGESTED.labels(metric_camera(camera)).inc()
        WEB_FRAMES.labels("ok").inc()
        return {"ok": True, "camera": camera}

    def on_share(self, data=None):
        """Show this browser's camera on the shared live wall, or stop showing it; `title`: the name it is
        shown under (plain text, cleaned; default "Browser camera <last 4 of its id>")."""
        camera = self.own.get(client_sid())
        shared = bool(data.get("on")) if isinstance(data, dict) else False
        if camera is None or not self.bus.share_webcam(camera, shared):
            return {"ok": False, "error": "start your camera first"}
        asked = data.get("title") if isinstance(data, dict) else None
        title = challenge.clean_name(asked) if asked else ""
        self.bus.set_webcam_title(camera, title if title not in ("", "anonymous") else webcam_title(camera))
        if not shared:
            self.stop_watchers(camera)
        log.info("event=webcam_shared camera=%s shared=%s", camera, shared)
        return {"ok": True, "camera": camera, "shared": shared}

    def on_challenge_start(self, data=None):
        """Start this player's next round; the relay decides it from the tracker's results."""
        asked = data if isinstance(data, dict) else {}
        camera = asked.get("camera") or self.own.get(client_sid())
        if not camera:
            return {"ok": False, "error": "start your camera first"}
        error = self.refusal(camera)
        if error:
            return {"ok": False, "error": error}
        own_camera = camera == self.own.get(client_sid())
        if not own_camera and camera not in self.bus.cameras():
            return {"ok": False, "error": f"there is no camera called {camera!r}: see the Cameras page for the names"}
        targets = self.settings.challenge_target_list
        if not own_camera:  # a live camera cannot act on request: draw from what its faces showed lately
            now = time.time()
            targets = challenge.shown_targets(self.bus.emotion_totals(camera, "1m", now - SHOWN_WINDOW_S, now), targets)
        try:
            record = challenge.new_round(
                client_sid(), camera, own_camera, asked, targets, self.bus.load_round(client_sid())
            )
        except challenge.ChallengeError as err:
            return {"ok": False, "error": str(err)}
        self.bus.save_round(client_sid(), record)
        self.join_camera(camera)
        return {"ok": True, **challenge.progress(record)}


def register_sockets(socketio: SocketIO, bus: Bus, settings: Settings, authorized, token: str) -> DashboardEvents:
    events = DashboardEvents(bus, settings, authorized, token)
    socketio.on_namespace(events)
    return events
