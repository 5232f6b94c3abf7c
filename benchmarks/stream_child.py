"""One Kinesis invocation in a process of its own, against a local AWS: its CPU.

    python -m benchmarks.stream_child EVENT.json RESULT.json

EVENT.json holds {"now_ms", "event"}; the environment is the function's
(AWS_ENDPOINT_URL naming the local AWS, which runs in another process, so
that only the function's own CPU is counted). Runs with whichever `telemetry`
is first on the path (this tree's or the baseline commit's): it uses only
what both have (Settings.from_env, Clients.create, build_runtime, handle,
metrics.log_metrics). Writes the invocation's CPU and wall time, its AWS calls
by operation, and a digest of what it stored, published and quarantined, so
that two code versions can be shown to produce the same result.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any


def _records(params: dict[str, Any]) -> list[Any]:
    """Timestream records with their CommonAttributes merged in, normalised."""
    common = params.get("CommonAttributes", {})
    out = []
    for record in params["Records"]:
        merged = {**common, **record}
        dims = sorted(
            (d["Name"], d["Value"])
            for d in [*common.get("Dimensions", []), *record.get("Dimensions", [])]
        )
        measures = sorted(
            (m["Name"], m["Value"], m["Type"]) for m in merged.get("MeasureValues", [])
        )
        out.append([merged.get("MeasureName"), dims, measures, merged.get("Time")])
    return out


# What each key's state means to operators. The item's bookkeeping (version, clock,
# the late-data line `last`, the sweep's index, outbox claims) may change between
# versions of the code without changing what anyone is told.
_MEANING = ("severity", "side", "alertId", "since", "value", "streaks")


def _alert_meaning(item: dict[str, Any]) -> dict[str, Any]:
    alerts = json.loads(item["alerts"]["S"]) if "alerts" in item else {}
    return {key: {f: st[f] for f in _MEANING if f in st} for key, st in alerts.items()}


def result_digest(calls: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any]:
    """What the invocation did to the world, independent of how it was sent."""
    records: list[Any] = []
    published: list[Any] = []
    quarantined: list[Any] = []
    shadows: dict[str, dict[str, Any]] = {}
    states: dict[str, Any] = {}
    for _, operation, params in calls:
        if operation == "WriteRecords":
            records += _records(params)
        elif operation in {"Publish", "PublishBatch"}:
            entries = params.get("PublishBatchRequestEntries", [params])
            published += [json.loads(e["Message"]) for e in entries]
        elif operation == "SendMessageBatch":
            for entry in params["Entries"]:
                item = json.loads(entry["MessageBody"])
                quarantined.append([item.get(k) for k in ("source", "code", "field", "deviceId")])
        elif operation == "UpdateThingShadow":
            patch = json.loads(params["payload"])["state"]["reported"]["alerts"]
            shadows.setdefault(params["thingName"], {}).update(patch)
        elif operation == "PutItem":
            states[params["Item"]["deviceId"]["S"]] = _alert_meaning(params["Item"])

    def digest(value: Any) -> str:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    return {
        "records": len(records),
        "records_digest": digest(sorted(records, key=json.dumps)),
        "published": len(published),
        "published_digest": digest(sorted(published, key=json.dumps)),
        "quarantined": len(quarantined),
        "quarantined_digest": digest(sorted(quarantined, key=json.dumps)),
        "shadows_digest": digest(shadows),
        "states_digest": digest(states),
    }


def main() -> None:
    from telemetry import handler
    from telemetry.settings import Settings

    batch = json.loads(Path(sys.argv[1]).read_bytes())
    settings = Settings.from_env(os.environ)
    clients = handler.Clients.create(settings)
    now_ms = int(batch["now_ms"])
    rt = handler.build_runtime(settings, clients, clock=lambda: now_ms)
    calls: list[tuple[str, str, dict[str, Any]]] = []
    for name in ("timestream", "sns", "dynamodb", "iot_data", "sqs"):
        client = getattr(clients, name)
        service = client.meta.service_model.service_id.hyphenize()

        def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
            calls.append(("", model.name, params))

        client.meta.events.register(f"before-parameter-build.{service}", hook)
    entry = handler.metrics.log_metrics(lambda event, context: handler.handle(event, rt))
    event = batch["event"]
    saved = os.dup(1)
    with Path(os.devnull).open("w") as sink:
        os.dup2(sink.fileno(), 1)
        try:
            began, cpu = time.perf_counter(), time.process_time()
            response = entry(event, None)
            cpu_s, wall_s = time.process_time() - cpu, time.perf_counter() - began
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
    payloads = [r["kinesis"]["data"] for r in event["Records"]]
    result = {
        "code": str(Path(handler.__file__).resolve().parent.parent),
        "messages": len(payloads),
        "payload_bytes": sum(len(base64.b64decode(p)) for p in payloads),
        "cpu_seconds": cpu_s,
        "wall_seconds": wall_s,
        "failures": len(response["batchItemFailures"]),
        "operations": dict(Counter(op for _, op, _ in calls)),
        **result_digest(calls),
    }
    Path(sys.argv[2]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
