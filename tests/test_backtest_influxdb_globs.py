"""`backtest --from influxdb --device GLOB`: the part of the glob the server decides
(its literal prefix, as an InfluxQL regex) is read literally by a real influxd,
whatever characters it holds."""

from __future__ import annotations

import string
from pathlib import Path

import pytest

from telemetry.core.messages import iso_utc
from telemetry.local import influx_history
from telemetry.local.influx_history import HistoryQuery
from tests.influxdb_server import Influxd
from tests.test_backtest_influxdb import from_store, reading, store, telemetry
from tests.test_cli import T0, WORKED_RULE, assert_user_error

WILDCARDS = "*?["
ODD = [c for c in string.punctuation + " " if c not in WILDCARDS] + ["€", "é", "→"]


def test_the_server_narrows_by_the_literal_prefix_character_for_character(
    influxd: Influxd, database: str
) -> None:
    # Given devices whose names differ only where a regex would see meaning
    names = ["line3:a_b-1", "line3:a_b-2", "line3:aXb-1", "line3-a_b-1", "pump-17"]
    store(influxd, database, [reading(d, T0, 80.0) for d in names])
    query = HistoryQuery(influxd.url, database, T0, T0 + 1, device="line3:a_b-*")

    # When the server answers the window's statement (before the glob is applied here)
    text = influx_history.statement(query, T0, T0 + 1)
    rows = list(influx_history._rows(query, text, influx_history._open))

    # Then it sent back only the devices with that literal prefix: `_` and `:` are themselves
    assert sorted(r["deviceId"] for r in rows) == ["line3:a_b-1", "line3:a_b-2"]


@pytest.mark.parametrize("character", ODD)
def test_any_character_in_the_prefix_is_a_literal_never_a_query_error(
    influxd: Influxd, database: str, character: str
) -> None:
    # Given a stored device pump-17
    store(influxd, database, [reading("pump-17", T0, 80.0)])

    # When the glob's literal prefix ends with the character (a backslash swallowed the
    # regex's closing slash; a backslash before a non-ASCII character is no Go escape)
    query = HistoryQuery(influxd.url, database, T0, T0 + 1, device=f"pump{character}*")
    found = [m["deviceId"] for m in influx_history.messages(query)]

    # Then the store answers, and only the device the glob names comes back
    assert found == (["pump-17"] if character == "-" else [])


def test_a_glob_no_device_can_match_is_an_empty_range_not_a_store_error(
    influxd: Influxd, database: str, tmp_path: Path
) -> None:
    # Given readings of pump-17, and a glob with a backslash in its prefix
    store(influxd, database, [reading("pump-17", T0, 80.0)])
    rules = tmp_path / "hot.yaml"
    rules.write_text(WORKED_RULE)

    # When the backtest reads the store for it
    result = telemetry(
        "backtest", "--rules", str(rules),
        *from_store(influxd, database, "--since", iso_utc(T0), "--until", iso_utc(T0 + 1),
                    "--device", "pump\\*"),
    )  # fmt: skip

    # Then there is nothing to replay (exit 2), not an InfluxDB parse error (exit 1)
    assert_user_error(result, code=2, says="no reading to replay")
    assert "400" not in result.stderr
