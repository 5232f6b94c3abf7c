"""Today's whole-history replay (before streaming), kept as the oracle the
streamed backtest is compared with: every reading held until the end, then
each device evaluated at once, the transitions sorted by event time.

Two deliberate changes from today, each where today's answer hung on the way
it was computed rather than on what the function would publish: what a STABLE
made at the end says of an open no-data gap (`_with_open_gaps`), and where a
STABLE that time alone brought goes among the transitions of its time
(`_sweeps`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from telemetry.backtest import _NO_CLOCK, _sets_flapping
from telemetry.core.alerts import (
    NODATA,
    AlertState,
    Evaluation,
    Silence,
    StateKey,
    Status,
    Transition,
    evaluate,
)
from telemetry.core.flapping import kind_of, quieted, watch
from telemetry.core.messages import MessageRejectedError, Reading, parse_message
from telemetry.core.rules import RuleSet
from telemetry.core.silence import silences_in


def whole_history(  # noqa: C901, PLR0912, PLR0915 - today's code, kept whole as the oracle
    messages: Iterable[Any], rules: RuleSet, *, order: str = "event", wall_ms: int
) -> list[Transition]:
    """The transitions a history shows, decided with all of it in memory."""
    arrival = order == "arrival"
    nodata = any(r.nodata_ms is not None for r in rules.rules)
    heard: list[tuple[int | None, list[Reading]]] = []
    by_device: dict[str, list[Reading]] = defaultdict(list)
    arrivals: list[tuple[str, list[Reading]]] = []
    timeless: list[list[Reading]] = []
    latest = 0
    for message in messages:
        try:
            parsed = parse_message(message, _NO_CLOCK)
        except MessageRejectedError:
            continue
        sent, received = parsed.sent_ms, parsed.received_ms
        if sent is None and received is None:
            timeless.append(parsed.readings)
        else:
            latest = max(latest, sent or 0, received or 0)
        if nodata:
            heard.append((received, parsed.readings))
        if arrival:
            arrivals.append((parsed.device_id, parsed.readings))
        else:
            by_device[parsed.device_id].extend(parsed.readings)
    groups = arrivals if arrival else sorted(by_device.items())
    shown = [r.time_ms for _, rs in groups for r in rs if r.time_ms != _NO_CLOCK]
    clock = max(wall_ms, latest, *shown)
    for readings in timeless:
        for reading in readings:
            if reading.time_ms == _NO_CLOCK:
                reading.time_ms = clock
    times = [r.time_ms for _, rs in groups for r in rs]
    last_ms = max(times, default=0)
    found: list[list[Transition]] = []
    states: dict[str, dict[StateKey, AlertState]] = {}
    flapping = _sets_flapping(rules)
    watched: dict[str, dict[StateKey, AlertState]] = {}
    for device_id, readings in groups:
        evaluation = evaluate(readings, states.get(device_id, {}), rules)
        if flapping:
            evaluation = watch(evaluation, rules)
            watched[device_id] = evaluation.state
        if arrival:
            states[device_id] = evaluation.state
        found.append(evaluation.transitions)
    if nodata:
        pairs = [(received or r.time_ms, r) for received, rs in heard for r in rs]
        end_ms = max((at for at, _ in pairs), default=last_ms)
        silences = silences_in(pairs, rules, end_ms)
        if flapping:
            by: dict[str, list[Transition]] = defaultdict(list)
            for t in sorted(silences, key=lambda t: t.time_ms):
                by[t.device_id].append(t)
            silences = []
            for device_id, ts in sorted(by.items()):
                ev = watch(Evaluation(watched.get(device_id, {}), ts), rules)
                watched[device_id] = ev.state
                silences += ev.transitions
        found.append(silences)
    if flapping:
        for device_id, state in sorted(watched.items()):
            stable = quieted(device_id, _with_open_gaps(state, device_id, found), last_ms)
            if stable:
                found.append(watch(Evaluation(state, stable), rules).transitions)
    ordered: list[tuple[Any, ...]] = []
    for ts in found:
        for j, t in enumerate(ts):
            ordered.append((t.time_ms, t.device_id, *_sweeps(ts, j), len(ordered), t))
    return [t for *_, t in sorted(ordered, key=lambda x: x[:-1])]


def _sweeps(transitions: list[Transition], j: int) -> tuple[int, str, str, str]:
    """The second deliberate change from today: among the transitions of one
    time and device, a STABLE that time alone brought goes after the others,
    ordered by key and kind, where an ideal sweep at the end of the quiet
    period puts it (`Pipeline._swept`: its no-data alerts, then `timers`,
    whose `quieted` lists them so). Today, one that a later change found came
    with that change (a reading's: before the no-data gaps of its time), one
    made at the end after them: the order of a STABLE and a gap of its time
    hung on whether the key changed again anywhere later in the history. A
    STABLE `watch` puts before a change of its key and kind at its own time
    stays with that change (a reading of that time is taken before its sweep)."""
    t = transitions[j]
    if t.status is Status.STABLE:
        change = transitions[j + 1] if j + 1 < len(transitions) else None
        if (
            change is None
            or change.status is Status.STABLE
            or change.time_ms != t.time_ms
            or (change.sensor_id, change.rule, kind_of(change.direction))
            != (t.sensor_id, t.rule, kind_of(t.direction))
        ):
            return 1, t.sensor_id, t.rule, kind_of(t.direction)
    return 0, "", "", ""


def _with_open_gaps(
    state: dict[StateKey, AlertState], device_id: str, found: list[list[Transition]]
) -> dict[StateKey, AlertState]:
    """The first deliberate change from today: a STABLE made at the end of the
    input says where a no-data gap still open then is (its severity), as the
    function's sweep would, rather than OK."""
    last: dict[StateKey, Transition] = {}
    for t in (t for ts in found for t in ts):
        if t.device_id == device_id and t.direction == NODATA and t.status in LEVELS:
            last[t.sensor_id, t.rule] = t
    view = dict(state)
    for key, t in last.items():
        if t.status is Status.RAISED and key in view:
            episode = Silence(0, 0, t.value or 0.0, severity=t.severity, alert_id=t.alert_id,
                              since_ms=t.since_ms)  # fmt: skip
            view[key] = replace(view[key], silence=episode)
    return view


LEVELS = {Status.RAISED, Status.RESOLVED}
