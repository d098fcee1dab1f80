"""Why a source did not open, told apart (not found, not a video, refused, timeout, unauthorized), against real
files and real servers on loopback; and what can never work is not started again and again."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer

import pytest
from fervi.ingest.diagnose import INGEST_EXIT_UNUSABLE, is_permanent, why_file_failed, why_stream_failed
from fervi.ingest.sources import SourceError, open_source

from .conftest import fervi_env


@contextmanager
def rtsp_server(answer: bytes | None) -> Iterator[int]:
    """A TCP server on loopback that reads one request and answers `answer` (None: never answers)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.recv(4096)
                if answer is not None:
                    connection.sendall(answer)
                stop.wait(3)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        server.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_files_that_are_missing_or_no_video_are_told_apart_and_only_no_video_is_final(tmp_path):
    notes = tmp_path / "notes.mp4"
    notes.write_text("shopping: milk, eggs\n")
    missing = why_file_failed(str(tmp_path / "gone.mp4"))
    assert missing.startswith("not found:") and not is_permanent(missing)  # it may appear: retried
    with pytest.raises(SourceError) as raised:
        open_source(str(notes))
    assert str(raised.value).startswith("not a video:") and is_permanent(str(raised.value))
    with pytest.raises(SourceError, match="^not found: "):
        open_source(str(tmp_path / "gone.mp4"))


def test_stream_servers_that_refuse_stay_silent_or_ask_for_a_password_are_told_apart():
    refused = why_stream_failed(f"rtsp://127.0.0.1:{free_port()}/live", timeout_s=1)
    assert refused.startswith("refused:") and not is_permanent(refused)
    with rtsp_server(None) as port:
        assert why_stream_failed(f"rtsp://127.0.0.1:{port}/live", timeout_s=0.5).startswith("timeout:")
    with rtsp_server(b"RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\n\r\n") as port:
        said = why_stream_failed(f"rtsp://admin:hunter2@127.0.0.1:{port}/live", timeout_s=2)
        assert said.startswith("unauthorized:") and "401" in said and "hunter2" not in said
    with rtsp_server(b"RTSP/1.0 404 Not Found\r\nCSeq: 1\r\n\r\n") as port:
        assert why_stream_failed(f"rtsp://127.0.0.1:{port}/nope", timeout_s=2).startswith("not found:")
    assert why_stream_failed("rtsp://no-such-host.invalid/live", timeout_s=2).startswith("not found: no host")


@pytest.mark.parametrize("server_class", [ThreadingHTTPServer, HTTPServer])
def test_http_streams_say_unauthorized_too(server_class):
    """HTTPServer serves one connection at a time, as small cameras do: the connection probe must be closed
    before the HTTP question is asked (a new user saw "not a video" for a 401 there)."""
    seen = []

    class Locked(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
            seen.append(self.headers.get("Authorization"))
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = server_class(("127.0.0.1", 0), Locked)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        said = why_stream_failed(f"http://127.0.0.1:{port}/video.mjpg", timeout_s=2)
        assert said.startswith("unauthorized:") and "(401)" in said and "put them in the URL" in said
        said = why_stream_failed(f"http://cam:hunter2@127.0.0.1:{port}/video.mjpg", timeout_s=2)
        assert said.startswith("unauthorized:") and "refused the user name and password" in said
        assert "hunter2" not in said and seen[-1] == "Basic Y2FtOmh1bnRlcjI="  # sent, not shown
    finally:
        server.shutdown()
        server.server_close()


def test_an_ingest_of_a_text_file_exits_as_unusable_and_says_why(tmp_path, redis_url):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video\n")
    done = subprocess.run(
        [sys.executable, "-m", "fervi", "ingest", str(notes), "--camera", "notes"],
        env=fervi_env(redis_url),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == INGEST_EXIT_UNUSABLE, done.stderr.decode()[-2000:]
    assert b"not a video" in done.stderr


def test_an_http_server_that_accepts_but_never_answers_is_a_timeout_not_a_wrong_video():
    """A new user saw "not a video: … answered" for a server that took the connection and said nothing."""
    with rtsp_server(None) as port:
        said = why_stream_failed(f"http://127.0.0.1:{port}/video.mjpg", timeout_s=1)
    assert said == f"timeout: no answer from 127.0.0.1:{port} within 1 s"
    assert not is_permanent(said)


@pytest.mark.parametrize("server_class", [ThreadingHTTPServer, HTTPServer])
def test_http_servers_that_do_not_allow_head_are_asked_with_get(server_class):
    """Python's plain http.server with only do_GET answers HEAD with 501: its 401 or 404 to GET must still be
    told (a new user saw "not a video … (it answered 501)"), and the GET's body is not read (a stream's never
    ends: this one never would)."""
    gets = []

    class GetOnly(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            gets.append(self.path)
            self.send_response(404 if self.path == "/nope" else 401)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            try:
                for _ in range(50):  # an endless stream, cut short once the asker hangs up
                    self.wfile.write(b"--frame\r\n" + b"x" * 4096 + b"\r\n")
                    self.wfile.flush()
            except OSError:
                pass

        def log_message(self, *args) -> None:
            pass

    server = server_class(("127.0.0.1", 0), GetOnly)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        said = why_stream_failed(f"http://127.0.0.1:{port}/video.mjpg", timeout_s=2)
        assert said.startswith("unauthorized:") and "(401)" in said, said
        said = why_stream_failed(f"http://cam:pw@127.0.0.1:{port}/video.mjpg", timeout_s=2)
        assert said.startswith("unauthorized:") and "refused the user name and password" in said, said
        said = why_stream_failed(f"http://127.0.0.1:{port}/nope", timeout_s=2)
        assert said.startswith("not found:") and "(404)" in said, said
        assert gets == ["/video.mjpg", "/video.mjpg", "/nope"]
    finally:
        server.shutdown()
        server.server_close()
