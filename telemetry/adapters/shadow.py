"""The device's named shadow mirrors its active alerts.

`state.reported.alerts` is keyed by sensorId: {severity, rule, alertId, since,
value} for the most severe active alert of that sensor, null once resolved.
Only the named shadow (SHADOW_NAME) is written; the classic shadow only when
SHADOW_NAME is empty.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Any, Final

from telemetry.adapters.aws import AWS_ERRORS, error_code_of, translate

MAX_UPDATE_BYTES: Final = 6 * 1024
"""A shadow document holds 8 KB; updates stay well under it."""


def _chunks(alerts: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    chunk: dict[str, Any] = {}
    size = 0
    for sensor_id, entry in alerts.items():
        entry_size = len(json.dumps({sensor_id: entry}, separators=(",", ":")))
        if chunk and size + entry_size > MAX_UPDATE_BYTES:
            yield chunk
            chunk, size = {}, 0
        chunk[sensor_id] = entry
        size += entry_size
    if chunk:
        yield chunk


class ShadowOutcome(StrEnum):
    UPDATED = "updated"
    NOT_A_THING = "not_a_thing"
    TOO_LARGE = "too_large"
    FAILED = "failed"


class ShadowMirror:
    """Writes alert entries into a thing's shadow."""

    def __init__(self, shadow_name: str, client: Any) -> None:
        self._shadow_name = shadow_name
        self._client = client
        self.calls = 0

    def update(self, thing_name: str, alerts: Mapping[str, Any]) -> ShadowOutcome:
        """Patch the mirror, in as many updates as the shadow's size limit needs."""
        outcome = ShadowOutcome.UPDATED
        for chunk in _chunks(alerts):
            outcome = self._update(thing_name, chunk)
            if outcome is not ShadowOutcome.UPDATED:
                return outcome
        return outcome

    def _update(self, thing_name: str, alerts: Mapping[str, Any]) -> ShadowOutcome:
        """Patch `state.reported.alerts` with `alerts` (None removes a sensor).

        A thing that does not exist is reported, not raised: its readings and
        alerts are handled regardless. Transient faults come back as FAILED so
        the caller can mark the mirror stale and repair it later; faults that
        will not heal by themselves (access denied) are raised.
        """
        payload = json.dumps(
            {"state": {"reported": {"alerts": dict(alerts)}}}, separators=(",", ":")
        ).encode()
        kwargs: dict[str, Any] = {"thingName": thing_name, "payload": payload}
        if self._shadow_name:
            kwargs["shadowName"] = self._shadow_name
        self.calls += 1
        try:
            self._client.update_thing_shadow(**kwargs)
        except AWS_ERRORS as exc:
            code = error_code_of(exc)
            if code == "ResourceNotFoundException":
                return ShadowOutcome.NOT_A_THING
            if code == "RequestEntityTooLargeException":
                return ShadowOutcome.TOO_LARGE  # more active alerts than 8 KB holds
            error = translate("iot-data", "UpdateThingShadow", exc)
            if not error.transient:
                raise error from exc
            return ShadowOutcome.FAILED
        return ShadowOutcome.UPDATED
