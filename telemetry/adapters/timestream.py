"""Readings and alert history into Amazon Timestream for LiveAnalytics.

Data model (one table):
- measure `reading`: a multi-measure record per reading, measure `value`
  (DOUBLE); dimensions deviceId, sensorId, and type, location, unit when known.
- measure `alert`: a multi-measure record per transition, measures severity,
  previousSeverity, alertId (VARCHAR), value, threshold (DOUBLE), since
  (TIMESTAMP); dimensions deviceId, sensorId, rule, status, and type when known.

Measure names are fixed, so they never grow with sensors or devices.
Records are written 100 per call (the API's limit); records Timestream rejects
for good come back to the caller for the dead-letter queue.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from telemetry.adapters.aws import AWS_ERRORS, error_code_of, translate
from telemetry.core.alerts import Transition, history_direction
from telemetry.core.messages import Reading

MAX_RECORDS_PER_WRITE: Final = 100
READING_MEASURE: Final = "reading"
MAX_TEXT_MEASURE_BYTES: Final = 1024
ALERT_MEASURE: Final = "alert"


def _dimensions(pairs: Sequence[tuple[str, str | None]]) -> list[dict[str, str]]:
    return [{"Name": name, "Value": value} for name, value in pairs if value]


def _number(value: float) -> str:
    return repr(float(value))


def reading_record(reading: Reading) -> dict[str, Any]:
    return {
        "Dimensions": _dimensions(
            [
                ("deviceId", reading.device_id),
                ("sensorId", reading.sensor_id),
                ("type", reading.type),
                ("location", reading.location),
                ("unit", reading.unit),
            ]
        ),
        "MeasureName": READING_MEASURE,
        "MeasureValueType": "MULTI",
        "MeasureValues": [{"Name": "value", "Value": _number(reading.value), "Type": "DOUBLE"}],
        "Time": str(reading.time_ms),
        "TimeUnit": "MILLISECONDS",
    }


def alert_record(transition: Transition) -> dict[str, Any]:
    measures = [
        {"Name": "severity", "Value": transition.severity.name, "Type": "VARCHAR"},
        {"Name": "previousSeverity", "Value": transition.previous_severity.name, "Type": "VARCHAR"},
        {"Name": "alertId", "Value": transition.alert_id, "Type": "VARCHAR"},
        {"Name": "since", "Value": str(transition.since_ms), "Type": "TIMESTAMP"},
    ]
    for name, number in (("value", transition.value), ("threshold", transition.threshold)):
        if number is not None:
            measures.append({"Name": name, "Value": _number(number), "Type": "DOUBLE"})
    # An operator's action says who acted, and why (cut to keep the record under 2 KB).
    for name, text in (("by", transition.by), ("note", transition.note)):
        if text:
            cut = text.encode()[:MAX_TEXT_MEASURE_BYTES].decode("utf-8", "ignore")
            measures.append({"Name": name, "Value": cut, "Type": "VARCHAR"})
    # A change flapping held back is history all the same: the record says so.
    if transition.suppressed:
        measures.append({"Name": "suppressed", "Value": transition.suppressed, "Type": "VARCHAR"})
    # and, held back by a maintenance window, which one.
    if transition.maintenance:
        measures.append({"Name": "maintenance", "Value": transition.maintenance, "Type": "VARCHAR"})
    if transition.changes is not None:
        measures.append({"Name": "changes", "Value": str(transition.changes), "Type": "BIGINT"})
    # Which rules decided it, for an auditor: the AppConfig version or the files' digest.
    if transition.rules_version:
        measures.append(
            {"Name": "rulesVersion", "Value": transition.rules_version, "Type": "VARCHAR"}
        )
    return {
        "Dimensions": _dimensions(
            [
                ("deviceId", transition.device_id),
                ("sensorId", transition.sensor_id),
                ("rule", transition.rule),
                ("status", transition.status.value),
                ("type", transition.type),
                # A no-data episode and a threshold one of the same rule may both resolve
                # on the same reading: their records must be two series, not one.
                ("direction", history_direction(transition.direction)),
            ]
        ),
        "MeasureName": ALERT_MEASURE,
        "MeasureValueType": "MULTI",
        "MeasureValues": measures,
        "Time": str(transition.time_ms),
        "TimeUnit": "MILLISECONDS",
    }


def billed_bytes(record: dict[str, Any]) -> int:
    """What Timestream meters for a record, multi-measure or single-measure: 8 B
    of time, the UTF-8 bytes of dimension names and values and of measure names,
    8 B per number (a VARCHAR its bytes, a BOOLEAN one)."""
    size = 8 + len(record["MeasureName"].encode())
    for dim in record["Dimensions"]:
        size += len(dim["Name"].encode()) + len(dim["Value"].encode())
    for measure in record.get("MeasureValues", []):
        size += len(measure["Name"].encode()) + _value_bytes(measure["Type"], measure["Value"])
    if "MeasureValue" in record:
        size += _value_bytes(record.get("MeasureValueType", "DOUBLE"), record["MeasureValue"])
    return size


def _value_bytes(kind: str, value: str) -> int:
    if kind == "VARCHAR":
        return len(value.encode())
    return 1 if kind == "BOOLEAN" else 8


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A record Timestream refused for good, with its reason."""

    record: dict[str, Any]
    reason: str
    source: object


class TimestreamWriter:
    """Writes records to one table, 100 per WriteRecords call."""

    def __init__(self, database: str, table: str, client: Any) -> None:
        self._database = database
        self._table = table
        self._client = client
        self.calls = 0

    def write(
        self,
        records: Sequence[tuple[dict[str, Any], object]],
        *,
        time_left_ms: Callable[[], float] | None = None,
    ) -> list[RejectedRecord]:
        """Write every (record, source) pair; return the ones Timestream rejected.

        `source` is what produced the record (a Reading or Transition) and comes
        back with a rejection so that the caller can quarantine it. The time left
        (`time_left_ms`) is not used: the SDK's own retries are bounded by the
        client's settings instead (`telemetry.adapters.aws.CLIENT_CONFIG`: 4
        attempts, 3 s to connect, 10 s to read).
        """
        del time_left_ms
        rejected: list[RejectedRecord] = []
        for start in range(0, len(records), MAX_RECORDS_PER_WRITE):
            chunk = records[start : start + MAX_RECORDS_PER_WRITE]
            rejected.extend(self._write_chunk(chunk))
        return rejected

    def _write_chunk(self, chunk: Sequence[tuple[dict[str, Any], object]]) -> list[RejectedRecord]:
        self.calls += 1
        try:
            self._client.write_records(
                DatabaseName=self._database,
                TableName=self._table,
                Records=[record for record, _ in chunk],
            )
        except AWS_ERRORS as exc:
            if error_code_of(exc) != "RejectedRecordsException":
                raise translate("timestream-write", "WriteRecords", exc) from exc
            response = getattr(exc, "response", {})
            return [
                RejectedRecord(
                    record=chunk[item["RecordIndex"]][0],
                    reason=_rejection_reason(item),
                    source=chunk[item["RecordIndex"]][1],
                )
                for item in response.get("RejectedRecords", [])
                if 0 <= item.get("RecordIndex", -1) < len(chunk)
            ]
        return []


def _rejection_reason(item: dict[str, Any]) -> str:
    reason = str(item.get("Reason", "rejected by Timestream"))
    if "ExistingVersion" in item:
        reason += f" (existing version {item['ExistingVersion']})"
    return reason


class TimestreamRecords:
    """The table's data model, as the pipeline's record factory."""

    def reading(self, reading: Reading) -> dict[str, Any]:
        return reading_record(reading)

    def alert(self, transition: Transition) -> dict[str, Any]:
        return alert_record(transition)
