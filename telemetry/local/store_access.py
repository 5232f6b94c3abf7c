"""How `telemetry backtest --from influxdb|timestream` reaches the store: the
InfluxDB URL it accepts, the token it sends, the AWS region it uses. The same
options as the function's own (telemetry/settings.py), so that an operator with
the deployed configuration in the environment can replay without more.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from telemetry.adapters.influxdb import SecretsManagerToken
from telemetry.errors import DependencyError
from telemetry.settings import SECRET_ARN_PATTERN, base_url_parts


class StoreAccessError(RuntimeError):
    """The store's token cannot be had (a secret that cannot be read); one sentence,
    never the token."""


def influxdb_url(text: str) -> str:
    """An http(s) base URL with a host, and without credentials, query string or
    fragment (urllib would not send the credentials, and errors would print them;
    a query string would end up before `/query`). ValueError says which, without
    repeating the URL."""
    base_url_parts(
        text,
        "http(s) URL such as http://127.0.0.1:8086",
        "give the token in INFLUXDB_TOKEN or INFLUXDB_TOKEN_SECRET_ARN",
    )
    return text.strip()


def influxdb_token(
    flag: str | None,
    environ: Mapping[str, str],
    secrets_client: Callable[[str], Any],
) -> str | None:
    """The token to send: `--influxdb-token`, else `INFLUXDB_TOKEN`, else the one
    the secret `INFLUXDB_TOKEN_SECRET_ARN` names (read as the function reads it:
    the secret string, or the `token` of a JSON object), else none (a store
    without authentication). `secrets_client(region)` makes the Secrets Manager
    client, in the secret's own region."""
    if flag:
        return flag
    if environ.get("INFLUXDB_TOKEN", "").strip():
        return environ["INFLUXDB_TOKEN"]
    arn = environ.get("INFLUXDB_TOKEN_SECRET_ARN", "").strip()
    if not arn:
        return None
    if not re.match(SECRET_ARN_PATTERN, arn):
        raise StoreAccessError(
            f"INFLUXDB_TOKEN_SECRET_ARN {arn!r} is not a Secrets Manager secret's ARN"
        )
    region = arn.split(":")[3]
    try:
        return SecretsManagerToken(arn, secrets_client(region)).token()
    except DependencyError as exc:
        raise StoreAccessError(
            f"cannot read the InfluxDB token from {arn}: {exc.code}: {exc.message}"
        ) from None


def aws_region(environ: Mapping[str, str]) -> str | None:
    """`AWS_REGION` (what Lambda sets, and what the docs name), else None: the
    SDK's own choice (AWS_DEFAULT_REGION, the profile's region)."""
    return environ.get("AWS_REGION", "").strip() or None


def timestream_client_options(environ: Mapping[str, str]) -> dict[str, str]:
    """The timestream-query client's region (`aws_region`) and, when
    `AWS_ENDPOINT_URL` is set, its endpoint given explicitly: Timestream discovers
    its endpoint otherwise, and discovery would point at the real service."""
    options: dict[str, str] = {}
    region = aws_region(environ)
    if region is not None:
        options["region_name"] = region
    endpoint = environ.get("AWS_ENDPOINT_URL", "").strip()
    if endpoint:
        options["endpoint_url"] = endpoint
    return options
