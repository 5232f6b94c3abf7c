"""The device's named shadow mirrors its active alerts.

`state.reported.alerts` is keyed by sensorId: {severity, rule, alertId, since,
value} for the most severe active alert of that sensor, null once resolved,
with `direction: "nodata"` for a no-data alert and, as operators act,
`acknowledged: {by, at}`, `snoozedUntil` and `latched: true`. Keys operators
disabled are listed apart, in `state.reported.disabled.<sensorId>.<rule>`.
Only the named shadow (SHADOW_NAME) is written; the classic shadow only when
SHADOW_NAME is empty.

A shadow holds 8 KB. The mirror is bounded before it is sent: the alerts are
taken most severe first while they fit, and `state.reported.alertsOmitted`
says how many did not (absent when none). The same bound applied to the state
before and after a change gives the patch to send, so the mirror converges
again as soon as alerts resolve. A full rewrite (after a failed or raced
update) clears `alerts` first, then writes what fits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from telemetry.adapters.aws import AWS_ERRORS, error_code_of, translate

MAX_MIRROR_BYTES: Final = 7 * 1024
"""The mirror's share of the shadow's 8 KB document."""
MAX_UPDATE_BYTES: Final = 6 * 1024
"""One update's payload: a patch larger than this is sent in several."""
OMITTED: Final = "alertsOmitted"
DISABLED: Final = "disabled"
"""Keys operators disabled, listed apart: disabled.<sensorId>.<rule> = {by, at}."""

_NOT_A_THING: Final = frozenset({"ResourceNotFoundException"})
_MISCONFIGURED: Final = frozenset(
    {"UnauthorizedException", "ForbiddenException", "AccessDeniedException"}
)
_WILL_NOT_HEAL: Final = frozenset(
    {
        "InvalidRequestException",
        "MethodNotAllowedException",
        "UnsupportedDocumentEncodingException",
        "RequestEntityTooLargeException",
    }
)

MirrorEntries = Sequence[tuple[str, Mapping[str, Any]]]
"""(sensorId, entry) pairs, the most important first."""


class MirrorStatus(StrEnum):
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    NOT_A_THING = "not_a_thing"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class MirrorResult:
    """What became of a mirror update. A FAILED one carries the service's
    `code` and whether retrying can help; `omitted` counts the alerts the
    shadow had no room for."""

    status: MirrorStatus
    code: str | None = None
    retryable: bool = True
    omitted: int = 0


def fitted(entries: MirrorEntries, budget: int = MAX_MIRROR_BYTES) -> tuple[dict[str, Any], int]:
    """The alerts that fit in `budget` bytes, most important first, and how many did not."""
    kept: dict[str, Any] = {}
    size = len('{"state":{"reported":{"alerts":{},"alertsOmitted":100000}}}')
    for index, (sensor_id, entry) in enumerate(entries):
        entry_size = len(json.dumps({sensor_id: entry}, separators=(",", ":")))
        if size + entry_size > budget:
            return kept, len(entries) - index
        kept[sensor_id] = entry
        size += entry_size
    return kept, 0


def _patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """What turns the reported `before` into `after`. A shadow update merges
    objects, so a field an entry no longer has is sent as null (an escalation's
    cleared acknowledgement, a snooze that ended), or it would stay."""
    patch: dict[str, Any] = {}
    for sensor, entry in after.items():
        old = before.get(sensor)
        if old == entry:
            continue
        gone = {k: None for k in old if k not in entry} if isinstance(old, Mapping) else {}
        patch[sensor] = {**gone, **entry} if gone and isinstance(entry, Mapping) else entry
    patch.update({s: None for s in before if s not in after})
    return dict(sorted(patch.items()))


def _nested_patch(
    before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Per sensor, the rules to set and to remove (null); a sensor with none left: null."""
    patch: dict[str, Any] = {}
    for sensor in sorted(set(before) | set(after)):
        old, new = before.get(sensor, {}), after.get(sensor)
        if not new:
            if old:
                patch[sensor] = None
            continue
        changes = _patch(old, new)
        if changes:
            patch[sensor] = changes
    return patch


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


class ShadowMirror:
    """Writes alert entries into a thing's shadow."""

    def __init__(self, shadow_name: str, client: Any) -> None:
        self._shadow_name = shadow_name
        self._client = client
        self.calls = 0

    def update(
        self,
        thing_name: str,
        before: MirrorEntries,
        after: MirrorEntries,
        *,
        full: bool,
        disabled_before: Mapping[str, Mapping[str, Any]] | None = None,
        disabled_after: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> MirrorResult:
        """Bring the mirror from what `before` put there to what `after` needs.

        A thing that does not exist is reported, not raised: its readings and
        alerts are handled regardless. A fault comes back as FAILED, saying
        whether it may heal, so that the caller marks the mirror stale for a
        later rewrite; a misconfiguration (access refused) is raised.
        """
        old, old_omitted = fitted(before)
        new, omitted = fitted(after)
        documents: list[dict[str, Any]] = []
        off_before, off_after = dict(disabled_before or {}), dict(disabled_after or {})
        if full:
            documents.append({"alerts": None, OMITTED: None, DISABLED: None})
            documents.extend({"alerts": chunk} for chunk in _chunks(new))
            if omitted:
                documents.append({OMITTED: omitted})
            if off_after:
                documents.append({DISABLED: off_after})
        else:
            documents.extend({"alerts": chunk} for chunk in _chunks(_patch(old, new)))
            if omitted != old_omitted:
                documents.append({OMITTED: omitted or None})
            off_patch = _nested_patch(off_before, off_after)
            if off_patch:
                documents.append({DISABLED: off_patch})
        if not documents:
            return MirrorResult(MirrorStatus.UNCHANGED, omitted=omitted)
        for reported in documents:
            result = self._send(thing_name, reported, omitted)
            if result is not None:
                return result
        return MirrorResult(MirrorStatus.UPDATED, omitted=omitted)

    def _send(
        self, thing_name: str, reported: Mapping[str, Any], omitted: int
    ) -> MirrorResult | None:
        payload = json.dumps({"state": {"reported": reported}}, separators=(",", ":")).encode()
        kwargs: dict[str, Any] = {"thingName": thing_name, "payload": payload}
        if self._shadow_name:
            kwargs["shadowName"] = self._shadow_name
        self.calls += 1
        try:
            self._client.update_thing_shadow(**kwargs)
        except AWS_ERRORS as exc:
            code = error_code_of(exc)
            if code in _NOT_A_THING:
                return MirrorResult(MirrorStatus.NOT_A_THING, code, retryable=False)
            error = translate("iot-data", "UpdateThingShadow", exc)
            if code in _MISCONFIGURED:
                error.transient = False
                raise error from exc
            retryable = code not in _WILL_NOT_HEAL and error.transient
            return MirrorResult(MirrorStatus.FAILED, error.code, retryable, omitted)
        return None
