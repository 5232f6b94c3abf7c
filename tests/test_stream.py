"""Stream ingestion: Kinesis and SQS batches with partial batch responses."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from telemetry import handler
from telemetry.local.streams import kinesis_event, sqs_event
from tests.localaws import LocalAws, fail, local_stack, message, record_calls

NOW = 1_764_237_600_000


@pytest.fixture
def aws() -> Iterator[LocalAws]:
    with local_stack([f"pump-{i}" for i in range(5)], NOW + 600_000) as stack:
        yield stack


def fleet(devices: int, per_device: int, value: float = 95) -> list[dict[str, Any]]:
    return [
        message(f"pump-{d}", NOW + i * 1000, ("temp-1", value))
        for i in range(per_device)
        for d in range(devices)
    ]


def test_a_kinesis_batch_reads_and_writes_each_device_state_once(aws: LocalAws) -> None:
    # Given 3 devices with 10 messages each, all breaching, shuffled by device
    rt, clients = aws.runtime()
    calls = record_calls(clients)

    # When one Kinesis batch carries them
    response = handler.handle(kinesis_event(fleet(3, 10)), rt)

    # Then nothing failed, state was read in one BatchGetItem (and the alerts' notification
    # group in another), and each device raised once
    assert response == {"batchItemFailures": []}
    assert calls.count("dynamodb", "BatchGetItem") == 1 + 1
    assert calls.count("dynamodb", "GetItem") == 0
    # commit with the outbox, then clear it; the group counts the three alerts in one write
    assert calls.count("dynamodb", "PutItem") == 3 * 2 + 1
    # 30 readings and 3 alert records: one call, ceil(33 / 100)
    assert calls.count("timestream-write", "WriteRecords") == 1
    assert sorted(a["deviceId"] for a in aws.alerts()) == ["pump-0", "pump-1", "pump-2"]


def test_an_sqs_batch_is_evaluated_in_event_time_order_per_device(aws: LocalAws) -> None:
    # Given a device's readings delivered newest first
    values = [70, 80, 95, 96, 89, 88, 74, 73, 70]
    messages = [message("pump-0", NOW + i * 1000, ("temp-1", v)) for i, v in enumerate(values)]

    # When they arrive reversed in one SQS batch
    handler.handle(sqs_event(messages[::-1]), aws.runtime()[0])

    # Then the transitions are those of the readings in time order
    assert [(a["status"], a["value"]) for a in aws.alerts()] == [
        ("RAISED", 80),
        ("ESCALATED", 95),
        ("DEESCALATED", 88),
        ("RESOLVED", 73),
    ]


def test_bad_records_are_quarantined_not_reported_as_failures(aws: LocalAws) -> None:
    # Given a batch with undecodable and invalid records among good ones
    event = kinesis_event([*fleet(1, 2, value=20), b"\xff not json", {"deviceId": "x!"}])

    # When handled
    response = handler.handle(event, aws.runtime()[0])

    # Then no record is reported and both bad ones are in the dead-letter queue
    assert response["batchItemFailures"] == []
    assert sorted(d["code"] for d in aws.dead_letters()) == ["invalid_format", "not_json"]


def test_a_transient_failure_reports_only_that_devices_records(aws: LocalAws) -> None:
    # Given the state write fails for the first device committed
    rt, clients = aws.runtime()
    fail(clients.dynamodb, "PutItem", "ProvisionedThroughputExceededException", status=400)
    event = kinesis_event(fleet(3, 2))

    # When the batch is handled
    response = handler.handle(event, rt)

    # Then only the failed device's records are reported, the others delivered
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    records = {r["kinesis"]["sequenceNumber"]: r for r in event["Records"]}
    devices = {
        json.loads(base64.b64decode(records[s]["kinesis"]["data"]))["deviceId"] for s in failed
    }
    assert len(devices) == 1
    assert len(failed) == 2
    assert len(aws.alerts()) == 2

    # And when Lambda retries the batch from the failed records, the alerts complete once
    retry = {"Records": [records[s] for s in sorted(failed)]}
    assert handler.handle(retry, rt) == {"batchItemFailures": []}
    assert [a["deviceId"] for a in aws.alerts()] == list(devices)


def test_a_kinesis_retry_starting_at_the_failed_record_delivers_the_stranded_alert(
    aws: LocalAws,
) -> None:
    # Given SNS fails for the batch after the device's state and outbox were committed
    rt, clients = aws.runtime()
    fail(clients.sns, "Publish", "InternalError")
    event = kinesis_event([*fleet(1, 1), message("pump-4", NOW, ("temp-1", 20))])
    response = handler.handle(event, rt)
    failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert len(failed) == 1

    # When Lambda retries from the failed record on, with a newer record after it
    records = [r for r in event["Records"] if r["kinesis"]["sequenceNumber"] >= failed[0]]
    newer = kinesis_event([message("pump-0", NOW + 1000, ("temp-1", 96))], first_sequence=99)
    handler.handle({"Records": [*records, *newer["Records"]]}, rt)

    # Then the alert committed by the failed attempt is delivered once, without waiting
    assert [(a["deviceId"], a["status"]) for a in aws.alerts()] == [("pump-0", "RAISED")]


def kinesis_record(data: str, key: Any, sequence: int) -> dict[str, Any]:
    return {
        "eventSource": "aws:kinesis",
        "kinesis": {"partitionKey": key, "sequenceNumber": f"{sequence:030d}", "data": data},
    }


def encoded(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_hostile_records_are_quarantined_with_a_reason_and_their_siblings_go_on(
    aws: LocalAws,
) -> None:
    # Given a Kinesis batch where good records surround every kind of hostile one
    good = fleet(2, 1, value=20)
    deep = b'{"deviceId": "pump-0", "data": ' + b"[" * 600 + b"]" * 600 + b"}"
    long_number = b'{"deviceId": "pump-0", "data": [{"sensorId": "t", "value": 1' + b"0" * 5000
    long_number += b"}]}"
    event = kinesis_event(good[:1])
    event["Records"] += [
        kinesis_record(encoded(deep), "pump-0", 10),
        kinesis_record(encoded(long_number), "pump-0", 11),
        kinesis_record("not base64!", "pump-0", 12),
        kinesis_record(encoded(b"x" * 400_000), "pump-0", 13),
        {"eventSource": "aws:kinesis", "kinesis": "no record"},
        kinesis_record(encoded(json.dumps(good[0]).encode()), None, 14),
        *kinesis_event(good[1:], first_sequence=20)["Records"],
    ]

    # When the batch is handled
    response = handler.handle(event, aws.runtime()[0])

    # Then no record fails the batch, the good ones are stored, and each bad one is
    # in the dead-letter queue with its reason, its payload cut to fit
    assert response == {"batchItemFailures": []}
    assert len(aws.records("reading")) == 2
    items = aws.dead_letters()
    assert sorted((d["code"], d["field"]) for d in items) == [
        ("malformed_record", "kinesis"),
        ("missing", "kinesis.partitionKey"),
        ("not_base64", "kinesis.data"),
        ("not_json", "kinesis.data"),
        ("not_json", "kinesis.data"),
        ("not_json", "kinesis.data"),
    ]
    reasons = " ".join(d["reason"] for d in items)
    assert "recursion limit exceeded" in reasons
    assert "number out of range" in reasons
    assert all(len(json.dumps(d)) < 256 * 1024 for d in items)
    assert any(d.get("payloadTruncated") for d in items)


def test_a_payload_naming_another_device_than_its_partition_key_is_quarantined(
    aws: LocalAws,
) -> None:
    # Given a record routed by the topic's deviceId whose payload claims another device
    forged = message("pump-1", NOW, ("temp-1", 99))
    event = kinesis_event([forged])
    event["Records"][0]["kinesis"]["partitionKey"] = "pump-2"

    # When the batch is handled
    response = handler.handle(event, aws.runtime()[0])

    # Then nothing is processed under either id, and the reason names both
    assert response == {"batchItemFailures": []}
    assert aws.records() == []
    assert aws.alerts() == []
    assert aws.state_item("pump-1") is None
    [item] = aws.dead_letters()
    assert (item["code"], item["field"], item["deviceId"]) == (
        "device_mismatch",
        "deviceId",
        "pump-2",
    )
    assert item["reason"] == (
        "device_mismatch: deviceId: the payload's deviceId 'pump-1' is not the record's "
        "partition key 'pump-2', the deviceId the topic rule took from the topic"
    )
    assert item["payload"] == forged


def test_a_record_too_far_in_the_future_keeps_its_dead_letter_id_on_a_retry(
    aws: LocalAws,
) -> None:
    # Given a batch with a reading an hour ahead of the function's clock
    event = kinesis_event([message("pump-0", NOW + 600_000 + 3_600_000, ("temp-1", 20))])
    rt, _ = aws.runtime()

    # When the batch is handled, and again a minute later (Lambda's retry)
    handler.handle(event, rt)
    aws.now_ms += 60_000
    handler.handle(event, rt)

    # Then both dead-letter items say the message time is wrong, carry it, and share one id
    first, second = aws.dead_letters()
    assert first["field"] == second["field"] == "timestamp"
    assert first["detail"] != second["detail"]  # it quotes the clock
    assert first["id"] == second["id"]
    assert first["payload"]["timestamp"] == NOW + 600_000 + 3_600_000


def test_a_direct_message_too_far_in_the_future_keeps_its_dead_letter_id_on_a_retry(
    aws: LocalAws,
) -> None:
    # Given one direct invocation whose message is stamped an hour ahead
    event = message("pump-0", NOW + 600_000 + 3_600_000, ("temp-1", 20))
    rt, _ = aws.runtime()

    # When it is handled, and again a minute later (Lambda's asynchronous retry)
    handler.handle(event, rt)
    aws.now_ms += 60_000
    handler.handle(event, rt)

    # Then the two dead-letter items are one item twice: same id, the message time named
    first, second = aws.dead_letters()
    assert first["id"] == second["id"]
    assert first["field"] == second["field"] == "timestamp"
    assert first["payload"]["timestamp"] == NOW + 600_000 + 3_600_000
