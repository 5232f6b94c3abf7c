"""The durable alert state: one DynamoDB item per device.

Item: `deviceId` (S, the key), `version` (N, bumped on every write),
`alerts` (S, JSON of the device's alert states), `outbox` (S, JSON list of
transitions committed but not yet delivered), `shadowStale` (BOOL, the shadow
mirror missed an update). Writes are conditional on the version read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from telemetry.adapters.aws import AWS_ERRORS, error_code_of, translate
from telemetry.core.alerts import state_from_json, state_to_json
from telemetry.core.state import DeviceRecord, OutboxEntry
from telemetry.errors import StateConflictError

_BATCH_GET_LIMIT: Final = 100
_SEPARATORS: Final = (",", ":")


def _item_to_record(device_id: str, item: dict[str, Any] | None) -> DeviceRecord:
    if not item:
        return DeviceRecord(device_id=device_id)
    outbox_raw = item.get("outbox", {}).get("S")
    return DeviceRecord(
        device_id=device_id,
        version=int(item["version"]["N"]),
        state=state_from_json(json.loads(item["alerts"]["S"])),
        outbox=[OutboxEntry.from_json(e) for e in json.loads(outbox_raw)] if outbox_raw else [],
        shadow_stale=bool(item.get("shadowStale", {}).get("BOOL", False)),
    )


class DynamoStateStore:
    """Reads and conditionally writes device records in `table`."""

    def __init__(self, table: str, client: Any) -> None:
        self._table = table
        self._client = client

    def load(self, device_id: str) -> DeviceRecord:
        try:
            answer = self._client.get_item(
                TableName=self._table,
                Key={"deviceId": {"S": device_id}},
                ConsistentRead=True,
            )
        except AWS_ERRORS as exc:
            raise translate("dynamodb", "GetItem", exc) from exc
        return _item_to_record(device_id, answer.get("Item"))

    def load_many(self, device_ids: Iterable[str]) -> dict[str, DeviceRecord]:
        """Every device's record in as few BatchGetItem calls as possible."""
        wanted = sorted(set(device_ids))
        found: dict[str, DeviceRecord] = {}
        for start in range(0, len(wanted), _BATCH_GET_LIMIT):
            keys = [{"deviceId": {"S": d}} for d in wanted[start : start + _BATCH_GET_LIMIT]]
            request: dict[str, Any] = {self._table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                try:
                    answer = self._client.batch_get_item(RequestItems=request)
                except AWS_ERRORS as exc:
                    raise translate("dynamodb", "BatchGetItem", exc) from exc
                for item in answer.get("Responses", {}).get(self._table, []):
                    device_id = item["deviceId"]["S"]
                    found[device_id] = _item_to_record(device_id, item)
                request = answer.get("UnprocessedKeys") or {}
        return {d: found.get(d, DeviceRecord(device_id=d)) for d in wanted}

    def save(
        self,
        record: DeviceRecord,
        *,
        state: Any,
        outbox: Sequence[OutboxEntry],
        shadow_stale: bool,
    ) -> DeviceRecord:
        """Write the record if nobody else did since it was read; else StateConflictError."""
        version = record.version + 1
        item: dict[str, Any] = {
            "deviceId": {"S": record.device_id},
            "version": {"N": str(version)},
            "alerts": {"S": json.dumps(state_to_json(state), separators=_SEPARATORS)},
            "shadowStale": {"BOOL": shadow_stale},
            "updatedAt": {"S": datetime.now(tz=UTC).isoformat(timespec="seconds")},
        }
        if outbox:
            item["outbox"] = {
                "S": json.dumps([e.to_json() for e in outbox], separators=_SEPARATORS)
            }
        if record.version == 0:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(deviceId)"}
        else:
            condition = {
                "ConditionExpression": "version = :v",
                "ExpressionAttributeValues": {":v": {"N": str(record.version)}},
            }
        try:
            self._client.put_item(TableName=self._table, Item=item, **condition)
        except AWS_ERRORS as exc:
            if error_code_of(exc) == "ConditionalCheckFailedException":
                raise StateConflictError(record.device_id) from exc
            raise translate("dynamodb", "PutItem", exc) from exc
        return DeviceRecord(
            device_id=record.device_id,
            version=version,
            state=dict(state),
            outbox=list(outbox),
            shadow_stale=shadow_stale,
        )
