"""Notification groups' durable records: one item per group in the state table.

Item: `deviceId` (S) = "$group#" + a hash of the group's id ("$" is never in a
thing name, so no device has that key), `version` (N, bumped on every write),
`group` (S, the group's id: its fields and values), `state` (S, JSON of its
GroupState: the transitions counted in the window, the digest being gathered,
when the previous one went), `outbox` (S, JSON list of digests taken and not yet
delivered) when there are any, `updatedAt`. While the sweep has something to do
for the group (a digest to take, or one to deliver), `dueShard` = "digest" and
`dueAt` (N, epoch ms): the sweep finds due groups through the devices' sparse
`due` index, in a shard of their own that the devices' sweep never reads.

Writes are conditional on the version read. Holding transitions moves them
from their devices' outboxes into the group's digest: the group items and the
device items are written in one transaction (at most 100 actions and 4 MB:
larger holds are written in several, each rewriting the group items at their
next version), so that no held transition is ever in both or in neither.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from telemetry.adapters.aws import AWS_ERRORS, error_code_of, translate
from telemetry.adapters.state_store import (
    MAX_ITEM_BYTES,
    MAX_TRANSACTION_BYTES,
    NOT_A_DEVICE,
    DynamoStateStore,
    due_in,
    get_items,
    item_bytes,
)
from telemetry.core.alerts import Transition
from telemetry.core.notify import (
    DeviceHold,
    DigestEntry,
    Group,
    GroupRecord,
    GroupState,
    group_from_id,
    group_hash,
    group_id,
    hold,
)
from telemetry.core.rules import Notifications
from telemetry.core.state import DeviceRecord
from telemetry.errors import DependencyError, StateConflictError

GROUP_KEY_PREFIX: Final = f"{NOT_A_DEVICE}group#"
DIGEST_SHARD: Final = "digest"
"""The `dueShard` of groups with something due: never one of the devices' shards."""
MAX_TRANSACTION_ACTIONS: Final = 100
_RACES: Final = frozenset({"ConditionalCheckFailed", "TransactionConflict"})
_SEPARATORS: Final = (",", ":")


def group_key(group: Group) -> str:
    """The group's item key in the state table."""
    return GROUP_KEY_PREFIX + group_hash(group)


class DynamoGroupStore:
    """Reads and conditionally writes notification groups in `table`; writes
    device records through `devices` when a hold moves their outbox entries."""

    def __init__(
        self,
        table: str,
        client: Any,
        devices: DynamoStateStore,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._table = table
        self._client = client
        self._devices = devices
        self._sleep = sleep

    # ------------------------------------------------------------- reading

    def load(self, group: Group) -> GroupRecord:
        try:
            answer = self._client.get_item(
                TableName=self._table,
                Key={"deviceId": {"S": group_key(group)}},
                ConsistentRead=True,
            )
        except AWS_ERRORS as exc:
            raise translate("dynamodb", "GetItem", exc) from exc
        item = answer.get("Item")
        return _record(item) if item else GroupRecord(group)

    def load_many(self, groups: Iterable[Group]) -> dict[Group, GroupRecord]:
        """Every group's record (version 0 if never written), consistently."""
        wanted = {group_key(g): g for g in groups}
        items = self._get_items(sorted(wanted))
        return {
            group: _record(items[key]) if key in items else GroupRecord(group)
            for key, group in wanted.items()
        }

    def due_groups(self, now_ms: int, limit: int) -> list[GroupRecord]:
        """Groups the sweep has something to do for as of `now_ms` (a digest to
        take or to deliver), the most overdue first, at most `limit`."""
        keys = due_in(self._client, self._table, DIGEST_SHARD, now_ms, limit)
        items = self._get_items(keys[:limit])
        return [_record(items[k]) for k in keys[:limit] if k in items]

    def _get_items(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        return get_items(self._client, self._table, keys, self._sleep)

    # ------------------------------------------------------------- writing

    def save(self, record: GroupRecord, notifications: Notifications) -> GroupRecord:
        """Write `record` if nobody else did since it was read at its version;
        else StateConflictError. Returns what was written, at its new version."""
        item = self._item(record, notifications)
        try:
            self._client.put_item(TableName=self._table, Item=item, **_condition(record))
        except AWS_ERRORS as exc:
            if error_code_of(exc) == "ConditionalCheckFailedException":
                raise StateConflictError(group_id(record.group)) from exc
            raise translate("dynamodb", "PutItem", exc) from exc
        return replace(record, version=record.version + 1)

    def save_holding(
        self,
        groups: Mapping[Group, GroupRecord],
        holds: Sequence[DeviceHold],
        notifications: Notifications,
        now_ms: int,
    ) -> tuple[dict[Group, GroupRecord], list[DeviceRecord]]:
        """Move held transitions from their devices' outboxes into their groups'
        digests: each group in `groups` (as read, its budget already counted,
        its digest as read) and each device in `holds` is written conditionally
        on the version read, in as few transactions as the limits allow; each
        transaction writes its devices and their groups, the groups holding
        what this and the earlier transactions held. StateConflictError when a
        condition fails (the transactions before it stand). Returns the groups
        and devices as written."""
        current = dict(groups)
        prepared = [(hold_, *self._devices.save_actions(hold_.record)) for hold_ in holds]
        # The group items at their largest (everything held): a bound for each chunk.
        everything: dict[Group, list[Transition]] = {g: [] for g in current}
        for hold_ in holds:
            for group, transition in hold_.held:
                everything[group].append(transition)
        group_bytes = {
            g: item_bytes(
                self._item(replace(r, state=hold(r.state, everything[g], now_ms)), notifications)
            )
            for g, r in current.items()
        }
        too_big = [g for g, size in group_bytes.items() if size > MAX_ITEM_BYTES]
        if too_big:
            raise DependencyError(
                "dynamodb",
                "TransactWriteItems",
                "GroupStateTooLarge",
                f"{group_id(too_big[0])}: {group_bytes[too_big[0]]} bytes exceed an item",
                transient=False,
            )
        written: list[DeviceRecord] = []
        for chunk in self._chunks(prepared, group_bytes):
            actions = [a for _, device_actions, _ in chunk for a in device_actions]
            chunk_groups = list(dict.fromkeys(g for h, _, _ in chunk for g, _ in h.held))
            after: dict[Group, GroupRecord] = {}
            for group in chunk_groups:
                held = [t for h, _, _ in chunk for g, t in h.held if g == group]
                record = current[group]
                after[group] = replace(record, state=hold(record.state, held, now_ms))
                actions.append(
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": self._item(after[group], notifications),
                            **_condition(record),
                        }
                    }
                )
            self._transact(actions)
            for group, record in after.items():
                current[group] = replace(record, version=record.version + 1)
            written.extend(device for _, _, device in chunk)
        return current, written

    @staticmethod
    def _chunks(
        prepared: list[tuple[DeviceHold, list[dict[str, Any]], DeviceRecord]],
        group_bytes: Mapping[Group, int],
    ) -> list[list[tuple[DeviceHold, list[dict[str, Any]], DeviceRecord]]]:
        """The devices in transactions of at most 100 actions and 4 MB, each
        counting its devices' items and their groups' items."""
        chunks: list[list[tuple[DeviceHold, list[dict[str, Any]], DeviceRecord]]] = []
        chunk: list[tuple[DeviceHold, list[dict[str, Any]], DeviceRecord]] = []
        groups: set[Group] = set()
        actions = size = 0
        for entry in prepared:
            hold_, device_actions, _ = entry
            mine = {g for g, _ in hold_.held}
            mine_size = sum(_action_bytes(a) for a in device_actions)
            new = mine - groups
            grows = len(device_actions) + len(new), mine_size + sum(group_bytes[g] for g in new)
            if chunk and (
                actions + grows[0] > MAX_TRANSACTION_ACTIONS
                or size + grows[1] > MAX_TRANSACTION_BYTES
            ):
                chunks.append(chunk)
                chunk, groups, actions, size = [], set(), 0, 0
                new = mine
                grows = (
                    len(device_actions) + len(mine),
                    mine_size + sum(group_bytes[g] for g in mine),
                )
            if grows[0] > MAX_TRANSACTION_ACTIONS or grows[1] > MAX_TRANSACTION_BYTES:
                raise DependencyError(
                    "dynamodb",
                    "TransactWriteItems",
                    "TransactionTooLarge",
                    f"{hold_.record.device_id}: holding its transitions takes {grows[0]} "
                    f"actions and {grows[1]} bytes, more than one transaction can write",
                    transient=False,
                )
            chunk.append(entry)
            groups |= new
            actions += grows[0]
            size += grows[1]
        if chunk:
            chunks.append(chunk)
        return chunks

    def _transact(self, actions: list[dict[str, Any]]) -> None:
        try:
            self._client.transact_write_items(TransactItems=actions)
        except AWS_ERRORS as exc:
            reasons = getattr(exc, "response", {}).get("CancellationReasons", [])
            if error_code_of(exc) == "TransactionCanceledException" and any(
                r.get("Code") in _RACES for r in reasons
            ):
                raise StateConflictError("a notification group or a device moved on") from exc
            raise translate("dynamodb", "TransactWriteItems", exc) from exc

    def _item(self, record: GroupRecord, notifications: Notifications) -> dict[str, Any]:
        item: dict[str, Any] = {
            "deviceId": {"S": group_key(record.group)},
            "version": {"N": str(record.version + 1)},
            "group": {"S": group_id(record.group)},
            "state": {"S": json.dumps(record.state.to_json(), separators=_SEPARATORS)},
            "updatedAt": {"S": datetime.now(tz=UTC).isoformat(timespec="seconds")},
        }
        if record.outbox:
            outbox = [e.to_json() for e in record.outbox]
            item["outbox"] = {"S": json.dumps(outbox, separators=_SEPARATORS)}
        due = record.due_ms(notifications)
        if due is not None:
            item["dueShard"] = {"S": DIGEST_SHARD}
            item["dueAt"] = {"N": str(due)}
        return item


def _record(item: Mapping[str, Any]) -> GroupRecord:
    outbox = item.get("outbox", {}).get("S")
    return GroupRecord(
        group=group_from_id(item["group"]["S"]),
        version=int(item["version"]["N"]),
        state=GroupState.from_json(json.loads(item["state"]["S"])),
        outbox=tuple(DigestEntry.from_json(e) for e in json.loads(outbox)) if outbox else (),
    )


def _condition(record: GroupRecord) -> dict[str, Any]:
    if record.version == 0:
        return {"ConditionExpression": "attribute_not_exists(deviceId)"}
    return {
        "ConditionExpression": "version = :v",
        "ExpressionAttributeValues": {":v": {"N": str(record.version)}},
    }


def _action_bytes(action: Mapping[str, Any]) -> int:
    body = action.get("Put") or action.get("Delete") or {}
    return item_bytes(body.get("Item") or body.get("Key") or {})
