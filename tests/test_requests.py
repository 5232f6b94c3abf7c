"""What still validates the function's AWS requests, with botocore's own check off.

The clients skip botocore's client-side parameter validation (a third of a
stream batch's CPU). These tests run every kind of request the function makes
(a direct message raising, escalating and resolving alerts with a shadow and
rejections; a stream batch with hostile records; Timestream's 100-record calls;
an oversized dead-letter item; a FIFO queue and topic) and hold each one to
the service model with botocore's validator, which is what it would have done.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.validate import ParamValidator

from telemetry import handler
from telemetry.adapters.aws import CLIENT_CONFIG, make_client
from telemetry.adapters.dead_letter import MAX_PAYLOAD_DEPTH, dead_letter_body, json_safe
from telemetry.local.streams import kinesis_event, sqs_event
from tests.localaws import LocalAws, generous_rules, local_stack, message, record_calls

NOW = 1_764_237_600_000


@pytest.fixture
def aws() -> Iterator[LocalAws]:
    with local_stack([f"pump-{i}" for i in range(3)], NOW + 600_000) as stack:
        yield stack


def validation_problems(clients: Any, calls: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    by_service = {
        c.meta.service_model.service_name: c
        for c in (clients.timestream, clients.sns, clients.dynamodb, clients.iot_data, clients.sqs)
    }
    problems = []
    validator = ParamValidator()
    for service, operation, params in calls:
        model = by_service[service].meta.service_model.operation_model(operation)
        report = validator.validate(params, model.input_shape)
        if report.has_errors():
            problems.append(f"{service} {operation}: {report.generate_report()}")
    return problems


def test_the_clients_skip_botocores_own_parameter_validation() -> None:
    # Given the configuration every client of the function is built with
    # Then botocore's client-side check is off (these tests stand in for it)
    assert CLIENT_CONFIG.parameter_validation is False


def test_every_request_the_function_sends_satisfies_the_service_models(
    aws: LocalAws, tmp_path: Path
) -> None:
    # Given a runtime whose every AWS call is recorded, publishing every transition alone
    rt, clients = aws.runtime(RULES_PATH=generous_rules(tmp_path))
    log = record_calls(clients)
    values = [70, 80, 95, 96, 89, 88, 74, 73]
    direct = [message("pump-0", NOW + i * 1000, ("temp-1", v)) for i, v in enumerate(values)]
    direct[2]["data"].append({"sensorId": "bad", "value": "hot"})
    many = [
        message("pump-1", NOW + i * 1000, *[(f"temp-{j}", 95.0 + j) for j in range(10)])
        for i in range(12)
    ]
    hostile = kinesis_event([*many, b"\xff not json", {"deviceId": "pump-2", "data": "x"}])
    huge = {"deviceId": "pump-2", "data": [{"sensorId": "s", "value": "x" * 300_000}]}

    # When it handles direct messages, a Kinesis batch and an SQS batch with bad records
    for event in direct:
        handler.handle(event, rt)
    handler.handle(hostile, rt)
    handler.handle(sqs_event([huge, message("pump-2", NOW, ("press-1", 0.5))]), rt)

    # Then every kind of request was made, and each satisfies its service model
    operations = {operation for _, operation, _ in log.calls}
    assert {
        "BatchGetItem",
        "PutItem",
        "WriteRecords",
        "Publish",
        "PublishBatch",
        "UpdateThingShadow",
        "SendMessageBatch",
    } <= operations
    assert validation_problems(clients, log.calls) == []


def test_fifo_queue_and_topic_requests_satisfy_the_service_models() -> None:
    # Given a stack whose topic and dead-letter queue are FIFO
    with local_stack(["pump-0"], NOW + 600_000) as aws:
        sns = make_client("sns")
        sqs = make_client("sqs")
        topic = sns.create_topic(Name="alerts.fifo", Attributes={"FifoTopic": "true"})
        queue = sqs.create_queue(QueueName="dlq.fifo", Attributes={"FifoQueue": "true"})
        rt, clients = aws.runtime(
            ALERTS_TOPIC_ARN=topic["TopicArn"], DEAD_LETTER_QUEUE_URL=queue["QueueUrl"]
        )
        log = record_calls(clients)

        # When a message raises an alert beside a bad reading
        event = message("pump-0", NOW, ("temp-1", 95))
        event["data"].append({"sensorId": "bad", "value": None})
        handler.handle(event, rt)

    # Then the FIFO fields are present and valid
    assert validation_problems(clients, log.calls) == []
    sent = log.params("sqs", "SendMessageBatch")[0]["Entries"][0]
    assert {"MessageGroupId", "MessageDeduplicationId"} <= set(sent)


def test_a_dead_letter_item_of_any_shape_becomes_strict_json_with_a_stable_id() -> None:
    # Given items no JSON encoder takes as they are: nested 10,000 deep, an integer
    # past Python's conversion limit, NaN, tuples, non-string keys, bytes
    deep: Any = "bottom"
    for _ in range(10_000):
        deep = {"x": deep}
    item = {
        "source": "validation",
        "code": "wrong_type",
        "field": "data[0].value",
        "deviceId": "pump-0",
        "reason": "wrong_type: data[0].value: Input should be a valid number",
        "payload": {"value": deep, "n": 10**5000, "f": float("nan"), 1: (1, 2), "b": b"\x00"},
    }

    # When it becomes a dead-letter body, twice with different details
    body = dead_letter_body(item)
    again = dead_letter_body({**item, "detail": "another sentence"})

    # Then it is strict JSON, says it was cut, and its id ignores the detail
    parsed = json.loads(body, parse_constant=lambda c: pytest.fail(f"non-strict {c}"))
    assert parsed["payloadTruncated"] is True
    assert parsed["payload"]["f"] == "nan"
    assert parsed["payload"]["1"] == [1, 2]
    assert parsed["payload"]["n"].startswith("<an integer of more than")
    assert parsed["id"] == json.loads(again)["id"]


def test_json_safe_keeps_ordinary_values_as_they_are() -> None:
    # Given an ordinary message, and one nested exactly to the bound
    ordinary = message("pump-0", NOW, ("temp-1", 95))
    nested: Any = 1
    for _ in range(MAX_PAYLOAD_DEPTH):
        nested = [nested]

    # When each is made JSON-safe, Then nothing changes and nothing is said to be cut
    assert json_safe(ordinary) == (ordinary, False)
    assert json_safe(nested) == (nested, False)
    cut: Any = f"<nested deeper than {MAX_PAYLOAD_DEPTH} levels>"
    for _ in range(MAX_PAYLOAD_DEPTH):
        cut = [cut]
    assert json_safe([nested]) == (cut, True)
