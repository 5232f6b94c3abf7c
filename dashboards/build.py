"""Build the Grafana dashboards of both stores from the rule files.

    python -m dashboards.build [--rules rules/] [--check]

Writes `dashboards/influxdb/telemetry.json` (InfluxQL, which InfluxDB 1.x, 2 and 3
all answer) and `dashboards/timestream/telemetry.json` (Timestream SQL), the same
panels on each: readings per sensor type with the levels of the rules that match
on that type drawn on the graph, readings beside the levels their alerts crossed,
the alerts active now, the alert history as annotations, readings stored over time
and, from the function's own metrics (CloudWatch), readings stored and quarantined.
`--check` fails when the committed files differ from what the rules give: rebuild
after changing rules. The provisioning files beside them (`provisioning/`) tell
Grafana where the data sources and these files are.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from telemetry.core.rules import Rule, load_rules

ROOT: Final = Path(__file__).resolve().parent
DEFAULT_RULES: Final = ROOT.parent / "rules"
OUTPUTS: Final = {
    "influxdb": ROOT / "influxdb" / "telemetry.json",
    "timestream": ROOT / "timestream" / "telemetry.json",
}
DATASOURCES: Final = {
    "influxdb": {"type": "influxdb", "uid": "telemetry-influxdb"},
    "timestream": {"type": "grafana-timestream-datasource", "uid": "telemetry-timestream"},
    "cloudwatch": {"type": "cloudwatch", "uid": "telemetry-cloudwatch"},
}
METRICS_NAMESPACE: Final = "IoTTelemetry"
ACTIVE_WINDOW: Final = "30d"
"""How far back the 'active now' table looks for an episode's last transition."""
SCHEMA_VERSION: Final = 39

# --- the queries, per store ------------------------------------------------------------

DEVICE_FILTER: Final = {
    "influxdb": '"deviceId" =~ /^$device$/ AND "sensorId" =~ /^$sensor$/',
    "timestream": "deviceId IN (${device:sqlstring}) AND sensorId IN (${sensor:sqlstring})",
}


def influxql_queries(sensor_type: str) -> dict[str, str]:
    f = DEVICE_FILTER["influxdb"]
    return {
        "readings_by_type": (
            f'SELECT mean("value") FROM "reading" WHERE "type" = \'{sensor_type}\' AND {f} '
            'AND $timeFilter GROUP BY time($__interval), "deviceId", "sensorId" fill(none)'
        ),
    }


INFLUXQL: Final = {
    "device": 'SHOW TAG VALUES FROM "reading" WITH KEY = "deviceId"',
    "sensor": (
        'SHOW TAG VALUES FROM "reading" WITH KEY = "sensorId" WHERE "deviceId" =~ /^$device$/'
    ),
    "readings": (
        f'SELECT mean("value") FROM "reading" WHERE {DEVICE_FILTER["influxdb"]} AND $timeFilter '
        'GROUP BY time($__interval), "deviceId", "sensorId" fill(none)'
    ),
    # A no-data alert's threshold is its window in seconds, not a level of the value;
    # a rate's is per unit of time, a stuck's is seconds, a spike's a jump: none drawn.
    "levels": (
        f'SELECT "threshold" FROM "alert" WHERE {DEVICE_FILTER["influxdb"]} '
        "AND \"direction\" != 'nodata' AND \"direction\" != 'rate' "
        "AND \"direction\" != 'stuck' AND \"direction\" != 'spike' AND $timeFilter "
        'GROUP BY "deviceId", "sensorId", "rule"'
    ),
    # A FLAPPING's severity is the worst of its window, not a level the alert is at.
    "active": (
        'SELECT last("severity") AS "severity", last("value") AS "value", '
        'last("threshold") AS "threshold", last("since") AS "since", last("alertId") AS "alertId" '
        f'FROM "alert" WHERE time > now() - {ACTIVE_WINDOW} AND "status" != \'FLAPPING\' '
        'GROUP BY "deviceId", "sensorId", "rule", "direction"'
    ),
    "annotations": (
        'SELECT "severity", "value", "threshold" FROM "alert" WHERE "deviceId" =~ /^$device$/ '
        'AND $timeFilter GROUP BY "status", "sensorId", "rule"'
    ),
    "stored": (
        'SELECT count("value") FROM "reading" WHERE $timeFilter GROUP BY time($__interval) fill(0)'
    ),
    "transitions": (
        'SELECT count("value") FROM "alert" WHERE $timeFilter '
        'GROUP BY time($__interval), "status" fill(0)'
    ),
}

_TS_FROM: Final = '"$__database"."$__table"'


def timestream_queries(sensor_type: str) -> dict[str, str]:
    return {
        "readings_by_type": (
            "SELECT deviceId, sensorId, BIN(time, $__interval_ms) AS t, avg(value) AS value "
            f"FROM {_TS_FROM} WHERE measure_name = 'reading' AND type = '{sensor_type}' "
            f"AND {DEVICE_FILTER['timestream']} AND $__timeFilter "
            "GROUP BY deviceId, sensorId, BIN(time, $__interval_ms) ORDER BY t"
        ),
    }


TIMESTREAM_SQL: Final = {
    "device": f"SELECT DISTINCT deviceId FROM {_TS_FROM} WHERE measure_name = 'reading' "
    "AND $__timeFilter ORDER BY deviceId",
    "sensor": f"SELECT DISTINCT sensorId FROM {_TS_FROM} WHERE measure_name = 'reading' "
    "AND deviceId IN (${device:sqlstring}) AND $__timeFilter ORDER BY sensorId",
    "readings": (
        "SELECT deviceId, sensorId, BIN(time, $__interval_ms) AS t, avg(value) AS value "
        f"FROM {_TS_FROM} WHERE measure_name = 'reading' AND {DEVICE_FILTER['timestream']} "
        "AND $__timeFilter GROUP BY deviceId, sensorId, BIN(time, $__interval_ms) ORDER BY t"
    ),
    "levels": (
        "SELECT deviceId, sensorId, rule, time AS t, threshold "
        f"FROM {_TS_FROM} WHERE measure_name = 'alert' AND {DEVICE_FILTER['timestream']} "
        "AND $__timeFilter ORDER BY t"
    ),
    "active": (
        "SELECT max_by(deviceId, time) AS deviceId, max_by(sensorId, time) AS sensorId, "
        "max_by(rule, time) AS rule, max_by(severity, time) AS severity, "
        "max_by(value, time) AS value, max_by(threshold, time) AS threshold, "
        "min(since) AS since, alertId "
        f"FROM {_TS_FROM} WHERE measure_name = 'alert' AND time > ago({ACTIVE_WINDOW}) "
        "AND status <> 'FLAPPING' GROUP BY alertId HAVING max_by(severity, time) <> 'OK'"
    ),
    "annotations": (
        "SELECT time, status, severity, sensorId, rule, value, threshold "
        f"FROM {_TS_FROM} WHERE measure_name = 'alert' AND deviceId IN (${{device:sqlstring}}) "
        "AND $__timeFilter ORDER BY time"
    ),
    "stored": (
        "SELECT BIN(time, $__interval_ms) AS t, count(*) AS readings "
        f"FROM {_TS_FROM} WHERE measure_name = 'reading' AND $__timeFilter "
        "GROUP BY BIN(time, $__interval_ms) ORDER BY t"
    ),
    "transitions": (
        "SELECT status, BIN(time, $__interval_ms) AS t, count(*) AS transitions "
        f"FROM {_TS_FROM} WHERE measure_name = 'alert' AND $__timeFilter "
        "GROUP BY status, BIN(time, $__interval_ms) ORDER BY t"
    ),
}


# --- levels from the rules ------------------------------------------------------------


def type_levels(rules: Iterable[Rule]) -> dict[str, list[tuple[str, dict[str, float]]]]:
    """Per sensor type, the (rule, levels) of the rules that match on type (and
    perhaps location): those a type's readings panel can draw."""
    out: dict[str, list[tuple[str, dict[str, float]]]] = {}
    for rule in rules:
        if rule.condition is not None:
            continue  # a rate's levels are per unit of time, the others' are not values
        match = dict(rule.match)
        if (
            "type" not in match
            or set(match) - {"type", "location"}
            or any(c in match["type"] for c in "*?[")
        ):
            continue
        levels = {
            f"{side.name}.{name}": value
            for side in rule.sides
            for name, value in (("warning", side.warning), ("critical", side.critical))
            if value is not None
        }
        out.setdefault(match["type"], []).append((rule.name, levels))
    return out


_STEP_COLORS: Final = {
    "above.warning": "orange",
    "above.critical": "red",
    "below.warning": "green",
    "below.critical": "orange",
}
"""The color of the band that starts at a level, going up."""


def threshold_steps(levels: Iterable[dict[str, float]]) -> list[dict[str, Any]]:
    """Grafana threshold steps (ascending) for these levels: green inside every band,
    orange past a warning, red past a critical."""
    marks: dict[float, str] = {}
    base = "green"
    for level in levels:
        for slot, value in level.items():
            marks[value] = _STEP_COLORS[slot]
            if slot == "below.critical":
                base = "red"
            elif slot == "below.warning" and base == "green":
                base = "orange"
    steps: list[dict[str, Any]] = [{"color": base, "value": None}]
    return steps + [{"color": color, "value": value} for value, color in sorted(marks.items())]


# --- panels ---------------------------------------------------------------------------


def _target(store: str, query: str, ref: str = "A", **extra: Any) -> dict[str, Any]:
    if store == "influxdb":
        return {
            "refId": ref,
            "datasource": DATASOURCES["influxdb"],
            "query": query,
            "rawQuery": True,
            "resultFormat": extra.pop("format", "time_series"),
            **extra,
        }
    return {
        "refId": ref,
        "datasource": DATASOURCES["timestream"],
        "rawQuery": query,
        "format": extra.pop("format", "time_series"),
        **extra,
    }


def _panel(
    panel_id: int,
    title: str,
    kind: str,
    grid: tuple[int, int, int, int],
    targets: list[dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    x, y, w, h = grid
    return {
        "id": panel_id,
        "title": title,
        "type": kind,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        **extra,
    }


def _variable(store: str, name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCES[store],
        "query": query if store == "influxdb" else {"rawQuery": query},
        "definition": query,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "allValue": ".*" if store == "influxdb" else None,
        "sort": 1,
    }


def _cloudwatch(metric: str, ref: str) -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": DATASOURCES["cloudwatch"],
        "namespace": METRICS_NAMESPACE,
        "metricName": metric,
        "dimensions": {"service": "telemetry"},
        "statistic": "Sum",
        "period": "",
        "region": "default",
        "matchExact": True,
        "queryMode": "Metrics",
        "metricQueryType": 0,
        "metricEditorMode": 0,
        "id": "",
        "expression": "",
        "label": metric,
    }


def dashboard(store: str, rules: Sequence[Rule]) -> dict[str, Any]:
    """One store's dashboard, from its queries and the rules' levels."""
    q = INFLUXQL if store == "influxdb" else TIMESTREAM_SQL
    per_type = influxql_queries if store == "influxdb" else timestream_queries
    panels = [
        _panel(
            1,
            "Readings and the levels their alerts crossed",
            "timeseries",
            (0, 0, 24, 9),
            [_target(store, q["readings"], "A"), _target(store, q["levels"], "B")],
            description="Mean of each sensor per interval (A); the threshold of each alert "
            "transition (B): the level crossed, or the clear level when it resolved.",
            fieldConfig={
                "defaults": {"custom": {"spanNulls": True}},
                "overrides": [
                    {
                        "matcher": {"id": "byFrameRefID", "options": "B"},
                        "properties": [
                            {"id": "custom.drawStyle", "value": "points"},
                            {"id": "custom.pointSize", "value": 9},
                            {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
                        ],
                    }
                ],
            },
        ),
        _panel(
            2,
            "Alerts active now",
            "table",
            (0, 9, 12, 8),
            [_target(store, q["active"], "A", format="table")],
            description=f"The last transition of each episode within {ACTIVE_WINDOW}, "
            "unless it resolved.",
            transformations=[
                {
                    "id": "filterByValue",
                    "options": {
                        "type": "exclude",
                        "match": "any",
                        "filters": [
                            {
                                "fieldName": "severity",
                                "config": {"id": "equal", "options": {"value": "OK"}},
                            }
                        ],
                    },
                }
            ],
        ),
        _panel(
            3,
            "Alert transitions",
            "timeseries",
            (12, 9, 12, 8),
            [_target(store, q["transitions"], "A")],
            fieldConfig={
                "defaults": {"custom": {"drawStyle": "bars", "stacking": {"mode": "normal"}}},
                "overrides": [],
            },
        ),
        _panel(
            4,
            "Readings stored",
            "timeseries",
            (0, 17, 12, 7),
            [_target(store, q["stored"], "A")],
            description="Readings in the store per interval.",
        ),
        _panel(
            5,
            "Readings quarantined, late and refused (function metrics)",
            "timeseries",
            (12, 17, 12, 7),
            [
                _cloudwatch("ReadingsRejected", "A"),
                _cloudwatch("LateReadings", "B"),
                _cloudwatch("TimestreamRecordsRejected", "C"),
            ],
            description="EMF metrics of the function, printed only when they happen: "
            "readings quarantined by validation, readings that arrived late, points the "
            "store refused (both stores). Readings stored: the panel beside, from the store.",
        ),
    ]
    y = 24
    for index, (sensor_type, named) in enumerate(sorted(type_levels(rules).items())):
        names = ", ".join(name for name, _ in named)
        panels.append(
            _panel(
                10 + index,
                f"{sensor_type.capitalize()} ({names})",
                "timeseries",
                ((index % 2) * 12, y + (index // 2) * 8, 12, 8),
                [_target(store, per_type(sensor_type)["readings_by_type"], "A")],
                fieldConfig={
                    "defaults": {
                        "custom": {"thresholdsStyle": {"mode": "line+area"}},
                        "thresholds": {
                            "mode": "absolute",
                            "steps": threshold_steps(levels for _, levels in named),
                        },
                    },
                    "overrides": [],
                },
            )
        )
    annotation = (
        {"query": q["annotations"], "textColumn": "severity", "tagsColumn": "status,sensorId,rule"}
        if store == "influxdb"
        else {"target": {"rawQuery": q["annotations"], "format": "table"}}
    )
    return {
        "uid": f"iot-telemetry-{store}",
        "title": f"IoT telemetry ({'InfluxDB' if store == 'influxdb' else 'Timestream'})",
        "description": "Generated by `python -m dashboards.build` from the rule files.",
        "tags": ["iot", "telemetry", store],
        "timezone": "utc",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                _variable(store, "device", "Device", q["device"]),
                _variable(store, "sensor", "Sensor", q["sensor"]),
            ]
        },
        "annotations": {
            "list": [
                {
                    "name": "Alert history",
                    "enable": True,
                    "iconColor": "red",
                    "datasource": DATASOURCES[store],
                    **annotation,
                }
            ]
        },
        "panels": panels,
    }


def render(store: str, rules: Sequence[Rule]) -> str:
    return json.dumps(dashboard(store, rules), indent=2, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rules", type=Path, default=DEFAULT_RULES)
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    rules = load_rules(args.rules).rules
    stale = []
    for store, path in OUTPUTS.items():
        text = render(store, rules)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if stale:
        sys.stderr.write(f"stale: {', '.join(stale)}; run: python -m dashboards.build\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
