"""The device side of a local run: broker, topic rule and devices, wired to a
local AWS and to the function.

`DeviceSide` reads template.yaml for the stack (its device policy, its rule,
its invoke and stream settings, its device topic), starts the broker with that
policy, the rule with its action (the function, asynchronously, in Direct
mode; the local stream and its event source mapping in Stream mode) and
connects one MQTT client per thing. After every UpdateThingShadow the
function makes, the accepted document is published on the thing's
`update/accepted` topic, which the devices subscribe to.

The caller (the demo, `telemetry devices`, tests, benchmarks) gives the two
ways to run the function (`invoke` for an asynchronous event, `invoke_batch`
for a Kinesis batch) and the function's iot-data client, on which the mirror
is observed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from telemetry.local.broker import (
    LocalBroker,
    Refusal,
    not_found_body,
    shadow_topic,
)
from telemetry.local.broker_policy import translate
from telemetry.local.certificates import ThingCertificate
from telemetry.local.devices import DeviceClient, ShadowUpdate
from telemetry.local.iot_policy import PolicyError
from telemetry.local.iot_sql import RuleSqlError
from telemetry.local.provision import Stack
from telemetry.local.server import ACCOUNT, REGION
from telemetry.local.stack_template import (
    TEMPLATE_PATH,
    StackTemplate,
    TemplateError,
    device_topic,
)
from telemetry.local.topic_rule import (
    DEFAULT_RETRY_DELAYS_S,
    Invoke,
    StreamPoller,
    build_rule,
    stream_consumer,
)

OPERATOR_ACTIONS_PARAMETER: Final = "OperatorActionsTopic"
DRAIN_TIMEOUT_S: Final = 600.0


class DeviceSideError(RuntimeError):
    """The device side cannot be set up or finish; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class DeviceSideOptions:
    basic_ingest: bool = False
    stream: bool = False
    concurrency: int = 1
    retry_delays_s: Sequence[float] = DEFAULT_RETRY_DELAYS_S
    template_path: Path = TEMPLATE_PATH
    batch_size: int | None = None
    """Stream mode: the event source mapping's batch size (the template's
    StreamBatchSize parameter; its default when None)."""
    connectivity: bool = False
    """Run the template's ConnectivityRule too, when the stack has it: the
    broker's lifecycle events invoke the function, as on IoT Core (`telemetry
    devices`, `demo --mqtt`)."""


@dataclass(frozen=True, slots=True)
class SceneResult:
    """One attempt of the spoofing scene: what was tried and what the broker did."""

    case: str
    device: str
    attempt: str
    outcome: str
    refused: bool


@dataclass(slots=True)
class FleetRun:
    """What the devices sent."""

    published: int = 0
    acknowledged: int = 0
    payload_bytes: list[int] = field(default_factory=list)


def local_resources(stack: Stack, prefix: str, queue_arn: str) -> dict[str, str]:
    """What Ref and GetAtt of the template's resources stand for in the local stack."""
    function = f"{prefix}-function"
    stream = f"{prefix}-telemetry"
    return {
        "TelemetryFunction": function,
        "TelemetryFunction.Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}",
        "DeadLetterQueue": stack.dead_letter_queue_url,
        "DeadLetterQueue.Arn": queue_arn,
        "TelemetryStream": stream,
        "TelemetryStream.Arn": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream}",
        "TopicRuleRole.Arn": f"arn:aws:iam::{ACCOUNT}:role/{prefix}-topic-rule",
        "AlertsTopic": stack.topic_arn,
        "AlertStateTable": stack.state_table,
        "TelemetryDatabase": stack.database,
        "TelemetryTable.Name": stack.table,
    }


class DeviceSide:
    """Broker, rule and devices for one local stack. Use as a context manager."""

    def __init__(
        self,
        *,
        endpoint_url: str,
        stack: Stack,
        prefix: str,
        things: Sequence[str],
        invoke: Invoke,
        invoke_batch: Invoke,
        function_iot_data: Any,
        options: DeviceSideOptions = DeviceSideOptions(),
        on_shadow: Callable[[str, ShadowUpdate], None] | None = None,
    ) -> None:
        from telemetry.adapters.aws import make_client  # noqa: PLC0415

        self.options = options
        self.stack = stack
        self.things = list(things)
        self._sqs = make_client("sqs", endpoint_url=endpoint_url)
        self._kinesis = make_client("kinesis", endpoint_url=endpoint_url)
        self._iot_data = make_client("iot-data", endpoint_url=endpoint_url)
        self._on_shadow = on_shadow
        queue_arn = self._sqs.get_queue_attributes(
            QueueUrl=stack.dead_letter_queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        self.queue_urls = {queue_arn: stack.dead_letter_queue_url}
        self._warm_up()
        parameters = {"IngestMode": "Stream" if options.stream else "Direct"}
        parameters["ShadowName"] = stack.shadow_name
        if options.basic_ingest:
            parameters["BasicIngest"] = "Enabled"
        if options.stream and options.batch_size is not None:
            parameters["StreamBatchSize"] = str(options.batch_size)
        try:
            self.template = StackTemplate.load(
                options.template_path,
                stack_name=prefix,
                parameters=parameters,
                resources=local_resources(stack, prefix, queue_arn),
            )
            policy_properties = self.template.resource("DevicePolicy") or {}
            self.policy = translate(policy_properties["PolicyDocument"])
            self.rule, self.invoker = build_rule(
                self.template,
                invoke=invoke,
                sqs=self._sqs,
                kinesis=self._kinesis,
                queue_urls=self.queue_urls,
                concurrency=options.concurrency,
                retry_delays_s=options.retry_delays_s,
            )
        except (TemplateError, PolicyError, RuleSqlError) as exc:
            raise DeviceSideError(f"{options.template_path.name}: {exc}") from None
        self._invoke_batch = invoke_batch
        self.poller: StreamPoller | None = None
        self._iot = make_client("iot", endpoint_url=endpoint_url)
        self.connectivity_rule = self.connectivity_invoker = None
        # A stack with ConnectivityEvents=Disabled has no such rule: then none runs.
        if options.connectivity and self.template.resource("ConnectivityRule") is not None:
            try:
                self.connectivity_rule, self.connectivity_invoker = build_rule(
                    self.template,
                    invoke=invoke,
                    sqs=self._sqs,
                    kinesis=self._kinesis,
                    queue_urls=self.queue_urls,
                    retry_delays_s=options.retry_delays_s,
                    resource="ConnectivityRule",
                )
            except (TemplateError, RuleSqlError) as exc:
                raise DeviceSideError(f"{options.template_path.name}: {exc}") from None
        self.broker = LocalBroker(
            self.policy,
            self.rule,
            shadow_reader=self._read_shadow,
            presence_rule=self.connectivity_rule,
        )
        self.devices: dict[str, DeviceClient] = {}
        self.credentials: dict[str, ThingCertificate] = {}
        for thing in self.things:
            self.add_thing(thing)
        self.mirrored = 0
        self.sent = 0
        """Publishes this side's clients made: the broker has handled them all once drained."""
        self._mirror_lock = threading.Lock()
        self._observe_mirror(function_iot_data)

    def add_thing(self, thing: str, *, create: bool = False) -> ThingCertificate:
        """IoT Core's CreateKeysAndCertificate and AttachThingPrincipal, locally:
        a certificate for `thing` from the stack's CA, registered with the local
        AWS and attached to the thing (created first when `create`)."""
        if create:
            self._iot.create_thing(thingName=thing)
        issued = self.broker.issue(thing)
        registered = self._iot.register_certificate_without_ca(
            certificatePem=issued.certificate_path.read_text(), status="ACTIVE"
        )
        self._iot.attach_thing_principal(thingName=thing, principal=registered["certificateArn"])
        self.credentials[thing] = issued
        return issued

    def _warm_up(self) -> None:
        """One call to each service before threads share the local AWS: moto's
        server builds a service's routes on its first request, and CPython 3.11
        can fail (SystemError) when two threads compile those at once."""
        from botocore.exceptions import ClientError  # noqa: PLC0415

        self._kinesis.list_streams(Limit=1)
        with suppress(ClientError):
            self._iot_data.get_thing_shadow(thingName=self.things[0], shadowName="warm-up")

    # --- the shadow mirror, seen by devices ---------------------------------------

    def _observe_mirror(self, iot_data: Any) -> None:
        events = iot_data.meta.events
        events.register("before-parameter-build.iot-data.UpdateThingShadow", self._remember)
        events.register("after-call.iot-data.UpdateThingShadow", self._relay)

    @staticmethod
    def _remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["shadow_target"] = (params.get("thingName"), params.get("shadowName", ""))

    def _relay(self, http_response: Any, parsed: dict[str, Any], context: Any, **_: Any) -> None:
        target = context.get("shadow_target") if isinstance(context, dict) else None
        if target is None or http_response.status_code >= 300 or "payload" not in parsed:
            return
        thing, shadow = target
        document = parsed["payload"].read()
        self.broker.publish_threadsafe(shadow_topic(thing, shadow, "update/accepted"), document)
        with self._mirror_lock:
            self.mirrored += 1

    def _read_shadow(self, thing: str, shadow: str) -> tuple[bool, bytes]:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        try:
            named = {"shadowName": shadow} if shadow else {}
            answer = self._iot_data.get_thing_shadow(thingName=thing, **named)
        except ClientError:
            return False, not_found_body(thing, shadow)
        return True, bytes(answer["payload"].read())

    # --- lifecycle -------------------------------------------------------------

    def __enter__(self) -> DeviceSide:
        try:
            if self.options.stream:
                self._create_stream()
                self.poller = stream_consumer(
                    self.template,
                    kinesis=self._kinesis,
                    sqs=self._sqs,
                    queue_urls=self.queue_urls,
                    invoke=self._invoke_batch,
                )
            self.broker.start()
        except (TemplateError, RuntimeError) as exc:
            self.close()
            raise DeviceSideError(str(exc)) from None
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _create_stream(self) -> None:
        properties = self.template.resource("TelemetryStream") or {}
        name = self.template.resources["TelemetryStream"]
        kwargs: dict[str, Any] = {"StreamName": name}
        if "StreamModeDetails" in properties:
            kwargs["StreamModeDetails"] = properties["StreamModeDetails"]
        if "ShardCount" in properties:
            kwargs["ShardCount"] = int(properties["ShardCount"])
        self._kinesis.create_stream(**kwargs)
        self._kinesis.get_waiter("stream_exists").wait(
            StreamName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100}
        )

    def close(self) -> None:
        for device in self.devices.values():
            device.close()
        self.broker.stop()
        self.rule.close()
        if self.invoker is not None:
            self.invoker.close()
        if self.connectivity_rule is not None:
            self.connectivity_rule.close()
        if self.connectivity_invoker is not None:
            self.connectivity_invoker.close()
        if self.poller is not None:
            self.poller.close()

    # --- devices -----------------------------------------------------------------

    def device(
        self, thing: str, *, client_id: str | None = None, mqtt5: bool = False
    ) -> DeviceClient:
        """A client for `thing`'s certificate (and another client id, to spoof)."""
        return DeviceClient(
            thing,
            self.credentials[thing],
            self.broker.host,
            self.broker.port,
            ca_file=self.broker.ca_file,
            mqtt5=mqtt5,
            telemetry_topic=device_topic(self.template, thing),
            shadow_name=self.stack.shadow_name,
            client_id=client_id,
            on_shadow=self._on_shadow,
        )

    def connect_fleet(self) -> None:
        for thing in self.things:
            client = self.device(thing)
            reason = client.connect()
            if not client.connected:
                raise DeviceSideError(f"{thing} could not connect: {reason}")
            self.devices[thing] = client
        for client in self.devices.values():
            client.request_shadow().wait_for_publish(DRAIN_TIMEOUT_S)
            self.sent += 1

    def topic_of(self, thing: str) -> str:
        return device_topic(self.template, thing)

    def operators_topic(self) -> str | None:
        """The operators' actions topic, when the template has that parameter."""
        if not self.template.has_parameter(OPERATOR_ACTIONS_PARAMETER):
            return None
        return self.template.parameter(OPERATOR_ACTIONS_PARAMETER) or None

    def publish(self, messages: Iterable[tuple[str, bytes]], run: FleetRun) -> None:
        """Publish (thing, payload) pairs in order, at QoS 1, and wait for every PUBACK."""
        infos = []
        for thing, payload in messages:
            infos.append(self.devices[thing].publish(payload))
            run.published += 1
            run.payload_bytes.append(len(payload))
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            acknowledged = info.is_published()
            run.acknowledged += acknowledged
            self.sent += acknowledged

    def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Wait until everything the broker accepted from this side's devices has
        reached the service side, and the function has handled what the rule got."""
        try:
            self._wait(lambda: self.broker.counters.published >= self.sent, timeout_s)
            self._wait(
                lambda: self.rule.counters.received >= self.broker.counters.to_rule, timeout_s
            )
            self.rule.drain(timeout_s)
            if self.invoker is not None:
                self.invoker.drain(timeout_s)
            if self.connectivity_rule is not None:
                rule = self.connectivity_rule
                self._wait(
                    lambda: rule.counters.received >= len(self.broker.lifecycle.events), timeout_s
                )
                rule.drain(timeout_s)
            if self.connectivity_invoker is not None:
                self.connectivity_invoker.drain(timeout_s)
            if self.poller is not None:
                sent = self.rule.counters.actions - self.rule.counters.action_errors
                self.poller.drain(sent, timeout_s)
        except TimeoutError as exc:
            raise DeviceSideError(str(exc)) from None

    @staticmethod
    def _wait(done: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the broker's messages did not reach the rule in {timeout_s} s")
            time.sleep(0.005)

    def settle(self, timeout_s: float = 5.0) -> None:
        """Wait until every mirror update published has reached its device."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            received = sum(
                1
                for d in self.devices.values()
                for u in d.log.shadow
                if u.topic.endswith("/update/accepted")
            )
            if received >= self.mirrored:
                return
            time.sleep(0.01)

    @property
    def refusals(self) -> list[Refusal]:
        return list(self.broker.refusals)

    # --- the spoofing scene ----------------------------------------------------

    def spoofing_scene(self, spoofer: str, victim: str) -> list[SceneResult]:
        """`spoofer`, with its own certificate, tries to pass for `victim`: connect
        as it, publish to its telemetry topic and to the operators' topic. Run
        before or after the fleet connects: the refused CONNECT takes nothing from
        the victim's session."""
        results = []
        impostor = self.device(spoofer, client_id=victim)
        reason = impostor.connect()
        impostor.close()
        results.append(
            SceneResult(
                "connect as another thing",
                spoofer,
                f"client id {victim!r} with {spoofer}'s certificate",
                f"CONNACK: {reason}",
                reason != "Success",
            )
        )
        targets = [("publish to another device's topic", self.topic_of(victim))]
        operators = self.operators_topic()
        if operators:
            targets.append(("publish to the operators' topic", operators))
        for case, topic in targets:
            client = self.device(spoofer)
            if client.connect() != "Success":
                raise DeviceSideError(f"{spoofer} could not connect for the spoofing scene")
            before = len(self.broker.refusals)
            client.publish(b'{"data": []}', topic)
            closed = self._closed(client)
            client.close()
            new = self.wait_for_refusals(before)
            results.append(
                SceneResult(
                    case,
                    spoofer,
                    topic,
                    f"refused: {new[0].reason}; connection closed" if new else "delivered",
                    bool(new) and closed,
                )
            )
        return results

    def wait_for_refusals(self, before: int, timeout_s: float = 2.0) -> list[Refusal]:
        """The refusals after the first `before`, once there is one (the broker's
        log is read as it comes)."""
        deadline = time.monotonic() + timeout_s
        while len(self.broker.refusals) <= before and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.broker.refusals[before:]

    @staticmethod
    def _closed(client: DeviceClient, timeout_s: float = 2.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if client.log.disconnects:
                return True
            time.sleep(0.01)
        return False


def payload_claiming(event: dict[str, Any], other: str) -> bytes:
    """A device's message that claims to come from `other`."""
    claimed = {k: v for k, v in event.items() if k != "receivedAt"}
    claimed["deviceId"] = other
    return json.dumps(claimed).encode()
