"""Model-based scenarios: the lake never silently diverges from the table, and the
reconciliation's verdict is never a wrong OK nor a false alarm.

Each scenario is a seeded random history over 200 keys (puts, updates, deletes, TTL deletes;
:mod:`table_model`) under one of four key schemas: ``pk`` S and ``sk`` N; two S values built
to collide (separators, control characters, quotes, backslashes: many keys join to the same
text with any one separator); N values of 38 significant digits one double apart, with B
values; key attribute names holding a quote and a backslash. What AWS would send goes
through the product's real parts into a real Parquet lake: stream records through the
Firehose Lambda (:class:`FirehoseDelivery`, the relay's delivery) in batches with
duplicates, reordering within and between batches, late delivery and, in half the
scenarios, drops; in a third of them, *phantoms* (stream records of changes the table never
had, some a few hundred milliseconds from a checked moment); full and incremental backfills
at random times (some overlapping the stream) through the export row builders and the lake
writer, named as the lake writer names them. Then, at quiet moments T1 < T2 < ...:

* the ``export`` method at each T (with repair) reports exactly the keys an independent
  oracle finds (the tie rule in plain Python over the lake's rows, with the ±ε rule), its
  repair's re-check is clean, and the lake's latest state then equals the model;
* between two of them, the ``changes`` method at T(i+1) over the window from 3ε before Ti
  (the lead-in that makes consecutive windows overlap): never ``ok`` when the lake differs
  from the model at T(i+1) (a wrong OK), always ``ok`` when nothing went wrong in the
  window (a false alarm);
* with no faults at all, the lake's latest state equals the model at every T.

A failure names its seed and the one line that replays it. ``DYNAMO_LAKE_SCENARIOS`` sets how
many run (default 200), ``DYNAMO_LAKE_SCENARIO`` runs one seed.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from table_model import (
    MS,
    SECOND,
    Change,
    History,
    Key,
    KeySchema,
    colliding_schema,
    decimal_schema,
    orders_schema,
    quoted_names_schema,
)

from dynamo_lake.cdc import (
    datetime_to_micros,
    row_from_full_export_line,
    row_from_incremental_export_line,
)
from dynamo_lake.contract import OP_RANK
from dynamo_lake.errors import StateError
from dynamo_lake.lake.keys import KeyAttribute
from dynamo_lake.lake.query import lake_dataset, latest_state
from dynamo_lake.lake.writer import LakeTable, Stage, StagedWriter, publish
from dynamo_lake.reconciliation import buckets
from dynamo_lake.reconciliation.compare import FindingsFile, compare_changes, compare_export
from dynamo_lake.reconciliation.engines import DuckDBEngine
from dynamo_lake.reconciliation.run import reconcile_table
from dynamo_lake.reconciliation.state_basis import (
    choose_basis,
    load_state_table,
    snapshot_bound,
)
from dynamo_lake.records import ReconciliationPlan
from dynamo_lake.state.current import (
    StateTarget,
    merge_state,
    open_catalog,
    open_state_table,
    read_state,
    state_snapshots,
)
from dynamo_lake.state.merge import live
from dynamo_lake.state.verify import (
    tag_name,
    verified_tags,
    verify_changes_check,
    verify_export_check,
)
from dynamo_lake.storage import resolve
from stream_relay import Faults, FirehoseDelivery, KinesisRecord, kinesis_record

TABLE = "orders"
EPSILON_MS = 1000
EPSILON = EPSILON_MS * MS
#: How far the changes window starts before the previous T (2ε at least: the lead-in).
LEAD_IN = 3 * EPSILON

_one = os.environ.get("DYNAMO_LAKE_SCENARIO")
SEEDS = [int(_one)] if _one else list(range(int(os.environ.get("DYNAMO_LAKE_SCENARIOS", "200"))))


def replay(seed: int) -> str:
    return (
        f"scenario seed {seed}; replay: DYNAMO_LAKE_SCENARIO={seed} "
        ".venv/bin/pytest tests/model/test_scenarios.py"
    )


def schema_for(seed: int, rng: random.Random) -> KeySchema:
    return [orders_schema, colliding_schema, decimal_schema, quoted_names_schema][seed % 4](
        *([rng] if seed % 4 == 1 else [])
    )


class Scenario:
    """One seeded history delivered into a lake, with its faults and backfills."""

    def __init__(self, seed: int, root: Path) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.schema = schema_for(seed, self.rng)
        self.history = History(self.rng, schema=self.schema)
        self.lake = root / "lake"
        self.root = root
        self.table = LakeTable(resolve(str(self.lake)))
        self.drops = seed % 2 == 1  # half the scenarios lose records on the stream
        self.phantoms_wanted = seed % 3 == 0  # a third get changes the table never had
        self.dropped: list[int] = []
        self.phantoms: list[Change] = []
        self._groups = itertools.count()
        self.moments = self.history.quiet_moments(self.rng, 3, margin=2 * EPSILON)
        self.moments.append(self.history.end + 5 * SECOND)
        self.state = StateTarget(str(self.lake), "model", TABLE, tuple(self.schema.names), 4)
        self.state_comparisons = 0  # comparisons made from a current-state snapshot
        self.catalog = open_catalog(self.state.lake_uri)

    # -- what AWS sends ----------------------------------------------------------------------

    def phantom_changes(self) -> list[Change]:
        """Changes the table never had: an invented image of an existing key, some a few
        hundred milliseconds either side of a moment that will be checked."""
        if not self.phantoms_wanted:
            return []
        found = []
        for number in range(self.rng.randint(1, 4)):
            if self.rng.random() < 0.6 and self.moments:
                near = self.rng.choice(self.moments)
                moment = near + self.rng.choice([-1, 1]) * self.rng.randint(100, 900) * MS
            else:
                moment = self.rng.choice(self.history.changes).time + 7 * MS
            key = self.rng.choice(self.history.keys)
            image = {**self.schema.image(key), "version": {"S": f"phantom-{number}"}}
            found.append(
                Change(
                    10**6 + number, moment, key, "MODIFY", image, None, keys=self.schema.image(key)
                )
            )
        return found

    def stream_batches(self) -> list[list[KinesisRecord]]:
        """Kinesis records in Firehose batches: duplicates (some in later batches), drops,
        phantoms."""
        self.phantoms = self.phantom_changes()
        records = []
        for change in sorted([*self.history.changes, *self.phantoms], key=lambda c: c.time):
            payload = kinesis_record(change.stream_record(), TABLE, change.time)
            partition = hashlib.sha256(repr(change.key).encode()).hexdigest()[:16]
            record = KinesisRecord("shardId-000", f"{change.sequence + 1:021d}", payload, partition)
            if self.drops and change.sequence < 10**6 and self.rng.random() < 0.03:
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
        """A backfill's rows, in files named as the lake writer names an export's."""
        number = next(self._groups)
        digest = hashlib.sha256(f"{self.seed}-{number}-{name}".encode()).hexdigest()[:8]
        _publish(self.table, f"0{1_700_000_000_000 + number:013d}-{digest}", rows)

    def deliver_everything(self, midway: Callable[[], None] | None = None) -> None:
        """Stream batches in a shuffled order (late delivery) mixed with the backfills;
        ``midway`` runs after a random number of them (a merge that later files follow)."""
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
        pause = self.rng.randrange(len(steps) + 1)
        for number, (kind, payload) in enumerate(steps):
            if number == pause and midway is not None:
                midway()
            if kind == "stream":
                delivery.deliver(payload)
            else:
                self.publish_rows(*payload)

    # -- the oracle ------------------------------------------------------------------------

    def merged_state(self, moment: int) -> set[str]:
        """Merge the lake into the current state at ``moment``; the state's live items."""
        merge_state(self.state, moment, catalog=self.catalog)
        return self.live_state()

    def merge_midway(self) -> None:
        """Merges before every file has arrived: at the exact time of an event (a watermark
        on an edge), then at the first moment checked."""
        early = [change.time for change in self.history.changes if change.time < self.moments[0]]
        if early:
            self.merged_state(self.rng.choice(early))
        self.merged_state(self.moments[0])

    def live_state(self) -> set[str]:
        table = open_state_table(self.catalog, self.state, create=False)
        return set(live(read_state(table)).column("data").to_pylist())

    def lake_rows(self) -> list[dict[str, Any]]:
        return lake_dataset(str(self.lake)).to_table().to_pylist()  # type: ignore[no-any-return]

    def oracle_state(self, moment: int) -> dict[Key, str]:
        """The lake's latest state at ``moment`` by the contract's tie rule, in Python."""
        best: dict[Key, tuple[int, int, str, str, str]] = {}
        for row in self.lake_rows():
            micros = datetime_to_micros(row["time_stamp"])
            if micros > moment:
                continue
            key = self.schema.key_of(row["data"])
            candidate = (micros, OP_RANK[row["op"]], row["uuid"], row["op"], row["data"])
            if key not in best or candidate[:3] > best[key][:3]:
                best[key] = candidate
        return {key: value[4] for key, value in best.items() if value[3] != "D"}

    def expected_drift(self, moment: int) -> dict[str, set[Key]]:
        """What the export method must find at ``moment``: a key is drift only if the lake
        differs from the table both at T - ε and at T + ε."""
        low, high = self.oracle_state(moment - EPSILON), self.oracle_state(moment + EPSILON)
        table = self.history.data_at(moment)
        found: dict[str, set[Key]] = {"missing": set(), "extra": set(), "different": set()}
        for key in set(table) | set(low) | set(high):
            want = table.get(key)
            if want in (low.get(key), high.get(key)):
                continue
            if want is None:
                found["extra"].add(key)
            elif low.get(key) is None and high.get(key) is None:
                found["missing"].add(key)
            else:
                found["different"].add(key)
        return found

    def snapshot(self, moment: int) -> Path:
        """What the conversion makes of a full export at ``moment``: I rows at T."""
        folder = self.root / f"snapshot-{moment}"
        rows = [
            row_from_full_export_line(line, moment)
            for line in self.history.full_export_lines(moment)
        ]
        _publish(LakeTable(resolve(str(folder))), "snapshot", rows)
        return folder

    def day(self, start: int, end: int) -> Path:
        """What the conversion makes of an incremental export of ``[start, end)``."""
        folder = self.root / f"day-{start}-{end}"
        rows = [
            row_from_incremental_export_line(line, window=(start, end))
            for line in self.history.incremental_export_lines(start, end)
        ]
        _publish(LakeTable(resolve(str(folder))), "day", rows)
        return folder

    def plan(self, moment: int, method: str, work: Path, window_start: int | None) -> Any:
        return ReconciliationPlan(
            table=TABLE,
            dynamodb_table=TABLE,
            table_arn=f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}",
            lake_uri=str(self.lake),
            work_uri=str(work),
            method=method,
            as_of=moment,
            epsilon_ms=EPSILON_MS,
            repair=method == "export",
            engine="duckdb",
            keys=self.schema.pairs,
            run_id=f"scenario-{self.seed}-{method}-{moment}",
            aws_conn_id="aws_default",
            region="us-east-1",
            glue_database="shop",
            glue_table=TABLE,
            window_start=window_start,
        )

    def reconcile(self, moment: int) -> Any:
        plan = self.plan(moment, "export", self.snapshot(moment), None)
        self.state_agrees_with_log(plan)
        return reconcile_table(plan, s3=None)

    def changes(self, previous: int, moment: int) -> Any:
        start = previous - LEAD_IN
        plan = self.plan(moment, "changes", self.day(start, moment), start)
        self.state_agrees_with_log(plan)
        return reconcile_table(plan, s3=None)

    def findings(self, plan: Any, basis: Any) -> tuple[Any, ...]:
        """Everything a comparison finds, from the log (``basis`` None) or from the state."""
        keys = [KeyAttribute(name, kind) for name, kind in plan.keys]
        engine = DuckDBEngine(
            lake_dataset(plan.lake_uri),
            lake_dataset(plan.work_uri),
            key_names=[key.name for key in keys],
            basis=basis,
            changed_keys_only=plan.method == "changes",
        )
        found = FindingsFile(self.root / f"findings-{next(self._groups)}.parquet")
        try:
            if plan.method == "export":
                result = compare_export(engine, keys, plan.as_of, EPSILON, found)
            else:
                result = compare_changes(
                    engine, keys, plan.as_of, EPSILON, plan.window_start, found
                )
        finally:
            engine.close()
        found.close()
        return (
            result.table_count,
            result.lake_count,
            sorted(result.counts.items()),
            sorted(found, key=repr),
        )

    def state_agrees_with_log(self, plan: Any) -> None:
        """The differential test: the comparison from every current-state snapshot early
        enough (and the log since it) finds exactly what the comparison from the whole log
        finds: the same keys, kinds, images, times and deciding uuids, and the same counts."""
        oracle = self.findings(plan, None)
        bound = snapshot_bound(plan.method, plan.as_of, EPSILON, plan.window_start)
        table = load_state_table(self.catalog, "model", TABLE)
        for record in state_snapshots(table) if table is not None else []:
            if record.watermark_us > bound:
                continue
            basis = choose_basis(
                plan.lake_uri,
                "model",
                TABLE,
                bound=bound,
                s3=None,
                catalog=self.catalog,
                snapshot_id=record.snapshot_id,
            )
            assert basis is not None and basis.snapshot == record
            from_state = self.findings(plan, basis)
            assert from_state == oracle, (
                f"{plan.method} at {plan.as_of} from the state at {record.watermark} "
                f"({basis.describe()}) differs from the log:\n{from_state}\n{oracle}"
            )
            self.state_comparisons += 1
        if table is not None and self.state_comparisons and self.seed % 16 < 4:
            # Bucket by bucket as the DAG's tasks do it (split into parts, compared by a few
            # tasks, gathered), the newest snapshot's comparison is the whole's (a quarter of
            # the seeds, every key schema among them: CI time).
            basis = choose_basis(
                plan.lake_uri, "model", TABLE, bound=bound, s3=None, catalog=self.catalog
            )
            if basis is not None:
                whole = self.bucket_findings(plan, basis)
                assert whole == oracle, f"{plan.method} at {plan.as_of}: buckets differ"

    def bucket_findings(self, plan: Any, basis: Any) -> tuple[Any, ...]:
        """:meth:`findings` through the bucket tasks: split, compare, gather."""
        plan = replace(plan, glue_database="model")  # the state's database
        split = buckets.plan_split(plan, basis, None, part_bytes=16 << 10, max_tasks=3)
        for part in split["parts"]:
            buckets.split_part(plan, split, part, None)
        light = buckets.without_parts(split)
        compared = [
            buckets.compare_buckets(plan, light, task, s3=None, catalog=self.catalog)
            for task in range(len(split["tasks"]))
        ]
        found = FindingsFile(self.root / f"findings-{next(self._groups)}.parquet")
        result = buckets.gather(plan, compared, found, None)
        found.close()
        shutil.rmtree(buckets.split_uri(plan.work_uri))
        return (
            result.table_count,
            result.lake_count,
            sorted(result.counts.items()),
            sorted(found, key=repr),
        )

    def compacted(self, start: int, end: int) -> bool:
        """Whether a key was created and deleted inside ``[start, end)`` (absent at both ends,
        changed between): an incremental export of that window leaves it out."""
        before, after = self.history.data_at(start), self.history.data_at(end)
        changed = {c.key for c in self.history.changes if start <= c.time < end}
        return any(key not in before and key not in after for key in changed)

    def faults_between(self, start: int, end: int) -> bool:
        """Whether the stream lost or invented anything in ``[start, end]``."""
        lost = {change.sequence for change in self.history.changes if start <= change.time <= end}
        return bool(lost & set(self.dropped)) or any(
            start <= phantom.time <= end for phantom in self.phantoms
        )


def _publish(table: LakeTable, group: str, rows: list[Any]) -> None:
    """Publish ``rows`` into ``table`` as one lake-writer group (what a backfill does)."""
    stage = Stage(group, "model")
    with StagedWriter(table, stage, "export") as writer:
        writer.write(sorted(rows, key=lambda row: row.time_stamp))
    publish(table, stage, writer.staged)


def _keys(samples: list[str], schema: KeySchema) -> set[Key]:
    return {schema.key_of(text) for text in samples}


@pytest.mark.parametrize("seed", SEEDS)
def test_the_lake_follows_the_model_and_verdicts_are_never_wrong(seed: int, tmp_path: Path) -> None:
    scenario = Scenario(seed, tmp_path)
    try:
        # The current state is merged once before every file has arrived: what arrives
        # after it (late batches, backfills of old windows) is merged by later runs.
        scenario.deliver_everything(midway=scenario.merge_midway)
        faulty = scenario.drops or scenario.phantoms_wanted
        previous: int | None = None
        tagged: set[int] = set()  # the moments whose snapshot is tagged verified
        for moment in scenario.moments:
            model = set(scenario.history.data_at(moment).values())
            if previous is not None:
                # The day's changes since the last verified moment (the export below made
                # the lake equal the model there): never a wrong OK, never a false alarm.
                # What a check at T answers for is the lake up to T - ε: an event within ε
                # of T may be a stream time that is ε off, and the next window covers it.
                lake_wrong = scenario.oracle_state(moment - EPSILON) != scenario.history.data_at(
                    moment
                )
                found = scenario.changes(previous, moment)
                if lake_wrong:
                    assert found.status == "drift", (
                        f"changes at {moment}: a wrong OK, the lake differs from the model "
                        f"(dropped {scenario.dropped}, phantoms {scenario.phantoms})"
                    )
                if not scenario.faults_between(previous - LEAD_IN, moment):
                    assert found.status == "ok", f"changes at {moment}: a false alarm: {found}"
                if found.healthy:
                    # The chain rule: the snapshot at T is tagged exactly when it equals the
                    # table, provided the previous moment's snapshot was verified.
                    start = previous - LEAD_IN
                    try:
                        chained = verify_changes_check(
                            scenario.state,
                            moment,
                            start,
                            lake_dataset(str(scenario.root / f"day-{start}-{moment}")),
                            catalog=scenario.catalog,
                        )
                    except StateError:
                        assert previous not in tagged, f"changes at {moment}: no chain"
                    else:
                        equal = scenario.live_state() == model
                        # Never a wrong tag. And a snapshot equal to the table is tagged,
                        # unless a key was created and deleted inside the window: AWS leaves
                        # it out of the incremental export, so the state's delete of it
                        # cannot be told from a bogus one, and the tag is withheld.
                        assert equal or chained.tag is None, (
                            f"changes at {moment}: a wrong tag: {chained.text()}"
                        )
                        if not scenario.compacted(start, moment):
                            assert (chained.tag is not None) == equal, (
                                f"changes tag at {moment}: {chained.text()}"
                            )
                        if chained.tag is not None:
                            tagged.add(moment)
            if not faulty:
                assert not any(scenario.expected_drift(moment).values())
                in_lake = latest_state(
                    str(scenario.lake), list(scenario.schema.names), as_of=moment
                )
                assert in_lake == model, f"latest state at {moment} differs from the model"
            expected = scenario.expected_drift(moment)
            report = scenario.reconcile(moment)
            counts = {kind: getattr(report, kind) for kind in expected}
            assert counts == {kind: len(keys) for kind, keys in expected.items()}, (
                f"export at {moment}: reported {counts}, expected {expected} "
                f"(dropped changes {scenario.dropped}, phantoms {scenario.phantoms})"
            )
            for kind, keys in expected.items():
                if len(keys) <= 20:
                    found_keys = _keys(report.samples.get(kind, []), scenario.schema)
                    assert found_keys == keys, f"{kind} keys at {moment}"
            if any(expected.values()):
                assert report.status == "repaired" and report.repair["recheck"]["status"] == "ok"
            else:
                assert report.status == "ok"
            # After the repair the lake equals the model at T, unless a phantom sits within ε
            # of T: the export cannot tell it from a stream time that is ε off, and the next
            # changes window (from before T, the lead-in) must find it.
            near = any(abs(phantom.time - moment) <= EPSILON for phantom in scenario.phantoms)
            if not near:
                repaired = latest_state(
                    str(scenario.lake), list(scenario.schema.names), as_of=moment
                )
                assert repaired == model, f"after the repair the lake differs at {moment}"
            # The current state at T, after the repair: the repair's rows stamped at T, and
            # everything delivered after the midway merge, are late files for it. A healthy
            # verdict asks for the tag: the snapshot at T is compared with the export, and
            # is tagged exactly when it equals the table (the model) at T.
            assert report.healthy
            verification = verify_export_check(
                scenario.state,
                moment,
                lake_dataset(str(scenario.root / f"snapshot-{moment}")),
                catalog=scenario.catalog,
            )
            current = scenario.live_state()
            assert current == set(scenario.oracle_state(moment).values()), (
                f"current state at {moment} after the repair differs from the lake"
            )
            if not near:
                assert current == model, f"current state at {moment} differs from the model"
            assert (verification.tag is not None) == (current == model), (
                f"verified tag at {moment}: {verification.text()}"
            )
            if verification.tag is not None:
                tagged.add(moment)
            previous = moment
        table = open_state_table(scenario.catalog, scenario.state, create=False)
        assert set(verified_tags(table)) == {tag_name(moment) for moment in tagged}
        assert scenario.state_comparisons, "no comparison was made from the current state"
    except AssertionError as failure:
        raise AssertionError(f"{replay(seed)}\n{failure}") from None
