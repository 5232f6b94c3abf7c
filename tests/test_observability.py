"""The log and metric lines CloudWatch reads, and when the collector runs."""

from __future__ import annotations

import gc
import io
import json
import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dashboards import build
from telemetry import collector, handler  # the handler ends the collector's import pause
from telemetry.events import stream_records
from telemetry.observability import Logger, Metrics
from telemetry.pipeline import Outcome
from tests.iam import load_template
from tests.localaws import local_stack, message

ROOT = Path(__file__).resolve().parent.parent


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_a_log_line_is_one_json_object_with_its_extras_and_keys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the function's logger with a request id appended
    log = Logger("telemetry-test-a")
    log.append_keys(request_id="r-1")

    # When it logs at each level, an exception included
    log.debug("hidden")
    log.info("stored", extra={"deviceId": "pump-17"})
    log.set_level("debug")
    log.debug("shown")
    try:
        int("boom")
    except ValueError:
        log.exception("failed")
    log.error("bad", extra={"reason": "x"})

    # Then each is one JSON line with level, location, message, service and extras
    out = lines(capsys.readouterr().out)
    assert [x["message"] for x in out] == ["stored", "shown", "failed", "bad"]
    assert out[0]["deviceId"] == "pump-17"
    assert out[0]["request_id"] == "r-1"
    assert out[0]["service"] == "telemetry-test-a"
    assert str(out[0]["location"]).startswith("test_a_log_line_is_one_json_object")
    assert out[2]["exception_name"] == "ValueError"
    assert "boom" in str(out[2]["exception"])
    assert str(out[0]["timestamp"]).endswith("Z")


def test_handlers_the_root_logger_had_before_do_not_print_our_lines_twice() -> None:
    # Given a root handler installed first (as the Lambda runtime does)
    stream = io.StringIO()
    root_handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(root_handler)
    try:
        log = Logger("telemetry-test-b")

        # When the function logs, and another library logs
        log.warning("ours")
        logging.getLogger("botocore.test").warning("theirs")
    finally:
        logging.getLogger().removeHandler(root_handler)

    # Then the root handler printed only the other library's line
    assert stream.getvalue().splitlines() == ["theirs"]


def test_metrics_flush_as_one_emf_object_and_dimensioned_metrics_at_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given metrics of an invocation, and a handler decorated to flush them
    metrics = Metrics("telemetry", namespace="NS")

    @metrics.log_metrics
    def entry() -> None:
        metrics.add_metric("MessagesReceived", 2)
        metrics.add_metric("MessagesReceived", 1)
        metrics.emit("Transitions", 3, {"status": "RAISED", "severity": "CRITICAL"})
        raise RuntimeError("the invocation fails")

    # When the invocation fails
    with pytest.raises(RuntimeError):
        entry()
    metrics.flush()  # nothing left: prints nothing

    # Then the dimensioned metric came at once and the counts were flushed anyway
    transitions, counts = lines(capsys.readouterr().out)
    assert transitions["Transitions"] == [3.0]
    assert transitions["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [  # type: ignore[index]
        ["service", "status", "severity"]
    ]
    assert counts["MessagesReceived"] == [2.0, 1.0]
    assert counts["service"] == "telemetry"


def test_malformed_stream_records_become_rejections() -> None:
    # Given a batch of records that are not what Lambda sends
    event = {
        "Records": [
            "not a record",
            {"eventSource": "aws:sqs", "messageId": "m-1", "body": None},
            {"eventSource": "aws:kinesis", "kinesis": {"partitionKey": "p", "data": 17}},
        ]
    }

    # When they are decoded, Then each is a rejection naming what is wrong
    records = stream_records(event, 0)
    assert [(r.rejection.field, r.rejection.code) for r in records if r.rejection] == [
        ("$", "malformed_record"),
        ("body", "not_json"),
        ("kinesis.data", "not_base64"),
    ]


def test_the_collector_runs_between_invocations_and_is_restored_after_a_pause() -> None:
    # Given the collector on, as the handler's import left it
    assert handler.collector is collector
    assert gc.isenabled()

    # When code runs paused, even failing
    def fails_paused() -> None:
        with collector.paused():
            assert not gc.isenabled()
            {}["missing"]  # a KeyError

    with pytest.raises(KeyError):
        fails_paused()

    # Then it is on again; a pause inside a pause leaves the outer one in force
    assert gc.isenabled()
    with collector.paused():
        with collector.paused():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()


def test_importing_the_handler_leaves_the_collector_as_it_found_it() -> None:
    # Given fresh processes, one with the collector on and one with it off
    script = "import gc, sys; {}; import telemetry.handler; print(gc.isenabled())"
    for setup, expected in (("pass", "True"), ("gc.disable()", "False")):
        # When each imports the handler
        done = subprocess.run(
            [sys.executable, "-c", script.format(setup)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        # Then the collector is as before the import
        assert done.stdout.strip() == expected


# ---------------------------------------------------------------- what a metric costs


class _Context:
    aws_request_id = "req-quiet"


def _emf(text: str) -> list[dict[str, object]]:
    return [x for x in lines(text) if "_aws" in x]


def test_a_quiet_direct_invocation_prints_no_metric_and_a_rejection_prints_its_count(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the function's environment on a local stack, and two direct messages: a
    # quiet one (readings stored, nothing else), and one with a reading to quarantine
    now = int(time.time() * 1000)
    with local_stack(["pump-17"], now) as aws:
        for key, value in aws.stack.environment().items():
            monkeypatch.setenv(key, value)
        handler.reset_runtime()
        handler.metrics.clear_metrics()
        capsys.readouterr()
        quiet = message("pump-17", now, ("temp-1", 20.0))
        bad = message("pump-17", now + 1, ("temp-1", 21.0))
        bad["data"].append({"sensorId": "s-1", "value": "high"})

        # When the entry point handles each
        try:
            handler.lambda_handler(quiet, _Context())
            quiet_out = capsys.readouterr().out
            handler.lambda_handler(bad, _Context())
            bad_out = capsys.readouterr().out
        finally:
            handler.reset_runtime()

    # Then the quiet one prints nothing at all: Lambda's Invocations already count it,
    # and every EMF line is billed as logs
    assert quiet_out == ""
    # and the rejection prints one EMF object with its count, and no count of what
    # happens on every invocation
    [counts] = _emf(bad_out)
    assert counts["ReadingsRejected"] == [1.0]
    assert not {"MessagesReceived", "ReadingsStored"} & set(counts)


def _function_metrics_read_by_operators() -> set[str]:
    """IoTTelemetry metrics the template's alarms and the dashboards' CloudWatch
    panels name."""
    template = load_template()
    names = {
        resource["Properties"]["MetricName"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        and resource["Properties"].get("Namespace") == "IoTTelemetry"
    }
    for store in build.OUTPUTS:
        document = build.OUTPUTS[store].read_text(encoding="utf-8")
        names |= set(re.findall(r'"metricName":\s*"(\w+)"', document))
    return names


def _metrics_the_function_prints() -> set[str]:
    source = (ROOT / "telemetry" / "handler.py").read_text(encoding="utf-8")
    named = set(re.findall(r'metrics\.(?:add_metric|emit)\(\s*"(\w+)"', source))
    return named | set(handler.event_counts(Outcome(), skipped=0))


def test_alarms_and_dashboards_read_only_metrics_the_function_prints() -> None:
    # Given the metrics operators read (alarms, dashboards) and those the function prints
    read = _function_metrics_read_by_operators()
    printed = _metrics_the_function_prints()
    # Then each one read is printed, when it happens
    assert read
    assert read <= printed, read - printed
    # and none is one the function stopped printing on every invocation
    assert not {"MessagesReceived", "ReadingsStored"} & (read | printed)
