"""Timestamps that are plainly epoch seconds: found, named, and nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry.core.messages import iso_utc
from telemetry.core.timestamps import MILLENNIUM_MS, looks_like_seconds, seconds_suspects
from tests.strategies import (
    epoch_seconds,
    json_values,
    messages,
    messages_with_seconds,
    mutated_messages,
)


def value_at(message: dict[str, Any], field: str) -> Any:
    if field.startswith("data["):
        return message["data"][int(field[5 : field.index("]")])]["timestamp"]
    return message[field]


@given(messages())
def test_a_message_in_milliseconds_has_no_suspect(message: dict[str, Any]) -> None:
    # Given a valid message whose times are recent epoch ms or ISO-8601
    # When it is looked at, Then nothing looks like epoch seconds
    assert seconds_suspects(message) == []


@given(messages_with_seconds())
def test_every_time_in_seconds_is_named_by_its_field(
    case: tuple[dict[str, Any], set[str]],
) -> None:
    # Given a message with some of its times in epoch seconds
    message, replaced = case

    # When it is looked at
    suspects = seconds_suspects(message)

    # Then exactly the replaced fields are named, in the message's order, with their values
    assert {s.field for s in suspects} == replaced
    assert len(suspects) == len(replaced)
    assert all(s.value == value_at(message, s.field) for s in suspects)
    order = ["receivedAt", "timestamp", *(f"data[{i}].timestamp" for i in range(99))]
    assert [s.field for s in suspects] == sorted(replaced, key=order.index)


@given(st.one_of(mutated_messages(), json_values()))
def test_any_json_gives_suspects_that_are_numbers_before_2001_and_nothing_else(
    message: Any,
) -> None:
    # Given anything a line may decode to
    # When it is looked at (it never raises)
    suspects = seconds_suspects(message)

    # Then each suspect is a number, not a boolean, from 0 to before 2001 as ms
    for suspect in suspects:
        value = value_at(message, suspect.field)
        assert type(value) in {int, float}
        assert 0 <= value < MILLENNIUM_MS


@given(epoch_seconds())
def test_the_warning_says_both_readings_of_the_number(seconds: float) -> None:
    # Given a message timestamp in epoch seconds
    [suspect] = seconds_suspects({"timestamp": seconds, "data": []})

    # When it is put into words
    warning = suspect.warning

    # Then it names the field and the number, the 1970 instant it reads as, and the
    # instant it likely meant
    assert warning.startswith(f"timestamp {seconds!r} read as epoch milliseconds is ")
    assert iso_utc(int(seconds)) in warning
    assert iso_utc(int(seconds * 1000)) in warning
    assert "epoch seconds" in warning


@pytest.mark.parametrize(
    ("raw", "suspect"),
    [
        (1_764_237_600, True),  # 2025-11-27T10:00:00Z in seconds
        (1_764_237_600.5, True),
        (0, True),
        (MILLENNIUM_MS - 1, True),
        (MILLENNIUM_MS, False),  # 2001-01-01 in ms: a clock
        (1_764_237_600_000, False),
        (-1, False),  # invalid, and validation says so
        (True, False),
        (float("nan"), False),
        ("1764237600", False),  # not a number: validation's own reason covers it
        (None, False),
    ],
)
def test_what_looks_like_seconds(raw: Any, *, suspect: bool) -> None:
    # Given a raw timestamp, Then it is a suspect exactly when a number before 2001 as ms
    assert looks_like_seconds(raw) is suspect


@pytest.mark.parametrize("value", [0, 42, 978_307_199, 978_307_199.5])
def test_a_number_too_small_to_be_seconds_since_2001_is_only_before_2001(
    value: float,
) -> None:
    # Given a timestamp that, even as seconds, is before 2001 (0, a typo, a counter)
    [suspect] = seconds_suspects({"timestamp": value, "data": []})

    # When it is put into words
    warning = suspect.warning

    # Then it says what it reads as, and that it is before 2001, and guesses nothing
    assert warning == (
        f"timestamp {value!r} read as epoch milliseconds is {iso_utc(int(value))}, "
        "before 2001. Timestamps are epoch milliseconds or ISO-8601"
    )
    assert "epoch seconds" not in warning


def test_the_first_second_of_2001_is_guessed_as_seconds() -> None:
    # Given 2001-01-01T00:00:00Z in epoch seconds, When it is put into words
    [suspect] = seconds_suspects({"timestamp": MILLENNIUM_MS // 1000, "data": []})

    # Then the guess is that instant
    assert suspect.warning.endswith(
        "before 2001: epoch seconds (2001-01-01T00:00:00.000Z)? "
        "Timestamps are epoch milliseconds or ISO-8601"
    )
