"""The alarm load of a history, as ISA-18.2 / EEMUA 191 measure it."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from telemetry.core.alerts import Severity, Status, Transition
from telemetry.core.load import (
    FLOOD_WINDOW_MS,
    alarm_load,
    chattering_keys,
    flood_share,
    max_in_window,
    messages_sent,
    standing_alerts,
)
from telemetry.core.notify import BUDGETED
from telemetry.core.rules import DEFAULT_NOTIFICATIONS, Notifications
from tests.strategies import NOW_MS, transitions

MINUTE = 60_000
START = (NOW_MS // FLOOD_WINDOW_MS) * FLOOD_WINDOW_MS


def change(
    n: int, at_ms: int, status: Status = Status.RAISED, device: str = "pump-1", **fields: object
) -> Transition:
    return Transition(
        alert_id=f"{device}-{n}",
        status=status,
        severity=Severity.OK if status is Status.RESOLVED else Severity.WARNING,
        previous_severity=Severity.WARNING if status is Status.RESOLVED else Severity.OK,
        device_id=device,
        sensor_id="temp-1",
        rule="hot",
        value=80.0,
        threshold=75.0,
        time_ms=at_ms,
        since_ms=at_ms,
        direction="above",
        **fields,  # type: ignore[arg-type]
    )


def test_a_history_with_readings_and_no_alerts_is_all_zeros() -> None:
    # Given readings over an hour and not one transition
    # When its load is measured
    load = alarm_load([], DEFAULT_NOTIFICATIONS, START, START + 60 * MINUTE)

    # Then every figure is zero, not an error
    assert load.to_json() == {
        "messages": 0,
        "maxIn10Minutes": 0,
        "floodShare": 0.0,
        "chatteringKeys": 0,
        "standing": 0,
        "badActors": [],
    }
    assert alarm_load([], DEFAULT_NOTIFICATIONS, None, None).messages == 0


def test_a_fleet_incident_reaches_operators_as_five_messages_and_digests() -> None:
    # Given 300 devices raised within one minute, under the default budget
    burst = [change(n, START + n * 200, device=f"pump-{n}") for n in range(300)]

    # When the messages operators would get are counted
    sent = messages_sent(burst, DEFAULT_NOTIFICATIONS)
    load = alarm_load(burst, DEFAULT_NOTIFICATIONS, START, START + MINUTE)

    # Then 5 went one by one and the other 295 in one digest, 2 minutes after the first held
    singles = [m for m in sent if m.key is not None]
    digests = [m for m in sent if m.key is None]
    assert len(singles) == 5
    assert [m.time_ms for m in digests] == [START + 5 * 200 + 2 * MINUTE]
    assert (load.messages, load.max_in_10_minutes, load.flood_share) == (6, 6, 0.0)


def test_without_a_policy_every_transition_is_a_message_and_floods_are_seen() -> None:
    # Given 30 raises and resolutions in the first 10 minutes of an hour, no budget
    burst = [change(n, START + n * 10_000, device=f"d{n}") for n in range(30)]

    # When the load is measured
    load = alarm_load(burst, None, START, START + 60 * MINUTE - 1)

    # Then one of the six windows is a flood
    assert (load.messages, load.max_in_10_minutes) == (30, 30)
    assert load.flood_share == 1 / 6
    assert load.bad_actors[0].messages == 1


def test_chattering_counts_three_raises_within_sixty_seconds_before_suppression() -> None:
    # Given one key raised three times in 60 s (its changes muted by flapping), one in 61 s
    quick = [change(n, START + n * 30_000, muted=True) for n in range(3)]
    slow = [change(n, START + n * 30_500, device="pump-2") for n in range(3)]

    # Then only the first chatters, suppressed or not
    assert chattering_keys([*quick, *slow]) == 1


def test_standing_alerts_are_active_more_than_a_day_at_the_end() -> None:
    # Given an alert raised 25 h before the end, one 23 h before, one resolved
    end = START + 48 * 3_600_000
    old = change(1, end - 25 * 3_600_000)
    young = change(2, end - 23 * 3_600_000)
    gone = change(3, START)
    back = replace(change(3, START + MINUTE, Status.RESOLVED), alert_id=gone.alert_id)

    # Then one is standing
    assert standing_alerts([old, young, gone, back], end) == 1


def test_bad_actors_are_the_ten_keys_that_sent_the_most() -> None:
    # Given twelve keys, key n sending n + 1 messages, far apart (no budget holds)
    sent = [
        change(n * 100 + k, START + (n * 100 + k) * 3_600_000, device=f"d{n:02}")
        for n in range(12)
        for k in range(n + 1)
    ]

    # When the load is measured
    load = alarm_load(sent, DEFAULT_NOTIFICATIONS, START, sent[-1].time_ms)

    # Then the ten worst are listed, most first
    assert [b.device_id for b in load.bad_actors] == [f"d{n:02}" for n in range(11, 1, -1)]
    assert load.bad_actors[0].to_json() == {
        "deviceId": "d11",
        "sensorId": "temp-1",
        "rule": "hot",
        "messages": 12,
    }


def test_flood_share_counts_windows_aligned_on_the_clock() -> None:
    # Given 11 messages astride a 10-minute boundary (5 before, 6 after)
    times = [START + 10 * MINUTE - 5_000 + n * 1_000 for n in range(11)]

    # Then no aligned window is a flood, though a sliding one holds all 11
    assert flood_share(times, START, START + 20 * MINUTE - 1) == 0.0
    assert max_in_window(times) == 11


@given(st.lists(transitions(statuses=sorted(BUDGETED)), max_size=60))
def test_with_the_defaults_no_ten_minutes_hold_more_than_ten_messages(
    history: list[Transition],
) -> None:
    # Given any history of distinct budgeted transitions (operators' actions are
    # never held: someone asked for them)
    distinct = [replace(t, alert_id=f"a{n}") for n, t in enumerate(history)]

    # When the default policy applies
    sent = messages_sent(distinct, DEFAULT_NOTIFICATIONS)

    # Then no sliding 10 minutes holds more than 10 messages
    assert max_in_window([m.time_ms for m in sent]) <= 10


@given(st.lists(transitions(), max_size=60))
def test_every_budgeted_transition_is_sent_alone_or_counted_in_a_digest(
    history: list[Transition],
) -> None:
    # Given any history, a budget of 2 a minute with digests every minute
    policy = Notifications((), MINUTE, 2, MINUTE)

    # When the messages are counted
    sent = messages_sent(history, policy)

    # Then nothing muted is sent, and a digest exists whenever anything was held
    singles = [m for m in sent if m.key is not None]
    assert all(m.transition is not None and not m.transition.muted for m in singles)
    published = sum(1 for t in history if not t.muted)
    assert (len(singles) < published) == any(m.key is None for m in sent)
