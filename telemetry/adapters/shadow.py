"""The device's named shadow mirrors its active alerts.

`state.reported.alerts` is keyed by sensorId: {severity, rule, alertId, since,
value} for the most severe active alert of that sensor, null once resolved.
Only the named shadow (SHADOW_NAME) is written; the classic shadow only when
SHADOW_NAME is empty.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from telemetry.adapters.aws import AWS_ERRORS, error_code_of, translate


class ShadowOutcome(StrEnum):
    UPDATED = "updated"
    NOT_A_THING = "not_a_thing"
    FAILED = "failed"


class ShadowMirror:
    """Writes alert entries into a thing's shadow."""

    def __init__(self, shadow_name: str, client: Any) -> None:
        self._shadow_name = shadow_name
        self._client = client
        self.calls = 0

    def update(self, thing_name: str, alerts: Mapping[str, Any]) -> ShadowOutcome:
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
            if error_code_of(exc) == "ResourceNotFoundException":
                return ShadowOutcome.NOT_A_THING
            error = translate("iot-data", "UpdateThingShadow", exc)
            if not error.transient:
                raise error from exc
            return ShadowOutcome.FAILED
        return ShadowOutcome.UPDATED
