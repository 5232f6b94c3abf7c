"""Client construction and error translation shared by the adapters."""

from __future__ import annotations

from typing import Any, Final

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from telemetry.errors import DependencyError

# Standard retry mode: throttling and 5xx are retried with backoff by the SDK
# before an error reaches us; what still fails fails the invocation.
#
# Client-side parameter validation is off: botocore walks every request against
# the service model in Python, a third of the function's CPU in a stream batch
# (benchmarks/bench_stream_cpu.py). It is safe because no request carries
# unchecked input. What still validates:
# - the adapters build every request from validated readings (charset and
#   length of ids, 256-character labels, finite numbers), transitions and the
#   settings, in fixed shapes, and assert AWS's size limits themselves;
# - tests/test_requests.py runs every kind of request the function makes and
#   holds each to the service model with botocore's own validator;
# - AWS validates each request on arrival: a ValidationException is permanent,
#   it fails the invocation loudly and loses nothing (Lambda's retries, then the
#   on-failure destination).
CLIENT_CONFIG: Final = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=3,
    read_timeout=10,
    tcp_keepalive=True,
    parameter_validation=False,
)

_PERMANENT_CODES: Final = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthorizationError",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ResourceNotFoundException",
        "NotFound",
        "NotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "ValidationException",
        "InvalidParameter",
        "InvalidParameterException",
        "InvalidParameterValue",
        "KMSDisabled",
        "KMSAccessDenied",
        "KMSNotFound",
    }
)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def error_code_of(exc: Exception) -> str | None:
    return error_code(exc) if isinstance(exc, ClientError) else None


def translate(service: str, operation: str, exc: Exception) -> DependencyError:
    """A DependencyError that says whether retrying can help."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = str(exc.response.get("Error", {}).get("Message", ""))
        return DependencyError(
            service, operation, code, message, transient=code not in _PERMANENT_CODES
        )
    if isinstance(exc, BotoCoreError):
        return DependencyError(service, operation, type(exc).__name__, str(exc), transient=True)
    raise TypeError(f"not an AWS error: {exc!r}") from exc


AWS_ERRORS: Final = (ClientError, BotoCoreError)


def make_client(
    service: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    read_timeout: float | None = None,
) -> Any:
    """A boto3 client with the project's retry and timeout settings; `read_timeout`
    (seconds) replaces CLIENT_CONFIG's for a call that may take longer to answer."""
    import boto3  # noqa: PLC0415 - keeps `import telemetry.adapters` cheap for the CLI

    config = CLIENT_CONFIG
    if read_timeout is not None:
        config = config.merge(Config(read_timeout=read_timeout))
    kwargs: dict[str, Any] = {"config": config}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    if region:
        kwargs["region_name"] = region
    return boto3.client(service, **kwargs)
