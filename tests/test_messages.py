"""The message format contract: what parse_message accepts, rejects and why."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry.core.alerts import evaluate
from telemetry.core.messages import (
    MAX_FUTURE_MS,
    MessageRejectedError,
    ParsedMessage,
    Reading,
    decode_json,
    parse_message,
    parse_message_carefully,
    parse_message_json,
)
from telemetry.core.rules import Rule, RuleSet, Side
from tests.strategies import (
    NOW_MS,
    invalid_thing_names,
    iso_timestamps_with_ms,
    json_texts,
    json_values,
    messages,
    mutated_messages,
    thing_names,
    timestamps_with_ms,
)


def message(*data: Any, **envelope: Any) -> dict[str, Any]:
    return {"deviceId": "pump-17", **envelope, "data": list(data)}


def reading(**fields: Any) -> dict[str, Any]:
    return {"sensorId": "temp-1", "value": 81.2, **fields}


def only_reading(parsed: ParsedMessage) -> Reading:
    assert parsed.rejections == []
    assert len(parsed.readings) == 1
    return parsed.readings[0]


def only_rejection_field(parsed: ParsedMessage) -> str:
    assert parsed.readings == []
    assert len(parsed.rejections) == 1
    return parsed.rejections[0].field


def parse_or_rejection(raw: Any, now_ms: int) -> ParsedMessage | MessageRejectedError:
    """The parse, or the project's own error; anything else propagates and fails."""
    try:
        return parse_message(raw, now_ms)
    except MessageRejectedError as exc:
        return exc


def rejected(raw: Any) -> MessageRejectedError:
    with pytest.raises(MessageRejectedError) as caught:
        parse_message(raw, NOW_MS)
    return caught.value


# --- the seed's example -----------------------------------------------------


def test_seed_example_message_becomes_one_reading_with_every_field() -> None:
    # Given the message of the seed document
    raw = {
        "deviceId": "pump-17",
        "timestamp": 1764237600000,
        "data": [
            {
                "sensorId": "temp-1",
                "type": "temperature",
                "value": 81.2,
                "unit": "C",
                "location": "line-3",
                "warningThreshold": 75,
                "criticalThreshold": 90,
            }
        ],
    }

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then every field lands on the reading, the device from the envelope
    assert parsed.device_id == "pump-17"
    assert only_reading(parsed) == Reading(
        device_id="pump-17",
        sensor_id="temp-1",
        value=81.2,
        time_ms=1764237600000,
        type="temperature",
        unit="C",
        location="line-3",
        warning_threshold=75.0,
        critical_threshold=90.0,
    )


# --- deviceId ----------------------------------------------------------------


@pytest.mark.parametrize(
    "device_id", ["a", "pump-17", "Plant_3:line-2:pump-17", "x" * 128, "0", "-_:"]
)
def test_device_id_in_thing_name_charset_is_accepted(device_id: str) -> None:
    # Given a message from a device named within the thing-name charset
    raw = message(reading(), deviceId=device_id)

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then its readings carry that device id
    assert only_reading(parsed).device_id == device_id


@pytest.mark.parametrize(
    "device_id",
    ["", "pump 17", "pump/17", "pump#17", "pümp", "x" * 129, "pump-17\n", 17, ["pump-17"]],
)
def test_device_id_outside_thing_name_rules_rejects_whole_message(device_id: Any) -> None:
    # Given a message whose deviceId is not a valid thing name
    raw = message(reading(), deviceId=device_id)

    # When it is parsed
    error = rejected(raw)

    # Then the whole message is rejected, naming deviceId
    assert error.rejection.field == "deviceId"
    assert error.rejection.code in {"invalid_format", "wrong_type"}
    assert error.rejection.payload == raw


@given(device_id=thing_names())
def test_any_thing_name_is_a_valid_device_id(device_id: str) -> None:
    # Given a message from any valid thing name
    raw = message(reading(), deviceId=device_id)

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then it is accepted
    assert only_reading(parsed).device_id == device_id


@given(device_id=invalid_thing_names())
def test_no_invalid_thing_name_passes_as_device_id(device_id: str) -> None:
    # Given a message from an invalid thing name
    raw = message(reading(), deviceId=device_id)

    # When it is parsed
    error = rejected(raw)

    # Then the rejection names deviceId
    assert error.rejection.field == "deviceId"


# --- timestamps --------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "expected_ms"),
    [
        (1764237600000, 1764237600000),
        (1764237600000.0, 1764237600000),
        ("2025-11-27T10:00:00Z", 1764237600000),
        ("2025-11-27T10:00:00.250Z", 1764237600250),
        ("2025-11-27T11:00:00+01:00", 1764237600000),
        ("2025-11-27T10:00:00", 1764237600000),
        ("2025-11-27T10:00:00+00:00", 1764237600000),
    ],
)
def test_message_timestamp_as_epoch_ms_or_iso_8601(wire: Any, expected_ms: int) -> None:
    # Given a message timestamp in one of the accepted spellings
    raw = message(reading(), timestamp=wire)

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then the reading takes that instant, naive ISO taken as UTC
    assert only_reading(parsed).time_ms == expected_ms


@given(wire_and_ms=timestamps_with_ms())
def test_any_accepted_timestamp_spelling_gives_its_instant(wire_and_ms: tuple[Any, int]) -> None:
    # Given a reading timestamp, epoch ms or ISO-8601, not in the future
    wire, expected_ms = wire_and_ms

    # When it is parsed
    parsed = parse_message(message(reading(timestamp=wire)), NOW_MS)

    # Then the reading is at that millisecond
    assert only_reading(parsed).time_ms == expected_ms


@pytest.mark.parametrize(
    ("wire", "expected_ms"),
    [("2004-05-01T10:55:04.422Z", 1083408904422), ("2004-03-02T10:14:08.820Z", 1078222448820)],
)
def test_iso_timestamp_is_exact_to_the_millisecond(wire: str, expected_ms: int) -> None:
    # Given ISO-8601 times that a float computation puts 1 ms early
    raw = message(reading(timestamp=wire))

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then the reading is at exactly that millisecond
    assert only_reading(parsed).time_ms == expected_ms


@given(wire_and_ms=iso_timestamps_with_ms(st.integers(min_value=0, max_value=4_102_444_800_000)))
def test_iso_timestamps_since_1970_parse_exactly(wire_and_ms: tuple[str, int]) -> None:
    # Given any millisecond from 1970 to 2100, spelt in ISO-8601
    wire, expected_ms = wire_and_ms

    # When a reading stamped with it is parsed (the clock at that instant)
    parsed = parse_message(message(reading(timestamp=wire)), expected_ms)

    # Then no millisecond is lost
    assert only_reading(parsed).time_ms == expected_ms


def test_reading_timestamp_wins_over_message_timestamp() -> None:
    # Given a reading with its own timestamp in a message with another
    raw = message(
        reading(timestamp=NOW_MS - 3000), timestamp=NOW_MS - 2000, receivedAt=NOW_MS - 1000
    )

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then the reading's own timestamp is used
    assert only_reading(parsed).time_ms == NOW_MS - 3000


def test_message_timestamp_wins_over_received_at() -> None:
    # Given a message with both a timestamp and the rule's receivedAt
    raw = message(reading(), receivedAt=NOW_MS - 1000, timestamp=NOW_MS - 2000)

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then the message timestamp is used
    assert only_reading(parsed).time_ms == NOW_MS - 2000


def test_received_at_is_used_without_any_timestamp() -> None:
    # Given a message with only receivedAt
    raw = message(reading(), receivedAt=NOW_MS - 1000)

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then receivedAt is the reading time
    assert only_reading(parsed).time_ms == NOW_MS - 1000


def test_now_is_used_without_any_time_at_all() -> None:
    # Given a message with no timestamp anywhere
    raw = message(reading())

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then the injected clock gives the time
    assert only_reading(parsed).time_ms == NOW_MS


def test_null_timestamps_count_as_absent() -> None:
    # Given explicit nulls for the message and reading timestamps
    raw = message(reading(timestamp=None), timestamp=None, receivedAt=NOW_MS - 1000)

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then they fall through to receivedAt
    assert only_reading(parsed).time_ms == NOW_MS - 1000


@pytest.mark.parametrize(
    "wire",
    ["yesterday", "", "2025-13-01T00:00:00Z", True, False, 1.5, -1, float("nan"), {}, [1]],
)
def test_unusable_message_timestamp_rejects_whole_message(wire: Any) -> None:
    # Given a message whose timestamp is present but unusable
    raw = message(reading(), reading(sensorId="temp-2"), timestamp=wire)

    # When it is parsed
    error = rejected(raw)

    # Then the whole message is rejected, naming the timestamp
    assert error.rejection.field == "timestamp"
    assert error.rejection.code == "invalid_timestamp"
    assert error.rejection.device_id == "pump-17"


@pytest.mark.parametrize(
    "wire",
    [
        "soon",
        True,
        1.5,
        -5,
        "1969-12-31T23:59:59Z",
        "9999-12-31T23:59:59.999-14:00",
        10**20,
    ],
)
def test_unusable_reading_timestamp_rejects_only_that_reading(wire: Any) -> None:
    # Given a good reading beside one whose own timestamp is unusable
    raw = message(reading(), reading(sensorId="temp-2", timestamp=wire))

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then the good one is kept and the bad one names its timestamp
    assert [r.sensor_id for r in parsed.readings] == ["temp-1"]
    assert [r.field for r in parsed.rejections] == ["data[1].timestamp"]


def test_reading_exactly_fifteen_minutes_ahead_is_accepted() -> None:
    # Given a reading stamped exactly 15 minutes after now
    raw = message(reading(timestamp=NOW_MS + MAX_FUTURE_MS))

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then it is still valid
    assert only_reading(parsed).time_ms == NOW_MS + 15 * 60 * 1000


@pytest.mark.parametrize("ahead_ms", [MAX_FUTURE_MS + 1, 16 * 60 * 1000, 365 * 86_400_000])
def test_reading_more_than_fifteen_minutes_ahead_is_invalid(ahead_ms: int) -> None:
    # Given a reading stamped more than 15 minutes after now
    raw = message(reading(timestamp=NOW_MS + ahead_ms), reading(sensorId="temp-2"))

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then that reading is rejected as in the future, its sibling kept
    assert [r.sensor_id for r in parsed.readings] == ["temp-2"]
    assert [(r.field, r.code) for r in parsed.rejections] == [("data[0].timestamp", "in_future")]


def test_message_timestamp_in_the_future_invalidates_the_readings_using_it() -> None:
    # Given a message stamped an hour ahead, one reading with its own good time
    raw = message(
        reading(), reading(sensorId="temp-2", timestamp=NOW_MS), timestamp=NOW_MS + 3_600_000
    )

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then only the reading relying on the message time is refused, naming the
    # message's timestamp, with that time in its payload
    assert [r.sensor_id for r in parsed.readings] == ["temp-2"]
    assert [(r.field, r.code) for r in parsed.rejections] == [("timestamp", "in_future")]
    assert parsed.rejections[0].payload == {**reading(), "timestamp": NOW_MS + 3_600_000}


# --- value -------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -40, 81.2, 1e300, -1e-300, 2**53])
def test_finite_numbers_are_valid_values(value: float) -> None:
    # Given a reading with a finite number
    raw = message(reading(value=value))

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then the value is kept as a float
    assert only_reading(parsed).value == float(value)


@pytest.mark.parametrize(
    "value",
    ["81.2", "", True, False, float("nan"), float("inf"), float("-inf"), None, [81.2], {"v": 1}],
)
def test_non_finite_or_non_numeric_value_is_rejected_naming_value(value: Any) -> None:
    # Given a reading whose value is not a finite number
    raw = message(reading(value=value))

    # When it is parsed
    field = only_rejection_field(parse_message(raw, NOW_MS))

    # Then the rejection names data[0].value
    assert field == "data[0].value"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_json_non_finite_literals_are_rejected(literal: str) -> None:
    # Given a payload as json.loads reads it, NaN and Infinity included
    raw = json.loads(
        '{"deviceId": "pump-17", "data": [{"sensorId": "a", "value": 1},'
        f' {{"sensorId": "b", "value": {literal}}}]}}'
    )

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then only the non-finite reading is rejected, with a code saying so
    assert [r.sensor_id for r in parsed.readings] == ["a"]
    assert [(r.field, r.code) for r in parsed.rejections] == [("data[1].value", "not_finite")]


def test_missing_value_is_rejected_naming_value() -> None:
    # Given a reading with no value
    raw = message({"sensorId": "temp-1"})

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then the rejection names the missing field
    assert [(r.field, r.code) for r in parsed.rejections] == [("data[0].value", "missing")]


# --- sensorId and labels ------------------------------------------------------


def test_missing_sensor_id_is_rejected_naming_sensor_id() -> None:
    # Given a reading with no sensorId
    raw = message({"value": 1.0})

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then the rejection names data[0].sensorId as missing
    assert [(r.field, r.code) for r in parsed.rejections] == [("data[0].sensorId", "missing")]


@given(sensor_id=invalid_thing_names())
def test_sensor_id_follows_the_device_id_charset(sensor_id: str) -> None:
    # Given a reading whose sensorId is not a valid thing name
    raw = message(reading(sensorId=sensor_id))

    # When it is parsed
    field = only_rejection_field(parse_message(raw, NOW_MS))

    # Then it is rejected naming sensorId
    assert field == "data[0].sensorId"


@pytest.mark.parametrize("sensor_id", [17, None, ["temp-1"]])
def test_non_string_sensor_id_is_rejected(sensor_id: Any) -> None:
    # Given a reading whose sensorId is not a string
    raw = message(reading(sensorId=sensor_id))

    # When it is parsed
    field = only_rejection_field(parse_message(raw, NOW_MS))

    # Then the rejection names sensorId
    assert field == "data[0].sensorId"


@pytest.mark.parametrize("label", ["type", "unit", "location"])
def test_empty_label_counts_as_absent(label: str) -> None:
    # Given a reading with an empty type, unit or location
    raw = message(reading(**{label: ""}))

    # When it is parsed
    parsed_reading = only_reading(parse_message(raw, NOW_MS))

    # Then the label is absent, not an empty dimension
    assert getattr(parsed_reading, label) is None


@pytest.mark.parametrize("label", ["type", "unit", "location"])
def test_overlong_or_non_string_label_is_rejected(label: str) -> None:
    # Given readings with a 257-character label and a numeric one
    raw = message(reading(**{label: "x" * 257}), reading(**{label: 5}))

    # When they are parsed
    parsed = parse_message(raw, NOW_MS)

    # Then both are rejected, naming the label
    assert parsed.readings == []
    assert [r.field for r in parsed.rejections] == [f"data[0].{label}", f"data[1].{label}"]


def test_label_of_256_characters_is_accepted() -> None:
    # Given a reading whose location is exactly at the bound
    raw = message(reading(location="l" * 256))

    # When it is parsed
    parsed_reading = only_reading(parse_message(raw, NOW_MS))

    # Then it is kept whole
    assert parsed_reading.location == "l" * 256


def test_unknown_reading_fields_are_ignored() -> None:
    # Given a reading with a field the format does not know
    raw = message(reading(firmware="1.2.3"))

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then the reading is accepted all the same
    assert only_reading(parsed).sensor_id == "temp-1"


# --- device thresholds --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("warningThreshold", "75"),
        ("warningThreshold", float("nan")),
        ("criticalThreshold", float("inf")),
        ("criticalThreshold", True),
    ],
)
def test_thresholds_must_be_finite_numbers(name: str, bad: Any) -> None:
    # Given a reading carrying a threshold that is not a finite number
    raw = message(reading(**{name: bad}))

    # When it is parsed
    field = only_rejection_field(parse_message(raw, NOW_MS))

    # Then the rejection names that threshold
    assert field == f"data[0].{name}"


@pytest.mark.parametrize(("warning", "critical"), [(90, 75), (80, 80)])
def test_warning_not_below_critical_is_stored_but_reported(warning: float, critical: float) -> None:
    # Given a reading whose own warning threshold is not below its critical one
    raw = message(reading(value=95.0, warningThreshold=warning, criticalThreshold=critical))

    # When it is parsed and evaluated
    parsed_reading = only_reading(parse_message(raw, NOW_MS))
    evaluation = evaluate([parsed_reading], {}, RuleSet([]))

    # Then it is kept for storage, reported with the reason, and not evaluated
    problem = parsed_reading.device_threshold_problem
    assert problem is not None
    assert "warningThreshold" in problem
    assert "criticalThreshold" in problem
    assert evaluation.not_evaluated == [(parsed_reading, problem)]
    assert evaluation.transitions == []
    assert evaluation.evaluated == 0
    assert evaluation.state == {}


def test_incoherent_device_thresholds_skip_configured_rules_too() -> None:
    # Given a rule matching the sensor and a reading with incoherent thresholds
    rules = RuleSet([Rule("temperature-high", (Side("above", 75.0, 90.0),))])
    raw = message(reading(value=99.0, warningThreshold=90, criticalThreshold=75))
    parsed_reading = only_reading(parse_message(raw, NOW_MS))

    # When it is evaluated
    evaluation = evaluate([parsed_reading], {}, rules)

    # Then it is not evaluated against anything
    assert [r for r, _ in evaluation.not_evaluated] == [parsed_reading]
    assert evaluation.transitions == []


def test_coherent_device_thresholds_have_no_problem() -> None:
    # Given a reading with warning below critical
    raw = message(reading(warningThreshold=75, criticalThreshold=90))

    # When it is parsed
    parsed_reading = only_reading(parse_message(raw, NOW_MS))

    # Then nothing is reported about its thresholds
    assert parsed_reading.device_threshold_problem is None


# --- per-reading validation ---------------------------------------------------


def test_bad_reading_never_discards_good_siblings() -> None:
    # Given good readings around bad ones
    raw = message(
        reading(sensorId="a"),
        reading(sensorId="b", value="hot"),
        "not a reading",
        reading(sensorId="d"),
    )

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then every good reading is kept and every bad one names its field
    assert [r.sensor_id for r in parsed.readings] == ["a", "d"]
    assert [r.field for r in parsed.rejections] == ["data[1].value", "data[2]"]


def test_rejection_carries_reason_code_payload_and_device() -> None:
    # Given a message with one bad reading
    bad = reading(value=None)
    raw = message(reading(), bad)

    # When it is parsed
    rejection = parse_message(raw, NOW_MS).rejections[0]

    # Then the rejection is machine-readable and keeps the original reading
    as_dict = rejection.as_dict()
    assert as_dict["field"] == "data[1].value"
    assert as_dict["code"] == rejection.code
    assert as_dict["reason"].startswith(f"{rejection.code}: data[1].value: ")
    assert as_dict["deviceId"] == "pump-17"
    assert as_dict["payload"] == bad
    json.dumps(as_dict)


def test_empty_data_list_is_a_message_with_no_readings() -> None:
    # Given a message with an empty data list
    raw = message()

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then nothing is accepted and nothing is rejected
    assert (parsed.readings, parsed.rejections) == ([], [])


# --- whole-message rejections -------------------------------------------------


@pytest.mark.parametrize("raw", [None, [], ["pump-17"], "pump-17", 17, 1.5, True])
def test_message_that_is_not_an_object_is_rejected(raw: Any) -> None:
    # Given a payload that is not a JSON object
    # When it is parsed
    error = rejected(raw)

    # Then the rejection names the whole document
    assert (error.rejection.field, error.rejection.code) == ("$", "not_an_object")


def test_message_without_device_id_is_rejected() -> None:
    # Given a message with no deviceId
    raw = {"data": [reading()]}

    # When it is parsed
    error = rejected(raw)

    # Then the rejection names deviceId as missing and keeps the payload
    assert (error.rejection.field, error.rejection.code) == ("deviceId", "missing")
    assert error.rejection.payload == raw
    assert "deviceId" in str(error)


@pytest.mark.parametrize(
    ("data", "code"), [(None, "missing"), ({"sensorId": "a"}, "wrong_type"), ("x", "wrong_type")]
)
def test_message_without_data_list_is_rejected(data: Any, code: str) -> None:
    # Given a message whose data is absent or not a list
    raw: dict[str, Any] = {"deviceId": "pump-17"}
    if data is not None:
        raw["data"] = data

    # When it is parsed
    error = rejected(raw)

    # Then the rejection names data
    assert (error.rejection.field, error.rejection.code) == ("data", code)
    assert error.rejection.device_id == "pump-17"


# --- properties ---------------------------------------------------------------


@given(raw=messages())
def test_valid_messages_are_accepted_whole(raw: dict[str, Any]) -> None:
    # Given any valid message
    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then every reading is accepted, in order, with the envelope's device
    assert parsed.rejections == []
    assert [r.sensor_id for r in parsed.readings] == [d["sensorId"] for d in raw["data"]]
    assert all(r.device_id == raw["deviceId"] for r in parsed.readings)


@given(raw=json_values())
def test_arbitrary_json_raises_nothing_but_message_rejected(raw: Any) -> None:
    # Given any JSON value at all
    # When it is parsed
    outcome = parse_or_rejection(raw, NOW_MS)

    # Then it is either a whole-message rejection naming a field, or every item is accounted for
    if isinstance(outcome, MessageRejectedError):
        assert outcome.rejection.field
    else:
        assert len(outcome.readings) + len(outcome.rejections) == len(raw["data"])


@given(raw=mutated_messages(), now_ms=st.sampled_from([NOW_MS, 0, 2**41]))
def test_mutated_messages_raise_nothing_but_message_rejected(raw: Any, now_ms: int) -> None:
    # Given a valid message with some fields broken or removed
    before = json.dumps(raw)

    # When it is parsed
    outcome = parse_or_rejection(raw, now_ms)

    # Then the input is untouched, and the message is either rejected whole naming a
    # top-level field, or each item is a reading or a rejection naming its index
    assert json.dumps(raw) == before
    if isinstance(outcome, MessageRejectedError):
        assert outcome.rejection.field in {"$", "deviceId", "data", "timestamp", "receivedAt"}
        return
    assert len(outcome.readings) + len(outcome.rejections) == len(raw["data"])
    for rejection in outcome.rejections:
        if rejection.code == "in_future" and not rejection.field.startswith("data["):
            assert rejection.field in {"timestamp", "receivedAt"}  # the message time, too late
            continue
        assert rejection.field.startswith("data[")
        assert rejection.code


# --- one compiled pass, one answer -------------------------------------------


def outcome_of(parse: Any, *args: Any) -> str:
    """A parse's whole answer, NaN included, as comparable text: the readings,
    every rejection with its reason, code, field and payload, or the one
    rejection of the whole message."""
    try:
        return repr(parse(*args))
    except MessageRejectedError as exc:
        return f"rejected whole: {exc.rejection!r}"


def careful_of_text(raw: bytes, now_ms: int) -> ParsedMessage:
    return parse_message_carefully(decode_json(raw), now_ms)


@given(
    raw=st.one_of(messages(), mutated_messages(), json_values()),
    now_ms=st.sampled_from([NOW_MS, 0, 2**41]),
)
def test_the_fast_path_and_the_careful_path_agree_on_any_value(raw: Any, now_ms: int) -> None:
    # Given any decoded value, a message or not
    # When it is parsed by the compiled pass and field by field
    fast = outcome_of(parse_message, raw, now_ms)
    careful = outcome_of(parse_message_carefully, raw, now_ms)

    # Then the answers are the same: readings, rejections, reasons, fields and payloads
    assert fast == careful


@given(raw=json_texts(), now_ms=st.sampled_from([NOW_MS, 0, 2**41]))
def test_the_fast_path_from_bytes_agrees_with_the_careful_path_on_any_text(
    raw: bytes, now_ms: int
) -> None:
    # Given the bytes of a record, however hostile
    # When they are validated in one pass from the bytes, and decoded then checked field by field
    fast = outcome_of(parse_message_json, raw, now_ms)
    careful = outcome_of(careful_of_text, raw, now_ms)

    # Then both give the same answer, and nothing but a parse or a rejection comes out
    assert fast == careful


@given(raw=messages())
def test_a_message_read_from_its_json_is_the_message_read_as_an_object(raw: Any) -> None:
    # Given a valid message and its JSON text
    text = json.dumps(raw).encode()

    # When each is parsed
    # Then they give the same readings
    assert outcome_of(parse_message_json, text, NOW_MS) == outcome_of(parse_message, raw, NOW_MS)


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        (b"{", "EOF while parsing"),
        (b"[" * 600 + b"]" * 600, "recursion limit exceeded"),
        (b'{"deviceId": "pump-17", "data": [], "n": 1' + b"0" * 5000 + b"}", "number out of range"),
        (b'{"deviceId": "pump-\xff"}', "invalid"),
        (b'{"deviceId": "\\ud800"}', "hex escape"),
    ],
)
def test_text_that_is_not_json_is_rejected_as_not_json_with_the_text(
    text: bytes, detail: str
) -> None:
    # Given text that is not JSON the function can hold
    # When it is parsed
    with pytest.raises(MessageRejectedError) as caught:
        parse_message_json(text, NOW_MS)

    # Then the rejection says so, and keeps the text as its payload
    rejection = caught.value.rejection
    assert (rejection.field, rejection.code) == ("$", "not_json")
    assert detail in rejection.detail
    assert rejection.payload == text.decode("utf-8", "replace")


def test_a_key_given_twice_counts_once_with_its_last_value() -> None:
    # Given a reading whose value is given twice, the last one good
    text = b'{"deviceId": "pump-17", "data": [{"sensorId": "t", "value": "hot", "value": 81.5}]}'

    # When it is parsed, Then the last value stands, as JSON parsers agree
    assert only_reading(parse_message_json(text, NOW_MS)).value == 81.5


def test_deep_nesting_in_a_decoded_message_is_rejected_with_its_field_not_a_crash() -> None:
    # Given a decoded message (a direct invocation) with a value nested 5,000 deep
    deep: Any = 1.0
    for _ in range(5_000):
        deep = [deep]
    raw = message(reading(), reading(sensorId="temp-2", value=deep), firmware=deep)

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then the deep value is one rejection naming its field; the sibling and the
    # ignored deep field change nothing
    assert [r.sensor_id for r in parsed.readings] == ["temp-1"]
    assert [(r.field, r.code) for r in parsed.rejections] == [("data[1].value", "wrong_type")]


def test_an_integer_beyond_pythons_conversion_limit_is_a_rejection_not_an_error() -> None:
    # Given a decoded reading whose value has 5,000 digits
    raw = message(reading(value=10**5000), reading(sensorId="temp-2"))

    # When it is parsed
    parsed = parse_message(raw, NOW_MS)

    # Then it is rejected naming its value; its sibling is kept
    assert [r.sensor_id for r in parsed.readings] == ["temp-2"]
    assert [r.field for r in parsed.rejections] == ["data[0].value"]


def test_received_at_and_the_message_timestamp_are_carried_when_valid() -> None:
    # Given a message with the rule's receivedAt and the device's timestamp
    raw = message(reading(), timestamp=NOW_MS - 2000, receivedAt=NOW_MS - 1000)

    # When it is parsed, by either path
    for parsed in (parse_message(raw, NOW_MS), parse_message_json(json.dumps(raw), NOW_MS)):
        # Then both times come with the readings
        assert (parsed.received_ms, parsed.sent_ms) == (NOW_MS - 1000, NOW_MS - 2000)
    assert parse_message(message(reading()), NOW_MS).received_ms is None


def test_an_unusable_received_at_rejects_the_message_even_beside_a_good_timestamp() -> None:
    # Given a good message timestamp and a receivedAt that is not a time
    raw = message(reading(), timestamp=NOW_MS, receivedAt="soon")

    # When it is parsed
    error = rejected(raw)

    # Then the message is rejected naming receivedAt (no path ignores it)
    assert (error.rejection.field, error.rejection.code) == ("receivedAt", "invalid_timestamp")


def test_received_at_too_far_ahead_is_named_when_it_gave_the_time() -> None:
    # Given a message with no timestamp of its own and receivedAt an hour ahead
    raw = message(reading(), receivedAt=NOW_MS + 3_600_000)

    # When it is parsed
    [rejection] = parse_message(raw, NOW_MS).rejections

    # Then the rejection names receivedAt and its payload carries that time
    assert (rejection.field, rejection.code) == ("receivedAt", "in_future")
    assert rejection.payload == {**reading(), "receivedAt": NOW_MS + 3_600_000}


def test_a_parsed_message_is_taken_as_it_is() -> None:
    # Given a message already validated (a stream record, from its bytes)
    parsed = parse_message_json(json.dumps(message(reading())), NOW_MS)

    # When the pipeline parses it again, Then it is the same object, not re-validated
    assert parse_message(parsed, NOW_MS) is parsed
