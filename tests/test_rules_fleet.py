"""Rule files' fleet settings: offline rules, gateways, notifications, flapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from telemetry.core.rules import (
    DEFAULT_NOTIFICATIONS,
    Flapping,
    Gateway,
    Notifications,
    RuleFileError,
    RuleSet,
    load_rules,
    parse_rule_document,
)

SOURCE = "plant/fleet.yaml"


def problems_of(text: str) -> list[str]:
    with pytest.raises(RuleFileError) as caught:
        parse_rule_document(text, SOURCE)
    return caught.value.problems


def test_an_offline_rule_watches_the_devices_its_device_glob_selects() -> None:
    # Given an offline-only rule on pumps
    document = parse_rule_document(
        "rules: [{name: pump-connectivity, match: {deviceId: 'pump-*'}, offline: 2m,"
        " offlineSeverity: CRITICAL}]",
        SOURCE,
    )

    # When the set is asked which rules watch a device
    rules = RuleSet(document.rules)

    # Then pumps are watched for 2 minutes at CRITICAL, others not at all
    (rule,) = rules.watching("pump-17")
    assert (rule.offline_ms, rule.offline_severity) == (120_000, "CRITICAL")
    assert rules.watching("boiler-1") == ()


def test_offline_bounds_and_match_keys_are_named_in_a_persons_words() -> None:
    # Given offline rules too short, too long, and matching readings
    problems = problems_of(
        "rules: [{name: fast, offline: 10s}, {name: slow, offline: 8d},"
        " {name: typed, match: {type: temperature}, offline: 5m}]"
    )

    # Then each problem names the rule and what to do
    assert problems == [
        f"{SOURCE}: rule 'fast': offline: '10s' is shorter than the least allowed, 30s",
        f"{SOURCE}: rule 'slow': offline: '8d' is longer than the most allowed, 7d",
        (
            f"{SOURCE}: rule 'typed': match: an offline rule selects devices by deviceId only; "
            "type name readings, which a disconnected device does not send"
        ),
    ]


def test_a_rule_with_levels_may_add_offline_for_its_devices() -> None:
    # Given a rule with levels on a type, and an offline window
    document = parse_rule_document(
        "rules: [{name: hot, match: {type: temperature, deviceId: 'oven-*'},"
        " above: {warning: 5}, offline: 1m}]",
        SOURCE,
    )

    # Then it is accepted, and offline judges the device by its deviceId alone
    assert RuleSet(document.rules).watching("oven-2")[0].name == "hot"


def test_gateways_list_their_members_by_glob_and_are_never_their_own_member() -> None:
    # Given a gateway whose glob would match itself
    document = parse_rule_document(
        "rules: []\n"
        "gateways:\n"
        "  - {gateway: line3-gw, members: {deviceId: 'line3-*'}}\n"
        "  - {gateway: gw-2, members: {deviceId: ['a-*', 'b-*']}}\n",
        SOURCE,
    )
    rules = RuleSet(document.rules, gateways=document.gateways)

    # Then members are found by glob, and the gateway is not among them
    assert document.gateways == [
        Gateway("line3-gw", ("line3-*",)),
        Gateway("gw-2", ("a-*", "b-*")),
    ]
    assert [g.device_id for g in rules.gateways_of("line3-pump")] == ["line3-gw"]
    assert rules.gateways_of("line3-gw") == ()
    assert rules.gateways_of("b-1")[0].device_id == "gw-2"
    assert rules.gateway("gw-2") is not None


def test_bad_gateways_are_named() -> None:
    # Given a gateway with a bad name, an unknown key and no globs
    problems = problems_of(
        "gateways:\n"
        "  - {gateway: 'bad name', members: {deviceId: 'x-*'}}\n"
        "  - {gateway: gw, members: {deviceId: 'x-*', type: t}}\n"
        "  - {gateway: gw3, members: {deviceId: []}}\n"
    )

    # Then each is one line
    assert problems[0].startswith(f"{SOURCE}: gateway 'bad name': gateway: ")
    assert problems[1] == (
        f"{SOURCE}: gateway 'gw': members.type: not a setting here (known: deviceId)"
    )
    assert problems[2] == f"{SOURCE}: gateway 'gw3': members.deviceId: needs at least one glob"


def test_notifications_default_to_five_a_window_of_ten_minutes_in_one_group(
    tmp_path: Path,
) -> None:
    # Given a rule file that says nothing of notifications
    (tmp_path / "r.yaml").write_text("rules: [{name: hot, above: {warning: 5}}]")

    # When it is loaded
    rules = load_rules(tmp_path)

    # Then the defaults apply
    assert rules.notifications == DEFAULT_NOTIFICATIONS
    assert Notifications((), 600_000, 5, 120_000, None) == DEFAULT_NOTIFICATIONS


def test_notifications_and_a_default_flapping_are_read(tmp_path: Path) -> None:
    # Given notifications with a default flapping, and a rule with its own
    (tmp_path / "r.yaml").write_text(
        "rules:\n"
        "  - {name: hot, above: {warning: 5}}\n"
        "  - {name: cold, below: {warning: 0}, flapping: {changes: 3, within: 1m}}\n"
        "notifications:\n"
        "  groupBy: [location, severity]\n"
        "  window: 30m\n"
        "  maxPerWindow: 20\n"
        "  digestEvery: 5m\n"
        "  flapping: {changes: 4, within: 10m}\n"
    )

    # When it is loaded
    rules = load_rules(tmp_path)

    # Then each rule has the flapping that applies to it
    assert rules.notifications == Notifications(
        ("location", "severity"), 1_800_000, 20, 300_000, Flapping(4, 600_000)
    )
    hot, cold = rules.rules
    assert rules.flapping_for(hot) == Flapping(4, 600_000)
    assert rules.flapping_for(cold) == Flapping(3, 60_000)


def test_notifications_out_of_range_are_named_all_at_once() -> None:
    # Given every bound broken
    problems = problems_of(
        "notifications: {groupBy: [rule, rule], window: 30s, maxPerWindow: 1001,"
        " digestEvery: 30s, flapping: {changes: 101, within: 2d}}"
    )

    # Then each is named
    assert problems == [
        f"{SOURCE}: notifications: groupBy: names a field twice",
        f"{SOURCE}: notifications: window: '30s' is shorter than the least allowed, 1m",
        f"{SOURCE}: notifications: maxPerWindow: must be from 1 to 1,000 (got 1001)",
        f"{SOURCE}: notifications: digestEvery: '30s' is shorter than the least allowed, 1m",
        f"{SOURCE}: notifications: flapping.changes: must be from 2 to 100 (got 101)",
        f"{SOURCE}: notifications: flapping.within: '2d' is longer than the most allowed, 1d",
    ]


def test_digests_come_at_least_once_a_window_and_group_fields_are_known() -> None:
    # Given a digest interval longer than the window, and an unknown group field
    assert problems_of("notifications: {window: 10m, digestEvery: 20m}") == [
        (
            f"{SOURCE}: notifications: digestEvery: '20m' is longer than the window ('10m'); "
            "digests come at least once a window"
        )
    ]
    (problem,) = problems_of("notifications: {groupBy: [colour]}")
    assert problem.startswith(f"{SOURCE}: notifications: groupBy.0: must be 'rule'")


def test_one_file_of_a_set_sets_notifications_and_gateways_are_listed_once(
    tmp_path: Path,
) -> None:
    # Given two files that both set notifications and list the same gateway
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(
            "gateways: [{gateway: gw, members: {deviceId: 'x-*'}}]\nnotifications: {}\n"
        )

    # When they are loaded as one set
    with pytest.raises(RuleFileError) as caught:
        load_rules(tmp_path)

    # Then both conflicts are named with the file that had it first
    assert caught.value.problems == [
        f"{tmp_path / 'b.yaml'}: gateway 'gw': listed twice (also in {tmp_path / 'a.yaml'})",
        (
            f"{tmp_path / 'b.yaml'}: notifications: already set in {tmp_path / 'a.yaml'}; "
            "one file of a set says how operators are notified"
        ),
    ]


def test_flapping_of_a_rule_is_checked() -> None:
    # Given a rule whose flapping is out of range
    assert problems_of(
        "rules: [{name: hot, above: {warning: 5}, flapping: {changes: 1, within: 30s}}]"
    ) == [
        f"{SOURCE}: rule 'hot': flapping.changes: must be from 2 to 100 (got 1)",
        f"{SOURCE}: rule 'hot': flapping.within: '30s' is shorter than the least allowed, 1m",
    ]


def test_the_file_knows_its_sections() -> None:
    # Given an unknown top-level key
    assert problems_of("rules: []\nalarms: []\n") == [
        (
            f"{SOURCE}: alarms: not a setting of a rule file "
            "(known: rules, gateways, notifications, maintenance)"
        )
    ]
