"""What no-data alerts cost: tracking writes, the sweep's reads, and a sweep's reach.

Workload (the issue's): 1,000 devices reporting every 10 s (three sensors a
message), `nodata: 5m` on every sensor, over 30 simulated minutes, one
invocation per message (Direct). In the same run, on the same messages:

- baseline: the shipped rules alone (today's product: no tracking);
- nodata: the shipped rules plus a `nodata: 5m` rule matching every sensor.

State writes are counted on the pure core (`evaluate` marks what must be
written), the sweep's DynamoDB reads from the index queries it makes (one per
shard per sweep, every minute; a steady fleet is never due, so no item reads),
all per million messages.

Then, against a local AWS (moto, in process), one sweep through the real
handler finds a fleet of silent devices and raises each: its time per device,
and the AWS calls per device, give how many devices one sweep handles within
the function's timeout, locally and at an in-Region latency.

    python -m benchmarks.bench_nodata [--devices N] [--minutes M] [--silent S]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from benchmarks.workload import captured_output, local_aws, record_usage, runtime, table, verdict
from telemetry.adapters.state_store import DUE_SHARDS
from telemetry.core.alerts import AlertState, StateKey, evaluate
from telemetry.core.messages import Reading
from telemetry.core.rules import RuleSet, load_rules, parse_rule_file
from telemetry.core.silence import next_due_ms, sweep
from telemetry.pipeline import SWEEP_LIMIT
from telemetry.settings import DEFAULT_RULES_PATH

PER_MILLION: Final = 1_000_000
PERIOD_MS: Final = 10_000
SWEEP_EVERY_MS: Final = 60_000
NODATA_RULE: Final = "rules: [{name: fleet-heartbeat, nodata: 5m}]"
SENSORS: Final = (
    ("temp-1", "temperature", 60.0),
    ("press-1", "pressure", 5.0),
    ("vib-1", "vibration", 2.0),
)
TIMEOUT_S: Final = 120
BUDGET_SHARE: Final = 0.6
"""Of the function's timeout, what a sweep may spend: the rest is margin."""
AWS_ROUND_TRIP_S: Final = 0.010
START_MS: Final = 1_764_237_600_000


def _rules(with_nodata: bool) -> RuleSet:
    shipped = load_rules(DEFAULT_RULES_PATH)
    if not with_nodata:
        return shipped
    return RuleSet([*shipped.rules, *parse_rule_file(NODATA_RULE, "heartbeat.yaml")])


def _writes(devices: int, minutes: int, rules: RuleSet, seed: int) -> dict[str, int]:
    """State writes of a steady fleet, one invocation per message, and the
    sweeps' index queries and due devices."""
    rng = random.Random(seed)
    states: dict[str, dict[StateKey, AlertState]] = {}
    offsets = {f"dev-{i:04d}": rng.randrange(PERIOD_MS) for i in range(devices)}
    end = START_MS + minutes * 60_000
    messages = writes = queries = due = 0
    next_sweep = START_MS + SWEEP_EVERY_MS
    for tick in range(START_MS, end, PERIOD_MS):
        for device, offset in offsets.items():
            at = tick + offset
            readings = [
                Reading(device, sensor, base + rng.uniform(-1, 1), at, kind)
                for sensor, kind, base in SENSORS
            ]
            result = evaluate(readings, states.get(device, {}), rules, at)
            states[device] = result.state
            messages += 1
            writes += result.changed
        if tick + PERIOD_MS >= next_sweep:
            queries += DUE_SHARDS
            for device, state in states.items():
                when = next_due_ms(state)
                if when is not None and when <= next_sweep:
                    due += 1
                    writes += sweep(device, state, rules, next_sweep).changed
            next_sweep += SWEEP_EVERY_MS
    return {"messages": messages, "writes": writes, "queries": queries, "due": due}


def _sweep_reach(silent: int) -> dict[str, float]:
    """One sweep that raises `silent` devices, through the handler on moto."""
    from telemetry import handler
    from telemetry.core.messages import iso_utc

    devices = [f"pump-{i:04d}" for i in range(silent)]
    clock = {"now": START_MS}
    with local_aws(devices) as stack, captured_output():
        rules_dir = _rules_dir()
        store = {"RULES_PATH": str(rules_dir)}
        rt, clients = runtime(stack, lambda: clock["now"], store)
        for device in devices:
            message = {
                "deviceId": device,
                "timestamp": START_MS,
                "receivedAt": START_MS,
                "data": [{"sensorId": "temp-1", "type": "temperature", "value": 61.0}],
            }
            handler.handle(message, rt)
        log = record_usage(clients)
        at = START_MS + 10 * 60_000
        clock["now"] = at
        event = {
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "time": iso_utc(at)[:19] + "Z",
            "detail": {},
        }
        started = time.perf_counter()
        summary = handler.handle(event, rt)
        seconds = time.perf_counter() - started
        calls = len(log.calls)
    raised = sum(1 for t in summary["transitions"] if t["status"] == "RAISED")
    return {"devices": silent, "raised": raised, "seconds": seconds, "calls": calls}


def _rules_dir() -> Any:
    import tempfile
    from pathlib import Path

    directory = Path(tempfile.mkdtemp(prefix="bench-nodata-"))
    (directory / "heartbeat.yaml").write_text(NODATA_RULE, encoding="utf-8")
    return directory


def run(
    devices: int = 1_000, minutes: int = 30, silent: int = 200, seed: int = 7
) -> dict[str, Any]:
    baseline = _writes(devices, minutes, _rules(with_nodata=False), seed)
    nodata = _writes(devices, minutes, _rules(with_nodata=True), seed)
    reach = _sweep_reach(silent)
    return {
        "devices": devices,
        "minutes": minutes,
        "baseline": baseline,
        "nodata": nodata,
        "reach": reach,
    }


def per_million(count: float, messages: float) -> float:
    return count / messages * PER_MILLION


def report(numbers: Mapping[str, Any]) -> None:
    base, nodata, reach = numbers["baseline"], numbers["nodata"], numbers["reach"]
    messages = nodata["messages"]
    extra = nodata["writes"] - base["writes"]
    window_writes = extra / numbers["devices"] / (numbers["minutes"] / 5)
    print(
        f"workload: {numbers['devices']:,} devices x 3 sensors every 10 s for "
        f"{numbers['minutes']} min ({messages:,} messages), nodata: 5m on every sensor"
    )
    rows = [
        [
            "state writes",
            f"{per_million(base['writes'], messages):,.0f}",
            f"{per_million(nodata['writes'], messages):,.0f}",
            f"+{per_million(extra, messages):,.0f}",
        ],
        [
            "sweep index queries (Query, keys only)",
            "0",
            f"{per_million(nodata['queries'], messages):,.0f}",
            f"+{per_million(nodata['queries'], messages):,.0f}",
        ],
        [
            "devices the sweep found due (item reads)",
            "0",
            f"{per_million(nodata['due'], messages):,.0f}",
            f"+{per_million(nodata['due'], messages):,.0f}",
        ],
    ]
    print(table(["per million messages", "shipped rules", "+ nodata: 5m", "extra"], rows))
    ok = window_writes <= 2.0 + 1e-9
    print(
        f"target: a steady device costs at most two extra state writes per nodata window: "
        f"{window_writes:.2f} per device per 5 min: {verdict(ok)}"
    )
    per_device = reach["seconds"] / max(1, reach["devices"])
    calls = reach["calls"] / max(1, reach["devices"])
    budget = TIMEOUT_S * BUDGET_SHARE
    local = int(budget / per_device) if per_device else 0
    aws = int(budget / (calls * AWS_ROUND_TRIP_S)) if calls else 0
    print(
        f"one sweep raising {reach['devices']} silent devices (moto): {reach['seconds']:.2f} s, "
        f"{per_device * 1000:.1f} ms and {calls:.1f} AWS calls per device; raised {reach['raised']}"
    )
    print(
        f"devices one sweep handles in {BUDGET_SHARE:.0%} of the {TIMEOUT_S} s timeout: "
        f"{local:,} at this machine's local speed, {aws:,} at {AWS_ROUND_TRIP_S * 1000:.0f} ms "
        f"per AWS call; the sweep takes at most {SWEEP_LIMIT:,} (the rest stay due): "
        f"{verdict(min(local, aws) >= SWEEP_LIMIT)}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--silent", type=int, default=200)
    args = parser.parse_args(argv)
    report(run(args.devices, args.minutes, args.silent))


if __name__ == "__main__":
    main()
