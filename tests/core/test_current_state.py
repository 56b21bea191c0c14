"""The current-state Iceberg table kept from the lake: merges, late files, no-ops, refusals.

Lakes are written through the one lake writer; the state is read back through pyiceberg
and compared with the lake's latest state (the log-based definition, DuckDB). A lake in a
local folder uses the SQL catalog; a lake in the emulator's S3 uses pyiceberg's
GlueCatalog against the emulator's Glue, as production uses AWS Glue.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_reconciliation import HOUR, SECOND, T, item, row, write

from dynamo_lake.cdc import CdcRow
from dynamo_lake.errors import StateError
from dynamo_lake.lake.query import latest_state
from dynamo_lake.lake.writer import CDC_SCHEMA
from dynamo_lake.state.current import (
    StateTarget,
    merge_state,
    open_catalog,
    open_state_table,
    read_state,
    state_snapshots,
)
from dynamo_lake.state.merge import bucket_of, live
from dynamo_lake.storage import S3Options

KEY_NAMES = ("pk", "sk")
DAY = 24 * HOUR


def target_for(lake: str, buckets: int = 4, table: str = "orders") -> StateTarget:
    return StateTarget(lake, "lake_db", table, KEY_NAMES, buckets)


def live_data(
    target: StateTarget, s3: S3Options | None = None, snapshot: int | None = None
) -> set[str]:
    table = open_state_table(open_catalog(target.lake_uri, s3), target, create=False)
    return set(live(read_state(table, snapshot)).column("data").to_pylist())


def test_merges_follow_the_log_with_late_files_deletes_and_no_op_reruns(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    write(
        lake,
        [
            row("I", T - 2 * HOUR, item("a", 1)),
            row("I", T - HOUR, item("b", 2)),
            row("D", T - 10, item("a", 1)),
            row("I", T + 10, item("after", 9)),  # after the watermark: merged next time
        ],
    )
    target = target_for(str(lake))
    first = merge_state(target, T)
    assert first.snapshot is not None and first.files_merged == 1
    assert (first.snapshot.live_items, first.snapshot.tombstones) == (1, 1)
    assert live_data(target) == latest_state(str(lake), list(KEY_NAMES), as_of=T)

    assert merge_state(target, T).snapshot is None, "a re-run with nothing new committed"

    # A late file (a backfill of an old window): an update of the deleted key stamped before
    # the delete loses to the tombstone; a new key stamped before W arrives.
    write(lake, [row("U", T - 3 * HOUR, item("a", 1, "late")), row("I", T - 5, item("c", 3))])
    late = merge_state(target, T)
    assert late.snapshot is not None and late.files_merged == 1
    assert live_data(target) == latest_state(str(lake), list(KEY_NAMES), as_of=T)
    assert len(live_data(target)) == 2

    # Moving on picks up the row after the old watermark in a file merged before.
    later = merge_state(target, T + HOUR)
    assert later.snapshot is not None and later.files_merged == 0
    assert live_data(target) == latest_state(str(lake), list(KEY_NAMES), as_of=T + HOUR)
    assert item("after", 9) in live_data(target)

    # Each snapshot is readable at its own watermark, and only the touched buckets changed.
    snapshots = state_snapshots(open_state_table(open_catalog(str(lake)), target))
    assert [s.watermark_us for s in snapshots] == [T, T, T + HOUR]
    assert live_data(target, snapshot=snapshots[0].snapshot_id) == latest_state(
        str(lake), list(KEY_NAMES), as_of=T
    ) - {item("c", 3)}


def test_a_merge_rewrites_only_the_buckets_its_events_touch(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    rows = [row("I", T - HOUR, item(f"k{n}", n)) for n in range(40)]
    write(lake, rows)
    target = target_for(str(lake), buckets=8)
    merge_state(target, T)
    table = open_state_table(open_catalog(str(lake)), target)
    files_before = {task.file.file_path for task in table.scan().plan_files()}
    state = read_state(table)
    one = state.column("key").to_pylist()[0]
    assert state.column("bucket").to_pylist()[0] == bucket_of(one, 8)
    write(lake, [row("U", T - 1, item("k0", 0, "v2"))])
    result = merge_state(target, T)
    assert result.buckets_rewritten == 1
    table = open_state_table(open_catalog(str(lake)), target)
    files_after = {task.file.file_path for task in table.scan().plan_files()}
    assert len(files_before - files_after) == 1 and len(files_after - files_before) == 1
    assert live_data(target) == latest_state(str(lake), list(KEY_NAMES), as_of=T)


def test_a_merge_split_into_plan_bucket_rewrites_and_one_commit_equals_the_log(
    tmp_path: Path,
) -> None:
    """The DAG's shape: a plan passed as JSON, each bucket rewritten on its own (in any
    order), one commit. A partial set of rewrites is refused; the staged events are gone
    after the commit."""
    from dynamo_lake.state.current import (
        BucketMerge,
        MergePlan,
        commit_merge,
        merge_bucket,
        plan_merge,
    )

    lake = tmp_path / "lake"
    write(lake, [row("I", T - HOUR, item(f"k{n}", n)) for n in range(50)])
    target = target_for(str(lake), buckets=8)
    merge_state(target, T - 30 * 60 * SECOND)
    write(
        lake,
        [row("U", T - 5, item("k1", 1, "v2")), row("D", T - 4, item("k2", 2))]
        + [row("I", T - 3, item(f"new{n}", n)) for n in range(5)],
    )
    planned = plan_merge(target, T)
    assert planned is not None
    planned = MergePlan.from_json(json.loads(json.dumps(planned.as_json())))
    assert 1 <= len(planned.buckets) <= 7 and planned.events_read == 7
    rewrites = [
        BucketMerge.from_json(json.loads(json.dumps(merge_bucket(target, planned, b).as_json())))
        for b in reversed(planned.buckets)
    ]
    with pytest.raises(StateError, match="commit every bucket of the plan once"):
        commit_merge(target, planned, rewrites[1:])
    result = commit_merge(target, planned, rewrites)
    assert result.snapshot is not None
    assert (result.snapshot.live_items, result.snapshot.tombstones) == (54, 1)
    assert live_data(target) == latest_state(str(lake), list(KEY_NAMES), as_of=T)
    assert not os.path.exists(planned.staging), "the staged events outlived the commit"


def test_a_commit_planned_on_an_older_snapshot_is_refused_and_merge_state_retries(
    tmp_path: Path,
) -> None:
    """Another merge committed between this one's plan and its commit (a reconciliation
    verifying at its T): the stale rewrites would drop its changes, so the commit is refused
    and the state stays as the other merge left it."""
    from dynamo_lake.errors import StateConflictError
    from dynamo_lake.state.current import commit_merge, merge_bucket, plan_merge

    lake = tmp_path / "lake"
    write(lake, [row("I", T - HOUR, item(f"k{n}", n)) for n in range(20)])
    target = target_for(str(lake), buckets=2)
    merge_state(target, T - 30 * 60 * SECOND)
    write(lake, [row("U", T - 5, item("k1", 1, "v2"))])
    planned = plan_merge(target, T)
    assert planned is not None
    rewrites = [merge_bucket(target, planned, b) for b in planned.buckets]
    write(lake, [row("U", T - 4, item("k3", 3, "v2"))])
    other = merge_state(target, T)  # the other merge, with the later file too
    assert other.snapshot is not None
    with pytest.raises(StateConflictError, match="plan it again"):
        commit_merge(target, planned, rewrites)
    table = open_state_table(open_catalog(str(lake)), target)
    assert state_snapshots(table)[-1].snapshot_id == other.snapshot.snapshot_id
    assert live_data(target) == latest_state(str(lake), list(KEY_NAMES), as_of=T)
    assert item("k3", 3, "v2") in live_data(target)


def test_a_bucket_of_many_small_files_is_rewritten_into_few(tmp_path: Path) -> None:
    """Compaction: a bucket holding more files than its bytes need (written under a small
    target file size, or by another writer) is rewritten by the next merge, events or not."""
    lake = tmp_path / "lake"
    write(lake, [row("I", T - HOUR, item(f"k{n}", n, "x" * 200)) for n in range(400)])
    target = target_for(str(lake), buckets=1)
    table = open_state_table(open_catalog(str(lake)), target)
    with table.transaction() as transaction:
        transaction.set_properties({"write.target-file-size-bytes": "2000"})
    merge_state(target, T - 60 * SECOND)
    table = open_state_table(open_catalog(str(lake)), target)
    crowded = len(list(table.scan().plan_files()))
    assert crowded > 8, f"the small target size wrote only {crowded} files"
    with table.transaction() as transaction:
        transaction.remove_properties("write.target-file-size-bytes")
    result = merge_state(target, T)  # no new event
    assert result.buckets_rewritten == 1 and result.events_read == 0
    table = open_state_table(open_catalog(str(lake)), target)
    assert len(list(table.scan().plan_files())) == 1
    assert live_data(target) == latest_state(str(lake), list(KEY_NAMES), as_of=T)
    assert merge_state(target, T + 1).buckets_rewritten == 0, "a compact bucket was rewritten"


def test_files_only_expired_snapshots_read_are_removed_and_the_rest_kept(
    tmp_path: Path,
) -> None:
    """Rewrites replace a bucket's files merge by merge: once the snapshots that read the
    old files are expired, those files go (the deleted entries pyiceberg carries in later
    manifests do not keep them), and every file a remaining snapshot reads stays."""
    from dynamo_lake.state.maintenance import expire_state

    lake = tmp_path / "lake"
    write(lake, [row("I", T - HOUR, item(f"k{n}", n)) for n in range(20)])
    target = target_for(str(lake), buckets=1)
    for minute in range(1, 5):
        write(lake, [row("U", T - HOUR + minute * 60 * SECOND, item("k1", 1, f"v{minute}"))])
        merge_state(target, T + minute)
    table = open_state_table(open_catalog(str(lake)), target)
    kept = state_snapshots(table)[-2]
    with table.manage_snapshots() as manage:  # a tag keeps the one before the head
        manage.create_tag(kept.snapshot_id, "keep")
    expire_state(table, now=datetime.now(UTC) + timedelta(days=30))
    merge_state(target, T + 9, orphan_age=timedelta(0))

    table = open_state_table(open_catalog(str(lake)), target)
    on_disk = {str(path) for path in (lake / "_current" / "data").rglob("*.parquet")}
    read = {
        task.file.file_path.removeprefix("file://")
        for snapshot in table.snapshots()
        for task in table.scan(snapshot_id=snapshot.snapshot_id).plan_files()
    }
    assert on_disk == read, f"{len(on_disk - read)} unread files kept, {len(read - on_disk)} lost"
    assert len(table.snapshots()) == 3  # the tagged one, the head expiry kept, the new head
    assert item("k1", 1, "v3") in live_data(target, snapshot=kept.snapshot_id)
    assert item("k1", 1, "v4") in live_data(target)


def test_a_watermark_before_the_states_is_refused_naming_both(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    write(lake, [row("I", T - HOUR, item("a", 1))])
    target = target_for(str(lake))
    merge_state(target, T)
    with pytest.raises(StateError, match=r"state is at 2024-06-01T12:00:00.000000Z, after the"):
        merge_state(target, T - 1)
    with pytest.raises(StateError, match="not a time in µs"):
        merge_state(target, T // 1000)  # milliseconds by mistake


def test_another_bucket_count_is_refused_with_the_fix(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    write(lake, [row("I", T - HOUR, item("a", 1))])
    merge_state(target_for(str(lake), buckets=4), T)
    with pytest.raises(StateError, match="has 4 buckets and the tables file says 8"):
        merge_state(target_for(str(lake), buckets=8), T + 1)


def test_a_file_with_rows_outside_its_partition_day_is_refused(tmp_path: Path) -> None:
    """The merge finds rows after its watermark by partition; a foreign file that breaks the
    layout would hide them, so it is named instead."""
    lake = tmp_path / "lake"
    write(lake, [row("I", T - HOUR, item("a", 1))])
    target = target_for(str(lake))
    merge_state(target, T)
    stray: CdcRow = row("I", T + DAY, item("b", 2))
    folder = lake / "year=2024" / "month=06" / "day=01"
    moment = datetime.fromtimestamp(stray.time_stamp / 1e6, UTC)
    rows = pa.table(
        {
            "uuid": [stray.uuid],
            "op": [stray.op],
            "time_stamp": pa.array([moment], pa.timestamp("us", tz="UTC")),
            "data": [stray.data],
        }
    ).cast(CDC_SCHEMA)
    pq.write_table(rows, folder / "foreign.parquet")
    with pytest.raises(StateError, match=r"foreign.parquet: rows stamped on 2024-06-02 lie in"):
        merge_state(target, T + 2 * DAY)


def test_an_empty_lake_gives_an_empty_state_and_then_fills(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    target = target_for(str(lake))
    empty = merge_state(target, T)
    assert empty.snapshot is not None and empty.snapshot.live_items == 0
    assert merge_state(target, T).snapshot is None
    write(lake, [row("I", T - HOUR, item("a", 1))])
    assert merge_state(target, T).snapshot is not None
    assert live_data(target) == {item("a", 1)}


@pytest.mark.usefixtures("local_aws_env")
def test_in_s3_the_state_is_a_glue_iceberg_table_with_the_stated_types(local_aws: object) -> None:
    """The production path: GlueCatalog against the emulator's Glue, files in its S3."""
    client = local_aws.client("s3")  # type: ignore[attr-defined]
    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    glue = local_aws.client("glue")  # type: ignore[attr-defined]
    database = f"db_{uuid.uuid4().hex[:8]}"
    glue.create_database(DatabaseInput={"Name": database})
    lake = f"s3://{bucket}/dynamo-cdc/{database}/orders"
    write_s3(lake, [row("I", T - HOUR, item("a", 1)), row("I", T - 5, item("b", 2))])
    target = StateTarget(lake, database, "orders", KEY_NAMES, 2)
    s3 = S3Options.from_env()
    result = merge_state(target, T, s3=s3)
    assert result.snapshot is not None and result.snapshot.live_items == 2
    assert live_data(target, s3) == {item("a", 1), item("b", 2)}
    entry = glue.get_table(DatabaseName=database, Name="orders_current")["Table"]
    assert entry["Parameters"]["table_type"] == "ICEBERG"
    assert entry["Parameters"]["metadata_location"].startswith(f"{lake}/_current/metadata/")
    types = {c["Name"]: c["Type"] for c in entry["StorageDescriptor"]["Columns"]}
    # What Athena sees: a timestamp with zone is Glue's `timestamp` (Iceberg keeps µs).
    assert types == {
        "key": "string",
        "bucket": "int",
        "op": "string",
        "time_stamp": "timestamp",
        "time_stamp_us": "bigint",
        "uuid": "string",
        "data": "string",
    }
    assert merge_state(target, T, s3=s3).snapshot is None


@pytest.mark.usefixtures("local_aws_env")
def test_a_lake_never_backfilled_gets_its_glue_database_from_the_first_merge(
    local_aws: object,
) -> None:
    """Only the stream has written the lake (no backfill created the Glue database yet):
    the first merge creates the database the lake table will share, not a failed run."""
    client = local_aws.client("s3")  # type: ignore[attr-defined]
    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    database = f"db_{uuid.uuid4().hex[:8]}"
    lake = f"s3://{bucket}/dynamo-cdc/{database}/orders"
    write_s3(lake, [row("I", T - HOUR, item("a", 1))])
    target = StateTarget(lake, database, "orders", KEY_NAMES, 2)
    result = merge_state(target, T, s3=S3Options.from_env())
    assert result.snapshot is not None and result.snapshot.live_items == 1
    glue = local_aws.client("glue")  # type: ignore[attr-defined]
    assert glue.get_table(DatabaseName=database, Name="orders_current")["Table"]["Name"]


def write_s3(lake: str, rows: list[CdcRow]) -> None:
    from dynamo_lake.lake.writer import LakeTable, Stage, StagedWriter, publish
    from dynamo_lake.storage import resolve

    table = LakeTable(resolve(lake, S3Options.from_env()))
    stage = Stage(f"test-{uuid.uuid4().hex[:8]}", "test")
    with StagedWriter(table, stage, "rows") as writer:
        writer.write(sorted(rows, key=lambda r: r.time_stamp))
    publish(table, stage, writer.staged)


_MERGE_SCRIPT = """
import sys
from dynamo_lake.state.current import StateTarget, merge_state
lake, database, watermark = sys.argv[1], sys.argv[2], int(sys.argv[3])
merge_state(StateTarget(lake, database, "orders", ("pk", "sk"), 2), watermark)
"""


@pytest.mark.usefixtures("local_aws_env")
def test_a_merge_killed_at_its_commit_leaves_the_last_snapshot_and_the_next_run_cleans_up(
    local_aws: object,
) -> None:
    """The merge's process is SIGKILLed while Glue holds its commit (the fault proxy keeps
    the UpdateTable request waiting): readers still see the last snapshot, whole; the next
    merge commits the late file and removes the killed attempt's files."""
    import subprocess
    import sys
    import time
    from datetime import timedelta

    from local_aws.fault_proxy import FaultProxy, FaultRule

    client = local_aws.client("s3")  # type: ignore[attr-defined]
    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    database = f"db_{uuid.uuid4().hex[:8]}"
    local_aws.client("glue").create_database(DatabaseInput={"Name": database})  # type: ignore[attr-defined]
    lake = f"s3://{bucket}/dynamo-cdc/{database}/orders"
    write_s3(lake, [row("I", T - HOUR, item(f"k{n}", n)) for n in range(30)])
    target = StateTarget(lake, database, "orders", KEY_NAMES, 2)
    s3 = S3Options.from_env()
    first = merge_state(target, T, s3=s3)
    assert first.snapshot is not None
    before = live_data(target, s3)
    write_s3(lake, [row("U", T - 5, item("k1", 1, "late")), row("I", T - 4, item("new", 99))])

    with FaultProxy(local_aws.endpoint_url) as proxy:  # type: ignore[attr-defined]
        proxy.hold(FaultRule(rate=1.0, target_contains="UpdateTable"))
        env = {**os.environ, "AWS_ENDPOINT_URL": proxy.endpoint_url}
        process = subprocess.Popen(
            [sys.executable, "-c", _MERGE_SCRIPT, lake, database, str(T)], env=env
        )
        deadline = time.monotonic() + 120
        while proxy.counts["held"] == 0:
            assert process.poll() is None, "the merge ended before its commit was held"
            assert time.monotonic() < deadline, "the merge's commit was never held"
            time.sleep(0.1)
        process.kill()
        process.wait()
        proxy.release()

    table = open_state_table(open_catalog(lake, s3), target, create=False)
    assert [s.snapshot_id for s in state_snapshots(table)] == [first.snapshot.snapshot_id]
    assert live_data(target, s3) == before, "the killed merge changed what readers see"
    folder = f"{lake.removeprefix('s3://')}/_current/"
    listed = {
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=folder.split("/", 1)[1]
        )
        for item in page.get("Contents", [])
    }
    written = {key for key in listed if "/_current/data/" in key or "/_current/merged/" in key}

    result = merge_state(target, T, s3=s3, orphan_age=timedelta(0))
    assert result.snapshot is not None and result.files_merged == 1
    assert live_data(target, s3) == latest_state(lake, list(KEY_NAMES), as_of=T, s3=s3)
    table = open_state_table(open_catalog(lake, s3), target, create=False)
    kept = {
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=folder.split("/", 1)[1]
        )
        for item in page.get("Contents", [])
        if ("/_current/data/" in item["Key"] or "/_current/merged/" in item["Key"])
        and not item["Key"].endswith("/")
    }
    referenced = {
        path.removeprefix(f"s3://{bucket}/")
        for path in table.inspect.all_data_files()["file_path"].to_pylist()
    } | {s.merged_files.removeprefix(f"s3://{bucket}/") for s in state_snapshots(table)}
    assert kept == referenced, "files no snapshot refers to were left behind"
    assert written - kept, "the killed attempt wrote nothing to clean up"


def test_only_a_snapshot_equal_to_the_export_is_tagged_verified(tmp_path: Path) -> None:
    """The tag is earned by comparing the snapshot itself with the table at T: a day whose
    lake lost a change gets none, and the same T after the repair gets it."""
    from dynamo_lake.lake.query import lake_dataset
    from dynamo_lake.state.verify import tag_name, verified_tags, verify_export_check

    lake, export1, export2 = tmp_path / "lake", tmp_path / "export1", tmp_path / "export2"
    write(lake, [row("I", T - HOUR, item("a", 1)), row("I", T - HOUR, item("b", 2))])
    write(export1, [row("I", T, item("a", 1)), row("I", T, item("b", 2))])
    target = target_for(str(lake))
    first = verify_export_check(target, T, lake_dataset(str(export1)))
    assert first.equal and first.tag == tag_name(T) == "verified-20240601T120000.000000Z"

    # The next day the table gained c; the lake never got it.
    day2 = T + DAY
    write(export2, [row("I", day2, item(key, n)) for key, n in (("a", 1), ("b", 2), ("c", 3))])
    drift = verify_export_check(target, day2, lake_dataset(str(export2)))
    assert (drift.missing, drift.extra, drift.different, drift.tag) == (1, 0, 0, None)
    table = open_state_table(open_catalog(str(lake)), target, create=False)
    assert verified_tags(table) == {tag_name(T): first.snapshot_id}

    # The repair's row (stamped T2, published late) is merged at the same T: now it is equal.
    write(lake, [row("I", day2, item("c", 3))])
    repaired = verify_export_check(target, day2, lake_dataset(str(export2)))
    assert repaired.equal and repaired.tag == tag_name(day2)
    table = open_state_table(open_catalog(str(lake)), target, create=False)
    tags = verified_tags(table)
    assert tags == {tag_name(T): first.snapshot_id, tag_name(day2): repaired.snapshot_id}
    assert live_data(target, snapshot=tags[tag_name(T)]) == {item("a", 1), item("b", 2)}


def test_a_different_item_or_an_extra_one_is_no_tag(tmp_path: Path) -> None:
    from dynamo_lake.lake.query import lake_dataset
    from dynamo_lake.state.verify import verify_export_check

    lake, export = tmp_path / "lake", tmp_path / "export"
    write(lake, [row("I", T - HOUR, item("a", 1, "lake")), row("I", T - HOUR, item("x", 9))])
    write(export, [row("I", T, item("a", 1, "table"))])
    found = verify_export_check(target_for(str(lake)), T, lake_dataset(str(export)))
    assert (found.missing, found.extra, found.different, found.tag) == (0, 1, 1, None)


def test_expiry_keeps_young_verified_tags_readable_and_removes_old_ones(tmp_path: Path) -> None:
    """pyiceberg keeps a tag forever (it does not enforce max-ref-age): expiry removes the
    verified tags older than the tag retention by their T, then the untagged snapshots
    older than the snapshot retention; a young tag survives and still reads its state."""
    from dynamo_lake.lake.query import lake_dataset
    from dynamo_lake.state.maintenance import expire_state
    from dynamo_lake.state.verify import tag_name, verified_tags, verify_export_check

    now = datetime.now(UTC).replace(microsecond=0)
    micros = int(now.timestamp()) * 1_000_000
    old_t, young_t, untagged_t, current_t = (
        micros - 100 * DAY,
        micros - 2 * DAY,
        micros - DAY,
        micros - HOUR,
    )
    lake = tmp_path / "lake"
    target = target_for(str(lake))
    for moment, key in ((old_t, "a"), (young_t, "b")):
        write(lake, [row("I", moment - 10, item(key, 1))])
        export = tmp_path / f"export-{key}"
        expected = [("a", 1)] if key == "a" else [("a", 1), ("b", 1)]
        write(export, [row("I", moment, item(k, n)) for k, n in expected])
        assert verify_export_check(target, moment, lake_dataset(str(export))).tag
    write(lake, [row("I", untagged_t - 10, item("c", 1))])
    merge_state(target, untagged_t)
    write(lake, [row("I", current_t - 10, item("d", 1))])
    merge_state(target, current_t)
    table = open_state_table(open_catalog(str(lake)), target, create=False)
    young = verified_tags(table)[tag_name(young_t)]
    before = live_data(target, snapshot=young)
    assert len(state_snapshots(table)) == 4

    expiry = expire_state(table, now=now + timedelta(days=8))

    table = open_state_table(open_catalog(str(lake)), target, create=False)
    assert expiry.tags_removed == (tag_name(old_t),)
    assert verified_tags(table) == {tag_name(young_t): young}
    assert [s.watermark_us for s in state_snapshots(table)] == [young_t, current_t]
    assert expiry.snapshots_expired == 2
    assert live_data(target, snapshot=young) == before == {item("a", 1), item("b", 1)}
    assert live_data(target) == {item(k, 1) for k in "abcd"}
    # The files only the expired snapshots read are gone after the next merge.
    write(lake, [row("I", current_t - 5, item("e", 1))])
    merge_state(target, current_t, orphan_age=timedelta(0))
    assert live_data(target, snapshot=young) == before


def _chain_world(tmp_path: Path) -> tuple[Path, StateTarget]:
    """Day 1: a and b, checked by an export at T and tagged."""
    from dynamo_lake.lake.query import lake_dataset
    from dynamo_lake.state.verify import verify_export_check

    lake, export = tmp_path / "lake", tmp_path / "export"
    write(lake, [row("I", T - 3 * HOUR, item("a", 1)), row("I", T - 3 * HOUR, item("b", 2))])
    write(export, [row("I", T, item("a", 1)), row("I", T, item("b", 2))])
    target = target_for(str(lake))
    assert verify_export_check(target, T, lake_dataset(str(export))).tag
    return lake, target


def test_a_changes_check_chains_to_the_previous_verified_snapshot(tmp_path: Path) -> None:
    from dynamo_lake.lake.query import lake_dataset
    from dynamo_lake.state.verify import tag_name, verified_tags, verify_changes_check

    lake, target = _chain_world(tmp_path)
    day2 = T + DAY
    # Day 2: c inserted, b deleted; the lake has both; the incremental export lists both.
    write(lake, [row("I", T + HOUR, item("c", 3)), row("D", T + 2 * HOUR, item("b", 2))])
    changes = tmp_path / "changes"
    write(changes, [row("I", T + HOUR, item("c", 3)), row("D", T + 2 * HOUR, item("b", 2))])
    found = verify_changes_check(target, day2, T - 60 * SECOND, lake_dataset(str(changes)))
    assert found.equal and found.tag == tag_name(day2), found
    assert found.compared == 2 and found.chained_to is not None
    table = open_state_table(open_catalog(str(lake)), target, create=False)
    assert set(verified_tags(table)) == {tag_name(T), tag_name(day2)}


def test_a_late_file_in_an_old_window_is_caught_by_the_chain_rule(tmp_path: Path) -> None:
    """A row stamped before the previous verified T, published after it, changes a key
    DynamoDB never changed that day: no window of time_stamps sees it, the state diff does."""
    from dynamo_lake.lake.query import lake_dataset
    from dynamo_lake.state.verify import verify_changes_check

    lake, target = _chain_world(tmp_path)
    write(lake, [row("U", T - HOUR, item("a", 1, "phantom"))])  # late, in yesterday's window
    write(lake, [row("I", T + HOUR, item("c", 3))])
    changes = tmp_path / "changes"
    write(changes, [row("I", T + HOUR, item("c", 3))])
    found = verify_changes_check(target, T + DAY, T - 60 * SECOND, lake_dataset(str(changes)))
    assert (found.different, found.tag) == (1, None), found


def test_without_a_verified_snapshot_in_the_window_there_is_no_chain(tmp_path: Path) -> None:
    from dynamo_lake.lake.query import lake_dataset
    from dynamo_lake.state.verify import verify_changes_check

    lake, target = _chain_world(tmp_path)
    changes = tmp_path / "changes"
    write(changes, [row("I", T + 2 * DAY, item("c", 3))])
    write(lake, [row("I", T + 2 * DAY, item("c", 3))])
    with pytest.raises(StateError, match="no verified snapshot in the changes window from"):
        verify_changes_check(target, T + 3 * DAY, T + DAY, lake_dataset(str(changes)))
