"""Device connectivity from AWS IoT Core's lifecycle events; offline alerts;
gateways whose loss explains their members' silence.

IoT Core publishes a `connected` and a `disconnected` event per MQTT session,
out of order and more than once. `versionNumber` orders them: a session's two
events carry the same number, a new session a higher one. `apply_event` keeps
the last one that counts: lower than recorded is stale; at the same number a
`disconnected` over a recorded `connected` applies, a `connected` over a
recorded `disconnected` is stale; a duplicate changes nothing. So any order of
delivery ends where in-order delivery does.

A device is offline from its applied `disconnected` on, until a `connected`
or a reading received after the disconnect. Its offline alert (one per rule
whose `offline` watches it, at state key ("$device", rule)) is RAISED by the
first sweep at or after the disconnect plus the rule's window, RESOLVED by
the connect or the reading (a maintenance window holding the device's key,
`$device`, restarts the count when it ends). While it is offline its sensors' no-data alerts
are not raised; after it is back, their windows count from its return.

A gateway is down while it is offline, or any offline or no-data alert of
its own is active (or due now). While it is down, its members' offline and
no-data alerts are held: not raised, re-examined one window later. When it
comes back, their windows count from its return.

Pure: times are given, states are values; the pipeline reads and writes them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from telemetry.core.alerts import (
    DEVICE_SENSOR,
    NODATA,
    NODATA_SLACK,
    OFFLINE,
    AlertState,
    Evaluation,
    Severity,
    StateKey,
    Status,
    Transition,
    alert_id_for,
)
from telemetry.core.immutable import immutable
from telemetry.core.messages import THING_NAME_PATTERN, MessageRejectedError, Rejection
from telemetry.core.rules import Rule, RuleSet
from telemetry.core.silence import sweep as sweep_silences

CONNECTED: Final = "connected"
DISCONNECTED: Final = "disconnected"
LIFECYCLE_EVENT_TYPES: Final = frozenset({CONNECTED, DISCONNECTED})
"""The `eventType`s of IoT Core's presence events ($aws/events/presence/...)."""
_THING_NAME: Final = re.compile(THING_NAME_PATTERN)


# ---------------------------------------------------------------- the events


@immutable
class LifecycleEvent:
    """One IoT Core presence event: `device_id` is its clientId (the device
    policy makes it the thing name), `version` its versionNumber, `time_ms` its
    timestamp (IoT Core's clock)."""

    device_id: str
    version: int
    connected: bool
    time_ms: int
    session_id: str | None = None
    disconnect_reason: str | None = None
    client_initiated: bool | None = None


def _rejected(field: str, code: str, detail: str, raw: Any, device_id: str | None) -> Exception:
    return MessageRejectedError(Rejection(field, code, detail, raw, device_id))


def _whole_number(raw: Mapping[str, Any], name: str, device_id: str | None) -> int:
    value = raw.get(name)
    if value is None:
        raise _rejected(name, "missing", "a lifecycle event carries it", raw, device_id)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _rejected(name, "wrong_type", "must be a whole number >= 0", raw, device_id)
    return value


def _optional(raw: Mapping[str, Any], name: str, kind: type, words: str, device: str) -> Any:
    value = raw.get(name)
    if value is not None and not isinstance(value, kind):
        raise _rejected(name, "wrong_type", f"must be {words}", raw, device)
    return value


def parse_lifecycle_event(raw: object) -> LifecycleEvent:
    """The event IoT Core published, or MessageRejectedError naming the field
    (a malformed event, or a clientId that is not a thing name)."""
    if not isinstance(raw, Mapping):
        raise _rejected("$", "not_an_object", "a lifecycle event is a JSON object", raw, None)
    kind = raw.get("eventType")
    if kind not in LIFECYCLE_EVENT_TYPES:
        detail = "must be connected or disconnected"
        raise _rejected("eventType", "invalid_format", detail, raw, None)
    client = raw.get("clientId")
    if client is None:
        raise _rejected("clientId", "missing", "a lifecycle event names its client", raw, None)
    if not isinstance(client, str) or not _THING_NAME.fullmatch(client):
        raise _rejected(
            "clientId",
            "invalid_format",
            "must be a thing name (1-128 characters of [a-zA-Z0-9:_-]): the device "
            "policy makes every device connect with its thing name as clientId",
            raw,
            None,
        )
    version = _whole_number(raw, "versionNumber", client)
    time_ms = _whole_number(raw, "timestamp", client)
    return LifecycleEvent(
        device_id=client,
        version=version,
        connected=kind == CONNECTED,
        time_ms=time_ms,
        session_id=_optional(raw, "sessionIdentifier", str, "text", client),
        disconnect_reason=_optional(raw, "disconnectReason", str, "text", client),
        client_initiated=_optional(raw, "clientInitiatedDisconnect", bool, "true or false", client),
    )


# ---------------------------------------------------------------- a device's connection


@immutable
class Connection:
    """The last lifecycle event that counted for a device: its `version`,
    whether it `connected`, and its time. `heard_ms` is when a reading was
    first received after that disconnect (the device is evidently back);
    `check_ms` when a sweep next has to judge its offline alerts."""

    version: int
    connected: bool
    time_ms: int
    heard_ms: int | None = None
    check_ms: int | None = None

    @property
    def since_ms(self) -> int | None:
        """Connected since (None while disconnected)."""
        return self.time_ms if self.connected else None

    @property
    def offline_since_ms(self) -> int | None:
        """Disconnected since, with nothing heard since (None: not offline)."""
        return self.time_ms if not self.connected and self.heard_ms is None else None

    @property
    def back_ms(self) -> int | None:
        """When it came back: its connect, or the first reading after its disconnect."""
        return self.time_ms if self.connected else self.heard_ms

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"v": self.version, "c": self.connected, "t": self.time_ms}
        if self.heard_ms is not None:
            out["h"] = self.heard_ms
        if self.check_ms is not None:
            out["k"] = self.check_ms
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Connection:
        heard, check = raw.get("h"), raw.get("k")
        return cls(
            int(raw["v"]),
            bool(raw["c"]),
            int(raw["t"]),
            None if heard is None else int(heard),
            None if check is None else int(check),
        )


def apply_event(current: Connection | None, event: LifecycleEvent) -> Connection | None:
    """The connection after `event`, or None when it is stale or a duplicate
    (nothing changes). A reading heard after the new disconnect still counts."""
    if current is not None:
        if event.version < current.version:
            return None
        if event.version == current.version and not (current.connected and not event.connected):
            return None
    heard = None
    if (
        current is not None
        and not event.connected
        and current.heard_ms is not None
        and current.heard_ms > event.time_ms
    ):
        heard = current.heard_ms
    return Connection(event.version, event.connected, event.time_ms, heard)


@immutable
class Presence:
    """What a device's record knows of its reachability, beside its alerts.

    `connection` is its lifecycle state (None: no event ever applied).
    `counts_from_ms`: its no-data and offline windows count from no earlier
    than this (set while its gateway is down, to the sweep that held it, and to
    the gateway's return once it is back). `returned_ms` (gateways only): when
    it last stopped being down."""

    connection: Connection | None = None
    counts_from_ms: int | None = None
    returned_ms: int | None = None

    @property
    def offline_since_ms(self) -> int | None:
        return self.connection.offline_since_ms if self.connection is not None else None

    @property
    def windows_from_ms(self) -> int | None:
        """The earliest moment its windows may count from: its own return
        (reconnect, or first reading after a disconnect) or its gateway's."""
        own = self.connection.back_ms if self.connection is not None else None
        known = [t for t in (own, self.counts_from_ms) if t is not None]
        return max(known) if known else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.connection is not None:
            out["connection"] = self.connection.to_json()
        if self.counts_from_ms is not None:
            out["countsFrom"] = self.counts_from_ms
        if self.returned_ms is not None:
            out["returned"] = self.returned_ms
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Presence:
        connection = raw.get("connection")
        counts, returned = raw.get("countsFrom"), raw.get("returned")
        return cls(
            Connection.from_json(connection) if connection is not None else None,
            None if counts is None else int(counts),
            None if returned is None else int(returned),
        )


@dataclass(slots=True)
class Decision:
    """A decision on a device's record: its alert state (the evaluation) and
    its presence, both written together (conditionally) when either changed."""

    evaluation: Evaluation
    presence: Presence


# ---------------------------------------------------------------- offline alerts


def offline_key(rule_name: str) -> StateKey:
    """Where a device's offline alert under `rule_name` lives in its state."""
    return (DEVICE_SENSOR, rule_name)


def offline_active(alert: AlertState | None) -> bool:
    return alert is not None and alert.severity is not Severity.OK and alert.side == OFFLINE


def _window_s(rule: Rule | None) -> float | None:
    return None if rule is None or rule.offline_ms is None else rule.offline_ms / 1000


def offline_transition(
    device_id: str,
    rule_name: str,
    episode: AlertState,
    status: Status,
    *,
    severity: Severity,
    time_ms: int,
    threshold: float | None,
) -> Transition:
    """A change of an offline alert: `value` null, `threshold` the window in seconds."""
    if episode.alert_id is None or episode.since_ms is None:
        raise ValueError("an offline transition needs an episode: alert_id and since_ms")
    return Transition(
        alert_id=episode.alert_id,
        status=status,
        severity=severity,
        previous_severity=episode.severity,
        device_id=device_id,
        sensor_id=DEVICE_SENSOR,
        rule=rule_name,
        value=None,
        threshold=threshold,
        time_ms=time_ms,
        since_ms=episode.since_ms,
        direction=OFFLINE,
    )


def _closed(alert: AlertState) -> AlertState | None:
    """An offline key once its episode is over: gone, unless operators' state
    (a snooze, a disable) must be kept."""
    if not alert.operated:
        return None
    return alert.with_episode(
        replace(
            alert.episode,
            severity=Severity.OK,
            side=None,
            alert_id=None,
            since_ms=None,
            attention=None,
            value=None,
        )
    )


def _resolve_offline(
    device_id: str,
    state: Mapping[StateKey, AlertState],
    rules: RuleSet,
    time_ms: int,
    keep: Iterable[str] = (),
) -> tuple[dict[StateKey, AlertState] | None, list[Transition]]:
    """Every active offline alert but those of the rules in `keep`, resolved at
    `time_ms` (None: nothing to resolve)."""
    kept = set(keep)
    written: dict[StateKey, AlertState] | None = None
    transitions: list[Transition] = []
    for key, alert in sorted(state.items()):
        if key[0] != DEVICE_SENSOR or not offline_active(alert) or key[1] in kept:
            continue
        transitions.append(
            offline_transition(
                device_id,
                key[1],
                alert,
                Status.RESOLVED,
                severity=Severity.OK,
                time_ms=time_ms,
                threshold=_window_s(rules.named(key[1])),
            )
        )
        if written is None:
            written = dict(state)
        after = _closed(alert)
        if after is None:
            del written[key]
        else:
            written[key] = after
    return written, transitions


def on_lifecycle(
    device_id: str,
    state: Mapping[StateKey, AlertState],
    presence: Presence,
    event: LifecycleEvent,
    rules: RuleSet,
) -> Decision:
    """What a lifecycle event changes: the connection (unless stale or a
    duplicate), and a connect resolves the device's offline alerts."""
    connection = apply_event(presence.connection, event)
    if connection is None:
        return Decision(Evaluation(dict(state)), presence)
    after = replace(presence, connection=connection)
    if not connection.connected:
        return Decision(Evaluation(dict(state)), after)
    written, transitions = _resolve_offline(device_id, state, rules, event.time_ms)
    return Decision(
        Evaluation(dict(state) if written is None else written, transitions, written is not None),
        after,
    )


def on_heard(
    device_id: str,
    evaluation: Evaluation,
    presence: Presence,
    rules: RuleSet,
    heard_ms: int,
) -> Decision:
    """After a device's readings, received at `heard_ms`: a device offline
    since before that is evidently back; its offline alerts resolve. Nothing
    changes (no write) for a device that is not offline."""
    connection = presence.connection
    if connection is None or connection.offline_since_ms is None:
        return Decision(evaluation, presence)
    if heard_ms <= connection.time_ms:
        return Decision(evaluation, presence)  # received before the disconnect
    after = replace(presence, connection=replace(connection, heard_ms=heard_ms))
    written, transitions = _resolve_offline(device_id, evaluation.state, rules, heard_ms)
    if written is None:
        return Decision(evaluation, after)
    resolved = replace(
        evaluation, state=written, transitions=[*evaluation.transitions, *transitions], changed=True
    )
    return Decision(resolved, after)


def follows(device_id: str, rules: RuleSet) -> bool:
    """Whether the device's connection matters: a rule's offline alert watches
    it, or it is a gateway or a gateway's member. Lifecycle events of other
    devices change nothing (no read, no write)."""
    return bool(
        rules.watching(device_id) or rules.gateway(device_id) or rules.gateways_of(device_id)
    )


def offline_explains(
    device_id: str, state: Mapping[StateKey, AlertState], presence: Presence, rules: RuleSet
) -> bool:
    """Whether the device is offline with an offline alert (raised, or to be
    raised) to explain its silence: its sensors' no-data alerts then wait. A
    device no offline alert watches (or whose operators disabled it) is not
    paused: its no-data alerts are what tells of its loss."""
    if presence.offline_since_ms is None:
        return False
    for rule in rules.watching(device_id):
        alert = state.get(offline_key(rule.name))
        if alert is None or alert.disabled is None:
            return True
    return False


def paused_as_recorded(state: Mapping[StateKey, AlertState], presence: Presence) -> bool:
    """`offline_explains` as a record says it when written (no rules at hand):
    offline, with an offline alert due to be judged or active."""
    connection = presence.connection
    if connection is None or connection.offline_since_ms is None:
        return False
    return connection.check_ms is not None or any(
        offline_active(a) for k, a in state.items() if k[0] == DEVICE_SENSOR
    )


# ---------------------------------------------------------------- gateways


@immutable
class GatewayView:
    """A gateway as its members' sweep sees it: down since when (None: up),
    and, when up, when it last came back."""

    down_since_ms: int | None = None
    returned_ms: int | None = None

    @property
    def down(self) -> bool:
        return self.down_since_ms is not None


def down_since(
    device_id: str,
    state: Mapping[StateKey, AlertState],
    presence: Presence,
    rules: RuleSet,
    now_ms: int,
) -> int | None:
    """Since when the device is down as of `now_ms` (None: it is not): offline
    since its disconnect; with an offline or no-data alert active, or a no-data
    alert a sweep would raise now, since the latest moment it can have been
    heard (a silent sensor's recorded arrival lags the last one by less than
    half its window)."""
    offline = presence.offline_since_ms
    found = [] if offline is None else [offline]
    judged = sweep_silences(
        device_id,
        state,
        rules,
        now_ms,
        paused=offline_explains(device_id, state, presence, rules),
        from_ms=presence.windows_from_ms,
    ).state
    for alert in judged.values():
        if offline_active(alert) and alert.since_ms is not None:
            found.append(alert.since_ms)
        silence = alert.silence
        if silence is not None and alert.silent:
            found.append(silence.seen_ms + int(silence.window_ms * NODATA_SLACK))
    return min(found) if found else None


def gateway_view(
    device_id: str,
    state: Mapping[StateKey, AlertState],
    presence: Presence,
    rules: RuleSet,
    now_ms: int,
) -> GatewayView:
    """The gateway `device_id` as of `now_ms`, from its record."""
    down = down_since(device_id, state, presence, rules, now_ms)
    if down is not None:
        return GatewayView(down_since_ms=down)
    return GatewayView(returned_ms=presence.returned_ms)


def combined(views: Iterable[GatewayView]) -> GatewayView | None:
    """A member's gateways as one: down while any is down (since the earliest),
    else back since the latest return. None: it has no gateway."""
    seen = list(views)
    if not seen:
        return None
    downs = [v.down_since_ms for v in seen if v.down_since_ms is not None]
    if downs:
        return GatewayView(down_since_ms=min(downs))
    returns = [v.returned_ms for v in seen if v.returned_ms is not None]
    return GatewayView(returned_ms=max(returns) if returns else None)


# ---------------------------------------------------------------- the sweep


def sweep_device(
    device_id: str,
    state: Mapping[StateKey, AlertState],
    presence: Presence,
    rules: RuleSet,
    now_ms: int,
    gateway: GatewayView | None = None,
) -> Decision:
    """The device as of `now_ms` (the sweep): silent sensors raised unless it is
    offline or held by its gateway; offline alerts raised once their window
    (counted from the disconnect, the device's or its gateway's return, or an
    operator's reset) has run out, unless held; offline alerts whose rule no
    longer watches the device, or whose device is back, resolved."""
    held = gateway is not None and gateway.down
    counts_from = presence.counts_from_ms
    if held:
        counts_from = now_ms
    elif gateway is not None and gateway.returned_ms is not None:
        counts_from = max(counts_from or gateway.returned_ms, gateway.returned_ms)
    presence = replace(presence, counts_from_ms=counts_from)
    offline = presence.offline_since_ms
    from_ms = presence.windows_from_ms
    paused = held or offline_explains(device_id, state, presence, rules)
    silences = sweep_silences(device_id, state, rules, now_ms, paused=paused, from_ms=from_ms)
    written: dict[StateKey, AlertState] = silences.state
    transitions = list(silences.transitions)
    changed = silences.changed
    watching = rules.watching(device_id)
    resolved, closing = _resolve_offline(
        device_id,
        written,
        rules,
        now_ms,
        keep=(r.name for r in watching) if offline is not None else (),
    )
    if resolved is not None:
        written, changed = resolved, True
        transitions += closing
    # Only an offline device not held can be raised: windows are looked up for it alone.
    offline_due = offline is not None and not held and bool(watching)
    counted = _counts_from(device_id, rules, from_ms, now_ms) if offline_due else from_ms
    for rule in watching:
        key = offline_key(rule.name)
        raised = _raised_offline(device_id, rule, written.get(key), offline, counted, now_ms, held)
        if raised is None:
            continue
        if not changed:
            written, changed = dict(written), True
        written[key], transition = raised
        transitions.append(transition)
    return Decision(Evaluation(written, transitions, changed), presence)


def _raised_offline(
    device_id: str,
    rule: Rule,
    alert: AlertState | None,
    offline_ms: int | None,
    from_ms: int | None,
    now_ms: int,
    held: bool,
) -> tuple[AlertState, Transition] | None:
    if offline_ms is None or held or rule.offline_ms is None:
        return None
    if alert is not None and (alert.disabled is not None or alert.severity is not Severity.OK):
        return None
    if now_ms < _offline_due(offline_ms, from_ms, alert, rule.offline_ms):
        return None
    severity = Severity[rule.offline_severity]
    base = alert or AlertState()
    episode = base.with_episode(
        replace(
            base.episode,
            severity=severity,
            side=OFFLINE,
            alert_id=alert_id_for(device_id, DEVICE_SENSOR, rule.name, now_ms),
            since_ms=now_ms,
            value=None,
            latched=False,
            attention=None,
            streaks={},
        )
    )
    transition = offline_transition(
        device_id,
        rule.name,
        episode.with_episode(replace(episode.episode, severity=Severity.OK)),
        Status.RAISED,
        severity=severity,
        time_ms=now_ms,
        threshold=rule.offline_ms / 1000,
    )
    return episode, transition


def _counts_from(device_id: str, rules: RuleSet, from_ms: int | None, now_ms: int) -> int | None:
    """`from_ms`, or the end of the latest maintenance window holding the
    device's offline alerts (matched as the key ($device) of the device)
    if later: their windows start again when it ends."""
    if not rules.maintenance:
        return from_ms
    until = rules.maintenance.counts_from(device_id, DEVICE_SENSOR, None, None, now_ms)
    if until is None:
        return from_ms
    return until if from_ms is None else max(from_ms, until)


def _offline_due(
    offline_ms: int, from_ms: int | None, alert: AlertState | None, window_ms: int
) -> int:
    """When an offline alert is due: its window after the disconnect, the
    device's or gateway's return, or an operator's reset of the key (its
    `last_ms`), whichever is latest."""
    start = max(offline_ms, from_ms if from_ms is not None else offline_ms)
    if alert is not None:
        start = max(start, alert.last_ms)
    return start + window_ms


def offline_check_ms(
    device_id: str,
    state: Mapping[StateKey, AlertState],
    presence: Presence,
    rules: RuleSet,
    now_ms: int | None = None,
) -> int | None:
    """When a sweep next has to judge the device's offline alerts: the earliest
    moment one not yet raised is due (None: it is not offline, or none is);
    given `now_ms`, not before a maintenance window holding them ends."""
    offline = presence.offline_since_ms
    if offline is None:
        return None
    from_ms = presence.windows_from_ms
    if now_ms is not None:
        from_ms = _counts_from(device_id, rules, from_ms, now_ms)
    due = []
    for rule in rules.watching(device_id):
        alert = state.get(offline_key(rule.name))
        if rule.offline_ms is None or (
            alert is not None and (alert.disabled is not None or alert.severity is not Severity.OK)
        ):
            continue
        due.append(_offline_due(offline, from_ms, alert, rule.offline_ms))
    return min(due) if due else None


def settled(
    device_id: str,
    before: tuple[Mapping[StateKey, AlertState], Presence],
    after: tuple[Mapping[StateKey, AlertState], Presence],
    rules: RuleSet,
    now_ms: int,
) -> Presence:
    """The presence to write with a decision: when the offline alerts are next
    to be judged and, for a gateway that stopped being down, when it came back
    (its connect or first reading after its disconnect, else `now_ms`)."""
    state, presence = after
    connection = presence.connection
    if connection is not None:
        check = offline_check_ms(device_id, state, presence, rules, now_ms)
        if check != connection.check_ms:
            connection = replace(connection, check_ms=check)
            presence = replace(presence, connection=connection)
    if rules.gateway(device_id) is None:
        return presence
    was = down_since(device_id, before[0], before[1], rules, now_ms)
    if was is None or down_since(device_id, state, presence, rules, now_ms) is not None:
        return presence
    back = connection.back_ms if connection is not None else None
    earlier = before[1].connection
    reconnected = earlier is not None and earlier.offline_since_ms is not None and back is not None
    return replace(presence, returned_ms=back if reconnected and back is not None else now_ms)


def with_members(evaluation: Evaluation, members: int) -> Evaluation:
    """A gateway's own RAISED offline and no-data transitions, with the number
    of its members down when it went down."""
    transitions = [
        replace(t, members=members)
        if t.status is Status.RAISED and t.direction in (OFFLINE, NODATA)
        else t
        for t in evaluation.transitions
    ]
    return replace(evaluation, transitions=transitions)


def raises_own_outage(evaluation: Evaluation) -> bool:
    """Whether a gateway's decision raises one of its own offline or no-data alerts."""
    return any(
        t.status is Status.RAISED and t.direction in (OFFLINE, NODATA)
        for t in evaluation.transitions
    )


def heard_at_ms(state: Mapping[StateKey, AlertState], presence: Presence) -> int | None:
    """The latest arrival a record knows of its device (0 while it is offline):
    its newest recorded arrival of a tracked sensor, or its return. None: none known."""
    connection = presence.connection
    if connection is not None and connection.offline_since_ms is not None:
        return 0
    known = [a.silence.seen_ms for a in state.values() if a.silence is not None]
    if connection is not None and connection.back_ms is not None:
        known.append(connection.back_ms)
    return max(known) if known else None
