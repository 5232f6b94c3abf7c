"""The Grafana dashboards: current with the rules, shaped as provisioning needs,
and every InfluxQL query answered by a real InfluxDB holding what the function wrote.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import build
from telemetry import handler
from telemetry.adapters.influxdb import InfluxRecords
from telemetry.core.alerts import NODATA, Severity, Status, Transition
from telemetry.core.rules import load_rules
from tests.influxdb_server import Influxd
from tests.localaws import local_stack, message

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "dashboards"
PANEL_TYPES = {"timeseries", "table", "stat", "text"}


def load(store: str) -> dict[str, Any]:
    return json.loads(build.OUTPUTS[store].read_text(encoding="utf-8"))


def datasources(store: str) -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(
        (DASHBOARDS / "provisioning" / "datasources" / f"{store}.yaml").read_text()
    )
    assert document["apiVersion"] == 1
    return {d["uid"]: d for d in document["datasources"]}


def used_datasources(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = [v["datasource"] for v in dashboard["templating"]["list"]]
    found += [a["datasource"] for a in dashboard["annotations"]["list"]]
    found += [t["datasource"] for p in dashboard["panels"] for t in p["targets"]]
    return found


# ---------------------------------------------------------------- structure


def test_the_committed_dashboards_are_what_the_rules_give() -> None:
    # Given the rule files and the committed dashboards, Then rebuilding changes nothing
    assert build.main(["--check"]) == 0


@pytest.mark.parametrize("store", ["influxdb", "timestream"])
def test_each_dashboard_has_the_shape_grafana_provisioning_loads(store: str) -> None:
    # Given a store's dashboard file and its data source provisioning file
    dashboard = load(store)
    sources = datasources(store)
    # Then it is a dashboard model with a stable uid, no database id, valid panels
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    assert "id" not in dashboard or dashboard["id"] is None
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["type"] in PANEL_TYPES
        grid = panel["gridPos"]
        assert set(grid) == {"x", "y", "w", "h"}
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24
        assert grid["h"] > 0
        assert panel["targets"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    # and every query names a data source that the provisioning file defines, by uid
    for source in used_datasources(dashboard):
        assert source["uid"] in sources
        assert sources[source["uid"]]["type"] == source["type"]
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"device", "sensor"}


def test_the_dashboard_provider_points_at_both_folders() -> None:
    document = yaml.safe_load(
        (DASHBOARDS / "provisioning" / "dashboards" / "telemetry.yaml").read_text()
    )
    assert document["apiVersion"] == 1
    providers = {p["name"]: p for p in document["providers"]}
    assert {p["type"] for p in providers.values()} == {"file"}
    assert sorted(Path(p["options"]["path"]).name for p in providers.values()) == [
        "influxdb",
        "timestream",
    ]


def test_the_readings_panels_draw_the_levels_of_the_rules() -> None:
    # Given the temperature rules (above 75/90; below 3/0 outdoors)
    panels = {p["title"]: p for p in load("influxdb")["panels"]}
    temperature = next(p for t, p in panels.items() if t.startswith("Temperature"))
    steps = temperature["fieldConfig"]["defaults"]["thresholds"]["steps"]
    # Then its graph shows them: red under 0, orange to 3, green to 75, orange to 90, red
    assert [(s["color"], s["value"]) for s in steps] == [
        ("red", None),
        ("orange", 0.0),
        ("green", 3.0),
        ("orange", 75.0),
        ("red", 90.0),
    ]
    rules = load_rules(ROOT / "rules").rules
    typed = {dict(r.match).get("type") for r in rules} - {None}
    assert len([p for p in panels.values() if p["id"] >= 10]) == len(typed)


def test_timestream_queries_use_the_data_model_and_grafana_macros() -> None:
    # Given every SQL query of the Timestream dashboard
    dashboard = load("timestream")
    queries = [t["rawQuery"] for p in dashboard["panels"] for t in p["targets"] if "rawQuery" in t]
    queries += [v["query"]["rawQuery"] for v in dashboard["templating"]["list"]]
    # Then each reads the table the data source names, one measure, within a time window
    assert queries
    for query in queries:
        assert '"$__database"."$__table"' in query
        assert re.search(r"measure_name = '(reading|alert)'", query)
        assert "$__timeFilter" in query or "ago(" in query


# ---------------------------------------------------------------- InfluxQL on real data


def grafana(query: str, device: str = ".*", sensor: str = ".*") -> str:
    """The query as Grafana sends it: macros and variables replaced."""
    return (
        query.replace("$timeFilter", "time > now() - 1h")
        .replace("$__interval", "1s")
        .replace("$device", device)
        .replace("$sensor", sensor)
    )


@pytest.fixture(scope="module")
def fleet(influxd: Influxd) -> Iterator[str]:
    """What the function wrote for three sensors: pump-17's temperature raised,
    escalated, de-escalated and resolved; pump-18's still critical; its pressure quiet."""
    database = influxd.create_database("dashboards")
    now = (time.time_ns() // 1_000_000) // 1000 * 1000
    start = now - 600_000
    with local_stack(["pump-17", "pump-18"], now) as aws:
        rt, _ = aws.runtime(
            TIMESERIES_STORE="influxdb",
            INFLUXDB_URL=influxd.url,
            INFLUXDB_API="v1",
            INFLUXDB_DATABASE=database,
        )
        for i, value in enumerate([70, 80, 95, 96, 89, 88, 74, 73, 70]):
            handler.handle(message("pump-17", start + i * 10_000, ("temp-1", value)), rt)
        for i, value in enumerate([70, 80, 95, 96]):
            handler.handle(
                message("pump-18", start + i * 10_000, ("temp-1", value), ("press-1", 5)), rt
            )
    yield database
    influxd.query(f'DROP DATABASE "{database}"')


def test_the_device_and_sensor_variables_list_what_is_stored(influxd: Influxd, fleet: str) -> None:
    devices = influxd.rows(fleet, grafana(build.INFLUXQL["device"]))
    sensors = influxd.rows(fleet, grafana(build.INFLUXQL["sensor"], device="pump-18"))
    assert [d["value"] for d in devices] == ["pump-17", "pump-18"]
    assert [s["value"] for s in sensors] == ["press-1", "temp-1"]


def test_the_readings_panel_has_a_series_per_sensor(influxd: Influxd, fleet: str) -> None:
    rows = influxd.rows(fleet, grafana(build.INFLUXQL["readings"]))
    assert {(r["deviceId"], r["sensorId"]) for r in rows} == {
        ("pump-17", "temp-1"),
        ("pump-18", "temp-1"),
        ("pump-18", "press-1"),
    }
    chosen = influxd.rows(fleet, grafana(build.INFLUXQL["readings"], "pump-17", "temp-1"))
    assert sorted(r["mean"] for r in chosen if r["mean"] is not None) == sorted(
        [70, 80, 95, 96, 89, 88, 74, 73, 70]
    )


def test_the_levels_series_shows_each_level_an_alert_crossed(influxd: Influxd, fleet: str) -> None:
    rows = influxd.rows(fleet, grafana(build.INFLUXQL["levels"], "pump-17", "temp-1"))
    assert [r["threshold"] for r in sorted(rows, key=lambda r: r["time"])] == [75, 90, 88, 73]
    assert {r["rule"] for r in rows} == {"temperature-high"}


def test_the_active_alerts_table_shows_what_has_not_resolved(influxd: Influxd, fleet: str) -> None:
    # Given the table's query, and Grafana's filter dropping episodes whose last severity is OK
    rows = influxd.rows(fleet, grafana(build.INFLUXQL["active"]))
    active = [r for r in rows if r["severity"] != "OK"]
    # Then pump-18's critical temperature is listed, pump-17's resolved one is not
    assert [(r["deviceId"], r["sensorId"], r["rule"], r["severity"]) for r in active] == [
        ("pump-18", "temp-1", "temperature-high", "CRITICAL")
    ]
    assert (active[0]["value"], active[0]["threshold"]) == (95, 90)
    assert len(rows) == 2


def test_the_annotations_are_the_alert_history_of_the_device(influxd: Influxd, fleet: str) -> None:
    rows = influxd.rows(fleet, grafana(build.INFLUXQL["annotations"], device="pump-17"))
    history = sorted(rows, key=lambda r: r["time"])
    assert [(r["status"], r["severity"]) for r in history] == [
        ("RAISED", "WARNING"),
        ("ESCALATED", "CRITICAL"),
        ("DEESCALATED", "WARNING"),
        ("RESOLVED", "OK"),
    ]


def test_the_counts_add_up_to_what_was_stored(influxd: Influxd, fleet: str) -> None:
    stored = influxd.rows(fleet, grafana(build.INFLUXQL["stored"]))
    assert sum(r["count"] for r in stored) == 9 + 4 + 4
    transitions = influxd.rows(fleet, grafana(build.INFLUXQL["transitions"]))
    by_status: dict[str, int] = {}
    for row in transitions:
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["count"]
    assert by_status == {"RAISED": 2, "ESCALATED": 2, "DEESCALATED": 1, "RESOLVED": 1}


def test_each_type_panel_shows_only_its_type(influxd: Influxd, fleet: str) -> None:
    temperature = influxd.rows(
        fleet, grafana(build.influxql_queries("temperature")["readings_by_type"])
    )
    pressure = influxd.rows(fleet, grafana(build.influxql_queries("pressure")["readings_by_type"]))
    assert {r["sensorId"] for r in temperature} == {"temp-1"}
    assert {r["sensorId"] for r in pressure} == {"press-1"}


def test_every_influxql_query_of_the_dashboard_runs(influxd: Influxd, fleet: str) -> None:
    # Given every InfluxQL text in the dashboard file (panels, variables, annotations)
    dashboard = load("influxdb")
    queries = [t["query"] for p in dashboard["panels"] for t in p["targets"] if "query" in t]
    queries += [v["query"] for v in dashboard["templating"]["list"]]
    queries += [a["query"] for a in dashboard["annotations"]["list"]]
    # Then influxd answers each without an error, with data for all but the types the
    # fleet has no sensor of
    assert len(queries) >= 10
    for query in queries:
        rows = influxd.rows(fleet, grafana(query))
        assert rows or re.search(r"\"type\" = '(battery|current|humidity|level|vibration)'", query)


def test_no_data_alerts_are_listed_apart_and_draw_no_level(influxd: Influxd) -> None:
    # Given a rule with a level and a nodata window: its threshold alert acknowledged,
    # and the same sensor's no-data alert raised (threshold: the window, 300 s)
    database = influxd.create_database("dashboards_nodata")
    now = (time.time_ns() // 1_000_000) // 1000 * 1000
    hot = _transition(Status.RAISED, Severity.WARNING, "above", 80.0, 75.0, now - 300_000)
    acked = replace(
        hot,
        status=Status.ACKNOWLEDGED,
        value=None,
        threshold=None,
        by="maria",
        time_ms=now - 200_000,
    )
    silent = _transition(Status.RAISED, Severity.CRITICAL, NODATA, 80.0, 300.0, now - 100_000)
    lines = [InfluxRecords().alert(t).line for t in (hot, acked, silent)]
    assert influxd.write(database, "\n".join(lines))[0] == 204

    # When the dashboards' queries run
    levels = influxd.rows(database, grafana(build.INFLUXQL["levels"], "boiler-3", "temp-1"))
    active = influxd.rows(database, grafana(build.INFLUXQL["active"]))

    # Then the level panel draws the threshold crossed, not the window
    assert [r["threshold"] for r in levels] == [75]
    # and both alerts are active, each on its own row, the acknowledged one still WARNING
    assert sorted((r["direction"], r["severity"], r["threshold"]) for r in active) == [
        ("", "WARNING", 75),
        ("nodata", "CRITICAL", 300),
    ]
    influxd.query(f'DROP DATABASE "{database}"')


def test_flapping_and_stable_are_not_drawn_as_levels(influxd: Influxd) -> None:
    # Given a key that flapped: its last change (DEESCALATED to WARNING, held back) and
    # the FLAPPING beside it, at the same time, with the most severe level of its window
    database = influxd.create_database("dashboards_flapping")
    now = (time.time_ns() // 1_000_000) // 1000 * 1000
    hot = _transition(Status.RAISED, Severity.CRITICAL, "above", 95.0, 90.0, now - 300_000)
    held = replace(
        hot,
        status=Status.DEESCALATED,
        severity=Severity.WARNING,
        previous_severity=Severity.CRITICAL,
        value=80.0,
        threshold=90.0,
        time_ms=now - 200_000,
        muted=True,
        suppressed="flapping",
    )
    flapping = replace(
        held,
        status=Status.FLAPPING,
        severity=Severity.CRITICAL,
        threshold=None,
        muted=False,
        suppressed=None,
        changes=4,
        within_ms=600_000,
    )
    lines = [InfluxRecords().alert(t).line for t in (hot, held, flapping)]
    assert influxd.write(database, "\n".join(lines))[0] == 204

    # When the dashboards' queries run
    levels = influxd.rows(database, grafana(build.INFLUXQL["levels"], "boiler-3", "temp-1"))
    active = influxd.rows(database, grafana(build.INFLUXQL["active"]))
    history = influxd.rows(database, grafana(build.INFLUXQL["annotations"], "boiler-3"))

    # Then the levels are those the changes crossed, none from the FLAPPING
    assert sorted(r["threshold"] for r in levels) == [90, 90]
    # and the alert is active at its level, not at the FLAPPING's severity
    assert [r["severity"] for r in active] == ["WARNING"]
    # and the history shows all three, each under its status
    assert sorted(r["status"] for r in history) == ["DEESCALATED", "FLAPPING", "RAISED"]
    influxd.query(f'DROP DATABASE "{database}"')


def _transition(
    status: Status, severity: Severity, direction: str, value: float, threshold: float, at: int
) -> Transition:
    return Transition(
        alert_id=f"{direction}-episode",
        status=status,
        severity=severity,
        previous_severity=Severity.OK,
        device_id="boiler-3",
        sensor_id="temp-1",
        rule="boiler-temperature",
        value=value,
        threshold=threshold,
        time_ms=at,
        since_ms=at,
        direction=direction,
        type="temperature",
    )
