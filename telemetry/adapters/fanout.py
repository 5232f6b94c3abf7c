"""The scheduled sweep's fan-out: one asynchronous invocation per shard.

A fleet incident makes tens of thousands of devices due at once; one invocation
walking them all takes half an hour. The schedule's own invocation instead
invokes the function once per shard of the due index (Lambda's parallelism),
each sweeping its shard under its own deadline. Asynchronous invocations are
retried by Lambda; a shard swept twice decides the same (conditional writes,
outbox claims), so a failed fan-out is simply raised and the schedule retried.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from telemetry.adapters.aws import AWS_ERRORS, translate
from telemetry.errors import DependencyError


class SweepFanOut:
    """Invokes `function_name` asynchronously, once per event."""

    def __init__(self, function_name: str, client: Any) -> None:
        self._function = function_name
        self._client = client

    def start(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Invoke the function once per event; how many were started. Raises
        DependencyError (transient unless misconfigured) on the first refusal."""
        started = 0
        for event in events:
            payload = json.dumps(event).encode()
            try:
                answer = self._client.invoke(
                    FunctionName=self._function, InvocationType="Event", Payload=payload
                )
            except AWS_ERRORS as exc:
                raise translate("lambda", "Invoke", exc) from exc
            status = int(answer.get("StatusCode", 0))
            if status != 202:
                raise DependencyError(
                    "lambda",
                    "Invoke",
                    str(status),
                    f"asynchronous invocation answered {status}, not 202",
                    transient=True,
                )
            started += 1
        return started
