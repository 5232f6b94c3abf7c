"""The notification policy, pure: a budget per group, holds and digests.

Properties over random arrival sequences (digests taken whenever due): every
transition is published or held, never both; every held one is in exactly one
digest; counts add up; with the defaults a group never sends more than 10
messages in any 10 minutes of arrival time.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry.core.alerts import ACTION_STATUSES, Severity, Status, Transition
from telemetry.core.load import max_in_window
from telemetry.core.messages import iso_utc
from telemetry.core.notify import (
    BUDGETED,
    MAX_DIGEST_ALERTS,
    NO_VALUE,
    SUBJECT_LIMIT,
    Digest,
    DigestEntry,
    DigestMessage,
    Group,
    GroupRecord,
    GroupState,
    admit,
    digest_due_ms,
    group_from_id,
    group_id,
    group_of,
    hold,
    take_digest,
)
from telemetry.core.rules import DEFAULT_NOTIFICATIONS, GROUP_FIELDS, Notifications
from tests.strategies import (
    NOW_MS,
    arrival_batches,
    labels,
    notification_settings,
    transitions,
)

MINUTE = 60_000
BUDGETED_STATUSES = sorted(BUDGETED)


def _transition(n: int, status: Status = Status.RAISED, **fields: object) -> Transition:
    base = Transition(
        alert_id=f"a{n}",
        status=status,
        severity=Severity.CRITICAL if status is not Status.RESOLVED else Severity.OK,
        previous_severity=Severity.OK if status is not Status.RESOLVED else Severity.CRITICAL,
        device_id=f"pump-{n}",
        sensor_id="temp-1",
        rule="hot",
        value=90.0,
        threshold=80.0,
        time_ms=NOW_MS + n,
        since_ms=NOW_MS,
        direction="above",
        location="line-3",
    )
    return replace(base, **fields)  # type: ignore[arg-type]


# --- what is budgeted, and groups ---------------------------------------------------


def test_every_status_but_operators_actions_is_budgeted() -> None:
    # Given the statuses
    # Then the budget covers all of them but the operators' actions
    assert set(BUDGETED) == set(Status) - ACTION_STATUSES
    assert {Status.RAISED, Status.REMINDER, Status.FLAPPING, Status.LATCHED} <= BUDGETED


@given(transitions(), st.lists(st.sampled_from(GROUP_FIELDS), unique=True))
def test_a_group_is_the_transitions_values_of_its_fields(
    transition: Transition, fields: list[str]
) -> None:
    # Given a policy grouping by some fields
    notifications = Notifications(group_by=tuple(fields))
    # When the transition's group is taken
    group = group_of(transition, notifications)
    # Then it names each field in order, with the transition's value ("" when it has none)
    expected = {
        "rule": transition.rule,
        "location": transition.location or NO_VALUE,
        "type": transition.type or NO_VALUE,
        "deviceId": transition.device_id,
        "severity": transition.routing_severity.name,
    }
    assert group == tuple((f, expected[f]) for f in fields)
    # And its text id is stable and reads back as the same group
    assert group_from_id(group_id(group)) == group
    assert group_id(group) == group_id(group_of(transition, notifications))


@given(
    st.lists(st.tuples(st.sampled_from(GROUP_FIELDS), labels()), max_size=3),
    st.lists(st.tuples(st.sampled_from(GROUP_FIELDS), labels()), max_size=3),
)
def test_distinct_groups_have_distinct_ids(
    a: list[tuple[str, str]], b: list[tuple[str, str]]
) -> None:
    # Given two groups
    # Then their ids are equal exactly when the groups are
    assert (group_id(tuple(a)) == group_id(tuple(b))) == (tuple(a) == tuple(b))


def test_no_group_fields_make_one_group() -> None:
    # Given the default policy (groupBy [])
    # Then every transition is in the same group
    assert group_of(_transition(1), DEFAULT_NOTIFICATIONS) == ()
    assert group_of(_transition(2, location=None), DEFAULT_NOTIFICATIONS) == ()


# --- admission -------------------------------------------------------------------------


@given(
    st.lists(transitions(), max_size=30),
    notification_settings(),
    st.integers(0, 5),
)
def test_every_transition_is_published_or_held_never_both(
    batch: list[Transition], notifications: Notifications, already: int
) -> None:
    # Given a group that already counted some messages in its window
    state = GroupState(sent=tuple((NOW_MS - i, f"earlier-{i}") for i in range(already)))
    # When a batch arrives
    admission = admit(state, batch, notifications, NOW_MS)
    # Then publish and hold split the unmuted transitions, in their order
    unmuted = [t for t in batch if not t.muted]
    assert sorted(map(id, admission.publish + admission.hold)) == sorted(map(id, unmuted))
    assert list(admission.publish) == [t for t in unmuted if t in admission.publish]
    assert list(admission.hold) == [t for t in unmuted if t in admission.hold]
    # And operators' actions are never held
    assert all(t.status in BUDGETED for t in admission.hold)
    # And nothing is held while the window has room
    counted = [t for t in admission.publish if t.status in BUDGETED]
    assert not admission.hold or len(admission.state.sent) == notifications.max_per_window
    assert len(admission.state.sent) <= notifications.max_per_window
    assert len({k for _, k in admission.state.sent} & {t.key for t in counted}) == len(
        {t.key for t in counted}
    )
    # And the pending digest counts exactly the held ones
    held = admission.state.pending.held if admission.state.pending else 0
    assert held == len(admission.hold)


@given(st.lists(transitions(statuses=BUDGETED_STATUSES), min_size=1, max_size=20))
def test_a_retry_publishes_what_was_counted_without_counting_it_again(
    batch: list[Transition],
) -> None:
    # Given a batch admitted once
    notifications = Notifications(max_per_window=5)
    first = admit(GroupState(), batch, notifications, NOW_MS)
    # When its published transitions come again (a retry after publishing failed)
    again = admit(first.state, list(first.publish), notifications, NOW_MS + 5_000)
    # Then they are all published again, and the window's count does not move
    assert again.publish == first.publish
    assert not again.hold
    assert again.state.sent == first.state.sent


def test_the_window_slides_a_slot_frees_exactly_one_window_later() -> None:
    # Given a group whose 5 slots were taken at one-minute intervals
    notifications = Notifications(window_ms=10 * MINUTE, max_per_window=5)
    state = GroupState()
    for n in range(5):
        state = admit(state, [_transition(n)], notifications, NOW_MS + n * MINUTE).state
    # When a 6th arrives one ms before the first slot leaves the window
    boundary = NOW_MS + 10 * MINUTE
    early = admit(state, [_transition(6)], notifications, boundary - 1)
    # Then it is held
    assert early.hold == (_transition(6),)
    # When it arrives exactly one window after the first: (now - window, now] excludes it
    on_time = admit(state, [_transition(6)], notifications, boundary)
    # Then it is published, and one slot only was freed
    assert on_time.publish == (_transition(6),)
    assert admit(on_time.state, [_transition(7)], notifications, boundary).hold == (_transition(7),)


def test_operators_actions_and_muted_transitions_never_count() -> None:
    # Given a group with one slot
    notifications = Notifications(max_per_window=1)
    ack = _transition(1, Status.ACKNOWLEDGED)
    muted = _transition(2, muted=True)
    raised = _transition(3)
    # When an acknowledgement, a snoozed raise and a raise arrive
    admission = admit(GroupState(), [ack, muted, raised], notifications, NOW_MS)
    # Then the action and the raise are published, the muted one is neither
    assert admission.publish == (ack, raised)
    assert admission.hold == ()
    assert [k for _, k in admission.state.sent] == [raised.key]


# --- digests -----------------------------------------------------------------------


def test_a_raise_and_its_resolution_held_together_are_both_counted() -> None:
    # Given a group whose budget is spent
    notifications = Notifications(max_per_window=1)
    state = admit(GroupState(), [_transition(0)], notifications, NOW_MS).state
    raised = _transition(1)
    resolved = _transition(1, Status.RESOLVED, time_ms=NOW_MS + 50)
    # When a raise and its resolution arrive
    admission = admit(state, [raised, resolved], notifications, NOW_MS + 1_000)
    # Then both are held, and the digest counts both
    assert admission.hold == (raised, resolved)
    due = digest_due_ms(admission.state, notifications)
    assert due == NOW_MS + 1_000 + notifications.digest_every_ms
    message, after = take_digest(admission.state, (), notifications, due)
    body = message.to_json()
    assert body["counts"] == {"RAISED": 1, "RESOLVED": 1}
    assert body["severities"] == {"CRITICAL": 2, "WARNING": 0}
    assert [a["status"] for a in body["alerts"]] == ["RAISED", "RESOLVED"]
    assert after.pending is None
    assert after.last_digest_ms == due


def test_a_digest_body_is_exactly_the_documented_one() -> None:
    # Given three held transitions in location line-3
    notifications = Notifications(group_by=("location",), max_per_window=1)
    group: Group = (("location", "line-3"),)
    spent = admit(GroupState(), [_transition(0)], notifications, NOW_MS).state
    held = [_transition(1), _transition(2, severity=Severity.WARNING), _transition(3)]
    state = admit(spent, held, notifications, NOW_MS + 1_000).state
    # When the digest is taken when due
    message, _ = take_digest(state, group, notifications, NOW_MS + 1_000 + 2 * MINUTE)
    # Then its body, subject and attributes are as documented
    assert message.to_json() == {
        "status": "DIGEST",
        "group": {"location": "line-3"},
        "from": iso_utc(NOW_MS + 1_000),
        "to": iso_utc(NOW_MS + 1_000),
        "counts": {"RAISED": 3},
        "severities": {"CRITICAL": 2, "WARNING": 1},
        "alerts": [
            {
                "deviceId": t.device_id,
                "sensorId": t.sensor_id,
                "rule": t.rule,
                "alertId": t.alert_id,
                "status": t.status.value,
                "severity": t.severity.name,
                "time": iso_utc(t.time_ms),
            }
            for t in held
        ],
        "omitted": 0,
    }
    assert message.subject() == "[CRITICAL] 3 alert changes in location line-3 (10:00-10:00)"
    assert message.attributes() == {"status": "DIGEST", "severity": "CRITICAL"}
    # And it reads back from its body as the same message
    assert DigestMessage.from_json(json.loads(json.dumps(message.to_json()))) == message


def test_a_digest_carries_the_rules_version_that_decided_what_it_holds() -> None:
    # Given held transitions decided by one rules version, then by a newer one
    notifications = Notifications(max_per_window=1)
    spent = admit(GroupState(), [_transition(0)], notifications, NOW_MS).state
    first = [_transition(n, rules_version="sha256:old") for n in (1, 2)]
    state = admit(spent, first, notifications, NOW_MS + 1_000).state

    # When a digest is taken of the first alone, and one after the newer rules decided more
    one, _ = take_digest(state, (), notifications, NOW_MS + 1_000 + 2 * MINUTE)
    later = admit(state, [_transition(3, rules_version="v7")], notifications, NOW_MS + 2_000)
    both, _ = take_digest(later.state, (), notifications, NOW_MS + 1_000 + 2 * MINUTE)

    # Then each body says which rules decided its changes: the one, or the latest and all
    assert one.to_json()["rulesVersion"] == "sha256:old"
    assert "rulesVersions" not in one.to_json()
    assert both.to_json()["rulesVersion"] == "v7"
    assert both.to_json()["rulesVersions"] == ["sha256:old", "v7"]
    # and both survive the group's stored state and the outbox's body
    assert GroupState.from_json(json.loads(json.dumps(later.state.to_json()))) == later.state
    for message in (one, both):
        assert DigestMessage.from_json(json.loads(json.dumps(message.to_json()))) == message


def _message(group: Group, held: int, *, span_ms: int = 2 * MINUTE) -> DigestMessage:
    counts = (("RAISED", held),)
    return DigestMessage(group, Digest(NOW_MS, NOW_MS + span_ms, counts, (("CRITICAL", held),)))


@pytest.mark.parametrize(
    ("group", "held", "subject"),
    [
        ((), 1_284, "[CRITICAL] 1,284 alert changes (10:00-10:02)"),
        (
            (("location", "line-3"),),
            1,
            "[CRITICAL] 1 alert change in location line-3 (10:00-10:02)",
        ),
        (
            (("location", "line-3"), ("rule", "hot")),
            2,
            "[CRITICAL] 2 alert changes in location line-3, rule hot (10:00-10:02)",
        ),
        ((("type", NO_VALUE),), 2, "[CRITICAL] 2 alert changes in type (none) (10:00-10:02)"),
    ],
)
def test_a_digest_subject_says_how_many_changes_where_and_when(
    group: Group, held: int, subject: str
) -> None:
    # Given a digest of `held` changes in `group`
    # Then its subject reads as people say it
    assert _message(group, held).subject() == subject


@given(st.lists(st.tuples(st.sampled_from(GROUP_FIELDS), labels()), max_size=5))
def test_a_digest_subject_fits_sns_whatever_the_group(pairs: list[tuple[str, str]]) -> None:
    # Given a group with values of any length and alphabet
    message = _message(tuple(pairs), 10**9)
    # When its subject is made
    subject = message.subject()
    # Then SNS takes it: printable ASCII, at most 100 characters, with the time span
    assert len(subject) <= SUBJECT_LIMIT
    assert all(32 <= ord(ch) < 127 for ch in subject)
    assert subject.startswith("[CRITICAL] 1,000,000,000 alert changes")
    assert subject.endswith("(10:00-10:02)")


def test_a_digest_carries_the_group_fields_single_messages_carry_as_attributes() -> None:
    # Given a group by every field
    group: Group = (
        ("rule", "hot"),
        ("location", "line-3"),
        ("type", "temperature"),
        ("deviceId", "pump-1"),
        ("severity", "WARNING"),
    )
    # Then rule, deviceId and type (as sensorType) are attributes; location is not
    attrs = _message(group, 3).attributes()
    assert attrs == {
        "status": "DIGEST",
        "severity": "CRITICAL",
        "rule": "hot",
        "deviceId": "pump-1",
        "sensorType": "temperature",
    }
    # And a group without a type carries no sensorType (as single messages)
    assert "sensorType" not in _message((("type", NO_VALUE),), 3).attributes()


def test_a_digest_lists_at_most_100_keeping_the_most_severe() -> None:
    # Given 150 WARNING changes held, then 30 CRITICAL ones
    warnings = [_transition(n, severity=Severity.WARNING) for n in range(150)]
    criticals = [_transition(1000 + n) for n in range(30)]
    # When they are held
    state = hold(GroupState(), [*warnings, *criticals], NOW_MS)
    # Then the digest lists 100: every CRITICAL and the earliest WARNINGs, in the order held
    assert state.pending is not None
    only_warnings = hold(GroupState(), warnings, NOW_MS).pending
    assert only_warnings is not None
    assert [a.alert_id for a in only_warnings.alerts] == [t.alert_id for t in warnings[:100]]
    body = DigestMessage((), state.pending).to_json()
    listed = [a["alertId"] for a in body["alerts"]]
    assert len(listed) == MAX_DIGEST_ALERTS
    assert listed == [t.alert_id for t in warnings[:70]] + [t.alert_id for t in criticals]
    assert body["omitted"] == 80
    assert sum(body["counts"].values()) == 180
    assert body["severities"] == {"CRITICAL": 30, "WARNING": 150}


def test_a_digest_fits_one_sns_message() -> None:
    # Given a full digest of the longest names a message may carry
    long = "x" * 128
    held = [
        _transition(n, device_id=long, sensor_id=long, rule="r" * 64, alert_id="a" * 32 + str(n))
        for n in range(MAX_DIGEST_ALERTS + 5)
    ]
    group: Group = tuple((f, "v" * 256) for f in GROUP_FIELDS)
    state = hold(GroupState(), held, NOW_MS)
    assert state.pending is not None
    # Then its body is well within SNS's 256 KB
    body = json.dumps(DigestMessage(group, state.pending).to_json())
    assert len(body.encode()) < 256 * 1024


def test_a_digest_is_not_taken_before_it_is_due() -> None:
    # Given a pending digest and a previous digest one minute ago
    notifications = Notifications(max_per_window=1)
    state = hold(GroupState(last_digest_ms=NOW_MS - MINUTE), [_transition(1)], NOW_MS - 2 * MINUTE)
    # Then it is due two minutes after the previous digest, the later of the two
    assert digest_due_ms(state, notifications) == NOW_MS + MINUTE
    with pytest.raises(ValueError, match="no digest due"):
        take_digest(state, (), notifications, NOW_MS)
    with pytest.raises(ValueError, match="no digest due"):
        take_digest(GroupState(), (), notifications, NOW_MS)
    assert digest_due_ms(GroupState(), notifications) is None


@given(st.lists(transitions(), max_size=30), st.integers(0, 3), st.booleans())
def test_group_state_survives_storage(batch: list[Transition], last: int, claimed: bool) -> None:
    # Given a group state with counted, held and digested transitions
    notifications = Notifications(max_per_window=3)
    state = admit(GroupState(last_digest_ms=NOW_MS - last), batch, notifications, NOW_MS).state
    # When it is written as JSON and read back
    again = GroupState.from_json(json.loads(json.dumps(state.to_json())))
    # Then it is the same
    assert again == state
    if state.pending is not None:
        entry = DigestEntry(DigestMessage((("rule", "hot"),), state.pending), NOW_MS)
        if claimed:
            entry = entry.claimed("inv", NOW_MS + 1)
        raw = json.loads(json.dumps(entry.to_json()))
        assert DigestEntry.from_json(raw) == entry
        assert DigestEntry.from_json(raw).message.to_json() == entry.message.to_json()


def test_a_group_is_due_for_its_digest_or_its_undelivered_one() -> None:
    # Given a group with a pending digest and a taken one claimed until later
    notifications = Notifications()
    state = hold(GroupState(), [_transition(1)], NOW_MS)
    taken = DigestEntry(_message((), 1), NOW_MS).claimed("inv", NOW_MS + 30_000)
    # Then it is due when the lease ends, if sooner than the digest
    assert GroupRecord((), 1, state, (taken,)).due_ms(notifications) == NOW_MS + 30_000
    assert GroupRecord((), 1, state).due_ms(notifications) == NOW_MS + 2 * MINUTE
    assert GroupRecord(()).due_ms(notifications) is None


# --- the whole policy over time ------------------------------------------------------


def _simulate(
    batches: list[tuple[int, list[Transition]]], notifications: Notifications
) -> tuple[dict[Group, list[tuple[int, str]]], list[Transition], list[tuple[int, DigestMessage]]]:
    """Every invocation admits its batch per group; digests are taken the moment
    they are due (before any later arrival). Returns, per group, each message
    sent (time, "single" or "digest"); the held transitions; the digests, with
    when each was taken."""
    states: dict[Group, GroupState] = defaultdict(GroupState)
    sent: dict[Group, list[tuple[int, str]]] = defaultdict(list)
    held: list[Transition] = []
    digests: list[tuple[int, DigestMessage]] = []

    def take_due(until_ms: int) -> None:
        while True:
            due = [
                (d, g)
                for g, s in states.items()
                if (d := digest_due_ms(s, notifications)) is not None
            ]
            if not due or min(due)[0] > until_ms:
                return
            at, group = min(due)
            message, states[group] = take_digest(states[group], group, notifications, at)
            digests.append((at, message))
            sent[group].append((at, "digest"))

    for at, batch in batches:
        take_due(at)
        by_group: dict[Group, list[Transition]] = defaultdict(list)
        for transition in batch:
            by_group[group_of(transition, notifications)].append(transition)
        for group, members in by_group.items():
            admission = admit(states[group], members, notifications, at)
            states[group] = admission.state
            held.extend(admission.hold)
            sent[group].extend((at, "single") for t in admission.publish if t.status in BUDGETED)
    take_due(2**62)
    return sent, held, digests


def _most_in_window(times: list[int], window_ms: int) -> int:
    return max_in_window(sorted(times), window_ms)


@given(arrival_batches())
def test_with_the_defaults_a_group_never_sends_more_than_10_in_10_minutes(
    batches: list[tuple[int, list[Transition]]],
) -> None:
    # Given any arrivals, digests taken whenever due, and the default policy
    sent, _, _ = _simulate(batches, DEFAULT_NOTIFICATIONS)
    for messages in sent.values():
        # Then no 10 minutes of arrival time see more than 10 messages of a group
        assert _most_in_window([at for at, _ in messages], 10 * MINUTE) <= 10
        # And no more than 5 single ones
        singles = [at for at, kind in messages if kind == "single"]
        assert _most_in_window(singles, 10 * MINUTE) <= 5


@given(arrival_batches(), notification_settings())
def test_every_held_transition_is_in_exactly_one_digest(
    batches: list[tuple[int, list[Transition]]], notifications: Notifications
) -> None:
    # Given any arrivals, any policy, digests taken whenever due
    sent, held, digests = _simulate(batches, notifications)
    # Then every digest's counts add up
    for _, message in digests:
        body = message.to_json()
        total = sum(body["counts"].values())
        assert total == sum(body["severities"].values()) == len(body["alerts"]) + body["omitted"]
        assert total > 0
        assert message.attributes()["severity"] == max(
            (a for a, n in body["severities"].items() if n), key=lambda name: Severity[name]
        )
    # And the held transitions are the digests' ones, each once
    assert sum(m.digest.held for _, m in digests) == len(held)
    listed = Counter((a.alert_id, a.status, a.time_ms) for _, m in digests for a in m.digest.alerts)
    held_keys = Counter((t.alert_id, t.status.value, t.time_ms) for t in held)
    assert not listed - held_keys
    if all(m.digest.omitted == 0 for _, m in digests):
        assert listed == held_keys
    statuses = Counter(s for _, m in digests for s, n in m.digest.counts for _ in range(n))
    assert statuses == Counter(t.status.value for t in held)
    # And digests of a group are at least digestEvery apart, within digestEvery of their first
    for messages in sent.values():
        times = [at for at, kind in messages if kind == "digest"]
        assert all(b - a >= notifications.digest_every_ms for a, b in itertools.pairwise(times))
    for taken, message in digests:
        assert message.digest.from_ms <= message.digest.to_ms <= taken
        assert taken - message.digest.from_ms <= notifications.digest_every_ms
