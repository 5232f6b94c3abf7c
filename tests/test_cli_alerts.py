"""`telemetry alerts`: operators list the active alerts and act on them, from a shell.

Against a local AWS (moto's server, started here), as an operator would use it
with the demo's stack: the command runs in a subprocess, the actions handler
in it (a local AWS runs no Lambda), and the state and the operators' queue
are read back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from telemetry import handler
from telemetry.local.provision import Stack, provision
from telemetry.local.server import LocalAwsServer, point_at
from telemetry.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "alerts-cli"


def telemetry(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    stack = ["--prefix", PREFIX] if "--endpoint-url" in args else []
    return subprocess.run(
        [sys.executable, "-m", "telemetry", *args, *stack],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def local() -> Iterator[tuple[str, Stack]]:
    """A local AWS holding a stack with one active alert and one quiet device."""
    saved = dict(os.environ)
    try:
        with LocalAwsServer() as server:
            point_at(server.url)
            # Its own prefix: moto's backends are shared by every server of a process.
            stack = provision(endpoint_url=server.url, things=["pump-17", "pump-18"], prefix=PREFIX)
            settings = Settings.from_env(stack.environment() | {"AWS_ENDPOINT_URL": server.url})
            rt = handler.build_runtime(settings)
            now = int(time.time() * 1000)
            reading = {"sensorId": "temp-1", "type": "temperature", "value": 95.0}
            handler.handle({"deviceId": "pump-17", "timestamp": now, "data": [reading]}, rt)
            quiet = {"sensorId": "temp-1", "type": "temperature", "value": 50.0}
            handler.handle({"deviceId": "pump-18", "timestamp": now, "data": [quiet]}, rt)
            yield server.url, stack
    finally:
        os.environ.clear()
        os.environ.update(saved)


def listing(url: str) -> list[dict[str, Any]]:
    result = telemetry("alerts", "list", "--endpoint-url", url, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_an_operator_lists_acknowledges_and_snoozes_from_the_shell(
    local: tuple[str, Stack],
) -> None:
    url, _ = local
    # Given the active alert, as `alerts list` shows it
    (before,) = listing(url)
    table = telemetry("alerts", "list", "--endpoint-url", url)
    assert (before["deviceId"], before["severity"], before["acknowledged"]) == (
        "pump-17",
        "CRITICAL",
        None,
    )
    assert "1 alert active" in table.stdout
    assert all(len(line) <= 80 for line in table.stdout.splitlines())

    # When an operator acknowledges it, then snoozes it for two hours
    acked = telemetry(
        "alerts",
        "ack",
        "pump-17",
        "temp-1",
        "temperature-high",
        "--endpoint-url",
        url,
        "--prefix",
        PREFIX,
        "--note",
        "valve replaced",
    )
    snoozed = telemetry(
        "alerts",
        "snooze",
        "pump-17",
        "temp-1",
        "temperature-high",
        "--endpoint-url",
        url,
        "--prefix",
        PREFIX,
        "--until",
        "2h",
        "--by",
        "li@plant.example",
    )
    again = telemetry(
        "alerts", "ack", "pump-17", "temp-1", "temperature-high", "--endpoint-url", url
    )

    # Then each says what it did; the second acknowledgement is refused with its reason
    # (exit 1); the list shows who acknowledged (by default, the caller's AWS identity)
    assert acked.returncode == 0, acked.stderr
    assert acked.stdout.startswith("acknowledge: applied to pump-17 temp-1 (temperature-high)")
    assert snoozed.returncode == 0, snoozed.stderr
    assert again.returncode == 1
    assert again.stderr.startswith("telemetry: error: acknowledge refused: already acknowledged by")
    (after,) = listing(url)
    assert after["acknowledged"]["by"].startswith("arn:aws:")
    assert after["snoozedUntil"] is not None
    held = telemetry("alerts", "list", "--endpoint-url", url, "--severity", "CRITICAL")
    assert "ack arn:aws:" in held.stdout
    assert "snoozed to" in held.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["alerts", "ack", "pump-17", "temp-1", "temperature-high"], 2, "say which stack"),
        (["alerts", "snooze", "pump-17", "temp-1", "temperature-high"], 2, "--until"),
        (["alerts", "list", "--severity", "LOW"], 2, "invalid choice"),
    ],
)
def test_an_operator_mistake_is_one_line_and_exit_2(args: list[str], code: int, says: str) -> None:
    result = telemetry(*args)
    assert result.returncode == code
    assert says in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_malformed_action_names_its_field(local: tuple[str, Stack]) -> None:
    url, _ = local
    result = telemetry(
        "alerts",
        "snooze",
        "pump-18",
        "temp-1",
        "temperature-high",
        "--endpoint-url",
        url,
        "--prefix",
        PREFIX,
        "--until",
        "yesterday",
        "--by",
        "li",
    )
    assert result.returncode == 2
    assert result.stderr.startswith("telemetry: error: until: ")


@pytest.mark.slow
def test_a_refused_action_on_a_quiet_sensor_says_why(local: tuple[str, Stack]) -> None:
    url, _ = local
    result = telemetry(
        "alerts",
        "reset",
        "pump-18",
        "temp-1",
        "temperature-high",
        "--endpoint-url",
        url,
        "--prefix",
        PREFIX,
        "--by",
        "li",
        "--format",
        "json",
    )
    assert result.returncode == 1
    assert json.loads(result.stdout)["reason"].startswith("no active alert on pump-18")


# ---------------------------------------------------------------- a deployed stack


def deployed(monkeypatch: pytest.MonkeyPatch, answers: list[dict[str, Any]]) -> list[Any]:
    """`telemetry alerts` against a deployed actions function: Lambda stubbed,
    each Invoke answered in turn; returns what each Invoke sent."""
    import io

    import boto3
    from botocore.stub import ANY, Stubber

    from telemetry.local import alerts_cli

    client = boto3.client("lambda", region_name="eu-west-1")
    stubber = Stubber(client)
    sent: list[Any] = []
    for answer in answers:
        payload = json.dumps(answer.pop("payload")).encode()
        stubber.add_response(
            "invoke",
            {"StatusCode": 200, "Payload": io.BytesIO(payload), **answer},
            {"FunctionName": "iot-telemetry-actions", "Payload": ANY},
        )
    stubber.activate()
    original = client.invoke

    def invoke(**kwargs: Any) -> Any:
        sent.append(json.loads(kwargs["Payload"]))
        return original(**kwargs)

    monkeypatch.setattr(client, "invoke", invoke)
    monkeypatch.setattr(alerts_cli, "_client", lambda args, service: client)
    return sent


def test_a_deployed_snooze_sends_an_absolute_end_and_a_malformed_action_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a deployed actions function that applies the first action and finds the
    # second malformed
    from telemetry.cli import main

    sent = deployed(
        monkeypatch,
        [
            {"payload": {"applied": True, "state": {"severity": "WARNING"}}},
            {
                "payload": {"errorType": "InvalidActionError", "errorMessage": "note: too long"},
                "FunctionError": "Unhandled",
            },
        ],
    )
    before = int(time.time() * 1000)

    # When an operator snoozes for 2h, then sends a malformed action
    deployed_function = ["--function", "iot-telemetry-actions", "--by", "maria@plant.example"]
    snooze = ["alerts", "snooze", "pump-17", "temp-1", "temperature-high", "--until", "2h"]
    snoozed = main([*snooze, *deployed_function])
    malformed = main(["alerts", "ack", "pump-17", "temp-1", "temperature-high", *deployed_function])

    # Then the snooze's end went as epoch ms (a retry decides the same end), it exits 0,
    # and the malformed action exits 2 with the function's one line
    assert snoozed == 0
    assert before + 2 * 3_600_000 <= sent[0]["until"] <= int(time.time() * 1000) + 2 * 3_600_000
    assert malformed == 2
    assert capsys.readouterr().err.strip().endswith("note: too long")


@pytest.mark.parametrize(
    ("option", "text", "says"),
    [
        (
            "--note",
            "valve replaced\nwatching it",
            "note: must be one line of text: character 15 is a line break (U+000A)",
        ),
        (
            "--by",
            "maria\u2028admin",
            "by: must be one line of text: character 6 is a line break (U+2028 LINE SEPARATOR)",
        ),
    ],
)
def test_a_note_or_by_of_more_than_one_line_is_refused_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    option: str,
    text: str,
    says: str,
) -> None:
    # Given a deployed actions function
    from telemetry.cli import main

    sent = deployed(monkeypatch, [])
    by = [] if option == "--by" else ["--by", "maria@plant.example"]

    # When an operator acknowledges with a note (or a name) of more than one line
    code = main(
        [
            "alerts",
            "ack",
            "pump-17",
            "temp-1",
            "temperature-high",
            "--function",
            "iot-telemetry-actions",
            *by,
            option,
            text,
        ]
    )

    # Then the command exits 2 saying what is wrong, in the function's words, and
    # invokes nothing
    assert code == 2
    assert sent == []
    assert capsys.readouterr().err.strip().endswith(says)


# ------------------------------------------------------------ lines that say what is so

WARN_PREFIX = "alerts-cli-warn"


def telemetry_on(prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`telemetry alerts` on the local stack of that prefix (no prefix added)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [sys.executable, "-m", "telemetry", *args, "--prefix", prefix],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def warning_only(local: tuple[str, Stack]) -> str:
    """A stack of its own in the same local AWS, whose one active alert is a WARNING."""
    url, _ = local
    stack = provision(endpoint_url=url, things=["boiler-003"], prefix=WARN_PREFIX)
    settings = Settings.from_env(stack.environment() | {"AWS_ENDPOINT_URL": url})
    rt = handler.build_runtime(settings)
    reading = {"sensorId": "temp-1", "type": "temperature", "value": 80.0}
    handler.handle(
        {"deviceId": "boiler-003", "timestamp": int(time.time() * 1000), "data": [reading]}, rt
    )
    return url


@pytest.mark.slow
@pytest.mark.parametrize("device", [[], ["--device", "boiler-003"]], ids=["all", "one-device"])
def test_none_at_a_severity_says_what_is_active_below_it(
    warning_only: str, device: list[str]
) -> None:
    # Given a stack whose only active alert is a WARNING on boiler-003
    # When an operator lists the CRITICAL ones (on that device, or all)
    result = telemetry_on(
        WARN_PREFIX, "alerts", "list", "--endpoint-url", warning_only, "--severity", "CRITICAL",
        *device,
    )  # fmt: skip

    # Then the line says none is at CRITICAL, and that one WARNING is active
    assert result.returncode == 0, result.stderr
    on = " on boiler-003" if device else ""
    assert result.stdout.strip() == (
        f"no alert at CRITICAL{on}; active or held below it: 1 WARNING "
        "(list without --severity to see them)"
    )
    assert "no active alert" not in result.stdout


@pytest.mark.slow
def test_an_unknown_prefix_names_the_stacks_there(local: tuple[str, Stack]) -> None:
    # Given a local AWS holding the test's stacks
    url, _ = local

    # When an operator names a prefix that is not one of them
    result = telemetry_on("nosuch", "alerts", "list", "--endpoint-url", url)

    # Then the line names the stacks there (and how to name one), not "give --prefix"
    # as if it had not been given
    assert result.returncode == 1
    assert result.stderr.startswith(f"telemetry: error: no stack 'nosuch' at {url}: ")
    assert PREFIX in result.stderr
    assert "or give --prefix" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_an_until_it_cannot_read_says_the_forms_it_takes(local: tuple[str, Stack]) -> None:
    # Given an active alert
    url, _ = local

    # When an operator snoozes it until "tomorrow"
    result = telemetry(
        "alerts", "snooze", "pump-17", "temp-1", "temperature-high", "--endpoint-url", url,
        "--until", "tomorrow", "--by", "li",
    )  # fmt: skip

    # Then the line says which forms are accepted, without blaming ISO-8601 alone
    assert result.returncode == 2
    assert "not an ISO-8601 timestamp" not in result.stderr
    line = result.stderr.strip()
    assert line.startswith("telemetry: error: until: must be a duration from now such as")
    assert "2h" in line
    assert "ISO-8601" in line
    assert "epoch milliseconds" in line
