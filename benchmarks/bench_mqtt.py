"""The device side locally: messages per second through broker, rule and handler,
and the latency from a device's publish to the operators' queue.

The same fleet workload (benchmarks.workload.fleet) runs, each against a fresh
stack in moto, in process:

- baseline: the handler called directly, one invocation per message, as the
  demo's direct ingest does (no broker, no rule);
- MQTT: one paho client per device publishes at QoS 1 over TLS with its
  thing's certificate to the local broker (mosquitto with the template's device
  policy), whose service-side subscriber hands it to the template's rule; the
  rule evaluates its SQL and invokes the handler asynchronously, with 1 and with
  4 invocation workers. Throughput is from the first publish until the last
  invocation has finished.
- MQTT without the function: the same, with an invocation that does nothing:
  what the broker and the rule alone carry (`--messages-per-device` scales it).

Latency: one device publishes a reading that opens or closes an alert every
`LATENCY_GAP_S` (below capacity, so the figure is the path, not a queue), and
a poller notes when each alert reaches the operators' queue (SNS -> SQS);
median and p99 over `LATENCY_SAMPLES`, beside the same with the handler called
directly at the moment of publishing.

    python -m benchmarks.bench_mqtt
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

from benchmarks.workload import START_MS, fleet, local_aws, ratio, runtime, table

DEVICES: Final = 40
MESSAGES_PER_DEVICE: Final = 12
LATENCY_SAMPLES: Final = 120
LATENCY_GAP_S: Final = 0.06
CONCURRENCY: Final = (1, 4)
BROKER_SCALE: Final = 10
"""The run without the function carries this many times the messages."""


def _now() -> int:
    return time.time_ns() // 1_000_000


@contextmanager
def _stack(things: list[str]) -> Iterator[tuple[Any, Any, Any]]:
    with local_aws(things) as stack:
        rt, clients = runtime(stack, _now)
        yield stack, rt, clients


def _handler(rt: Any) -> Callable[[Any], Any]:
    from telemetry import handler

    def invoke(event: Any) -> Any:
        try:
            return handler.handle(event, rt)
        finally:
            handler.metrics.clear_metrics()

    return invoke


def _side(
    stack: Any, things: list[str], invoke: Callable[[Any], Any], clients: Any, workers: int
) -> Any:
    from telemetry.local.device_side import DeviceSide, DeviceSideOptions

    return DeviceSide(
        endpoint_url="",
        stack=stack,
        prefix="telemetry",
        things=things,
        invoke=invoke,
        invoke_batch=invoke,
        function_iot_data=clients.iot_data,
        options=DeviceSideOptions(concurrency=workers),
    )


def _quiet() -> None:
    import logging
    import os

    os.environ["POWERTOOLS_LOG_LEVEL"] = "CRITICAL"
    logging.getLogger("telemetry").setLevel(logging.CRITICAL)


def throughput_direct(messages: list[dict[str, Any]], things: list[str]) -> float:
    with _stack(things) as (_, rt, _clients):
        invoke = _handler(rt)
        started = time.perf_counter()
        for message in messages:
            invoke(message)
        return len(messages) / (time.perf_counter() - started)


def throughput_mqtt(
    messages: list[dict[str, Any]], things: list[str], workers: int, *, function: bool = True
) -> float:
    from telemetry.local.device_side import FleetRun
    from telemetry.local.devices import device_payload

    def nothing(_event: Any) -> None:
        return None

    with _stack(things) as (stack, rt, clients):
        invoke = _handler(rt) if function else nothing
        with _side(stack, things, invoke, clients, workers) as side:
            return _timed(side, messages, FleetRun, device_payload)


def _timed(side: Any, messages: list[dict[str, Any]], run: Any, payload: Any) -> float:
    side.connect_fleet()
    payloads = [(m["deviceId"], payload(m, m["deviceId"])) for m in messages]
    started = time.perf_counter()
    side.publish(payloads, run())
    side.drain()
    elapsed = time.perf_counter() - started
    if side.rule.counters.invocations < len(messages):
        raise RuntimeError("not every message reached the function")
    return len(messages) / elapsed


class QueueWatch:
    """Notes when each alert (deviceId, time) reaches the operators' queue."""

    def __init__(self, sqs: Any, url: str) -> None:
        self._sqs, self._url = sqs, url
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            answer = self._sqs.receive_message(QueueUrl=self._url, MaxNumberOfMessages=10)
            now = time.perf_counter()
            for message in answer.get("Messages", []):
                body = json.loads(message["Body"])
                self.seen.setdefault(body["time"], now)
                self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"])
            if not answer.get("Messages"):
                time.sleep(0.001)

    def wait_for(self, count: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.seen) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        self._stop.set()
        self._thread.join(timeout=5)


def _toggling(device: str, i: int) -> dict[str, Any]:
    """Every message flips the alert: 95 raises (critical), 60 resolves."""
    return {
        "deviceId": device,
        "timestamp": START_MS + i * 1000,
        "data": [
            {"sensorId": "temp-1", "type": "temperature", "value": 95.0 if i % 2 == 0 else 60.0}
        ],
    }


def _iso(ms: int) -> str:
    from telemetry.core.messages import iso_utc

    return iso_utc(ms)


def latency(mode: str) -> list[float]:
    """Seconds from publish (or direct call) to the operators' queue, per alert."""
    from telemetry.adapters.aws import make_client
    from telemetry.local.devices import device_payload

    device = "latency-probe"
    with _stack([device]) as (stack, rt, clients):
        watch = QueueWatch(make_client("sqs"), stack.operator_queue_url)
        sent: dict[str, float] = {}
        invoke = _handler(rt)
        if mode == "direct":
            for i in range(LATENCY_SAMPLES):
                message = _toggling(device, i)
                sent[_iso(message["timestamp"])] = time.perf_counter()
                invoke(message)
                time.sleep(LATENCY_GAP_S)
        else:
            with _side(stack, [device], invoke, clients, 1) as side:
                side.connect_fleet()
                for i in range(LATENCY_SAMPLES):
                    message = _toggling(device, i)
                    sent[_iso(message["timestamp"])] = time.perf_counter()
                    side.devices[device].publish(device_payload(message, device))
                    time.sleep(LATENCY_GAP_S)
                side.sent += LATENCY_SAMPLES
                side.drain()
        watch.wait_for(LATENCY_SAMPLES)
        return [watch.seen[t] - sent[t] for t in sent if t in watch.seen]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run() -> dict[str, Any]:
    _quiet()
    messages = fleet(DEVICES, MESSAGES_PER_DEVICE)
    things = sorted({m["deviceId"] for m in messages})
    numbers: dict[str, Any] = {"messages": len(messages), "devices": len(things)}
    numbers["direct_per_s"] = throughput_direct(messages, things)
    for workers in CONCURRENCY:
        numbers[f"mqtt_{workers}_per_s"] = throughput_mqtt(messages, things, workers)
    many = fleet(DEVICES, MESSAGES_PER_DEVICE * BROKER_SCALE)
    numbers["broker_messages"] = len(many)
    numbers["mqtt_no_function_per_s"] = throughput_mqtt(many, things, 1, function=False)
    for mode in ("direct", "mqtt"):
        samples = latency(mode)
        numbers[f"{mode}_latency_samples"] = len(samples)
        numbers[f"{mode}_latency_median_ms"] = statistics.median(samples) * 1000
        numbers[f"{mode}_latency_p99_ms"] = _percentile(samples, 0.99) * 1000
    return numbers


def report(numbers: dict[str, Any]) -> None:
    base = numbers["direct_per_s"]
    print(
        f"workload: {numbers['messages']} messages from {numbers['devices']} devices "
        "(benchmarks.workload.fleet), moto in process, 2 shared cores"
    )
    rows = [["handler called directly (baseline)", f"{base:,.0f}", "1.00"]]
    for workers in CONCURRENCY:
        value = numbers[f"mqtt_{workers}_per_s"]
        rows.append(
            [
                f"MQTT: broker + rule + async invocation, {workers} worker(s)",
                f"{value:,.0f}",
                f"{ratio(value, base):.2f}",
            ]
        )
    value = numbers["mqtt_no_function_per_s"]
    rows.append(
        [
            f"MQTT: broker + rule, an invocation that does nothing ({numbers['broker_messages']})",
            f"{value:,.0f}",
            f"{ratio(value, base):.2f}",
        ]
    )
    print(table(["path", "messages/s", "vs baseline"], rows))
    print()
    print(
        f"latency to the operators' queue, {numbers['mqtt_latency_samples']} alerts, one every "
        f"{LATENCY_GAP_S * 1000:.0f} ms:"
    )
    print(
        table(
            ["path", "median ms", "p99 ms"],
            [
                [
                    "direct call -> SNS -> SQS (baseline)",
                    f"{numbers['direct_latency_median_ms']:.1f}",
                    f"{numbers['direct_latency_p99_ms']:.1f}",
                ],
                [
                    "publish -> broker -> rule -> function -> SNS -> SQS",
                    f"{numbers['mqtt_latency_median_ms']:.1f}",
                    f"{numbers['mqtt_latency_p99_ms']:.1f}",
                ],
            ],
        )
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.parse_args(argv)
    report(run())


if __name__ == "__main__":
    main()
