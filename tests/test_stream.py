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

    # Then nothing failed, state was read in one BatchGetItem, and each device raised once
    assert response == {"batchItemFailures": []}
    assert calls.count("dynamodb", "BatchGetItem") == 1
    assert calls.count("dynamodb", "GetItem") == 0
    assert calls.count("dynamodb", "PutItem") == 3 * 2  # commit with the outbox, then clear it
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
