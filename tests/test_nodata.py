"""No-data alerts: sensors that stop reporting, raised by the sweep, resolved on return.

The core first (arrival tracking, the sweep's decisions, their bounds as
properties), then the function end to end under moto: the scheduled event,
the sparse due index, and the races the conditional commit must win.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import given

from telemetry import actions, handler
from telemetry.adapters.influxdb import InfluxRecords
from telemetry.adapters.sns import subject
from telemetry.adapters.state_store import DEVICE_SHARDS, DynamoStateStore
from telemetry.adapters.timestream import alert_record
from telemetry.core.alerts import (
    NODATA,
    AlertState,
    Severity,
    StateKey,
    Status,
    Transition,
    evaluate,
)
from telemetry.core.messages import Reading, iso_utc
from telemetry.core.rules import RuleSet, parse_rule_file
from telemetry.core.silence import next_due_ms, sweep
from telemetry.errors import DependencyError
from tests.localaws import (
    Context,
    LocalAws,
    before,
    fail,
    local_stack,
    lose_response,
    message,
    record_calls,
)
from tests.strategies import arrival_histories

NOW = 1_764_237_600_000  # 2025-11-27T10:00:00Z
MINUTE = 60_000
RULES_TEXT = """
rules:
  - name: pump-heartbeat
    match: {deviceId: "pump-*"}
    nodata: 5m
  - name: boiler-temperature
    match: {type: temperature, deviceId: "boiler-*"}
    above: {warning: 75, critical: 90}
    nodata: 10m
    nodataSeverity: CRITICAL
"""
RULES = RuleSet(parse_rule_file(RULES_TEXT, "nodata.yaml"))
HEARTBEAT = ("temp-1", "pump-heartbeat")


def reading(value: float, time_ms: int, device: str = "pump-17", sensor: str = "temp-1") -> Reading:
    return Reading(device, sensor, value, time_ms, "temperature", "C", "line-3")


def arrive(
    state: dict[StateKey, AlertState], value: float, at_ms: int, *, event_ms: int | None = None
) -> tuple[dict[StateKey, AlertState], list[Transition], bool]:
    result = evaluate(
        [reading(value, at_ms if event_ms is None else event_ms)], state, RULES, at_ms
    )
    return result.state, result.transitions, result.changed


def swept(
    state: dict[StateKey, AlertState], at_ms: int, rules: RuleSet = RULES
) -> tuple[dict[StateKey, AlertState], list[Transition]]:
    result = sweep("pump-17", state, rules, at_ms)
    return result.state, result.transitions


# ---------------------------------------------------------------- the core


def test_a_silent_sensor_is_raised_by_the_sweep_and_resolved_by_its_next_reading() -> None:
    # Given a pump that reported at 10:00, under a 5-minute heartbeat rule
    state, _, _ = arrive({}, 61.5, NOW)

    # When sweeps run every minute and it reports again at 10:12
    raised: list[Transition] = []
    for minute in range(1, 12):
        state, transitions = swept(state, NOW + minute * MINUTE)
        raised += transitions
    state, resolved, _ = arrive(state, 62.0, NOW + 12 * MINUTE)

    # Then one RAISED, between nodata and 1.5 x nodata after the last reading, then RESOLVED
    (up,) = raised
    (down,) = resolved
    assert (up.status, up.severity, up.direction) == (Status.RAISED, Severity.WARNING, NODATA)
    assert 5 * MINUTE <= up.time_ms - NOW <= 7.5 * MINUTE + MINUTE
    assert (up.value, up.threshold, up.since_ms) == (61.5, 300.0, up.time_ms)
    assert (down.status, down.severity, down.previous_severity) == (
        Status.RESOLVED,
        Severity.OK,
        Severity.WARNING,
    )
    assert (down.alert_id, down.value, down.time_ms) == (up.alert_id, 62.0, NOW + 12 * MINUTE)
    assert subject(up) == "[WARNING] pump-17 temp-1 silent for 5m (pump-heartbeat)"
    assert subject(down) == "[WARNING] pump-17 temp-1 reporting again (pump-heartbeat)"


def test_a_retried_or_late_sweep_decides_the_same() -> None:
    # Given a silent pump
    state, _, _ = arrive({}, 61.5, NOW)
    late = NOW + 20 * MINUTE

    # When the same sweep (same event time) runs twice on the same state
    first = swept(state, late)
    again = swept(state, late)

    # Then it raises the same alert, with the same id, at the event's time
    assert first[1] == again[1]
    assert first[1][0].time_ms == late
    # and a later sweep does not raise it again
    assert swept(first[0], late + MINUTE)[1] == []


def test_the_no_data_alert_is_its_own_alert_beside_the_threshold_one() -> None:
    # Given a boiler hot (threshold alert) and then silent
    rules = RULES
    hot = evaluate([reading(95, NOW, device="boiler-3")], {}, rules, NOW)
    state = sweep("boiler-3", hot.state, rules, NOW + 30 * MINUTE).state
    key = ("temp-1", "boiler-temperature")

    # Then the threshold alert keeps its level while silent, and the no-data alert is
    # CRITICAL (nodataSeverity) with an id of its own
    (threshold,) = hot.transitions
    assert state[key].severity is Severity.CRITICAL
    silence = state[key].silence
    assert silence is not None
    assert silence.severity is Severity.CRITICAL
    assert silence.alert_id != threshold.alert_id

    # When it reports again, cooler: the no-data alert resolves whatever the value, and
    # the threshold alert is evaluated as usual
    back = evaluate([reading(50, NOW + 31 * MINUTE, device="boiler-3")], state, rules, NOW)
    assert sorted((t.direction, t.status.value) for t in back.transitions) == [
        ("above", "RESOLVED"),
        ("nodata", "RESOLVED"),
    ]
    # and the two resolutions, same rule, same sensor, same instant, are stored as two
    # series (else Timestream would reject one as a duplicate, InfluxDB overwrite it)
    records = [alert_record(t) for t in back.transitions]
    assert len({_series(r) for r in records}) == 2
    points = [InfluxRecords().alert(t).line for t in back.transitions]
    assert len({line.split(" ")[0] for line in points}) == 2
    assert any(",direction=nodata," in line for line in points)


def _series(record: dict[str, Any]) -> tuple[Any, ...]:
    dims = tuple(sorted((d["Name"], d["Value"]) for d in record["Dimensions"]))
    return (record["MeasureName"], record["Time"], dims)


def test_a_reading_not_evaluated_for_its_thresholds_still_counts_as_arriving() -> None:
    # Given a silent pump
    state, _, _ = arrive({}, 61.5, NOW)
    state, _ = swept(state, NOW + 20 * MINUTE)
    assert state[HEARTBEAT].silent

    # When it reports again with device thresholds out of order (stored, not evaluated)
    incoherent = replace(
        reading(62.0, NOW + 21 * MINUTE), warning_threshold=90.0, critical_threshold=80.0
    )
    result = evaluate([incoherent], state, RULES, NOW + 21 * MINUTE)

    # Then its no-data alert resolves, whatever the reading's thresholds say
    assert [(t.status, t.direction) for t in result.transitions] == [(Status.RESOLVED, NODATA)]
    assert [r for r, _ in result.not_evaluated] == [incoherent]
    assert not result.state[HEARTBEAT].silent


def test_a_write_made_anyway_carries_the_last_value_received_for_the_no_data_alert() -> None:
    # Given a boiler tracked at 10:00 (80), then a reading a minute later (95, hot: the
    # threshold alert is raised, so the device's state is written anyway)
    first = evaluate([reading(80, NOW, device="boiler-3")], {}, RULES, NOW)
    later = evaluate(
        [reading(95, NOW + MINUTE, device="boiler-3")], first.state, RULES, NOW + MINUTE
    )

    # When it then falls silent and the sweep raises its no-data alert
    raised = sweep("boiler-3", later.state, RULES, NOW + 60 * MINUTE).transitions

    # Then the alert reports 95, the last value received, not 80
    assert [(t.direction, t.value) for t in raised] == [(NODATA, 95.0)]


def test_silence_is_measured_in_arrival_time_not_the_devices_clock() -> None:
    # Given a pump whose clock is a day behind, reporting every minute
    state: dict[StateKey, AlertState] = {}
    raised: list[Transition] = []
    for minute in range(30):
        state, _, _ = arrive(state, 61.0, NOW + minute * MINUTE, event_ms=NOW - 86_400_000)
        state, transitions = swept(state, NOW + minute * MINUTE + 30_000)
        raised += transitions

    # Then it is never silent
    assert raised == []


def test_a_late_reading_still_resolves_a_no_data_alert() -> None:
    # Given a silent pump
    state, _, _ = arrive({}, 61.5, NOW)
    state, _ = swept(state, NOW + 20 * MINUTE)

    # When a buffered reading stamped long ago arrives now
    _, resolved, _ = arrive(state, 60.0, NOW + 21 * MINUTE, event_ms=NOW - MINUTE)

    # Then its arrival ends the silence
    assert [t.status for t in resolved] == [Status.RESOLVED]


def test_sensors_no_nodata_rule_matches_and_sensors_never_heard_from_are_not_tracked() -> None:
    # Given a compressor no nodata rule matches, and a pump that never reported
    result = evaluate([reading(60, NOW, device="compressor-2")], {}, RULES, NOW)

    # Then nothing is tracked, nothing is due, and a sweep finds nothing
    assert result.changed is False
    assert next_due_ms(result.state) is None
    assert swept({}, NOW + 60 * MINUTE) == ({}, [])


@pytest.mark.parametrize(
    "rules_text",
    [
        "rules: []",
        "rules: [{name: pump-heartbeat, match: {deviceId: 'compressor-*'}, nodata: 5m}]",
        "rules: [{name: pump-heartbeat, match: {deviceId: 'pump-*'}, above: {warning: 99}}]",
        "rules: [{name: pump-heartbeat, match: {deviceId: 'pump-*'}, nodata: 1h}]",
    ],
    ids=["removed", "match-changed", "nodata-removed", "window-longer"],
)
def test_a_rule_that_no_longer_says_silent_resolves_its_no_data_alert(rules_text: str) -> None:
    # Given a silent pump under the 5-minute heartbeat
    state, _, _ = arrive({}, 61.5, NOW)
    state, raised = swept(state, NOW + 10 * MINUTE)
    assert [t.status for t in raised] == [Status.RAISED]

    # When the rule is removed, no longer matches, loses nodata or lengthens it
    changed = RuleSet(parse_rule_file(rules_text, "changed.yaml"))
    after, resolved = swept(state, NOW + 11 * MINUTE, changed)

    # Then the next sweep resolves it (a reading of the sensor would too)
    assert [(t.status, t.direction) for t in resolved] == [(Status.RESOLVED, NODATA)]
    assert not after[HEARTBEAT].silent


def test_a_reading_under_a_rule_that_lost_nodata_resolves_and_stops_tracking() -> None:
    # Given a silent pump, and then the rule's nodata is removed
    state, _, _ = arrive({}, 61.5, NOW)
    state, _ = swept(state, NOW + 10 * MINUTE)
    levels_only = RuleSet(
        parse_rule_file(
            "rules: [{name: pump-heartbeat, match: {deviceId: 'pump-*'}, above: {warning: 99}}]",
            "x.yaml",
        )
    )

    # When the pump reports
    result = evaluate([reading(61, NOW + 11 * MINUTE)], state, levels_only, NOW + 11 * MINUTE)

    # Then its no-data alert resolves and it is no longer tracked
    assert [(t.status, t.direction) for t in result.transitions] == [(Status.RESOLVED, NODATA)]
    assert result.state[HEARTBEAT].silence is None


@given(history=arrival_histories())
def test_no_data_is_raised_within_its_bounds_and_steady_reporting_costs_two_writes_a_window(
    history: tuple[int, list[int]],
) -> None:
    # Given a sensor arriving at these times under a rule with this window
    window, arrivals = history
    rules = RuleSet(parse_rule_file(f"rules: [{{name: hb, nodata: {window // 1000}s}}]", "hb.yaml"))
    state: dict[StateKey, AlertState] = {}
    writes, raised_at, last = 0, [], None
    sweep_every = MINUTE
    t = arrivals[0]
    end = arrivals[-1] + 3 * window
    pending = list(arrivals)

    # When they arrive, with a sweep every minute in between
    while t <= end:
        while pending and pending[0] <= t:
            at = pending.pop(0)
            result = evaluate([Reading("d", "s", 1.0, at)], state, rules, at)
            writes += result.changed
            state, last = result.state, at
        result = sweep("d", state, rules, t)
        state = result.state
        raised_at += [(x.time_ms, last) for x in result.transitions if x.status is Status.RAISED]
        t += sweep_every

    # Then each raise came no earlier than `window` after the last arrival, and no
    # later than 1.5 x window plus a sweep interval
    assert all(window <= at - before <= 1.5 * window + sweep_every for at, before in raised_at)
    # and tracking wrote at most twice per window of reporting (plus the first write,
    # and one per return from a silence)
    span = arrivals[-1] - arrivals[0]
    returns = len(raised_at)
    assert writes <= 1 + returns + 2 * (span // window + 1)


# ---------------------------------------------------------------- end to end


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[LocalAws]:
    (tmp_path / "rules.yaml").write_text(RULES_TEXT)
    with local_stack(["pump-17", "pump-18", "boiler-3"], NOW) as stack:
        stack.rules_path = str(tmp_path / "rules.yaml")  # type: ignore[attr-defined]
        yield stack


def runtime(aws: LocalAws) -> tuple[handler.Runtime, Any]:
    return aws.runtime(RULES_PATH=aws.rules_path)  # type: ignore[attr-defined]


def scheduled(at_ms: int) -> dict[str, Any]:
    """What EventBridge sends on a SAM Schedule event."""
    return {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": iso_utc(at_ms)[:19] + "Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/telemetry-Sweep"],
        "detail": {},
    }


def heartbeat(device: str, at_ms: int, value: float = 61.5) -> dict[str, Any]:
    return message(device, at_ms, ("temp-1", value))


def test_the_scheduled_sweep_raises_a_silent_device_everywhere_operators_look(
    aws: LocalAws,
) -> None:
    # Given two pumps that reported at 10:00, and one that keeps reporting
    rt, _ = runtime(aws)
    for device in ("pump-17", "pump-18"):
        handler.handle(heartbeat(device, NOW), rt)
    aws.now_ms = NOW + 4 * MINUTE
    handler.handle(heartbeat("pump-18", NOW + 4 * MINUTE), rt)

    # When the sweep of 10:08 runs (its event time is what counts)
    aws.now_ms = NOW + 8 * MINUTE + 20_000
    summary = handler.handle(scheduled(NOW + 8 * MINUTE), rt)

    # Then pump-17 is raised: on SNS with direction nodata, in the alert history and
    # in its shadow; pump-18 is not
    (alert,) = aws.alerts()
    assert (alert["deviceId"], alert["status"], alert["direction"]) == ("pump-17", "RAISED", NODATA)
    assert alert["_attributes"]["severity"] == "WARNING"
    assert alert["threshold"] == 300.0
    assert alert["time"] == iso_utc(NOW + 8 * MINUTE)
    assert summary["swept"] == 1
    history = [r for r in aws.records("alert") if r["MeasureName"] == "alert"]
    assert [d["Value"] for r in history for d in r["Dimensions"] if d["Name"] == "status"] == [
        "RAISED"
    ]
    entry = aws.shadow("pump-17")["alerts"]["temp-1"]
    assert (entry["rule"], entry["direction"], entry["severity"]) == (
        "pump-heartbeat",
        NODATA,
        "WARNING",
    )

    # When it reports again
    aws.now_ms = NOW + 9 * MINUTE
    handler.handle(heartbeat("pump-17", NOW + 9 * MINUTE, 63.0), rt)

    # Then the alert resolves and the mirror clears
    (back,) = aws.alerts()
    assert (back["status"], back["alertId"]) == ("RESOLVED", alert["alertId"])
    assert aws.shadow("pump-17")["alerts"].get("temp-1") is None


def test_a_rule_changed_while_a_sensor_is_silent_applies_at_an_hourly_check(
    aws: LocalAws, tmp_path: Path
) -> None:
    # Given a pump raised silent by the sweep of 10:08
    rt, _ = runtime(aws)
    handler.handle(heartbeat("pump-17", NOW), rt)
    aws.now_ms = NOW + 8 * MINUTE
    handler.handle(scheduled(NOW + 8 * MINUTE), rt)
    (raised,) = aws.alerts()

    # When its rule's severity is raised to CRITICAL, then the rule is removed, each
    # deployed as a new version of the rules (a cold start), and sweeps run every minute
    critical = tmp_path / "critical.yaml"
    critical.write_text(
        RULES_TEXT.replace("nodata: 5m\n", "nodata: 5m\n    nodataSeverity: CRITICAL\n", 1)
    )
    removed = tmp_path / "removed.yaml"
    removed.write_text("rules:\n  - name: other\n    match: {type: pressure}\n    nodata: 5m\n")
    seen: list[dict[str, Any]] = []
    for path, minutes in ((critical, range(9, 75)), (removed, range(75, 140))):
        rt, _ = aws.runtime(RULES_PATH=str(path))
        for minute in minutes:
            aws.now_ms = NOW + minute * MINUTE
            handler.handle(scheduled(aws.now_ms), rt)
            seen += aws.alerts()

    # Then the silent sensor is re-graded within the hour, then resolved, in the same
    # episode, and the device leaves the due index for good
    assert [(a["status"], a["severity"], a["alertId"]) for a in seen] == [
        ("ESCALATED", "CRITICAL", raised["alertId"]),
        ("RESOLVED", "OK", raised["alertId"]),
    ]
    escalated, resolved = (a["time"] for a in seen)
    assert escalated <= iso_utc(NOW + 8 * MINUTE + 60 * MINUTE + MINUTE)
    assert resolved <= iso_utc(NOW + 68 * MINUTE + 60 * MINUTE + MINUTE)
    assert aws.shadow("pump-17")["alerts"].get("temp-1") is None
    assert (
        DynamoStateStore(aws.stack.state_table, boto3.client("dynamodb")).due_devices(
            NOW + 365 * 24 * 60 * MINUTE, 10
        )
        == []
    )


def test_a_long_silent_sensor_costs_one_state_write_an_hour() -> None:
    # Given a pump silent since 10:08
    state, _, _ = arrive({}, 61.5, NOW)
    state, _ = swept(state, NOW + 8 * MINUTE)

    # When the sweep runs every minute for a day
    writes = 0
    for minute in range(9, 24 * 60):
        result = sweep("pump-17", state, RULES, NOW + minute * MINUTE)
        writes += int(result.changed)
        assert result.transitions == []
        state = result.state

    # Then it is checked once an hour, and nothing else is written
    assert writes == 23


def test_acknowledging_a_silent_sensor_answers_with_its_no_data_episode(aws: LocalAws) -> None:
    # Given a pump raised silent under a heartbeat rule (no levels)
    rt, _ = runtime(aws)
    handler.handle(heartbeat("pump-17", NOW), rt)
    aws.now_ms = NOW + 8 * MINUTE
    handler.handle(scheduled(NOW + 8 * MINUTE), rt)
    (raised,) = aws.alerts()

    # When an operator acknowledges it
    aws.now_ms = NOW + 9 * MINUTE
    answer = actions.handle_action(
        {
            "action": "acknowledge",
            "deviceId": "pump-17",
            "sensorId": "temp-1",
            "rule": "pump-heartbeat",
            "by": "maria@plant.example",
        },
        rt,
    )

    # Then the answer shows that episode at the top, acknowledged, and operators get
    # ACKNOWLEDGED with the window as its threshold
    state = answer["state"]
    assert (state["severity"], state["direction"], state["alertId"]) == (
        "WARNING",
        NODATA,
        raised["alertId"],
    )
    assert state["acknowledged"] == {"by": "maria@plant.example", "at": iso_utc(NOW + 9 * MINUTE)}
    (acked,) = aws.alerts()
    assert (acked["status"], acked["direction"], acked["threshold"]) == (
        "ACKNOWLEDGED",
        NODATA,
        300.0,
    )


def test_the_sweep_reads_only_due_devices_through_the_index(aws: LocalAws) -> None:
    # Given a pump tracked by the heartbeat and a boiler too, both recently heard from
    rt, clients = runtime(aws)
    handler.handle(heartbeat("pump-17", NOW), rt)
    handler.handle(heartbeat("pump-18", NOW + 3 * MINUTE), rt)
    calls = record_calls(clients)

    # When a sweep runs when only pump-17 is due
    aws.now_ms = NOW + 8 * MINUTE
    handler.handle(scheduled(NOW + 8 * MINUTE), rt)

    # Then it queried the index (never scanned): every device shard, and the
    # notification groups' digests; and read only pump-17's record
    assert calls.count("dynamodb", "Scan") == 0
    queried = {p["ExpressionAttributeValues"][":s"]["S"] for p in calls.params("dynamodb", "Query")}
    assert queried == {*DEVICE_SHARDS, "digest"}
    loaded = [
        k["deviceId"]["S"]
        for p in calls.params("dynamodb", "BatchGetItem")
        for t in p["RequestItems"].values()
        for k in t["Keys"]
    ]
    # (besides the notification group of its alert, which is no device)
    assert [k for k in loaded if not k.startswith("$group#")] == ["pump-17"]


def test_a_device_cannot_pass_a_message_off_as_the_schedule(aws: LocalAws) -> None:
    # Given a silent pump, and a device that publishes the schedule's shape
    rt, _ = runtime(aws)
    handler.handle(heartbeat("pump-17", NOW), rt)
    forged = scheduled(NOW + 60 * MINUTE) | {"deviceId": "pump-18", "receivedAt": NOW}

    # When the topic rule hands it over (with the topic's deviceId and receivedAt)
    aws.now_ms = NOW + 2 * MINUTE
    handler.handle(forged, rt)

    # Then it is treated as that device's message, not as a sweep: nothing is raised
    assert aws.alerts() == []
    assert [d["field"] for d in aws.dead_letters()] == ["data"]


def test_a_reading_that_arrives_while_the_sweep_commits_wins_and_nothing_is_raised(
    aws: LocalAws,
) -> None:
    # Given a silent pump, and its reading committed just before the sweep's write
    sweeper, clients = runtime(aws)
    device, _ = runtime(aws)
    handler.handle(heartbeat("pump-17", NOW), device)
    aws.now_ms = NOW + 10 * MINUTE

    def reading_first() -> None:
        handler.handle(heartbeat("pump-17", NOW + 10 * MINUTE), device)

    before(clients.dynamodb, "PutItem", reading_first)

    # When the sweep runs
    handler.handle(scheduled(NOW + 10 * MINUTE), sweeper)

    # Then the sweep re-read the state, found the pump reporting, and raised nothing
    assert aws.alerts() == []


def test_a_sweep_that_commits_first_raises_once_and_the_reading_resolves_once(
    aws: LocalAws,
) -> None:
    # Given a silent pump whose reading arrives just after the sweep committed
    sweeper, _ = runtime(aws)
    device, _ = runtime(aws)
    handler.handle(heartbeat("pump-17", NOW), device)
    aws.now_ms = NOW + 10 * MINUTE
    handler.handle(scheduled(NOW + 10 * MINUTE), sweeper)

    # When the reading comes, and the sweep is delivered twice more (retries)
    handler.handle(heartbeat("pump-17", NOW + 10 * MINUTE + 5_000), device)
    handler.handle(scheduled(NOW + 10 * MINUTE), sweeper)
    handler.handle(scheduled(NOW + 10 * MINUTE), device)

    # Then exactly one RAISED and one RESOLVED
    assert [a["status"] for a in aws.alerts()] == ["RAISED", "RESOLVED"]


def test_two_sweeps_at_once_raise_one_alert(aws: LocalAws) -> None:
    # Given a silent pump and two sweeps of the same minute, the second running inside
    # the first just before it commits
    first, first_clients = runtime(aws)
    second, _ = runtime(aws)
    handler.handle(heartbeat("pump-17", NOW), first)
    aws.now_ms = NOW + 10 * MINUTE
    event = scheduled(NOW + 10 * MINUTE)
    before(first_clients.dynamodb, "PutItem", lambda: handler.handle(event, second))

    # When both run
    handler.handle(event, first)

    # Then the alert was raised once
    assert [a["status"] for a in aws.alerts()] == ["RAISED"]


def test_a_sweep_retried_after_a_fault_raises_once(aws: LocalAws) -> None:
    # Given a silent pump and SNS failing the sweep's publish
    rt, clients = runtime(aws)
    handler.handle(heartbeat("pump-17", NOW), rt)
    aws.now_ms = NOW + 10 * MINUTE
    fail(clients.sns, "Publish", "InternalError")
    event = scheduled(NOW + 10 * MINUTE)

    # When the sweep fails and Lambda retries it (same event)
    with pytest.raises(DependencyError):
        handler.handle(event, rt)
    aws.now_ms += MINUTE
    handler.handle(event, rt)

    # Then the alert reached operators once
    assert [a["status"] for a in aws.alerts()] == ["RAISED"]


def test_a_retried_sweep_whose_commit_answer_was_lost_delivers_at_once(aws: LocalAws) -> None:
    # Given a silent pump, and a sweep whose commit reached DynamoDB but whose answer
    # was lost, so that it failed holding claims it could not release
    rt, clients = runtime(aws)
    handler.handle(heartbeat("pump-17", NOW), rt)
    aws.now_ms = NOW + 10 * MINUTE
    lose_response(clients.dynamodb, "PutItem")
    event = scheduled(NOW + 10 * MINUTE)
    with pytest.raises(DependencyError):
        handler.handle(event, rt, Context("sweep-1"))

    # When the schedule is delivered again as another request while the claim holds,
    # then Lambda retries the first request (the same request id)
    duplicate, _ = runtime(aws)
    handler.handle(event, duplicate, Context("sweep-2"))
    held = aws.alerts()
    handler.handle(event, rt, Context("sweep-1"))

    # Then only the retry published, at once, and nothing is left to deliver
    assert held == []
    assert [a["status"] for a in aws.alerts()] == ["RAISED"]
    assert "outbox" not in (aws.state_item("pump-17") or {})


def test_the_sweep_delivers_an_outbox_entry_a_crashed_invocation_stranded(
    aws: LocalAws,
) -> None:
    # Given a committed alert whose invocation died before publishing or releasing it
    rt, clients = runtime(aws)
    fail(clients.sns, "Publish", "InternalError")
    puts = [0]

    def release_fails(**_: Any) -> None:
        puts[0] += 1
        if puts[0] == 2:
            raise DependencyError("dynamodb", "PutItem", "InternalServerError", "x", transient=True)

    clients.dynamodb.meta.events.register("before-call.dynamodb.PutItem", release_fails)
    with pytest.raises(DependencyError):
        handler.handle(message("boiler-3", NOW, ("temp-1", 95)), rt)

    # When the device says nothing more, and the sweep runs after the lease
    other, _ = runtime(aws)
    aws.now_ms = NOW + 6 * MINUTE
    handler.handle(scheduled(NOW + 6 * MINUTE), other)

    # Then the stranded alert is delivered by the sweep
    assert [(a["deviceId"], a["status"]) for a in aws.alerts()] == [("boiler-3", "RAISED")]
    assert "outbox" not in (aws.state_item("boiler-3") or {})


# ---------------------------------------------------------------- on history


def test_backtest_reports_the_no_data_episodes_of_recorded_history() -> None:
    # Given a recorded history: a pump reporting each minute with a 12-minute gap, then
    # silent at the end; lines with receivedAt, and lines with only the readings' time
    from telemetry.backtest import replay

    lines = [heartbeat("pump-17", NOW + m * MINUTE) for m in (0, 1, 2, 14, 15)]
    lines += [
        {
            "deviceId": "pump-18",
            "data": [{"sensorId": "temp-1", "value": 1.0, "timestamp": NOW + m * MINUTE}],
        }
        for m in (0, 1, 30)
    ]

    # When it is replayed through the heartbeat rule
    result = replay(lines, RULES, wall_ms=NOW)

    # Then each gap longer than 5 minutes is an episode, raised when the window ran out
    nodata = [
        (t.device_id, t.status.value, t.time_ms)
        for t in result.transitions
        if t.direction == NODATA
    ]
    assert nodata == [
        ("pump-18", "RAISED", NOW + 6 * MINUTE),
        ("pump-17", "RAISED", NOW + 50 + 7 * MINUTE),
        ("pump-17", "RESOLVED", NOW + 14 * MINUTE),
        ("pump-17", "RAISED", NOW + 50 + 20 * MINUTE),
        ("pump-18", "RESOLVED", NOW + 30 * MINUTE),
    ]
