"""The rules' configuration in AWS AppConfig: where the function reads it, and
where it keeps the last good one.

`ExtensionEndpoint` reads the configuration profile from the AWS AppConfig
Agent Lambda extension's local HTTP endpoint
(`http://localhost:<port>/applications/<app>/environments/<env>/configurations/<profile>`):
the extension polls AppConfig itself and answers from its cache, with the
version in the `Configuration-Version` header.

`LastGoodRules` keeps the last configuration the function accepted, with its
version, as one item of the state table, so that a cold start after a bad
version was deployed still has the good one: the extension of a new execution
environment serves whatever is deployed now, and its cache lives only as long as
that environment.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
import zlib
from dataclasses import dataclass
from typing import Any, Final

from telemetry.adapters.aws import AWS_ERRORS, translate
from telemetry.adapters.state_store import NOT_A_DEVICE, item_bytes

VERSION_HEADER: Final = "Configuration-Version"
EXTENSION_TIMEOUT_S: Final = 2.0
ITEM_LIMIT_BYTES: Final = 400_000
"""DynamoDB's item size limit, "400 KB", read as the smaller 400,000 bytes
(attribute names and values, `item_bytes`)."""
LAST_GOOD_KEY_PREFIX: Final = f"{NOT_A_DEVICE}rules#"
"""The item's key: "$" is never in a deviceId, and the state table's scans skip it."""


@dataclass(frozen=True, slots=True)
class Configuration:
    """One version of the rules' configuration, as AppConfig holds it."""

    version: str
    content: bytes
    content_type: str | None = None


class ConfigurationUnavailableError(RuntimeError):
    """The extension did not answer with a configuration (down, not ready, or
    the application, environment or profile it was asked for does not exist)."""


class ExtensionEndpoint:
    """The AppConfig Lambda extension's local endpoint of one configuration profile."""

    def __init__(self, url: str, http: Any = None) -> None:
        self.url = url
        self._http = http

    def _pool(self) -> Any:
        if self._http is None:
            import urllib3  # noqa: PLC0415 - botocore has imported it already

            self._http = urllib3.PoolManager(
                num_pools=1, maxsize=1, retries=False, timeout=EXTENSION_TIMEOUT_S
            )
        return self._http

    def fetch(self) -> Configuration:
        """The configuration the extension holds now. ConfigurationUnavailableError
        when it does not answer 200 (its status and reason say why)."""
        import urllib3  # noqa: PLC0415

        try:
            answer = self._pool().request("GET", self.url, preload_content=True)
        except urllib3.exceptions.HTTPError as exc:
            raise ConfigurationUnavailableError(
                f"the AppConfig extension did not answer: {type(exc).__name__}"
            ) from None
        if answer.status != 200:
            reason = answer.data[:200].decode("utf-8", "replace").strip()
            raise ConfigurationUnavailableError(
                f"the AppConfig extension answered {answer.status}: {reason or 'no reason given'}"
            )
        content = bytes(answer.data)
        version = answer.headers.get(VERSION_HEADER)
        if not version:
            version = "sha256:" + hashlib.sha256(content).hexdigest()
        return Configuration(str(version), content, answer.headers.get("Content-Type"))


class LastGoodRules:
    """The last configuration the function accepted, one item in the state table.

    The content is stored compressed (zlib, as base64 text: a binary attribute's
    size is counted alike by DynamoDB and the local AWS only as text): a rule
    file compresses well, and the item must stay under DynamoDB's 400 KB. A
    configuration too large for that even compressed is not kept (`save` says
    so); the one kept before stays."""

    def __init__(self, table: str, client: Any, profile: str) -> None:
        self._table = table
        self._client = client
        self.key = LAST_GOOD_KEY_PREFIX + profile

    def load(self) -> Configuration | None:
        """The configuration kept, or None. DependencyError when DynamoDB fails."""
        try:
            answer = self._client.get_item(
                TableName=self._table,
                Key={"deviceId": {"S": self.key}},
                ConsistentRead=True,
            )
        except AWS_ERRORS as exc:
            raise translate("dynamodb", "GetItem", exc) from exc
        item = answer.get("Item")
        if not item:
            return None
        try:
            content = zlib.decompress(base64.b64decode(item["content"]["S"], validate=True))
        except (KeyError, binascii.Error, zlib.error):
            return None
        content_type = item.get("contentType", {}).get("S")
        return Configuration(item["version"]["S"], content, content_type)

    def item(self, configuration: Configuration, now_ms: int | None = None) -> dict[str, Any]:
        """The item that keeps `configuration`."""
        item: dict[str, Any] = {
            "deviceId": {"S": self.key},
            "version": {"S": configuration.version},
            "content": {"S": base64.b64encode(zlib.compress(configuration.content, 9)).decode()},
            "savedAt": {"N": str(time.time_ns() // 1_000_000 if now_ms is None else now_ms)},
        }
        if configuration.content_type:
            item["contentType"] = {"S": configuration.content_type}
        return item

    def fits(self, configuration: Configuration) -> bool:
        """Whether the configuration fits in one item."""
        return item_bytes(self.item(configuration)) <= ITEM_LIMIT_BYTES

    def save(self, configuration: Configuration, now_ms: int | None = None) -> bool:
        """Keep `configuration` (False: too large to keep; nothing written).
        DependencyError when DynamoDB fails."""
        item = self.item(configuration, now_ms)  # compressed once
        if item_bytes(item) > ITEM_LIMIT_BYTES:
            return False
        try:
            self._client.put_item(TableName=self._table, Item=item)
        except AWS_ERRORS as exc:
            raise translate("dynamodb", "PutItem", exc) from exc
        return True
