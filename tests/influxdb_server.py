"""InfluxDB servers for the tests: a real `influxd` 1.x, and a local server that
answers like InfluxDB 2 and InfluxDB 3.

- `Influxd`: Debian's `influxdb` package (1.x) started on free loopback ports with
  a temporary data directory and configuration; it speaks line protocol on
  `/write` and InfluxQL on `/query`. The `influxd` fixture gives one per test
  session (and per xdist worker). Without `influxd` on PATH the tests that need
  it are skipped, except in CI (`CI` set), where that is a failure: `make test`
  installs the package where it can (root and apt-get).
- `FakeInflux`: a threaded HTTP server answering `/api/v3/write_lp`,
  `/api/v2/write` and `/write` the way the InfluxData documentation and source
  say InfluxDB 3 (`flavor="v3"`) or InfluxDB 2 (`flavor="v2"`) do: auth headers,
  404 for a missing bucket, 413 over its body limit, partial writes (InfluxDB 3:
  400 listing the refused lines; InfluxDB 2: 422 counting them, or 400 refusing
  the whole batch for a line that does not parse), retention and field type
  conflicts. It parses line protocol with the escaping rules of the engine it
  plays and keeps what it stored, to read back. Canned answers (`script`) come
  first, for the faults no real server produces on demand.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from telemetry.local.influx import LocalInfluxd, free_port, influxql, rows

__all__ = ["Canned", "FakeInflux", "Influxd", "QuietHTTPServer", "free_port", "parse_line"]


def influxd_missing_reason() -> str | None:
    if shutil.which("influxd"):
        return None
    return (
        "influxd is not installed: `apt-get install influxdb` (Debian's InfluxDB 1.x), "
        "which `make test` does where it runs as root"
    )


def require_influxd() -> None:
    """Skip without influxd, but fail in CI, where the real server is a requirement."""
    reason = influxd_missing_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI needs the real InfluxDB: {reason}")
    pytest.skip(reason)


# --- a real influxd 1.x ----------------------------------------------------------------


class Influxd(LocalInfluxd):
    """A real InfluxDB 1.x on 127.0.0.1 (telemetry.local.influx), with helpers to
    create databases, write and read back."""

    def query(self, statement: str, database: str | None = None) -> dict[str, Any]:
        return influxql(self.url, statement, database)

    def create_database(self, name: str, duration: str | None = None) -> str:
        suffix = f" WITH DURATION {duration}" if duration else ""
        self.query(f'CREATE DATABASE "{name}"{suffix}')
        return name

    def rows(self, database: str, statement: str) -> list[dict[str, Any]]:
        """Every row of every series of a query, as dicts (tags of GROUP BY included)."""
        return rows(self.query(statement, database))

    def write(self, database: str, body: str) -> tuple[int, str]:
        request = urllib.request.Request(  # noqa: S310 - loopback only
            f"{self.url}/write?db={database}&precision=ms", data=body.encode(), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                return answer.status, ""
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


@pytest.fixture(scope="session")
def influxd() -> Iterator[Influxd]:
    require_influxd()
    with Influxd() as server:
        yield server


_DATABASES = iter(range(1, 1_000_000))


@pytest.fixture
def database(influxd: Influxd) -> str:
    """A fresh database on the session's influxd."""
    return influxd.create_database(f"test_{os.getpid()}_{next(_DATABASES)}")


# --- line protocol as the engines parse it ---------------------------------------------


class LineError(ValueError):
    """A line the engine's parser refuses."""


def _unescape(text: str, flavor: str) -> str:
    """Go (InfluxDB 1.x and 2) unescapes `\\,` `\\=` `\\ ` in tags; IOx (InfluxDB 3)
    also `\\\\`, and refuses a value ending with a backslash."""
    out, i = [], 0
    escapable = ",= \\" if flavor == "v3" else ",= "
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in escapable:
            out.append(text[i + 1])
            i += 2
            continue
        out.append(text[i])
        i += 1
    value = "".join(out)
    if flavor == "v3" and value.endswith("\\"):
        raise LineError(
            "Measurements, tag keys and values, and field keys may not end with a backslash"
        )
    return value


def _split(text: str, separator: str, *, quotes: bool = False) -> list[str]:
    """Split on unescaped `separator` (outside double quotes when `quotes`)."""
    parts, current, i, quoted = [], [], 0, False
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if quotes and char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


def _field_value(text: str) -> Any:
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if text.endswith("i") and text[:-1].lstrip("-").isdigit():
        return int(text[:-1])
    if text in {"t", "T", "true", "True", "TRUE"}:
        return True
    if text in {"f", "F", "false", "False", "FALSE"}:
        return False
    try:
        return float(text)
    except ValueError:
        raise LineError(f"invalid field value {text!r}") from None


@dataclass(frozen=True)
class ParsedPoint:
    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: dict[str, Any]
    time: int


def parse_line(line: str, flavor: str) -> ParsedPoint:
    """One line as InfluxDB 2 (Go) or 3 (IOx) reads it; LineError when it does not."""
    if flavor == "v3" and "\t" in line:
        raise LineError("Expected at least one space character")
    # The series (measurement and tags) knows no quotes; the fields do.
    head = _split(line, " ")[0]
    rest = line[len(head) + 1 :]
    sections = [head, *_split(rest, " ", quotes=True)]
    if len(sections) != 3 or not rest:
        raise LineError(f"expected measurement, fields and a timestamp: {line!r}")
    head, field_text, stamp = sections
    series = _split(head, ",")
    measurement = _unescape(series[0], flavor)
    tags = []
    for pair in series[1:]:
        key_value = _split(pair, "=")
        if len(key_value) != 2 or not key_value[1]:
            raise LineError("invalid tag format")
        tags.append((_unescape(key_value[0], flavor), _unescape(key_value[1], flavor)))
    fields = {}
    for pair in _split(field_text, ",", quotes=True):
        key_value = _split(pair, "=", quotes=True)
        if len(key_value) != 2:
            raise LineError("invalid field format")
        fields[_unescape(key_value[0], flavor)] = _field_value(key_value[1])
    try:
        time_ms = int(stamp)
    except ValueError:
        raise LineError(f"invalid timestamp {stamp!r}") from None
    return ParsedPoint(measurement, tuple(sorted(tags)), fields, time_ms)


# --- a local server answering like InfluxDB 2 / 3 ----------------------------------------

HUNG_UP = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
"""What answering a client that has gone away raises."""


class QuietHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server to which a client hanging up (a writer whose timeout
    ran out, a test that dropped its connection) is no error: it prints nothing and
    counts it in `hung_up`. Any other error in a request still prints its traceback.
    `closed` is released once per connection the server is done with."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.hung_up = 0
        self.closed = threading.Semaphore(0)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], HUNG_UP):
            self.hung_up += 1
            return
        super().handle_error(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        self.closed.release()


@dataclass
class Canned:
    """One scripted answer: a status, a JSON or text body, headers; `drop` closes
    the connection without answering, `delay_s` waits first."""

    status: int = 204
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    delay_s: float = 0.0


@dataclass
class Recorded:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: str


@dataclass
class FakeInflux:
    """InfluxDB 3 (`flavor="v3"`) or InfluxDB 2 (`flavor="v2"`) on 127.0.0.1."""

    flavor: str = "v3"
    tokens: set[str] = field(default_factory=lambda: {"write-token"})
    buckets: set[str] = field(default_factory=lambda: {"telemetry"})
    org: str = "plant"
    retention_ms: int | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    listed_errors: int = 100
    script: list[Canned] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    points: dict[tuple[str, str, tuple[tuple[str, str], ...], int], dict[str, Any]] = field(
        default_factory=dict
    )
    field_types: dict[tuple[str, str, str], type] = field(default_factory=dict)
    now_ms: int | None = None
    url: str = ""
    _server: QuietHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> FakeInflux:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake._handle(self)

            def log_message(self, *_: Any) -> None:
                return

        self._server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def hung_up(self) -> int:
        """Connections whose client went away before it was answered."""
        return self._server.hung_up if self._server is not None else 0

    def wait_closed(self, timeout_s: float = 10.0) -> bool:
        """Wait until the server is done with one more connection (False: not in time)."""
        return self._server is not None and self._server.closed.acquire(timeout=timeout_s)

    # what was stored, for the tests
    def reset(self) -> None:
        """Forget what was stored and asked (one server for many examples)."""
        with self._lock:
            self.points.clear()
            self.field_types.clear()
            self.requests.clear()
            self.script.clear()

    def stored(self, measurement: str | None = None) -> list[ParsedPoint]:
        with self._lock:
            return [
                ParsedPoint(m, tags, dict(fields), t)
                for (_, m, tags, t), fields in sorted(self.points.items())
                if measurement is None or m == measurement
            ]

    # --- the protocol --------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(request.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length)
        headers = dict(request.headers.items())
        with self._lock:
            self.requests.append(
                Recorded(parts.path, query, headers, body.decode("utf-8", "replace"))
            )
            canned = self.script.pop(0) if self.script else None
        if canned is not None:
            if canned.delay_s:
                time.sleep(canned.delay_s)
            if canned.drop:
                request.connection.shutdown(socket.SHUT_RDWR)
                request.close_connection = True
                return
            self._reply(request, canned.status, canned.body, canned.headers)
            return
        status, answer = self._write(parts.path, query, headers, body)
        self._reply(request, status, answer, {})

    def _reply(
        self, request: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str]
    ) -> None:
        data = (
            b""
            if body is None
            else (json.dumps(body) if not isinstance(body, str) else body).encode()
        )
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        if data:
            kind = "application/json" if not isinstance(body, str) else "text/plain"
            request.send_header("Content-Type", kind)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        allowed = {"Bearer", "Token"} if self.flavor == "v3" else {"Token"}
        return scheme in allowed and token in self.tokens

    def _write(
        self, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        v2 = self.flavor == "v2"
        endpoints = {"/api/v2/write", "/write"} | (set() if v2 else {"/api/v3/write_lp"})
        if path not in endpoints:
            return 404, {"code": "not found", "message": "path not found"} if v2 else "not found"
        if not self._authorized(headers):
            return 401, {"code": "unauthorized", "message": "unauthorized access"} if v2 else None
        bucket = query.get("bucket") if path == "/api/v2/write" else query.get("db")
        if v2 and path == "/api/v2/write" and query.get("org") != self.org:
            return 404, {
                "code": "not found",
                "message": f'organization name "{query.get("org")}" not found',
            }
        if bucket not in self.buckets:
            if v2:
                return 404, {"code": "not found", "message": f'bucket "{bucket}" not found'}
            return 404, f"database not found: {bucket}"
        if len(body) > self.max_body_bytes:
            if v2:
                return 413, {
                    "code": "request too large",
                    "message": "unable to read data: points batch is too large",
                }
            return 500, f"max request size ({self.max_body_bytes} bytes) exceeded"
        lines = [line for line in body.decode().split("\n") if line.strip()]
        return self._store(bucket, lines)

    def _store(self, bucket: str, lines: list[str]) -> tuple[int, Any]:
        parsed: list[tuple[int, str, ParsedPoint | str]] = []
        for number, line in enumerate(lines, start=1):
            try:
                parsed.append((number, line, parse_line(line, self.flavor)))
            except LineError as exc:
                parsed.append((number, line, str(exc)))
        if self.flavor == "v2":
            bad = next(((n, line, p) for n, line, p in parsed if isinstance(p, str)), None)
            if bad is not None:  # InfluxDB 2 refuses the whole batch for a malformed line
                return 400, {"code": "invalid", "message": f"unable to parse '{bad[1]}': {bad[2]}"}
        refused: list[tuple[int, str, str]] = []
        now = self.now_ms if self.now_ms is not None else int(time.time() * 1000)
        with self._lock:
            for number, line, point in parsed:
                if isinstance(point, str):
                    refused.append((number, line, point))
                    continue
                problem = self._accept(bucket, point, now)
                if problem is not None:
                    refused.append((number, line, problem))
        if not refused:
            return 204, None
        if self.flavor == "v2":
            retention = [r for r in refused if "retention" in r[2]]
            first = (retention or refused)[0][2]
            return 422, {
                "code": "unprocessable entity",
                "message": "failure writing points to database: partial write: "
                f"{first} dropped={len(refused)}",
            }
        return 400, {
            "error": "partial write of line protocol occurred",
            "data": [
                {"original_line": line[:100], "line_number": n, "error_message": why}
                for n, line, why in refused[: self.listed_errors]
            ],
        }

    def _accept(self, bucket: str, point: ParsedPoint, now_ms: int) -> str | None:
        if self.retention_ms is not None and point.time < now_ms - self.retention_ms:
            if self.flavor == "v2":
                return "dropped 1 points outside retention policy"
            return "write of point outside of retention period"
        for name, value in point.fields.items():
            key = (bucket, point.measurement, name)
            kind = type(value)
            known = self.field_types.setdefault(key, kind)
            if known is not kind:
                if self.flavor == "v2":
                    return (
                        f'field type conflict: input field "{name}" on measurement '
                        f'"{point.measurement}" is type {kind.__name__}, already exists as type '
                        f"{known.__name__}"
                    )
                return (
                    f"invalid column type for column '{name}', expected "
                    f"iox::column_type::field::{known.__name__}, got "
                    f"iox::column_type::field::{kind.__name__}"
                )
        stored = self.points.setdefault((bucket, point.measurement, point.tags, point.time), {})
        stored.update(point.fields)
        return None


@pytest.fixture
def fake_v3() -> Iterator[FakeInflux]:
    with FakeInflux(flavor="v3") as server:
        yield server


@pytest.fixture
def fake_v2() -> Iterator[FakeInflux]:
    with FakeInflux(flavor="v2") as server:
        yield server
