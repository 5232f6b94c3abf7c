"""The durable alert state: one DynamoDB item per device, split when it must be.

Item: `deviceId` (S, the key), `version` (N, bumped on every write),
`alerts` (S, JSON of the device's alert states), `outbox` (S, JSON list of
transitions committed but not yet delivered), `shadowStale` (BOOL, the shadow
mirror missed an update), `shadowStaleAt` (N, epoch ms, when it last failed in a
way a retry may mend; absent otherwise, and in items written before it was kept),
`presence` (S, JSON of its connection from IoT Core's lifecycle events and its
gateway's outages; absent when none is known).
A member of a gateway also carries `gateway` (S, its first gateway's deviceId)
and `heardAt` (N, the latest arrival its record knows, 0 while disconnected):
the sparse `gateway` index, which counts a gateway's members that are down.
Writes are conditional on the version read.

DynamoDB refuses items over 400 KB, so the item is bounded by its bytes,
measured before writing: quiet entries (kept only for their late-data line)
are pruned oldest first until it fits. When the active alerts and the outbox
alone do not fit, the JSON of both is split over `<deviceId>#part#<n>` items
(never a valid deviceId), written with the main item in one transaction
conditional on the same version; the main item then says `parts` instead of
holding `alerts`. `save_actions` gives a caller those writes to put in a
transaction of its own (the notification budget holds transitions that way).

The table also keeps items that are not devices, under keys starting with "$"
(notification groups: telemetry.adapters.groups); `scan` skips them, and their
`dueShard` is never one of the devices' shards.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from telemetry.adapters.aws import AWS_ERRORS, error_code_of, translate
from telemetry.core.alerts import (
    FORMAT_KEY,
    STATE_FORMAT,
    AlertState,
    StateKey,
    quiet_oldest_first,
    state_from_json,
    state_to_json,
)
from telemetry.core.connectivity import Presence
from telemetry.core.state import DeviceRecord, OutboxEntry
from telemetry.errors import DependencyError, StateConflictError

MAX_ITEM_BYTES: Final = 400 * 1024
"""DynamoDB's item limit, attribute names included."""
ITEM_BUDGET: Final = MAX_ITEM_BYTES - 8 * 1024
"""What one item may take here: the limit less room for the small attributes."""
MAX_TRANSACTION_BYTES: Final = 4 * 1024 * 1024
"""TransactWriteItems takes at most 4 MB (and 100 actions): the largest device record."""
PART_SEPARATOR: Final = "#part#"
NOT_A_DEVICE: Final = "$"
"""Keys starting with this are the table's other items (notification groups):
"$" is never in a thing name."""
DUE_INDEX: Final = "due"
"""The sparse global secondary index of devices the sweep has something to do for:
partition key `dueShard` (S), sort key `dueAt` (N, epoch ms), keys only."""
DUE_SHARDS: Final = 16
"""`dueShard` is one of this many values, from a hash of the deviceId: the sweep
reads that many index partitions, none of them hot, each in an invocation of its
own. Fixed: changing it would hide the items written under the old count until
they are written again."""
DEVICE_SHARDS: Final = tuple(str(n) for n in range(DUE_SHARDS))
GATEWAY_INDEX: Final = "gateway"
"""The sparse global secondary index of gateways' members: partition key
`gateway` (S), sort key `heardAt` (N, epoch ms; 0 while disconnected), keys only."""
_BATCH_GET_LIMIT: Final = 100
_UNPROCESSED_ATTEMPTS: Final = 8
_BACKOFF_BASE_S: Final = 0.05
_BACKOFF_CAP_S: Final = 1.0
_SEPARATORS: Final = (",", ":")


def item_bytes(item: Mapping[str, Mapping[str, Any]]) -> int:
    """DynamoDB's size of an item: attribute names plus values (strings as
    UTF-8, numbers about one byte per two digits plus one, booleans one byte)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        if "S" in value:
            size += len(value["S"].encode())
        elif "N" in value:
            size += math.ceil(len(value["N"].lstrip("-").replace(".", "")) / 2) + 1
        else:
            size += 1
    return size


def _encode(value: Any) -> str:
    return json.dumps(value, separators=_SEPARATORS)


def _fitted_state(
    state: Mapping[StateKey, AlertState], budget: int
) -> tuple[dict[StateKey, AlertState], str]:
    """The state without its oldest quiet entries beyond `budget` bytes of JSON,
    and that JSON. Active alerts and counting streaks are never dropped."""
    entries = {f"{sensor}/{rule}": alert.to_json() for (sensor, rule), alert in state.items()}
    sizes = {key: len(_encode(key)) + len(_encode(value)) + 2 for key, value in entries.items()}
    total = sum(sizes.values()) + 2 + len(_encode({FORMAT_KEY: STATE_FORMAT}))
    kept = dict(state)
    if total > budget:
        for key in quiet_oldest_first(state):
            if total <= budget:
                break
            total -= sizes[f"{key[0]}/{key[1]}"]
            del kept[key]
    text = _encode(state_to_json(kept))
    return kept, text


def _split(text: str, limit: int) -> list[str]:
    """`text` in pieces of at most `limit` UTF-8 bytes (JSON here is ASCII)."""
    data = text.encode()
    return [data[i : i + limit].decode() for i in range(0, len(data), limit)] or [""]


class DynamoStateStore:
    """Reads and conditionally writes device records in `table`."""

    def __init__(
        self,
        table: str,
        client: Any,
        *,
        sleep: Callable[[float], None] = time.sleep,
        item_budget: int = ITEM_BUDGET,
    ) -> None:
        self._table = table
        self._client = client
        self._sleep = sleep
        self._budget = item_budget

    # ------------------------------------------------------------- reading

    def load(self, device_id: str) -> DeviceRecord:
        for _ in range(_UNPROCESSED_ATTEMPTS):
            try:
                answer = self._client.get_item(
                    TableName=self._table,
                    Key={"deviceId": {"S": device_id}},
                    ConsistentRead=True,
                )
            except AWS_ERRORS as exc:
                raise translate("dynamodb", "GetItem", exc) from exc
            item = answer.get("Item")
            if not item or "parts" not in item:
                return self._record(device_id, item)
            parts = self._get_items([self._part_key(device_id, i) for i in range(_parts(item))])
            record = self._assembled(device_id, item, parts)
            if record is not None:
                return record
        raise StateConflictError(f"{device_id}: its parts kept changing while being read")

    def load_many(self, device_ids: Iterable[str]) -> dict[str, DeviceRecord]:
        """Every device's record in as few BatchGetItem calls as possible."""
        wanted = sorted(set(device_ids))
        items = self._get_items(wanted)
        out: dict[str, DeviceRecord] = {}
        for device_id in wanted:
            item = items.get(device_id)
            out[device_id] = (
                self.load(device_id) if item and "parts" in item else self._record(device_id, item)
            )
        return out

    def _get_items(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        return get_items(self._client, self._table, keys, self._sleep)

    def _record(self, device_id: str, item: Mapping[str, Any] | None) -> DeviceRecord:
        if not item:
            return DeviceRecord(device_id=device_id)
        outbox_raw = item.get("outbox", {}).get("S")
        return self._decoded(device_id, item, item["alerts"]["S"], outbox_raw, 0)

    def _assembled(
        self, device_id: str, item: Mapping[str, Any], parts: Mapping[str, Mapping[str, Any]]
    ) -> DeviceRecord | None:
        """The record of a split item, or None if a part belongs to another version."""
        version = item["version"]["N"]
        texts = []
        for i in range(_parts(item)):
            part = parts.get(self._part_key(device_id, i))
            if part is None or part["version"]["N"] != version:
                return None
            texts.append(part["data"]["S"])
        body = json.loads("".join(texts))
        outbox = _encode(body["outbox"]) if body["outbox"] else None
        return self._decoded(device_id, item, _encode(body["alerts"]), outbox, _parts(item))

    @staticmethod
    def _decoded(
        device_id: str, item: Mapping[str, Any], alerts: str, outbox: str | None, parts: int
    ) -> DeviceRecord:
        return DeviceRecord(
            device_id=device_id,
            version=int(item["version"]["N"]),
            state=state_from_json(json.loads(alerts)),
            outbox=[OutboxEntry.from_json(e) for e in json.loads(outbox)] if outbox else [],
            shadow_stale=bool(item.get("shadowStale", {}).get("BOOL", False)),
            parts=parts,
            shadow_stale_ms=int(item["shadowStaleAt"]["N"]) if "shadowStaleAt" in item else None,
            presence=(
                Presence.from_json(json.loads(item["presence"]["S"]))
                if "presence" in item
                else Presence()
            ),
            gateway=item["gateway"]["S"] if "gateway" in item else None,
        )

    @staticmethod
    def _part_key(device_id: str, index: int) -> str:
        return f"{device_id}{PART_SEPARATOR}{index}"

    def scan(self) -> Iterator[DeviceRecord]:
        """Every device's record (operators' tools; the function never scans)."""
        request: dict[str, Any] = {"TableName": self._table}
        while True:
            try:
                answer = self._client.scan(**request)
            except AWS_ERRORS as exc:
                raise translate("dynamodb", "Scan", exc) from exc
            for item in answer.get("Items", []):
                device_id = item["deviceId"]["S"]
                if PART_SEPARATOR in device_id or device_id.startswith(NOT_A_DEVICE):
                    continue
                yield self.load(device_id) if "parts" in item else self._record(device_id, item)
            last = answer.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last

    def due_devices(
        self, now_ms: int, limit: int, shards: Sequence[str] | None = None
    ) -> list[str]:
        """Devices the sweep has something to do for as of `now_ms`, the most
        overdue of each shard (of `shards`, or all DEVICE_SHARDS) first, at most
        `limit` (the rest stay due for the next sweep). Reads the sparse index:
        never the table."""
        wanted = DEVICE_SHARDS if shards is None else tuple(shards)
        per_shard = {shard: self._due_in(shard, now_ms, limit) for shard in wanted}
        out: list[str] = []
        while len(out) < limit and any(per_shard.values()):
            for devices in per_shard.values():
                if devices and len(out) < limit:
                    out.append(devices.pop(0))
        return out

    def _due_in(self, shard: str, now_ms: int, limit: int) -> list[str]:
        return due_in(self._client, self._table, shard, now_ms, limit)

    def count_members(self, gateway_id: str, before_ms: int) -> int:
        """How many records of the gateway's members were last heard before
        `before_ms` (or are disconnected): one Query of the sparse index, counted
        by DynamoDB (Select=COUNT), paged when it must be. Members never written
        to the table since the gateway was listed are not counted."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": GATEWAY_INDEX,
            "KeyConditionExpression": "gateway = :g AND heardAt < :t",
            "ExpressionAttributeValues": {":g": {"S": gateway_id}, ":t": {"N": str(before_ms)}},
            "Select": "COUNT",
        }
        count = 0
        while True:
            try:
                answer = self._client.query(**request)
            except AWS_ERRORS as exc:
                raise translate("dynamodb", "Query", exc) from exc
            count += int(answer.get("Count", 0))
            last = answer.get("LastEvaluatedKey")
            if not last:
                return count
            request["ExclusiveStartKey"] = last

    # ------------------------------------------------------------- writing

    def save(self, record: DeviceRecord) -> DeviceRecord:
        """Write `record` if nobody else did since it was read at `record.version`;
        else StateConflictError. Returns what was written, at its new version
        (quiet entries pruned if the item had to shrink)."""
        item, parts, written = self._prepared(record)
        condition = self._condition(record)
        if parts or record.parts:
            self._transact(record, item, parts, condition)
        else:
            self._put(record, item, condition)
        return written

    def save_actions(self, record: DeviceRecord) -> tuple[list[dict[str, Any]], DeviceRecord]:
        """The TransactWriteItems actions that write `record` as `save` would
        (the main item conditional on `record.version` first, then its parts),
        for a caller that writes other items in the same transaction; and the
        record as they write it."""
        item, parts, written = self._prepared(record)
        return self._actions(record, item, parts, self._condition(record)), written

    def _prepared(self, record: DeviceRecord) -> tuple[dict[str, Any], list[str], DeviceRecord]:
        """The main item to write, the texts of its parts (none if it fits
        alone), and the record as written."""
        version = record.version + 1
        base: dict[str, Any] = {
            "deviceId": {"S": record.device_id},
            "version": {"N": str(version)},
            "shadowStale": {"BOOL": record.shadow_stale},
            "updatedAt": {"S": datetime.now(tz=UTC).isoformat(timespec="seconds")},
        }
        if record.shadow_stale and record.shadow_stale_ms is not None:
            base["shadowStaleAt"] = {"N": str(record.shadow_stale_ms)}
        due = record.due_ms()
        if due is not None:
            base["dueShard"] = {"S": due_shard(record.device_id)}
            base["dueAt"] = {"N": str(due)}
        presence = record.presence.to_json()
        if presence:
            base["presence"] = {"S": _encode(presence)}
        heard = record.heard_at_ms() if record.gateway is not None else None
        if record.gateway is not None and heard is not None:
            base["gateway"] = {"S": record.gateway}
            base["heardAt"] = {"N": str(heard)}
        outbox_text = _encode([e.to_json() for e in record.outbox]) if record.outbox else None
        room = self._budget - item_bytes(base) - len("alerts") - len("outbox")
        room -= len(outbox_text or "")
        state, alerts_text = _fitted_state(record.state, room)
        item = dict(base)
        item["alerts"] = {"S": alerts_text}
        if outbox_text:
            item["outbox"] = {"S": outbox_text}
        parts: list[str] = []
        if item_bytes(item) > self._budget:
            body = f'{{"alerts":{alerts_text},"outbox":{outbox_text or "[]"}}}'
            if len(body) > MAX_TRANSACTION_BYTES - 64 * 1024:
                raise DependencyError(
                    "dynamodb",
                    "TransactWriteItems",
                    "DeviceStateTooLarge",
                    f"{record.device_id}: {len(body)} bytes of active alerts and outbox exceed "
                    "what one transaction can write (4 MB)",
                    transient=False,
                )
            parts = _split(body, self._budget - 1024)
            item = base | {"parts": {"N": str(len(parts))}}
        return item, parts, replace(record, version=version, state=state, parts=len(parts))

    @staticmethod
    def _condition(record: DeviceRecord) -> dict[str, Any]:
        if record.version == 0:
            return {"ConditionExpression": "attribute_not_exists(deviceId)"}
        return {
            "ConditionExpression": "version = :v",
            "ExpressionAttributeValues": {":v": {"N": str(record.version)}},
        }

    def _put(self, record: DeviceRecord, item: dict[str, Any], condition: dict[str, Any]) -> None:
        try:
            self._client.put_item(TableName=self._table, Item=item, **condition)
        except AWS_ERRORS as exc:
            if error_code_of(exc) == "ConditionalCheckFailedException":
                raise StateConflictError(record.device_id) from exc
            raise translate("dynamodb", "PutItem", exc) from exc

    def _actions(
        self,
        record: DeviceRecord,
        item: dict[str, Any],
        parts: list[str],
        condition: dict[str, Any],
    ) -> list[dict[str, Any]]:
        version = item["version"]
        actions: list[dict[str, Any]] = [
            {"Put": {"TableName": self._table, "Item": item, **condition}}
        ]
        for index, text in enumerate(parts):
            part = {
                "deviceId": {"S": self._part_key(record.device_id, index)},
                "version": version,
                "data": {"S": text},
            }
            actions.append({"Put": {"TableName": self._table, "Item": part}})
        for index in range(len(parts), record.parts):
            key = {"deviceId": {"S": self._part_key(record.device_id, index)}}
            actions.append({"Delete": {"TableName": self._table, "Key": key}})
        return actions

    def _transact(
        self,
        record: DeviceRecord,
        item: dict[str, Any],
        parts: list[str],
        condition: dict[str, Any],
    ) -> None:
        actions = self._actions(record, item, parts, condition)
        try:
            self._client.transact_write_items(TransactItems=actions)
        except AWS_ERRORS as exc:
            if _lost_race(exc):
                raise StateConflictError(record.device_id) from exc
            raise translate("dynamodb", "TransactWriteItems", exc) from exc


def get_items(
    client: Any, table: str, keys: list[str], sleep: Callable[[float], None]
) -> dict[str, dict[str, Any]]:
    """The table's items by key (`deviceId`), read consistently in BatchGetItem
    calls of at most 100 keys, retrying UnprocessedKeys with backoff; transient
    DependencyError when some stay unprocessed."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(keys), _BATCH_GET_LIMIT):
        chunk = [{"deviceId": {"S": k}} for k in keys[start : start + _BATCH_GET_LIMIT]]
        request: dict[str, Any] = {table: {"Keys": chunk, "ConsistentRead": True}}
        attempt = 0
        while request:
            if attempt == _UNPROCESSED_ATTEMPTS:
                pending = len(request[table]["Keys"])
                raise DependencyError(
                    "dynamodb",
                    "BatchGetItem",
                    "UnprocessedKeys",
                    f"{pending} keys still unprocessed after {attempt} attempts",
                    transient=True,
                )
            if attempt:
                sleep(min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2 ** (attempt - 1)))
            attempt += 1
            try:
                answer = client.batch_get_item(RequestItems=request)
            except AWS_ERRORS as exc:
                raise translate("dynamodb", "BatchGetItem", exc) from exc
            for item in answer.get("Responses", {}).get(table, []):
                found[item["deviceId"]["S"]] = item
            request = answer.get("UnprocessedKeys") or {}
    return found


def due_in(client: Any, table: str, shard: str, now_ms: int, limit: int) -> list[str]:
    """The keys of one partition (`shard`) of the sparse due index whose `dueAt`
    is at or before `now_ms`, the most overdue first, at most `limit`."""
    found: list[str] = []
    request: dict[str, Any] = {
        "TableName": table,
        "IndexName": DUE_INDEX,
        "KeyConditionExpression": "dueShard = :s AND dueAt <= :t",
        "ExpressionAttributeValues": {":s": {"S": shard}, ":t": {"N": str(now_ms)}},
        "Limit": limit,
    }
    while len(found) < limit:
        try:
            answer = client.query(**request)
        except AWS_ERRORS as exc:
            raise translate("dynamodb", "Query", exc) from exc
        found += [item["deviceId"]["S"] for item in answer.get("Items", [])]
        last = answer.get("LastEvaluatedKey")
        if not last:
            break
        request["ExclusiveStartKey"] = last
    return found[:limit]


def due_shard(device_id: str) -> str:
    """The device's partition of the due index: stable, evenly spread."""
    digest = hashlib.sha256(device_id.encode()).digest()
    return str(int.from_bytes(digest[:4], "big") % DUE_SHARDS)


def _parts(item: Mapping[str, Any]) -> int:
    return int(item["parts"]["N"])


def _lost_race(exc: Exception) -> bool:
    """A transaction cancelled because the main item's condition failed."""
    if error_code_of(exc) != "TransactionCanceledException":
        return False
    reasons = getattr(exc, "response", {}).get("CancellationReasons", [])
    return bool(reasons) and reasons[0].get("Code") == "ConditionalCheckFailed"
