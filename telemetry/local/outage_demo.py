"""The demo's gateway outage: a line's gateway and the 20 devices behind it drop
off the network, then come back.

Played twice on stacks of their own, from the same events: once with the rules
a plant would write for it (an `offline` window on the line, the gateway listed
with its members, the default notification budget), and once as alerting one
message per sensor would have it (each sensor's no-data alert on its own, every
transition published). What the operators' queue received in each is what the
demo shows: the first is the product, the second the storm it replaces.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from telemetry.core.messages import iso_utc

GATEWAY: Final = "gw-line-3"
MEMBERS: Final = tuple(f"line3-{n:02d}" for n in range(1, 21))
SENSORS: Final = ("temp-1", "vib-1")
MINUTE: Final = 60_000
DOWN_AT: Final = 2 * MINUTE
"""When the gateway drops (from the scene's start); its members a few seconds later."""
BACK_AT: Final = 14 * MINUTE
"""When it comes back, its members with it."""
END_AT: Final = 17 * MINUTE

PLANT_RULES: Final = """\
rules:
  - name: line3-connectivity
    match: {deviceId: "line3-*"}
    offline: 2m
  - name: gateway-connectivity
    match: {deviceId: "gw-*"}
    offline: 1m
    offlineSeverity: CRITICAL
  - name: line3-heartbeat
    match: {deviceId: "line3-*"}
    nodata: 5m
gateways:
  - gateway: gw-line-3
    members: {deviceId: "line3-*"}
"""
PER_SENSOR_RULES: Final = """\
rules:
  - name: line3-heartbeat
    match: {deviceId: "line3-*"}
    nodata: 5m
  - name: gateway-heartbeat
    match: {deviceId: "gw-*"}
    nodata: 1m
notifications: {maxPerWindow: 1000}
"""


@dataclass(slots=True)
class OutageScene:
    """What operators received during the outage, with the product's rules
    (`received`) and one message per sensor (`per_sensor`), and their stacks."""

    received: list[dict[str, Any]] = field(default_factory=list)
    per_sensor: list[dict[str, Any]] = field(default_factory=list)
    stack: str = ""


def lifecycle(client: str, kind: str, version: int, at_ms: int) -> dict[str, Any]:
    """An IoT Core presence event as the connectivity rule hands it over."""
    event: dict[str, Any] = {
        "clientId": client,
        "timestamp": at_ms,
        "eventType": kind,
        "sessionIdentifier": f"00000000-0000-0000-0000-{version:012d}",
        "principalIdentifier": "0" * 64,
        "versionNumber": version,
    }
    if kind == "disconnected":
        event |= {"clientInitiatedDisconnect": False, "disconnectReason": "CONNECTION_LOST"}
    return event


def _reading(device: str, at_ms: int) -> dict[str, Any]:
    data = [
        {
            "sensorId": s,
            "type": "temperature" if s.startswith("temp") else "vibration",
            "value": 2.0,
        }
        for s in SENSORS
    ]
    return {"deviceId": device, "timestamp": at_ms, "receivedAt": at_ms, "data": data}


def _scheduled(at_ms: int) -> dict[str, Any]:
    return {"detail-type": "Scheduled Event", "source": "aws.events", "time": iso_utc(at_ms)}


def play(
    environment: Mapping[str, str],
    rules_text: str,
    rules_dir: Path,
    start_ms: int,
    received: Callable[[], list[dict[str, Any]]],
    *,
    lifecycle_events: bool,
) -> list[dict[str, Any]]:
    """The outage on one stack: everything reports every minute, the gateway and
    its members disconnect at DOWN_AT (IoT Core's lifecycle events, when the
    stack receives them) and fall silent, reconnect and report at BACK_AT; a
    sweep every minute. Returns what the operators' queue received."""
    from telemetry import handler  # noqa: PLC0415
    from telemetry.settings import Settings  # noqa: PLC0415

    rules_dir.mkdir(parents=True, exist_ok=True)
    (rules_dir / "outage.yaml").write_text(rules_text, encoding="utf-8")
    clock = [start_ms]
    settings = Settings.from_env(dict(environment) | {"RULES_PATH": str(rules_dir)})
    rt = handler.build_runtime(settings, clock=lambda: clock[0])
    devices = (GATEWAY, *MEMBERS)
    before = len(received())

    def send(event: dict[str, Any], at_ms: int) -> None:
        clock[0] = at_ms
        handler.handle(event, rt)

    for minute in range(END_AT // MINUTE + 1):
        at = start_ms + minute * MINUTE
        if minute == 0 and lifecycle_events:
            for n, device in enumerate(devices):
                send(lifecycle(device, "connected", 1, at + n), at + n)
        if minute * MINUTE == DOWN_AT and lifecycle_events:
            for n, device in enumerate(devices):
                send(lifecycle(device, "disconnected", 1, at + 500 * n), at + 500 * n)
        if minute * MINUTE == BACK_AT and lifecycle_events:
            for n, device in enumerate(devices):
                send(lifecycle(device, "connected", 2, at + n), at + n)
        if not DOWN_AT <= minute * MINUTE < BACK_AT:
            for n, device in enumerate(devices):
                send(_reading(device, at + 100 + n), at + 100 + n)
        send(_scheduled(at + 30_000), at + 30_000)
    return [json.loads(m["Body"]) if "Body" in m else m for m in received()[before:]]


def run_scene(
    environments: Sequence[Mapping[str, str]],
    rules_root: Path,
    start_ms: int,
    queues: Sequence[Callable[[], list[dict[str, Any]]]],
) -> OutageScene:
    """Play the outage on the product's stack and on the per-sensor one."""
    scene = OutageScene()
    scene.received = play(
        environments[0], PLANT_RULES, rules_root / "plant", start_ms, queues[0],
        lifecycle_events=True,
    )  # fmt: skip
    scene.per_sensor = play(
        environments[1], PER_SENSOR_RULES, rules_root / "per-sensor", start_ms, queues[1],
        lifecycle_events=False,
    )  # fmt: skip
    return scene
