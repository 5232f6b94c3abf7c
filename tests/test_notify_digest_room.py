"""A full digest makes room for a more severe change as it always did.

The digest keeps the least severity of the alerts it lists, so that a
transition held into a full digest needs no scan of them; a digest read back
from storage does not know it yet. Either way the alerts listed are those of
the reference: the least severe, latest held, makes room.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.core.alerts import Status, Transition
from telemetry.core.notify import MAX_DIGEST_ALERTS, Digest, HeldAlert
from tests.strategies import NOW_MS, transitions


def _reference(held: list[Transition]) -> tuple[list[HeldAlert], int]:
    alerts: list[HeldAlert] = []
    omitted = 0
    for t in held:
        alert = HeldAlert.of(t)
        if len(alerts) < MAX_DIGEST_ALERTS:
            alerts.append(alert)
            continue
        omitted += 1
        weakest = min(a.rank for a in alerts)
        if alert.rank > weakest:
            index = max(i for i, a in enumerate(alerts) if a.rank == weakest)
            alerts = [*alerts[:index], *alerts[index + 1 :], alert]
    return alerts, omitted


@settings(max_examples=60, deadline=None)
@given(
    st.lists(transitions(statuses=[Status.RAISED, Status.ESCALATED]), min_size=90, max_size=260),
    st.integers(0, 260),
)
def test_a_full_digest_keeps_the_alerts_the_reference_keeps(
    held: list[Transition], stored_at: int
) -> None:
    # Given changes held one by one, the digest stored and read back part way
    digest = Digest(NOW_MS, NOW_MS)
    for n, t in enumerate(held):
        if n == stored_at:
            digest = Digest.from_json(digest.to_json())
        digest = digest.adding(t, NOW_MS)
    # Then it lists what the scan over the listed alerts keeps, and counts the rest
    alerts, omitted = _reference(held)
    assert list(digest.alerts) == alerts
    assert [a.rank for a in digest.alerts] == [a.rank for a in alerts]
    assert digest.omitted == omitted
    assert digest.lowest in (None, min(a.rank for a in alerts))
    assert sum(n for _, n in digest.severities) == len(held)
    assert digest == Digest.from_json(digest.to_json())
