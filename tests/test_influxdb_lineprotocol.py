"""Line protocol: what is written reads back identical, from a real InfluxDB.

The portable escaping (what /write and /api/v2/write get) is proven against a
real influxd 1.x, whose Go parser InfluxDB 2 shares; the InfluxDB 3 escaping
(/api/v3/write_lp) against the local server that parses as InfluxDB 3's parser
does. A label no escaping can carry unchanged is refused with its reason, never
altered.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.adapters.influxdb import (
    Dialect,
    InfluxRecords,
    InfluxWriter,
    Point,
    StaticToken,
    UnwritableError,
    escape_measurement,
    escape_tag,
    float_field,
    string_field,
)
from telemetry.core.alerts import Severity, Status, Transition
from telemetry.core.messages import Reading
from tests.influxdb_server import FakeInflux, Influxd, parse_line
from tests.strategies import NOW_MS, store_labels, store_readings

ONCE_PER_FUNCTION = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
LABELS = ("type", "location", "unit")
# What no parser reads back unchanged (see telemetry.adapters.influxdb.escape_tag).
UNWRITABLE_ANYWHERE = re.compile(r"[\t\n\r]|\\$")
UNWRITABLE_PORTABLE = re.compile(r"[\t\n\r]|\\$|\\[\\,= ]")


def transition(status: Status = Status.RAISED, time_ms: int = NOW_MS, **extra: Any) -> Transition:
    fields: dict[str, Any] = {
        "alert_id": "520f9f122544169c9882b272b57a3bb5",
        "status": status,
        "severity": Severity.CRITICAL,
        "previous_severity": Severity.OK,
        "device_id": "pump-17",
        "sensor_id": "temp-1",
        "rule": "temperature-high",
        "value": 95.2,
        "threshold": 90.0,
        "time_ms": time_ms,
        "since_ms": NOW_MS,
        "direction": "above",
        "type": "temperature",
    }
    return Transition(**(fields | extra))


def writer_for(url: str, api: str, database: str, token: str | None = None) -> InfluxWriter:
    return InfluxWriter(
        url=url, api=api, database=database, token=StaticToken(token), http=urllib3.PoolManager()
    )


def labels_of(reading: Reading) -> dict[str, str]:
    return {name: getattr(reading, name) for name in LABELS if getattr(reading, name)}


# ---------------------------------------------------------------- the real InfluxDB 1.x


@settings(max_examples=60, suppress_health_check=ONCE_PER_FUNCTION, deadline=None)
@given(readings=store_readings())
def test_every_writable_reading_reads_back_identical_from_a_real_influxdb(
    influxd: Influxd, readings: list[Reading]
) -> None:
    # Given readings with hostile labels, as the portable dialect writes them
    database = influxd.create_database(f"lp_{abs(hash(tuple(map(repr, readings))))}")
    records = InfluxRecords(Dialect.PORTABLE)
    pairs = [(records.reading(r), r) for r in readings]

    # When they are written to a real influxd through /write
    rejected = writer_for(influxd.url, "v1", database).write(pairs)

    # Then each one is either refused before sending, for a label no escaping carries ...
    refused = {id(r.source) for r in rejected}
    for reading in readings:
        unwritable = [v for v in labels_of(reading).values() if UNWRITABLE_PORTABLE.search(v)]
        assert (id(reading) in refused) == bool(unwritable)
    assert all(r.reason.startswith("cannot be written as line protocol") for r in rejected)
    # ... or stored, and reads back identical: every tag, the value, the time
    rows = influxd.rows(database, "SELECT * FROM reading GROUP BY *")
    by_sensor = {row["sensorId"]: row for row in rows}
    stored = [r for r in readings if id(r) not in refused]
    assert len(rows) == len(stored)
    for reading in stored:
        row = by_sensor[reading.sensor_id]
        assert row["deviceId"] == reading.device_id
        assert {k: row[k] for k in LABELS if row.get(k)} == labels_of(reading)
        assert float(row["value"]) == reading.value  # JSON may print a whole double bare
        assert row["time"] == reading.time_ms
    influxd.query(f'DROP DATABASE "{database}"')


def test_alert_history_reads_back_with_its_field_types(influxd: Influxd, database: str) -> None:
    # Given a RAISED transition and its RESOLVED at the same instant (a jump across the band)
    records = InfluxRecords(Dialect.PORTABLE)
    raised = transition()
    resolved = transition(Status.RESOLVED, severity=Severity.OK, threshold=None)

    # When both are written
    rejected = writer_for(influxd.url, "v1", database).write(
        [(records.alert(raised), raised), (records.alert(resolved), resolved)]
    )

    # Then both are kept (status is a tag: two series), fields with their types
    assert rejected == []
    rows = influxd.rows(database, "SELECT * FROM alert GROUP BY *")
    assert sorted(r["status"] for r in rows) == ["RAISED", "RESOLVED"]
    first = next(r for r in rows if r["status"] == "RAISED")
    assert first | {"time": 0} == {
        "time": 0,
        "deviceId": "pump-17",
        "sensorId": "temp-1",
        "rule": "temperature-high",
        "status": "RAISED",
        "type": "temperature",
        "severity": "CRITICAL",
        "previousSeverity": "OK",
        "alertId": "520f9f122544169c9882b272b57a3bb5",
        "value": 95.2,
        "threshold": 90.0,
        "since": NOW_MS,
    }
    keys = influxd.rows(database, "SHOW FIELD KEYS FROM alert")
    assert {k["fieldKey"]: k["fieldType"] for k in keys} == {
        "alertId": "string",
        "previousSeverity": "string",
        "severity": "string",
        "since": "integer",
        "threshold": "float",
        "value": "float",
    }


def test_rewriting_the_same_points_stores_them_once(influxd: Influxd, database: str) -> None:
    # Given an invocation's points: readings and an alert
    records = InfluxRecords(Dialect.PORTABLE)
    readings = [
        Reading("pump-17", "temp-1", 70.0 + i, NOW_MS + i * 1000, "temperature") for i in range(5)
    ]
    alert = transition(time_ms=NOW_MS + 4000)
    pairs = [(records.reading(r), r) for r in readings] + [(records.alert(alert), alert)]
    writer = writer_for(influxd.url, "v1", database)

    # When they are written, then written again (a retried invocation), in another order
    writer.write(pairs)
    writer.write(list(reversed(pairs)))

    # Then each series keeps one value per timestamp: nothing doubled
    assert len(influxd.rows(database, "SELECT * FROM reading")) == 5
    assert len(influxd.rows(database, "SELECT * FROM alert")) == 1
    counts = influxd.rows(database, "SELECT count(value) FROM reading")
    assert counts[0]["count"] == 5


# ---------------------------------------------------------------- InfluxDB 3's parser


@settings(max_examples=100, suppress_health_check=ONCE_PER_FUNCTION, deadline=None)
@given(readings=store_readings())
def test_every_writable_reading_reads_back_identical_through_the_v3_api(
    fake_v3: FakeInflux, readings: list[Reading]
) -> None:
    # Given readings with hostile labels, escaped for /api/v3/write_lp
    fake_v3.reset()
    records = InfluxRecords(Dialect.IOX)
    pairs = [(records.reading(r), r) for r in readings]

    # When they are written to a server parsing as InfluxDB 3 does
    rejected = writer_for(fake_v3.url, "v3", "telemetry", "write-token").write(pairs)
    stored = {dict(p.tags)["sensorId"]: p for p in fake_v3.stored("reading")}

    # Then only labels InfluxDB 3 cannot carry (tab, newline, a final backslash) are
    # refused, and everything else reads back identical
    refused = {id(r.source) for r in rejected}
    for reading in readings:
        unwritable = any(UNWRITABLE_ANYWHERE.search(v) for v in labels_of(reading).values())
        assert (id(reading) in refused) == unwritable
        if not unwritable:
            point = stored[reading.sensor_id]
            tags = dict(point.tags)
            assert tags == {"deviceId": reading.device_id, "sensorId": reading.sensor_id} | (
                labels_of(reading)
            )
            assert point.fields == {"value": reading.value}
            assert point.time == reading.time_ms


# ---------------------------------------------------------------- the escaping itself


@given(label=store_labels())
def test_the_portable_dialect_refuses_exactly_what_some_parser_would_misread(label: str) -> None:
    # Given any label, When it is escaped for /write and /api/v2/write
    try:
        escaped = escape_tag(label, Dialect.PORTABLE)
    except UnwritableError:
        # Then it is refused only for a tab, newline, a final backslash, or a backslash
        # before a character the parsers unescape differently
        assert UNWRITABLE_PORTABLE.search(label)
        return
    # Then both parsers read it back unchanged
    assert not UNWRITABLE_PORTABLE.search(label)
    for flavor in ("v2", "v3"):
        point = parse_line(f"m,t={escaped} v=1 1", flavor)
        assert dict(point.tags) == {"t": label}


@pytest.mark.parametrize(
    ("value", "portable", "iox"),
    [
        ("line 3", r"line\ 3", r"line\ 3"),
        ("a,b=c", r"a\,b\=c", r"a\,b\=c"),
        ("C:\\data", "C:\\data", "C:\\\\data"),
        ('it\'s "hot"', 'it\'s\\ "hot"', 'it\'s\\ "hot"'),
        ("température °C", "température\\ °C", "température\\ °C"),
    ],
)
def test_tag_escaping_per_dialect(value: str, portable: str, iox: str) -> None:
    # Given a label, Then each dialect escapes it as its parser expects
    assert escape_tag(value, Dialect.PORTABLE) == portable
    assert escape_tag(value, Dialect.IOX) == iox


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("a\tb", "contains a tab"),
        ("a\nb", "contains a newline"),
        ("a\rb", "contains a carriage return"),
        ("a\\", "ends with a backslash"),
    ],
)
def test_labels_no_parser_carries_are_refused_with_a_reason(value: str, reason: str) -> None:
    for dialect in (Dialect.PORTABLE, Dialect.IOX):
        with pytest.raises(UnwritableError, match=reason):
            escape_tag(value, dialect)


@pytest.mark.parametrize("value", ["a\\,b", "a\\ b", "a\\=b", "a\\\\b"])
def test_a_backslash_the_parsers_read_differently_is_refused_on_v1_and_v2_only(value: str) -> None:
    # Given a backslash before a character Go and Rust unescape differently
    with pytest.raises(UnwritableError, match="has a backslash before"):
        escape_tag(value, Dialect.PORTABLE)
    # Then InfluxDB 3's own endpoint still carries it, escaped
    assert dict(parse_line(f"m,t={escape_tag(value, Dialect.IOX)} v=1 1", "v3").tags) == {
        "t": value
    }


def test_a_reading_with_an_unwritable_label_becomes_a_point_with_its_problem() -> None:
    # Given a reading whose location ends with a backslash
    reading = Reading("pump-17", "temp-1", 81.2, NOW_MS, "temperature", "C", "line-3\\")
    # When it is turned into a point
    point = InfluxRecords().reading(reading)
    # Then the point says why it cannot be written, and keeps what it can show
    assert point.problem == "cannot be written as line protocol: location ends with a backslash"
    assert point.line.startswith("reading,deviceId=pump-17,location=")


def test_measurements_strings_and_floats_are_encoded_as_line_protocol_says() -> None:
    assert escape_measurement("my measurement,1") == r"my\ measurement\,1"
    assert string_field('say "hi" \\o/') == r'"say \"hi\" \\o/"'
    assert [float_field(v) for v in (95.2, 1e16, -0.0, 5)] == ["95.2", "1e+16", "-0.0", "5.0"]
    assert InfluxRecords().reading(Reading("d", "s", 1.5, 7)) == Point(
        "reading,deviceId=d,sensorId=s value=1.5 7"
    )


@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_float_reads_back_as_the_same_double(value: float) -> None:
    for flavor in ("v2", "v3"):
        assert parse_line(f"m v={float_field(value)} 1", flavor).fields["v"] == value
