"""The meters the benchmarks and the demo price AWS usage with."""

from __future__ import annotations

import json

import pytest

from benchmarks.bench_cost import (
    LAMBDA_LOG_BYTES,
    common_attribute_units,
    device_payload,
    full_call_units,
    headline_ratios,
    log_bytes,
    smallest_record_bytes,
)
from benchmarks.stream_child import result_digest
from benchmarks.workload import Usage
from telemetry.adapters.timestream import billed_bytes, reading_record
from telemetry.core.messages import Reading
from telemetry.local.prices import PRICES, iot_message_units, kinesis_kilobytes, metered_units


def reading(device: str = "pump-17", sensor: str = "temp-1", time_ms: int = 0) -> Reading:
    return Reading(device, sensor, 81.2, time_ms, "temperature", "C", "line-3")


def test_iot_core_meters_payload_and_topic_in_5_kb_units() -> None:
    # Given publishes just under, at and over 5 KB with their topic
    topic = "dt/plant/pump-17/telemetry"
    under = b"x" * (5 * 1024 - len(topic))

    # Then each 5 KB or part of it is one message
    assert iot_message_units(b"{}", topic) == 1
    assert iot_message_units(under, topic) == 1
    assert iot_message_units(under + b"x", topic) == 2


def test_kinesis_rounds_each_record_up_to_1_kb() -> None:
    assert [kinesis_kilobytes(b"x" * n) for n in (1, 1024, 1025, 4608)] == [1, 1, 2, 5]


def test_every_price_says_where_it_comes_from() -> None:
    assert all(price.source for price in PRICES.values())
    assert not PRICES["IoT rules triggered"].confirmed  # not read on AWS's page


def test_the_device_publishes_what_the_rule_does_not_add() -> None:
    message = {"deviceId": "pump-17", "receivedAt": 1, "timestamp": 2, "data": []}
    assert json.loads(device_payload(message)) == {"timestamp": 2, "data": []}


def test_the_smallest_record_counts_the_four_dimensions_the_time_and_the_value() -> None:
    # deviceId+pump-17, sensorId+temp-1, type+temperature, location+line-3, time, "v", double
    assert smallest_record_bytes(reading()) == 15 + 14 + 15 + 14 + 8 + 1 + 8


def test_common_attributes_count_a_devices_shared_dimensions_once_per_call() -> None:
    # Given one invocation of 40 readings from one device
    records = [reading_record(reading(time_ms=i)) for i in range(40)]
    each = billed_bytes(records[0])
    shared = len("deviceId") + len("pump-17") + len("location") + len("line-3")

    # When metered in full calls and in one call with CommonAttributes
    # Then the common call counts the shared dimensions once
    assert full_call_units([records]) == -(-40 * each // 1024)
    assert common_attribute_units([records]) == -(-(40 * (each - shared) + shared) // 1024)


def test_the_stream_digest_sees_records_the_same_with_or_without_common_attributes() -> None:
    # Given the same record sent whole, and with its deviceId as a common attribute
    record = reading_record(reading())
    whole = [("", "WriteRecords", {"Records": [record]})]
    common = {"Dimensions": [d for d in record["Dimensions"] if d["Name"] == "deviceId"]}
    rest = {**record, "Dimensions": [d for d in record["Dimensions"] if d["Name"] != "deviceId"]}
    split = [("", "WriteRecords", {"CommonAttributes": common, "Records": [rest]})]

    # Then what was stored is the same
    assert result_digest(whole)["records_digest"] == result_digest(split)["records_digest"]


def test_the_memory_benchmark_fakes_still_fit_the_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the stream benchmark's runtime, its adapters faked in memory
    from benchmarks import bench_stream
    from benchmarks.workload import (
        FUNCTION_ENV,
        SimulatedClock,
        fleet,
        invocation_time,
        stream_events,
    )
    from telemetry.handler import handle, observed

    for name, value in FUNCTION_ENV.items():
        monkeypatch.setenv(name, value)
    workload = fleet(5, 4)
    [event] = stream_events([workload])
    clock = SimulatedClock(invocation_time(workload))
    runtime, _clients = bench_stream._fake_runtime(clock)

    # When a batch goes through the real handler
    with observed() as outcomes:
        response = handle(event, runtime)

    # Then nothing fails, and every reading and alert record reached the fake store
    assert response["batchItemFailures"] == []
    (outcome,) = outcomes
    assert outcome.transitions
    readings = sum(len(m["data"]) for m in workload)
    assert runtime.pipeline._timeseries.records == readings + len(outcome.transitions)


def test_dynamodb_index_queries_deletes_and_transactions_are_metered() -> None:
    # Given the sweep's index query, a part item's delete, and a two-item transaction
    item = {"deviceId": {"S": "pump-17"}, "alerts": {"S": "x" * 1500}}
    transaction = {"TransactItems": [{"Put": {"Item": item}}, {"Delete": {"Key": {}}}]}

    # When they are metered, then as DynamoDB bills them
    assert metered_units("dynamodb", "Query", {}) == {"DynamoDB index reads": 1}
    assert metered_units("dynamodb", "DeleteItem", {}) == {"DynamoDB writes": 1}
    # two units per KB of the 1.5 KB item, two for the delete
    assert metered_units("dynamodb", "TransactWriteItems", transaction) == {"DynamoDB writes": 6}
    assert PRICES["DynamoDB index reads"].usd == PRICES["DynamoDB reads"].usd / 2


def test_headline_ratios_price_both_sides_from_the_same_lines() -> None:
    # Given a whole bill where Basic Ingest removes $1 of messaging from every column,
    # and Stream pays Kinesis
    def column(messaging: float, processing: float, kinesis: float = 0.0) -> dict[str, float]:
        lines = {
            "IoT Core messaging": messaging,
            "IoT rules triggered": 0.15,
            "IoT rule actions": 0.15,
            "Kinesis data in": kinesis,
            "Kinesis data out": 0.0,
            "Kinesis stream-hours": 0.0,
            "processing (above)": processing,
        }
        return {**lines, "total": sum(lines.values())}

    bill = {
        "Direct": column(1.0, 1.0),
        "Direct, Basic Ingest": column(0.0, 1.0),
        "Stream": column(1.0, 0.3, kinesis=0.2),
        "Stream, Basic Ingest": column(0.0, 0.3, kinesis=0.2),
        "naive": column(1.0, 0.9),
        "naive, Basic Ingest": column(0.0, 0.9),
    }

    # When the headline ratios are computed
    rows = {(r["mode"], r["what"]): r for r in headline_ratios(bill)}

    # Then Basic Ingest is applied to naive as to ours, and Stream's own side counts Kinesis
    assert rows[("Direct", "whole bill, Basic Ingest")]["naive"] == pytest.approx(1.2)
    assert rows[("Direct", "whole bill, Basic Ingest")]["ratio"] == pytest.approx(1.2 / 1.3)
    assert rows[("Direct", "whole bill")]["ratio"] == pytest.approx(2.2 / 2.3)
    side = rows[("Stream", "processing + logs + Kinesis")]
    assert (side["ours"], side["naive"]) == (pytest.approx(0.5), pytest.approx(0.9))


def test_logs_count_lambdas_own_lines_for_every_invocation_of_any_handler() -> None:
    # Given two handlers' usage: one printing nothing, one printing 100 bytes, 10 calls each
    quiet, chatty = Usage(invocations=10), Usage(invocations=10, log_bytes=100)
    # Then both pay Lambda's START/END/REPORT lines, and the chatty one its own on top
    assert log_bytes(quiet) == 10 * LAMBDA_LOG_BYTES
    assert log_bytes(chatty) == 10 * LAMBDA_LOG_BYTES + 100
    assert 200 < LAMBDA_LOG_BYTES < 400
