"""The demo's operators: one acknowledges an alert, another snoozes one.

After the fleet's run, on the same local stack and a clock that goes on:
a hot reading raises an alert that Maria acknowledges; another device's
alert is snoozed for ten minutes, escalates while snoozed (history and
shadow only), and when the snooze ends the sweep sends the one message that
brings operators up to date. The actions go through the actions function's
handler, as `telemetry alerts ack|snooze` does against a local AWS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from telemetry.core.messages import iso_utc

MARIA: Final = "maria@plant.example"
LI: Final = "li@plant.example"
SNOOZE_MS: Final = 10 * 60_000


@dataclass(slots=True)
class OperatorsScene:
    """What the operators did, what each action answered, and what their queue got."""

    steps: list[tuple[str, str]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    stack: str = ""


def _scheduled(at_ms: int) -> dict[str, Any]:
    return {
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "time": iso_utc(at_ms)[:19] + "Z",
    }


def _hot(device: str, sensor: str, value: float, at_ms: int) -> dict[str, Any]:
    reading = {"sensorId": sensor, "type": "temperature", "value": value, "unit": "C"}
    return {"deviceId": device, "timestamp": at_ms, "receivedAt": at_ms, "data": [reading]}


def _answer(answer: Mapping[str, Any]) -> str:
    if not answer.get("applied"):
        return f"refused: {answer.get('reason')}"
    state = answer.get("state") or {}
    parts = [f"applied; now {state.get('severity')}"]
    if state.get("acknowledged"):
        parts.append(f"acknowledged by {state['acknowledged']['by']}")
    if state.get("snoozedUntil"):
        parts.append(f"snoozed until {state['snoozedUntil']}")
    return ", ".join(parts)


def run_scene(
    environment: Mapping[str, str],
    devices: Sequence[str],
    start_ms: int,
    received: Any,
) -> OperatorsScene:
    """Play the scene from `start_ms`; `received()` reads the operators' queue."""
    from telemetry import actions, handler  # noqa: PLC0415
    from telemetry.settings import Settings  # noqa: PLC0415

    clock = [start_ms]
    rt = handler.build_runtime(Settings.from_env(dict(environment)), clock=lambda: clock[0])
    scene = OperatorsScene()
    first = devices[0]
    second = devices[1] if len(devices) > 1 else devices[0]
    sensor_two = "temp-1" if second != first else "temp-9"
    before = len(received())

    def at(ms: int) -> int:
        clock[0] = start_ms + ms
        return clock[0]

    def act(what: str, device: str, sensor: str, by: str, **extra: Any) -> None:
        action = {
            "action": what,
            "deviceId": device,
            "sensorId": sensor,
            "rule": "temperature-high",
            "by": by,
        } | extra
        answer = actions.handle_action(action, rt)
        scene.steps.append((f"{by}: {what} {device} {sensor} (temperature-high)", _answer(answer)))

    handler.handle(_hot(first, "temp-1", 81.0, at(0)), rt)
    scene.steps.append((f"{first} temp-1 reads 81 C", "RAISED WARNING"))
    at(60_000)
    act("acknowledge", first, "temp-1", MARIA, note="checking the cooling loop")
    handler.handle(_hot(second, sensor_two, 80.0, at(90_000)), rt)
    scene.steps.append((f"{second} {sensor_two} reads 80 C", "RAISED WARNING"))
    at(120_000)
    act("snooze", second, sensor_two, LI, until=f"{SNOOZE_MS // 60_000}m", note="maintenance")
    handler.handle(_hot(second, sensor_two, 95.0, at(300_000)), rt)
    scene.steps.append(
        (f"{second} {sensor_two} reads 95 C while snoozed", "muted: history and shadow only")
    )
    sweep_at = start_ms + 120_000 + SNOOZE_MS + 60_000
    clock[0] = sweep_at
    handler.handle(_scheduled(sweep_at), rt)
    scene.steps.append(("the sweep after the snooze", "one message with the net change"))
    scene.received = [json.loads(m["Body"]) if "Body" in m else m for m in received()[before:]]
    return scene
