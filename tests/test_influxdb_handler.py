"""The function end to end with InfluxDB as the store: moto for AWS, a real
influxd 1.x (or the local InfluxDB 3) for the time series.

The same stories as with Timestream: what arrived, what failed, what the
stores hold afterwards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from telemetry import handler
from telemetry.adapters.influxdb import MAX_ATTEMPTS
from telemetry.errors import ConfigurationError, DependencyError
from telemetry.settings import Settings
from tests.influxdb_server import Canned, FakeInflux, Influxd, free_port
from tests.localaws import Context, LocalAws, fail, local_stack, message, record_calls

MINUTE = 60_000


def now_ms() -> int:
    return (time.time_ns() // 1_000_000) // 1000 * 1000


@pytest.fixture
def aws() -> Iterator[LocalAws]:
    with local_stack(["pump-17", "pump-18"], now_ms() + MINUTE) as stack:
        yield stack


def influx_env(url: str, database: str, api: str = "v1", **extra: str) -> dict[str, str]:
    return {
        "TIMESERIES_STORE": "influxdb",
        "INFLUXDB_URL": url,
        "INFLUXDB_API": api,
        "INFLUXDB_DATABASE": database,
        **extra,
    }


def statuses(alerts: list[dict[str, Any]]) -> list[str]:
    return [a["status"] for a in alerts]


def test_a_hot_pump_alerts_once_per_change_and_influxdb_holds_readings_and_history(
    aws: LocalAws, influxd: Influxd, database: str
) -> None:
    # Given the worked example of the default rule, and InfluxDB as the store
    start = now_ms() - 20_000
    values = [70, 80, 95, 96, 89, 88, 74, 73, 70]
    rt, clients = aws.runtime(**influx_env(influxd.url, database))
    calls = record_calls(clients)

    # When each message arrives in its own invocation
    for i, value in enumerate(values):
        handler.handle(message("pump-17", start + i * 1000, ("temp-1", value)), rt)

    # Then operators heard each change once, as with Timestream
    assert statuses(aws.alerts()) == ["RAISED", "ESCALATED", "DEESCALATED", "RESOLVED"]
    # and InfluxDB holds every reading and the alert history, with the Timestream names
    readings = influxd.rows(database, "SELECT * FROM reading GROUP BY *")
    assert [r["value"] for r in readings] == values
    assert {(r["deviceId"], r["sensorId"], r["type"], r["unit"]) for r in readings} == {
        ("pump-17", "temp-1", "temperature", "C")
    }
    history = influxd.rows(database, "SELECT * FROM alert GROUP BY *")
    assert sorted((r["time"], r["status"]) for r in history) == [
        (start + 1000, "RAISED"),
        (start + 2000, "ESCALATED"),
        (start + 5000, "DEESCALATED"),
        (start + 7000, "RESOLVED"),
    ]
    assert len({r["alertId"] for r in history}) == 1
    # and the function never built or called a Timestream client
    assert clients.timestream is None
    assert clients.secretsmanager is None
    assert not [c for c in calls.calls if c[0] == "timestream-write"]


def test_a_retried_invocation_rewrites_its_points_without_doubling_anything(
    aws: LocalAws, influxd: Influxd, database: str
) -> None:
    # Given an invocation whose alert publish fails after its points were written
    start = now_ms() - 10_000
    event = message("pump-17", start, ("temp-1", 95), ("temp-2", 50))
    rt, clients = aws.runtime(**influx_env(influxd.url, database))
    fail(clients.sns, "Publish", "InternalError")

    # When Lambda runs it, it fails, and Lambda retries it
    with pytest.raises(DependencyError):
        handler.handle(event, rt)
    handler.handle(event, rt)

    # Then the alert was published once and InfluxDB keeps one copy of each point
    assert statuses(aws.alerts()) == ["RAISED"]
    assert len(influxd.rows(database, "SELECT * FROM reading")) == 2
    assert len(influxd.rows(database, "SELECT * FROM alert")) == 1


def test_points_influxdb_refuses_go_to_the_dead_letter_queue_with_their_line(
    aws: LocalAws, influxd: Influxd
) -> None:
    # Given a database keeping one hour, and a late batch with a reading from 3 hours ago
    database = influxd.create_database("one_hour", duration="1h")
    fresh, old = now_ms() - 5_000, now_ms() - 3 * 3_600_000
    rt, _ = aws.runtime(**influx_env(influxd.url, database))
    event = message("pump-17", fresh, ("temp-1", 60), ("temp-2", 61))
    event["data"].append({"sensorId": "temp-3", "value": 62.5, "timestamp": old})

    # When it is processed, the invocation succeeds
    summary = handler.handle(event, rt)

    # Then the refused point is in the dead-letter queue with the store's reason and the
    # line, and the other readings are stored
    (item,) = aws.dead_letters()
    assert item["source"] == "influxdb"
    assert item["code"] == "influxdb_rejected"
    assert item["reason"] == "influxdb_rejected: partial write: points beyond retention policy"
    assert item["deviceId"] == "pump-17"
    assert item["payload"] == f"reading,deviceId=pump-17,sensorId=temp-3 value=62.5 {old}"
    assert summary["readingsStored"] == 2
    assert sorted(
        r["sensorId"] for r in influxd.rows(database, "SELECT * FROM reading GROUP BY *")
    ) == [
        "temp-1",
        "temp-2",
    ]
    influxd.query(f'DROP DATABASE "{database}"')


def test_a_store_that_is_down_fails_the_invocation_before_any_alert_is_published(
    aws: LocalAws, influxd: Influxd, database: str
) -> None:
    # Given InfluxDB unreachable
    start = now_ms() - 10_000
    event = message("pump-17", start, ("temp-1", 95))
    down, _ = aws.runtime(**influx_env(f"http://127.0.0.1:{free_port()}", database))
    sleeps: list[float] = []
    down.pipeline._timeseries._sleep = sleeps.append  # type: ignore[attr-defined]

    # When the invocation runs, Then it raises as transient, and nobody was alerted
    with pytest.raises(DependencyError) as raised:
        handler.handle(event, down)
    assert raised.value.transient is True
    assert aws.alerts() == []

    # When Lambda retries once the store is back, Then the alert goes out once, stored too
    up, _ = aws.runtime(**influx_env(influxd.url, database))
    handler.handle(event, up)
    assert statuses(aws.alerts()) == ["RAISED"]
    assert len(influxd.rows(database, "SELECT * FROM alert")) == 1


@pytest.fixture
def secret(aws: LocalAws) -> str:
    client = boto3.client("secretsmanager", region_name="us-east-1")
    return str(
        client.create_secret(Name="influx", SecretString=json.dumps({"token": "write-token"}))[
            "ARN"
        ]
    )


def test_influxdb3_with_the_token_in_secrets_manager(
    aws: LocalAws, fake_v3: FakeInflux, secret: str
) -> None:
    # Given InfluxDB 3 and the token kept in Secrets Manager
    rt, clients = aws.runtime(
        **influx_env(fake_v3.url, "telemetry", "v3", INFLUXDB_TOKEN_SECRET_ARN=secret)
    )
    calls = record_calls(clients)

    # When two invocations run
    handler.handle(message("pump-17", now_ms() - 2000, ("temp-1", 95)), rt)
    handler.handle(message("pump-17", now_ms() - 1000, ("temp-1", 50)), rt)

    # Then the secret was read once, and every point of each invocation went in one request
    assert calls.count("secretsmanager", "GetSecretValue") == 1
    assert [len(r.body.splitlines()) for r in fake_v3.requests] == [2, 2]
    assert {r.headers["Authorization"] for r in fake_v3.requests} == {"Bearer write-token"}
    assert [dict(p.tags)["status"] for p in fake_v3.stored("alert")] == ["RAISED", "RESOLVED"]


def test_a_store_asking_for_a_wait_the_invocation_cannot_afford_fails_it_at_once(
    aws: LocalAws, fake_v3: FakeInflux
) -> None:
    # Given a store throttling with Retry-After 10, and an invocation with 15 s left:
    # waiting 10 s would eat into the time it keeps to release its claims
    fake_v3.script += [Canned(429, None, {"Retry-After": "10"})] * MAX_ATTEMPTS
    rt, _ = aws.runtime(**influx_env(fake_v3.url, "telemetry", "v3", INFLUXDB_TOKEN="write-token"))
    event = message("pump-17", now_ms() - 5_000, ("temp-1", 95))

    # When the invocation runs
    with pytest.raises(DependencyError, match="time left") as raised:
        handler.handle(event, rt, Context("request-1", remaining_ms=15_000))

    # Then it failed as transient after one request, without waiting, and released the
    # alert's claim, so that Lambda's retry (the store healthy again) delivers it at once
    assert raised.value.transient is True
    assert len(fake_v3.requests) == 1
    assert "claim" not in (aws.state_item("pump-17") or {})["outbox"]["S"]
    fake_v3.script.clear()
    handler.handle(event, rt, Context("request-1"))
    assert statuses(aws.alerts()) == ["RAISED"]
    assert len(fake_v3.stored("alert")) == 1


def test_a_stream_batch_writes_every_point_of_the_batch_in_as_few_requests(
    aws: LocalAws, fake_v3: FakeInflux
) -> None:
    from telemetry.local.streams import kinesis_event

    # Given a Kinesis batch of 3,000 messages of two readings (6,000 points and alerts)
    start = now_ms() - 3_000_000
    batch = [
        message("pump-17" if i % 2 else "pump-18", start + i * 1000, ("temp-1", 60), ("press-1", 5))
        for i in range(3_000)
    ]
    rt, _ = aws.runtime(**influx_env(fake_v3.url, "telemetry", "v3", INFLUXDB_TOKEN="write-token"))

    # When it is processed
    handler.handle(kinesis_event(batch), rt)

    # Then two requests carried all 6,000 points (5,000 lines per request at most)
    assert [len(r.body.splitlines()) for r in fake_v3.requests] == [5_000, 1_000]
    assert len(fake_v3.stored("reading")) == 6_000


# ---------------------------------------------------------------- configuration

BASE = {
    "ALERTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:alerts",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/dlq",
    "STATE_TABLE": "alert-state",
}
REMOTE = "https://abc-123.us-east-1.timestream-influxdb.amazonaws.com:8181"
ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:influx-AbCdEf"


def test_influxdb_needs_no_timestream_variables() -> None:
    settings = Settings.from_env(
        BASE | influx_env(REMOTE, "telemetry", "v3", INFLUXDB_TOKEN_SECRET_ARN=ARN)
    )
    assert (settings.timeseries_store, settings.timestream_db) == ("influxdb", None)
    assert settings.influxdb_api == "v3"


def test_timestream_stays_the_default_and_still_needs_its_variables() -> None:
    with pytest.raises(ConfigurationError, match="TIMESTREAM_DB: is required but not set"):
        Settings.from_env(BASE)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TIMESERIES_STORE": "influx"}, "TIMESERIES_STORE"),
        (influx_env(REMOTE, "telemetry", "v3"), "INFLUXDB_TOKEN_SECRET_ARN: is required"),
        ({"TIMESERIES_STORE": "influxdb", "INFLUXDB_DATABASE": "t"}, "INFLUXDB_URL: is required"),
        ({"TIMESERIES_STORE": "influxdb", "INFLUXDB_URL": REMOTE}, "INFLUXDB_DATABASE"),
        (influx_env("http://10.0.0.5:8086", "t"), "INFLUXDB_URL: plain http:// is allowed only"),
        (
            influx_env("https://user:pw@example.com", "t"),
            "INFLUXDB_URL: must not carry credentials",
        ),
        (influx_env("ftp://example.com", "t"), "INFLUXDB_URL: must be an https:// URL"),
        (influx_env("https://example.com:99999", "t"), "INFLUXDB_URL: has an invalid port"),
        (influx_env("https://example.com/?x=1", "t"), "INFLUXDB_URL: must have no query"),
        (influx_env(REMOTE, "t", "v4", INFLUXDB_TOKEN="x"), "INFLUXDB_API"),
        (
            influx_env(REMOTE, "t", INFLUXDB_TOKEN_SECRET_ARN="arn:aws:s3:::x"),
            "INFLUXDB_TOKEN_SECRET_ARN",
        ),
        (
            influx_env(REMOTE, "t", INFLUXDB_TOKEN_SECRET_ARN=ARN, INFLUXDB_TOKEN="tok-123"),
            "INFLUXDB_TOKEN: set only one",
        ),
    ],
)
def test_each_influxdb_setting_is_checked_and_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named) as raised:
        Settings.from_env(BASE | env)
    assert "tok-123" not in str(raised.value)


def test_a_local_influxdb_without_auth_takes_no_token() -> None:
    for url in ("http://127.0.0.1:8086", "http://localhost:8086", "http://[::1]:8086"):
        assert Settings.from_env(BASE | influx_env(url, "t")).influxdb_token is None


def test_a_plain_token_never_shows_in_the_settings() -> None:
    settings = Settings.from_env(BASE | influx_env(REMOTE, "t", INFLUXDB_TOKEN="tok-123"))
    assert "tok-123" not in repr(settings)
    assert "tok-123" not in str(settings.model_dump())


def test_empty_optional_variables_count_as_unset() -> None:
    settings = Settings.from_env(
        BASE
        | influx_env(REMOTE, "t", INFLUXDB_TOKEN_SECRET_ARN=ARN, INFLUXDB_ORG="", INFLUXDB_TOKEN="")
    )
    assert (settings.influxdb_org, settings.influxdb_token) == (None, None)
