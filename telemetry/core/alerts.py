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

A key's state (`AlertState`) has three parts, each with one owner; a step of
one part replaces only that part (`with_episode`, `with_care`, `silence=`), so
it cannot drop another:

- `Episode`, the threshold episode (level, side, id, late-data line, streaks,
  latch, attention, a condition's kind and memo): the alarm state machine here
  (`step`), which returns a new Episode; telemetry.core.connectivity for a
  device's offline episode; operators' actions (telemetry.core.operators) for
  an acknowledgement, a reset or a reminder's bookkeeping.
- `Silence`, arrival and the no-data episode: telemetry.core.silence (and
  `evaluate` recording an arrival).
- `Care`, what operators and the notification policy keep on the key (snooze,
  what operators heard, disabled, maintenance, flapping watches):
  telemetry.core.operators (actions, timers, and the mark a maintenance window
  leaves when it mutes a change), and telemetry.core.flapping for `flaps`.

Two steps end more than one part on purpose: disabling a key starts it afresh
(only its late-data line stays), and a key whose rule is gone keeps only its
arrival tracking and flapping watch.
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import IntEnum, StrEnum
from typing import Any, Final

from telemetry.core.conditions import KINDS, Memo
from telemetry.core.conditions.rate import Rate
from telemetry.core.conditions.span import Range
from telemetry.core.immutable import immutable
from telemetry.core.maintenance import Hold
from telemetry.core.messages import Reading, iso_utc, parse_time_ms
from telemetry.core.rules import Rule, RuleSet, Side


class Severity(IntEnum):
    """Alert levels, ordered so that comparisons read naturally."""

    OK = 0
    WARNING = 1
    CRITICAL = 2


class Status(StrEnum):
    """What a transition says happened. The first four are changes of level;
    then operators' actions on an alert and the timers they set; FLAPPING and
    STABLE say a key started and stopped chattering (its changes of level in
    between are history, not messages)."""

    RAISED = "RAISED"
    ESCALATED = "ESCALATED"
    DEESCALATED = "DEESCALATED"
    RESOLVED = "RESOLVED"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    SNOOZED = "SNOOZED"
    UNSNOOZED = "UNSNOOZED"
    DISABLED = "DISABLED"
    ENABLED = "ENABLED"
    LATCHED = "LATCHED"
    RESET = "RESET"
    REMINDER = "REMINDER"
    FLAPPING = "FLAPPING"
    STABLE = "STABLE"


ACTION_STATUSES: Final = frozenset(
    {
        Status.ACKNOWLEDGED,
        Status.SNOOZED,
        Status.UNSNOOZED,
        Status.DISABLED,
        Status.ENABLED,
        Status.RESET,
    }
)
"""Statuses an operator's action produces (published even while snoozed)."""


@immutable
class Attention:
    """What operators did and were told about one alert episode: who
    acknowledged it and when, when they were last told of it, and when the
    next reminder is due (None: no reminder)."""

    ack_by: str | None = None
    ack_ms: int | None = None
    notified_ms: int | None = None
    remind_ms: int | None = None

    @property
    def acknowledged(self) -> bool:
        return self.ack_by is not None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.ack_by is not None:
            out |= {"ackBy": self.ack_by, "ackAt": self.ack_ms}
        if self.notified_ms is not None:
            out["notified"] = self.notified_ms
        if self.remind_ms is not None:
            out["remind"] = self.remind_ms
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> Attention | None:
        if not raw:
            return None
        return cls(raw.get("ackBy"), raw.get("ackAt"), raw.get("notified"), raw.get("remind"))


@immutable
class Heard:
    """What operators had last heard of a key when it was snoozed: the
    severity and episode of its threshold alert and of its no-data alert."""

    severity: Severity = Severity.OK
    alert_id: str | None = None
    nodata_severity: Severity = Severity.OK
    nodata_alert_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity.name,
            "alertId": self.alert_id,
            "nodataSeverity": self.nodata_severity.name,
            "nodataAlertId": self.nodata_alert_id,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Heard:
        return cls(
            Severity[raw.get("severity", "OK")],
            raw.get("alertId"),
            Severity[raw.get("nodataSeverity", "OK")],
            raw.get("nodataAlertId"),
        )


@immutable
class Disabled:
    """Who disabled a key's evaluation, and when."""

    by: str
    at_ms: int


@immutable
class Streak:
    """Consecutive readings past one level that has not been reached yet."""

    count: int
    start_ms: int


NODATA: Final = "nodata"
"""The `direction` of a no-data alert's transitions (threshold alerts: above, below)."""
OFFLINE: Final = "offline"
"""The `direction` of a device's offline alert."""
DEVICE_SENSOR: Final = "$device"
"""The `sensorId` of device-level alerts (offline): never a sensor's id."""
LEVEL_CHANGES: Final = frozenset(
    {Status.RAISED, Status.ESCALATED, Status.DEESCALATED, Status.RESOLVED}
)
"""The statuses that count as changes of level (for flapping)."""
NODATA_SLACK: Final = 0.5
SILENCE_RECHECK_MS: Final = 3_600_000
"""How often a sweep looks again at a sensor that is silent: a rule removed or
changed meanwhile resolves (or re-grades) its no-data alert within this, at
one state write per silent device per hour, however long it stays silent."""
"""Arrival is recorded at most every `nodata * NODATA_SLACK`, so the recorded
arrival lags the true last one by less than that: a sensor is silent once the
recorded arrival is `nodata * (1 + NODATA_SLACK)` old, and never sooner than
`nodata` after its true last reading."""


def silence_after_ms(nodata_ms: int) -> int:
    """How long after the recorded arrival a sensor is silent (see NODATA_SLACK)."""
    return nodata_ms + int(nodata_ms * NODATA_SLACK)


@immutable
class Silence:
    """Arrival tracking of one (sensor, rule) whose rule has `nodata`, and its
    no-data episode.

    `seen_ms` is the recorded arrival (the later of the rule's receivedAt and
    the processing time), written at most every `nodata/2`; `window_ms` is the
    rule's `nodata` when it was recorded. `value` and the labels are those of
    the reading recorded with `seen_ms`: what a no-data transition reports.
    `severity`, `alert_id` and `since_ms` are the no-data episode, OK when the
    sensor is reporting; `checked_ms` is when a sweep last confirmed that the
    episode's rule still applies (None: not since it was raised).
    """

    seen_ms: int
    window_ms: int
    value: float
    type: str | None = None
    location: str | None = None
    unit: str | None = None
    severity: Severity = Severity.OK
    alert_id: str | None = None
    since_ms: int | None = None
    attention: Attention | None = None
    checked_ms: int | None = None
    counts_from_ms: int | None = None
    """The end of a maintenance window that held the sensor: its window counts
    from no earlier than this (None: none did since its last arrival)."""

    @property
    def due_ms(self) -> int:
        """When a sweep next has to look: when it may call the sensor silent, or,
        once it is, when the episode's rule is to be checked again (a rule
        removed or changed meanwhile resolves or re-grades it)."""
        if self.severity is Severity.OK:
            due = self.seen_ms + silence_after_ms(self.window_ms)
            if self.counts_from_ms is not None:
                due = max(due, self.counts_from_ms + self.window_ms)
            return due
        return (self.checked_ms or self.since_ms or self.seen_ms) + SILENCE_RECHECK_MS

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seen": self.seen_ms, "window": self.window_ms, "value": self.value}
        labels = (("type", self.type), ("location", self.location), ("unit", self.unit))
        out.update({k: v for k, v in labels if v is not None})
        if self.severity is not Severity.OK:
            out |= {
                "severity": self.severity.name,
                "alertId": self.alert_id,
                "since": self.since_ms,
            }
        if self.attention is not None:
            out["attention"] = self.attention.to_json()
        if self.checked_ms is not None:
            out["checked"] = self.checked_ms
        if self.counts_from_ms is not None:
            out["countsFrom"] = self.counts_from_ms
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Silence:
        since = raw.get("since")
        checked = raw.get("checked")
        counts_from = raw.get("countsFrom")
        return cls(
            seen_ms=int(raw["seen"]),
            window_ms=int(raw["window"]),
            value=float(raw["value"]),
            type=raw.get("type"),
            location=raw.get("location"),
            unit=raw.get("unit"),
            severity=Severity[raw.get("severity", "OK")],
            alert_id=raw.get("alertId"),
            since_ms=int(since) if since is not None else None,
            attention=Attention.from_json(raw.get("attention")),
            checked_ms=int(checked) if checked is not None else None,
            counts_from_ms=int(counts_from) if counts_from is not None else None,
        )


@immutable
class Flap:
    """The chattering watch over one kind of alert on a key (its threshold
    alert, its no-data alert), kept by telemetry.core.flapping.

    `changes` are its recent changes of level as (time, the more severe side
    of the change), oldest first: at most the rule's `changes` of them, none
    `within_ms` or more older than the newest. `flapping` says the key is
    chattering: its changes are history, not messages, until it has made none
    for `within_ms` (the setting when it was recorded). `worst` is the most
    severe level since it started flapping (STABLE's routing severity).
    `alert_id`, `since_ms`, `direction` and the labels are those of the last
    change: what a STABLE says when no episode is active any more.
    """

    changes: tuple[tuple[int, Severity], ...]
    within_ms: int
    flapping: bool = False
    worst: Severity = Severity.OK
    alert_id: str | None = None
    since_ms: int | None = None
    direction: str = "above"
    type: str | None = None
    location: str | None = None
    unit: str | None = None

    @property
    def last_ms(self) -> int:
        """The time of the newest change recorded."""
        return max((at for at, _ in self.changes), default=-1)

    @property
    def quiet_ms(self) -> int:
        """When the key will have made no change of level for `within_ms`."""
        return self.last_ms + self.within_ms

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "changes": [[at, severity.name] for at, severity in self.changes],
            "within": self.within_ms,
        }
        if self.flapping:
            out |= {"flapping": True, "worst": self.worst.name}
        last = (
            ("alertId", self.alert_id),
            ("since", self.since_ms),
            ("direction", self.direction),
            ("type", self.type),
            ("location", self.location),
            ("unit", self.unit),
        )
        out.update({k: v for k, v in last if v is not None})
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Flap:
        since = raw.get("since")
        return cls(
            changes=tuple((int(at), Severity[name]) for at, name in raw.get("changes", ())),
            within_ms=int(raw["within"]),
            flapping=bool(raw.get("flapping", False)),
            worst=Severity[raw.get("worst", "OK")],
            alert_id=raw.get("alertId"),
            since_ms=int(since) if since is not None else None,
            direction=raw.get("direction", "above"),
            type=raw.get("type"),
            location=raw.get("location"),
            unit=raw.get("unit"),
        )


@immutable
class Episode:
    """What the alarm state machine (`step`) owns on a key: its threshold
    episode and what leads to one.

    `side` says which direction the active alert is on; `alert_id` and
    `since_ms` identify the episode (RAISED to RESOLVED); `value` is the value
    at the last transition; `last_ms` is the reading time of the last change
    recorded here, the line before which readings are late; `streaks` count
    readings past a level not reached yet. `latched` (the value came back, the
    alert waits for a reset) and `attention` (acknowledgement, reminders) last
    as long as the episode. A rule with a condition (telemetry.core.conditions)
    keeps its `memo` here, what the condition keeps between readings, and
    records its `kind` (the alert's direction); `value` is then what the
    condition measured.
    """

    severity: Severity = Severity.OK
    side: str | None = None
    alert_id: str | None = None
    since_ms: int | None = None
    value: float | None = None
    last_ms: int = -1
    streaks: Mapping[str, Streak] = field(default_factory=dict)
    latched: bool = False
    attention: Attention | None = None
    kind: str | None = None
    memo: Memo = ()

    @property
    def direction(self) -> str:
        """The direction of its transitions: the condition's kind, else the side
        (above, below; offline for a device's alert)."""
        return self.kind or self.side or "above"


@immutable
class Care:
    """What operators and the notification policy keep on a key, whatever its
    episodes do: a snooze (`snoozed_until_ms`, with `heard`: what operators
    had heard when it began, or when a maintenance window muted a change),
    `disabled`, the `maintenance` window that muted a change of the key, and
    `flaps`: per kind of alert, its chattering watch (telemetry.core.flapping),
    present only where a flapping setting applies."""

    snoozed_until_ms: int | None = None
    heard: Heard | None = None
    disabled: Disabled | None = None
    flaps: Mapping[str, Flap] = field(default_factory=dict)
    maintenance: Hold | None = None
    """The maintenance window that muted a change of this key, and when it
    ends: then operators hear the net change since `heard` (telemetry.core.operators)."""


_set: Final = object.__setattr__
_NO_EPISODE: Final = Episode()
_NO_CARE: Final = Care()
_FIELD_ORDER: Final = (
    *("severity", "side", "alert_id", "since_ms", "value", "last_ms", "streaks", "silence"),
    *("latched", "attention", "snoozed_until_ms", "heard", "disabled", "flaps", "maintenance"),
    *("kind", "memo"),
)
"""AlertState's fields by position, as before it had parts."""
_EPISODE_FIELDS: Final = frozenset(f.name for f in fields(Episode))


@immutable
class AlertState:
    """What is known of one (sensor, rule) on a device: three parts, each with
    one owner (see the module's docstring).

    `episode` is the threshold episode, which the alarm state machine owns;
    `silence` tracks arrival for a rule with `nodata` and holds its no-data
    episode, an alert of its own beside the threshold one
    (telemetry.core.silence); `care` is what operators and the notification
    policy keep on the key. A step of one part replaces only that part, so it
    cannot drop another.

    It is built from its parts, or, as before the parts, from their fields by
    name (`AlertState(last_ms=..., disabled=...)`, `dataclasses.replace(state,
    latched=True)`); every field reads through (`state.severity`).
    """

    episode: Episode
    silence: Silence | None
    care: Care

    def __init__(
        self,
        *by_position: Any,
        episode: Episode = _NO_EPISODE,
        silence: Silence | None = None,
        care: Care = _NO_CARE,
        **named: Any,
    ) -> None:
        if by_position or named:
            if len(by_position) > len(_FIELD_ORDER):
                raise TypeError(f"AlertState takes at most {len(_FIELD_ORDER)} fields by position")
            named = dict(zip(_FIELD_ORDER, by_position, strict=False)) | named
            silence = named.pop("silence", silence)
            ours = {k: named.pop(k) for k in _EPISODE_FIELDS & named.keys()}
            if ours:
                episode = replace(episode, **ours)
            if named:
                care = replace(care, **named)
        object.__setattr__(self, "episode", episode)
        object.__setattr__(self, "silence", silence)
        object.__setattr__(self, "care", care)

    def with_episode(self, episode: Episode) -> AlertState:
        """This state with its threshold episode replaced, every other part kept."""
        after = object.__new__(AlertState)  # its parts as they are: no fields by name to fold
        _set(after, "episode", episode)
        _set(after, "silence", self.silence)
        _set(after, "care", self.care)
        return after

    def with_care(self, care: Care) -> AlertState:
        """This state with what operators keep on the key replaced, every other part kept."""
        return AlertState(episode=self.episode, silence=self.silence, care=care)

    @property
    def severity(self) -> Severity:
        return self.episode.severity

    @property
    def side(self) -> str | None:
        return self.episode.side

    @property
    def alert_id(self) -> str | None:
        return self.episode.alert_id

    @property
    def since_ms(self) -> int | None:
        return self.episode.since_ms

    @property
    def value(self) -> float | None:
        return self.episode.value

    @property
    def last_ms(self) -> int:
        return self.episode.last_ms

    @property
    def streaks(self) -> Mapping[str, Streak]:
        return self.episode.streaks

    @property
    def latched(self) -> bool:
        return self.episode.latched

    @property
    def attention(self) -> Attention | None:
        return self.episode.attention

    @property
    def kind(self) -> str | None:
        return self.episode.kind

    @property
    def memo(self) -> Memo:
        return self.episode.memo

    @property
    def snoozed_until_ms(self) -> int | None:
        return self.care.snoozed_until_ms

    @property
    def heard(self) -> Heard | None:
        return self.care.heard

    @property
    def disabled(self) -> Disabled | None:
        return self.care.disabled

    @property
    def flaps(self) -> Mapping[str, Flap]:
        return self.care.flaps

    @property
    def maintenance(self) -> Hold | None:
        return self.care.maintenance

    @property
    def direction(self) -> str:
        """The direction of its threshold episode's transitions: the condition's
        kind, else the side (above, below; offline for a device's alert)."""
        return self.episode.direction

    @property
    def silent(self) -> bool:
        """Whether a no-data alert is active on this key."""
        return self.silence is not None and self.silence.severity is not Severity.OK

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
        if self.silence is not None:
            out[NODATA] = self.silence.to_json()
        if self.kind is not None:
            out["kind"] = self.kind
        if self.memo:
            out["memo"] = list(self.memo)
        return out | self._operated_json()

    def _operated_json(self) -> dict[str, Any]:
        """What operators and the notification policy keep on the key."""
        out: dict[str, Any] = {}
        if self.latched:
            out["latched"] = True
        if self.attention is not None:
            out["attention"] = self.attention.to_json()
        if self.snoozed_until_ms is not None:
            out["snoozedUntil"] = self.snoozed_until_ms
        if self.heard is not None:
            out["heard"] = self.heard.to_json()
        if self.disabled is not None:
            out["disabled"] = {"by": self.disabled.by, "at": self.disabled.at_ms}
        if self.flaps:
            out["flaps"] = {kind: flap.to_json() for kind, flap in sorted(self.flaps.items())}
        if self.maintenance is not None:
            out["maintenance"] = {"name": self.maintenance.name, "until": self.maintenance.until_ms}
        return out

    @property
    def operated(self) -> bool:
        """Whether operators' state is held on this key (it must not be forgotten)."""
        return (
            self.snoozed_until_ms is not None
            or self.disabled is not None
            or self.maintenance is not None
        )

    @property
    def flapping(self) -> bool:
        """Whether any kind of alert on this key is flapping (it must not be forgotten)."""
        return any(flap.flapping for flap in self.flaps.values())

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> AlertState:
        streaks = {k: Streak(int(v[0]), int(v[1])) for k, v in raw.get("streaks", {}).items()}
        since = raw.get("since")
        value = raw.get("value")
        silence = raw.get(NODATA)
        episode = Episode(
            severity=Severity[raw["severity"]],
            side=raw.get("side"),
            alert_id=raw.get("alertId"),
            since_ms=int(since) if since is not None else None,
            value=float(value) if value is not None else None,
            last_ms=int(raw.get("last", -1)),
            streaks=streaks,
            latched=bool(raw.get("latched", False)),
            attention=Attention.from_json(raw.get("attention")),
            kind=raw.get("kind"),
            memo=tuple(raw.get("memo", ())),
        )
        care = Care(
            snoozed_until_ms=raw.get("snoozedUntil"),
            heard=Heard.from_json(raw["heard"]) if raw.get("heard") else None,
            disabled=(
                Disabled(raw["disabled"]["by"], int(raw["disabled"]["at"]))
                if raw.get("disabled")
                else None
            ),
            flaps={k: Flap.from_json(v) for k, v in raw.get("flaps", {}).items()},
            maintenance=(
                Hold(str(raw["maintenance"]["name"]), int(raw["maintenance"]["until"]))
                if raw.get("maintenance")
                else None
            ),
        )
        return cls(
            episode=episode,
            silence=Silence.from_json(silence) if silence is not None else None,
            care=care,
        )


@immutable
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
    value: float | None
    threshold: float | None
    time_ms: int
    since_ms: int
    direction: str
    type: str | None = None
    location: str | None = None
    unit: str | None = None
    by: str | None = None
    note: str | None = None
    until_ms: int | None = None
    muted: bool = False
    """Never published: written to the alert history and the shadow only. A
    snooze mutes (nothing of a snoozed key is published); so does flapping,
    which says so in `suppressed`."""
    suppressed: str | None = None
    """Why a transition is muted when a snooze is not the reason: `flapping`
    (its key is chattering; see telemetry.core.flapping)."""
    changes: int | None = None
    """FLAPPING: how many changes of level within `within_ms` made it."""
    within_ms: int | None = None
    """FLAPPING and STABLE: the flapping window (STABLE: quiet that long)."""
    report: bool = field(default=False, compare=False)
    """A report of changes already made (the net change after a snooze), not a
    change itself: flapping does not count it. Read only before the commit,
    so not part of the wire form."""
    members: int | None = None
    """A gateway's own RAISED offline or no-data alert: how many of its members
    were down (disconnected, or silent since it went down) at that moment."""
    maintenance: str | None = None
    """The maintenance window that muted it (`suppressed: maintenance`, unless
    flapping held it back first)."""
    rules_version: str | None = None
    """Which rules decided it (`RuleSet.version`): the AppConfig configuration
    version, or `sha256:` and the digest of the packaged rule files."""
    per_ms: int | None = None
    """A rate's change of level: the rate's unit of time (`value` is per this)."""

    @property
    def key(self) -> str:
        """Identifies this transition across retries: alertId, status and time."""
        return f"{self.alert_id}:{self.status}:{self.time_ms}"  # a StrEnum formats as its value

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
        known = (
            ("type", self.type),
            ("location", self.location),
            ("unit", self.unit),
            ("by", self.by),
            ("note", self.note),
            ("snoozedUntil", None if self.until_ms is None else iso_utc(self.until_ms)),
        )
        out.update({key: value for key, value in known if value is not None})
        if self.muted:
            out["muted"] = True
        if self.suppressed is not None:
            out["suppressed"] = self.suppressed
        if self.changes is not None:
            out["changes"] = self.changes
        if self.within_ms is not None:
            whole = self.within_ms % 1000 == 0
            out["within"] = self.within_ms // 1000 if whole else self.within_ms / 1000
        if self.members is not None:
            out["members"] = self.members
        if self.maintenance is not None:
            out["maintenance"] = self.maintenance
        if self.rules_version is not None:
            out["rulesVersion"] = self.rules_version
        if self.per_ms is not None:
            out["per"] = self.per_ms / 1000
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
            value=None if raw.get("value") is None else float(raw["value"]),
            threshold=None if raw.get("threshold") is None else float(raw["threshold"]),
            time_ms=parse_time_ms(raw["time"]),
            since_ms=parse_time_ms(raw["since"]),
            direction=raw.get("direction", "above"),
            type=raw.get("type"),
            location=raw.get("location"),
            unit=raw.get("unit"),
            by=raw.get("by"),
            note=raw.get("note"),
            until_ms=None
            if raw.get("snoozedUntil") is None
            else parse_time_ms(raw["snoozedUntil"]),
            muted=bool(raw.get("muted", False)),
            suppressed=raw.get("suppressed"),
            changes=None if raw.get("changes") is None else int(raw["changes"]),
            within_ms=None if raw.get("within") is None else round(float(raw["within"]) * 1000),
            members=None if raw.get("members") is None else int(raw["members"]),
            maintenance=raw.get("maintenance"),
            rules_version=raw.get("rulesVersion"),
            per_ms=None if raw.get("per") is None else round(float(raw["per"]) * 1000),
        )


def history_direction(direction: str) -> str | None:
    """The direction the alert history keys an alert's series by: `nodata` (a
    no-data episode and a threshold one of a rule may resolve on one reading:
    two series) and a condition's kind (rate, stuck, spike, range: a sensor
    fault apart from the process); None for levels, as always."""
    return direction if direction == NODATA or direction in KINDS else None


def alert_id_for(device_id: str, sensor_id: str, rule: str, since_ms: int) -> str:
    digest = hashlib.sha256(f"{device_id}|{sensor_id}|{rule}|{since_ms}".encode()).hexdigest()
    return digest[:32]


StateKey = tuple[str, str]
"""(sensorId, rule name): one alert state machine on a device."""

_OK: Final = AlertState()
# The levels as constants for the hot path: on Python 3.11 a member read through
# its enum class (`Severity.OK`) costs about 0.1 µs, several times a reading.
_SEVERITY_OK: Final = Severity.OK
_SEVERITY_WARNING: Final = Severity.WARNING
_SEVERITY_CRITICAL: Final = Severity.CRITICAL
_EVENT_ORDER: Final = operator.attrgetter("time_ms", "sensor_id", "value")
_SENSOR: Final = operator.attrgetter("sensor_id")
_NEVER: Final = math.inf


def _restless(alert: AlertState) -> bool:
    """Whether a quiet reading may change the key (beyond counting it late): an
    alert or a streak on it, arrival tracked, or disabled (never evaluated)."""
    episode = alert.episode
    return (
        episode.severity is not _SEVERITY_OK
        or bool(episode.streaks)
        or alert.silence is not None
        or alert.care.disabled is not None
    )


_SideOutcome = tuple[Severity, dict[str, Streak]]
"""What one side makes of a reading: its severity and its streaks."""


def _reached(streak: Streak | None, rule: Rule, time_ms: int) -> bool:
    if streak is None:
        return False
    if rule.for_ms is not None:
        return time_ms - streak.start_ms >= rule.for_ms
    return streak.count >= rule.for_readings


def _streak(old: Streak | None, rule: Rule, time_ms: int) -> Streak:
    if old is None:
        return Streak(1, time_ms)
    if rule.for_ms is not None:
        return old  # a duration needs only its start: no write per reading
    return Streak(old.count + 1, old.start_ms)


def _step_side(side: Side, rule: Rule, state: Episode, value: float, time_ms: int) -> _SideOutcome:
    v = value * side.sign
    h = rule.hysteresis
    w, c = side.warning_at, side.critical_at
    name = side.name
    warning_key, critical_key = side.warning_key, side.critical_key
    streaks: dict[str, Streak] = {}
    if w is not None and v > w:
        streaks[warning_key] = _streak(state.streaks.get(warning_key), rule, time_ms)
    if c is not None and v > c:
        streaks[critical_key] = _streak(state.streaks.get(critical_key), rule, time_ms)
    held = _SEVERITY_OK
    if state.side == name:
        if state.severity is _SEVERITY_CRITICAL and c is not None and v > c - h:
            held = _SEVERITY_CRITICAL
        elif state.severity >= _SEVERITY_WARNING and w is not None and v > w - h:
            held = _SEVERITY_WARNING
    up = _SEVERITY_OK
    if c is not None and v > c and _reached(streaks.get(critical_key), rule, time_ms):
        up = _SEVERITY_CRITICAL
    elif w is not None and v > w and _reached(streaks.get(warning_key), rule, time_ms):
        up = _SEVERITY_WARNING
    severity = max(held, up)
    # A level reached (or exceeded) needs no streak any more.
    if severity >= _SEVERITY_WARNING:
        streaks.pop(warning_key, None)
    if severity is _SEVERITY_CRITICAL:
        streaks.pop(critical_key, None)
    return severity, streaks


def _step_sides(
    rule: Rule, state: Episode, level: float, time_ms: int
) -> tuple[Side, Severity, dict[str, Streak]]:
    """`_step_side` of a rule with several sides: the side that decides (the most
    severe, the episode's on a tie), its severity, and every side's streaks. A
    side the level is not past, other than the episode's, says OK and keeps no
    streak: only the others are stepped (none: OK, whichever side)."""
    named = state.side
    outcomes = [
        (side, _step_side(side, rule, state, level, time_ms))
        for side in rule.sides
        if side.name == named or level * side.sign > side.trigger
    ]
    if not outcomes:
        return rule.sides[0], _SEVERITY_OK, {}
    if len(outcomes) == 1:
        side, (new, streaks) = outcomes[0]
        return side, new, streaks
    side, (new, _) = max(outcomes, key=lambda so: (so[1][0], so[0].name == named))
    return side, new, {k: v for _, o in outcomes for k, v in o[1].items()}


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


@immutable
class _Change:
    state: AlertState
    transitions: tuple[Transition, ...]


@immutable
class _EpisodeChange:
    """What a step of the alarm state machine returns: the new episode alone."""

    episode: Episode
    transitions: tuple[Transition, ...]


def _transition(
    reading: Reading,
    rule: Rule,
    state: Episode,
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


def _resolve(reading: Reading, rule: Rule, state: Episode) -> Transition:
    side = _side_named(rule, state.side)
    threshold = None
    if side is not None:
        lowest = Severity.WARNING if side.warning is not None else Severity.CRITICAL
        threshold = _clear_level(side, rule, lowest)
    return _transition(
        reading, rule, state, Status.RESOLVED, Severity.OK, threshold, state.direction
    )


def _raise(
    reading: Reading,
    rule: Rule,
    side: Side,
    severity: Severity,
    streaks: Mapping[str, Streak],
) -> Episode:
    return Episode(
        severity=severity,
        side=side.name,
        alert_id=alert_id_for(reading.device_id, reading.sensor_id, rule.name, reading.time_ms),
        since_ms=reading.time_ms,
        value=reading.value,
        last_ms=reading.time_ms,
        streaks=streaks,
    )


def _moved(state: Episode, last_ms: int, streaks: Mapping[str, Streak]) -> Episode:
    """`replace(state, last_ms=..., streaks=...)`, built directly (the hot path)."""
    return Episode(
        state.severity,
        state.side,
        state.alert_id,
        state.since_ms,
        state.value,
        last_ms,
        streaks,
        state.latched,
        state.attention,
        state.kind,
        state.memo,
    )


def step(state: AlertState, rule: Rule, reading: Reading) -> _Change | None:
    """Evaluate one reading; None when nothing about this state changes. What
    belongs to the key rather than to the episode (arrival tracking, snooze,
    what operators heard) is kept; an acknowledgement lasts as long as its
    episode, and an escalation to CRITICAL clears it (a worse situation needs
    a new one). The alarm machine returns a new episode; only that part of the
    state is replaced."""
    if rule.condition is not None:
        change = _step_condition(state.episode, rule, reading)
    else:
        change = _alarm(state.episode, rule, reading, reading.value)
    if change is None:
        return None
    return _Change(state.with_episode(change.episode), change.transitions)


def _alarm(state: Episode, rule: Rule, reading: Reading, level: float) -> _EpisodeChange | None:
    """The alarm state machine every kind of rule feeds: `level` against the
    rule's levels, `reading` (its value: what is reported) for the episode."""
    if state.latched:
        change = _step_latched(state, rule, reading, level)
    else:
        change = _step(state, rule, reading, level)
    if change is None:
        return None
    after = change.episode
    if after.alert_id != state.alert_id:
        if after.attention is not None:
            after = replace(after, attention=None)
    elif after.attention is not None and any(
        t.status is Status.ESCALATED and t.severity is _SEVERITY_CRITICAL
        for t in change.transitions
    ):
        after = replace(after, attention=replace(after.attention, ack_by=None, ack_ms=None))
    return change if after is change.episode else _EpisodeChange(after, change.transitions)


def _step_condition(state: Episode, rule: Rule, reading: Reading) -> _EpisodeChange | None:
    """A reading through a rule's condition, then the alarm. The condition's memo
    moves the late-data line with it: an older reading arriving later changes
    neither the memo nor the episode newer data decided."""
    condition = rule.condition
    if condition is None or reading.time_ms <= state.last_ms:
        return None
    memo, measure = condition.update(state.memo, reading)
    change = None
    if measure is not None and (
        state.severity is not Severity.OK or state.streaks or rule.breaches(measure.level)
    ):
        change = _alarm(state, rule, replace(reading, value=measure.value), measure.level)
    if change is None:
        if memo == state.memo:
            return None  # a quiet key that keeps nothing (range in range) costs no write
        after = replace(state, memo=memo, kind=condition.kind, last_ms=reading.time_ms)
        return _EpisodeChange(after, ())
    kind = condition.kind
    per_ms = condition.per_ms if isinstance(condition, Rate) else None
    transitions = tuple(
        replace(
            t,
            direction=kind,
            per_ms=per_ms,
            threshold=t.threshold
            if measure is None or measure.threshold is None
            else measure.threshold,
        )
        for t in change.transitions
    )
    after = replace(change.episode, memo=memo, kind=kind, last_ms=reading.time_ms)
    return _EpisodeChange(after, transitions)


def _out_of_range(rules: Sequence[Rule], value: float) -> bool:
    """Whether a `range` rule among `rules` calls `value` a fault of its sensor."""
    return any(isinstance(r.condition, Range) and r.condition.outside(value) for r in rules)


def _step_latched(
    state: Episode, rule: Rule, reading: Reading, level: float
) -> _EpisodeChange | None:
    """A latched alert (its value came back) waits for an operator: it only
    changes when a level is breached again, and then it is live once more."""
    if reading.time_ms <= state.last_ms:
        return None
    fresh = Episode(last_ms=state.last_ms, streaks=state.streaks)
    probe = _step(fresh, rule, reading, level)
    if probe is None or probe.episode.severity is Severity.OK:
        streaks = probe.episode.streaks if probe is not None else state.streaks
        return _EpisodeChange(replace(state, last_ms=reading.time_ms, streaks=streaks), ())
    breach = probe.episode
    if breach.side != state.side:
        resolved = _resolve(reading, rule, state)
        return _EpisodeChange(breach, (resolved, *probe.transitions))
    live = replace(
        state,
        severity=breach.severity,
        value=reading.value,
        last_ms=reading.time_ms,
        streaks=breach.streaks,
        latched=False,
    )
    if breach.severity == state.severity:
        return _EpisodeChange(live, ())
    side = _side_named(rule, state.side)
    if breach.severity > state.severity:
        status, threshold = Status.ESCALATED, side.critical if side else None
    else:
        status = Status.DEESCALATED
        threshold = _clear_level(side, rule, Severity.CRITICAL) if side else None
    return _EpisodeChange(
        live,
        (
            _transition(
                reading, rule, state, status, breach.severity, threshold, state.side or "above"
            ),
        ),
    )


def _step(state: Episode, rule: Rule, reading: Reading, level: float) -> _EpisodeChange | None:
    """One reading through the alarm: `level` is compared with the rule's levels
    (the reading's value, or what its condition measured)."""
    if reading.time_ms <= state.last_ms:
        return None
    if (
        state.severity is _SEVERITY_OK
        and not state.streaks
        and not (level > rule.level_high or level < rule.level_low)  # `rule.breaches`, inlined
    ):
        return None
    sides = rule.sides
    if len(sides) == 1:
        side = sides[0]
        new, streaks = _step_side(side, rule, state, level, reading.time_ms)
    else:
        side, new, streaks = _step_sides(rule, state, level, reading.time_ms)
    same_episode = state.severity is _SEVERITY_OK or state.side == side.name
    if new == state.severity and (new is _SEVERITY_OK or same_episode):
        if streaks == state.streaks and state.severity is _SEVERITY_OK and not state.streaks:
            return None
        # While an alert is active or a streak counts, every newer reading moves the
        # late-data line, so that an older reading arriving later can never resolve or
        # de-escalate what newer data kept. (A quiet key costs no write per reading.)
        return _EpisodeChange(_moved(state, reading.time_ms, streaks), ())
    transitions: list[Transition] = []
    if state.severity is not _SEVERITY_OK and new is _SEVERITY_OK and rule.latch:
        # Back inside the levels, but operators must look: LATCHED until a reset.
        side_now = _side_named(rule, state.side)
        lowest = (
            _SEVERITY_WARNING if side_now and side_now.warning is not None else _SEVERITY_CRITICAL
        )
        clear = _clear_level(side_now, rule, lowest) if side_now else None
        latched = _transition(
            reading, rule, state, Status.LATCHED, state.severity, clear, state.side or "above"
        )
        after = replace(
            state, latched=True, value=reading.value, last_ms=reading.time_ms, streaks=streaks
        )
        return _EpisodeChange(after, (latched,))
    if state.severity is not _SEVERITY_OK and (new is _SEVERITY_OK or not same_episode):
        transitions.append(_resolve(reading, rule, state))
        state = _NO_EPISODE
    if new is _SEVERITY_OK:
        return _EpisodeChange(Episode(last_ms=reading.time_ms, streaks=streaks), tuple(transitions))
    if state.severity is _SEVERITY_OK:
        raised = _raise(reading, rule, side, new, streaks)
        crossed = side.critical if new is _SEVERITY_CRITICAL else side.warning
        # What a RAISED says it came from: this episode before its level (OK).
        before = Episode(
            _SEVERITY_OK,
            raised.side,
            raised.alert_id,
            raised.since_ms,
            raised.value,
            raised.last_ms,
        )
        transitions.append(
            _transition(reading, rule, before, Status.RAISED, new, crossed, side.name)
        )
        return _EpisodeChange(raised, tuple(transitions))
    if new > state.severity:
        status, threshold = Status.ESCALATED, side.critical
    else:
        status, threshold = Status.DEESCALATED, _clear_level(side, rule, _SEVERITY_CRITICAL)
    transitions.append(_transition(reading, rule, state, status, new, threshold, side.name))
    after = Episode(
        new,
        state.side,
        state.alert_id,
        state.since_ms,
        reading.value,
        reading.time_ms,
        streaks,
        state.latched,
        state.attention,
        state.kind,
        state.memo,
    )
    return _EpisodeChange(after, tuple(transitions))


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


def nodata_transition(
    device_id: str,
    sensor_id: str,
    rule: str,
    silence: Silence,
    status: Status,
    *,
    time_ms: int,
    value: float,
    severity: Severity,
) -> Transition:
    """A change of a no-data alert. Its `value` is the last value received, its
    `threshold` the nodata window in seconds."""
    if silence.alert_id is None or silence.since_ms is None:
        raise ValueError("a no-data transition needs an episode: alert_id and since_ms")
    return Transition(
        alert_id=silence.alert_id,
        status=status,
        severity=severity,
        previous_severity=silence.severity,
        device_id=device_id,
        sensor_id=sensor_id,
        rule=rule,
        value=value,
        threshold=silence.window_ms / 1000,
        time_ms=time_ms,
        since_ms=silence.since_ms,
        direction=NODATA,
        type=silence.type,
        location=silence.location,
        unit=silence.unit,
    )


def _heard_from(reading: Reading, window_ms: int, arrival_ms: int) -> Silence:
    return Silence(
        arrival_ms, window_ms, reading.value, reading.type, reading.location, reading.unit
    )


def _arrived(
    before: AlertState | None, rule: Rule, window_ms: int, reading: Reading, arrival_ms: int
) -> tuple[AlertState, Transition | None] | None:
    """Record that `reading` arrived for a key whose rule has `nodata`: resolves
    a no-data alert; otherwise writes only when the recorded arrival is older
    than half the window (None: nothing to write)."""
    silence = before.silence if before is not None else None
    if silence is not None and silence.severity is not Severity.OK:
        resolved = nodata_transition(
            reading.device_id,
            reading.sensor_id,
            rule.name,
            silence,
            Status.RESOLVED,
            time_ms=reading.time_ms,
            value=reading.value,
            severity=Severity.OK,
        )
        return replace(before or _OK, silence=_heard_from(reading, window_ms, arrival_ms)), resolved
    if (
        silence is None
        or silence.window_ms != window_ms
        or arrival_ms - silence.seen_ms >= window_ms * NODATA_SLACK
    ):
        return replace(before or _OK, silence=_heard_from(reading, window_ms, arrival_ms)), None
    return None


def _orphans_resolved(
    state: Mapping[StateKey, AlertState],
    reading: Reading,
    matched: Sequence[Rule],
    rule_names: Iterable[str],
) -> list[tuple[StateKey, AlertState, list[Transition]]]:
    """What changes for this sensor's keys under rules that no longer apply to it
    (removed from the rule files, their match changed, their `nodata` gone):
    their alerts resolve, and arrival is no longer tracked under them."""
    by_name = {r.name: r for r in matched}
    out = []
    for rule_name in sorted(rule_names):
        sensor_id = reading.sensor_id
        before = state.get((sensor_id, rule_name)) or _OK
        rule = by_name.get(rule_name)
        transitions: list[Transition] = []
        after = before
        if rule is None and before.severity is not Severity.OK and reading.time_ms > before.last_ms:
            transitions.append(_resolve(reading, Rule(rule_name, ()), before.episode))
            # The rule is gone: its episode ends, and of what the key kept only the
            # arrival tracking and the flapping watch stay (as before the parts).
            after = AlertState(
                episode=Episode(last_ms=reading.time_ms),
                silence=before.silence,
                care=Care(flaps=before.flaps),
            )
        if before.silence is not None and (rule is None or rule.nodata_ms is None):
            if before.silent:
                transitions.append(
                    nodata_transition(
                        reading.device_id,
                        reading.sensor_id,
                        rule_name,
                        before.silence,
                        Status.RESOLVED,
                        time_ms=reading.time_ms,
                        value=reading.value,
                        severity=Severity.OK,
                    )
                )
            after = replace(after, silence=None)
        if after is not before:
            out.append(((sensor_id, rule_name), after, transitions))
    return out


class _ValueOrderError(Exception):
    """Two readings of one sensor at one time came out of value order."""


def _out_of_value_order(ordered: Sequence[Reading], index: int) -> bool:
    """Whether a reading before `index` of the same sensor and time has a higher
    value (reading-time order would take it later)."""
    reading = ordered[index]
    for at in range(index - 1, -1, -1):
        earlier = ordered[at]
        if earlier.sensor_id != reading.sensor_id or earlier.time_ms != reading.time_ms:
            return False
        if earlier.value > reading.value:
            return True
    return False


def evaluate(
    readings: Iterable[Reading],
    state: Mapping[StateKey, AlertState],
    rules: RuleSet,
    arrival_ms: int | None = None,
    *,
    by_sensor: bool = False,
) -> Evaluation:
    """Run one device's readings, in reading-time order, through its alert state.

    `arrival_ms` is when they arrived (the later of receivedAt and processing
    time): given, it is recorded for rules with `nodata` and resolves their
    no-data alerts, whatever the readings' own times.

    `by_sensor`: the readings come in time order (as a replay's window releases
    them), and are taken sensor by sensor, each sensor's in time order: the
    same state, counts and transitions as reading-time order, the transitions
    grouped by sensor rather than by time (a caller that puts them in time
    order itself sees no difference), for a sort on one key instead of three.
    Readings of one sensor at one time out of value order (reading-time order
    takes the lower first) fall back to reading-time order."""
    if by_sensor:
        ordered = sorted(readings, key=_SENSOR)
        try:
            return _evaluated(ordered, state, rules, arrival_ms, check=True)
        except _ValueOrderError:
            readings = ordered
    return _evaluated(sorted(readings, key=_EVENT_ORDER), state, rules, arrival_ms, check=False)


def _evaluated(  # noqa: C901, PLR0912, PLR0915 - the hot loop is inlined on purpose (make bench)
    ordered: list[Reading],
    state: Mapping[StateKey, AlertState],
    rules: RuleSet,
    arrival_ms: int | None,
    *,
    check: bool,
) -> Evaluation:
    """`evaluate` of readings in the order to take them; with `check`,
    _ValueOrderError when two of one sensor and one time are out of value order."""
    current: Mapping[StateKey, AlertState] = state
    written: dict[StateKey, AlertState] | None = None  # copied on the first change
    transitions: list[Transition] = []
    not_evaluated: list[tuple[Reading, str]] = []
    evaluated = late = 0
    unrecorded: dict[StateKey, tuple[int, Reading]] = {}
    active: dict[str, set[str]] = {}
    # Per sensor with keys: how many are restless (an alert, a streak, silence
    # tracked, disabled), and the newest late-data line among them. A quiet reading
    # past that line changes nothing on a sensor with none restless (`rest`).
    restless: dict[str, int] = {}
    lines: dict[str, int] = {}
    rest: dict[str, float] = {}
    for (sensor_id, rule_name), alert in state.items():
        if alert.severity is not _SEVERITY_OK or alert.silence is not None:
            active.setdefault(sensor_id, set()).add(rule_name)
        if _restless(alert):
            restless[sensor_id] = restless.get(sensor_id, 0) + 1
        line = lines[sensor_id] = max(lines.get(sensor_id, -1), alert.last_ms)
        rest[sensor_id] = _NEVER if sensor_id in restless else line
    resting = rest.get
    rules_for = rules.matches_for
    ranged = rules.ranged
    arrivals = arrival_ms is not None
    for index, reading in enumerate(ordered):
        found, low, high, tracks = rules_for(reading)
        if (
            low <= reading.value <= high
            and reading.time_ms > resting(reading.sensor_id, -1)
            and (reading.warning_threshold is None or reading.critical_threshold is None)
            and not (arrivals and tracks)
        ):
            evaluated += len(found)  # the common case: nothing breached, nothing to move
            continue
        if check and index and _out_of_value_order(ordered, index):
            raise _ValueOrderError
        matched: Sequence[Rule] = found
        arrival_only = False
        if reading.warning_threshold is not None and reading.critical_threshold is not None:
            problem = reading.device_threshold_problem
            if problem is not None:
                not_evaluated.append((reading, problem))
                # Not evaluated, but it did arrive: the sensor is not silent.
                matched = tuple(r for r in matched if r.nodata_ms is not None)
                if not matched or arrival_ms is None:
                    continue
                arrival_only = True
        sensor_id, value, time_ms = reading.sensor_id, reading.value, reading.time_ms
        # A sensor's fault (a reading outside its range) is kept out of its other rules.
        faulty = ranged and _out_of_range(matched, value)
        if sensor_id in active and not arrival_only:
            orphans = _orphans_resolved(current, reading, matched, active[sensor_id])
            for key, after, resolved in orphans:
                if written is None:
                    current = written = dict(state)
                written[key] = after
                transitions.extend(resolved)
        for rule in matched:
            key = (sensor_id, rule.name)
            before = current.get(key)
            if before is not None and before.care.disabled is not None:
                continue  # an operator disabled it: stored, not evaluated
            if arrival_ms is not None and rule.nodata_ms is not None:
                tracked = _arrived(before, rule, rule.nodata_ms, reading, arrival_ms)
                if tracked is not None:
                    if written is None:
                        current = written = dict(state)
                    before = written[key] = tracked[0]
                    rest[sensor_id] = _NEVER
                    if tracked[1] is not None:
                        transitions.append(tracked[1])
                else:
                    unrecorded[key] = (rule.nodata_ms, reading)
                if not rule.sides or arrival_only:
                    continue
            quiet = rule.quiet_low <= value <= rule.quiet_high
            if before is None:
                evaluated += 1
                if quiet:
                    continue  # the common case: nothing known, nothing breached
                before = _OK
            else:
                episode = before.episode
                if time_ms <= episode.last_ms:
                    late += 1
                    continue
                evaluated += 1
                if quiet and episode.severity is _SEVERITY_OK and not episode.streaks:
                    continue
            if faulty and not isinstance(rule.condition, Range):
                continue  # a sensor fault: kept out (the quiet path above changes nothing)
            # `step`, inlined: the hot path of a key with an alert or a streak.
            if rule.condition is not None:
                change = _step_condition(before.episode, rule, reading)
            else:
                change = _alarm(before.episode, rule, reading, value)
            if change is None:
                continue
            if written is None:
                current = written = dict(state)
            after = written[key] = before.with_episode(change.episode)
            count = restless.get(sensor_id, 0) + _restless(after) - _restless(before)
            restless[sensor_id] = count
            line = lines[sensor_id] = max(lines.get(sensor_id, -1), after.last_ms)
            rest[sensor_id] = _NEVER if count else line
            transitions.extend(change.transitions)
    if written is not None and arrival_ms is not None:
        # The record is written anyway: let it carry the newest arrivals too, so that
        # a no-data alert reports the last value received as often as writes allow.
        for key, (window_ms, latest) in unrecorded.items():
            held = written.get(key)
            if held is not None and held.silence is not None and not held.silent:
                written[key] = replace(held, silence=_heard_from(latest, window_ms, arrival_ms))
    changed = written is not None
    final = written if written is not None else dict(state)
    return Evaluation(final, transitions, changed, evaluated, late, not_evaluated)


@immutable
class ActiveAlert:
    """An alert episode in progress on a key: a threshold alert (`direction`
    above or below) or a no-data one (`nodata`), as the shadow mirrors it."""

    rule: str
    severity: Severity
    alert_id: str | None
    since_ms: int
    value: float | None
    direction: str
    state: AlertState

    @property
    def rank(self) -> tuple[int, int, str, str]:
        """Most severe first, then the older episode, then the rule, then the kind."""
        return (-self.severity, self.since_ms, self.rule, self.direction)


def episodes(rule: str, alert: AlertState) -> list[ActiveAlert]:
    """The active episodes of one key: its threshold alert, its no-data alert."""
    out = []
    if alert.severity is not Severity.OK:
        out.append(
            ActiveAlert(
                rule,
                alert.severity,
                alert.alert_id,
                alert.since_ms or 0,
                alert.value,
                alert.direction,
                alert,
            )
        )
    silence = alert.silence
    if silence is not None and silence.severity is not Severity.OK:
        out.append(
            ActiveAlert(
                rule,
                silence.severity,
                silence.alert_id,
                silence.since_ms or 0,
                silence.value,
                NODATA,
                alert,
            )
        )
    return out


def top_episode(live: Iterable[ActiveAlert]) -> ActiveAlert | None:
    """The episode operators see first, wherever they look (shadow, an action's
    answer, `alerts list`): the most severe, then the older episode, then the
    rule, then the kind (`ActiveAlert.rank`). None when none is active."""
    return min(live, key=operator.attrgetter("rank"), default=None)


def active_alerts(state: Mapping[StateKey, AlertState]) -> dict[str, ActiveAlert]:
    """Per sensor, the most severe active alert, threshold or no-data (ties: the
    older episode, then the rule name), as the device shadow mirrors it."""
    by_sensor: dict[str, list[ActiveAlert]] = {}
    for (sensor_id, rule), alert in state.items():
        by_sensor.setdefault(sensor_id, []).extend(episodes(rule, alert))
    return {s: top for s, live in by_sensor.items() if (top := top_episode(live)) is not None}


def quiet_oldest_first(state: Mapping[StateKey, AlertState]) -> list[StateKey]:
    """The keys a bounded store may forget, the least useful first: quiet
    entries (OK, no streak, no arrival tracked), kept only for their late-data
    line, oldest first. Active alerts, counting streaks, sensors a `nodata`
    rule watches and flapping keys are never among them; a quiet key's condition
    memo may go (its window starts again), so that a removed rule's memo does
    not stay for ever."""
    quiet = [
        k
        for k, a in state.items()
        if a.severity is Severity.OK
        and not a.streaks
        and a.silence is None
        and not a.operated
        and not a.flapping
    ]
    quiet.sort(key=lambda k: (state[k].last_ms, k))
    return quiet


STATE_FORMAT: Final = 2
"""The stored state's format, `$format` beside its keys. 1 (no `$format`): the
release before conditions; 2 adds a key's condition `kind` and `memo`. Every
earlier format loads as it was (tests/golden/state); a later one is refused."""
FORMAT_KEY: Final = "$format"


def state_to_json(state: Mapping[StateKey, AlertState]) -> dict[str, Any]:
    """A device's alert state as stored: `sensor/rule` -> its key's state, and
    the format."""
    out: dict[str, Any] = {FORMAT_KEY: STATE_FORMAT}
    out.update(
        {f"{sensor}/{rule}": alert.to_json() for (sensor, rule), alert in sorted(state.items())}
    )
    return out


def state_from_json(raw: Mapping[str, Any]) -> dict[StateKey, AlertState]:
    """The state `state_to_json` (of this format or an earlier one) stored;
    ValueError for a format this code does not know."""
    found = raw.get(FORMAT_KEY, 1)
    if not isinstance(found, int) or not 1 <= found <= STATE_FORMAT:
        raise ValueError(
            f"stored alert state of format {found!r}: this code reads 1 to {STATE_FORMAT}"
        )
    state: dict[StateKey, AlertState] = {}
    for key, value in raw.items():
        if key == FORMAT_KEY:
            continue
        sensor, _, rule = key.partition("/")
        state[(sensor, rule)] = AlertState.from_json(value)
    return state
