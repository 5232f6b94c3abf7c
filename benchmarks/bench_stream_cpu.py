"""Stream CPU: the function's CPU per message in a 10,000-message Kinesis batch
against a local AWS, beside today's code (the baseline commit) in the same run.

The fleet workload (1,000 devices, ten messages each, four readings a message)
is one Kinesis event. moto's server runs in this process; the function runs in
a process of its own (benchmarks/stream_child.py), so that its CPU (process_time
around the invocation, `lambda_handler`'s metric flush included) is the
function's alone: validation, evaluation, and botocore serialising, signing and
parsing every call. Before each run the local AWS is emptied and the stack
provisioned again, so every run starts from the same state. The two code
versions take turns, REPEATS times; the median counts.

The result must be unchanged: each run's digest of what it stored (Timestream
records, with any CommonAttributes merged), published, mirrored, quarantined and
committed to the state table (what each alert means, not the item's bookkeeping)
must equal today's.

Target: ours at least 30% below today's CPU per message.

    python -m benchmarks.bench_stream_cpu [--repeats R] [--devices D --messages M]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final
from unittest import mock

from benchmarks.baseline import CodeTree, trees
from benchmarks.processes import reset_local_aws
from benchmarks.workload import (
    device_ids,
    fleet,
    function_environment,
    invocation_time,
    ratio,
    stream_events,
    table,
    verdict,
)

REPEATS: Final = 3
DEVICES: Final = 1_000
MESSAGES_PER_DEVICE: Final = 10
TARGET_REDUCTION: Final = 0.30
DIGESTS: Final = (
    "records_digest",
    "published_digest",
    "quarantined_digest",
    "shadows_digest",
    "states_digest",
)
_FAKE: Final = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def _one_run(tree: CodeTree, url: str, batch: Path, things: list[str]) -> dict[str, Any]:
    from telemetry.local.provision import provision

    reset_local_aws(url)
    with mock.patch.dict(os.environ, {**_FAKE, "AWS_DEFAULT_REGION": "us-east-1"}):
        stack = provision(endpoint_url=url, things=things)
    env = {**function_environment(), **_FAKE, **stack.environment(), "AWS_ENDPOINT_URL": url}
    result = batch.with_suffix(".result.json")
    tree.run(["-m", "benchmarks.stream_child", str(batch), str(result)], env)
    return json.loads(result.read_text())  # type: ignore[no-any-return]


def run(
    repeats: int = REPEATS, devices: int = DEVICES, messages: int = MESSAGES_PER_DEVICE
) -> dict[str, Any]:
    from telemetry.local.server import LocalAwsServer

    workload = fleet(devices, messages)
    [event] = stream_events([workload])
    ours, today = trees()
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "today": []}
    with tempfile.TemporaryDirectory() as scratch, LocalAwsServer() as server:
        batch = Path(scratch) / "batch.json"
        batch.write_text(json.dumps({"now_ms": invocation_time(workload), "event": event}))
        things = device_ids(workload)
        for _ in range(repeats):
            runs["ours"].append(_one_run(ours, server.url, batch, things))
            runs["today"].append(_one_run(today, server.url, batch, things))
    count = len(workload)
    per_message = {
        name: statistics.median(r["cpu_seconds"] for r in results) / count * 1e6
        for name, results in runs.items()
    }
    reduction = 1 - ratio(per_message["ours"], per_message["today"])
    reference = runs["today"][0]
    unchanged = all(r[d] == reference[d] for rs in runs.values() for r in rs for d in DIGESTS)
    return {
        "messages": count,
        "readings": sum(len(m["data"]) for m in workload),
        "event_bytes": len(json.dumps(event)),
        "repeats": repeats,
        "runs": runs,
        "cpu_microseconds_per_message": per_message,
        "reduction": reduction,
        "unchanged_result": unchanged,
        "targets": [
            {
                "target": f"CPU per message at least {TARGET_REDUCTION:.0%} below today's",
                "measured": f"{reduction:.0%} below ({per_message['ours']:.0f} vs "
                f"{per_message['today']:.0f} µs)",
                "ok": reduction >= TARGET_REDUCTION,
            },
            {
                "target": "the same result as today",
                "measured": "identical digests" if unchanged else "DIFFERENT",
                "ok": unchanged,
            },
        ],
    }


def report(numbers: Mapping[str, Any]) -> None:
    print(
        f"one Kinesis invocation of {numbers['messages']:,} messages ({numbers['readings']:,} "
        f"readings, event {numbers['event_bytes'] / 2**20:.1f} MiB) against a local AWS in "
        f"another process; median of {numbers['repeats']}, taking turns"
    )
    rows = []
    for name, results in numbers["runs"].items():
        cpu = [r["cpu_seconds"] for r in results]
        wall = [r["wall_seconds"] for r in results]
        calls = sum(results[0]["operations"].values())
        rows.append(
            [
                name,
                f"{statistics.median(cpu):.2f}",
                f"{min(cpu):.2f}-{max(cpu):.2f}",
                f"{statistics.median(wall):.2f}",
                f"{numbers['cpu_microseconds_per_message'][name]:.0f}",
                f"{calls:,}",
                f"{results[0]['records']:,}",
            ]
        )
    print(
        table(
            ["code", "CPU s", "range", "wall s", "CPU µs/message", "AWS calls", "records"],
            rows,
        )
    )
    print(
        table(
            ["target", "measured", "verdict"],
            [[t["target"], t["measured"], verdict(t["ok"])] for t in numbers["targets"]],
        )
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--devices", type=int, default=DEVICES)
    parser.add_argument("--messages", type=int, default=MESSAGES_PER_DEVICE)
    args = parser.parse_args(argv)
    report(run(args.repeats, args.devices, args.messages))


if __name__ == "__main__":
    main()
