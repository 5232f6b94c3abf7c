"""What the cost, cold-start and stream benchmarks share.

- `fleet()`: a deterministic fleet workload in the seed's message format, and
  `stream_events()` to deliver it in Kinesis batches;
- `local_aws()` and `runtime()`: the stack in moto and a function runtime on it;
- `Usage`: the billable AWS usage of invocations, metered the way AWS bills it;
- `run_handler()`: our handler over a list of events, usage per invocation
  (`benchmarks.naive.run_naive` does the same for the baseline);
- `captured_output()`: keeps the handler's log lines and metrics off the report
  while counting their bytes (in Lambda they go to CloudWatch Logs);
- `table()`: the report's tables.
"""

from __future__ import annotations

import functools
import math
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final
from unittest import mock

from telemetry.adapters.timestream import billed_bytes
from telemetry.core.rules import RuleSet, load_rules
from telemetry.local.prices import metered_units
from telemetry.local.streams import kinesis_event

ROOT: Final = Path(__file__).resolve().parent.parent
RULES_PATH: Final = ROOT / "rules"
REGION: Final = "us-east-1"
START_MS: Final = 1_764_237_600_000  # 2025-11-27T10:00:00Z, the simulated fleet's first second
INTERVAL_MS: Final = 10_000
TIMESTREAM_BATCH: Final = 100  # records per WriteRecords call, the API's limit
DELIVERY_DELAY_MS: Final = 1_000  # from the last message's arrival to the invocation

FUNCTION_ENV: Final = {  # a valid environment for the function; the names are made up
    "AWS_DEFAULT_REGION": REGION,
    "TIMESTREAM_DB": "telemetry-db",
    "TIMESTREAM_TABLE": "readings",
    "STATE_TABLE": "telemetry-alert-state",
    "ALERTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:telemetry-alerts",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/telemetry-dlq",
    "SHADOW_NAME": "alerts",
    "POWERTOOLS_SERVICE_NAME": "telemetry",
    "POWERTOOLS_METRICS_NAMESPACE": "IoTTelemetry",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def function_environment() -> dict[str, str]:
    """This process's environment for a subprocess that runs the function: no AWS or
    Powertools settings but FUNCTION_ENV, and the project on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    return {**env, **FUNCTION_ENV, "PYTHONPATH": str(ROOT)}


# --- the fleet -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sensor:
    """One sensor every device carries. `spread` is the standard deviation of its
    value around the device's own baseline."""

    sensor_id: str
    type: str
    unit: str
    spread: float


SENSORS: Final = (
    Sensor("temp-1", "temperature", "C", 3.0),
    Sensor("press-1", "pressure", "bar", 0.5),
    Sensor("vib-1", "vibration", "mm/s", 0.4),
    Sensor("hum-1", "humidity", "%", 4.0),
)

# A sensor's baseline sits this many spreads below its warning level: most run
# comfortably below it, some close enough that noise crosses it now and then.
COMFORTABLE_MARGIN: Final = (3.2, 4.5)
CLOSE_MARGIN: Final = (1.4, 2.3)
CLOSE_SHARE: Final = 0.18
PERSISTENCE: Final = 0.8  # AR(1) coefficient: readings drift, so breaches come in short runs
OVERHEATING: Final = (0, 1)  # device indexes whose temperature climbs past critical and recovers
FLAPPING: Final = 2  # device index whose temperature hovers around its warning level


def default_rules() -> RuleSet:
    return load_rules(RULES_PATH)


def rules_with(budget: str) -> str:
    """The shipped rules plus `budget` (a file's `notifications` section, or
    nothing: the default budget), in a scratch directory: its path."""
    from telemetry.core.rules import rule_files

    directory = Path(tempfile.mkdtemp(prefix="bench-rules-"))
    for source in rule_files(RULES_PATH):
        (directory / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    if budget:
        (directory / "zz-budget.yaml").write_text("rules: []\n" + budget, encoding="utf-8")
    return str(directory)


PER_DEVICE_BUDGET: Final = "notifications:\n  groupBy: [deviceId]\n  maxPerWindow: 20\n"
"""A budget per device the fleet never exceeds: the steady state, nothing held."""


def warning_levels(rules: RuleSet) -> dict[str, float]:
    """Per sensor type, the upper warning level of the rule that matches on type alone."""
    levels: dict[str, float] = {}
    for rule in rules.rules:
        match = dict(rule.match)
        above = next((s for s in rule.sides if s.name == "above"), None)
        if set(match) == {"type"} and above is not None and above.warning is not None:
            levels.setdefault(match["type"], above.warning)
    return levels


def is_anomalous(message: Mapping[str, Any], levels: Mapping[str, float]) -> bool:
    """A message with a reading past its type's warning level."""
    return any(r["value"] > levels.get(r["type"], math.inf) for r in message["data"])


def device_ids(messages: Iterable[Mapping[str, Any]]) -> list[str]:
    return sorted({m["deviceId"] for m in messages})


def readings_in(messages: Iterable[Mapping[str, Any]]) -> int:
    return sum(len(m["data"]) for m in messages)


def _overheat(step: int, start: int, baseline: float) -> float | None:
    """Climb to 96 C over 5 readings, hold 4, cool down over 6; None outside the episode."""
    offset = step - start
    peak = 96.0
    if 0 <= offset < 5:
        return baseline + (peak - baseline) * (offset + 1) / 5
    if 5 <= offset < 9:
        return peak
    if 9 <= offset < 15:
        return peak - (peak - baseline) * (offset - 8) / 6
    return None


def _device_messages(
    index: int, count: int, levels: Mapping[str, float], rng: random.Random
) -> list[dict[str, Any]]:
    device_id = f"pump-{index:04d}"
    location = f"outdoor-yard-{index % 3}" if index % 10 == 9 else f"line-{index % 8}"
    phase = rng.randrange(INTERVAL_MS)
    baselines = {}
    for sensor in SENSORS:
        margin = CLOSE_MARGIN if rng.random() < CLOSE_SHARE else COMFORTABLE_MARGIN
        baselines[sensor.sensor_id] = levels[sensor.type] - sensor.spread * rng.uniform(*margin)
    drift = {s.sensor_id: rng.gauss(0, 1) for s in SENSORS}
    overheat_at = count // 3 + index * count // 6 if index in OVERHEATING else None
    messages = []
    for step in range(count):
        timestamp = START_MS + step * INTERVAL_MS + phase + rng.randrange(-300, 300)
        data = []
        for sensor in SENSORS:
            z = PERSISTENCE * drift[sensor.sensor_id]
            z += math.sqrt(1 - PERSISTENCE**2) * rng.gauss(0, 1)
            drift[sensor.sensor_id] = z
            value = baselines[sensor.sensor_id] + sensor.spread * z
            if sensor.type == "temperature" and overheat_at is not None:
                value = _overheat(step, overheat_at, baselines[sensor.sensor_id]) or value
            if sensor.type == "temperature" and index == FLAPPING:
                value = levels["temperature"] + (1.6 if step % 2 else -1.6) + rng.gauss(0, 0.5)
            data.append(
                {
                    "sensorId": sensor.sensor_id,
                    "type": sensor.type,
                    "value": round(value, 2),
                    "unit": sensor.unit,
                    "location": location,
                }
            )
        messages.append(
            {
                "deviceId": device_id,
                "timestamp": timestamp,
                "receivedAt": timestamp + rng.randrange(40, 400),
                "data": data,
            }
        )
    return messages


def fleet(
    devices: int, messages_per_device: int, *, seed: int = 7, rules: RuleSet | None = None
) -> list[dict[str, Any]]:
    """Every device sends one message of four readings every ~10 s of simulated time.

    Values drift around per-device baselines; about 3% of messages carry a reading
    past its warning level. Devices 0 and 1 overheat past critical and recover;
    device 2 hovers around the temperature warning level. Messages come back in
    arrival order (`receivedAt`), the order IoT Core hands them on.
    """
    levels = warning_levels(rules or default_rules())
    rng = random.Random(seed)
    messages = [
        m for d in range(devices) for m in _device_messages(d, messages_per_device, levels, rng)
    ]
    messages.sort(key=lambda m: (m["receivedAt"], m["deviceId"]))
    return messages


# --- a local AWS ---------------------------------------------------------------------


@dataclass(slots=True)
class SimulatedClock:
    """The runtime's clock, moved along with the simulated fleet."""

    now_ms: int = START_MS

    def __call__(self) -> int:
        return self.now_ms


def invocation_time(messages: Iterable[Mapping[str, Any]]) -> int:
    """The runtime's clock when it handles `messages`: a moment after the last arrived."""
    return int(max(m["receivedAt"] for m in messages)) + DELIVERY_DELAY_MS


@contextmanager
def local_aws(things: Iterable[str]) -> Iterator[Any]:
    """The stack in moto, in process, with `things` registered; yields its Stack."""
    from moto import mock_aws

    from telemetry.local.provision import provision

    env = {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    with mock.patch.dict(os.environ, env), mock_aws():
        os.environ.pop("AWS_ENDPOINT_URL", None)
        yield provision(things=things)


def clients_for(stack: Any, store: Mapping[str, str] | None = None) -> Any:
    """The function's AWS clients, configured for `stack` (and `store`: the
    TIMESERIES_STORE variables, when not Timestream)."""
    from telemetry.handler import Clients
    from telemetry.settings import Settings

    return Clients.create(Settings.from_env(stack.environment() | dict(store or {})))


def runtime(
    stack: Any, clock: Callable[[], int], store: Mapping[str, str] | None = None
) -> tuple[Any, Any]:
    """A fresh execution environment on `stack`: (Runtime, Clients)."""
    from telemetry.handler import build_runtime
    from telemetry.settings import Settings

    clients = clients_for(stack, store)
    settings = Settings.from_env(stack.environment() | dict(store or {}))
    return build_runtime(settings, clients, clock=clock), clients


# --- metering ------------------------------------------------------------------------


def ceil_div(amount: float, unit: float) -> int:
    return math.ceil(amount / unit) if amount > 0 else 0


@dataclass(slots=True)
class Usage:
    """Billable AWS usage and time of one or more invocations."""

    invocations: int = 0
    billed_ms: int = 0
    seconds: float = 0.0
    log_bytes: int = 0
    state_read_units: int = 0
    state_writes: int = 0
    state_write_units: int = 0
    shadow_writes: int = 0
    shadow_units: int = 0
    sns_publishes: int = 0
    sns_units: int = 0
    timestream_calls: int = 0
    timestream_records: int = 0
    timestream_bytes: int = 0
    timestream_units: int = 0
    dlq_requests: int = 0
    api_calls: int = 0
    operations: Counter[str] = field(default_factory=Counter)
    timestream_sizes: list[int] = field(default_factory=list)  # records per call, in order

    def __iadd__(self, other: Usage) -> Usage:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def add_call(self, service: str, operation: str, params: Mapping[str, Any]) -> None:
        self.api_calls += 1
        self.operations[f"{service}:{operation}"] += 1
        units = metered_units(service, operation, params)
        self.state_read_units += units.get("DynamoDB reads", 0)
        self.state_write_units += units.get("DynamoDB writes", 0)
        self.shadow_units += units.get("IoT shadow updates", 0)
        self.sns_units += units.get("SNS publishes", 0)
        self.timestream_units += units.get("Timestream writes", 0)
        self.dlq_requests += units.get("SQS requests", 0)
        match operation:
            case "PutItem":
                self.state_writes += 1
            case "UpdateThingShadow":
                self.shadow_writes += 1
            case "Publish" | "PublishBatch":
                self.sns_publishes += len(params.get("PublishBatchRequestEntries", [params]))
            case "WriteRecords":
                self.timestream_calls += 1
                self.timestream_records += len(params["Records"])
                self.timestream_sizes.append(len(params["Records"]))
                self.timestream_bytes += sum(billed_bytes(r) for r in params["Records"])


# --- running handlers ----------------------------------------------------------------


def record_usage(clients: Any) -> Any:
    """Record every AWS call `clients` make (tests.localaws.record_calls): a CallLog."""
    from tests.localaws import record_calls

    return record_calls(clients)


def invoke(log: Any, call: Callable[[], Any]) -> tuple[Usage, Any]:
    """Run one invocation; its usage (the calls it added to `log`, its time) and result."""
    start = len(log.calls)
    began = time.perf_counter()
    result = call()
    elapsed = time.perf_counter() - began
    usage = Usage(invocations=1, seconds=elapsed, billed_ms=math.ceil(elapsed * 1000))
    for service, operation, params in log.calls[start:]:
        usage.add_call(service, operation, params)
    return usage, result


@dataclass(slots=True)
class HandlerRun:
    """A handler's invocations on one stack: each one's usage, their sum, and the
    batch items it reported as failed."""

    name: str
    messages: int
    usage: Usage = field(default_factory=Usage)
    invocations: list[Usage] = field(default_factory=list)
    batch_failures: int = 0
    store_requests: int = 0
    """Write requests the time-series writer sent (Timestream calls or InfluxDB HTTP)."""
    written: list[list[dict[str, Any]]] = field(default_factory=list)  # records, per invocation

    def add(self, usage: Usage) -> None:
        self.invocations.append(usage)
        self.usage += usage


def stream_events(batches: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One Kinesis event per batch, sequence numbers running on from batch to batch."""
    events, sequence = [], 1
    for batch in batches:
        events.append(kinesis_event(batch, sequence))
        sequence += len(batch)
    return events


def run_handler(
    name: str,
    batches: Sequence[Sequence[dict[str, Any]]],
    events: Sequence[Any],
    store: Mapping[str, str] | None = None,
) -> HandlerRun:
    """Our handler on a fresh stack, one invocation per event (`batches[i]` holds
    the messages of `events[i]`), metrics flushed per invocation as
    `lambda_handler` does; its output is counted, not shown. `store`: the
    TIMESERIES_STORE variables of another store than Timestream."""
    from telemetry import handler

    run = HandlerRun(name, sum(len(b) for b in batches))
    with local_aws(device_ids(m for b in batches for m in b)) as stack:
        clock = SimulatedClock()
        rt, clients = runtime(stack, clock, store)
        log = record_usage(clients)
        entry = handler.metrics.log_metrics(lambda event, context: handler.handle(event, rt))
        with captured_output() as output:
            for batch, event in zip(batches, events, strict=True):
                clock.now_ms = invocation_time(batch)
                start = len(log.calls)
                usage, response = invoke(log, functools.partial(entry, event, None))
                run.add(usage)
                run.written.append(
                    [
                        record
                        for _, operation, params in log.calls[start:]
                        if operation == "WriteRecords"
                        for record in params["Records"]
                    ]
                )
                run.batch_failures += len(response.get("batchItemFailures", []))
        run.store_requests = int(getattr(rt.pipeline._timeseries, "calls", 0))
    run.usage.log_bytes = output.bytes
    return run


@dataclass(slots=True)
class CapturedOutput:
    bytes: int = 0


@contextmanager
def captured_output() -> Iterator[CapturedOutput]:
    """Send everything written to stdout (file descriptor 1) to a scratch file, and
    count it: the handler's log lines and EMF metrics, which Lambda ships to
    CloudWatch Logs."""
    captured = CapturedOutput()
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield captured
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
            captured.bytes = os.fstat(sink.fileno()).st_size


# --- reporting -----------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.inf


def ratio_text(numerator: float, denominator: float) -> str:
    """The ratio with two decimals; "-" when there is nothing to compare with."""
    return f"{numerator / denominator:.2f}" if denominator else "-"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [list(map(str, header)), *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        first, *rest = row
        return "  ".join(
            [first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))]
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])
