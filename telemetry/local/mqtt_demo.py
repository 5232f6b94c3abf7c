"""`telemetry demo --mqtt` and `telemetry devices`: the fleet as MQTT devices.

The simulated fleet's messages are published by one MQTT client per device,
at QoS 1, to the template's topic for its name (the Basic Ingest topic with
`--basic-ingest`); the broker enforces the template's device policy; the
template's rule evaluates its SQL and invokes the real handler asynchronously
(or, with `--ingest stream`, puts the records on the local stream, which its
event source mapping hands to the handler in batches). Before the fleet, one
device tries to pass for another: the broker refuses it, and a payload that
claims another deviceId is stored under the topic's.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from telemetry.local.device_side import (
    DeviceSide,
    DeviceSideError,
    DeviceSideOptions,
    FleetRun,
    SceneResult,
    payload_claiming,
)
from telemetry.local.devices import DeviceError, ShadowUpdate, device_payload, sender_of
from telemetry.local.prices import KINESIS_RECORD_UNIT, billed_units
from telemetry.local.provision import Stack
from telemetry.terminal import Screen

IOT_MESSAGE_UNIT: Final = 5 * 1024


class FunctionTally(Protocol):
    invocations: int
    retried: int
    failed: int
    iot_message_units: int
    kinesis_units: int
    device_side: Any

    def add_outcomes(self, outcomes: Any) -> None: ...


class FunctionMeter(Protocol):
    def invocation(self, seconds: float) -> None: ...


class FleetOptions(Protocol):
    ingest: str
    basic_ingest: bool
    batch_size: int | None
    """Stream mode's batch size; None: the template's StreamBatchSize."""


class MqttRunError(RuntimeError):
    """The MQTT run could not finish; one line for the user."""


@dataclass(slots=True)
class DeviceSideReport:
    """What the broker, the rule and the devices did, for the demo's summary."""

    broker_url: str
    rule_name: str
    sql: str
    topic_example: str
    action: str
    basic_ingest: bool
    run: FleetRun
    scene: list[SceneResult]
    claim: str
    counters: dict[str, int]
    refusals: int
    mirrored: int
    lifecycle: tuple[str, int, int] | None = None
    """The ConnectivityRule's name, the lifecycle events it got and the
    function invocations it made, when the stack runs it."""
    received: dict[str, list[ShadowUpdate]] = field(default_factory=dict)
    focus: list[str] = field(default_factory=list)
    units: tuple[int, int] = (0, 0)
    """Billed IoT messaging units and Kinesis PUT payload units."""

    def render(self, out: Screen) -> None:
        c = self.counters
        ingest = "Basic Ingest, no messaging charge" if self.basic_ingest else "through the broker"
        out.line(
            f"MQTT: broker {self.broker_url} (mosquitto), device policy and rule "
            f"{self.rule_name} read from template.yaml; devices publish to "
            f"{self.topic_example} ({ingest})"
        )
        out.line(f"Rule SQL: {self.sql}")
        out.heading("Devices over MQTT")
        out.table(
            ("", "count", "what"),
            [
                ["connections", c["connections"], "client id = thing name, own certificate"],
                [
                    "published (QoS 1)",
                    self.run.published,
                    f"{self.run.acknowledged} acknowledged (PUBACK)",
                ],
                ["reached the rule", c["to_rule"], f"{c['filtered_out']} left out by WHERE"],
                ["rule actions", c["actions"], self.action],
                [
                    "function invocations",
                    c["invocations"],
                    f"{c['retries']} retries, {c['failed']} sent to the on-failure destination",
                ],
                [
                    "rule error actions",
                    c["action_errors"],
                    "payload not a JSON object (NaN is not JSON): IoT's error message to the DLQ",
                ],
                *self._lifecycle_rows(),
                ["refused by the policy", self.refusals, "see below"],
                [
                    "shadow updates to devices",
                    self.mirrored,
                    "update/accepted after each mirror write",
                ],
            ],
            numeric=(1,),
        )
        out.heading("A device trying to pass for another")
        for s in self.scene:
            out.line(f"- {s.case}: {s.device}, {s.attempt}: {s.outcome}")
        out.line(f"- a payload that claims another deviceId: {self.scene[0].device}, {self.claim}")
        out.heading("What devices saw mirrored back (named shadow, update/accepted)")
        shown = []
        for device in self.focus:
            updates = [u for u in self.received.get(device, []) if "/update/" in u.topic]
            story = " -> ".join(_alerts_text(u.alerts) for u in updates) or "nothing"
            shown.append([device, len(updates), story])
        out.table(("device", "updates", "alerts, as each update showed them"), shown, numeric=(1,))

    def _lifecycle_rows(self) -> list[list[Any]]:
        if self.lifecycle is None:
            return []
        name, received, invocations = self.lifecycle
        what = f"connected/disconnected, to the function by {name} ({invocations} invocations)"
        return [["lifecycle events", received, what]]


def _alerts_text(alerts: Mapping[str, Any]) -> str:
    parts = []
    for sensor, entry in sorted(alerts.items()):
        parts.append(f"{sensor} {entry['severity']}" if entry else f"{sensor} cleared")
    return ", ".join(parts) or "(none)"


def _invoker(
    rt: Any, meter: FunctionMeter, tally: FunctionTally, lock: threading.Lock
) -> Callable[[Any], Any]:
    """The handler as the rule's Lambda action (an event) or the stream's mapping
    (a batch) invokes it, metered; what an invocation did counts once it succeeds
    (a failed one is retried, as the demo's own runs count them)."""
    from telemetry import handler  # noqa: PLC0415

    def invoke(event: Any) -> Any:
        started = time.perf_counter()
        with handler.observed() as outcomes:
            try:
                answer = handler.handle(event, rt)
            finally:
                with lock:
                    meter.invocation(time.perf_counter() - started)
                    tally.invocations += 1
                    handler.metrics.clear_metrics()
        with lock:
            tally.add_outcomes(outcomes)
        return answer

    return invoke


def prefix_of(stack: Stack) -> str:
    """The name the local stack was provisioned under (`telemetry`, `telemetry-2`)."""
    return stack.database.removesuffix("-db")


def device_side(
    url: str,
    stack: Stack,
    things: list[str],
    rt: Any,
    clients: Any,
    meter: FunctionMeter,
    tally: FunctionTally,
    options: FleetOptions,
    on_shadow: Callable[[str, ShadowUpdate], None] | None = None,
) -> DeviceSide:
    """The device side of `demo --mqtt` and `telemetry devices`: the function invoked
    in-process, and the template's ConnectivityRule run, so that connects and
    disconnects reach the function, as on IoT Core."""
    lock = threading.Lock()
    return DeviceSide(
        endpoint_url=url,
        stack=stack,
        prefix=prefix_of(stack),
        things=things,
        invoke=_invoker(rt, meter, tally, lock),
        invoke_batch=_invoker(rt, meter, tally, lock),
        function_iot_data=clients.iot_data,
        options=DeviceSideOptions(
            basic_ingest=options.basic_ingest,
            stream=options.ingest == "stream",
            batch_size=options.batch_size,
            connectivity=True,
        ),
        on_shadow=on_shadow,
    )


def run_fleet(
    url: str,
    stack: Stack,
    sim: Any,
    rt: Any,
    clients: Any,
    meter: FunctionMeter,
    tally: FunctionTally,
    err: Screen,
    options: FleetOptions,
) -> DeviceSideReport:
    """Run the simulated fleet over MQTT; the report lands in `tally.device_side`."""
    things = [d.device_id for d in sim.devices]
    try:
        side = device_side(url, stack, things, rt, clients, meter, tally, options)
        with side:
            report = _play(side, sim, things, err)
    except (DeviceSideError, DeviceError) as exc:
        raise MqttRunError(str(exc)) from None
    tally.retried = report.counters["retries"]
    tally.failed = report.counters["failed"]
    tally.iot_message_units, tally.kinesis_units = report.units
    tally.device_side = report
    return report


def _play(side: DeviceSide, sim: Any, things: list[str], err: Screen) -> DeviceSideReport:
    spoofer = things[-1]
    victim = things[0] if len(things) > 1 else f"{things[0]}-neighbour"
    scene = side.spoofing_scene(spoofer, victim)
    outputs: dict[int, Any] = {}
    sizes: list[int] = []

    def tap(message: Any, output: Any) -> None:
        sizes.append(len(json.dumps(output)) if isinstance(output, dict) else len(message.payload))
        if message.client_id == spoofer and b'"claim"' in message.payload:
            outputs[0] = output

    side.rule.taps.append(tap)
    side.connect_fleet()
    run = FleetRun()
    first = next(d.event for d in sim.deliveries if _sent_by(d.event, spoofer, things))
    claim = dict(first, timestamp=first["timestamp"] - 1_000, claim=True)
    side.publish([(spoofer, payload_claiming(claim, victim))], run)
    if err.console is not None:
        err.line(f"publishing {len(sim.deliveries)} messages from {len(things)} MQTT clients")
    messages = []
    for delivery in sim.deliveries:
        sender = sender_of(delivery.event, things)
        messages.append((sender, device_payload(delivery.event, sender)))
    side.publish(messages, run)
    side.drain()
    side.settle()
    claimed = outputs.get(0)
    got = claimed.get("deviceId") if isinstance(claimed, dict) else None
    claim_text = (
        f"payload said deviceId={victim!r}; the rule's output (the function's event) "
        f"has deviceId={got!r}, the topic's"
    )
    counters = side.rule.counters
    if side.poller is not None:
        invocations, retries, failed = (
            side.poller.batches,
            side.poller.retries,
            side.poller.records_failed,
        )
    else:
        invocations, retries, failed = (
            counters.invocations,
            counters.retries,
            counters.failed_invocations,
        )
    action = (
        f"Kinesis PutRecord to {side.template.resources['TelemetryStream']}, "
        "read back in batches by the event source mapping"
        if side.poller is not None
        else "Lambda, asynchronous invocation of the handler"
    )
    focus = [s.device_id for s in sim.scenarios]
    return DeviceSideReport(
        broker_url=side.broker.url,
        rule_name=side.rule.name,
        sql=side.rule.query.sql,
        topic_example=side.topic_of(things[0]),
        action=action,
        basic_ingest=side.options.basic_ingest,
        run=run,
        scene=scene,
        claim=claim_text,
        counters={
            "connections": side.broker.counters.connections,
            "to_rule": side.broker.counters.to_rule,
            "filtered_out": counters.filtered_out,
            "actions": counters.actions,
            "action_errors": counters.action_errors,
            "invocations": invocations,
            "retries": retries,
            "failed": failed,
        },
        refusals=len(side.refusals),
        mirrored=side.mirrored,
        lifecycle=lifecycle_of(side),
        received={name: list(client.log.shadow) for name, client in side.devices.items()},
        focus=list(dict.fromkeys(focus)),
        units=billed(side, run, sizes),
    )


def lifecycle_of(side: DeviceSide) -> tuple[str, int, int] | None:
    """The ConnectivityRule's name, the lifecycle events it received and the
    invocations it made so far; None when the stack does not run it."""
    rule = side.connectivity_rule
    if rule is None:
        return None
    return rule.name, rule.counters.received, rule.counters.invocations


def billed(side: DeviceSide, run: FleetRun, output_sizes: list[int]) -> tuple[int, int]:
    """Billed IoT message units (none with Basic Ingest) and Kinesis kilobytes (on
    demand, each record rounded up to 1 KB)."""
    messaging = sum(billed_units(size, IOT_MESSAGE_UNIT) for size in run.payload_bytes)
    kinesis = sum(billed_units(size, KINESIS_RECORD_UNIT) for size in output_sizes)
    return (0 if side.options.basic_ingest else messaging), (kinesis if side.poller else 0)


def _sent_by(event: Any, device: str, things: list[str]) -> bool:
    if not isinstance(event, dict) or "data" not in event:
        return False
    try:
        return sender_of(event, things) == device and event.get("deviceId") == device
    except DeviceError:
        return False
