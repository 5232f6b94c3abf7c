"""Maintenance windows: when matched keys' changes are history, not messages.

A rule file's `maintenance` section lists windows, each matching keys with the
same keys and globs as a rule's `match` (deviceId, sensorId, type, location):

- recurring, `every: "DAYS HH:MM-HH:MM"` in `timezone` (an IANA name, default
  UTC). DAYS is `*` (every day), one day (`SUN`), a range (`MON-FRI`, which
  may wrap: `FRI-MON`) or a comma list of those (`SAT,SUN`, `MON,WED-FRI`).
  A range whose end is earlier than its start crosses midnight and belongs to
  the day it starts (as cron and Alertmanager's time intervals read it):
  `FRI 22:00-02:00` runs from Friday 22:00 to Saturday 02:00. `24:00` may end
  a range (midnight at the end of the day). An empty range (`04:00-04:00`) is
  an error.
- one-off, `from` and `to` (ISO-8601 instants); `to` must come after `from`.

Local times are read as the zone's clock shows them, through the IANA
database (DST handled): on the day clocks go forward, a time the clock skips
is read with the offset in force before the change (02:30 in Europe/Paris on
the last Sunday of March is 03:30 CEST), and an occurrence that this leaves
empty does not happen that day; on the day clocks go back, a time the clock
shows twice is its first showing (so `02:00-04:00` lasts three hours then).
A window is half-open: it covers its start, not its end.

Pure: no clock, no I/O; times are epoch milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from telemetry.core.immutable import immutable
from telemetry.core.rule_index import MatchCache, MatchKey, compiled_glob

DAY_NAMES: Final = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
DEFAULT_TIMEZONE: Final = "UTC"
EVERY_FORMS: Final = (
    "days and a time range such as 'SUN 02:00-04:00', 'MON-FRI 22:00-02:00', "
    "'SAT,SUN 00:00-24:00' or '* 03:00-03:30'"
)
_TIME: Final = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")
_LOOKBACK_DAYS: Final = 8
"""How far back the latest occurrence is looked for: any valid recurring
window has one in every week."""


class WindowError(ValueError):
    """A window that is not one: `field` names what is wrong, the message says why."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _day(text: str) -> int:
    name = text.strip().upper()
    if name not in DAY_NAMES:
        known = ", ".join(DAY_NAMES)
        raise WindowError("every", f"{text.strip()!r} is not a day (they are: {known})")
    return DAY_NAMES.index(name)


def parse_days(text: str) -> frozenset[int]:
    """Weekday numbers (Monday 0) of `*`, `SUN`, `MON-FRI`, `FRI-MON` or `SAT,SUN`."""
    if text.strip() == "*":
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.partition("-")
        if not part.strip():
            raise WindowError("every", f"{text!r}: an empty day in the list")
        start = _day(first)
        if not dash:
            days.add(start)
            continue
        end = _day(last)
        day = start
        days.add(day)
        while day != end:
            day = (day + 1) % 7
            days.add(day)
    return frozenset(days)


def _minutes(text: str) -> int:
    found = _TIME.match(text.strip())
    if found is None or (found.group(1) == "24" and found.group(2) != "00"):
        raise WindowError("every", f"{text.strip()!r} is not a time of day such as 02:00 or 22:30")
    return int(found.group(1)) * 60 + int(found.group(2))


def parse_every(text: str) -> tuple[frozenset[int], int, int]:
    """The days, start and end (minutes after midnight) of an `every`; an end
    at or before the start (but not equal) crosses midnight."""
    days_text, _, times = text.strip().rpartition(" ")
    if not days_text.strip() or "-" not in times:
        raise WindowError("every", f"{text!r} must be {EVERY_FORMS}")
    days = parse_days(days_text.replace(" ", ""))
    start_text, _, end_text = times.partition("-")
    start, end = _minutes(start_text), _minutes(end_text)
    if start == 24 * 60:
        raise WindowError("every", "a range cannot start at 24:00 (write 00:00 of the next day)")
    if start == end:
        raise WindowError(
            "every", f"{start_text.strip()}-{end_text.strip()} is empty: it never occurs"
        )
    return days, start, end


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone of that name; WindowError when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError(
            "timezone", f"{name!r} is not an IANA time zone name such as Europe/Paris or UTC"
        ) from None


@immutable
class Window:
    """One maintenance window, checked. Recurring: `days` (Monday 0), `start_min`
    and `end_min` in `timezone`; one-off: `from_ms` to `to_ms`."""

    name: str
    match: tuple[tuple[str, str], ...] = ()
    days: frozenset[int] | None = None
    start_min: int = 0
    end_min: int = 0
    timezone: str = DEFAULT_TIMEZONE
    from_ms: int | None = None
    to_ms: int | None = None

    @property
    def recurring(self) -> bool:
        return self.days is not None

    def matches(
        self, device_id: str, sensor_id: str, type_: str | None, location: str | None
    ) -> bool:
        """Whether a key with these labels is in this window's scope (every
        match key given must match; a key without the label does not)."""
        labels = {"deviceId": device_id, "sensorId": sensor_id, "type": type_, "location": location}
        for key, pattern in self.match:
            value = labels.get(key)
            if value is None or not compiled_glob(pattern).match(value):
                return False
        return True

    def _on(self, day: date) -> tuple[int, int] | None:
        """The occurrence that starts on local `day`, as [start, end) epoch ms
        (None: not one of its days, or left empty by a clock change)."""
        if self.days is None or day.weekday() not in self.days:
            return None
        return _occurrence(self, day)

    def _occurrence_on(self, day: date) -> tuple[int, int] | None:
        tz = zone(self.timezone)
        start = datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(
            minutes=self.start_min
        )
        end_day = day + timedelta(days=1) if self.end_min <= self.start_min else day
        end = datetime(end_day.year, end_day.month, end_day.day, tzinfo=tz) + timedelta(
            minutes=self.end_min
        )
        # Wall-clock arithmetic above; read each as the zone's clock shows it.
        start_ms = _wall_ms(start, tz)
        end_ms = _wall_ms(end, tz)
        return (start_ms, end_ms) if end_ms > start_ms else None

    def latest(self, t_ms: int) -> tuple[int, int] | None:
        """Of the occurrences that started at or before `t_ms`, the one that
        ends last (None: none has started)."""
        if not self.recurring:
            if self.from_ms is None or self.to_ms is None or self.from_ms > t_ms:
                return None
            return self.from_ms, self.to_ms
        local = datetime.fromtimestamp(t_ms / 1000, zone(self.timezone)).date()
        best: tuple[int, int] | None = None
        for back in range(_LOOKBACK_DAYS + 1):
            found = self._on(local - timedelta(days=back))
            if found is not None and found[0] <= t_ms and (best is None or found[1] > best[1]):
                best = found
        return best

    def covering(self, t_ms: int) -> tuple[int, int] | None:
        """The occurrence [start, end) that covers `t_ms` (None: none does).
        Of overlapping occurrences (a range of nearly a day around a clock
        change), the one that ends last."""
        if not self.recurring:
            found = self.latest(t_ms)
            return found if found is not None and t_ms < found[1] else None
        local = datetime.fromtimestamp(t_ms / 1000, zone(self.timezone)).date()
        best: tuple[int, int] | None = None
        for back in range(3):
            found = self._on(local - timedelta(days=back))
            if (
                found is not None
                and found[0] <= t_ms < found[1]
                and (best is None or found[1] > best[1])
            ):
                best = found
        return best

    def next_start(self, t_ms: int) -> int | None:
        """When the next occurrence starting after `t_ms` starts (None: never)."""
        if not self.recurring:
            return self.from_ms if self.from_ms is not None and self.from_ms > t_ms else None
        local = datetime.fromtimestamp(t_ms / 1000, zone(self.timezone)).date()
        for ahead in range(-1, 3 * _LOOKBACK_DAYS):
            found = self._on(local + timedelta(days=ahead))
            if found is not None and found[0] > t_ms:
                return found[0]
        return None


@lru_cache(maxsize=4096)
def _occurrence(window: Window, day: date) -> tuple[int, int] | None:
    """`Window._on`, remembered: the same days are asked of every key and sweep."""
    return window._occurrence_on(day)


@lru_cache(maxsize=1024)
def _covering(window: Window, t_ms: int) -> tuple[int, int] | None:
    """`Window.covering`, remembered: one invocation asks it of every key at one time."""
    return window.covering(t_ms)


def _wall_ms(moment: datetime, tz: ZoneInfo) -> int:
    """Epoch ms of a wall-clock time in `tz`: a time the clock skips takes the
    offset before the change, one it shows twice its first showing (fold 0)."""
    naive = moment.replace(tzinfo=None)
    return int(naive.replace(tzinfo=tz, fold=0).astimezone(UTC).timestamp() * 1000)


@immutable
class Hold:
    """A key held by a window: its name and when the occurrence ends."""

    name: str
    until_ms: int


class Maintenance:
    """The maintenance windows in force, and which of them hold a key when."""

    def __init__(self, windows: Iterable[Window] = ()) -> None:
        self.windows: tuple[Window, ...] = tuple(windows)
        self._scopes: MatchCache[MatchKey, tuple[Window, ...]] = MatchCache()

    def __bool__(self) -> bool:
        return bool(self.windows)

    def _scoped(
        self, device_id: str, sensor_id: str, type_: str | None, location: str | None
    ) -> tuple[Window, ...]:
        key = (device_id, sensor_id, type_, location)
        found = self._scopes.get(key)
        if found is None:
            found = tuple(w for w in self.windows if w.matches(*key))
            self._scopes.put(key, found)
        return found

    def holding(
        self,
        device_id: str,
        sensor_id: str,
        type_: str | None,
        location: str | None,
        t_ms: int,
    ) -> Hold | None:
        """The window that holds the key at `t_ms`: of several, the one whose
        occurrence ends last (None: no window covers it)."""
        best: Hold | None = None
        for window in self._scoped(device_id, sensor_id, type_, location):
            found = _covering(window, t_ms)
            if found is not None and (best is None or found[1] > best.until_ms):
                best = Hold(window.name, found[1])
        return best

    def counts_from(
        self,
        device_id: str,
        sensor_id: str,
        type_: str | None,
        location: str | None,
        t_ms: int,
    ) -> int | None:
        """The end of the latest occurrence, among the key's windows, that
        started at or before `t_ms` (it may be later than `t_ms`: the key is
        in it): no-data and offline windows count from no earlier than this."""
        ends = []
        for window in self._scoped(device_id, sensor_id, type_, location):
            found = window.latest(t_ms)
            if found is not None:
                ends.append(found[1])
        return max(ends) if ends else None


NO_MAINTENANCE: Final = Maintenance()


def window_problems(window: Window, now_ms: int | None = None) -> list[str]:
    """What makes a window useless: given the clock (`telemetry rules check`),
    a one-off window that has already ended never occurs again."""
    if now_ms is None or window.recurring or window.to_ms is None or window.to_ms > now_ms:
        return []
    end = datetime.fromtimestamp(window.to_ms / 1000, UTC).isoformat().replace("+00:00", "Z")
    return [f"to: the window ended at {end}: it never occurs again"]


def names_unique(windows: Sequence[Window]) -> list[str]:
    """A problem per window name given twice."""
    seen: set[str] = set()
    out = []
    for window in windows:
        if window.name in seen:
            out.append(f"maintenance {window.name!r}: name: duplicate")
        seen.add(window.name)
    return out
