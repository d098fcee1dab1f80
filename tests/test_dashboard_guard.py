"""The dashboard's guard (issue #27): each route's body limit counted while a chunked body streams in, cross-site
requests refused, security headers that every page works under, and hostile input answered with a reason,
never a 500."""

from __future__ import annotations

import functools
import http.server
import io
import json
import select
import socket
import threading
import urllib.request
from pathlib import Path

import psutil
import pytest
from fervi.dashboard import videos as videos_module
from fervi.dashboard.app import create_app

from fervi.bus.keys import LEADERBOARD
from fervi.demo import write_video
from fervi.embedded import free_port
from fervi.settings import load_settings

from .helpers_browser import FAKE_CAMERA_ARGS, chromium, dashboard_alone

BOUNDARY = b"fervi27"


@pytest.fixture
def app_setup(redis_url, tmp_path):
    settings = load_settings({"FERVI_HOME": str(tmp_path / "home"), "FERVI_CAMERA_FILE_ROOTS": str(tmp_path)})
    app, _ = create_app(settings, redis_url, start_relay=False)
    return app.test_client(), tmp_path / "home"


@pytest.mark.parametrize(
    "body, reason",
    [
        ("[" * 8000 + "]" * 8000, "nested too deeply"),
        (json.dumps({"camera": "a", "source": "0", "kind": {}}), "kind is one of"),
        (json.dumps({"camera": "a", "source": "/tmp/a\u0000b"}), "NUL"),
        (json.dumps({"camera": "a", "source": "/tmp/a\u0000b", "kind": "file"}), "NUL"),
        ('{"camera": "a", "source": "/tmp/\\ud800"}', "lone surrogate"),
        ('{"camera": "a", "source": "0", "fps": NaN}', "NaN"),
        ('{"camera": "a", "source": "0", "fps": 1e999}', "too large a number"),
        ("[1, 2]", "send a JSON object"),
        ('"camera"', "send a JSON object"),
    ],
)
def test_hostile_json_is_refused_with_a_reason(app_setup, body, reason):
    http, _ = app_setup
    reply = http.post("/api/sources", data=body, content_type="application/json")
    assert reply.status_code == 400 and reason in reply.get_json()["error"], reply.data[:300]


def test_a_leaderboard_score_that_is_not_finite_is_left_out(app_setup, client):
    http, _ = app_setup
    client.zadd(LEADERBOARD, {"ann": 7, "bob": float("inf"), "cid": float("-inf")})
    reply = http.get("/api/leaderboard")
    assert reply.status_code == 200 and reply.get_json() == [{"name": "ann", "score": 7}]


def test_cross_site_requests_are_refused_and_the_dashboards_own_pass(app_setup):
    http, _ = app_setup
    refused = [
        {"Origin": "http://localhost:9999"},
        {"Origin": "null"},  # file://
        {"Origin": "http://evil.example"},
        {"Referer": "http://localhost:9999/page.html"},
    ]
    for headers in refused:
        reply = http.delete("/api/sources/gate", headers=headers)
        assert reply.status_code == 403 and "another origin" in reply.get_json()["error"], headers
    allowed = [
        {},  # curl, the CLI
        {"Origin": "http://localhost"},
        {"Origin": "http://LOCALHOST:80"},
        {"Referer": "http://localhost/cameras"},
        # behind a proxy that rewrites Host and says where the browser went
        {"Origin": "https://dash.example.org", "X-Forwarded-Host": "dash.example.org", "X-Forwarded-Proto": "https"},
    ]
    for headers in allowed:
        reply = http.delete("/api/sources/gate", headers=headers)
        assert reply.status_code == 404, (headers, reply.data)  # past the guard: no such camera
    assert http.get("/api/leaderboard", headers={"Origin": "http://evil.example"}).status_code == 200  # reads pass


def test_with_a_token_requests_without_origin_need_it(redis_url):
    app, _ = create_app(load_settings({}), redis_url, token="t0ken", start_relay=False)
    http = app.test_client()
    assert http.delete("/api/sources/gate").status_code == 401
    assert http.delete("/api/sources/gate", headers={"Authorization": "Bearer t0ken"}).status_code == 404
    cross = http.delete("/api/sources/gate?token=t0ken", headers={"Origin": "http://localhost:9999"})
    assert cross.status_code == 403


def test_every_answer_carries_the_security_headers(app_setup):
    http, _ = app_setup
    for path in ("/", "/videos", "/api/cameras", "/healthz", "/api/nowhere"):
        headers = http.get(path).headers
        assert headers["X-Frame-Options"] == "DENY", path
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_a_video_upload_on_a_full_disk_is_a_507_and_leaves_nothing(app_setup, monkeypatch):
    http, home = app_setup
    real_open_part = videos_module.open_part

    def full_disk(folder: Path):
        real_open_part(folder).close()  # the part file exists, as it would when the disk fills mid-upload
        return open("/dev/full", "w+b")  # every write: ENOSPC, from the kernel

    monkeypatch.setattr(videos_module, "open_part", full_disk)
    reply = http.post(
        "/api/videos",
        data={"video": (io.BytesIO(b"\0" * 300_000), "clip.mp4")},
        content_type="multipart/form-data",
    )
    assert reply.status_code == 507 and "disk is full" in reply.get_json()["error"]
    assert list((home / "uploads").iterdir()) == []
    assert http.get("/api/videos").get_json() == []


# --- a real dashboard process: bodies over a raw socket, pages in Chromium


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, redis_server):
    tmp = tmp_path_factory.mktemp("guard")
    with dashboard_alone(tmp, redis_server.url, FERVI_HOME=str(tmp / "home")) as running:
        running["port"] = int(running["url"].rsplit(":", 1)[1])
        yield running


def _tree_rss(pid: int) -> int:
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])


def chunked_upload(port: int, path: str, total: int, chunk: int = 2**20) -> tuple[int, bytes]:
    """Offer `total` bytes of a multipart file part, chunked (no length declared); stop at the first byte of
    an answer. Returns how many bytes were sent by then, and the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=%s\r\n\r\n" % (path.encode(), port, BOUNDARY)
        )
        head = b'--%s\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n\r\n' % BOUNDARY
        sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        sock.setblocking(False)
        block, sent, offset = memoryview(b"%x\r\n%s\r\n" % (chunk, b"\xff" * chunk)), 0, 0
        while sent < total:
            readable, writable, _ = select.select([sock], [sock], [], 10)
            if readable or not writable:  # an answer (or the connection closed), or the server stopped reading
                break
            try:
                written = sock.send(block[offset:])
            except BlockingIOError:
                continue
            except OSError:  # it closed the connection: its answer is there to read
                break
            sent, offset = sent + written, (offset + written) % len(block)
        sock.setblocking(True)
        return sent, read_answer(sock)


def read_answer(sock: socket.socket) -> bytes:
    """One HTTP answer, head and body: the server may write them in separate packets."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        more = sock.recv(65536)
        if not more:
            return answer
        answer += more
    if b"Content-Length" in answer:
        length = int(answer.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        while len(answer.split(b"\r\n\r\n", 1)[1]) < length:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    return answer


def test_a_chunked_upload_over_the_limit_is_refused_as_it_streams(dashboard):
    """400 MB offered to image mode (10 MB limit), twice at once: each answer is a 413 with the reason while
    the client could still send; the server read a few MB (socket buffers) and its memory did not grow."""
    pid = dashboard["procs"].started[0].pid
    before = _tree_rss(pid)
    answers: list[tuple[int, bytes]] = []
    senders = [
        threading.Thread(target=lambda: answers.append(chunked_upload(dashboard["port"], "/api/image", 400 * 2**20)))
        for _ in range(2)
    ]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(60)
    grown = _tree_rss(pid) - before
    assert len(answers) == 2
    for sent, answer in answers:
        assert answer.startswith(b"HTTP/1.1 413") and b"an image is at most 10 MB" in answer, answer[:300]
        assert sent < 64 * 2**20, f"{sent} bytes sent before the answer"
    assert grown < 64 * 2**20, f"the dashboard grew by {grown >> 20} MB"


def test_a_declared_length_over_the_limit_is_refused_before_the_body(dashboard):
    with socket.create_connection(("127.0.0.1", dashboard["port"]), timeout=10) as sock:
        sock.sendall(
            b"POST /api/sources HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 400000000\r\n\r\n"
        )
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413") and b"a camera is described in at most" in answer, answer[:300]


def test_a_route_that_takes_no_body_answers_without_reading_one(dashboard):
    sent, answer = chunked_upload(dashboard["port"], "/api/videos/0123456789ab/cancel", 100 * 2**20)
    assert answer.startswith(b"HTTP/1.1 404") and sent < 64 * 2**20, (sent, answer[:300])


@pytest.fixture(scope="module")
def browser(dashboard):
    playwright_sync = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with playwright_sync.sync_playwright() as playwright, chromium(playwright, *FAKE_CAMERA_ARGS) as browser:
        yield browser


CSP_WATCH = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


def test_every_page_works_under_the_content_security_policy(dashboard, browser):
    context = browser.new_context()
    context.grant_permissions(["camera"], origin=dashboard["url"])
    context.add_init_script(CSP_WATCH)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        for path in ("/", "/cameras", "/webcam", "/challenge", "/charts", "/image", "/videos"):
            page.goto(dashboard["url"] + path)
            page.wait_for_function("() => document.getElementById('status').textContent === 'live'", timeout=15000)
            if path == "/webcam":
                page.click("#start")
                page.wait_for_function("() => document.querySelector('video, canvas') !== null", timeout=10000)
                page.wait_for_timeout(1000)  # a few frames sent over the socket
            assert page.evaluate("window.cspViolations") == [] and console == [], (path, console)
    finally:
        context.close()


ATTACK = """<!doctype html><title>working</title><script>
(async () => {
  const dash = "%(dash)s";
  if (%(upload)s) {
    const clip = await (await fetch("clip.mp4")).blob();
    const form = new FormData();
    form.append("video", clip, "clip.mp4");
    await fetch(dash + "/api/videos", { method: "POST", body: form, mode: "no-cors" }).catch(() => {});
  }
  await fetch(dash + "/api/videos/%(video)s/cancel", { method: "POST", mode: "no-cors" }).catch(() => {});
  document.title = "sent";
})();
</script>"""


@pytest.fixture
def other_origin(tmp_path):
    """A web server on another local port (another origin), serving `tmp_path`."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://localhost:{server.server_address[1]}"
    server.shutdown()


def _videos(dashboard) -> list[dict]:
    with urllib.request.urlopen(dashboard["url"] + "/api/videos", timeout=10) as reply:
        return json.loads(reply.read())


def test_pages_on_other_origins_cannot_upload_or_cancel_but_the_videos_page_can(
    dashboard, browser, tmp_path, other_origin
):
    for video in _videos(dashboard):  # from an earlier test of this module, if any
        urllib.request.urlopen(urllib.request.Request(f"{dashboard['url']}/api/videos/{video['id']}", method="DELETE"))
    clip = write_video(tmp_path / "clip.mp4", frames=20, fps=10)
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(dashboard["url"] + "/videos")
        page.set_input_files("#file", str(clip))
        page.click("#upload button")
        page.wait_for_selector("#videos tbody tr", timeout=15000)
        [video] = _videos(dashboard)
        assert video["state"] == "queued"  # no worker runs here

        for name, upload in (("attack.html", "true"), ("file.html", "false")):
            (tmp_path / name).write_text(ATTACK % {"dash": dashboard["url"], "upload": upload, "video": video["id"]})
        for url in (f"{other_origin}/attack.html", (tmp_path / "file.html").as_uri()):
            page.goto(url)
            page.wait_for_function("() => document.title === 'sent'", timeout=15000)
            assert [(v["id"], v["state"]) for v in _videos(dashboard)] == [(video["id"], "queued")], url
        # the requests did reach the dashboard, and were refused there
        log = dashboard["procs"].started[0].log_path.read_text()
        assert f"event=cross_origin_refused origin={other_origin} method=POST path=/api/videos\n" in log
        assert f"origin=null method=POST path=/api/videos/{video['id']}/cancel" in log
    finally:
        context.close()


def test_long_and_foreign_upload_names_are_kept_short_and_readable(app_setup):
    """Before: a video whose ASCII name had 256 bytes or more was a 500 (the file system's name limit), and
    a Japanese name was stored as "avi"."""
    http, home = app_setup
    reply = http.post(
        "/api/videos",
        data={"video": (io.BytesIO(b"not a video" * 100), "a" * 300 + ".mp4")},
        content_type="multipart/form-data",
    )
    assert reply.status_code == 400 and "a" * 100 in reply.get_json()["error"]  # refused as no video, not a 500
    assert list((home / "uploads").iterdir()) == []
    assert videos_module.upload_name("日本語の動画" * 10 + ".avi").startswith("日本語の動画")
    assert videos_module.upload_name("日本語の動画" * 10 + ".avi").endswith(".avi")
    assert len(videos_module.upload_name("日本語の動画" * 10 + ".avi").encode()) <= videos_module.NAME_MAX_BYTES
    assert videos_module.upload_name("../../etc/passwd") == "passwd"
    assert videos_module.upload_name("clip: take <1>?.mp4") == "clip_take_1.mp4"


@pytest.mark.parametrize("sent", ["x", "nan", "inf", "1e999"])
def test_a_spoilt_counter_of_one_camera_does_not_break_the_cameras_page(app_setup, client, sent):
    http, _ = app_setup
    client.hset("fervi:{door}:source", mapping={"state": "live", "sent": sent, "updated_at": "nan"})
    client.sadd("fervi:cameras", "door")
    reply = http.get("/api/sources")
    assert reply.status_code == 200, reply.data[:300]
    assert [c["sent"] for c in reply.get_json()["cameras"] if c["camera"] == "door"] == [0]
