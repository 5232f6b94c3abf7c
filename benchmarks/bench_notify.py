"""The notification budget's cost: steady state beside today's code, and a flood.

One fleet workload (`workload.fleet`, as bench_cost: 200 devices x 30 messages
of four readings every ~10 s, about 3% anomalous, 52 transitions in 5 minutes)
goes through our handler, Direct (one invocation per message) and Stream
(Kinesis batches of 500), each on a fresh stack in moto, with the scheduled
sweep every simulated minute:

- steady state: the shipped rules with a budget per device (`groupBy:
  [deviceId]`, 20 in any 10 minutes; the flapping device of the workload changes
  more than 5 times): nothing is held. Beside it, today's code:
  the same run's AWS calls less the budget's own (its group reads and writes,
  the sweep's query of the digest shard); every other call is unchanged.
- a flood: the same workload under the default budget (one group for the
  whole fleet): 52 changes in 5 minutes is a flood by ISA-18.2's measure (more
  than 10 in 10 minutes), and operators receive 5 alone and the rest in digests.

Every call is metered as AWS bills it (telemetry.local.prices.metered_units:
transactional writes at twice the units) and priced as bench_cost prices it.

    python -m benchmarks.bench_notify [--devices N] [--messages M] [--batch B] [--seed S]
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from benchmarks.bench_cost import COST_LINES, PER_MILLION
from benchmarks.workload import (
    PER_DEVICE_BUDGET,
    SimulatedClock,
    Usage,
    captured_output,
    device_ids,
    fleet,
    invocation_time,
    invoke,
    local_aws,
    record_usage,
    rules_with,
    runtime,
    stream_events,
    table,
    verdict,
)
from telemetry.adapters.groups import DIGEST_SHARD, GROUP_KEY_PREFIX
from telemetry.core.load import max_in_window
from telemetry.core.messages import iso_utc

SWEEP_EVERY_MS: Final = 60_000
FLUSH_MS: Final = 10 * 60_000
"""Sweeps go on this long after the last message: every digest is sent."""
BUDGETS: Final = {"steady": PER_DEVICE_BUDGET, "flood": ""}


def is_budgets(operation: str, params: Mapping[str, Any]) -> bool:
    """Whether a call is the budget's own: on a group item, a digest, or its shard."""
    text = json.dumps(params, default=str)
    if operation == "Query":
        return bool(params["ExpressionAttributeValues"][":s"]["S"] == DIGEST_SHARD)
    if operation in {"Publish", "PublishBatch"}:
        return '\\"status\\":\\"DIGEST\\"' in text
    return GROUP_KEY_PREFIX in text


@dataclass(slots=True)
class NotifyRun:
    """One mode under one budget: its usage, the budget's share of it, and what
    operators received (time of each message, digests' held counts)."""

    name: str
    messages: int
    usage: Usage = field(default_factory=Usage)
    budget: Usage = field(default_factory=Usage)
    group_writes_repeated: int = 0
    """Writes of a group item beyond its first in one invocation (of messages)."""
    sent: list[int] = field(default_factory=list)
    singles: int = 0
    digests: int = 0
    held: int = 0

    @property
    def today(self) -> Usage:
        """The same run without the budget's calls."""
        out = Usage()
        out += self.usage
        for name in ("state_read_units", "state_writes", "state_write_units", "api_calls"):
            setattr(out, name, getattr(out, name) - getattr(self.budget, name))
        out.sns_publishes -= self.budget.sns_publishes
        out.sns_units -= self.budget.sns_units
        return out


def scheduled(at_ms: int) -> dict[str, Any]:
    """EventBridge's scheduled event (the sweep)."""
    return {
        "source": "aws.events",
        "detail-type": "Scheduled Event",
        "time": iso_utc(at_ms)[:19] + "Z",
        "detail": {},
    }


def run_mode(
    name: str,
    batches: Sequence[Sequence[dict[str, Any]]],
    events: Sequence[Any],
    rules_path: str,
) -> NotifyRun:
    """Our handler over `events`, the sweep every simulated minute, then sweeps
    until every digest went; metered call by call."""
    from telemetry import handler

    run = NotifyRun(name, sum(len(b) for b in batches))
    with local_aws(device_ids(m for b in batches for m in b)) as stack:
        clock = SimulatedClock()
        rt, clients = runtime(stack, clock, {"RULES_PATH": rules_path})
        log = record_usage(clients)
        next_sweep = (clock.now_ms // SWEEP_EVERY_MS + 1) * SWEEP_EVERY_MS

        def call(event: Any, at_ms: int) -> None:
            clock.now_ms = at_ms
            start = len(log.calls)
            usage, _ = invoke(log, functools.partial(handler.handle, event, rt))
            run.usage += usage
            for service, operation, params in log.calls[start:]:
                if operation in {"Publish", "PublishBatch"}:
                    entries = params.get("PublishBatchRequestEntries", [params])
                    for entry in entries:
                        run.sent.append(at_ms)
                        body = json.loads(entry["Message"])
                        if body["status"] == "DIGEST":
                            run.digests += 1
                            run.held += sum(body["counts"].values())
                        else:
                            run.singles += 1
                if is_budgets(operation, params):
                    run.budget.add_call(service, operation, params)
            groups = [
                p["Item"]["deviceId"]["S"]
                for _, o, p in log.calls[start:]
                if o == "PutItem" and p["Item"]["deviceId"]["S"].startswith(GROUP_KEY_PREFIX)
            ]
            if "source" not in event:  # a sweep clears digests: its writes are its own
                run.group_writes_repeated += len(groups) - len(set(groups))

        with captured_output():
            for batch, event in zip(batches, events, strict=True):
                at = invocation_time(batch)
                while next_sweep <= at:
                    call(scheduled(next_sweep), next_sweep)
                    next_sweep += SWEEP_EVERY_MS
                call(event, at)
            end = next_sweep + FLUSH_MS
            while next_sweep <= end:
                call(scheduled(next_sweep), next_sweep)
                next_sweep += SWEEP_EVERY_MS
    return run


def usd_per_million(usage: Usage, messages: int) -> dict[str, float]:
    lines = {label: price(usage) / messages * PER_MILLION for label, price in COST_LINES}
    return lines | {"total": sum(lines.values())}


def _usage_json(usage: Usage, messages: int) -> dict[str, float]:
    per_thousand = 1000 / messages
    return {
        "dynamodb_write_requests": usage.state_writes * per_thousand,
        "dynamodb_write_units": usage.state_write_units * per_thousand,
        "dynamodb_read_units": usage.state_read_units * per_thousand,
        "sns_messages": usage.sns_publishes * per_thousand,
        "api_calls": usage.api_calls * per_thousand,
    }


def run(devices: int = 200, messages: int = 30, batch: int = 500, seed: int = 7) -> dict[str, Any]:
    workload = fleet(devices, messages, seed=seed)
    direct = [[m] for m in workload]
    stream = [workload[i : i + batch] for i in range(0, len(workload), batch)]
    modes: dict[str, tuple[list[list[dict[str, Any]]], Callable[[], list[Any]]]] = {
        "Direct": (direct, lambda: list(workload)),
        "Stream": (stream, lambda: stream_events(stream)),
    }
    out: dict[str, Any] = {"workload": {"devices": devices, "messages": len(workload)}}
    for budget, extra in BUDGETS.items():
        path = rules_with(extra)
        for mode, (batches, events) in modes.items():
            result = run_mode(mode, batches, events(), path)
            count = result.messages
            out.setdefault(budget, {})[mode] = {
                "with_budget": _usage_json(result.usage, count),
                "today": _usage_json(result.today, count),
                "usd_with_budget": usd_per_million(result.usage, count),
                "usd_today": usd_per_million(result.today, count),
                "group_writes": result.budget.state_writes,
                "group_writes_repeated": result.group_writes_repeated,
                "singles": result.singles,
                "digests": result.digests,
                "held": result.held,
                "most_in_10_minutes": max_in_window(sorted(result.sent)),
                "write_units_per_held": (
                    (result.budget.state_write_units / result.held) if result.held else 0.0
                ),
            }
    out["targets"] = targets(out)
    return out


def targets(numbers: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = []
    for mode, steady in numbers["steady"].items():
        found.append(
            {
                "target": f"{mode}, steady state: nothing held",
                "measured": f"{steady['held']} held",
                "ok": steady["held"] == 0,
            }
        )
        found.append(
            {
                "target": f"{mode}, steady state: a group written at most once an invocation, "
                "at most once a change",
                "measured": f"{steady['group_writes']} group writes for {steady['singles']} "
                f"changes; {steady['group_writes_repeated']} repeated",
                "ok": steady["group_writes_repeated"] == 0
                and steady["group_writes"] <= steady["singles"],
            }
        )
    for mode, flood in numbers["flood"].items():
        found.append(
            {
                "target": f"{mode}, flood: at most 10 messages in any 10 minutes",
                "measured": f"{flood['most_in_10_minutes']}",
                "ok": flood["most_in_10_minutes"] <= 10,
            }
        )
    return found


def report(numbers: Mapping[str, Any]) -> None:
    work = numbers["workload"]
    print(
        f"workload: {work['devices']} devices, {work['messages']:,} messages (bench_cost's "
        "fleet); the sweep every simulated minute"
    )
    steady = numbers["steady"]
    rows = []
    for label, key in (
        ("DynamoDB write requests", "dynamodb_write_requests"),
        ("DynamoDB write units", "dynamodb_write_units"),
        ("DynamoDB read units", "dynamodb_read_units"),
    ):
        row = [label]
        for mode in steady:
            row += [f"{steady[mode]['today'][key]:.1f}", f"{steady[mode]['with_budget'][key]:.1f}"]
        rows.append(row)
    for label in ("DynamoDB reads", "DynamoDB writes", "total"):
        row = [f"USD per million: {label}"]
        for mode in steady:
            row += [
                f"{steady[mode]['usd_today'][label]:.4f}",
                f"{steady[mode]['usd_with_budget'][label]:.4f}",
            ]
        rows.append(row)
    header = ["steady state (a budget per device), per 1,000 messages"]
    for mode in steady:
        header += [f"{mode}, today", f"{mode}, budget"]
    print(table(header, rows))
    print()
    flood = numbers["flood"]
    rows = []
    for mode, f in flood.items():
        today = steady[mode]
        singles, most = f"{today['singles']}", f"{today['most_in_10_minutes']}"
        rows.append([f"{mode}, one message per change", singles, singles, "0", "0", most, "-"])
        rows.append(
            [
                f"{mode}, the default budget",
                f"{f['singles'] + f['digests']}",
                f"{f['singles']}",
                f"{f['digests']}",
                f"{f['held']}",
                f"{f['most_in_10_minutes']}",
                f"{f['write_units_per_held']:.1f}",
            ]
        )
    print(
        table(
            [
                "a flood: the same fleet, one group",
                "messages",
                "alone",
                "digests",
                "held",
                "most in 10 min",
                "budget write units per held change",
            ],
            rows,
        )
    )
    print()
    print(table(["target", "measured", "verdict"], _target_rows(numbers["targets"])))


def _target_rows(found: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [[t["target"], t["measured"], verdict(t["ok"])] for t in found]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--messages", type=int, default=30)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    report(run(args.devices, args.messages, args.batch, args.seed))


if __name__ == "__main__":
    main()
