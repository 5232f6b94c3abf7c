"""What a device's shadow mirror shows of its alerts: one place decides it.

The mirror lists, per sensor, the most important active alert (most severe,
then oldest episode, then sensor), with what operators did about it and
`flapping: true` while that alert's kind flaps on its key, `maintenance:
<name>` while a maintenance window holds its changes back (a device's offline
alert under `$device`, `direction: "offline"`); and, apart, the keys operators
disabled. Pure: the shadow adapter writes what this says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from telemetry.core.alerts import NODATA, OFFLINE, ActiveAlert, AlertState, StateKey, active_alerts
from telemetry.core.flapping import is_flapping
from telemetry.core.messages import iso_utc


def mirror_entries(state: Mapping[StateKey, AlertState]) -> list[tuple[str, dict[str, Any]]]:
    """The shadow mirror's entries, one per sensor with an active alert, the
    most important first (most severe, then oldest episode, then sensor), so
    that a shadow too small for all of them keeps the ones that matter."""
    active = active_alerts(state)
    order = sorted(active.items(), key=lambda kv: (kv[1].rank, kv[0]))
    return [(sensor, shadow_entry(alert)) for sensor, alert in order]


def shadow_entry(alert: ActiveAlert) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "severity": alert.severity.name,
        "rule": alert.rule,
        "alertId": alert.alert_id,
        "since": iso_utc(alert.since_ms),
        "value": alert.value,
    }
    key_state = alert.state
    attention = (
        key_state.silence.attention
        if alert.direction == NODATA and key_state.silence
        else (key_state.attention)
    )
    if alert.direction not in ("above", "below"):
        entry["direction"] = alert.direction  # nodata, offline; rate, stuck, spike, range
    if alert.direction not in (NODATA, OFFLINE) and key_state.latched:
        entry["latched"] = True
    if attention is not None and attention.ack_by is not None and attention.ack_ms is not None:
        entry["acknowledged"] = {"by": attention.ack_by, "at": iso_utc(attention.ack_ms)}
    if key_state.snoozed_until_ms is not None:
        entry["snoozedUntil"] = iso_utc(key_state.snoozed_until_ms)
    if is_flapping(key_state, alert.direction):
        entry["flapping"] = True
    if key_state.maintenance is not None:
        entry["maintenance"] = key_state.maintenance.name
    return entry


def mirror_disabled(state: Mapping[StateKey, AlertState]) -> dict[str, dict[str, Any]]:
    """The keys operators disabled, listed apart in the shadow: per sensor, per
    rule, who disabled it and when."""
    out: dict[str, dict[str, Any]] = {}
    for (sensor_id, rule), alert in sorted(state.items()):
        if alert.disabled is not None:
            out.setdefault(sensor_id, {})[rule] = {
                "by": alert.disabled.by,
                "at": iso_utc(alert.disabled.at_ms),
            }
    return out
