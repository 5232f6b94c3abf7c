"""Readings and alert history into InfluxDB, as line protocol over HTTP(S).

The store new AWS accounts get is Amazon Timestream for InfluxDB (InfluxDB 2 or
InfluxDB 3); a local InfluxDB 1.x speaks the same line protocol. The data model
keeps the Timestream model's names, so that a dashboard moves across:

- measurement `reading`: tags deviceId, sensorId, and type, location, unit when
  known; field `value` (float); timestamp = the reading's event time (ms).
- measurement `alert`: tags deviceId, sensorId, rule, status, and type when
  known; fields severity, previousSeverity, alertId (strings), value, threshold
  (floats), since (integer, epoch ms); timestamp = the transition's time.

One point per reading or transition; the same series and timestamp keep one
value, so a retried invocation rewriting its points stores nothing twice.

What the store answers:
- 204/200: every point stored.
- a point refused for good (type conflict, outside retention, malformed): it
  comes back to the caller, with the store's reason and the line, for the
  dead-letter queue; every other point of the request is stored. InfluxDB 3
  lists the refused lines; InfluxDB 2 (422) and 1.x (400, `partial write ...
  dropped=N`) only count them, so the request is split in halves and each half
  sent again until every refused line is found (rewriting stored points is safe).
- 401: the token is fetched again once (it may have been rotated), then the
  request fails as misconfiguration, like 403, 404 (no such database or bucket)
  and any other refusal of the request itself: these raise, never quarantine.
- 413: the request is split and resent.
- 429, 5xx, connection errors and timeouts: retried with backoff (honouring
  Retry-After), a bounded number of times, then raised as transient. Given the
  time the write may still take (`time_left_ms`: the invocation's remaining
  time less what the pipeline keeps for itself), no wait and no request runs
  past it: a wait that would is not made, and the write fails at once as
  transient, so that the invocation can release its claims and Lambda retries.

No InfluxDB client library: urllib3 (which botocore already loads) with one
PoolManager for the whole function, TLS verification on.
"""

from __future__ import annotations

import functools
import json
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Final, Protocol
from urllib.parse import urlencode

from telemetry.adapters.aws import AWS_ERRORS, translate
from telemetry.core.alerts import Transition, history_direction
from telemetry.core.messages import Reading
from telemetry.errors import DependencyError

READING_MEASUREMENT: Final = "reading"
ALERT_MEASUREMENT: Final = "alert"
MAX_LINES_PER_REQUEST: Final = 5_000
MAX_BODY_BYTES: Final = 1024 * 1024
"""Per request: at most 5,000 lines or 1 MiB of body, whichever comes first
(InfluxData's batching advice; the stores accept more, Lambda's memory less)."""
MAX_ATTEMPTS: Final = 4
"""Sends of one request while the store is throttling or failing (1 + 3 retries)."""
BACKOFF_BASE_S: Final = 0.2
MAX_WAIT_S: Final = 10.0
"""The longest wait before a retry, whatever Retry-After asks: the function has 120 s
(and no wait outlasts the time the write is given, `InfluxWriter.write`'s `time_left_ms`)."""
CONNECT_TIMEOUT_S: Final = 3.0
READ_TIMEOUT_S: Final = 10.0
V3_LISTED_ERRORS: Final = 100
"""InfluxDB 3 describes at most this many refused lines in one answer."""
MAX_REASON_CHARS: Final = 500

WRITE_PATHS: Final = {"v3": "/api/v3/write_lp", "v2": "/api/v2/write", "v1": "/write"}
_DROPPED: Final = re.compile(r"\s*dropped=(\d+)")
_POINT_LEVEL: Final = re.compile(
    r"partial write|unable to parse|beyond retention|outside retention|field type conflict"
    r"|invalid field|max-values-per-tag|max-series-per-database",
    re.IGNORECASE,
)


# --- line protocol ------------------------------------------------------------------


class Dialect:
    """How tag values are escaped, for the parser that will read them.

    - `iox`: InfluxDB 3's parser (the /api/v3 endpoint): a backslash escapes
      `\\`, `,`, `=` and space; tabs and newlines end a value.
    - `portable`: what InfluxDB 1.x and 2 (Go) and InfluxDB 3 (Rust) all read the
      same way, for /api/v2/write and /write, which any of them may serve: `,`,
      `=` and space escaped, a backslash left as it is where both parsers keep it.
    """

    IOX: Final = "iox"
    PORTABLE: Final = "portable"


_IOX_SPECIAL: Final = frozenset("\\,= ")
_TAG_SPECIAL: Final = frozenset(",= ")
_ESCAPED_BY_GO: Final = _TAG_SPECIAL | {"\\"}
_SPECIAL: Final = re.compile(r"[\\,= \t\n\r]")
_NEVER_IN_TAGS: Final = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab"}


def escape_measurement(name: str) -> str:
    """A measurement name: commas and spaces escaped."""
    return name.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


@functools.lru_cache(maxsize=8192)
def escape_tag(value: str, dialect: str = Dialect.PORTABLE) -> str:
    """A tag key or value for `dialect`; raises UnwritableError for the few values
    that no escaping makes the parser read back identical. Device, sensor and label
    values repeat from point to point: each is escaped once."""
    if not _SPECIAL.search(value):
        return value
    for char, name in _NEVER_IN_TAGS.items():
        if char in value:
            raise UnwritableError(f"contains {name}")
    if value.endswith("\\"):
        raise UnwritableError("ends with a backslash")
    if dialect == Dialect.IOX:
        return "".join(f"\\{c}" if c in _IOX_SPECIAL else c for c in value)
    out = []
    for i, char in enumerate(value):
        if char == "\\" and value[i + 1] in _ESCAPED_BY_GO:
            raise UnwritableError(f"has a backslash before {value[i + 1]!r}")
        out.append(f"\\{char}" if char in _TAG_SPECIAL else char)
    return "".join(out)


def string_field(value: str) -> str:
    """A string field value, quoted: backslashes and double quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def float_field(value: float) -> str:
    """A float field value: the shortest text that reads back as the same double."""
    return repr(float(value))


class UnwritableError(ValueError):
    """A label that line protocol cannot carry unchanged."""


@dataclass(frozen=True, slots=True)
class Point:
    """One line of line protocol, or why the reading or transition cannot be one."""

    line: str
    problem: str | None = None


def _tags(pairs: Sequence[tuple[str, str | None]], dialect: str) -> tuple[str, str | None]:
    """The tag set, keys in order (the callers list them sorted), and the first problem."""
    parts, problem = [], None
    for name, value in pairs:
        if not value:
            continue
        try:
            parts.append(f",{name}={escape_tag(value, dialect)}")
        except UnwritableError as exc:
            problem = problem or f"cannot be written as line protocol: {name} {exc}"
            parts.append(f",{name}={value!r}")
    return "".join(parts), problem


class InfluxRecords:
    """The data model as the pipeline's record factory: a Point per reading or
    transition, escaped for the endpoint the writer speaks."""

    def __init__(self, dialect: str = Dialect.PORTABLE) -> None:
        self.dialect = dialect

    def reading(self, reading: Reading) -> Point:
        tags, problem = _tags(
            [
                ("deviceId", reading.device_id),
                ("location", reading.location),
                ("sensorId", reading.sensor_id),
                ("type", reading.type),
                ("unit", reading.unit),
            ],
            self.dialect,
        )
        line = f"{READING_MEASUREMENT}{tags} value={float_field(reading.value)} {reading.time_ms}"
        return Point(line, problem)

    def alert(self, transition: Transition) -> Point:
        tags, problem = _tags(
            [
                ("deviceId", transition.device_id),
                # A no-data episode and a threshold one of the same rule may both resolve
                # on the same reading: their points must be two series, not one.
                ("direction", history_direction(transition.direction)),
                ("rule", transition.rule),
                ("sensorId", transition.sensor_id),
                ("status", transition.status.value),
                ("type", transition.type),
            ],
            self.dialect,
        )
        fields = [
            f"severity={string_field(transition.severity.name)}",
            f"previousSeverity={string_field(transition.previous_severity.name)}",
            f"alertId={string_field(transition.alert_id)}",
        ]
        if transition.value is not None:
            fields.append(f"value={float_field(transition.value)}")
        if transition.threshold is not None:
            fields.append(f"threshold={float_field(transition.threshold)}")
        # An operator's action says who acted, and why.
        fields += [
            f"{name}={string_field(text)}"
            for name, text in (("by", transition.by), ("note", transition.note))
            if text
        ]
        # A change flapping held back is history all the same: the point says so.
        if transition.suppressed:
            fields.append(f"suppressed={string_field(transition.suppressed)}")
        if transition.maintenance:
            fields.append(f"maintenance={string_field(transition.maintenance)}")
        if transition.changes is not None:
            fields.append(f"changes={transition.changes}i")
        # Which rules decided it, for an auditor: the AppConfig version or the files' digest.
        if transition.rules_version:
            fields.append(f"rulesVersion={string_field(transition.rules_version)}")
        fields.append(f"since={transition.since_ms}i")
        line = f"{ALERT_MEASUREMENT}{tags} {','.join(fields)} {transition.time_ms}"
        return Point(line, problem)


def dialect_for(api: str) -> str:
    """/api/v3 is only ever InfluxDB 3's parser; the other endpoints may be any."""
    return Dialect.IOX if api == "v3" else Dialect.PORTABLE


# --- the token ------------------------------------------------------------------------


class TokenSource(Protocol):
    def token(self) -> str | None: ...

    def refresh(self) -> bool:
        """Fetch the token again; False when there is no other place to get one."""
        ...


class StaticToken:
    """A token given in the environment (local runs), or none (a local 1.x)."""

    def __init__(self, token: str | None) -> None:
        self._token = token

    def token(self) -> str | None:
        return self._token

    def refresh(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "StaticToken(<hidden>)"


class SecretsManagerToken:
    """The token kept in AWS Secrets Manager: the secret string itself, or JSON
    with a `token` key. Fetched on first use and cached for the execution
    environment (a cold start); fetched again when the store refuses it (401),
    which is how a rotated token is picked up."""

    def __init__(self, secret_arn: str, client: Any) -> None:
        self._secret_arn = secret_arn
        self._client = client
        self._token: str | None = None
        self.fetches = 0

    def token(self) -> str:
        if self._token is None:
            self._token = self._fetch()
        return self._token

    def refresh(self) -> bool:
        self._token = self._fetch()
        return True

    def _fetch(self) -> str:
        self.fetches += 1
        try:
            answer = self._client.get_secret_value(SecretId=self._secret_arn)
        except AWS_ERRORS as exc:
            raise translate("secretsmanager", "GetSecretValue", exc) from exc
        return token_from_secret(answer.get("SecretString"), self._secret_arn)

    def __repr__(self) -> str:
        return f"SecretsManagerToken({self._secret_arn!r})"


def token_from_secret(text: str | None, secret_arn: str) -> str:
    """The token in a secret string: the string itself, or the `token` of a JSON
    object. Errors name the secret, never its content."""

    def refuse(why: str) -> DependencyError:
        return DependencyError(
            "secretsmanager",
            "GetSecretValue",
            "InvalidSecret",
            f"{secret_arn}: {why}",
            transient=False,
        )

    if text is None:
        raise refuse("holds no SecretString (a binary secret is not supported)")
    text = text.strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            raise refuse("starts like JSON but is not JSON") from None
        token = document.get("token") if isinstance(document, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise refuse(
                "is JSON without a string 'token' key (the admin secret AWS creates holds a "
                "username and password: create a write token and store it instead)"
            )
        text = token.strip()
    if not text:
        raise refuse("is empty")
    return text


# --- writing --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RejectedPoint:
    """A point the store refused for good, with its reason; `record` is the line."""

    record: str
    reason: str
    source: object
    store: str = "influxdb"


@dataclass(frozen=True, slots=True)
class _Line:
    data: bytes
    point: Point
    source: object


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    message: str
    body: Any
    retry_after: float | None = None


def http_pool(ca_certs: str | None = None) -> Any:
    """The function's one HTTP client: connection reuse, TLS verified against the
    system's certificate authorities (or `ca_certs`), no automatic retries."""
    import urllib3  # noqa: PLC0415 - botocore has imported it already

    return urllib3.PoolManager(
        num_pools=4,
        maxsize=2,
        cert_reqs="CERT_REQUIRED",
        ca_certs=ca_certs,
        retries=False,
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
    )


TimeLeft = Callable[[], float] | None
"""Milliseconds a write may still take, asked when needed; None: not bounded."""


class InfluxWriter:
    """Writes points to one database (v3, v1) or bucket (v2) through one endpoint.

    Takes up to `records_per_call` points per call (the pipeline hands over all
    of an invocation's points in calls of that size) and sends them in requests
    of at most MAX_LINES_PER_REQUEST lines and MAX_BODY_BYTES.
    """

    def __init__(
        self,
        *,
        url: str,
        api: str,
        database: str,
        token: TokenSource,
        http: Any,
        org: str | None = None,
        max_lines: int = MAX_LINES_PER_REQUEST,
        max_bytes: int = MAX_BODY_BYTES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if api not in WRITE_PATHS:
            raise ValueError(f"unknown InfluxDB API {api!r}")
        self._api = api
        self._database = database
        self._token = token
        self._http = http
        self._max_lines = max_lines
        self._max_bytes = max_bytes
        self._sleep = sleep
        self._jitter = random.Random()  # noqa: S311 - backoff jitter, not security
        self._url = url.rstrip("/") + WRITE_PATHS[api] + "?" + urlencode(self._params(org))
        self.records_per_call = max_lines
        self.calls = 0
        """HTTP requests sent, retries and resends included."""

    def _params(self, org: str | None) -> dict[str, str]:
        if self._api == "v3":
            return {"db": self._database, "precision": "millisecond", "accept_partial": "true"}
        if self._api == "v2":
            return {"bucket": self._database, "precision": "ms"} | ({"org": org} if org else {})
        return {"db": self._database, "precision": "ms"}

    def write(
        self,
        records: Sequence[tuple[Point, object]],
        *,
        time_left_ms: Callable[[], float] | None = None,
    ) -> list[RejectedPoint]:
        """Write every (point, source) pair; return the points the store refused
        for good, and those that cannot be line protocol, each with its reason.

        `time_left_ms`, when given, says how many milliseconds the write may still
        take, asked afresh before each request and each wait: a request is given
        no longer than that, and a retry whose wait would not end within it is
        not made (DependencyError, transient). None: only MAX_ATTEMPTS and
        MAX_WAIT_S bound the retries."""
        rejected: list[RejectedPoint] = []
        lines: list[_Line] = []
        for point, source in records:
            data = point.line.encode() + b"\n"
            if point.problem is not None:
                rejected.append(RejectedPoint(point.line, point.problem, source))
            elif len(data) > self._max_bytes:
                rejected.append(RejectedPoint(point.line, "line longer than a request", source))
            else:
                lines.append(_Line(data, point, source))
        for request in self._requests(lines):
            rejected.extend(self._write_lines(request, time_left_ms))
        return rejected

    def _requests(self, lines: Sequence[_Line]) -> Iterator[list[_Line]]:
        request: list[_Line] = []
        size = 0
        for line in lines:
            if request and (
                len(request) >= self._max_lines or size + len(line.data) > self._max_bytes
            ):
                yield request
                request, size = [], 0
            request.append(line)
            size += len(line.data)
        if request:
            yield request

    def _write_lines(self, lines: list[_Line], time_left: TimeLeft) -> list[RejectedPoint]:
        """Send `lines`; return the refused ones, finding them if the store does not say."""
        answer = self._send(b"".join(line.data for line in lines), time_left)
        if answer.status in {200, 204}:
            return []
        if answer.status == 413 or "max request size" in answer.message:
            if len(lines) == 1:
                return [self._reject(lines[0], f"too large for the store ({answer.status})")]
            return self._halves(lines, time_left)
        listed = self._listed(answer, lines, time_left)
        if listed is not None:
            return listed
        if answer.status not in {400, 422} or not _POINT_LEVEL.search(answer.message):
            raise self._refusal(answer)
        dropped = _DROPPED.search(answer.message)
        if len(lines) == 1 or (dropped and int(dropped.group(1)) >= len(lines)):
            reason = _DROPPED.sub("", answer.message).strip()  # a count, not a reason
            return [self._reject(line, reason) for line in lines]
        return self._halves(lines, time_left)

    def _halves(self, lines: list[_Line], time_left: TimeLeft) -> list[RejectedPoint]:
        middle = len(lines) // 2
        first = self._write_lines(lines[:middle], time_left)
        return first + self._write_lines(lines[middle:], time_left)

    def _listed(
        self, answer: _Answer, lines: list[_Line], time_left: TimeLeft
    ) -> list[RejectedPoint] | None:
        """InfluxDB 3's answer names the refused lines (1-based); the lines after
        the last one it could list are sent again, to learn their fate."""
        body = answer.body
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            return None
        refused: dict[int, str] = {}
        for item in body["data"]:
            number = item.get("line_number") if isinstance(item, dict) else None
            if isinstance(number, int) and 1 <= number <= len(lines):
                refused[number - 1] = str(item.get("error_message") or body.get("error"))
        if not refused:
            return None
        out = [self._reject(lines[i], reason) for i, reason in sorted(refused.items())]
        if len(body["data"]) >= V3_LISTED_ERRORS and max(refused) + 1 < len(lines):
            out += self._write_lines(lines[max(refused) + 1 :], time_left)
        return out

    def _reject(self, line: _Line, reason: str) -> RejectedPoint:
        return RejectedPoint(line.point.line, reason[:MAX_REASON_CHARS], line.source)

    # --- one request, with retries ------------------------------------------------

    def _send(self, body: bytes, time_left: TimeLeft) -> _Answer:
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            timeout = self._timeout(time_left)
            self.calls += 1
            try:
                answer = self._post(body, timeout)
            except DependencyError as exc:
                if not exc.transient or attempt >= MAX_ATTEMPTS:
                    raise
                self._wait(self._backoff(attempt, None), time_left, exc)
                continue
            if answer.status == 401 and not refreshed and self._token.refresh():
                refreshed = True
                continue
            too_large = "max request size" in answer.message  # InfluxDB 3 says so with a 500
            if (answer.status == 429 or answer.status >= 500) and not too_large:
                if attempt >= MAX_ATTEMPTS:
                    raise self._refusal(answer)
                wait = self._backoff(attempt, answer.retry_after)
                self._wait(wait, time_left, self._refusal(answer, attempt))
                continue
            return answer

    def _timeout(self, time_left: TimeLeft) -> Any:
        """The next request's timeouts: None (the pool's own) when the write is not
        bounded; else the usual ones (CONNECT_TIMEOUT_S, READ_TIMEOUT_S) cut to the
        time left, or DependencyError (transient) when none is left."""
        if time_left is None:
            return None
        left_s = time_left() / 1000
        if left_s <= 0:
            raise DependencyError(
                "influxdb",
                "Write",
                "NoTimeLeft",
                f"not sent: no time left for this write [{self._where()}]",
                transient=True,
            )
        import urllib3  # noqa: PLC0415 - botocore has imported it already

        return urllib3.Timeout(
            connect=min(CONNECT_TIMEOUT_S, left_s), read=min(READ_TIMEOUT_S, left_s)
        )

    def _wait(self, seconds: float, time_left: TimeLeft, failure: DependencyError) -> None:
        """Wait before a retry, or raise `failure`'s fault at once (transient) if the
        wait would not end within the time left."""
        left_ms = None if time_left is None else time_left()
        if left_ms is not None and seconds * 1000 >= left_ms:
            raise DependencyError(
                failure.service,
                failure.operation,
                failure.code,
                f"{failure.message}; not retried: a wait of {seconds:g} s would not end "
                f"within the time left for this write ({max(0.0, left_ms) / 1000:.1f} s)",
                transient=True,
            )
        self._sleep(seconds)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(MAX_WAIT_S, max(0.0, retry_after))
        ceiling = min(MAX_WAIT_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
        return self._jitter.uniform(ceiling / 2, ceiling)

    def _headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "text/plain; charset=utf-8",
            "Accept": "application/json",
            "User-Agent": "iot-telemetry-processor",
        }
        token = self._token.token()
        if token:
            scheme = "Bearer" if self._api == "v3" else "Token"
            headers["Authorization"] = f"{scheme} {token}"
        return headers

    def _post(self, body: bytes, timeout: Any = None) -> _Answer:
        import urllib3  # noqa: PLC0415

        options: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        try:
            response = self._http.request(
                "POST", self._url, body=body, headers=self._headers(), redirect=False, **options
            )
        except urllib3.exceptions.SSLError as exc:
            verify = "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate" in str(exc).lower()
            raise DependencyError(
                "influxdb", "Write", "TLSError", _clip(str(exc)), transient=not verify
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise DependencyError(
                "influxdb", "Write", type(exc).__name__, _clip(str(exc)), transient=True
            ) from None
        return _answer(response)

    def _where(self) -> str:
        return f"{self._api} endpoint, database/bucket {self._database!r}"

    def _refusal(self, answer: _Answer, attempts: int = MAX_ATTEMPTS) -> DependencyError:
        """The error for an answer that refuses the request itself, after `attempts`."""
        status = answer.status
        where = self._where()
        if status == 401:
            what = "the token was refused (401); check INFLUXDB_TOKEN_SECRET_ARN and the token"
        elif status == 403:
            what = "the token may not write here (403)"
        elif status == 404:
            what = "not found (404): no such database or bucket, or the wrong INFLUXDB_API"
        elif status == 429 or status >= 500:
            what = f"still failing after {attempts} attempt{'s' if attempts > 1 else ''} ({status})"
        else:
            what = f"request refused ({status})"
        message = f"{what} [{where}]" + (f": {answer.message}" if answer.message else "")
        transient = status == 429 or status >= 500
        return DependencyError("influxdb", "Write", str(status), message, transient=transient)


def _answer(response: Any) -> _Answer:
    text = (response.data or b"").decode("utf-8", errors="replace")
    body: Any = None
    if text.strip().startswith("{"):
        try:
            body = json.loads(text)
        except ValueError:
            body = None
    message = ""
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("error") or "")
    message = message or str(response.headers.get("X-Influxdb-Error") or "") or text.strip()
    return _Answer(response.status, _clip(message), body, _retry_after(response.headers))


def _retry_after(headers: Any) -> float | None:
    """Retry-After in seconds, from seconds or an HTTP date; None when absent."""
    value = headers.get("Retry-After")
    if not value:
        return None
    value = str(value).strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"
