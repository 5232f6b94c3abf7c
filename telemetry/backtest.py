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
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, TextIO

from telemetry.core.alerts import (
    ACTION_STATUSES,
    NODATA,
    AlertState,
    Evaluation,
    Severity,
    StateKey,
    Status,
    Transition,
    evaluate,
)
from telemetry.core.flapping import quieted, watch
from telemetry.core.load import AlarmLoad
from telemetry.core.messages import (
    LATEST_MS,
    MessageRejectedError,
    ParsedMessage,
    Reading,
    Rejection,
    decode_json,
    parse_message,
    parse_message_json,
    parse_time_ms,
)
from telemetry.core.operators import MAINTENANCE
from telemetry.core.rules import RuleSet
from telemetry.core.silence import silences_in
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
        self._stream.write(_strict_json(rejected.to_json()) + "\n")


def _strict_json(value: Any) -> str:
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
    """A line whose timestamps look like epoch seconds (see telemetry.core.timestamps)."""

    source: str
    line: int
    suspects: Sequence[SecondsSuspect]


class SecondsWarningReporter:
    """Warns on a stream, one line each, up to a limit; counts the rest."""

    def __init__(self, stream: TextIO, limit: int = MAX_BAD_LINES_SHOWN) -> None:
        self._stream = stream
        self._limit = limit
        self.count = 0

    def __call__(self, warning: SecondsWarning) -> None:
        self.count += 1
        if self.count <= self._limit:
            first, more = warning.suspects[0], len(warning.suspects) - 1
            tail = f" (and {plural(more, 'other timestamp')} on this line)" if more else ""
            where = f"{warning.source}:{warning.line}"
            print(f"{where}: warning: {first.warning}{tail}", file=self._stream)
        elif self.count == self._limit + 1:
            print("(further lines with such timestamps are counted, not shown)", file=self._stream)


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


def read_lines(
    sources: Sequence[str], stdin: BinaryIO, result: Result
) -> Iterator[tuple[str, int, bytes]]:
    """Every non-blank line as (source, line number, its bytes)."""
    _check_readable(sources)
    for source in sources:
        result.files += 1
        try:
            if source == STDIN:
                yield from _lines("<stdin>", stdin, result)
            else:
                with Path(source).open("rb") as stream:
                    yield from _lines(source, stream, result)
        except OSError as exc:
            raise InputError(f"{source}: cannot read: {exc.strerror or exc}") from None


def _lines(source: str, stream: BinaryIO, result: Result) -> Iterator[tuple[str, int, bytes]]:
    number = 0
    for number, raw in enumerate(stream, start=1):
        if raw.strip():
            yield source, number, raw
    result.lines += number


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


class _Replay:
    """Validates messages one by one, keeping only their readings, then
    evaluates them once the clock is known. In `event` order readings are kept
    per device; in `arrival` order, per message."""

    def __init__(self, result: Result, order: str, *, nodata: bool = False) -> None:
        self.result = result
        self.arrival = order == "arrival"
        self.nodata = nodata  # a rule has `nodata`: arrivals are kept for its episodes
        self.heard: list[tuple[int | None, list[Reading]]] = []
        self.latest = 0  # of the times the readings do not show
        self.by_device: dict[str, list[Reading]] = defaultdict(list)
        self.arrivals: list[tuple[str, list[Reading]]] = []
        self.timeless: list[list[Reading]] = []

    def add(self, parsed: ParsedMessage | MessageRejectedError) -> None:
        result = self.result
        result.messages += 1
        if isinstance(parsed, MessageRejectedError):
            result.rejected[parsed.rejection.code] += 1
            self.latest = max([self.latest, *_times_in(parsed.rejection.payload)])
            return
        for rejection in parsed.rejections:
            result.rejected[rejection.code] += 1
            self.latest = max([self.latest, *_times_in({"data": [rejection.payload]})])
        sent, received = parsed.sent_ms, parsed.received_ms
        if sent is None and received is None:
            self.timeless.append(parsed.readings)  # some may lack a time of their own
        else:
            self.latest = max(self.latest, sent or 0, received or 0)
        if self.nodata:
            self.heard.append((received, parsed.readings))
        if self.arrival:
            self.arrivals.append((parsed.device_id, parsed.readings))
        else:
            self.by_device[parsed.device_id].extend(parsed.readings)

    def _groups(self) -> list[tuple[str, list[Reading]]]:
        return self.arrivals if self.arrival else sorted(self.by_device.items())

    def _place_timeless(self, groups: list[tuple[str, list[Reading]]], wall_ms: int) -> None:
        """Readings without any time take the clock: the later of the wall clock
        and the latest time in the input."""
        shown = (r.time_ms for _, readings in groups for r in readings if r.time_ms != _NO_CLOCK)
        clock = max(wall_ms, self.latest, *shown)
        for readings in self.timeless:
            for reading in readings:
                if reading.time_ms == _NO_CLOCK:
                    reading.time_ms = clock

    def finish(self, rules: RuleSet, wall_ms: int) -> Result:
        result = self.result
        groups = self._groups()
        if self.timeless:
            self._place_timeless(groups, wall_ms)
        times = [r.time_ms for _, readings in groups for r in readings]
        result.readings += len(times)
        if times:
            result.first_ms, result.last_ms = min(times), max(times)
        found: list[list[Transition]] = []
        states: dict[str, dict[StateKey, AlertState]] = {}
        flapping = _sets_flapping(rules)
        watched: dict[str, dict[StateKey, AlertState]] = {}
        for device_id, readings in groups:
            evaluation = evaluate(readings, states.get(device_id, {}), rules)
            if flapping:
                evaluation = watch(evaluation, rules)
                watched[device_id] = evaluation.state
            if self.arrival:
                states[device_id] = evaluation.state
            result.late += evaluation.late
            result.not_evaluated += len(evaluation.not_evaluated)
            found.append(evaluation.transitions)
        if self.nodata:
            heard = [(received or r.time_ms, r) for received, rs in self.heard for r in rs]
            end_ms = max((at for at, _ in heard), default=result.last_ms or 0)
            silences = silences_in(heard, rules, end_ms)
            if flapping:
                silences = _watched(silences, watched, rules)
            found.append(silences)
        if flapping:
            found.append(_settled(watched, rules, result.last_ms or 0))
        result.devices = len(states) if self.arrival else len(self.by_device)
        ordered = [
            (t.time_ms, t.device_id, i, t) for i, t in enumerate(t for ts in found for t in ts)
        ]
        result.transitions = [t for *_, t in sorted(ordered, key=lambda x: x[:3])]
        if rules.maintenance:
            result.transitions = held_back(result.transitions, rules, result.last_ms or 0)
        return result


def held_back(transitions: list[Transition], rules: RuleSet, end_ms: int) -> list[Transition]:
    """Maintenance windows in event time: a transition a window holds at its
    own time is muted (`suppressed: maintenance`, with the window's name); when
    the window ends (up to `end_ms`, the last reading), each held key and kind
    of alert reports the net change since the last transition operators heard,
    once, as the function's sweep does (nothing for a raise resolved inside).
    `transitions` in time order; so is the result."""
    heard: dict[tuple[str, str, str, bool], tuple[Severity, str | None]] = {}
    last: dict[tuple[str, str, str, bool], Transition] = {}
    pending: dict[tuple[str, str, str, bool], int] = {}
    out: list[Transition] = []

    def flush(key: tuple[str, str, str, bool], until_ms: int) -> None:
        ends = pending.get(key)
        if ends is None or ends > until_ms:
            return
        del pending[key]
        report = _net_change(last[key], heard.get(key, (Severity.OK, None)), ends)
        if report is not None:
            heard[key] = (report.severity, report.alert_id)
            out.append(report)

    for t in transitions:
        key = (t.device_id, t.sensor_id, t.rule, t.direction == NODATA)
        flush(key, t.time_ms)
        hold = (
            None
            if t.status in ACTION_STATUSES
            else rules.maintenance.holding(t.device_id, t.sensor_id, t.type, t.location, t.time_ms)
        )
        last[key] = t
        if hold is None:
            out.append(t)
            if not t.muted:
                heard[key] = (t.severity, t.alert_id if t.severity is not Severity.OK else None)
            continue
        pending[key] = max(pending.get(key, hold.until_ms), hold.until_ms)
        out.append(
            replace(t, muted=True, suppressed=t.suppressed or MAINTENANCE, maintenance=hold.name)
        )
    for key in sorted(pending):
        flush(key, end_ms)
    return sorted(out, key=lambda t: t.time_ms)


def _net_change(
    latest: Transition, was: tuple[Severity, str | None], at_ms: int
) -> Transition | None:
    """The one message that brings operators from `was` to where `latest` left
    the alert (None: nothing changed for them)."""
    severity = latest.severity
    alert_id = latest.alert_id if severity is not Severity.OK else None
    if (severity, alert_id) == was or (severity is Severity.OK and was[0] is Severity.OK):
        return None
    if severity is Severity.OK:
        status, chosen = Status.RESOLVED, was[1] or latest.alert_id
    elif was[0] is Severity.OK or alert_id != was[1]:
        status, chosen = Status.RAISED, latest.alert_id
    elif severity > was[0]:
        status, chosen = Status.ESCALATED, latest.alert_id
    else:
        status, chosen = Status.DEESCALATED, latest.alert_id
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


def _watched(
    transitions: list[Transition], states: dict[str, dict[StateKey, AlertState]], rules: RuleSet
) -> list[Transition]:
    """Flapping applied to transitions found apart from the readings' (no-data
    episodes), device by device, with the watch the readings left."""
    by_device: dict[str, list[Transition]] = defaultdict(list)
    for t in sorted(transitions, key=lambda t: t.time_ms):
        by_device[t.device_id].append(t)
    out: list[Transition] = []
    for device_id, found in sorted(by_device.items()):
        evaluation = watch(Evaluation(states.get(device_id, {}), found), rules)
        states[device_id] = evaluation.state
        out += evaluation.transitions
    return out


def _settled(
    states: dict[str, dict[StateKey, AlertState]], rules: RuleSet, end_ms: int
) -> list[Transition]:
    """The STABLE an ideal sweep would send by the end of the input, for every
    key still flapping then."""
    out: list[Transition] = []
    for device_id, state in sorted(states.items()):
        stable = quieted(device_id, state, end_ms)
        if stable:
            out += watch(Evaluation(state, stable), rules).transitions
    return out


def replay(
    messages: Iterable[Any],
    rules: RuleSet,
    *,
    order: str = "event",
    wall_ms: int | None = None,
    result: Result | None = None,
) -> Result:
    """Validate and evaluate decoded `messages` (in the given order for `arrival`)."""
    nodata = any(r.nodata_ms is not None for r in rules.rules)
    state = _Replay(result if result is not None else Result(), order, nodata=nodata)
    with _collector_off():
        for message in messages:
            try:
                state.add(parse_message(message, _NO_CLOCK))
            except MessageRejectedError as exc:
                state.add(exc)
        return state.finish(rules, _wall(wall_ms))


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
) -> Result:
    """Read `sources` (paths, `-` for stdin) and replay them: each line is
    validated straight from its bytes; a line that is not JSON is reported and
    skipped. `on_rejected` hears of every line, and every reading of a line,
    that is not replayed; `on_seconds` of every line with a timestamp that
    looks like epoch seconds (replayed all the same, as the function would)."""
    result = Result()
    nodata = any(r.nodata_ms is not None for r in rules.rules)
    state = _Replay(result, order, nodata=nodata)
    started: set[str] = set()
    with _collector_off():
        for source, number, raw in read_lines(sources, stdin, result):
            first = source not in started
            started.add(source)
            try:
                parsed = parse_message_json(raw, _NO_CLOCK)
            except MessageRejectedError as exc:
                if exc.rejection.code != "not_json":
                    _report(source, number, exc.rejection.payload, [exc.rejection],
                            result, on_rejected, on_seconds)  # fmt: skip
                    state.add(exc)
                    continue
                if first and _opens_a_document(raw):
                    raise InputError(_not_json_lines(source)) from None
                result.bad_lines += 1
                reason = exc.rejection.detail.partition(": ")[2]
                on_bad_line(BadLine(source, number, f"not valid JSON ({reason})"))
                if on_rejected is not None:
                    on_rejected(RejectedLine(source, number, _line_text(exc.rejection)))
                continue
            if _may_hold_seconds(parsed):
                _report(source, number, decode_json(raw), parsed.rejections,
                        result, on_rejected, on_seconds)  # fmt: skip
            state.add(parsed)
        return state.finish(rules, _wall(wall_ms))


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
) -> None:
    """The line's rejections, and its timestamps that look like epoch seconds."""
    suspects = seconds_suspects(message)
    if suspects:
        result.seconds_lines += 1
        if on_seconds is not None:
            on_seconds(SecondsWarning(source, number, suspects))
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


def summarize(result: Result, rules: RuleSet, *, flap_window_ms: int) -> list[RuleSummary]:
    """One line per rule in force (and per implicit rule that fired)."""
    summaries = {r.name: RuleSummary(r.name) for r in rules.rules}
    episodes: dict[str, tuple[Transition, bool]] = {}
    resolved_at: dict[tuple[str, str, str], int] = {}
    end_ms = result.last_ms or 0
    for t in result.transitions:
        if t.report:
            continue  # a window's catch-up: news of changes already counted
        summary = summaries.setdefault(t.rule, RuleSummary(t.rule))
        key = (t.device_id, t.sensor_id, t.rule)
        if t.status is Status.RAISED:
            summary.episodes += 1
            episodes[t.alert_id] = (t, t.severity is Severity.CRITICAL)
            previous = resolved_at.get(key)
            summary.flaps += previous is not None and t.time_ms - previous <= flap_window_ms
        elif t.status is Status.ESCALATED and t.alert_id in episodes:
            episodes[t.alert_id] = (episodes[t.alert_id][0], True)
        elif t.status is Status.RESOLVED and t.alert_id in episodes:
            raised, critical = episodes.pop(t.alert_id)
            summary.alert_ms += t.time_ms - raised.time_ms
            summary.critical += critical
            resolved_at[key] = t.time_ms
    for raised, critical in episodes.values():
        summary = summaries[raised.rule]
        summary.still_open += 1
        summary.critical += critical
        summary.alert_ms += max(0, end_ms - raised.time_ms)
    return list(summaries.values())


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
    document: dict[str, Any] = {
        "transitions": [t.to_json() for t in result.transitions],
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
        },
    }
    if rules_version is not None:
        document["input"]["rulesVersion"] = rules_version
    json.dump(document, stream, indent=2)
    stream.write("\n")


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
    stream.writelines(json.dumps(t.to_json(), separators=(",", ":")) + "\n" for t in transitions)


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
