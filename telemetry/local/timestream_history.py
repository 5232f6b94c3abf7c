"""Readings back out of Timestream for LiveAnalytics, as messages, for a backtest.

The function writes one multi-measure record per reading (telemetry/adapters/
timestream.py): measure name `reading`, measure `value` (DOUBLE), dimensions
deviceId, sensorId and, when known, type, location, unit; time the reading's.
This reads them back with the timestream-query API (`Query`, client injected:
`telemetry.adapters.aws.make_client` with `QUERY_READ_TIMEOUT_S`)
in time windows of `window_ms`, each statement ordered by time and paged
(`MaxRows`, `NextToken`), so that a year of history never sits in memory: a
row becomes a message of one reading as soon as its page arrives.

What the table does not keep is not replayed: a device's own thresholds,
the message's receivedAt (no-data gaps are measured in reading time), the
messages validation rejected. A label no record of the table ever had (a fleet
without locations) is a column the table does not have: Timestream refuses a
statement naming it (`Column 'location' does not exist`), so the statement is
made again without that label, for this window and the ones after it.

`--device GLOB`: its literal prefix narrows the statement (`LIKE 'prefix%'`),
the glob itself is applied here to every row, as for InfluxDB.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from telemetry.core.rule_index import is_exact, literal_prefix
from telemetry.local.influx_history import DAY_MS, device_matcher, windows

PAGE_ROWS: Final = 1_000
QUERY_READ_TIMEOUT_S: Final = 70.0
"""How long the client waits for a page: Timestream ends a Query after 60 s
(API_query_Query.html), so its own answer arrives, where the function's 10 s
(telemetry.adapters.aws.CLIENT_CONFIG) would give up on a slow statement."""
_LABELS: Final = ("type", "location", "unit")
_MISSING_COLUMN: Final = re.compile(r"Column '([^']*)' does not exist")


class _MissingLabelError(Exception):
    """Timestream refused a statement for a label column the table lacks."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.label = label


class TimestreamHistoryError(RuntimeError):
    """The table cannot be read: refused, missing, or the statement failed."""


@dataclass(frozen=True, slots=True)
class TimestreamHistory:
    """Which readings to replay: those of `database`.`table` with since_ms <=
    time < until_ms, of the devices `device` (a glob) matches, if given."""

    database: str
    table: str
    since_ms: int
    until_ms: int
    device: str | None = None
    window_ms: int = DAY_MS
    page_rows: int = PAGE_ROWS


def _quoted_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def statement(
    history: TimestreamHistory, start_ms: int, end_ms: int, labels: Sequence[str] = _LABELS
) -> str:
    """The SQL of one window: every reading from start_ms to before end_ms, by time,
    with the label columns given (those the table has)."""
    where = (
        f"measure_name = 'reading' AND time >= from_milliseconds({start_ms}) "
        f"AND time < from_milliseconds({end_ms})"
    )
    if history.device is not None:
        prefix = literal_prefix(history.device)
        if is_exact(history.device):
            where += f" AND deviceId = {_literal(prefix)}"
        elif prefix:
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where += f" AND deviceId LIKE {_literal(escaped + '%')} ESCAPE '\\'"
    columns = ", ".join(("deviceId", "sensorId", *labels, "time", "value"))
    table = f"{_quoted_name(history.database)}.{_quoted_name(history.table)}"
    return f"SELECT {columns} FROM {table} WHERE {where} ORDER BY time"  # noqa: S608 - quoted


def time_ms(text: str) -> int:
    """Timestream's TIMESTAMP text (`2025-11-27 10:00:00.000000000`) in epoch ms."""
    day, _, clock = text.partition(" ")
    whole, _, fraction = clock.partition(".")
    moment = datetime.fromisoformat(f"{day}T{whole}+00:00").astimezone(UTC)
    return int(moment.timestamp()) * 1000 + int((fraction + "000")[:3])


def message(row: dict[str, Any]) -> dict[str, Any]:
    """The message of one row: its device, its time, and one reading."""
    value = row.get("value")
    reading: dict[str, Any] = {
        "sensorId": row.get("sensorId"),
        "value": float(value) if value is not None else None,
    }
    reading |= {label: row[label] for label in _LABELS if row.get(label) is not None}
    found = {"timestamp": time_ms(row["time"]), "data": [reading]}
    return {"deviceId": row["deviceId"], **found} if row.get("deviceId") is not None else found


def messages(history: TimestreamHistory, client: Any) -> Iterator[dict[str, Any]]:
    """Every reading the history names, as a message, in reading time."""
    matches = device_matcher(history.device)
    labels = list(_LABELS)
    for start, end in windows(history):
        while True:
            text = statement(history, start, end, labels)
            try:
                for row in _rows(client, text, history.page_rows, labels):
                    if matches is None or matches(str(row.get("deviceId") or "")):
                        yield message(row)
            except _MissingLabelError as missing:
                labels.remove(missing.label)
                continue
            break


def _rows(
    client: Any, text: str, page_rows: int, labels: Sequence[str] = ()
) -> Iterator[dict[str, Any]]:
    """The rows of one statement, page by page (a page may be empty);
    _MissingLabelError when its first page is refused for one of `labels`."""
    token: str | None = None
    while True:
        request: dict[str, Any] = {"QueryString": text, "MaxRows": page_rows}
        if token is not None:
            request["NextToken"] = token
        try:
            page = client.query(**request)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            missing = _MISSING_COLUMN.search(str(error.get("Message", "")))
            if (
                token is None
                and error.get("Code") == "ValidationException"
                and missing is not None
                and missing.group(1) in labels
            ):
                raise _MissingLabelError(missing.group(1)) from None
            raise TimestreamHistoryError(
                f"Timestream query failed: {error.get('Code')}: {error.get('Message')}"
            ) from None
        except BotoCoreError as exc:
            raise TimestreamHistoryError(f"cannot reach Timestream: {exc}") from None
        names = [column["Name"] for column in page.get("ColumnInfo", [])]
        for row in page.get("Rows", []):
            cells = [None if d.get("NullValue") else d.get("ScalarValue") for d in row["Data"]]
            yield dict(zip(names, cells, strict=True))
        token = page.get("NextToken")
        if not token:
            return
