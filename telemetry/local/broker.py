"""A local MQTT broker that enforces the template's device policy, as IoT Core does.

amqtt serves MQTT 3.1.1 on a free loopback port, in a thread of this process.
Every device has a certificate stand-in: a certificate id (the MQTT user name)
and a secret (the password), issued by the `DeviceRegistry` and attached to one
thing. On top of amqtt:

- CONNECT is allowed only if the device policy (read from template.yaml)
  allows `iot:Connect` on `client/<client id>` for that principal: with the
  template's policy, the client id must be the name of the thing attached to
  the certificate. Otherwise CONNACK says "not authorized".
- PUBLISH needs `iot:Publish` on `topic/<topic>` (and `iot:RetainPublish` when
  it is retained; QoS 2 is refused, as IoT Core supports 0 and 1 only); SUBSCRIBE `iot:Subscribe` on
  `topicfilter/<filter>` (a refusal is SUBACK failure 0x80); delivery to a
  subscriber `iot:Receive` on `topic/<topic>`. A refused publish is not
  delivered, is recorded with its reason, and closes the client's connection
  (after amqtt has sent its PUBACK: amqtt acknowledges QoS 1 before routing).
- AWS IoT Core's limits: payloads up to 128 KB; topics up to 256 bytes and 7
  slashes, not counting a Basic Ingest prefix (iot developerguide, limits).
- Basic Ingest topics (`$aws/rules/<rule>/...`) go to that rule only, never to
  subscribers; a named shadow's `get` is answered on `get/accepted` or
  `get/rejected` from the local AWS; other `$aws/` topics are refused.
- A publish on a topic the rule's FROM matches goes to the rule and to any
  subscriber.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from telemetry.local.iot_policy import Connection, Decision, IotPolicy
from telemetry.local.iot_sql import basic_ingest_target

MAX_PAYLOAD_BYTES: Final = 128 * 1024
MAX_TOPIC_BYTES: Final = 256
MAX_TOPIC_SLASHES: Final = 7
SUBSCRIBE_REFUSED: Final = 0x80
_SHADOW_GET: Final = "shadow/name/"
_CONNECTING: Final = contextvars.ContextVar("connecting", default=False)
_DEFERRED_DELETE: Final[contextvars.ContextVar[str | None]] = contextvars.ContextVar(
    "deferred_delete", default=None
)


class BrokerError(RuntimeError):
    """The local broker cannot start or serve."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """A device's certificate stand-in. The secret is never logged or shown."""

    certificate_id: str
    secret: str = field(repr=False)


class DeviceRegistry:
    """Certificates and the things they are attached to."""

    def __init__(self) -> None:
        self._principals: dict[str, tuple[bytes, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def issue(self, thing_name: str) -> Credentials:
        """A new certificate stand-in, attached to `thing_name`."""
        secret = secrets.token_urlsafe(24)
        certificate_id = hashlib.sha256(f"{thing_name}:{secret}".encode()).hexdigest()
        with self._lock:
            self._principals[certificate_id] = (_digest(secret), frozenset({thing_name}))
        return Credentials(certificate_id, secret)

    def attached_things(
        self, certificate_id: str | None, secret: str | None
    ) -> frozenset[str] | None:
        """The things attached to a principal whose secret checks out, else None."""
        if certificate_id is None or secret is None:
            return None
        with self._lock:
            entry = self._principals.get(certificate_id)
        if entry is None or not hmac.compare_digest(entry[0], _digest(secret)):
            return None
        return entry[1]


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


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
    to_rule: int = 0
    delivered_to_subscribers: int = 0


def _build_broker_class() -> type[Any]:  # noqa: C901 - amqtt's subclass, built on demand
    from amqtt.broker import Broker  # noqa: PLC0415 - the local extra, only when a broker runs
    from amqtt.contexts import Action  # noqa: PLC0415
    from amqtt.session import Session  # noqa: PLC0415
    from transitions import MachineError  # noqa: PLC0415

    class PolicyBroker(Broker):  # type: ignore[misc]
        """amqtt with the device policy in place of its plugins' checks.

        The policy decides a CONNECT before amqtt touches any session: amqtt
        would otherwise drop the clean session of the device whose client id
        an impostor claims (its subscriptions with it) and put the impostor's
        session in its place, even though the CONNACK then refuses it."""

        side: LocalBroker

        async def _initialize_client_session(self, *args: Any) -> Any:
            token = _CONNECTING.set(True)
            try:
                return await super()._initialize_client_session(*args)
            finally:
                _CONNECTING.reset(token)

        async def _delete_session(self, client_id: str) -> None:
            if _CONNECTING.get():
                _DEFERRED_DELETE.set(client_id)  # until the policy has said yes
                return
            await super()._delete_session(client_id)

        async def _handle_client_session(
            self,
            reader: Any,
            writer: Any,
            client_session: Any,
            handler: Any,
            server: Any,
            listener_name: str,
        ) -> None:
            deferred = _DEFERRED_DELETE.get()
            _DEFERRED_DELETE.set(None)
            if not self.side.authenticate(client_session):
                refused = Session()
                refused.client_id = client_session.client_id
                handler.attach(refused, reader, writer)
                await handler.mqtt_connack_authorize(False)
                await writer.close()
                return
            if deferred is not None:
                await super()._delete_session(deferred)
            await super()._handle_client_session(
                reader, writer, client_session, handler, server, listener_name
            )

        async def _authenticate(self, session: Any, _listener: Any) -> bool:
            return self.side.connection(session) is not None  # decided above

        async def _topic_filtering(self, session: Any, topic: str, action: Any) -> bool:
            if session is None:
                return True
            if action == Action.SUBSCRIBE:
                return self.side.authorize(session, "subscribe", topic)
            if action == Action.RECEIVE:
                allowed = self.side.authorize(session, "receive", topic)
                self.side.counters.delivered_to_subscribers += allowed
                return allowed
            return True  # on_publish decided before amqtt's own delivery path runs

        async def _handle_message_delivery(self, session: Any, handler: Any, waiter: Any) -> bool:
            message = waiter.result()
            if message is None or not message.topic:
                return bool(await super()._handle_message_delivery(session, handler, waiter))
            keep = await self.side.on_publish(
                session,
                message.topic,
                bytes(message.data or b""),
                qos=int(message.qos or 0),
                retain=bool(message.retain),
            )
            if keep is None:
                return bool(await super()._handle_message_delivery(session, handler, waiter))
            if not keep:
                await self._stop_handler(handler)
                with suppress(MachineError, ValueError):
                    session.transitions.disconnect()
            return keep

    return PolicyBroker


class LocalBroker:
    """The broker, its policy and its rule, served from a background thread."""

    def __init__(
        self,
        policy: IotPolicy,
        registry: DeviceRegistry,
        rule: RuleRouter,
        *,
        shadow_reader: ShadowReader | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.policy = policy
        self.registry = registry
        self.rule = rule
        self.shadow_reader = shadow_reader
        self.host = host
        self.port = 0
        self.refusals: list[Refusal] = []
        self.counters = BrokerCounters()
        self._connections: dict[int, Connection] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> LocalBroker:
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._start())
            except Exception as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=serve, name="local-mqtt-broker", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s):
            raise BrokerError(f"the MQTT broker did not start within {timeout_s:.0f} s")
        if failure:
            raise BrokerError(f"the MQTT broker could not start: {failure[0]}")
        return self

    async def _start(self) -> None:
        broker_class = _build_broker_class()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:0"}},
            "plugins": {},
        }
        broker = broker_class(config)
        broker.side = self
        await broker.start()
        self._broker = broker
        sockets = broker._servers["default"].instance.sockets
        self.port = int(sockets[0].getsockname()[1])

    def stop(self) -> None:
        loop, broker = self._loop, self._broker
        if loop is None or broker is None:
            return
        future = asyncio.run_coroutine_threadsafe(broker.shutdown(), loop)
        try:
            future.result(timeout=10)
        except Exception:
            logging.getLogger(__name__).debug("broker shutdown failed", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = self._broker = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    # --- policy ----------------------------------------------------------------

    def authenticate(self, session: Any) -> bool:
        client_id = str(session.client_id or "")
        things = self.registry.attached_things(session.username, session.password)
        if things is None:
            self._refuse(client_id, "iot:Connect", client_id, "unknown certificate")
            return False
        connection = Connection(client_id, things)
        decision = self.policy.connect(connection)
        if not decision.allowed:
            self._refuse(client_id, "iot:Connect", client_id, decision.reason)
            return False
        with self._lock:
            self._connections[id(session)] = connection
            self.counters.connections += 1
        return True

    def connection(self, session: Any) -> Connection | None:
        with self._lock:
            return self._connections.get(id(session))

    def authorize(self, session: Any, what: str, topic: str) -> bool:
        connection = self.connection(session)
        if connection is None:
            return False
        decision: Decision = getattr(self.policy, what)(connection, topic)
        if not decision.allowed and what != "receive":
            action = "iot:" + "".join(part.capitalize() for part in what.split("_"))
            self._refuse(connection.client_id, action, topic, decision.reason)
        return decision.allowed

    def _refuse(self, client_id: str, action: str, target: str, reason: str) -> None:
        with self._lock:
            self.refusals.append(Refusal(client_id, action, target, reason, _now_ms()))

    async def on_publish(
        self, session: Any, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> bool | None:
        """True: handled here, keep the connection; False: refused, close it;
        None: a plain topic the policy allows, for amqtt to deliver. As IoT Core:
        no QoS 2, and a retained message needs iot:RetainPublish too."""
        connection = self.connection(session)
        client_id = connection.client_id if connection else str(session.client_id)
        self.counters.published += 1
        if connection is None:
            return False
        target = basic_ingest_target(topic)
        inner = target[1] if target else topic
        problem = _limit_problem(inner, payload)
        if problem:
            self._refuse(client_id, "iot:Publish", topic, problem)
            return False
        if qos > 1:
            self._refuse(client_id, "iot:Publish", topic, "IoT Core does not support QoS 2")
            return False
        if not self.authorize(session, "publish", topic):
            return False
        if retain and not self.authorize(session, "retain_publish", topic):
            return False
        message = IncomingMessage(inner, topic, payload, client_id, _now_ms())
        if target is not None:
            if target[0] == self.rule.name:
                self._to_rule(message)
            return True
        if topic.startswith("$aws/"):
            return await self._aws_topic(client_id, topic)
        if self.rule.matches(topic):
            self._to_rule(message)
        return None

    def _to_rule(self, message: IncomingMessage) -> None:
        self.counters.to_rule += 1
        self.rule.accept(message)

    async def _aws_topic(self, client_id: str, topic: str) -> bool:
        parts = topic.split("/")
        named_get = (
            len(parts) == 7
            and parts[:2] == ["$aws", "things"]
            and "/".join(parts[3:5]) + "/" == _SHADOW_GET
            and parts[6] == "get"
        )
        classic_get = (
            len(parts) == 5
            and parts[:2] == ["$aws", "things"]
            and parts[3:]
            == [
                "shadow",
                "get",
            ]
        )
        if not (named_get or classic_get) or self.shadow_reader is None:
            self._refuse(client_id, "iot:Publish", topic, "not a topic the local broker serves")
            return False
        reader = self.shadow_reader
        found, body = await asyncio.get_running_loop().run_in_executor(
            None, reader, parts[2], parts[5] if named_get else ""
        )
        await self.publish(f"{topic}/{'accepted' if found else 'rejected'}", body)
        return True

    async def publish(self, topic: str, payload: bytes) -> None:
        """Deliver a message from the service side (shadow answers, mirrors)."""
        await self._broker.internal_message_broadcast(topic, payload, 1)

    def publish_threadsafe(self, topic: str, payload: bytes, timeout_s: float = 10.0) -> None:
        loop = self._loop
        if loop is None:
            raise BrokerError("the MQTT broker is not running")
        asyncio.run_coroutine_threadsafe(self.publish(topic, payload), loop).result(timeout_s)


def _limit_problem(topic: str, payload: bytes) -> str | None:
    if len(payload) > MAX_PAYLOAD_BYTES:
        return f"payload of {len(payload)} bytes is over IoT Core's 128 KB"
    if len(topic.encode()) > MAX_TOPIC_BYTES:
        return f"topic is over IoT Core's {MAX_TOPIC_BYTES} bytes"
    if topic.count("/") > MAX_TOPIC_SLASHES:
        return f"topic has more than IoT Core's {MAX_TOPIC_SLASHES} slashes"
    return None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def shadow_topic(thing_name: str, shadow_name: str, suffix: str) -> str:
    """`$aws/things/<thing>/shadow/[name/<shadow>/]<suffix>`."""
    named = f"name/{shadow_name}/" if shadow_name else ""
    return f"$aws/things/{thing_name}/shadow/{named}{suffix}"


def not_found_body(thing_name: str, shadow_name: str) -> bytes:
    """The body IoT Core answers on `get/rejected` for a shadow that does not exist."""
    return json.dumps(
        {"code": 404, "message": f"No shadow exists with name: '{thing_name}~{shadow_name}'"}
    ).encode()
