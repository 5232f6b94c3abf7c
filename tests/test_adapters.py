"""Adapters at the limits AWS enforces and moto does not: sizes and batch caps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from telemetry.adapters.dead_letter import MAX_BODY_BYTES, DeadLetterQueue, dead_letter_body
from telemetry.adapters.shadow import MAX_UPDATE_BYTES, ShadowMirror, ShadowOutcome
from telemetry.adapters.sns import AlertPublisher, subject
from telemetry.adapters.timestream import alert_record, billed_bytes, reading_record
from telemetry.core.alerts import Severity, Status, Transition
from telemetry.core.messages import Reading


@pytest.fixture
def region(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


def transition(i: int = 0, status: Status = Status.RAISED) -> Transition:
    return Transition(
        alert_id=f"a{i}",
        status=status,
        severity=Severity.CRITICAL if status is not Status.RESOLVED else Severity.OK,
        previous_severity=Severity.OK if status is Status.RAISED else Severity.CRITICAL,
        device_id="pump-17",
        sensor_id=f"temp-{i}",
        rule="temperature-high",
        value=95.0,
        threshold=90.0,
        time_ms=1_764_237_600_000 + i,
        since_ms=1_764_237_600_000,
        direction="above",
        type="temperature",
    )


def test_an_oversized_dead_letter_payload_is_cut_and_says_so() -> None:
    # Given a rejected Kinesis record of nearly 1 MB
    item = {"reason": "not_json: kinesis.data", "payload": "x" * 900_000, "deviceId": None}

    # When it becomes a dead-letter body
    body = dead_letter_body(item)
    parsed = json.loads(body)

    # Then it fits SQS, keeps its reason and id, and records what was cut
    assert len(body.encode()) <= MAX_BODY_BYTES
    assert parsed["payloadTruncated"] is True
    assert parsed["payloadBytes"] > 900_000
    assert parsed["reason"] == item["reason"]
    assert len(parsed["id"]) == 32
    assert dead_letter_body(item) == body  # deterministic


def test_dead_letter_batches_respect_ten_entries_and_256_kib(region: None) -> None:
    # Given 25 items of 60 KB each
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    calls: list[list[dict[str, Any]]] = []
    sqs.meta.events.register(
        "before-parameter-build.sqs.SendMessageBatch",
        lambda params, **_: calls.append(params["Entries"]),
    )
    items = [{"reason": "r", "payload": "p" * 60_000, "n": i} for i in range(25)]

    # When they are sent
    DeadLetterQueue(url, sqs).send(items)

    # Then no call exceeds either limit and nothing is lost
    assert all(len(c) <= 10 for c in calls)
    assert all(sum(len(e["MessageBody"]) for e in c) <= 256 * 1024 for c in calls)
    assert sum(len(c) for c in calls) == 25


def test_a_large_alert_mirror_is_split_under_the_shadow_size_limit(region: None) -> None:
    # Given a thing whose 120 sensors all changed
    boto3.client("iot").create_thing(thingName="pump-17")
    data = boto3.client("iot-data")
    sizes: list[int] = []
    data.meta.events.register(
        "before-parameter-build.iot-data-plane.UpdateThingShadow",
        lambda params, **_: sizes.append(len(params["payload"])),
    )
    alerts = {
        f"sensor-{i:03d}": {
            "severity": "WARNING",
            "rule": "r",
            "alertId": "a" * 32,
            "since": "2025-11-27T10:00:00.000Z",
            "value": 80.0,
        }
        for i in range(120)
    }

    # When the mirror is written
    outcome = ShadowMirror("alerts", data).update("pump-17", alerts)

    # Then it took several updates, each under the limit, and the shadow has them all
    assert outcome is ShadowOutcome.UPDATED
    assert len(sizes) > 1
    assert all(size <= MAX_UPDATE_BYTES + 64 for size in sizes)


def test_a_shadow_too_large_is_reported_not_retried_forever() -> None:
    # Given the shadow service refuses the document as too large
    data = boto3.client("iot-data", region_name="us-east-1")
    with Stubber(data) as stub:
        stub.add_client_error(
            "update_thing_shadow", "RequestEntityTooLargeException", http_status_code=413
        )

        # When the mirror is written
        outcome = ShadowMirror("alerts", data).update("pump-17", {"s": None})

    # Then it says so, for a warning and a metric, instead of failing
    assert outcome is ShadowOutcome.TOO_LARGE


def test_sns_publish_batch_returns_the_entries_sns_refused() -> None:
    # Given SNS accepts some entries of a batch and refuses one
    sns = boto3.client("sns", region_name="us-east-1")
    topic = "arn:aws:sns:us-east-1:123456789012:alerts"
    transitions = [transition(i) for i in range(3)]
    with Stubber(sns) as stub:
        stub.add_response(
            "publish_batch",
            {
                "Successful": [{"Id": "t0", "MessageId": "m0"}, {"Id": "t2", "MessageId": "m2"}],
                "Failed": [{"Id": "t1", "Code": "InternalError", "SenderFault": False}],
            },
        )

        # When they are published
        failed = AlertPublisher(topic, sns).publish(transitions)

    # Then the refused one comes back to be kept in the outbox
    assert failed == [transitions[1]]


def test_fifo_topics_get_a_group_and_a_deduplication_id_per_transition() -> None:
    # Given a FIFO topic, and a publish expected to carry the device as its group
    sns = boto3.client("sns", region_name="us-east-1")
    topic = "arn:aws:sns:us-east-1:123456789012:alerts.fifo"
    expected = {
        "TopicArn": topic,
        "Message": ANY,
        "Subject": ANY,
        "MessageAttributes": ANY,
        "MessageGroupId": "pump-17",
        "MessageDeduplicationId": ANY,
    }
    with Stubber(sns) as stub:
        stub.add_response("publish", {"MessageId": "m1"}, expected)
        stub.add_response("publish", {"MessageId": "m2"}, expected)

        # When the same transition is published twice (a retry)
        ids: list[str] = []
        sns.meta.events.register(
            "before-parameter-build.sns.Publish",
            lambda params, **_: ids.append(params["MessageDeduplicationId"]),
        )
        AlertPublisher(topic, sns).publish([transition()])
        AlertPublisher(topic, sns).publish([transition()])
        stub.assert_no_pending_responses()

    # Then both carry the same deduplication id, so SNS drops the second
    assert len(ids) == 2
    assert ids[0] == ids[1]


def test_subjects_are_readable_and_within_sns_limits() -> None:
    # Given a raise and a resolution
    raised, resolved = transition(), transition(status=Status.RESOLVED)

    # Then their subjects read like a sentence and fit in 100 printable characters
    assert subject(raised) == "[CRITICAL] pump-17 temperature raised: 95 (temperature-high)"
    assert "back to normal" in subject(resolved)
    assert all(len(subject(t)) <= 100 for t in (raised, resolved))


def test_reading_records_omit_unknown_dimensions_and_meter_as_timestream_does() -> None:
    # Given a reading without type, location or unit
    reading = Reading("pump-17", "temp-1", 81.25, 1_764_237_600_000)

    # When it becomes a record
    record = reading_record(reading)

    # Then it carries only the dimensions it has (Timestream refuses empty values)
    assert [d["Name"] for d in record["Dimensions"]] == ["deviceId", "sensorId"]
    assert record["MeasureValueType"] == "MULTI"
    assert record["MeasureValues"] == [{"Name": "value", "Value": "81.25", "Type": "DOUBLE"}]
    # and is metered as 8 B time + names and values + measure names + 8 B per double
    expected = 8 + len("reading") + len("deviceIdpump-17sensorIdtemp-1") + len("value") + 8
    assert billed_bytes(record) == expected


def test_alert_records_keep_a_raise_and_a_resolve_at_one_instant_apart() -> None:
    # Given a RESOLVED and a RAISED of the same sensor and rule at the same time
    resolved, raised = transition(status=Status.RESOLVED), transition()

    # When both become records
    a, b = alert_record(resolved), alert_record(raised)

    # Then their dimensions differ by status, so Timestream stores both
    assert a["Time"] == b["Time"]
    assert a["Dimensions"] != b["Dimensions"]
    assert {m["Name"] for m in b["MeasureValues"]} >= {"severity", "alertId", "value", "threshold"}


def test_single_measure_records_are_metered_with_their_value() -> None:
    # Given the seed's single-measure record for one reading
    record = {
        "Dimensions": [{"Name": "deviceId", "Value": "pump-17"}],
        "MeasureName": "temp-1",
        "MeasureValue": "81.2",
        "MeasureValueType": "DOUBLE",
        "Time": "1764237600000",
    }

    # Then it meters time, names and values, and 8 B for the double
    assert billed_bytes(record) == 8 + len("deviceIdpump-17") + len("temp-1") + 8
