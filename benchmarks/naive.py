"""The seed's handler, kept as the baseline the benchmarks compare with.

Per message: one Timestream WriteRecords call holding one single-measure record
per reading (measure name = sensorId, dimensions deviceId and location); and, when
any reading is past its warning level, one SNS publish and one device shadow
update. It keeps no state: every anomalous message alerts again, and nothing is
ever resolved. The seed compared readings with thresholds the device sent; here
the thresholds are the default rules' warning levels, so that both handlers see
the same anomalies.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.workload import (
    HandlerRun,
    captured_output,
    clients_for,
    device_ids,
    invoke,
    local_aws,
    record_usage,
)


def naive_records(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One single-measure record per reading, as the seed wrote them."""
    records = []
    for reading in message["data"]:
        dimensions = [{"Name": "deviceId", "Value": message["deviceId"]}]
        if reading.get("location"):
            dimensions.append({"Name": "location", "Value": reading["location"]})
        records.append(
            {
                "Dimensions": dimensions,
                "MeasureName": reading["sensorId"],
                "MeasureValue": str(float(reading["value"])),
                "MeasureValueType": "DOUBLE",
                "Time": str(message["timestamp"]),
                "TimeUnit": "MILLISECONDS",
            }
        )
    return records


class NaiveHandler:
    """The seed's handler on a provisioned stack (`telemetry.local.provision.Stack`)."""

    def __init__(self, stack: Any, clients: Any, levels: Mapping[str, float]) -> None:
        self._stack = stack
        self._clients = clients
        self._levels = levels

    def handle(self, message: Mapping[str, Any]) -> None:
        self._clients.timestream.write_records(
            DatabaseName=self._stack.database,
            TableName=self._stack.table,
            Records=naive_records(message),
        )
        anomalies = [
            r for r in message["data"] if r["value"] > self._levels.get(r["type"], math.inf)
        ]
        if not anomalies:
            return
        device_id = message["deviceId"]
        self._clients.sns.publish(
            TopicArn=self._stack.topic_arn,
            Subject=f"ALERT: anomaly on {device_id}",
            Message=json.dumps({"deviceId": device_id, "anomalies": anomalies}),
        )
        alerts = {
            r["sensorId"]: {"value": r["value"], "timestamp": message["timestamp"]}
            for r in anomalies
        }
        self._clients.iot_data.update_thing_shadow(
            thingName=device_id,
            payload=json.dumps({"state": {"reported": {"alerts": alerts}}}).encode(),
        )


def run_naive(messages: Sequence[Mapping[str, Any]], levels: Mapping[str, float]) -> HandlerRun:
    """The naive handler on a fresh stack, one invocation per message."""
    run = HandlerRun("naive", len(messages))
    with local_aws(device_ids(messages)) as stack:
        clients = clients_for(stack)
        log = record_usage(clients)
        naive = NaiveHandler(stack, clients, levels)
        with captured_output() as output:
            for message in messages:
                run.add(invoke(log, functools.partial(naive.handle, message))[0])
    run.usage.log_bytes = output.bytes
    return run
