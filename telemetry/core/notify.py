"""The notification policy: a budget per group of transitions, and digests.

Operators accept a certain alarm load (`Notifications`, from the rule files).
Transitions are grouped by some of their fields (`group_of`); in any sliding
`window` of arrival time (the function's clock, not the devices'), at most
`max_per_window` of a group's budgeted transitions are published one by one
(`admit`). The rest are held: summarized in the group's pending `Digest`, which
the sweep sends when due (`digest_due_ms`, `take_digest`), at most
`digest_every` after the first held one and at least `digest_every` after the
group's previous digest. Digests do not count against the budget: with the
defaults a group sends at most 5 single messages and 5 digests in any 10
minutes.

Operators' actions are never held (someone asked for them); muted (snoozed)
transitions are never published, so never counted nor held.

Pure: the delivery keeps a group's `GroupState` durable, and decides nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from telemetry.core.alerts import ACTION_STATUSES, Severity, Status, Transition
from telemetry.core.immutable import immutable
from telemetry.core.messages import iso_utc, parse_time_ms
from telemetry.core.rules import Notifications

if TYPE_CHECKING:
    from telemetry.core.state import DeviceRecord

BUDGETED: Final = frozenset(s for s in Status if s not in ACTION_STATUSES)
"""Statuses subject to the budget: changes of level, reminders, flapping and
stable, latched (offline and no-data transitions use these statuses too)."""
DIGEST_STATUS: Final = "DIGEST"
MAX_DIGEST_ALERTS: Final = 100
"""Held transitions a digest lists one by one; it counts the rest as `omitted`."""
MAX_DIGEST_RULES_VERSIONS: Final = 10
"""Distinct `rulesVersion`s a digest keeps (the latest): rules are deployed in
minutes, a digest gathers for at most `digestEvery`, so more means a loop."""
SUBJECT_LIMIT: Final = 100
"""SNS refuses a longer subject."""
NO_VALUE: Final = ""
"""A group's value for a field the transition lacks (no location, no type):
messages never carry an empty label, so it means "none" and nothing else."""
GROUP_ATTRIBUTES: Final = {"rule": "rule", "deviceId": "deviceId", "type": "sensorType"}
"""Group fields that single messages carry as SNS message attributes, by attribute name."""

Group = tuple[tuple[str, str], ...]
"""A notification group: (field, value) for each of `Notifications.group_by`, in order."""


def group_of(transition: Transition, notifications: Notifications) -> Group:
    """The group `transition` counts in: its values of the `group_by` fields
    (`severity` is its routing severity's name; a missing location or type is
    NO_VALUE). `group_by` empty: one group, `()`."""
    if not notifications.group_by:
        return ()
    values = {
        "rule": transition.rule,
        "location": transition.location or NO_VALUE,
        "type": transition.type or NO_VALUE,
        "deviceId": transition.device_id,
        "severity": transition.routing_severity.name,
    }
    return tuple((name, values[name]) for name in notifications.group_by)


def group_id(group: Group) -> str:
    """A stable text for a group, for storage: the same group, the same text."""
    return json.dumps([list(pair) for pair in group], separators=(",", ":"))


def group_from_id(text: str) -> Group:
    return tuple((str(name), str(value)) for name, value in json.loads(text))


def group_hash(group: Group) -> str:
    """A short, stable hash of the group id (a storage key)."""
    return hashlib.sha256(group_id(group).encode()).hexdigest()[:32]


_STATUS_VALUE: Final = {status: status.value for status in Status}
_SEVERITY_NAME: Final = {severity: severity.name for severity in Severity}
"""A member's value or name read through its enum costs a descriptor call (the hot path)."""


@immutable
class HeldAlert:
    """One held transition as a digest lists it. `rank` is its routing
    severity: a full digest keeps the most severe."""

    device_id: str
    sensor_id: str
    rule: str
    alert_id: str
    status: str
    severity: str
    time_ms: int
    rank: Severity = field(compare=False)

    @classmethod
    def of(cls, transition: Transition) -> HeldAlert:
        return cls(
            transition.device_id,
            transition.sensor_id,
            transition.rule,
            transition.alert_id,
            _STATUS_VALUE[transition.status],
            _SEVERITY_NAME[transition.severity],
            transition.time_ms,
            transition.routing_severity,
        )

    def to_json(self) -> dict[str, Any]:
        """The digest body's form of it."""
        return {
            "deviceId": self.device_id,
            "sensorId": self.sensor_id,
            "rule": self.rule,
            "alertId": self.alert_id,
            "status": self.status,
            "severity": self.severity,
            "time": iso_utc(self.time_ms),
        }

    def to_store(self) -> list[Any]:
        """Its compact form in the group's stored state (a group item is rewritten
        with every hold: every byte is paid for again)."""
        return [
            self.device_id,
            self.sensor_id,
            self.rule,
            self.alert_id,
            self.status,
            self.severity,
            self.time_ms,
            self.rank.name,
        ]

    @classmethod
    def from_store(cls, raw: Sequence[Any]) -> HeldAlert:
        device_id, sensor_id, rule, alert_id, status, severity, time_ms, rank = raw
        return cls(
            str(device_id),
            str(sensor_id),
            str(rule),
            str(alert_id),
            str(status),
            str(severity),
            int(time_ms),
            Severity[rank],
        )

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> HeldAlert:
        """From a digest body's entry (its routing severity is not there: its
        severity stands in)."""
        return cls(
            str(raw["deviceId"]),
            str(raw["sensorId"]),
            str(raw["rule"]),
            str(raw["alertId"]),
            str(raw["status"]),
            str(raw["severity"]),
            parse_time_ms(raw["time"]),
            Severity[raw["severity"]],
        )


Counts = tuple[tuple[str, int], ...]
"""(name, count) pairs in a fixed order, none zero."""
_STATUS_ORDER: Final = {status.value: i for i, status in enumerate(Status)}


def _status_counts(counts: Iterable[tuple[str, int]]) -> Counts:
    return tuple(sorted(((k, n) for k, n in counts if n), key=lambda kv: _STATUS_ORDER[kv[0]]))


def _severity_counts(counts: Iterable[tuple[str, int]]) -> Counts:
    return tuple(sorted(((k, n) for k, n in counts if n), key=lambda kv: -Severity[kv[0]]))


def _bumped(
    counts: Counts, name: str, order: Callable[[Iterable[tuple[str, int]]], Counts]
) -> Counts:
    """The counts with one more of `name`: a name already counted keeps its place
    (the orders sort by name alone), a new one is placed by `order`."""
    for index, (known, n) in enumerate(counts):
        if known == name:
            return (*counts[:index], (name, n + 1), *counts[index + 1 :])
    return order((*counts, (name, 1)))


@immutable
class Digest:
    """The held transitions of a group not yet sent: when the first and the
    last were held (arrival ms), how many per status and per routing severity,
    the ones listed (at most MAX_DIGEST_ALERTS, the most severe first, then the
    earliest held, in the order held) and how many more were held (`omitted`);
    `rules_versions`: the distinct `rulesVersion`s of the held transitions, in
    the order first held (the rules that decided them; usually one)."""

    from_ms: int
    to_ms: int
    counts: Counts = ()
    severities: Counts = ()
    alerts: tuple[HeldAlert, ...] = ()
    omitted: int = 0
    rules_versions: tuple[str, ...] = ()
    lowest: Severity | None = field(default=None, compare=False, repr=False)
    """The least routing severity among `alerts` when known (None: not known,
    e.g. read from storage, or no alerts): a full digest finds the alert that
    makes room without a scan per transition. Not part of the stored form."""

    @property
    def held(self) -> int:
        return sum(n for _, n in self.counts)

    @property
    def severity(self) -> Severity:
        """The most severe routing severity held."""
        return max((Severity[name] for name, n in self.severities if n), default=Severity.OK)

    def adding(self, transition: Transition, now_ms: int) -> Digest:
        """This digest with `transition` held too, at `now_ms`."""
        alert = HeldAlert.of(transition)
        rank = alert.rank
        alerts, omitted, lowest = self.alerts, self.omitted, self.lowest
        if len(alerts) < MAX_DIGEST_ALERTS:
            if not alerts or (lowest is not None and rank < lowest):
                lowest = rank
            alerts = (*alerts, alert)
        else:
            omitted += 1
            if lowest is None:
                lowest = min(a.rank for a in alerts)
            if rank > lowest:
                # The latest held of the least severe makes room.
                index = max(i for i, a in enumerate(alerts) if a.rank == lowest)
                alerts = (*alerts[:index], *alerts[index + 1 :], alert)
                lowest = min(a.rank for a in alerts)
        return Digest(
            self.from_ms,
            max(self.to_ms, now_ms),
            _bumped(self.counts, alert.status, _status_counts),
            _bumped(self.severities, _SEVERITY_NAME[rank], _severity_counts),
            alerts,
            omitted,
            _with_version(self.rules_versions, transition.rules_version),
            lowest,
        )

    def to_json(self) -> dict[str, Any]:
        out = {
            "from": self.from_ms,
            "to": self.to_ms,
            "counts": dict(self.counts),
            "severities": dict(self.severities),
            "alerts": [a.to_store() for a in self.alerts],
            "omitted": self.omitted,
        }
        if self.rules_versions:
            out["rulesVersions"] = list(self.rules_versions)
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Digest:
        return cls(
            int(raw["from"]),
            int(raw["to"]),
            _status_counts((str(k), int(v)) for k, v in raw["counts"].items()),
            _severity_counts((str(k), int(v)) for k, v in raw["severities"].items()),
            tuple(HeldAlert.from_store(a) for a in raw["alerts"]),
            int(raw["omitted"]),
            tuple(str(v) for v in raw.get("rulesVersions", ())),
        )


def _with_version(versions: tuple[str, ...], version: str | None) -> tuple[str, ...]:
    if version is None or (versions and versions[-1] == version):
        return versions
    kept = tuple(v for v in versions if v != version)
    return (*kept, version)[-MAX_DIGEST_RULES_VERSIONS:]


@immutable
class GroupState:
    """A group's budget as the function keeps it between invocations.

    `sent`: (arrival ms, transition key) of the transitions published one by one
    within the window, oldest first (never more than `max_per_window`);
    `pending`: the digest being gathered, if any; `last_digest_ms`: when the
    previous digest was taken."""

    sent: tuple[tuple[int, str], ...] = ()
    pending: Digest | None = None
    last_digest_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sent": [list(s) for s in self.sent]}
        if self.pending is not None:
            out["pending"] = self.pending.to_json()
        if self.last_digest_ms is not None:
            out["lastDigest"] = self.last_digest_ms
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> GroupState:
        pending = raw.get("pending")
        last = raw.get("lastDigest")
        return cls(
            tuple((int(ms), str(key)) for ms, key in raw.get("sent", [])),
            None if pending is None else Digest.from_json(pending),
            None if last is None else int(last),
        )


def hold(state: GroupState, transitions: Iterable[Transition], now_ms: int) -> GroupState:
    """`state` with `transitions` added to its pending digest, held at `now_ms`."""
    return GroupState(state.sent, _held(state.pending, transitions, now_ms), state.last_digest_ms)


def _held(pending: Digest | None, transitions: Iterable[Transition], now_ms: int) -> Digest | None:
    for transition in transitions:
        if pending is None:
            pending = Digest(now_ms, now_ms)
        pending = pending.adding(transition, now_ms)
    return pending


@immutable
class Admission:
    """What to do with a group's transitions: publish these one by one, hold
    those for the digest, and keep `state`."""

    publish: tuple[Transition, ...]
    hold: tuple[Transition, ...]
    state: GroupState


def admit(
    state: GroupState,
    transitions: Sequence[Transition],
    notifications: Notifications,
    now_ms: int,
) -> Admission:
    """Decide, in order, which of a group's transitions arriving at `now_ms`
    are published and which are held.

    Muted transitions are neither (never published, never counted); operators'
    actions are published, uncounted; a transition already in `sent` (a retry
    of one counted before) is published again without counting; the others are
    published and counted while fewer than `max_per_window` were counted in the
    window (now - window, now], and held beyond."""
    start = now_ms - notifications.window_ms
    sent = [s for s in state.sent if s[0] > start][-notifications.max_per_window :]
    counted = {key for _, key in sent}
    publish: list[Transition] = []
    held: list[Transition] = []
    for transition in transitions:
        if transition.muted:
            continue
        if transition.status not in BUDGETED:
            publish.append(transition)
            continue
        key = transition.key
        if key in counted:
            publish.append(transition)
        elif len(sent) < notifications.max_per_window:
            publish.append(transition)
            sent.append((now_ms, key))
            counted.add(key)
        else:
            held.append(transition)
    pending = _held(state.pending, held, now_ms) if held else state.pending
    new_state = GroupState(tuple(sent), pending, state.last_digest_ms)
    return Admission(tuple(publish), tuple(held), new_state)


def digest_due_ms(state: GroupState, notifications: Notifications) -> int | None:
    """When the pending digest is to be sent: `digest_every` after the first
    held transition, or after the previous digest if that is later. None:
    nothing pending."""
    if state.pending is None:
        return None
    due = state.pending.from_ms + notifications.digest_every_ms
    if state.last_digest_ms is not None:
        due = max(due, state.last_digest_ms + notifications.digest_every_ms)
    return due


@immutable
class DigestMessage:
    """One digest as operators receive it: one SNS message for a group's held
    transitions."""

    group: Group
    digest: Digest

    @property
    def key(self) -> str:
        """Identifies this digest across retries (its outbox entry, FIFO deduplication)."""
        return f"digest:{group_hash(self.group)}:{self.digest.from_ms}"

    @property
    def severity(self) -> Severity:
        return self.digest.severity

    def to_json(self) -> dict[str, Any]:
        """The SNS body: `rulesVersion` (when the rules have one) is that of the
        latest held change; `rulesVersions` lists them all, in the order first
        held, when rules deployed while the digest gathered decided some."""
        severities = {"CRITICAL": 0, "WARNING": 0} | {
            name: n for name, n in self.digest.severities if n
        }
        ordered = sorted(severities.items(), key=lambda kv: -Severity[kv[0]])
        body = {
            "status": DIGEST_STATUS,
            "group": dict(self.group),
            "from": iso_utc(self.digest.from_ms),
            "to": iso_utc(self.digest.to_ms),
            "counts": dict(self.digest.counts),
            "severities": dict(ordered),
            "alerts": [a.to_json() for a in self.digest.alerts],
            "omitted": self.digest.omitted,
        }
        versions = self.digest.rules_versions
        if versions:
            body["rulesVersion"] = versions[-1]
        if len(versions) > 1:
            body["rulesVersions"] = list(versions)
        return body

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DigestMessage:
        """A digest from its body (the group's outbox keeps bodies)."""
        digest = Digest(
            parse_time_ms(raw["from"]),
            parse_time_ms(raw["to"]),
            _status_counts((str(k), int(v)) for k, v in raw["counts"].items()),
            _severity_counts((str(k), int(v)) for k, v in raw["severities"].items()),
            tuple(HeldAlert.from_json(a) for a in raw["alerts"]),
            int(raw["omitted"]),
            tuple(
                str(v)
                for v in raw.get("rulesVersions")
                or ([raw["rulesVersion"]] if "rulesVersion" in raw else [])
            ),
        )
        return cls(tuple((str(k), str(v)) for k, v in raw["group"].items()), digest)

    def subject(self) -> str:
        """Like `[CRITICAL] 1,284 alert changes in location line-3 (10:00-10:02)`:
        printable ASCII, at most SUBJECT_LIMIT characters (the group's values are
        cut short if they must be)."""
        held = self.digest.held
        head = f"[{self.severity.name}] {held:,} alert change{'' if held == 1 else 's'}"
        span = f" ({_clock(self.digest.from_ms)}-{_clock(self.digest.to_ms)})"
        where = ", ".join(f"{name} {value or '(none)'}" for name, value in self.group)
        middle = f" in {where}" if where else ""
        room = SUBJECT_LIMIT - len(head) - len(span)
        if len(middle) > room:
            middle = middle[: room - 3] + "..."
        text = head + middle + span
        return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)

    def attributes(self) -> dict[str, str]:
        """Its message attributes for subscription filter policies: `status`
        DIGEST, `severity`, and the group's fields that single messages carry."""
        out = {"status": DIGEST_STATUS, "severity": self.severity.name}
        for name, value in self.group:
            attribute = GROUP_ATTRIBUTES.get(name)
            if attribute is not None and value:
                out[attribute] = value
        return out


def _clock(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, tz=UTC).strftime("%H:%M")


def take_digest(
    state: GroupState, group: Group, notifications: Notifications, now_ms: int
) -> tuple[DigestMessage, GroupState]:
    """The group's pending digest as a message, and the state once it is sent
    (nothing pending, the previous digest taken at `now_ms`). ValueError when
    nothing is due at `now_ms`."""
    due = digest_due_ms(state, notifications)
    if state.pending is None or due is None or due > now_ms:
        raise ValueError("no digest due")
    return DigestMessage(group, state.pending), replace(state, pending=None, last_digest_ms=now_ms)


@immutable
class DigestEntry:
    """A digest taken but not yet delivered: the group's outbox entry, with the
    same claim and lease as a device's (telemetry.core.state.OutboxEntry)."""

    message: DigestMessage
    enqueued_ms: int
    claimant: str | None = None
    lease_ms: int = 0

    @property
    def key(self) -> str:
        return self.message.key

    def free_for(self, invocation: str, now_ms: int) -> bool:
        return self.claimant is None or self.claimant == invocation or self.lease_ms <= now_ms

    def claimed(self, invocation: str | None, lease_ms: int = 0) -> DigestEntry:
        return replace(self, claimant=invocation, lease_ms=lease_ms if invocation else 0)

    @property
    def due_ms(self) -> int:
        return self.lease_ms if self.claimant is not None else self.enqueued_ms

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"d": self.message.to_json(), "at": self.enqueued_ms}
        if self.claimant is not None:
            out |= {"claim": self.claimant, "lease": self.lease_ms}
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DigestEntry:
        claimant = raw.get("claim")
        return cls(
            DigestMessage.from_json(raw["d"]),
            int(raw["at"]),
            None if claimant is None else str(claimant),
            int(raw.get("lease", 0)),
        )


@immutable
class GroupRecord:
    """A group's durable record as read, with the version it was read at (0:
    never written): its budget and the digests taken but not yet delivered."""

    group: Group
    version: int = 0
    state: GroupState = field(default_factory=GroupState)
    outbox: tuple[DigestEntry, ...] = ()

    def due_ms(self, notifications: Notifications) -> int | None:
        """When the sweep next has something to do for this group: a digest to
        take, or one taken to deliver."""
        due = [digest_due_ms(self.state, notifications), *(e.due_ms for e in self.outbox)]
        known = [d for d in due if d is not None]
        return min(known) if known else None


@immutable
class DeviceHold:
    """A device whose outbox entries are held: its record as it is to be
    written (without them), and the held transitions with their groups."""

    record: DeviceRecord
    held: tuple[tuple[Group, Transition], ...]
