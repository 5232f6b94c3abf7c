"""A fleet incident: how long an outage takes to reach operators, and how many
messages it sends, at 2,000, 10,000 and 50,000 devices.

The work per device is measured, not guessed: against a local AWS (moto, in
process), a sample fleet goes silent and the real handler sweeps it, each AWS
call recorded. Three ways, on the same sample:

- before: what the product did before fleet incidents were handled (its code
  is gone, so its behaviour is reproduced exactly): one no-data alert per
  silent sensor, every transition published, one sweep invocation taking at
  most 1,500 devices a minute;
- fleet: the devices disconnect (IoT Core's lifecycle events) and an
  `offline` rule watches them, under the default notification budget; the
  schedule fans the sweep out to one invocation per shard of the due index;
- gateways: the same devices sit behind gateways (1,000 members each) that
  disconnect with them: only the gateways are raised, their members held.

The AWS calls per device, at AWS_CALL_S a call (an in-Region round trip), give
how long one device takes; a sweep invocation takes devices while it has more
than SWEEP_RESERVE_MS of its timeout left, the rest waiting a sweep interval.
The messages operators get are the notification policy's, on the raises at
the times the model gives them (telemetry.core.load). The sample run checks
that the model's messages are what the real run published.

    python -m benchmarks.bench_outage [--sample N]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from benchmarks.workload import captured_output, local_aws, record_usage, runtime, table, verdict
from telemetry.adapters.state_store import DEVICE_SHARDS, due_shard
from telemetry.core.alerts import Severity, Status, Transition
from telemetry.core.load import messages_sent
from telemetry.core.messages import iso_utc
from telemetry.core.rules import DEFAULT_NOTIFICATIONS
from telemetry.events import sweep_shard_event
from telemetry.pipeline import SWEEP_RESERVE_MS

FLEETS: Final = (2_000, 10_000, 50_000)
AWS_CALL_S: Final = 0.010
TIMEOUT_S: Final = 120
SWEEP_EVERY_S: Final = 60
BEFORE_LIMIT: Final = 1_500
"""What one sweep took at most before: one invocation, device after device."""
MEMBERS_PER_GATEWAY: Final = 1_000
START_MS: Final = 1_764_237_600_000
MINUTE_MS: Final = 60_000
TARGET_SWEEPS: Final = 2
"""The goal: every device of a 50,000-device outage handled within two sweep intervals."""

BEFORE_RULES: Final = """\
rules: [{name: heartbeat, nodata: 5m}]
notifications: {maxPerWindow: 1000}
"""
FLEET_RULES: Final = """\
rules:
  - {name: connectivity, offline: 2m}
  - {name: heartbeat, nodata: 5m}
"""


def gateway_rules(gateways: int) -> str:
    listed = "\n".join(
        f"  - {{gateway: gw-{g}, members: {{deviceId: 'dev-{g}-*'}}}}" for g in range(gateways)
    )
    return FLEET_RULES + "gateways:\n" + listed + "\n"


@dataclass(frozen=True, slots=True)
class Sampled:
    """What sweeping a sample fleet cost: AWS calls per device handled, the
    operations, the messages published, and this machine's time."""

    devices: int
    calls: int
    operations: Mapping[str, int]
    published: int
    seconds: float

    @property
    def calls_per_device(self) -> float:
        return self.calls / self.devices


def _device_names(count: int, gateways: int = 0) -> list[str]:
    if gateways:
        per = math.ceil(count / gateways)
        return [f"dev-{n // per}-{n % per}" for n in range(count)]
    return [f"dev-{n}" for n in range(count)]


def _lifecycle(device: str, kind: str, at_ms: int) -> dict[str, Any]:
    return {
        "clientId": device,
        "timestamp": at_ms,
        "eventType": kind,
        "sessionIdentifier": "00000000-0000-0000-0000-000000000001",
        "principalIdentifier": "0" * 64,
        "versionNumber": 1,
    }


def _reading(device: str, at_ms: int) -> dict[str, Any]:
    data = [{"sensorId": "temp-1", "type": "temperature", "value": 60.0}]
    return {"deviceId": device, "timestamp": at_ms, "receivedAt": at_ms, "data": data}


def _scheduled(at_ms: int) -> dict[str, Any]:
    return {"detail-type": "Scheduled Event", "source": "aws.events", "time": iso_utc(at_ms)}


def sample(way: str, devices: int, gateways: int = 0) -> Sampled:
    """Sweep a silent sample fleet through the real handler; what it cost."""
    from telemetry import handler

    names = _device_names(devices, gateways)
    everyone = [*names, *(f"gw-{g}" for g in range(gateways))]
    rules = {"before": BEFORE_RULES, "fleet": FLEET_RULES}.get(way) or gateway_rules(gateways)
    directory = Path(tempfile.mkdtemp(prefix="bench-outage-"))
    (directory / "rules.yaml").write_text(rules, encoding="utf-8")
    clock = {"now": START_MS}
    with local_aws(everyone) as stack, captured_output():
        rt, clients = runtime(stack, lambda: clock["now"], {"RULES_PATH": str(directory)})
        for device in everyone:
            if way != "before":
                handler.handle(_lifecycle(device, "connected", START_MS - 1_000), rt)
            handler.handle(_reading(device, START_MS), rt)
        if way != "before":
            for device in everyone:
                handler.handle(_lifecycle(device, "disconnected", START_MS + 1_000), rt)
        log = record_usage(clients)
        at = START_MS + 10 * MINUTE_MS
        clock["now"] = at
        started = time.perf_counter()
        if way == "before":
            handler.handle(_scheduled(at), rt)
        else:
            for shard in DEVICE_SHARDS:
                handler.handle(sweep_shard_event(shard, at), rt)
        seconds = time.perf_counter() - started
        calls = len(log.calls)
        # Two sweeps later, every digest of what was held has gone out.
        for minutes in (12, 13):
            clock["now"] = START_MS + minutes * MINUTE_MS
            handler.handle(_scheduled(clock["now"]), rt)
    published = sum(
        len(p["PublishBatchRequestEntries"]) if operation == "PublishBatch" else 1
        for service, operation, p in log.calls
        if service == "sns" and operation in {"Publish", "PublishBatch"}
    )
    operations = Counter(f"{service}:{operation}" for service, operation, _ in log.calls[:calls])
    return Sampled(len(everyone), calls, dict(operations), published, seconds)


@dataclass(frozen=True, slots=True)
class Reach:
    """One outage, modelled: when the last device is handled (seconds after the
    first sweep that finds the fleet due), the sweeps it takes, and the
    messages operators receive in its first 10 minutes."""

    devices: int
    seconds: float
    sweeps: int
    messages: int


def _capacity(per_device_s: float, limit: int | None = None) -> int:
    """Devices one sweep invocation handles before its reserve."""
    fits = int((TIMEOUT_S - SWEEP_RESERVE_MS / 1000) / per_device_s)
    return min(fits, limit) if limit is not None else fits


def _raise(device: str, at_ms: int, rule: str) -> Transition:
    return Transition(
        alert_id=f"{device}-{rule}",
        status=Status.RAISED,
        severity=Severity.WARNING,
        previous_severity=Severity.OK,
        device_id=device,
        sensor_id="$device",
        rule=rule,
        value=None,
        threshold=120.0,
        time_ms=at_ms,
        since_ms=at_ms,
        direction="offline",
    )


def reach(way: str, devices: int, per_device_s: float) -> Reach:
    """The outage of `devices` devices under `way`, at `per_device_s` a device."""
    if way == "before":
        capacity = _capacity(per_device_s, BEFORE_LIMIT)
        sweeps = math.ceil(devices / capacity)
        last = (sweeps - 1) * SWEEP_EVERY_S + (devices - (sweeps - 1) * capacity) * per_device_s
        return Reach(devices, last, sweeps, devices)
    shards = Counter(due_shard(d) for d in _device_names(devices))
    busiest = max(shards.values())
    capacity = _capacity(per_device_s)
    sweeps = math.ceil(busiest / capacity)
    last = (sweeps - 1) * SWEEP_EVERY_S + (busiest - (sweeps - 1) * capacity) * per_device_s
    raised = devices if way == "fleet" else math.ceil(devices / MEMBERS_PER_GATEWAY)
    # Raises spread over the time each shard takes, shards in parallel.
    span_ms = max(1, int(last * 1000))
    transitions = [
        _raise(f"d{n}", START_MS + n * span_ms // raised, "connectivity") for n in range(raised)
    ]
    sent = messages_sent(transitions, DEFAULT_NOTIFICATIONS)
    first = [m for m in sent if m.time_ms < START_MS + 10 * MINUTE_MS]
    return Reach(devices, last, sweeps, len(first))


def run(sample_size: int = 256) -> dict[str, Any]:
    gateways = max(1, sample_size // 64)
    sampled = {
        "before": sample("before", sample_size),
        "fleet": sample("fleet", sample_size),
        "gateways": sample("gateways", sample_size, gateways),
    }
    out: dict[str, Any] = {"sample": sample_size, "ways": {}}
    for way, measured in sampled.items():
        per_device = measured.calls_per_device * AWS_CALL_S
        out["ways"][way] = {
            "sampled": {
                "devices": measured.devices,
                "callsPerDevice": measured.calls_per_device,
                "operations": measured.operations,
                "published": measured.published,
                "seconds": measured.seconds,
            },
            "fleets": [_as_dict(reach(way, n, per_device)) for n in FLEETS],
        }
    return out


def _as_dict(r: Reach) -> dict[str, Any]:
    return {"devices": r.devices, "seconds": r.seconds, "sweeps": r.sweeps, "messages": r.messages}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


def report(numbers: Mapping[str, Any]) -> None:
    ways = numbers["ways"]
    print(
        f"sample: {numbers['sample']} silent devices swept by the real handler (moto); "
        f"modelled at {AWS_CALL_S * 1000:.0f} ms per AWS call, {TIMEOUT_S} s invocations, "
        f"a sweep every {SWEEP_EVERY_S} s"
    )
    print(
        table(
            ["way", "AWS calls per device", "SNS messages in the sample"],
            [
                [way, f"{w['sampled']['callsPerDevice']:.2f}", w["sampled"]["published"]]
                for way, w in ways.items()
            ],
        )
    )
    rows = []
    for index, devices in enumerate(FLEETS):
        row: list[object] = [f"{devices:,} devices"]
        for way in ("before", "fleet", "gateways"):
            r = ways[way]["fleets"][index]
            row += [f"{_minutes(r['seconds'])} ({r['sweeps']} sweeps)", f"{r['messages']:,}"]
        rows.append(row)
    print(
        table(
            ["outage", "before: reached", "messages", "fleet: reached", "messages",
             "gateways: reached", "messages"],
            rows,
        )
    )  # fmt: skip
    largest = ways["fleet"]["fleets"][-1]
    ok = largest["sweeps"] <= TARGET_SWEEPS and ways["gateways"]["fleets"][-1]["sweeps"] <= (
        TARGET_SWEEPS
    )
    print(
        f"target: a {FLEETS[-1]:,}-device outage handled within {TARGET_SWEEPS} sweep "
        f"intervals: {largest['sweeps']} (fleet), "
        f"{ways['gateways']['fleets'][-1]['sweeps']} (gateways): {verdict(ok)}"
    )
    before = ways["before"]["fleets"][-1]
    print(
        f"messages in the first 10 minutes of a {FLEETS[-1]:,}-device outage: "
        f"{before['messages']:,} before, {largest['messages']:,} now "
        f"({ways['gateways']['fleets'][-1]['messages']:,} behind gateways)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sample", type=int, default=256, help="devices swept for real")
    report(run(parser.parse_args(argv).sample))


if __name__ == "__main__":
    main()
