"""The InfluxDB writer and what each store answers: stored, refused points,
misconfiguration, throttling and failures, request limits, the token, TLS.

InfluxDB 1.x answers come from a real influxd; InfluxDB 2 and 3 from the local
server that answers as their documentation and source say.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import math
import re
import socket
import ssl
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import boto3
import pytest
import urllib3
from moto import mock_aws

from telemetry.adapters.influxdb import (
    MAX_ATTEMPTS,
    MAX_BODY_BYTES,
    MAX_LINES_PER_REQUEST,
    MAX_WAIT_S,
    InfluxRecords,
    InfluxWriter,
    Point,
    SecretsManagerToken,
    StaticToken,
    TokenSource,
    dialect_for,
    http_pool,
    token_from_secret,
)
from telemetry.core.messages import Reading
from telemetry.errors import DependencyError
from tests.influxdb_server import Canned, FakeInflux, Influxd, QuietHTTPServer, free_port
from tests.strategies import NOW_MS

TOKEN = "s3cr3t-write-token-never-shown"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:influx-AbCdEf"


def readings(count: int, start_ms: int = NOW_MS, device: str = "pump-17") -> list[Reading]:
    return [
        Reading(device, f"temp-{i % 50}", 20.0 + i % 7, start_ms + i, "temperature", "C", "line-3")
        for i in range(count)
    ]


def points(items: list[Reading], api: str = "v3") -> list[tuple[Point, object]]:
    records = InfluxRecords(dialect_for(api))
    return [(records.reading(r), r) for r in items]


class Sleeps:
    """Records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def writer(
    server: FakeInflux | Influxd,
    api: str = "v3",
    *,
    database: str = "telemetry",
    token: TokenSource | None = None,
    sleeps: Sleeps | None = None,
    http: Any = None,
    **options: Any,
) -> InfluxWriter:
    if isinstance(server, FakeInflux) and token is None:
        server.tokens.add(TOKEN)
    return InfluxWriter(
        url=server.url,
        api=api,
        database=database,
        token=token or StaticToken(TOKEN),
        http=http or http_pool(),
        sleep=sleeps or Sleeps(),
        **options,
    )


# ---------------------------------------------------------------- requests


def test_v3_writes_with_a_bearer_token_and_millisecond_precision(fake_v3: FakeInflux) -> None:
    # Given three readings
    # When they are written through /api/v3/write_lp
    rejected = writer(fake_v3, "v3").write(points(readings(3)))

    # Then one request carried them, authorised, every point stored
    assert rejected == []
    (request,) = fake_v3.requests
    assert request.path == "/api/v3/write_lp"
    assert request.query == {
        "db": "telemetry",
        "precision": "millisecond",
        "accept_partial": "true",
    }
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert len(fake_v3.stored("reading")) == 3


def test_v2_writes_to_the_bucket_of_the_org_with_a_token_header(fake_v2: FakeInflux) -> None:
    # Given readings, When written through /api/v2/write to InfluxDB 2
    rejected = writer(fake_v2, "v2", org="plant").write(points(readings(2), "v2"))
    # Then the request names bucket, org and precision, with "Token" auth
    assert rejected == []
    (request,) = fake_v2.requests
    assert (request.path, request.query) == (
        "/api/v2/write",
        {"bucket": "telemetry", "precision": "ms", "org": "plant"},
    )
    assert request.headers["Authorization"] == f"Token {TOKEN}"
    assert len(fake_v2.stored()) == 2


def test_v1_writes_to_the_database_of_a_real_influxdb(influxd: Influxd, database: str) -> None:
    # Given readings, When written through /write to a real InfluxDB 1.x without auth
    rejected = writer(influxd, "v1", database=database, token=StaticToken(None)).write(
        points(readings(4), "v1")
    )
    # Then they are stored
    assert rejected == []
    assert len(influxd.rows(database, "SELECT * FROM reading")) == 4


def test_requests_stop_at_five_thousand_lines(fake_v3: FakeInflux) -> None:
    # Given 12,001 readings
    # When they are written in one call
    target = writer(fake_v3)
    rejected = target.write(points(readings(12_001)))

    # Then they went in the fewest requests of at most 5,000 lines, all stored
    assert rejected == []
    sizes = [len(r.body.splitlines()) for r in fake_v3.requests]
    assert sizes == [5_000, 5_000, 2_001]
    assert target.records_per_call == MAX_LINES_PER_REQUEST
    assert len(fake_v3.stored()) == 12_001


def test_requests_stop_at_one_mebibyte(fake_v3: FakeInflux) -> None:
    # Given readings whose labels make each line ~800 bytes
    long = [
        Reading("pump-17", f"temp-{i}", 1.0, NOW_MS + i, "t" * 250, "u" * 250, "l" * 250)
        for i in range(3_000)
    ]
    # When they are written
    rejected = writer(fake_v3).write(points(long))
    # Then no request body is over 1 MiB, the fewest requests were used, all stored
    bodies = [len(r.body.encode()) for r in fake_v3.requests]
    assert rejected == []
    assert max(bodies) <= MAX_BODY_BYTES
    assert len(bodies) == math.ceil(sum(bodies) / MAX_BODY_BYTES)
    assert len(fake_v3.stored()) == 3_000


# ---------------------------------------------------------------- refused points


def test_v3_partial_write_refuses_the_listed_lines_and_keeps_the_rest(
    fake_v3: FakeInflux,
) -> None:
    # Given a bucket where `value` is already a string (a type conflict for our floats)
    fake_v3.field_types[("telemetry", "reading", "value")] = str
    conflicting = readings(3)
    good = Point('reading,deviceId=x,sensorId=y value="text" 1')
    pairs = [*points(conflicting), (good, "other")]

    # When the points are written
    rejected = writer(fake_v3).write(pairs)

    # Then the three refused lines come back with InfluxDB 3's reason, in one request
    assert [r.source for r in rejected] == conflicting
    assert all("invalid column type for column 'value'" in r.reason for r in rejected)
    assert [r.record for r in rejected] == [p.line for p, _ in pairs[:3]]
    assert len(fake_v3.requests) == 1
    assert [p.fields for p in fake_v3.stored()] == [{"value": "text"}]


def test_v3_lines_beyond_the_hundred_it_lists_are_sent_again(fake_v3: FakeInflux) -> None:
    # Given 250 readings of which the server refuses every one older than retention,
    # 150 of them, while it lists at most 100 refused lines per answer
    fake_v3.retention_ms, fake_v3.now_ms = 60_000, NOW_MS
    old, fresh = readings(150, NOW_MS - 3_600_000), readings(100, NOW_MS, device="pump-18")
    mixed = [r for pair in zip(old, fresh[:100], strict=False) for r in pair] + old[100:]

    # When they are written
    rejected = writer(fake_v3).write(points(mixed))

    # Then every old reading is found, with its reason, and every fresh one is stored
    assert sorted(id(r.source) for r in rejected) == sorted(map(id, old))
    assert {r.reason for r in rejected} == {"write of point outside of retention period"}
    assert len(fake_v3.stored()) == 100
    assert len(fake_v3.requests) == 2


def test_influxdb2_counts_refused_points_and_the_writer_finds_them(fake_v2: FakeInflux) -> None:
    # Given 64 readings, 3 of them older than the bucket's retention, and InfluxDB 2,
    # which answers 422 "... dropped=3" without saying which
    fake_v2.retention_ms, fake_v2.now_ms = 60_000, NOW_MS
    items = readings(64)
    old_positions = (5, 6, 40)
    for position in old_positions:
        items[position].time_ms -= 3_600_000

    # When they are written
    sink = writer(fake_v2, "v2", org="plant")
    rejected = sink.write(points(items, "v2"))

    # Then exactly those three are found, every other point is stored, and the search
    # took a bounded number of requests (halving: at most 2 per refused point per level)
    assert sorted(items.index(r.source) for r in rejected) == list(old_positions)
    assert all("outside retention" in r.reason for r in rejected)
    assert len(fake_v2.stored()) == 61
    assert sink.calls <= 1 + 2 * len(old_positions) * math.ceil(math.log2(len(items)))


def test_influxdb2_refuses_a_batch_with_a_malformed_line_and_the_rest_is_still_stored(
    fake_v2: FakeInflux,
) -> None:
    # Given a batch in which one line does not parse: InfluxDB 2 then stores nothing (400)
    good = points(readings(9), "v2")
    broken = (Point("reading,deviceId=pump-17 value= 5"), "broken")
    pairs = [*good[:4], broken, *good[4:]]

    # When it is written
    rejected = writer(fake_v2, "v2", org="plant").write(pairs)

    # Then the broken line comes back with the parser's reason and the rest is stored
    assert [r.source for r in rejected] == ["broken"]
    assert "unable to parse" in rejected[0].reason
    assert len(fake_v2.stored()) == 9


def test_a_real_influxdb_drops_points_beyond_retention_and_the_writer_finds_exactly_those(
    influxd: Influxd,
) -> None:
    # Given a database keeping 1 hour, and 200 readings of which 7, spread out, are older
    database = influxd.create_database("short_retention", duration="1h")
    now_ms = int(dt.datetime.now(tz=dt.UTC).timestamp() * 1000)
    items = readings(200, now_ms - 60_000)
    old_positions = (0, 13, 14, 99, 150, 198, 199)
    for position in old_positions:
        items[position].time_ms = now_ms - 3 * 3_600_000 - position

    # When they are written through /write: 1.x says only "partial write ... dropped=7"
    sink = writer(influxd, "v1", database=database, token=StaticToken(None))
    rejected = sink.write(points(items, "v1"))

    # Then the writer found exactly those seven, with influxd's reason, and stored the rest
    assert sorted(items.index(r.source) for r in rejected) == list(old_positions)
    assert {r.reason for r in rejected} == {"partial write: points beyond retention policy"}
    assert len(influxd.rows(database, "SELECT * FROM reading")) == 193
    assert sink.calls <= 1 + 2 * len(old_positions) * math.ceil(math.log2(len(items)))
    influxd.query(f'DROP DATABASE "{database}"')


def test_a_real_influxdb_refuses_a_type_conflict_for_that_point_only(
    influxd: Influxd, database: str
) -> None:
    # Given a database where reading.value is already a string
    assert influxd.write(database, f'reading,deviceId=x,sensorId=y value="text" {NOW_MS}')[0] == 204
    items = readings(20)

    # When float readings are written, Then all twenty come back as type conflicts
    rejected = writer(influxd, "v1", database=database, token=StaticToken(None)).write(
        points(items, "v1")
    )
    assert len(rejected) == 20
    assert all("field type conflict" in r.reason for r in rejected)


def test_a_point_that_cannot_be_line_protocol_is_refused_without_being_sent(
    fake_v3: FakeInflux,
) -> None:
    # Given a reading whose unit contains a newline, among good ones
    bad = Reading("pump-17", "temp-9", 1.0, NOW_MS, "temperature", "C\nF")
    items = [*readings(2), bad]
    # When written, Then it alone comes back, with its reason, and was never sent
    rejected = writer(fake_v3).write(points(items))
    assert [(r.source, r.reason) for r in rejected] == [
        (bad, "cannot be written as line protocol: unit contains a newline")
    ]
    assert "C\nF" not in fake_v3.requests[0].body
    assert len(fake_v3.stored()) == 2


# ---------------------------------------------------------------- misconfiguration


@pytest.mark.parametrize(
    ("canned", "expected"),
    [
        (Canned(403), "may not write here (403)"),
        (Canned(404, {"code": "not found", "message": 'bucket "x" not found'}), "not found (404)"),
        (Canned(400, {"error": "missing query parameter 'db'"}), "request refused (400)"),
        (Canned(422, {"error": "db name did not start with a number or letter"}), "(422)"),
        (Canned(301, None, {"Location": "https://elsewhere"}), "request refused (301)"),
    ],
)
def test_refusals_of_the_request_itself_raise_as_misconfiguration(
    fake_v3: FakeInflux, canned: Canned, expected: str
) -> None:
    # Given a store that refuses the request itself
    fake_v3.script.append(canned)
    # When points are written, Then it raises, not retryable by itself, nothing quarantined
    with pytest.raises(DependencyError, match=re.escape(expected)) as raised:
        writer(fake_v3).write(points(readings(2)))
    assert raised.value.transient is False
    assert raised.value.service == "influxdb"
    assert TOKEN not in str(raised.value)


def test_a_missing_database_of_a_real_influxdb_raises(influxd: Influxd) -> None:
    with pytest.raises(DependencyError, match="not found") as raised:
        writer(influxd, "v1", database="no_such_db", token=StaticToken(None)).write(
            points(readings(1), "v1")
        )
    assert raised.value.transient is False


def test_the_wrong_api_for_the_engine_raises_not_found(fake_v2: FakeInflux) -> None:
    # Given InfluxDB 2, which has no /api/v3 endpoint
    with pytest.raises(DependencyError, match=r"wrong INFLUXDB_API"):
        writer(fake_v2, "v3").write(points(readings(1)))


# ---------------------------------------------------------------- the token


@pytest.fixture
def secrets() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        with mock_aws():
            yield boto3.client("secretsmanager")


def make_secret(client: Any, value: str) -> str:
    return str(client.create_secret(Name="influx-write", SecretString=value)["ARN"])


def test_a_rotated_token_is_fetched_again_once_on_401(fake_v3: FakeInflux, secrets: Any) -> None:
    # Given the token kept in Secrets Manager, and a writer that has used it
    arn = make_secret(secrets, json.dumps({"token": "old-token"}))
    fake_v3.tokens = {"old-token"}
    token = SecretsManagerToken(arn, secrets)
    sink = writer(fake_v3, token=token)
    sink.write(points(readings(1)))

    # When the token is rotated (new value in the secret, old one revoked)
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({"token": "new-token"}))
    fake_v3.tokens = {"new-token"}
    rejected = sink.write(points(readings(2, NOW_MS + 10)))

    # Then the writer fetched the secret again once, after the 401, and wrote with it
    assert rejected == []
    assert token.fetches == 2
    assert [r.headers["Authorization"] for r in fake_v3.requests] == [
        "Bearer old-token",
        "Bearer old-token",
        "Bearer new-token",
    ]


def test_a_token_refused_again_after_refetching_raises(fake_v3: FakeInflux, secrets: Any) -> None:
    # Given a secret whose token the store does not know
    token = SecretsManagerToken(make_secret(secrets, "revoked-token"), secrets)
    # When points are written, Then after one refetch it raises, naming no token
    with pytest.raises(DependencyError, match="401") as raised:
        writer(fake_v3, token=token).write(points(readings(1)))
    assert raised.value.transient is False
    assert token.fetches == 2
    assert len(fake_v3.requests) == 2
    assert "revoked-token" not in str(raised.value)


def test_a_plain_token_refused_raises_at_once(fake_v3: FakeInflux) -> None:
    with pytest.raises(DependencyError, match="401"):
        writer(fake_v3, token=StaticToken("wrong")).write(points(readings(1)))
    assert len(fake_v3.requests) == 1


def test_the_token_is_fetched_once_per_cold_start(fake_v3: FakeInflux, secrets: Any) -> None:
    token = SecretsManagerToken(make_secret(secrets, "write-token"), secrets)
    sink = writer(fake_v3, token=token)
    for i in range(5):
        sink.write(points(readings(1, NOW_MS + i)))
    assert token.fetches == 1


@pytest.mark.parametrize(
    ("secret", "token"),
    [
        ("write-token", "write-token"),
        ("  write-token\n", "write-token"),
        ('{"token": "write-token", "note": "rotated monthly"}', "write-token"),
    ],
)
def test_the_secret_is_the_token_or_json_with_a_token_key(secret: str, token: str) -> None:
    assert token_from_secret(secret, SECRET_ARN) == token


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ('{"username": "root-user", "password": "hunter2"}', "without a string 'token' key"),
        ('{"token": ""}', "without a string 'token' key"),
        ('{"token": "abc"', "not JSON"),
        ("", "is empty"),
        (None, "no SecretString"),
    ],
)
def test_a_secret_without_a_token_is_misconfiguration_and_shows_nothing_of_it(
    secret: str | None, reason: str
) -> None:
    with pytest.raises(DependencyError, match=reason) as raised:
        token_from_secret(secret, SECRET_ARN)
    assert raised.value.transient is False
    assert SECRET_ARN in str(raised.value)
    for fragment in ("hunter2", "abc", "root-user"):
        assert fragment not in str(raised.value)
    assert raised.value.__cause__ is None


def test_a_secret_the_function_may_not_read_raises_as_misconfiguration(secrets: Any) -> None:
    # Given a secret ARN that does not exist
    token = SecretsManagerToken(SECRET_ARN, secrets)
    with pytest.raises(DependencyError, match="ResourceNotFoundException") as raised:
        token.token()
    assert raised.value.transient is False


def test_tokens_are_hidden_in_representations() -> None:
    assert TOKEN not in repr(StaticToken(TOKEN))
    assert "secret" in repr(SecretsManagerToken(SECRET_ARN, None))


# ---------------------------------------------------------------- transient failures


def test_throttling_is_retried_after_the_wait_retry_after_asks(fake_v3: FakeInflux) -> None:
    # Given a store that throttles twice, asking for 2 s and then 30 s
    fake_v3.script += [
        Canned(429, None, {"Retry-After": "2"}),
        Canned(503, None, {"Retry-After": "30"}),
    ]
    sleeps = Sleeps()
    # When points are written
    rejected = writer(fake_v3, sleeps=sleeps).write(points(readings(3)))
    # Then it waited as asked (capped), and the third attempt stored them
    assert rejected == []
    assert sleeps.waits == [2.0, MAX_WAIT_S]
    assert len(fake_v3.stored()) == 3


def test_a_store_failing_on_every_attempt_raises_as_transient(fake_v3: FakeInflux) -> None:
    # Given a store answering 500 every time
    fake_v3.script += [Canned(500, "internal error")] * MAX_ATTEMPTS
    sleeps = Sleeps()
    # When points are written, Then after MAX_ATTEMPTS with growing backoff it raises
    with pytest.raises(DependencyError, match="after 4 attempts") as raised:
        writer(fake_v3, sleeps=sleeps).write(points(readings(1)))
    assert raised.value.transient is True
    assert len(fake_v3.requests) == MAX_ATTEMPTS
    assert len(sleeps.waits) == MAX_ATTEMPTS - 1
    assert sleeps.waits == sorted(sleeps.waits)


class Budget(Sleeps):
    """The time a write may still spend, on a clock that only the writer's
    waits move (no real sleeping): give it as `sleep` and as `time_left_ms`."""

    def __init__(self, left_ms: float) -> None:
        super().__init__()
        self.left_ms = left_ms

    def __call__(self, seconds: float) -> None:
        super().__call__(seconds)
        self.left_ms -= seconds * 1000

    def time_left_ms(self) -> float:
        return self.left_ms


def test_waits_stop_where_the_invocation_has_no_time_left_for_them(fake_v3: FakeInflux) -> None:
    # Given a store throttling every request and asking for 10 s each time, and a write
    # that may still spend 15 s (an invocation's 25 s less what it keeps for itself)
    fake_v3.script += [Canned(429, None, {"Retry-After": "10"})] * MAX_ATTEMPTS
    budget = Budget(15_000)

    # When points are written
    with pytest.raises(DependencyError, match="time left") as raised:
        writer(fake_v3, sleeps=budget).write(points(readings(1)), time_left_ms=budget.time_left_ms)

    # Then it made the one wait that fit, then failed at once as transient, with time
    # still left: not after every attempt, not past its deadline
    assert raised.value.transient is True
    assert raised.value.code == "429"
    assert budget.waits == [10.0]
    assert len(fake_v3.requests) == 2
    assert budget.left_ms > 0


def test_a_write_with_no_time_left_fails_at_once_without_sending(fake_v3: FakeInflux) -> None:
    # Given a write whose invocation has no time left for it
    budget = Budget(0)

    # When points are written, Then it fails as transient and sends nothing
    with pytest.raises(DependencyError, match="time left") as raised:
        writer(fake_v3, sleeps=budget).write(points(readings(1)), time_left_ms=budget.time_left_ms)
    assert raised.value.transient is True
    assert fake_v3.requests == []


class RecordingPool:
    """An HTTP pool that answers 204 and keeps the options of every request."""

    def __init__(self) -> None:
        self.options: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **options: Any) -> Any:
        self.options.append(options)
        return urllib3.HTTPResponse(body=b"", status=204, headers={})


def test_a_request_may_not_take_longer_than_the_time_left(fake_v3: FakeInflux) -> None:
    # Given a write with 2.5 s left, less than a request's usual timeouts
    budget = Budget(2_500)
    pool = RecordingPool()

    # When points are written
    writer(fake_v3, sleeps=budget, http=pool).write(
        points(readings(1)), time_left_ms=budget.time_left_ms
    )

    # Then the request was sent with timeouts that end within what is left
    (options,) = pool.options
    timeout = options["timeout"]
    assert timeout.connect_timeout <= 2.5
    assert timeout.read_timeout <= 2.5


def test_without_a_deadline_throttling_is_retried_as_the_store_asks(fake_v3: FakeInflux) -> None:
    # Given the same throttling store, and a write that is given no deadline
    fake_v3.script += [Canned(429, None, {"Retry-After": "10"})] * (MAX_ATTEMPTS - 1)
    sleeps = Sleeps()

    # When points are written, Then every attempt is made, each after the wait asked
    assert writer(fake_v3, sleeps=sleeps).write(points(readings(1)), time_left_ms=None) == []
    assert sleeps.waits == [10.0] * (MAX_ATTEMPTS - 1)
    assert len(fake_v3.stored()) == 1


def test_a_dropped_connection_is_retried(fake_v3: FakeInflux) -> None:
    fake_v3.script.append(Canned(drop=True))
    rejected = writer(fake_v3).write(points(readings(2)))
    assert rejected == []
    assert len(fake_v3.stored()) == 2


def test_a_store_that_cannot_be_reached_raises_as_transient() -> None:
    # Given nothing listening where the store should be
    unreachable = FakeInflux()
    unreachable.url = f"http://127.0.0.1:{free_port()}"
    sleeps = Sleeps()
    # When points are written, Then it raises as transient after its retries
    with pytest.raises(DependencyError, match="NewConnectionError") as raised:
        writer(unreachable, sleeps=sleeps).write(points(readings(1)))
    assert raised.value.transient is True
    assert len(sleeps.waits) == MAX_ATTEMPTS - 1


def test_a_store_too_slow_to_answer_times_out_and_raises_as_transient(
    fake_v3: FakeInflux,
) -> None:
    # Given a store that takes longer than the read timeout, every time
    fake_v3.script += [Canned(delay_s=0.5)] * MAX_ATTEMPTS
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=0.1))
    with pytest.raises(DependencyError, match="ReadTimeoutError") as raised:
        writer(fake_v3, http=pool).write(points(readings(1)))
    assert raised.value.transient is True


def test_a_request_too_large_for_the_store_is_split_and_resent(fake_v2: FakeInflux) -> None:
    # Given InfluxDB 2 refusing bodies over 2 KiB with 413
    fake_v2.max_body_bytes = 2048
    # When 40 readings (~4 KiB) are written, Then they were split until they fit, all stored
    rejected = writer(fake_v2, "v2", org="plant").write(points(readings(40), "v2"))
    assert rejected == []
    assert len(fake_v2.stored()) == 40
    assert {r.query["bucket"] for r in fake_v2.requests} == {"telemetry"}


def test_influxdb3_max_request_size_is_split_too(fake_v3: FakeInflux) -> None:
    # Given InfluxDB 3, which says "max request size ... exceeded" with a 500
    fake_v3.max_body_bytes = 2048
    sleeps = Sleeps()
    rejected = writer(fake_v3, sleeps=sleeps).write(points(readings(40)))
    assert rejected == []
    assert len(fake_v3.stored()) == 40
    assert sleeps.waits == []  # not retried as a failure: split at once


def test_a_single_line_too_large_is_refused(fake_v2: FakeInflux) -> None:
    fake_v2.max_body_bytes = 50
    rejected = writer(fake_v2, "v2", org="plant").write(points(readings(1), "v2"))
    assert [r.reason for r in rejected] == ["too large for the store (413)"]


# ---------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(tz=dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def https_store(tls_files: tuple[Path, Path]) -> Iterator[FakeInflux]:
    """A store on https://127.0.0.1 that answers 204 to every write."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return

    server = QuietHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    ).start()
    store = FakeInflux()
    store.url = f"https://127.0.0.1:{server.server_address[1]}"
    try:
        yield store
    finally:
        server.shutdown()
        server.server_close()


def test_a_certificate_the_function_does_not_trust_is_refused(https_store: FakeInflux) -> None:
    # Given a store whose certificate no trusted authority signed
    # When the function's pool (TLS verification on) writes to it
    with pytest.raises(DependencyError, match="TLSError") as raised:
        writer(https_store).write(points(readings(1)))
    # Then it refuses the connection, as misconfiguration, without retrying
    assert raised.value.transient is False


def test_a_trusted_certificate_is_accepted(
    https_store: FakeInflux, tls_files: tuple[Path, Path]
) -> None:
    rejected = writer(https_store, http=http_pool(ca_certs=str(tls_files[0]))).write(
        points(readings(1))
    )
    assert rejected == []


def test_an_unknown_api_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown InfluxDB API"):
        InfluxWriter(
            url="http://127.0.0.1:1", api="v4", database="d", token=StaticToken(None), http=None
        )


def test_retry_after_as_an_http_date_or_garbage(fake_v3: FakeInflux) -> None:
    # Given a store asking to wait until a date 5 s ahead, then giving an unreadable value
    from email.utils import format_datetime

    later = format_datetime(dt.datetime.now(tz=dt.UTC) + dt.timedelta(seconds=5), usegmt=True)
    fake_v3.script += [
        Canned(503, None, {"Retry-After": later}),
        Canned(429, None, {"Retry-After": "soon"}),
    ]
    sleeps = Sleeps()
    # When points are written
    rejected = writer(fake_v3, sleeps=sleeps).write(points(readings(1)))
    # Then it waited until about that date, then its own backoff, and wrote
    assert rejected == []
    assert 3.0 < sleeps.waits[0] <= 5.0
    assert 0 < sleeps.waits[1] <= 0.4


def test_a_line_longer_than_a_whole_request_is_refused_without_sending(
    fake_v3: FakeInflux,
) -> None:
    rejected = writer(fake_v3, max_bytes=100).write(points(readings(1)))
    assert [r.reason for r in rejected] == ["line longer than a request"]
    assert fake_v3.requests == []


@pytest.mark.parametrize(
    "canned",
    [
        Canned(
            400, {"error": "partial write of line protocol occurred", "data": [{"line_number": 99}]}
        ),
        Canned(400, '{"error": "partial write: unable to parse'),
    ],
)
def test_an_answer_that_names_no_line_of_the_request_is_resolved_by_halving(
    fake_v3: FakeInflux, canned: Canned
) -> None:
    # Given a partial write whose answer lists no line of this request, or is cut short
    fake_v3.script.append(canned)
    # When two points are written, Then each is sent again alone, and both are stored
    rejected = writer(fake_v3).write(points(readings(2)))
    assert rejected == []
    assert len(fake_v3.requests) == 3
    assert len(fake_v3.stored()) == 2


def test_the_fake_store_prints_no_traceback_for_a_client_that_hung_up(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the fake store, slow to answer a write
    with FakeInflux(script=[Canned(status=204, body="ok", delay_s=0.5)]) as store:
        host, port = urllib.parse.urlsplit(store.url).netloc.split(":")
        request = f"POST /api/v3/write_lp?db=telemetry HTTP/1.1\r\nHost: {host}\r\n"
        request += "Content-Length: 0\r\n\r\n"

        # When a client sends one and hangs up (a reset) while the store prepares its answer
        with socket.create_connection((host, int(port))) as client:
            client.sendall(request.encode())
            for _ in range(1_000):
                if store.requests:
                    break
                time.sleep(0.01)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        closed = store.wait_closed()

    # Then the store noticed the client had gone, and printed nothing about it
    assert closed
    assert store.hung_up == 1
    assert capsys.readouterr().err == ""
