"""Model-based scenarios: the lake never silently diverges from the table.

Each scenario is a seeded random history over 200 keys (puts, updates, deletes, TTL deletes;
:mod:`table_model`). What AWS would send goes through the product's real parts into a real
Parquet lake: stream records through the Firehose Lambda (:class:`FirehoseDelivery`, the
relay's delivery) in batches with duplicates, reordering within and between batches, late
delivery and, in half the scenarios, drops; full and incremental backfills at random times
(some overlapping the stream) through the export row builders and the lake writer. Then, at
several quiet moments T:

* nothing dropped: the lake's latest state (DuckDB, the contract's one SQL) equals the model;
* drops: the reconciliation (export method, DuckDB) reports exactly the keys an independent
  oracle finds (the tie rule in plain Python over the lake's rows read with pyarrow), the
  repair's re-check is clean, and the lake's latest state then equals the model.

A failure names its seed and the one line that replays it. ``DYNAMO_LAKE_SCENARIOS`` sets how
many run (default 200), ``DYNAMO_LAKE_SCENARIO`` runs one seed.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from table_model import MS, SECOND, History

from dynamo_lake.cdc import (
    datetime_to_micros,
    row_from_full_export_line,
    row_from_incremental_export_line,
)
from dynamo_lake.contract import OP_RANK
from dynamo_lake.lake.query import lake_dataset, latest_state
from dynamo_lake.lake.writer import LakeTable, Stage, StagedWriter, publish
from dynamo_lake.reconciliation.run import reconcile_table
from dynamo_lake.records import ReconciliationPlan
from dynamo_lake.storage import resolve
from stream_relay import Faults, FirehoseDelivery, KinesisRecord, kinesis_record

TABLE = "orders"
KEY_NAMES = ["pk", "sk"]
EPSILON_MS = 1000

_one = os.environ.get("DYNAMO_LAKE_SCENARIO")
SEEDS = [int(_one)] if _one else list(range(int(os.environ.get("DYNAMO_LAKE_SCENARIOS", "200"))))


def replay(seed: int) -> str:
    return (
        f"scenario seed {seed}; replay: DYNAMO_LAKE_SCENARIO={seed} "
        ".venv/bin/pytest tests/model/test_scenarios.py"
    )


class Scenario:
    """One seeded history delivered into a lake, with its faults and backfills."""

    def __init__(self, seed: int, root: Path) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.history = History(self.rng)
        self.lake = root / "lake"
        self.root = root
        self.table = LakeTable(resolve(str(self.lake)))
        self.drops = seed % 2 == 1  # half the scenarios lose records on the stream
        self.dropped: list[int] = []
        self._groups = itertools.count()

    # -- what AWS sends ----------------------------------------------------------------------

    def stream_batches(self) -> list[list[KinesisRecord]]:
        """Kinesis records in Firehose batches: duplicates (some in later batches), drops."""
        records = []
        for change in self.history.changes:
            payload = kinesis_record(change.stream_record(), TABLE, change.time)
            record = KinesisRecord(
                "shardId-000", f"{change.sequence + 1:021d}", payload, change.key[0]
            )
            if self.drops and self.rng.random() < 0.03:
                self.dropped.append(change.sequence)
                continue
            records.append(record)
            if self.rng.random() < 0.05:  # delivered twice, now or a little later
                later = min(len(records) + self.rng.randint(0, 30), len(records))
                records.insert(later, record)
        batches, start = [], 0
        while start < len(records):
            size = self.rng.randint(1, 40)
            batches.append(records[start : start + size])
            start += size
        return batches

    def backfill_rows(self) -> Iterator[tuple[str, list[Any]]]:
        """One to three backfills: full at a moment, or incremental over a window."""
        changes = self.history.changes
        for number in range(self.rng.randint(1, 3)):
            if self.rng.random() < 0.5:
                moment = self.rng.choice(changes).time + 500  # never a stream time
                rows = [
                    row_from_full_export_line(line, moment)
                    for line in self.history.full_export_lines(moment)
                ]
                yield f"full-{number}", rows
            else:
                first = self.rng.randrange(len(changes) - 1)
                last = self.rng.randrange(first + 1, len(changes))
                window = (changes[first].time, changes[last].time)
                rows = [
                    row_from_incremental_export_line(line, window=window)
                    for line in self.history.incremental_export_lines(*window)
                ]
                yield f"incremental-{number}", rows

    # -- into the lake ---------------------------------------------------------------------

    def publish_rows(self, name: str, rows: list[Any]) -> None:
        _publish(self.table, f"backfill-{next(self._groups)}-{name}", rows)

    def deliver_everything(self) -> None:
        """Stream batches in a shuffled order (late delivery) mixed with the backfills."""
        delivery = FirehoseDelivery(self.table, TABLE, faults=Faults(reorder=True, seed=self.seed))
        batches = self.stream_batches()
        order = list(range(len(batches)))
        for _ in range(len(order) // 3):  # some batches overtake others
            a, b = self.rng.randrange(len(order)), self.rng.randrange(len(order))
            order[a], order[b] = order[b], order[a]
        steps: list[Any] = [("stream", batches[index]) for index in order]
        for backfill in self.backfill_rows():
            steps.insert(self.rng.randint(0, len(steps)), ("backfill", backfill))
        redelivered = self.rng.choice(batches) if batches else None
        if redelivered is not None:  # Firehose retries a whole batch
            steps.append(("stream", redelivered))
        for kind, payload in steps:
            if kind == "stream":
                delivery.deliver(payload)
            else:
                self.publish_rows(*payload)

    # -- the oracle ------------------------------------------------------------------------

    def lake_rows(self) -> list[dict[str, Any]]:
        return lake_dataset(str(self.lake)).to_table().to_pylist()  # type: ignore[no-any-return]

    def oracle_state(self, moment: int) -> dict[tuple[str, int], str]:
        """The lake's latest state at ``moment`` by the contract's tie rule, in Python."""
        best: dict[tuple[str, int], tuple[int, int, str, str, str]] = {}
        for row in self.lake_rows():
            micros = datetime_to_micros(row["time_stamp"])
            if micros > moment:
                continue
            data = orjson.loads(row["data"])
            key = (data["pk"], int(data["sk"]))
            candidate = (micros, OP_RANK[row["op"]], row["uuid"], row["op"], row["data"])
            if key not in best or candidate[:3] > best[key][:3]:
                best[key] = candidate
        return {key: value[4] for key, value in best.items() if value[3] != "D"}

    def expected_drift(self, moment: int) -> dict[str, set[tuple[str, int]]]:
        lake, table = self.oracle_state(moment), self.history.data_at(moment)
        return {
            "missing": set(table) - set(lake),
            "extra": set(lake) - set(table),
            "different": {key for key in table.keys() & lake.keys() if table[key] != lake[key]},
        }

    def snapshot(self, moment: int) -> Path:
        """What the conversion makes of a full export at ``moment``: I rows at T."""
        folder = self.root / f"snapshot-{moment}"
        rows = [
            row_from_full_export_line(line, moment)
            for line in self.history.full_export_lines(moment)
        ]
        _publish(LakeTable(resolve(str(folder))), "snapshot", rows)
        return folder

    def reconcile(self, moment: int) -> Any:
        plan = ReconciliationPlan(
            table=TABLE,
            dynamodb_table=TABLE,
            table_arn=f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}",
            lake_uri=str(self.lake),
            work_uri=str(self.snapshot(moment)),
            method="export",
            as_of=moment,
            epsilon_ms=EPSILON_MS,
            repair=True,
            engine="duckdb",
            keys=(("pk", "S"), ("sk", "N")),
            run_id=f"scenario-{self.seed}-{moment}",
            aws_conn_id="aws_default",
            region="us-east-1",
            glue_database="shop",
            glue_table=TABLE,
        )
        return reconcile_table(plan, s3=None)


def _publish(table: LakeTable, group: str, rows: list[Any]) -> None:
    """Publish ``rows`` into ``table`` as one lake-writer group (what a backfill does)."""
    stage = Stage(group, "model")
    with StagedWriter(table, stage, "export") as writer:
        writer.write(sorted(rows, key=lambda row: row.time_stamp))
    publish(table, stage, writer.staged)


def _keys(samples: list[str]) -> set[tuple[str, int]]:
    found = set()
    for text in samples:
        key = orjson.loads(text)
        found.add((key["pk"], int(key["sk"])))
    return found


@pytest.mark.parametrize("seed", SEEDS)
def test_the_lake_follows_the_model_and_drift_is_found_exactly(seed: int, tmp_path: Path) -> None:
    scenario = Scenario(seed, tmp_path)
    try:
        scenario.deliver_everything()
        moments = scenario.history.quiet_moments(scenario.rng, 3, margin=2 * EPSILON_MS * MS)
        moments.append(scenario.history.end + 5 * SECOND)
        for moment in moments:
            model = set(scenario.history.data_at(moment).values())
            expected = scenario.expected_drift(moment)
            if not scenario.drops:
                assert not any(expected.values()), f"the oracle sees drift at {moment}"
                in_lake = latest_state(str(scenario.lake), KEY_NAMES, as_of=moment)
                assert in_lake == model, f"latest state at {moment} differs from the model"
                continue
            report = scenario.reconcile(moment)
            counts = {kind: getattr(report, kind) for kind in expected}
            assert counts == {kind: len(keys) for kind, keys in expected.items()}, (
                f"at {moment}: reported {counts}, expected {expected} "
                f"(dropped changes {scenario.dropped})"
            )
            for kind, keys in expected.items():
                if len(keys) <= 20:
                    assert _keys(report.samples.get(kind, [])) == keys, f"{kind} keys at {moment}"
            if any(expected.values()):
                assert report.status == "drift" and report.repair["recheck"]["status"] == "ok"
            else:
                assert report.status == "ok"
            repaired = latest_state(str(scenario.lake), KEY_NAMES, as_of=moment)
            assert repaired == model, f"after the repair the lake differs at {moment}"
    except AssertionError as failure:
        raise AssertionError(f"{replay(seed)}\n{failure}") from None
