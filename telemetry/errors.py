"""The project's own failure types, shared by adapters and the pipeline.

Adapters translate AWS errors into these at their boundary, so that nothing
above them needs botocore to tell a retryable fault from a misconfiguration.
"""

from __future__ import annotations


class ConfigurationError(RuntimeError):
    """The function cannot start: a setting is missing or invalid."""


class DependencyError(RuntimeError):
    """An AWS call failed after the SDK's own retries.

    `transient` is True for throttling, 5xx and timeouts; False for what will
    not heal by itself (access denied, a missing table or topic). Either way
    the invocation fails so that Lambda retries it and, in the end, hands the
    event to the on-failure destination: this is never bad input.
    """

    def __init__(
        self, service: str, operation: str, code: str, message: str, *, transient: bool
    ) -> None:
        super().__init__(f"{service}.{operation} failed ({code}): {message}")
        self.service = service
        self.operation = operation
        self.code = code
        self.message = message
        self.transient = transient


class StateConflictError(RuntimeError):
    """A conditional state write lost to another invocation: re-read and retry."""


class Refusal:
    """One item a service refused inside an otherwise successful call (an SNS
    PublishBatch entry, say): what it was, why, and whether retrying can help.
    A refusal that cannot heal goes to the dead-letter queue; the rest is retried."""

    __slots__ = ("code", "item", "message", "retryable")

    def __init__(self, item: object, code: str, message: str, *, retryable: bool) -> None:
        self.item = item
        self.code = code
        self.message = message
        self.retryable = retryable

    def __repr__(self) -> str:
        return f"Refusal({self.code!r}, retryable={self.retryable})"
