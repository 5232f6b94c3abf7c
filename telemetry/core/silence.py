"""No-data alerts: a sensor that stops reporting, found by a scheduled sweep.

Arrival is recorded by `evaluate` (see `Silence`); this module decides, as of
a sweep's time, which tracked sensors are silent. It is pure: the sweep's
time comes from its event, so a late or retried sweep decides the same.

A sensor is silent once its recorded arrival is `nodata * 1.5` old (the
record lags the true last arrival by less than `nodata / 2`): a no-data alert
is raised no earlier than `nodata` after the last reading, and no later than
`1.5 * nodata` plus one sweep interval after it. A maintenance window that
holds the sensor (telemetry.core.maintenance) stops the count: its window
starts again when the maintenance window ends. A sensor that never
reported is not tracked, so never silent. A no-data alert whose rule no
longer applies (removed, match changed, `nodata` gone or now longer than the
silence) resolves at the sweep, which looks again at every silent sensor at
least every `SILENCE_RECHECK_MS` (an hour); a changed `nodataSeverity`
re-grades it (ESCALATED or DEESCALATED).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from telemetry.core.alerts import (
    AlertState,
    Evaluation,
    Severity,
    Silence,
    StateKey,
    Status,
    Transition,
    alert_id_for,
    nodata_transition,
    silence_after_ms,
)
from telemetry.core.messages import Reading
from telemetry.core.rules import Rule, RuleSet

NODATA_ALERT_SUFFIX = "#nodata"
"""Keeps a no-data alert's id apart from the threshold alert of the same key."""


def _applies(rule: Rule | None, device_id: str, sensor_id: str, silence: Silence) -> bool:
    if rule is None or rule.nodata_ms is None:
        return False
    probe = Reading(
        device_id, sensor_id, silence.value, 0, silence.type, silence.unit, silence.location
    )
    return rule.matches(probe)


def sweep(
    device_id: str,
    state: Mapping[StateKey, AlertState],
    rules: RuleSet,
    now_ms: int,
    *,
    paused: bool = False,
    from_ms: int | None = None,
) -> Evaluation:
    """The device's state as of `now_ms`: silent sensors raised, no-data alerts
    of rules that no longer apply resolved, tracking under them stopped.

    `paused`: no sensor is called silent now (its device is offline, or its
    gateway is down); alerts already active are left as they are. `from_ms`:
    windows count from no earlier than this (the device's or its gateway's
    return): a sensor is silent only once a whole window has passed since."""
    written: dict[StateKey, AlertState] | None = None
    transitions: list[Transition] = []
    for key, found in sorted(state.items()):
        silence = found.silence
        if silence is None:
            continue
        sensor_id, rule_name = key
        rule = rules.named(rule_name)
        alert = found
        if (
            silence.severity is Severity.OK
            and rules.maintenance
            and not paused
            and now_ms >= _silent_at(silence, from_ms)
        ):
            held = _held_back(device_id, sensor_id, rules, silence, now_ms)
            if held is not silence:
                silence, alert = held, replace(found, silence=held)
        after, transition = _swept(
            device_id, sensor_id, rule_name, rule, alert, silence, now_ms, paused, from_ms
        )
        if after is found:
            continue
        if written is None:
            written = dict(state)
        written[key] = after
        if transition is not None:
            transitions.append(transition)
    changed = written is not None
    return Evaluation(written if written is not None else dict(state), transitions, changed)


def _held_back(
    device_id: str, sensor_id: str, rules: RuleSet, silence: Silence, now_ms: int
) -> Silence:
    """A reporting sensor's tracking, its window counting from no earlier than
    the end of the latest maintenance window that holds it (one in force now,
    or one that ended less than a window ago)."""
    until = rules.maintenance.counts_from(
        device_id, sensor_id, silence.type, silence.location, now_ms
    )
    if until is None or until <= silence.seen_ms or now_ms >= until + silence.window_ms:
        return silence
    if silence.counts_from_ms is not None and silence.counts_from_ms >= until:
        return silence
    return replace(silence, counts_from_ms=until)


def _swept(
    device_id: str,
    sensor_id: str,
    rule_name: str,
    rule: Rule | None,
    alert: AlertState,
    silence: Silence,
    now_ms: int,
    paused: bool = False,
    from_ms: int | None = None,
) -> tuple[AlertState, Transition | None]:
    applies = rule is not None and _applies(rule, device_id, sensor_id, silence)
    window = rule.nodata_ms if applies and rule is not None else None
    severity = Severity[rule.nodata_severity] if applies and rule is not None else None
    if silence.severity is Severity.OK:
        if window is None:
            return replace(alert, silence=None), None
        if window != silence.window_ms:
            silence = replace(silence, window_ms=window)  # a changed rule moves the deadline
        if paused or now_ms < _silent_at(silence, from_ms) or severity is None:
            return (alert if silence is alert.silence else replace(alert, silence=silence)), None
        raised = replace(
            silence,
            severity=severity,
            alert_id=alert_id_for(device_id, sensor_id, rule_name + NODATA_ALERT_SUFFIX, now_ms),
            since_ms=now_ms,
        )
        opening = replace(raised, severity=Severity.OK)
        transition = nodata_transition(
            device_id,
            sensor_id,
            rule_name,
            opening,
            Status.RAISED,
            time_ms=now_ms,
            value=silence.value,
            severity=severity,
        )
        return replace(alert, silence=raised), transition
    if (
        window is not None
        and severity is not None
        and now_ms >= silence.seen_ms + silence_after_ms(window)
    ):
        return _still_silent(device_id, sensor_id, rule_name, alert, silence, severity, now_ms)
    resolved = nodata_transition(
        device_id,
        sensor_id,
        rule_name,
        silence,
        Status.RESOLVED,
        time_ms=now_ms,
        value=silence.value,
        severity=Severity.OK,
    )
    after = (
        None
        if window is None
        else replace(silence, severity=Severity.OK, alert_id=None, since_ms=None)
    )
    return replace(alert, silence=after), resolved


def _still_silent(
    device_id: str,
    sensor_id: str,
    rule_name: str,
    alert: AlertState,
    silence: Silence,
    severity: Severity,
    now_ms: int,
) -> tuple[AlertState, Transition | None]:
    """A silent sensor whose rule still applies: re-graded if the rule's
    `nodataSeverity` changed, and its next check moved on once it was due."""
    if severity != silence.severity:
        status = Status.ESCALATED if severity > silence.severity else Status.DEESCALATED
        transition = nodata_transition(
            device_id,
            sensor_id,
            rule_name,
            silence,
            status,
            time_ms=now_ms,
            value=silence.value,
            severity=severity,
        )
        regraded = replace(silence, severity=severity, checked_ms=now_ms)
        return replace(alert, silence=regraded), transition
    if now_ms < silence.due_ms:
        return alert, None
    return replace(alert, silence=replace(silence, checked_ms=now_ms)), None


def _silent_at(silence: Silence, from_ms: int | None) -> int:
    """When a reporting sensor may be called silent: its record is old enough,
    and a whole window has passed since `from_ms` (a return, known exactly)."""
    if from_ms is None:
        return silence.due_ms
    return max(silence.due_ms, from_ms + silence.window_ms)


def next_due_ms(
    state: Mapping[StateKey, AlertState], *, paused: bool = False, from_ms: int | None = None
) -> int | None:
    """When a sweep next has something to decide for this device: the earliest
    moment a tracked, reporting sensor may be called silent (never while
    `paused`: its device is offline, and its return is written), or a silent
    one's rule is to be checked again."""
    due = []
    for alert in state.values():
        silence = alert.silence
        if silence is None:
            continue
        if silence.severity is not Severity.OK:
            due.append(silence.due_ms)
        elif not paused:
            due.append(_silent_at(silence, from_ms))
    return min(due) if due else None


def silences_in(
    history: Iterable[tuple[int, Reading]], rules: RuleSet, end_ms: int
) -> list[Transition]:
    """The no-data episodes a recorded history shows, to tune `nodata` on it:
    per (device, sensor, rule with nodata), every gap in arrival longer than the
    window is RAISED when the window ran out (where an ideal sweep would; the
    function raises up to half a window plus a sweep interval later) and
    RESOLVED by the next reading; a gap still open at `end_ms` stays RAISED.
    `history` is (arrival time, reading) pairs in any order."""
    heard: dict[tuple[str, str, str], list[tuple[int, Reading]]] = {}
    windows: dict[str, int] = {}
    for arrival, reading in history:
        for rule in rules.for_reading(reading):
            if rule.nodata_ms is not None:
                windows[rule.name] = rule.nodata_ms
                heard.setdefault((reading.device_id, reading.sensor_id, rule.name), []).append(
                    (arrival, reading)
                )
    out: list[Transition] = []
    for (_, _, rule_name), arrivals in sorted(heard.items()):
        window = windows[rule_name]
        arrivals.sort(key=lambda item: item[0])
        nexts: list[tuple[int, Reading] | None] = [*arrivals[1:], None]
        for (at, reading), following in zip(arrivals, nexts, strict=True):
            if (following[0] if following is not None else end_ms) <= at + window:
                continue
            silence, raised = gap_raised(rules, rule_name, window, at, reading)
            out.append(raised)
            if following is not None:
                out.append(gap_resolved(rule_name, silence, following[1]))
    return out


def gap_raised(
    rules: RuleSet, rule_name: str, window_ms: int, at_ms: int, reading: Reading
) -> tuple[Silence, Transition]:
    """The no-data episode of a gap in arrival after `reading` (arrived at
    `at_ms`): RAISED when the window ran out, with the last value received;
    and the episode, for `gap_resolved`."""
    named = rules.named(rule_name)
    severity = Severity[named.nodata_severity] if named is not None else Severity.WARNING
    silent_at = at_ms + window_ms
    base = Silence(at_ms, window_ms, reading.value, reading.type, reading.location, reading.unit)
    alert_id = alert_id_for(
        reading.device_id, reading.sensor_id, rule_name + NODATA_ALERT_SUFFIX, silent_at
    )
    opened = replace(base, alert_id=alert_id, since_ms=silent_at)
    raised = nodata_transition(
        reading.device_id,
        reading.sensor_id,
        rule_name,
        opened,
        Status.RAISED,
        time_ms=silent_at,
        value=reading.value,
        severity=severity,
    )
    return replace(opened, severity=severity), raised


def gap_resolved(rule_name: str, silence: Silence, back: Reading) -> Transition:
    """The end of a gap's episode (`silence`, from `gap_raised`): RESOLVED by
    the next reading `back`, in its own time."""
    return nodata_transition(
        back.device_id,
        back.sensor_id,
        rule_name,
        silence,
        Status.RESOLVED,
        time_ms=back.time_ms,
        value=back.value,
        severity=Severity.OK,
    )
