"""The rules in force when they live in AWS AppConfig (RULES_SOURCE=appconfig).

`DeployedRules.current` answers the rules to evaluate with, asking the AppConfig
extension at most once per poll interval (the extension's own
AWS_APPCONFIG_EXTENSION_POLL_INTERVAL_SECONDS, the template's RulesPollSeconds:
warm invocations in between reuse the rules in force) and putting a new version
in force once it passes the function's own rule check, the one `telemetry rules
check` applies.

A version that fails the check never replaces the rules in force: its problems
are logged (the rule file's own words; the content is never logged) and counted
(`on_rejected`, the RulesRejected metric the template alarms on, which can roll
the deployment back), and the version is not checked again. The last good
configuration is kept in the state table (`LastGoodRules`): a cold start whose
extension serves a bad version, or cannot answer, evaluates with that one. A
cold start with neither raises ConfigurationError: the function never evaluates
with no rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from telemetry.adapters.appconfig import Configuration, ConfigurationUnavailableError
from telemetry.core.rules import DEFAULT_NOTIFICATIONS, RuleFileError, RuleSet
from telemetry.errors import ConfigurationError
from telemetry.observability import Logger


class Endpoint(Protocol):
    def fetch(self) -> Configuration: ...


class KeptRules(Protocol):
    def load(self) -> Configuration | None: ...

    def save(self, configuration: Configuration, now_ms: int | None = None) -> bool: ...


def rules_of(configuration: Configuration) -> RuleSet:
    """The rule set a configuration holds (one rule file, YAML or JSON), checked
    as `telemetry rules check` checks a file, with `version` set to the
    configuration's. RuleFileError with every problem when it is not usable,
    including a file with no rule at all (nothing would ever alert)."""
    from telemetry.core.rule_specs import parse_rule_document  # noqa: PLC0415 - pydantic

    source = f"AppConfig version {configuration.version}"
    try:
        text = configuration.content.decode("utf-8")
    except UnicodeDecodeError:
        raise RuleFileError([f"{source}: not UTF-8 text"]) from None
    document = parse_rule_document(text, source)
    if not document.rules:
        raise RuleFileError([f"{source}: no rules: nothing would ever alert"])
    rules = RuleSet(
        document.rules,
        gateways=document.gateways,
        notifications=document.notifications or DEFAULT_NOTIFICATIONS,
    )
    rules.version = configuration.version
    return rules


class DeployedRules:
    """The rules deployed to AppConfig, as the function puts them in force."""

    def __init__(
        self,
        endpoint: Endpoint,
        kept: KeptRules,
        *,
        poll_ms: int,
        logger: Logger,
        on_rejected: Callable[[int], None],
    ) -> None:
        self._endpoint = endpoint
        self._kept = kept
        self._poll_ms = poll_ms
        self._logger = logger
        self._on_rejected = on_rejected
        self._in_force: RuleSet | None = None
        self._asked_ms: int | None = None
        self._rejected: set[str] = set()

    @property
    def version(self) -> str | None:
        """The version in force (None before the first call)."""
        return None if self._in_force is None else self._in_force.version

    def current(self, now_ms: int) -> RuleSet:
        """The rules to evaluate with at `now_ms`. ConfigurationError at a cold
        start with no good configuration; DependencyError when the state table
        cannot be read or written (transient: the invocation is retried)."""
        if self._in_force is None:
            return self._cold_start(now_ms)
        if self._asked_ms is not None and now_ms - self._asked_ms < self._poll_ms:
            return self._in_force
        self._asked_ms = now_ms
        try:
            offered = self._endpoint.fetch()
        except ConfigurationUnavailableError as exc:
            self._logger.warning(
                "rules: keeping the version in force",
                extra={"rulesVersion": self._in_force.version, "reason": str(exc)},
            )
            return self._in_force
        if offered.version == self._in_force.version or offered.version in self._rejected:
            return self._in_force
        accepted = self._checked(offered)
        if accepted is not None:
            self._keep(offered, now_ms)
            self._put_in_force(accepted, replaced=self._in_force.version)
        return self._in_force

    def _cold_start(self, now_ms: int) -> RuleSet:
        self._asked_ms = now_ms
        kept = self._kept.load()
        reason = ""
        try:
            offered: Configuration | None = self._endpoint.fetch()
        except ConfigurationUnavailableError as exc:
            offered, reason = None, str(exc)
        if offered is not None:
            accepted = self._checked(offered)
            if accepted is not None:
                if kept is None or kept.version != offered.version:
                    self._keep(offered, now_ms)
                return self._put_in_force(accepted, replaced=None)
            reason = f"version {offered.version} failed the rule check"
        if kept is None:
            raise ConfigurationError(
                f"no rules to evaluate with: {reason}, and no good version was kept "
                "(deploy a valid rule file: telemetry rules deploy)"
            )
        try:
            rules = rules_of(kept)
        except RuleFileError as exc:
            raise ConfigurationError(
                f"no rules to evaluate with: {reason}, and the version kept "
                f"({kept.version}) fails this function's rule check: {exc.problems[0]}"
            ) from None
        self._logger.warning(
            "rules: evaluating with the last good version kept",
            extra={"rulesVersion": kept.version, "reason": reason},
        )
        return self._put_in_force(rules, replaced=None)

    def _checked(self, offered: Configuration) -> RuleSet | None:
        try:
            return rules_of(offered)
        except RuleFileError as exc:
            problems = exc.problems
        self._rejected.add(offered.version)
        self._logger.error(
            "rules: configuration rejected; the rules in force stay",
            extra={
                "rejectedVersion": offered.version,
                "rulesVersion": self.version,
                "problems": problems[:20],
                "moreProblems": max(0, len(problems) - 20),
            },
        )
        self._on_rejected(1)
        return None

    def _keep(self, offered: Configuration, now_ms: int) -> None:
        if not self._kept.save(offered, now_ms):
            self._logger.warning(
                "rules: version in force too large to keep in the state table; a cold "
                "start that cannot read it from AppConfig falls back to an older one",
                extra={"rulesVersion": offered.version, "bytes": len(offered.content)},
            )

    def _put_in_force(self, rules: RuleSet, *, replaced: str | None) -> RuleSet:
        self._in_force = rules
        self._logger.info(
            "rules: version in force",
            extra={"rulesVersion": rules.version, "replaced": replaced, "rules": len(rules)},
        )
        return rules
