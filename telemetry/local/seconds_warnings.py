"""`telemetry backtest --warnings FILE`: every timestamp that looks like epoch
seconds, with its file and line, as JSON lines.

Stderr shows the first lines with such timestamps and counts the rest; a history
written in seconds has them on every line, and this file is where each one can be
found. An entry has the fields of a rejections file's entry (docs/cli.md) with
`code` `epoch_seconds`, and `replayed`: whether what the timestamp dates (the
message, or the one reading) was replayed, as milliseconds, or rejected (then it
is also in the rejections file, with the same warning).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final, TextIO

from telemetry.backtest import RejectedLine, strict_json
from telemetry.core.messages import Rejection

if TYPE_CHECKING:
    from telemetry.backtest import SecondsWarning
    from telemetry.core.timestamps import SecondsSuspect

CODE: Final = "epoch_seconds"
_READING: Final = re.compile(r"^data\[(\d+)\]")


def entries(warning: SecondsWarning) -> list[dict[str, Any]]:
    """One entry per suspect timestamp of the line, in the line's order: the
    rejections file's entry (`RejectedLine.to_json`) of an `epoch_seconds`
    rejection, and `replayed`."""
    message = warning.message if isinstance(warning.message, dict) else {}
    device = message.get("deviceId")
    if warning.whole:  # as the rejection names it: only a valid one
        device = warning.rejections[0].device_id if warning.rejections else None
    return [
        RejectedLine(
            warning.source,
            warning.line,
            Rejection(
                field=suspect.field,
                code=CODE,
                detail=suspect.warning,
                payload=_dated(message, suspect),
                device_id=device if isinstance(device, str) else None,
            ),
            warning=suspect.warning,
        ).to_json()
        | {"replayed": _replayed(warning, suspect)}
        for suspect in warning.suspects
    ]


def _dated(message: dict[str, Any], suspect: SecondsSuspect) -> Any:
    """What the timestamp dates: its reading, or the whole message."""
    found = _READING.match(suspect.field)
    if found is None:
        return message
    return message["data"][int(found.group(1))]


def _replayed(warning: SecondsWarning, suspect: SecondsSuspect) -> bool:
    if warning.whole:
        return False
    found = _READING.match(suspect.field)
    if found is None:
        return True
    reading = found.group(0)
    return not any(_within(r, reading) for r in warning.rejections)


def _within(rejection: Rejection, reading: str) -> bool:
    return rejection.field == reading or rejection.field.startswith((reading + ".", reading + "["))


class SecondsWarningWriter:
    """Writes every line with epoch-seconds timestamps to a stream (`entries`)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.lines = 0

    def __call__(self, warning: SecondsWarning) -> None:
        self.lines += 1
        for entry in entries(warning):
            self._stream.write(strict_json(entry) + "\n")
