"""Device messages in, validated readings and rejections out.

A message is what the IoT topic rule hands over: the device's payload plus the
`deviceId` the rule took from the MQTT topic and the `receivedAt` it stamped.
Validation is per reading: a bad reading is rejected with a reason naming its
field, and never takes its good siblings with it. Only a message that is not an
object, or has no usable deviceId, data list or message time, is rejected whole.

Two paths give one answer. The fast path validates a whole message in one
compiled pass (pydantic-core, straight from the record's bytes when there are
bytes) and is taken only when everything in it is accepted; anything else goes
to the careful path, which looks at each field in turn to say exactly what is
wrong and where. `parse_message_carefully` is that reference path on its own:
the tests hold the fast path to it on arbitrary input.

JSON text is decoded by pydantic-core's parser, on both paths: numbers of more
than 4,300 digits, nesting deeper than 200 levels, invalid UTF-8 and lone
surrogates are `not_json`, never an exception.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, Final

from pydantic_core import SchemaValidator, ValidationError, from_json
from pydantic_core import core_schema as cs

from telemetry.core.immutable import immutable

THING_NAME_PATTERN: Final = r"^[a-zA-Z0-9:_-]{1,128}$"
MAX_LABEL_LENGTH: Final = 256
MAX_FUTURE_MS: Final = 15 * 60 * 1000
LATEST_MS: Final = 253_402_300_799_999
"""The latest instant a timestamp may name (9999-12-31T23:59:59.999Z): Python's
datetimes stop there. Timestream refuses far earlier, but that is its call."""

_DAY_MS: Final = 86_400_000
_EPOCH_DAY: Final = date(1970, 1, 1)
_THING_NAME: Final = re.compile(THING_NAME_PATTERN[1:-1])
_MESSAGE_TIMES: Final = ("receivedAt", "timestamp")  # checked in this order; the last wins


class MessageRejectedError(ValueError):
    """A whole message is unusable. `rejection` says why, naming the field."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.reason)
        self.rejection = rejection


@immutable
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
    """The accepted readings of one message and the reasons for the rest.

    `received_ms` is the message's `receivedAt` (when the IoT rule saw it) and
    `sent_ms` its own `timestamp`, each when present; both were validated.
    """

    device_id: str
    readings: list[Reading] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    received_ms: int | None = None
    sent_ms: int | None = None


# --- the compiled schema ------------------------------------------------------
# The wire format, once, for both paths. Optional labels and thresholds default
# to None; unknown fields are ignored; strict: "81.2" is not a number, true is not 1.
# The fast path's readings leave out the fields most readings do not have (their
# own thresholds and time) rather than fill them in: a reading with none of them
# holds only _COMMON_FIELDS, and costs no default to make.


def _optional(schema: cs.CoreSchema) -> cs.TypedDictField:
    return cs.typed_dict_field(cs.with_default_schema(cs.nullable_schema(schema), default=None))


def _when_given(schema: cs.CoreSchema) -> cs.TypedDictField:
    return cs.typed_dict_field(cs.nullable_schema(schema), required=False)


_STRICT: Final = cs.CoreConfig(strict=True)
_FINITE: Final = cs.float_schema(allow_inf_nan=False)
_LABEL: Final = cs.str_schema(max_length=MAX_LABEL_LENGTH)
_COMMON: Final[dict[str, cs.TypedDictField]] = {
    "sensorId": cs.typed_dict_field(cs.str_schema(pattern=THING_NAME_PATTERN)),
    "value": cs.typed_dict_field(_FINITE),
    "type": _optional(_LABEL),
    "unit": _optional(_LABEL),
    "location": _optional(_LABEL),
}
_COMMON_FIELDS: Final = len(_COMMON)
_RARE: Final = {
    "warningThreshold": _FINITE,
    "criticalThreshold": _FINITE,
    "timestamp": cs.any_schema(),
}


def _reading_schema(rare: Callable[[cs.CoreSchema], cs.TypedDictField]) -> cs.TypedDictSchema:
    fields = _COMMON | {name: rare(schema) for name, schema in _RARE.items()}
    return cs.typed_dict_schema(fields, extra_behavior="ignore", config=_STRICT)


_READING: Final = SchemaValidator(_reading_schema(_optional))
_MESSAGE: Final = SchemaValidator(
    cs.typed_dict_schema(
        {
            "deviceId": cs.typed_dict_field(cs.str_schema(pattern=THING_NAME_PATTERN)),
            "data": cs.typed_dict_field(cs.list_schema(_reading_schema(_when_given))),
            "timestamp": _optional(cs.any_schema()),
            "receivedAt": _optional(cs.any_schema()),
        },
        extra_behavior="ignore",
        config=_STRICT,
    )
)

_ERROR_CODES: Final = {
    "missing": "missing",
    "string_pattern_mismatch": "invalid_format",
    "string_too_long": "too_long",
    "finite_number": "not_finite",
}


def _code_for(error_type: str) -> str:
    if error_type in _ERROR_CODES:
        return _ERROR_CODES[error_type]
    if error_type.endswith("_type"):
        return "wrong_type"
    return "invalid"


# --- times ----------------------------------------------------------------------


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
        if not 0 <= raw <= LATEST_MS:
            raise ValueError("epoch milliseconds out of range")
        return int(raw)
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
        if ms > LATEST_MS:
            raise ValueError("timestamp out of range")
        return ms
    raise ValueError("must be epoch milliseconds or an ISO-8601 string")


def _time_or_none(raw: object) -> int | None:
    """The instant `raw` names, or None when it names none (absent, or invalid)."""
    if raw is None:
        return None
    if type(raw) is int and 0 <= raw <= LATEST_MS:
        return raw
    try:
        return parse_time_ms(raw)
    except ValueError:
        return None


def iso_utc(time_ms: int) -> str:
    """ISO-8601 UTC with millisecond precision and a Z, as every output uses.

    In whole milliseconds (integer arithmetic): through a float of seconds, a
    time from about the year 2250 on could come out a millisecond early."""
    days, ms = divmod(time_ms, _DAY_MS)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    seconds, ms = divmod(ms, 1000)
    return f"{_date_text(days)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}Z"


@lru_cache(maxsize=1024)
def _date_text(days: int) -> str:
    """The date `days` after 1970-01-01, as ISO-8601 writes it."""
    return (_EPOCH_DAY + timedelta(days=days)).isoformat()


def _in_future(time_ms: int, now_ms: int) -> str:
    return f"{iso_utc(time_ms)} is more than 15 minutes ahead of {iso_utc(now_ms)}"


_new: Final = object.__new__


def _reading(valid: Mapping[str, Any], device_id: str, time_ms: int) -> Reading:
    # Positional: the hot path of validation. Empty labels count as absent.
    return Reading(
        device_id,
        valid["sensorId"],
        valid["value"],
        time_ms,
        valid["type"] or None,
        valid["unit"] or None,
        valid["location"] or None,
        valid["warningThreshold"],
        valid["criticalThreshold"],
    )


# --- the fast path ----------------------------------------------------------------


def _all_accepted(whole: dict[str, Any], now_ms: int) -> ParsedMessage | None:
    """The message when every part of it is accepted; None when anything needs
    the careful path (which then says what). The hot path of validation."""
    received_ms = whole["receivedAt"]
    if received_ms is not None and not (type(received_ms) is int and 0 <= received_ms <= LATEST_MS):
        received_ms = _time_or_none(received_ms)
        if received_ms is None:
            return None
    sent_ms = whole["timestamp"]
    if sent_ms is not None and not (type(sent_ms) is int and 0 <= sent_ms <= LATEST_MS):
        sent_ms = _time_or_none(sent_ms)
        if sent_ms is None:
            return None
    default_ms = sent_ms if sent_ms is not None else received_ms
    if default_ms is None:
        default_ms = now_ms
    latest_ms = now_ms + MAX_FUTURE_MS
    device_id = whole["deviceId"]
    readings: list[Reading] = []
    append = readings.append
    for valid in whole["data"]:
        if len(valid) == _COMMON_FIELDS:  # no thresholds, no time of its own: most readings
            time_ms, warning, critical = default_ms, None, None
        else:
            warning, critical = valid.get("warningThreshold"), valid.get("criticalThreshold")
            own = valid.get("timestamp")
            own_ms = default_ms if own is None else _time_or_none(own)
            if own_ms is None:
                return None
            time_ms = own_ms
        if time_ms > latest_ms:
            return None
        # `_reading` inlined, its fields set one by one: the dataclass's __init__ is
        # a call the hot path of validation does without (about 0.1 µs a reading).
        reading = _new(Reading)
        reading.device_id = device_id
        reading.sensor_id = valid["sensorId"]
        reading.value = valid["value"]
        reading.time_ms = time_ms
        reading.type = valid["type"] or None
        reading.unit = valid["unit"] or None
        reading.location = valid["location"] or None
        reading.warning_threshold = warning
        reading.critical_threshold = critical
        append(reading)
    parsed = _new(ParsedMessage)  # as the readings: no call to __init__
    parsed.device_id = device_id
    parsed.readings = readings
    parsed.rejections = []
    parsed.received_ms = received_ms
    parsed.sent_ms = sent_ms
    return parsed


def parse_message(message: object, now_ms: int) -> ParsedMessage:
    """Validate one message; `now_ms` is the clock, injected to keep this pure.

    Raises MessageRejectedError, and nothing else, when the message cannot be
    used at all; otherwise returns every good reading and a Rejection for each
    bad one. A reading's own `timestamp` wins over the message's, which wins
    over the rule's `receivedAt`, which wins over now; a reading more than 15
    minutes ahead of now is rejected, naming the field its time came from.
    A ParsedMessage (a stream record that `telemetry.events` validated from its
    bytes) is returned as it is.
    """
    if type(message) is ParsedMessage:
        return message
    try:
        whole = _MESSAGE.validate_python(message)
    except ValidationError:
        return parse_message_carefully(message, now_ms)
    return _all_accepted(whole, now_ms) or parse_message_carefully(message, now_ms)


def parse_message_json(raw: bytes | str, now_ms: int) -> ParsedMessage:
    """`parse_message` of a message's JSON text, validated in one pass from the
    text itself when it is all good. Text that is not JSON is a
    MessageRejectedError with code `not_json` and the text as its payload."""
    try:
        whole = _MESSAGE.validate_json(raw)
    except ValidationError:
        return parse_message_carefully(decode_json(raw), now_ms)
    accepted = _all_accepted(whole, now_ms)
    if accepted is not None:
        return accepted
    return parse_message_carefully(decode_json(raw), now_ms)


def decode_json(raw: bytes | str) -> Any:
    """The JSON value of `raw`, by the parser both paths use; MessageRejectedError
    (`not_json`, the text as payload) when it is not JSON."""
    try:
        return from_json(raw)
    except ValueError as exc:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        raise MessageRejectedError(
            Rejection("$", "not_json", f"not a JSON message: {exc}", text)
        ) from None


# --- the careful path -------------------------------------------------------------


def _envelope(message: object) -> tuple[str, list[Any], dict[str, int]]:
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
    times: dict[str, int] = {}
    for name in _MESSAGE_TIMES:
        raw_time = message.get(name)
        if raw_time is None:
            continue
        try:
            times[name] = parse_time_ms(raw_time)
        except ValueError as exc:
            raise MessageRejectedError(
                Rejection(name, "invalid_timestamp", str(exc), message, device_id)
            ) from None
    return device_id, data, times


def _careful_reading(
    raw: Any, index: int, device_id: str, default: tuple[str, int] | None, now_ms: int
) -> Reading | Rejection:
    """One reading, or why not. `default` is the message-level time it takes
    without a time of its own: the field it came from and its instant."""
    try:
        valid = _READING.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        loc = ".".join(str(part) for part in first["loc"])
        return Rejection(
            f"data[{index}].{loc}" if loc else f"data[{index}]",
            _code_for(first["type"]),
            first["msg"],
            raw,
            device_id,
        )
    if valid["timestamp"] is not None:
        try:
            time_ms = parse_time_ms(valid["timestamp"])
        except ValueError as exc:
            return Rejection(
                f"data[{index}].timestamp", "invalid_timestamp", str(exc), raw, device_id
            )
        source = f"data[{index}].timestamp"
        payload = raw
    elif default is not None:
        # The message's time is what is wrong, if anything: name it, and keep it
        # with the reading so that the dead-letter item says what the device sent.
        source, time_ms = default
        payload = {**raw, source: time_ms}
    else:
        return _reading(valid, device_id, now_ms)
    if time_ms > now_ms + MAX_FUTURE_MS:
        return Rejection(source, "in_future", _in_future(time_ms, now_ms), payload, device_id)
    return _reading(valid, device_id, time_ms)


def _careful_readings(
    data: Sequence[Any], device_id: str, times: Mapping[str, int], now_ms: int
) -> tuple[list[Reading], list[Rejection]]:
    default: tuple[str, int] | None = None
    for name in _MESSAGE_TIMES:
        if name in times:
            default = (name, times[name])
    readings: list[Reading] = []
    rejections: list[Rejection] = []
    for index, raw in enumerate(data):
        item = _careful_reading(raw, index, device_id, default, now_ms)
        if isinstance(item, Reading):
            readings.append(item)
        else:
            rejections.append(item)
    return readings, rejections


def parse_message_carefully(message: object, now_ms: int) -> ParsedMessage:
    """`parse_message` field by field: the reference the fast path must agree
    with, and what names the field of every rejection."""
    device_id, data, times = _envelope(message)
    readings, rejections = _careful_readings(data, device_id, times, now_ms)
    return ParsedMessage(
        device_id, readings, rejections, times.get("receivedAt"), times.get("timestamp")
    )
