"""The settings as a pydantic model: the reference for what is valid, and the words
of every problem. `telemetry.settings` checks an environment without it and hands it
here only when something is wrong (or unusual), so a cold start with a valid
environment imports no pydantic; both must accept exactly the same environments
(`tests/test_settings.py` holds them to it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from telemetry.errors import ConfigurationError
from telemetry.settings import (
    _STORE_VARIABLES,
    APPCONFIG_NAME_PATTERN,
    APPCONFIG_VARIABLES,
    DEFAULT_APPCONFIG_HTTP_PORT,
    DEFAULT_RULES_PATH,
    DEFAULT_RULES_POLL_SECONDS,
    RULES_POLL_MAX_SECONDS,
    RULES_POLL_MIN_SECONDS,
    Secret,
    Settings,
    _blank_is_none,
    _influxdb_url,
    _is_loopback,
)

NonEmpty = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
_OPTIONAL: Final[dict[str, Any]] = {"deployed": False}
AppConfigName = Annotated[str, StringConstraints(pattern=APPCONFIG_NAME_PATTERN)]


InfluxUrl = Annotated[str, AfterValidator(_influxdb_url)]
SecretArn = Annotated[
    str, StringConstraints(pattern=r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:\S+$")
]


class SettingsModel(BaseModel):
    """Validated settings. Fields marked `deployed: False` are optional and not
    set by template.yaml (local endpoints, overrides)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    timestream_db: NonEmpty | None = Field(None, validation_alias="TIMESTREAM_DB")
    timestream_table: NonEmpty | None = Field(None, validation_alias="TIMESTREAM_TABLE")
    alerts_topic_arn: Annotated[str, StringConstraints(pattern=r"^arn:aws[a-z-]*:sns:")] = Field(
        validation_alias="ALERTS_TOPIC_ARN"
    )
    dead_letter_queue_url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")] = Field(
        validation_alias="DEAD_LETTER_QUEUE_URL"
    )
    state_table: NonEmpty = Field(validation_alias="STATE_TABLE")
    rules_path: Path = Field(DEFAULT_RULES_PATH, validation_alias="RULES_PATH")
    shadow_name: Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9:_-]{0,64}$")] = Field(
        "alerts", validation_alias="SHADOW_NAME"
    )
    iot_endpoint: str | None = Field(
        None, validation_alias="IOT_ENDPOINT", json_schema_extra=_OPTIONAL
    )
    aws_endpoint_url: str | None = Field(
        None, validation_alias="AWS_ENDPOINT_URL", json_schema_extra=_OPTIONAL
    )
    service_name: str = Field("telemetry", validation_alias="POWERTOOLS_SERVICE_NAME")
    metrics_namespace: str = Field("IoTTelemetry", validation_alias="POWERTOOLS_METRICS_NAMESPACE")
    trace_disabled: str = Field("true", validation_alias="POWERTOOLS_TRACE_DISABLED")
    log_level: (
        Annotated[str, StringConstraints(pattern=r"(?i)^(debug|info|warning|error|critical)$")]
        | None
    ) = Field(None, validation_alias="POWERTOOLS_LOG_LEVEL")

    sweep_fan_out: Literal["parallel", "inline"] = Field("inline", validation_alias="SWEEP_FAN_OUT")
    """parallel: the schedule's invocation starts one invocation per shard of the
    due index (the template's choice); inline: it sweeps every shard itself
    (local runs)."""
    function_name: str | None = Field(
        None, validation_alias="AWS_LAMBDA_FUNCTION_NAME", json_schema_extra=_OPTIONAL
    )
    """Set by Lambda: what a parallel sweep invokes."""

    # The time-series store: Timestream for LiveAnalytics (as before) or InfluxDB
    # (Amazon Timestream for InfluxDB, or any InfluxDB 1.x/2/3 speaking line protocol).
    timeseries_store: Literal["timestream", "influxdb"] = Field(
        "timestream", validation_alias="TIMESERIES_STORE"
    )
    influxdb_url: InfluxUrl | None = Field(None, validation_alias="INFLUXDB_URL")
    influxdb_api: Literal["v1", "v2", "v3"] = Field("v3", validation_alias="INFLUXDB_API")
    influxdb_database: NonEmpty | None = Field(None, validation_alias="INFLUXDB_DATABASE")
    influxdb_org: NonEmpty | None = Field(None, validation_alias="INFLUXDB_ORG")
    influxdb_token_secret_arn: SecretArn | None = Field(
        None, validation_alias="INFLUXDB_TOKEN_SECRET_ARN"
    )
    influxdb_token: SecretStr | None = Field(
        None, validation_alias="INFLUXDB_TOKEN", json_schema_extra=_OPTIONAL
    )

    # Where the rules come from: the package, or AWS AppConfig through its extension.
    rules_source: Literal["package", "appconfig"] = Field(
        "package", validation_alias="RULES_SOURCE"
    )
    appconfig_application: AppConfigName | None = Field(
        None, validation_alias="APPCONFIG_APPLICATION"
    )
    appconfig_environment: AppConfigName | None = Field(
        None, validation_alias="APPCONFIG_ENVIRONMENT"
    )
    appconfig_profile: AppConfigName | None = Field(None, validation_alias="APPCONFIG_PROFILE")
    rules_poll_seconds: Annotated[
        int, Field(ge=RULES_POLL_MIN_SECONDS, le=RULES_POLL_MAX_SECONDS, strict=False)
    ] = Field(
        DEFAULT_RULES_POLL_SECONDS, validation_alias="AWS_APPCONFIG_EXTENSION_POLL_INTERVAL_SECONDS"
    )
    appconfig_http_port: Annotated[int, Field(ge=1, le=65535)] = Field(
        DEFAULT_APPCONFIG_HTTP_PORT,
        validation_alias="AWS_APPCONFIG_EXTENSION_HTTP_PORT",
        json_schema_extra=_OPTIONAL,
    )

    @model_validator(mode="before")
    @classmethod
    def _blanks_are_unset(cls, values: Any) -> Any:
        """The template passes an unused optional parameter as an empty string."""
        if not isinstance(values, Mapping):
            return values
        optional = {
            "INFLUXDB_URL",
            "INFLUXDB_DATABASE",
            "INFLUXDB_ORG",
            "INFLUXDB_TOKEN_SECRET_ARN",
            "INFLUXDB_TOKEN",
            *APPCONFIG_VARIABLES,
        }
        return {k: _blank_is_none(v) if k in optional else v for k, v in values.items()}

    @model_validator(mode="after")
    def _store_settings(self) -> SettingsModel:
        """The chosen store's variables, each problem naming its variable."""
        problems = []
        if self.timeseries_store == "timestream":
            problems += [
                f"{name}: is required but not set"
                for name, value in (
                    ("TIMESTREAM_DB", self.timestream_db),
                    ("TIMESTREAM_TABLE", self.timestream_table),
                )
                if value is None
            ]
        else:
            problems += [
                f"{name}: is required but not set (TIMESERIES_STORE=influxdb)"
                for name, value in (
                    ("INFLUXDB_URL", self.influxdb_url),
                    ("INFLUXDB_DATABASE", self.influxdb_database),
                )
                if value is None
            ]
            tokens = [
                name
                for name, value in (
                    ("INFLUXDB_TOKEN_SECRET_ARN", self.influxdb_token_secret_arn),
                    ("INFLUXDB_TOKEN", self.influxdb_token),
                )
                if value is not None
            ]
            if len(tokens) > 1:
                problems.append("INFLUXDB_TOKEN: set only one of INFLUXDB_TOKEN_SECRET_ARN and it")
            elif not tokens and self.influxdb_needs_token:
                problems.append(
                    "INFLUXDB_TOKEN_SECRET_ARN: is required for a store that is not on this "
                    "machine (INFLUXDB_TOKEN for a local run)"
                )
        if self.rules_source == "appconfig":
            problems += [
                f"{name}: is required but not set (RULES_SOURCE=appconfig)"
                for name, value in zip(
                    APPCONFIG_VARIABLES,
                    (
                        self.appconfig_application,
                        self.appconfig_environment,
                        self.appconfig_profile,
                    ),
                    strict=True,
                )
                if value is None
            ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def influxdb_needs_token(self) -> bool:
        """A remote store always needs a token; a local one (loopback) may run without auth."""
        host = urlsplit(self.influxdb_url or "").hostname
        return host is not None and not _is_loopback(host)


def settings_from(values: Mapping[str, Any]) -> Settings:
    """The settings pydantic makes of `values`, or ConfigurationError naming
    every variable that is missing or invalid."""
    try:
        model = SettingsModel.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            detail = "is required but not set" if error["type"] == "missing" else error["msg"]
            if error["type"] == "value_error":
                detail = str(error.get("ctx", {}).get("error", detail))
            if not error["loc"]:
                problems.append(detail)  # the store's checks name their variables
                continue
            problems.append(f"{error['loc'][0]}: {detail}")
        named = {p.split(":", 1)[0] for problem in problems for p in problem.split("; ")}
        problems += [
            f"{name}: is required but not set"
            for name in _STORE_VARIABLES.get(str(values.get("TIMESERIES_STORE")), ())
            if name not in named and not str(values.get(name) or "").strip()
        ]
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None
    fields = {name: getattr(model, name) for name in SettingsModel.model_fields}
    token = fields["influxdb_token"]
    fields["influxdb_token"] = None if token is None else Secret(token.get_secret_value())
    return Settings(**fields)
