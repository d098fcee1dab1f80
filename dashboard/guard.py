"""What every request to the dashboard passes through: its route's body limit, counted while the body streams
in; a same-origin check on requests that change state (no cross-site uploads); JSON bodies parsed with a
reason for each refusal; and the security headers of every answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from flask import Flask, Response, abort, current_app, jsonify, make_response, request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import RequestEntityTooLarge

from fervi.vision.images import size_text

DEFAULT_BODY_BYTES = 64 * 1024  # a route that declares no limit takes a small body (its JSON, a form)
MULTIPART_SLACK = 64 * 1024  # a file's multipart headers and boundaries, on top of the file's own limit
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The pages load only their own scripts (no inline ones); they draw with style attributes, show frames
# decoded from blobs, and talk Socket.IO to their own origin ('self' covers ws:/wss: on it)
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' blob: data:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

log = logging.getLogger(__name__)

View = TypeVar("View", bound=Callable[..., Any])


def body_limit(most: int, reason: str) -> Callable[[View], View]:
    """Give a route a body limit of `most` bytes; a larger body is refused with 413 and `reason` as soon as
    the count passes it, whether its length was declared or it comes chunked."""

    def mark(view: View) -> View:
        setattr(view, "fervi_body_limit", (most, reason))  # noqa: B010 - a function attribute mypy would refuse
        return view

    return mark


def route_limit() -> tuple[int, str]:
    view = current_app.view_functions.get(request.endpoint or "")
    default = (DEFAULT_BODY_BYTES, f"this request takes a body of at most {size_text(DEFAULT_BODY_BYTES)}")
    return getattr(view, "fervi_body_limit", default)


def refuse(status: int, reason: str) -> NoReturn:
    abort(make_response(jsonify(error=reason), status))


def _limit_body() -> None:
    """Werkzeug reads a body through a stream that raises 413 past `request.max_content_length`, chunked
    bodies included (Gunicorn sets `wsgi.input_terminated`): each route gets its own limit here."""
    most, reason = route_limit()
    request.max_content_length = most
    if (request.content_length or 0) > most:
        refuse(413, reason)


def _too_large(_err: RequestEntityTooLarge) -> tuple[Response, int]:
    return jsonify(error=route_limit()[1]), 413


def _malformed_body(err: ParseException) -> tuple[Response, int]:
    """A body Gunicorn cannot read (a broken chunked encoding) surfaces while the route reads it."""
    return jsonify(error=f"the request body is malformed: {type(err).__name__}"), 400


def _normal_origin(origin: str) -> str:
    """`HTTP://Host:80` -> `http://host`: an origin as browsers send it (no default port)."""
    origin = origin.strip().lower().rstrip("/")
    for scheme, port in (("http://", ":80"), ("https://", ":443")):
        if origin.startswith(scheme) and origin.endswith(port):
            return origin.removesuffix(port)
    return origin


def request_origin() -> str | None:
    """The origin of the page that sent the request: Origin, else the Referer's; None when neither is sent
    (curl, the CLI), "null" for an opaque one (file://, a sandboxed frame)."""
    origin = request.headers.get("Origin")
    if origin is not None:
        return _normal_origin(origin)
    referer = request.headers.get("Referer")
    if not referer:
        return None
    parts = urlsplit(referer)
    return _normal_origin(f"{parts.scheme}://{parts.netloc}") if parts.scheme and parts.netloc else "null"


def own_origins() -> set[str]:
    """The dashboard's origin as this request reached it: its Host, or the X-Forwarded-Host/-Proto a proxy
    set (as Socket.IO's own check takes them). A cross-site page cannot set those headers: a browser sends
    them only after a CORS preflight, which the dashboard never allows."""
    schemes = {request.scheme, request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()}
    hosts = {request.host, request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()}
    return {_normal_origin(f"{s}://{h}") for s in schemes if s for h in hosts if h}


def _same_origin_only() -> None:
    if request.method not in STATE_CHANGING:
        return
    origin = request_origin()
    if origin is None:
        return  # not sent by a browser page: the token (where set) is what guards it
    if origin not in own_origins():
        log.warning(
            "event=cross_origin_refused origin=%s method=%s path=%s", origin[:100], request.method, request.path
        )
        refuse(
            403,
            f"refused a request from a page on another origin ({origin}): the dashboard changes state only "
            "for its own pages",
        )


def _secure_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def install_guard(app: Flask) -> None:
    """Body limits, the same-origin check and the security headers, on every route of `app`."""
    app.before_request(_limit_body)
    app.before_request(_same_origin_only)
    app.after_request(_secure_headers)
    app.register_error_handler(RequestEntityTooLarge, _too_large)
    app.register_error_handler(ParseException, _malformed_body)


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number JSON allows")


def _check_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:20]} is too large a number")
    return value


def _bad_text(value: Any) -> str:
    """Why the text in a parsed body cannot be used ('' when it can): a NUL or a lone surrogate would reach
    file names, Redis keys and logs."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "text in the body may not contain NUL characters"
            try:
                item.encode()
            except UnicodeEncodeError:
                return "text in the body must be valid Unicode (a lone surrogate escape)"
    return ""


def read_body() -> bytes:
    """The whole body, within the route's limit: a 413 past it. Werkzeug's `read()` stops at the limit
    without a word; the read after it is what raises."""
    body = request.stream.read()
    request.stream.read(1)
    return body


def json_object(hint: str = "") -> dict[str, Any]:
    """The request's body as a JSON object, within the route's body limit; any other body is refused with
    400 and the reason (not JSON, nested too deep, NaN or infinite numbers, NUL characters), never a 500.
    JSON only: a cross-site form cannot send it without a preflight. `hint`: the fields expected."""
    wanted = f"send a JSON object{': ' + hint if hint else ''}"
    if request.mimetype != "application/json":
        refuse(400, f"{wanted} (Content-Type: application/json)")
    raw = read_body()
    try:
        body = json.loads(raw, parse_constant=_no_constant, parse_float=_check_float)
    except RecursionError:
        refuse(400, "the JSON body is nested too deeply")
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, ours, ints of over 4300 digits
        refuse(400, f"{wanted} (this body: {str(err)[:200]})")
    if not isinstance(body, dict):
        refuse(400, wanted)
    why = _bad_text(body)
    if why:
        refuse(400, why)
    return body
