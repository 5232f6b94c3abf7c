"""Readings back out of InfluxDB, as the messages that carried them, for a backtest.

The function writes one point per reading (docs/data-model.md): measurement
`reading`, tags deviceId, sensorId and, when known, type, unit, location; field
`value`; timestamp the reading's time in ms. This reads them back through
InfluxQL on `/query` (InfluxDB 1.x, InfluxDB 2's 1.x-compatible API, InfluxDB 3)
in time windows of `window_ms`, each answered in chunks of `chunk_size` rows
(`chunked=true`), so that a year of history never sits in memory: a point
becomes a message of one reading as soon as its chunk arrives.

Order: windows in time order and, within one, InfluxQL's order (by time, all
series merged), so the messages come in reading time. What the store does not
keep is not replayed: a device's own thresholds, the line's receivedAt (no-data
gaps are measured in reading time), rejected messages.

`--device GLOB` has the rules' glob semantics: the literal prefix narrows the
query on the server (a regular expression on the deviceId tag), the glob itself
is applied here to every point.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Final, Protocol

from telemetry.core.rule_index import compiled_glob, is_exact, literal_prefix

DAY_MS: Final = 86_400_000
CHUNK_ROWS: Final = 10_000
READ_TIMEOUT_S: Final = 60.0
_LABELS: Final = ("type", "unit", "location")
_COLUMNS: Final = ("deviceId", "sensorId", *_LABELS)

Opener = Callable[[urllib.request.Request, float], IO[bytes]]


class StoreError(RuntimeError):
    """The store cannot be read: unreachable, refusing, or answering with an error."""


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """Which readings to replay: those of `database` at `url` with since_ms <=
    time < until_ms, of the devices `device` (a glob) matches, if given."""

    url: str
    database: str
    since_ms: int
    until_ms: int
    device: str | None = None
    token: str | None = None
    window_ms: int = DAY_MS
    chunk_size: int = CHUNK_ROWS


def _string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _device_condition(glob: str | None) -> str:
    """The part of `glob` the server can decide: the whole of it without wildcards,
    else its literal prefix (none: every device)."""
    if glob is None:
        return ""
    if is_exact(glob):
        return f' AND "deviceId" = {_string(glob)}'
    prefix = literal_prefix(glob)
    if not prefix:
        return ""
    return f' AND "deviceId" =~ /^{_regex_literal(prefix)}/'


def _regex_literal(text: str) -> str:
    """`text` matched literally inside an InfluxQL regex (`/.../`): every ASCII
    character but letters and digits as a hex escape (`\\x2d`), which Go's and
    Rust's regex engines read alike and in which no backslash or slash is left
    for InfluxQL's lexer to take as the literal's end (`pump\\*` had its prefix's
    backslash escape the closing slash); other characters as they are (a
    backslash before one, as in `\\€`, is an error in Go's regexp)."""
    return "".join(f"\\x{ord(c):02x}" if c.isascii() and not c.isalnum() else c for c in text)


def statement(query: HistoryQuery, start_ms: int, end_ms: int) -> str:
    """The InfluxQL of one window: every reading from start_ms to before end_ms."""
    columns = ", ".join(f'"{c}"' for c in ("value", *_COLUMNS))
    where = f"time >= {start_ms}ms AND time < {end_ms}ms{_device_condition(query.device)}"
    return f'SELECT {columns} FROM "reading" WHERE {where}'  # noqa: S608 - values quoted above


class Span(Protocol):
    """A replay's time range and the windows it is read in."""

    @property
    def since_ms(self) -> int: ...
    @property
    def until_ms(self) -> int: ...
    @property
    def window_ms(self) -> int: ...


def windows(span: Span) -> Iterator[tuple[int, int]]:
    """[start, end) windows covering since..until, in time order."""
    start = span.since_ms
    while start < span.until_ms:
        end = min(start + span.window_ms, span.until_ms)
        yield start, end
        start = end


def device_matcher(glob: str | None) -> Callable[[str], object] | None:
    """What tells the devices `glob` names (as rules match them) from the rest of
    what the store answered for its literal prefix; None: every device."""
    return None if glob is None else compiled_glob(glob).match


def message(row: dict[str, Any]) -> dict[str, Any]:
    """The message of one point: its device, its time, and one reading."""
    reading = {"sensorId": row.get("sensorId"), "value": row.get("value")}
    reading |= {label: row[label] for label in _LABELS if row.get(label) is not None}
    found = {"timestamp": row["time"], "data": [reading]}
    return {"deviceId": row["deviceId"], **found} if row.get("deviceId") is not None else found


def messages(query: HistoryQuery, opener: Opener | None = None) -> Iterator[dict[str, Any]]:
    """Every reading the query names, as a message, in reading time."""
    matches = device_matcher(query.device)
    for start, end in windows(query):
        for row in _rows(query, statement(query, start, end), opener or _open):
            if matches is None or matches(str(row.get("deviceId") or "")):
                yield message(row)


def _open(request: urllib.request.Request, timeout: float) -> IO[bytes]:
    return urllib.request.urlopen(request, timeout=timeout)  # type: ignore[no-any-return]  # noqa: S310 - the URL the user gave


def _rows(query: HistoryQuery, text: str, opener: Opener) -> Iterator[dict[str, Any]]:
    form = {
        "q": text,
        "db": query.database,
        "epoch": "ms",
        "chunked": "true",
        "chunk_size": str(query.chunk_size),
    }
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if query.token:
        headers["Authorization"] = f"Token {query.token}"
    request = urllib.request.Request(  # noqa: S310 - an http(s) URL the user gave
        f"{query.url.rstrip('/')}/query",
        data=urllib.parse.urlencode(form).encode(),
        headers=headers,
        method="POST",
    )
    try:
        with opener(request, READ_TIMEOUT_S) as answer:
            for line in answer:
                if line.strip():
                    yield from _chunk_rows(query, line)
    except urllib.error.HTTPError as exc:
        said = exc.read().decode(errors="replace").strip()[:200]
        hint = (
            " (give INFLUXDB_TOKEN, INFLUXDB_TOKEN_SECRET_ARN or --influxdb-token)"
            if exc.code in {401, 403}
            else ""
        )
        raise StoreError(f"InfluxDB at {query.url} answered {exc.code}: {said}{hint}") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        why = getattr(reason, "strerror", None) or reason
        raise StoreError(f"cannot read InfluxDB at {query.url}: {why}") from None


def _chunk_rows(query: HistoryQuery, line: bytes) -> Iterator[dict[str, Any]]:
    """The rows of one chunk of the answer; StoreError when it holds an error."""
    chunk = json.loads(line)
    if "error" in chunk:
        raise StoreError(f"InfluxDB at {query.url}: {chunk['error']}{_hint(chunk['error'])}")
    for result in chunk.get("results", []):
        if "error" in result:
            raise StoreError(
                f"InfluxDB at {query.url}, database {query.database}: {result['error']}"
                f"{_hint(result['error'])}"
            )
        for series in result.get("series", []):
            columns = series["columns"]
            for values in series["values"]:
                yield dict(zip(columns, values, strict=True))


def _hint(error: object) -> str:
    """What to try when the store says it has no such database: InfluxDB 2 serves
    /query only for a bucket with a DBRP mapping, which writing through
    /api/v2/write does not create."""
    if "database not found" not in str(error):
        return ""
    return (
        " (if this is InfluxDB 2: --database names a bucket's DBRP mapping, which "
        "`influx v1 dbrp create` makes)"
    )
