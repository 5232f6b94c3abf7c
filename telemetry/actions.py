"""The operators' entry point: `telemetry.actions.lambda_handler`.

Its own function in the template, with only the permissions it needs, invoked
directly (`lambda:InvokeFunction`, what `telemetry alerts ack ...` does) or,
where the stack enables it, by an IoT rule on the operators' topic, which no
device may publish to. The telemetry function never takes an action.

The answer says what changed: `{"applied": true, "state": {...}}`, or
`{"applied": false, "reason": "..."}` for an action refused (not active, a
stale alertId, already in that state). A malformed action raises
InvalidActionError naming the field when invoked directly; from the
operators' topic (the rule adds `via`, the topic), it goes to the dead-letter
queue with its reason instead, since a retry could not mend it.
"""

from __future__ import annotations

from typing import Any

from telemetry import handler
from telemetry.core.operators import InvalidActionError, parse_action

VIA: str = "via"
"""The field the operators' topic rule adds (the topic): the action came over MQTT."""


def handle_action(event: Any, rt: handler.Runtime, context: Any = None) -> dict[str, Any]:
    """One action against a given runtime (what lambda_handler runs)."""
    rt.refresh_rules()
    now_ms = rt.clock()
    try:
        action = parse_action(event, now_ms)
    except InvalidActionError as exc:
        handler.logger.warning(
            "operator action refused: malformed", extra={"field": exc.field, "reason": str(exc)}
        )
        if isinstance(event, dict) and VIA in event:
            rt.pipeline.quarantine(
                [
                    {
                        "source": "actions",
                        "reason": f"invalid_action: {exc}",
                        "code": "invalid_action",
                        "field": exc.field,
                        "detail": str(exc),
                        "deviceId": event.get("deviceId")
                        if isinstance(event.get("deviceId"), str)
                        else None,
                        "payload": event,
                    }
                ]
            )
            return {"applied": False, "reason": str(exc), "error": str(exc), "field": exc.field}
        raise
    outcome, answer = rt.pipeline.act(
        action,
        now_ms,
        deadline_ms=handler.deadline_ms(context, now_ms),
        invocation_id=handler.request_id(context),
        time_left_ms=handler.time_left(context),
    )
    handler.report(outcome)
    outcome.raise_failure()
    handler.logger.info(
        "operator action",
        extra={
            "action": action.kind.value,
            "deviceId": action.device_id,
            "sensorId": action.sensor_id,
            "rule": action.rule,
            "by": action.by,
            "applied": answer.get("applied"),
            "reason": answer.get("reason"),
        },
    )
    return answer


@handler.metrics.log_metrics
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """The actions function's entry point (`telemetry.actions.lambda_handler`)."""
    request_id = handler.request_id(context)
    if request_id:
        handler.logger.append_keys(request_id=request_id)
    with handler.observed() as outcomes:
        try:
            return handle_action(event, handler.runtime(), context)
        finally:
            handler.emit_metrics(outcomes)
