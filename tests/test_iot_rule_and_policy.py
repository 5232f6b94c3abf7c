"""The local rules engine's SQL and the device policy, as read from template.yaml."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry.local.iot_policy import Connection, IotPolicy, PolicyError
from telemetry.local.iot_sql import (
    BinaryOutput,
    MessageContext,
    RuleSqlError,
    basic_ingest_target,
    parse_rule_sql,
    parse_substitution,
    topic_filter_matches,
)
from telemetry.local.stack_template import StackTemplate, TemplateError, device_topic, rule_name
from telemetry.local.topic_rule import rule_definition

TEMPLATE_SQL = (
    "SELECT *, topic(3) AS deviceId, timestamp() AS receivedAt FROM 'dt/plant/+/telemetry'"
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


def context(topic: str, payload: Any, client_id: str = "pump-1", at: int = 42) -> MessageContext:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return MessageContext(topic, raw, client_id, at)


def test_the_templates_sql_adds_device_id_from_the_topic_and_the_arrival_time() -> None:
    # Given the template's rule SQL, rendered with the default parameters
    query = rule_definition(StackTemplate.load(resources=_resources())).query
    # When a device's message is evaluated
    out = query.evaluate(context("dt/plant/pump-1/telemetry", {"timestamp": 1, "data": []}))
    # Then the payload is kept and deviceId and receivedAt are added
    assert query.sql == TEMPLATE_SQL
    assert out == {"timestamp": 1, "data": [], "deviceId": "pump-1", "receivedAt": 42}


@given(payload=st.dictionaries(st.text(max_size=10), json_values, max_size=6), claim=json_values)
def test_the_topics_device_id_always_wins_over_the_payloads(
    payload: dict[str, Any], claim: Any
) -> None:
    # Given any payload object, claiming any deviceId
    query = parse_rule_sql(TEMPLATE_SQL)
    # When the rule evaluates it on pump-7's topic
    out = query.evaluate(context("dt/plant/pump-7/telemetry", {**payload, "deviceId": claim}))
    # Then deviceId is the topic's, and every other field is the payload's
    assert isinstance(out, dict)
    assert out["deviceId"] == "pump-7"
    assert {k: v for k, v in out.items() if k not in {"deviceId", "receivedAt"}} == {
        k: v for k, v in payload.items() if k not in {"deviceId", "receivedAt"}
    }


@pytest.mark.parametrize(
    "payload",
    [b"\x00binary", b'"a string"', b"[1, 2]", b"42", b'{"value": NaN}', b'{"v": -Infinity}'],
)
def test_a_payload_that_is_not_an_object_cannot_take_items(payload: bytes) -> None:
    # Given the template's SQL and a payload that is not a JSON object
    query = parse_rule_sql(TEMPLATE_SQL)
    # Then the output is the payload as sent, marked as binary
    assert query.evaluate(context("dt/plant/p/telemetry", payload)) == BinaryOutput(payload)


@pytest.mark.parametrize(
    ("sql", "topic", "payload", "expected"),
    [
        ("SELECT topic(9) AS x FROM 'a/b'", "a/b", {}, {}),
        ("SELECT topic() AS t, clientid() AS c FROM 'a/+'", "a/b", {}, {"t": "a/b", "c": "pump-1"}),
        ("SELECT * FROM 'a/#' WHERE topic(2) = clientid()", "a/pump-1", {"v": 1}, {"v": 1}),
        ("SELECT * FROM 'a/#' WHERE topic(2) = clientid()", "a/pump-2", {"v": 1}, None),
        ("SELECT * FROM 'a/#' WHERE v > 1 AND NOT (w = 'x')", "a/b", {"v": 2, "w": "y"}, ...),
        ("SELECT * FROM 'a/#' WHERE missing > 1", "a/b", {"v": 2}, None),
        ("SELECT * FROM 'a/#' WHERE NOT missing > 1", "a/b", {"v": 2}, None),
        ("SELECT * FROM 'a/#' WHERE v = 'x' OR v = 2", "a/b", {"v": 2}, ...),
        ("SELECT v, 'k' AS kind FROM 'a/b'", "a/b", {"v": 3}, {"v": 3, "kind": "k"}),
        ("SELECT a.b AS c FROM 'a/b'", "a/b", {"a": {"b": 5}}, {"c": 5}),
    ],
)
def test_the_sql_forms_evaluate_as_iot_sql_does(
    sql: str, topic: str, payload: Any, expected: Any
) -> None:
    # Given a rule SQL of a supported form
    query = parse_rule_sql(sql)
    # When it evaluates a message
    out = query.evaluate(context(topic, payload))
    # Then the output follows IoT SQL (undefined items left out, WHERE false on undefined)
    assert out == (payload if expected is ... else expected)


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("SELECT upper(color) AS c FROM 'a'", "upper(color)"),
        ("SELECT * FROM a/b", "cannot read the SQL"),
        ("SELECT * FROM topic", "quote the topic filter"),
        ("SELECT *, topic(3) FROM 'a'", "name it with AS"),
        ("SELECT * FROM 'a/#/b'", "not an MQTT topic filter"),
        ("SELECT * FROM 'a' GROUP BY x", "'GROUP' after the query"),
        ("SELECT * FROM 'a' WHERE x + 1 = 2", "cannot read the SQL"),
        ("SELECT topic(0) AS t FROM 'a'", "count from 1"),
        ("SELECT * FROM", "ends too early"),
    ],
)
def test_what_the_local_engine_cannot_evaluate_is_a_clear_error(sql: str, says: str) -> None:
    with pytest.raises(RuleSqlError) as error:
        parse_rule_sql(sql)
    assert says in str(error.value)


def test_only_sql_version_2016_03_23_is_spoken() -> None:
    with pytest.raises(RuleSqlError, match="2016-03-23"):
        parse_rule_sql(TEMPLATE_SQL, "2015-10-08")


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("dt/plant/+/telemetry", "dt/plant/p/telemetry", True),
        ("dt/plant/+/telemetry", "dt/plant/p/x/telemetry", False),
        ("dt/#", "dt/plant/p", True),
        ("#", "$aws/things/p/shadow", False),
        ("$aws/things/+/shadow", "$aws/things/p/shadow", True),
    ],
)
def test_topic_filters_match_as_mqtt_does(topic_filter: str, topic: str, *, matches: bool) -> None:
    assert topic_filter_matches(topic_filter, topic) is matches


def test_basic_ingest_topics_name_their_rule_and_hide_the_prefix_from_topic() -> None:
    # Given a Basic Ingest topic
    target = basic_ingest_target("$aws/rules/telemetry_telemetry/dt/plant/pump-1/telemetry")
    # Then the rule is named and topic() sees the rest, so topic(3) is the thing
    assert target == ("telemetry_telemetry", "dt/plant/pump-1/telemetry")
    query = parse_rule_sql(TEMPLATE_SQL)
    assert query.evaluate(context(target[1], {}))["deviceId"] == "pump-1"  # type: ignore[index]
    assert basic_ingest_target("dt/plant/pump-1/telemetry") is None
    assert basic_ingest_target("$aws/rules/only-a-name") is None


def test_the_streams_partition_key_template_is_the_device() -> None:
    # Given the template's Kinesis PartitionKey, rendered in Stream mode
    template = StackTemplate.load(parameters={"IngestMode": "Stream"}, resources=_resources())
    spec = rule_definition(template).action["Kinesis"]
    # Then it evaluates to the thing name
    key = parse_substitution(spec["PartitionKey"]).render(context("dt/plant/p-9/telemetry", {}))
    assert key == "p-9"


# --- the device policy --------------------------------------------------------------


def _resources() -> dict[str, str]:
    names = ["TelemetryFunction.Arn", "TelemetryStream", "TopicRuleRole.Arn", "DeadLetterQueue"]
    return {name: f"<{name}>" for name in names}


def policy(**parameters: str) -> IotPolicy:
    template = StackTemplate.load(parameters=parameters)
    return IotPolicy((template.resource("DevicePolicy") or {})["PolicyDocument"])


def connection(client_id: str, thing: str = "pump-1") -> Connection:
    return Connection(client_id, frozenset({thing}))


@pytest.mark.parametrize(
    ("client_id", "allowed"), [("pump-1", True), ("pump-2", False), ("pump-1x", False)]
)
def test_a_device_connects_only_as_the_thing_its_certificate_is_attached_to(
    client_id: str, *, allowed: bool
) -> None:
    assert policy().connect(connection(client_id)).allowed is allowed


@pytest.mark.parametrize(
    ("basic_ingest", "topic", "allowed"),
    [
        ("Disabled", "dt/plant/pump-1/telemetry", True),
        ("Disabled", "dt/plant/pump-2/telemetry", False),
        ("Disabled", "$aws/rules/telemetry_telemetry/dt/plant/pump-1/telemetry", False),
        ("Enabled", "$aws/rules/telemetry_telemetry/dt/plant/pump-1/telemetry", True),
        ("Enabled", "$aws/rules/telemetry_telemetry/dt/plant/pump-2/telemetry", False),
        ("Enabled", "$aws/rules/other_rule/dt/plant/pump-1/telemetry", False),
        ("Enabled", "dt/plant/pump-1/telemetry", False),
        ("Disabled", "ops/alerts/actions", False),
        ("Enabled", "ops/alerts/actions", False),
        ("Disabled", "$aws/things/pump-1/shadow/name/alerts/get", True),
        ("Disabled", "$aws/things/pump-1/shadow/name/alerts/update", False),
    ],
)
def test_a_device_publishes_only_its_own_telemetry_in_either_mode(
    basic_ingest: str, topic: str, *, allowed: bool
) -> None:
    decision = policy(BasicIngest=basic_ingest).publish(connection("pump-1"), topic)
    assert decision.allowed is allowed, decision.reason


def test_devices_read_only_their_own_shadow_topics() -> None:
    rules = policy()
    own = "$aws/things/pump-1/shadow/name/alerts/update/accepted"
    other = "$aws/things/pump-2/shadow/name/alerts/update/accepted"
    assert rules.subscribe(connection("pump-1"), own).allowed
    assert rules.receive(connection("pump-1"), own).allowed
    assert not rules.subscribe(connection("pump-1"), other).allowed
    assert not rules.receive(connection("pump-1"), other).allowed


@pytest.mark.parametrize(
    ("shadow", "own", "not_own"),
    [
        ("alerts", "shadow/name/alerts/get", "shadow/get"),
        ("", "shadow/get", "shadow/name//get"),
    ],
)
def test_a_device_may_ask_for_the_shadow_its_alerts_are_mirrored_in(
    shadow: str, own: str, not_own: str
) -> None:
    # Given the template with a named shadow, or the classic one (ShadowName empty)
    rules = policy(ShadowName=shadow)
    # Then pump-1 may request that shadow, and not the other, nor pump-2's
    assert rules.publish(connection("pump-1"), f"$aws/things/pump-1/{own}").allowed
    assert not rules.publish(connection("pump-1"), f"$aws/things/pump-1/{not_own}").allowed
    assert not rules.publish(connection("pump-1"), f"$aws/things/pump-2/{own}").allowed


def test_an_unattached_client_resolves_no_thing_name() -> None:
    # Given a certificate attached to pump-1, connecting as pump-2
    request = Connection("pump-2", frozenset({"pump-1"}))
    # Then the thing-name variable is unresolved and nothing is allowed
    assert request.thing_name is None
    assert not policy().publish(request, "dt/plant/pump-2/telemetry").allowed


def test_an_explicit_deny_wins() -> None:
    document = {
        "Statement": [
            {"Effect": "Allow", "Action": "iot:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "iot:Publish", "Resource": "*/ops/*"},
        ]
    }
    decision = IotPolicy(document).publish(connection("pump-1"), "ops/x")
    assert not decision.allowed
    assert "denied" in decision.reason


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "${iot:Certificate.Subject}"},
        {
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceIp": "10.0.0.1"}},
        },
        {"Effect": "Allow", "NotAction": "iot:Connect", "Resource": "*"},
        {"Effect": "Maybe", "Action": "iot:Connect", "Resource": "*"},
    ],
)
def test_a_policy_the_broker_cannot_evaluate_is_refused_up_front(statement: Any) -> None:
    with pytest.raises(PolicyError):
        IotPolicy({"Statement": [statement]})


# --- reading the template -------------------------------------------------------------


def test_the_device_topic_and_rule_name_follow_the_stack_and_basic_ingest() -> None:
    plain = StackTemplate.load(stack_name="plant-a")
    ingest = StackTemplate.load(stack_name="plant-a", parameters={"BasicIngest": "Enabled"})
    assert rule_name(plain) == "plant_a_telemetry"
    assert device_topic(plain, "pump-1") == "dt/plant/pump-1/telemetry"
    assert (
        device_topic(ingest, "pump-1") == "$aws/rules/plant_a_telemetry/dt/plant/pump-1/telemetry"
    )


@pytest.mark.parametrize(
    ("parameters", "says"),
    [
        ({"BasicIngest": "Maybe"}, "not one of"),
        ({"TopicFilter": "dt/#"}, "does not match"),
        ({"NoSuchParameter": "x"}, "no parameter"),
    ],
)
def test_parameter_values_are_checked_as_cloudformation_does(
    parameters: dict[str, str], says: str
) -> None:
    with pytest.raises(TemplateError, match=says):
        StackTemplate.load(parameters=parameters)


def test_a_reference_without_a_local_value_is_an_error_not_a_guess() -> None:
    with pytest.raises(TemplateError, match="no local value"):
        StackTemplate.load().resource("TelemetryRule")
