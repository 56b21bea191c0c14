"""Millions of items straight into a table's history, for load runs (`make load`).

Writing 5 million items through BatchWriteItem would take the emulator most of an hour and
moto's item objects would not fit in memory, so a load run records the items in the table's
history directly (`POST /_local_aws/bulk-load`): exports read the history, so they see the items
exactly as if they had been written through the API; moto's own table stays empty (a Scan or a
DescribeTable's ItemCount does not see them). Everything else a load run does goes over HTTP.

An item is about 330 bytes of DynamoDB JSON, in the shape of `local_aws.seed.sample_item`
(composite key, numbers of up to 38 digits, Unicode, binary, a map, a list and sets). The
low-variety parts are shared objects, so 5 million items take about 9 GB of the emulator's
memory rather than 25 GB.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from typing import Any

from local_aws.history import Image, TableHistory

_STATUSES = [{"S": s} for s in ("NEW", "PAID", "SHIPPED", "RETURNED")]
_NOTES = [{"S": s} for s in ("café ☕", "2024-01-01T00:00:00Z", "", "line\nbreak", "ü 🦆")]
_BOOLS = [{"BOOL": True}, {"BOOL": False}]
_NULL = {"NULL": True}


def _pool(rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    """Shared attribute values: a few hundred distinct maps, lists and sets."""
    return {
        "address": [
            {
                "M": {
                    "street": {"S": f"{rng.randint(1, 999)} Main St"},
                    "geo": {
                        "M": {"lat": {"N": f"{rng.uniform(-90, 90):.4f}"}, "lon": {"N": "-13.405"}}
                    },
                    "S": {"S": "a map key named S"},
                }
            }
            for _ in range(256)
        ],
        "events": [
            {
                "L": [
                    {"S": "created"},
                    {"N": str(rng.randint(0, 10**6))},
                    {"BOOL": True},
                    {"NULL": True},
                    {"M": {"by": {"S": "bulk"}}},
                ]
            }
            for _ in range(64)
        ],
        "tags": [
            {"SS": sorted(rng.sample(["red", "blue", "green", "öko", "x"], 2))} for _ in range(16)
        ],
        "ratings": [{"NS": sorted({str(rng.randint(1, 5)), "4.5", "-1"})} for _ in range(16)],
        "signature": [
            {"B": base64.b64encode(rng.randbytes(rng.randint(1, 24))).decode()} for _ in range(64)
        ],
    }


def bulk_items(first: int, count: int, *, seed: int = 0) -> Iterator[Image]:
    """Items `first` .. `first + count - 1` (the same for the same seed, first and count)."""
    pool = _pool(random.Random(seed))
    rng = random.Random(seed * 1_000_003 + first)
    for index in range(first, first + count):
        bits = rng.getrandbits(32)
        item: Image = {
            "pk": {"S": f"customer#{index // 4:08d}"},
            "sk": {"S": f"order#{index:010d}"},
            "amount": {"N": f"{rng.randint(0, 10**19)}.{rng.randint(0, 10**18):018d}"},
            "quantity": {"N": str(bits % 500 - 5)},
            "status": _STATUSES[bits >> 8 & 3],
            "note": _NOTES[(bits >> 10) % len(_NOTES)],
            "gift": _BOOLS[bits >> 13 & 1],
            "coupon": _NULL,
            "signature": pool["signature"][bits >> 14 & 63],
            "address": pool["address"][bits >> 20 & 255],
            "events": pool["events"][bits >> 26 & 63],
        }
        if index % 3 != 1:
            item["tags"] = pool["tags"][index % 16]
        if index % 3 != 2:
            item["ratings"] = pool["ratings"][index % 16]
        yield item


def bulk_load(
    table: TableHistory, first: int, count: int, written_micros: int, seed: int = 0
) -> int:
    """Record items in the history as written at `written_micros`; return how many changed."""
    recorded = 0
    for item in bulk_items(first, count, seed=seed):
        recorded += table.record(table.key_of(item), item, written_micros)
    return recorded
