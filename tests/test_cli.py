"""The `telemetry` command, driven as a user drives it: a subprocess, real files,
and for the demo a local AWS this test starts, then reads back.

Each test is one thing a newcomer or an operator does, and what they must see.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from telemetry.local.outage_demo import GATEWAY, MEMBERS

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
SAMPLE = ROOT / "telemetry" / "samples" / "history.jsonl"
ACCOUNT, REGION = "123456789012", "us-east-1"
T0 = 1_764_237_600_000  # 2025-11-27T10:00:00Z
WORKED_RULE = """\
rules:
  - name: boiler-temperature
    match: {type: temperature}
    above: {warning: 75, critical: 90}
    hysteresis: 2
"""
WORKED_VALUES = [70, 80, 95, 96, 89, 88, 74, 73, 70]
SNS_BODY_FIELDS = {
    "alertId", "status", "severity", "previousSeverity", "deviceId", "sensorId", "rule",
    "value", "threshold", "direction", "time", "since", "type", "unit",
}  # fmt: skip
ROW = re.compile(
    r"^(?:\d{4}-\d\d-\d\dT[\d:]+Z|\d\d:\d\d:\d\d)\s+(\S+)\s+(\S+)\s+(RAISED|ESCALATED|DEESCALATED|RESOLVED)\s+"
    r"(OK|WARNING|CRITICAL)\s+(\S+)\s+(\S+(?: silent)?)\s+(\S+)\s*$"
)


OUTAGE_THINGS = {GATEWAY, *MEMBERS}


def telemetry(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "telemetry", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


def messages(values: list[float], *, device: str = "pump-17", step_ms: int = 60_000) -> list[str]:
    return [
        json.dumps(
            {
                "deviceId": device,
                "timestamp": T0 + i * step_ms,
                "data": [{"sensorId": "temp-1", "type": "temperature", "value": v, "unit": "C"}],
            }
        )
        for i, v in enumerate(values)
    ]


def table_rows(stdout: str) -> list[tuple[str, ...]]:
    """(device, sensor, status, severity, value, threshold, rule) per transition row."""
    return [m.groups() for line in stdout.splitlines() if (m := ROW.match(line))]


def threshold_cell(alert: dict[str, Any]) -> str:
    """The threshold as the table shows it: a level, or a no-data alert's window."""
    if alert.get("direction") == "nodata":
        from telemetry.terminal import duration_text

        return f"{duration_text(round(alert['threshold'] * 1000))} silent"
    return f"{alert['threshold']:g}"


def on_terminal(width: int, *args: str) -> str:
    """`telemetry ARGS` run on a terminal `width` columns wide: its screen, uncoloured."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, width, 0, 0))
    env = {**os.environ, "COLUMNS": str(width), "NO_COLOR": "1", "TERM": "dumb"}
    with subprocess.Popen(
        [sys.executable, "-m", "telemetry", *args],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
        env=env,
    ) as process:
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            shown += chunk
        process.wait(timeout=300)
    os.close(leader)
    assert process.returncode == 0
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode()).replace("\r\n", "\n")


def section(stdout: str, heading: str) -> list[str]:
    """The lines after the line starting with `heading`, up to the next blank line."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    out = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        out.append(line)
    return out


VERDICT = re.compile(r"^\s*(ok|NOT AS EXPECTED)\s+(.+?)(?: \((\S+) (\S+)\))?$")


def injected(stdout: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Per injected case: the demo's verdict and (device, sensor) when it names them."""
    out = {}
    for line in section(stdout, "Injected"):
        if (m := VERDICT.match(line)) is not None:
            out[m.group(2)] = (m.group(1), tuple(g for g in m.groups()[2:] if g))
    return out


def count(stdout: str, label: str) -> int:
    match = re.search(rf"^{re.escape(label)}\s+(\d+)\b", stdout, re.MULTILINE)
    assert match, f"no {label!r} line in the output"
    return int(match.group(1))


def assert_user_error(result: subprocess.CompletedProcess[str], *, code: int, says: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert says in result.stderr
    assert result.stdout == ""


# --- the demo -----------------------------------------------------------------


@pytest.fixture(scope="module")
def local_aws() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def client(service: str, url: str) -> Any:
    fake = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return boto3.client(service, endpoint_url=url, region_name=REGION, **fake)


@dataclass
class Held:
    """What the local AWS holds after a demo run."""

    readings: int
    published: int
    alerts: list[dict[str, Any]]
    on_call: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]
    shadows: dict[str, dict[str, Any]]
    shadow_versions: int
    state_versions: int


def drain(url: str, queue_url: str) -> list[dict[str, Any]]:
    sqs = client("sqs", url)
    out = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
        "Messages", []
    ):
        for message in messages:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return out


def read_back(url: str, stdout: str) -> Held:
    from moto.sns.models import sns_backends
    from moto.timestreamwrite.models import timestreamwrite_backends

    stack = re.search(
        r"^Stack: Timestream (\S+)\.(\S+), DynamoDB (\S+), SNS (\S+), SQS (\S+) .*?, "
        r"(\S+) \(severity CRITICAL\), (\S+), \d+ things$",
        stdout,
        re.MULTILINE,
    )
    assert stack, stdout
    database, table, state_table, topic, operator, on_call, dead_letter = stack.groups()
    records = timestreamwrite_backends[ACCOUNT][REGION].databases[database].tables[table].records
    topic_arn = f"arn:aws:sns:{REGION}:{ACCOUNT}:{topic}"
    queue = f"{url}/{ACCOUNT}/"
    shadows, versions = {}, 0
    iot, iot_data = client("iot", url), client("iot-data", url)
    for thing in (t["thingName"] for t in iot.list_things(maxResults=250)["things"]):
        if thing.endswith("-ops") or thing in OUTAGE_THINGS:
            continue  # the operators' and the outage's scenes have stacks and things of their own
        try:
            payload = iot_data.get_thing_shadow(thingName=thing, shadowName="alerts")["payload"]
        except ClientError:
            continue
        document = json.loads(payload.read())
        versions += document["version"]
        active = {k: v for k, v in document["state"]["reported"].get("alerts", {}).items() if v}
        if active:
            shadows[thing] = active
    items = client("dynamodb", url).scan(TableName=state_table)["Items"]
    return Held(
        readings=sum(1 for r in records if r["MeasureName"] == "reading"),
        published=len(sns_backends[ACCOUNT][REGION].topics[topic_arn].sent_notifications),
        alerts=drain(url, queue + operator),
        on_call=drain(url, queue + on_call),
        dead_letters=drain(url, queue + dead_letter),
        shadows=shadows,
        shadow_versions=versions,
        state_versions=sum(int(item["version"]["N"]) for item in items),
    )


@dataclass
class DemoRun:
    result: subprocess.CompletedProcess[str]
    held: Held
    ingest: str = "direct"

    @property
    def stdout(self) -> str:
        return self.result.stdout


@pytest.fixture(scope="module", params=["direct", "stream"])
def demo(local_aws: str, request: pytest.FixtureRequest) -> DemoRun:
    # Given a local AWS that is already running
    # When a newcomer runs the demo against it on a small fleet, in each ingest mode
    result = telemetry(
        "demo",
        "--devices",
        "4",
        "--duration",
        "2m",
        "--seed",
        "3",
        "--endpoint-url",
        local_aws,
        "--ingest",
        request.param,
    )
    assert result.returncode == 0, result.stderr
    return DemoRun(result, read_back(local_aws, result.stdout), request.param)


@pytest.mark.slow
def test_demo_prints_what_the_local_aws_holds(demo: DemoRun) -> None:
    # Given the demo run and what the local AWS holds afterwards
    out, held = demo.stdout, demo.held

    # Then every reading it says it stored is in Timestream
    assert count(out, "readings stored") == held.readings > 0
    # and what it says it quarantined is in the dead-letter queue, reason by reason
    assert count(out, "items quarantined") == len(held.dead_letters) > 0
    printed = {
        line.split()[0]: int(line.split()[1])
        for line in section(out, "Quarantined, by reason code")[2:]
    }
    assert printed == Counter(item["code"] for item in held.dead_letters)
    # and nothing but the summary is on stdout: no log lines, no tracebacks
    assert not [line for line in out.splitlines() if line.startswith("{")]
    assert "Traceback" not in demo.result.stderr


@pytest.mark.slow
def test_demo_shows_the_alerts_as_the_operator_queue_received_them(demo: DemoRun) -> None:
    # Given the demo run and the operators' queues afterwards
    out, held = demo.stdout, demo.held
    heading = re.search(
        r"^Alerts received by the operator queue \S+: (\d+) \(published: (\d+); "
        r"on-call queue, CRITICAL only: (\d+)\)$",
        out,
        re.MULTILINE,
    )
    assert heading, out

    # Then the counts are the queues' and the topic's
    received, published, on_call = map(int, heading.groups())
    assert received == len(held.alerts) == published == held.published > 0
    assert on_call == len(held.on_call) > 0
    # and the table is the queue, in the order it was received
    assert table_rows(out) == [
        (
            a["deviceId"],
            a["sensorId"],
            a["status"],
            a["severity"],
            f"{a['value']:g}",
            threshold_cell(a),
            a["rule"],
        )
        for a in held.alerts
    ]
    # and the CRITICAL-only subscriber got exactly the changes to or from CRITICAL
    expected = [a for a in held.alerts if "CRITICAL" in (a["severity"], a["previousSeverity"])]
    assert held.on_call == expected


@pytest.mark.slow
def test_demo_injects_the_cases_that_matter(demo: DemoRun) -> None:
    # Given the devices the demo says it scripted
    out = demo.stdout
    verdicts = injected(out)
    cases = {name: where for name, (_, where) in verdicts.items()}
    pump, flapper, late = (
        cases[name] for name in ("overheating pump", "flapping sensor", "late batch")
    )
    # and the demo itself judged every case as expected
    assert {name: ok for name, (ok, _) in verdicts.items()} == dict.fromkeys(verdicts, "ok")
    assert set(verdicts) >= {"spikes", "corrupt messages"}
    rows = table_rows(out)

    def story(device_sensor: tuple[str, ...]) -> list[tuple[str, str]]:
        return [(r[2], r[3]) for r in rows if r[:2] == device_sensor]

    # Then the pump raised, escalated, de-escalated and resolved, once each
    assert story(pump) == [
        ("RAISED", "WARNING"),
        ("ESCALATED", "CRITICAL"),
        ("DEESCALATED", "WARNING"),
        ("RESOLVED", "OK"),
    ]
    # and the flapping sensor made one episode
    assert story(flapper) == [("RAISED", "WARNING"), ("RESOLVED", "OK")]
    # and the late batch was stored but did not resolve the alert newer data raised
    assert story(late) == [("RAISED", "WARNING")]
    if demo.ingest == "direct":
        # (a Kinesis batch may carry the late batch with the newer data it predates:
        # then it is evaluated in event-time order, and is not late)
        assert count(out, "late readings") > 0
    assert demo.held.shadows[late[0]][late[1]]["severity"] == "WARNING"


@pytest.mark.slow
def test_demo_shows_the_shadows_api_calls_and_cost(demo: DemoRun) -> None:
    # Given the demo run and what the local AWS holds afterwards
    out, held = demo.stdout, demo.held

    # Then the shadows it shows are the shadows' active alerts
    shown = {
        (line.split()[0], line.split()[1]): line.split()[2]
        for line in section(out, "Alert state now in the shadows")[2:]
    }
    assert shown == {
        (device, sensor): entry["severity"]
        for device, alerts in held.shadows.items()
        for sensor, entry in alerts.items()
    }
    # and the API calls it counted agree with the versions AWS keeps
    calls = {
        (line.split()[0], line.split()[1]): int(line.split()[2])
        for line in section(out, "API calls made by the function")[2:]
    }
    assert calls[("iot-data", "UpdateThingShadow")] == held.shadow_versions
    assert calls[("dynamodb", "PutItem")] == held.state_versions
    assert calls[("sns", "Publish")] + calls.get(("sns", "PublishBatch"), 0) > 0
    # and the cost per million messages is the sum of its lines
    total = float(re.findall(r"cost per million messages: \$([\d.]+)", out)[0])
    lines = section(out, "Estimated AWS cost per million messages")[2:]
    assert total == pytest.approx(sum(float(line.split()[-1]) for line in lines), abs=0.01)
    assert 0.5 < total < 10


@pytest.mark.slow
def test_demo_shows_operators_acknowledging_and_snoozing(demo: DemoRun) -> None:
    # Given the demo's operators' scene
    lines = section(demo.stdout, "Operators act")
    table = [line.split() for line in lines if line.split() and line.split()[0].isupper()]
    # Then the operator queue got the raise, the acknowledgement by Maria, the second raise,
    # the snooze, and, after it, the one net change the snooze held back (no DEESCALATED)
    assert [row[0] for row in table] == [
        "RAISED",
        "ACKNOWLEDGED",
        "RAISED",
        "SNOOZED",
        "ESCALATED",
    ]
    assert table[1][-1] == "maria@plant.example"
    assert table[4][3:5] == ["CRITICAL", "WARNING"]


@pytest.mark.slow
def test_demo_starts_its_own_local_aws_and_fits_one_device() -> None:
    # Given no local AWS running, and a fleet of one device
    # When the demo runs with its embedded local AWS
    result = telemetry("demo", "--devices", "1", "--duration", "1m", "--seed", "11")

    # Then it succeeds and the scripted cases still play out on that one device
    assert result.returncode == 0, result.stderr
    assert "(started for this run)" in result.stdout
    statuses = [(r[1], r[2]) for r in table_rows(result.stdout)]
    assert ("temp-1", "ESCALATED") in statuses
    assert statuses.count(("temp-2", "RAISED")) == 1


def test_the_fleet_is_the_same_for_the_same_seed() -> None:
    from telemetry.local.fleet import simulate

    # Given two simulations with the same arguments, and one with another seed
    def run(seed: int) -> list[tuple[int, str]]:
        sim = simulate(devices=5, sensors=4, duration_ms=300_000, seed=seed, end_ms=T0)
        return [(d.at_ms, json.dumps(d.event, sort_keys=True)) for d in sim.deliveries]

    # Then the same seed gives the same messages, and another seed others
    assert run(5) == run(5)
    assert run(5) != run(6)


# --- backtest -----------------------------------------------------------------


@pytest.fixture
def worked(tmp_path: Path) -> tuple[Path, Path]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(WORKED_RULE)
    history = tmp_path / "history.jsonl"
    history.write_text("\n".join(messages(WORKED_VALUES)) + "\n")
    return rules, history


def test_backtest_table_shows_the_worked_example(worked: tuple[Path, Path]) -> None:
    # Given the worked example: above 75/90, hysteresis 2
    rules, history = worked

    # When it is backtested
    result = telemetry("backtest", "--rules", str(rules), str(history))

    # Then exactly the four transitions of the example, in event time
    assert result.returncode == 0, result.stderr
    assert [(r[2], r[3], r[4], r[5]) for r in table_rows(result.stdout)] == [
        ("RAISED", "WARNING", "80", "75"),
        ("ESCALATED", "CRITICAL", "95", "90"),
        ("DEESCALATED", "WARNING", "88", "88"),
        ("RESOLVED", "OK", "73", "73"),
    ]
    # and one episode of six minutes for the rule
    summary = section(result.stdout, "Per rule")[2]
    assert summary.split() == ["boiler-temperature", "1", "1", "0", "6m", "0"]


def test_backtest_jsonl_is_the_sns_body_and_nothing_else(worked: tuple[Path, Path]) -> None:
    # Given the worked example
    rules, history = worked

    # When it is backtested as JSON lines
    result = telemetry("backtest", "--rules", str(rules), "--format", "jsonl", str(history))

    # Then stdout is one SNS body per line, nothing else
    assert result.returncode == 0, result.stderr
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [set(a) for a in alerts] == [SNS_BODY_FIELDS] * 4
    assert [(a["status"], a["severity"], a["value"], a["threshold"]) for a in alerts] == [
        ("RAISED", "WARNING", 80, 75),
        ("ESCALATED", "CRITICAL", 95, 90),
        ("DEESCALATED", "WARNING", 88, 88),
        ("RESOLVED", "OK", 73, 73),
    ]
    assert len({a["alertId"] for a in alerts}) == 1
    # and the summary went to stderr
    assert "boiler-temperature" in result.stderr


def test_backtest_reads_stdin_in_event_time_whatever_the_line_order(
    worked: tuple[Path, Path],
) -> None:
    # Given the worked example's lines shuffled, on stdin
    rules, _ = worked
    lines = messages(WORKED_VALUES)
    random.Random(4).shuffle(lines)

    # When it is backtested from `-`
    result = telemetry(
        "backtest", "--rules", str(rules), "--format", "jsonl", "-", stdin="\n".join(lines)
    )

    # Then the transitions are those of the ordered readings
    assert result.returncode == 0, result.stderr
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["value"] for a in alerts] == [80, 95, 88, 73]


def test_backtest_in_arrival_order_lets_late_readings_change_nothing(
    worked: tuple[Path, Path],
) -> None:
    # Given an alert raised and resolved, then a late reading from inside the episode
    rules, _ = worked
    lines = [*messages([70, 80, 72]), *messages([99], step_ms=0)[:1]]
    late = json.loads(lines[-1])
    late["timestamp"] = T0 + 90_000
    lines[-1] = json.dumps(late)

    # When it is backtested as the function would receive it
    result = telemetry(
        "backtest", "--rules", str(rules), "--order", "arrival", "--format", "jsonl", "-",
        stdin="\n".join(lines),
    )  # fmt: skip

    # Then the late reading neither re-raises nor escalates, and is counted as late
    assert [json.loads(x)["status"] for x in result.stdout.splitlines()] == ["RAISED", "RESOLVED"]
    assert "late readings: 1" in result.stderr


def test_backtest_skips_bad_lines_and_says_where(worked: tuple[Path, Path]) -> None:
    # Given a history with a broken line, a blank line and a message that is not an object
    rules, history = worked
    lines = messages(WORKED_VALUES)
    history.write_text("\n".join([lines[0], "{not json", "", *lines[1:], "[1, 2]"]) + "\n")

    # When it is backtested
    result = telemetry("backtest", "--rules", str(rules), "--format", "jsonl", str(history))

    # Then the broken line is reported with its number, and the rest replayed
    assert result.returncode == 0
    assert f"{history}:2: skipped: not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stdout.splitlines()) == 4
    assert "not_an_object 1" in result.stderr


def test_backtest_for_counts_consecutive_readings(tmp_path: Path) -> None:
    # Given warning 7 with `for: 3`, and readings 8, 8, 3, 8, 8, 8
    rules = tmp_path / "for.yaml"
    rules.write_text(
        "rules:\n  - name: level\n    match: {type: temperature}\n"
        "    above: {warning: 7}\n    for: 3\n"
    )

    # When they are backtested
    result = telemetry(
        "backtest", "--rules", str(rules), "--format", "jsonl", "-",
        stdin="\n".join(messages([8, 8, 3, 8, 8, 8])),
    )  # fmt: skip

    # Then one raise, at the sixth reading
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(a["status"], a["time"]) for a in alerts] == [("RAISED", "2025-11-27T10:05:00.000Z")]


def test_backtest_works_out_of_the_box_on_the_sample_history() -> None:
    # Given the shipped rules and sample history
    # When they are backtested
    result = telemetry("backtest", "--rules", str(RULES), str(SAMPLE))

    # Then the pump's episode plays out, and the flapping compressor shows as flaps
    assert result.returncode == 0, result.stderr
    pump = [(r[2], r[3]) for r in table_rows(result.stdout) if r[0] == "pump-17"]
    assert pump == [
        ("RAISED", "WARNING"),
        ("ESCALATED", "CRITICAL"),
        ("DEESCALATED", "WARNING"),
        ("RESOLVED", "OK"),
    ]
    temperature = next(
        line.split() for line in section(result.stdout, "Per rule") if "temperature-high" in line
    )
    assert int(temperature[-1]) > 5


# --- rules --------------------------------------------------------------------


def test_rules_check_accepts_the_shipped_rules() -> None:
    # When the shipped rules are checked
    result = telemetry("rules", "check", str(RULES))

    # Then one OK line with the counts
    assert result.returncode == 0
    assert result.stdout.strip() == f"{RULES}: OK, 8 rules in 1 file"


def test_rules_check_names_file_rule_and_field(tmp_path: Path) -> None:
    # Given a rule file with levels out of order and a negative hysteresis
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n  - name: hot\n    above: {warning: 90, critical: 75}\n"
        "  - name: cold\n    below: {warning: 3}\n    hysteresis: -1\n"
    )

    # When it is checked
    result = telemetry("rules", "check", str(bad))

    # Then it fails with one line per problem, each naming the file, rule and field
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    problems = result.stderr.splitlines()
    order = "levels go below.critical < below.warning < above.warning < above.critical"
    assert problems == [
        f"{bad}: rule 'hot': above.critical: 75 must be greater than above.warning (90); {order}",
        f"{bad}: rule 'cold': hysteresis: must not be negative (got -1)",
    ]


def test_rules_check_takes_several_paths_as_one_set_of_rules(tmp_path: Path) -> None:
    # Given two rule files (as a pre-commit hook passes them), one reusing a name
    first = tmp_path / "a.yaml"
    first.write_text("rules: [{name: hot, above: {warning: 75}}]\n")
    second = tmp_path / "b.yaml"
    second.write_text("rules: [{name: cold, below: {warning: 3}}]\n")
    clash = tmp_path / "c.yaml"
    clash.write_text("rules: [{name: hot, above: {warning: 80}}]\n")

    # When two good ones are checked, then all three
    good = telemetry("rules", "check", str(first), str(second))
    bad = telemetry("rules", "check", str(first), str(second), str(clash))

    # Then the good pair passes with counts that read right, and the clash is named
    assert good.returncode == 0
    assert good.stdout.strip() == "2 paths: OK, 2 rules in 2 files"
    assert bad.returncode == 1
    assert bad.stderr.strip() == (
        f"{clash}: rule 'hot': name: duplicate; already defined in {first}"
    )


def test_one_rule_in_one_file_reads_in_the_singular(tmp_path: Path) -> None:
    # Given a file with one rule
    one = tmp_path / "one.yaml"
    one.write_text("rules: [{name: hot, above: {warning: 75}}]\n")

    # When it is checked, Then the counts read right
    assert telemetry("rules", "check", str(one)).stdout.strip() == f"{one}: OK, 1 rule in 1 file"


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("", "an empty path names no file"),
        ("/dev/null", "/dev/null: not a regular file or a directory"),
        ("no-such.yaml", "no-such.yaml: no such rule file or directory"),
    ],
)
def test_a_path_that_names_no_rule_file_exits_2(path: str, says: str) -> None:
    # When `rules check` is given a path it cannot check
    result = telemetry("rules", "check", path)

    # Then one line says why, and the exit status is 2 (1 is for invalid rules)
    assert_user_error(result, code=2, says=says)


def test_a_directory_without_rule_files_exits_2(tmp_path: Path) -> None:
    # When an empty directory is checked
    result = telemetry("rules", "check", str(tmp_path))

    # Then it is a path problem, not invalid rules
    assert_user_error(result, code=2, says="no *.yaml rule files in this directory")


def test_rules_schema_is_json_schema_of_a_rule_file() -> None:
    # When the schema is asked for
    result = telemetry("rules", "schema")

    # Then it is a JSON Schema with the rule list
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "rules" in schema["properties"]


# --- user errors --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["backtest", "--rules", "rules", "missing.jsonl"], "missing.jsonl: no such file"),
        (["backtest", "--rules", "rules", "rules"], "is a directory"),
        (["backtest", "--rules", "no-such-rules", "x.jsonl"], "no-such-rules: no such rule file"),
        (["rules", "check", "no-such-rules"], "no-such-rules: no such rule file"),
    ],
)
def test_missing_files_give_one_line_and_exit_2(args: list[str], says: str) -> None:
    # When a command is given a file that is not there
    result = telemetry(*args)

    # Then one line says so, and the exit status is 2
    assert_user_error(result, code=2, says=says)
    assert len(result.stderr.splitlines()) == 1


def test_unusable_rules_for_backtest_give_one_line(tmp_path: Path) -> None:
    # Given a rule file that is not even YAML
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: [\n  - name: x\n")

    # When it is used for a backtest
    result = telemetry("backtest", "--rules", str(broken), str(SAMPLE))

    # Then one line names the file and points at `rules check`
    assert_user_error(result, code=2, says=f"invalid rules: {broken}: not valid YAML")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "required"),
        (["frobnicate"], "invalid choice"),
        (["backtest", "--rules", "rules"], "the following arguments are required: FILE"),
        (["backtest", "--rules", "rules", "--format", "xml", "x"], "invalid choice: 'xml'"),
        (["demo", "--devices", "0"], "--devices: 0 is not between 1 and 10000"),
        (["demo", "--duration", "soon"], "--duration: 'soon' is not a duration"),
        (["demo", "--endpoint-url", "ftp://x"], "is not an http(s) URL"),
        (["rules"], "required"),
    ],
)
def test_bad_arguments_give_usage_and_exit_2(args: list[str], says: str) -> None:
    # When the command is misused
    result = telemetry(*args)

    # Then argparse's usage and one error line, exit status 2
    assert_user_error(result, code=2, says=says)


def test_an_unreachable_influxdb_is_named_as_influxdb() -> None:
    # Given nothing listening on port 9
    # When the demo is told to write to an InfluxDB there
    result = telemetry("demo", "--influxdb-url", "http://127.0.0.1:9")

    # Then one line says InfluxDB cannot be reached (not the local AWS)
    assert_user_error(result, code=1, says="cannot reach InfluxDB at http://127.0.0.1:9")
    assert "local AWS" not in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_an_unreachable_local_aws_gives_one_line() -> None:
    # Given nothing listening on port 1
    # When the demo is pointed at it
    result = telemetry("demo", "--endpoint-url", "http://127.0.0.1:1")

    # Then one line says it cannot be reached
    assert_user_error(result, code=1, says="cannot reach a local AWS at http://127.0.0.1:1")
    assert len(result.stderr.splitlines()) == 1


# --- empty input is not an answer ---------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "rules: []\n", "rules: []\ngateways: []\n", "notifications: {maxPerWindow: 5}\n"],
    ids=["empty", "blank", "empty-list", "gateways-only", "notifications-only"],
)
def test_rules_check_refuses_a_file_without_rules(tmp_path: Path, text: str) -> None:
    # Given a rule file that defines no rule
    empty = tmp_path / "empty.yaml"
    empty.write_text(text)

    # When it is checked
    result = telemetry("rules", "check", str(empty))

    # Then it is not OK: one line says there are no rules, and the check fails
    assert_user_error(result, code=1, says=f"{empty}: no rules: the file defines none")
    assert len(result.stderr.splitlines()) == 1


def test_a_file_without_rules_is_fine_beside_one_with_rules(tmp_path: Path) -> None:
    # Given a file of gateways only, checked with a file of rules (one set)
    gateways = tmp_path / "gateways.yaml"
    gateways.write_text("rules: []\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: [{name: hot, above: {warning: 75}}]\n")

    # When both are checked, Then the set has a rule and is OK
    result = telemetry("rules", "check", str(gateways), str(rules))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2 paths: OK, 1 rule in 2 files"


@pytest.mark.parametrize("stdin", [None, "", "\n  \n"], ids=["file", "stdin", "blank-stdin"])
def test_backtest_on_empty_input_is_a_user_error(tmp_path: Path, stdin: str | None) -> None:
    # Given an empty file (or empty standard input)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    source = str(empty) if stdin is None else "-"

    # When it is backtested
    result = telemetry("backtest", "--rules", str(RULES), source, stdin=stdin)

    # Then no report of zeros: one line says there was nothing to replay, exit 2
    shown = str(empty) if stdin is None else "<stdin>"
    assert_user_error(result, code=2, says=f"no message to replay: {shown}: empty")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("indent", [2, None], ids=["pretty", "array-on-one-line-per-item"])
def test_backtest_says_a_json_array_is_not_json_lines(tmp_path: Path, indent: int | None) -> None:
    # Given a JSON array of messages, pretty-printed (or an array with one item a line)
    items = [json.loads(m) for m in messages(WORKED_VALUES)]
    document = tmp_path / "history.json"
    if indent is None:
        document.write_text("[" + ",\n".join(json.dumps(i) for i in items) + "]\n")
    else:
        document.write_text(json.dumps(items, indent=indent))

    # When it is backtested
    result = telemetry("backtest", "--rules", str(RULES), str(document))

    # Then one line says it is not JSON Lines (not one "not valid JSON" per line)
    assert_user_error(result, code=2, says=f"{document}: this is not JSON Lines")
    assert len(result.stderr.splitlines()) == 1


# --- flags that would change nothing ------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["demo", "--influxdb-api", "v2"], "--influxdb-api chooses the write endpoint of"),
        (
            ["demo", "--store", "influxdb", "--influxdb-api", "v3"],
            "--influxdb-api chooses the write endpoint of --influxdb-url",
        ),
        (["demo", "--influxdb-database", "plant"], "--influxdb-database goes with --store"),
        (["demo", "--batch-size", "10"], "--batch-size is the Kinesis batch of --ingest stream"),
        (["demo", "--basic-ingest"], "--basic-ingest needs --mqtt"),
        (["alerts", "list", "--table", "t", "--stack", "s"], "not allowed with argument"),
        (["alerts", "ack", "d", "s", "r", "--stack", "s", "--function", "f"], "not allowed"),
        (["alerts", "list", "--prefix", "plant"], "--prefix names a stack in a local AWS"),
        (
            ["alerts", "list", "--prefix", "p", "--table", "t", "--endpoint-url", "http://h:1"],
            "--prefix names the local stack, as --stack does; --table names its table",
        ),
        (
            ["alerts", "list", "--prefix", "p", "--stack", "s", "--endpoint-url", "http://h:1"],
            "--prefix names the local stack, as --stack does",
        ),
        (
            [
                "alerts",
                "ack",
                "d",
                "s",
                "r",
                "--prefix",
                "p",
                "--function",
                "f",
                "--endpoint-url",
                "http://h:1",
            ],
            "--prefix names a local stack; --function a deployed one",
        ),
    ],
)
def test_a_flag_that_would_change_nothing_is_refused(args: list[str], says: str) -> None:
    # When a flag is given that this combination would silently ignore
    result = telemetry(*args)

    # Then nothing runs: one line says why, exit 2, no traceback
    assert_user_error(result, code=2, says=says)
    assert len([line for line in result.stderr.splitlines() if "error:" in line]) == 1


@pytest.mark.parametrize(
    ("args", "command", "says"),
    [
        (["demo", "--devics", "3"], "telemetry demo", "--devics 3 (did you mean --devices?)"),
        (["backtest", "--rule", "r", "--fromat", "json", "x"], "telemetry backtest", "--format"),
        (["rules", "check", "--strict", "rules"], "telemetry rules check", "--strict"),
        (["alerts", "list", "--sevrity", "CRITICAL"], "telemetry alerts list", "--severity"),
    ],
)
def test_a_mistyped_flag_shows_the_subcommands_usage(
    args: list[str], command: str, says: str
) -> None:
    # When a subcommand is given a flag it does not take
    result = telemetry(*args)

    # Then the subcommand's own usage and error line, naming the flag, exit 2
    assert_user_error(result, code=2, says=says)
    assert result.stderr.startswith(f"usage: {command} ")
    assert f"{command}: error: unrecognized arguments: " in result.stderr


# --- on a terminal: what to show at each width --------------------------------


def rows_with(screen: str, cells: list[str]) -> list[list[str]]:
    """The lines that hold `cells` in that order, and the line under each."""
    lines = screen.splitlines()
    out = []
    for i, line in enumerate(lines):
        words = line.split()
        if words[: len(cells)] == cells or words[1 : len(cells) + 1] == cells:
            out.append([line, lines[i + 1] if i + 1 < len(lines) else ""])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("width", [80, 100])
def test_backtest_on_a_terminal_shows_values_and_thresholds(width: int) -> None:
    # When the sample history is backtested on a terminal of 80 or 100 columns
    screen = on_terminal(width, "backtest", "--rules", str(RULES), str(SAMPLE))

    # Then nothing is cut and no line is wider than the screen
    assert "…" not in screen
    assert all(len(line) <= width for line in screen.splitlines())
    # and the pump's changes show their value and the level crossed, in the row,
    # and their whole rule name, in the row or on the line under it
    found = rows_with(screen, ["pump-17", "temp-1", "RAISED", "WARNING"])
    assert found, screen
    row, under = found[0]
    assert row.split()[5:7] == ["77.6", "75"]
    assert "temperature-high" in row.split() or under.split() == ["rule", "temperature-high"]
    # and the per-rule table keeps its last column whole
    assert "flaps" in screen.split()


@pytest.mark.slow
@pytest.mark.parametrize("width", [80, 100])
def test_the_demo_on_a_terminal_cuts_and_drops_nothing(width: int) -> None:
    # When the demo runs on a terminal of 80 or 100 columns
    screen = on_terminal(
        width, "demo", "--devices", "4", "--duration", "2m", "--seed", "3", "--ingest", "stream"
    )

    # Then nothing is cut and no line is wider than the screen
    assert "…" not in screen
    assert all(len(line) <= width for line in screen.splitlines()), screen
    # and every alert row shows its value and threshold
    alerts = section(screen, "on 2")
    rows = [line.split() for line in alerts[2:] if re.match(r"^\d\d:\d\d:\d\d ", line)]
    assert rows
    assert all(re.fullmatch(r"[\d.]+", row[5]) and re.fullmatch(r"[\d.]+", row[6]) for row in rows)
    # and every cost line its price per unit, in the row or on the line under it
    costs = section(screen, "Estimated AWS cost per million messages")
    starts = [
        i
        for i, line in enumerate(costs)
        if line.startswith(("Lambda", "DynamoDB", "Kinesis", "IoT"))
    ]
    assert len(starts) >= 8
    for first, end in zip(starts, [*starts[1:], len(costs)], strict=True):
        numbers = [w for w in costs[first].split() if re.fullmatch(r"\d+\.\d+", w)]
        below = " ".join(costs[first + 1 : end])
        assert len(numbers) == 3 or re.search(r"USD per unit \d+\.\d+", below), costs[first]
    # and the injected cases' lines wrap under their text, not at the margin
    injected_lines = section(screen, "Injected cases")
    assert all(line.startswith(" ") for line in injected_lines)


@pytest.mark.slow
def test_demo_says_why_the_on_call_queue_holds_what_it_holds(demo: DemoRun) -> None:
    # Given the demo run and its CRITICAL-only queue
    out, held = demo.stdout, demo.held
    reason = re.search(
        r"routes on the worse of severity and previous severity: it gets every change to or "
        r"from CRITICAL \((\d+) to CRITICAL, (\d+) from it\)",
        out,
    )

    # Then the line beside the table says why it holds more than the CRITICAL rows
    assert reason, out
    to, leaving = map(int, reason.groups())
    assert to == sum(1 for a in held.alerts if a["severity"] == "CRITICAL")
    assert to + leaving == len(held.on_call)


@pytest.mark.slow
def test_demo_cost_per_message_shows_meaningful_digits(demo: DemoRun) -> None:
    # Given the demo's cost table
    lines = section(demo.stdout, "Estimated AWS cost per million messages")[2:]

    # Then no item costing something per million shows 0 per message
    for line in lines:
        words = line.split()
        per_message, per_million = float(words[-3]), float(words[-1])
        assert per_million == 0 or words[-3].strip("0.") != "", line
        assert per_million == 0 or per_message > 0, line
    if demo.ingest == "stream":
        kinesis = [line for line in lines if line.startswith("Kinesis")]
        assert kinesis
        assert all(float(line.split()[-3]) > 0 for line in kinesis)


# --- demo --keep: the operators' tools on the demo's stack -------------------


def printed_commands(stdout: str) -> list[list[str]]:
    """The `telemetry alerts` commands the demo printed, as argument lists."""
    import shlex

    return [
        shlex.split(line.strip())[1:]
        for line in stdout.splitlines()
        if line.strip().startswith("telemetry alerts ")
    ]


@pytest.mark.slow
def test_demo_keep_leaves_the_local_aws_up_for_the_alerts_commands_it_prints(
    tmp_path: Path,
) -> None:
    import signal
    import threading

    # Given the demo run with --keep, on its own local AWS (its stderr to a file and
    # its stdout read all along, so that a full pipe never holds it up)
    errors = tmp_path / "stderr"
    with errors.open("w") as stderr_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "telemetry", "demo", "--keep", "--devices", "4",
             "--duration", "2m", "--seed", "3"],
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            text=True,
            cwd=ROOT,
        )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    kept = threading.Event()

    def read(stream: Any) -> None:
        for line in stream:
            lines.append(line)
            if "stays up until you press Ctrl-C" in line:
                kept.set()
        kept.set()

    reader = threading.Thread(target=read, args=(process.stdout,), daemon=True)
    reader.start()
    try:
        kept.wait(timeout=300)
        stdout = "".join(lines)
        assert "stays up until you press Ctrl-C" in stdout, stdout

        # When an operator runs the commands it printed, as printed
        commands = printed_commands(stdout)
        assert [c[:2] for c in commands] == [["alerts", "list"], ["alerts", "ack"],
                                              ["alerts", "snooze"]]  # fmt: skip
        listed = telemetry(*commands[0])
        acked = telemetry(*commands[1])
        snoozed = telemetry(*commands[2])
        # and runs the demo again on that local AWS, with --keep
        url = commands[0][commands[0].index("--endpoint-url") + 1]
        again = telemetry(
            "demo", "--keep", "--devices", "3", "--duration", "2m", "--seed", "5",
            "--endpoint-url", url,
        )  # fmt: skip
        relisted = telemetry(*printed_commands(again.stdout)[0], "--format", "json")
    finally:
        # and stops the demo with Ctrl-C
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
        reader.join(timeout=10)
    stderr = errors.read_text()
    rest = "".join(lines)

    # Then the list shows the alert the demo left active, the actions apply to it
    assert listed.returncode == 0, listed.stderr
    device, sensor, rule = commands[1][2:5]
    assert any(line.split()[:3] == [device, sensor, rule] for line in listed.stdout.splitlines())
    assert acked.returncode == 0, acked.stderr
    assert acked.stdout.startswith(f"acknowledge: applied to {device} {sensor} ({rule})")
    assert snoozed.returncode == 0, snoozed.stderr
    # and Ctrl-C ends the demo cleanly
    assert process.returncode == 0, stderr
    assert "Local AWS stopped." in rest
    assert "Traceback" not in stderr
    # and the second run's commands name its own stack, whose alerts they list
    assert again.returncode == 0, again.stderr
    assert [c[c.index("--stack") + 1] for c in printed_commands(again.stdout)] == [
        "telemetry-2"
    ] * len(printed_commands(again.stdout))
    shown = {
        tuple(line.split()[:2])
        for line in section(again.stdout, "Alert state now in the shadows")[2:]
    }
    assert relisted.returncode == 0, relisted.stderr
    assert {(a["deviceId"], a["sensorId"]) for a in json.loads(relisted.stdout)} == shown


@pytest.mark.slow
def test_the_devices_example_in_the_docs_counts_what_a_run_counts() -> None:
    # Given the `telemetry devices` example of docs/cli.md (its per-device table and
    # its last line, which do not depend on timing)
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    command = "telemetry devices --devices 5 --duration 2m --speed 10"
    example = page[page.index(f"$ {command}\n") :].split("```", 1)[0].splitlines()
    shown = example[example.index("Devices") :]

    # When a user runs it
    result = telemetry(*command.split()[1:])

    # Then the run counts what the page shows
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.rstrip() for line in lines[lines.index("Devices") :]] == [
        line.rstrip() for line in shown
    ]


@pytest.mark.slow
def test_the_docs_say_how_many_late_readings_the_default_stream_run_shows() -> None:
    # Given what docs/cli.md says the default `--ingest stream` run shows
    page = " ".join((ROOT / "docs" / "cli.md").read_text(encoding="utf-8").split())
    said = re.search(r"The default run is the second case \([^)]*\): (\d+) late readings", page)
    assert said, "docs/cli.md no longer says what the default stream run shows"

    # When a user runs it
    result = telemetry("demo", "--ingest", "stream")

    # Then it shows that many, and its late-batch line says why
    assert result.returncode == 0, result.stderr
    assert count(result.stdout, "late readings") == int(said.group(1)) > 0
    assert "buffered readings older than the alert's last decision" in result.stdout
