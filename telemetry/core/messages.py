"""Device messages in, validated readings and rejections out.

A message is what the IoT topic rule hands over: the device's payload plus the
`deviceId` the rule took from the MQTT topic and the `receivedAt` it stamped.
Validation is per reading: a bad reading is rejected with a reason naming its
field, and never takes its good siblings with it. Only a message that is not an
object, or has no usable deviceId, data list or message timestamp, is rejected
whole.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

THING_NAME_PATTERN: Final = r"^[a-zA-Z0-9:_-]{1,128}$"
MAX_LABEL_LENGTH: Final = 256
MAX_FUTURE_MS: Final = 15 * 60 * 1000
# Python datetimes stop at year 9999; Timestream far earlier, but that is its call.
_MAX_EPOCH_MS: Final = 253_402_300_799_999

ThingName = Annotated[str, StringConstraints(pattern=THING_NAME_PATTERN)]
Label = Annotated[str, StringConstraints(max_length=MAX_LABEL_LENGTH)]
FiniteNumber = Annotated[float, Field(allow_inf_nan=False)]
_THING_NAME: Final = re.compile(THING_NAME_PATTERN[1:-1])


class MessageRejectedError(ValueError):
    """A whole message is unusable. `rejection` says why, naming the field."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.reason)
        self.rejection = rejection


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message, or one reading of it, was not accepted.

    `field` is a path into the message (`deviceId`, `data[2].value`), `code` a
    stable machine-readable word, `detail` a sentence for people. `payload` is
    the original item (the whole message, or the one reading), kept so that
    nothing is lost on its way to the dead-letter queue.
    """

    field: str
    code: str
    detail: str
    payload: Any
    device_id: str | None = None

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.field}: {self.detail}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "code": self.code,
            "field": self.field,
            "detail": self.detail,
            "deviceId": self.device_id,
            "payload": self.payload,
        }


@dataclass(slots=True)
class Reading:
    """One validated sensor value at one instant (epoch milliseconds, UTC).

    `device_id` always comes from the message envelope (the MQTT topic), never
    from inside a reading. Device-sent thresholds are kept as they came; an
    incoherent pair (warning not below critical) leaves the reading stored but
    not evaluated, see `device_threshold_problem`.
    """

    device_id: str
    sensor_id: str
    value: float
    time_ms: int
    type: str | None = None
    unit: str | None = None
    location: str | None = None
    warning_threshold: float | None = None
    critical_threshold: float | None = None

    @property
    def device_threshold_problem(self) -> str | None:
        w, c = self.warning_threshold, self.critical_threshold
        if w is not None and c is not None and not w < c:
            return f"warningThreshold {w:g} is not below criticalThreshold {c:g}"
        return None


@dataclass(slots=True)
class ParsedMessage:
    """The accepted readings of one message and the reasons for the rest."""

    device_id: str
    readings: list[Reading] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


class _ReadingModel(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    sensorId: ThingName  # noqa: N815 - the wire format's names
    value: FiniteNumber
    type: Label | None = None
    unit: Label | None = None
    location: Label | None = None
    warningThreshold: FiniteNumber | None = None  # noqa: N815
    criticalThreshold: FiniteNumber | None = None  # noqa: N815
    timestamp: Any = None


class _MessageModel(BaseModel):
    """The whole message in one pass: the fast path when every reading is good."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    deviceId: ThingName  # noqa: N815
    data: list[_ReadingModel]
    timestamp: Any = None
    receivedAt: Any = None  # noqa: N815


_PYDANTIC_CODES: Final = {
    "missing": "missing",
    "string_pattern_mismatch": "invalid_format",
    "string_too_long": "too_long",
    "finite_number": "not_finite",
}


def _code_for(error_type: str) -> str:
    if error_type in _PYDANTIC_CODES:
        return _PYDANTIC_CODES[error_type]
    if error_type.endswith("_type"):
        return "wrong_type"
    return "invalid"


def parse_time_ms(raw: object) -> int:
    """Epoch milliseconds from epoch ms (an integer-valued number) or ISO-8601.

    ISO strings without a zone are taken as UTC. Raises ValueError with a
    sentence for anything else.
    """
    if isinstance(raw, bool):
        raise ValueError(  # noqa: TRY004 - one error type for every unusable timestamp
            "must be epoch milliseconds or an ISO-8601 string, not a boolean"
        )
    if isinstance(raw, int | float):
        if isinstance(raw, float) and (not math.isfinite(raw) or raw != int(raw)):
            raise ValueError("epoch milliseconds must be a whole number")
        ms = int(raw)
        if not 0 <= ms <= _MAX_EPOCH_MS:
            raise ValueError("epoch milliseconds out of range")
        return ms
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise ValueError("not an ISO-8601 timestamp") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        # Integer arithmetic: timestamp() * 1000 is a float, sometimes 1 ms short.
        ms = (parsed - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        if ms < 0:
            raise ValueError("timestamps before 1970 are not accepted")
        if ms > _MAX_EPOCH_MS:
            raise ValueError("timestamp out of range")
        return ms
    raise ValueError("must be epoch milliseconds or an ISO-8601 string")


def iso_utc(time_ms: int) -> str:
    """ISO-8601 UTC with millisecond precision and a Z, as every output uses."""
    return (
        datetime.fromtimestamp(time_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    )


def _reading(model: _ReadingModel, device_id: str, time_ms: int) -> Reading:
    # Positional: the hot path of validation. Empty labels count as absent.
    return Reading(
        device_id,
        model.sensorId,
        model.value,
        time_ms,
        model.type or None,
        model.unit or None,
        model.location or None,
        model.warningThreshold,
        model.criticalThreshold,
    )


def _reading_from(
    model: _ReadingModel, device_id: str, default_ms: int, index: int, raw: Any, now_ms: int
) -> Reading | Rejection:
    time_ms = default_ms
    if model.timestamp is not None:
        try:
            time_ms = parse_time_ms(model.timestamp)
        except ValueError as exc:
            return Rejection(
                f"data[{index}].timestamp", "invalid_timestamp", str(exc), raw, device_id
            )
    if time_ms > now_ms + MAX_FUTURE_MS:
        return Rejection(
            f"data[{index}].timestamp",
            "in_future",
            f"{iso_utc(time_ms)} is more than 15 minutes ahead of {iso_utc(now_ms)}",
            raw,
            device_id,
        )
    return _reading(model, device_id, time_ms)


def _envelope(message: object, now_ms: int) -> tuple[str, list[Any], int]:
    if not isinstance(message, Mapping):
        raise MessageRejectedError(
            Rejection("$", "not_an_object", "a message must be a JSON object", message)
        )
    device_id = message.get("deviceId")
    if device_id is None:
        raise MessageRejectedError(
            Rejection("deviceId", "missing", "no deviceId (the topic rule sets it)", message)
        )
    if not isinstance(device_id, str) or not _THING_NAME.fullmatch(device_id):
        raise MessageRejectedError(
            Rejection(
                "deviceId",
                "invalid_format",
                "must be 1-128 characters of [a-zA-Z0-9:_-]",
                message,
            )
        )
    data = message.get("data")
    if not isinstance(data, list):
        code = "missing" if data is None else "wrong_type"
        raise MessageRejectedError(
            Rejection("data", code, "must be a list of readings", message, device_id)
        )
    default_ms = now_ms
    for name in ("receivedAt", "timestamp"):
        raw_time = message.get(name)
        if raw_time is None:
            continue
        try:
            default_ms = parse_time_ms(raw_time)
        except ValueError as exc:
            raise MessageRejectedError(
                Rejection(name, "invalid_timestamp", str(exc), message, device_id)
            ) from None
    return device_id, data, default_ms


def _slow_path(data: Sequence[Any], device_id: str, default_ms: int, now_ms: int) -> ParsedMessage:
    parsed = ParsedMessage(device_id)
    for index, raw in enumerate(data):
        try:
            model = _ReadingModel.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            loc = ".".join(str(part) for part in first["loc"])
            parsed.rejections.append(
                Rejection(
                    f"data[{index}].{loc}" if loc else f"data[{index}]",
                    _code_for(first["type"]),
                    first["msg"],
                    raw,
                    device_id,
                )
            )
            continue
        _append(parsed, _reading_from(model, device_id, default_ms, index, raw, now_ms))
    return parsed


def _append(parsed: ParsedMessage, item: Reading | Rejection) -> None:
    if isinstance(item, Reading):
        parsed.readings.append(item)
    else:
        parsed.rejections.append(item)


def parse_message(message: object, now_ms: int) -> ParsedMessage:
    """Validate one message; `now_ms` is the clock, injected to keep this pure.

    Raises MessageRejectedError, and nothing else, when the message cannot be
    used at all; otherwise returns every good reading and a Rejection for each
    bad one. A reading's own `timestamp` wins over the message's, which wins
    over the rule's `receivedAt`, which wins over now.
    """
    try:
        whole = _MessageModel.model_validate(message)
    except ValidationError:
        device_id, data, default_ms = _envelope(message, now_ms)
        return _slow_path(data, device_id, default_ms, now_ms)
    device_id = whole.deviceId
    raw_time = whole.timestamp if whole.timestamp is not None else whole.receivedAt
    if raw_time is None:
        default_ms = now_ms
    elif type(raw_time) is int and 0 <= raw_time <= _MAX_EPOCH_MS:
        default_ms = raw_time
    else:
        device_id, data, default_ms = _envelope(message, now_ms)
    parsed = ParsedMessage(device_id)
    latest_ms = now_ms + MAX_FUTURE_MS
    readings = parsed.readings
    for index, model in enumerate(whole.data):
        if model.timestamp is None and default_ms <= latest_ms:
            readings.append(_reading(model, device_id, default_ms))
        else:
            raw = message["data"][index]  # type: ignore[index]
            _append(parsed, _reading_from(model, device_id, default_ms, index, raw, now_ms))
    return parsed
