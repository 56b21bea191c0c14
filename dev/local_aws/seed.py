"""A realistic sample table: composite key, every DynamoDB attribute type, PITR and a stream on.

`python -m local_aws.seed --endpoint-url URL --table NAME --items N [--churn K]` creates (or
reuses) the table, loads N items with batch writes, then applies K random updates, deletes and
inserts. Items deliberately carry the values that break naive converters: 38-digit numbers,
negative and tiny decimals, strings that look like timestamps, non-ASCII text, binary, empty
strings, maps with a key named "S", nested lists and every set type.
"""

from __future__ import annotations

import argparse
import base64
import random
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from local_aws.server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY

PARTITION_KEY = "pk"
SORT_KEY = "sk"
BATCH_SIZE = 25


@dataclass(frozen=True)
class SampleTable:
    """What the seeding produced, for the caller's assertions."""

    table_name: str
    table_arn: str
    stream_arn: str
    item_count: int
    updated: int = 0
    deleted: int = 0
    inserted: int = 0


def sample_item(rng: random.Random, index: int) -> dict[str, Any]:
    """One order-like item in DynamoDB JSON (binary as bytes, as boto3 clients send it)."""
    item: dict[str, Any] = {
        PARTITION_KEY: {"S": f"customer#{index // 4:06d}"},
        SORT_KEY: {"S": f"order#{index:08d}"},
        "amount": {"N": f"{rng.randint(0, 10**19)}.{rng.randint(0, 10**18):018d}"},
        "quantity": {"N": str(rng.randint(-5, 500))},
        "discount": {"N": rng.choice(["0", "-0.0001", "1E-130", "9.99", "100"])},
        "status": {"S": rng.choice(["NEW", "PAID", "SHIPPED", "RETURNED"])},
        "note": {"S": rng.choice(["café ☕", "2024-01-01T00:00:00Z", "", "line\nbreak", "ü"])},
        "gift": {"BOOL": rng.random() < 0.3},
        "coupon": {"NULL": True},
        "signature": {"B": rng.randbytes(rng.randint(1, 24))},
        "address": {
            "M": {
                "street": {"S": f"{rng.randint(1, 999)} Main St"},
                "geo": {"M": {"lat": {"N": "52.52"}, "lon": {"N": "-13.405"}}},
                "S": {"S": "a map key named S"},
            }
        },
        "events": {
            "L": [
                {"S": "created"},
                {"N": str(index)},
                {"BOOL": True},
                {"NULL": True},
                {"M": {"by": {"S": "seed"}}},
                {"L": [{"B": b"\x00\xff"}]},
            ]
        },
    }
    if index % 3 != 1:
        item["tags"] = {"SS": sorted(rng.sample(["red", "blue", "green", "öko", "x"], 2))}
    if index % 3 != 2:
        item["ratings"] = {"NS": sorted({str(rng.randint(1, 5)), "4.5", "-1"})}
    if index % 2 == 0:
        item["attachments"] = {"BS": [b"\x01", rng.randbytes(4)]}
    return item


def dynamodb_client(endpoint_url: str, region: str = REGION) -> Any:
    import boto3

    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


def create_sample_table(client: Any, table_name: str) -> tuple[str, str]:
    """Create the table (stream NEW_AND_OLD_IMAGES, PITR on) unless it exists; (arn, stream)."""
    try:
        described = client.describe_table(TableName=table_name)["Table"]
    except client.exceptions.ResourceNotFoundException:
        described = client.create_table(
            TableName=table_name,
            KeySchema=[
                {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
                {"AttributeName": SORT_KEY, "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )["TableDescription"]
    client.update_continuous_backups(
        TableName=table_name,
        PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
    )
    return str(described["TableArn"]), str(described.get("LatestStreamArn", ""))


def _batch_write(client: Any, table_name: str, requests: list[dict[str, Any]]) -> None:
    for start in range(0, len(requests), BATCH_SIZE):
        pending: dict[str, Any] = {table_name: requests[start : start + BATCH_SIZE]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def load_items(client: Any, table_name: str, count: int, *, seed: int = 0, first: int = 0) -> None:
    """Put `count` sample items numbered from `first`, 25 per BatchWriteItem."""
    rng = random.Random(seed * 1_000_003 + first)
    requests = [{"PutRequest": {"Item": sample_item(rng, first + i)}} for i in range(count)]
    _batch_write(client, table_name, requests)


def _live_keys(client: Any, table_name: str) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = []
    for page in client.get_paginator("scan").paginate(
        TableName=table_name, ProjectionExpression=f"{PARTITION_KEY}, {SORT_KEY}"
    ):
        keys.extend(page["Items"])
    return sorted(keys, key=lambda k: (k[PARTITION_KEY]["S"], k[SORT_KEY]["S"]))


def apply_churn(client: Any, table_name: str, changes: int, *, seed: int = 0) -> dict[str, int]:
    """Random updates (60 %), deletes (25 %) and inserts (15 %) of the table's items."""
    rng = random.Random(seed + 7919)
    keys = _live_keys(client, table_name)
    next_index = 10**7 + rng.randint(0, 10**6)
    counts = {"updated": 0, "deleted": 0, "inserted": 0}
    deletes: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    for _ in range(changes):
        roll = rng.random()
        if keys and roll < 0.60:
            key = rng.choice(keys)
            client.update_item(
                TableName=table_name,
                Key=key,
                UpdateExpression="SET #s = :s, amount = :a ADD quantity :one REMOVE coupon",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":s": {"S": rng.choice(["PAID", "SHIPPED", "RETURNED", "CANCELLED"])},
                    ":a": {"N": f"{rng.randint(0, 10**6)}.{rng.randint(0, 99):02d}"},
                    ":one": {"N": "1"},
                },
            )
            counts["updated"] += 1
        elif keys and roll < 0.85:
            key = keys.pop(rng.randrange(len(keys)))
            deletes.append({"DeleteRequest": {"Key": key}})
            counts["deleted"] += 1
        else:
            item = sample_item(rng, next_index)
            next_index += 1
            inserts.append({"PutRequest": {"Item": item}})
            keys.append({PARTITION_KEY: item[PARTITION_KEY], SORT_KEY: item[SORT_KEY]})
            counts["inserted"] += 1
    _batch_write(client, table_name, deletes + inserts)
    return counts


def seed_sample_table(
    client: Any, table_name: str, items: int, *, churn: int = 0, seed: int = 0
) -> SampleTable:
    """Create the sample table, load `items` items, then apply `churn` random changes."""
    table_arn, stream_arn = create_sample_table(client, table_name)
    load_items(client, table_name, items, seed=seed)
    counts = apply_churn(client, table_name, churn, seed=seed) if churn else {}
    live = client.scan(TableName=table_name, Select="COUNT")
    item_count = int(live["Count"])
    while "LastEvaluatedKey" in live:
        live = client.scan(
            TableName=table_name, Select="COUNT", ExclusiveStartKey=live["LastEvaluatedKey"]
        )
        item_count += int(live["Count"])
    return SampleTable(table_name, table_arn, stream_arn, item_count, **counts)


def create_small_table(dynamodb: Any, *, pitr: bool = True) -> tuple[str, str]:
    """A small table (pk S, sk N); PITR enabled at the emulator's "now" unless told not to."""
    name = f"orders-{uuid.uuid4().hex[:12]}"
    arn = dynamodb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )["TableDescription"]["TableArn"]
    if pitr:
        dynamodb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    return name, arn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_aws.seed", description=__doc__)
    parser.add_argument("--endpoint-url", required=True, help="e.g. http://127.0.0.1:4566")
    parser.add_argument("--table", required=True, help="table name (created if missing)")
    parser.add_argument("--items", type=int, default=1000, help="items to load (default 1000)")
    parser.add_argument("--churn", type=int, default=0, help="random changes to apply after")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--region", default=REGION)
    arguments = parser.parse_args(argv)
    client = dynamodb_client(arguments.endpoint_url, arguments.region)
    table = seed_sample_table(
        client, arguments.table, arguments.items, churn=arguments.churn, seed=arguments.seed
    )
    print(
        f"table {table.table_name}: {table.item_count} items "
        f"({table.updated} updated, {table.deleted} deleted, {table.inserted} inserted)\n"
        f"  arn    {table.table_arn}\n  stream {table.stream_arn}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())


@dataclass(frozen=True)
class StreamChange:
    """One write of a seeded history as the table's stream tells it: the DynamoDB Streams
    record (wire form: binary as base64) and when it happened on the emulator's clock."""

    micros: int
    record: dict[str, Any]


def _wire(value: Any) -> Any:
    """An attribute value as stream records carry it: binary as base64 text."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {name: _wire(member) for name, member in value.items()}
    if isinstance(value, list):
        return [_wire(member) for member in value]
    return value


def seed_history(
    client: Any,
    table_name: str,
    items: int,
    *,
    start: datetime,
    end: datetime,
    steps: int,
    changes_per_step: int,
    set_clock: Callable[[datetime], Any],
    seed: int = 0,
) -> list[StreamChange]:
    """A table with a past: created with PITR on at ``start``, ``items`` items loaded then,
    and ``steps`` rounds of updates, deletes and inserts spread evenly up to ``end``, each
    written with the emulator's clock set to its moment (so exports and the PITR window see
    the history as it happened). Returns every write as its stream record: the emulator's
    own stream stamps records with the wall clock, so a relay must start at LATEST after
    this and the caller delivers these instead."""
    rng = random.Random(seed)
    changes: list[StreamChange] = []
    state: dict[tuple[str, str], dict[str, Any]] = {}
    sequence = 0

    def record(event: str, key: dict[str, Any], new: Any, old: Any, moment: datetime) -> None:
        nonlocal sequence
        sequence += 1
        dynamodb: dict[str, Any] = {"Keys": _wire(key), "SizeBytes": 100}
        if new is not None:
            dynamodb["NewImage"] = _wire(new)
        if old is not None:
            dynamodb["OldImage"] = _wire(old)
        micros = round(moment.timestamp() * 1_000_000)
        stream_record = {"eventID": f"seed-{sequence}", "eventName": event, "dynamodb": dynamodb}
        changes.append(StreamChange(micros, stream_record))

    set_clock(start)
    create_sample_table(client, table_name)
    for index in range(items):
        item = sample_item(rng, index)
        state[(item[PARTITION_KEY]["S"], item[SORT_KEY]["S"])] = item
    _batch_write(client, table_name, [{"PutRequest": {"Item": item}} for item in state.values()])
    for item in state.values():
        key = {PARTITION_KEY: item[PARTITION_KEY], SORT_KEY: item[SORT_KEY]}
        record("INSERT", key, item, None, start)
    next_index = 10**7
    for step in range(steps):
        moment = start + (end - start) * (step + 1) / steps
        set_clock(moment)
        touched: set[tuple[str, str]] = set()  # one write per key per moment: no ties
        for _ in range(changes_per_step):
            roll = rng.random()
            live = sorted(set(state) - touched)
            if live and roll < 0.60:
                name = rng.choice(live)
                old = state[name]
                new = {
                    **old,
                    "status": {"S": rng.choice(["PAID", "SHIPPED", "RETURNED", "CANCELLED"])},
                    "quantity": {"N": str(int(old["quantity"]["N"]) + 1)},
                }
                client.put_item(TableName=table_name, Item=new)
                state[name] = new
                event, image, before = "MODIFY", new, old
            elif live and roll < 0.85:
                name = rng.choice(live)
                before = state.pop(name)
                key = {PARTITION_KEY: before[PARTITION_KEY], SORT_KEY: before[SORT_KEY]}
                client.delete_item(TableName=table_name, Key=key)
                event, image = "REMOVE", None
            else:
                image = sample_item(rng, next_index)
                next_index += 1
                name = (image[PARTITION_KEY]["S"], image[SORT_KEY]["S"])
                client.put_item(TableName=table_name, Item=image)
                state[name] = image
                event, before = "INSERT", None
            touched.add(name)
            key = {PARTITION_KEY: {"S": name[0]}, SORT_KEY: {"S": name[1]}}
            record(event, key, image, before, moment)
    return changes
