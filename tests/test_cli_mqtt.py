"""`telemetry demo --mqtt` and `telemetry devices`, driven as a user drives them:
a subprocess against a local AWS this test starts, then read back."""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.test_cli import (
    ROOT,
    Held,
    assert_user_error,
    count,
    read_back,
    section,
    table_rows,
    telemetry,
)


@pytest.fixture(scope="module")
def local_aws() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


MODES = {
    "direct": ("--ingest", "direct"),
    "stream+basic-ingest": ("--ingest", "stream", "--basic-ingest"),
}


@pytest.fixture(scope="module", params=list(MODES))
def mqtt_demo(local_aws: str, request: pytest.FixtureRequest) -> tuple[str, str, Held]:
    # Given a local AWS already running
    # When a newcomer runs the demo over MQTT
    result = telemetry(
        "demo",
        "--mqtt",
        "--devices",
        "4",
        "--duration",
        "2m",
        "--seed",
        "3",
        "--endpoint-url",
        local_aws,
        *MODES[request.param],
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return request.param, result.stdout, read_back(local_aws, result.stdout)


@pytest.mark.slow
def test_the_mqtt_demo_sends_the_fleet_through_broker_rule_and_function(
    mqtt_demo: tuple[str, str, Held],
) -> None:
    mode, out, held = mqtt_demo
    # Then it names the broker, the rule and the topic devices use
    assert re.search(r"^MQTT: broker mqtts://127\.0\.0\.1:\d+ \(mosquitto\)", out, re.MULTILINE)
    topic = "$aws/rules/telemetry" if "basic" in mode else "dt/plant/pump-001/telemetry"
    assert f"devices publish to {topic}" in out
    assert "Rule SQL: SELECT *, topic(3) AS deviceId, timestamp() AS receivedAt" in out
    # and every message published was acknowledged and reached the rule
    published = count(out, "published (QoS 1)")
    assert f"{published} acknowledged" in out
    assert count(out, "reached the rule") == published
    # and what it says is stored and alerted is what the local AWS holds
    assert count(out, "readings stored") == held.readings > 0
    assert table_rows(out)
    assert len(held.alerts) == len(table_rows(out))
    # and the pump's story plays out through MQTT as it does without it
    pump = [(r[2], r[3]) for r in table_rows(out) if r[:2] == ("pump-001", "temp-1")]
    assert pump == [
        ("RAISED", "WARNING"),
        ("ESCALATED", "CRITICAL"),
        ("DEESCALATED", "WARNING"),
        ("RESOLVED", "OK"),
    ]


@pytest.mark.slow
def test_the_mqtt_demo_shows_a_device_refused_when_it_passes_for_another(
    mqtt_demo: tuple[str, str, Held],
) -> None:
    _, out, _ = mqtt_demo
    # Then the scene's rows say what was tried and what the broker did (rows may wrap)
    text = " ".join(" ".join(section(out, "A device trying to pass for another")).split())
    assert text.startswith("- connect as another thing")
    assert "CONNACK: Not authorized" in text
    assert "publish to another device's topic" in text
    assert "refused: no statement allows iot:Publish" in text
    assert "deviceId='chiller-004', the topic's" in text
    assert "publish to the operators' topic" in text
    assert count(out, "refused by the policy") == 3


@pytest.mark.slow
def test_the_mqtt_demo_shows_what_devices_saw_mirrored_back(
    mqtt_demo: tuple[str, str, Held],
) -> None:
    mode, out, held = mqtt_demo
    # Then the pump saw its alert raised, escalated, de-escalated and cleared on its shadow
    # (a Kinesis batch may carry several of those changes together: one mirror write
    # for the batch, of where it ends; which readings share a batch depends on timing)
    text = " ".join(" ".join(section(out, "What devices saw mirrored back")[2:]).split())
    story = "temp-1 WARNING -> temp-1 CRITICAL -> temp-1 WARNING -> temp-1 cleared"
    told = r"pump-001 \d temp-1 (WARNING|CRITICAL) -> .*temp-1 cleared compressor-002"
    if mode == "direct":
        assert f"pump-001 4 {story}" in text
        assert re.search(told, text)
    else:
        # one batch may carry the whole story, raised and cleared: nothing left to mirror
        assert re.search(told, text) or "pump-001 0 nothing compressor-002" in text
    # and the late-batch device still shows its alert, as its shadow does
    assert text.endswith("boiler-003 1 temp-1 WARNING")
    assert held.shadows["boiler-003"]["temp-1"]["severity"] == "WARNING"


@pytest.mark.slow
def test_the_mqtt_demo_hands_lifecycle_events_to_the_function(
    mqtt_demo: tuple[str, str, Held],
) -> None:
    _, out, _ = mqtt_demo
    # Then the template's ConnectivityRule ran, as the deployed stack's does by default:
    # every connection made a connected event, and each event invoked the function
    events = count(out, "lifecycle events")
    assert events >= count(out, "connections") > 0
    assert re.search(
        rf"^lifecycle events\s+{events}\s+connected/disconnected, to the function by "
        rf"telemetry(_\d+)?_connectivity \({events} invocations\)",
        out,
        re.MULTILINE,
    )


@pytest.mark.slow
def test_telemetry_devices_hands_lifecycle_events_to_the_function() -> None:
    # When the device simulator runs a short fleet, without --serve
    result = telemetry("devices", "--devices", "2", "--duration", "10s", "--speed", "30")
    # Then the devices' connects reached the function through the ConnectivityRule
    assert result.returncode == 0, result.stderr
    found = re.search(
        r"^Lifecycle events \(connected/disconnected\): (\d+), to the function by "
        r"telemetry_connectivity \((\d+) invocations\)$",
        result.stdout,
        re.MULTILINE,
    )
    assert found, result.stdout
    assert int(found[1]) == int(found[2]) >= 2


@pytest.mark.slow
def test_telemetry_devices_runs_the_fleet_on_its_own() -> None:
    # Given no local AWS running
    # When the device simulator runs a short fleet quickly
    result = telemetry("devices", "--devices", "3", "--duration", "30s", "--speed", "30")
    # Then devices see their alerts mirrored back, and a table per device closes the run
    assert result.returncode == 0, result.stderr
    assert re.search(r"pump-001\s+shadow: temp-1 WARNING \(temperature-high", result.stdout)
    assert "connect as another thing: CONNACK: Not authorized" in result.stdout
    devices = section(result.stdout, "Devices")[2:]
    assert [line.split()[0] for line in devices] == ["pump-001", "compressor-002", "boiler-003"]
    assert "Refused by the device policy: 3" in result.stdout


@pytest.mark.slow
def test_telemetry_devices_serves_things_that_outside_clients_connect_as() -> None:
    if shutil.which("mosquitto_pub") is None:
        pytest.skip("mosquitto_pub not installed (make mosquitto)")
    # Given `telemetry devices --serve` with one more thing than it simulates
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "telemetry", "devices", "--devices", "1", "--duration", "5s"),
            *("--speed", "50", "--things", "1", "--serve"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    lines: list[str] = []
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 120
        while not any("Serving until interrupted" in line for line in lines):
            assert time.monotonic() < deadline, lines
            assert server.poll() is None, lines
            lines.append(server.stdout.readline())
        # When the printed mosquitto_pub line for the extra thing is run as printed,
        # and again with the extra thing's certificate on the simulated thing's topic
        (own,) = [shlex.split(line) for line in lines if "-i device-001" in line]
        published = subprocess.run(own, capture_output=True, text=True, timeout=30, check=False)
        spoof = [a.replace("dt/plant/device-001/", "dt/plant/pump-001/") for a in own]
        refused = subprocess.run(spoof, capture_output=True, text=True, timeout=30, check=False)
    finally:
        server.send_signal(signal.SIGINT)
        rest, err = server.communicate(timeout=60)
    # Then it printed the endpoint and CA, and per thing its certificate and key
    text = "".join(lines)
    assert re.search(r"^Endpoint localhost:\d+ \(MQTT 3\.1\.1 and 5 over TLS", text, re.MULTILINE)
    assert re.search(
        r"^thing pump-001 \(simulated\): certificate /\S+pump-001\.cert\.pem", text, re.MULTILINE
    )
    extra = r"^thing device-001 \(no simulator\): certificate \S+; key \S+"
    assert re.search(extra, text, re.MULTILINE)
    # and the broker took the extra thing's reading, refused its spoofed one
    assert published.returncode == 0, published.stderr
    assert refused.returncode != 0
    # and an interrupt stops it cleanly
    assert server.returncode == 0, err
    assert "Stopped." in rest


def test_basic_ingest_needs_mqtt() -> None:
    result = telemetry("demo", "--basic-ingest")
    assert_user_error(result, code=2, says="--basic-ingest needs --mqtt")
