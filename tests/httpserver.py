"""A small HTTP server on 127.0.0.1 for tests that download (no test touches the internet).

`running_server()` starts a `ThreadingHTTPServer` on a free port in a daemon thread and stops
it on exit. Each path answers with a `Route`: a body and content type, optionally honouring
Range requests, optionally cutting the connection short for its first few answers. Several
routes may share a path, told apart by the query parameters they require (e.g. a Google Drive
confirm page at `/download` and the file at `/download?confirm=t&uuid=...`). Every request is
recorded, so tests can assert what was asked (and that nothing was).

Usage:
    with running_server() as server:
        server.add("/train.zip", Route(body=data))
        url = server.url("/train.zip")
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

HANDLER_TIMEOUT_S = 5.0
"""A client that stays silent this long is disconnected, so no handler thread hangs."""


@dataclass
class Route:
    """How one path answers.

    Attributes:
        body: The whole body (the file, or an HTML page).
        content_type: The Content-Type header.
        status: The status of a full answer (e.g. 404); bodies are sent for any status.
        ranges: Honour `Range: bytes=N-` with 206 (and 416 past the end); False answers 200
            with the whole body, as a server that ignores Range does.
        drop_first: How many answers are cut short (headers promise the full length).
        drop_after: Body bytes sent before an answer is cut short.
        query: Query parameters a request must carry for this route to answer it.
        endless: Send `body` over and over, with no Content-Length, until the client hangs up
            (a server that never stops sending; `ranges` and `drop_first` do not apply).
        answered: How many requests this route has answered so far (kept by the server).
    """

    body: bytes = b""
    content_type: str = "application/octet-stream"
    status: int = 200
    ranges: bool = True
    drop_first: int = 0
    drop_after: int = 0
    query: dict[str, str] = field(default_factory=dict)
    endless: bool = False
    answered: int = 0


@dataclass(frozen=True)
class Request:
    """One request the server received."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]

    @property
    def range(self) -> str | None:
        return self.headers.get("range")


class LocalServer:
    """The routes and the request log of a running test server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.routes: dict[str, list[Route]] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()

    def url(self, path: str) -> str:
        """The full URL of `path` (which may carry a query) on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, route: Route) -> Route:
        """Serve `route` at `path`; routes requiring more query parameters are tried first."""
        with self._lock:
            routes = self.routes.setdefault(path, [])
            routes.append(route)
            routes.sort(key=lambda r: -len(r.query))
        return route

    def requests_to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def _match(self, path: str, query: dict[str, str]) -> Route | None:
        with self._lock:
            for route in self.routes.get(path, []):
                if all(query.get(k) == v for k, v in route.query.items()):
                    route.answered += 1
                    return route
        return None


class _Server(ThreadingHTTPServer):
    """The socket server, holding the `LocalServer` its handlers answer for."""

    daemon_threads = True
    local: LocalServer


class _Handler(BaseHTTPRequestHandler):
    """Answers GET requests from the routes of `self.server.local`."""

    server: _Server
    timeout = HANDLER_TIMEOUT_S

    def do_GET(self) -> None:
        local = self.server.local
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        headers = {k.lower(): v for k, v in self.headers.items()}
        local.requests.append(Request(parts.path, query, headers))
        route = local._match(parts.path, query)
        if route is None:
            self._answer(404, "text/plain", b"no such route", {})
            return
        if route.endless:
            self._answer_endless(route)
            return
        body, status, extra = route.body, route.status, {}
        wanted = headers.get("range", "")
        if route.ranges and status == 200 and wanted.startswith("bytes="):
            start_text, _, end_text = wanted.removeprefix("bytes=").partition("-")
            start = int(start_text)
            end = int(end_text) if end_text else len(route.body) - 1
            if start >= len(route.body):
                self._answer(416, "text/plain", b"", {"Content-Range": f"bytes */{len(body)}"})
                return
            extra["Content-Range"] = f"bytes {start}-{end}/{len(route.body)}"
            body, status = route.body[start : end + 1], 206
        cut_after = route.drop_after if route.answered <= route.drop_first else None
        self._answer(status, route.content_type, body, extra, cut_after)

    def _answer(
        self,
        status: int,
        content_type: str,
        body: bytes,
        extra: dict[str, str],
        cut_after: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        if cut_after is None:
            self.wfile.write(body)
            return
        self.wfile.write(body[:cut_after])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _answer_endless(self, route: Route) -> None:
        """Send `route.body` repeatedly, with no length, until the client goes away."""
        self.send_response(route.status)
        self.send_header("Content-Type", route.content_type)
        self.end_headers()
        self.close_connection = True
        try:
            while True:
                self.wfile.write(route.body)
        except OSError:
            pass  # the client hung up: what an endless answer waits for

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean


@contextmanager
def running_server() -> Iterator[LocalServer]:
    """Run a `LocalServer` on 127.0.0.1 (a free port) for the duration of the block."""
    httpd = _Server(("127.0.0.1", 0), _Handler)
    server = LocalServer(httpd.server_address[1])
    httpd.local = server
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def closed_port_url(path: str = "/") -> str:
    """A URL on 127.0.0.1 where nothing listens (a connection there is refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"
