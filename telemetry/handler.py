"""The Lambda function an AWS IoT Core topic rule invokes.

Thin by design: settings validated once per cold start, clients and adapters
built once and reused, then each invocation is one call into the pipeline,
with logs and metrics on the way out. All decisions live in
`telemetry.pipeline` and `telemetry.core`.

A cold start pays only for what a direct invocation uses: logs and EMF metrics
are `telemetry.observability`'s JSON lines (no Powertools), a stream batch's
partial response is built here, tracing is imported only when it is on, and
the garbage collector waits while the function starts and works
(`telemetry.collector`, imported first for that reason).
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from telemetry import collector
from telemetry.adapters.appconfig import ExtensionEndpoint, LastGoodRules
from telemetry.adapters.aws import make_client
from telemetry.adapters.dead_letter import DeadLetterQueue, json_safe
from telemetry.adapters.fanout import SweepFanOut
from telemetry.adapters.groups import DynamoGroupStore
from telemetry.adapters.influxdb import (
    InfluxRecords,
    InfluxWriter,
    SecretsManagerToken,
    StaticToken,
    TokenSource,
    dialect_for,
    http_pool,
)
from telemetry.adapters.shadow import ShadowMirror
from telemetry.adapters.sns import AlertPublisher
from telemetry.adapters.state_store import DEVICE_SHARDS, DynamoStateStore
from telemetry.adapters.timestream import TimestreamRecords, TimestreamWriter
from telemetry.core.messages import Rejection, iso_utc
from telemetry.core.rules import load_rules
from telemetry.events import (
    direct_messages,
    is_lifecycle_event,
    scheduled_time_ms,
    stream_records,
    stream_source,
    sweep_shard,
    sweep_shard_event,
)
from telemetry.observability import Logger, Metrics
from telemetry.pipeline import (
    DigestsSent,
    Outcome,
    Pipeline,
    RecordFactory,
    RecordWriter,
    event_fingerprint,
)
from telemetry.rules_source import DeployedRules
from telemetry.settings import Settings, environment_variables

logger = Logger(service="telemetry")
metrics = Metrics(service="telemetry")


@dataclass(frozen=True, slots=True)
class Clients:
    """The clients the function uses, built once per cold start. With
    TIMESERIES_STORE=influxdb there is no Timestream client but one HTTP pool
    (`http`), and a Secrets Manager client only when the token is a secret."""

    timestream: Any
    sns: Any
    dynamodb: Any
    iot_data: Any
    sqs: Any
    secretsmanager: Any = None
    http: Any = None

    @classmethod
    def create(cls, settings: Settings) -> Clients:
        endpoint = settings.aws_endpoint_url
        influxdb = settings.timeseries_store == "influxdb"
        # Timestream discovers its endpoint unless one is given: AWS_ENDPOINT_URL
        # alone would not stop discovery from pointing at the real service.
        return cls(
            timestream=None if influxdb else make_client("timestream-write", endpoint_url=endpoint),
            sns=make_client("sns"),
            dynamodb=make_client("dynamodb"),
            iot_data=make_client("iot-data", endpoint_url=settings.iot_data_endpoint),
            sqs=make_client("sqs"),
            secretsmanager=(
                make_client("secretsmanager")
                if influxdb and settings.influxdb_token_secret_arn
                else None
            ),
            http=http_pool() if influxdb else None,
        )


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything an invocation needs, wired from settings and clients.
    `fan_out` starts the sweep's shards in parallel invocations (None: the
    schedule's invocation sweeps them all itself); its Lambda client is made
    on first use, so only a sweep pays for it."""

    settings: Settings
    pipeline: Pipeline
    clock: Callable[[], int]
    fan_out: Callable[[], SweepFanOut] | None = None
    deployed_rules: DeployedRules | None = None
    """RULES_SOURCE=appconfig: the rules deployed to AppConfig, asked before each
    invocation (None: the packaged rules, fixed for the environment's life)."""

    def refresh_rules(self) -> None:
        """Put the newest good deployed version in force, if there is one."""
        if self.deployed_rules is not None:
            self.pipeline.use_rules(self.deployed_rules.current(self.clock()))


def build_runtime(
    settings: Settings,
    clients: Clients | None = None,
    clock: Callable[[], int] | None = None,
) -> Runtime:
    with collector.paused(built=True):
        return _build_runtime(settings, clients, clock)


def _build_runtime(
    settings: Settings, clients: Clients | None, clock: Callable[[], int] | None
) -> Runtime:
    clients = clients or Clients.create(settings)
    clock = clock or (lambda: time.time_ns() // 1_000_000)
    timeseries, records = timeseries_store(settings, clients)
    store = DynamoStateStore(settings.state_table, clients.dynamodb)
    if metrics.namespace is None:
        metrics.namespace = settings.metrics_namespace
    deployed = deployed_rules(settings, clients) if settings.rules_source == "appconfig" else None
    rules = (
        load_rules(settings.resolved_rules_path) if deployed is None else deployed.current(clock())
    )
    pipeline = Pipeline(
        rules=rules,
        store=store,
        timeseries=timeseries,
        records=records,
        publisher=AlertPublisher(settings.alerts_topic_arn, clients.sns),
        mirror=ShadowMirror(settings.shadow_name, clients.iot_data),
        quarantine=DeadLetterQueue(settings.dead_letter_queue_url, clients.sqs),
        groups=DynamoGroupStore(settings.state_table, clients.dynamodb, store),
    )
    if settings.log_level:
        logger.set_level(settings.log_level)
    if settings.tracing:
        from aws_lambda_powertools import Tracer  # noqa: PLC0415 - ~0.5 s: only when on

        Tracer(service=settings.service_name)  # patches botocore: a subsegment per AWS call
    fan_out = None
    if settings.fans_out:
        name = str(settings.function_name)
        fan_out = functools.cache(lambda: SweepFanOut(name, make_client("lambda")))
    return Runtime(settings, pipeline, clock, fan_out, deployed)


def deployed_rules(settings: Settings, clients: Clients, http: Any = None) -> DeployedRules:
    """The rules deployed to AppConfig, read through the extension, the last good
    version kept in the state table."""
    profile = (
        f"{settings.appconfig_application}/{settings.appconfig_environment}/"
        f"{settings.appconfig_profile}"
    )
    return DeployedRules(
        ExtensionEndpoint(settings.appconfig_url, http),
        LastGoodRules(settings.state_table, clients.dynamodb, profile),
        poll_ms=settings.rules_poll_seconds * 1000,
        logger=logger,
        on_rejected=lambda count: metrics.add_metric("RulesRejected", count),
    )


def timeseries_store(settings: Settings, clients: Clients) -> tuple[RecordWriter, RecordFactory]:
    """The writer and record factory of the configured store."""
    if settings.timeseries_store == "timestream":
        writer = TimestreamWriter(
            str(settings.timestream_db), str(settings.timestream_table), clients.timestream
        )
        return writer, TimestreamRecords()
    token: TokenSource
    if settings.influxdb_token_secret_arn:
        token = SecretsManagerToken(settings.influxdb_token_secret_arn, clients.secretsmanager)
    else:
        secret = settings.influxdb_token
        token = StaticToken(secret.get_secret_value() if secret else None)
    influx = InfluxWriter(
        url=str(settings.influxdb_url),
        api=settings.influxdb_api,
        database=str(settings.influxdb_database),
        org=settings.influxdb_org,
        token=token,
        http=clients.http,
    )
    return influx, InfluxRecords(dialect_for(settings.influxdb_api))


_SETTING_NAMES = tuple(environment_variables())
_runtime: tuple[tuple[str | None, ...], Runtime] | None = None


def runtime() -> Runtime:
    """The execution environment's runtime, built on first use from the
    environment. In Lambda the environment never changes, so this is once per
    cold start; a process whose settings change (tests, local runs) gets a
    runtime that matches them instead of a stale one."""
    global _runtime  # noqa: PLW0603 - one runtime per execution environment
    key = tuple(os.environ.get(name) for name in _SETTING_NAMES)
    if _runtime is None or _runtime[0] != key:
        _runtime = (key, build_runtime(Settings.from_env(os.environ)))
    return _runtime[1]


def reset_runtime() -> None:
    """Forget the cached runtime (a new cold start): for local runs and tests."""
    global _runtime  # noqa: PLW0603
    _runtime = None


def report(outcome: Outcome) -> None:
    """One log line per rejected item and per transition; EMF metrics."""
    for item in outcome.rejections:
        logger.warning(
            "quarantined",
            extra={k: item.get(k) for k in ("reason", "code", "field", "deviceId", "source")},
        )
    for reading, reason in outcome.not_evaluated:
        logger.warning(
            "stored, not evaluated",
            extra={"deviceId": reading.device_id, "sensorId": reading.sensor_id, "reason": reason},
        )
    for transition in outcome.transitions:
        logger.info("alert transition", extra={"transition": transition.to_json()})
    skipped = [d for d in outcome.devices if d.shadow == "not_a_thing"]
    for device in skipped:
        logger.warning(
            "shadow mirror skipped",
            extra={"deviceId": device.device_id, "reason": "not a registered thing"},
        )
    failed = [d for d in outcome.devices if d.shadow_failure is not None]
    for device in failed:
        code, retryable = device.shadow_failure or ("Unknown", True)
        logger.warning(
            "shadow mirror update failed; it is rewritten whole by a later invocation "
            "(the device's next one, or the sweep after a minute if retrying may mend it)",
            extra={"deviceId": device.device_id, "reason": code, "retryable": retryable},
        )
    for device in outcome.devices:
        if device.shadow_omitted:
            logger.warning(
                "shadow mirror full: the least severe alerts are left out",
                extra={"deviceId": device.device_id, "omitted": device.shadow_omitted},
            )
    for name, value in event_counts(outcome, skipped=len(skipped)).items():
        if value:
            metrics.add_metric(name, value)
    outcomes = _OUTCOME_SINK.get()
    if outcomes is not None:
        outcomes.append(outcome)


def event_counts(outcome: Outcome, *, skipped: int) -> dict[str, int]:
    """The invocation's counts of what Lambda's own metrics do not say, each printed
    only when it happened: rejections, late and unevaluated readings, refusals,
    transitions, sweeps. Messages received are Lambda's Invocations (Direct) or the
    stream's IncomingRecords, and readings stored are the store's to count: an EMF
    line on every invocation would cost as much as the state read (CloudWatch Logs
    ingestion, benchmarks/bench_cost.py). Records a store refused and alerts SNS
    refused have their own counts."""
    return {
        "DevicesSwept": outcome.swept,
        "ReadingsRejected": sum(1 for r in outcome.rejections if r["source"] == "validation"),
        "TimestreamRecordsRejected": outcome.records_rejected,
        "ReadingsNotEvaluated": len(outcome.not_evaluated),
        "LateReadings": outcome.late,
        "ShadowSkipped": skipped,
        "AlertsDeadLettered": sum(d.dead_lettered for d in outcome.devices),
        "AlertsHeld": outcome.held,
        "Transitions": len(outcome.transitions),
    }


_OUTCOME_SINK: ContextVar[list[Outcome] | None] = ContextVar("outcome_sink", default=None)


@contextmanager
def observed() -> Iterator[list[Outcome]]:
    """Collect the Outcome of every invocation handled inside the block: what a
    local run reads instead of logs and metrics (a stream batch's response
    carries only its failed records)."""
    sink: list[Outcome] = []
    token = _OUTCOME_SINK.set(sink)
    try:
        yield sink
    finally:
        _OUTCOME_SINK.reset(token)


def emit_metrics(outcomes: list[Outcome]) -> None:
    """One EMF block per (status, severity) of transitions, and per kind of
    shadow mirror failure: dimensions a dashboard or an alarm can use. Only
    the Lambda entry point emits them, so local runs print nothing."""
    by_kind = Counter(
        (t.status.value, t.routing_severity.name) for o in outcomes for t in o.transitions
    )
    for (status, severity), value in sorted(by_kind.items()):
        metrics.emit("Transitions", value, {"status": status, "severity": severity})
    failures = Counter(
        str(d.shadow_failure[1]).lower()
        for o in outcomes
        for d in o.devices
        if d.shadow_failure is not None
    )
    for retryable, value in sorted(failures.items()):
        # Retryable=false will not heal by itself: the template alarms on it.
        metrics.emit("ShadowMirrorFailures", value, {"Retryable": retryable})


def _summary(outcome: Outcome) -> dict[str, Any]:
    return {
        "messages": outcome.messages,
        "readingsStored": outcome.readings_stored,
        "rejected": len(outcome.rejections),
        "late": outcome.late,
        "notEvaluated": len(outcome.not_evaluated),
        "transitions": [t.to_json() for t in outcome.transitions],
    }


def deadline_ms(context: Any, now_ms: int) -> int | None:
    """When Lambda will stop this invocation (epoch ms), if the context says."""
    remaining = time_left(context)
    if remaining is None:
        return None
    return now_ms + int(remaining())


def time_left(context: Any) -> Callable[[], int] | None:
    """How many milliseconds the invocation has left, asked afresh at each call
    (the context's get_remaining_time_in_millis), if the context says."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return remaining if callable(remaining) else None


def request_id(context: Any) -> str | None:
    """The Lambda request id, if the context says: the invocation's id for its
    outbox claims. Lambda retries an asynchronous invocation with the same id
    (never while the first attempt runs), so a retry delivers at once what its
    earlier attempt claimed, even when that attempt could not release its claims
    (a commit whose answer was lost). A duplicate delivery has its own id."""
    value = getattr(context, "aws_request_id", None)
    return str(value) if value else None


def _process(
    rt: Runtime,
    messages: list[Any],
    rejected: Sequence[Rejection] = (),
    owner: str | None = None,
    context: Any = None,
    now_ms: int | None = None,
) -> Outcome:
    """Run the pipeline and report what it did. A failure of the whole call is
    logged and raised; a device's failure is logged and left in the outcome."""
    now_ms = rt.clock() if now_ms is None else now_ms
    try:
        outcome = rt.pipeline.process(
            messages,
            now_ms,
            rejected=rejected,
            owner=owner,
            deadline_ms=deadline_ms(context, now_ms),
            invocation_id=request_id(context),
            time_left_ms=time_left(context),
        )
    except Exception:
        logger.exception("invocation failed; Lambda will retry it")
        raise
    report(outcome)
    for device_id, error in outcome.failures:
        logger.error(
            "device failed; Lambda will retry its messages",
            extra={"deviceId": device_id, "error": str(error)},
        )
    return outcome


def handle(event: Any, rt: Runtime, context: Any = None) -> dict[str, Any]:
    """One invocation against a given runtime. Returns a summary; raises (so
    that Lambda retries) on anything but bad input."""
    invocation_id = request_id(context)
    if invocation_id:
        logger.append_keys(request_id=invocation_id)
    rt.refresh_rules()
    with collector.paused():
        scheduled = scheduled_time_ms(event)
        if scheduled is not None:
            if rt.fan_out is not None:
                return fan_out_sweep(scheduled, rt, rt.fan_out(), context)
            return handle_sweep(scheduled, rt, context)
        shard = sweep_shard(event)
        if shard is not None:
            return handle_sweep(shard[1], rt, context, shards=(shard[0],))
        source = stream_source(event)
        if source is not None:
            return handle_batch(event, source, rt, context)
        if is_lifecycle_event(event):
            return handle_connectivity(event, rt, context)
        messages = direct_messages(event)
        outcome = _process(rt, messages, owner=_owner(messages), context=context)
        outcome.raise_failure()
        return _summary(outcome)


def _owner(messages: list[Any]) -> str:
    """The outbox owner of a direct event: its fingerprint, which a retry or a
    duplicate delivery shares. A hostile event too deep or too long for JSON
    text to hold is fingerprinted as the dead-letter queue would keep it."""
    try:
        return event_fingerprint(messages)
    except (RecursionError, ValueError):
        return event_fingerprint(json_safe(messages)[0])


def fan_out_sweep(
    scheduled_ms: int, rt: Runtime, fan_out: SweepFanOut, context: Any = None
) -> dict[str, Any]:
    """The schedule's invocation when the sweep runs in parallel: one invocation
    per shard of the due index, each judging as of the schedule's time; then the
    notification groups' due digests, sent from here. A failure to start any
    shard, or to send a digest, raises, so that the schedule's invocation is
    retried (a shard swept twice decides the same; a digest goes once)."""
    now_ms = rt.clock()
    as_of = min(scheduled_ms, now_ms)
    try:
        started = fan_out.start(sweep_shard_event(shard, as_of) for shard in DEVICE_SHARDS)
        digests = rt.pipeline.send_digests(
            as_of, deadline_ms=deadline_ms(context, now_ms), invocation_id=request_id(context)
        )
    except Exception:
        logger.exception("sweep fan-out failed; Lambda will retry it")
        raise
    metrics.add_metric("SweepShardsStarted", started)
    report_digests(digests)
    if digests.failures:
        raise digests.failures[0][1]
    return {"asOf": iso_utc(as_of), "shardsStarted": started, "digests": len(digests.sent)}


def handle_sweep(
    scheduled_ms: int,
    rt: Runtime,
    context: Any = None,
    shards: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The scheduled sweep of `shards` (all: None), judged as of the schedule's
    time (never later than the function's own clock), so that a late or retried
    sweep decides the same; it takes devices while its invocation has time."""
    now_ms = rt.clock()
    as_of = min(scheduled_ms, now_ms)
    try:
        outcome = rt.pipeline.sweep(
            as_of,
            shards=shards,
            deadline_ms=deadline_ms(context, now_ms),
            invocation_id=request_id(context),
            time_left_ms=time_left(context),
        )
        # Digests go once a sweep: here when one invocation sweeps everything; by
        # the schedule's own invocation when the shards are swept in parallel.
        digests = (
            rt.pipeline.send_digests(
                as_of,
                deadline_ms=deadline_ms(context, now_ms),
                invocation_id=request_id(context),
            )
            if shards is None
            else DigestsSent()
        )
    except Exception:
        logger.exception("sweep failed; Lambda will retry it")
        raise
    report(outcome)
    report_digests(digests)
    for device_id, error in outcome.failures:
        logger.error(
            "device failed in the sweep; the next sweep retries it",
            extra={"deviceId": device_id, "error": str(error)},
        )
    outcome.raise_failure()
    if digests.failures:
        raise digests.failures[0][1]
    return {
        "swept": outcome.swept,
        "asOf": iso_utc(as_of),
        **_summary(outcome),
        "digests": len(digests.sent),
    }


def report_digests(digests: DigestsSent) -> None:
    """One log line per digest sent and per group that failed; their counts."""
    for message in digests.sent:
        body = {k: v for k, v in message.to_json().items() if k != "alerts"}
        logger.info("digest sent", extra={"digest": body})
    for group, error in digests.failures:
        logger.error(
            "digest failed; the next sweep retries it", extra={"group": group, "error": str(error)}
        )
    if digests.sent:
        metrics.add_metric("DigestsSent", len(digests.sent))
    if digests.dead_lettered:
        metrics.add_metric("DigestsDeadLettered", digests.dead_lettered)


def handle_connectivity(event: dict[str, Any], rt: Runtime, context: Any = None) -> dict[str, Any]:
    """One IoT Core lifecycle event (the connectivity rule): the device's
    connection, its offline alerts. A malformed event is quarantined; a device
    failure raises so that Lambda retries (a duplicate changes nothing)."""
    now_ms = rt.clock()
    try:
        outcome = rt.pipeline.connectivity(
            event,
            now_ms,
            deadline_ms=deadline_ms(context, now_ms),
            invocation_id=request_id(context),
            time_left_ms=time_left(context),
        )
    except Exception:
        logger.exception("lifecycle event failed; Lambda will retry it")
        raise
    report(outcome)
    for device_id, error in outcome.failures:
        logger.error(
            "device failed on its lifecycle event; Lambda will retry it",
            extra={"deviceId": device_id, "error": str(error)},
        )
    outcome.raise_failure()
    return _summary(outcome)


def handle_batch(event: dict[str, Any], source: str, rt: Runtime, context: Any) -> dict[str, Any]:
    """A Kinesis or SQS batch, with a partial batch response.

    Messages are grouped per device and evaluated in event-time order; a device
    whose handling failed transiently reports its records (so Lambda retries
    them; for Kinesis, from the earliest such sequence number on), never the
    other devices'. Records that cannot be decoded are quarantined, not failed.
    """
    now_ms = rt.clock()
    records = stream_records(event, now_ms)
    messages = [r.message for r in records if r.message is not None]
    bad = [r.rejection for r in records if r.rejection is not None]
    owner = hashlib.sha256("\n".join(r.record_id for r in records).encode()).hexdigest()
    outcome = _process(rt, messages, rejected=bad, owner=owner[:24], context=context, now_ms=now_ms)
    failed_devices = {device_id for device_id, _ in outcome.failures}
    # Every failed record, in batch order: for Kinesis, Lambda resumes the
    # shard from the lowest sequence number reported.
    failures = [{"itemIdentifier": r.record_id} for r in records if r.device_id in failed_devices]
    return {"batchItemFailures": failures}


@metrics.log_metrics
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """The function's entry point (`telemetry.handler.lambda_handler`)."""
    with observed() as outcomes:
        try:
            return handle(event, runtime(), context)
        finally:
            emit_metrics(outcomes)


collector.imported()
