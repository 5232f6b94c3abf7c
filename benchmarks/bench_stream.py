"""Stream batches: readings per second in one invocation, and peak memory.

Three consecutive windows of one fleet workload (1,000 devices, one message of
four readings every ~10 s), of 100, 1,000 and 10,000 messages, are each one
Kinesis invocation of our handler, in the same run:

- under moto, in process, beside the naive handler on the same messages (one call
  per message, as the seed handles them);
- in a subprocess with in-memory fakes of the adapters (state store, Timestream
  writer, publisher, shadow mirror, dead-letter queue) and the function's five
  boto3 clients built but idle: the pipeline's own time and CPU, and the
  process's peak resident memory (VmHWM), the figure to hold against a 256 MB
  function; a second such subprocess reports the tracemalloc peak (Python
  allocations only). moto keeps every record it is sent, so memory measured in
  process would be moto's more than the function's.

The duration of a 10,000-message batch at 256 MB is estimated from the fakes'
CPU time (Lambda gives 256/1,769 of a vCPU) plus the batch's AWS calls at an
assumed 20 ms each.

    python -m benchmarks.bench_stream
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from benchmarks.naive import run_naive
from benchmarks.workload import (
    ROOT,
    SimulatedClock,
    captured_output,
    default_rules,
    fleet,
    function_environment,
    invocation_time,
    ratio,
    readings_in,
    run_handler,
    stream_events,
    table,
    verdict,
    warning_levels,
)
from telemetry.adapters.state_store import due_shard
from telemetry.core.state import DeviceRecord
from telemetry.errors import StateConflictError

SIZES: Final = (100, 1_000, 10_000)
FLEET_DEVICES: Final = 1_000
MESSAGES_PER_DEVICE: Final = 12  # 12,000 messages: enough for the three windows
FUNCTION_MB: Final = 256
LAMBDA_MB_PER_VCPU: Final = 1_769  # Lambda gives a function one vCPU at 1,769 MB
ASSUMED_CALL_MS: Final = 20  # an AWS round trip from Lambda, for the duration estimate
EVENT_LIMIT_BYTES: Final = 6 * 1024 * 1024  # Lambda's synchronous invocation payload


def stream_windows(workload: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    windows, start = [], 0
    for size in SIZES:
        windows.append(list(workload[start : start + size]))
        start += size
    return windows


# --- in-memory fakes of the adapters, for the memory subprocess ----------------------


class MemoryStateStore:
    """The pipeline's StateStore over a dict, conditional on the version like DynamoDB."""

    def __init__(self) -> None:
        self._records: dict[str, DeviceRecord] = {}

    def load(self, device_id: str) -> DeviceRecord:
        return self._records.get(device_id) or DeviceRecord(device_id)

    def load_many(self, device_ids: Iterable[str]) -> dict[str, DeviceRecord]:
        return {d: self.load(d) for d in device_ids}

    def save(self, record: DeviceRecord) -> DeviceRecord:
        current = self._records.get(record.device_id)
        if (current.version if current else 0) != record.version:
            raise StateConflictError(record.device_id)
        saved = replace(record, version=record.version + 1)
        self._records[record.device_id] = saved
        return saved

    def due_devices(
        self, now_ms: int, limit: int, shards: Sequence[str] | None = None
    ) -> list[str]:
        due = [
            (r.due_ms(), d)
            for d, r in self._records.items()
            if shards is None or due_shard(d) in shards
        ]
        return [d for at, d in sorted((a, d) for a, d in due if a is not None and a <= now_ms)][
            :limit
        ]


class MemoryTimeseries:
    """A RecordWriter that accepts every record and keeps none (Timestream keeps them)."""

    def __init__(self) -> None:
        self.records = 0

    def write(self, records: Sequence[Any], **_: Any) -> list[Any]:
        self.records += len(records)
        return []


class MemoryPublisher:
    def publish(self, transitions: Sequence[Any]) -> list[Any]:
        return []


class MemoryMirror:
    def update(self, thing_name: str, before: Any, after: Any, **_: Any) -> Any:
        from telemetry.adapters.shadow import MirrorResult, MirrorStatus

        return MirrorResult(MirrorStatus.UPDATED)


class MemoryQuarantine:
    def send(self, items: Sequence[dict[str, Any]]) -> None:
        return None


def _fake_runtime(clock: SimulatedClock) -> tuple[Any, Any]:
    """The function's runtime from its environment, with the adapters faked. The
    five clients are built as at a cold start, and returned to stay alive."""
    from telemetry.adapters.timestream import TimestreamRecords
    from telemetry.core.rules import load_rules
    from telemetry.handler import Clients, Runtime
    from telemetry.pipeline import Pipeline
    from telemetry.settings import Settings

    settings = Settings.from_env(os.environ)
    clients = Clients.create(settings)
    pipeline = Pipeline(
        rules=load_rules(settings.resolved_rules_path),
        store=MemoryStateStore(),
        timeseries=MemoryTimeseries(),
        records=TimestreamRecords(),
        publisher=MemoryPublisher(),
        mirror=MemoryMirror(),
        quarantine=MemoryQuarantine(),
    )
    return Runtime(settings, pipeline, clock), clients


def _memory_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status: VmHWM is the peak
    resident memory, VmRSS the current one. (ru_maxrss would give the peak too, but
    Linux carries the forking parent's high-water mark over into it across exec.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return _max_rss_mb()


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(folder: Path, trace: bool) -> None:
    """The memory subprocess: each batch file of `folder` as one invocation against
    the fakes, read and parsed just before it as the Lambda runtime does."""
    from telemetry.handler import handle

    clock = SimulatedClock()
    rt, _clients = _fake_runtime(clock)
    result: dict[str, Any] = {"rss_before_mb": _memory_mb("VmRSS"), "windows": []}
    if trace:
        tracemalloc.start()
    for index in range(len(SIZES)):
        if trace:
            tracemalloc.reset_peak()
        batch = json.loads((folder / f"batch-{index}.json").read_bytes())
        event, clock.now_ms = batch["event"], batch["now_ms"]
        began, cpu = time.perf_counter(), time.process_time()
        with captured_output():
            response = handle(event, rt)
        row = {
            "messages": len(event["Records"]),
            "seconds": time.perf_counter() - began,
            "cpu_seconds": time.process_time() - cpu,
            "failures": len(response["batchItemFailures"]),
            "peak_rss_mb": _memory_mb("VmHWM"),
            "ru_maxrss_mb": _max_rss_mb(),
        }
        if trace:
            row["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        result["windows"].append(row)
        del batch, event, response
    (folder / ("traced.json" if trace else "plain.json")).write_text(json.dumps(result))


def _run_children(
    windows: Sequence[Sequence[dict[str, Any]]], events: Sequence[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The memory subprocess, plain then with tracemalloc: (plain, traced) results."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for index, (window, event) in enumerate(zip(windows, events, strict=True)):
            batch = {"now_ms": invocation_time(window), "event": event}
            (folder / f"batch-{index}.json").write_text(json.dumps(batch))
        results = []
        for trace in (False, True):
            command = [sys.executable, "-m", "benchmarks.bench_stream", "--child", scratch]
            done = subprocess.run(
                [*command, "--trace"] if trace else command,
                env=function_environment(),
                cwd=ROOT,
                check=False,
                capture_output=True,
                text=True,
            )
            if done.returncode:
                raise RuntimeError(f"the memory subprocess failed:\n{done.stderr}")
            name = "traced.json" if trace else "plain.json"
            results.append(json.loads((folder / name).read_text()))
    return results[0], results[1]


def run() -> dict[str, Any]:
    windows = stream_windows(fleet(FLEET_DEVICES, MESSAGES_PER_DEVICE))
    events = stream_events(windows)
    plain, traced = _run_children(windows, events)
    ours = run_handler("Stream", windows, events)
    naive = run_naive([m for w in windows for m in w], warning_levels(default_rules()))
    batches = []
    first = 0
    for window, event, usage, fake, fake_traced in zip(
        windows, events, ours.invocations, plain["windows"], traced["windows"], strict=True
    ):
        readings = readings_in(window)
        naive_seconds = sum(u.seconds for u in naive.invocations[first : first + len(window)])
        first += len(window)
        batches.append(
            {
                "messages": len(window),
                "readings": readings,
                "seconds": usage.seconds,
                "readings_per_second": readings / usage.seconds,
                "api_calls": usage.api_calls,
                "timestream_calls": usage.timestream_calls,
                "event_bytes": len(json.dumps(event)),
                "naive_seconds": naive_seconds,
                "naive_readings_per_second": readings / naive_seconds,
                "fakes_seconds": fake["seconds"],
                "fakes_cpu_seconds": fake["cpu_seconds"],
                "fakes_readings_per_second": readings / fake["seconds"],
                "peak_rss_mb": fake["peak_rss_mb"],
                "ru_maxrss_mb": fake["ru_maxrss_mb"],
                "tracemalloc_peak_mb": fake_traced["tracemalloc_peak_mb"],
            }
        )
    largest = batches[-1]
    cpu_at_256 = largest["fakes_cpu_seconds"] * LAMBDA_MB_PER_VCPU / FUNCTION_MB
    waits = largest["api_calls"] * ASSUMED_CALL_MS / 1000
    return {
        "batch_failures": ours.batch_failures,
        "batches": batches,
        "rss_before_mb": plain["rss_before_mb"],
        "peak_rss_mb": max(w["peak_rss_mb"] for w in plain["windows"]),
        "ru_maxrss_mb": max(w["ru_maxrss_mb"] for w in plain["windows"]),
        "fits_256_mb": max(w["peak_rss_mb"] for w in plain["windows"]) < FUNCTION_MB,
        "largest_event_bytes": largest["event_bytes"],
        "largest_within_6_mb": largest["event_bytes"] <= EVENT_LIMIT_BYTES,
        "estimate_10k_at_256_mb": {
            "cpu_seconds": cpu_at_256,
            "aws_wait_seconds": waits,
            "total_seconds": cpu_at_256 + waits,
            "assumed_ms_per_call": ASSUMED_CALL_MS,
        },
    }


def report(numbers: Mapping[str, Any]) -> None:
    rows = [
        [
            f"{b['messages']:,}",
            f"{b['readings']:,}",
            f"{b['seconds']:.2f}",
            f"{b['readings_per_second']:,.0f}",
            f"{b['naive_readings_per_second']:,.0f}",
            f"{ratio(b['readings_per_second'], b['naive_readings_per_second']):.1f}",
            f"{b['api_calls']:,}",
            f"{b['fakes_readings_per_second']:,.0f}",
            f"{b['peak_rss_mb']:.0f}",
            f"{b['tracemalloc_peak_mb']:.0f}",
        ]
        for b in numbers["batches"]
    ]
    print("one Kinesis invocation per batch (moto in process) vs the naive handler per message")
    print(
        table(
            [
                "batch",
                "readings",
                "s",
                "readings/s",
                "naive r/s",
                "ours/naive",
                "AWS calls",
                "fakes r/s",
                "peak RSS MB",
                "tracemalloc MB",
            ],
            rows,
        )
    )
    print(
        "peak RSS: VmHWM of a subprocess running the batches against in-memory fakes of "
        "the adapters; interpreter, imports and the five clients included "
        f"({numbers['rss_before_mb']:.0f} MB resident before the first batch). "
        "tracemalloc: Python allocations during the batch."
    )
    peak = numbers["peak_rss_mb"]
    print(
        f"10,000-message batch fits a {FUNCTION_MB} MB function: {peak:.0f} MB peak RSS: "
        f"{verdict(numbers['fits_256_mb'])}"
    )
    size = numbers["largest_event_bytes"]
    if numbers["largest_within_6_mb"]:
        limit = "within Lambda's 6 MB payload limit"
    else:
        fitting = SIZES[-1] * EVENT_LIMIT_BYTES // size
        limit = f"over Lambda's 6 MB payload limit, which caps such batches at ~{fitting:,} records"
    print(f"its Kinesis event is {size / 2**20:.1f} MiB: {limit}")
    e = numbers["estimate_10k_at_256_mb"]
    print(
        f"estimated duration at {FUNCTION_MB} MB: {e['cpu_seconds']:.1f} s of CPU "
        f"(fakes' CPU x {LAMBDA_MB_PER_VCPU}/{FUNCTION_MB}) + {e['aws_wait_seconds']:.1f} s of "
        f"AWS calls ({e['assumed_ms_per_call']} ms each, assumed) = {e['total_seconds']:.1f} s"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.trace)
    else:
        report(run())


if __name__ == "__main__":
    main()
