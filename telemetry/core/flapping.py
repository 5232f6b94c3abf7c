"""Chattering: a key whose level keeps changing reaches operators as one
FLAPPING and, once it has settled, one STABLE; every change stays in the
alert history.

A rule's `flapping: {changes: N, within: W}` (or `notifications.flapping`,
the default for every rule) applies per key (device, sensor, rule) and per
kind of alert on it: the threshold alert, the no-data alert and a device's
offline alert are different alerts (different alertIds), each watched on its
own (`kind_of`).

- Changes of level (RAISED, ESCALATED, DEESCALATED, RESOLVED), as the state
  machine emits them (hysteresis and `for` apply underneath), are counted in
  their own time: a reading's time for the changes a reading makes, the
  sweep's time for those the sweep makes (a no-data alert raised).
- The change that brings the count within W to N is muted (`suppressed:
  flapping`: history and shadow only) and followed by one FLAPPING: the
  alertId of that change's episode, `severity` the most severe level in the
  window, `changes` N and `within` W.
- While flapping, everything else of that kind that the key would publish is
  muted the same way: changes, reminders, a latch, a snooze's catch-up.
  Operators' own actions (acknowledge, snooze, reset...) are published as
  always. Disabling the key ends its flapping with it (DISABLED says so).
- Once the kind has made no change for W, one STABLE says where it is now
  (its severity, or OK; time: the last change plus W). The scheduled sweep
  makes it (the device is due then, `due_ms`); a change that comes after the
  quiet period makes it first, before the change itself, which then counts
  afresh.

Pure and deterministic: the decisions depend only on the transitions and the
state (and, for the sweep, its event time), so a retry decides the same; a
late or replayed reading, which the state machine ignores, counts nothing.
The watch is kept in `AlertState.flaps` (`Flap`), bounded by N per kind, and
only where a setting applies: without one nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Final

from telemetry.core.alerts import (
    ACTION_STATUSES,
    LEVEL_CHANGES,
    NODATA,
    OFFLINE,
    ActiveAlert,
    AlertState,
    Evaluation,
    Flap,
    Severity,
    StateKey,
    Status,
    Transition,
    alert_id_for,
    episodes,
)
from telemetry.core.rules import DEVICE_THRESHOLD_RULE, Flapping, Rule, RuleSet

THRESHOLD: Final = "threshold"
"""The kind of a threshold alert (direction above or below)."""
SUPPRESSED: Final = "flapping"
"""`Transition.suppressed` of what flapping holds back."""
_IMPLICIT: Final = Rule(DEVICE_THRESHOLD_RULE, ())
_ALERT_ID_SUFFIX: Final = "#flapping"


def kind_of(direction: str) -> str:
    """The kind of alert a direction belongs to: `threshold` (above, below),
    `nodata` or `offline`; each kind is watched on its own."""
    return direction if direction in (NODATA, OFFLINE) else THRESHOLD


def setting_for(rules: RuleSet, rule_name: str) -> Flapping | None:
    """The flapping setting of the rule named so (its own, else the default of
    `notifications`); None for a rule no longer in force."""
    rule = rules.named(rule_name)
    if rule is None:
        if rule_name != DEVICE_THRESHOLD_RULE:
            return None
        rule = _IMPLICIT
    return rules.flapping_for(rule)


def is_flapping(alert: AlertState, direction: str) -> bool:
    """Whether the kind of alert `direction` belongs to is flapping on this key."""
    flap = alert.flaps.get(kind_of(direction))
    return flap is not None and flap.flapping


def due_ms(state: Mapping[StateKey, AlertState]) -> int | None:
    """When a flapping key of the device will have been quiet long enough for
    its STABLE: the sweep's next business here."""
    due = [f.quiet_ms for a in state.values() for f in a.flaps.values() if f.flapping]
    return min(due) if due else None


def watch(evaluation: Evaluation, rules: RuleSet) -> Evaluation:
    """Count the evaluation's changes of level, key by key and kind by kind,
    in their order: mute what a flapping key would publish, add FLAPPING where
    a change reaches the setting and STABLE where a change comes after a quiet
    period (a STABLE the sweep proposed for a kind that is no longer flapping
    is dropped). Returns the evaluation itself when nothing is watched."""
    if not evaluation.transitions:
        return evaluation
    flaps: dict[tuple[StateKey, str], Flap | None] = {}
    out: list[Transition] = []
    for given in evaluation.transitions:
        if given.status in ACTION_STATUSES:
            out.append(given)
            continue
        key = (given.sensor_id, given.rule)
        slot = (key, kind_of(given.direction))
        if slot not in flaps:
            alert = evaluation.state.get(key)
            flaps[slot] = alert.flaps.get(slot[1]) if alert is not None else None
        flap = flaps[slot]
        setting = setting_for(rules, given.rule)
        if flap is None and setting is None and given.status is not Status.STABLE:
            out.append(given)
            continue
        flaps[slot], decided = _decide(flap, given, setting)
        out.extend(decided)
    state: dict[StateKey, AlertState] | None = None
    for (key, kind), flap in flaps.items():
        alert = evaluation.state.get(key)
        before = alert.flaps.get(kind) if alert is not None else None
        if flap is before:
            continue
        if state is None:
            state = dict(evaluation.state)
        held = state.get(key) or AlertState()
        kinds = {k: f for k, f in held.flaps.items() if k != kind}
        if flap is not None:
            kinds[kind] = flap
        state[key] = held.with_care(replace(held.care, flaps=kinds))
    if state is None and out == evaluation.transitions:
        return evaluation
    return Evaluation(
        state if state is not None else evaluation.state,
        out,
        evaluation.changed or state is not None,
        evaluation.evaluated,
        evaluation.late,
        evaluation.not_evaluated,
    )


def quieted(device_id: str, state: Mapping[StateKey, AlertState], now_ms: int) -> list[Transition]:
    """The STABLE transitions time alone brings as of `now_ms` (the sweep's
    event time): one per flapping kind quiet for its whole window. `watch`
    then ends the flapping they announce."""
    out = []
    for key, alert in sorted(state.items()):
        for kind, flap in sorted(alert.flaps.items()):
            if flap.flapping and flap.quiet_ms <= now_ms:
                out.append(_stable_now(device_id, key, alert, kind, flap))
    return out


def _decide(
    flap: Flap | None, given: Transition, setting: Flapping | None
) -> tuple[Flap | None, list[Transition]]:
    """One transition of a watched kind: the watch after it, and what it becomes."""
    if given.status is Status.STABLE:
        if flap is not None and flap.flapping:
            return _settled(flap), [given]
        return flap, []  # a change in this evaluation settled it already
    out: list[Transition] = []
    counted = given.status in LEVEL_CHANGES and not given.report
    if flap is not None and flap.flapping and counted and given.time_ms >= flap.quiet_ms:
        out.append(_stable_before(given, flap))
        flap = _settled(flap)
    if not counted:
        return flap, [_muted(given) if flap is not None and flap.flapping else given]
    if flap is not None and not flap.flapping and setting is None:
        return None, [*out, given]  # the setting is gone: nothing more to watch
    flap = _recorded(flap, given, setting)
    if flap.flapping:
        worse = replace(flap, worst=max(flap.worst, given.routing_severity))
        return worse, [*out, _muted(given)]
    if setting is None or len(flap.changes) < setting.changes:
        return flap, [*out, given]
    worst = max(severity for _, severity in flap.changes)
    announced = replace(
        given,
        status=Status.FLAPPING,
        severity=worst,
        threshold=None,
        changes=len(flap.changes),
        within_ms=flap.within_ms,
        muted=False,
        suppressed=None,
        report=False,
    )
    return replace(flap, flapping=True, worst=worst), [*out, _muted(given), announced]


def _recorded(flap: Flap | None, given: Transition, setting: Flapping | None) -> Flap:
    """The watch with `given` counted: changes older than the window (from the
    newest) dropped, at most the setting's count kept."""
    within = setting.within_ms if setting is not None else (flap.within_ms if flap else 0)
    most = setting.changes if setting is not None else len(flap.changes if flap else ()) or 1
    changes = sorted([*(flap.changes if flap else ()), (given.time_ms, given.routing_severity)])
    newest = changes[-1][0]
    kept = tuple(c for c in changes if c[0] > newest - within)[-most:]
    return Flap(
        kept,
        within,
        flapping=flap.flapping if flap else False,
        worst=flap.worst if flap else Severity.OK,
        alert_id=given.alert_id,
        since_ms=given.since_ms,
        direction=given.direction,
        type=given.type or (flap.type if flap else None),
        location=given.location or (flap.location if flap else None),
        unit=given.unit or (flap.unit if flap else None),
    )


def _settled(flap: Flap) -> Flap:
    # The changes stay: a change still within the window of the last ones counts
    # with them (a sweep's clock may run ahead of the readings').
    return replace(flap, flapping=False, worst=Severity.OK)


def _muted(given: Transition) -> Transition:
    return replace(given, muted=True, suppressed=SUPPRESSED)


def _stable_before(change: Transition, flap: Flap) -> Transition:
    """The STABLE a change after the quiet period brings: where the key was
    until that change."""
    active = change.previous_severity is not Severity.OK
    return _stable(
        change.device_id,
        (change.sensor_id, change.rule),
        flap,
        severity=change.previous_severity,
        alert_id=change.alert_id if active else flap.alert_id,
        since_ms=change.since_ms if active else flap.since_ms,
        direction=change.direction if active else flap.direction,
    )


def _stable_now(
    device_id: str, key: StateKey, alert: AlertState, kind: str, flap: Flap
) -> Transition:
    """The STABLE of a quiet kind, saying where the key is now."""
    now: ActiveAlert | None = next(
        (e for e in episodes(key[1], alert) if kind_of(e.direction) == kind), None
    )
    if now is None:
        return _stable(
            device_id,
            key,
            flap,
            severity=Severity.OK,
            alert_id=flap.alert_id,
            since_ms=flap.since_ms,
            direction=flap.direction,
        )
    return _stable(
        device_id,
        key,
        flap,
        severity=now.severity,
        alert_id=now.alert_id or flap.alert_id,
        since_ms=now.since_ms,
        direction=now.direction,
    )


def _stable(
    device_id: str,
    key: StateKey,
    flap: Flap,
    *,
    severity: Severity,
    alert_id: str | None,
    since_ms: int | None,
    direction: str,
) -> Transition:
    """STABLE at the end of the quiet period; routed like the FLAPPING it ends
    (`previous_severity`: the most severe level while flapping)."""
    at_ms = flap.quiet_ms
    return Transition(
        alert_id=alert_id or alert_id_for(device_id, key[0], key[1] + _ALERT_ID_SUFFIX, at_ms),
        status=Status.STABLE,
        severity=severity,
        previous_severity=max(flap.worst, severity),
        device_id=device_id,
        sensor_id=key[0],
        rule=key[1],
        value=None,
        threshold=None,
        time_ms=at_ms,
        since_ms=since_ms if since_ms is not None else at_ms,
        direction=direction,
        type=flap.type,
        location=flap.location,
        unit=flap.unit,
        within_ms=flap.within_ms,
    )
