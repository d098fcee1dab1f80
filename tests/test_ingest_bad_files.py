"""A folder with broken images: each bad file is dead-lettered with its reason once, every good one is sent once,
and ingest ends (it looped on the broken file, resending the first frame, and never sent the next)."""

from __future__ import annotations

import cv2
import redis

from fervi.bus import Bus, frames_key
from fervi.demo import render_frame

from .conftest import fervi_env, wait_for
from .images import corrupt_jpeg, jpeg_claiming_size, png_claiming_size
from .test_pipeline_e2e import dead_letters, results_by_index


def test_a_folder_with_broken_images_sends_each_good_one_once(tmp_path, redis_url, processes):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), render_frame(0, 10))
    (folder / "b.jpg").write_bytes(corrupt_jpeg())
    (folder / "c.jpg").write_bytes(jpeg_claiming_size(30000, 30000))
    (folder / "d.png").write_bytes(png_claiming_size(60000, 60000))
    cv2.imwrite(str(folder / "e.jpg"), render_frame(5, 10))
    env = fervi_env(redis_url, FERVI_BLOCK_MS="200")
    processes.start(["worker"], env, "worker")
    ingest = processes.start(["ingest", str(folder), "--camera", "album"], env, "ingest")
    assert ingest.wait(60) == 0, ingest.log_path.read_text()[-3000:]
    bus = Bus(redis.Redis.from_url(redis_url))
    done = wait_for(lambda: (r := results_by_index(bus, "album")) and len(r) == 2 and r, 60, "two results")
    assert sorted(done) == [0, 4]  # a.jpg and e.jpg, by their place in the folder
    assert all(len(v) == 1 for v in done.values())
    letters = dead_letters(bus, "album")
    assert len(letters) == 3
    reasons = " | ".join(letter.reason for letter in letters)
    assert "b.jpg" in reasons and "c.jpg" in reasons and "d.png" in reasons
    assert reasons.count("too large") == 2
    log = ingest.log_path.read_text()
    assert "Traceback" not in log and "skipped=3" in log
    assert bus.redis.xlen(frames_key("album")) == 0


def test_one_unreadable_image_is_a_failed_source_not_a_success(tmp_path, redis_url, processes):
    """Before: `fervi ingest broken.jpg` dead-lettered the file and exited 0, with nothing sent. One file named
    alone that does not decode can never work: exit INGEST_EXIT_UNUSABLE with the reason (a folder goes on
    past such files: the test above)."""
    from fervi.ingest.diagnose import INGEST_EXIT_UNUSABLE

    env = fervi_env(redis_url)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(corrupt_jpeg())
    ingest = processes.start(["ingest", str(broken), "--camera", "one"], env, "ingest-broken")
    assert ingest.wait(60) == INGEST_EXIT_UNUSABLE
    log = ingest.log_path.read_text()
    assert "event=source_failed" in log and "not a usable image" in log and "broken.jpg" in log
    assert "Traceback" not in log
    state = Bus(redis.Redis.from_url(redis_url)).source_states(["one"])["one"]
    assert state["state"] == "error" and "not retried" in state["reason"]


def test_analyze_refuses_huge_frames_before_decoding_any(tmp_path):
    """`fervi analyze` accepted a 12000x12000 PNG and decoded it (1.1 GB)."""
    import subprocess
    import sys

    import numpy as np
    import pytest
    from fervi.offline.video_io import VideoError, probe

    claimed = tmp_path / "claims.png"
    claimed.write_bytes(png_claiming_size(12000, 12000))
    with pytest.raises(VideoError, match="too large"):
        probe(claimed, 4096 * 4096)
    real = tmp_path / "real.png"  # a real 6000x6000 image: 36 M pixels, small on disk
    cv2.imwrite(str(real), np.zeros((6000, 6000), np.uint8))
    # the peak memory of this process image (VmHWM starts afresh at exec; ru_maxrss would carry pytest's over)
    code = (
        f"from fervi.offline.video_io import probe, VideoError\n"
        f"try: probe({str(real)!r}, 4096 * 4096)\nexcept VideoError as e: print('refused', e)\n"
        "peak = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
        "print('maxrss_mb', int(peak.split()[1]) // 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "refused" in out and "6000x6000" in out
    assert int(out.split("maxrss_mb")[1]) < 150  # refused: 46 MB here; decoding it peaked at 293 MB


def test_probe_counts_a_still_image_as_one_frame(tmp_path):
    """Before: OpenCV's frame count of a PNG (-2^63) went into the segment plan of `fervi analyze`."""
    import numpy as np
    from fervi.offline.video_io import probe

    still = tmp_path / "still.png"
    cv2.imwrite(str(still), np.zeros((100, 120, 3), np.uint8))
    info = probe(still, 4096 * 4096)
    assert (info.frames, info.width, info.height) == (1, 120, 100)


def test_probe_and_the_segment_jobs_read_one_frame_rate():
    """A container's absurd or missing frame rate becomes 25 fps for the plan (probe) and for the keyframes'
    video time in each segment job alike (before, the jobs read it raw and lost the detector's clock)."""
    from fervi.offline.video_io import video_fps

    class Capture:
        def __init__(self, fps):
            self.fps = fps

        def get(self, prop):
            assert prop == cv2.CAP_PROP_FPS
            return self.fps

    assert [video_fps(Capture(f)) for f in (30.0, 12.5, 0.0, 90000.0, -1.0)] == [30.0, 12.5, 25.0, 25.0, 25.0]


def test_ingest_refuses_a_huge_image_named_like_a_video(tmp_path, redis_url, processes):
    """Before: a 746 KB PNG of 16000x16000 named .mp4 went to OpenCV (823 MB) and ingest ended with rc 0,
    nothing sent and no error."""
    import numpy as np

    env = fervi_env(redis_url)
    real = tmp_path / "frames.mp4"  # a real 6000x6000 image (36 M pixels), small on disk, named like a video
    ok, png = cv2.imencode(".png", np.zeros((6000, 6000), np.uint8))
    real.write_bytes(png.tobytes())
    claims = tmp_path / "claims.mp4"
    claims.write_bytes(png_claiming_size(16000, 16000))
    for video, reason in ((real, "6000x6000 pixels are over the limit"), (claims, "too large")):
        ingest = processes.start(["ingest", str(video), "--camera", "bomb"], env, f"ingest-{video.stem}")
        assert ingest.wait(60) != 0
        log = ingest.log_path.read_text()
        assert reason in log and "Traceback" not in log, log[-2000:]
    code = (
        "from fervi.ingest.sources import open_source, SourceError\n"
        f"try: open_source({str(real)!r})\nexcept SourceError as e: print('refused', e)\n"
        "peak = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
        "print('maxrss_mb', int(peak.split()[1]) // 1024)"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "refused" in out and int(out.split("maxrss_mb")[1]) < 150
