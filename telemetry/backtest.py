"""Replay recorded messages through rules, without AWS: tune rules on history.

Input is JSON Lines: one message per line, as devices send it (what the IoT
rule hands the function); a JSON array of messages is refused as such. Every
message is validated as the function would; the readings are then evaluated
with the same alert state machine, carrying state per device, and the
transitions that would have fired come out in event-time order.

- `event` order (default): each device's readings are evaluated in reading
  time, whatever the order of the lines: what the rules decide on this data.
- `arrival` order: lines are taken in file order, one invocation each, as
  the function would receive them: a reading older than the last change of
  its alert is late, stored but never changing anything.

The validation clock is the later of the wall clock and the latest time in
the input, so that history is never "in the future". A message with no time
of its own takes that clock.

Summary per rule: episodes (RAISED to RESOLVED, or still open at the end of
the input), how many reached CRITICAL, time in alert (summed over episodes;
an open one counts until the last reading of the input), and flaps: episodes
raised within the flap window (default 5 minutes) after the previous episode
of the same device, sensor and rule resolved. That on-off-on toggling is the
noise that a wider hysteresis or a `for` should remove.

Rules with `nodata` also report the no-data episodes the history shows: gaps
in arrival (the lines' receivedAt, or the readings' own time when a line has
none) longer than the window, raised when the window ran out and resolved by
the next reading.

Maintenance windows are judged in event time: what a window holds is listed,
muted (`suppressed: maintenance`), and its end reports the net change once.

Rules with `flapping` (or a default in `notifications`) go through the same
flapping watch as the function: a chattering key's changes are all listed,
those held back marked `suppressed`, with its FLAPPING and the STABLE an ideal
sweep would send at the end of each quiet period (up to the last reading).
"""

from __future__ import annotations

import gc
import json
import math
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from heapq import heappop, heappush
from json.encoder import encode_basestring_ascii as _json_text
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, TextIO

from telemetry.core.alerts import (
    NODATA,
    AlertState,
    Evaluation,
    Severity,
    Silence,
    StateKey,
    Status,
    Transition,
    evaluate,
)
from telemetry.core.flapping import due_ms, kind_of, quieted, watch
from telemetry.core.load import AlarmLoad
from telemetry.core.messages import (
    LATEST_MS,
    MessageRejectedError,
    ParsedMessage,
    Reading,
    Rejection,
    decode_json,
    iso_utc,
    parse_message,
    parse_message_json,
    parse_time_ms,
)
from telemetry.core.rules import RuleSet
from telemetry.core.silence import gap_raised, gap_resolved
from telemetry.core.timestamps import MILLENNIUM_MS, SecondsSuspect, seconds_suspects
from telemetry.terminal import (
    TRANSITION_COLUMNS,
    TRANSITION_FOLDED_FIRST,
    Screen,
    duration_text,
    plural,
    render_transition_table,
    time_text,
    transition_row,
)

if TYPE_CHECKING:
    import argparse

STDIN: Final = "-"
MAX_BAD_LINES_SHOWN: Final = 20


class InputError(Exception):
    """An input file cannot be read at all."""


@dataclass(frozen=True, slots=True)
class BadLine:
    source: str
    line: int
    reason: str


class BadLineReporter:
    """Reports skipped lines on a stream, one line each, up to a limit."""

    def __init__(self, stream: TextIO, limit: int = MAX_BAD_LINES_SHOWN) -> None:
        self._stream = stream
        self._limit = limit
        self.count = 0

    def __call__(self, bad: BadLine) -> None:
        self.count += 1
        if self.count <= self._limit:
            print(f"{bad.source}:{bad.line}: skipped: {bad.reason}", file=self._stream)
        elif self.count == self._limit + 1:
            print("(further bad lines are counted, not shown)", file=self._stream)


@dataclass(frozen=True, slots=True)
class RejectedLine:
    """A line the replay did not take, or one reading of it: where it is and why.

    `warning` says when a timestamp the rejection names looks like epoch seconds.
    """

    source: str
    line: int
    rejection: Rejection
    warning: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The dead-letter item's fields, with the file and line for its source."""
        r = self.rejection
        return {
            "file": self.source,
            "line": self.line,
            "code": r.code,
            "field": r.field,
            "reason": r.reason,
            "detail": r.detail,
            "deviceId": r.device_id,
            "payload": r.payload,
            "warning": self.warning,
        }


class RejectionWriter:
    """Writes every rejected line to a stream as JSON lines (`RejectedLine.to_json`)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.count = 0

    def __call__(self, rejected: RejectedLine) -> None:
        self.count += 1
        self._stream.write(strict_json(rejected.to_json()) + "\n")


def strict_json(value: Any) -> str:
    """Compact JSON any strict reader takes: NaN and infinities become strings."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), separators=(",", ":"), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class SecondsWarning:
    """A line whose timestamps look like epoch seconds (see telemetry.core.timestamps):
    its decoded `message`, the `rejections` validation gave it, and whether the
    message was rejected whole (`whole`) rather than reading by reading."""

    source: str
    line: int
    suspects: Sequence[SecondsSuspect]
    message: Any = None
    rejections: Sequence[Rejection] = ()
    whole: bool = False


class SecondsWarningReporter:
    """Warns on a stream, one line each, up to a limit; counts the rest."""

    def __init__(
        self, stream: TextIO, limit: int = MAX_BAD_LINES_SHOWN, listed_in: str | None = None
    ) -> None:
        self._stream = stream
        self._limit = limit
        self._listed_in = listed_in  # the file every warning also goes to, if any
        self.count = 0

    def __call__(self, warning: SecondsWarning) -> None:
        self.count += 1
        if self.count <= self._limit:
            first, more = warning.suspects[0], len(warning.suspects) - 1
            tail = f" (and {plural(more, 'other timestamp')} on this line)" if more else ""
            where = f"{warning.source}:{warning.line}"
            print(f"{where}: warning: {first.warning}{tail}", file=self._stream)
        elif self.count == self._limit + 1:
            where = (
                f"every one is in {self._listed_in}"
                if self._listed_in is not None
                else "--warnings FILE lists every one"
            )
            print(
                f"(further lines with such timestamps are counted, not shown) {where}",
                file=self._stream,
            )


@dataclass(slots=True)
class Result:
    """What a replay saw and decided."""

    transitions: list[Transition] = field(default_factory=list)
    files: int = 0
    lines: int = 0
    messages: int = 0
    readings: int = 0
    bad_lines: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    late: int = 0
    not_evaluated: int = 0
    out_of_window: int = 0  # readings whose place the reorder window had passed
    seconds_lines: int = 0
    store: str | None = None  # where the readings came from, when not from files
    devices: int = 0
    first_ms: int | None = None
    last_ms: int | None = None


def _check_readable(sources: Sequence[str]) -> None:
    for source in sources:
        if source == STDIN:
            continue
        path = Path(source)
        if not path.exists():
            raise InputError(f"{source}: no such file")
        if path.is_dir():
            raise InputError(f"{source}: is a directory, not a JSON-lines file")


def check_readable(sources: Sequence[str]) -> None:
    """InputError unless every source (`-` is stdin) is a file that can be read:
    checked before anything is written (a rejections file is truncated on opening)."""
    _check_readable(sources)
    for source in sources:
        if source == STDIN:
            continue
        try:
            Path(source).open("rb").close()
        except OSError as exc:
            raise InputError(f"{source}: cannot read: {exc.strerror or exc}") from None


LINES_READ: Final = 1 << 20
"""About how many bytes of lines are read at a time (a list of lines per read:
cheaper than a call per line, and bounded)."""


def _chunks(source: str, stdin: BinaryIO) -> Iterator[list[bytes]]:
    """The lines of one source (a path, `-` for stdin), a list at a time, in order."""
    try:
        if source == STDIN:
            yield from _read(stdin)
        else:
            with Path(source).open("rb") as stream:
                yield from _read(stream)
    except OSError as exc:
        raise InputError(f"{source}: cannot read: {exc.strerror or exc}") from None


_BOM: Final = b"\xef\xbb\xbf"


def _read(stream: BinaryIO) -> Iterator[list[bytes]]:
    """The stream's lines a list at a time, without the UTF-8 byte-order mark an
    editor (Notepad) may put at the start of a file: looked for once."""
    lines = stream.readlines(LINES_READ)
    if lines:
        lines[0] = lines[0].removeprefix(_BOM)
    while lines:
        yield lines
        lines = stream.readlines(LINES_READ)


def _times_in(message: Any) -> Iterator[int]:
    """Every usable time a message mentions (to place the validation clock)."""
    if not isinstance(message, dict):
        return
    candidates = [message.get("timestamp"), message.get("receivedAt")]
    data = message.get("data")
    if isinstance(data, list):
        candidates += [r.get("timestamp") for r in data if isinstance(r, dict)]
    for raw in candidates:
        if raw is None:
            continue
        try:
            yield parse_time_ms(raw)
        except ValueError:
            continue


_NO_CLOCK: Final = LATEST_MS + 1
"""The clock messages are validated against: later than any valid time, so that
history is never "in the future". A reading with no time at all takes it, and
is given the replay's clock once every time in the input is known."""


REORDER_READINGS: Final = 50_000
"""How many readings wait to be put in event-time order (`--reorder-window`):
half of them is evaluated, oldest first, whenever more wait."""

Emit = Callable[[Transition], None]
NetStatus = Callable[[Severity, str | None, Severity, str | None], Status | None]
_Out = tuple[int, str, int, str, str, str, int, Transition]
"""A decided transition waiting for its turn: (time, device, phase, sensor,
rule, kind, sequence, it). Of one time and device, as the function publishes
them (readings before the sweep of their time, see `_order_of`): phase 0, what
readings decided (sensor, rule and kind blank: in the order decided); 1, what
no-data gaps decided (per key, each in the order decided); 2, the STABLEs
time alone brought, which the sweep adds after its no-data alerts (per key and
kind, as `quieted` lists them)."""


@dataclass(frozen=True, slots=True)
class OutOfWindow:
    """A reading that came after its place in event time was passed: its time
    `at_ms` (`what`: its reading time, or for no-data its arrival) is not after
    `passed_ms`, the newest such time already evaluated when it came."""

    source: str
    line: int
    reading: Reading
    at_ms: int
    passed_ms: int
    what: str = "reading time"

    @property
    def detail(self) -> str:
        r = self.reading
        then = (
            "not counted for no-data"
            if self.what == "arrival"
            else "evaluated now, out of event-time order (late, if its alert changed since)"
        )
        return (
            f"{r.device_id}/{r.sensor_id}: {self.what} {time_text(self.at_ms)} came after "
            f"{time_text(self.passed_ms)} was replayed (beyond the reorder window): {then}"
        )


class OutOfWindowReporter:
    """Reports on a stream, one line each, up to a limit; counts the rest."""

    def __init__(self, stream: TextIO, limit: int = MAX_BAD_LINES_SHOWN) -> None:
        self._stream = stream
        self._limit = limit
        self.count = 0

    def __call__(self, late: OutOfWindow) -> None:
        self.count += 1
        if self.count <= self._limit:
            print(f"{late.source}:{late.line}: out of order: {late.detail}", file=self._stream)
        elif self.count == self._limit + 1:
            print("(further readings out of order are counted, not shown)", file=self._stream)


@dataclass(slots=True)
class _Gap:
    """Arrival of one (device, sensor, rule with nodata): the last one heard
    and, while the gap after it is open, its no-data episode."""

    at_ms: int
    reading: Reading
    window_ms: int
    episode: Silence | None = None


class _Stream:
    """Validated messages in, transitions out as they are decided, in event time.

    Readings wait in the reorder window until more than `window` of them wait;
    then the oldest half (and every other reading of the time of the last of
    them) is evaluated, device by device, with the state each carries: the
    core's `evaluate`, then `watch` for flapping. Readings of one time keep
    the order they came in. Arrival (receivedAt, else the reading's time) is
    followed the same way for no-data gaps, and a flapping key's STABLE is
    made once the evaluated time has passed its quiet period. Transitions
    wait in a heap until no earlier one can be decided.

    A reading whose time is not after the last one evaluated came after its
    place was passed: it is evaluated at once, out of event-time order (the
    core counts it late if its alert changed since), counted in
    `out_of_window` and reported (`on_out_of_window`, with its line); for
    no-data its arrival is not counted. In `arrival` order each message is
    evaluated as it comes; its transitions are held in the same heap (at
    most `window` of them) and a transition decided after later ones went
    out is counted too.

    Memory: the readings in the window (and for no-data, their arrivals);
    the transitions decided and not yet out; per device its alert state
    (`AlertState` per key with an alert, a streak or a flapping watch); per
    (device, sensor, rule with nodata) its last arrival and reading.
    Readings with no time at all take the replay's clock at the end and
    wait for it.
    """

    def __init__(
        self,
        result: Result,
        rules: RuleSet,
        *,
        order: str,
        window: int,
        emit: Emit,
        on_out_of_window: Callable[[OutOfWindow], None] | None = None,
    ) -> None:
        self.result = result
        self.rules = rules
        self.arrival = order == "arrival"
        self.window = max(window, 1)
        self.maintenance = MaintenanceStage(rules, emit) if rules.maintenance else None
        self.emit = emit if self.maintenance is None else self.maintenance.add
        self.on_out_of_window = on_out_of_window
        self.flapping = _sets_flapping(rules)
        self.nodata = any(r.nodata_ms is not None for r in rules.rules)
        self.general = self.arrival or self.nodata  # no message takes `plain`
        self.states: dict[str, dict[StateKey, AlertState]] = {}
        self.latest = 0  # of the times the readings do not show
        self.seq = 0
        # In arrival, as (time, device, readings of that time); sorted (stable) when released.
        self.pending: list[_Pending] = []
        self.pending_readings = 0
        self.pending_sorted = True
        self.pending_last = -(2**63)
        self.evaluated_to = -(2**63)  # every reading up to this time is evaluated
        self.heard: list[tuple[int, Reading]] = []
        self.heard_to = -(2**63)
        # The earliest reading time among the arrivals waiting: a no-data episode
        # their arrival resolves is dated by the reading, which may be earlier.
        self.heard_min = _NO_CLOCK
        # No-data transitions waiting for the flapping watch, which takes them in
        # event time (as the whole history does) once no earlier one can come.
        # Each with the no-data episode it opens (True) or closes (False).
        self.unwatched: list[tuple[int, int, str, Transition, Silence, bool]] = []
        self.closed_first: set[int] = set()  # episodes whose end is dated before their start
        self.end_arrival: int | None = None
        self.gaps: dict[tuple[str, str, str], _Gap] = {}
        self.open_gaps: dict[str, dict[StateKey, Silence]] = {}  # per device
        self.deadlines: list[tuple[int, str, str, str]] = []
        self.dues: list[tuple[int, str]] = []
        self.due_of: dict[str, int] = {}
        self.out: list[_Out] = []
        self.out_to = -(2**63)
        self.timeless: list[tuple[int | None, Reading]] = []

    # --- in ----------------------------------------------------------------

    def add(self, parsed: ParsedMessage | MessageRejectedError, source: str, line: int) -> None:
        """One message, line `line` of `source`."""
        if not self._counted(parsed):
            return
        assert isinstance(parsed, ParsedMessage)  # noqa: S101 - _counted says so
        result, received = self.result, parsed.received_ms
        device_id = parsed.device_id
        if device_id not in self.states:
            self.states[device_id] = {}
        readings = parsed.readings
        result.readings += len(readings)
        if not self.nodata and not self.arrival and self._pended(readings):
            self._advance()
            return
        placed: list[Reading] = []
        passed: list[Reading] = []
        for reading in readings:
            at = reading.time_ms
            if at == _NO_CLOCK:
                self.timeless.append((received, reading))
                continue
            result.first_ms = at if result.first_ms is None else min(result.first_ms, at)
            result.last_ms = at if result.last_ms is None else max(result.last_ms, at)
            if self.nodata:
                self._heard(received or at, reading, source, line)
            if self.arrival:
                placed.append(reading)
            elif at <= self.evaluated_to:
                self._passed(OutOfWindow(source, line, reading, at, self.evaluated_to))
                passed.append(reading)
            else:
                self._pend(at, device_id, [reading])
        if placed:
            self._evaluate(device_id, placed)
        if passed:
            self._evaluate(device_id, passed)
        self._advance()

    def _pended(self, readings: list[Reading]) -> bool:
        """The common case of `add` in event order without no-data rules, in one
        step: every reading has a time past the evaluated ones, and waits. False,
        with nothing done, when any reading needs the general path."""
        if not readings:
            return True
        times = [reading.time_ms for reading in readings]
        first, last = min(times), max(times)
        if first <= self.evaluated_to or last == _NO_CLOCK:
            return False
        self._pend_all(readings, first, last)
        return True

    def plain(self, parsed: ParsedMessage) -> bool:  # noqa: C901, PLR0912 - the hot path, inlined
        """`add` of the common message, in one step: event order, no no-data
        rules, nothing rejected, every time from 2001 on (nothing for `run` to
        report) and past the evaluated ones. False, with nothing done, otherwise."""
        if self.general or parsed.rejections:
            return False
        sent, received = parsed.sent_ms, parsed.received_ms
        if (sent is not None and sent < MILLENNIUM_MS) or (
            received is not None and received < MILLENNIUM_MS
        ):
            return False
        readings = parsed.readings
        if readings:
            first = last = readings[0].time_ms
            for reading in readings:
                if reading.time_ms != first:  # times of their own: the span of them
                    times = [each.time_ms for each in readings]
                    first, last = min(times), max(times)
                    break
            if first <= self.evaluated_to or last == _NO_CLOCK or first < MILLENNIUM_MS:
                return False
        result = self.result
        result.messages += 1
        if sent is not None and sent > self.latest:
            self.latest = sent
        if received is not None and received > self.latest:
            self.latest = received
        device_id = parsed.device_id
        if device_id not in self.states:
            self.states[device_id] = {}
        if not readings:
            return True
        count = len(readings)
        result.readings += count
        if first != last:
            self._pend_all(readings, first, last)
        else:  # `_pend_all` of one time, inlined: the hot path
            if result.first_ms is None or first < result.first_ms:
                result.first_ms = first
            if result.last_ms is None or last > result.last_ms:
                result.last_ms = last
            if first < self.pending_last:
                self.pending_sorted = False
            else:
                self.pending_last = first
            self.pending.append((first, device_id, readings))
            self.pending_readings += count
        if self.pending_readings > self.window:
            self._advance()
        return True

    def _pend_all(self, readings: list[Reading], first: int, last: int) -> None:
        """One message's readings wait, their times known to lie in [first, last]."""
        result = self.result
        if result.first_ms is None or first < result.first_ms:
            result.first_ms = first
        if result.last_ms is None or last > result.last_ms:
            result.last_ms = last
        if first == last:
            self._pend(first, readings[0].device_id, readings)
        else:
            for reading in readings:
                self._pend(reading.time_ms, reading.device_id, [reading])

    def _pend(self, at: int, device_id: str, readings: list[Reading]) -> None:
        """Readings of one device and one time `at` wait in the reorder window."""
        if at < self.pending_last:
            self.pending_sorted = False
        else:
            self.pending_last = at
        self.pending.append((at, device_id, readings))
        self.pending_readings += len(readings)

    def _counted(self, parsed: ParsedMessage | MessageRejectedError) -> bool:
        """Count the message and what validation refused of it; whether it has readings."""
        result = self.result
        result.messages += 1
        if isinstance(parsed, MessageRejectedError):
            result.rejected[parsed.rejection.code] += 1
            self.latest = max([self.latest, *_times_in(parsed.rejection.payload)])
            return False
        for rejection in parsed.rejections:
            result.rejected[rejection.code] += 1
            self.latest = max([self.latest, *_times_in({"data": [rejection.payload]})])
        sent, received = parsed.sent_ms, parsed.received_ms
        if sent is not None or received is not None:
            self.latest = max(self.latest, sent or 0, received or 0)
        return True

    def _heard(self, at: int, reading: Reading, source: str, line: int) -> None:
        """Arrival at `at`, for no-data gaps (its place passed: reported, not counted)."""
        if at <= self.heard_to:
            self._passed(OutOfWindow(source, line, reading, at, self.heard_to, "arrival"))
            return
        if self.end_arrival is None or at > self.end_arrival:
            self.end_arrival = at
        self.heard.append((at, reading))
        self.heard_min = min(self.heard_min, reading.time_ms)

    def _passed(self, late: OutOfWindow) -> None:
        self.result.out_of_window += 1
        if self.on_out_of_window is not None:
            self.on_out_of_window(late)

    # --- deciding ------------------------------------------------------------

    def _advance(self) -> None:
        """Evaluate the oldest readings once the window is full, and let out
        what no later decision can come before."""
        keep = self.window // 2
        if self.pending_readings > self.window:
            self.evaluated_to = self._release_readings(self.pending_readings - keep)
        if self.nodata and len(self.heard) > self.window:
            self.heard_to = self._release_heard(len(self.heard) - keep)
        to = self.evaluated_to if not self.arrival else -(2**63)
        if self.nodata:
            to = min(to, self.heard_to - 1, self.heard_min - 1)
        if self.arrival and len(self.out) > self.window:
            to = max(to, _oldest_kept(self.out, keep))
        self._release(to)

    def _release_readings(self, count: int) -> int:
        """Evaluate the `count` oldest readings waiting, and every other of the
        time of the last of them (all, for a count past the end): that time.
        Readings of one time keep the order they came in (a stable sort)."""
        pending = self.pending
        if not pending:
            return self.evaluated_to
        if not self.pending_sorted:
            pending.sort(key=_FIRST)
            self.pending_sorted = True
        size = len(pending)
        if count >= self.pending_readings:
            cut, taken = size, self.pending_readings
        else:
            cut = taken = 0
            need = max(count, 1)
            while taken < need:
                taken += len(pending[cut][2])
                cut += 1
        to = pending[cut - 1][0]
        while cut < size and pending[cut][0] == to:
            taken += len(pending[cut][2])
            cut += 1
        released, self.pending = pending[:cut], pending[cut:]
        self.pending_readings -= taken
        if not self.pending:
            self.pending_last = -(2**63)
        batch: dict[str, list[Reading]] = {}
        for _, device_id, readings in released:
            device = batch.get(device_id)
            if device is None:
                batch[device_id] = readings.copy()
            else:
                device += readings
        # The batches are in time order: evaluated sensor by sensor (the same
        # decisions), their transitions put in time order by the output's heap.
        # A flapping watch reads them in the order decided: those go by time.
        by_sensor = not self.flapping
        for device_id, readings in batch.items():
            self._evaluate(device_id, readings, by_sensor=by_sensor)
        return to

    def _evaluate(
        self, device_id: str, readings: list[Reading], *, by_sensor: bool = False
    ) -> None:
        evaluation = evaluate(readings, self.states[device_id], self.rules, by_sensor=by_sensor)
        if self.flapping:
            evaluation = watch(evaluation, self.rules)
        self.states[device_id] = evaluation.state
        self.result.late += evaluation.late
        self.result.not_evaluated += len(evaluation.not_evaluated)
        if evaluation.transitions:
            self._decided(evaluation.transitions, 0)
        if self.flapping:
            self._arm(device_id)

    def _decided(self, transitions: Sequence[Transition], phase: int) -> None:
        """Transitions decided by readings (`phase` 0), by no-data gaps (1) or
        by time alone (2), in the order decided, wait for their turn."""
        out = self.out
        for i, t in enumerate(transitions):
            if self.arrival and t.time_ms <= self.out_to:
                self.result.out_of_window += 1  # decided after later ones went out
            heappush(out, (t.time_ms, t.device_id, *_order_of(transitions, i, phase), self.seq, t))
            self.seq += 1

    def _release_heard(self, count: int) -> int:
        """Follow the `count` oldest arrivals waiting (and every other of the same
        time) for no-data gaps, raising those whose window ran out: that time."""
        heard = self.heard
        if not heard:
            return self.heard_to
        heard.sort(key=_FIRST)
        cut = min(max(count, 1), len(heard))
        to = heard[cut - 1][0]
        while cut < len(heard) and heard[cut][0] == to:
            cut += 1
        released, self.heard = heard[:cut], heard[cut:]
        self.heard_min = min((r.time_ms for _, r in self.heard), default=_NO_CLOCK)
        rules = self.rules
        for at, reading in released:
            self._gaps_before(at)
            for rule in rules.for_reading(reading):
                if rule.nodata_ms is not None:
                    self._arrived(at, reading, rule.name, rule.nodata_ms)
        self._gaps_before(to)  # one ending at `to` is a gap only if anything comes later
        self._watch_until(self.heard_min)
        return to

    def _arrived(self, at: int, reading: Reading, rule_name: str, window_ms: int) -> None:
        key = (reading.device_id, reading.sensor_id, rule_name)
        gap = self.gaps.get(key)
        if gap is None:
            self.gaps[key] = _Gap(at, reading, window_ms)
            heappush(self.deadlines, (at + window_ms, *key))
            return
        if gap.episode is not None:
            resolved = gap_resolved(rule_name, gap.episode, reading)
            self._watched(reading.device_id, resolved, gap.episode, opens=False)
            heappush(self.deadlines, (at + window_ms, *key))
        gap.at_ms, gap.reading, gap.window_ms, gap.episode = at, reading, window_ms, None

    def _gaps_before(self, before: int) -> None:
        """Raise the gaps whose window ran out before `before` (nothing heard since)."""
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] < before:
            silent_at, *key = heappop(deadlines)
            device_id, sensor_id, rule_name = key
            gap = self.gaps[device_id, sensor_id, rule_name]
            if gap.at_ms + gap.window_ms != silent_at:
                heappush(deadlines, (gap.at_ms + gap.window_ms, device_id, sensor_id, rule_name))
                continue
            gap.episode, raised = gap_raised(
                self.rules, rule_name, gap.window_ms, gap.at_ms, gap.reading
            )
            self._watched(device_id, raised, gap.episode, opens=True)

    def _open_or_close(
        self, device_id: str, key: StateKey, episode: Silence, *, opens: bool
    ) -> None:
        """Keep the open no-data episodes as the watched transitions say (an end
        dated before its start leaves the episode closed)."""
        if opens:
            if id(episode) in self.closed_first:
                self.closed_first.discard(id(episode))
            else:
                self.open_gaps.setdefault(device_id, {})[key] = episode
            return
        opened = self.open_gaps.get(device_id)
        if opened is None or opened.get(key) is not episode:
            self.closed_first.add(id(episode))
            return
        del opened[key]
        if not opened:
            del self.open_gaps[device_id]

    def _with_gaps(self, device_id: str) -> dict[StateKey, AlertState]:
        """The device's state with its open no-data episodes in it, as the
        function's would hold them (what a STABLE says of them)."""
        state = self.states[device_id]
        opened = self.open_gaps.get(device_id)
        if not opened:
            return state
        view = dict(state)
        for key, episode in opened.items():
            alert = view.get(key)
            if alert is not None:
                view[key] = replace(alert, silence=episode)
        return view

    def _watched(self, device_id: str, gap: Transition, episode: Silence, *, opens: bool) -> None:
        """A no-data episode raised (`opens`) or resolved."""
        if not self.flapping:
            self._decided([gap], 1)
            return
        self.unwatched.append((gap.time_ms, self.seq, device_id, gap, episode, opens))
        self.seq += 1

    def _watch_until(self, before: int) -> None:
        """Watch the no-data transitions dated before `before`, in event time: a
        gap an arrival closes is dated by its reading, which may come before a
        gap raised earlier in the replay."""
        if not self.unwatched:
            return
        self.unwatched.sort()
        cut = bisect_left(self.unwatched, (before,))
        ready, self.unwatched = self.unwatched[:cut], self.unwatched[cut:]
        for _, _, device_id, t, episode, opens in ready:
            self._open_or_close(device_id, (t.sensor_id, t.rule), episode, opens=opens)
            state = self.states.setdefault(device_id, {})
            evaluation = watch(Evaluation(state, [t]), self.rules)
            self.states[device_id] = evaluation.state
            self._arm(device_id)
            self._decided(evaluation.transitions, 1)

    def _arm(self, device_id: str) -> None:
        due = due_ms(self.states[device_id])
        if due is None:
            self.due_of.pop(device_id, None)
        elif self.due_of.get(device_id) != due:
            self.due_of[device_id] = due
            heappush(self.dues, (due, device_id))

    def _quieted_before(self, before: int) -> None:
        """The STABLE of every flapping key quiet for its window before `before`."""
        dues = self.dues
        while dues and dues[0][0] < before:
            due, device_id = heappop(dues)
            if self.due_of.get(device_id) != due:
                continue
            del self.due_of[device_id]
            state = self.states[device_id]
            stable = quieted(device_id, self._with_gaps(device_id), before - 1)
            if stable:
                evaluation = watch(Evaluation(state, stable), self.rules)
                self.states[device_id] = evaluation.state
                self._decided(evaluation.transitions, 2)
            self._arm(device_id)

    def _release(self, to: int) -> None:
        """Let out every transition up to `to`, a STABLE time alone brought first."""
        if to <= self.out_to:
            return
        if self.flapping:
            self._quieted_before(min(to, self.result.last_ms or 0) + 1)
        out, emit = self.out, self.emit
        while out and out[0][0] <= to:
            emit(heappop(out)[-1])
        self.out_to = to

    # --- the end -------------------------------------------------------------

    def finish(self, wall_ms: int) -> Result:
        """Evaluate what is left, place the readings without a time, and let
        every transition out."""
        result = self.result
        if self.timeless:
            clock = max(wall_ms, self.latest, result.last_ms or 0)
            result.last_ms = clock
            result.first_ms = clock if result.first_ms is None else result.first_ms
            by_device: dict[str, list[Reading]] = {}
            for received, reading in self.timeless:
                reading.time_ms = clock
                if self.nodata:
                    self._heard(received or clock, reading, "<no time>", 0)
                if self.arrival:
                    by_device.setdefault(reading.device_id, []).append(reading)
                else:
                    self._pend(clock, reading.device_id, [reading])
            for device_id, readings in by_device.items():
                self._evaluate(device_id, readings)
        everything = 2**62
        self._release_readings(everything)
        if self.nodata:
            self._release_heard(everything)
            until = self.end_arrival if self.end_arrival is not None else result.last_ms or 0
            self._gaps_before(until)
            self._watch_until(everything)
        if self.flapping:
            self._quieted_before((result.last_ms or 0) + 1)
        self._release(everything)
        if self.maintenance is not None:
            self.maintenance.finish(result.last_ms or 0)
        result.devices = len(self.states)
        return result


_FIRST: Final = itemgetter(0)  # the time of a pending entry, of an arrival
_Pending = tuple[int, str, list[Reading]]


_BLANK: Final = ("", "", "")


def _order_of(transitions: Sequence[Transition], i: int, phase: int) -> tuple[int, str, str, str]:
    """Where the `i`th of transitions decided together goes among those of its
    time and device: (phase, sensor, rule, kind), see `_Out`.

    A STABLE is time alone's (phase 2) wherever it was decided, unless it
    comes with a change of its key and kind at its own time (`watch` puts it
    just before that change, in the change's phase): an ideal sweep at the end
    of the quiet period makes it, after the no-data alerts it raises then
    (`Pipeline._swept`: silences, then `timers`), whether the replay found it
    by a later change, by a later gap or by `quieted`."""
    t = transitions[i]
    if t.status is Status.STABLE:
        change = transitions[i + 1] if i + 1 < len(transitions) else None
        if (
            change is None
            or change.status is Status.STABLE
            or change.time_ms != t.time_ms
            or (change.sensor_id, change.rule, kind_of(change.direction))
            != (t.sensor_id, t.rule, kind_of(t.direction))
        ):
            return 2, t.sensor_id, t.rule, kind_of(t.direction)
    if phase == 0:
        return 0, *_BLANK
    return 1, t.sensor_id, t.rule, ""


def _oldest_kept(out: list[_Out], keep: int) -> int:
    """The time up to which the decided transitions go out so that about `keep`
    stay (a bound on memory when decisions run ahead: `--order arrival`)."""
    return sorted(item[0] for item in out)[len(out) - keep - 1]


class MaintenanceStage:
    """Maintenance windows in event time, as a stage of the stream: a transition
    a window holds at its own time goes on muted (`suppressed: maintenance`,
    with the window's name); when the window ends, each held key and kind of
    alert reports the net change since the last transition operators heard,
    once, as the function's sweep does (nothing for a raise resolved inside).
    Transitions come in time order and go on in time order; what it keeps is a
    (severity, alertId) and a last transition per key a window ever held, and a
    heap entry per key held now."""

    def __init__(self, rules: RuleSet, emit: Emit) -> None:
        # Imported here: a replay without windows does not pay for the operators' module.
        from telemetry.core.operators import MAINTENANCE, holding, net_status  # noqa: PLC0415

        self._maintenance = MAINTENANCE
        self._holding = holding
        self._net_status = net_status
        self._rules = rules
        self._emit = emit
        self._heard: dict[_HeldKey, tuple[Severity, str | None]] = {}
        self._last: dict[_HeldKey, Transition] = {}
        self._pending: dict[_HeldKey, int] = {}
        self._ends: list[tuple[int, _HeldKey]] = []

    def add(self, t: Transition) -> None:
        self._flush(t.time_ms)
        key = (t.device_id, t.sensor_id, t.rule, t.direction == NODATA)
        hold = self._holding(self._rules, t, t.time_ms)
        if hold is None:
            if key in self._last:
                self._last[key] = t
            if not t.muted:
                self._heard[key] = (
                    t.severity,
                    t.alert_id if t.severity is not Severity.OK else None,
                )
            self._emit(t)
            return
        self._last[key] = t
        ends = max(self._pending.get(key, hold.until_ms), hold.until_ms)
        if self._pending.get(key) != ends:
            self._pending[key] = ends
            heappush(self._ends, (ends, key))
        self._emit(
            replace(
                t, muted=True, suppressed=t.suppressed or self._maintenance, maintenance=hold.name
            )
        )

    def finish(self, end_ms: int) -> None:
        """Report the windows that ended by `end_ms` (the last reading)."""
        self._flush(end_ms)

    def _flush(self, until_ms: int) -> None:
        ends = self._ends
        while ends and ends[0][0] <= until_ms:
            at, key = heappop(ends)
            if self._pending.get(key) != at:
                continue  # extended by a later window
            del self._pending[key]
            was = self._heard.get(key, (Severity.OK, None))
            report = _net_change(self._last[key], was, at, self._net_status)
            if report is not None:
                self._heard[key] = (report.severity, report.alert_id)
                self._emit(report)


_HeldKey = tuple[str, str, str, bool]


def _net_change(
    latest: Transition, was: tuple[Severity, str | None], at_ms: int, net_status: NetStatus
) -> Transition | None:
    """The one message that brings operators from `was` to where `latest` left
    the alert (None: nothing changed for them)."""
    severity = latest.severity
    alert_id = latest.alert_id if severity is not Severity.OK else None
    status = net_status(severity, alert_id, *was)
    if status is None:
        return None
    chosen = (was[1] or latest.alert_id) if status is Status.RESOLVED else latest.alert_id
    return replace(
        latest,
        alert_id=chosen,
        status=status,
        previous_severity=was[0],
        time_ms=at_ms,
        muted=False,
        suppressed=None,
        maintenance=None,
        report=True,
    )


def _sets_flapping(rules: RuleSet) -> bool:
    default = rules.notifications.flapping if rules.notifications is not None else None
    return default is not None or any(r.flapping is not None for r in rules.rules)


def replay(
    messages: Iterable[Any],
    rules: RuleSet,
    *,
    order: str = "event",
    wall_ms: int | None = None,
    result: Result | None = None,
    window: int = REORDER_READINGS,
    emit: Emit | None = None,
    on_out_of_window: Callable[[OutOfWindow], None] | None = None,
) -> Result:
    """Validate and evaluate decoded `messages` (in the given order for `arrival`),
    streaming: each transition goes to `emit` once decided, in event time
    (without `emit`, they are collected in the result)."""
    result = result if result is not None else Result()
    if emit is None:
        emit = result.transitions.append
    stream = _Stream(
        result, rules, order=order, window=window, emit=emit, on_out_of_window=on_out_of_window
    )
    source = result.store or "<messages>"
    with _collector_off():
        for number, message in enumerate(messages, start=1):
            try:
                stream.add(parse_message(message, _NO_CLOCK), source, number)
            except MessageRejectedError as exc:
                stream.add(exc, source, number)
        return stream.finish(_wall(wall_ms))


def run(
    sources: Sequence[str],
    rules: RuleSet,
    *,
    order: str,
    stdin: BinaryIO,
    on_bad_line: Callable[[BadLine], None],
    on_rejected: Callable[[RejectedLine], None] | None = None,
    on_seconds: Callable[[SecondsWarning], None] | None = None,
    wall_ms: int | None = None,
    window: int = REORDER_READINGS,
    emit: Emit | None = None,
    on_out_of_window: Callable[[OutOfWindow], None] | None = None,
) -> Result:
    """Read `sources` (paths, `-` for stdin) and replay them, streaming (see
    `replay`): each line is validated straight from its bytes; a line that is
    not JSON is reported and skipped. `on_rejected` hears of every line, and
    every reading of a line, that is not replayed; `on_seconds` of every line with a
    timestamp that looks like epoch seconds (replayed all the same, as the
    function would); `on_out_of_window` of every reading whose place was passed."""
    result = Result()
    if emit is None:
        emit = result.transitions.append

    stream = _Stream(
        result, rules, order=order, window=window, emit=emit, on_out_of_window=on_out_of_window
    )
    _check_readable(sources)
    started: set[str] = set()
    plain, parse = stream.plain, parse_message_json
    with _collector_off():
        for given in sources:
            result.files += 1
            source = "<stdin>" if given == STDIN else given
            first = source not in started  # until its first line that is not blank
            number = 0
            for lines in _chunks(given, stdin):
                for raw in lines:
                    number += 1
                    try:
                        parsed = parse(raw, _NO_CLOCK)
                    except MessageRejectedError as exc:
                        if not raw.strip():
                            continue  # a blank line: not JSON, and not a message either
                        if first:
                            started.add(source)
                            first = False
                            if exc.rejection.code == "not_json" and _opens_a_document(raw):
                                raise InputError(_not_json_lines(source)) from None
                        _refused(exc, source, number, stream, on_bad_line, on_rejected, on_seconds)
                        continue
                    if first:
                        started.add(source)
                        first = False
                    if plain(parsed):
                        continue
                    if _may_hold_seconds(parsed):
                        _report(source, number, decode_json(raw), parsed.rejections,
                                result, on_rejected, on_seconds)  # fmt: skip
                    stream.add(parsed, source, number)
            result.lines += number
        return stream.finish(_wall(wall_ms))


def _refused(
    exc: MessageRejectedError,
    source: str,
    number: int,
    stream: _Stream,
    on_bad_line: Callable[[BadLine], None],
    on_rejected: Callable[[RejectedLine], None] | None,
    on_seconds: Callable[[SecondsWarning], None] | None,
) -> None:
    """A line validation refused whole: reported, and counted (not JSON: a bad line)."""
    result = stream.result
    if exc.rejection.code != "not_json":
        _report(source, number, exc.rejection.payload, [exc.rejection],
                result, on_rejected, on_seconds, whole=True)  # fmt: skip
        stream.add(exc, source, number)
        return
    result.bad_lines += 1
    reason = exc.rejection.detail.partition(": ")[2]
    on_bad_line(BadLine(source, number, f"not valid JSON ({reason})"))
    if on_rejected is not None:
        on_rejected(RejectedLine(source, number, _line_text(exc.rejection)))


def _may_hold_seconds(parsed: ParsedMessage) -> bool:
    """Whether a parsed message needs a closer look: it has rejections, or a
    time before 2001 (cheap: what validation found, not the text)."""
    sent, received = parsed.sent_ms, parsed.received_ms
    if parsed.rejections:
        return True
    if (sent is not None and sent < MILLENNIUM_MS) or (
        received is not None and received < MILLENNIUM_MS
    ):
        return True
    return any(r.time_ms < MILLENNIUM_MS for r in parsed.readings)


def _report(
    source: str,
    number: int,
    message: Any,
    rejections: Sequence[Rejection],
    result: Result,
    on_rejected: Callable[[RejectedLine], None] | None,
    on_seconds: Callable[[SecondsWarning], None] | None,
    *,
    whole: bool = False,
) -> None:
    """The line's rejections, and its timestamps that look like epoch seconds."""
    suspects = seconds_suspects(message)
    if suspects:
        result.seconds_lines += 1
        if on_seconds is not None:
            on_seconds(SecondsWarning(source, number, suspects, message, rejections, whole))
    if on_rejected is not None:
        by_field = {s.field: s.warning for s in suspects}
        for rejection in rejections:
            on_rejected(RejectedLine(source, number, rejection, by_field.get(rejection.field)))


def _line_text(rejection: Rejection) -> Rejection:
    """A `not_json` rejection with the line as written (no line break)."""
    text = rejection.payload
    if isinstance(text, str):
        text = text.rstrip("\r\n")
    return Rejection(rejection.field, rejection.code, rejection.detail, text)


def _opens_a_document(raw: bytes) -> bool:
    """A first line no message can be: a JSON document spread over several lines
    (a pretty-printed array or object) starts so."""
    stripped = raw.strip()
    return stripped in {b"[", b"{"} or stripped.startswith(b"[")


def _not_json_lines(source: str) -> str:
    return (
        f"{source}: this is not JSON Lines: it looks like one JSON document over several "
        "lines (an array?); give one message per line, e.g. with `jq -c '.[]'`"
    )


def _wall(wall_ms: int | None) -> int:
    return wall_ms if wall_ms is not None else time.time_ns() // 1_000_000


@contextmanager
def _collector_off() -> Iterator[None]:
    """A replay makes a few hundred thousand long-lived objects and no cycles:
    the cyclic collector would only walk them (a sixth of the run, measured)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


@dataclass(slots=True)
class RuleSummary:
    rule: str
    episodes: int = 0
    critical: int = 0
    still_open: int = 0
    alert_ms: int = 0
    flaps: int = 0


class Summarizer:
    """The per-rule summary of transitions given one at a time in event time:
    bounded by the episodes open and, per (device, sensor, rule), when its last
    episode resolved (for flaps)."""

    def __init__(self, rules: RuleSet, *, flap_window_ms: int) -> None:
        self._summaries = {r.name: RuleSummary(r.name) for r in rules.rules}
        self._flap_window_ms = flap_window_ms
        self._episodes: dict[str, tuple[Transition, bool]] = {}
        self._resolved_at: dict[tuple[str, str, str], int] = {}

    def add(self, t: Transition) -> None:
        if t.report:
            return  # a maintenance window's catch-up: news of changes already counted
        summary = self._summaries.get(t.rule)
        if summary is None:
            summary = self._summaries[t.rule] = RuleSummary(t.rule)
        episodes = self._episodes
        if t.status is Status.RAISED:
            summary.episodes += 1
            episodes[t.alert_id] = (t, t.severity is Severity.CRITICAL)
            previous = self._resolved_at.get((t.device_id, t.sensor_id, t.rule))
            summary.flaps += previous is not None and t.time_ms - previous <= self._flap_window_ms
        elif t.status is Status.ESCALATED and t.alert_id in episodes:
            episodes[t.alert_id] = (episodes[t.alert_id][0], True)
        elif t.status is Status.RESOLVED and t.alert_id in episodes:
            raised, critical = episodes.pop(t.alert_id)
            summary.alert_ms += t.time_ms - raised.time_ms
            summary.critical += critical
            self._resolved_at[t.device_id, t.sensor_id, t.rule] = t.time_ms

    def finish(self, end_ms: int) -> list[RuleSummary]:
        """One line per rule in force (and per implicit rule that fired); an
        episode still open counts until `end_ms`."""
        for raised, critical in self._episodes.values():
            summary = self._summaries[raised.rule]
            summary.still_open += 1
            summary.critical += critical
            summary.alert_ms += max(0, end_ms - raised.time_ms)
        self._episodes = {}
        return list(self._summaries.values())


def summarize(result: Result, rules: RuleSet, *, flap_window_ms: int) -> list[RuleSummary]:
    """One line per rule in force (and per implicit rule that fired)."""
    summarizer = Summarizer(rules, flap_window_ms=flap_window_ms)
    for t in result.transitions:
        summarizer.add(t)
    return summarizer.finish(result.last_ms or 0)


def write_json(
    result: Result,
    summaries: Sequence[RuleSummary],
    load: AlarmLoad,
    stream: TextIO,
    rules_version: str | None = None,
) -> None:
    """One JSON document: the transitions (SNS bodies), the per-rule summary,
    the alarm load, and what the input held (with `rulesVersion`: the rule
    files' digest, as the function's transitions say it with those files)."""
    writer = JsonDocument(stream, rules_version)
    for t in result.transitions:
        writer.add(t)
    writer.finish(result, summaries, load)


class JsonDocument:
    """The `--format json` document written as the transitions are decided:
    its `transitions` array item by item, the rest at the end (the same text
    `json.dump(..., indent=2)` gives for the whole document)."""

    def __init__(self, stream: TextIO, rules_version: str | None = None) -> None:
        self._stream = stream
        self._items = 0
        self._rules_version = rules_version

    def add(self, transition: Transition) -> None:
        item = json.dumps(transition.to_json(), indent=2).replace("\n", "\n    ")
        head = '{\n  "transitions": [\n    ' if self._items == 0 else ",\n    "
        self._stream.write(head + item)
        self._items += 1

    def finish(self, result: Result, summaries: Sequence[RuleSummary], load: AlarmLoad) -> None:
        rest: dict[str, Any] = {
            "summary": [
                {
                    "rule": s.rule,
                    "episodes": s.episodes,
                    "reachedCritical": s.critical,
                    "stillOpen": s.still_open,
                    "timeInAlertSeconds": s.alert_ms / 1000,
                    "flaps": s.flaps,
                }
                for s in summaries
            ],
            "alarmLoad": load.to_json(),
            "input": {
                "lines": result.lines,
                "files": result.files,
                "messages": result.messages,
                "readings": result.readings,
                "devices": result.devices,
                "rejected": sum(result.rejected.values()),
                "badLines": result.bad_lines,
                "late": result.late,
                "notEvaluated": result.not_evaluated,
                "outOfWindow": result.out_of_window,
            },
        }
        if self._rules_version is not None:
            rest["input"]["rulesVersion"] = self._rules_version
        opened = '{\n  "transitions": []' if self._items == 0 else "\n  ]"
        self._stream.write(opened + "," + json.dumps(rest, indent=2)[1:] + "\n")


def render_load(load: AlarmLoad, screen: Screen) -> None:
    """The alarm load as the standards measure it, with the rules' notifications."""
    screen.heading("Alarm load operators would have had (ISA-18.2 / EEMUA 191)")
    digests = f" ({plural(load.digests, 'digest')})" if load.digests else ""
    screen.line(
        f"Messages: {load.messages}{digests}; most in any 10 minutes: {load.max_in_10_minutes} "
        f"(a flood is more than 10); 10-minute windows in flood: {load.flood_share:.0%}"
    )
    screen.line(
        f"Chattering alarms (3 or more raised within 60 s): {load.chattering_keys}; "
        f"standing (active over 24 h at the end): {load.standing}"
    )
    if load.bad_actors:
        screen.line("Bad actors (the alarms that sent the most):")
        screen.table(
            ("device", "sensor", "rule", "messages"),
            [[b.device_id, b.sensor_id, b.rule, b.messages] for b in load.bad_actors],
            numeric=(3,),
        )


def write_jsonl(transitions: Iterable[Transition], stream: TextIO) -> None:
    """One SNS body per line, nothing else."""
    stream.writelines(jsonl_line(t) for t in transitions)


_COMPACT: Final = json.JSONEncoder(separators=(",", ":"))
_STATUS_TEXT: Final = {s: _json_text(s.value) for s in Status}
_SEVERITY_TEXT: Final = {s: _json_text(s.name) for s in Severity}
_NOT_COMMON: Final = (None,) * 7


def _uncommon(t: Transition) -> bool:
    """Whether an operator's, flapping's or another rarer field is set."""
    rare = (t.by, t.note, t.until_ms, t.suppressed, t.changes, t.within_ms, t.members)
    return rare != _NOT_COMMON or t.maintenance is not None or t.per_ms is not None


def jsonl_line(t: Transition) -> str:
    """`json.dumps(t.to_json(), separators=(",", ":"))` and a line break: the
    `--format jsonl` line of a transition. The common one (a level's change, no
    operator's or flapping's fields, finite numbers) is written field by field
    in `to_json`'s order, as the encoder would; any other goes through it."""
    status = _STATUS_TEXT.get(t.status)
    severity = _SEVERITY_TEXT.get(t.severity)
    previous = _SEVERITY_TEXT.get(t.previous_severity)
    value, threshold = t.value, t.threshold
    if (
        status is None
        or severity is None
        or previous is None
        or t.muted
        or _uncommon(t)
        or not (value is None or (type(value) is float and math.isfinite(value)))
        or not (threshold is None or (type(threshold) is float and math.isfinite(threshold)))
    ):
        return _COMPACT.encode(t.to_json()) + "\n"
    try:
        line = (
            f'{{"alertId":{_json_text(t.alert_id)},"status":{status},"severity":{severity},'
            f'"previousSeverity":{previous},"deviceId":{_json_text(t.device_id)},'
            f'"sensorId":{_json_text(t.sensor_id)},"rule":{_json_text(t.rule)},'
            f'"value":{"null" if value is None else repr(value)},'
            f'"threshold":{"null" if threshold is None else repr(threshold)},'
            f'"direction":{_json_text(t.direction)},"time":"{iso_utc(t.time_ms)}",'
            f'"since":"{iso_utc(t.since_ms)}"'
        )
        if t.type is not None:
            line += f',"type":{_json_text(t.type)}'
        if t.location is not None:
            line += f',"location":{_json_text(t.location)}'
        if t.unit is not None:
            line += f',"unit":{_json_text(t.unit)}'
        if t.rules_version is not None:
            line += f',"rulesVersion":{_json_text(t.rules_version)}'
    except TypeError:  # a field of another type than its annotation: as the encoder says
        return _COMPACT.encode(t.to_json()) + "\n"
    return line + "}\n"


def render_transitions(transitions: Sequence[Transition], screen: Screen) -> None:
    screen.line(f"Transitions that would have fired: {len(transitions)}", style="bold")
    if transitions and screen.console is not None:
        # A terminal: the day said once when there is one, for room to show the rest.
        render_transition_table(transitions, screen)
    elif transitions:
        screen.table(
            TRANSITION_COLUMNS,
            [transition_row(t) for t in transitions],
            numeric=(5, 6),
            fold=TRANSITION_FOLDED_FIRST,
        )


def render_summary(
    result: Result, summaries: Sequence[RuleSummary], screen: Screen, args: argparse.Namespace
) -> None:
    window = duration_text(args.flap_window)
    screen.heading(f"Per rule (flaps: episodes raised again within {window} of resolving)")
    screen.table(
        ("rule", "episodes", "reached\ncritical", "still\nopen", "time in\nalert", "flaps"),
        [
            [s.rule, s.episodes, s.critical, s.still_open, duration_text(s.alert_ms), s.flaps]
            for s in summaries
        ],
        numeric=(1, 2, 3, 4, 5),
    )
    screen.line()
    span = ""
    if result.first_ms is not None and result.last_ms is not None:
        span = f", {time_text(result.first_ms)} to {time_text(result.last_ms)}"
    read = f"{plural(result.lines, 'line')} in {plural(result.files, 'file')}, "
    if result.store is not None:
        read = f"{result.store}, "
    screen.line(
        f"Input: {read}"
        f"{plural(result.messages, 'message')}, {plural(result.readings, 'reading')} from "
        f"{plural(result.devices, 'device')}{span} ({args.order} order)"
    )
    rejected = sum(result.rejected.values())
    reasons = ", ".join(f"{code} {n}" for code, n in sorted(result.rejected.items()))
    screen.line(
        f"Rejected by validation: {rejected}{f' ({reasons})' if reasons else ''}; "
        f"bad lines skipped: {result.bad_lines}; late readings: {result.late}; "
        f"not evaluated: {result.not_evaluated}"
    )
    if result.out_of_window:
        reorder = getattr(args, "reorder_window", None) or REORDER_READINGS
        screen.line(
            f"Readings out of order beyond the reorder window ({reorder} readings): "
            f"{result.out_of_window}, each on stderr with its line"
        )
    if result.seconds_lines:
        screen.line(
            f"Timestamps that look like epoch seconds: on {plural(result.seconds_lines, 'line')} "
            "(replayed as milliseconds, as the function would)"
        )
    if getattr(args, "rejections", None) is not None:
        written = rejected + result.bad_lines
        screen.line(
            f"Rejections written to {args.rejections}: {written} "
            "(each with its file, line and reason)"
        )
    if getattr(args, "warnings", None) is not None:
        too = " too" if args.warnings == getattr(args, "rejections", None) else ""
        screen.line(
            f"Epoch-seconds warnings written to {args.warnings}{too}: "
            f"on {plural(result.seconds_lines, 'line')} (one entry per timestamp, "
            'code epoch_seconds, "replayed" true or false)'
        )
