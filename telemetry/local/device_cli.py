"""`telemetry devices`: the simulated fleet as MQTT devices, on its own, in scaled real time.

What the demo's `--mqtt` runs as fast as it can, this runs at `--speed` times
real time and shows it from the devices' side: each alert the service mirrors
back to a device's named shadow as it arrives, the spoofing attempts the
broker refuses, and per device what it published and what it last saw.

The broker is a local IoT Core that device code written for IoT Core connects
to by changing only its endpoint and CA: for each thing (the simulated ones and
`--things N` more, with no simulator behind them) it prints the endpoint, the
CA file, the thing's certificate and key, and a `mosquitto_pub` line that
publishes a reading as that thing. `--serve` keeps it all up until interrupted.
"""

from __future__ import annotations

import argparse
import json
import shlex
import threading
import time
from typing import Any, Final

DEFAULT_SPEED: Final = 10.0
EXTRA_THING: Final = "device-{:03d}"


class DevicesError(RuntimeError):
    """The device run cannot start or finish; one line for the user."""


def add_arguments(parser: argparse.ArgumentParser, whole: Any, duration: Any, url: Any) -> None:
    parser.add_argument(
        "--devices", type=whole(1, 1_000), default=5, metavar="N", help="devices (default 5)"
    )
    parser.add_argument(
        "--sensors",
        type=whole(1, 24),
        default=3,
        metavar="N",
        help="sensors per device (default 3)",
    )
    parser.add_argument(
        "--duration",
        type=duration(1_000, 86_400_000),
        default=120_000,
        metavar="TIME",
        help="simulated time: seconds, or 90s, 10m, 1h (default 2m)",
    )
    parser.add_argument(
        "--speed",
        type=_speed,
        default=DEFAULT_SPEED,
        metavar="X",
        help=f"times real time (default {DEFAULT_SPEED:g}: 2m of simulated time in 12 s)",
    )
    parser.add_argument("--seed", type=int, default=7, metavar="N", help="random seed (default 7)")
    parser.add_argument(
        "--ingest",
        choices=("direct", "stream"),
        default="direct",
        help="direct: the rule invokes the function; stream: the rule feeds the local stream",
    )
    parser.add_argument(
        "--endpoint-url",
        type=url,
        metavar="URL",
        help="use an already running local AWS instead of starting one",
    )
    parser.add_argument(
        "--things",
        type=whole(0, 1_000),
        default=0,
        metavar="N",
        help="certificates for N more things (device-001, ...) with no simulator behind "
        "them, for your own device code (default 0)",
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="keep the local stack (AWS, broker, rules, function) up until interrupted",
    )
    parser.set_defaults(batch_size=None)  # the template's StreamBatchSize


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"{value:g} is not between 0.1 and 10000")
    return value


def run(args: argparse.Namespace, out: Any, err: Any) -> None:
    """Run the devices; `out` and `err` are telemetry.terminal Screens."""
    try:
        from telemetry.local.server import (  # noqa: PLC0415
            LocalAwsError,
            LocalAwsServer,
            check_reachable,
        )
    except ImportError:
        raise DevicesError("telemetry devices needs the local extra") from None
    try:
        if args.endpoint_url:
            check_reachable(args.endpoint_url)
            _run(args.endpoint_url, args, out, err)
            return
        with LocalAwsServer() as server:
            _run(server.url, args, out, err)
    except LocalAwsError as exc:
        raise DevicesError(str(exc)) from None


def _run(url: str, args: argparse.Namespace, out: Any, err: Any) -> None:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    from telemetry.local import demo  # noqa: PLC0415
    from telemetry.local.fleet import simulate  # noqa: PLC0415
    from telemetry.local.server import point_at  # noqa: PLC0415

    point_at(url)
    start_ms = time.time_ns() // 1_000_000
    sim = simulate(
        devices=args.devices,
        sensors=args.sensors,
        duration_ms=args.duration,
        seed=args.seed,
        end_ms=start_ms + args.duration,
        silence=False,  # the function's clock is the real one: a silence would last seconds
    )
    try:
        with demo._quiet_function():
            stack, _ = demo._provision(url, sim)
            _play(url, stack, sim, args, out, err)
    except (BotoCoreError, ClientError) as exc:
        raise DevicesError(f"the local AWS at {url} failed: {exc}") from None


def _play(url: str, stack: Any, sim: Any, args: argparse.Namespace, out: Any, err: Any) -> None:
    from telemetry import handler  # noqa: PLC0415
    from telemetry.local import demo, mqtt_demo  # noqa: PLC0415
    from telemetry.local.device_side import DeviceSideError, FleetRun  # noqa: PLC0415
    from telemetry.local.devices import DeviceError, device_payload, sender_of  # noqa: PLC0415
    from telemetry.settings import Settings  # noqa: PLC0415

    settings = Settings.from_env(stack.environment() | {"AWS_ENDPOINT_URL": url})
    clients = handler.Clients.create(settings)
    rt = handler.build_runtime(settings, clients)
    meter, tally = demo.Meter(), demo.Tally()
    things = [d.device_id for d in sim.devices]
    lock = threading.Lock()
    began = time.monotonic()

    def shown(thing: str, update: Any) -> None:
        if "/update/" not in update.topic:
            return
        text = ", ".join(
            f"{sensor} {entry['severity']} ({entry['rule']}, {entry['value']:g})"
            if entry
            else f"{sensor} cleared"
            for sensor, entry in sorted(update.alerts.items())
        )
        with lock:
            out.line(f"{time.monotonic() - began:7.1f} s  {thing:<16} shadow: {text}")

    try:
        side = mqtt_demo.device_side(
            url,
            stack,
            things,
            rt,
            clients,
            meter,
            tally,
            args,
            on_shadow=shown,
        )
        with side:
            out.line(
                f"Broker {side.broker.url}; {len(things)} devices publish to "
                f"{side.topic_of('<thing>')} at QoS 1; "
                f"rule {side.rule.name}: {side.rule.query.sql}",
                style="bold",
            )
            _connection_details(side, things, args.things, out)
            victim = things[0] if len(things) > 1 else f"{things[0]}-neighbour"
            for result in side.spoofing_scene(things[-1], victim):
                out.line(f"    0.0 s  {result.device:<16} {result.case}: {result.outcome}")
            side.connect_fleet()
            err.line(
                f"{len(sim.deliveries)} messages over {args.duration / 1000:g} s of simulated "
                f"time, at {args.speed:g}x"
            )
            for delivery in sim.deliveries:
                due = (delivery.at_ms - sim.start_ms) / 1000 / args.speed
                wait = due - (time.monotonic() - began)
                if wait > 0:
                    time.sleep(wait)
                sender = sender_of(delivery.event, things)
                payload = device_payload(delivery.event, sender)
                side.publish([(sender, payload)], FleetRun())
            side.drain()
            side.settle()
            _summary(side, out)
            if args.serve:
                _serve(out)
    except (DeviceSideError, DeviceError) as exc:
        raise DevicesError(str(exc)) from None


def _connection_details(side: Any, simulated: list[str], extra: int, out: Any) -> None:
    """Endpoint, CA, certificate, key and a mosquitto_pub line, per thing."""
    names = [EXTRA_THING.format(i) for i in range(1, extra + 1)]
    for name in names:
        side.add_thing(name, create=True)
    broker = side.broker
    out.line(
        f"Endpoint {broker.endpoint}:{broker.port} (MQTT 3.1.1 and 5 over TLS, a thing's "
        f"certificate, client id = thing name); CA file {broker.ca_file}",
        style="bold",
    )
    reading = json.dumps(
        {"data": [{"sensorId": "temp-1", "type": "temperature", "value": 21.5, "unit": "C"}]}
    )
    for thing in [*simulated, *names]:
        issued = side.credentials[thing]
        role = "simulated" if thing in simulated else "no simulator"
        out.line(
            f"thing {thing} ({role}): certificate {issued.certificate_path}; "
            f"key {issued.private_key_path}"
        )
        command = [
            "mosquitto_pub",
            "-h",
            broker.endpoint,
            "-p",
            str(broker.port),
            "--cafile",
            str(broker.ca_file),
            "--cert",
            str(issued.certificate_path),
            "--key",
            str(issued.private_key_path),
            "-i",
            thing,
            "-q",
            "1",
            "-t",
            side.topic_of(thing),
            "-m",
            reading,
        ]
        out.line("  " + shlex.join(command))


def _serve(out: Any) -> None:
    out.line("Serving until interrupted (Ctrl-C).", style="bold")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        out.line("Stopped.")


def _summary(side: Any, out: Any) -> None:
    rows = []
    for name, client in side.devices.items():
        updates = [u for u in client.log.shadow if "/update/" in u.topic]
        active: dict[str, Any] = {}
        for update in updates:
            active.update(update.alerts)
        still = ", ".join(f"{s} {e['severity']}" for s, e in sorted(active.items()) if e)
        rows.append([name, client.log.published, client.log.acknowledged, len(updates), still])
    out.heading("Devices")
    out.table(
        ("device", "published", "acknowledged", "shadow updates", "active alerts, as last seen"),
        rows,
        numeric=(1, 2, 3),
    )
    refused = side.refusals
    out.line()
    out.line(
        f"Refused by the device policy: {len(refused)}; rule error actions: "
        f"{side.rule.counters.action_errors}; function invocations: "
        f"{side.rule.counters.invocations or (side.poller.batches if side.poller else 0)}"
    )
    from telemetry.local.mqtt_demo import lifecycle_of  # noqa: PLC0415

    lifecycle = lifecycle_of(side)
    if lifecycle is not None:
        name, received, invocations = lifecycle
        out.line(
            f"Lifecycle events (connected/disconnected): {received}, to the function by "
            f"{name} ({invocations} invocations)"
        )
