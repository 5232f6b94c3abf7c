"""The local IoT Core's message broker: Debian's mosquitto 2.0, as IoT Core decides.

mosquitto serves two TLS listeners on free loopback ports, from a configuration
written for this run (`mosquitto.conf` beside the certificates):

- the device endpoint (MQTT 3.1.1 and 5): a client certificate from the stack's
  CA is required (telemetry.local.certificates), the thing_policy plugin
  (thing_policy.c, compiled on first use) makes the client id the certificate's
  thing and applies the template's DevicePolicy as translated by
  telemetry.local.broker_policy; `max_qos 1` (a QoS 2 PUBLISH closes the
  connection before PUBREC); payloads over IoT Core's 128 KB, a retained PUBLISH
  without iot:RetainPublish and publishes the policy does not allow close it
  before any PUBACK;
- the service endpoint, which only a certificate of the stack's service CA
  opens: the rules engine's subscriber (`ServiceClient`) connects there. It feeds
  the topic rule (a publish on a topic its FROM matches, or a Basic Ingest topic
  `$aws/rules/<rule>/...`, which no device may subscribe to), answers shadow
  `get` requests from the local AWS, and publishes what IoT Core publishes:
  shadow documents, and the lifecycle events `$aws/events/presence/connected|
  disconnected/<clientId>` with AWS's fields and a `versionNumber` that
  increases with each connection of a client id (and hands them to the
  template's ConnectivityRule, when the stack runs it).

The broker's log (stderr, unbuffered, read line by line) is how the stack learns of
connections, disconnections and refusals: mosquitto's own connection messages
and the plugin's `thing-policy:` lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from telemetry.local.broker_policy import BrokerPolicy
from telemetry.local.certificates import LocalCertificateAuthority, ThingCertificate
from telemetry.local.iot_policy import ARN_PREFIX
from telemetry.local.iot_sql import basic_ingest_target

MAX_PAYLOAD_BYTES: Final = 128 * 1024
MAX_PACKET_BYTES: Final = MAX_PAYLOAD_BYTES + 64 * 1024
"""A backstop only: a larger packet closes the connection (payloads are checked
exactly by the plugin)."""
SERVICE_CLIENT_ID: Final = "local-iot-core-service"
CLIENT_ID_PROPERTY: Final = "iot-client-id"
START_TIMEOUT_S: Final = 10.0
PLUGIN_SOURCE: Final = Path(__file__).with_name("thing_policy.c")
PRESENCE_TOPIC: Final = "$aws/events/presence/{kind}/{client}"


class BrokerError(RuntimeError):
    """The local broker cannot start or serve; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request the policy or a limit refused."""

    client_id: str
    action: str
    target: str
    reason: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A publish accepted for the rules engine: `topic` as topic() sees it."""

    topic: str
    published_topic: str
    payload: bytes
    client_id: str
    received_ms: int


class RuleRouter(Protocol):
    name: str

    def matches(self, topic: str) -> bool: ...

    def accept(self, message: IncomingMessage) -> None: ...


ShadowReader = Callable[[str, str], tuple[bool, bytes]]
"""(thing, shadow name) -> (found, document or error body), for `get` requests."""


@dataclass(slots=True)
class BrokerCounters:
    connections: int = 0
    published: int = 0
    """Device publishes the service side received (to the rule or a shadow get)."""
    to_rule: int = 0
    delivered_to_subscribers: int = 0


@dataclass(slots=True)
class _Session:
    version: int
    session: str
    address: str
    reason: tuple[str, bool] | None = None


@dataclass(slots=True)
class Lifecycle:
    """The presence events published, in order."""

    events: list[dict[str, Any]] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    open: dict[str, _Session] = field(default_factory=dict)


_CONNECTED: Final = re.compile(r"^New client connected from (\S+):\d+ as (\S+) \(p(\d)")
_GONE: Final = re.compile(r"^thing-policy: gone (\S+)$")
_REFUSED: Final = re.compile(r"^thing-policy: refused (\S+) (\S+) (\S+?): (.*)$")
_QOS: Final = re.compile(r"^Too high QoS in PUBLISH from (\S+), disconnecting\.$")
_CLIENT: Final = re.compile(r"^(?:Client|Bad socket read/write on client) (\S+?):? (.*)$")
_REASONS: Final = (
    ("already connected", "DUPLICATE_CLIENTID"),
    ("closed its connection", "CONNECTION_LOST"),
    ("exceeded timeout", "MQTT_KEEP_ALIVE_TIMEOUT"),
    ("not authorised", "AUTH_ERROR"),
    ("oversize", "CLIENT_ERROR"),
    ("malformed", "CLIENT_ERROR"),
    ("protocol error", "CLIENT_ERROR"),
    ("QoS", "CLIENT_ERROR"),
    ("disconnected:", "CONNECTION_LOST"),
)


def mosquitto_path() -> str:
    """The broker's executable (Debian's `mosquitto` package)."""
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None,
    )
    if found is None:
        raise BrokerError(
            "the local broker needs mosquitto 2.0 (Debian: apt-get install mosquitto; "
            "`make unit` installs it as root)"
        )
    return found


def plugin_path() -> Path:
    """The thing_policy plugin, compiled once per source version (gcc, and the
    headers of Debian's mosquitto-dev, libmosquitto-dev and libssl-dev)."""
    source = PLUGIN_SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "iot-telemetry"
    built = cache / f"thing_policy-{digest}.so"
    if built.exists():
        return built
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise BrokerError("the broker's policy plugin needs a C compiler (apt-get install gcc)")
    cache.mkdir(parents=True, exist_ok=True)
    partial = built.with_suffix(f".{os.getpid()}.tmp")
    result = subprocess.run(  # noqa: S603 - our own source, a fixed command
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(partial), str(PLUGIN_SOURCE), "-lcrypto"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        first = (result.stderr.strip().splitlines() or ["no output"])[0]
        raise BrokerError(
            "cannot build the broker's policy plugin (apt-get install mosquitto-dev "
            f"libmosquitto-dev libssl-dev): {first}"
        )
    partial.replace(built)
    return built


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class LocalBroker:
    """mosquitto for one local stack, and the service side's client on it."""

    def __init__(
        self,
        policy: BrokerPolicy,
        rule: RuleRouter,
        *,
        shadow_reader: ShadowReader | None = None,
        host: str = "127.0.0.1",
        directory: Path | None = None,
        presence_rule: RuleRouter | None = None,
    ) -> None:
        self.policy = policy
        self.rule = rule
        self.presence_rule = presence_rule
        self.shadow_reader = shadow_reader
        self.host = host
        self.port = 0
        self.service_port = 0
        self._own_directory = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="local-iot-core-"))
        self.ca = LocalCertificateAuthority(self.directory / "certs")
        self._service_ca = LocalCertificateAuthority(
            self.directory / "service", name="Local IoT Core service CA"
        )
        self.refusals: list[Refusal] = []
        self.counters = BrokerCounters()
        self.lifecycle = Lifecycle()
        self.log: list[str] = []
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()
        self._service: Any = None
        self._answers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shadow-get")

    # --- certificates --------------------------------------------------------------

    def issue(self, thing_name: str) -> ThingCertificate:
        """The local CreateKeysAndCertificate + AttachThingPrincipal for one thing."""
        return self.ca.issue(thing_name)

    @property
    def ca_file(self) -> Path:
        return self.ca.ca_path

    # --- lifecycle -------------------------------------------------------------

    def start(self, timeout_s: float = START_TIMEOUT_S) -> LocalBroker:
        executable, plugin = mosquitto_path(), plugin_path()
        server = self.ca.issue("localhost", server=True)
        (self.directory / "device-policy.acl").write_text(self.policy.acl_text())
        self.port, self.service_port = _free_port(self.host), _free_port(self.host)
        config = self.directory / "mosquitto.conf"
        config.write_text(self._config(plugin, server))
        self._process = subprocess.Popen(  # noqa: S603 - the broker, our configuration
            [executable, "-c", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read_log, name="mosquitto-log", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.05):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                said = " / ".join(self.log[-3:]) or "no output"
                raise BrokerError(f"mosquitto did not start: {said}")
        self._service = ServiceClient(self)
        self._service.connect(timeout_s)
        return self

    def _config(self, plugin: Path, server: ThingCertificate) -> str:
        acl = self.directory / "device-policy.acl"
        return "\n".join(
            [
                "# The local IoT Core (telemetry.local.broker): written for this run.",
                "per_listener_settings true",
                # As root, mosquitto would switch to the `mosquitto` user, who cannot
                # read this run's files; it stays whoever runs the stack.
                f"user {pwd.getpwuid(os.getuid()).pw_name}",
                "persistence false",
                "log_dest stderr",  # unbuffered: read as it comes
                "log_timestamp false",
                *(f"log_type {t}" for t in ("error", "warning", "notice", "information")),
                "connection_messages true",
                # Retained messages: refused per publish by the plugin, as IoT Core
                # refuses them without iot:RetainPublish (it does support them).
                "retain_available true",
                f"max_packet_size {MAX_PACKET_BYTES}",
                "max_queued_messages 0",
                "max_inflight_messages 100",
                "",
                "# Devices: a certificate of the stack's CA, the template's DevicePolicy.",
                f"listener {self.port} {self.host}",
                f"cafile {self.ca.ca_path}",
                f"certfile {server.certificate_path}",
                f"keyfile {server.private_key_path}",
                "require_certificate true",
                "use_identity_as_username false",
                "allow_anonymous true",
                "max_qos 1",
                f"plugin {plugin}",
                f"plugin_opt_acl_file {acl}",
                f"plugin_opt_arn_prefix {ARN_PREFIX}",
                f"plugin_opt_max_payload {MAX_PAYLOAD_BYTES}",
                "",
                "# The service side (rules engine, shadows, lifecycle events) only.",
                f"listener {self.service_port} {self.host}",
                f"cafile {self._service_ca.ca_path}",
                f"certfile {server.certificate_path}",
                f"keyfile {server.private_key_path}",
                "require_certificate true",
                "use_identity_as_username true",
                "",
            ]
        )

    def stop(self) -> None:
        if self._service is not None:
            self._service.close()
            self._service = None
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._reader is not None:
            self._reader.join(5)
            self._reader = None
        self._answers.shutdown(wait=False, cancel_futures=True)
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"mqtts://{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """What a device's code names as its endpoint (IoT Core's is a host name)."""
        return "localhost"

    # --- the broker's log --------------------------------------------------------

    def _read_log(self) -> None:
        process = self._process
        if process is None or process.stdout is None:
            return
        for raw in process.stdout:
            line = raw.rstrip("\n")
            with self._lock:
                self.log.append(line)
                if len(self.log) > 2000:
                    del self.log[:1000]
            if " running" in line and line.startswith("mosquitto version"):
                self._ready.set()
            self._on_log(line)

    def _on_log(self, line: str) -> None:
        if match := _REFUSED.match(line):
            client, action, target, reason = match.groups()
            target = target.split("/", 1)[1] if "/" in target else ""
            self._refuse(client, action, target, reason)
        elif match := _QOS.match(line):
            self._refuse(match.group(1), "iot:Publish", "", "IoT Core does not support QoS 2")
            self._reason(match.group(1), "CLIENT_ERROR")
        elif match := _CONNECTED.match(line):
            address, client, _protocol = match.groups()
            if client != SERVICE_CLIENT_ID:
                self._connected(client, address)
        elif match := _GONE.match(line):
            self._disconnected(match.group(1))
        elif match := _CLIENT.match(line):
            client, rest = match.groups()
            for text, reason in _REASONS:
                if text in rest:
                    self._reason(client, reason)
                    break

    def _refuse(self, client_id: str, action: str, target: str, reason: str) -> None:
        with self._lock:
            self.refusals.append(Refusal(client_id, action, target, reason, _now_ms()))

    def _reason(self, client: str, reason: str) -> None:
        with self._lock:
            session = self.lifecycle.open.get(client)
            if session is not None and session.reason is None:
                session.reason = (reason, False)

    def _connected(self, client: str, address: str) -> None:
        certificate = self.ca.issued.get(client)
        with self._lock:
            version = self.lifecycle.versions.get(client, -1) + 1
            self.lifecycle.versions[client] = version
            session = _Session(version, str(uuid.uuid4()), address)
            self.lifecycle.open[client] = session
            self.counters.connections += 1
        event = {
            "clientId": client,
            "timestamp": _now_ms(),
            "eventType": "connected",
            "sessionIdentifier": session.session,
            "principalIdentifier": certificate.certificate_id if certificate else "",
            "ipAddress": address,
            "versionNumber": version,
        }
        self._presence(event)

    def _disconnected(self, client: str) -> None:
        with self._lock:
            session = self.lifecycle.open.pop(client, None)
        if session is None:
            return
        reason, by_client = session.reason or ("CLIENT_INITIATED_DISCONNECT", True)
        certificate = self.ca.issued.get(client)
        event = {
            "clientId": client,
            "timestamp": _now_ms(),
            "eventType": "disconnected",
            "clientInitiatedDisconnect": by_client,
            "sessionIdentifier": session.session,
            "principalIdentifier": certificate.certificate_id if certificate else "",
            "disconnectReason": reason,
            "versionNumber": session.version,
        }
        self._presence(event)

    def _presence(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.lifecycle.events.append(event)
        topic = PRESENCE_TOPIC.format(kind=event["eventType"], client=event["clientId"])
        payload = json.dumps(event).encode()
        service = self._service
        if service is not None:
            service.publish(topic, payload, wait=False)
        rule = self.presence_rule
        if rule is not None and rule.matches(topic):
            rule.accept(IncomingMessage(topic, topic, payload, "", _now_ms()))

    # --- the service side --------------------------------------------------------

    def on_message(self, topic: str, payload: bytes, client_id: str) -> None:
        """A device's publish, as the service side's subscriber received it."""
        with self._lock:
            self.counters.published += 1
        target = basic_ingest_target(topic)
        message = IncomingMessage(
            target[1] if target else topic, topic, payload, client_id, _now_ms()
        )
        if target is not None:
            if target[0] == self.rule.name:
                self._to_rule(message)
            return
        if topic.startswith("$aws/things/"):
            self._answers.submit(self._answer_get, topic)
            return
        if self.rule.matches(topic):
            self._to_rule(message)

    def _to_rule(self, message: IncomingMessage) -> None:
        with self._lock:
            self.counters.to_rule += 1
        self.rule.accept(message)

    def _answer_get(self, topic: str) -> None:
        parts = topic.split("/")
        named = len(parts) == 7 and parts[3:5] == ["shadow", "name"] and parts[6] == "get"
        classic = len(parts) == 5 and parts[3:] == ["shadow", "get"]
        if not (named or classic) or self.shadow_reader is None:
            return
        found, body = self.shadow_reader(parts[2], parts[5] if named else "")
        self.publish(f"{topic}/{'accepted' if found else 'rejected'}", body)

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish from the service side (shadow documents), acknowledged."""
        if self._service is None:
            raise BrokerError("the MQTT broker is not running")
        self._service.publish(topic, payload, wait=True)

    publish_threadsafe = publish


class ServiceClient:
    """The service side's MQTT 5 connection: the rules engine's subscriber, and
    the publisher of shadow documents and lifecycle events. Its certificate is
    from the service CA, which the device listener does not trust."""

    def __init__(self, broker: LocalBroker) -> None:
        import paho.mqtt.client as mqtt  # noqa: PLC0415 - the local extra
        from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

        self.broker = broker
        credentials = broker._service_ca.issue(SERVICE_CLIENT_ID)
        self._connected = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=SERVICE_CLIENT_ID, protocol=mqtt.MQTTv5
        )
        self._client.tls_set(
            ca_certs=str(broker.ca.ca_path),
            certfile=str(credentials.certificate_path),
            keyfile=str(credentials.private_key_path),
        )
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def connect(self, timeout_s: float) -> None:
        try:
            self._client.connect(self.broker.host, self.broker.service_port, keepalive=60)
        except OSError as exc:
            raise BrokerError(f"the service side cannot reach mosquitto: {exc}") from None
        self._client.loop_start()
        if not self._connected.wait(timeout_s):
            raise BrokerError("the service side could not connect and subscribe to mosquitto")

    def _on_connect(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            return
        filters = [
            "$aws/rules/#",
            "$aws/things/+/shadow/get",
            "$aws/things/+/shadow/name/+/get",
        ]
        rule_filter = getattr(getattr(self.broker.rule, "query", None), "topic_filter", None)
        filters.append(rule_filter if isinstance(rule_filter, str) else "#")
        client.subscribe([(f, 1) for f in filters])

    def _on_subscribe(self, _client: Any, _u: Any, _mid: Any, reasons: Any, _p: Any) -> None:
        if not any(r.is_failure for r in reasons):
            self._connected.set()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        client_id = ""
        for key, value in getattr(message.properties, "UserProperty", None) or []:
            if key == CLIENT_ID_PROPERTY:
                client_id = value
        self.broker.on_message(message.topic, bytes(message.payload), client_id)

    def publish(self, topic: str, payload: bytes, *, wait: bool) -> None:
        info = self._client.publish(topic, payload, qos=1)
        if wait:
            info.wait_for_publish(10)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def shadow_topic(thing_name: str, shadow_name: str, suffix: str) -> str:
    """`$aws/things/<thing>/shadow/[name/<shadow>/]<suffix>`."""
    named = f"name/{shadow_name}/" if shadow_name else ""
    return f"$aws/things/{thing_name}/shadow/{named}{suffix}"


def not_found_body(thing_name: str, shadow_name: str) -> bytes:
    """The body IoT Core answers on `get/rejected` for a shadow that does not exist."""
    return json.dumps(
        {"code": 404, "message": f"No shadow exists with name: '{thing_name}~{shadow_name}'"}
    ).encode()
