"""The function end to end under moto, with the faults moto cannot produce injected.

Each test is one story an operator or a device would tell: what arrived,
what failed, and what the stack holds afterwards.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from telemetry import handler
from telemetry.errors import ConfigurationError, DependencyError
from telemetry.local.streams import kinesis_event
from telemetry.settings import Settings
from tests.localaws import (
    Context,
    LocalAws,
    before,
    fail,
    local_stack,
    message,
    record_calls,
)

NOW = 1_764_237_600_000  # 2025-11-27T10:00:00Z
ROOT = Path(__file__).resolve().parent.parent
MINUTE = 60_000


@pytest.fixture
def aws() -> Iterator[LocalAws]:
    with local_stack(["pump-17", "pump-18"], NOW + 10 * MINUTE) as stack:
        yield stack


def statuses(alerts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(a["status"], a["severity"]) for a in alerts]


def run(aws: LocalAws, *events: Any) -> list[dict[str, Any]]:
    rt, _ = aws.runtime()
    return [handler.handle(e, rt) for e in events]


def test_a_hot_pump_raises_once_escalates_and_resolves_with_hysteresis(aws: LocalAws) -> None:
    # Given the worked example of the default temperature rule (75/90, hysteresis 2)
    values = [70, 80, 95, 96, 89, 88, 74, 73, 70]
    events = [message("pump-17", NOW + i * 1000, ("temp-1", v)) for i, v in enumerate(values)]

    # When each message arrives in its own invocation
    run(aws, *events)

    # Then operators heard each change exactly once
    alerts = aws.alerts()
    assert statuses(alerts) == [
        ("RAISED", "WARNING"),
        ("ESCALATED", "CRITICAL"),
        ("DEESCALATED", "WARNING"),
        ("RESOLVED", "OK"),
    ]
    assert [a["value"] for a in alerts] == [80, 95, 88, 73]
    assert [a["threshold"] for a in alerts] == [75, 90, 88, 73]
    assert len({a["alertId"] for a in alerts}) == 1
    # and every reading is stored, plus the alert history
    assert len(aws.records("reading")) == len(values)
    assert [r["Dimensions"][3]["Value"] for r in aws.records("alert")] == [
        "RAISED",
        "ESCALATED",
        "DEESCALATED",
        "RESOLVED",
    ]
    # and the shadow no longer lists the sensor
    assert aws.shadow("pump-17").get("alerts", {}).get("temp-1") is None


def test_sns_attributes_route_critical_changes_to_critical_subscribers(aws: LocalAws) -> None:
    # Given a pump that goes critical and recovers
    events = [message("pump-17", NOW + i * 1000, ("temp-1", v)) for i, v in enumerate([95, 50])]

    # When it is processed
    run(aws, *events)

    # Then both messages carry severity CRITICAL (either side is critical) for routing
    alerts = aws.alerts()
    assert [a["_attributes"]["severity"] for a in alerts] == ["CRITICAL", "CRITICAL"]
    assert alerts[1]["severity"] == "OK"
    assert alerts[0]["_attributes"] == {
        "severity": "CRITICAL",
        "status": "RAISED",
        "deviceId": "pump-17",
        "rule": "temperature-high",
        "sensorType": "temperature",
    }
    for field in ("alertId", "previousSeverity", "sensorId", "time", "since", "unit"):
        assert field in alerts[0]


def test_a_storm_of_anomalous_messages_alerts_once(aws: LocalAws) -> None:
    # Given fifty messages in a row, all above critical
    events = [message("pump-17", NOW + i * 1000, ("temp-1", 95 + i % 3)) for i in range(50)]
    rt, clients = aws.runtime()
    calls = record_calls(clients)

    # When they are processed one invocation each
    for event in events:
        handler.handle(event, rt)

    # Then one alert and one shadow write; the state is written with the outbox and
    # cleared, then once per invocation while the alert is active (its late-data line);
    # the notification group counts the alert once
    assert len(aws.alerts()) == 1
    assert calls.count("iot-data", "UpdateThingShadow") == 1
    assert calls.count("dynamodb", "PutItem") == 2 + 49 + 1
    # and one Timestream call per invocation: the alert history rides with the reading
    assert calls.count("timestream-write", "WriteRecords") == 50


def test_shadow_mirrors_the_most_severe_alert_per_sensor(aws: LocalAws) -> None:
    # Given a pressure sensor low (below rule) and a temperature sensor high
    batch = [message("pump-17", NOW + i * 1000, ("temp-1", 80), ("press-1", 0.5)) for i in range(3)]

    # When processed
    run(aws, *batch)

    # Then the shadow has one entry per sensor with severity, rule, alertId, since, value
    alerts = aws.shadow("pump-17")["alerts"]
    assert alerts["temp-1"]["severity"] == "WARNING"
    assert alerts["temp-1"]["rule"] == "temperature-high"
    assert alerts["press-1"]["severity"] == "CRITICAL"
    assert set(alerts["press-1"]) == {"severity", "rule", "alertId", "since", "value"}


def test_bad_input_is_quarantined_with_its_reason_and_good_siblings_are_kept(
    aws: LocalAws,
) -> None:
    # Given a message with one bad reading among good ones, and unusable messages
    mixed = message("pump-17", NOW, ("temp-1", 60), ("temp-2", 61))
    mixed["data"].insert(1, {"sensorId": "temp-x", "value": "hot"})
    events = [
        mixed,
        "not an object",
        {"deviceId": "bad device!", "data": []},
        {"deviceId": "pump-17", "timestamp": "yesterday", "data": []},
    ]

    # When the invocations run, none of them fails
    run(aws, *events)

    # Then the good readings are stored and every rejection is in the dead-letter queue
    assert len(aws.records("reading")) == 2
    dead = aws.dead_letters()
    assert sorted(d["field"] for d in dead) == ["$", "data[1].value", "deviceId", "timestamp"]
    assert sorted((d["field"], d["reason"]) for d in dead) == [
        ("$", "not_an_object: $: a message must be a JSON object"),
        ("data[1].value", "wrong_type: data[1].value: Input should be a valid number"),
        ("deviceId", "invalid_format: deviceId: must be 1-128 characters of [a-zA-Z0-9:_-]"),
        ("timestamp", "invalid_timestamp: timestamp: not an ISO-8601 timestamp"),
    ]
    assert all(d["id"] and "payload" in d for d in dead)
    assert next(d for d in dead if d["field"] == "data[1].value")["payload"]["value"] == "hot"


def test_a_duplicate_delivery_ends_like_one_clean_run(aws: LocalAws) -> None:
    # Given an event that raises an alert
    event = message("pump-17", NOW, ("temp-1", 95))

    # When Lambda delivers it twice
    run(aws, event, event)

    # Then there is one alert and the stored records are the same records
    assert len(aws.alerts()) == 1
    assert {r["Time"] for r in aws.records("reading")} == {str(NOW)}


def test_a_transient_sns_failure_is_retried_and_the_alert_published_once(aws: LocalAws) -> None:
    # Given SNS throttles longer than the SDK retries
    rt, clients = aws.runtime()
    fail(clients.sns, "Publish", "Throttling", status=400)
    event = message("pump-17", NOW, ("temp-1", 95))

    # When the invocation fails and Lambda retries it
    with pytest.raises(DependencyError) as raised:
        handler.handle(event, rt)
    assert raised.value.transient
    assert aws.alerts() == []
    handler.handle(event, rt)

    # Then the committed transition was published exactly once, by the retry
    assert statuses(aws.alerts()) == [("RAISED", "CRITICAL")]
    assert "outbox" not in (aws.state_item("pump-17") or {})
    # and the mirror, which the failed attempt never reached, shows the alert
    assert aws.shadow("pump-17")["alerts"]["temp-1"]["severity"] == "CRITICAL"


def test_a_failed_state_write_loses_nothing_on_retry(aws: LocalAws) -> None:
    # Given DynamoDB fails the commit once
    rt, clients = aws.runtime()
    fail(clients.dynamodb, "PutItem", "InternalServerError")
    event = message("pump-17", NOW, ("temp-1", 95))

    # When the invocation fails and is retried
    with pytest.raises(DependencyError):
        handler.handle(event, rt)
    handler.handle(event, rt)

    # Then the alert is published once, and the reading was written by both attempts
    # as the same record (which the store keeps once)
    assert statuses(aws.alerts()) == [("RAISED", "CRITICAL")]
    first, again = aws.records("reading")
    assert first == again
    assert (first["Time"], first["MeasureValues"][0]["Value"]) == (str(NOW), "95.0")


def test_an_outbox_left_by_a_failed_invocation_is_delivered_by_a_later_one(
    aws: LocalAws,
) -> None:
    # Given an invocation that committed its transition but crashed before publishing
    rt, clients = aws.runtime()
    fail(clients.sns, "Publish", "InternalError", times=3)
    with pytest.raises(DependencyError):
        handler.handle(message("pump-17", NOW, ("temp-1", 95)), rt)

    # When, after the lease, a different message for the device arrives
    aws.now_ms += 10 * MINUTE
    other, _ = aws.runtime()
    handler.handle(message("pump-17", NOW + 5000, ("temp-1", 50)), other)

    # Then the stranded RAISED is delivered before the new RESOLVED
    assert statuses(aws.alerts()) == [("RAISED", "CRITICAL"), ("RESOLVED", "OK")]


def test_a_fault_after_publishing_delivers_at_least_once_with_the_same_alert_id(
    aws: LocalAws,
) -> None:
    # Given the outbox clear fails after the alert was published
    rt, clients = aws.runtime()
    puts = [0]

    def second_put(params: dict[str, Any], **_: Any) -> None:
        if params["Item"]["deviceId"]["S"].startswith("$group#"):
            return  # the notification group's count, not the device's record
        puts[0] += 1
        if puts[0] == 2:
            raise DependencyError("dynamodb", "PutItem", "InternalServerError", "x", transient=True)

    clients.dynamodb.meta.events.register("before-parameter-build.dynamodb.PutItem", second_put)
    event = message("pump-17", NOW, ("temp-1", 95))

    # When the invocation fails and Lambda retries it (the same request id)
    with pytest.raises(DependencyError):
        handler.handle(event, rt, Context("request-1"))
    handler.handle(event, rt, Context("request-1"))

    # Then the retry published it again, and consumers can drop the duplicate: the
    # same alertId and status; nothing is left to deliver
    first, again = aws.alerts()
    assert (first["alertId"], first["status"]) == (again["alertId"], again["status"])
    assert first["status"] == "RAISED"
    assert "outbox" not in (aws.state_item("pump-17") or {})


def test_two_invocations_interleaving_on_one_device_publish_each_change_once(
    aws: LocalAws,
) -> None:
    # Given invocation A has read the state and is about to commit, when B runs to completion
    a, a_clients = aws.runtime()
    b, _ = aws.runtime()
    b_event = message("pump-17", NOW + 1000, ("temp-1", 80))

    def b_runs() -> None:
        handler.handle(b_event, b)

    fail_once = [True]

    def interleave(**_: Any) -> None:
        if fail_once[0]:
            fail_once[0] = False
            b_runs()

    a_clients.dynamodb.meta.events.register("before-call.dynamodb.PutItem", interleave)

    # When A (an older, critical reading) commits after B (a newer warning reading)
    handler.handle(message("pump-17", NOW, ("temp-1", 95)), a)

    # Then A re-read B's state: B raised WARNING; A's older reading is late and changes nothing
    assert statuses(aws.alerts()) == [("RAISED", "WARNING")]


def test_concurrent_invocations_with_newer_data_each_publish_their_own_change(
    aws: LocalAws,
) -> None:
    # Given A and B both read an empty state; B commits first
    a, a_clients = aws.runtime()
    b, _ = aws.runtime()
    fired = [False]

    def interleave(**_: Any) -> None:
        if not fired[0]:
            fired[0] = True
            handler.handle(message("pump-17", NOW, ("temp-1", 80)), b)

    a_clients.dynamodb.meta.events.register("before-call.dynamodb.PutItem", interleave)

    # When A, with a newer critical reading, retries its conflicting commit
    handler.handle(message("pump-17", NOW + 1000, ("temp-1", 95)), a)

    # Then each change was published once, in order, within one episode
    alerts = aws.alerts()
    assert statuses(alerts) == [("RAISED", "WARNING"), ("ESCALATED", "CRITICAL")]
    assert len({x["alertId"] for x in alerts}) == 1


def severity_of(aws: LocalAws, device_id: str, sensor_id: str) -> str:
    """The severity the stored state holds for a sensor under the default temperature rule."""
    item = aws.state_item(device_id) or {}
    alert = json.loads(item["alerts"]["S"]).get(f"{sensor_id}/temperature-high", {})
    return str(alert.get("severity", "OK"))


def test_an_older_reading_racing_a_newer_one_on_an_existing_state_changes_nothing(
    aws: LocalAws,
) -> None:
    # Given a device whose temp-1 is already in WARNING (its state item exists)
    rt, _ = aws.runtime()
    handler.handle(message("pump-17", NOW, ("temp-1", 80)), rt)
    assert statuses(aws.alerts()) == [("RAISED", "WARNING")]
    # and invocation A, which has read it, about to commit when B runs to the end
    a, a_clients = aws.runtime()
    b, _ = aws.runtime()
    before(
        a_clients.dynamodb,
        "PutItem",
        lambda: handler.handle(message("pump-17", NOW + 2000, ("temp-1", 50)), b),
    )
    calls = record_calls(a_clients)

    # When A (an older, critical reading) commits after B (a newer, normal reading)
    handler.handle(message("pump-17", NOW + 1000, ("temp-1", 95)), a)

    # Then A lost the race and re-read B's state, in which its reading is late:
    # B resolved the alert, and A escalated nothing
    assert calls.count("dynamodb", "PutItem") == 1
    assert statuses(aws.alerts()) == [("RESOLVED", "OK")]
    assert severity_of(aws, "pump-17", "temp-1") == "OK"


def test_concurrent_invocations_on_an_existing_state_each_keep_their_own_change(
    aws: LocalAws,
) -> None:
    # Given a device whose temp-2 is already in WARNING (its state item exists)
    rt, _ = aws.runtime()
    handler.handle(message("pump-17", NOW, ("temp-2", 80)), rt)
    assert statuses(aws.alerts()) == [("RAISED", "WARNING")]
    # and invocation A, which has read it, about to commit when B runs to the end
    a, a_clients = aws.runtime()
    b, _ = aws.runtime()
    before(
        a_clients.dynamodb,
        "PutItem",
        lambda: handler.handle(message("pump-17", NOW + 1000, ("temp-3", 95)), b),
    )

    # When A raises temp-1 after B raised temp-3
    handler.handle(message("pump-17", NOW + 1000, ("temp-1", 95)), a)

    # Then each alert went out once, and the state holds all three
    assert [(x["status"], x["sensorId"]) for x in aws.alerts()] == [
        ("RAISED", "temp-3"),
        ("RAISED", "temp-1"),
    ]
    assert [severity_of(aws, "pump-17", s) for s in ("temp-1", "temp-2", "temp-3")] == [
        "CRITICAL",
        "WARNING",
        "CRITICAL",
    ]
    assert "outbox" not in (aws.state_item("pump-17") or {})
    # and the same readings again publish nothing: no change was lost to be made twice
    run(aws, message("pump-17", NOW + 2000, ("temp-1", 95), ("temp-2", 80), ("temp-3", 95)))
    assert aws.alerts() == []


def test_records_timestream_rejects_go_to_the_dead_letter_queue(aws: LocalAws) -> None:
    # Given Timestream rejects the second record of the call for good
    rt, clients = aws.runtime()
    fail(
        clients.timestream,
        "WriteRecords",
        "RejectedRecordsException",
        status=419,
        extra={"RejectedRecords": [{"RecordIndex": 1, "Reason": "out of retention"}]},
    )

    # When a message with two readings arrives
    summary = handler.handle(message("pump-17", NOW, ("temp-1", 60), ("temp-2", 61)), rt)

    # Then the invocation succeeds and the rejected record is quarantined with its reason
    assert summary["readingsStored"] == 1
    (dead,) = aws.dead_letters()
    assert dead["code"] == "timestream_rejected"
    assert (dead["reason"], dead["detail"]) == (
        "timestream_rejected: out of retention",
        "out of retention",
    )
    assert dead["payload"]["MeasureName"] == "reading"


def test_timestream_writes_are_batched_at_most_100_records_per_call(aws: LocalAws) -> None:
    # Given a batch of 25 messages with 10 readings each
    events = [
        message("pump-17", NOW + i * 1000, *[(f"temp-{j}", 20.0 + j) for j in range(10)])
        for i in range(25)
    ]
    rt, clients = aws.runtime()
    calls = record_calls(clients)

    # When they arrive as one Kinesis batch
    handler.handle(kinesis_event(events), rt)

    # Then 250 records went out in ceil(250 / 100) calls, none above the API limit
    sizes = [len(p["Records"]) for p in calls.params("timestream-write", "WriteRecords")]
    assert sizes == [100, 100, 50]


@pytest.mark.parametrize(
    ("service", "operation", "code"),
    [
        ("sns", "Publish", "AuthorizationError"),
        ("dynamodb", "BatchGetItem", "ResourceNotFoundException"),
        ("timestream", "WriteRecords", "AccessDeniedException"),
        ("sqs", "SendMessageBatch", "AWS.SimpleQueueService.NonExistentQueue"),
    ],
)
def test_misconfiguration_fails_the_invocation_and_is_never_taken_for_bad_input(
    aws: LocalAws, service: str, operation: str, code: str
) -> None:
    # Given a permission or a resource is missing
    rt, clients = aws.runtime()
    fail(getattr(clients, service), operation, code, status=403, times=5)
    bad_and_good = message("pump-17", NOW, ("temp-1", 95))
    bad_and_good["data"].append({"sensorId": "x", "value": None})

    # When a message arrives, the invocation raises a permanent DependencyError
    with pytest.raises(DependencyError) as raised:
        handler.handle(bad_and_good, rt)
    assert not raised.value.transient


def test_a_device_that_is_not_a_thing_still_has_readings_and_alerts(aws: LocalAws) -> None:
    # Given a device with no registered thing
    event = message("ghost-1", NOW, ("temp-1", 95))

    # When its message is processed
    rt, _ = aws.runtime()
    handler.handle(event, rt)

    # Then its readings are stored and its alert published; no retry loop
    assert len(aws.records("reading")) == 1
    assert len(aws.alerts()) == 1
    assert handler.handle(event, rt)["transitions"] == []


def test_a_failed_shadow_update_is_repaired_by_the_next_invocation(aws: LocalAws) -> None:
    # Given the shadow service throttles once
    rt, clients = aws.runtime()
    fail(clients.iot_data, "UpdateThingShadow", "ThrottlingException", status=429)

    # When an alert is raised, then a later reading changes nothing
    handler.handle(message("pump-17", NOW, ("temp-1", 95)), rt)
    item = aws.state_item("pump-17") or {}
    assert item["shadowStale"]["BOOL"] is True
    handler.handle(message("pump-17", NOW + 1000, ("temp-1", 96)), rt)

    # Then the mirror converged and the flag is cleared
    assert aws.shadow("pump-17")["alerts"]["temp-1"]["severity"] == "CRITICAL"
    assert (aws.state_item("pump-17") or {})["shadowStale"]["BOOL"] is False
    assert len(aws.alerts()) == 1


def test_the_classic_shadow_is_untouched_unless_shadow_name_is_empty(aws: LocalAws) -> None:
    # Given SHADOW_NAME is empty
    rt, _ = aws.runtime(SHADOW_NAME="")

    # When an alert is raised
    handler.handle(message("pump-18", NOW, ("temp-1", 95)), rt)

    # Then the classic shadow holds it
    assert aws.shadow("pump-18", name="")["alerts"]["temp-1"]["severity"] == "CRITICAL"


def test_a_json_array_event_is_one_message_quarantined_whole(aws: LocalAws) -> None:
    # Given a direct event that is a JSON array of messages naming two devices
    # (the topic rule never sends one: no topic vouches for the items' deviceIds)
    events = [message("pump-17", NOW, ("temp-1", 95)), message("pump-18", NOW, ("temp-1", 95))]

    # When it is handled
    summary = run(aws, events)[0]

    # Then nothing is processed under either id: the array is quarantined as it came
    assert (summary["readingsStored"], summary["rejected"]) == (0, 1)
    assert aws.alerts() == []
    [item] = aws.dead_letters()
    assert (item["code"], item["field"], item["payload"]) == ("not_an_object", "$", events)


@pytest.mark.parametrize("source", ["aws:sqs", "aws:kinesis"])
def test_a_device_cannot_pass_a_records_list_off_as_a_batch_for_another_device(
    aws: LocalAws, source: str
) -> None:
    # Given pump-17 publishing, on its own topic, what looks like a batch for pump-18
    victim = json.dumps(message("pump-18", NOW, ("temp-1", 99)))
    record: dict[str, Any] = {"eventSource": source, "messageId": "1", "body": victim}
    if source == "aws:kinesis":
        data = base64.b64encode(victim.encode()).decode()
        record = {
            "eventSource": source,
            "eventID": "shardId-000000000000:1",
            "kinesis": {"partitionKey": "pump-18", "sequenceNumber": "1", "data": data},
        }
    forged = {"Records": [record], "deviceId": "pump-17", "receivedAt": NOW + 50}

    # When the topic rule hands it over (deviceId from the topic, receivedAt)
    summary = run(aws, forged)[0]

    # Then it is pump-17's message, which has no data: quarantined, nothing for pump-18
    assert aws.alerts() == []
    assert summary["readingsStored"] == 0
    [item] = aws.dead_letters()
    assert (item["deviceId"], item["field"]) == ("pump-17", "data")


@pytest.mark.parametrize(
    ("store", "missing"),
    [
        ("influxdb", ["INFLUXDB_URL", "INFLUXDB_DATABASE"]),
        (None, ["TIMESTREAM_DB", "TIMESTREAM_TABLE"]),
    ],
)
def test_settings_name_each_missing_store_variable_once(
    store: str | None, missing: list[str]
) -> None:
    # Given the chosen store's variables all missing
    env = {
        "STATE_TABLE": "t",
        "ALERTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:alerts",
        "DEAD_LETTER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/dlq",
    } | ({"TIMESERIES_STORE": store} if store else {})

    # When the settings are read, Then each is named, once
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env(env)
    for name in missing:
        assert str(raised.value).count(f"{name}:") == 1


def test_settings_name_the_missing_variable() -> None:
    # Given an environment without the state table
    env = {
        "TIMESTREAM_DB": "db",
        "TIMESTREAM_TABLE": "t",
        "ALERTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:alerts",
        "DEAD_LETTER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/dlq",
    }

    # When settings are read, Then the error names it
    with pytest.raises(ConfigurationError, match="STATE_TABLE"):
        Settings.from_env(env)
    with pytest.raises(ConfigurationError, match="ALERTS_TOPIC_ARN"):
        Settings.from_env({**env, "STATE_TABLE": "s", "ALERTS_TOPIC_ARN": "topic"})


def test_lambda_handler_reads_its_environment_once_per_cold_start(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the function's environment
    for key, value in aws.stack.environment().items():
        monkeypatch.setenv(key, value)
    handler.reset_runtime()
    event = message("pump-17", int(time.time() * 1000), ("temp-1", 95))

    # When the entry point is invoked with a None context, twice
    try:
        first = handler.lambda_handler(event, None)
        second = handler.lambda_handler(event, None)
    finally:
        handler.reset_runtime()

    # Then the first raised the alert and the duplicate was a no-op
    assert [t["status"] for t in first["transitions"]] == ["RAISED"]
    assert second["transitions"] == []


def test_a_timestream_outage_after_the_commit_loses_neither_readings_nor_alerts(
    aws: LocalAws,
) -> None:
    # Given Timestream fails once, after the state and its outbox were committed
    rt, clients = aws.runtime()
    fail(clients.timestream, "WriteRecords", "InternalServerException")
    event = message("pump-17", NOW, ("temp-1", 95), ("temp-2", 20))

    # When the invocation fails, nothing was published; then Lambda retries it
    with pytest.raises(DependencyError):
        handler.handle(event, rt)
    assert aws.alerts() == []
    handler.handle(event, rt)

    # Then both readings and the alert history are stored, and the alert published once
    assert len(aws.records("reading")) == 2
    assert len(aws.records("alert")) == 1
    assert statuses(aws.alerts()) == [("RAISED", "CRITICAL")]


def test_observability_one_log_line_per_rejection_no_payload_and_emf_metrics(
    aws: LocalAws,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given the function's environment and a message with a secret-looking bad reading
    for key, value in aws.stack.environment().items():
        monkeypatch.setenv(key, value)
    handler.reset_runtime()
    event = message("pump-17", int(time.time() * 1000), ("temp-1", 95))
    event["data"].append({"sensorId": "s-1", "value": "api-key-12345"})
    handler.metrics.clear_metrics()  # earlier tests called handle(), which nothing flushes
    capsys.readouterr()

    # When the entry point runs
    try:
        handler.lambda_handler(event, FakeContext())
    finally:
        handler.reset_runtime()

    # Then stdout holds JSON lines only: one log line names the rejection's field and
    # reason, without the payload, with the request id
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    logs = [x for x in lines if "_aws" not in x]
    [rejected] = [x for x in logs if x["message"] == "quarantined"]
    assert (rejected["level"], rejected["field"], rejected["code"]) == (
        "WARNING",
        "data[1].value",
        "wrong_type",
    )
    assert rejected["service"] == "telemetry"
    assert rejected["request_id"] == "req-1"
    assert "api-key-12345" not in json.dumps(lines)
    assert [r.__dict__["field"] for r in caplog.records if r.getMessage() == "quarantined"] == [
        "data[1].value"
    ]
    # and EMF metrics count rejected readings and transitions by status and severity
    emf = [x for x in lines if "_aws" in x]
    [counts] = [x for x in emf if "ReadingsRejected" in x]
    assert counts["ReadingsRejected"] == [1.0]
    assert counts["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "IoTTelemetry"
    assert counts["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    [by_kind] = [x for x in emf if "Transitions" in x and "status" in x]
    assert (by_kind["status"], by_kind["severity"], by_kind["Transitions"]) == (
        "RAISED",
        "CRITICAL",
        [1.0],
    )


class FakeContext:
    aws_request_id = "req-1"


def test_a_direct_event_nested_thousands_deep_is_handled_not_crashed(aws: LocalAws) -> None:
    # Given a direct event whose reading value, and an ignored field, nest 5,000 deep
    deep: Any = 1.0
    for _ in range(5_000):
        deep = [deep]
    event = message("pump-17", NOW, ("temp-1", 20), ("temp-2", 21), firmware=deep)
    event["data"][1]["value"] = deep

    # When it is handled
    summary = run(aws, event)[0]

    # Then the good reading is stored, the deep one quarantined with its payload cut
    assert (summary["readingsStored"], summary["rejected"]) == (1, 1)
    [item] = aws.dead_letters()
    assert (item["field"], item["payloadTruncated"]) == ("data[1].value", True)


def test_a_direct_invocation_imports_nothing_only_streams_tools_or_tracing_need() -> None:
    # Given a fresh process that handles one direct message against a local AWS
    script = f"""
import json, os, sys
from tests.localaws import local_stack, message
from telemetry import handler
with local_stack(["pump-17"], {NOW}) as aws:
    rt, _ = aws.runtime()
    handler.handle(message("pump-17", {NOW}, ("temp-1", 95)), rt)
print(json.dumps(sorted(sys.modules)))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded = json.loads(done.stdout.splitlines()[-1])

    # Then no stream-only, command-line, local-run or tracing module was imported
    unwanted = ("aws_lambda_powertools", "aws_xray_sdk", "rich", "telemetry.cli")
    unwanted += ("telemetry.backtest", "telemetry.terminal", "telemetry.local.demo")
    assert [m for m in loaded if m.startswith(unwanted)] == []


def test_a_changed_environment_is_never_served_by_a_stale_runtime(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # Given the function ran once with the shipped rules
    for key, value in aws.stack.environment().items():
        monkeypatch.setenv(key, value)
    handler.reset_runtime()
    now = int(time.time() * 1000)
    try:
        handler.lambda_handler(message("pump-17", now, ("temp-1", 60)), None)

        # When RULES_PATH now names a stricter rule file
        rules = tmp_path / "strict.yaml"
        rules.write_text(
            "rules: [{name: strict, match: {type: temperature}, above: {warning: 50}}]"
        )
        monkeypatch.setenv("RULES_PATH", str(rules))
        summary = handler.lambda_handler(message("pump-17", now + 1000, ("temp-1", 60)), None)
    finally:
        handler.reset_runtime()

    # Then the new rules are in force
    assert [(t["rule"], t["status"]) for t in summary["transitions"]] == [("strict", "RAISED")]
