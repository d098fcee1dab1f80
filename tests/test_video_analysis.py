"""Offline video analysis as RQ jobs on a real Redis with real `fervi rq-worker` processes."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path

import cv2
import pytest
import redis
from click.testing import CliRunner, Result
from fervi.offline.jobs import QUEUE, submit
from fervi.offline.outputs import CSV_HEADER
from fervi.offline.runner import VideoState, follow

from fervi.app.cli import main
from fervi.bus import Bus
from fervi.demo import write_video

from .conftest import fervi_env, wait_for


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == CSV_HEADER
        return list(reader)


def _check_outputs(out: Path, frames: int, fps: float, every: int = 1) -> list[dict]:
    rows = _rows(out / "faces.csv")
    analysed = list(range(0, frames, every))
    per_frame = {}
    for row in rows:
        per_frame.setdefault(int(row["frame"]), []).append(row)
    assert sorted(per_frame) == analysed, "every analysed frame has rows, and only those"
    assert all(len(v) == 2 for v in per_frame.values()), "one row per face per analysed frame"
    assert len({(r["frame"], r["track_id"]) for r in rows}) == len(rows), "no duplicate rows"
    assert {r["track_id"] for r in rows} == {"1", "2"}, "each face keeps one id across segment borders"
    capture = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    assert abs(capture.get(cv2.CAP_PROP_FPS) - fps) < 0.01
    capture.release()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["face_rows"] == len(rows) and summary["tracks"] == 2
    assert abs(sum(summary["emotion_share"].values()) - 1) < 1e-3
    assert abs(summary["face_seconds"] - len(rows) * every / fps) < 1e-2
    assert sum(sum(t["seconds"].values()) for t in summary["per_track"]) == pytest.approx(
        summary["face_seconds"], abs=1e-2
    )
    assert (out / "timeline.png").stat().st_size > 0
    return rows


def _analyze_alone(tmp_path: Path, monkeypatch, *args: str | Path) -> Result:
    """`fervi analyze ARGS --out tmp_path/out` with no Redis configured (it starts its own) and its own FERVI_HOME."""
    monkeypatch.delenv("FERVI_REDIS_URL", raising=False)
    monkeypatch.setenv("FERVI_HOME", str(tmp_path / "home"))
    return CliRunner().invoke(main, ["analyze", *map(str, args), "--out", str(tmp_path / "out")])


def test_analyze_command_alone_with_embedded_redis(tmp_path, monkeypatch):
    frames, fps = 48, 12.0
    video = write_video(tmp_path / "talk.mp4", frames=frames, fps=fps)
    result = _analyze_alone(tmp_path, monkeypatch, video, "--segments", "3", "--workers", "2", "--detect-every", "3")
    assert result.exit_code == 0, result.output
    # where the outputs go is said first, before the progress bar (a user knows where to look while it runs)
    assert result.output.splitlines()[0].startswith(f"outputs: {(tmp_path / 'out').resolve()}/<video name>/")
    _check_outputs(tmp_path / "out" / "talk", frames, fps)
    assert json.loads((tmp_path / "out" / "talk" / "summary.json").read_text())["detect_every"] == 3


def test_every_kth_frame(tmp_path, monkeypatch):
    video = write_video(tmp_path / "skip.mp4", frames=30, fps=10)
    result = _analyze_alone(tmp_path, monkeypatch, video, "--every", "3", "--workers", "1")
    assert result.exit_code == 0, result.output
    _check_outputs(tmp_path / "out" / "skip", 30, 10.0, every=3)


def test_unreadable_files_fail_cleanly(tmp_path, monkeypatch):
    text = tmp_path / "notes.mp4"
    text.write_text("these are my meeting notes, not a video\n" * 50)
    corrupt = tmp_path / "corrupt.mp4"
    good = write_video(tmp_path / "good.mp4", frames=12, fps=6).read_bytes()
    corrupt.write_bytes(good[:48] + os.urandom(len(good) - 48))
    result = _analyze_alone(tmp_path, monkeypatch, text, corrupt, tmp_path / "good.mp4", "--workers", "1")
    assert result.exit_code == 1
    assert f"{text}: failed: " in result.output and "not a readable video" in result.output
    assert f"{corrupt}: failed: " in result.output
    _check_outputs(tmp_path / "out" / "good", 12, 6.0)  # the good file in the same run is complete


def _horse_of(pid: int) -> int | None:
    """The RQ work-horse: the child the worker forked for the job in hand."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


@pytest.mark.parametrize("kill", ["horse", "worker"])
def test_killed_rq_worker_mid_segment_still_gives_complete_output(tmp_path, redis_url, processes, kill):
    frames, fps = 120, 15.0
    video = write_video(tmp_path / "long.mp4", frames=frames, fps=fps)
    env = fervi_env(redis_url)
    victim = processes.start(["rq-worker"], env, "rq-victim")
    queue = Bus(redis.Redis.from_url(redis_url)).queue(QUEUE)
    submitted = submit(queue, str(video), tmp_path / "out", segments=2, every=1)
    # the victim is alone: wait until it is inside a segment, some frames done
    wait_for(
        lambda: any(j.get_status() == "started" and j.get_meta().get("done", 0) >= 10 for j in submitted.segments),
        120,
        "a segment in progress",
    )
    horse = wait_for(lambda: _horse_of(victim.pid), 10, "the work-horse")  # found before anything dies
    if kill == "worker":  # the whole worker vanishes, as with a lost host: its job is abandoned
        os.kill(victim.pid, signal.SIGKILL)
    os.kill(horse, signal.SIGKILL)
    processes.start(["rq-worker"], env, "rq-survivor")
    states = follow([VideoState(str(video), submitted)], queue, poll_s=0.5, timeout_s=300)
    assert not states[0].error, states[0].error
    _check_outputs(tmp_path / "out" / "long", frames, fps)
    assert any(
        job.get_status() == "finished" and job.retries_left == 1
        for job in submitted.segments
        if (job.refresh() or True)
    )


def test_jobs_report_progress_and_can_be_cancelled(tmp_path, redis_url):
    video = write_video(tmp_path / "c.mp4", frames=20, fps=10)
    queue = Bus(redis.Redis.from_url(redis_url)).queue(QUEUE)
    submitted = submit(queue, str(video), tmp_path / "out", segments=2, every=1)
    assert [j.get_meta()["total"] for j in submitted.segments] == [10, 10]
    from fervi.offline.runner import cancel

    cancel([VideoState(str(video), submitted)])
    assert all(job.get_status() == "canceled" for job in submitted.jobs)
    time.sleep(0.1)
    assert queue.count == 0


def test_timeline_draws_runs_not_rows():
    """A long video must not draw one bar per face row: consecutive rows of one label form one span."""
    import numpy as np
    from fervi.offline.outputs import label_spans

    from fervi.emotions import EMOTIONS
    from fervi.faces import Faces
    from fervi.tracking import FrameTracks

    step = 1 / 30
    labels = ["happy"] * 90 + ["sad"] * 30 + ["happy"] * 30
    frames = []
    for i, label in enumerate(labels):
        tracks = [(1, label)] + ([(2, "neutral")] if i in (0, 1, 2, 100, 101) else [])
        smoothed = np.eye(7, dtype=np.float32)[[EMOTIONS.index(lab) for _, lab in tracks]]
        faces = Faces(np.zeros((len(tracks), 4), np.float32), np.ones(len(tracks), np.float32), smoothed)
        frames.append(FrameTracks(i, i * step, step, faces.tracked([t for t, _ in tracks], smoothed), [], []))
    spans = label_spans(frames, step)
    assert [round(s, 3) for s, _ in spans[(1, "happy")]] == [0.0, 4.0]
    assert [round(length, 3) for _, length in spans[(1, "happy")]] == [3.0, 1.0]
    assert [(round(s, 3), round(length, 3)) for s, length in spans[(1, "sad")]] == [(3.0, 1.0)]
    assert len(spans[(2, "neutral")]) == 2  # a gap in a track's rows breaks its run


def test_segments_start_on_their_exact_frame(tmp_path):
    """A segment seeks to its first frame instead of decoding everything before it; the frame must be exact."""
    import numpy as np
    from fervi.offline.video_io import seek

    video = write_video(tmp_path / "seek.mp4", 90, 30.0, 320, 240, faces=2)
    capture = cv2.VideoCapture(str(video))
    frames = []
    while (read := capture.read())[0]:
        frames.append(read[1])
    for start in (1, 37, 89):
        capture = cv2.VideoCapture(str(video))
        assert seek(capture, str(video), start) == start
        assert np.array_equal(capture.read()[1], frames[start])


def test_annotated_parts_join_in_order_without_reencoding(tmp_path):
    """Parts drawn by different workers become one H.264 video: every frame once, in order, same fps."""
    import av
    import numpy as np
    from fervi.offline.outputs import join_parts, write_annotated_part

    source = tmp_path / "grey.mp4"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (160, 120))
    for i in range(50):
        writer.write(np.full((120, 160, 3), 4 * i + 30, np.uint8))  # brightness tells the frame
    writer.release()
    parts = [tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "c.mp4"]
    written = [
        write_annotated_part(str(source), [], start, stop, part, 25.0)
        for (start, stop), part in zip([(0, 17), (17, 33), (33, None)], parts, strict=True)
    ]
    assert written == [17, 16, 17]
    assert join_parts(parts, tmp_path / "annotated.mp4") == 50
    with av.open(str(tmp_path / "annotated.mp4")) as video:
        stream = video.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.average_rate == 25
        frames = list(video.decode(stream))
    assert len(frames) == 50
    assert [f.pts for f in frames] == sorted(f.pts for f in frames)
    brightness = [float(f.to_ndarray(format="gray").mean()) for f in frames]
    assert all(abs(b - (4 * i + 30)) < 4 for i, b in enumerate(brightness)), brightness


def test_an_annotation_part_loads_only_the_rows_it_draws(tmp_path):
    """Each part reads its own frames' rows, plus those of the analysed frame shown at its first frame."""
    import numpy as np
    from fervi.offline.outputs import faces_at, load_frames, save_frames

    from fervi.faces import Faces
    from fervi.tracking import FrameTracks

    analysed = list(range(0, 30, 3))  # --every 3
    happy = np.eye(7, dtype=np.float32)[[3]]
    frames = [
        FrameTracks(
            f,
            f / 10,
            0.3,
            Faces(np.array([[f, 0, 10, 10]], np.float32), np.ones(1, np.float32), happy).tracked([1], happy),
            [],
            [],
        )
        for f in analysed
    ]
    save_frames(frames, tmp_path / "tracked.npz")
    part = load_frames(tmp_path / "tracked.npz", 10.0, 10, 20)
    assert [f.seq for f in part] == [9, 12, 15, 18]
    assert [f.faces.labels for f in part] == [["happy"]] * 4 and part[0].ts == 0.9
    shown = faces_at(part)
    assert [int(shown(f).boxes[0, 0]) for f in range(10, 20)] == [9, 9, 12, 12, 12, 15, 15, 15, 18, 18]
    assert [f.seq for f in load_frames(tmp_path / "tracked.npz", 10.0, 27, None)] == [27]
