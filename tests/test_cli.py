"""The command line explains itself: a busy port or a second `fervi up` is one line naming what to change,
`fervi status` finds the Redis of a running `fervi up` and shows every process kind with human times,
`fervi config` says where each setting comes from, and third-party INFO lines stay below the chosen level."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from click.testing import CliRunner

from fervi.app.cli import main

from .conftest import wait_for


def _env(home, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FERVI_REDIS_URL"}
    return {**env, "FERVI_HOME": str(home), **extra}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_busy_dashboard_port_is_one_line_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args in (["up", "--no-demo", "--workers", "0", "--port", str(port)], ["dashboard", "--port", str(port)]):
            result = CliRunner().invoke(
                main, args, env=_env(tmp_path / "home", FERVI_REDIS_URL="redis://127.0.0.1:1/0")
            )
            assert result.exit_code == 1, result.output
            assert f"cannot serve the dashboard on 127.0.0.1:{port}" in result.output
            assert "--port or FERVI_DASHBOARD_PORT" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "home" / "stack.json").exists()  # nothing was started


def _fervi(args: list[str], cwd, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m fervi ARGS` as a user runs it in a shell, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "fervi", *args], env=env, capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


@contextmanager
def _fervi_up(cwd, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen, int]]:
    """`fervi up` with one worker and no demo, until it has written its stack.json; stopped as a user stops it
    (SIGTERM) on the way out. Yields the process and its dashboard port."""
    port = _free_port()
    up = subprocess.Popen(
        [sys.executable, "-m", "fervi", "up", "--no-demo", "--workers", "1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=cwd,
    )
    try:
        wait_for(lambda: (Path(env["FERVI_HOME"]) / "stack.json").exists(), 60, "fervi up's stack.json")
        yield up, port
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(60)


def _status_once_it_lists_every_kind(cwd, env: dict[str, str]) -> str | None:
    """`fervi status`'s output once it lists every process kind `fervi up` starts; None before."""
    run = _fervi(["status"], cwd, env)
    assert run.returncode == 0, run.stderr[-2000:]
    kinds = ("worker", "tracker", "dashboard", "rq-worker", "cameras")
    return run.stdout if all(f"  {kind} " in run.stdout for kind in kinds) else None


def test_status_finds_a_running_fervi_up_and_shows_every_kind_with_human_times(tmp_path):
    home = tmp_path / "home"
    env = _env(home, FERVI_LOG_LEVEL="WARNING", FERVI_METRICS_PORT="0")
    with _fervi_up(tmp_path, env) as (up, port):
        stack = json.loads((home / "stack.json").read_text())
        assert stack["pid"] == up.pid and stack["dashboard"] == f"http://127.0.0.1:{port}/"
        out = wait_for(
            lambda: _status_once_it_lists_every_kind(tmp_path, env), 90, "every process kind in fervi status"
        )
        assert " ago" in out and "last_seen=" not in out  # '2 s ago', not epoch seconds
        # `fervi analyze` beside it uses its Redis: a second server on the same data folder once wrote its file too
        from fervi.demo import write_video

        video = write_video(tmp_path / "clip.mp4", frames=5, fps=5)
        analyze = _fervi(["analyze", str(video), "--no-wait", "--out", str(tmp_path / "out")], tmp_path, env, 120)
        assert analyze.returncode == 0, analyze.stderr[-2000:]
        assert "using the running `fervi up`" in analyze.stderr and "redis_started" not in analyze.stderr
        missing = _fervi(["analyze", "nope.mp4"], tmp_path, env)
        assert missing.returncode == 1 and "no such file: nope.mp4" in missing.stderr
        again = _fervi(["up", "--port", str(_free_port())], tmp_path, env)
        assert again.returncode == 1 and f"already runs with FERVI_HOME={home}" in again.stderr
        assert "Traceback" not in again.stderr
    assert not (home / "stack.json").exists()
    nothing = _fervi(["status"], tmp_path, env)
    assert nothing.returncode == 1 and "start `fervi up`" in nothing.stderr and "Usage:" not in nothing.stderr


def test_config_names_the_source_of_each_setting(tmp_path):
    result = CliRunner().invoke(main, ["config"], env={"FERVI_HOME": str(tmp_path), "FERVI_BLOCK_MS": ""})
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines()[1:]}
    assert rows["FERVI_HOME"].split()[2] == "env"
    assert rows["FERVI_BLOCK_MS"].split()[2] == "default"
    assert result.output.splitlines()[0].split()[:3] == ["SETTING", "VALUE", "FROM"]


def test_predict_at_warning_prints_no_info_line(tmp_path):
    from fervi.demo import face_photo_paths

    photo = str(face_photo_paths()[0])
    run = _fervi(["--log-level", "WARNING", "predict", photo], tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "face(s)" in run.stdout and "INFO" not in run.stderr, run.stderr
    loud = _fervi(["--log-level", "INFO", "predict", photo], tmp_path, timeout=120)
    assert "event=classifier_loaded" in loud.stderr  # INFO still shows what it should


def test_the_timeline_legend_leaves_the_time_axis_readable():
    import numpy as np
    from fervi.offline.outputs import timeline_figure

    from fervi.faces import Faces
    from fervi.tracking import FrameTracks

    for faces in (1, 2, 6):
        frames = []
        for i in range(50):
            smoothed = np.eye(7, dtype=np.float32)[[(i // 10 + k) % 7 for k in range(faces)]]
            tracked = Faces(np.zeros((faces, 4), np.float32), np.ones(faces, np.float32), smoothed)
            frames.append(FrameTracks(i, i / 10, 0.1, tracked.tracked(list(range(1, faces + 1)), smoothed), [], []))
        fig = timeline_figure(frames, 5.0)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        legend, xlabel = ax.get_legend().get_window_extent(renderer), ax.xaxis.label.get_window_extent(renderer)
        title = ax.title.get_window_extent(renderer)
        assert not legend.overlaps(xlabel) and not legend.overlaps(title)
        assert not legend.overlaps(ax.get_window_extent(renderer))
        for box in (legend, xlabel, title):
            assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1)


def test_config_shows_what_a_running_fervi_up_gave_its_processes(tmp_path):
    """`fervi up --port 8890` on the embedded Redis: `fervi config` in the same folder says so, instead of the
    defaults (a new user saw "(embedded)" and port 8000 while the stack ran elsewhere)."""
    import json
    import os

    (tmp_path / "stack.json").write_text(
        json.dumps({"pid": os.getpid(), "redis": "redis://:pw@127.0.0.1:6399/0", "dashboard": "http://127.0.0.1:8890/"})
    )
    env = {"FERVI_HOME": str(tmp_path), "FERVI_REDIS_URL": "", "FERVI_DASHBOARD_PORT": "", "FERVI_DASHBOARD_HOST": ""}
    result = CliRunner().invoke(main, ["config"], env=env)
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines()[1:] if line.startswith("FERVI_")}
    assert rows["FERVI_REDIS_URL"][1:4] == ["redis://:***@127.0.0.1:6399/0", "fervi", "up"]
    assert rows["FERVI_DASHBOARD_PORT"][1:4] == ["8890", "fervi", "up"]
    assert rows["FERVI_BLOCK_MS"][2] == "default"
    assert "`fervi up` runs with FERVI_HOME" in result.output
    as_json = json.loads(CliRunner().invoke(main, ["config", "--json"], env=env).output)
    assert as_json["FERVI_DASHBOARD_PORT"] == "8890"


def test_cameras_add_refuses_a_file_the_supervisor_could_never_open(tmp_path):
    """The Cameras page's rule on the command line too: a missing file, or a FIFO, is refused at once (exit 2,
    one line), not registered to fail again and again in the supervisor."""
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    for source, reason in ((tmp_path / "missing.mp4", "no such file or folder"), (fifo, "not a regular file")):
        result = CliRunner().invoke(main, ["cameras", "add", "door", str(source)], env=_env(tmp_path))
        assert result.exit_code == 2 and reason in result.output and "Traceback" not in result.output, result.output
        assert "warning" not in result.output  # refused: no word that it would be shown as an error later


def _fervi_on_a_terminal(args: list[str], cwd, env: dict[str, str], timeout: float = 180) -> tuple[int, str, str]:
    """`python -m fervi ARGS` with stderr on a terminal (a pty's slave, as a user's shell has it; a fresh pty
    reports 0 columns and 0 rows, as some do), stdout piped: exit code, stdout and what the terminal showed."""
    import select
    import time

    master, slave = os.openpty()
    run = subprocess.Popen(
        [sys.executable, "-m", "fervi", *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    shown, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:  # read as it comes: a full pty would block the command
            if select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer of the slave has closed it
                    break
                if not chunk:
                    break
                shown += chunk
            elif run.poll() is not None:
                break
        out = run.stdout.read().decode() if run.stdout else ""
        return run.wait(10), out, shown.decode(errors="replace")
    finally:
        run.kill()
        os.close(master)


def test_analyze_on_a_terminal_shows_a_bar_of_frames_and_no_info_line(tmp_path):
    """A new user saw no bar at all in a terminal (a pty reporting no size hid tqdm's; the callback was told
    0/0 once the video was done), and INFO lines (video_submitted, redis_started twice) in the output."""
    from fervi.demo import write_video

    video = write_video(tmp_path / "clip.mp4", frames=23, fps=10)
    env = _env(tmp_path / "home")
    env.pop("FERVI_LOG_LEVEL", None)  # the default: what a user who sets nothing sees
    code, out, shown = _fervi_on_a_terminal(
        ["analyze", str(video), "--workers", "1", "--segments", "2", "--out", str(tmp_path / "out")], tmp_path, env
    )
    assert code == 0, shown[-3000:]
    assert "clip.mp4: " in out and "face rows" in out
    assert "analyse: 100%" in shown and "23/23 [" in shown and "frame/s" in shown, shown[-3000:]
    assert "annotate: 100%" in shown, shown[-3000:]
    assert "level=INFO" not in shown and "redis_started" not in shown and "video_submitted" not in shown, shown


def test_evaluate_data_shows_its_reading_and_classifying_on_a_terminal_without_tensorflow_noise(tmp_path, fer_csv):
    """A new user: `fervi evaluate --data fer2013.csv.gz` ran 30 s with no bar (reading the CSV is most of
    it) and printed TensorFlow's C++ start-up lines ("failed call to cuInit") on a machine with no GPU."""
    env = _env(tmp_path / "home")
    env.pop("FERVI_LOG_LEVEL", None)
    args = ["evaluate", "--data", str(fer_csv), "--limit", "200", "--confusion-png", str(tmp_path / "c.png")]
    code, out, shown = _fervi_on_a_terminal(args, tmp_path, env)
    assert code == 0, shown[-3000:]
    assert "200 faces (Usage=PublicTest, first 200)" in out and "(457,863 params)" in out
    assert f"read {fer_csv.name}: " in shown and "row/s]" in shown and "classify: 100%" in shown, shown
    assert not re.search(r"^[IWE]0000 |absl::InitializeLog|cuInit|oneDNN", shown, re.M), shown[-2000:]


def test_evaluate_images_shows_a_bar_of_images_on_a_terminal_and_says_what_it_skipped_in_plain_words(tmp_path):
    """468 CK+ images took 5 s with no bar, INFO lines (classifier_loaded) and the skipped contempt folder as a
    log line; off a terminal (CI logs) no bar, and --verbose still shows the INFO lines."""
    import shutil

    from fervi.demo import face_photo_paths

    photos = tmp_path / "photos"
    for folder in ("happy", "contempt"):
        (photos / folder).mkdir(parents=True)
    for i in range(5):
        photo = face_photo_paths()[i % 2]
        shutil.copy(photo, photos / "happy" / f"{i}{photo.suffix}")
    shutil.copy(face_photo_paths()[0], photos / "contempt" / f"0{face_photo_paths()[0].suffix}")
    env = _env(tmp_path / "home")
    env.pop("FERVI_LOG_LEVEL", None)
    args = ["evaluate", "--images", str(photos), "--confusion-png", str(tmp_path / "confusion.png")]
    code, out, shown = _fervi_on_a_terminal(args, tmp_path, env)
    assert code == 0, shown[-3000:]
    assert "5 images" in out
    assert "detect and classify: 100%" in shown and "5/5 [" in shown, shown
    assert f"skipped {photos / 'contempt'}: contempt is not one of the seven" in shown
    assert "level=INFO" not in shown and "folder_skipped" not in shown, shown
    piped = _fervi([*args, "--verbose"], tmp_path, env, 180)
    assert piped.returncode == 0, piped.stderr[-2000:]
    assert "detect and classify" not in piped.stderr and "event=classifier_loaded" in piped.stderr
