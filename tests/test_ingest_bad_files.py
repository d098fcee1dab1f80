"""A folder with broken images: each bad file is dead-lettered with its reason once, every good one is sent once,
and ingest ends (it looped on the broken file, resending the first frame, and never sent the next)."""

from __future__ import annotations

import struct
import zlib

import cv2
import redis

from fervi.bus import Bus, frames_key
from fervi.demo import render_frame

from .conftest import fervi_env, wait_for
from .images import corrupt_jpeg, jpeg_claiming_size
from .test_pipeline_e2e import results_by_index


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's header, without the bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


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
    letters = bus.dead_letters("album")
    assert len(letters) == 3
    reasons = " | ".join(letter.reason for letter in letters)
    assert "b.jpg" in reasons and "c.jpg" in reasons and "d.png" in reasons
    assert reasons.count("too large") == 2
    log = ingest.log_path.read_text()
    assert "Traceback" not in log and "skipped=3" in log
    assert bus.redis.xlen(frames_key("album")) == 0
