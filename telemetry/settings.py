"""The function's configuration: read from the environment once per cold start.

Every variable the code reads is a field here, named by `FIELDS`; nothing else in
the package reads os.environ. A missing or invalid variable stops the function at
start with an error naming it. A valid environment is checked here in plain Python;
anything else (every problem, and any value outside what this check knows for
certain, such as non-ASCII text) goes to the pydantic model in
`telemetry.settings_model`, which words the problems: a cold start imports no pydantic.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import SplitResult, urlsplit

PACKAGE_ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_RULES_PATH: Final = PACKAGE_ROOT / "rules"


@dataclass(frozen=True, slots=True)
class Field:
    """One setting: its environment variable, whether the function cannot start
    without it, and whether the deployed stack must set it (False: local-only)."""

    variable: str
    required: bool = False
    deployed: bool = True

    @property
    def validation_alias(self) -> str:
        return self.variable

    @property
    def alias(self) -> str:
        return self.variable

    @property
    def json_schema_extra(self) -> dict[str, Any] | None:
        return None if self.deployed else {"deployed": False}

    def is_required(self) -> bool:
        return self.required


FIELDS: Final = {
    "timestream_db": Field("TIMESTREAM_DB"),
    "timestream_table": Field("TIMESTREAM_TABLE"),
    "alerts_topic_arn": Field("ALERTS_TOPIC_ARN", required=True),
    "dead_letter_queue_url": Field("DEAD_LETTER_QUEUE_URL", required=True),
    "state_table": Field("STATE_TABLE", required=True),
    "rules_path": Field("RULES_PATH"),
    "shadow_name": Field("SHADOW_NAME"),
    "iot_endpoint": Field("IOT_ENDPOINT", deployed=False),
    "aws_endpoint_url": Field("AWS_ENDPOINT_URL", deployed=False),
    "service_name": Field("POWERTOOLS_SERVICE_NAME"),
    "metrics_namespace": Field("POWERTOOLS_METRICS_NAMESPACE"),
    "trace_disabled": Field("POWERTOOLS_TRACE_DISABLED"),
    "log_level": Field("POWERTOOLS_LOG_LEVEL"),
    "sweep_fan_out": Field("SWEEP_FAN_OUT"),
    "function_name": Field("AWS_LAMBDA_FUNCTION_NAME", deployed=False),
    "timeseries_store": Field("TIMESERIES_STORE"),
    "influxdb_url": Field("INFLUXDB_URL"),
    "influxdb_api": Field("INFLUXDB_API"),
    "influxdb_database": Field("INFLUXDB_DATABASE"),
    "influxdb_org": Field("INFLUXDB_ORG"),
    "influxdb_token_secret_arn": Field("INFLUXDB_TOKEN_SECRET_ARN"),
    "influxdb_token": Field("INFLUXDB_TOKEN", deployed=False),
    "rules_source": Field("RULES_SOURCE"),
    "appconfig_application": Field("APPCONFIG_APPLICATION"),
    "appconfig_environment": Field("APPCONFIG_ENVIRONMENT"),
    "appconfig_profile": Field("APPCONFIG_PROFILE"),
    "rules_poll_seconds": Field("AWS_APPCONFIG_EXTENSION_POLL_INTERVAL_SECONDS"),
    "appconfig_http_port": Field("AWS_APPCONFIG_EXTENSION_HTTP_PORT", deployed=False),
}
"""Every setting by field name, in the model's order (`telemetry.settings_model`)."""

ALERTS_TOPIC_PATTERN: Final = r"^arn:aws[a-z-]*:sns:"
QUEUE_URL_PATTERN: Final = r"^https?://\S+$"
SHADOW_NAME_PATTERN: Final = r"^[a-zA-Z0-9:_-]{0,64}$"
LOG_LEVEL_PATTERN: Final = r"(?i)^(debug|info|warning|error|critical)$"
APPCONFIG_NAME_PATTERN: Final = r"^[A-Za-z0-9._-]{1,64}$"
"""An AppConfig application, environment or profile, by name or id, as it goes
in the extension's URL path."""
RULES_POLL_MIN_SECONDS: Final = 1
RULES_POLL_MAX_SECONDS: Final = 3600
DEFAULT_RULES_POLL_SECONDS: Final = 45
DEFAULT_APPCONFIG_HTTP_PORT: Final = 2772
SECRET_ARN_PATTERN: Final = r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:\S+$"  # noqa: S105
OPTIONAL_BLANK: Final = frozenset(
    {
        "INFLUXDB_URL",
        "INFLUXDB_DATABASE",
        "INFLUXDB_ORG",
        "INFLUXDB_TOKEN_SECRET_ARN",
        "INFLUXDB_TOKEN",
        "APPCONFIG_APPLICATION",
        "APPCONFIG_ENVIRONMENT",
        "APPCONFIG_PROFILE",
    }
)
"""Variables the template passes as an empty string when unused: blank is unset."""


class Secret:
    """A text kept out of reprs and logs (as pydantic's SecretStr shows it)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def base_url_parts(url: str, example: str, credentials_advice: str) -> SplitResult:
    """An http(s) base URL's parts: a host, and no credentials (urllib would not
    send them, and errors would print them), query string or fragment (which
    would end up before the API's path). ValueError says which, in words that
    never repeat the URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"must be an {example}")
    if parts.username or parts.password:
        raise ValueError(f"must not carry credentials ({credentials_advice})")
    if parts.query or parts.fragment:
        raise ValueError("must have no query string or fragment")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    return parts


def _influxdb_url(url: str) -> str:
    """An http(s) base URL without credentials, query or fragment; plain http
    only to a loopback address (a local InfluxDB), never across a network."""
    parts = base_url_parts(
        url,
        "https:// URL such as https://<instance-endpoint>:8181",
        "use INFLUXDB_TOKEN_SECRET_ARN",
    )
    if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
        raise ValueError("plain http:// is allowed only for a loopback address; use https://")
    return url.strip().rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


_STORE_VARIABLES: Final = {
    "timestream": ("TIMESTREAM_DB", "TIMESTREAM_TABLE"),
    "None": ("TIMESTREAM_DB", "TIMESTREAM_TABLE"),
    "influxdb": ("INFLUXDB_URL", "INFLUXDB_DATABASE"),
}
"""What each store requires, to name it beside other missing variables."""

APPCONFIG_VARIABLES: Final = ("APPCONFIG_APPLICATION", "APPCONFIG_ENVIRONMENT", "APPCONFIG_PROFILE")
"""What RULES_SOURCE=appconfig requires: where the rules are deployed."""


class _ModelFields:
    """`Settings.model_fields`: the field table, as the pydantic model named it."""

    def __get__(self, instance: object, owner: type) -> dict[str, Field]:
        return dict(FIELDS)


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated settings. Fields marked `deployed=False` in `FIELDS` are optional
    and not set by template.yaml (local endpoints, overrides)."""

    timestream_db: str | None
    timestream_table: str | None
    alerts_topic_arn: str
    dead_letter_queue_url: str
    state_table: str
    rules_path: Path
    shadow_name: str
    iot_endpoint: str | None
    aws_endpoint_url: str | None
    service_name: str
    metrics_namespace: str
    trace_disabled: str
    log_level: str | None
    sweep_fan_out: Literal["parallel", "inline"]
    """parallel: the schedule's invocation starts one invocation per shard of the
    due index (the template's choice); inline: it sweeps every shard itself
    (local runs)."""
    function_name: str | None
    """Set by Lambda: what a parallel sweep invokes."""
    timeseries_store: Literal["timestream", "influxdb"]
    influxdb_url: str | None
    influxdb_api: Literal["v1", "v2", "v3"]
    influxdb_database: str | None
    influxdb_org: str | None
    influxdb_token_secret_arn: str | None
    influxdb_token: Secret | None
    rules_source: Literal["package", "appconfig"]
    """package: the rule files shipped with the function (RULES_PATH); appconfig:
    the rules deployed to AWS AppConfig, read through its Lambda extension."""
    appconfig_application: str | None
    appconfig_environment: str | None
    appconfig_profile: str | None
    rules_poll_seconds: int
    """With appconfig: how often, at most, the function asks the extension for
    a newer version (warm invocations in between reuse the rules in force): the
    extension's own poll interval variable, so that both go at one pace."""
    appconfig_http_port: int
    """The extension's local port (the extension's own default, 2772)."""

    model_fields = _ModelFields()

    @property
    def influxdb_needs_token(self) -> bool:
        """A remote store always needs a token; a local one (loopback) may run without auth."""
        host = urlsplit(self.influxdb_url or "").hostname
        return host is not None and not _is_loopback(host)

    @property
    def fans_out(self) -> bool:
        """Whether the scheduled sweep fans out (deployed, and asked to)."""
        return self.sweep_fan_out == "parallel" and bool(self.function_name)

    @property
    def tracing(self) -> bool:
        """Tracing costs ~0.5 s of cold start (aws_xray_sdk), so it is opt-in:
        on only when POWERTOOLS_TRACE_DISABLED is explicitly false."""
        return self.trace_disabled.strip().lower() in {"false", "0", "no"}

    @property
    def resolved_rules_path(self) -> Path:
        """RULES_PATH as given, or relative to the function package's root."""
        if self.rules_path.is_absolute() or self.rules_path.exists():
            return self.rules_path
        return PACKAGE_ROOT / self.rules_path

    @property
    def appconfig_url(self) -> str:
        """The extension's local endpoint for the rules' configuration profile."""
        return (
            f"http://localhost:{self.appconfig_http_port}/applications/"
            f"{self.appconfig_application}/environments/{self.appconfig_environment}"
            f"/configurations/{self.appconfig_profile}"
        )

    @property
    def iot_data_endpoint(self) -> str | None:
        endpoint = self.iot_endpoint or self.aws_endpoint_url
        if endpoint and "://" not in endpoint:
            endpoint = f"https://{endpoint}"
        return endpoint or None

    def model_dump(self) -> dict[str, Any]:
        """Every field by name (the token stays a Secret)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Settings from an environment mapping, or ConfigurationError naming
        every variable that is missing or invalid."""
        values = {k: v for k, v in env.items() if not (k == "AWS_ENDPOINT_URL" and not v)}
        checked = _checked(values)
        if checked is not None:
            return checked
        from telemetry.settings_model import settings_from  # noqa: PLC0415 - pydantic

        return settings_from(values)


class _UnsureError(Exception):
    """The plain check cannot vouch for a value: the pydantic model decides."""


def _plain(value: Any) -> str:
    """A value both checks read alike: printable ASCII (no newline, no Unicode
    whitespace or classes, where regex engines and strip() differ)."""
    if not isinstance(value, str) or not value.isascii() or not value.isprintable():
        raise _UnsureError
    return value


def _text(values: Mapping[str, Any], name: str, default: str | None) -> str | None:
    value = values.get(name)
    if value is None:
        if name in values:
            raise _UnsureError
        return default
    if not isinstance(value, str):
        raise _UnsureError
    return value


def _non_empty(value: str | None) -> str | None:
    if value is None:
        return None
    stripped = _plain(value).strip()
    if not stripped:
        raise _UnsureError
    return stripped


def _matching(value: str | None, pattern: str) -> str | None:
    if value is not None and not re.search(pattern, _plain(value)):
        raise _UnsureError
    return value


def _one_of(value: str | None, choices: tuple[str, ...]) -> Any:
    if value not in choices:
        raise _UnsureError
    return value


def _int_between(value: str | None, low: int, high: int) -> int:
    text = _plain(_required(value))
    if not text.isdigit() or len(text) > 6 or text != str(int(text)):
        raise _UnsureError
    number = int(text)
    if not low <= number <= high:
        raise _UnsureError
    return number


def _required(value: str | None) -> str:
    if value is None:
        raise _UnsureError
    return value


def _checked(values: Mapping[str, Any]) -> Settings | None:
    """The settings of a valid environment, or None: invalid, or not certainly valid."""
    if FIELDS.keys() & values.keys():
        return None  # named by field rather than variable: the model's way
    blanked = {
        k: None if k in OPTIONAL_BLANK and _blank_is_none(v) is None else v
        for k, v in values.items()
    }
    unset = {k for k, v in blanked.items() if v is None and k in OPTIONAL_BLANK}
    optional = {k: v for k, v in blanked.items() if k not in unset}
    try:
        rules_path = _plain(_text(optional, "RULES_PATH", str(DEFAULT_RULES_PATH)) or "")
        influxdb_url = _text(optional, "INFLUXDB_URL", None)
        token = _text(optional, "INFLUXDB_TOKEN", None)
        settings = Settings(
            timestream_db=_non_empty(_text(optional, "TIMESTREAM_DB", None)),
            timestream_table=_non_empty(_text(optional, "TIMESTREAM_TABLE", None)),
            alerts_topic_arn=_required(
                _matching(_text(optional, "ALERTS_TOPIC_ARN", None), ALERTS_TOPIC_PATTERN)
            ),
            dead_letter_queue_url=_required(
                _matching(_text(optional, "DEAD_LETTER_QUEUE_URL", None), QUEUE_URL_PATTERN)
            ),
            state_table=_required(_non_empty(_text(optional, "STATE_TABLE", None))),
            rules_path=Path(rules_path) if rules_path else _raise(),
            shadow_name=_required(
                _matching(_text(optional, "SHADOW_NAME", "alerts"), SHADOW_NAME_PATTERN)
            ),
            iot_endpoint=_text(optional, "IOT_ENDPOINT", None),
            aws_endpoint_url=_text(optional, "AWS_ENDPOINT_URL", None),
            service_name=_required(_text(optional, "POWERTOOLS_SERVICE_NAME", "telemetry")),
            metrics_namespace=_required(
                _text(optional, "POWERTOOLS_METRICS_NAMESPACE", "IoTTelemetry")
            ),
            trace_disabled=_required(_text(optional, "POWERTOOLS_TRACE_DISABLED", "true")),
            log_level=_matching(_text(optional, "POWERTOOLS_LOG_LEVEL", None), LOG_LEVEL_PATTERN),
            sweep_fan_out=_one_of(
                _text(optional, "SWEEP_FAN_OUT", "inline"), ("parallel", "inline")
            ),
            function_name=_text(optional, "AWS_LAMBDA_FUNCTION_NAME", None),
            timeseries_store=_one_of(
                _text(optional, "TIMESERIES_STORE", "timestream"), ("timestream", "influxdb")
            ),
            influxdb_url=None if influxdb_url is None else _influxdb_url(_plain(influxdb_url)),
            influxdb_api=_one_of(_text(optional, "INFLUXDB_API", "v3"), ("v1", "v2", "v3")),
            influxdb_database=_non_empty(_text(optional, "INFLUXDB_DATABASE", None)),
            influxdb_org=_non_empty(_text(optional, "INFLUXDB_ORG", None)),
            influxdb_token_secret_arn=_matching(
                _text(optional, "INFLUXDB_TOKEN_SECRET_ARN", None), SECRET_ARN_PATTERN
            ),
            influxdb_token=None if token is None else Secret(token),
            rules_source=_one_of(
                _text(optional, "RULES_SOURCE", "package"), ("package", "appconfig")
            ),
            appconfig_application=_matching(
                _text(optional, "APPCONFIG_APPLICATION", None), APPCONFIG_NAME_PATTERN
            ),
            appconfig_environment=_matching(
                _text(optional, "APPCONFIG_ENVIRONMENT", None), APPCONFIG_NAME_PATTERN
            ),
            appconfig_profile=_matching(
                _text(optional, "APPCONFIG_PROFILE", None), APPCONFIG_NAME_PATTERN
            ),
            rules_poll_seconds=_int_between(
                _text(
                    optional,
                    "AWS_APPCONFIG_EXTENSION_POLL_INTERVAL_SECONDS",
                    str(DEFAULT_RULES_POLL_SECONDS),
                ),
                RULES_POLL_MIN_SECONDS,
                RULES_POLL_MAX_SECONDS,
            ),
            appconfig_http_port=_int_between(
                _text(
                    optional, "AWS_APPCONFIG_EXTENSION_HTTP_PORT", str(DEFAULT_APPCONFIG_HTTP_PORT)
                ),
                1,
                65535,
            ),
        )
    except (_UnsureError, ValueError):
        return None
    complete = _store_complete(settings) and _rules_source_complete(settings)
    return settings if complete else None


def _raise() -> Path:
    raise _UnsureError


def _store_complete(settings: Settings) -> bool:
    """Whether the chosen store has what it needs (the model words what it lacks)."""
    if settings.timeseries_store == "timestream":
        return settings.timestream_db is not None and settings.timestream_table is not None
    if settings.influxdb_url is None or settings.influxdb_database is None:
        return False
    tokens = [
        t for t in (settings.influxdb_token_secret_arn, settings.influxdb_token) if t is not None
    ]
    if len(tokens) > 1:
        return False
    return bool(tokens) or not settings.influxdb_needs_token


def _rules_source_complete(settings: Settings) -> bool:
    """Whether RULES_SOURCE=appconfig names where the rules are deployed."""
    if settings.rules_source == "package":
        return True
    return None not in (
        settings.appconfig_application,
        settings.appconfig_environment,
        settings.appconfig_profile,
    )


def environment_variables() -> dict[str, bool]:
    """Every variable Settings reads, and whether the deployed stack must set it."""
    return {field.variable: field.deployed for field in FIELDS.values()}
