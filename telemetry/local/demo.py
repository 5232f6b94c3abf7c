"""`telemetry demo`: the whole product on one machine, in one command.

A local AWS (moto's server, in this process) gets the resources template.yaml
deploys; a simulated fleet (telemetry.local.fleet) is run through the real
handler, one invocation per message as the IoT rule's direct invocations do;
then the summary shows what the local AWS holds: readings stored, what was
quarantined and why, the alerts as the operators' queue received them, the
alert state in the device shadows, the API calls the function made, and what
that would cost on AWS per million messages. With `--store influxdb` the
readings and alert history go to InfluxDB instead of Timestream: a local
`influxd` started for the run (Debian's `influxdb` package) or one already
running (`--influxdb-url`), and what it holds is read back and printed.

Every number printed is read back from the local AWS or counted on the
function's own clients, so a test can check it against what moto holds.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from telemetry.core.messages import iso_utc
from telemetry.core.rules import rule_files
from telemetry.local.fleet import Delivery, Simulation, simulate
from telemetry.local.influx import InfluxError, LocalInfluxd, influxql, rows
from telemetry.local.prices import PRICES, Price, billed_units, kinesis_kilobytes, metered_units
from telemetry.local.server import LocalAwsError, LocalAwsServer, check_reachable, point_at
from telemetry.local.streams import kinesis_event, sequence_number
from telemetry.terminal import (
    Screen,
    duration_text,
    plural,
    render_transition_table,
    time_text,
)

if TYPE_CHECKING:
    from telemetry.handler import Clients, Runtime
    from telemetry.local.provision import Stack


INGEST_ITEMS: Final = ("IoT Core messages", "IoT rules and actions")
"""Paid for every message whatever the function does."""
LAMBDA_MEMORY_GB: Final = 0.25
MAX_ATTEMPTS: Final = 3
"""An asynchronous invocation runs at most three times (two retries)."""
MAX_FAILING_IN_A_ROW: Final = 5
ALERT_ROWS_SHOWN: Final = 60
OPERATOR_FILTER: Final = ["WARNING", "CRITICAL"]
ON_CALL_FILTER: Final = ["CRITICAL"]


class DemoError(RuntimeError):
    """The demo cannot run or finish; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    devices: int = 20
    sensors: int = 3
    duration_ms: int = 600_000
    seed: int = 7
    endpoint_url: str | None = None
    ingest: str = "direct"
    """`direct`: one invocation per message, as the IoT rule's Lambda action does;
    `stream`: Kinesis batches (deviceId as partition key), as IngestMode=Stream."""
    batch_size: int = 500
    mqtt: bool = False
    """Devices publish over MQTT to a local broker; the template's rule invokes
    the function (telemetry.local.mqtt_demo)."""
    basic_ingest: bool = False
    store: str = "timestream"
    """`timestream` (moto's Timestream) or `influxdb`."""
    influxdb_url: str | None = None
    """An InfluxDB already running; None: start a local influxd for the run."""
    influxdb_api: str = "v1"
    influxdb_database: str = "telemetry"
    influxdb_token: str | None = None
    keep: bool = False
    """Leave the local AWS up after the summary (until interrupted) and print the
    `telemetry alerts` commands that act on its stack."""


@dataclass(frozen=True, slots=True)
class InfluxTarget:
    """The InfluxDB the demo's function writes to."""

    url: str
    api: str
    database: str
    token: str | None
    embedded: bool

    def environment(self) -> dict[str, str]:
        env = {
            "TIMESERIES_STORE": "influxdb",
            "INFLUXDB_URL": self.url,
            "INFLUXDB_API": self.api,
            "INFLUXDB_DATABASE": self.database,
        }
        return env | ({"INFLUXDB_TOKEN": self.token} if self.token else {})


@dataclass(frozen=True, slots=True)
class StoredInflux:
    """What InfluxDB holds after the run, read back with InfluxQL."""

    readings: int
    devices: int
    alerts_by_status: dict[str, int]


@dataclass(slots=True)
class Meter:
    """The function's AWS calls, counted per operation and metered as AWS bills them."""

    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    units: Counter[str] = field(default_factory=Counter)
    invocations: int = 0
    billed_ms: int = 0

    def attach(self, clients: Clients) -> None:
        every = (
            clients.timestream,
            clients.sns,
            clients.dynamodb,
            clients.iot_data,
            clients.sqs,
            clients.secretsmanager,
        )
        for client in (c for c in every if c is not None):
            service_id = client.meta.service_model.service_id.hyphenize()
            client.meta.events.register(f"before-parameter-build.{service_id}", self._hook)

    def _hook(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        self.calls[(service, model.name)] += 1
        self.meter(service, model.name, params)

    def meter(self, service: str, operation: str, params: Mapping[str, Any]) -> None:
        for name, units in metered_units(service, operation, params).items():
            self.units[name] += units

    def invocation(self, seconds: float) -> None:
        self.invocations += 1
        self.billed_ms += max(1, math.ceil(seconds * 1000))


@dataclass(slots=True)
class Tally:
    """What the invocations reported: their return values and their metrics."""

    invocations: int = 0
    retried: int = 0
    failed: int = 0
    readings_stored: int = 0
    rejected: int = 0
    late: int = 0
    not_evaluated: int = 0
    transitions: list[dict[str, Any]] = field(default_factory=list)
    late_by_device: Counter[str] = field(default_factory=Counter)
    sweeps: int = 0
    swept: int = 0
    iot_message_units: int = 0
    kinesis_units: int = 0
    next_sequence: int = 1
    device_side: Any = None
    """With --mqtt: what the broker, the rule and the devices did (mqtt_demo)."""

    def add_outcomes(self, outcomes: Sequence[Any]) -> None:
        """What a batch's pipeline outcomes report (its answer names only failures)."""
        for outcome in outcomes:
            self.readings_stored += outcome.readings_stored
            self.rejected += len(outcome.rejections)
            self.late += sum(d.late for d in outcome.devices)
            self.late_by_device.update({d.device_id: d.late for d in outcome.devices if d.late})
            self.swept += outcome.swept
            self.not_evaluated += len(outcome.not_evaluated)
            self.transitions.extend(t.to_json() for t in outcome.transitions)


@contextmanager
def _quiet_function() -> Iterator[None]:
    """Powertools logs JSON to stdout: keep it off the demo's screen."""
    import logging  # noqa: PLC0415

    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "CRITICAL")
    log = logging.getLogger("telemetry")
    before = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(before)


def _invoke(rt: Runtime, delivery: Delivery, clock: list[int], meter: Meter, tally: Tally) -> None:
    from telemetry import handler  # noqa: PLC0415

    last_error: Exception | None = None
    for attempt in range(MAX_ATTEMPTS):
        clock[0] = delivery.at_ms + attempt * 60_000
        started = time.perf_counter()
        with handler.observed() as outcomes:
            try:
                handler.handle(delivery.event, rt)
            except Exception as exc:  # noqa: BLE001 - Lambda retries whatever the error
                last_error = exc
                continue
            finally:
                meter.invocation(time.perf_counter() - started)
                tally.invocations += 1
                # Lambda would flush these as EMF lines; the demo reads the outcomes instead.
                handler.metrics.clear_metrics()
        tally.retried += attempt > 0
        tally.add_outcomes(outcomes)
        return
    tally.failed += 1
    raise DemoError(f"an invocation failed {MAX_ATTEMPTS} times: {last_error}")


SWEEP_EVERY_MS: Final = 60_000
"""The template's default SweepIntervalMinutes, in simulated time."""
HEARTBEAT_RULE: Final = """\
# Added by `telemetry demo` beside the shipped rules: the chillers' temperature
# is expected at least once a minute (the silent-device case). Each tracked
# sensor costs up to two state writes per window: a 1m heartbeat on every
# sensor of the fleet would double the demo's DynamoDB writes.
rules:
  - name: demo-heartbeat
    description: a chiller whose temperature has not arrived for a minute is silent
    match: {deviceId: "chiller-*", type: temperature}
    nodata: 1m

# The demo judges each device's story message by message: a budget per device
# (20 changes in any 10 minutes; the default is 5 for the whole fleet) sends every
# change of the fleet's few alerts one by one. Beyond it, changes go in digests.
notifications:
  groupBy: [deviceId]
  maxPerWindow: 20
"""
HEARTBEAT_WINDOW_MS: Final = 60_000


def demo_rules(directory: Path, sim: Simulation | None = None) -> Path:
    """The shipped rules plus the demo's heartbeat, in `directory`; with `sim`,
    also the rules of its condition cases (rate, stuck, spike, range)."""
    from telemetry.local.fleet import condition_rules  # noqa: PLC0415
    from telemetry.settings import DEFAULT_RULES_PATH  # noqa: PLC0415

    for source in rule_files(DEFAULT_RULES_PATH):
        (directory / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    (directory / "zz-demo-heartbeat.yaml").write_text(HEARTBEAT_RULE, encoding="utf-8")
    if sim is not None and any(s.name in _CONDITION_CASES for s in sim.scenarios):
        (directory / "zz-demo-conditions.yaml").write_text(condition_rules(sim), encoding="utf-8")
    return directory


def sweep_times(sim: Simulation) -> list[int]:
    """When the schedule fires during the run (not after: the whole fleet stops
    at the end, which is not a silence)."""
    first = (sim.start_ms // SWEEP_EVERY_MS + 1) * SWEEP_EVERY_MS
    return list(range(first, sim.end_ms + 1, SWEEP_EVERY_MS))


def scheduled_event(at_ms: int) -> dict[str, Any]:
    """What EventBridge sends on the template's Schedule event."""
    return {
        "version": "0",
        "id": f"demo-sweep-{at_ms}",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": iso_utc(at_ms)[:19] + "Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/telemetry-Sweep"],
        "detail": {},
    }


def _sweep(rt: Runtime, at_ms: int, clock: list[int], meter: Meter, tally: Tally) -> None:
    """One scheduled sweep, retried as an asynchronous invocation is."""
    from telemetry import handler  # noqa: PLC0415

    for attempt in range(MAX_ATTEMPTS):
        clock[0] = at_ms + 500 + attempt * 60_000
        started = time.perf_counter()
        with handler.observed() as outcomes:
            try:
                handler.handle(scheduled_event(at_ms), rt)
            except Exception:  # noqa: BLE001, S112 - Lambda retries whatever the error
                continue
            finally:
                meter.invocation(time.perf_counter() - started)
                tally.invocations += 1
                tally.sweeps += 1
                handler.metrics.clear_metrics()
        tally.add_outcomes(outcomes)
        return
    tally.failed += 1


STREAM_WINDOW_MS: Final = 5_000
"""The template's default MaximumBatchingWindowInSeconds, in simulated time."""


def _batches(deliveries: Sequence[Delivery], size: int) -> Iterator[list[Delivery]]:
    """What a Kinesis event source mapping hands over: records in arrival order,
    up to `size` of them, within one batching window."""
    batch: list[Delivery] = []
    for delivery in deliveries:
        if batch and (len(batch) >= size or delivery.at_ms - batch[0].at_ms >= STREAM_WINDOW_MS):
            yield batch
            batch = []
        batch.append(delivery)
    if batch:
        yield batch


def _invoke_batch(
    rt: Runtime, batch: list[Delivery], clock: list[int], meter: Meter, tally: Tally
) -> None:
    """One Kinesis invocation, retried from its earliest failed record on, as
    Lambda does with ReportBatchItemFailures."""
    from telemetry import handler  # noqa: PLC0415

    pending = batch
    first = tally.next_sequence
    tally.next_sequence += len(batch)
    for attempt in range(MAX_ATTEMPTS):
        clock[0] = batch[-1].at_ms + attempt * 60_000
        event = kinesis_event([d.event for d in pending], first)
        started = time.perf_counter()
        with handler.observed() as outcomes:
            try:
                response = handler.handle(event, rt)
            except Exception:  # noqa: BLE001 - Lambda retries the whole batch
                response = {"batchItemFailures": [{"itemIdentifier": sequence_number(first)}]}
            finally:
                meter.invocation(time.perf_counter() - started)
                tally.invocations += 1
                handler.metrics.clear_metrics()
        tally.add_outcomes(outcomes)
        failed = sorted(int(f["itemIdentifier"]) for f in response["batchItemFailures"])
        if not failed:
            return
        tally.retried += 1
        skip = failed[0] - first
        pending, first = pending[skip:], failed[0]
    tally.failed += 1
    raise DemoError(f"a batch kept failing after {MAX_ATTEMPTS} attempts")


def _free_prefix(url: str) -> str:
    """`telemetry`, or `telemetry-2`, ... when an earlier run used it at `url`."""
    from telemetry.adapters.aws import make_client  # noqa: PLC0415

    tables = set(make_client("dynamodb", endpoint_url=url).list_tables().get("TableNames", []))
    prefix, n = "telemetry", 1
    while f"{prefix}-alert-state" in tables:
        n += 1
        prefix = f"telemetry-{n}"
    return prefix


def _provision(url: str, sim: Simulation) -> tuple[Stack, str]:
    from telemetry.adapters.aws import make_client  # noqa: PLC0415
    from telemetry.local.provision import provision  # noqa: PLC0415

    prefix = _free_prefix(url)
    stack = provision(
        endpoint_url=url,
        things=[d.device_id for d in sim.devices],
        operator_filter=OPERATOR_FILTER,
        prefix=prefix,
    )
    sqs = make_client("sqs", endpoint_url=url)
    on_call = sqs.create_queue(QueueName=f"{prefix}-on-call")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=on_call, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    make_client("sns", endpoint_url=url).subscribe(
        TopicArn=stack.topic_arn,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={
            "RawMessageDelivery": "true",
            "FilterPolicy": json.dumps({"severity": ON_CALL_FILTER}),
        },
    )
    return stack, on_call


def peek(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message in a queue, in queue order, left in the queue: received
    (so none comes twice), then made visible again at once."""
    seen: dict[str, dict[str, Any]] = {}
    while True:
        answer = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=120,
            WaitTimeSeconds=0,
        )
        messages = answer.get("Messages", [])
        if not messages:
            break
        for message in messages:
            seen.setdefault(message["MessageId"], message)
    handles = [m["ReceiptHandle"] for m in seen.values()]
    for start in range(0, len(handles), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
            for i, h in enumerate(handles[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
    return list(seen.values())


def _shadow_alerts(iot: Any, things: Sequence[str], shadow: str) -> dict[str, dict[str, Any]]:
    """Per device, the alerts its named shadow lists as active."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    found: dict[str, dict[str, Any]] = {}
    for thing in things:
        try:
            answer = iot.get_thing_shadow(thingName=thing, shadowName=shadow)
        except ClientError:
            continue
        reported = json.loads(answer["payload"].read()).get("state", {}).get("reported", {})
        active = {k: v for k, v in (reported.get("alerts") or {}).items() if v}
        if active:
            found[thing] = active
    return found


@dataclass(slots=True)
class Observed:
    """What the local AWS holds after the run."""

    alerts: list[dict[str, Any]]
    on_call: int
    on_call_queue: str
    dead_letters: list[dict[str, Any]]
    shadows: dict[str, dict[str, Any]]
    influx: StoredInflux | None = None
    operators: Any = None
    """The operators' scene after the run (telemetry.local.operators_demo)."""
    outage: Any = None
    """The gateway outage after the run (telemetry.local.outage_demo)."""
    digests: list[dict[str, Any]] = field(default_factory=list)
    """Digests the operator queue received (changes over a group's budget)."""


def _observe(url: str, stack: Stack, on_call_url: str, tally: Tally) -> Observed:
    from telemetry.adapters.aws import make_client  # noqa: PLC0415

    sqs = make_client("sqs", endpoint_url=url)
    bodies = [json.loads(m["Body"]) for m in peek(sqs, stack.operator_queue_url)]
    alerts = [b for b in bodies if b.get("status") != "DIGEST"]
    dead = [json.loads(m["Body"]) for m in peek(sqs, stack.dead_letter_queue_url)]
    on_call = len(peek(sqs, on_call_url))
    alerted = sorted({t["deviceId"] for t in tally.transitions})
    shadows = _shadow_alerts(make_client("iot-data", endpoint_url=url), alerted, stack.shadow_name)
    observed = Observed(alerts, on_call, _queue(on_call_url), dead, shadows)
    observed.digests = [b for b in bodies if b.get("status") == "DIGEST"]
    return observed


def _operators(url: str, stack: Stack, sim: Simulation) -> Any:
    """After the fleet: operators acknowledge one alert and snooze another, on a
    stack of their own beside the fleet's (so that every number above stays the
    fleet's own)."""
    from telemetry.adapters.aws import make_client  # noqa: PLC0415
    from telemetry.local.operators_demo import run_scene  # noqa: PLC0415
    from telemetry.local.provision import provision  # noqa: PLC0415

    # Things of their own: re-creating the fleet's would reset their shadows.
    devices = [f"{d.device_id}-ops" for d in sim.devices[:2]]
    ops = provision(
        endpoint_url=url,
        things=devices,
        operator_filter=OPERATOR_FILTER,
        prefix=stack.database.removesuffix("-db") + "-ops",
    )
    sqs = make_client("sqs", endpoint_url=url)
    scene = run_scene(
        ops.environment() | {"AWS_ENDPOINT_URL": url},
        devices,
        sim.end_ms + SWEEP_EVERY_MS,
        lambda: peek(sqs, ops.operator_queue_url),
    )
    scene.stack = ops.state_table.removesuffix("-alert-state")
    return scene


def _outage(url: str, stack: Stack, sim: Simulation) -> Any:
    """After the fleet: a line's gateway and its 20 devices drop off and come
    back, on two stacks of their own: the product's rules, and one message per
    sensor."""
    from telemetry.adapters.aws import make_client  # noqa: PLC0415
    from telemetry.local.outage_demo import GATEWAY, MEMBERS, run_scene  # noqa: PLC0415
    from telemetry.local.provision import provision  # noqa: PLC0415

    base = stack.database.removesuffix("-db")
    stacks = [
        provision(endpoint_url=url, things=[GATEWAY, *MEMBERS], prefix=f"{base}-{name}")
        for name in ("outage", "per-sensor")
    ]
    sqs = make_client("sqs", endpoint_url=url)
    scene = run_scene(
        [s.environment() | {"AWS_ENDPOINT_URL": url} for s in stacks],
        Path(tempfile.mkdtemp(prefix="telemetry-outage-")),
        sim.end_ms + 3_600_000,
        [functools.partial(peek, sqs, s.operator_queue_url) for s in stacks],
    )
    scene.stack = stacks[0].state_table.removesuffix("-alert-state")
    return scene


def run(options: DemoOptions, out: Screen, err: Screen) -> None:
    """Run the demo and print its summary on `out` (progress on `err`)."""
    try:
        with _influx_target(options) as influx:
            if options.endpoint_url:
                check_reachable(options.endpoint_url)
                report = _run_against(options.endpoint_url, False, options, out, err, influx)
                if options.keep:
                    _try_alerts(report, out)
                return
            with LocalAwsServer() as server:
                report = _run_against(server.url, True, options, out, err, influx)
                if options.keep:
                    _try_alerts(report, out)
                    _until_interrupted(server.url, out)
    except (LocalAwsError, InfluxError) as exc:
        raise DemoError(str(exc)) from None


@contextmanager
def _influx_target(options: DemoOptions) -> Iterator[InfluxTarget | None]:
    """The InfluxDB of `--store influxdb`: the one given, or a local influxd for the run."""
    if options.store != "influxdb":
        yield None
        return
    if options.influxdb_url:
        check_reachable(options.influxdb_url, what="InfluxDB")
        target = InfluxTarget(
            options.influxdb_url,
            options.influxdb_api,
            options.influxdb_database,
            options.influxdb_token,
            embedded=False,
        )
        if target.api == "v1":
            with contextlib.suppress(InfluxError):  # InfluxDB 2 and 3 create theirs otherwise
                influxql(target.url, f'CREATE DATABASE "{target.database}"', token=target.token)
        yield target
        return
    with LocalInfluxd() as influxd:
        database = options.influxdb_database
        influxql(influxd.url, f'CREATE DATABASE "{database}"')
        yield InfluxTarget(influxd.url, "v1", database, None, embedded=True)


def _read_back(target: InfluxTarget) -> StoredInflux:
    def query(statement: str) -> list[dict[str, Any]]:
        return rows(influxql(target.url, statement, target.database, target.token))

    per_device = query('SELECT count("value") FROM "reading" GROUP BY "deviceId"')
    per_status = query('SELECT count("value") FROM "alert" GROUP BY "status"')
    return StoredInflux(
        readings=sum(int(r["count"]) for r in per_device),
        devices=len(per_device),
        alerts_by_status={str(r["status"]): int(r["count"]) for r in per_status},
    )


def _run_against(
    url: str,
    embedded: bool,
    options: DemoOptions,
    out: Screen,
    err: Screen,
    influx: InfluxTarget | None = None,
) -> Report:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    point_at(url)
    end_ms = (time.time_ns() // 1_000_000) // 60_000 * 60_000
    sim = simulate(
        devices=options.devices,
        sensors=options.sensors,
        duration_ms=options.duration_ms,
        seed=options.seed,
        end_ms=end_ms,
        silence=not options.mqtt,
        conditions=not options.mqtt,
    )
    try:
        with _quiet_function():
            stack, on_call_url = _provision(url, sim)
            meter, tally = _run_fleet(url, stack, sim, err, options, influx)
            observed = _observe(url, stack, on_call_url, tally)
            observed.operators = _operators(url, stack, sim)
            observed.outage = _outage(url, stack, sim)
    except (BotoCoreError, ClientError) as exc:
        raise DemoError(f"the local AWS at {url} failed: {exc}") from None
    if influx is not None:
        observed.influx = _read_back(influx)
    report = Report(options, url, embedded, sim, stack, meter, tally, observed, influx)
    report.render(out)
    return report


def alerts_commands(report: Report) -> list[str]:
    """The `telemetry alerts` commands that act on the run's stack at its local
    AWS: list, and, when an alert is still active, acknowledge and snooze it."""
    where = f"--endpoint-url {report.url} --stack {report.stack_name}"
    commands = [f"telemetry alerts list {where}"]
    active = [
        (device, sensor, entry.get("rule"))
        for device, alerts in sorted(report.observed.shadows.items())
        for sensor, entry in sorted(alerts.items())
        if entry.get("rule")
    ]
    if active:
        device, sensor, rule = active[0]
        commands += [
            f"telemetry alerts ack {device} {sensor} {rule} {where} --note 'on my way'",
            f"telemetry alerts snooze {device} {sensor} {rule} --until 2h {where}",
        ]
    return commands


def _try_alerts(report: Report, out: Screen) -> None:
    out.heading(f"Try the operators' tools on this run's stack, {report.stack_name}:")
    for command in alerts_commands(report):
        out.line(f"  {command}")


def _until_interrupted(url: str, out: Screen) -> None:
    """Keep the local AWS (served by threads of this process) up until Ctrl-C or
    SIGTERM, whatever this process inherited for them (a parent may ignore SIGINT)."""
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    stop = threading.Event()
    stops = (signal.SIGINT, signal.SIGTERM)
    before = {s: signal.signal(s, lambda *_: stop.set()) for s in stops}
    try:
        out.line()
        out.line(f"The local AWS at {url} stays up until you press Ctrl-C.")
        out.stream.flush()
        while not stop.wait(timeout=1.0):
            pass
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
    out.line("Local AWS stopped.")


def _run_fleet(
    url: str,
    stack: Stack,
    sim: Simulation,
    err: Screen,
    options: DemoOptions,
    influx: InfluxTarget | None = None,
) -> tuple[Meter, Tally]:
    from telemetry import handler  # noqa: PLC0415
    from telemetry.settings import Settings  # noqa: PLC0415

    store = influx.environment() if influx is not None else {}
    rules_dir = demo_rules(Path(tempfile.mkdtemp(prefix="telemetry-rules-")), sim)
    rules = {"RULES_PATH": str(rules_dir)}
    settings = Settings.from_env(stack.environment() | {"AWS_ENDPOINT_URL": url} | store | rules)
    clients = handler.Clients.create(settings)
    meter, tally = Meter(), Tally()
    meter.attach(clients)
    clock = [sim.start_ms]
    rt = handler.build_runtime(settings, clients, clock=None if options.mqtt else lambda: clock[0])
    handler.metrics.clear_metrics()
    if options.mqtt:
        _run_fleet_over_mqtt(url, stack, sim, (rt, clients, meter, tally), err, options)
        return meter, tally
    sweeps = sweep_times(sim)
    if options.ingest == "stream":
        with _progress(err, len(sim.deliveries)) as advance:
            for batch in _batches(sim.deliveries, options.batch_size):
                while sweeps and sweeps[0] <= batch[0].at_ms:
                    _sweep(rt, sweeps.pop(0), clock, meter, tally)
                tally.iot_message_units += sum(
                    billed_units(len(json.dumps(d.event)), 5 * 1024) for d in batch
                )
                tally.kinesis_units += sum(
                    kinesis_kilobytes(json.dumps(d.event).encode()) for d in batch
                )
                _invoke_batch(rt, batch, clock, meter, tally)
                for _ in batch:
                    advance()
        for at_ms in sweeps:
            _sweep(rt, at_ms, clock, meter, tally)
        return meter, tally
    with _progress(err, len(sim.deliveries)) as advance:
        failing = 0
        for delivery in sim.deliveries:
            while sweeps and sweeps[0] <= delivery.at_ms:
                _sweep(rt, sweeps.pop(0), clock, meter, tally)
            tally.iot_message_units += billed_units(len(json.dumps(delivery.event)), 5 * 1024)
            try:
                _invoke(rt, delivery, clock, meter, tally)
                failing = 0
            except DemoError:
                failing += 1
                if failing >= MAX_FAILING_IN_A_ROW:
                    raise
            advance()
    for at_ms in sweeps:
        _sweep(rt, at_ms, clock, meter, tally)
    return meter, tally


def _run_fleet_over_mqtt(
    url: str, stack: Stack, sim: Simulation, function: tuple[Any, ...], err: Screen, options: Any
) -> None:
    try:
        from telemetry.local import mqtt_demo  # noqa: PLC0415 - amqtt and paho only when asked
    except ImportError:
        raise DemoError(
            "--mqtt needs the local extra: pip install 'iot-telemetry-processor[local]'"
        ) from None
    rt, clients, meter, tally = function
    try:
        mqtt_demo.run_fleet(url, stack, sim, rt, clients, meter, tally, err, options)
    except mqtt_demo.MqttRunError as exc:
        raise DemoError(str(exc)) from None


@contextmanager
def _progress(err: Screen, total: int) -> Iterator[Any]:
    if err.console is None:
        yield lambda: None
        return
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("messages"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err.console,
        transient=True,
    ) as progress:
        task = progress.add_task("messages", total=total)
        yield lambda: progress.advance(task)


@dataclass(slots=True)
class CostLine:
    item: str
    units: float
    price: Price

    def per_million(self, messages: int) -> float:
        return self.units * self.price.usd / messages * 1e6


@dataclass(slots=True)
class Report:
    options: DemoOptions
    url: str
    embedded: bool
    sim: Simulation
    stack: Stack
    meter: Meter
    tally: Tally
    observed: Observed
    influx: InfluxTarget | None = None

    @property
    def messages(self) -> int:
        return len(self.sim.deliveries)

    @property
    def stack_name(self) -> str:
        """The run's stack (`telemetry`, or `telemetry-2`... after earlier runs)."""
        return self.stack.state_table.removesuffix("-alert-state")

    def costs(self) -> list[CostLine]:
        m, units = self.meter, self.meter.units
        lines = [
            CostLine("Lambda requests", m.invocations, PRICES["Lambda requests"]),
            CostLine(
                "Lambda compute",
                m.billed_ms / 1000 * LAMBDA_MEMORY_GB,
                PRICES["Lambda compute"],
            ),
        ]
        lines += [
            CostLine(name, units[name], PRICES[name])
            for name in (
                "DynamoDB reads",
                "DynamoDB writes",
                "DynamoDB index reads",
                *(("Timestream writes",) if self.influx is None else ()),
                "SNS publishes",
                "IoT shadow updates",
                "SQS requests",
            )
        ]
        if self.options.ingest == "stream":
            # On demand, as the template's StreamMode defaults to: records metered at 1 KB
            # each, written once and read once by the function (stream-hours, $0.04 an
            # hour whatever the traffic, are not per message).
            gigabytes = self.tally.kinesis_units / (1024 * 1024)
            lines += [
                CostLine(name, gigabytes, PRICES[name])
                for name in ("Kinesis on-demand data in", "Kinesis on-demand data out")
            ]
        lines += [
            CostLine(INGEST_ITEMS[0], self.tally.iot_message_units, PRICES[INGEST_ITEMS[0]]),
            CostLine(INGEST_ITEMS[1], self.messages, PRICES[INGEST_ITEMS[1]]),
        ]
        return lines

    def render(self, out: Screen) -> None:
        self._render_setup(out)
        if self.tally.device_side is not None:
            self.tally.device_side.render(out)
        self._render_messages(out)
        self._render_stored(out)
        self._render_injected(out)
        self._render_alerts(out)
        self._render_shadows(out)
        self._render_operators(out)
        self._render_outage(out)
        self._render_calls(out)
        self._render_cost(out)

    def _render_setup(self, out: Screen) -> None:

        s, o = self.stack, self.options
        where = "started for this run" if self.embedded else "already running"
        out.line(f"Local AWS: {self.url} ({where})", style="bold")
        if self.influx is not None:
            where = "started for this run" if self.influx.embedded else "already running"
            out.line(
                f"InfluxDB: {self.influx.url} ({where}), {self.influx.api} API, "
                f"database {self.influx.database}",
                style="bold",
            )
        series = (
            f"Timestream {s.database}.{s.table}"
            if self.influx is None
            else f"InfluxDB {self.influx.database}"
        )
        out.line(
            f"Stack: {series}, DynamoDB {s.state_table}, "
            f"SNS {s.topic_arn.rsplit(':', 1)[-1]}, SQS {_queue(s.operator_queue_url)} "
            f"(severity {' or '.join(OPERATOR_FILTER)}), {self.observed.on_call_queue} "
            f"(severity {' or '.join(ON_CALL_FILTER)}), {_queue(s.dead_letter_queue_url)}, "
            f"{len(self.sim.devices)} things"
        )
        out.line(
            f"Fleet: {o.devices} devices x {o.sensors} sensors, "
            f"{duration_text(o.duration_ms)} of simulated time "
            f"({time_text(self.sim.start_ms)} to {time_text(self.sim.end_ms)}), seed {o.seed}"
        )

    def _render_messages(self, out: Screen) -> None:
        t, sim = self.tally, self.sim
        kinds = Counter(d.kind.split(":")[0] for d in sim.deliveries)
        sent = (
            f"{kinds['reading']} from devices, {kinds['late-batch']} late batch, "
            f"{kinds['corrupt']} corrupt"
        )
        quarantined = len(self.observed.dead_letters)
        out.heading("Messages")
        out.table(
            ("", "count", "what"),
            [
                ["messages sent", self.messages, sent],
                [
                    "invocations",
                    t.invocations,
                    (
                        f"{t.retried} retried, {t.failed} failed; {t.sweeps} of them scheduled "
                        f"sweeps, which looked at {plural(t.swept, 'device')} due"
                    ),
                ],
                [
                    "readings stored",
                    t.readings_stored,
                    (f"{self._series_store()}, beside {len(t.transitions)} alert-history records"),
                ],
                [
                    "items quarantined",
                    quarantined,
                    f"dead-letter queue {_queue(self.stack.dead_letter_queue_url)}",
                ],
                [
                    "late readings",
                    t.late,
                    "older than their alert's last decision: stored, state unchanged",
                ],
                ["stored, not evaluated", t.not_evaluated, "incoherent device thresholds"],
            ],
            numeric=(1,),
        )
        by_code: dict[str, Counter[str]] = {}
        for item in self.observed.dead_letters:
            # The topic rule's error action (--mqtt) sends IoT's error message, no code.
            code, where = (item.get("code"), item.get("field"))
            if code is None and "failures" in item:
                code, where = "rule_error_action", item["failures"][0].get("failedAction")
            by_code.setdefault(str(code), Counter())[str(where)] += 1
        if by_code:
            out.heading("Quarantined, by reason code")
            out.table(
                ("code", "items", "fields"),
                [
                    [code, sum(fields.values()), ", ".join(sorted(fields))]
                    for code, fields in sorted(by_code.items())
                ],
                numeric=(1,),
            )

    def _series_store(self) -> str:
        if self.influx is None:
            return f"Timestream {self.stack.database}.{self.stack.table}"
        return f"InfluxDB {self.influx.database}"

    def _render_stored(self, out: Screen) -> None:
        stored = self.observed.influx
        if stored is None:
            return
        out.heading("Read back from InfluxDB (InfluxQL on /query)")
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(stored.alerts_by_status.items()))
        total = sum(stored.alerts_by_status.values())
        out.table(
            ("measurement", "points", "what"),
            [
                ["reading", stored.readings, f"from {plural(stored.devices, 'device')}"],
                ["alert", total, statuses or "no transition"],
            ],
            numeric=(1,),
        )

    def _render_injected(self, out: Screen) -> None:
        out.heading("Injected cases: what was expected, what happened")
        for verdict in judge(self.sim, self.observed, self.tally):
            mark = "ok" if verdict.ok else "NOT AS EXPECTED"
            where = f" ({verdict.where})" if verdict.where else ""
            out.line(f"{mark:>3}  {verdict.case}{where}", style=None if verdict.ok else "bold red")
            out.line(f"     expected: {verdict.expected}", hang=15)
            out.line(f"     observed: {verdict.observed}", hang=15)
        silent = any(s.name == "silent device" for s in self.sim.scenarios)
        if self.options.mqtt and not silent and self.options.devices >= 4:
            out.line(
                hang=5,
                text=" --  silent device: not played over MQTT, where silence is judged in "
                "arrival time on the real clock and the run lasts seconds (see it without --mqtt)",
            )

    def _render_alerts(self, out: Screen) -> None:
        from telemetry.core.alerts import Transition  # noqa: PLC0415

        alerts = self.observed.alerts
        out.heading(
            f"Alerts received by the operator queue {_queue(self.stack.operator_queue_url)}: "
            f"{len(alerts)} (published: {len(self.tally.transitions)}; "
            f"on-call queue, CRITICAL only: {self.observed.on_call})"
        )
        at = sum(1 for a in alerts if a["severity"] == "CRITICAL")
        left = sum(
            1 for a in alerts if a["previousSeverity"] == "CRITICAL" and a["severity"] != "CRITICAL"
        )
        out.line(
            "The on-call queue's filter routes on the worse of severity and previous "
            f"severity: it gets every change to or from CRITICAL ({at} to CRITICAL, "
            f"{left} from it) and no other.",
            hang=0,
        )
        shown = self._alerts_shown()
        render_transition_table([Transition.from_json(a) for a in shown], out)
        if len(alerts) > len(shown):
            out.line(
                f"... and {len(alerts) - len(shown)} more (every alert of the injected cases "
                "is shown); all are still in the queue"
            )
        for digest in self.observed.digests:
            held = sum(digest["counts"].values())
            group = ", ".join(f"{k} {v}" for k, v in digest["group"].items()) or "the fleet"
            out.line(f"Digest: {plural(held, 'alert change')} over the budget of {group}")

    def _alerts_shown(self) -> list[dict[str, Any]]:
        """All alerts when they fit; else those of the injected cases, then the
        earliest others, up to the limit, in queue order."""
        alerts = self.observed.alerts
        if len(alerts) <= ALERT_ROWS_SHOWN:
            return alerts
        focus = {(s.device_id, s.sensor_id) for s in self.sim.scenarios}
        keep = {i for i, a in enumerate(alerts) if (a["deviceId"], a["sensorId"]) in focus}
        for index in range(len(alerts)):
            if len(keep) >= ALERT_ROWS_SHOWN:
                break
            keep.add(index)
        return [a for i, a in enumerate(alerts) if i in keep]

    def _render_operators(self, out: Screen) -> None:
        scene = self.observed.operators
        if scene is None:
            return
        out.heading(
            f"Operators act (telemetry alerts ack|snooze), on a stack of their own: {scene.stack}"
        )
        for what, answer in scene.steps:
            out.line(f"- {what}: {answer}", hang=2)
        out.line(f"The operator queue received {plural(len(scene.received), 'message')} meanwhile:")
        out.table(
            ("status", "device", "sensor", "severity", "was", "by"),
            [
                [
                    m["status"],
                    m["deviceId"],
                    m["sensorId"],
                    m["severity"],
                    m["previousSeverity"],
                    m.get("by", ""),
                ]
                for m in scene.received
            ],
            fold=(5,),
        )

    def _render_outage(self, out: Screen) -> None:
        scene = self.observed.outage
        if scene is None:
            return
        out.heading(
            f"Gateway outage: gw-line-3 and its 20 devices drop off for 12 minutes ({scene.stack})"
        )
        out.line(f"Operators received {plural(len(scene.received), 'message')}:")
        out.table(
            ("status", "device", "sensor", "severity", "members", "direction"),
            [
                [
                    m.get("status", ""),
                    m.get("deviceId", "-"),
                    m.get("sensorId", "-"),
                    m.get("severity", ""),
                    m.get("members", ""),
                    m.get("direction", m.get("group", "")),
                ]
                for m in scene.received
            ],
        )
        raised = sum(1 for m in scene.per_sensor if m.get("status") == "RAISED")
        out.line(
            f"One message per sensor, the same outage: {plural(len(scene.per_sensor), 'message')} "
            f"({raised} no-data raised, then their resolutions)."
        )

    def _render_shadows(self, out: Screen) -> None:
        shadows = self.observed.shadows
        active = sum(len(a) for a in shadows.values())
        out.heading(
            f"Alert state now in the shadows (named shadow {self.stack.shadow_name!r}): "
            f"{plural(active, 'active alert')} on {plural(len(shadows), 'device')}"
        )
        rows = [
            [
                device,
                sensor,
                entry.get("severity"),
                entry.get("rule"),
                entry.get("since"),
                f"{entry.get('value'):g}" if isinstance(entry.get("value"), float | int) else "",
            ]
            for device, alerts in sorted(shadows.items())
            for sensor, entry in sorted(alerts.items())
        ]
        if rows:
            out.table(
                ("device", "sensor", "severity", "rule", "since", "value"),
                rows,
                numeric=(5,),
                fold=(4, 5),
            )
        else:
            out.line("none: every episode has been resolved")

    def _render_calls(self, out: Screen) -> None:
        calls = self.meter.calls
        total = sum(calls.values())
        out.heading(
            f"API calls made by the function: {total} ({total / self.messages:.2f} per message)"
        )
        out.table(
            ("service", "operation", "calls", "per message"),
            [
                [service, operation, n, f"{n / self.messages:.3f}"]
                for (service, operation), n in sorted(calls.items())
            ],
            numeric=(2, 3),
        )

    def _render_cost(self, out: Screen) -> None:
        lines = self.costs()
        total = sum(line.per_million(self.messages) for line in lines)
        mean_ms = self.meter.billed_ms / max(1, self.meter.invocations)
        ingest = sum(line.per_million(self.messages) for line in lines if line.item in INGEST_ITEMS)
        out.heading(
            f"Estimated AWS cost per million messages: ${total:.2f} (the function and what it "
            f"calls ${total - ingest:.2f}, IoT Core messaging and rule ${ingest:.2f})"
        )
        out.table(
            ("item", "unit", "per\nmessage", "USD per\nunit", "USD per 1M\nmessages"),
            [
                [
                    line.item,
                    line.price.unit,
                    significant(line.units / self.messages),
                    f"{line.price.usd:.10f}".rstrip("0"),
                    f"{line.per_million(self.messages):.4f}",
                ]
                for line in lines
            ],
            numeric=(2, 3, 4),
            wrap=1,
            fold=(3, 2),
        )
        out.line()
        out.line(
            f"List prices, us-east-1 on-demand (telemetry/local/prices.py). Lambda: "
            f"{int(LAMBDA_MEMORY_GB * 1024)} MB arm64, {mean_ms:.1f} ms billed per invocation "
            "as measured here against the local AWS; real AWS latencies are higher."
        )
        if self.influx is not None:
            out.line(
                "InfluxDB is priced per instance-hour, not per write: its cost per million "
                "messages depends on the fleet's rate (make bench: bench_cost)."
            )


def significant(value: float, digits: int = 4) -> str:
    """A quantity per message: four decimals, or, below a thousandth (a Kinesis
    GB per message is millionths), as many as its first `digits` significant
    digits need, never a row of zeros."""
    if value == 0 or abs(value) >= 0.001:
        return f"{value:.4f}"
    decimals = digits - 1 - math.floor(math.log10(abs(value)))
    return f"{value:.{decimals}f}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One injected case: what the simulation meant to show and what the run did."""

    case: str
    where: str
    expected: str
    observed: str
    ok: bool


def _story(
    alerts: Sequence[Mapping[str, Any]], device_id: str, sensor_id: str, *, nodata: bool = False
) -> list[str]:
    """The statuses of one sensor's threshold alerts (or its no-data ones)."""
    return [
        f"{a['status']} {a['severity']}"
        for a in alerts
        if (a["deviceId"], a["sensorId"]) == (device_id, sensor_id)
        and (a.get("direction") == "nodata") is nodata
    ]


def _judge_silence(case: Any, story: list[str], where: str, sim: Simulation) -> Verdict:
    from telemetry.core.alerts import silence_after_ms  # noqa: PLC0415
    from telemetry.local.fleet import SILENCE  # noqa: PLC0415

    span = sim.end_ms - sim.start_ms
    quiet_ms = int(span * (SILENCE[1] - SILENCE[0]))
    long_enough = quiet_ms > silence_after_ms(HEARTBEAT_WINDOW_MS) + 2 * SWEEP_EVERY_MS
    nodata = story
    if long_enough:
        expected = (
            f"silent for about {quiet_ms // 1000}s under the {HEARTBEAT_WINDOW_MS // 1000}s "
            "heartbeat: RAISED WARNING by a sweep, RESOLVED OK when it reports again"
        )
        ok = nodata == ["RAISED WARNING", "RESOLVED OK"]
    else:
        expected = (
            f"silent for only {quiet_ms // 1000}s, shorter than the heartbeat allows: no alert"
        )
        ok = not nodata
    return Verdict(case.name, where, expected, ", ".join(story) or "no alert", ok)


_CONDITION_CASES: Final = {
    "rate of change": "rate",
    "stuck sensor": "stuck",
    "one-reading spike": "spike",
    "failed thermocouple": "range",
}


def _judge_condition(case: Any, alerts: Sequence[Mapping[str, Any]], where: str) -> Verdict:
    """A condition case: one episode of its kind, raised and resolved, and no
    other alert on its sensor (the failed thermocouple's 850 C raised nothing)."""
    mine = [a for a in alerts if (a["deviceId"], a["sensorId"]) == (case.device_id, case.sensor_id)]
    story = [f"{a['status']} {a['severity']} ({a.get('direction')})" for a in mine]
    kind = _CONDITION_CASES[case.name]
    ok = [(a["status"], a["severity"], a.get("direction")) for a in mine] == [
        ("RAISED", "WARNING", kind),
        ("RESOLVED", "OK", kind),
    ]
    return Verdict(case.name, where, case.expect, ", ".join(story) or "no alert", ok)


def judge(sim: Simulation, observed: Observed, tally: Tally) -> list[Verdict]:
    """Each injected case, checked against what the operators' queue, the
    shadows and the invocations' outcomes say happened."""
    out: list[Verdict] = []
    scripted = {(s.device_id, s.sensor_id) for s in sim.scenarios}
    for case in sim.scenarios:
        story = _story(observed.alerts, case.device_id, case.sensor_id)
        where = f"{case.device_id} {case.sensor_id}"
        active = observed.shadows.get(case.device_id, {}).get(case.sensor_id)
        if case.name == "overheating pump":
            wanted = ["RAISED WARNING", "ESCALATED CRITICAL", "DEESCALATED WARNING", "RESOLVED OK"]
            out.append(
                Verdict(
                    case.name,
                    where,
                    ", ".join(wanted),
                    ", ".join(story) or "no alert",
                    story == wanted,
                )
            )
        elif case.name == "flapping sensor":
            raised = sum(1 for s in story if s.startswith("RAISED"))
            seen = f"{plural(raised, 'episode')}: {', '.join(story) or 'no alert'}"
            out.append(Verdict(case.name, where, case.expect, seen, raised == 1))
        elif case.name == "silent device":
            silence = _story(observed.alerts, case.device_id, case.sensor_id, nodata=True)
            out.append(_judge_silence(case, silence, where, sim))
        elif case.name in _CONDITION_CASES:
            out.append(_judge_condition(case, observed.alerts, where))
        elif case.name == "late batch":
            late = tally.late_by_device.get(case.device_id, 0)
            if late:
                why = (
                    f"{plural(late, 'buffered reading')} older than the alert's last decision: "
                    "stored, state unchanged"
                )
            else:
                why = (
                    "its buffered readings came in one batch with the newer data they "
                    "predate, so they were evaluated in event time and none was late"
                )
            state = f"still active ({active['severity']})" if active else "not active"
            seen = f"{', '.join(story) or 'no alert'}; {why}; {state}"
            out.append(
                Verdict(
                    case.name,
                    where,
                    case.expect,
                    seen,
                    story == ["RAISED WARNING"] and bool(active),
                )
            )
    spikes = [a for a in observed.alerts if (a["deviceId"], a["sensorId"]) not in scripted]
    raised = sum(1 for a in spikes if a["status"] == "RAISED")
    resolved = sum(1 for a in spikes if a["status"] == "RESOLVED")
    open_spikes = sum(
        1
        for device, alerts in observed.shadows.items()
        for sensor in alerts
        if (device, sensor) not in scripted
    )
    out.append(
        Verdict(
            "spikes",
            "",
            f"{sim.spikes} one-off readings past a level: rules without `for` raise and "
            "resolve at the next reading",
            f"{plural(raised, 'episode')} raised, {resolved} resolved, {open_spikes} still active",
            raised - resolved == open_spikes,
        )
    )
    corrupt = sum(sim.corrupt.values())
    incoherent = sim.corrupt.get("corrupt:incoherent-thresholds", 0)
    quarantined = [
        d for d in observed.dead_letters if d.get("source", "validation") == "validation"
    ]
    out.append(
        Verdict(
            "corrupt messages",
            "",
            f"{plural(corrupt, 'message')}: each bad item quarantined with its reason "
            f"({incoherent} with incoherent thresholds stored, not evaluated)",
            f"{plural(len(quarantined), 'item')} quarantined, "
            f"{tally.not_evaluated} stored but not evaluated",
            len(quarantined) >= corrupt - incoherent and tally.not_evaluated >= incoherent,
        )
    )
    if observed.outage is not None:
        out.append(_judge_outage(observed.outage))
    return out


def _judge_outage(scene: Any) -> Verdict:
    """The gateway outage: the gateway's own offline alert, counting its 20
    members, and its resolution; nothing about the members' silence."""
    seen = [
        f"{m.get('deviceId')} {m.get('status')}"
        + (f" members={m['members']}" if m.get("members") is not None else "")
        for m in scene.received
    ]
    wanted = ["gw-line-3 RAISED members=20", "gw-line-3 RESOLVED"]
    return Verdict(
        "gateway outage",
        "gw-line-3",
        ", then ".join(wanted) + f" (one message per sensor: {len(scene.per_sensor)})",
        ", then ".join(seen) or "nothing",
        seen == wanted,
    )


def _queue(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]
