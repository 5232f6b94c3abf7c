"""A simulated fleet for the demo: device messages, deterministic given a seed.

Every device reports all its sensors in one message (the README's device
format) every 10-20 s (more often on runs shorter than 10 minutes, so that each
device sends about 40 messages whatever the duration and the injected cases play out), with
values inside the default rules' bands. About 3% of messages carry a one-off
spike on one sensor. On top of that, the cases that matter are injected:

- an overheating pump: it heats past warning, then critical, cools back to
  warning, then to normal (RAISED, ESCALATED, DEESCALATED, RESOLVED);
- a sensor flapping around its warning level: it crosses 75 C again and again
  but stays inside the hysteresis band, so it is one episode, not dozens;
- a late batch: a gateway goes offline, comes back with a hot reading that
  raises an alert, then uploads its buffered (older, normal) readings, which
  are stored but must not resolve what newer data decided; it stays hot, so
  its shadow still shows the alert at the end;
- a silent device (fleets of four or more): it stops reporting for a while
  and comes back; the scheduled sweep raises a no-data alert and its return
  resolves it;
- corrupt messages: wrong types, NaN, a bad deviceId, no data, not an object,
  unusable or future timestamps, incoherent device thresholds;
- with `conditions`, one of each condition beyond levels (`condition_rules`), on
  four extra sensors of the first pump: a temperature heating too fast (rate), a pressure frozen
  at one value (stuck), a vibration that jumps once (spike), and a thermocouple
  that reads 850 C once (range: kept out of the temperature rules).

Nothing here talks to AWS: the demo hands each `Delivery` to the handler.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

MESSAGES_PER_DEVICE: Final = 40
MAX_PERIOD_MS: Final = 15_000
MIN_PERIOD_MS: Final = 10
SPIKE_RATE: Final = 0.03
CORRUPT_RATE: Final = 0.005


@dataclass(frozen=True, slots=True)
class SensorKind:
    """A sensor type the default rules know, with its normal band and spikes.

    `spikes` are value ranges an anomalous reading is drawn from; `thresholds`
    are sent by the device itself (a reading's own `warning`/`critical` fields).
    """

    type: str
    prefix: str
    unit: str
    normal: tuple[float, float]
    noise: float
    spikes: tuple[tuple[float, float], ...]
    thresholds: tuple[float, float] | None = None


KINDS: Final = (
    SensorKind("temperature", "temp", "C", (52, 64), 0.4, ((80, 88), (92, 99))),
    SensorKind("pressure", "press", "bar", (3.0, 6.0), 0.1, ((8.5, 11.0), (0.4, 1.0))),
    SensorKind("vibration", "vib", "mm/s", (1.5, 3.0), 0.15, ((5.0, 9.0),)),
    SensorKind("humidity", "hum", "%", (35, 55), 1.0, ((75, 90), (8, 18))),
    SensorKind("current", "curr", "A", (20, 28), 0.5, ((34, 44),)),
    SensorKind("battery", "batt", "%", (45, 100), 0.1, ((5, 18),)),
    SensorKind("level", "level", "%", (30, 70), 0.8, ((92, 99), (2, 8))),
    SensorKind("flow", "flow", "L/min", (100, 140), 2.0, ((185, 210),), (180, 200)),
)
DEVICE_KINDS: Final = ("pump", "compressor", "boiler", "chiller", "conveyor")
FLAP_LEVEL: Final = 75.0


@dataclass(frozen=True, slots=True)
class Sensor:
    sensor_id: str
    kind: SensorKind
    mean: float


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    location: str
    sensors: tuple[Sensor, ...]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One invocation of the function: the event IoT hands over, and when
    (`at_ms`, the function's clock). `kind` is `reading`, `late-batch` or
    `corrupt:<what>`."""

    at_ms: int
    event: Any
    kind: str


@dataclass(frozen=True, slots=True)
class Scenario:
    """An injected case, for the summary: where to look and what to expect."""

    name: str
    device_id: str
    sensor_id: str
    expect: str


@dataclass(slots=True)
class Simulation:
    devices: list[Device]
    deliveries: list[Delivery]
    scenarios: list[Scenario]
    start_ms: int
    end_ms: int
    spikes: int = 0
    corrupt: dict[str, int] = field(default_factory=dict)


Profile = Callable[[float, int], float]
"""A scripted sensor: value from the run's fraction elapsed and reading time."""


def _interpolate(points: Sequence[tuple[float, float]], f: float) -> float:
    for (f0, v0), (f1, v1) in itertools.pairwise(points):
        if f0 <= f <= f1:
            return v0 + (v1 - v0) * (f - f0) / (f1 - f0)
    return points[-1][1]


_PUMP: Final = (
    (0.0, 60.0),
    (0.12, 60.0),
    (0.27, 96.0),
    (0.42, 97.0),
    (0.50, 85.0),
    (0.56, 85.0),
    (0.66, 60.0),
    (1.0, 60.0),
)
FLAPPING: Final = (0.15, 0.65)
OUTAGE: Final = (0.74, 0.86)
_HOT_AFTER_OUTAGE: Final = (0.86, 1.0)
CORRUPT_WINDOW: Final = (0.02, 0.70)
SILENCE: Final = (0.30, 0.75)
"""When the silent device says nothing, as fractions of the run."""


def _corrupt_kinds() -> dict[str, Callable[[dict[str, Any]], Any]]:
    """How each kind of corrupt message is made from a good one."""

    def first(message: dict[str, Any], **changes: Any) -> dict[str, Any]:
        message["data"][0].update(changes)
        return message

    return {
        "value-as-string": lambda m: first(m, value=str(m["data"][0]["value"])),
        "value-nan": lambda m: first(m, value=math.nan),
        "value-boolean": lambda m: first(m, value=True),
        "missing-sensor-id": lambda m: first(m, sensorId=None),
        "bad-device-id": lambda m: {**m, "deviceId": m["deviceId"] + "/../admin"},
        "no-data": lambda m: {k: v for k, v in m.items() if k != "data"},
        "not-an-object": lambda m: f"{m['deviceId']} temp=81.2",
        "bad-timestamp": lambda m: {**m, "timestamp": "yesterday"},
        "future-timestamp": lambda m: {**m, "timestamp": m["timestamp"] + 3_600_000},
        "incoherent-thresholds": lambda m: first(m, warningThreshold=90, criticalThreshold=80),
    }


CONDITION_CASES: Final = (
    ("heat-1", "temperature", "rate of change", "RAISED WARNING, RESOLVED OK (direction rate)"),
    ("psi-1", "pressure", "stuck sensor", "RAISED WARNING, RESOLVED OK (direction stuck)"),
    ("jolt-1", "vibration", "one-reading spike", "RAISED WARNING, RESOLVED OK (direction spike)"),
    (
        "tc-1",
        "temperature",
        "failed thermocouple",
        "RAISED WARNING, RESOLVED OK (direction range); 850 C raised no temperature alert",
    ),
)
"""(sensorId, type, case, what operators should hear) of the condition cases."""


def condition_rules(sim: Simulation) -> str:
    """The rules of the condition cases, for this run's first pump and duration:
    heating 30 C over 30% of the run is 3.3 per thirtieth of it."""
    span = sim.end_ms - sim.start_ms
    pump = sim.devices[0].device_id
    return f"""\
# Added by `telemetry demo`: one rule of each condition beyond levels, on the first
# pump's extra sensors (durations scaled to the run: {span // 1000}s of simulated time).
rules:
  - name: demo-heating-rate
    match: {{deviceId: "{pump}", sensorId: heat-1}}
    rate: {{above: {{warning: 2}}, per: {span // 30}ms, over: {span // 10}ms}}
    hysteresis: 0.5
  - name: demo-frozen-sensor
    match: {{deviceId: "{pump}", sensorId: psi-1}}
    stuck: {{for: {span // 5}ms, tolerance: 0.001}}
  - name: demo-vibration-jolt
    match: {{deviceId: "{pump}", sensorId: jolt-1}}
    spike: {{jump: 10}}
  - name: demo-thermocouple
    match: {{deviceId: "{pump}", sensorId: tc-1}}
    range: {{min: -40, max: 150}}
"""


class _Fleet:
    def __init__(
        self,
        devices: int,
        sensors: int,
        duration_ms: int,
        seed: int,
        end_ms: int,
        silence: bool,
        conditions: bool = False,
    ):
        self.rng = random.Random(seed)  # noqa: S311 - a simulation, not a secret
        self.start_ms = end_ms - duration_ms
        self.end_ms = end_ms
        self.duration_ms = duration_ms
        self.period_ms = max(MIN_PERIOD_MS, min(MAX_PERIOD_MS, duration_ms // MESSAGES_PER_DEVICE))
        self.devices = [self._device(i, devices, sensors) for i in range(devices)]
        self.scripted: dict[tuple[str, str], Profile] = {}
        self.scenarios: list[Scenario] = []
        self.flap_values: list[float] = []
        self._flap_side = 1.0
        self._script(devices, silence)
        if conditions:
            self._script_conditions()

    def _device(self, index: int, count: int, sensors: int) -> Device:
        width = max(3, len(str(count)))
        name = f"{DEVICE_KINDS[index % len(DEVICE_KINDS)]}-{index + 1:0{width}d}"
        location = "outdoor-yard" if index % 5 == 4 else f"line-{index % 4 + 1}"
        made = []
        for j in range(sensors):
            kind = KINDS[j % len(KINDS)]
            low, high = kind.normal
            if kind.type == "temperature" and location.startswith("outdoor"):
                low, high = 12.0, 20.0  # the freezing rule applies outdoors
            made.append(
                Sensor(f"{kind.prefix}-{j // len(KINDS) + 1}", kind, self.rng.uniform(low, high))
            )
        return Device(name, location, tuple(made))

    def _script(self, count: int, silence: bool) -> None:
        pump = self.devices[0]
        self.scripted[(pump.device_id, "temp-1")] = lambda f, _t: (
            _interpolate(_PUMP, f) + self.rng.uniform(-0.4, 0.4)
        )
        self.scenarios.append(
            Scenario(
                "overheating pump",
                pump.device_id,
                "temp-1",
                "RAISED WARNING, ESCALATED CRITICAL, DEESCALATED WARNING, RESOLVED",
            )
        )
        flapper = self.devices[min(1, count - 1)]
        flap_sensor = "temp-1" if flapper is not pump else "temp-2"
        if flapper is pump:
            kind = KINDS[0]
            extra = Sensor(flap_sensor, kind, 62.0)
            self.devices[0] = pump = Device(pump.device_id, pump.location, (*pump.sensors, extra))
        self.scripted[(flapper.device_id, flap_sensor)] = self._flap
        self.scenarios.append(
            Scenario(
                "flapping sensor",
                flapper.device_id,
                flap_sensor,
                "one episode (RAISED, RESOLVED) although it crosses 75 C again and again",
            )
        )
        self.silent_device: str | None = None
        if count >= 4 and silence:
            silent = self.devices[3]
            self.silent_device = silent.device_id
            self.scenarios.append(
                Scenario(
                    "silent device",
                    silent.device_id,
                    silent.sensors[0].sensor_id,
                    "stops reporting, then comes back",
                )
            )
        late = self.devices[min(2, count - 1)]
        self.late_device = late.device_id
        self.scripted[(late.device_id, "temp-1")] = self._gateway(
            self.scripted.get((late.device_id, "temp-1"))
        )
        self.scenarios.append(
            Scenario(
                "late batch",
                late.device_id,
                "temp-1",
                "raised on reconnecting; the normal readings it had buffered arrive "
                "after that, older: stored, but they do not resolve it (still active)",
            )
        )

    def _script_conditions(self) -> None:
        """Four extra sensors on the first pump, one per condition (see
        `condition_rules`); their profiles draw nothing from the seed, so the
        rest of the fleet reads as it did without them."""
        pump = self.devices[0]
        kinds = {k.type: k for k in KINDS}
        extra = tuple(Sensor(sensor, kinds[kind], 0.0) for sensor, kind, _, _ in CONDITION_CASES)
        self.devices[0] = Device(pump.device_id, pump.location, (*pump.sensors, *extra))
        once = {"jolt-1": [False], "tc-1": [False]}

        def ramp(f: float, _t: int) -> float:
            return 40.0 + 30.0 * min(max((f - 0.2) / 0.3, 0.0), 1.0)

        def frozen(f: float, _t: int) -> float:
            return 4.1 if f < 0.8 else 4.6

        def glitch(sensor: str, normal: float, odd: float, at: float) -> Profile:
            def profile(f: float, _t: int) -> float:
                if f >= at and not once[sensor][0]:
                    once[sensor][0] = True
                    return odd
                return normal

            return profile

        profiles = {
            "heat-1": ramp,
            "psi-1": frozen,
            "jolt-1": glitch("jolt-1", 2.0, 30.0, 0.5),
            "tc-1": glitch("tc-1", 55.0, 850.0, 0.6),
        }
        for sensor, _, name, expect in CONDITION_CASES:
            self.scripted[(pump.device_id, sensor)] = profiles[sensor]
            self.scenarios.append(Scenario(name, pump.device_id, sensor, expect))

    def _flap(self, f: float, _t: int) -> float:
        if not FLAPPING[0] <= f < FLAPPING[1]:
            return 62.0 + self.rng.uniform(-0.5, 0.5)
        if self.rng.random() < 0.6:
            self._flap_side = -self._flap_side
        # Never further than 1.6 below the level: the clear level (73) is never reached.
        value = FLAP_LEVEL + self._flap_side * self.rng.uniform(0.3, 1.6)
        self.flap_values.append(value)
        return value

    def _gateway(self, before: Profile | None) -> Profile:
        def profile(f: float, t: int) -> float:
            if OUTAGE[0] <= f < OUTAGE[1]:
                ramp = 8.0 * (f - OUTAGE[0]) / (OUTAGE[1] - OUTAGE[0])
                return 62.0 + ramp + self.rng.uniform(-0.4, 0.4)
            if _HOT_AFTER_OUTAGE[0] <= f < _HOT_AFTER_OUTAGE[1]:
                return 80.0 + self.rng.uniform(-1.0, 1.0)
            if before is not None:
                return before(f, t)
            return 62.0 + self.rng.uniform(-0.5, 0.5)

        return profile

    def value(self, device: Device, sensor: Sensor, t: int) -> float:
        f = (t - self.start_ms) / self.duration_ms
        script = self.scripted.get((device.device_id, sensor.sensor_id))
        if script is not None:
            raw = script(f, t)
        else:
            raw = sensor.mean + self.rng.uniform(-sensor.kind.noise, sensor.kind.noise)
        return round(raw, 2)

    def reading(
        self, device: Device, sensor: Sensor, t: int, value: float | None = None
    ) -> dict[str, Any]:
        kind = sensor.kind
        out: dict[str, Any] = {
            "sensorId": sensor.sensor_id,
            "type": kind.type,
            "value": self.value(device, sensor, t) if value is None else value,
            "unit": kind.unit,
            "location": device.location,
        }
        if kind.thresholds is not None:
            out["warningThreshold"], out["criticalThreshold"] = kind.thresholds
        return out

    def message(self, device: Device, t: int, arrival: int) -> dict[str, Any]:
        return {
            "deviceId": device.device_id,
            "timestamp": t,
            "receivedAt": arrival,
            "data": [self.reading(device, s, t) for s in device.sensors],
        }

    def spike(self, device: Device, message: dict[str, Any]) -> bool:
        free = [
            i
            for i, s in enumerate(device.sensors)
            if (device.device_id, s.sensor_id) not in self.scripted
        ]
        if not free:
            return False
        index = self.rng.choice(free)
        low, high = self.rng.choice(device.sensors[index].kind.spikes)
        message["data"][index]["value"] = round(self.rng.uniform(low, high), 2)
        return True

    def latency(self) -> int:
        """From device to function: 20-400 ms at the usual cadence, less on short runs."""
        return max(1, int(self.period_ms * self.rng.uniform(0.0015, 0.027)))

    def fraction(self, t: int) -> float:
        return (t - self.start_ms) / self.duration_ms


def simulate(
    *,
    devices: int,
    sensors: int,
    duration_ms: int,
    seed: int,
    end_ms: int,
    silence: bool = True,
    conditions: bool = False,
) -> Simulation:
    """The fleet's messages over `duration_ms` of simulated time ending at
    `end_ms`, sorted by arrival. The same arguments give the same messages.
    `silence`: whether a device falls silent for a while (fleets of four or more);
    only meaningful where the function's clock is the simulation's. `conditions`:
    whether the first pump carries the condition cases (`CONDITION_CASES`)."""
    fleet = _Fleet(devices, sensors, duration_ms, seed, end_ms, silence, conditions)
    rng = fleet.rng
    deliveries: list[Delivery] = []
    spikes = 0
    for device in fleet.devices:
        buffered: list[dict[str, Any]] = []
        t = fleet.start_ms + int(rng.uniform(0, fleet.period_ms))
        while t < fleet.end_ms:
            arrival = t + fleet.latency()
            message = fleet.message(device, t, arrival)
            if rng.random() < SPIKE_RATE and fleet.spike(device, message):
                spikes += 1
            offline = OUTAGE[0] <= fleet.fraction(t) < OUTAGE[1]
            if (
                device.device_id == fleet.silent_device
                and SILENCE[0] <= fleet.fraction(t) < SILENCE[1]
            ):
                pass  # says nothing at all: no message, no buffer
            elif device.device_id == fleet.late_device and offline:
                buffered.append(message)
            elif buffered:
                deliveries.append(Delivery(arrival, message, "reading"))
                deliveries.append(_backlog(device, buffered, arrival + fleet.period_ms // 10 + 1))
                buffered = []
            else:
                deliveries.append(Delivery(arrival, message, "reading"))
            t += int(fleet.period_ms * rng.uniform(0.67, 1.33))
        if buffered:
            deliveries.append(_backlog(device, buffered, fleet.end_ms))
    corrupt = _corrupt(fleet, len(deliveries))
    deliveries.extend(corrupt)
    deliveries.sort(key=lambda d: d.at_ms)
    counts: dict[str, int] = {}
    for delivery in corrupt:
        counts[delivery.kind] = counts.get(delivery.kind, 0) + 1
    return Simulation(
        fleet.devices,
        deliveries,
        _with_flap_count(fleet),
        fleet.start_ms,
        fleet.end_ms,
        spikes,
        counts,
    )


def _with_flap_count(fleet: _Fleet) -> list[Scenario]:
    values = fleet.flap_values
    crossings = sum(
        1 for a, b in itertools.pairwise(values) if (a > FLAP_LEVEL) != (b > FLAP_LEVEL)
    )
    expect = f"one episode (RAISED, RESOLVED) although it crossed 75 C {crossings} times"
    return [
        Scenario(s.name, s.device_id, s.sensor_id, expect) if s.name == "flapping sensor" else s
        for s in fleet.scenarios
    ]


def _backlog(device: Device, buffered: list[dict[str, Any]], at_ms: int) -> Delivery:
    """One upload of buffered readings, each with its own (older) timestamp."""
    data = [{**r, "timestamp": m["timestamp"]} for m in buffered for r in m["data"]]
    message = {"deviceId": device.device_id, "timestamp": at_ms, "receivedAt": at_ms, "data": data}
    return Delivery(at_ms, message, "late-batch")


def _corrupt(fleet: _Fleet, good: int) -> list[Delivery]:
    kinds = _corrupt_kinds()
    names = list(kinds)
    count = max(len(names), round(good * CORRUPT_RATE))
    rng = fleet.rng
    out = []
    for i in range(count):
        name = names[i % len(names)]
        device = rng.choice([d for d in fleet.devices if d.device_id != fleet.silent_device])
        low, high = CORRUPT_WINDOW
        t = fleet.start_ms + int(fleet.duration_ms * rng.uniform(low, high))
        arrival = t + fleet.latency()
        # Only sensors no scenario scripts: a corrupt message must not disturb a story.
        sensors = [
            s for s in device.sensors if (device.device_id, s.sensor_id) not in fleet.scripted
        ]
        bad = {"sensorId": "aux-1", "type": "flow", "value": 50.0, "unit": "L/min"}
        data = [bad, *(fleet.reading(device, s, t) for s in sensors)]
        message = {
            "deviceId": device.device_id,
            "timestamp": t,
            "receivedAt": arrival,
            "data": data,
        }
        out.append(Delivery(arrival, kinds[name](message), f"corrupt:{name}"))
    return out
