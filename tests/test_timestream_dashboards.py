"""The Timestream dashboard's SQL parses and names only what the function writes.

No Timestream answers here (moto's returns nothing), so each query is checked as the
Grafana Timestream plugin would send it: its macros expanded ($__database, $__table,
$__timeFilter, $__interval_ms, the dashboard's variables), Timestream's interval
literals (`ago(30d)`, `bin(time, 60000ms)`) read as SQL intervals, then parsed by
sqlglot as Trino SQL (Timestream's dialect is Trino's, plus those literals). Columns
must be the dimensions and measures the function's records carry; functions not in
sqlglot's grammar must be Timestream's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from dashboards import build

ROOT = Path(__file__).resolve().parent.parent
ADAPTER = ROOT / "telemetry" / "adapters" / "timestream.py"

# What the plugin puts in place of its macros, and Grafana of the variables.
MACROS = {
    "$__database": "telemetry-db",
    "$__table": "readings",
    "$__timeFilter": (
        "time BETWEEN from_iso8601_timestamp('2025-11-27T10:00:00Z') "
        "AND from_iso8601_timestamp('2025-11-27T11:00:00Z')"
    ),
    "$__interval_ms": "60000ms",
    "$__now_ms": "1764241200000",
    "${device:sqlstring}": "'pump-0001','pump-0002'",
    "${sensor:sqlstring}": "'temp-1'",
}
# Timestream's interval literal: a number and a unit, outside any quoted text.
INTERVAL_LITERAL = re.compile(r"(?<![\w.'\"])(\d+)(ns|us|ms|s|m|h|d)\b")
UNITS = {
    "ns": "NANOSECOND",
    "us": "MICROSECOND",
    "ms": "MILLISECOND",
    "s": "SECOND",
    "m": "MINUTE",
    "h": "HOUR",
    "d": "DAY",
}
# Timestream functions sqlglot's Trino grammar does not know by name.
TIMESTREAM_FUNCTIONS = {"bin", "ago", "from_iso8601_timestamp", "from_milliseconds"}
TABLE_COLUMNS = {"time", "measure_name"}


def record_fields() -> set[str]:
    """The dimension and measure names the function's records carry, as its
    Timestream adapter writes them."""
    source = ADAPTER.read_text(encoding="utf-8")
    pairs = re.findall(r'\(\s*"(\w+)",\s*(?:reading|transition|NODATA)', source)
    named = re.findall(r'"Name":\s*"(\w+)"', source)
    loops = re.findall(r'for name, \w+ in \(\(("\w+".*?)\)\):', source)
    looped = [n for group in loops for n in re.findall(r'\("(\w+)",', group)]
    return {*pairs, *named, *looped}


def expand(query: str) -> str:
    """The query as the plugin sends it, with interval literals in SQL's spelling."""
    for macro, value in sorted(MACROS.items(), key=lambda m: -len(m[0])):
        query = query.replace(macro, value)
    if "$" in query:
        raise ValueError(f"a macro or variable the plugin does not expand: {query}")
    return INTERVAL_LITERAL.sub(lambda m: f"INTERVAL '{m[1]}' {UNITS[m[2]]}", query)


def queries(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "rawQuery" and isinstance(value, str):
                yield value
            else:
                yield from queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item)


def problems(query: str) -> list[str]:
    """What is wrong with one of the dashboard's queries (nothing: [])."""
    try:
        sql = expand(query)
        statements = sqlglot.parse(sql, read="trino", error_level=sqlglot.ErrorLevel.RAISE)
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError, ValueError) as error:
        return [f"does not parse: {error}"]
    if len(statements) != 1 or not isinstance(statements[0], exp.Select):
        return ["not one SELECT"]
    [select] = statements
    found = []
    tables = [(t.db, t.name) for t in select.find_all(exp.Table)]
    if tables != [(MACROS["$__database"], MACROS["$__table"])]:
        found.append(f"reads {tables}, not the function's table")
    aliases = {a.alias for a in select.find_all(exp.Alias)}
    known = record_fields() | TABLE_COLUMNS
    found.extend(
        f"column {column.name!r} is not written by the function"
        for column in select.find_all(exp.Column)
        if column.name not in known | aliases
    )
    found.extend(
        f"function {function.name!r} is not Timestream's"
        for function in select.find_all(exp.Anonymous)
        if function.name.lower() not in TIMESTREAM_FUNCTIONS
    )
    return found


@pytest.fixture(scope="module")
def dashboard_queries() -> list[str]:
    document = json.loads(build.OUTPUTS["timestream"].read_text(encoding="utf-8"))
    return list(queries(document))


def test_the_function_writes_the_fields_the_checks_expect() -> None:
    # Given the adapter's record fields, read from its source
    fields = record_fields()
    # Then the reading's and the alert's dimensions and measures are all found
    assert {"deviceId", "sensorId", "type", "location", "unit", "value"} <= fields
    assert {"rule", "status", "severity", "alertId", "since", "threshold"} <= fields


def test_every_timestream_query_of_the_dashboard_parses_and_names_what_is_written(
    dashboard_queries: list[str],
) -> None:
    # Given every rawQuery of the Timestream dashboard (panels and variables)
    assert len(dashboard_queries) >= 10
    # When each is expanded as the plugin does and parsed
    found = {query: problems(query) for query in dashboard_queries}
    # Then none has a problem
    assert {q: p for q, p in found.items() if p} == {}


@pytest.mark.parametrize(
    ("typo", "fixed"),
    [
        ('SELECT count(*) AS n FORM "$__database"."$__table"', "does not parse"),
        (
            'SELECT avg(valeu) AS v FROM "$__database"."$__table" WHERE $__timeFilter',
            "column 'valeu'",
        ),
        (
            'SELECT BINN(time, $__interval_ms) AS t FROM "$__database"."$__table"',
            "function 'BINN'",
        ),
        (
            'SELECT count(*) AS n FROM "$__database"."$__tabel" WHERE time > ago(1h)',
            "does not parse",
        ),
        ('SELECT count(*) AS n FROM "$__database"."$__table" WHERE time > ago(1h', "parse"),
        ('SELECT deviceId FROM "$__database"."$__table" WHERE sensorId IN ($sensor)', "parse"),
    ],
)
def test_a_typo_in_a_query_is_caught(typo: str, fixed: str) -> None:
    # Given a query with a typo of the kinds a hand edit makes
    # When it is checked as the dashboard's are
    found = problems(typo)
    # Then the problem is named
    assert any(fixed in problem for problem in found), found


def test_the_checked_expansion_keeps_timestream_literals_valid() -> None:
    # Given the literals the dashboard uses
    # When expanded
    # Then they are SQL intervals, and quoted text is left alone
    assert expand("ago(30d)") == "ago(INTERVAL '30' DAY)"
    assert expand("bin(time, $__interval_ms)") == "bin(time, INTERVAL '60000' MILLISECOND)"
    assert expand("x = '5m'") == "x = '5m'"
    assert (
        problems(
            'SELECT BIN(time, $__interval_ms) AS t, count(*) AS n FROM "$__database"."$__table" '
            "WHERE $__timeFilter AND time > ago(1h) GROUP BY BIN(time, $__interval_ms)"
        )
        == []
    )
