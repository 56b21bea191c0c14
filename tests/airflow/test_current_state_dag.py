"""The current-state DAG end to end: real Airflow (dag.test), the local AWS stack over HTTP,
a lake made by the backfill DAG, pyiceberg's GlueCatalog against the emulator's Glue.

The state's live items must equal the table at the backfill's moment, read back from an
export independently of the merge; a second run with nothing new commits nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from airflow.utils.state import DagRunState
from airflow_scenario import Scenario
from test_reconciliation_dag import _lake, _options, backfill, states, table_at

from dynamo_lake.config import load_tables
from dynamo_lake.state.current import (
    StateTarget,
    merge_state,
    open_catalog,
    open_state_table,
    read_state,
    state_snapshots,
)
from dynamo_lake.state.merge import live

pytestmark = pytest.mark.usefixtures("scenario")


@pytest.fixture(scope="session")
def state_dag(dag_bag: Any) -> Any:
    dag = dag_bag.get_dag("dynamodb_current_state")
    for task in dag.tasks:
        task.retries = 0
    return dag


def _target() -> StateTarget:
    config = load_tables().table("state")
    return StateTarget(config.lake_uri, config.glue_database, config.glue_table, ("pk", "sk"), 2)


def _table(scenario: Scenario) -> Any:
    target = _target()
    return open_state_table(open_catalog(target.lake_uri, _options(scenario)), target, create=False)


def test_the_state_follows_a_backfill_and_a_rerun_commits_nothing(
    backfill_dag: Any, state_dag: Any, scenario: Scenario
) -> None:
    from datetime import timedelta

    moment = scenario.changes_to + timedelta(minutes=5)
    backfill(backfill_dag, "state", moment)

    run = state_dag.test(run_conf={"table": "state"})
    assert run.state == DagRunState.SUCCESS, states(run)
    # The merge's shape: a plan per table, its buckets rewritten by mapped tasks, one commit.
    first = states(run)
    assert first["prepare"] == first["commit"] == ["success"], first
    assert first["rewrite"] and set(first["rewrite"]) == {"success"}, first
    table = _table(scenario)
    rows = read_state(table)
    assert set(live(rows).column("data").to_pylist()) == set(table_at(scenario, moment).values())
    assert set(rows.column("bucket").to_pylist()) <= {0, 1}
    assert table.location() == f"{_lake('state')}/_current"
    glue = scenario.client("glue").get_table(DatabaseName="it_shop", Name="orders_state_current")
    assert glue["Table"]["Parameters"]["table_type"] == "ICEBERG"
    snapshots = state_snapshots(table)
    assert len(snapshots) == 1 and snapshots[0].live_items == len(table_at(scenario, moment))

    # The DAG runs on the asset the backfill just announced (by its name).
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        announced = {
            name
            for (name,) in session.query(AssetModel.name).join(
                AssetEvent, AssetEvent.asset_id == AssetModel.id
            )
        }
    scheduled_on = {ref.name for ref in state_dag.timetable.asset_condition.objects}
    assert "dynamo_lake/state" in announced & scheduled_on

    # A later run with nothing new moves the watermark on (a check at its T needs a snapshot
    # there) and rewrites no file; the same watermark again commits nothing.
    files = {task.file.file_path for task in table.scan().plan_files()}
    again = state_dag.test(run_conf={"table": "state"})
    assert again.state == DagRunState.SUCCESS, states(again)
    assert states(again)["commit"] == ["success"], "nothing to rewrite skipped the commit"
    assert set(states(again).get("rewrite", ["skipped"])) == {"skipped"}, states(again)
    table = _table(scenario)
    later = state_snapshots(table)
    assert len(later) == 2 and later[1].watermark_us > later[0].watermark_us
    assert {task.file.file_path for task in table.scan().plan_files()} == files
    target = _target()
    assert merge_state(target, later[1].watermark_us, s3=_options(scenario)).snapshot is None

    # A check by hand verified at a T past this DAG's cut (now - the margin): the DAG's next
    # run neither fails nor moves the state back; it merges at the state's own watermark.
    from datetime import UTC, datetime

    ahead = int(datetime.now(UTC).timestamp()) * 1_000_000
    merge_state(target, ahead, s3=_options(scenario))
    behind = state_dag.test(run_conf={"table": "state"})
    assert behind.state == DagRunState.SUCCESS, states(behind)
    assert [s.watermark_us for s in state_snapshots(_table(scenario))][-1] == ahead


def test_a_commit_that_finds_the_state_moved_merges_again_in_its_task(
    backfill_dag: Any, state_dag: Any, scenario: Scenario
) -> None:
    """Between this run's plan and its commit a reconciliation merged at its own T: the
    rewrites are stale, so the commit task merges again on top of the new snapshot, and
    the state holds both merges' files."""
    from datetime import UTC, datetime, timedelta

    from dynamo_lake.airflow import state_tasks

    moment = scenario.changes_to + timedelta(minutes=6)  # another export than the test above's
    backfill(backfill_dag, "state", moment)
    now = datetime.now(UTC)
    (planned,) = state_tasks.plan({"table": "state"}, now)
    prepared = state_tasks.prepare(planned)
    assert prepared["merge"] is not None and prepared["merge"]["buckets"]
    rewrites = [
        state_tasks.rewrite(work, [prepared]) for work in state_tasks.bucket_work([prepared])
    ]
    ahead = int(now.timestamp()) * 1_000_000  # the reconciliation's T, past this run's cut
    moved = merge_state(_target(), ahead, s3=_options(scenario))
    assert moved.snapshot is not None

    done = state_tasks.commit(prepared, rewrites)

    table = _table(scenario)
    snapshots = state_snapshots(table)
    # The other merge took every file up to its later T: merged again, nothing is left new.
    assert done["snapshot_id"] is None, done
    assert snapshots[-1].snapshot_id == moved.snapshot.snapshot_id, "stale rewrites committed"
    assert snapshots[-1].watermark_us == ahead, "the state moved back to the run's cut"
    assert set(live(read_state(table)).column("data").to_pylist()) == set(
        table_at(scenario, moment).values()
    )
