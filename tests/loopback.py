"""A loopback (127.0.0.1) HTTP server for download tests: each path behaves like one real-world failure.

The server counts the requests per path, so a test can assert that an ok video is never fetched twice
and that a transient failure was retried.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Route:
    """How one path answers; `attempt` is 1 for the first request to the path, 2 for the second, ..."""

    def respond(self, handler: BaseHTTPRequestHandler, attempt: int) -> None:
        raise NotImplementedError


def send_headers(handler: BaseHTTPRequestHandler, status: int, content_type: str, length: int) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(length))
    handler.end_headers()


@dataclass
class Video(Route):
    """A video file; with `chunk_delay_s` the body trickles out in `chunk_bytes` pieces (a slow download)."""

    body: bytes
    chunk_bytes: int = 64 * 1024
    chunk_delay_s: float = 0.0

    def respond(self, handler: BaseHTTPRequestHandler, attempt: int) -> None:
        send_headers(handler, 200, "video/mp4", len(self.body))
        if handler.command == "HEAD":
            return
        for start in range(0, len(self.body), self.chunk_bytes):
            handler.wfile.write(self.body[start : start + self.chunk_bytes])
            handler.wfile.flush()
            if self.chunk_delay_s:
                time.sleep(self.chunk_delay_s)


@dataclass
class Status(Route):
    """An HTTP error status with a short text body (404, 410, 429, 503, ...)."""

    status: int

    def respond(self, handler: BaseHTTPRequestHandler, attempt: int) -> None:
        body = f"error {self.status}".encode()
        send_headers(handler, self.status, "text/plain", len(body))
        if handler.command != "HEAD":
            handler.wfile.write(body)


@dataclass
class FailFirst(Route):
    """`failures` requests answered by `failure`, every later one by `then` (e.g. a 429, then the video)."""

    failure: Route
    failures: int
    then: Route

    def respond(self, handler: BaseHTTPRequestHandler, attempt: int) -> None:
        route = self.failure if attempt <= self.failures else self.then
        route.respond(handler, attempt)


@dataclass
class DropMidBody(Route):
    """Promises the whole video in Content-Length, sends half of it and closes the connection."""

    body: bytes

    def respond(self, handler: BaseHTTPRequestHandler, attempt: int) -> None:
        send_headers(handler, 200, "video/mp4", len(self.body))
        if handler.command == "HEAD":
            return
        handler.wfile.write(self.body[: len(self.body) // 2])
        handler.wfile.flush()
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.connection.shutdown(2)


@dataclass
class Stall(Route):
    """Says nothing for `seconds` (longer than the client's socket timeout), then gives up."""

    seconds: float

    def respond(self, handler: BaseHTTPRequestHandler, attempt: int) -> None:
        time.sleep(self.seconds)
        handler.close_connection = True


@dataclass
class HtmlPage(Route):
    """A web page where a video was expected (a login wall, an error page)."""

    def respond(self, handler: BaseHTTPRequestHandler, attempt: int) -> None:
        body = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><p>Please sign in.</p></body></html>"
        send_headers(handler, 200, "text/html; charset=utf-8", len(body))
        if handler.command != "HEAD":
            handler.wfile.write(body)


@dataclass
class Body(Route):
    """Any content with its Content-Type (an HLS playlist, a segment, an RSS feed)."""

    content: bytes
    content_type: str

    def respond(self, handler: BaseHTTPRequestHandler, attempt: int) -> None:
        send_headers(handler, 200, self.content_type, len(self.content))
        if handler.command != "HEAD":
            handler.wfile.write(self.content)


@dataclass
class Redirect(Route):
    """302 to `location` (another host, another address)."""

    location: str

    def respond(self, handler: BaseHTTPRequestHandler, attempt: int) -> None:
        handler.send_response(302)
        handler.send_header("Location", self.location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client hanging up (a timeout, a killed download) is expected here, not a traceback."""


class LoopbackServer:
    """A threading HTTP server on 127.0.0.1 with a free port, serving `routes` by path."""

    def __init__(self, routes: Mapping[str, Route]) -> None:
        self.routes = dict(routes)
        self.requests: Counter[str] = Counter()
        self.hosts: Counter[str] = Counter()  # the Host header of each request, as the client named the server
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self) -> None:
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.requests[path] += 1
                    server.hosts[self.headers.get("Host", "")] += 1
                    attempt = server.requests[path]
                route = server.routes.get(path, Status(404))
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    route.respond(self, attempt)

            do_GET = handle_one  # the names http.server dispatches to
            do_HEAD = handle_one

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: pytest output stays readable."""

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def count(self, path: str) -> int:
        with self._lock:
            return self.requests[path]

    def total(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def serving(routes: Mapping[str, Route]) -> Iterator[LoopbackServer]:
    with LoopbackServer(routes) as server:
        yield server
