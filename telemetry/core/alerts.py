"""The alert state machine: per (device, sensor, rule), OK, WARNING or CRITICAL.

Operators hear about a change once: RAISED (OK to WARNING or CRITICAL),
ESCALATED (WARNING to CRITICAL), DEESCALATED (CRITICAL to WARNING) and
RESOLVED (to OK). Nothing is emitted while the level holds.

- A level is reached after `for` consecutive readings past it (or a breach
  held `for` long, in reading time), counted per level; clearing is immediate
  once the value is past the level's hysteresis band.
- Readings are evaluated in reading-time order. A reading no newer than what
  the state last recorded for its key (`last_ms`) is late: it is stored by the
  caller but never changes the state, so replaying readings is a no-op. While
  an alert is active or a streak counts, `last_ms` follows the newest reading
  evaluated, so a late reading can never resolve or de-escalate an alert that
  newer data kept. One case remains: a late breach on a quiet key, whose line
  is only its last change, is evaluated (it may raise an alert that a newer,
  quiet reading already passed).
- The state changes, and so must be written, on transitions and on every
  reading while an alert is active or a streak counts; a quiet key costs no
  write, and the state does not grow with the number of readings.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum
from typing import Any, Final

from telemetry.core.messages import Reading, iso_utc, parse_time_ms
from telemetry.core.rules import Rule, RuleSet, Side


class Severity(IntEnum):
    """Alert levels, ordered so that comparisons read naturally."""

    OK = 0
    WARNING = 1
    CRITICAL = 2


class Status(StrEnum):
    RAISED = "RAISED"
    ESCALATED = "ESCALATED"
    DEESCALATED = "DEESCALATED"
    RESOLVED = "RESOLVED"


@dataclass(frozen=True, slots=True)
class Streak:
    """Consecutive readings past one level that has not been reached yet."""

    count: int
    start_ms: int


@dataclass(frozen=True, slots=True)
class AlertState:
    """What is known of one (sensor, rule) on a device.

    `side` says which direction the active alert is on; `alert_id` and
    `since_ms` identify the episode (RAISED to RESOLVED); `value` is the value
    at the last transition; `last_ms` is the reading time of the last change
    recorded here, the line before which readings are late.
    """

    severity: Severity = Severity.OK
    side: str | None = None
    alert_id: str | None = None
    since_ms: int | None = None
    value: float | None = None
    last_ms: int = -1
    streaks: Mapping[str, Streak] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity.name, "last": self.last_ms}
        if self.severity is not Severity.OK:
            out |= {
                "side": self.side,
                "alertId": self.alert_id,
                "since": self.since_ms,
                "value": self.value,
            }
        if self.streaks:
            out["streaks"] = {k: [s.count, s.start_ms] for k, s in self.streaks.items()}
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> AlertState:
        streaks = {k: Streak(int(v[0]), int(v[1])) for k, v in raw.get("streaks", {}).items()}
        since = raw.get("since")
        value = raw.get("value")
        return cls(
            severity=Severity[raw["severity"]],
            side=raw.get("side"),
            alert_id=raw.get("alertId"),
            since_ms=int(since) if since is not None else None,
            value=float(value) if value is not None else None,
            last_ms=int(raw.get("last", -1)),
            streaks=streaks,
        )


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of alert level, as operators receive it.

    `threshold` is the level crossed: for RAISED and ESCALATED the breached
    level, for DEESCALATED and RESOLVED the clear level (level minus or plus
    hysteresis). `alert_id` is the same on every transition of an episode and
    derived from the device, sensor, rule and raise time, so that a retried
    invocation produces the same id.
    """

    alert_id: str
    status: Status
    severity: Severity
    previous_severity: Severity
    device_id: str
    sensor_id: str
    rule: str
    value: float
    threshold: float | None
    time_ms: int
    since_ms: int
    direction: str
    type: str | None = None
    location: str | None = None
    unit: str | None = None

    @property
    def key(self) -> str:
        """Identifies this transition across retries: alertId, status and time."""
        return f"{self.alert_id}:{self.status.value}:{self.time_ms}"

    @property
    def routing_severity(self) -> Severity:
        """CRITICAL when either side of the change is CRITICAL: an operator who
        filters on CRITICAL receives the raise and its resolution."""
        return max(self.severity, self.previous_severity)

    def to_json(self) -> dict[str, Any]:
        """The wire form: SNS body, backtest output, the outbox."""
        out: dict[str, Any] = {
            "alertId": self.alert_id,
            "status": self.status.value,
            "severity": self.severity.name,
            "previousSeverity": self.previous_severity.name,
            "deviceId": self.device_id,
            "sensorId": self.sensor_id,
            "rule": self.rule,
            "value": self.value,
            "threshold": self.threshold,
            "direction": self.direction,
            "time": iso_utc(self.time_ms),
            "since": iso_utc(self.since_ms),
        }
        known = (("type", self.type), ("location", self.location), ("unit", self.unit))
        out.update({key: value for key, value in known if value is not None})
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Transition:
        return cls(
            alert_id=raw["alertId"],
            status=Status(raw["status"]),
            severity=Severity[raw["severity"]],
            previous_severity=Severity[raw["previousSeverity"]],
            device_id=raw["deviceId"],
            sensor_id=raw["sensorId"],
            rule=raw["rule"],
            value=float(raw["value"]),
            threshold=None if raw.get("threshold") is None else float(raw["threshold"]),
            time_ms=parse_time_ms(raw["time"]),
            since_ms=parse_time_ms(raw["since"]),
            direction=raw.get("direction", "above"),
            type=raw.get("type"),
            location=raw.get("location"),
            unit=raw.get("unit"),
        )


def alert_id_for(device_id: str, sensor_id: str, rule: str, since_ms: int) -> str:
    digest = hashlib.sha256(f"{device_id}|{sensor_id}|{rule}|{since_ms}".encode()).hexdigest()
    return digest[:32]


StateKey = tuple[str, str]
"""(sensorId, rule name): one alert state machine on a device."""

_OK: Final = AlertState()
_EVENT_ORDER: Final = operator.attrgetter("time_ms", "sensor_id", "value")


def _signed(level: float | None, sign: float) -> float | None:
    return None if level is None else level * sign


@dataclass(slots=True)
class _SideOutcome:
    severity: Severity
    streaks: dict[str, Streak]


def _reached(streak: Streak | None, rule: Rule, time_ms: int) -> bool:
    if streak is None:
        return False
    if rule.for_ms is not None:
        return time_ms - streak.start_ms >= rule.for_ms
    return streak.count >= rule.for_readings


def _step_side(
    side: Side, rule: Rule, state: AlertState, value: float, time_ms: int
) -> _SideOutcome:
    sign = side.sign
    v = value * sign
    h = rule.hysteresis
    w = _signed(side.warning, sign)
    c = _signed(side.critical, sign)
    streaks: dict[str, Streak] = {}
    for name, level in (("warning", w), ("critical", c)):
        key = f"{side.name}.{name}"
        if level is not None and v > level:
            old = state.streaks.get(key)
            if old is None:
                streaks[key] = Streak(1, time_ms)
            elif rule.for_ms is not None:
                streaks[key] = old  # a duration needs only its start: no write per reading
            else:
                streaks[key] = Streak(old.count + 1, old.start_ms)
    held = Severity.OK
    if state.side == side.name:
        if state.severity is Severity.CRITICAL and c is not None and v > c - h:
            held = Severity.CRITICAL
        elif state.severity >= Severity.WARNING and w is not None and v > w - h:
            held = Severity.WARNING
    up = Severity.OK
    if c is not None and v > c and _reached(streaks.get(f"{side.name}.critical"), rule, time_ms):
        up = Severity.CRITICAL
    elif w is not None and v > w and _reached(streaks.get(f"{side.name}.warning"), rule, time_ms):
        up = Severity.WARNING
    severity = max(held, up)
    # A level reached (or exceeded) needs no streak any more.
    if severity >= Severity.WARNING:
        streaks.pop(f"{side.name}.warning", None)
    if severity is Severity.CRITICAL:
        streaks.pop(f"{side.name}.critical", None)
    return _SideOutcome(severity, streaks)


def _clear_level(side: Side, rule: Rule, severity: Severity) -> float | None:
    """The clear level of `severity`'s level on this side (the level itself if absent)."""
    level = side.critical if severity is Severity.CRITICAL else side.warning
    if level is None:
        level = side.critical if side.critical is not None else side.warning
    if level is None:
        return None
    return level - rule.hysteresis * side.sign


def _side_named(rule: Rule, name: str | None) -> Side | None:
    return next((s for s in rule.sides if s.name == name), None)


@dataclass(frozen=True, slots=True)
class _Change:
    state: AlertState
    transitions: tuple[Transition, ...]


def _transition(
    reading: Reading,
    rule: Rule,
    state: AlertState,
    status: Status,
    severity: Severity,
    threshold: float | None,
    direction: str,
) -> Transition:
    if state.alert_id is None or state.since_ms is None:
        raise ValueError("a transition needs an episode: alert_id and since_ms")
    return Transition(
        alert_id=state.alert_id,
        status=status,
        severity=severity,
        previous_severity=state.severity,
        device_id=reading.device_id,
        sensor_id=reading.sensor_id,
        rule=rule.name,
        value=reading.value,
        threshold=threshold,
        time_ms=reading.time_ms,
        since_ms=state.since_ms,
        direction=direction,
        type=reading.type,
        location=reading.location,
        unit=reading.unit,
    )


def _resolve(reading: Reading, rule: Rule, state: AlertState) -> Transition:
    side = _side_named(rule, state.side)
    threshold = None
    if side is not None:
        lowest = Severity.WARNING if side.warning is not None else Severity.CRITICAL
        threshold = _clear_level(side, rule, lowest)
    return _transition(
        reading, rule, state, Status.RESOLVED, Severity.OK, threshold, state.side or "above"
    )


def _raise(reading: Reading, rule: Rule, side: Side, severity: Severity) -> AlertState:
    return AlertState(
        severity=severity,
        side=side.name,
        alert_id=alert_id_for(reading.device_id, reading.sensor_id, rule.name, reading.time_ms),
        since_ms=reading.time_ms,
        value=reading.value,
        last_ms=reading.time_ms,
    )


def step(state: AlertState, rule: Rule, reading: Reading) -> _Change | None:
    """Evaluate one reading; None when nothing about this state changes."""
    if reading.time_ms <= state.last_ms:
        return None
    if state.severity is Severity.OK and not state.streaks and not rule.breaches(reading.value):
        return None
    outcomes = [
        (side, _step_side(side, rule, state, reading.value, reading.time_ms)) for side in rule.sides
    ]
    side, outcome = max(outcomes, key=lambda so: (so[1].severity, so[0].name == state.side))
    streaks = {k: v for _, o in outcomes for k, v in o.streaks.items()}
    new = outcome.severity
    same_episode = state.severity is Severity.OK or state.side == side.name
    if new == state.severity and (new is Severity.OK or same_episode):
        if streaks == state.streaks and state.severity is Severity.OK and not state.streaks:
            return None
        # While an alert is active or a streak counts, every newer reading moves the
        # late-data line, so that an older reading arriving later can never resolve or
        # de-escalate what newer data kept. (A quiet key costs no write per reading.)
        kept = AlertState(
            state.severity,
            state.side,
            state.alert_id,
            state.since_ms,
            state.value,
            reading.time_ms,
            streaks,
        )
        return _Change(kept, ())
    transitions: list[Transition] = []
    if state.severity is not Severity.OK and (new is Severity.OK or not same_episode):
        transitions.append(_resolve(reading, rule, state))
        state = _OK
    if new is Severity.OK:
        return _Change(AlertState(last_ms=reading.time_ms, streaks=streaks), tuple(transitions))
    if state.severity is Severity.OK:
        raised = _raise(reading, rule, side, new)
        level = side.critical if new is Severity.CRITICAL else side.warning
        transitions.append(
            _transition(
                reading,
                rule,
                replace(raised, severity=Severity.OK),
                Status.RAISED,
                new,
                level,
                side.name,
            )
        )
        return _Change(replace(raised, streaks=streaks), tuple(transitions))
    if new > state.severity:
        status, threshold = Status.ESCALATED, side.critical
    else:
        status, threshold = Status.DEESCALATED, _clear_level(side, rule, Severity.CRITICAL)
    transitions.append(_transition(reading, rule, state, status, new, threshold, side.name))
    after = replace(
        state, severity=new, value=reading.value, last_ms=reading.time_ms, streaks=streaks
    )
    return _Change(after, tuple(transitions))


@dataclass(slots=True)
class Evaluation:
    """The outcome of evaluating a device's readings against its alert state.

    `state` is the new state (the input is never mutated); `changed` says
    whether it must be written; `late` counts readings that were too old to
    change anything; `not_evaluated` holds readings skipped with a reason.
    """

    state: dict[StateKey, AlertState]
    transitions: list[Transition] = field(default_factory=list)
    changed: bool = False
    evaluated: int = 0
    late: int = 0
    not_evaluated: list[tuple[Reading, str]] = field(default_factory=list)


def _orphans_resolved(
    state: Mapping[StateKey, AlertState], reading: Reading, rule_names: Iterable[str]
) -> list[tuple[StateKey, Transition]]:
    """Resolve active alerts of this sensor under rules that no longer apply
    (removed from the rule files, or their match changed)."""
    out = []
    for rule_name in sorted(rule_names):
        key = (reading.sensor_id, rule_name)
        before = state.get(key) or _OK
        if before.severity is Severity.OK or reading.time_ms <= before.last_ms:
            continue
        out.append((key, _resolve(reading, Rule(rule_name, ()), before)))
    return out


def evaluate(  # noqa: C901, PLR0912 - the hot loop is inlined on purpose (make bench)
    readings: Iterable[Reading],
    state: Mapping[StateKey, AlertState],
    rules: RuleSet,
) -> Evaluation:
    """Run one device's readings, in reading-time order, through its alert state."""
    current: Mapping[StateKey, AlertState] = state
    written: dict[StateKey, AlertState] | None = None  # copied on the first change
    transitions: list[Transition] = []
    not_evaluated: list[tuple[Reading, str]] = []
    evaluated = late = 0
    active: dict[str, set[str]] = {}
    if state:
        for (sensor_id, rule_name), alert in state.items():
            if alert.severity is not Severity.OK:
                active.setdefault(sensor_id, set()).add(rule_name)
    known = rules.matched
    for reading in sorted(readings, key=_EVENT_ORDER):
        if reading.warning_threshold is not None and reading.critical_threshold is not None:
            problem = reading.device_threshold_problem
            if problem is not None:
                not_evaluated.append((reading, problem))
                continue
        matched = known.get(
            (reading.device_id, reading.sensor_id, reading.type, reading.location)
        ) or rules.for_reading(reading)
        sensor_id, value, time_ms = reading.sensor_id, reading.value, reading.time_ms
        if sensor_id in active:
            orphans = active[sensor_id] - {r.name for r in matched}
            for key, resolved in _orphans_resolved(current, reading, orphans):
                if written is None:
                    current = written = dict(state)
                written[key] = AlertState(last_ms=time_ms)
                transitions.append(resolved)
        for rule in matched:
            key = (sensor_id, rule.name)
            before = current.get(key)
            quiet = rule.quiet_low <= value <= rule.quiet_high
            if before is None:
                evaluated += 1
                if quiet:
                    continue  # the common case: nothing known, nothing breached
                before = _OK
            elif time_ms <= before.last_ms:
                late += 1
                continue
            else:
                evaluated += 1
                if quiet and before.severity is Severity.OK and not before.streaks:
                    continue
            change = step(before, rule, reading)
            if change is None:
                continue
            if written is None:
                current = written = dict(state)
            written[key] = change.state
            transitions.extend(change.transitions)
    changed = written is not None
    final = written if written is not None else dict(state)
    return Evaluation(final, transitions, changed, evaluated, late, not_evaluated)


def active_alerts(state: Mapping[StateKey, AlertState]) -> dict[str, tuple[str, AlertState]]:
    """Per sensor, the most severe active alert and its rule (ties: the older
    episode, then the rule name), as the device shadow mirrors it."""
    best: dict[str, tuple[str, AlertState]] = {}
    for (sensor_id, rule), alert in sorted(state.items()):
        if alert.severity is Severity.OK:
            continue
        current = best.get(sensor_id)
        if current is None or _outranks(alert, current[1]):
            best[sensor_id] = (rule, alert)
    return best


def _outranks(alert: AlertState, other: AlertState) -> bool:
    if alert.severity != other.severity:
        return alert.severity > other.severity
    return (alert.since_ms or 0) < (other.since_ms or 0)


def quiet_oldest_first(state: Mapping[StateKey, AlertState]) -> list[StateKey]:
    """The keys a bounded store may forget, the least useful first: quiet
    entries (OK, no streak), kept only for their late-data line, oldest first.
    Active alerts and counting streaks are never among them."""
    quiet = [k for k, a in state.items() if a.severity is Severity.OK and not a.streaks]
    quiet.sort(key=lambda k: (state[k].last_ms, k))
    return quiet


def state_to_json(state: Mapping[StateKey, AlertState]) -> dict[str, Any]:
    return {f"{sensor}/{rule}": alert.to_json() for (sensor, rule), alert in sorted(state.items())}


def state_from_json(raw: Mapping[str, Any]) -> dict[StateKey, AlertState]:
    state: dict[StateKey, AlertState] = {}
    for key, value in raw.items():
        sensor, _, rule = key.partition("/")
        state[(sensor, rule)] = AlertState.from_json(value)
    return state
