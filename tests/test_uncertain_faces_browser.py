"""What a user sees of a face that no emotion clearly leads, in a real headless Chromium: the live wall, the
browser camera page and image mode show it as its two leading emotions ("neutral / sad") in the uncertain
style (dashed, grey, italic, with what that means), never as a confident label; a clear face keeps its label
and percentage.

The faces are written by the test, so what is uncertain is decided here and not by the classifier: tracks
entries through the bus (as the tracker writes them; the dashboard's relay sends them on), and image mode's
answer through Playwright's `page.route`. Only Redis and the dashboard run.
Screenshots of the wall go to docs/screenshots/ (wall-uncertain.png, wall-uncertain-phone.png).
"""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest

from fervi.demo import portraits
from fervi.emotions import EMOTIONS
from fervi.faces import Faces

from .conftest import wait_for
from .helpers_browser import Camera, alone_browser, alone_page, dashboard_alone, shot  # noqa: F401 - the pytest fixtures browser and page

playwright_sync = pytest.importorskip("playwright.sync_api", reason="pip install playwright")

NOTE = "uncertain: no emotion clearly ahead"

# The astronaut (left) and Grace Hopper (right) side by side, with their faces' boxes as the detector finds them.
BOXES = [[95, 144, 131, 131], [394, 148, 166, 166]]


def probs(**given: float) -> list[float]:
    """Seven probabilities: those given, the rest shared evenly."""
    rest = (1 - sum(given.values())) / (len(EMOTIONS) - len(given))
    return [given.get(e, rest) for e in EMOTIONS]


HAPPY = probs(happy=0.82, neutral=0.08)  # leads by 0.74: clear
NEUTRAL_OR_SAD = probs(neutral=0.41, sad=0.36)  # leads by 0.05: uncertain


def group_photo() -> np.ndarray:
    canvas = np.full((480, 640, 3), (60, 70, 80), np.uint8)
    astronaut, grace = portraits(320)
    canvas[80:400, 20 : 20 + astronaut.shape[1]] = astronaut
    canvas[80:400, 620 - grace.shape[1] : 620] = grace
    return canvas


def tracked_faces() -> Faces:
    """The astronaut clearly happy (track 1); Grace Hopper between neutral and sad in her track's smoothed
    probabilities (track 2), although her newest frame alone said neutral."""
    faces = Faces.detected(BOXES, [0.92, 0.87]).classified([HAPPY, probs(neutral=0.55, sad=0.25)])
    return faces.tracked([1, 2], [HAPPY, NEUTRAL_OR_SAD])


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, redis_server):
    """The dashboard alone on the session's Redis: no worker or tracker to write faces of their own."""
    with dashboard_alone(tmp_path_factory.mktemp("uncertain"), redis_server.url) as running:
        yield running


def rgb(hex_color: str) -> tuple[int, int, int]:
    hex_color = hex_color.strip().lstrip("#")
    return tuple(int(hex_color[i : i + 2], 16) for i in (0, 2, 4))


def close(a, b, tolerance: int = 24) -> bool:
    return all(abs(int(x) - int(y)) <= tolerance for x, y in zip(a, b, strict=True))


def canvas_pixels(page, tile: str, points: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """The RGB of the tile's canvas at (x, y) points, in the frame's pixels."""
    return [
        tuple(p)
        for p in page.evaluate(
            """([tile, points]) => {
        const ctx = document.querySelector(tile + " canvas").getContext("2d");
        return points.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3)));
    }""",
            [tile, points],
        )
    ]


def assert_shown(page, tile: str, tracked: bool) -> None:
    """Face 1 reads as clearly happy, face 2 as uncertain between neutral and sad, in text and on the canvas
    (`tracked`: with their track ids, #1 and #2)."""
    face, mark = (("face #1", "face #2"), ("#1 ", "#2 ")) if tracked else (("face", "face"), ("", ""))
    titles = page.locator(f"{tile} .face-title")
    assert titles.count() == 2
    clear, unsure = titles.nth(0), titles.nth(1)
    assert clear.inner_text() == f"{face[0]}: happy 82%"
    assert clear.locator(".uncertain").count() == 0 and clear.locator(".face-label").inner_text() == "happy 82%"
    label = unsure.locator(".face-label")
    assert label.inner_text() == "neutral / sad"
    assert "uncertain" in label.get_attribute("class").split() and label.get_attribute("title") == NOTE
    assert unsure.inner_text() == f"{face[1]}: neutral / sad {NOTE}"
    style = label.evaluate("e => { const s = getComputedStyle(e); return [s.fontStyle, s.borderTopStyle, s.color]; }")
    assert style[:2] == ["italic", "dashed"], style  # the uncertain style applies (fervi.css)
    uncertain_ink = page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--uncertain')")
    uncertain_fill = page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--uncertain-bg')")
    assert style[2] == "rgb({}, {}, {})".format(*rgb(uncertain_ink))

    # the canvas: what it says (its accessible name and tooltip), then how: the label boxes' colours (the
    # clear face's in happy's yellow, the uncertain one's in the uncertain grey), dashes along the box
    said = f"{mark[0]}happy 82%; {mark[1]}neutral / sad ({NOTE})"
    # the tile redraws its canvas as frames come (a browser camera's own preview too): read it once it shows
    # these faces, and read its pixels again until one drawing of them is seen whole
    page.wait_for_function(
        "([tile, said]) => document.querySelector(tile + ' canvas').getAttribute('aria-label') === said",
        arg=[tile, said],
        timeout=30000,
    )
    (x1, y1, w1, h1), (x2, y2, w2, h2) = BOXES

    def stroked(x, y, w, color) -> float:  # share of the box's bottom edge drawn in its outline colour
        edge = canvas_pixels(page, tile, [(x + i, y) for i in range(10, w - 10)])
        return sum(close(p, color, 40) for p in edge) / len(edge)

    def drawn() -> bool:
        happy_fill, unsure_fill = canvas_pixels(page, tile, [(x1 + 2, y1 - 4), (x2 + 2, y2 - 4)])
        return (
            close(happy_fill, rgb("#f0c828"))
            and close(unsure_fill, rgb(uncertain_fill))
            and stroked(x1, y1 + h1, w1, rgb("#f0c828")) > 0.95  # solid
            and 0.3 < stroked(x2, y2 + h2, w2, rgb(uncertain_ink)) < 0.85  # dashed
        )

    wait_for(drawn, 15, "the clear face's solid yellow box and the uncertain face's dashed grey one")


def test_the_kernel_marks_the_faces_as_this_test_means():
    """The premise: the same faces as the kernel writes them (the relay's JSON)."""
    clear, unsure = tracked_faces().to_list()
    assert (clear["label"], clear["uncertain"]) == ("happy", False)
    assert (unsure["label"], unsure["runner_up"], unsure["uncertain"]) == ("neutral", "sad", True)


def test_the_live_wall_shows_an_uncertain_face_as_its_two_leading_emotions(page, dashboard):
    tile = '.tile[data-camera="lab"]'
    with Camera(dashboard["bus"], "lab", tracked_faces(), group_photo()):
        page.goto(dashboard["url"] + "/")
        page.wait_for_function(f"() => document.querySelectorAll('{tile} .face-title').length === 2", timeout=30000)
        page.wait_for_function(f"() => document.querySelector('{tile}').dataset.seq > 3", timeout=10000)
        assert_shown(page, tile, tracked=True)
        time.sleep(0.5)  # a preview frame under the boxes
        shot(page, "wall-uncertain")
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_function(f"() => document.querySelector('{tile}').getBoundingClientRect().width <= 390")
        time.sleep(0.5)  # redrawn at the phone's size
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        assert float(page.locator(tile).get_attribute("data-label-px")) >= 12
        assert_shown(page, tile, tracked=True)
        shot(page, "wall-uncertain-phone")


def test_the_browser_camera_page_shows_an_uncertain_face_as_its_two_leading_emotions(page, dashboard):
    page.goto(dashboard["url"] + "/webcam?autostart=1")
    page.wait_for_function("() => document.getElementById('tile').dataset.camera", timeout=30000)
    camera = page.locator("#tile").get_attribute("data-camera")  # the server's name for this browser's camera
    with Camera(dashboard["bus"], camera, tracked_faces(), group_photo()):
        page.wait_for_function("() => document.querySelectorAll('#tile .face-title').length === 2", timeout=30000)
        assert_shown(page, "#tile", tracked=True)


def test_image_mode_shows_an_uncertain_face_as_its_two_leading_emotions(page, dashboard, tmp_path):
    photo = tmp_path / "group.png"
    cv2.imwrite(str(photo), group_photo())
    faces = Faces.detected(BOXES, [0.92, 0.87]).classified([HAPPY, NEUTRAL_OR_SAD]).to_list()
    answers = [
        {"width": 640, "height": 480, "faces": faces, "emotions": list(EMOTIONS)},
        # as written before faces had `uncertain` and `runner_up`: every face reads as clear
        {
            "width": 640,
            "height": 480,
            "emotions": list(EMOTIONS),
            "faces": [{k: v for k, v in f.items() if k not in ("uncertain", "runner_up")} for f in faces],
        },
    ]
    page.route(
        "**/api/image*",
        lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(answers.pop(0))),
    )
    page.goto(dashboard["url"] + "/image")

    def upload() -> None:
        page.set_input_files("#file", str(photo))
        page.click("button[type=submit]")
        page.wait_for_function("() => document.getElementById('tile').dataset.done === '1'", timeout=30000)

    upload()
    assert_shown(page, "#tile", tracked=False)
    upload()
    titles = page.locator("#tile .face-title").all_inner_texts()
    assert titles == ["face: happy 82%", "face: neutral 41%"] and page.locator("#tile .uncertain").count() == 0
    assert page.locator("#tile canvas").get_attribute("aria-label") == "happy 82%; neutral 41%"
