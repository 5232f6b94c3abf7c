"""The local IoT Core with clients nobody here wrote: Debian's mosquitto_pub and
mosquitto_sub (MQTT 3.1.1 and 5), and the AWS IoT Device SDK v2 for Python, with
code as it is written for IoT Core (only the endpoint, port and CA differ).

One broker and one local stack for the module (starting them is most of the cost)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from telemetry.local.broker import SERVICE_CLIENT_ID
from telemetry.local.device_side import DeviceSide, DeviceSideOptions
from telemetry.local.devices import device_payload
from tests.localaws import LocalAws, local_stack, message
from tests.test_devices_mqtt import Function

NOW = 1_764_237_600_000
THINGS = [f"pump-{i}" for i in range(1, 10)]
TIMEOUT_S = 15


def _needs(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs {', '.join(missing)} (make mosquitto)")
        pytest.skip(f"{', '.join(missing)} not installed (make mosquitto)")


@pytest.fixture(scope="module")
def aws() -> Iterator[LocalAws]:
    _needs("mosquitto_pub", "mosquitto_sub")
    with local_stack(THINGS, NOW + 600_000) as stack:
        yield stack


@pytest.fixture(scope="module")
def function(aws: LocalAws) -> Function:
    return Function(aws)


@pytest.fixture(scope="module")
def side(aws: LocalAws, function: Function) -> Iterator[DeviceSide]:
    device_side = DeviceSide(
        endpoint_url="",
        stack=aws.stack,
        prefix="telemetry",
        things=THINGS,
        invoke=function,
        invoke_batch=function,
        function_iot_data=function.clients.iot_data,
        options=DeviceSideOptions(retry_delays_s=(0.0, 0.0), connectivity=True),
    )
    with device_side:
        yield device_side


def tls_args(side: DeviceSide, thing: str) -> list[str]:
    cert = side.credentials[thing]
    return [
        "-h",
        "localhost",
        "-p",
        str(side.broker.port),
        "--cafile",
        str(side.broker.ca_file),
        "--cert",
        str(cert.certificate_path),
        "--key",
        str(cert.private_key_path),
    ]


def mosquitto_pub(
    side: DeviceSide, thing: str, *args: str, payload: bytes = b"", client_id: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["mosquitto_pub", *tls_args(side, thing), "-i", client_id or thing, "-s", *args],
        input=payload.decode("latin-1"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def reading(thing: str, value: float) -> bytes:
    return device_payload(message(thing, NOW, ("temp-1", value)), thing)


def shadow_topic(thing: str) -> str:
    return f"$aws/things/{thing}/shadow/name/alerts/update/accepted"


def telemetry_topic(thing: str) -> str:
    return f"dt/plant/{thing}/telemetry"


def wait_until(done: Any, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def readings_of(aws: LocalAws, thing: str) -> int:
    return sum(
        any(d["Name"] == "deviceId" and d["Value"] == thing for d in record["Dimensions"])
        for record in aws.records("reading")
    )


@pytest.mark.parametrize(("thing", "version"), [("pump-1", "mqttv311"), ("pump-2", "mqttv5")])
def test_mosquitto_pub_publishes_telemetry_with_a_thing_certificate(
    aws: LocalAws, side: DeviceSide, thing: str, version: str
) -> None:
    # When mosquitto_pub publishes a reading with the thing's certificate, at QoS 1
    published = mosquitto_pub(
        side,
        thing,
        "-V",
        version,
        "-q",
        "1",
        "-t",
        telemetry_topic(thing),
        payload=reading(thing, 61.0),
    )
    # Then the broker acknowledged it and the function stored the reading under the thing
    assert published.returncode == 0, published.stderr
    wait_until(lambda: readings_of(aws, thing) == 1)


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_mosquitto_sub_receives_the_shadow_the_function_writes(
    aws: LocalAws, side: DeviceSide, version: str
) -> None:
    # Given mosquitto_sub connected as pump-3 on its shadow's update/accepted
    thing = "pump-3" if version == "mqttv311" else "pump-4"
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            *tls_args(side, thing),
            "-i",
            thing,
            "-V",
            version,
            "-q",
            "1",
            "-t",
            shadow_topic(thing),
            "-C",
            "1",
            "-W",
            str(TIMEOUT_S),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: thing in side.broker.lifecycle.open)
    time.sleep(0.2)  # its SUBSCRIBE
    # When the thing's hot reading reaches the rule (handed to the service side as
    # its subscriber would: a second client with the thing's id would take over the
    # subscriber's session, as on IoT Core)
    side.broker.on_message(telemetry_topic(thing), reading(thing, 95.0), thing)
    out, err = sub.communicate(timeout=TIMEOUT_S + 5)
    # Then mosquitto_sub printed the shadow document the function wrote
    assert sub.returncode == 0, err
    document = json.loads(out)
    assert document["state"]["reported"]["alerts"]["temp-1"]["severity"] == "CRITICAL"


def test_the_device_sdk_v2_connects_publishes_and_gets_its_shadow(
    aws: LocalAws, side: DeviceSide
) -> None:
    from awscrt import mqtt
    from awsiot import mqtt_connection_builder

    # Given device code as written for IoT Core (endpoint, port and CA aside)
    thing = "pump-5"
    cert = side.credentials[thing]
    received: list[dict[str, Any]] = []
    connection = mqtt_connection_builder.mtls_from_path(
        endpoint="localhost",
        port=side.broker.port,
        cert_filepath=str(cert.certificate_path),
        pri_key_filepath=str(cert.private_key_path),
        ca_filepath=str(side.broker.ca_file),
        client_id=thing,
        clean_session=True,
        keep_alive_secs=30,
    )
    connection.connect().result(TIMEOUT_S)
    try:
        subscribed, _ = connection.subscribe(
            topic=shadow_topic(thing),
            qos=mqtt.QoS.AT_LEAST_ONCE,
            callback=lambda topic, payload, **_: received.append(json.loads(payload)),
        )
        subscribed.result(TIMEOUT_S)
        # When it publishes a hot reading at QoS 1
        sent, _ = connection.publish(
            topic=telemetry_topic(thing),
            payload=reading(thing, 95.0),
            qos=mqtt.QoS.AT_LEAST_ONCE,
        )
        sent.result(TIMEOUT_S)
        wait_until(lambda: received)
    finally:
        connection.disconnect().result(TIMEOUT_S)
    # Then the reading was stored and the device got its shadow with the alert
    assert readings_of(aws, thing) == 1
    assert received[0]["state"]["reported"]["alerts"]["temp-1"]["severity"] == "CRITICAL"


def test_the_device_sdk_v2_mqtt5_client_connects_publishes_and_gets_its_shadow(
    aws: LocalAws, side: DeviceSide
) -> None:
    from awscrt import mqtt5
    from awsiot import mqtt5_client_builder

    # Given device code as written for IoT Core with the SDK's MQTT 5 client
    thing = "pump-6"
    cert = side.credentials[thing]
    received: list[dict[str, Any]] = []
    connected = threading.Event()
    client = mqtt5_client_builder.mtls_from_path(
        endpoint="localhost",
        port=side.broker.port,
        cert_filepath=str(cert.certificate_path),
        pri_key_filepath=str(cert.private_key_path),
        ca_filepath=str(side.broker.ca_file),
        client_id=thing,
        on_publish_received=lambda data: received.append(json.loads(data.publish_packet.payload)),
        on_lifecycle_connection_success=lambda _: connected.set(),
    )
    client.start()
    try:
        assert connected.wait(TIMEOUT_S)
        client.subscribe(
            mqtt5.SubscribePacket(
                subscriptions=[
                    mqtt5.Subscription(
                        topic_filter=shadow_topic(thing), qos=mqtt5.QoS.AT_LEAST_ONCE
                    )
                ]
            )
        ).result(TIMEOUT_S)
        # When it publishes a hot reading at QoS 1
        puback = client.publish(
            mqtt5.PublishPacket(
                topic=telemetry_topic(thing),
                payload=reading(thing, 95.0),
                qos=mqtt5.QoS.AT_LEAST_ONCE,
            )
        ).result(TIMEOUT_S)
        wait_until(lambda: received)
    finally:
        client.stop()
    # Then the broker acknowledged it, the reading was stored and the shadow came back
    assert puback.puback.reason_code == mqtt5.PubackReasonCode.SUCCESS
    assert readings_of(aws, thing) == 1
    assert received[0]["state"]["reported"]["alerts"]["temp-1"]["severity"] == "CRITICAL"


REFUSALS = {
    "qos 2": (
        ["-q", "2", "-t", telemetry_topic("pump-7")],
        b"{}",
        "IoT Core does not support QoS 2",
    ),
    "retained": (
        ["-q", "1", "-r", "-t", telemetry_topic("pump-7")],
        b"{}",
        "no statement allows iot:RetainPublish",
    ),
    "over 128 KB": (
        ["-q", "1", "-t", telemetry_topic("pump-7")],
        b"x" * (128 * 1024 + 1),
        "over IoT Core's 128 KB",
    ),
    "the shadow's update topic": (
        ["-q", "1", "-t", "$aws/things/pump-7/shadow/name/alerts/update"],
        b'{"state": {"reported": {"alerts": {}}}}',
        "no statement allows iot:Publish",
    ),
    "a lifecycle topic": (
        ["-q", "1", "-t", "$aws/events/presence/connected/pump-7"],
        b"{}",
        "no statement allows iot:Publish",
    ),
    "another device's topic": (
        ["-q", "1", "-t", telemetry_topic("pump-1")],
        b"{}",
        "no statement allows iot:Publish",
    ),
}


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_publishes_are_never_acknowledged(
    aws: LocalAws, function: Function, side: DeviceSide, case: str, version: str
) -> None:
    # Given pump-7's certificate
    args, payload, reason = REFUSALS[case]
    before = len(side.broker.refusals)
    # When mosquitto_pub publishes what IoT Core refuses
    result = mosquitto_pub(side, "pump-7", "-V", version, *args, payload=payload)
    if case == "qos 2" and version == "mqttv5":
        # Then an MQTT 5 client knows from the CONNACK (Maximum QoS 1, as IoT Core's)
        # and does not send it
        assert "QoS not supported" in result.stderr
    else:
        refusals = side.wait_for_refusals(before)
        # Then the client is not told it was accepted: the connection closes first
        assert result.returncode != 0, result.stdout
        assert [(r.client_id, reason in r.reason) for r in refusals] == [("pump-7", True)]
    # and no reading reached the function
    time.sleep(0.2)
    assert not [e for e in function.events if e.get("deviceId") == "pump-7"]
    assert readings_of(aws, "pump-7") == 0


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_another_things_certificate_with_this_things_client_id_is_refused_at_connect(
    side: DeviceSide, version: str
) -> None:
    # Given pump-8 connected as itself
    owner = side.device("pump-8")
    assert owner.connect() == "Success"
    before = len(side.broker.refusals)
    # When pump-9's certificate connects with client id pump-8
    result = mosquitto_pub(
        side,
        "pump-9",
        "-V",
        version,
        "-t",
        telemetry_topic("pump-8"),
        payload=b"{}",
        client_id="pump-8",
    )
    refusals = side.wait_for_refusals(before)
    time.sleep(0.2)
    still_connected = owner.connected
    owner.close()
    # Then the CONNACK refuses it, and pump-8's own connection is untouched
    assert result.returncode != 0
    assert "not authori" in result.stderr.lower()
    assert [(r.client_id, r.action) for r in refusals] == [("pump-8", "iot:Connect")]
    assert "attached to pump-9, not to pump-8" in refusals[0].reason
    assert still_connected


def test_a_device_may_not_subscribe_to_lifecycle_events_or_other_shadows(side: DeviceSide) -> None:
    # When pump-9 subscribes where its policy does not let it
    before = len(side.broker.refusals)
    result = subprocess.run(
        [
            "mosquitto_sub",
            *tls_args(side, "pump-9"),
            "-i",
            "pump-9",
            "-V",
            "mqttv5",
            "-t",
            "$aws/events/presence/#",
            "-t",
            shadow_topic("pump-1"),
            "-W",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    refusals = side.wait_for_refusals(before)
    # Then both subscriptions are refused (SUBACK failure)
    assert [r.action for r in refusals] == ["iot:Subscribe", "iot:Subscribe"]
    assert {r.target for r in refusals} == {"$aws/events/presence/#", shadow_topic("pump-1")}
    assert result.returncode != 0 or "denied" in (result.stdout + result.stderr).lower()


def test_lifecycle_events_are_published_as_iot_core_publishes_them(side: DeviceSide) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    # Given a subscriber of the service side on the presence topics
    credentials = side.broker._service_ca.issue("test-observer")
    seen: list[tuple[str, dict[str, Any]]] = []
    subscribed = threading.Event()
    observer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-observer")
    observer.tls_set(
        ca_certs=str(side.broker.ca_file),
        certfile=str(credentials.certificate_path),
        keyfile=str(credentials.private_key_path),
    )
    observer.on_connect = lambda c, *_: c.subscribe("$aws/events/presence/+/+", qos=1)
    observer.on_subscribe = lambda *_: subscribed.set()
    observer.on_message = lambda _c, _u, m: seen.append((m.topic, json.loads(m.payload)))
    observer.connect(side.broker.host, side.broker.service_port)
    observer.loop_start()
    assert subscribed.wait(TIMEOUT_S)
    # When pump-9 connects, publishes and disconnects, twice
    for _ in range(2):
        result = mosquitto_pub(side, "pump-9", "-t", telemetry_topic("pump-9"), payload=b"{}")
        wait_until(lambda: "pump-9" not in side.broker.lifecycle.open)
        assert result.returncode == 0, result.stderr
    wait_until(lambda: len([t for t, _ in seen if t.endswith("/pump-9")]) >= 4)
    observer.loop_stop()
    observer.disconnect()
    events = [e for t, e in seen if t.endswith("/pump-9")]
    # Then each connection has its connected and disconnected event, AWS's fields,
    # and a versionNumber that increases with each connection
    assert [e["eventType"] for e in events] == [
        "connected",
        "disconnected",
        "connected",
        "disconnected",
    ]
    assert [t for t, e in seen if t.endswith("/pump-9")][:2] == [
        "$aws/events/presence/connected/pump-9",
        "$aws/events/presence/disconnected/pump-9",
    ]
    first, gone = events[0], events[1]
    assert set(first) == {
        "clientId",
        "timestamp",
        "eventType",
        "sessionIdentifier",
        "principalIdentifier",
        "ipAddress",
        "versionNumber",
    }
    assert set(gone) == set(first) - {"ipAddress"} | {
        "clientInitiatedDisconnect",
        "disconnectReason",
    }
    assert first["clientId"] == "pump-9"
    assert first["principalIdentifier"] == side.credentials["pump-9"].certificate_id
    assert gone["sessionIdentifier"] == first["sessionIdentifier"]
    assert gone["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"
    assert gone["clientInitiatedDisconnect"] is True
    assert events[0]["versionNumber"] == events[1]["versionNumber"]
    assert events[2]["versionNumber"] > events[1]["versionNumber"]
    # and the service side's own connection is not an event
    assert not any(SERVICE_CLIENT_ID in t for t, _ in seen)


def test_the_connectivity_rule_hands_lifecycle_events_to_the_function(
    side: DeviceSide, function: Function
) -> None:
    # Given the template's ConnectivityRule running (SELECT * FROM '$aws/events/presence/+/+')
    def presence() -> list[dict[str, Any]]:
        return [
            e
            for e in function.events
            if isinstance(e, dict) and e.get("clientId") == "pump-8" and "eventType" in e
        ]

    wait_until(lambda: "pump-8" not in side.broker.lifecycle.open)
    before = len(presence())
    # When pump-8 connects and disconnects
    result = mosquitto_pub(side, "pump-8", "-t", telemetry_topic("pump-8"), payload=b"{}")
    assert result.returncode == 0, result.stderr
    wait_until(lambda: len(presence()) >= before + 2)
    # Then the function was invoked with each event as IoT Core publishes it
    published = [e for e in side.broker.lifecycle.events if e["clientId"] == "pump-8"]
    assert presence()[-2:] == published[-2:]
    assert [e["eventType"] for e in presence()[-2:]] == ["connected", "disconnected"]


def test_only_the_stacks_certificates_open_each_listener(side: DeviceSide) -> None:
    # Given a certificate for pump-1 from another CA (the service side's), and
    # pump-1's own device certificate
    foreign = side.broker._service_ca.issue("pump-1")
    own = side.credentials["pump-1"]

    def publish(port: int, cert: Any, topic: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *("mosquitto_pub", "-h", "localhost", "-p", str(port)),
                *("--cafile", str(side.broker.ca_file), "-i", "pump-1", "-t", topic, "-m", "{}"),
                *("--cert", str(cert.certificate_path), "--key", str(cert.private_key_path)),
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )

    # When each tries the listener it does not belong to
    on_devices = publish(side.broker.port, foreign, telemetry_topic("pump-1"))
    on_service = publish(side.broker.service_port, own, "$aws/things/pump-1/shadow/update")
    # Then the TLS handshake fails: a device cannot pass for the service side either
    assert on_devices.returncode != 0
    assert on_service.returncode != 0
