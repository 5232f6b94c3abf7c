"""Create, in a local AWS, the resources template.yaml deploys."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from telemetry.adapters.aws import make_client


@dataclass(frozen=True, slots=True)
class Stack:
    """Names and addresses of a provisioned stack, and its environment."""

    database: str
    table: str
    state_table: str
    topic_arn: str
    dead_letter_queue_url: str
    operator_queue_url: str
    shadow_name: str = "alerts"

    def environment(self) -> dict[str, str]:
        """The function's environment variables for this stack."""
        return {
            "TIMESTREAM_DB": self.database,
            "TIMESTREAM_TABLE": self.table,
            "STATE_TABLE": self.state_table,
            "ALERTS_TOPIC_ARN": self.topic_arn,
            "DEAD_LETTER_QUEUE_URL": self.dead_letter_queue_url,
            "SHADOW_NAME": self.shadow_name,
            "POWERTOOLS_METRICS_NAMESPACE": "IoTTelemetry",
            "POWERTOOLS_SERVICE_NAME": "telemetry",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }


def state_table_shape() -> dict[str, Any]:
    """The alert-state table's keys and indexes, as template.yaml declares them."""
    from telemetry.local.stack_template import StackTemplate  # noqa: PLC0415

    properties = StackTemplate.load().resource("AlertStateTable") or {}
    shape = {
        key: properties[key]
        for key in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes")
        if key in properties
    }
    return shape | {"BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST")}


def provision(
    *,
    endpoint_url: str | None = None,
    things: Iterable[str] = (),
    operator_filter: list[str] | None = None,
    prefix: str = "telemetry",
) -> Stack:
    """Create database and table, state table, topic, dead-letter queue, an
    operator queue subscribed to the topic (raw delivery, filtered on
    `severity` when `operator_filter` is given) and the things."""
    ts = make_client("timestream-write", endpoint_url=endpoint_url)
    ddb = make_client("dynamodb", endpoint_url=endpoint_url)
    sns = make_client("sns", endpoint_url=endpoint_url)
    sqs = make_client("sqs", endpoint_url=endpoint_url)
    iot = make_client("iot", endpoint_url=endpoint_url)

    database, table = f"{prefix}-db", "readings"
    ts.create_database(DatabaseName=database)
    ts.create_table(
        DatabaseName=database,
        TableName=table,
        RetentionProperties={
            "MemoryStoreRetentionPeriodInHours": 24,
            "MagneticStoreRetentionPeriodInDays": 365,
        },
        MagneticStoreWriteProperties={"EnableMagneticStoreWrites": True},
    )
    state_table = f"{prefix}-alert-state"
    ddb.create_table(TableName=state_table, **state_table_shape())
    topic_arn = sns.create_topic(Name=f"{prefix}-alerts")["TopicArn"]
    dlq_url = sqs.create_queue(QueueName=f"{prefix}-dead-letter")["QueueUrl"]
    operator_url = sqs.create_queue(QueueName=f"{prefix}-operator")["QueueUrl"]
    operator_arn = sqs.get_queue_attributes(QueueUrl=operator_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    attributes: dict[str, Any] = {"RawMessageDelivery": "true"}
    if operator_filter:
        attributes["FilterPolicy"] = json.dumps({"severity": operator_filter})
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=operator_arn, Attributes=attributes)
    for thing in things:
        iot.create_thing(thingName=thing)
    return Stack(database, table, state_table, topic_arn, dlq_url, operator_url)
