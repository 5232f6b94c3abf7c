"""Operators act on alerts: acknowledge, snooze, disable, enable, reset, latch, reminders.

First the lifecycle on the pure core (each semantic of the issue, one story
each), then the actions function end to end under moto: what operators
receive, the races and retries the conditional commit must win, and the
path devices cannot reach.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from telemetry import actions, handler
from telemetry.core.alerts import (
    AlertState,
    Evaluation,
    Severity,
    StateKey,
    Transition,
    evaluate,
)
from telemetry.core.messages import Reading, iso_utc
from telemetry.core.operators import (
    InvalidActionError,
    Kind,
    apply_action,
    finalize,
    parse_action,
    timers,
)
from telemetry.core.rules import RuleSet, parse_rule_file
from telemetry.errors import DependencyError
from tests.localaws import Context, LocalAws, before, fail, local_stack, lose_response, message

NOW = 1_764_237_600_000  # 2025-11-27T10:00:00Z
MINUTE = 60_000
HOUR = 60 * MINUTE
RULES_TEXT = """
rules:
  - name: temperature-high
    match: {type: temperature}
    above: {warning: 75, critical: 90}
    hysteresis: 2
    repeat: 1h
  - name: pressure-trip
    match: {type: pressure}
    above: {critical: 10}
    latch: true
"""
RULES = RuleSet(parse_rule_file(RULES_TEXT, "ops.yaml"))
HOT = ("temp-1", "temperature-high")
TRIP = ("press-1", "pressure-trip")
MARIA = "maria@plant.example"


def reading(value: float, at: int, sensor: str = "temp-1") -> Reading:
    kind = "temperature" if sensor.startswith("temp") else "pressure"
    return Reading("pump-17", sensor, value, at, kind)


def feed(
    state: dict[StateKey, AlertState], value: float, at: int, sensor: str = "temp-1"
) -> tuple[dict[StateKey, AlertState], list[Transition]]:
    result = finalize(evaluate([reading(value, at, sensor)], state, RULES, at), RULES, at)
    return result.state, result.transitions


def act(
    state: dict[StateKey, AlertState], kind: str, at: int, key: StateKey = HOT, **extra: Any
) -> tuple[dict[StateKey, AlertState], list[Transition], str | None]:
    raw = {"action": kind, "deviceId": "pump-17", "sensorId": key[0], "rule": key[1], "by": MARIA}
    action = parse_action(raw | extra, at)
    outcome = apply_action("pump-17", state, action, RULES, at)
    done = finalize(outcome.evaluation, RULES, at)
    return done.state, done.transitions, outcome.refusal


def tick(
    state: dict[StateKey, AlertState], at: int
) -> tuple[dict[StateKey, AlertState], list[Transition]]:
    done = finalize(timers("pump-17", state, RULES, at), RULES, at)
    return done.state, done.transitions


def kinds(transitions: list[Transition]) -> list[tuple[str, str]]:
    return [(t.status.value, t.severity.name) for t in transitions]


# ---------------------------------------------------------------- actions as data


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"action": "silence"}, "action"),
        ({"by": None}, "by"),
        ({"by": ""}, "by"),
        ({"by": "x" * 257}, "by"),
        ({"note": "n" * 1025}, "note"),
        ({"note": "a bell\a"}, "note"),
        ({"by": "two\nlines"}, "by"),
        ({"alertID": "0" * 32}, "alertID"),
        ({"deviceId": "pump 17"}, "deviceId"),
        ({"sensorId": None}, "sensorId"),
        ({"rule": "no spaces allowed"}, "rule"),
        ({"alertId": "not-an-id"}, "alertId"),
        ({"until": "2h"}, "until"),
    ],
)
def test_a_malformed_action_is_an_error_naming_its_field(
    change: dict[str, Any], field: str
) -> None:
    # Given an acknowledgement with one field wrong
    raw = {
        "action": "acknowledge",
        "deviceId": "pump-17",
        "sensorId": "temp-1",
        "rule": "temperature-high",
        "by": MARIA,
    } | change

    # When it is parsed, Then the error names that field
    with pytest.raises(InvalidActionError) as raised:
        parse_action(raw, NOW)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("until", "expected"),
    [
        ("2h", NOW + 2 * HOUR),
        ("90m", NOW + 90 * MINUTE),
        (NOW + HOUR, NOW + HOUR),
        (str(NOW + HOUR), NOW + HOUR),
        (iso_utc(NOW + 3 * HOUR), NOW + 3 * HOUR),
    ],
)
def test_a_snooze_ends_at_epoch_ms_an_iso_time_or_a_duration_from_now(
    until: Any, expected: int
) -> None:
    raw = {"action": "snooze", "deviceId": "d", "sensorId": "s", "rule": "r", "by": MARIA}
    assert parse_action(raw | {"until": until}, NOW).until_ms == expected


def test_an_alert_id_may_be_any_case() -> None:
    # Given an acknowledgement with an upper-case alertId
    raw = action("acknowledge", alertId="DBBD7DC4A8E510E50479DBF9BCA3CE58")

    # When it is parsed, Then it is taken as alertIds are written
    assert parse_action(raw, NOW).alert_id == "dbbd7dc4a8e510e50479dbf9bca3ce58"


NOT_ONE_LINE = {
    "a line feed": "\n",
    "a carriage return and a line feed": "\r\n",
    "a carriage return": "\r",
    "a vertical tab": "\x0b",
    "a form feed": "\x0c",
    "a record separator": "\x1e",
    "NEL (U+0085)": "\x85",
    "LINE SEPARATOR (U+2028)": "\u2028",
    "PARAGRAPH SEPARATOR (U+2029)": "\u2029",
}
CONTROL = {
    "NUL": "\x00",
    "a tab": "\t",
    "an escape": "\x1b",
    "DEL": "\x7f",
    "the first C1 control (U+0080)": "\x80",
    "a C1 control sequence introducer (U+009B)": "\x9b",
    "the last C1 control (U+009F)": "\x9f",
}


@pytest.mark.parametrize("field", ["by", "note"])
@pytest.mark.parametrize(
    ("what", "char"),
    [*NOT_ONE_LINE.items(), *CONTROL.items()],
    ids=[*NOT_ONE_LINE, *CONTROL],
)
def test_by_and_note_are_one_line_of_text_without_control_characters(
    field: str, what: str, char: str
) -> None:
    # Given an acknowledgement whose `by` or `note` holds a line break or a control
    # character (which would reach the SNS body, the shadow, the history, the logs)
    raw = action("acknowledge") | {field: f"valve{char}replaced"}

    # When it is parsed, Then it is refused, naming the field and the character
    with pytest.raises(InvalidActionError) as raised:
        parse_action(raw, NOW)
    assert raised.value.field == field
    kind = "a line break" if what in NOT_ONE_LINE else "a control character"
    assert str(raised.value).startswith(
        f"{field}: must be one line of text: character 6 is {kind} (U+{ord(char[0]):04X}"
    )


def test_by_and_note_take_any_other_text() -> None:
    # Given an acknowledgement in other scripts, with accents, dashes, spaces and emoji
    raw = action("acknowledge", by="Zoë Müller (夜班)", note="valve replaced — watching it 🔧")

    # When it is parsed, Then both are taken as written
    parsed = parse_action(raw, NOW)
    assert (parsed.by, parsed.note) == ("Zoë Müller (夜班)", "valve replaced — watching it 🔧")


def test_a_relative_snooze_counts_from_when_iot_received_it_so_a_retry_decides_the_same() -> None:
    # Given a snooze for 2h that the operators' topic rule stamped at 10:00
    raw = action("snooze", until="2h", via="ops/alerts/actions", receivedAt=NOW)

    # When it is handled at 10:00, then retried at 10:01
    first, retried = parse_action(raw, NOW + 1_000), parse_action(raw, NOW + MINUTE)

    # Then both snooze until 12:00
    assert first.until_ms == retried.until_ms == NOW + 2 * HOUR


@pytest.mark.parametrize("until", [NOW - 1, "0s", None, "tomorrow", NOW + 91 * 86_400_000])
def test_a_snooze_needs_an_end_in_the_future_within_90_days(until: Any) -> None:
    raw = {"action": "snooze", "deviceId": "d", "sensorId": "s", "rule": "r", "by": MARIA}
    with pytest.raises(InvalidActionError, match=r"^until: "):
        parse_action(raw | {"until": until}, NOW)


# ---------------------------------------------------------------- acknowledge, reminders


def test_acknowledging_an_active_alert_stops_its_reminders() -> None:
    # Given a warning raised at 10:00 under a rule that reminds every hour
    state, raised = feed({}, 80, NOW)

    # When nobody acts for an hour, then Maria acknowledges it, then hours pass
    state, first = tick(state, NOW + HOUR)
    state, acked, refusal = act(state, "acknowledge", NOW + HOUR + MINUTE, note="on it")
    state, later = tick(state, NOW + 3 * HOUR)

    # Then a REMINDER came at 11:00 with the same alertId, then one ACKNOWLEDGED, then nothing
    assert kinds(first) == [("REMINDER", "WARNING")]
    assert first[0].alert_id == raised[0].alert_id
    assert refusal is None
    assert kinds(acked) == [("ACKNOWLEDGED", "WARNING")]
    assert (acked[0].by, acked[0].note, acked[0].alert_id) == (MARIA, "on it", raised[0].alert_id)
    assert later == []
    assert state[HOT].attention is not None
    assert state[HOT].attention.ack_by == MARIA


def test_an_escalation_to_critical_clears_the_acknowledgement_a_de_escalation_keeps_it() -> None:
    # Given an acknowledged warning
    state, _ = feed({}, 80, NOW)
    state, _, _ = act(state, "acknowledge", NOW + MINUTE)

    # When it de-escalates from critical, and when it escalates
    escalated, _ = feed(state, 95, NOW + 2 * MINUTE)
    settled, _ = feed(escalated, 85, NOW + 3 * MINUTE)
    _, again, refusal = act(settled, "acknowledge", NOW + 4 * MINUTE)

    # Then the escalation needs a new acknowledgement, which a de-escalation keeps
    assert escalated[HOT].attention is not None
    assert not escalated[HOT].attention.acknowledged
    assert refusal is None
    assert kinds(again) == [("ACKNOWLEDGED", "WARNING")]
    _, _, twice = act(
        act(settled, "acknowledge", NOW + 4 * MINUTE)[0], "acknowledge", NOW + 5 * MINUTE
    )
    assert twice is not None
    assert twice.startswith("already acknowledged by")
    kept, _ = feed(act(escalated, "acknowledge", NOW + 4 * MINUTE)[0], 85, NOW + 5 * MINUTE)
    assert kept[HOT].attention is not None
    assert kept[HOT].attention.acknowledged


def test_resolution_ends_the_episode_and_its_acknowledgement() -> None:
    # Given an acknowledged warning that resolves and is raised again
    state, _ = feed({}, 80, NOW)
    state, _, _ = act(state, "acknowledge", NOW + MINUTE)
    state, _ = feed(state, 60, NOW + 2 * MINUTE)
    state, again = feed(state, 80, NOW + 3 * MINUTE)

    # Then the new episode is not acknowledged and is reminded as usual
    assert kinds(again) == [("RAISED", "WARNING")]
    _, reminded = tick(state, NOW + 3 * MINUTE + HOUR)
    assert kinds(reminded) == [("REMINDER", "WARNING")]


@pytest.mark.parametrize(
    ("setup", "kind", "reason"),
    [
        ("quiet", "acknowledge", "no active alert on pump-17 temp-1 (temperature-high)"),
        ("quiet", "reset", "no active alert on pump-17 temp-1 (temperature-high) to reset"),
        ("quiet", "unsnooze", "pump-17 temp-1 (temperature-high) is not snoozed"),
        ("quiet", "enable", "pump-17 temp-1 (temperature-high) is not disabled"),
    ],
)
def test_an_action_with_nothing_to_act_on_is_refused_with_a_reason(
    setup: str, kind: str, reason: str
) -> None:
    # Given a quiet sensor
    state, _ = feed({}, 60, NOW)

    # When an operator acts on it, Then nothing changes and the reason says why
    after, transitions, refusal = act(state, kind, NOW + MINUTE)
    assert (transitions, after) == ([], state)
    assert refusal is not None
    assert refusal.startswith(reason)


def test_an_acknowledgement_of_an_episode_that_has_since_ended_is_refused() -> None:
    # Given an alert that resolved and was raised again since the operator looked
    state, first = feed({}, 80, NOW)
    state, _ = feed(state, 60, NOW + MINUTE)
    state, _ = feed(state, 80, NOW + 2 * MINUTE)

    # When the operator acknowledges the episode they saw
    _, transitions, refusal = act(state, "acknowledge", NOW + 3 * MINUTE, alertId=first[0].alert_id)

    # Then it is refused: the new episode is not acknowledged by mistake
    assert transitions == []
    assert refusal is not None
    assert "is no longer the current episode" in refusal


# ---------------------------------------------------------------- snooze


def test_a_snooze_mutes_publishing_and_its_end_brings_operators_up_to_date() -> None:
    # Given a warning, snoozed for two hours
    state, _ = feed({}, 80, NOW)
    state, snoozed, _ = act(state, "snooze", NOW + MINUTE, until="2h")

    # When it escalates and de-escalates while snoozed, and ends critical
    state, up = feed(state, 95, NOW + 10 * MINUTE)
    state, down = feed(state, 85, NOW + 20 * MINUTE)
    state, up_again = feed(state, 96, NOW + 30 * MINUTE)
    state, nothing_yet = tick(state, NOW + HOUR)
    state, caught_up = tick(state, NOW + MINUTE + 2 * HOUR)

    # Then the SNOOZED action itself went out; every change meanwhile is muted (history
    # and shadow only); when the snooze ends one message says WARNING -> CRITICAL
    assert kinds(snoozed) == [("SNOOZED", "WARNING")]
    assert snoozed[0].until_ms == NOW + MINUTE + 2 * HOUR
    assert all(t.muted for t in [*up, *down, *up_again])
    assert nothing_yet == []
    assert [(t.status.value, t.previous_severity.name, t.severity.name) for t in caught_up] == [
        ("ESCALATED", "WARNING", "CRITICAL")
    ]
    assert not caught_up[0].muted
    assert state[HOT].snoozed_until_ms is None


def test_a_snooze_over_which_nothing_changed_ends_in_silence() -> None:
    # Given a warning snoozed, which changes and changes back
    state, _ = feed({}, 80, NOW)
    state, _, _ = act(state, "snooze", NOW + MINUTE, until=NOW + HOUR)
    state, _ = feed(state, 95, NOW + 10 * MINUTE)
    state, _ = feed(state, 85, NOW + 20 * MINUTE)

    # When the snooze ends, Then nothing: operators already know it is a warning
    assert tick(state, NOW + HOUR)[1] == []


def test_unsnoozing_says_so_and_brings_operators_up_to_date_at_once() -> None:
    # Given a warning snoozed, which resolves meanwhile
    state, raised = feed({}, 80, NOW)
    state, _, _ = act(state, "snooze", NOW + MINUTE, until="4h")
    state, _ = feed(state, 60, NOW + 10 * MINUTE)

    # When Maria unsnoozes
    _, transitions, refusal = act(state, "unsnooze", NOW + 20 * MINUTE)

    # Then UNSNOOZED, then the net change: RESOLVED, of the episode they heard of
    assert refusal is None
    assert kinds(transitions) == [("UNSNOOZED", "OK"), ("RESOLVED", "OK")]
    assert transitions[1].alert_id == raised[0].alert_id
    assert transitions[1].previous_severity is Severity.WARNING


# ---------------------------------------------------------------- disable, enable


def test_a_disabled_key_is_not_evaluated_until_enabled() -> None:
    # Given an active warning that Maria disables
    state, _ = feed({}, 80, NOW)
    state, disabled, _ = act(state, "disable", NOW + MINUTE, note="sensor being replaced")

    # When it reads critical while disabled, then is enabled, then reads critical again
    state, ignored = feed(state, 99, NOW + 2 * MINUTE)
    state, enabled, _ = act(state, "enable", NOW + 3 * MINUTE)
    state, back = feed(state, 99, NOW + 4 * MINUTE)

    # Then DISABLED closed the alert, nothing was evaluated while disabled, ENABLED said so,
    # and evaluation resumed from the next reading
    assert kinds(disabled) == [("DISABLED", "OK")]
    assert disabled[0].previous_severity is Severity.WARNING
    assert ignored == []
    assert kinds(enabled) == [("ENABLED", "OK")]
    assert kinds(back) == [("RAISED", "CRITICAL")]
    assert act(state, "enable", NOW + 5 * MINUTE)[2] is not None


# ---------------------------------------------------------------- latch, reset


def test_a_latched_alert_waits_for_a_reset_after_its_value_returns() -> None:
    # Given a pressure trip that latches
    state, tripped = feed({}, 12, NOW, "press-1")

    # When the pressure comes back, stays back, and an operator resets it
    state, latched = feed(state, 5, NOW + MINUTE, "press-1")
    state, quiet = feed(state, 4, NOW + 2 * MINUTE, "press-1")
    state, reset, refusal = act(state, "reset", NOW + 3 * MINUTE, key=TRIP)
    state, afresh = feed(state, 12, NOW + 4 * MINUTE, "press-1")

    # Then LATCHED once (not RESOLVED), nothing more until RESET, then evaluation afresh
    assert kinds(tripped) == [("RAISED", "CRITICAL")]
    assert kinds(latched) == [("LATCHED", "CRITICAL")]
    assert quiet == []
    assert refusal is None
    assert kinds(reset) == [("RESET", "OK")]
    assert kinds(afresh) == [("RAISED", "CRITICAL")]
    assert afresh[0].alert_id != tripped[0].alert_id


def test_acknowledging_a_latched_alert_resolves_it() -> None:
    state, _ = feed({}, 12, NOW, "press-1")
    state, _ = feed(state, 5, NOW + MINUTE, "press-1")
    state, transitions, _ = act(state, "acknowledge", NOW + 2 * MINUTE, key=TRIP)
    assert kinds(transitions) == [("ACKNOWLEDGED", "OK")]
    assert state[TRIP].severity is Severity.OK


def test_a_latched_alert_breached_again_is_live_again_without_a_new_episode() -> None:
    state, tripped = feed({}, 12, NOW, "press-1")
    state, _ = feed(state, 5, NOW + MINUTE, "press-1")
    state, again = feed(state, 13, NOW + 2 * MINUTE, "press-1")
    assert again == []
    assert (state[TRIP].latched, state[TRIP].alert_id) == (False, tripped[0].alert_id)


def test_reset_of_an_unlatched_alert_returns_it_to_ok_and_evaluation_starts_afresh() -> None:
    state, _ = feed({}, 95, NOW)
    state, transitions, _ = act(state, "reset", NOW + MINUTE)
    state, next_one = feed(state, 95, NOW + 2 * MINUTE)
    assert kinds(transitions) == [("RESET", "OK")]
    assert transitions[0].previous_severity is Severity.CRITICAL
    assert kinds(next_one) == [("RAISED", "CRITICAL")]


def test_every_action_kind_is_covered() -> None:
    assert {k.value for k in Kind} == {
        "acknowledge",
        "snooze",
        "unsnooze",
        "disable",
        "enable",
        "reset",
    }
    assert Evaluation({}).changed is False


# ---------------------------------------------------------------- end to end


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[LocalAws]:
    (tmp_path / "rules.yaml").write_text(RULES_TEXT)
    with local_stack(["pump-17"], NOW) as stack:
        stack.rules_path = str(tmp_path / "rules.yaml")  # type: ignore[attr-defined]
        yield stack


def runtime(aws: LocalAws) -> tuple[handler.Runtime, Any]:
    return aws.runtime(RULES_PATH=aws.rules_path)  # type: ignore[attr-defined]


def action(kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "action": kind,
        "deviceId": "pump-17",
        "sensorId": "temp-1",
        "rule": "temperature-high",
        "by": MARIA,
    } | extra


def hot(aws: LocalAws, rt: handler.Runtime, value: float = 80, at: int = NOW) -> None:
    handler.handle(message("pump-17", at, ("temp-1", value)), rt)


def test_an_acknowledgement_reaches_operators_history_and_shadow(aws: LocalAws) -> None:
    # Given a raised warning
    rt, _ = runtime(aws)
    hot(aws, rt)
    (raised,) = aws.alerts()

    # When Maria acknowledges it through the actions function
    aws.now_ms = NOW + MINUTE
    answer = actions.handle_action(action("acknowledge", note="valve replaced"), rt)

    # Then the answer says what changed; operators get ACKNOWLEDGED with by and note, under
    # the alert's severity; the history has it; the shadow entry shows who and when
    assert answer["applied"] is True
    assert answer["state"]["acknowledged"] == {"by": MARIA, "at": iso_utc(NOW + MINUTE)}
    (acked,) = aws.alerts()
    assert (acked["status"], acked["alertId"], acked["by"], acked["note"]) == (
        "ACKNOWLEDGED",
        raised["alertId"],
        MARIA,
        "valve replaced",
    )
    assert acked["_attributes"]["severity"] == "WARNING"
    assert acked["_attributes"]["status"] == "ACKNOWLEDGED"
    statuses = [
        d["Value"] for r in aws.records("alert") for d in r["Dimensions"] if d["Name"] == "status"
    ]
    assert statuses == ["RAISED", "ACKNOWLEDGED"]
    entry = aws.shadow("pump-17")["alerts"]["temp-1"]
    assert entry["acknowledged"] == {"by": MARIA, "at": iso_utc(NOW + MINUTE)}


def test_the_shadow_forgets_what_an_alert_no_longer_has(aws: LocalAws) -> None:
    # Given an acknowledged, snoozed warning
    rt, _ = runtime(aws)
    hot(aws, rt)
    aws.now_ms = NOW + MINUTE
    actions.handle_action(action("acknowledge"), rt)
    actions.handle_action(action("snooze", until="1h"), rt)
    entry = aws.shadow("pump-17")["alerts"]["temp-1"]
    assert {"acknowledged", "snoozedUntil"} <= set(entry)

    # When it escalates (which clears the acknowledgement) and is unsnoozed
    hot(aws, rt, 95, NOW + 2 * MINUTE)
    aws.now_ms = NOW + 3 * MINUTE
    actions.handle_action(action("unsnooze"), rt)

    # Then the device's shadow shows neither any more (a shadow update merges objects)
    entry = aws.shadow("pump-17")["alerts"]["temp-1"]
    assert entry["severity"] == "CRITICAL"
    assert "acknowledged" not in entry
    assert "snoozedUntil" not in entry


def test_a_refused_action_answers_why_without_an_exception(aws: LocalAws) -> None:
    # Given a quiet device
    rt, _ = runtime(aws)

    # When an operator acknowledges it, or names a rule that does not exist
    quiet = actions.handle_action(action("acknowledge"), rt)
    unknown = actions.handle_action(action("disable", rule="no-such-rule"), rt)

    # Then each is refused with its reason, and operators receive nothing
    assert quiet == {
        "applied": False,
        "reason": "no active alert on pump-17 temp-1 (temperature-high) to acknowledge",
    }
    assert unknown["applied"] is False
    assert unknown["reason"].startswith("no rule named 'no-such-rule' is in force")
    assert aws.alerts() == []


def test_two_operators_acknowledging_at_once_give_one_acknowledgement(aws: LocalAws) -> None:
    # Given a warning, and a second operator acting while the first commits
    first, clients = runtime(aws)
    second, _ = runtime(aws)
    hot(aws, first)
    aws.alerts()
    answers: list[dict[str, Any]] = []
    before(
        clients.dynamodb,
        "PutItem",
        lambda: answers.append(
            actions.handle_action(action("acknowledge", by="li@plant.example"), second)
        ),
    )

    # When both acknowledge
    answers.append(actions.handle_action(action("acknowledge"), first))

    # Then exactly one ACKNOWLEDGED went out; the other was told who was first
    assert [a["status"] for a in aws.alerts()] == ["ACKNOWLEDGED"]
    assert sorted(a["applied"] for a in answers) == [False, True]
    assert next(a for a in answers if not a["applied"])["reason"].startswith(
        "already acknowledged by"
    )


def test_an_action_racing_a_reading_loses_nothing(aws: LocalAws) -> None:
    # Given a warning, and a critical reading committed while the acknowledgement commits
    rt, clients = runtime(aws)
    device, _ = runtime(aws)
    hot(aws, rt)
    aws.alerts()
    before(clients.dynamodb, "PutItem", lambda: hot(aws, device, 95, NOW + 30_000))

    # When the acknowledgement is applied
    answer = actions.handle_action(action("acknowledge"), rt)

    # Then both went out once: the escalation, and an acknowledgement of the episode now
    # critical (decided on the state it found after losing the race)
    assert sorted((a["status"], a["severity"]) for a in aws.alerts()) == [
        ("ACKNOWLEDGED", "CRITICAL"),
        ("ESCALATED", "CRITICAL"),
    ]
    assert answer["applied"] is True


def test_an_action_retried_after_a_fault_is_published_once(aws: LocalAws) -> None:
    # Given a warning and SNS failing the acknowledgement's publish
    rt, clients = runtime(aws)
    hot(aws, rt)
    aws.alerts()
    fail(clients.sns, "Publish", "InternalError")

    # When the action fails and Lambda retries it
    with pytest.raises(DependencyError):
        actions.handle_action(action("acknowledge"), rt)
    retried = actions.handle_action(action("acknowledge"), rt)

    # Then the committed ACKNOWLEDGED went out once, by the retry
    assert [a["status"] for a in aws.alerts()] == ["ACKNOWLEDGED"]
    assert retried["applied"] is False


def test_a_snoozed_alert_is_silent_on_sns_but_not_in_history_or_shadow(aws: LocalAws) -> None:
    # Given a warning snoozed for an hour
    rt, _ = runtime(aws)
    hot(aws, rt)
    aws.alerts()
    aws.now_ms = NOW + MINUTE
    actions.handle_action(action("snooze", until="1h"), rt)
    assert [a["status"] for a in aws.alerts()] == ["SNOOZED"]

    # When it escalates while snoozed, and the sweep runs after the hour
    hot(aws, rt, 95, NOW + 10 * MINUTE)
    muted = aws.alerts()
    shadow = aws.shadow("pump-17")["alerts"]["temp-1"]
    aws.now_ms = NOW + 2 * HOUR
    handler.handle(
        {
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "time": iso_utc(NOW + 2 * HOUR)[:19] + "Z",
        },
        rt,
    )

    # Then nothing reached operators while snoozed, the history and shadow went on, and
    # the sweep brought them up to date in one message
    assert muted == []
    assert shadow["severity"] == "CRITICAL"
    assert shadow["snoozedUntil"] == iso_utc(NOW + MINUTE + HOUR)
    statuses = [
        d["Value"] for r in aws.records("alert") for d in r["Dimensions"] if d["Name"] == "status"
    ]
    assert "ESCALATED" in statuses
    (caught_up,) = aws.alerts()
    assert (caught_up["status"], caught_up["previousSeverity"], caught_up["severity"]) == (
        "ESCALATED",
        "WARNING",
        "CRITICAL",
    )


def test_disabled_sensors_are_listed_apart_in_the_shadow(aws: LocalAws) -> None:
    rt, _ = runtime(aws)
    hot(aws, rt)
    aws.now_ms = NOW + MINUTE
    actions.handle_action(action("disable", note="replacing the probe"), rt)
    hot(aws, rt, 99, NOW + 2 * MINUTE)
    shadow = aws.shadow("pump-17")
    assert shadow["alerts"].get("temp-1") is None
    assert shadow["disabled"]["temp-1"]["temperature-high"]["by"] == MARIA
    assert [a["status"] for a in aws.alerts()] == ["RAISED", "DISABLED"]
    assert len(aws.records("reading")) == 2  # still stored


def test_a_malformed_action_raises_naming_the_field_when_invoked_directly(aws: LocalAws) -> None:
    rt, _ = runtime(aws)
    with pytest.raises(InvalidActionError, match=r"^by: is required"):
        actions.handle_action(action("acknowledge", by=None), rt)


def test_a_malformed_action_from_the_operators_topic_is_dead_lettered(aws: LocalAws) -> None:
    rt, _ = runtime(aws)
    answer = actions.handle_action(action("acknowledge", by=None, via="ops/alerts/actions"), rt)
    assert answer == {
        "applied": False,
        "reason": "by: is required",
        "error": "by: is required",
        "field": "by",
    }
    (dead,) = aws.dead_letters()
    assert (dead["code"], dead["field"], dead["source"]) == ("invalid_action", "by", "actions")


def test_the_telemetry_function_never_takes_an_action(aws: LocalAws) -> None:
    # Given an active alert, and a device publishing an action-shaped message
    rt, _ = runtime(aws)
    hot(aws, rt)
    aws.alerts()
    forged = action("acknowledge") | {"deviceId": "pump-17", "receivedAt": NOW}

    # When the telemetry function is handed it
    handler.handle(forged, rt)

    # Then nothing is acknowledged: it is a device message without data, quarantined
    assert aws.alerts() == []
    assert [d["field"] for d in aws.dead_letters()] == ["data"]
    item = aws.state_item("pump-17") or {}
    assert "ackBy" not in str(item)


def test_a_retried_action_whose_commit_answer_was_lost_is_delivered_at_once(
    aws: LocalAws,
) -> None:
    # Given a raised warning, and an acknowledgement from the operators' topic whose
    # commit reached DynamoDB but whose answer was lost
    rt, clients = runtime(aws)
    hot(aws, rt)
    aws.alerts()
    aws.now_ms = NOW + MINUTE
    lose_response(clients.dynamodb, "PutItem")
    acknowledge = action("acknowledge", via="ops/actions", receivedAt=NOW + MINUTE)
    with pytest.raises(DependencyError):
        actions.handle_action(acknowledge, rt, Context("action-1"))

    # When the action is delivered again as another request, then Lambda retries the
    # first one (the same request id)
    actions.handle_action(acknowledge, rt, Context("action-2"))
    held = aws.alerts()
    actions.handle_action(acknowledge, rt, Context("action-1"))

    # Then the acknowledgement reached operators once, from the retry, at once
    assert held == []
    assert [(a["status"], a["by"]) for a in aws.alerts()] == [("ACKNOWLEDGED", MARIA)]
    assert "outbox" not in (aws.state_item("pump-17") or {})


def test_the_actions_entry_point_builds_its_runtime_from_the_environment(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the actions function's environment and a raised alert
    for key, value in aws.stack.environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RULES_PATH", aws.rules_path)  # type: ignore[attr-defined]
    handler.reset_runtime()
    try:
        now = handler.runtime().clock()
        handler.handle(message("pump-17", now, ("temp-1", 80)), handler.runtime())

        # When Lambda invokes telemetry.actions.lambda_handler
        class Context:
            aws_request_id = "req-1"

            def get_remaining_time_in_millis(self) -> int:
                return 30_000

        answer = actions.lambda_handler(action("acknowledge"), Context())
    finally:
        handler.reset_runtime()

    # Then it answers with the new state
    assert answer["applied"] is True
    assert answer["state"]["acknowledged"]["by"] == MARIA
