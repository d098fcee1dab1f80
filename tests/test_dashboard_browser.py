"""The dashboard in a real headless Chromium against the real pipeline (Redis, worker, tracker, model).

Chromium's fake camera plays a .y4m made from the astronaut photo (a smiling face), so the browser camera,
the acting challenge (the server draws its targets from "happy" alone: FERVI_CHALLENGE_TARGETS) and the
charts see a real face.
Screenshots go to docs/screenshots/ (committed, shown in the README).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from fervi.bus import Bus
from fervi.demo import face_photo_paths, write_video
from fervi.embedded import free_port
from fervi.emotions import EMOTIONS

from .conftest import fervi_env, http_ok, wait_for
from .helpers_browser import FAKE_CAMERA_ARGS, camera_page, chromium, shot
from .images import jpeg_claiming_size

playwright_sync = pytest.importorskip("playwright.sync_api", reason="pip install playwright")


def write_y4m(path: Path, frames: int = 30, fps: int = 10) -> Path:
    """A fake-camera clip: the astronaut photo, gently moving, as YUV 4:2:0."""
    photo = cv2.imread(str(face_photo_paths()[0]))
    face = cv2.resize(photo[0:360, 60:420], (300, 300))
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W640 H480 F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            canvas = np.full((480, 640, 3), (90, 80, 70), np.uint8)
            x = 170 + int(20 * np.sin(i / 5))
            canvas[90:390, x : x + 300] = face
            out.write(b"FRAME\n" + cv2.cvtColor(canvas, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_server):
    """worker, tracker, dashboard and a live demo camera on the session's real Redis."""
    from .conftest import Processes

    tmp = tmp_path_factory.mktemp("dashboard")
    redis.Redis.from_url(redis_server.url).flushall()
    port = free_port()
    (tmp / "media").mkdir()
    env = fervi_env(
        redis_server.url,
        FERVI_DASHBOARD_PORT=port,
        FERVI_BLOCK_MS=200,
        FERVI_CHALLENGE_TARGETS="happy",
        FERVI_CAMERA_FILE_ROOTS=tmp / "media",
        # every page here connects from 127.0.0.1: more than a visitor's 30 a minute (limits are
        # tested in test_browser_clients.py)
        FERVI_WEB_CONNECTS_PER_MINUTE=600,
    )
    procs = Processes(tmp)
    procs.start(["worker"], env, "worker")
    procs.start(["tracker"], env, "tracker")
    procs.start(["dashboard"], env, "dashboard")
    procs.start(["rq-worker"], env, "rq-worker")
    procs.start(["cameras", "supervise"], env, "cameras")
    video = write_video(tmp / "demo.mp4", frames=60, fps=10)
    procs.start(["ingest", str(video), "--camera", "demo", "--live", "--loop"], env, "ingest")
    wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "the dashboard")
    yield {"url": f"http://127.0.0.1:{port}", "redis": redis_server.url, "tmp": tmp}
    procs.stop_all()


@pytest.fixture(scope="module")
def playwright():
    with playwright_sync.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(stack, playwright):
    y4m = write_y4m(stack["tmp"] / "camera.y4m")
    with chromium(playwright, *FAKE_CAMERA_ARGS, f"--use-file-for-fake-video-capture={y4m}") as browser:
        yield browser


@pytest.fixture
def page(browser, stack):
    with camera_page(browser, stack["url"]) as page:
        yield page


def test_live_wall_shows_the_demo_camera_with_labels(page, stack):
    page.goto(stack["url"] + "/")
    # the production server (Gunicorn, gevent) carries Socket.IO over a real WebSocket
    page.wait_for_function("() => document.body.dataset.transport === 'websocket'", timeout=15000)
    tile = page.locator('.tile[data-camera="demo"]')
    tile.wait_for(timeout=30000)
    page.wait_for_function(
        "() => document.querySelector('.tile[data-camera=\"demo\"]')?.dataset.labels?.split(',').length === 2",
        timeout=30000,
    )
    labels = tile.get_attribute("data-labels").split(",")
    assert all(label in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral") for label in labels)
    time.sleep(1.0)  # let a preview frame arrive before the screenshot
    shot(page, "wall")


def _add_camera(page, name: str, kind: str, source: str, loop: bool = False, fps: str = "0") -> str:
    """Fill the Cameras page's form; returns the error it shows ("" when the camera was added)."""
    page.fill("#camera", name)
    page.select_option("#kind", kind)
    page.fill("#source", source)
    page.fill("#fps", fps)
    if kind == "file":
        page.set_checked("#loop", loop)
    with page.expect_response(lambda r: r.url.endswith("/api/sources") and r.request.method == "POST"):
        page.click("#add button[type=submit]")
    page.wait_for_function("() => !document.getElementById('add').dataset.busy")  # the page has shown the answer
    return page.locator("#error").inner_text()


def _card_state(page, camera: str, state: str, timeout_s: float = 60) -> str:
    card = f'.camera-card[data-camera="{camera}"]'
    page.wait_for_function(
        f"() => document.querySelector('{card}')?.dataset.state === '{state}'", timeout=timeout_s * 1000
    )
    return page.locator(card + " .reason").inner_text()


def test_cameras_are_added_watched_and_removed_from_the_page(page, stack):
    """Frigate-style camera management: the dashboard registers a camera, the supervisor runs its ingest, and
    the page shows each camera's state (live, reconnecting, error with the reason) until it is removed."""
    media = stack["tmp"] / "media"
    video = write_video(media / "porch.mp4", frames=40, fps=10)
    (media / "notes.txt").write_text("not a video")
    page.goto(stack["url"] + "/cameras")
    page.wait_for_function(
        "() => document.getElementById('supervisor').textContent.includes('supervisor runs')", timeout=20000
    )
    assert page.locator('.camera-card[data-camera="demo"] .actions').inner_text().startswith("Charts")
    assert "fervi ingest" in page.locator('.camera-card[data-camera="demo"]').inner_text()  # not the page's

    assert _add_camera(page, "porch", "file", str(video), loop=True, fps="5") == ""
    _card_state(page, "porch", "live")
    assert (
        _add_camera(page, "porch", "webcam", "0")
        == "a camera named 'porch' exists: remove it first or pick another name"
    )
    assert "outside the folders" in _add_camera(page, "etc", "file", "/etc/hostname")
    assert "no such file" in _add_camera(page, "nofile", "file", str(media / "missing.mp4"))
    page.fill("#camera", "bad name")  # the browser says so before sending; the server refuses it too
    assert page.evaluate("document.getElementById('camera').validity.patternMismatch")
    refused = page.request.post(stack["url"] + "/api/sources", data={"camera": "bad name", "source": "0"})
    assert refused.status == 400 and "invalid camera name" in refused.json()["error"]
    form = page.request.post(stack["url"] + "/api/sources", form={"camera": "x", "source": "0"})
    assert form.status == 400  # JSON only: a cross-site form cannot add a camera
    assert _add_camera(page, "notes", "file", str(media / "notes.txt")) == ""
    reason = _card_state(page, "notes", "error")  # what can never work says why, and is not started again
    assert reason.startswith("not a video:") and "not retried" in reason and "trying again" not in reason
    assert _add_camera(page, "gate", "stream", "rtsp://admin:hunter2@127.0.0.1:9/live") == ""
    reason = _card_state(page, "gate", "reconnecting")  # a camera may come back: retried
    assert reason.startswith("refused: 127.0.0.1:9") and "hunter2" not in page.locator("#cameras").inner_text()

    page.goto(stack["url"] + "/")  # the new camera is on the live wall, with labels from the workers
    page.wait_for_function("() => document.querySelector('.tile[data-camera=\"porch\"]')?.dataset.seq", timeout=60000)

    page.goto(stack["url"] + "/cameras")
    _card_state(page, "porch", "live")
    time.sleep(0.5)
    shot(page, "cameras")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    shot(page, "cameras-phone")
    page.set_viewport_size({"width": 1280, "height": 900})

    for camera in ("porch", "notes", "gate"):
        page.once("dialog", lambda dialog: dialog.accept())
        page.click(f'.camera-card[data-camera="{camera}"] button.remove')
        page.wait_for_selector(f'.camera-card[data-camera="{camera}"]', state="detached", timeout=20000)
    bus = Bus(redis.Redis.from_url(stack["redis"]))
    wait_for(
        lambda: not [n for n, i in bus.processes().items() if i.get("camera") in ("porch", "gate")],
        30,
        "their ingests to stop",
    )


def test_browser_camera_gets_labels_back_and_is_private_until_shared(page, browser, stack):
    page.goto(stack["url"] + "/webcam?autostart=1")
    page.wait_for_function("() => document.getElementById('tile').dataset.labels?.length > 0", timeout=40000)
    assert "happy" in page.locator("#tile").get_attribute("data-labels")
    camera = page.locator("#tile").get_attribute("data-camera")
    wall = browser.new_context().new_page()
    wall.goto(stack["url"] + "/")
    wall.locator('.tile[data-camera="demo"]').wait_for(timeout=30000)
    assert wall.locator(f'.tile[data-camera="{camera}"]').count() == 0  # not shared: not on the wall
    page.fill("#title", "Front desk")  # the name the wall shows it under (not web-...)
    page.check("#share")
    page.wait_for_function("() => document.body.dataset.shared === 'true'", timeout=10000)
    wall.locator(f'.tile[data-camera="{camera}"]').wait_for(timeout=20000)
    title = f'.tile[data-camera="{camera}"] .tile-head b'
    wall.wait_for_function(f"() => document.querySelector('{title}')?.textContent === 'Front desk'", timeout=10000)
    page.uncheck("#share")
    wall.locator(f'.tile[data-camera="{camera}"]').wait_for(state="detached", timeout=20000)
    wall.context.close()
    time.sleep(1.0)
    shot(page, "webcam")
    page.close()  # the client leaves: its camera leaves with it
    r = redis.Redis.from_url(stack["redis"])
    wait_for(lambda: not r.sismember("fervi:cameras", camera), 15, "the browser camera to leave")


def test_the_browser_camera_stops_at_once(page, stack):
    page.goto(stack["url"] + "/webcam?autostart=1")
    page.wait_for_function("() => document.getElementById('tile').dataset.labels?.length > 0", timeout=40000)
    camera = page.locator("#tile").get_attribute("data-camera")
    assert page.locator("#start").is_hidden() and page.locator("#stop").is_visible()
    page.click("#stop")
    page.wait_for_function("() => document.body.dataset.stopped === '1'", timeout=10000)
    r = redis.Redis.from_url(stack["redis"])
    wait_for(lambda: not r.sismember("fervi:cameras", camera), 5, "the stopped camera to leave at once")
    assert page.locator("#start").is_visible() and "stopped" in page.locator("#note").inner_text()


def test_acting_challenge_round_is_decided_by_the_server(page, stack):
    page.goto(stack["url"] + "/challenge?name=astronaut&autostart=1")
    page.wait_for_function("() => Number(document.body.dataset.roundsWon || 0) >= 1", timeout=60000)
    assert "Round won: happy! +1" in page.locator("#verdict").inner_text()
    assert "scored round" in page.locator("#mode").inner_text()
    page.wait_for_function(
        "() => document.getElementById('leaderboard').innerText.includes('astronaut: 1')", timeout=10000
    )
    shot(page, "challenge")
    bus = Bus(redis.Redis.from_url(stack["redis"]))
    assert bus.webcams()  # the player's camera is live ...
    page.click("#stop")  # ... until Stop: its light goes off and the server forgets it at once
    page.wait_for_function("() => document.body.dataset.stopped === '1'", timeout=5000)
    wait_for(lambda: not bus.webcams(), 10, "the challenge's camera to be forgotten")
    assert page.locator("#start").is_visible() and "Stopped" in page.locator("#verdict").inner_text()


def test_the_challenge_says_what_it_cannot_play_and_shows_the_target_first_on_a_phone(page, stack):
    page.goto(stack["url"] + "/challenge?camera=nosuch&autostart=1")
    page.wait_for_function(
        "() => document.getElementById('verdict').textContent.includes('no camera called')", timeout=20000
    )
    assert page.locator("#start").is_visible()
    page.goto(stack["url"] + "/challenge?target=joy&autostart=1")
    assert "not an emotion FERVI knows" in page.locator("#verdict").inner_text()
    assert page.locator("#start").is_visible()  # nothing started, least of all a scored game
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(stack["url"] + "/challenge?camera=demo&autostart=1")
    page.wait_for_function("() => !document.getElementById('target').classList.contains('target-none')", timeout=30000)
    meter = page.evaluate("document.querySelector('.meter').getBoundingClientRect().bottom")
    assert meter < 844, meter  # what to act and how it goes, without scrolling past the camera


def test_a_name_the_server_cleans_is_shown_as_it_will_appear(page, stack):
    page.goto(stack["url"] + "/challenge")
    page.fill("#name", "Tester <b>x</b>")
    page.select_option("#mode-select", "happy")  # practice
    page.click("#start")
    page.wait_for_function("() => document.getElementById('name-note').textContent.length > 0", timeout=30000)
    assert "shown as “Tester bxb”" in page.locator("#name-note").inner_text()


def test_a_game_is_five_rounds_with_verdicts_a_final_score_and_a_best_games_board(page, stack):
    page.goto(stack["url"] + "/challenge")
    page.fill("#name", "Grace")
    page.dispatch_event("#name", "change")  # remembered in this browser
    assert page.locator("#mode-select").input_value() == "game"
    page.click("#start")
    page.wait_for_function("() => document.body.dataset.gameScore !== undefined", timeout=120000)
    verdicts = page.locator("#verdicts li").all_inner_texts()
    assert len(verdicts) == 5 and all(v.startswith("happy: ") for v in verdicts), verdicts
    score = int(page.evaluate("document.body.dataset.gameScore"))
    assert score == sum(int(v.split("+")[1]) for v in verdicts if "+" in v) and score >= 1
    assert "Game over" in page.locator("#verdict").inner_text() and page.locator("#again").is_visible()
    page.wait_for_function(
        f"() => document.getElementById('games').innerText.includes('Grace: {score}')", timeout=10000
    )
    assert page.locator("#name-note").inner_text() == ""  # a plain name is kept as typed
    page.reload()
    assert page.locator("#name").input_value() == "Grace"


def test_charts_hold_data(page, stack):
    page.goto(stack["url"] + "/charts?camera=demo&minutes=2")
    page.wait_for_function(
        "() => Number(document.getElementById('summary').dataset.faceSeconds || 0) > 1", timeout=30000
    )
    page.wait_for_function("() => document.getElementById('newest-title').innerText.includes('#')", timeout=15000)
    totals = page.locator("#totals").inner_text()
    assert all(emotion in totals for emotion in ("happy", "neutral")) and "%" in totals  # the donut's values
    page.wait_for_function("() => document.querySelectorAll('#tracks tbody tr').length >= 2", timeout=15000)
    with page.expect_download() as csv_download:
        page.click("#export-csv")
    lines = Path(csv_download.value.path()).read_text().splitlines()
    header = "time_utc,t," + ",".join(f"{e}_face_s" for e in EMOTIONS) + ",observed_s,not_observed_s"
    assert lines[0] == header and len(lines) > 60
    assert sum(float(x) for line in lines[1:] for x in line.split(",")[2:]) > 1  # what the charts show
    with page.expect_download() as json_download:
        page.click("#export-json")
    exported = json.loads(Path(json_download.value.path()).read_text())
    assert exported["series"].keys() == {"t", *EMOTIONS, "observed", "unobserved"} and exported["tracks"]
    assert exported["camera"] == "demo"
    # the faces table keeps its rows across refreshes (every 2 s): a click never lands on a row rebuilt under it
    newest = page.evaluate(
        "(() => { const row = document.querySelector('#tracks tbody tr'); row.marked = true; "
        "return row.dataset.track; })()"
    )
    time.sleep(2.5)  # a refresh, and a timeline of a few seconds (a newer face may take the top row meanwhile)
    assert page.evaluate(f"document.querySelector('#tracks tbody tr[data-track=\"{newest}\"]').marked === true")
    ticks = page.evaluate("Chart.getChart(document.getElementById('timeline')).scales.x.ticks.map(t => t.label)")
    assert len(ticks) >= 2 and len(set(ticks)) == len(ticks), ticks  # one label per tick, none repeated
    page.locator("#tracks .track-link").first.click()  # a face's own timeline
    page.wait_for_function(
        "() => Number(document.getElementById('track-panel').dataset.segments || 0) >= 1", timeout=15000
    )
    assert "point(s) from the tracks stream" in page.locator("#track-note").inner_text()
    # the label history: a coloured strip, one block per stretch of one label, named on hover
    blocks = page.locator("#track-segments i")
    assert blocks.count() >= 1 and re.fullmatch(r"[a-z]+ \d+–\d+ s", blocks.first.get_attribute("title"))
    assert blocks.first.evaluate("b => getComputedStyle(b).backgroundColor") != "rgba(0, 0, 0, 0)"
    assert page.locator("#track-title").inner_text().startswith("Face #")
    shot(page, "charts")
    page.select_option("#range", "1440")  # a day: 1-minute buckets
    page.wait_for_function("() => document.getElementById('summary').innerText.includes('24 h')", timeout=15000)
    page.goto(stack["url"] + "/charts?camera=nosuchcamera")
    page.wait_for_function(
        "() => document.getElementById('notice').innerText.includes('no camera called')", timeout=15000
    )


def test_a_camera_that_ended_can_still_be_charted(page, stack):
    env = fervi_env(stack["redis"])
    video = write_video(stack["tmp"] / "lobby.mp4", frames=20, fps=10)
    ingest = subprocess.run(
        [sys.executable, "-m", "fervi", "ingest", str(video), "--camera", "lobby", "--fps", "10"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert ingest.returncode == 0, ingest.stderr[-2000:]
    page.goto(stack["url"] + "/charts?camera=lobby&minutes=5")
    page.wait_for_function(
        "() => Number(document.getElementById('summary').dataset.faceSeconds || 0) > 1", timeout=30000
    )
    # off the live wall after 15 s without frames, still on the charts' list, marked as ended

    def shown_as_ended() -> bool:
        page.reload()
        return "(ended)" in page.locator("#camera option[value=lobby]").inner_text()

    wait_for(shown_as_ended, 60, "lobby shown as ended on the charts' list", interval_s=2)
    page.wait_for_function(
        "() => Number(document.getElementById('summary').dataset.faceSeconds || 0) > 1", timeout=30000
    )


def test_image_mode_labels_every_face_and_refuses_bad_uploads(page, stack, tmp_path):
    group = tmp_path / "group.png"
    canvas = np.full((480, 900, 3), 60, np.uint8)
    for k, path in enumerate(face_photo_paths()):
        photo = cv2.imread(str(path))
        canvas[40:440, 20 + k * 440 : 420 + k * 440] = cv2.resize(photo[0:400, 40:440], (400, 400))
    cv2.imwrite(str(group), canvas)
    page.goto(stack["url"] + "/image")
    page.set_input_files("#file", str(group))
    page.click("button[type=submit]")
    page.wait_for_function("() => document.getElementById('tile').dataset.done === '1'", timeout=30000)
    assert len(page.locator("#tile").get_attribute("data-labels").split(",")) == 2
    shot(page, "image")
    assert "latency 0 ms" not in page.locator("#tile .meta").inner_text()  # the upload's own round trip
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    page.set_input_files("#file", str(notes))
    page.click("button[type=submit]")
    page.wait_for_function("() => document.getElementById('error').innerText.length > 0", timeout=10000)
    assert "not a readable image" in page.locator("#error").inner_text()
    # before: the previous result stayed under the error, as if the text file had faces
    assert page.locator("#tile").get_attribute("data-labels") == "" and page.locator("#tile .bars .face").count() == 0
    empty = tmp_path / "wall.png"
    cv2.imwrite(str(empty), np.full((240, 320, 3), 90, np.uint8))
    page.set_input_files("#file", str(empty))
    page.click("button[type=submit]")
    page.wait_for_function("() => document.getElementById('tile').dataset.done === '1'", timeout=30000)
    assert "No face found" in page.locator("#note").inner_text() and page.locator("#error").inner_text() == ""
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(jpeg_claiming_size(20000, 20000))
    page.set_input_files("#file", str(huge))
    page.click("button[type=submit]")
    page.wait_for_function("() => document.getElementById('error').innerText.includes('too large')", timeout=10000)


def test_video_upload_runs_as_jobs_with_progress_and_outputs(page, stack, tmp_path):
    video = write_video(tmp_path / "interview.mp4", frames=40, fps=10)
    page.goto(stack["url"] + "/videos")
    page.set_input_files("#file", str(video))
    page.click("button[type=submit]")
    row = page.locator("tr[data-video]").first
    row.wait_for(timeout=10000)
    page.wait_for_function(
        "() => document.querySelector('tr[data-video]')?.dataset.state === 'finished'", timeout=120000
    )
    links = [a.inner_text() for a in row.locator(".files a").all()]
    assert links == ["faces.csv", "summary.json", "annotated.mp4", "timeline.png"]
    assert row.get_attribute("data-tracks") == "2"  # a readable result on the page: faces and main emotions
    summary = row.locator(".summary").inner_text()
    assert "4 s of video" in summary and "2 face(s)" in summary and "%" in summary, summary
    assert "took" in row.locator(".when").inner_text()  # its date and how long it took
    page.wait_for_function("() => Number(document.getElementById('jobs').dataset.workers) >= 1", timeout=10000)
    # the queue in videos, one video being several jobs (listed in the tooltip)
    jobs = page.locator("#jobs")
    page.wait_for_function(  # the jobs line refreshes on its own beat: it may still count the video a moment
        "() => /^\\d+ RQ workers? \\(\\d+ busy\\) · 0 videos waiting or running · 0 failed$/"
        ".test(document.getElementById('jobs').innerText)",
        timeout=20000,
    )
    assert re.fullmatch(r"\d+ RQ workers? \(\d+ busy\) · 0 videos waiting or running · 0 failed", jobs.inner_text())
    assert jobs.get_attribute("title").startswith("jobs (segments, merges, annotation parts): ")
    video_id = row.get_attribute("data-video")
    import urllib.request

    csv_text = urllib.request.urlopen(f"{stack['url']}/videos/{video_id}/faces.csv").read().decode()
    assert csv_text.splitlines()[0].startswith("frame,time_s,track_id") and len(csv_text.splitlines()) == 1 + 2 * 40
    # the annotated video (H.264) plays in the page: the browser reads its metadata
    page.wait_for_function("() => document.querySelector('tr[data-video] video')?.readyState >= 1", timeout=20000)
    duration = page.evaluate("document.querySelector('tr[data-video] video').duration")
    assert abs(duration - 4.0) < 0.2, duration
    page.wait_for_timeout(500)
    shot(page, "videos")
    # the uploaded video plays as a camera too, picked on the Cameras page (no restart with other settings)
    page.goto(stack["url"] + "/cameras")
    page.wait_for_function("() => document.querySelectorAll('#uploaded option').length >= 2", timeout=15000)
    page.select_option("#uploaded", label="interview.mp4")
    assert page.input_value("#kind") == "file" and page.input_value("#source").endswith("/interview.mp4")
    assert _add_camera(page, "replay", "file", page.input_value("#source"), loop=True) == ""
    _card_state(page, "replay", "live")  # a file added on the page plays at its own pace, as a camera would
    page.once("dialog", lambda dialog: dialog.accept())
    page.click('.camera-card[data-camera="replay"] .remove')
    page.wait_for_function("() => !document.querySelector('.camera-card[data-camera=\"replay\"]')", timeout=30000)
    page.goto(stack["url"] + "/videos")
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video at all")
    page.set_input_files("#file", str(notes))
    page.click("button[type=submit]")
    page.wait_for_function(
        "() => document.getElementById('error').innerText.includes('not a readable video')", timeout=20000
    )


def test_oversized_and_malformed_socket_messages_are_refused(page, stack):
    page.goto(stack["url"] + "/webcam")
    page.wait_for_function("() => document.getElementById('status').textContent === 'live'", timeout=20000)
    replies = page.evaluate("""async () => {
        const socket = io({ transports: ["websocket"] });
        await new Promise((ok) => socket.on("connect", ok));
        const ask = (event, data) => new Promise((ok) => socket.emit(event, data, ok));
        const out = {};
        out.big = await ask("webcam", { jpeg: new Uint8Array(513 * 1024).buffer, w: 640, h: 480 });
        out.empty = await ask("webcam", {});
        out.path = await ask("watch", { camera: "../../etc/passwd" });
        out.braces = await ask("watch", { camera: "{x}" });
        const closed = new Promise((ok) => socket.on("disconnect", (reason) => ok(reason)));
        socket.emit("webcam", { jpeg: new Uint8Array(4 * 1024 * 1024).buffer });
        out.flood = await Promise.race([closed, new Promise((ok) => setTimeout(() => ok("still open"), 5000))]);
        return out;
    }""")
    assert replies["big"]["ok"] is False and "larger than" in replies["big"]["error"]
    assert replies["empty"]["ok"] is False
    assert replies["path"]["ok"] is False and "invalid camera name" in replies["path"]["error"]
    assert replies["braces"]["ok"] is False
    assert replies["flood"] != "still open"  # the 4 MB message closed that connection ...
    assert http_ok(stack["url"] + "/healthz")  # ... and only that one
    page.reload()
    page.wait_for_function("() => document.getElementById('status').textContent === 'live'", timeout=20000)


def test_without_a_camera_the_pages_say_so_and_offer_a_way_out(stack, playwright):
    """A user with no camera (Chromium without its fake device): before, Start vanished and nothing was said."""
    with chromium(playwright) as bare:
        page = bare.new_page()
        page.goto(stack["url"] + "/challenge?autostart=1")
        page.wait_for_function("() => document.getElementById('verdict').textContent.length > 0", timeout=20000)
        verdict = page.locator("#verdict").inner_text()
        assert ("No camera" in verdict or "denied" in verdict) and "?camera=demo" in verdict, verdict
        assert page.locator("#start").is_visible()
        page.goto(stack["url"] + "/webcam?autostart=1")
        page.wait_for_function("() => document.getElementById('note').textContent.length > 0", timeout=20000)
        note = page.locator("#note").inner_text()
        assert ("No camera" in note or "denied" in note) and "press Start again" in note, note
        assert page.locator("#start").is_visible()
        for width in (1280, 390):  # every page, with no camera, on a desktop and a phone: no script error
            context = bare.new_context(viewport={"width": width, "height": 844})
            errors = []
            page = context.new_page()
            page.on("pageerror", lambda err, errors=errors: errors.append(str(err)))
            for path in PAGES:
                page.goto(stack["url"] + path)
                page.wait_for_load_state("networkidle")
                assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0, (path, width)
            context.close()
            assert errors == [], errors


PAGES = ["/", "/cameras", "/webcam", "/challenge", "/charts?camera=demo", "/image", "/videos"]


@pytest.mark.parametrize("width", [1280, 390, 360])
def test_every_page_fits_the_screen_with_readable_labels(browser, stack, width):
    """No page is wider than the screen (the nav wraps, tiles shrink, tables scroll inside their box), charts
    keep their height, tile labels stay at least 12 px as shown, and every page has a favicon."""
    with camera_page(browser, stack["url"], width=width, height=844) as page:
        for path in PAGES:
            page.goto(stack["url"] + path)
            page.wait_for_load_state("networkidle")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} at {width} px is {overflow} px wider than the screen"
            nav = page.evaluate(
                "Array.from(document.querySelectorAll('nav a')).map(a => a.getBoundingClientRect().right)"
            )
            assert max(nav) <= width, f"{path}: a nav link is off screen at {width} px"
            icon = page.evaluate("document.querySelector('link[rel=icon]')?.href")
            assert icon and page.request.get(icon).ok
        page.goto(stack["url"] + "/charts?camera=demo")
        heights = page.evaluate("Array.from(document.querySelectorAll('.charts canvas')).map(c => c.clientHeight)")
        assert len(heights) == 3 and min(heights) >= 150, heights
        page.goto(stack["url"] + "/")
        page.wait_for_function(
            "() => document.querySelector('.tile[data-camera=\"demo\"]')?.dataset.labelPx", timeout=30000
        )
        label_px = float(page.locator('.tile[data-camera="demo"]').get_attribute("data-label-px"))
        assert label_px >= 12, label_px
        tile = page.evaluate("document.querySelector('.tile[data-camera=\"demo\"]').getBoundingClientRect().width")
        assert tile <= width
        if width == 390:
            time.sleep(1.0)  # let a preview frame arrive before the screenshot
            shot(page, "wall-phone")
