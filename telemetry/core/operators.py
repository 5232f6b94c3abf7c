"""Operators act on alerts: acknowledge, snooze, disable, enable, reset; and
the timers that follow from them (reminders, the end of a snooze).

The alarm lifecycle of AWS IoT Events, made precise:

- `acknowledge`: an active alert (threshold or no-data) becomes acknowledged,
  which stops its reminders. An escalation to CRITICAL clears it, a
  de-escalation keeps it, resolution ends it with the episode. A latched
  alert is resolved by its acknowledgement.
- reminders: a rule's `repeat` re-sends an active, unacknowledged alert as
  REMINDER every `repeat` (found by the sweep), with its alertId.
- `snooze` until T: nothing of that (device, sensor, rule) is published until
  T; evaluation, alert history and the shadow go on. When T passes or on
  `unsnooze`, operators get one message with the net change since what they
  last heard (RAISED, ESCALATED, DEESCALATED or RESOLVED), nothing if none.
- `disable`: evaluation of the key stops (readings are still stored); active
  alerts close with DISABLED. `enable`: evaluation resumes with the next reading.
- a device's offline alert (sensorId `$device`) takes the same actions; its
  `reset` makes it offline again only a whole window after the reset.
- latch (a rule's `latch: true`): a value back inside the levels makes the
  alert LATCHED, not RESOLVED; `reset` (or `acknowledge`) ends it. `reset` on
  an unlatched active alert returns it to OK with RESET, evaluation starting
  afresh with the next reading.
- on a flapping key (telemetry.core.flapping) every action works as above and
  is published; acknowledge, snooze and reset leave the flapping as it is
  (it ends with STABLE once the key is quiet; a snooze mutes that STABLE
  too, and a snooze's catch-up is held back while the key still flaps and
  is not counted as a change); disable ends it with the key's evaluation.
  No reminder is sent while a key flaps.

Every action that changes something is a transition, with `by` and `note`.
Pure: the clock is given, the state is a value; the pipeline commits the
result like any other evaluation (conditionally, through the outbox).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final

from telemetry.core.alerts import (
    ACTION_STATUSES,
    DEVICE_SENSOR,
    LEVEL_CHANGES,
    NODATA,
    OFFLINE,
    ActiveAlert,
    AlertState,
    Attention,
    Disabled,
    Evaluation,
    Heard,
    Severity,
    Silence,
    StateKey,
    Status,
    Transition,
    alert_id_for,
    episodes,
    top_episode,
)
from telemetry.core.flapping import is_flapping, quieted, watch
from telemetry.core.immutable import immutable
from telemetry.core.maintenance import Hold
from telemetry.core.messages import THING_NAME_PATTERN, iso_utc, parse_time_ms
from telemetry.core.rules import (
    DEVICE_THRESHOLD_RULE,
    RULE_NAME_PATTERN,
    RuleSet,
    parse_duration_ms,
)

MAX_BY: Final = 256
MAX_NOTE: Final = 1024
MAX_SNOOZE_MS: Final = 90 * 86_400_000
"""The longest snooze: beyond it, disable the key instead."""
OPERATOR_ID_SUFFIX: Final = "#operator"
_THING: Final = re.compile(THING_NAME_PATTERN)
_RULE: Final = re.compile(RULE_NAME_PATTERN)
_ALERT_ID: Final = re.compile(r"^[0-9a-f]{32}$")
_NOT_ONE_LINE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""What `by` and `note` may not hold: the C0 and C1 control characters (NEL among
them) and DEL, Unicode's Cc, and the line and paragraph separators: whatever
would break a line of the SNS body, the shadow, the alert history or the logs."""
_LINE_BREAKS: Final = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
"""Those of them that end a line (what str.splitlines splits on)."""
FIELDS: Final = frozenset(
    {"action", "deviceId", "sensorId", "rule", "by", "note", "alertId", "until"}
)
ADDED_BY_THE_RULE: Final = frozenset({"via", "receivedAt"})
"""What the operators' topic rule adds: the topic, and when IoT received the action."""
_ACCEPTED: Final = FIELDS | ADDED_BY_THE_RULE


class Kind(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    SNOOZE = "snooze"
    UNSNOOZE = "unsnooze"
    DISABLE = "disable"
    ENABLE = "enable"
    RESET = "reset"


class InvalidActionError(ValueError):
    """An action that is not one: `field` names what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


@immutable
class Action:
    """One operator's action on one (device, sensor, rule)."""

    kind: Kind
    device_id: str
    sensor_id: str
    rule: str
    by: str
    note: str | None = None
    alert_id: str | None = None
    until_ms: int | None = None

    @property
    def key(self) -> StateKey:
        return (self.sensor_id, self.rule)


def one_line(name: str, value: str) -> str:
    """`value` if it is one line of text, free of control characters; else
    InvalidActionError naming the field `name` and the first character at fault.
    What an action's `by` and `note` must be (the CLI checks its own with it)."""
    bad = _NOT_ONE_LINE.search(value)
    if bad is None:
        return value
    char = bad.group()
    kind = "a line break" if char in _LINE_BREAKS else "a control character"
    label = " ".join(filter(None, (f"U+{ord(char):04X}", unicodedata.name(char, ""))))
    raise InvalidActionError(
        name, f"must be one line of text: character {bad.start() + 1} is {kind} ({label})"
    )


def _text(raw: Mapping[str, Any], name: str, *, most: int, required: bool) -> str | None:
    value = raw.get(name)
    if value is None:
        if required:
            raise InvalidActionError(name, "is required")
        return None
    if not isinstance(value, str):
        raise InvalidActionError(name, "must be text")
    if required and not value.strip():
        raise InvalidActionError(name, "must not be empty")
    if len(value) > most:
        raise InvalidActionError(name, f"must be at most {most} characters (got {len(value)})")
    return one_line(name, value)


def _name(raw: Mapping[str, Any], name: str, pattern: re.Pattern[str], words: str) -> str:
    value = raw.get(name)
    if value is None:
        raise InvalidActionError(name, "is required")
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidActionError(name, f"must be {words}")
    return value


def snooze_end_ms(raw: Any, now_ms: int) -> int:
    """A snooze's `until` as epoch ms: epoch ms (a number, or a string of digits),
    ISO-8601, or a duration from `now_ms` such as `2h`; InvalidActionError else."""
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw.strip())
    if (
        isinstance(raw, str)
        and raw.strip()
        and raw.strip()[0].isdigit()
        and raw.strip()[-1].isalpha()
    ):
        try:
            return now_ms + parse_duration_ms(raw.strip())
        except ValueError:
            pass
    try:
        return parse_time_ms(raw)
    except ValueError as exc:
        # A form it is not (`tomorrow`) needs the forms it may take; a time out of
        # range, why it is refused.
        why = "" if isinstance(raw, str) and not _looks_like_a_time(raw) else f" ({exc})"
        raise InvalidActionError("until", f"must be {UNTIL_FORMS}{why}") from None


UNTIL_FORMS: Final = (
    "a duration from now such as 30m, 2h or 1d, a date and time such as "
    "2026-12-07T08:00:00Z (ISO-8601; UTC if no zone is given), or epoch milliseconds"
)


def _looks_like_a_time(text: str) -> bool:
    """An ISO-8601 date starts with its year."""
    return text.strip()[:4].isdigit()


def parse_action(raw: object, now_ms: int) -> Action:
    """An action from its JSON form, or InvalidActionError naming the field.

    A field an action does not have is an error (a misspelt `alertID` must not
    act on whatever episode is current); those the operators' topic rule adds
    (`via`, `receivedAt`) are not. A relative `until` ("2h") counts from the
    action's `receivedAt` when the rule stamped it, so that a retried delivery
    decides the same; from `now_ms` otherwise."""
    if not isinstance(raw, Mapping):
        raise InvalidActionError("$", "an action must be a JSON object")
    unknown = sorted(str(k) for k in raw if k not in _ACCEPTED)
    if unknown:
        known = ", ".join(sorted(FIELDS))
        raise InvalidActionError(unknown[0], f"is not a field of an action (they are: {known})")
    kind_text = raw.get("action")
    try:
        kind = Kind(str(kind_text))
    except ValueError:
        choices = ", ".join(k.value for k in Kind)
        raise InvalidActionError(
            "action", f"must be one of {choices} (got {kind_text!r})"
        ) from None
    device_id = _name(raw, "deviceId", _THING, "1-128 characters of [a-zA-Z0-9:_-]")
    sensor_id = (
        DEVICE_SENSOR
        if raw.get("sensorId") == DEVICE_SENSOR
        else _name(
            raw, "sensorId", _THING, f"1-128 characters of [a-zA-Z0-9:_-], or {DEVICE_SENSOR}"
        )
    )
    rule = raw.get("rule")
    if rule != DEVICE_THRESHOLD_RULE:
        rule = _name(raw, "rule", _RULE, "a rule name (letters, digits, . _ : -)")
    by = _text(raw, "by", most=MAX_BY, required=True) or ""
    note = _text(raw, "note", most=MAX_NOTE, required=False)
    alert_id = raw.get("alertId")
    if alert_id is not None:
        if not isinstance(alert_id, str) or not _ALERT_ID.fullmatch(alert_id.lower()):
            raise InvalidActionError("alertId", "must be an alertId: 32 hexadecimal characters")
        alert_id = alert_id.lower()
    until_ms = None
    if kind is Kind.SNOOZE:
        if raw.get("until") is None:
            raise InvalidActionError("until", "is required to snooze (epoch ms, ISO-8601 or 2h)")
        received = raw.get("receivedAt")
        base_ms = (
            received
            if isinstance(received, int) and not isinstance(received, bool) and received > 0
            else now_ms
        )
        until_ms = snooze_end_ms(raw["until"], min(base_ms, now_ms))
        if until_ms <= now_ms:
            raise InvalidActionError("until", f"{iso_utc(until_ms)} is not in the future")
        if until_ms - now_ms > MAX_SNOOZE_MS:
            raise InvalidActionError("until", "a snooze lasts at most 90 days; disable instead")
    elif raw.get("until") is not None:
        raise InvalidActionError("until", "only a snooze takes an end")
    return Action(kind, device_id, sensor_id, str(rule), by, note, alert_id, until_ms)


# ---------------------------------------------------------------- applying


@dataclass(slots=True)
class ActionOutcome:
    """The device's state after an action, or why it was refused (nothing changes)."""

    evaluation: Evaluation
    refusal: str | None = None


def _operator_id(device_id: str, key: StateKey, now_ms: int) -> str:
    return alert_id_for(device_id, key[0], key[1] + OPERATOR_ID_SUFFIX, now_ms)


def _key_severity(state: AlertState) -> Severity:
    nodata = state.silence.severity if state.silence is not None else Severity.OK
    return max(state.severity, nodata)


def _action_transition(
    device_id: str,
    key: StateKey,
    status: Status,
    action: Action | None,
    now_ms: int,
    *,
    episode: ActiveAlert | None,
    severity: Severity,
    previous: Severity,
    state: AlertState,
) -> Transition:
    labels = state.silence
    return Transition(
        alert_id=episode.alert_id
        if episode and episode.alert_id
        else _operator_id(device_id, key, now_ms),
        status=status,
        severity=severity,
        previous_severity=previous,
        device_id=device_id,
        sensor_id=key[0],
        rule=key[1],
        value=episode.value if episode is not None else state.value,
        threshold=_window_s(state) if episode is not None and episode.direction == NODATA else None,
        time_ms=now_ms,
        since_ms=episode.since_ms if episode is not None else now_ms,
        direction=episode.direction if episode is not None else state.direction,
        type=labels.type if labels is not None else None,
        location=labels.location if labels is not None else None,
        unit=labels.unit if labels is not None else None,
        by=action.by if action is not None else None,
        note=action.note if action is not None else None,
        until_ms=action.until_ms if action is not None else None,
    )


@immutable
class _Request:
    """An action on one key, as a handler sees it: `chosen` are the active
    episodes it applies to (all of the key's, or the one its alertId names)."""

    device_id: str
    key: StateKey
    state: AlertState
    chosen: list[ActiveAlert]
    action: Action
    now_ms: int

    def told(
        self,
        status: Status,
        episode: ActiveAlert | None,
        severity: Severity,
        previous: Severity | None = None,
    ) -> Transition:
        """The transition operators hear of; `previous` defaults to `severity`
        (an action that changes no level)."""
        return _action_transition(
            self.device_id,
            self.key,
            status,
            self.action,
            self.now_ms,
            episode=episode,
            severity=severity,
            previous=severity if previous is None else previous,
            state=self.state,
        )


def _threshold_closed(state: AlertState) -> AlertState:
    """The key with its threshold episode over (its no-data tracking kept)."""
    return state.with_episode(
        replace(
            state.episode,
            severity=Severity.OK,
            side=None,
            alert_id=None,
            since_ms=None,
            latched=False,
            attention=None,
            streaks={},
        )
    )


def _window_s(state: AlertState) -> float | None:
    """A no-data episode's `threshold`: its window in seconds, as its RAISED said."""
    return state.silence.window_ms / 1000 if state.silence is not None else None


def _with_attention(
    state: AlertState, episode: ActiveAlert, attention: Attention | None
) -> AlertState:
    if episode.direction == NODATA and state.silence is not None:
        return replace(state, silence=replace(state.silence, attention=attention))
    return state.with_episode(replace(state.episode, attention=attention))


def _attention_of(state: AlertState, episode: ActiveAlert) -> Attention | None:
    if episode.direction == NODATA:
        return state.silence.attention if state.silence is not None else None
    return state.attention


def apply_action(
    device_id: str,
    state: Mapping[StateKey, AlertState],
    action: Action,
    rules: RuleSet,
    now_ms: int,
) -> ActionOutcome:
    """What `action` does to the device's state at `now_ms`."""
    key = action.key
    current = state.get(key)
    unchanged = Evaluation(dict(state))
    where = f"{device_id} {key[0]} ({key[1]})"
    if current is None and rules.named(key[1]) is None:
        return ActionOutcome(
            unchanged, f"no rule named {key[1]!r} is in force, and {where} has no state"
        )
    before = current or AlertState()
    live = episodes(key[1], before)
    if action.alert_id is not None and action.alert_id not in {e.alert_id for e in live}:
        now = ", ".join(e.alert_id or "" for e in live) or "none is active"
        return ActionOutcome(
            unchanged,
            f"alert {action.alert_id} is no longer the current episode of {where} (now: {now})",
        )
    chosen = [e for e in live if action.alert_id is None or e.alert_id == action.alert_id]
    handler = _HANDLERS[action.kind]
    result = handler(_Request(device_id, key, before, chosen, action, now_ms))
    if isinstance(result, str):
        return ActionOutcome(unchanged, result.replace("{where}", where))
    after, transitions = result
    written = dict(state)
    written[key] = after
    return ActionOutcome(Evaluation(written, list(transitions), changed=True))


Applied = tuple[AlertState, list[Transition]] | str


def _acknowledge(req: _Request) -> Applied:
    state, chosen = req.state, req.chosen
    if not chosen:
        return "no active alert on {where} to acknowledge"
    pending = [e for e in chosen if not (_attention_of(state, e) or Attention()).acknowledged]
    if not pending:
        who = (_attention_of(state, chosen[0]) or Attention()).ack_by
        return f"already acknowledged by {who}"
    transitions = []
    after = state
    for episode in pending:
        # A latched alert is over once someone has looked: resolved by its ack.
        resolves = episode.direction != NODATA and state.latched
        severity = Severity.OK if resolves else episode.severity
        transitions.append(req.told(Status.ACKNOWLEDGED, episode, severity, episode.severity))
        if resolves:
            after = _threshold_closed(after)
            continue
        attention = replace(
            _attention_of(after, episode) or Attention(),
            ack_by=req.action.by,
            ack_ms=req.now_ms,
            remind_ms=None,
        )
        after = _with_attention(after, episode, attention)
    return after, transitions


def _snooze(req: _Request) -> Applied:
    state, now_ms, until = req.state, req.now_ms, req.action.until_ms
    if until is None:  # parse_action requires it
        return "a snooze needs an end"
    if state.snoozed_until_ms == until:
        return f"already snoozed until {iso_utc(until)}"
    heard = state.heard
    if state.maintenance is None and (
        heard is None or state.snoozed_until_ms is None or state.snoozed_until_ms <= now_ms
    ):
        silence = state.silence
        heard = Heard(
            state.severity,
            state.alert_id,
            silence.severity if silence is not None else Severity.OK,
            silence.alert_id if silence is not None else None,
        )
    episode = req.chosen[0] if req.chosen else None
    transition = req.told(Status.SNOOZED, episode, _key_severity(state))
    return state.with_care(replace(state.care, snoozed_until_ms=until, heard=heard)), [transition]


def catch_up(
    device_id: str, key: StateKey, state: AlertState, now_ms: int, action: Action | None = None
) -> list[Transition]:
    """After a snooze: per episode kind, one message with the net change since
    what operators last heard, carrying the current episode's alertId."""
    heard = state.heard or Heard()
    out = []
    silence = state.silence or Silence(now_ms, 0, 0.0)
    for kind, severity, alert_id, since, value, direction, was, was_id in (
        (
            "threshold",
            state.severity,
            state.alert_id,
            state.since_ms,
            state.value,
            state.kind or state.side or (OFFLINE if key[0] == DEVICE_SENSOR else "above"),
            heard.severity,
            heard.alert_id,
        ),
        (
            "nodata",
            silence.severity,
            silence.alert_id,
            silence.since_ms,
            silence.value,
            "nodata",
            heard.nodata_severity,
            heard.nodata_alert_id,
        ),
    ):
        del kind
        status = net_status(severity, alert_id, was, was_id)
        if status is None:
            continue
        chosen_id = was_id if status is Status.RESOLVED else alert_id
        out.append(
            Transition(
                alert_id=chosen_id or _operator_id(device_id, key, now_ms),
                status=status,
                severity=severity,
                previous_severity=was,
                device_id=device_id,
                sensor_id=key[0],
                rule=key[1],
                value=value,
                threshold=_window_s(state) if direction == NODATA else None,
                time_ms=now_ms,
                since_ms=since if since is not None else now_ms,
                direction=direction,
                type=state.silence.type if state.silence is not None else None,
                location=state.silence.location if state.silence is not None else None,
                unit=state.silence.unit if state.silence is not None else None,
                by=action.by if action is not None else None,
                report=True,
            )
        )
    return out


def _unsnooze(req: _Request) -> Applied:
    state = req.state
    if state.snoozed_until_ms is None or state.snoozed_until_ms <= req.now_ms:
        return "{where} is not snoozed"
    episode = req.chosen[0] if req.chosen else None
    unsnoozed = req.told(Status.UNSNOOZED, episode, _key_severity(state))
    if state.maintenance is not None and state.maintenance.until_ms > req.now_ms:
        # Still in a maintenance window: its end brings operators up to date.
        return state.with_care(replace(state.care, snoozed_until_ms=None)), [unsnoozed]
    transitions = [unsnoozed, *catch_up(req.device_id, req.key, state, req.now_ms, req.action)]
    return state.with_care(replace(state.care, snoozed_until_ms=None, heard=None)), transitions


def _disable(req: _Request) -> Applied:
    state = req.state
    if state.disabled is not None:
        return f"{{where}} is already disabled (by {state.disabled.by})"
    live = episodes(req.key[1], state)
    transitions = [req.told(Status.DISABLED, e, Severity.OK, e.severity) for e in live] or [
        req.told(Status.DISABLED, None, Severity.OK)
    ]
    after = AlertState(last_ms=state.last_ms, disabled=Disabled(req.action.by, req.now_ms))
    return after, transitions


def _enable(req: _Request) -> Applied:
    if req.state.disabled is None:
        return "{where} is not disabled"
    transition = req.told(Status.ENABLED, None, Severity.OK)
    return req.state.with_care(replace(req.state.care, disabled=None)), [transition]


def _reset(req: _Request) -> Applied:
    if not req.chosen:
        return "no active alert on {where} to reset"
    transitions = []
    after = req.state
    for episode in req.chosen:
        transitions.append(req.told(Status.RESET, episode, Severity.OK, episode.severity))
        if episode.direction == NODATA and after.silence is not None:
            # Afresh: silent again only a whole window from now.
            fresh = Silence(
                req.now_ms,
                after.silence.window_ms,
                after.silence.value,
                after.silence.type,
                after.silence.location,
                after.silence.unit,
            )
            after = replace(after, silence=fresh)
        elif episode.direction == OFFLINE:
            # Afresh: offline again only a whole window from now.
            closed = _threshold_closed(after)
            after = closed.with_episode(replace(closed.episode, value=None, last_ms=req.now_ms))
        else:
            closed = _threshold_closed(after)
            after = closed.with_episode(replace(closed.episode, value=None))
    return after, transitions


_HANDLERS: Final = {
    Kind.ACKNOWLEDGE: _acknowledge,
    Kind.SNOOZE: _snooze,
    Kind.UNSNOOZE: _unsnooze,
    Kind.DISABLE: _disable,
    Kind.ENABLE: _enable,
    Kind.RESET: _reset,
}


# ---------------------------------------------------------------- timers and delivery


def timers(
    device_id: str, state: Mapping[StateKey, AlertState], rules: RuleSet, now_ms: int
) -> Evaluation:
    """What time alone changes as of `now_ms` (the sweep): snoozes and
    maintenance windows that ended bring operators up to date (once both are
    over), unacknowledged alerts are reminded (not while their key flaps; one
    due in a maintenance window waits for its end), flapping keys quiet long
    enough are STABLE."""
    written: dict[StateKey, AlertState] | None = None
    transitions: list[Transition] = []
    for key, alert in sorted(state.items()):
        after = alert
        caught_up: list[Transition] = []
        snooze_over = alert.snoozed_until_ms is not None and alert.snoozed_until_ms <= now_ms
        hold = alert.maintenance
        hold_over = hold is not None and hold.until_ms <= now_ms
        if snooze_over or hold_over:
            after = after.with_care(
                replace(
                    after.care,
                    snoozed_until_ms=None if snooze_over else after.snoozed_until_ms,
                    maintenance=None if hold_over else hold,
                )
            )
            if after.snoozed_until_ms is None and after.maintenance is None:
                caught_up = catch_up(device_id, key, alert, now_ms)
                transitions += caught_up
                after = after.with_care(replace(after.care, heard=None))
        if after.snoozed_until_ms is None and after.maintenance is None and not caught_up:
            for episode in episodes(key[1], after):
                attention = _attention_of(after, episode)
                if attention is None or attention.acknowledged or attention.remind_ms is None:
                    continue
                if is_flapping(after, episode.direction):
                    continue
                if attention.remind_ms > now_ms:
                    continue
                window = _holding_key(rules, device_id, key, after, now_ms)
                if window is not None:
                    later = replace(attention, remind_ms=window.until_ms)
                    after = _with_attention(after, episode, later)
                    continue
                transitions.append(
                    _action_transition(
                        device_id,
                        key,
                        Status.REMINDER,
                        None,
                        now_ms,
                        episode=episode,
                        severity=episode.severity,
                        previous=episode.severity,
                        state=after,
                    )
                )
        if after is not alert:
            if written is None:
                written = dict(state)
            written[key] = after
    final = written if written is not None else dict(state)
    transitions += quieted(device_id, final, now_ms)
    changed = written is not None or bool(transitions)
    return Evaluation(final, transitions, changed)


MAINTENANCE: Final = "maintenance"
"""`Transition.suppressed` of what a maintenance window holds back."""
_BASELINE: Final = LEVEL_CHANGES | {Status.LATCHED}


def _holding_key(
    rules: RuleSet, device_id: str, key: StateKey, state: AlertState, now_ms: int
) -> Hold | None:
    """The maintenance window holding a key at `now_ms`, judged on the labels
    its state knows (those of its last reading, kept for `nodata` rules)."""
    if not rules.maintenance:
        return None
    silence = state.silence
    labels = (silence.type, silence.location) if silence is not None else (None, None)
    return rules.maintenance.holding(device_id, key[0], *labels, now_ms)


def net_status(
    severity: Severity, alert_id: str | None, was: Severity, was_id: str | None
) -> Status | None:
    """The one status that brings operators from what they heard (`was`,
    `was_id`) to where the alert is now (None: nothing changed for them)."""
    if (severity == was and alert_id == was_id) or (severity is Severity.OK and was is Severity.OK):
        return None
    if severity is Severity.OK:
        return Status.RESOLVED
    if was is Severity.OK or alert_id != was_id:
        return Status.RAISED
    return Status.ESCALATED if severity > was else Status.DEESCALATED


def holding(rules: RuleSet, transition: Transition, now_ms: int) -> Hold | None:
    """The maintenance window that mutes `transition` at `now_ms` (operators'
    own actions are never muted)."""
    if not rules.maintenance or transition.status in ACTION_STATUSES:
        return None
    return rules.maintenance.holding(
        transition.device_id, transition.sensor_id, transition.type, transition.location, now_ms
    )


def _held(
    state: AlertState | None, key: StateKey, hold: Hold, transitions: list[Transition]
) -> AlertState:
    """The key held by a window until its end; what operators had heard of it
    (the baseline of the catch-up at the end) is kept from a snooze or an
    earlier hold, else read off the first muted change of each kind."""
    before = state or AlertState()
    current = before.maintenance
    marker = hold if current is None or hold.until_ms > current.until_ms else current
    heard = before.heard
    if heard is None:
        silence = before.silence
        heard = Heard(
            before.severity,
            before.alert_id,
            silence.severity if silence is not None else Severity.OK,
            silence.alert_id if silence is not None else None,
        )
        seen: set[bool] = set()
        for t in transitions:
            nodata = t.direction == NODATA
            if (t.sensor_id, t.rule) != key or t.status not in _BASELINE or nodata in seen:
                continue
            seen.add(nodata)
            was_id = t.alert_id if t.previous_severity is not Severity.OK else None
            heard = (
                replace(heard, nodata_severity=t.previous_severity, nodata_alert_id=was_id)
                if nodata
                else replace(heard, severity=t.previous_severity, alert_id=was_id)
            )
    return before.with_care(replace(before.care, maintenance=marker, heard=heard))


def finalize(evaluation: Evaluation, rules: RuleSet, now_ms: int) -> Evaluation:
    """Apply flapping (telemetry.core.flapping.watch), mute what a snooze or a
    maintenance window holds back, and note what operators were told: each
    published transition of an episode sets when they last heard of it and so
    when its next reminder is due (the rule's `repeat`, while unacknowledged)."""
    evaluation = watch(evaluation, rules)
    if not evaluation.transitions:
        return evaluation
    state = dict(evaluation.state)
    out = []
    for given in evaluation.transitions:
        key = (given.sensor_id, given.rule)
        alert = state.get(key)
        snoozed = (
            alert is not None
            and alert.snoozed_until_ms is not None
            and now_ms < alert.snoozed_until_ms
            and given.status not in ACTION_STATUSES
        )
        transition = replace(given, muted=True) if snoozed else given
        hold = holding(rules, given, now_ms)
        if hold is not None:
            transition = replace(
                transition,
                muted=True,
                suppressed=transition.suppressed or MAINTENANCE,
                maintenance=hold.name,
            )
            alert = state[key] = _held(alert, key, hold, evaluation.transitions)
        out.append(transition)
        if alert is None or transition.muted:
            continue
        rule = rules.named(key[1])
        repeat = rule.repeat_ms if rule is not None else None
        for episode in episodes(key[1], alert):
            held = _attention_of(alert, episode)
            if episode.alert_id != transition.alert_id or (repeat is None and held is None):
                continue
            attention = held or Attention()
            told = transition.time_ms  # deterministic: a retry decides the same
            remind = None if attention.acknowledged or repeat is None else told + repeat
            noted = replace(attention, notified_ms=told, remind_ms=remind)
            alert = _with_attention(alert, episode, noted)
        state[key] = alert
    return Evaluation(
        state, out, True, evaluation.evaluated, evaluation.late, evaluation.not_evaluated
    )


# ---------------------------------------------------------------- what operators see


def key_view(device_id: str, key: StateKey, state: AlertState | None) -> dict[str, Any]:
    """One (device, sensor, rule) as an action's answer and `alerts list` show it:
    at the top its most severe active episode, as the shadow mirrors it (the
    threshold alert, or the no-data one when it is worse or alone); the no-data
    episode also under `nodata`; a maintenance window holding its changes back
    under `maintenance` (its name, and the end of the occurrence holding it)."""
    state = state or AlertState()
    top = top_episode(episodes(key[1], state))
    top_silence = state.silence if top is not None and top.direction == NODATA else None
    view: dict[str, Any] = {
        "deviceId": device_id,
        "sensorId": key[0],
        "rule": key[1],
        "severity": (top.severity if top is not None else state.severity).name,
        "alertId": top.alert_id if top is not None else state.alert_id,
        "since": iso_utc(top.since_ms)
        if top is not None
        else (None if state.since_ms is None else iso_utc(state.since_ms)),
        "value": top.value if top is not None else state.value,
        "direction": top.direction if top is not None else (state.kind or state.side),
        "acknowledged": _ack_view(
            top_silence.attention if top_silence is not None else state.attention
        ),
        "latched": state.latched,
        "snoozedUntil": None if state.snoozed_until_ms is None else iso_utc(state.snoozed_until_ms),
        "disabled": None
        if state.disabled is None
        else {"by": state.disabled.by, "at": iso_utc(state.disabled.at_ms)},
        "nodata": None,
        "flapping": state.flapping,
        "maintenance": None
        if state.maintenance is None
        else {"name": state.maintenance.name, "until": iso_utc(state.maintenance.until_ms)},
    }
    silence = state.silence
    if silence is not None and silence.severity is not Severity.OK:
        view["nodata"] = {
            "severity": silence.severity.name,
            "alertId": silence.alert_id,
            "since": None if silence.since_ms is None else iso_utc(silence.since_ms),
            "window": silence.window_ms // 1000,
            "acknowledged": _ack_view(silence.attention),
        }
    return view


def _ack_view(attention: Attention | None) -> dict[str, Any] | None:
    if attention is None or attention.ack_by is None or attention.ack_ms is None:
        return None
    return {"by": attention.ack_by, "at": iso_utc(attention.ack_ms)}


def operator_due_ms(state: Mapping[StateKey, AlertState]) -> int | None:
    """When time alone next changes something operators see: a snooze or a
    maintenance window ending, a reminder due (not while snoozed, nor while its
    key flaps)."""
    due: list[int] = []
    for key, alert in state.items():
        if alert.maintenance is not None:
            due.append(alert.maintenance.until_ms)
        if alert.snoozed_until_ms is not None:
            due.append(alert.snoozed_until_ms)
            continue
        for episode in episodes(key[1], alert):
            attention = _attention_of(alert, episode)
            if attention is None or attention.acknowledged or not attention.remind_ms:
                continue
            if not is_flapping(alert, episode.direction):
                due.append(attention.remind_ms)
    return min(due) if due else None
