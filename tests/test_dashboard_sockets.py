"""The dashboard's Socket.IO events without a browser: Flask-SocketIO's test client calls each handler of
`DashboardEvents` in this process, on the session's real redis-server. Its test client works without
the Redis message queue only, so the events are registered on an app of their own here, with the
dashboard's token check (the browser tests drive the same events from Chromium and python-socketio)."""

from __future__ import annotations

import pytest
from fervi.dashboard.app import require_token
from fervi.dashboard.relay import WALL_ROOM
from fervi.dashboard.sockets import WEB_FRAME_MAX_BYTES, register_sockets
from flask import Flask
from flask_socketio import SocketIO

from fervi.bus import Bus, frames_key
from fervi.settings import load_settings

from .images import demo_jpeg, jpeg_claiming_size

TOKEN = "t0ken"


@pytest.fixture
def dashboard(redis_url):
    app = Flask(__name__)
    socketio = SocketIO(app, async_mode="threading")
    bus = Bus.from_url(redis_url)
    events = register_sockets(
        socketio, bus, load_settings({"FERVI_WEB_CONNECTS_PER_MINUTE": "3"}), require_token(app, TOKEN), TOKEN
    )
    return {"app": app, "socketio": socketio, "bus": bus, "events": events}


def connect(dashboard, **kwargs):
    return dashboard["socketio"].test_client(dashboard["app"], **kwargs)


def test_a_connection_needs_the_token_and_an_address_gets_a_few_a_minute(dashboard):
    assert not connect(dashboard).is_connected()
    assert not connect(dashboard, auth={"token": "wrong"}).is_connected()
    assert not connect(dashboard, auth="not a dict").is_connected()
    # the token in the URL or in Socket.IO's auth; refused connections count for nothing against
    # FERVI_WEB_CONNECTS_PER_MINUTE=3 from one address
    clients = [connect(dashboard, query_string=f"token={TOKEN}")] + [
        connect(dashboard, auth={"token": TOKEN}) for _ in range(3)
    ]
    assert [c.is_connected() for c in clients] == [True, True, True, False]


def test_a_browser_camera_takes_checked_frames_and_is_private_until_shared(dashboard):
    bus = dashboard["bus"]
    owner, other = connect(dashboard, auth={"token": TOKEN}), connect(dashboard, auth={"token": TOKEN})
    assert owner.emit("webcam", {}, callback=True) == {"ok": False, "error": "send {jpeg: <bytes>}"}
    big = owner.emit("webcam", {"jpeg": b"\xff" * (WEB_FRAME_MAX_BYTES + 1)}, callback=True)
    assert big["ok"] is False and "larger than" in big["error"]
    huge = owner.emit("webcam", {"jpeg": jpeg_claiming_size(5000, 5000)}, callback=True)
    assert huge["ok"] is False and "FERVI_MAX_FRAME_PIXELS" in huge["error"]
    assert owner.emit("share", {"on": True}, callback=True) == {"ok": False, "error": "start your camera first"}
    sent = owner.emit("webcam", {"jpeg": demo_jpeg()}, callback=True)
    camera = sent["camera"]
    assert sent == {"ok": True, "camera": camera} and camera.startswith("web-")
    assert bus.redis.xlen(frames_key(camera)) == 1 and camera in bus.cameras()

    assert other.emit("watch", {"camera": camera}, callback=True) == {
        "ok": False,
        "error": f"{camera} is a browser camera its user has not shared",
    }
    assert "invalid camera name" in other.emit("watch", {"camera": "../etc"}, callback=True)["error"]
    assert other.emit("watch", "not a dict", callback=True)["ok"] is False
    assert owner.emit("share", {"on": True}, callback=True) == {"ok": True, "camera": camera, "shared": True}
    assert other.emit("watch", {"camera": camera}, callback=True) == {"ok": True}
    # a watcher is in the camera's room, where the relay emits the camera's results
    dashboard["socketio"].emit("result", {"camera": camera}, to=camera)
    assert [m["name"] for m in other.get_received()] == ["result"]
    assert owner.get_received() == []  # its own client gets its camera in its private room, not this one

    assert owner.emit("webcam_stop", callback=True) == {"ok": True, "stopped": True}
    assert camera not in bus.webcams() and not bus.is_shared_webcam(camera) and dashboard["events"].own == {}
    assert owner.emit("webcam_stop", callback=True) == {"ok": True, "stopped": False}
    assert other.emit("watch", {"camera": camera}, callback=True)["ok"] is False  # not shared any more
    # and its watchers left its room
    assert other.emit("watch", {"camera": WALL_ROOM}, callback=True) == {"ok": True}
    dashboard["socketio"].emit("result", {"camera": camera}, to=camera)
    dashboard["socketio"].emit("wall", {}, to=WALL_ROOM)
    assert [m["name"] for m in other.get_received()] == ["wall"]


def test_a_round_needs_a_camera_that_exists(dashboard):
    player = connect(dashboard, auth={"token": TOKEN})
    assert player.emit("challenge_start", {}, callback=True) == {"ok": False, "error": "start your camera first"}
    assert (
        "there is no camera called 'hall'" in player.emit("challenge_start", {"camera": "hall"}, callback=True)["error"]
    )


def fresh_dashboard(redis_url):
    """A dashboard process's events on the session's Redis, as after a start (or a restart)."""
    app = Flask(__name__)
    socketio = SocketIO(app, async_mode="threading")
    events = register_sockets(socketio, Bus.from_url(redis_url), load_settings(), require_token(app, TOKEN), TOKEN)
    return lambda key: socketio.test_client(app, auth={"token": TOKEN, "camera_key": key}), events


def test_a_tab_s_camera_key_keeps_its_camera_across_reconnects_and_restarts(redis_url):
    """A tab sends its camera key (sessionStorage) when it connects: after a reconnect, or a restart of the
    dashboard's process (new events, the same Redis), its frames go to the same camera, so its history and
    charts stay one. Another key is another camera; a malformed key names the camera from the connection."""
    key, other_key = "k" * 24, "Z_-9" * 8
    client, _ = fresh_dashboard(redis_url)
    first = client(key)
    camera = first.emit("webcam", {"jpeg": demo_jpeg()}, callback=True)["camera"]
    assert camera.startswith("web-") and key not in camera  # named from the key's hash, not the key
    first.disconnect()
    again = client(key)
    assert again.emit("webcam", {"jpeg": demo_jpeg()}, callback=True)["camera"] == camera
    assert again.emit("share", {"on": True}, callback=True) == {"ok": True, "camera": camera, "shared": True}
    client, restarted = fresh_dashboard(redis_url)  # its process forgot every client; the tab reconnects
    back = client(key)
    assert back.emit("webcam", {"jpeg": demo_jpeg()}, callback=True)["camera"] == camera
    assert list(restarted.own.values()) == [camera]  # this client's camera again: it may share it, stop it
    assert back.emit("share", {"on": False}, callback=True) == {"ok": True, "camera": camera, "shared": False}
    assert Bus.from_url(redis_url).redis.xlen(frames_key(camera)) == 3
    assert client(other_key).emit("webcam", {"jpeg": demo_jpeg()}, callback=True)["camera"] != camera
    assert client("short").emit("webcam", {"jpeg": demo_jpeg()}, callback=True)["camera"] != camera
    # a reconnect the server has not yet seen drop: the new connection takes the camera over; the old one,
    # if it still sends, sends to a camera of its own (never two streams of frames in one camera)
    old = client(other_key)
    taken = old.emit("webcam", {"jpeg": demo_jpeg()}, callback=True)["camera"]
    new = client(other_key)
    assert new.emit("webcam", {"jpeg": demo_jpeg()}, callback=True)["camera"] == taken
    assert old.emit("webcam", {"jpeg": demo_jpeg()}, callback=True)["camera"] not in (taken, camera)


def test_a_frame_of_a_stopped_run_that_comes_after_the_stop_does_not_bring_the_camera_back(redis_url):
    """Socket.IO handles each event in a thread: a frame sent just before Stop may be handled after it. Its
    run is the stopped one: refused, and the camera stays gone; the next run (Start again) is taken."""
    client, _ = fresh_dashboard(redis_url)
    tab = client("r" * 24)
    camera = tab.emit("webcam", {"jpeg": demo_jpeg(), "run": 1}, callback=True)["camera"]
    assert tab.emit("webcam_stop", {"run": 1}, callback=True) == {"ok": True, "stopped": True}
    late = tab.emit("webcam", {"jpeg": demo_jpeg(), "run": 1}, callback=True)
    assert late == {"ok": False, "stopped": True, "error": "this camera was stopped"}
    bus = Bus.from_url(redis_url)
    assert camera not in bus.cameras() and camera not in bus.webcams()
    assert tab.emit("webcam", {"jpeg": demo_jpeg(), "run": 2}, callback=True) == {"ok": True, "camera": camera}
    assert camera in bus.cameras()
