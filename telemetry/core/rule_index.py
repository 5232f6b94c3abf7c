"""Which rules match a reading, found without testing every rule.

A rule matches a reading when each of its `(key, glob)` pairs matches the
reading's value for that key (deviceId, sensorId, type, location; shell-style
globs as `fnmatch` reads them, case-sensitive); a missing value matches no
pattern. Which rules match depends on a value only through which of the rules'
patterns at its key it matches: its class. Thousands of pumps without levels of
their own share one class; sensorIds share one when no rule names them.

`RuleIndex` finds a value's class without testing every pattern: exact values
(`temperature`, `pump-0042`) by one lookup (classified when the rules are
loaded), globs by their literal prefix (`line3-` of `line3-*`), then tested in
full; only patterns with no literal prefix (`*`, `*-temp`, `?x`) are tested for
every new value. Each rule is filed under its rarest pattern (its anchor).

A reading's rules are found through a `Profile`: the classes of its deviceId
and location, shared by every device of the same classes, with the rules those
two settle and the rules left waiting for a pattern at sensorId or type. A
profile remembers the rules of each type (or sensorId class and type) met with
it. The readings of a message share their device, so a reading costs one
lookup of its type in the profile, and a message the classes of its deviceId
and location: whatever the number of rules, and with nothing kept per key.
A device with levels of its own (a deviceId pattern that settles its rules
alone) is a class of its own: its profile keeps only those rules and rests on
the profile of its other patterns at its location, which works out the rules
it shares with its line once for the line.

`MatchCache` is the bounded memo of values' classes: two generations, never
emptied whole, so that a fleet with more devices than it holds pays a new
classification per message past it, not a cliff.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Sequence
from itertools import islice
from typing import Any, Final, Generic, Protocol, TypeVar, overload

MATCH_KEYS: Final = ("deviceId", "sensorId", "type", "location")
"""The reading values a rule may match on, in the order of a `MatchKey`."""
MatchKey = tuple[str, str, str | None, str | None]
"""A reading's (deviceId, sensorId, type, location): all that matching reads."""
GLOB_CHARACTERS: Final = frozenset("*?[")
_POSITION: Final = {key: position for position, key in enumerate(MATCH_KEYS)}
_DEVICE: Final = 0
_SENSOR: Final = 1
_TYPE: Final = 2
_LOCATION: Final = 3
_KEYS: Final = len(MATCH_KEYS)
_TAIL: Final = frozenset({_SENSOR, _TYPE})
"""The match keys a reading's values vary at within a device's message."""
CACHE_GENERATION: Final = 65_536
"""Keys per generation of a `MatchCache`: it holds at most twice that (values
of one match key, for the classes)."""
PROFILE_ANSWERS: Final = 1_024
"""Answers a `Profile` keeps (types, or sensorId classes and types); past that
it works each out from the classes again."""


class Matchable(Protocol):
    """What the index needs of a rule: its `(key, glob)` pairs."""

    @property
    def match(self) -> tuple[tuple[str, str], ...]: ...


R = TypeVar("R", bound=Matchable)
A = TypeVar("A")
"""What an answer is made into: a tuple of the rules, or more about them."""
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
Test = Callable[[str], object]
Need = tuple[int, int]
"""A pattern a rule needs: its match key's position in `MATCH_KEYS`, its id."""
Reached = tuple[int, tuple[Need, ...]]
"""A rule's index, and its patterns left to check."""
Waiting = tuple[list[int], list[Reached]]
"""The rules waiting for one pattern: those needing nothing else, and those
with other patterns to check."""
Fixed = tuple[list[int], dict[int, Waiting]]
"""Of the rules anchored on a pattern at deviceId or location that need no other
pattern there: those needing none elsewhere, and the others by their first
pattern at sensorId or type."""
Settling = tuple[int, tuple[Need, ...], Need | None, tuple[Need, ...]]
"""A rule anchored at deviceId or location: its index, its other patterns there,
and of those at sensorId and type the first, and the rest."""


_GLOBS: dict[str, re.Pattern[str]] = {}


def compiled_glob(pattern: str) -> re.Pattern[str]:
    """The pattern's regular expression as `fnmatch.fnmatchcase` reads it,
    compiled once per process (rules and maintenance windows share it)."""
    compiled = _GLOBS.get(pattern)
    if compiled is None:
        compiled = _GLOBS[pattern] = re.compile(fnmatch.translate(pattern))
    return compiled


def literal_prefix(pattern: str) -> str:
    """The characters before the first glob character: every string the pattern
    matches starts with them (the whole pattern when it has none)."""
    for position, character in enumerate(pattern):
        if character in GLOB_CHARACTERS:
            return pattern[:position]
    return pattern


def is_exact(pattern: str) -> bool:
    """Whether the pattern matches exactly one string, itself."""
    return GLOB_CHARACTERS.isdisjoint(pattern)


def glob_test(pattern: str) -> Test:
    """A function telling whether a value matches the glob, with the answer of
    `fnmatch.fnmatchcase`: a string comparison when the pattern is an exact
    value, `prefix*` or `*suffix` (`*` among them), else its regular expression,
    compiled when first used."""
    head, tail = pattern[:-1], pattern[1:]
    if is_exact(pattern):
        return pattern.__eq__
    if pattern.startswith("*") and is_exact(tail):
        return _ends_with(tail)
    if pattern.endswith("*") and is_exact(head):
        return _starts_with(head)
    return _regex(pattern)


def _starts_with(prefix: str) -> Test:
    def test(value: str) -> bool:
        return value.startswith(prefix)

    return test


def _ends_with(suffix: str) -> Test:
    def test(value: str) -> bool:
        return value.endswith(suffix)

    return test


def _regex(pattern: str) -> Test:
    compiled: list[Test] = []

    def test(value: str) -> object:
        if not compiled:
            compiled.append(re.compile(fnmatch.translate(pattern)).match)
        return compiled[0](value)

    return test


class MatchCache(Generic[K, V]):
    """A bounded memo that is never emptied whole.

    Two generations of at most `generation` keys each: answers go to the young
    one; when it is full it becomes the old one (the previous old one is
    dropped) and a new young one starts. A key found only in the old generation
    is copied to the young one, so a key asked for at least once a generation
    stays. At most `2 * generation` keys are held. `young` is a plain dict that
    a hot loop may read directly, asking `get` for a key it lacks.

    Once it has turned over, a sign that its keys outnumber it, a new key is
    kept only one time in `admit_every` (keys met again in the old generation
    always are): past its size, most keys are answered without it anyway, and
    turning the generations over for each would cost more than the answer."""

    def __init__(self, generation: int = CACHE_GENERATION, admit_every: int = 1) -> None:
        if generation < 1 or admit_every < 1:
            raise ValueError("a generation holds at least one key, and one in at least 1 is kept")
        self.generation = generation
        self.admit_every = admit_every
        self.young: dict[K, V] = {}
        self._old: dict[K, V] = {}
        self._turned = False
        self._declined = 0

    def __len__(self) -> int:
        return len(self.young.keys() | self._old.keys())

    def get(self, key: K) -> V | None:
        found = self.young.get(key)
        if found is None:
            found = self._old.get(key)
            if found is not None:
                self._keep(key, found)
        return found

    def put(self, key: K, value: V) -> None:
        """Remember a new key's answer (one in `admit_every` once turned over)."""
        if self._turned and self.admit_every > 1:
            self._declined += 1
            if self._declined < self.admit_every:
                return
            self._declined = 0
        self._keep(key, value)

    def _keep(self, key: K, value: V) -> None:
        young = self.young
        if len(young) >= self.generation:
            self._old = young
            young = self.young = {}
            self._turned = True
        young[key] = value


_FEW: Final = 8


class ValueClass:
    """The patterns at one match key that a value matches (their ids, sorted).
    Values of one class match the same rules; a class is one object while it is
    remembered, so that combinations of classes hash and compare by identity."""

    __slots__ = ("ids", "members", "profiles")

    def __init__(self, ids: tuple[int, ...]) -> None:
        self.ids = ids
        self.profiles: dict[ValueClass, Profile[Any]] | None = None
        """A deviceId class's profiles, by location class (`RuleIndex.profile`)."""
        self.members: Collection[int] = ids if len(ids) <= _FEW else frozenset(ids)
        """The ids, for `in`: the tuple while it is short (as fast, made for free)."""


class _KeyPatterns:
    """The distinct patterns rules use at one match key, indexed by literal."""

    def __init__(self, position: int, generation: int) -> None:
        self.position = position
        self.ids: dict[str, int] = {}
        self.exact: dict[str, int] = {}
        self.prefixed: dict[int, dict[str, list[int]]] = {}
        self.by_prefix: list[tuple[int, dict[str, list[int]]]] = []
        self.always: list[int] = []
        self.tests: list[Test] = []
        self.classes: MatchCache[str, ValueClass] = MatchCache(generation)
        self.interned: MatchCache[tuple[int, ...], ValueClass] = MatchCache(generation)

    def add(self, pattern: str) -> int:
        """The pattern's id, filed under its literal when new."""
        found = self.ids.get(pattern)
        if found is not None:
            return found
        found = self.ids[pattern] = len(self.tests)
        self.tests.append(glob_test(pattern))
        prefix = literal_prefix(pattern)
        if prefix == pattern:
            self.exact[pattern] = found
        elif prefix:
            bucket = self.prefixed.setdefault(len(prefix), {})
            bucket.setdefault(prefix, []).append(found)
        else:
            self.always.append(found)
        return found

    def seal(self) -> None:
        """Ready for values: the exact values rules name are classified now (up
        to a generation of them), so that their first readings need not."""
        self.by_prefix = sorted(self.prefixed.items())
        for value in islice(self.exact, self.classes.generation):
            self.classify(value)

    def classify(self, value: str) -> ValueClass:
        """The class of `value`, worked out and remembered."""
        exact = self.exact.get(value)
        ids = [] if exact is None else [exact]
        tests = self.tests
        for length, bucket in self.by_prefix:
            if length > len(value):
                break
            prefixed = bucket.get(value[:length])
            if prefixed is not None:
                ids += [i for i in prefixed if tests[i](value)]
        if self.always:
            ids += [i for i in self.always if tests[i](value)]
        if len(ids) > 1:
            ids.sort()
        found = self.intern(tuple(ids))
        self.classes.put(value, found)
        return found

    def intern(self, ids: tuple[int, ...]) -> ValueClass:
        """The class of these pattern ids (sorted): one object while remembered."""
        found = self.interned.get(ids)
        if found is None:
            found = ValueClass(ids)
            self.interned.put(ids, found)
        return found


class RuleIndex(Generic[R, A]):
    """The rules of a sequence that match a reading key, in the sequence's order:
    exactly those for which every `(key, pattern)` of `rule.match` matches the
    key's value (`fnmatch.fnmatchcase`; a missing value matches nothing).

    A key's values are reduced to their classes (remembered per value). Each
    rule is filed under its anchor, of its patterns the one the fewest rules
    use: a key reaches only the rules anchored on a pattern its classes hold,
    and their other patterns are looked up in the other classes. Matching goes
    through a `Profile`, the classes of a deviceId and a location, which settles
    what they decide once for all their readings."""

    @overload
    def __init__(
        self: RuleIndex[R, tuple[R, ...]], rules: Sequence[R], generation: int = ...
    ) -> None: ...

    @overload
    def __init__(
        self,
        rules: Sequence[R],
        generation: int = ...,
        *,
        bundle: Callable[[list[R]], A],
        join: Callable[[A, tuple[R, ...]], A],
    ) -> None: ...

    def __init__(
        self,
        rules: Sequence[R],
        generation: int = CACHE_GENERATION,
        *,
        bundle: Callable[[list[R]], Any] | None = None,
        join: Callable[[Any, tuple[R, ...]], Any] | None = None,
    ) -> None:
        if (bundle is None) != (join is None):
            raise TypeError("bundle and join go together: join adds rules to what bundle makes")
        self.rules: tuple[R, ...] = tuple(rules)
        self._bundle: Callable[[list[R]], A] = _as_tuple if bundle is None else bundle
        """What the rules of an answer, in order, are made into (`A`)."""
        self._join: Callable[[A, tuple[R, ...]], A] = _added if join is None else join
        """An answer `bundle` made, with rules that come after its own in the
        sequence added: what bundling them all makes, perhaps cheaper."""
        self._at: list[_KeyPatterns | None] = [None] * len(MATCH_KEYS)
        needs: list[list[Need]] = []
        for rule in self.rules:
            found = set()
            for key, pattern in rule.match:
                position = _position(key)
                patterns = self._at[position]
                if patterns is None:
                    patterns = self._at[position] = _KeyPatterns(position, generation)
                found.add((position, patterns.add(pattern)))
            needs.append(sorted(found))
        self._keys = [patterns for patterns in self._at if patterns is not None]
        for patterns in self._keys:
            patterns.seal()
        users = Counter(need for found in needs for need in found)
        # Of the rules anchored at deviceId and location, those needing no other
        # pattern there, settled or waiting for the reading's sensorId and type
        # (`Fixed`, per anchor); the others, checked per profile (`Settling`); the
        # rules anchored at sensorId and type, waiting by anchor.
        self._fixed: tuple[dict[int, Fixed], dict[int, Fixed]] = ({}, {})
        self._checked: tuple[dict[int, list[Settling]], dict[int, list[Settling]]] = ({}, {})
        self._completing: dict[int, Waiting] = {}
        free = []
        alone: dict[int, bool] = {}
        for index, wanted in enumerate(needs):
            if wanted:
                anchor = min(wanted, key=users.__getitem__)
                others = [need for need in wanted if need != anchor]
                self._file(index, anchor, others)
                for need in wanted:
                    if need[0] == _DEVICE:
                        alone[need[1]] = alone.get(need[1], True) and (
                            need == anchor and all(other[0] in _TAIL for other in others)
                        )
            else:
                free.append(index)
        self._free = tuple(free)
        self._own: frozenset[int] = frozenset(p for p, only in alone.items() if only)
        """The deviceId patterns whose every rule they alone settle at deviceId and
        location (anchored on them, other patterns at sensorId and type only): a
        device's own levels. A profile takes their rules apart from what it
        shares with every device of its other classes (`Profile.base`)."""
        self._tail = tuple(p for p in (_SENSOR, _TYPE) if self._at[p] is not None)
        self.by_sensor = self._at[_SENSOR] is not None
        """Whether a rule matches on sensorId: a profile's answers are then per
        sensorId class and type, else per type."""
        self._nothing = ValueClass(())
        """The class of a missing value, and of any at a match key no rule uses."""

    def _file(self, index: int, anchor: Need, others: list[Need]) -> None:
        position, pattern = anchor
        if position in _TAIL:
            _wait(self._completing, anchor, index, tuple(others))
            return
        checks = tuple(need for need in others if need[0] not in _TAIL)
        rest = tuple(need for need in others if need[0] in _TAIL)
        head = position == _LOCATION
        if checks:
            first = rest[0] if rest else None
            self._checked[head].setdefault(pattern, []).append((index, checks, first, rest[1:]))
            return
        settled, pending = self._fixed[head].setdefault(pattern, ([], {}))
        if rest:
            _wait(pending, rest[0], index, rest[1:])
        else:
            settled.append(index)

    def __len__(self) -> int:
        return len(self.rules)

    def tested_always(self) -> dict[str, tuple[str, ...]]:
        """Per match key, the patterns with no literal prefix: tested against
        every new value there, the only cost that grows with the rules."""
        return {
            MATCH_KEYS[p.position]: tuple(
                pattern for pattern, i in p.ids.items() if i in set(p.always)
            )
            for p in self._keys
            if p.always
        }

    def matching(self, key: MatchKey) -> A:
        """The rules that match the reading key, in the order given."""
        device_id, sensor_id, kind, location = key
        return self.answer(self.profile(device_id, location), sensor_id, kind)

    def classes(self, key: MatchKey) -> tuple[ValueClass, ...]:
        """The key's values' classes, at the match keys some rule uses."""
        return tuple(self.class_at(p.position, key[p.position]) for p in self._keys)

    def candidates(self, key: MatchKey) -> int:
        """How many rules finding the key's rules looks at (when not remembered):
        those anchored on a pattern of the key's classes."""
        classes = [self.class_at(position, key[position]) for position in range(4)]
        count = len(self._free)
        for head, position in enumerate((_DEVICE, _LOCATION)):
            for pattern in classes[position].ids:
                settled, pending = self._fixed[head].get(pattern, ((), {}))
                count += len(settled) + len(self._checked[head].get(pattern, ()))
                count += sum(len(direct) + len(checked) for direct, checked in pending.values())
        for position in self._tail:
            for pattern in classes[position].ids:
                direct, checked = self._completing.get(_waiting_key(position, pattern), ((), ()))
                count += len(direct) + len(checked)
        return count

    def profile(self, device_id: str, location: str | None) -> Profile[A]:
        """What matching knows of readings with this deviceId and location: one
        object for all the values of the same classes (remembered with the
        deviceId's class)."""
        device = self.class_at(_DEVICE, device_id)
        return self._profile_of(device, self.class_at(_LOCATION, location))

    def _profile_of(self, device: ValueClass, place: ValueClass) -> Profile[A]:
        profiles = device.profiles
        if profiles is None:
            profiles = device.profiles = {}
        found = profiles.get(place)
        if found is None:
            found = self._new_profile(device, place)
            if len(profiles) < PROFILE_ANSWERS:
                profiles[place] = found
        return found

    def _new_profile(self, device: ValueClass, place: ValueClass) -> Profile[A]:
        """A profile; one whose deviceId class holds patterns of its own (`_own`)
        keeps only their rules and shares the rest with its base, the profile
        of its other patterns and the same location: a pump with levels of its
        own then works out its line's rules once for the line, not once a pump."""
        own = self._own
        ids = device.ids
        mine = [pattern for pattern in ids if pattern in own] if own else None
        patterns = self._at[_DEVICE]
        if not mine or patterns is None:
            return Profile(device, place, *self.settle(device, place))
        others = () if len(mine) == len(ids) else tuple(p for p in ids if p not in own)
        rest = patterns.intern(others)
        settled: list[int] = []
        pending = []
        fixed = self._fixed[0]
        for pattern in mine:
            found, waiting = fixed[pattern]
            settled += found
            if waiting:
                pending.append(waiting)
        if len(settled) > 1:
            settled.sort()
        return Profile(device, place, tuple(settled), tuple(pending), self._profile_of(rest, place))

    def class_at(self, position: int, value: str | None) -> ValueClass:
        """The value's class at that match key (`MATCH_KEYS` order)."""
        patterns = self._at[position]
        if patterns is None or value is None:
            return self._nothing  # unused: every value alike; missing: matches no pattern
        return patterns.classes.get(value) or patterns.classify(value)

    def settle(
        self, device: ValueClass, location: ValueClass
    ) -> tuple[tuple[int, ...], tuple[dict[int, Waiting], ...]]:
        """Of the rules anchored on the classes' patterns, those the two classes
        match (`Profile.settled`, `Profile.pending`)."""
        settled = list(self._free)
        pending = [self._completing]
        both = (device, self._nothing, self._nothing, location)
        for fixed, checked, value_class in zip(
            self._fixed, self._checked, (device, location), strict=True
        ):
            for pattern in value_class.ids:
                found = fixed.get(pattern)
                if found is not None:
                    settled += found[0]
                    if found[1]:
                        pending.append(found[1])
                entries = checked.get(pattern)
                if entries is not None:
                    own = _checked(entries, both, settled)
                    if own:
                        pending.append(own)
        if len(settled) > 1:
            settled.sort()
        return tuple(settled), tuple(pending)

    def answer(self, profile: Profile[A], sensor_id: str, kind: str | None) -> A:
        """The rules matching a reading of the profile with that sensorId and type."""
        type_class = self.class_at(_TYPE, kind)
        if not self.by_sensor:
            found = self.completed(profile, self._nothing, type_class)
            if len(profile.by_type) < PROFILE_ANSWERS:
                profile.by_type[kind] = found
            return found
        key = (self.class_at(_SENSOR, sensor_id), type_class)
        kept = profile.by_class.get(key)
        if kept is not None:
            return kept
        found = self.completed(profile, *key)
        if len(profile.by_class) < PROFILE_ANSWERS:
            profile.by_class[key] = found
        return found

    def completed(self, profile: Profile[A], sensor: ValueClass, kind: ValueClass) -> A:
        """The rules of a reading of the profile with these sensorId and type classes:
        its base's (the same answer object when the profile adds none), and its own."""
        base = profile.base
        if base is None:
            rules = self.rules
            return self._bundle([rules[i] for i in self._found(profile, sensor, kind)])
        shared = base.shared
        if shared is None:
            shared = base.shared = {}
        key = (sensor, kind)
        common = shared.get(key)
        if common is None:
            indices = self._found(base, sensor, kind)
            common = (indices, self._bundle([self.rules[i] for i in indices]))
            if len(shared) < PROFILE_ANSWERS:
                shared[key] = common
        pending = profile.pending
        if not profile.settled and len(pending) == 1 and len(kind.ids) == 1 and not self.by_sensor:
            # The common own level: one deviceId pattern, rules by one type.
            waiting = pending[0].get(kind.ids[0] * _KEYS + _TYPE)
            if waiting is None:
                return common[1]
            found = waiting[0] if not waiting[1] else self._found(profile, sensor, kind)
        else:
            found = self._found(profile, sensor, kind)
        if not found:
            return common[1]
        rules = self.rules
        if not common[0] or found[0] > common[0][-1]:
            # A device's own levels come after the rules it shares (as files are written).
            return self._join(common[1], tuple([rules[i] for i in found]))
        return self._bundle([rules[i] for i in sorted(found + common[0])])

    def _found(self, profile: Profile[A], sensor: ValueClass, kind: ValueClass) -> list[int]:
        """The indices, sorted, of the profile's rules (settled, or pending and
        matched by these classes), without its base's."""
        found = list(profile.settled)
        classes = (profile.device, sensor, kind, profile.location)
        sources = profile.pending
        for position in self._tail:
            for pattern in classes[position].ids:
                need = pattern * _KEYS + position  # _waiting_key, inlined
                for source in sources:
                    waiting = source.get(need)
                    if waiting is None:
                        continue
                    found += waiting[0]
                    for index, others in waiting[1]:
                        for at, other in others:
                            if other not in classes[at].members:
                                break
                        else:
                            found.append(index)
        if len(found) > 1:
            found.sort()
        return found


def _as_tuple(rules: list[Any]) -> Any:
    """The default answer: the rules, a tuple."""
    return tuple(rules)


def _added(answer: Any, rules: tuple[Any, ...]) -> Any:
    return answer + rules


def _checked(
    entries: list[Settling], classes: tuple[ValueClass, ...], settled: list[int]
) -> dict[int, Waiting]:
    """Of rules anchored at deviceId or location with other patterns there, those
    the classes match: added to `settled`, or waiting by their first pattern left."""
    own: dict[int, Waiting] = {}
    for index, checks, first, rest in entries:
        for position, other in checks:
            if other not in classes[position].members:
                break
        else:
            if first is None:
                settled.append(index)
            else:
                _wait(own, first, index, rest)
    return own


def _waiting_key(position: int, pattern: int) -> int:
    """A pattern as the key of the rules waiting for it: one int, quick to hash."""
    return pattern * _KEYS + position


def _wait(table: dict[int, Waiting], need: Need, index: int, others: tuple[Need, ...]) -> None:
    waiting = table.setdefault(_waiting_key(*need), ([], []))
    if others:
        waiting[1].append((index, others))
    else:
        waiting[0].append(index)


def _position(key: str) -> int:
    # Any other key reads the location, as `Rule.matches` does.
    return _POSITION.get(key, _LOCATION)


class Profile(Generic[A]):
    """A deviceId's and a location's classes (shared by every value of the same
    classes), what they settle of the rules, and the rules of the readings met
    with them (`RuleIndex.answer`, at most PROFILE_ANSWERS of each kind).

    `by_type` maps a reading's type to its rules when no rule matches on
    sensorId (else it stays empty): a reading then costs one lookup once its
    device's profile is found."""

    __slots__ = (
        "base",
        "by_class",
        "by_type",
        "device",
        "location",
        "pending",
        "settled",
        "shared",
    )

    def __init__(
        self,
        device: ValueClass,
        location: ValueClass,
        settled: tuple[int, ...],
        pending: tuple[dict[int, Waiting], ...],
        base: Profile[A] | None = None,
    ) -> None:
        self.device = device
        self.location = location
        self.settled = settled
        """The rules whose every pattern is at deviceId or location and matches
        (with a base: of the device's own patterns only)."""
        self.pending = pending
        """The rules left to check, by one of their patterns at sensorId or type
        (with the rest of their patterns): the index's anchored there, and those
        these classes matched at deviceId and location (with a base: those the
        device's own patterns anchor, and nothing else)."""
        self.base = base
        """The profile of the device's other patterns at the same location, whose
        rules a reading gets besides this profile's own; None when the profile
        holds all its rules itself."""
        self.shared: dict[tuple[ValueClass, ValueClass], tuple[list[int], A]] | None
        self.shared = None
        """As a base: (sensorId class, type class) -> its rules' indices and rules,
        for the profiles resting on it."""
        self.by_type: dict[str | None, A] = {}
        self.by_class: dict[tuple[ValueClass, ValueClass], A] = {}
        """(sensorId class, type class) -> rules."""
