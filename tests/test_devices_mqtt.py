"""The device side end to end: paho devices publish over MQTT to the local broker,
which enforces template.yaml's device policy; the template's topic rule runs
the real handler against moto; what the stack holds is read back."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from telemetry import handler
from telemetry.local.device_side import DeviceSide, DeviceSideOptions, FleetRun, payload_claiming
from telemetry.local.devices import device_payload
from tests.localaws import LocalAws, fail, local_stack, message

NOW = 1_764_237_600_000
THINGS = ["pump-1", "pump-2", "pump-3"]
FAST_RETRIES = (0.0, 0.0)


class Function:
    """The handler as the rule's action runs it, with what each invocation answered."""

    def __init__(self, aws: LocalAws) -> None:
        self.rt, self.clients = aws.runtime()
        self.answers: list[Any] = []
        self.errors: list[Exception] = []
        self.events: list[Any] = []

    def __call__(self, event: Any) -> Any:
        self.events.append(event)
        try:
            answer = handler.handle(event, self.rt)
        except Exception as exc:
            self.errors.append(exc)
            raise
        finally:
            handler.metrics.clear_metrics()
        self.answers.append(answer)
        return answer


@pytest.fixture
def aws() -> Iterator[LocalAws]:
    with local_stack(THINGS, NOW + 600_000) as stack:
        yield stack


def side_for(aws: LocalAws, function: Function, **options: Any) -> DeviceSide:
    return DeviceSide(
        endpoint_url="",
        stack=aws.stack,
        prefix="telemetry",
        things=THINGS,
        invoke=function,
        invoke_batch=function,
        function_iot_data=function.clients.iot_data,
        options=DeviceSideOptions(retry_delays_s=FAST_RETRIES, **options),
    )


def publish(side: DeviceSide, *messages: tuple[str, dict[str, Any] | bytes]) -> None:
    payloads = [
        (thing, m if isinstance(m, bytes) else device_payload(m, thing)) for thing, m in messages
    ]
    side.publish(payloads, FleetRun())
    side.drain(60)
    side.settle()


def readings_by_device(aws: LocalAws) -> dict[str, int]:
    out: dict[str, int] = {}
    for record in aws.records("reading"):
        device = next(d["Value"] for d in record["Dimensions"] if d["Name"] == "deviceId")
        out[device] = out.get(device, 0) + 1
    return out


def hot_then_cool(device: str) -> list[dict[str, Any]]:
    return [
        message(device, NOW + i * 1000, ("temp-1", value))
        for i, value in enumerate([70.0, 80.0, 95.0, 60.0])
    ]


def test_devices_publish_over_mqtt_and_readings_alerts_and_shadows_follow(aws: LocalAws) -> None:
    # Given the fleet connected to the broker, each as its own thing
    function = Function(aws)
    with side_for(aws, function) as side:
        side.connect_fleet()
        # When pump-1 heats up and cools down, and pump-2 reports a normal reading, over MQTT
        publish(
            side,
            *[("pump-1", m) for m in hot_then_cool("pump-1")],
            ("pump-2", message("pump-2", NOW, ("temp-1", 61.0))),
        )
        updates = [u for u in side.devices["pump-1"].log.shadow if "/update/" in u.topic]
        topics = {u.topic for u in updates}
    # Then every reading is stored under its device, one invocation per message
    assert readings_by_device(aws) == {"pump-1": 4, "pump-2": 1}
    assert len(function.answers) == 5
    # and the operators' queue received the episode once
    assert [a["status"] for a in aws.alerts()] == ["RAISED", "ESCALATED", "RESOLVED"]
    # and pump-1 saw each mirror write on its named shadow's update/accepted topic
    assert topics == {"$aws/things/pump-1/shadow/name/alerts/update/accepted"}
    assert [u.alerts["temp-1"] and u.alerts["temp-1"]["severity"] for u in updates] == [
        "WARNING",
        "CRITICAL",
        None,
    ]
    assert aws.dead_letters() == []


def test_a_device_cannot_pass_for_another(aws: LocalAws) -> None:
    # Given the broker with the template's device policy
    function = Function(aws)
    with side_for(aws, function) as side:
        # When pump-3, with its own certificate, connects as pump-1 and publishes to pump-1's topic
        scene = side.spoofing_scene("pump-3", "pump-1")
        refusals = side.refusals
    # Then both are refused, the publish closes its connection, and nothing reaches the function
    assert [(s.case, s.refused) for s in scene] == [
        ("connect as another thing", True),
        ("publish to another device's topic", True),
        ("publish to the operators' topic", True),
    ]
    assert scene[0].outcome == "CONNACK: Not authorized"
    assert [(r.client_id, r.action) for r in refusals] == [
        ("pump-1", "iot:Connect"),
        ("pump-3", "iot:Publish"),
        ("pump-3", "iot:Publish"),
    ]
    assert "ops/alerts/actions" in refusals[2].reason
    assert "dt/plant/pump-1/telemetry" in refusals[1].reason
    assert function.answers == []
    assert aws.records() == []


def test_an_impostor_refused_at_connect_takes_nothing_from_the_device_it_claimed(
    aws: LocalAws,
) -> None:
    # Given the fleet connected, pump-1 subscribed to its shadow's updates
    function = Function(aws)
    with side_for(aws, function) as side:
        side.connect_fleet()
        # When pump-3 tries to connect as pump-1, is refused, and pump-1 then heats up
        scene = side.spoofing_scene("pump-3", "pump-1")
        publish(side, *[("pump-1", m) for m in hot_then_cool("pump-1")])
        updates = [u for u in side.devices["pump-1"].log.shadow if "/update/" in u.topic]
    # Then the refusal took neither pump-1's session nor its subscriptions: it still
    # receives every mirror write
    assert scene[0].refused
    assert [u.alerts["temp-1"] and u.alerts["temp-1"]["severity"] for u in updates] == [
        "WARNING",
        "CRITICAL",
        None,
    ]


@pytest.mark.parametrize(
    "topic",
    [
        "ops/alerts/actions",  # the operators' topic (OperatorActionsTopic's default)
        "$aws/things/pump-1/shadow/name/alerts/update",  # the shadow is the function's to write
        "dt/plant/pump-3/telemetry/extra",
    ],
)
def test_a_device_may_publish_nothing_but_its_telemetry(aws: LocalAws, topic: str) -> None:
    # Given pump-3 connected as itself
    with side_for(aws, Function(aws)) as side:
        client = side.device("pump-3")
        assert client.connect() == "Success"
        # When it publishes elsewhere
        sent = client.publish(b'{"action": "acknowledge"}', topic)
        closed = side._closed(client)
        refusals = side.wait_for_refusals(0)
        client.close()
    # Then the broker refuses it and closes the connection, without a PUBACK
    assert closed
    assert not sent.is_published()
    assert [(r.client_id, r.target) for r in refusals[:1]] == [("pump-3", topic)]


@pytest.mark.parametrize(
    ("qos", "retain", "action", "reason"),
    [
        (1, True, "iot:RetainPublish", "no statement allows iot:RetainPublish"),
        (2, False, "iot:Publish", "IoT Core does not support QoS 2"),
    ],
)
def test_a_device_may_not_retain_messages_or_publish_at_qos_2(
    aws: LocalAws, qos: int, retain: bool, action: str, reason: str
) -> None:
    # Given pump-3 connected as itself, and the template's device policy (no RetainPublish)
    function = Function(aws)
    with side_for(aws, function) as side:
        client = side.device("pump-3")
        assert client.connect() == "Success"
        # When it publishes a reading on its own topic, retained or at QoS 2
        payload = device_payload(message("pump-3", NOW, ("temp-1", 61.0)), "pump-3")
        sent = client.publish(payload, qos=qos, retain=retain)
        refusals = side.wait_for_refusals(0, 5)
        closed = side._closed(client)
        client.close()
    # Then IoT Core's rules hold: refused before any acknowledgement, the
    # connection closed, nothing processed
    assert closed
    assert not sent.is_published()
    assert [(r.client_id, r.action) for r in refusals[:1]] == [("pump-3", action)]
    assert reason in refusals[0].reason
    assert function.answers == []


def test_a_payload_claiming_another_device_is_stored_under_the_topics(aws: LocalAws) -> None:
    # Given pump-3 connected as itself
    function = Function(aws)
    with side_for(aws, function) as side:
        side.connect_fleet()
        # When it publishes, on its own topic, a message that says it comes from pump-1
        claim = payload_claiming(message("pump-3", NOW, ("temp-1", 95.0)), "pump-1")
        publish(side, ("pump-3", claim))
    # Then the function got deviceId pump-3 from the topic, and stored and alerted it so
    assert json.loads(claim)["deviceId"] == "pump-1"
    assert readings_by_device(aws) == {"pump-3": 1}
    assert [(a["deviceId"], a["status"]) for a in aws.alerts()] == [("pump-3", "RAISED")]
    assert aws.state_item("pump-1") is None


def test_a_device_may_subscribe_only_to_its_own_shadow(aws: LocalAws) -> None:
    # Given pump-3 connected as itself
    with side_for(aws, Function(aws)) as side:
        client = side.device("pump-3")
        assert client.connect() == "Success"
        # When it subscribes to pump-1's shadow
        client._client.subscribe("$aws/things/pump-1/shadow/name/alerts/update/accepted", qos=1)
        refusals = side.wait_for_refusals(0, 5)
        client.close()
    # Then the broker refuses the subscription
    assert [(r.client_id, r.action) for r in refusals] == [("pump-3", "iot:Subscribe")]


def test_with_basic_ingest_devices_publish_behind_the_rules_prefix_only(aws: LocalAws) -> None:
    # Given Basic Ingest enabled (BasicIngest=Enabled in the template)
    function = Function(aws)
    with side_for(aws, function, basic_ingest=True) as side:
        side.connect_fleet()
        topic = side.topic_of("pump-1")
        # When pump-1 publishes its telemetry there
        publish(side, *[("pump-1", m) for m in hot_then_cool("pump-1")])
        # and then tries the plain topic
        client = side.devices["pump-1"]
        client.publish(
            device_payload(hot_then_cool("pump-1")[0], "pump-1"), "dt/plant/pump-1/telemetry"
        )
        closed = side._closed(client)
        refusals = side.wait_for_refusals(0)
    # Then the rule took deviceId from the level after the prefix and the function stored it
    assert topic == "$aws/rules/telemetry_telemetry/dt/plant/pump-1/telemetry"
    assert readings_by_device(aws) == {"pump-1": 4}
    assert [a["status"] for a in aws.alerts()] == ["RAISED", "ESCALATED", "RESOLVED"]
    # and the plain topic is refused
    assert closed
    assert [r.target for r in refusals[:1]] == ["dt/plant/pump-1/telemetry"]


def test_without_basic_ingest_the_rules_prefix_is_refused(aws: LocalAws) -> None:
    # Given Basic Ingest disabled (the default)
    function = Function(aws)
    with side_for(aws, function) as side:
        client = side.device("pump-1")
        assert client.connect() == "Success"
        # When a device publishes to the Basic Ingest topic anyway
        topic = "$aws/rules/telemetry_telemetry/dt/plant/pump-1/telemetry"
        client.publish(device_payload(hot_then_cool("pump-1")[0], "pump-1"), topic)
        closed = side._closed(client)
        client.close()
    # Then it is refused and nothing is stored
    assert closed
    assert aws.records() == []


def test_a_failing_invocation_is_retried_as_lambda_does_without_a_second_alert(
    aws: LocalAws,
) -> None:
    # Given a function whose first SNS publish fails
    function = Function(aws)
    injected = fail(function.clients.sns, "Publish", "InternalError")
    fail(function.clients.sns, "PublishBatch", "InternalError")
    with side_for(aws, function) as side:
        side.connect_fleet()
        # When a hot reading arrives over MQTT
        publish(side, ("pump-1", message("pump-1", NOW, ("temp-1", 95.0))))
        counters = side.rule.counters
    # Then the invocation failed once, was retried, and operators heard of it once
    assert injected[0] == 1
    assert (counters.invocations, counters.retries, counters.failed_invocations) == (2, 1, 0)
    assert [a["status"] for a in aws.alerts()] == ["RAISED"]
    assert aws.dead_letters() == []


def test_an_invocation_failing_every_attempt_lands_on_the_failure_destination(
    aws: LocalAws,
) -> None:
    # Given a function whose state table keeps failing (MaximumRetryAttempts: 2)
    function = Function(aws)
    fail(function.clients.dynamodb, "BatchGetItem", "InternalServerError", times=10)
    fail(function.clients.dynamodb, "GetItem", "InternalServerError", times=10)
    with side_for(aws, function) as side:
        side.connect_fleet()
        # When a message arrives over MQTT
        publish(side, ("pump-1", message("pump-1", NOW, ("temp-1", 95.0))))
        counters = side.rule.counters
    # Then it ran three times, and Lambda's invocation record is in the dead-letter queue
    assert (counters.invocations, counters.failed_invocations) == (3, 1)
    (record,) = aws.dead_letters()
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestPayload"]["deviceId"] == "pump-1"
    assert record["responseContext"]["functionError"] == "Unhandled"


def test_a_payload_that_is_not_json_goes_to_the_rules_error_action(aws: LocalAws) -> None:
    # Given the fleet connected
    function = Function(aws)
    with side_for(aws, function) as side:
        side.connect_fleet()
        # When a device publishes bytes that are not JSON
        publish(side, ("pump-2", b"\x00\x01 temp=81.2"))
    # Then the Lambda action cannot take it: IoT's error message is in the dead-letter queue
    (item,) = aws.dead_letters()
    assert item["ruleName"] == "telemetry_telemetry"
    assert item["topic"] == "dt/plant/pump-2/telemetry"
    assert item["clientId"] == "pump-2"
    assert base64.b64decode(item["base64OriginalPayload"]) == b"\x00\x01 temp=81.2"
    assert item["failures"][0]["failedAction"] == "LambdaAction"
    assert function.answers == []


def test_a_payload_over_iot_cores_limit_is_refused(aws: LocalAws) -> None:
    # Given pump-1 connected
    function = Function(aws)
    with side_for(aws, function) as side:
        client = side.device("pump-1")
        assert client.connect() == "Success"
        # When it publishes just over 128 KB
        sent = client.publish(b"x" * (128 * 1024 + 1))
        closed = side._closed(client)
        refusals = side.wait_for_refusals(0)
        client.close()
    # Then the broker refuses it as IoT Core would, before any acknowledgement
    assert closed
    assert not sent.is_published()
    assert "128 KB" in refusals[0].reason
    assert function.answers == []


def test_a_batch_size_given_for_the_stream_reaches_the_event_source_mapping(
    aws: LocalAws,
) -> None:
    # Given Stream mode with batches of 2 (demo --mqtt --ingest stream --batch-size 2)
    function = Function(aws)
    with side_for(aws, function, stream=True, batch_size=2) as side:
        side.connect_fleet()
        # When five messages go through
        publish(side, *[("pump-1", m) for m in hot_then_cool("pump-1")])
        publish(side, ("pump-2", message("pump-2", NOW, ("temp-1", 61.0))))
        poller = side.poller
    # Then the mapping took at most two records an invocation
    assert poller is not None
    assert poller.settings.batch_size == 2
    assert poller.records_done == 5
    assert len(function.answers) >= 3


def test_in_stream_mode_the_rule_feeds_the_stream_and_its_mapping_the_function(
    aws: LocalAws,
) -> None:
    # Given IngestMode=Stream: the rule's Kinesis action and the event source mapping
    function = Function(aws)
    with side_for(aws, function, stream=True) as side:
        side.connect_fleet()
        # When two devices publish over MQTT
        publish(
            side,
            *[("pump-1", m) for m in hot_then_cool("pump-1")],
            ("pump-2", message("pump-2", NOW, ("temp-1", 95.0))),
        )
        poller = side.poller
    # Then the records went through the stream, in batches, to the function
    assert poller is not None
    assert poller.records_done == 5
    assert poller.settings.batch_size == 500  # the template's StreamBatchSize default
    assert all(answer == {"batchItemFailures": []} for answer in function.answers)
    assert readings_by_device(aws) == {"pump-1": 4, "pump-2": 1}
    assert {a["deviceId"] for a in aws.alerts()} == {"pump-1", "pump-2"}
