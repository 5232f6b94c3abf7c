"""Device connectivity: IoT Core lifecycle events, offline alerts, gateways.

The core first (the order of lifecycle events as a property, the sweep's
decisions on offline alerts and on no-data alerts while a device is away, a
gateway holding its members), then the function end to end under moto: the
connectivity rule's events through the handler, what operators receive on
SNS, in the shadow and in the alert history, and a gateway outage of 20
members arriving as one message.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import given
from hypothesis import strategies as st

from telemetry import actions, handler
from telemetry.adapters.sns import attributes, subject
from telemetry.adapters.state_store import GATEWAY_INDEX, DynamoStateStore, item_bytes
from telemetry.core.alerts import (
    DEVICE_SENSOR,
    NODATA,
    OFFLINE,
    AlertState,
    Evaluation,
    Severity,
    StateKey,
    Status,
    Transition,
    evaluate,
)
from telemetry.core.connectivity import (
    Connection,
    GatewayView,
    LifecycleEvent,
    Presence,
    apply_event,
    combined,
    gateway_view,
    on_heard,
    on_lifecycle,
    parse_lifecycle_event,
    settled,
    sweep_device,
)
from telemetry.core.messages import MessageRejectedError, Reading, iso_utc
from telemetry.core.mirror import mirror_entries
from telemetry.core.operators import (
    Action,
    Kind,
    apply_action,
    finalize,
    key_view,
    parse_action,
    timers,
)
from telemetry.core.rules import RuleSet, parse_rule_document
from telemetry.core.state import DeviceRecord
from telemetry.errors import DependencyError
from telemetry.events import is_lifecycle_event
from telemetry.local.provision import state_table_shape
from tests.localaws import LocalAws, before, fail, local_stack, message, record_calls
from tests.strategies import lifecycle_event, lifecycle_histories, redelivered

NOW = 1_764_237_600_000  # 2025-11-27T10:00:00Z
SECOND = 1_000
MINUTE = 60_000
RULES_TEXT = """
rules:
  - name: pump-connectivity
    match: {deviceId: "pump-*"}
    offline: 2m
  - name: pump-heartbeat
    match: {deviceId: "pump-*"}
    nodata: 5m
  - name: gateway-connectivity
    match: {deviceId: "gw-*"}
    offline: 2m
    offlineSeverity: CRITICAL
  - name: gateway-heartbeat
    match: {deviceId: "gw-*"}
    nodata: 5m
  - name: line3-connectivity
    match: {deviceId: "line3-*"}
    offline: 2m
  - name: line3-heartbeat
    match: {deviceId: "line3-*"}
    nodata: 5m
  - name: line3-temperature
    match: {deviceId: "line3-*", type: temperature}
    above: {warning: 75, critical: 90}
gateways:
  - gateway: gw-line-3
    members: {deviceId: "line3-*"}
# One message per change: these tests follow each alert (the budget has its own).
notifications: {maxPerWindow: 1000}
"""
_DOCUMENT = parse_rule_document(RULES_TEXT, "connectivity.yaml")
RULES = RuleSet(_DOCUMENT.rules, gateways=_DOCUMENT.gateways)
PUMP = "pump-17"
GATEWAY = "gw-line-3"
MEMBERS = [f"line3-{n:02d}" for n in range(1, 21)]
OFFLINE_KEY = (DEVICE_SENSOR, "pump-connectivity")


def event(kind: str, version: int, at_ms: int, client: str = PUMP) -> LifecycleEvent:
    return parse_lifecycle_event(lifecycle_event(client, kind, version, at_ms))


@st.composite
def delivered_histories(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    history = draw(lifecycle_histories())
    return history, draw(redelivered(history))


# ---------------------------------------------------------------- the events


def test_a_lifecycle_event_is_read_as_iot_core_publishes_it() -> None:
    # Given a disconnected event as IoT Core publishes it
    raw = lifecycle_event(PUMP, "disconnected", 7, NOW)

    # When it is parsed
    parsed = parse_lifecycle_event(raw)

    # Then the device is its clientId and every field that matters is kept
    assert parsed == LifecycleEvent(
        device_id=PUMP,
        version=7,
        connected=False,
        time_ms=NOW,
        session_id=raw["sessionIdentifier"],
        disconnect_reason="CONNECTION_LOST",
        client_initiated=False,
    )


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"clientId": None}, "clientId", "missing"),
        ({"clientId": "pump 17/../x"}, "clientId", "invalid_format"),
        ({"clientId": 17}, "clientId", "invalid_format"),
        ({"versionNumber": None}, "versionNumber", "missing"),
        ({"versionNumber": "7"}, "versionNumber", "wrong_type"),
        ({"versionNumber": True}, "versionNumber", "wrong_type"),
        ({"versionNumber": -1}, "versionNumber", "wrong_type"),
        ({"timestamp": None}, "timestamp", "missing"),
        ({"timestamp": 1.5}, "timestamp", "wrong_type"),
        ({"eventType": "subscribed"}, "eventType", "invalid_format"),
        ({"disconnectReason": 3}, "disconnectReason", "wrong_type"),
        ({"clientInitiatedDisconnect": "no"}, "clientInitiatedDisconnect", "wrong_type"),
    ],
)
def test_a_malformed_lifecycle_event_is_refused_naming_its_field(
    change: dict[str, Any], field: str, code: str
) -> None:
    # Given a lifecycle event with one field missing or ill-typed
    raw = {
        k: v
        for k, v in (lifecycle_event(PUMP, "disconnected", 7, NOW) | change).items()
        if v is not None
    }

    # When it is parsed, Then it is refused, naming the field, with the event as payload
    with pytest.raises(MessageRejectedError) as refused:
        parse_lifecycle_event(raw)
    assert (refused.value.rejection.field, refused.value.rejection.code) == (field, code)
    assert refused.value.rejection.payload == raw


def test_a_payload_the_telemetry_rule_delivered_is_never_a_lifecycle_event() -> None:
    # Given a lifecycle event's shape, as IoT Core sends it and as a device could publish
    # it on its telemetry topic (the telemetry rule adds deviceId and receivedAt)
    shaped = lifecycle_event(PUMP, "connected", 99, NOW)

    # Then only the first is one
    assert is_lifecycle_event(shaped)
    assert not is_lifecycle_event(shaped | {"deviceId": "pump-18", "receivedAt": NOW})
    assert not is_lifecycle_event(shaped | {"deviceId": "pump-18"})
    assert not is_lifecycle_event(shaped | {"receivedAt": NOW})
    assert not is_lifecycle_event({**shaped, "eventType": "subscribed"})


@pytest.mark.parametrize(
    ("recorded", "incoming", "applies"),
    [
        (None, ("connected", 3), True),
        (("connected", 3), ("disconnected", 3), True),
        (("disconnected", 3), ("connected", 3), False),
        (("connected", 3), ("connected", 3), False),
        (("disconnected", 3), ("disconnected", 3), False),
        (("connected", 3), ("connected", 2), False),
        (("connected", 3), ("disconnected", 2), False),
        (("disconnected", 3), ("connected", 4), True),
        (("connected", 3), ("disconnected", 4), True),
    ],
    ids=[
        "first",
        "disconnect-of-the-session",
        "connect-after-its-disconnect",
        "duplicate-connect",
        "duplicate-disconnect",
        "older-session-connect",
        "older-session-disconnect",
        "new-session",
        "new-session-disconnect-first",
    ],
)
def test_version_numbers_order_the_events(
    recorded: tuple[str, int] | None, incoming: tuple[str, int], *, applies: bool
) -> None:
    # Given a recorded event (or none) and an incoming one
    current = None
    if recorded is not None:
        current = apply_event(None, event(recorded[0], recorded[1], NOW))

    # When the incoming one is applied
    after = apply_event(current, event(incoming[0], incoming[1], NOW + MINUTE))

    # Then it counts or it is stale (or a duplicate) exactly as the versions say
    assert (after is not None) is applies
    if after is not None:
        assert (after.version, after.connected) == (incoming[1], incoming[0] == "connected")


@given(delivered_histories())
def test_any_order_and_any_repetition_ends_where_in_order_delivery_ends(
    delivered: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    # Given a client's sessions, and the same events delivered in any order, some repeated
    history, shuffled = delivered

    # When each delivery is applied
    def final(events: list[dict[str, Any]]) -> Connection | None:
        connection = None
        for raw in events:
            connection = apply_event(connection, parse_lifecycle_event(raw)) or connection
        return connection

    # Then both end in the same connection state
    assert final(shuffled) == final(history)


@given(delivered_histories())
def test_whatever_the_order_an_offline_alert_resolves_once_and_is_there_iff_offline(
    delivered: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    # Given a pump whose offline alert is active (an earlier session, version 0, lost)
    _, shuffled = delivered
    presence = Presence(Connection(0, connected=False, time_ms=NOW - 10 * MINUTE))
    state = raised_offline(presence, NOW - 5 * MINUTE)

    # When its events arrive in any order, some twice, then a sweep runs much later
    resolved = 0
    for raw in shuffled:
        decision = on_lifecycle(PUMP, state, presence, parse_lifecycle_event(raw), RULES)
        state, presence = decision.evaluation.state, decision.presence
        resolved += sum(t.status is Status.RESOLVED for t in decision.evaluation.transitions)
    assert presence.connection is not None
    later = presence.connection.time_ms + 10 * MINUTE
    swept = sweep_device(PUMP, state, presence, RULES, later).evaluation.state

    # Then the alert resolved at most once, and is active exactly when the last
    # session is over (its disconnect counted)
    assert resolved <= 1
    assert (swept.get(OFFLINE_KEY, AlertState()).severity is Severity.WARNING) is (
        not presence.connection.connected
    )


# ---------------------------------------------------------------- offline alerts


def disconnected_at(at_ms: int, version: int = 1) -> Presence:
    return Presence(Connection(version, connected=False, time_ms=at_ms))


def raised_offline(presence: Presence, at_ms: int) -> dict[StateKey, AlertState]:
    decision = sweep_device(PUMP, {}, presence, RULES, at_ms)
    assert [t.status for t in decision.evaluation.transitions] == [Status.RAISED]
    return decision.evaluation.state


def test_a_disconnected_device_is_raised_by_the_first_sweep_at_or_after_its_window() -> None:
    # Given a pump disconnected at 10:00 under a 2-minute offline rule
    presence = disconnected_at(NOW)

    # When sweeps run every 30 seconds
    raised: list[Transition] = []
    state: dict[StateKey, AlertState] = {}
    for step in range(1, 10):
        decision = sweep_device(PUMP, state, presence, RULES, NOW + step * 30 * SECOND)
        state = decision.evaluation.state
        raised += decision.evaluation.transitions

    # Then one RAISED, by the sweep of 10:02 (not the one of 10:01:30), as the issue says
    (up,) = raised
    assert up.to_json() == {
        "alertId": up.alert_id,
        "status": "RAISED",
        "severity": "WARNING",
        "previousSeverity": "OK",
        "deviceId": PUMP,
        "sensorId": "$device",
        "rule": "pump-connectivity",
        "value": None,
        "threshold": 120.0,
        "direction": "offline",
        "time": iso_utc(NOW + 2 * MINUTE),
        "since": iso_utc(NOW + 2 * MINUTE),
    }
    assert subject(up) == "[WARNING] pump-17 offline for 2m (pump-connectivity)"
    assert attributes(up) == {
        "severity": {"DataType": "String", "StringValue": "WARNING"},
        "status": {"DataType": "String", "StringValue": "RAISED"},
        "deviceId": {"DataType": "String", "StringValue": PUMP},
        "rule": {"DataType": "String", "StringValue": "pump-connectivity"},
    }
    # and the record is due at exactly that moment, so that the sweep finds it
    settled_presence = settled(PUMP, ({}, presence), ({}, presence), RULES, NOW)
    assert DeviceRecord(PUMP, presence=settled_presence).due_ms() == NOW + 2 * MINUTE


def test_an_offline_alert_is_resolved_by_a_connect_and_mirrored_until_then() -> None:
    # Given a pump raised offline
    presence = disconnected_at(NOW)
    state = raised_offline(presence, NOW + 2 * MINUTE)
    (sensor, entry), *_ = mirror_entries(state)
    assert (sensor, entry["direction"], entry["severity"]) == ("$device", OFFLINE, "WARNING")

    # When it connects again (a new session)
    decision = on_lifecycle(PUMP, state, presence, event("connected", 2, NOW + 9 * MINUTE), RULES)

    # Then the alert resolves at the connect's time, and the mirror clears
    (down,) = decision.evaluation.transitions
    assert (down.status, down.severity, down.previous_severity) == (
        Status.RESOLVED,
        Severity.OK,
        Severity.WARNING,
    )
    assert (down.time_ms, down.direction, down.sensor_id) == (NOW + 9 * MINUTE, OFFLINE, "$device")
    assert down.alert_id == state[OFFLINE_KEY].alert_id
    assert subject(down) == "[WARNING] pump-17 back online (pump-connectivity)"
    assert mirror_entries(decision.evaluation.state) == []


def test_an_offline_alert_is_resolved_by_the_next_reading_but_not_by_an_older_one() -> None:
    # Given a pump raised offline (disconnected at 10:00)
    presence = disconnected_at(NOW)
    state = raised_offline(presence, NOW + 2 * MINUTE)
    reading = Reading(PUMP, "temp-1", 60.0, NOW - MINUTE, "temperature", "C")
    evaluation = evaluate([reading], state, RULES, NOW + 3 * MINUTE)

    # When a reading IoT Core received before the disconnect is processed late (a retry)
    late = on_heard(PUMP, evaluation, presence, RULES, NOW - MINUTE)
    # Then nothing about the alert changes
    assert [t.direction for t in late.evaluation.transitions] == []
    assert late.presence == presence

    # When a reading received after the disconnect arrives
    back = on_heard(PUMP, evaluation, presence, RULES, NOW + 3 * MINUTE)

    # Then the alert resolves, and the device is no longer offline (nothing re-raises it)
    assert [(t.status, t.direction) for t in back.evaluation.transitions] == [
        (Status.RESOLVED, OFFLINE)
    ]
    assert back.presence.offline_since_ms is None
    again = sweep_device(PUMP, back.evaluation.state, back.presence, RULES, NOW + 30 * MINUTE)
    assert [t.direction for t in again.evaluation.transitions] == [NODATA]


def test_a_reading_of_a_connected_device_changes_nothing_of_its_presence() -> None:
    # Given a connected pump and a reading (steady state)
    presence = Presence(Connection(4, connected=True, time_ms=NOW))
    evaluation = Evaluation({})

    # When its reading arrives, Then its presence is the same object: no write for it
    assert on_heard(PUMP, evaluation, presence, RULES, NOW + MINUTE).presence is presence


def test_no_no_data_alert_while_disconnected_and_windows_count_from_the_reconnect() -> None:
    # Given a pump tracked by a 5-minute heartbeat, heard at 10:00, disconnected at 10:01
    tracked = evaluate([Reading(PUMP, "temp-1", 61.0, NOW)], {}, RULES, NOW).state
    presence = disconnected_at(NOW + MINUTE)

    # When sweeps run every minute for an hour while it is disconnected
    transitions: list[Transition] = []
    state = tracked
    for minute in range(2, 60):
        decision = sweep_device(PUMP, state, presence, RULES, NOW + minute * MINUTE)
        state = decision.evaluation.state
        transitions += decision.evaluation.transitions

    # Then only its offline alert is raised: no no-data alert, and none is due
    assert [(t.status, t.direction) for t in transitions] == [(Status.RAISED, OFFLINE)]
    waiting = settled(PUMP, (state, presence), (state, presence), RULES, NOW + 59 * MINUTE)
    assert DeviceRecord(PUMP, state=state, presence=waiting).due_ms() is None

    # When it reconnects at 11:00 and then sends nothing
    reconnect = NOW + 60 * MINUTE
    decision = on_lifecycle(PUMP, state, presence, event("connected", 2, reconnect), RULES)
    state, presence = decision.evaluation.state, decision.presence
    record = DeviceRecord(PUMP, state=state, presence=presence)
    at_5m = sweep_device(PUMP, state, presence, RULES, reconnect + 5 * MINUTE - 1)
    at_window = sweep_device(PUMP, state, presence, RULES, reconnect + 5 * MINUTE)

    # Then its no-data window counts from the reconnect: silent a whole window after it
    assert record.due_ms() == reconnect + 5 * MINUTE
    assert at_5m.evaluation.transitions == []
    assert [(t.status, t.direction) for t in at_window.evaluation.transitions] == [
        (Status.RAISED, NODATA)
    ]


def test_an_active_no_data_alert_is_left_as_it_is_by_a_disconnect() -> None:
    # Given a pump already raised silent
    tracked = evaluate([Reading(PUMP, "temp-1", 61.0, NOW)], {}, RULES, NOW).state
    silent = sweep_device(PUMP, tracked, Presence(), RULES, NOW + 10 * MINUTE).evaluation.state
    assert silent[("temp-1", "pump-heartbeat")].silent

    # When it disconnects, and sweeps run
    presence = disconnected_at(NOW + 11 * MINUTE)
    decision = sweep_device(PUMP, silent, presence, RULES, NOW + 20 * MINUTE)

    # Then the no-data alert stays, beside the offline one
    assert decision.evaluation.state[("temp-1", "pump-heartbeat")].silent
    assert [t.direction for t in decision.evaluation.transitions] == [OFFLINE]


def test_operators_act_on_an_offline_alert_like_any_other() -> None:
    # Given a pump raised offline
    presence = disconnected_at(NOW)
    state = raised_offline(presence, NOW + 2 * MINUTE)
    raw = {
        "action": "acknowledge",
        "deviceId": PUMP,
        "sensorId": "$device",
        "rule": "pump-connectivity",
        "by": "maria@plant.example",
    }

    # When an operator acknowledges it
    action = parse_action(raw, NOW + 3 * MINUTE)
    acked = apply_action(PUMP, state, action, RULES, NOW + 3 * MINUTE)

    # Then the view shows the offline episode, acknowledged
    view = key_view(PUMP, action.key, acked.evaluation.state[OFFLINE_KEY])
    assert (view["sensorId"], view["direction"], view["severity"]) == (
        "$device",
        OFFLINE,
        "WARNING",
    )
    assert view["acknowledged"] == {"by": "maria@plant.example", "at": iso_utc(NOW + 3 * MINUTE)}
    (told,) = acked.evaluation.transitions
    assert subject(told) == (
        "[WARNING] pump-17 offline alert acknowledged by maria@plant.example (pump-connectivity)"
    )

    # When another resets it while the pump is still away
    reset = Action(Kind.RESET, PUMP, DEVICE_SENSOR, "pump-connectivity", "joe")
    after = apply_action(PUMP, acked.evaluation.state, reset, RULES, NOW + 4 * MINUTE)
    state = after.evaluation.state

    # Then it is offline again only a whole window after the reset
    early = sweep_device(PUMP, state, presence, RULES, NOW + 6 * MINUTE - 1)
    due = sweep_device(PUMP, state, presence, RULES, NOW + 6 * MINUTE)
    assert early.evaluation.transitions == []
    assert [t.status for t in due.evaluation.transitions] == [Status.RAISED]


def test_a_snoozed_offline_alert_is_written_muted_and_caught_up_when_the_snooze_ends() -> None:
    # Given a pump snoozed for maintenance until 11:00, then disconnected at 10:01
    snooze = Action(
        Kind.SNOOZE, PUMP, DEVICE_SENSOR, "pump-connectivity", "joe", until_ms=NOW + 60 * MINUTE
    )
    state = apply_action(PUMP, {}, snooze, RULES, NOW).evaluation.state
    presence = disconnected_at(NOW + MINUTE)

    # When the sweep raises its offline alert at 10:05, and the snooze ends at 11:00
    raised = finalize(
        sweep_device(PUMP, state, presence, RULES, NOW + 5 * MINUTE).evaluation,
        RULES,
        NOW + 5 * MINUTE,
    )
    caught_up = timers(PUMP, raised.state, RULES, NOW + 60 * MINUTE)

    # Then the raise is history only (muted), and operators hear of it once the snooze ends
    assert [(t.status, t.muted) for t in raised.transitions] == [(Status.RAISED, True)]
    assert [(t.status, t.direction, t.alert_id) for t in caught_up.transitions] == [
        (Status.RAISED, OFFLINE, raised.state[OFFLINE_KEY].alert_id)
    ]


def test_a_disabled_offline_alert_is_not_raised_and_no_data_alerts_tell_instead() -> None:
    # Given a pump whose offline alert an operator disabled, then heard, then disconnected
    disable = Action(Kind.DISABLE, PUMP, DEVICE_SENSOR, "pump-connectivity", "joe")
    state = apply_action(PUMP, {}, disable, RULES, NOW).evaluation.state
    state = evaluate([Reading(PUMP, "temp-1", 61.0, NOW)], state, RULES, NOW).state
    presence = disconnected_at(NOW + MINUTE)

    # When the sweep runs long after
    decision = sweep_device(PUMP, state, presence, RULES, NOW + 30 * MINUTE)

    # Then no offline alert, and the sensor's silence is raised after all
    assert [t.direction for t in decision.evaluation.transitions] == [NODATA]


# ---------------------------------------------------------------- gateways, in the core


def test_a_gateway_is_down_while_disconnected_or_silent_and_back_from_its_return() -> None:
    # Given a gateway tracked by its heartbeat
    tracked = evaluate([Reading(GATEWAY, "link", 1.0, NOW)], {}, RULES, NOW).state

    # Then it is up while heard, down once its silence is due (before the sweep raises
    # it), down while disconnected, and back from its reconnect
    assert gateway_view(GATEWAY, tracked, Presence(), RULES, NOW + MINUTE) == GatewayView()
    silent = gateway_view(GATEWAY, tracked, Presence(), RULES, NOW + 8 * MINUTE)
    assert silent.down_since_ms == NOW + int(2.5 * MINUTE)
    away = disconnected_at(NOW + MINUTE)
    assert gateway_view(GATEWAY, tracked, away, RULES, NOW + 2 * MINUTE).down_since_ms == (
        NOW + MINUTE
    )
    decision = on_lifecycle(
        GATEWAY, tracked, away, event("connected", 2, NOW + 3 * MINUTE, GATEWAY), RULES
    )
    back = settled(
        GATEWAY,
        (tracked, away),
        (decision.evaluation.state, decision.presence),
        RULES,
        NOW + 4 * MINUTE,
    )
    assert gateway_view(GATEWAY, tracked, back, RULES, NOW + 4 * MINUTE) == GatewayView(
        returned_ms=NOW + 3 * MINUTE
    )
    assert combined([]) is None
    assert combined([GatewayView(returned_ms=1), GatewayView(down_since_ms=5)]) == GatewayView(
        down_since_ms=5
    )


def test_a_member_is_held_while_its_gateway_is_down_and_rechecked_a_window_later() -> None:
    # Given a member heard at 10:00 and disconnected at 10:01, its gateway down since 10:01
    member = MEMBERS[0]
    tracked = evaluate([Reading(member, "temp-1", 20.0, NOW)], {}, RULES, NOW).state
    presence = Presence(Connection(1, connected=False, time_ms=NOW + MINUTE))
    down = GatewayView(down_since_ms=NOW + MINUTE)

    # When the sweep of 10:30 looks at it
    held = sweep_device(member, tracked, presence, RULES, NOW + 30 * MINUTE, down)

    # Then nothing is raised, and it is due again a window later, not at every sweep
    assert held.evaluation.transitions == []
    record = DeviceRecord(
        member,
        state=held.evaluation.state,
        presence=settled(
            member, (tracked, presence), (held.evaluation.state, held.presence), RULES, NOW
        ),
    )
    assert record.due_ms() == NOW + 32 * MINUTE


def test_threshold_alerts_of_members_are_never_held() -> None:
    # Given a member whose gateway is down, and a hot reading that arrives all the same
    member = MEMBERS[0]
    hot = Reading(member, "temp-1", 95.0, NOW, "temperature", "C")

    # When it is evaluated (readings are never held)
    result = evaluate([hot], {}, RULES, NOW)

    # Then it is raised as usual
    assert [(t.status, t.severity, t.direction) for t in result.transitions] == [
        (Status.RAISED, Severity.CRITICAL, "above")
    ]


# ---------------------------------------------------------------- the state store


def test_the_record_keeps_its_presence_and_files_members_under_their_gateway() -> None:
    # Given a member's record with a connection, held since a sweep, and an old item
    # written before presence existed
    with local_stack([], NOW) as aws:
        client = boto3.client("dynamodb")
        store = DynamoStateStore(aws.stack.state_table, client)
        presence = Presence(Connection(3, connected=False, time_ms=NOW, check_ms=NOW + MINUTE), NOW)
        saved = store.save(DeviceRecord(MEMBERS[0], presence=presence, gateway=GATEWAY))
        client.put_item(
            TableName=aws.stack.state_table,
            Item={"deviceId": {"S": "old-1"}, "version": {"N": "1"}, "alerts": {"S": "{}"}},
        )

        # When they are read back
        loaded = store.load_many([MEMBERS[0], "old-1"])
        item = aws.state_item(MEMBERS[0]) or {}

    # Then the presence is as written, the old item loads without one, and the member is
    # filed under its gateway, heard at 0 (disconnected), due when its offline check is
    assert loaded[MEMBERS[0]].presence == presence
    assert loaded[MEMBERS[0]].version == saved.version == 1
    assert loaded["old-1"].presence == Presence()
    assert (item["gateway"], item["heardAt"]) == ({"S": GATEWAY}, {"N": "0"})
    assert item["dueAt"] == {"N": str(NOW + MINUTE)}


def test_presence_and_the_gateway_index_keys_count_against_the_item_budget() -> None:
    # Given a small item budget, a member's record with many quiet entries and its
    # presence, and another too large for one item
    quiet = {(f"quiet-{i:03d}", "r"): AlertState(last_ms=NOW + i) for i in range(200)}
    active = {
        (f"s{i:03d}", "r"): AlertState(Severity.WARNING, "above", "a" * 32, NOW, 80.0, NOW)
        for i in range(100)
    }
    presence = Presence(Connection(3, connected=True, time_ms=NOW), NOW, NOW - MINUTE)
    with local_stack([], NOW) as aws:
        client = boto3.client("dynamodb")
        store = DynamoStateStore(aws.stack.state_table, client, item_budget=4_000)
        sizes: list[int] = []

        def measure(params: dict[str, Any], **_: Any) -> None:
            items = [params["Item"]] if "Item" in params else []
            items += [a["Put"]["Item"] for a in params.get("TransactItems", []) if "Put" in a]
            sizes.extend(item_bytes(i) for i in items)

        client.meta.events.register("before-parameter-build.dynamodb.PutItem", measure)
        client.meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", measure)

        # When both are saved and read back
        store.save(DeviceRecord(MEMBERS[0], state=quiet, presence=presence, gateway=GATEWAY))
        store.save(DeviceRecord(MEMBERS[1], state=active, presence=presence, gateway=GATEWAY))
        loaded = store.load_many(MEMBERS[:2])

    # Then every item fits the budget, and the presence and gateway came back whole
    assert max(sizes) <= 4_000
    assert [loaded[m].presence for m in MEMBERS[:2]] == [presence, presence]
    assert loaded[MEMBERS[1]].parts > 1
    assert loaded[MEMBERS[1]].state == active
    assert {loaded[m].gateway for m in MEMBERS[:2]} == {GATEWAY}


def test_counting_a_gateways_members_pages_through_the_index_and_fails_loudly() -> None:
    # Given DynamoDB answering the count in two pages, then failing
    client = boto3.client("dynamodb", region_name="us-east-1")
    store = DynamoStateStore("state", client)
    expected = {
        "TableName": "state",
        "IndexName": GATEWAY_INDEX,
        "KeyConditionExpression": "gateway = :g AND heardAt < :t",
        "ExpressionAttributeValues": {":g": {"S": GATEWAY}, ":t": {"N": str(NOW)}},
        "Select": "COUNT",
    }
    last = {"deviceId": {"S": "line3-07"}, "gateway": {"S": GATEWAY}, "heardAt": {"N": "0"}}
    with Stubber(client) as stub:
        stub.add_response("query", {"Count": 7, "LastEvaluatedKey": last}, expected)
        stub.add_response("query", {"Count": 5}, expected | {"ExclusiveStartKey": last})
        stub.add_client_error(
            "query", "ProvisionedThroughputExceededException", http_status_code=400
        )

        # When the members are counted twice
        counted = store.count_members(GATEWAY, NOW)
        with pytest.raises(DependencyError) as failed:
            store.count_members(GATEWAY, NOW)

    # Then the pages add up, and a failure is a transient dependency error (Lambda retries)
    assert counted == 12
    assert failed.value.transient


def test_the_local_state_table_has_the_templates_gateway_index() -> None:
    # Given the state table as the tests' local AWS builds it (from template.yaml)
    indexes = {i["IndexName"]: i for i in state_table_shape()["GlobalSecondaryIndexes"]}

    # Then the gateway index is there: keyed by gateway and heardAt, keys only
    assert indexes[GATEWAY_INDEX]["KeySchema"] == [
        {"AttributeName": "gateway", "KeyType": "HASH"},
        {"AttributeName": "heardAt", "KeyType": "RANGE"},
    ]
    assert indexes[GATEWAY_INDEX]["Projection"] == {"ProjectionType": "KEYS_ONLY"}


# ---------------------------------------------------------------- end to end


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[LocalAws]:
    (tmp_path / "rules.yaml").write_text(RULES_TEXT)
    with local_stack([PUMP, GATEWAY, *MEMBERS], NOW) as stack:
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


def sweep_until(aws: LocalAws, rt: handler.Runtime, start_ms: int, end_ms: int) -> list[Any]:
    """Sweeps every minute from `start_ms` to `end_ms`; what operators received."""
    received: list[dict[str, Any]] = []
    at = start_ms
    while at <= end_ms:
        aws.now_ms = at
        handler.handle(scheduled(at), rt)
        received += aws.alerts()
        at += MINUTE
    return received


def connectivity(aws: LocalAws, rt: handler.Runtime, raw: dict[str, Any]) -> dict[str, Any]:
    aws.now_ms = max(aws.now_ms, raw["timestamp"])
    return handler.handle(raw, rt)


def test_a_device_offline_reaches_operators_everywhere_they_look_and_returns(
    aws: LocalAws,
) -> None:
    # Given a pump that connected, reported, then lost its connection at 10:01
    rt, clients = runtime(aws)
    connectivity(aws, rt, lifecycle_event(PUMP, "connected", 1, NOW - MINUTE))
    handler.handle(message(PUMP, NOW, ("temp-1", 61.0)), rt)
    connectivity(aws, rt, lifecycle_event(PUMP, "disconnected", 1, NOW + MINUTE))
    calls = record_calls(clients)

    # When sweeps run every minute until 10:10
    received = sweep_until(aws, rt, NOW + MINUTE, NOW + 10 * MINUTE)

    # Then one RAISED, by the sweep of 10:03, on SNS, in the history and the shadow
    (raised,) = received
    assert {k: raised[k] for k in ("status", "deviceId", "sensorId", "direction", "value")} == {
        "status": "RAISED",
        "deviceId": PUMP,
        "sensorId": "$device",
        "direction": "offline",
        "value": None,
    }
    assert (raised["threshold"], raised["time"]) == (120.0, iso_utc(NOW + 3 * MINUTE))
    assert raised["_attributes"] == {
        "severity": "WARNING",
        "status": "RAISED",
        "deviceId": PUMP,
        "rule": "pump-connectivity",
    }
    (published,) = calls.params("sns", "Publish")
    assert published["Subject"] == "[WARNING] pump-17 offline for 2m (pump-connectivity)"
    history = [r for r in aws.records("alert") if r["MeasureName"] == "alert"]
    assert [{d["Name"]: d["Value"] for d in r["Dimensions"]}["sensorId"] for r in history] == [
        "$device"
    ]
    entry = aws.shadow(PUMP)["alerts"]["$device"]
    assert (entry["rule"], entry["direction"], entry["alertId"]) == (
        "pump-connectivity",
        "offline",
        raised["alertId"],
    )

    # When an operator acknowledges it through the actions function
    aws.now_ms = NOW + 11 * MINUTE
    answer = actions.handle_action(
        {
            "action": "acknowledge",
            "deviceId": PUMP,
            "sensorId": "$device",
            "rule": "pump-connectivity",
            "by": "maria@plant.example",
        },
        rt,
    )
    assert (answer["applied"], answer["state"]["direction"]) == (True, "offline")
    assert [a["status"] for a in aws.alerts()] == ["ACKNOWLEDGED"]

    # When it reconnects (a new session) at 10:20
    connectivity(aws, rt, lifecycle_event(PUMP, "connected", 2, NOW + 20 * MINUTE))

    # Then the alert resolves, at the connect's time, and the shadow clears
    (back,) = aws.alerts()
    assert (back["status"], back["alertId"], back["time"]) == (
        "RESOLVED",
        raised["alertId"],
        iso_utc(NOW + 20 * MINUTE),
    )
    assert "$device" not in aws.shadow(PUMP)["alerts"]


def test_out_of_order_duplicate_and_stale_events_change_nothing_and_cost_no_write(
    aws: LocalAws,
) -> None:
    # Given a pump whose second session's disconnect arrived first (out of order)
    rt, clients = runtime(aws)
    connectivity(aws, rt, lifecycle_event(PUMP, "disconnected", 2, NOW + MINUTE))
    item = aws.state_item(PUMP) or {}
    calls = record_calls(clients)

    # When that session's connect, the first session's events and a duplicate arrive
    for raw in (
        lifecycle_event(PUMP, "connected", 2, NOW),
        lifecycle_event(PUMP, "connected", 1, NOW - 10 * MINUTE),
        lifecycle_event(PUMP, "disconnected", 1, NOW - 5 * MINUTE),
        lifecycle_event(PUMP, "disconnected", 2, NOW + MINUTE),
    ):
        connectivity(aws, rt, raw)

    # Then none is applied: no write, the record unchanged, and the pump is raised offline
    # two minutes after its last disconnect
    assert calls.count("dynamodb", "PutItem") == 0
    assert aws.state_item(PUMP) == item
    received = sweep_until(aws, rt, NOW + 2 * MINUTE, NOW + 4 * MINUTE)
    assert [(a["status"], a["time"]) for a in received] == [("RAISED", iso_utc(NOW + 3 * MINUTE))]


def test_a_connect_that_commits_while_the_sweep_raises_wins_and_nothing_is_raised(
    aws: LocalAws,
) -> None:
    # Given a pump disconnected at 10:01, and its reconnect committed just before the
    # sweep of 10:05 writes its offline alert
    sweeper, clients = runtime(aws)
    device, _ = runtime(aws)
    connectivity(aws, device, lifecycle_event(PUMP, "disconnected", 1, NOW + MINUTE))
    aws.now_ms = NOW + 5 * MINUTE

    def reconnect_first() -> None:
        handler.handle(lifecycle_event(PUMP, "connected", 2, NOW + 4 * MINUTE), device)

    before(clients.dynamodb, "PutItem", reconnect_first)

    # When the sweep runs
    handler.handle(scheduled(NOW + 5 * MINUTE), sweeper)

    # Then it re-read the record, found the pump connected, and raised nothing
    assert aws.alerts() == []
    assert sweep_until(aws, sweeper, NOW + 6 * MINUTE, NOW + 8 * MINUTE) == []


def test_a_connect_retried_after_a_failed_publish_resolves_once(aws: LocalAws) -> None:
    # Given a pump raised offline, and SNS failing the next publish
    rt, clients = runtime(aws)
    connectivity(aws, rt, lifecycle_event(PUMP, "disconnected", 1, NOW + MINUTE))
    (raised,) = sweep_until(aws, rt, NOW + 2 * MINUTE, NOW + 4 * MINUTE)
    fail(clients.sns, "Publish", "InternalError")
    connect = lifecycle_event(PUMP, "connected", 2, NOW + 10 * MINUTE)

    # When its connect fails to publish, and Lambda delivers the event again (twice)
    with pytest.raises(DependencyError):
        connectivity(aws, rt, connect)
    connectivity(aws, rt, connect)
    connectivity(aws, rt, connect)

    # Then operators heard of its return once, in the alert's episode
    assert [(a["status"], a["alertId"]) for a in aws.alerts()] == [("RESOLVED", raised["alertId"])]


def test_a_malformed_lifecycle_event_goes_to_the_dead_letter_queue(aws: LocalAws) -> None:
    # Given a lifecycle event whose clientId is not a thing name, and one with no version
    rt, _ = runtime(aws)
    bad_client = lifecycle_event("pump 17", "disconnected", 1, NOW)
    no_version = lifecycle_event(PUMP, "connected", 1, NOW)
    del no_version["versionNumber"]

    # When the connectivity rule hands them over
    for raw in (bad_client, no_version):
        handler.handle(raw, rt)

    # Then each is quarantined with its reason, and nothing else happens
    letters = aws.dead_letters()
    assert [(d["source"], d["field"], d["code"]) for d in letters] == [
        ("lifecycle", "clientId", "invalid_format"),
        ("lifecycle", "versionNumber", "missing"),
    ]
    assert [d["payload"] for d in letters] == [bad_client, no_version]
    assert aws.state_item(PUMP) is None


def test_a_lifecycle_shaped_payload_on_the_telemetry_topic_is_telemetry(aws: LocalAws) -> None:
    # Given a pump reporting, and a device publishing a disconnect's shape on its
    # telemetry topic (the rule adds the topic's deviceId and receivedAt)
    rt, _ = runtime(aws)
    connectivity(aws, rt, lifecycle_event(PUMP, "connected", 5, NOW))
    forged = lifecycle_event(PUMP, "disconnected", 9, NOW + MINUTE) | {
        "deviceId": "pump-18",
        "receivedAt": NOW + MINUTE,
    }

    # When the telemetry rule hands it over
    aws.now_ms = NOW + MINUTE
    handler.handle(forged, rt)

    # Then it is pump-18's message (no data: quarantined as such), and pump-17 stays
    # connected: no offline alert, ever
    assert [(d["source"], d["field"], d["deviceId"]) for d in aws.dead_letters()] == [
        ("validation", "data", "pump-18")
    ]
    assert sweep_until(aws, rt, NOW + 2 * MINUTE, NOW + 5 * MINUTE) == []


def test_a_device_no_rule_follows_costs_no_read_and_no_write(aws: LocalAws, tmp_path: Path) -> None:
    # Given a compressor no offline rule watches and no gateway lists
    rt, clients = runtime(aws)
    calls = record_calls(clients)

    # When its events arrive
    for raw in (
        lifecycle_event("compressor-2", "connected", 1, NOW),
        lifecycle_event("compressor-2", "disconnected", 1, NOW + MINUTE),
    ):
        connectivity(aws, rt, raw)

    # Then nothing is read or written
    assert [c for c in calls.calls if c[0] == "dynamodb"] == []


def test_a_reading_resolves_the_offline_alert_and_a_reconnect_restarts_no_data_windows(
    aws: LocalAws,
) -> None:
    # Given a pump raised offline at 10:03 (disconnected at 10:01, heard at 10:00)
    rt, _ = runtime(aws)
    connectivity(aws, rt, lifecycle_event(PUMP, "connected", 1, NOW - MINUTE))
    handler.handle(message(PUMP, NOW, ("temp-1", 61.0)), rt)
    connectivity(aws, rt, lifecycle_event(PUMP, "disconnected", 1, NOW + MINUTE))
    (raised,) = sweep_until(aws, rt, NOW + 2 * MINUTE, NOW + 30 * MINUTE)
    assert raised["direction"] == "offline"

    # When it reports at 10:31 (its connect event still on its way)
    aws.now_ms = NOW + 31 * MINUTE
    handler.handle(message(PUMP, NOW + 31 * MINUTE, ("temp-1", 62.0)), rt)

    # Then its offline alert resolves, and its connect, arriving later, says nothing
    assert [(a["status"], a["direction"]) for a in aws.alerts()] == [("RESOLVED", "offline")]
    connectivity(aws, rt, lifecycle_event(PUMP, "connected", 2, NOW + 30 * MINUTE))
    assert aws.alerts() == []

    # When it then falls silent: raised a whole window later, as no-data
    received = sweep_until(aws, rt, NOW + 32 * MINUTE, NOW + 45 * MINUTE)
    assert [(a["status"], a["direction"]) for a in received] == [("RAISED", "nodata")]


# ---------------------------------------------------------------- gateways, end to end


def start_line(aws: LocalAws, rt: handler.Runtime, at_ms: int) -> None:
    """The gateway and its 20 members connect and report."""
    for device in (GATEWAY, *MEMBERS):
        connectivity(aws, rt, lifecycle_event(device, "connected", 1, at_ms))
        handler.handle(message(device, at_ms, ("temp-1", 20.0)), rt)


def test_a_gateway_outage_reaches_operators_as_one_message_with_its_members(
    aws: LocalAws,
) -> None:
    # Given a gateway and its 20 members, connected and reporting
    rt, clients = runtime(aws)
    start_line(aws, rt, NOW)

    # When the gateway and every member lose their connection at 10:01, for an hour
    for device in (GATEWAY, *MEMBERS):
        connectivity(aws, rt, lifecycle_event(device, "disconnected", 1, NOW + MINUTE))
    calls = record_calls(clients)
    received = sweep_until(aws, rt, NOW + 2 * MINUTE, NOW + 60 * MINUTE)

    # Then operators received one message: the gateway's, CRITICAL, with its 20 members
    (raised,) = received
    assert (raised["deviceId"], raised["status"], raised["direction"]) == (
        GATEWAY,
        "RAISED",
        "offline",
    )
    assert (raised["severity"], raised["members"]) == ("CRITICAL", 20)
    # counted by DynamoDB on the gateway index, in one query
    (count,) = [p for p in calls.params("dynamodb", "Query") if p.get("IndexName") == "gateway"]
    assert count["Select"] == "COUNT"
    # and no member was swept at every sweep: each is looked at once per window
    swept = [
        k["deviceId"]["S"]
        for p in calls.params("dynamodb", "BatchGetItem")
        for t in p["RequestItems"].values()
        for k in t["Keys"]
    ]
    assert swept.count(MEMBERS[0]) <= 60 // 2 + 1

    # When the gateway and 19 members come back at 11:05, and line3-20 stays away
    back = NOW + 65 * MINUTE
    connectivity(aws, rt, lifecycle_event(GATEWAY, "connected", 2, back))
    handler.handle(message(GATEWAY, back, ("temp-1", 20.0)), rt)
    for member in MEMBERS[:-1]:
        connectivity(aws, rt, lifecycle_event(member, "connected", 2, back + SECOND))
        aws.now_ms = back + 2 * SECOND
        handler.handle(message(member, back + 2 * SECOND, ("temp-1", 21.0)), rt)

    # Then the members that report say nothing; the gateway resolves
    assert [(a["deviceId"], a["status"]) for a in aws.alerts()] == [(GATEWAY, "RESOLVED")]

    # When sweeps go on: line3-20 is raised a window after the gateway's return, not before
    received = sweep_until(aws, rt, back + MINUTE, back + 5 * MINUTE)
    assert [(a["deviceId"], a["direction"], a["time"]) for a in received] == [
        (MEMBERS[-1], "offline", iso_utc(back + 2 * MINUTE))
    ]
    assert "members" not in received[0]


def test_the_members_count_leaves_out_those_heard_since_the_gateway_went_down(
    aws: LocalAws,
) -> None:
    # Given a gateway and its members, connected and reporting at 10:00
    rt, _ = runtime(aws)
    start_line(aws, rt, NOW)

    # When the gateway drops at 10:01 with 15 members, while 5 report at 10:02:40 (over
    # another path), and the sweeps run
    connectivity(aws, rt, lifecycle_event(GATEWAY, "disconnected", 1, NOW + MINUTE))
    for member in MEMBERS[:15]:
        connectivity(aws, rt, lifecycle_event(member, "disconnected", 1, NOW + MINUTE))
    aws.now_ms = NOW + 160 * SECOND
    for member in MEMBERS[15:]:
        handler.handle(message(member, NOW + 160 * SECOND, ("temp-1", 20.0)), rt)
    received = sweep_until(aws, rt, NOW + 2 * MINUTE, NOW + 3 * MINUTE)

    # Then the gateway's RAISED counts the 15 that are down, not the 5 heard since
    assert [(a["deviceId"], a["members"]) for a in received] == [(GATEWAY, 15)]


def test_a_gateway_that_flaps_is_raised_once_and_holds_its_members_throughout(
    aws: LocalAws,
) -> None:
    # Given a gateway and its members, connected and reporting
    rt, _ = runtime(aws)
    start_line(aws, rt, NOW)

    # When the gateway drops at 10:01, is back at 10:02, drops again at 10:02:30 (all
    # within its 2-minute window), its members dropping at 10:01 and staying away
    received: list[dict[str, Any]] = []
    for member in MEMBERS:
        connectivity(aws, rt, lifecycle_event(member, "disconnected", 1, NOW + MINUTE))
    connectivity(aws, rt, lifecycle_event(GATEWAY, "disconnected", 1, NOW + MINUTE))
    received += sweep_until(aws, rt, NOW + MINUTE, NOW + 2 * MINUTE)
    connectivity(aws, rt, lifecycle_event(GATEWAY, "connected", 2, NOW + 2 * MINUTE))
    connectivity(aws, rt, lifecycle_event(GATEWAY, "disconnected", 2, NOW + 150 * SECOND))
    received += sweep_until(aws, rt, NOW + 3 * MINUTE, NOW + 30 * MINUTE)

    # Then the gateway is raised once, two minutes after its last drop, with its 20
    # members; none of them is raised
    assert [(a["deviceId"], a["status"], a["time"], a["members"]) for a in received] == [
        (GATEWAY, "RAISED", iso_utc(NOW + 5 * MINUTE), 20)
    ]


def test_a_silent_gateway_holds_its_silent_members_and_counts_them(aws: LocalAws) -> None:
    # Given a gateway and its members reporting (no lifecycle events: a gateway the
    # function knows only by its readings)
    rt, _ = runtime(aws)
    for device in (GATEWAY, *MEMBERS):
        handler.handle(message(device, NOW, ("temp-1", 20.0)), rt)

    # When all fall silent for an hour
    received = sweep_until(aws, rt, NOW + MINUTE, NOW + 60 * MINUTE)

    # Then only the gateway's no-data alert is raised, with its 20 members
    assert [(a["deviceId"], a["direction"], a["members"]) for a in received] == [
        (GATEWAY, "nodata", 20)
    ]

    # When the gateway reports again at 11:01, then a member; the rest stay silent
    aws.now_ms = NOW + 61 * MINUTE
    handler.handle(message(GATEWAY, NOW + 61 * MINUTE, ("temp-1", 20.0)), rt)
    handler.handle(message(MEMBERS[0], NOW + 61 * MINUTE, ("temp-1", 20.0)), rt)
    assert [(a["deviceId"], a["status"]) for a in aws.alerts()] == [(GATEWAY, "RESOLVED")]
    received = sweep_until(aws, rt, NOW + 62 * MINUTE, NOW + 67 * MINUTE)

    # Then the 19 still silent are raised by the first sweep a whole window after the
    # gateway's return, and the one that reported says nothing
    assert sorted(a["deviceId"] for a in received) == MEMBERS[1:]
    assert {(a["status"], a["direction"], a["time"]) for a in received} == {
        ("RAISED", "nodata", iso_utc(NOW + 66 * MINUTE))
    }


def test_threshold_alerts_of_members_are_published_during_the_outage(aws: LocalAws) -> None:
    # Given a gateway down (disconnected) and a member still reporting through another path
    rt, _ = runtime(aws)
    start_line(aws, rt, NOW)
    connectivity(aws, rt, lifecycle_event(GATEWAY, "disconnected", 1, NOW + MINUTE))
    sweep_until(aws, rt, NOW + 2 * MINUTE, NOW + 4 * MINUTE)

    # When the member sends a reading past its critical level
    aws.now_ms = NOW + 5 * MINUTE
    handler.handle(message(MEMBERS[3], NOW + 5 * MINUTE, ("temp-1", 95.0)), rt)

    # Then it reaches operators as usual
    assert [(a["deviceId"], a["status"], a["severity"]) for a in aws.alerts()] == [
        (MEMBERS[3], "RAISED", "CRITICAL")
    ]


def test_a_gateway_raise_retried_after_a_failed_count_raises_once(aws: LocalAws) -> None:
    # Given a gateway offline, and its members' count failing once
    rt, clients = runtime(aws)
    start_line(aws, rt, NOW)
    for device in (GATEWAY, *MEMBERS):
        connectivity(aws, rt, lifecycle_event(device, "disconnected", 1, NOW + MINUTE))
    aws.now_ms = NOW + 3 * MINUTE
    counted = [0]

    def count_fails(params: dict[str, Any], **_: Any) -> None:
        if params.get("IndexName") == "gateway" and counted[0] == 0:
            counted[0] += 1
            fail(clients.dynamodb, "Query", "InternalServerError")

    clients.dynamodb.meta.events.register("before-parameter-build.dynamodb.Query", count_fails)

    # When the sweep fails for that device, and is retried
    with pytest.raises(Exception, match="InternalServerError"):
        handler.handle(scheduled(NOW + 3 * MINUTE), rt)
    handler.handle(scheduled(NOW + 3 * MINUTE), rt)

    # Then the gateway was raised once, with its members
    assert [(a["deviceId"], a["members"]) for a in aws.alerts()] == [(GATEWAY, 20)]
