"""What one client address may hold open on the dashboard, and the token check of the Socket.IO handshake.

Two caps, each counted per client address: TCP connections (in the server's worker, `server.py`, for clients
that connect directly), and Engine.IO sessions (here, in front of Flask-SocketIO, on the address ProxyFix
gives, so behind a trusted proxy each client counts on its own). With a token, an Engine.IO handshake
without it gets a 401 before any session exists; a handshake over the cap gets a 429. Both answer at once.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from urllib.parse import parse_qs

from flask import Flask

log = logging.getLogger(__name__)

# Candidates for fervi.settings (FERVI_DASHBOARD_...), constants until then:
SESSIONS_PER_ADDRESS = 32  # Socket.IO sessions (a browser tab holds one) open at once from one address
CONNECTIONS_PER_ADDRESS = 64  # TCP connections open at once from one directly connected address
SOCKETIO_PATH = "/socket.io/"
RETRY_AFTER_S = 10


class AddressCount:
    """How many of something each client address holds open, with a cap: `acquire` refuses at the cap.
    Addresses holding none are dropped, so the table is as small as the set of addresses with something open."""

    def __init__(self, cap: int):
        self.cap = cap
        self.held: Counter[str] = Counter()
        self.lock = threading.Lock()  # the threading server of the tests; a no-op cost under gevent

    def acquire(self, address: str) -> bool:
        with self.lock:
            if self.held[address] >= self.cap:
                return False
            self.held[address] += 1
            return True

    def release(self, address: str) -> None:
        with self.lock:
            self.held[address] -= 1
            if self.held[address] <= 0:
                del self.held[address]

    def full(self, address: str) -> bool:
        with self.lock:
            return self.held.get(address, 0) >= self.cap


def client_address(environ: dict) -> str:
    return environ.get("REMOTE_ADDR") or "unknown"


class SessionGate:
    """WSGI middleware in front of Flask-SocketIO's: an Engine.IO handshake needs the token (when one is
    set), and an address may open at most `per_address` Engine.IO sessions at once. Sessions are
    counted through Engine.IO's own connect and disconnect events, so every way a session ends (close,
    ping timeout, a WebSocket dropped) gives its place back."""

    def __init__(self, app: Flask, socketio_app, authorized, token: str, per_address: int = SESSIONS_PER_ADDRESS):
        self.app, self.socketio_app = app, socketio_app
        self.authorized, self.token = authorized, token
        self.sessions = AddressCount(per_address)
        self.session_address: dict[str, str] = {}  # Engine.IO sid -> its client address

    def count_sessions(self, socketio) -> None:
        """Wrap the Engine.IO connect and disconnect handlers that python-socketio registered."""
        eio = socketio.server.eio
        on_connect, on_disconnect = eio.handlers["connect"], eio.handlers["disconnect"]

        def connected(sid, environ, *args):
            address = client_address(environ)
            self.sessions.acquire(address)  # over the cap only in a race of handshakes: counted all the same
            self.session_address[sid] = address
            return on_connect(sid, environ, *args)

        def disconnected(sid, *args):
            address = self.session_address.pop(sid, None)
            if address is not None:
                self.sessions.release(address)
            return on_disconnect(sid, *args)

        eio.on("connect", connected)
        eio.on("disconnect", disconnected)

    def __call__(self, environ, start_response):
        # only a handshake (no `sid` yet) opens a session; the unguessable sid it hands out then stands for
        # the token, as python-socketio's client sends its headers with the handshake only
        if not environ.get("PATH_INFO", "").startswith(SOCKETIO_PATH) or "sid" in parse_qs(
            environ.get("QUERY_STRING", "")
        ):
            return self.socketio_app(environ, start_response)
        if self.token:
            with self.app.request_context(environ):
                allowed = self.authorized()
            if not allowed:
                return refuse(start_response, "401 Unauthorized", "the dashboard token is required")
        address = client_address(environ)
        if self.sessions.full(address):
            log.info("event=socketio_refused address=%s reason=sessions_per_address", address)
            return refuse(
                start_response,
                "429 Too Many Requests",
                f"too many Socket.IO sessions open from {address}: at most {self.sessions.cap}",
            )
        return self.socketio_app(environ, start_response)


def refuse(start_response, status: str, reason: str) -> list[bytes]:
    body = (reason + "\n").encode()
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Retry-After", str(RETRY_AFTER_S)),
        ],
    )
    return [body]


def install_gate(app: Flask, socketio, authorized, token: str) -> SessionGate:
    """Put the gate in front of Flask-SocketIO's middleware (and behind ProxyFix, added after it)."""
    gate = SessionGate(app, app.wsgi_app, authorized, token)
    gate.count_sessions(socketio)
    app.wsgi_app = gate  # type: ignore[method-assign]  # Flask's documented way to add WSGI middleware
    return gate
