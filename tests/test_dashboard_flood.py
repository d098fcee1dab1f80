"""A dashboard reachable by others cannot be stalled by clients that hold connections (issue 27, defect 2).

A real `fervi dashboard` on 0.0.0.0 with a token, on the session's real redis-server; the flooding clients
connect from other loopback addresses (127.0.0.2 and up: Linux routes all of 127/8 to loopback), the normal
viewer from 127.0.0.1. The strict timings (a wall loaded in under 2 s under 1,000 connections) are in
`bench/dashboard_flood.py`; the bounds here are generous, for a loaded 2-core machine.
"""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.error
import urllib.request

import pytest
import redis
from fervi.dashboard.connections import CONNECTIONS_PER_ADDRESS, SESSIONS_PER_ADDRESS
from fervi.dashboard.server import HEADER_TIMEOUT_S

from fervi.embedded import free_port

from .conftest import Processes, fervi_env, http_ok, wait_for

TOKEN = "flood-test-token"
HANDSHAKE = "/socket.io/?EIO=4&transport=polling"


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, redis_server):
    redis.Redis.from_url(redis_server.url).flushall()
    port = free_port()
    env = fervi_env(redis_server.url, FERVI_DASHBOARD_TOKEN=TOKEN, FERVI_BLOCK_MS=200)
    procs = Processes(tmp_path_factory.mktemp("flood"))
    process = procs.start(["dashboard", "--host", "0.0.0.0", "--port", str(port)], env, "dashboard")
    wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "the dashboard")
    yield {"port": port, "url": f"http://127.0.0.1:{port}", "log": process.log_path}
    procs.stop_all()


def get(dashboard, path: str, timeout_s: float = 10, **headers: str) -> tuple[int, bytes]:
    """Status and body of a GET from 127.0.0.1 (the normal viewer)."""
    request = urllib.request.Request(dashboard["url"] + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def raw(dashboard, address: str, request: bytes = b"", timeout_s: float = 10) -> socket.socket:
    """A TCP connection from `address` that has sent `request` (maybe nothing, maybe half a request)."""
    sock = socket.create_connection(("127.0.0.1", dashboard["port"]), timeout=timeout_s, source_address=(address, 0))
    if request:
        sock.sendall(request)
    return sock


def http_request(path: str, token: str = "", extra: str = "") -> bytes:
    cookie = f"Cookie: fervi_token={token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: dashboard\r\n{cookie}{extra}\r\n".encode()


def status(sock: socket.socket) -> int:
    """The status code of the response that arrives next on `sock` (0: closed without one)."""
    data = sock.recv(4096)
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


def viewer_is_served(dashboard) -> None:
    """The normal viewer gets /healthz, the wall and a Socket.IO session (generous bounds, a loaded machine)."""
    assert get(dashboard, "/healthz")[0] == 200
    assert get(dashboard, "/", Cookie=f"fervi_token={TOKEN}")[0] == 200
    code, body = get(dashboard, HANDSHAKE, Cookie=f"fervi_token={TOKEN}")
    assert code == 200 and body.startswith(b'0{"sid"')


def test_an_unauthorized_socketio_handshake_is_refused_and_opens_no_session(dashboard):
    """Before: the Engine.IO handshake needed no token; only Socket.IO's connect, after the session existed."""
    address = "127.0.0.2"
    for _ in range(SESSIONS_PER_ADDRESS + 8):  # were these sessions, this address would be over its cap
        with contextlib.closing(raw(dashboard, address, http_request(HANDSHAKE))) as sock:
            assert status(sock) == 401
        with contextlib.closing(raw(dashboard, address, http_request(HANDSHAKE, "wrong"))) as sock:
            assert status(sock) == 401
    websocket = http_request(
        "/socket.io/?EIO=4&transport=websocket",
        extra="Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n",
    )
    with contextlib.closing(raw(dashboard, address, websocket)) as sock:
        assert status(sock) == 401
    with contextlib.closing(raw(dashboard, address, http_request(HANDSHAKE, TOKEN))) as sock:
        assert status(sock) == 200  # the address holds no session: the token's holder is let in


def test_an_address_over_its_caps_is_refused_at_once_while_another_is_served(dashboard):
    sessions_address, connections_address = "127.0.0.3", "127.0.0.4"
    for _ in range(SESSIONS_PER_ADDRESS):
        with contextlib.closing(raw(dashboard, sessions_address, http_request(HANDSHAKE, TOKEN))) as sock:
            assert status(sock) == 200  # a session, open until its ping timeout
    with contextlib.closing(raw(dashboard, sessions_address, http_request(HANDSHAKE, TOKEN))) as sock:
        assert status(sock) == 429
    held = [raw(dashboard, connections_address) for _ in range(CONNECTIONS_PER_ADDRESS)]
    try:
        time.sleep(0.5)  # the server has taken them all (well within the header timeout)
        with contextlib.closing(raw(dashboard, connections_address)) as sock:
            assert status(sock) == 503  # answered without a request, not left waiting
        viewer_is_served(dashboard)
    finally:
        for sock in held:
            sock.close()


def test_a_slow_or_idle_client_is_cut_after_the_header_timeout(dashboard):
    """Before: a client sending one header line every few seconds held a server thread for as long as it liked."""
    started = time.monotonic()
    with contextlib.closing(raw(dashboard, "127.0.0.5", b"GET / HTTP/1.1\r\nHost: dashboard\r\n")) as sock:
        sock.settimeout(1.0)
        cut = False
        while time.monotonic() - started < HEADER_TIMEOUT_S + 25:
            try:
                if sock.recv(4096) == b"":
                    cut = True
                    break
            except TimeoutError:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-Slow: 1\r\n")  # one more header line, never the end of the headers
            except OSError:
                cut = True
                break
    assert cut and time.monotonic() - started >= HEADER_TIMEOUT_S - 1
    with contextlib.closing(raw(dashboard, "127.0.0.5", http_request("/healthz"))) as sock:
        assert status(sock) == 200
        sock.settimeout(HEADER_TIMEOUT_S + 25)  # kept alive, idle: closed by the server
        while sock.recv(4096):  # the rest of the answer (its body may come apart), then the close
            pass


def test_many_idle_websockets_from_one_address_do_not_stop_healthz(dashboard):
    """Before: 64 WebSockets that only answer pings held all 64 server threads; every new page timed out."""
    address, opened, refused = "127.0.0.6", [], 0
    upgrade = http_request(
        "/socket.io/?EIO=4&transport=websocket",
        TOKEN,
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n",
    )
    try:
        for _ in range(100):
            sock = raw(dashboard, address, upgrade)
            code = status(sock)
            if code == 101:
                opened.append(sock)
            else:
                refused += code == 429
                sock.close()
        assert len(opened) == SESSIONS_PER_ADDRESS and refused == 100 - SESSIONS_PER_ADDRESS
        viewer_is_served(dashboard)
    finally:
        for sock in opened:
            sock.close()
