"""The template's telemetry topic rule, run locally: SQL, action and error action.

Everything comes from template.yaml, rendered for the stack: the rule's name,
SQL and SQL version (telemetry.local.iot_sql evaluates them), its action (the
Lambda action in Direct mode, the Kinesis action in Stream mode, chosen by the
template's own condition) and its error action (SQS, the dead-letter queue).
What happens after the action is also the template's:

- Lambda action: the function is invoked asynchronously (AWS IoT developer
  guide, lambda-rule-action.html). As Lambda does with asynchronous
  invocations, an invocation that raises is retried MaximumRetryAttempts
  times (TelemetryFunctionAsyncConfig: 2) and then sent, as Lambda's
  invocation record, to the OnFailure destination (the dead-letter queue).
  AWS waits about 1 and 2 minutes between attempts; here `retry_delays_s`.
  Lambda promises no order between asynchronous invocations; locally each
  device's messages run in the order the broker received them (one worker per
  device hash), so a demo's story reads in order. The function does not rely
  on it: late and out-of-order readings are tested on their own.
- Kinesis action: the record goes to the local stream (moto's Kinesis) with
  the PartitionKey substitution template; `StreamPoller` is the event source
  mapping (TelemetryStreamMapping: batch size, batching window, retries,
  bisect on error, partial batch responses, OnFailure destination).
- Error action: when an action fails (the Lambda action cannot take a
  payload that is not JSON; a Kinesis put fails), IoT Core's error message
  (ruleName, topic, clientId, base64OriginalPayload, failures) goes to SQS
  (rule-error-handling.html). Errors inside the function never reach it.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from telemetry.local.broker import IncomingMessage
from telemetry.local.iot_sql import (
    BinaryOutput,
    MessageContext,
    RuleQuery,
    SubstitutionTemplate,
    parse_rule_sql,
    parse_substitution,
)
from telemetry.local.stack_template import StackTemplate, TemplateError
from telemetry.local.streams import kinesis_event, sequence_number

log = logging.getLogger(__name__)

DEFAULT_RETRY_DELAYS_S: Final = (0.05, 0.1)
"""Locally, instead of Lambda's ~1 and ~2 minutes between attempts."""
_STOP: Final = object()

Invoke = Callable[[Any], Any]
"""Runs the function on an event; raises as the function does."""


class ErrorSink(Protocol):
    def send(self, message: IncomingMessage, action: str, resource: str, error: str) -> None: ...


@dataclass(slots=True)
class RuleCounters:
    received: int = 0
    filtered_out: int = 0
    actions: int = 0
    action_errors: int = 0
    invocations: int = 0
    retries: int = 0
    failed_invocations: int = 0


class SqsErrorAction:
    """The rule's error action: IoT Core's error message, to an SQS queue."""

    def __init__(self, rule_name: str, queue_url: str, sqs: Any, *, base64_body: bool) -> None:
        self.rule_name = rule_name
        self.queue_url = queue_url
        self._sqs = sqs
        self._base64 = base64_body
        self.sent: list[dict[str, Any]] = []

    def send(self, message: IncomingMessage, action: str, resource: str, error: str) -> None:
        body = {
            "ruleName": self.rule_name,
            "topic": message.published_topic,
            "cloudwatchTraceId": str(uuid.uuid4()),
            "clientId": message.client_id,
            "base64OriginalPayload": base64.b64encode(message.payload).decode(),
            "failures": [
                {"failedAction": action, "failedResource": resource, "errorMessage": error}
            ],
        }
        text = json.dumps(body)
        if self._base64:
            text = base64.b64encode(text.encode()).decode()
        self._sqs.send_message(QueueUrl=self.queue_url, MessageBody=text)
        self.sent.append(body)


@dataclass(slots=True)
class _Invocation:
    event: Any
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    attempts: int = 0


class AsyncInvoker:
    """Lambda's asynchronous invocation of one function: a queue per worker,
    retries, then the OnFailure destination (Lambda's invocation record)."""

    def __init__(
        self,
        invoke: Invoke,
        *,
        function_arn: str,
        max_retries: int,
        on_failure: Callable[[dict[str, Any]], None] | None,
        concurrency: int = 1,
        retry_delays_s: Sequence[float] = DEFAULT_RETRY_DELAYS_S,
        counters: RuleCounters | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._invoke = invoke
        self.function_arn = function_arn
        self.max_retries = max_retries
        self._on_failure = on_failure
        self._delays = tuple(retry_delays_s) or (0.0,)
        self.counters = counters or RuleCounters()
        self._queues: list[queue.Queue[Any]] = [queue.Queue() for _ in range(concurrency)]
        self._threads = [
            threading.Thread(target=self._work, args=(q,), name=f"lambda-async-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, event: Any, key: str) -> None:
        """Queue an asynchronous invocation; `key` keeps one device's order."""
        index = zlib.crc32(key.encode()) % len(self._queues)
        self._queues[index].put(_Invocation(event))

    def _work(self, work: queue.Queue[Any]) -> None:
        while True:
            item = work.get()
            try:
                if item is _STOP:
                    return
                self._run(item)
            finally:
                work.task_done()

    def _run(self, invocation: _Invocation) -> None:
        while True:
            invocation.attempts += 1
            self.counters.invocations += 1
            try:
                self._invoke(invocation.event)
            except Exception as exc:  # noqa: BLE001 - Lambda retries whatever the function raised
                if invocation.attempts <= self.max_retries:
                    self.counters.retries += 1
                    delay = self._delays[min(invocation.attempts - 1, len(self._delays) - 1)]
                    time.sleep(delay)
                    continue
                self.counters.failed_invocations += 1
                self._fail(invocation, exc)
            return

    def _fail(self, invocation: _Invocation, error: Exception) -> None:
        record = {
            "version": "1.0",
            "timestamp": _iso_now(),
            "requestContext": {
                "requestId": invocation.request_id,
                "functionArn": f"{self.function_arn}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": invocation.attempts,
            },
            "requestPayload": invocation.event,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "responsePayload": {"errorMessage": str(error), "errorType": type(error).__name__},
        }
        if self._on_failure is not None:
            self._on_failure(record)

    def drain(self, timeout_s: float) -> None:
        """Wait until every queued invocation has finished (retries included)."""
        deadline = time.monotonic() + timeout_s
        for work in self._queues:
            while work.unfinished_tasks:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"invocations still running after {timeout_s:.0f} s")
                time.sleep(0.005)

    def close(self) -> None:
        for work in self._queues:
            work.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=10)


class LambdaAction:
    name = "LambdaAction"

    def __init__(self, function_arn: str, invoker: AsyncInvoker) -> None:
        self.resource = function_arn
        self.invoker = invoker

    def perform(self, output: dict[str, Any] | BinaryOutput, message: IncomingMessage) -> None:
        if isinstance(output, BinaryOutput):
            raise ActionError(
                "the Lambda action takes a JSON object; this payload is not one "
                "(decode binary payloads in the rule's SQL)"
            )
        key = output.get("deviceId")
        self.invoker.submit(output, key if isinstance(key, str) else message.topic)


class KinesisAction:
    name = "KinesisAction"

    def __init__(self, stream_name: str, partition_key: SubstitutionTemplate, kinesis: Any) -> None:
        self.resource = stream_name
        self.partition_key = partition_key
        self._kinesis = kinesis

    def perform(self, output: dict[str, Any] | BinaryOutput, message: IncomingMessage) -> None:
        data = output.payload if isinstance(output, BinaryOutput) else json.dumps(output).encode()
        context = MessageContext(message.topic, message.payload, message.client_id, 0)
        key = self.partition_key.render(context) or "unknown"
        try:
            self._kinesis.put_record(StreamName=self.resource, Data=data, PartitionKey=key)
        except Exception as exc:
            raise ActionError(f"Kinesis PutRecord failed: {exc}") from exc


class ActionError(RuntimeError):
    """The rule's action could not be performed: the error action's business."""


class RuleAction(Protocol):
    name: str
    resource: str

    def perform(self, output: dict[str, Any] | BinaryOutput, message: IncomingMessage) -> None: ...


Tap = Callable[[IncomingMessage, "dict[str, Any] | BinaryOutput"], None]


class LocalTopicRule:
    """The rules engine for one rule: evaluation and actions in its own thread,
    so the broker's loop never waits on AWS calls."""

    def __init__(
        self,
        name: str,
        query: RuleQuery,
        action: RuleAction,
        error_action: ErrorSink | None,
        *,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        counters: RuleCounters | None = None,
    ) -> None:
        self.name = name
        self.query = query
        self.action = action
        self.error_action = error_action
        self.counters = counters or RuleCounters()
        self.taps: list[Tap] = []
        self._clock = clock
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name=f"rule-{name}", daemon=True)
        self._thread.start()

    def matches(self, topic: str) -> bool:
        return self.query.matches(topic)

    def accept(self, message: IncomingMessage) -> None:
        self._queue.put(message)

    def _work(self) -> None:
        while True:
            message = self._queue.get()
            try:
                if message is _STOP:
                    return
                self._handle(message)
            except Exception:
                log.exception("the local rule failed on a message")
            finally:
                self._queue.task_done()

    def _handle(self, message: IncomingMessage) -> None:
        self.counters.received += 1
        context = MessageContext(message.topic, message.payload, message.client_id, self._clock())
        output = self.query.evaluate(context)
        if output is None:
            self.counters.filtered_out += 1
            return
        for tap in self.taps:
            tap(message, output)
        self.counters.actions += 1
        try:
            self.action.perform(output, message)
        except ActionError as exc:
            self.counters.action_errors += 1
            if self.error_action is not None:
                self.error_action.send(message, self.action.name, self.action.resource, str(exc))

    def drain(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the rule still has messages after {timeout_s:.0f} s")
            time.sleep(0.005)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)


@dataclass(frozen=True, slots=True)
class RuleDefinition:
    """The template's TelemetryRule, rendered: what a LocalTopicRule is built from."""

    name: str
    query: RuleQuery
    action: Mapping[str, Any]
    error_queue_url: str | None
    error_base64: bool


def rule_definition(template: StackTemplate, resource: str = "TelemetryRule") -> RuleDefinition:
    properties = template.resource(resource)
    if properties is None:
        raise TemplateError(f"the {resource} resource is off in this stack")
    payload = properties["TopicRulePayload"]
    if str(payload.get("RuleDisabled", "false")).lower() == "true":
        raise TemplateError(f"the template's {resource} is disabled")
    query = parse_rule_sql(str(payload["Sql"]), str(payload.get("AwsIotSqlVersion", "2015-10-08")))
    actions = payload.get("Actions") or []
    if len(actions) != 1 or len(actions[0]) != 1:
        raise TemplateError(f"the local rule runs exactly one action; the template has {actions}")
    error = (payload.get("ErrorAction") or {}).get("Sqs")
    if payload.get("ErrorAction") and error is None:
        raise TemplateError("the local rule's error action can only be Sqs")
    return RuleDefinition(
        name=str(properties["RuleName"]),
        query=query,
        action=actions[0],
        error_queue_url=str(error["QueueUrl"]) if error else None,
        error_base64=bool(error and str(error.get("UseBase64", "false")).lower() == "true"),
    )


def async_invoke_settings(template: StackTemplate) -> tuple[int, str | None]:
    """(MaximumRetryAttempts, OnFailure destination ARN) of the function."""
    config = template.resource("TelemetryFunctionAsyncConfig")
    if config is None:
        return 2, None
    destination = ((config.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
        "Destination"
    )
    return int(config.get("MaximumRetryAttempts", 2)), destination


def build_rule(
    template: StackTemplate,
    *,
    invoke: Invoke,
    sqs: Any,
    kinesis: Any,
    queue_urls: Mapping[str, str],
    concurrency: int = 1,
    retry_delays_s: Sequence[float] = DEFAULT_RETRY_DELAYS_S,
    resource: str = "TelemetryRule",
) -> tuple[LocalTopicRule, AsyncInvoker | None]:
    """The rule of the template (`resource`, TelemetryRule by default) with its
    action wired to the local function (Direct) or the local stream (Stream).
    `queue_urls` maps queue ARNs to URLs (destinations are ARNs in the template,
    SQS calls take URLs)."""
    definition = rule_definition(template, resource)
    counters = RuleCounters()
    error_action = None
    if definition.error_queue_url is not None:
        error_action = SqsErrorAction(
            definition.name, definition.error_queue_url, sqs, base64_body=definition.error_base64
        )
    kind, spec = next(iter(definition.action.items()))
    invoker: AsyncInvoker | None = None
    action: RuleAction
    if kind == "Lambda":
        retries, destination = async_invoke_settings(template)
        on_failure = _queue_sender(sqs, queue_urls, destination) if destination else None
        invoker = AsyncInvoker(
            invoke,
            function_arn=str(spec["FunctionArn"]),
            max_retries=retries,
            on_failure=on_failure,
            concurrency=concurrency,
            retry_delays_s=retry_delays_s,
            counters=counters,
        )
        action = LambdaAction(str(spec["FunctionArn"]), invoker)
    elif kind == "Kinesis":
        action = KinesisAction(
            str(spec["StreamName"]), parse_substitution(str(spec["PartitionKey"])), kinesis
        )
    else:
        raise TemplateError(f"the local rule cannot run a {kind} action")
    rule = LocalTopicRule(
        definition.name, definition.query, action, error_action, counters=counters
    )
    return rule, invoker


def _queue_sender(
    sqs: Any, queue_urls: Mapping[str, str], arn: str
) -> Callable[[dict[str, Any]], None]:
    try:
        url = queue_urls[arn]
    except KeyError:
        raise TemplateError(f"the destination {arn} is not a queue of the local stack") from None

    def send(record: dict[str, Any]) -> None:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record, default=str))

    return send


def _iso_now() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- Stream mode: the event source mapping ------------------------------------------


@dataclass(frozen=True, slots=True)
class MappingSettings:
    """TelemetryStreamMapping, rendered."""

    batch_size: int
    window_s: float
    max_retries: int
    bisect: bool
    destination: str | None

    @classmethod
    def from_template(cls, template: StackTemplate, window_scale: float) -> MappingSettings:
        spec = template.resource("TelemetryStreamMapping")
        if spec is None:
            raise TemplateError(
                "the stream mapping is off in this stack (IngestMode is not Stream)"
            )
        if "ReportBatchItemFailures" not in (spec.get("FunctionResponseTypes") or []):
            raise TemplateError("the local mapping needs ReportBatchItemFailures")
        destination = ((spec.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
            "Destination"
        )
        return cls(
            batch_size=int(spec.get("BatchSize", 100)),
            window_s=float(spec.get("MaximumBatchingWindowInSeconds", 0)) * window_scale,
            max_retries=int(spec.get("MaximumRetryAttempts", -1)),
            bisect=str(spec.get("BisectBatchOnFunctionError", "false")).lower() == "true",
            destination=destination,
        )


def _payload_of(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return data


class StreamPoller:
    """Lambda's Kinesis event source mapping, one poller per shard: batches of
    up to BatchSize records within the batching window; a batch with failed
    items is retried from the earliest failed record; an invocation that
    raises is retried (split in halves when BisectBatchOnFunctionError); after
    MaximumRetryAttempts the batch's records are reported to the OnFailure
    destination and skipped."""

    def __init__(
        self,
        kinesis: Any,
        stream_name: str,
        settings: MappingSettings,
        invoke: Invoke,
        *,
        on_failure: Callable[[dict[str, Any]], None] | None,
        poll_interval_s: float = 0.02,
    ) -> None:
        self._kinesis = kinesis
        self.stream_name = stream_name
        self.settings = settings
        self._invoke = invoke
        self._on_failure = on_failure
        self._poll = poll_interval_s
        self._stop = threading.Event()
        self.records_read = 0
        self.records_done = 0
        self.batches = 0
        self.retries = 0
        self.records_failed = 0
        self._lock = threading.Lock()
        self._sequence = 1
        shards = kinesis.list_shards(StreamName=stream_name)["Shards"]
        self._threads = [
            threading.Thread(
                target=self._shard, args=(shard["ShardId"],), name=f"esm-{i}", daemon=True
            )
            for i, shard in enumerate(shards)
        ]
        for thread in self._threads:
            thread.start()

    def _shard(self, shard_id: str) -> None:
        iterator = self._kinesis.get_shard_iterator(
            StreamName=self.stream_name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        pending: list[Any] = []
        first_at = 0.0
        while not self._stop.is_set():
            answer = self._kinesis.get_records(
                ShardIterator=iterator, Limit=self.settings.batch_size
            )
            iterator = answer["NextShardIterator"]
            records = answer.get("Records", [])
            with self._lock:
                self.records_read += len(records)
            if records and not pending:
                first_at = time.monotonic()
            pending.extend(_payload_of(r["Data"]) for r in records)
            full = len(pending) >= self.settings.batch_size
            waited = pending and time.monotonic() - first_at >= self.settings.window_s
            if full or waited:
                batch, pending = (
                    pending[: self.settings.batch_size],
                    pending[self.settings.batch_size :],
                )
                self._deliver(shard_id, batch)
                first_at = time.monotonic()
            elif not records:
                time.sleep(self._poll)

    def _numbered(self, count: int) -> int:
        with self._lock:
            first = self._sequence
            self._sequence += count
        return first

    def _deliver(self, shard_id: str, batch: list[Any]) -> None:
        first = self._numbered(len(batch))
        attempts = 0
        parts = [(first, batch)]
        while parts:
            start, records = parts.pop(0)
            self.batches += 1
            try:
                response = self._invoke(kinesis_event(records, start))
                failed = sorted(
                    int(f["itemIdentifier"]) for f in response.get("batchItemFailures", [])
                )
            except Exception:  # noqa: BLE001 - the mapping retries whatever the function raised
                failed = [start]
                if self.settings.bisect and len(records) > 1:
                    half = len(records) // 2
                    attempts += 1
                    self.retries += 1
                    parts[:0] = [(start, records[:half]), (start + half, records[half:])]
                    continue
            if not failed:
                self._done(len(records))
                continue
            done = failed[0] - start
            self._done(done)
            attempts += 1
            if self.settings.max_retries >= 0 and attempts > self.settings.max_retries:
                self._give_up(shard_id, failed[0], records[done:])
                continue
            self.retries += 1
            parts.insert(0, (failed[0], records[done:]))

    def _done(self, count: int) -> None:
        with self._lock:
            self.records_done += count

    def _give_up(self, shard_id: str, first: int, records: list[Any]) -> None:
        with self._lock:
            self.records_failed += len(records)
            self.records_done += len(records)
        if self._on_failure is None:
            return
        self._on_failure(
            {
                "requestContext": {
                    "requestId": str(uuid.uuid4()),
                    "condition": "RetryAttemptsExhausted",
                    "approximateInvokeCount": self.settings.max_retries + 1,
                },
                "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
                "version": "1.0",
                "timestamp": _iso_now(),
                "KinesisBatchInfo": {
                    "shardId": shard_id,
                    "startSequenceNumber": sequence_number(first),
                    "endSequenceNumber": sequence_number(first + len(records) - 1),
                    "batchSize": len(records),
                    "streamArn": self.stream_name,
                },
            }
        )

    def drain(self, expected: int, timeout_s: float) -> None:
        """Wait until `expected` records have been read and handled."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if self.records_done >= expected:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the stream mapping handled {self.records_done} of {expected} records "
                    f"in {timeout_s:.0f} s"
                )
            time.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


def stream_consumer(
    template: StackTemplate,
    *,
    kinesis: Any,
    sqs: Any,
    queue_urls: Mapping[str, str],
    invoke: Invoke,
    window_scale: float = 0.05,
) -> StreamPoller:
    """The template's event source mapping on its stream, invoking `invoke`."""
    settings = MappingSettings.from_template(template, window_scale)
    stream = template.resource("TelemetryStream")
    if stream is None:
        raise TemplateError("the stack has no TelemetryStream (IngestMode is not Stream)")
    definition = rule_definition(template)
    kind, spec = next(iter(definition.action.items()))
    if kind != "Kinesis":
        raise TemplateError("the rule does not feed a stream in this stack")
    on_failure = (
        _queue_sender(sqs, queue_urls, settings.destination) if settings.destination else None
    )
    return StreamPoller(kinesis, str(spec["StreamName"]), settings, invoke, on_failure=on_failure)
