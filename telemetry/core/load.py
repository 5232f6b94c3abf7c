"""The alarm load operators would have had, measured as the standards do.

ISA-18.2 and EEMUA 191 judge an alarm system by what reaches an operator: about
one alarm per 10 minutes is manageable, more than 10 in 10 minutes is a flood,
3 or more activations of one alarm within 60 s is chattering, an alarm active
for more than a day is standing, and the few alarms that send the most ("bad
actors") are where tuning pays. Given the transitions a history produced, this
module replays the notification policy (`telemetry.core.notify`) over them in
their own time, as the function would have at arrival, and reports those
figures. Pure.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import field
from typing import Any, Final

from telemetry.core.alerts import Status, Transition
from telemetry.core.immutable import immutable
from telemetry.core.notify import (
    Group,
    GroupState,
    admit,
    digest_due_ms,
    group_of,
    take_digest,
)
from telemetry.core.rules import Notifications

FLOOD_WINDOW_MS: Final = 600_000
"""The standards' window: more than FLOOD_LIMIT messages in it is a flood."""
FLOOD_LIMIT: Final = 10
CHATTER_WINDOW_MS: Final = 60_000
CHATTER_RAISES: Final = 3
"""RAISED this many times within CHATTER_WINDOW_MS: a chattering alarm."""
STANDING_MS: Final = 86_400_000
BAD_ACTORS: Final = 10

_RAISED: Final = Status.RAISED
_ENDED: Final = frozenset({Status.RESOLVED, Status.RESET})
"""The statuses that end an episode (standing alerts)."""

AlarmKey = tuple[str, str, str]
"""(deviceId, sensorId, rule): one alarm."""


@immutable
class Message:
    """One message operators receive: a transition published alone (`key` its
    alarm) or a digest (`key` None), at `time_ms`."""

    time_ms: int
    key: AlarmKey | None
    transition: Transition | None = None


@immutable
class BadActor:
    device_id: str
    sensor_id: str
    rule: str
    messages: int

    def to_json(self) -> dict[str, Any]:
        return {
            "deviceId": self.device_id,
            "sensorId": self.sensor_id,
            "rule": self.rule,
            "messages": self.messages,
        }


@immutable
class AlarmLoad:
    """The figures of the standards over one history (see the module's doc)."""

    messages: int = 0
    digests: int = 0
    max_in_10_minutes: int = 0
    flood_share: float = 0.0
    chattering_keys: int = 0
    standing: int = 0
    bad_actors: tuple[BadActor, ...] = ()
    sent: tuple[Message, ...] = field(default=(), repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "maxIn10Minutes": self.max_in_10_minutes,
            "floodShare": self.flood_share,
            "chatteringKeys": self.chattering_keys,
            "standing": self.standing,
            "badActors": [b.to_json() for b in self.bad_actors],
        }


def _digests_due(
    groups: dict[Group, GroupState], notifications: Notifications, until_ms: int
) -> Iterator[int]:
    """Take, earliest first, every digest due by `until_ms` (the groups are left
    with it taken); the time each is sent."""
    while True:
        due = [
            (at, group)
            for group, state in groups.items()
            if (at := digest_due_ms(state, notifications)) is not None and at <= until_ms
        ]
        if not due:
            return
        at, group = min(due)
        _, groups[group] = take_digest(groups[group], group, notifications, at)
        yield at


def _key(transition: Transition) -> AlarmKey:
    return (transition.device_id, transition.sensor_id, transition.rule)


def messages_sent(
    transitions: Iterable[Transition], notifications: Notifications | None
) -> list[Message]:
    """What operators would have received, in time order: each transition taken
    at its own time (a history's arrival), admitted by the group budget, and
    each group's digest sent when it falls due (the sweep's best case); digests
    still pending after the last transition are sent when due."""
    ordered = sorted(transitions, key=lambda t: t.time_ms)
    if notifications is None:
        return [Message(t.time_ms, _key(t), t) for t in ordered if not t.muted]
    groups: dict[Group, GroupState] = defaultdict(GroupState)
    out: list[Message] = []

    def send_due(until_ms: int) -> None:
        out.extend(Message(at, None) for at in _digests_due(groups, notifications, until_ms))

    for transition in ordered:
        send_due(transition.time_ms)
        group = group_of(transition, notifications)
        admission = admit(groups[group], [transition], notifications, transition.time_ms)
        groups[group] = admission.state
        out.extend(Message(t.time_ms, _key(t), t) for t in admission.publish)
    send_due(2**62)
    return out


def max_in_window(times: Sequence[int], window_ms: int = FLOOD_WINDOW_MS) -> int:
    """The most messages in any window of `window_ms` (sliding, `times` sorted)."""
    most, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - window_ms:
            start += 1
        most = max(most, end - start + 1)
    return most


def flood_share(times: Sequence[int], first_ms: int, last_ms: int) -> float:
    """The share of 10-minute windows (aligned on the clock's multiples of 10
    minutes, from the first to the last reading's window) with more than 10
    messages: 0 to 1."""
    start = first_ms // FLOOD_WINDOW_MS
    windows = last_ms // FLOOD_WINDOW_MS - start + 1
    if windows <= 0:
        return 0.0
    counts = Counter(at // FLOOD_WINDOW_MS for at in times)
    flooded = sum(1 for w, n in counts.items() if n > FLOOD_LIMIT and 0 <= w - start < windows)
    return flooded / windows


def chattering_keys(transitions: Iterable[Transition]) -> int:
    """Alarms RAISED 3 or more times within 60 s, counted before any suppression."""
    raised: dict[AlarmKey, list[int]] = defaultdict(list)
    for t in transitions:
        if t.status is Status.RAISED:
            raised[_key(t)].append(t.time_ms)
    chattering = 0
    for times in raised.values():
        times.sort()
        window = CHATTER_RAISES - 1
        if any(
            times[i + window] - times[i] <= CHATTER_WINDOW_MS for i in range(len(times) - window)
        ):
            chattering += 1
    return chattering


def standing_alerts(transitions: Iterable[Transition], end_ms: int) -> int:
    """Alarm episodes still active at `end_ms` that were raised more than a day before."""
    opened: dict[str, int] = {}
    for t in sorted(transitions, key=lambda t: t.time_ms):
        if t.status is Status.RAISED:
            opened[t.alert_id] = t.time_ms
        elif t.status in _ENDED:
            opened.pop(t.alert_id, None)
    return sum(1 for since in opened.values() if end_ms - since > STANDING_MS)


def alarm_load(
    transitions: Sequence[Transition],
    notifications: Notifications | None,
    first_ms: int | None,
    last_ms: int | None,
) -> AlarmLoad:
    """The load of a history whose readings span `first_ms` to `last_ms`
    (None: no readings, and every figure is zero)."""
    if first_ms is None or last_ms is None:
        return AlarmLoad()
    sent = messages_sent(transitions, notifications)
    times = [m.time_ms for m in sent]
    per_key = Counter(m.key for m in sent if m.key is not None)
    actors = tuple(
        BadActor(device, sensor, rule, n)
        for (device, sensor, rule), n in sorted(per_key.items(), key=lambda kv: (-kv[1], kv[0]))[
            :BAD_ACTORS
        ]
    )
    return AlarmLoad(
        messages=len(sent),
        digests=sum(1 for m in sent if m.key is None),
        max_in_10_minutes=max_in_window(times),
        flood_share=flood_share(times, first_ms, last_ms),
        chattering_keys=chattering_keys(transitions),
        standing=standing_alerts(transitions, last_ms),
        bad_actors=actors,
        sent=tuple(sent),
    )


class LoadMeter:
    """`alarm_load` over transitions given one at a time, in time order, in
    bounded memory: the notification policy's groups, the messages of the
    last 10 minutes, the flooded windows' numbers (one per flooded window:
    at most 52,560 a year), per alarm its last RAISED times and a message
    count (the bad actors), and the episodes open. Gives the figures
    `alarm_load` gives for the same transitions."""

    def __init__(self, notifications: Notifications | None) -> None:
        self._notifications = notifications
        self._groups: dict[Group, GroupState] = defaultdict(GroupState)
        self._recent: deque[int] = deque()
        self._window = -1  # the aligned 10-minute window being counted
        self._in_window = 0
        self._flooded: list[int] = []
        self._raised: dict[AlarmKey, deque[int]] = {}
        self._chattering: set[AlarmKey] = set()
        self._opened: dict[str, int] = {}
        self._per_key: Counter[AlarmKey] = Counter()
        self._next_due: int | None = None
        """No digest is due before this (None: none is pending)."""
        self.messages = 0
        self.digests = 0
        self.most = 0

    def add(self, transition: Transition) -> None:
        """One transition, no earlier than the previous one."""
        key = (transition.device_id, transition.sensor_id, transition.rule)  # _key, inlined
        status = transition.status
        if status is _RAISED:
            self._opened[transition.alert_id] = transition.time_ms
            times = self._raised.setdefault(key, deque(maxlen=CHATTER_RAISES - 1))
            if len(times) == CHATTER_RAISES - 1 and (
                transition.time_ms - min(times) <= CHATTER_WINDOW_MS
            ):
                self._chattering.add(key)
            times.append(transition.time_ms)
        elif status in _ENDED:
            self._opened.pop(transition.alert_id, None)
        notifications = self._notifications
        if notifications is None:
            if not transition.muted:
                self._sent(transition.time_ms, key)
            return
        self._send_due(transition.time_ms)
        group = group_of(transition, notifications)
        admission = admit(self._groups[group], [transition], notifications, transition.time_ms)
        self._groups[group] = admission.state
        due = digest_due_ms(admission.state, notifications)
        if due is not None and (self._next_due is None or due < self._next_due):
            self._next_due = due
        for published in admission.publish:
            self._sent(published.time_ms, _key(published))

    def _send_due(self, until_ms: int) -> None:
        """Send the digests due by `until_ms`; the groups are looked through only
        when one is due (a fleet grouped by device has a group per device)."""
        notifications = self._notifications
        if notifications is None or self._next_due is None or self._next_due > until_ms:
            return
        for at in _digests_due(self._groups, notifications, until_ms):
            self._sent(at, None)
        dues = (digest_due_ms(state, notifications) for state in self._groups.values())
        self._next_due = min((due for due in dues if due is not None), default=None)

    def _sent(self, at: int, key: AlarmKey | None) -> None:
        self.messages += 1
        if key is None:
            self.digests += 1
        else:
            self._per_key[key] += 1
        recent = self._recent
        recent.append(at)
        while recent[0] <= at - FLOOD_WINDOW_MS:
            recent.popleft()
        self.most = max(self.most, len(recent))
        window = at // FLOOD_WINDOW_MS
        if window != self._window:
            self._close_window()
            self._window, self._in_window = window, 0
        self._in_window += 1

    def _close_window(self) -> None:
        if self._in_window > FLOOD_LIMIT:
            self._flooded.append(self._window)

    def finish(self, first_ms: int | None, last_ms: int | None) -> AlarmLoad:
        """The load of the history, whose readings spanned `first_ms` to `last_ms`
        (None: no readings); sends the digests still pending."""
        if first_ms is None or last_ms is None:
            return AlarmLoad()
        self._send_due(2**62)
        self._close_window()
        self._window, self._in_window = -1, 0
        start = first_ms // FLOOD_WINDOW_MS
        windows = last_ms // FLOOD_WINDOW_MS - start + 1
        flooded = sum(1 for w in set(self._flooded) if 0 <= w - start < windows)
        ranked = sorted(self._per_key.items(), key=lambda kv: (-kv[1], kv[0]))[:BAD_ACTORS]
        return AlarmLoad(
            messages=self.messages,
            digests=self.digests,
            max_in_10_minutes=self.most,
            flood_share=flooded / windows if windows > 0 else 0.0,
            chattering_keys=len(self._chattering),
            standing=sum(1 for since in self._opened.values() if last_ms - since > STANDING_MS),
            bad_actors=tuple(BadActor(d, s, r, n) for (d, s, r), n in ranked),
        )
