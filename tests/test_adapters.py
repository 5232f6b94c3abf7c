"""Adapters at the limits AWS enforces and moto does not: sizes and batch caps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from telemetry.adapters.dead_letter import MAX_BODY_BYTES, DeadLetterQueue, dead_letter_body
from telemetry.adapters.shadow import (
    MAX_MIRROR_BYTES,
    MAX_UPDATE_BYTES,
    MirrorStatus,
    ShadowMirror,
)
from telemetry.adapters.sns import AlertPublisher, subject
from telemetry.adapters.timestream import alert_record, billed_bytes, reading_record
from telemetry.core.alerts import Severity, Status, Transition
from telemetry.core.messages import Reading
from telemetry.errors import DependencyError


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
    assert parsed["payloadBytes"] == len(json.dumps(item["payload"]).encode())
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


def mirror_entry(i: int, severity: str = "WARNING") -> tuple[str, dict[str, Any]]:
    return (
        f"sensor-{i:03d}",
        {
            "severity": severity,
            "rule": "r",
            "alertId": "a" * 32,
            "since": "2025-11-27T10:00:00.000Z",
            "value": 80.0,
        },
    )


def shadow_sizes(data: Any) -> list[int]:
    sizes: list[int] = []
    data.meta.events.register(
        "before-parameter-build.iot-data-plane.UpdateThingShadow",
        lambda params, **_: sizes.append(len(params["payload"])),
    )
    return sizes


def reported(data: Any, thing: str = "pump-17") -> dict[str, Any]:
    payload = data.get_thing_shadow(thingName=thing, shadowName="alerts")["payload"].read()
    return json.loads(payload)["state"].get("reported", {})  # type: ignore[no-any-return]


def test_a_large_alert_patch_is_split_under_the_shadow_size_limit(region: None) -> None:
    # Given a mirror of 45 alerts that all resolve as 45 others are raised
    boto3.client("iot").create_thing(thingName="pump-17")
    data = boto3.client("iot-data")
    mirror = ShadowMirror("alerts", data)
    before = [mirror_entry(i) for i in range(45)]
    after = [mirror_entry(i) for i in range(100, 145)]
    mirror.update("pump-17", [], before, full=False)
    sizes = shadow_sizes(data)

    # When the mirror is patched (45 removals and 45 entries: more than one update holds)
    result = mirror.update("pump-17", before, after, full=False)

    # Then it took several updates, each under the limit, and the shadow has the new ones
    assert result.status is MirrorStatus.UPDATED
    assert len(sizes) > 1
    assert all(size <= MAX_UPDATE_BYTES + 64 for size in sizes)
    assert set(reported(data)["alerts"]) == {name for name, _ in after}


def test_more_alerts_than_a_shadow_holds_keep_the_most_severe_and_say_how_many_are_left_out(
    region: None,
) -> None:
    # Given 120 active alerts, the first 10 critical, on a thing
    boto3.client("iot").create_thing(thingName="pump-17")
    data = boto3.client("iot-data")
    entries = [mirror_entry(i, "CRITICAL" if i < 10 else "WARNING") for i in range(120)]
    mirror = ShadowMirror("alerts", data)

    # When the mirror is written
    result = mirror.update("pump-17", [], entries, full=False)

    # Then the shadow holds the most important ones within its 8 KB and counts the rest
    shadow = reported(data)
    kept = shadow["alerts"]
    assert len(json.dumps({"state": {"reported": shadow}}, separators=(",", ":"))) <= (
        MAX_MIRROR_BYTES
    )
    assert set(kept) == {name for name, _ in entries[: len(kept)]}
    assert {f"sensor-{i:03d}" for i in range(10)} <= set(kept)
    assert shadow["alertsOmitted"] == 120 - len(kept) == result.omitted > 0

    # When 100 of them resolve
    still = entries[:20]
    mirror.update("pump-17", entries, still, full=False)

    # Then the mirror converges: exactly the 20 still active, nothing left out
    shadow = reported(data)
    assert set(shadow["alerts"]) == {name for name, _ in still}
    assert "alertsOmitted" not in shadow


def test_a_full_rewrite_drops_what_a_stale_mirror_held(region: None) -> None:
    # Given a mirror that holds alerts the state no longer has (a raced update)
    boto3.client("iot").create_thing(thingName="pump-17")
    data = boto3.client("iot-data")
    mirror = ShadowMirror("alerts", data)
    mirror.update("pump-17", [], [mirror_entry(i) for i in range(5)], full=False)

    # When it is rewritten whole from a state with one alert
    mirror.update("pump-17", [], [mirror_entry(7)], full=True)

    # Then it holds exactly that alert
    assert set(reported(data)["alerts"]) == {"sensor-007"}


@pytest.mark.parametrize(
    ("code", "status", "retryable"),
    [
        ("ThrottlingException", 429, True),
        ("ServiceUnavailableException", 503, True),
        ("InternalFailureException", 500, True),
        ("InvalidRequestException", 400, False),
        ("MethodNotAllowedException", 405, False),
        ("RequestEntityTooLargeException", 413, False),
    ],
)
def test_a_failed_mirror_update_says_why_and_whether_it_will_heal(
    code: str, status: int, *, retryable: bool
) -> None:
    # Given the shadow service refuses an update
    data = boto3.client("iot-data", region_name="us-east-1")
    with Stubber(data) as stub:
        stub.add_client_error("update_thing_shadow", code, http_status_code=status)

        # When the mirror is written
        result = ShadowMirror("alerts", data).update("pump-17", [], [mirror_entry(1)], full=False)

    # Then the failure is reported with its code, classified, not raised
    assert (result.status, result.code, result.retryable) == (
        MirrorStatus.FAILED,
        code,
        retryable,
    )


@pytest.mark.parametrize("code", ["UnauthorizedException", "ForbiddenException"])
def test_a_mirror_the_function_may_not_write_is_a_misconfiguration(code: str) -> None:
    # Given the shadow service refuses the function's credentials
    data = boto3.client("iot-data", region_name="us-east-1")
    with Stubber(data) as stub:
        stub.add_client_error("update_thing_shadow", code, http_status_code=401)

        # When the mirror is written, Then it raises as a permanent failure
        with pytest.raises(DependencyError) as raised:
            ShadowMirror("alerts", data).update("pump-17", [], [mirror_entry(1)], full=False)
    assert not raised.value.transient


def test_sns_publish_batch_returns_the_entries_sns_refused_and_whether_they_may_heal() -> None:
    # Given SNS accepts some entries of a batch, refuses one for now and one for good
    sns = boto3.client("sns", region_name="us-east-1")
    topic = "arn:aws:sns:us-east-1:123456789012:alerts"
    transitions = [transition(i) for i in range(4)]
    with Stubber(sns) as stub:
        stub.add_response(
            "publish_batch",
            {
                "Successful": [{"Id": "t0", "MessageId": "m0"}, {"Id": "t2", "MessageId": "m2"}],
                "Failed": [
                    {"Id": "t1", "Code": "InternalError", "SenderFault": False},
                    {"Id": "t3", "Code": "InvalidParameter", "SenderFault": True},
                ],
            },
        )

        # When they are published
        refused = AlertPublisher(topic, sns).publish(transitions)

    # Then each refused one comes back, the transient one to retry, the other for good
    assert [(r.item, r.code, r.retryable) for r in refused] == [
        (transitions[1], "InternalError", True),
        (transitions[3], "InvalidParameter", False),
    ]


def test_a_batch_sns_refuses_whole_for_one_bad_message_is_sent_one_by_one() -> None:
    # Given SNS refuses a whole batch as an invalid parameter, then takes all but one singly
    sns = boto3.client("sns", region_name="us-east-1")
    topic = "arn:aws:sns:us-east-1:123456789012:alerts"
    transitions = [transition(i) for i in range(3)]
    with Stubber(sns) as stub:
        stub.add_client_error("publish_batch", "InvalidParameter", http_status_code=400)
        stub.add_response("publish", {"MessageId": "m0"})
        stub.add_client_error("publish", "InvalidParameterValue", http_status_code=400)
        stub.add_response("publish", {"MessageId": "m2"})

        # When they are published
        refused = AlertPublisher(topic, sns).publish(transitions)

    # Then only the bad one is refused, for good
    assert [(r.item, r.retryable) for r in refused] == [(transitions[1], False)]


@pytest.mark.parametrize("code", ["AuthorizationError", "NotFound"])
def test_a_topic_sns_will_not_let_us_publish_to_is_a_misconfiguration(code: str) -> None:
    # Given SNS refuses the call itself (no access, no such topic)
    sns = boto3.client("sns", region_name="us-east-1")
    topic = "arn:aws:sns:us-east-1:123456789012:alerts"
    with Stubber(sns) as stub:
        stub.add_client_error("publish", code, http_status_code=403)

        # When a transition is published, Then it raises, never dead-letters the alert
        with pytest.raises(DependencyError) as raised:
            AlertPublisher(topic, sns).publish([transition(0)])
    assert not raised.value.transient


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


def test_operators_actions_and_timers_have_subjects_of_their_own() -> None:
    # Given an alert acknowledged, snoozed, disabled, latched, reminded, and a no-data
    # alert reminded
    acked = replace(transition(), status=Status.ACKNOWLEDGED, by="maria@plant.example")
    snoozed = replace(acked, status=Status.SNOOZED, until_ms=1_764_241_200_000)
    disabled = replace(
        acked, status=Status.DISABLED, severity=Severity.OK, previous_severity=Severity.CRITICAL
    )
    latched = replace(transition(), status=Status.LATCHED, value=71.0)
    reminded = replace(transition(), status=Status.REMINDER)
    silent = replace(transition(), status=Status.REMINDER, direction="nodata", threshold=300.0)

    # Then each subject says what happened, and none says "back to normal" or "0s"
    assert subject(acked) == (
        "[CRITICAL] pump-17 temperature acknowledged by maria@plant.example (temperature-high)"
    )
    assert (
        subject(snoozed)
        == (
            "[CRITICAL] pump-17 temperature snoozed until 2025-11-27T11:00Z by maria@plant.example "
            "(temperature-high)"
        )[:100]
    )
    assert subject(disabled).startswith("[CRITICAL] pump-17 temperature disabled by maria")
    assert subject(latched) == (
        "[CRITICAL] pump-17 temperature back within its levels: 71, latched until reset "
        "(temperature-high)"
    )
    assert (
        subject(reminded) == "[CRITICAL] pump-17 temperature still CRITICAL: 95 (temperature-high)"
    )
    assert subject(silent) == "[CRITICAL] pump-17 temp-0 still silent for 5m (temperature-high)"


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
