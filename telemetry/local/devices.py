"""Simulated devices as MQTT clients (paho-mqtt), one connection per thing.

Each device connects over TLS with its thing's certificate and key (issued by
the stack's CA, telemetry.local.certificates) and its thing name as client id,
as on IoT Core (no user name or password), subscribes at QoS 1 to its named
shadow's `update/accepted` and `get/accepted` topics, publishes its telemetry
at QoS 1 to the template's topic for its name, and keeps what the service
mirrored back to it. Nothing here knows the function: devices see only the
broker.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from telemetry.local.broker import shadow_topic
from telemetry.local.certificates import ThingCertificate

QOS: Final = 1
CONNECT_TIMEOUT_S: Final = 10.0


class DeviceError(RuntimeError):
    """A device cannot reach the broker, or the broker did not answer in time."""


@dataclass(frozen=True, slots=True)
class ShadowUpdate:
    """A shadow document a device received, and when."""

    topic: str
    document: dict[str, Any]
    at_ms: int

    @property
    def alerts(self) -> dict[str, Any]:
        state = self.document.get("state") or {}
        reported = state.get("reported") or {}
        alerts = reported.get("alerts")
        return alerts if isinstance(alerts, dict) else {}


@dataclass(slots=True)
class DeviceLog:
    """What happened to one device's connection."""

    connects: list[str] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)
    shadow: list[ShadowUpdate] = field(default_factory=list)
    published: int = 0
    acknowledged: int = 0


class DeviceClient:
    """One device's MQTT connection."""

    def __init__(
        self,
        thing_name: str,
        credentials: ThingCertificate,
        host: str,
        port: int,
        *,
        ca_file: Path,
        telemetry_topic: str,
        shadow_name: str,
        client_id: str | None = None,
        on_shadow: Callable[[str, ShadowUpdate], None] | None = None,
        mqtt5: bool = False,
    ) -> None:
        self.thing_name = thing_name
        self.client_id = client_id or thing_name
        self.telemetry_topic = telemetry_topic
        self.shadow_name = shadow_name
        self.host, self.port = host, port
        self.log = DeviceLog()
        self._on_shadow = on_shadow
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._answered = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311,
            clean_session=None if mqtt5 else True,
        )
        self._client.tls_set(
            ca_certs=str(ca_file),
            certfile=str(credentials.certificate_path),
            keyfile=str(credentials.private_key_path),
        )
        self._client.max_inflight_messages_set(100)
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._client.on_connect = self._connected_cb
        self._client.on_disconnect = self._disconnected_cb
        self._client.on_message = self._message_cb
        self._client.on_publish = self._published_cb

    @property
    def shadow_topics(self) -> list[str]:
        return [
            shadow_topic(self.thing_name, self.shadow_name, "update/accepted"),
            shadow_topic(self.thing_name, self.shadow_name, "get/accepted"),
        ]

    # --- paho callbacks (its network thread) ---------------------------------

    def _connected_cb(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _p: Any) -> None:
        with self._lock:
            self.log.connects.append(str(reason))
        if not reason.is_failure:
            for topic in self.shadow_topics:
                client.subscribe(topic, qos=QOS)
            self._connected.set()
        else:
            self._connected.clear()
        self._answered.set()

    def _disconnected_cb(
        self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _p: Any
    ) -> None:
        self._connected.clear()
        with self._lock:
            self.log.disconnects.append(str(reason))

    def _message_cb(self, _client: Any, _userdata: Any, message: Any) -> None:
        try:
            document = json.loads(message.payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return
        if not isinstance(document, dict):
            return
        update = ShadowUpdate(message.topic, document, time.time_ns() // 1_000_000)
        with self._lock:
            self.log.shadow.append(update)
        if self._on_shadow is not None:
            self._on_shadow(self.thing_name, update)

    def _published_cb(self, *_: Any) -> None:
        with self._lock:
            self.log.acknowledged += 1

    # --- use -------------------------------------------------------------------

    def connect(self, timeout_s: float = CONNECT_TIMEOUT_S) -> str:
        """Connect and wait for the broker's answer; returns its reason
        ("Success", "Not authorized", ...)."""
        self._answered.clear()
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise DeviceError(
                f"{self.client_id}: cannot reach {self.host}:{self.port}: {exc}"
            ) from exc
        self._client.loop_start()
        if not self._answered.wait(timeout_s):
            self.close()
            raise DeviceError(f"{self.client_id}: no CONNACK within {timeout_s:.0f} s")
        with self._lock:
            reason = self.log.connects[-1]
        if not self._connected.is_set():
            self.close()
        return reason

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def publish(
        self, payload: bytes, topic: str | None = None, *, qos: int = QOS, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        with self._lock:
            self.log.published += 1
        return self._client.publish(topic or self.telemetry_topic, payload, qos=qos, retain=retain)

    def request_shadow(self) -> mqtt.MQTTMessageInfo:
        """Ask for the named shadow (`get`); the answer lands in `log.shadow`."""
        with self._lock:
            self.log.published += 1
        return self._client.publish(
            shadow_topic(self.thing_name, self.shadow_name, "get"), b"", qos=QOS
        )

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def device_payload(event: Any, thing_name: str) -> bytes:
    """What a device publishes for a simulated message: the message without the
    fields the topic rule adds (`deviceId` when it is the device's own name,
    `receivedAt`). A message claiming another deviceId keeps the claim, which
    the rule then overrides with the topic's."""
    if isinstance(event, dict):
        sent = {k: v for k, v in event.items() if k != "receivedAt"}
        if sent.get("deviceId") == thing_name:
            del sent["deviceId"]
        return json.dumps(sent, allow_nan=True).encode()
    return json.dumps(event).encode()


def sender_of(event: Any, thing_names: list[str]) -> str:
    """Which simulated device sent a message (the fleet's messages carry it in
    `deviceId`; a corrupt one may carry it with extra characters, or as the
    start of a text)."""
    claimed = event.get("deviceId") if isinstance(event, dict) else event
    text = claimed if isinstance(claimed, str) else ""
    for name in sorted(thing_names, key=len, reverse=True):
        if text == name or text.startswith((f"{name}/", f"{name} ")):
            return name
    raise DeviceError(f"no simulated device sent {str(event)[:60]!r}")
