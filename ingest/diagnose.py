"""Why a source did not open, in words a user can act on. OpenCV only says that it did not: this asks the
file system or the network what went wrong, and tells the kinds apart:

- not found: no such file; a stream server that answers 404; a host name that does not resolve;
- not a video: a file that exists but no video or image reader can decode (a text file, a playlist);
- not a usable image: an image file given alone that does not decode, or is over the size limits;
- refused: a stream server that refuses the connection (nothing listens on that port);
- timeout: a stream server that does not answer within TIMEOUT_S;
- unauthorized: a stream server that asks for a user name and password (401/403);
- unreadable: a file this process may not read.

`PERMANENT` kinds can never work as the source is given (a file that is not a video): the ingest says so
and exits with `INGEST_EXIT_UNUSABLE`, and the camera supervisor does not start it again. Everything else is
retried with backoff: a missing file may appear (a recording that starts later, a mount not ready yet), a
camera may come back, or its password be fixed on its side.
"""

from __future__ import annotations

import base64
import http.client
import os
import socket
from pathlib import Path
from urllib.parse import unquote, urlsplit

INGEST_EXIT_UNUSABLE = 3  # `fervi ingest`'s exit code for a source that can never work as given
NOT_RETRIED = "not retried: change the source, or remove the camera and add it again"
TIMEOUT_S = 5.0
# a missing or unreadable file may appear or be fixed: those are retried
PERMANENT = ("not a video", "not a usable image")
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "http": 80, "https": 443}


def why_file_failed(path: str) -> str:
    """`<kind>: <what>` for a file OpenCV could not open."""
    file = Path(path)
    if not file.exists():
        return f"not found: {path}: no such file or folder"
    if not os.access(file, os.R_OK):
        return f"unreadable: {path}: this process may not read it (file permissions)"
    return f"not a video: {path} could not be decoded as a video or an image (a text file, a playlist?)"


def why_stream_failed(url: str, timeout_s: float = TIMEOUT_S) -> str:
    """`<kind>: <what>` for a stream URL OpenCV could not open: the server asked directly."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    port = parts.port or DEFAULT_PORTS.get(scheme, 554)
    where = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as connection:
            status = _rtsp_status(connection, url, timeout_s) if scheme == "rtsp" else None
        if scheme in ("http", "https"):  # on a connection of its own, once the probe's is closed: a server
            status = _http_status(url, timeout_s)  # that serves one connection at a time answers it too
    except socket.gaierror:
        return f"not found: no host called {host!r} (DNS)"
    except ConnectionRefusedError:
        return f"refused: {where} refused the connection (is the camera on, and is that its port?)"
    except TimeoutError:
        return f"timeout: no answer from {where} within {timeout_s:.0f} s"
    except OSError as err:
        return f"unreachable: {where}: {err.strerror or err}"
    if status in (401, 403) and parts.username is not None:
        return f"unauthorized: {where} refused the user name and password in the URL ({status})"
    if status in (401, 403):
        return f"unauthorized: {where} asks for a user name and password ({status}): put them in the URL"
    if status == 404:
        return f"not found: {where} has no stream at {parts.path or '/'} (404)"
    said = f" (it answered {status})" if status else ""
    return f"not a video: {where} answered, but no video stream could be read from it{said}"


def _rtsp_status(connection: socket.socket, url: str, timeout_s: float) -> int | None:
    """The status of an RTSP DESCRIBE of `url` (the credentials left out), or None if the answer is no RTSP."""
    parts = urlsplit(url)
    bare = parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else "")).geturl()
    connection.settimeout(timeout_s)
    connection.sendall(f"DESCRIBE {bare} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n".encode())
    first = connection.recv(1024).split(b"\r\n", 1)[0].split()
    return int(first[1]) if len(first) >= 2 and first[0].startswith(b"RTSP/") and first[1].isdigit() else None


def _http_status(url: str, timeout_s: float) -> int | None:
    """The status the server answers to a HEAD of `url`, or to a GET (its body left unread) where HEAD is
    not allowed (405, 501: Python's plain http.server, small cameras), so that 401/403/404 are told apart
    there too; None if the answer is no HTTP. Credentials in the URL go as Basic authorization. Raises
    TimeoutError when the server does not answer within `timeout_s`: that is no answer, not "no video"."""
    status = _ask_http(url, "HEAD", timeout_s)
    return _ask_http(url, "GET", timeout_s) if status in (405, 501) else status


def _ask_http(url: str, method: str, timeout_s: float) -> int | None:
    """The status line's code of one `method` request on a connection of its own, closed once it is read."""
    parts = urlsplit(url)
    headers = {"Connection": "close"}
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    kind = http.client.HTTPSConnection if parts.scheme.lower() == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname or "", parts.port, timeout=timeout_s)
    target = parts.path or "/"
    target += f"?{parts.query}" if parts.query else ""
    try:
        connection.request(method, target, headers=headers)
        return int(connection.getresponse().status)  # the headers only: a stream's body never ends
    except TimeoutError:
        raise
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def is_permanent(reason: str) -> bool:
    """Whether a reason from this module means the source can never work as given."""
    return reason.startswith(PERMANENT)
