"""The Athena engine's orchestration against the local AWS stack's Athena and Glue (moto):
a temporary Glue table over the work location, the query in Trino's dialect naming the Glue
tables, polling, paging through the results, dropping the table. Moto runs no SQL, so the
results it pages back are queued through its API: the rows DuckDB computes for the same
comparison, written as Athena writes them (text cells, NULL as no value). What Athena itself
would compute is not verified here (see the README)."""

from __future__ import annotations

import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlglot
from test_reconciliation import BASE, HOUR, T, engine, item, row, write

from dynamo_lake.reconciliation import sql
from dynamo_lake.reconciliation.compare import Comparison, KeyAttribute, compare_export
from dynamo_lake.reconciliation.engines import AthenaEngine, Finding
from local_aws.server import LocalAwsControl

KEYS = [KeyAttribute("pk", "S"), KeyAttribute("sk", "N")]


def _athena_cell(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, int) and not isinstance(value, bool):
        return {"VarCharValue": str(value)}
    return {"VarCharValue": str(value)}


def _as_athena_rows(findings: list[Finding]) -> list[dict[str, Any]]:
    from dynamo_lake.cdc import micros_to_datetime

    def time_text(micros: int | None) -> str | None:
        if micros is None:
            return None
        return f"{micros_to_datetime(micros):%Y-%m-%d %H:%M:%S.%f} UTC"

    rows = [{"Data": [{"VarCharValue": name} for name in sql.FINDING_COLUMNS]}]
    for found in findings:
        values = [
            found.kind,
            found.k,
            found.n,
            found.table_data,
            found.lake_data,
            time_text(found.table_time),
            time_text(found.lake_time),
            found.lake_uuid,
        ]
        rows.append({"Data": [_athena_cell(value) for value in values]})
    return rows


def _queue_result(stack: LocalAwsControl, rows: list[dict[str, Any]]) -> None:
    body = orjson.dumps({"region": "us-east-1", "results": [{"rows": rows}]})
    request = urllib.request.Request(
        f"{stack.endpoint_url}/moto-api/static/athena/query-results", data=body, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    lake, snapshot = tmp_path / "lake", tmp_path / "snapshot"
    write(lake, [row("I", T - 2 * HOUR, data) for data in BASE])
    write(
        snapshot, [row("I", T, data) for data in [item("a", 1), item("b", 2, "v2"), item("e", 5)]]
    )
    return lake, snapshot


@dataclass
class AthenaWorld:
    """A Glue database of its own and Athena's next result queued: the rows DuckDB finds
    for ``world``'s export comparison at T (``reference``: that comparison)."""

    glue: Any
    athena: Any
    database: str
    reference: Comparison

    def sent(self, naming: str) -> list[str]:
        """The queries Athena was sent that name ``naming``."""
        executions = self.athena.list_query_executions(WorkGroup="primary")["QueryExecutionIds"]
        texts = [
            self.athena.get_query_execution(QueryExecutionId=execution)["QueryExecution"]["Query"]
            for execution in executions
        ]
        return [text for text in texts if naming in text]

    def tables(self) -> list[str]:
        listed = self.glue.get_tables(DatabaseName=self.database)["TableList"]
        return [table["Name"] for table in listed]


@pytest.fixture
def athena_world(local_aws: LocalAwsControl, world: tuple[Path, Path]) -> AthenaWorld:
    local = engine(*world)
    try:
        expected = list(local.findings(sql.snapshot_diff_sql(T, 1_000_000)))
        reference = compare_export(local, KEYS, T, 1_000_000)
    finally:
        local.close()
    assert reference.drifted  # the world has every kind of drift
    glue = local_aws.client("glue", max_attempts=3)
    database = f"it_athena_{uuid.uuid4().hex[:8]}"
    glue.create_database(DatabaseInput={"Name": database})
    _queue_result(local_aws, _as_athena_rows(expected))
    return AthenaWorld(glue, local_aws.client("athena", max_attempts=3), database, reference)


def test_the_athena_engine_runs_the_comparison_through_glue_and_athena(
    local_aws: LocalAwsControl, athena_world: AthenaWorld
) -> None:
    glue, database, reference = athena_world.glue, athena_world.database, athena_world.reference
    results = f"athena-results-{uuid.uuid4().hex[:8]}"
    local_aws.client("s3", max_attempts=3).create_bucket(Bucket=results)
    athena_engine = AthenaEngine(
        athena_world.athena,
        glue,
        database=database,
        lake_table="orders",
        key_names=["pk", "sk"],
        snapshot_location="s3://work-bucket/_reconciliation/work/run-1",
        workgroup="primary",
        output_location=f"s3://{results}/reconcile/",
        poll_seconds=0.01,
    )
    try:
        found = compare_export(athena_engine, KEYS, T, 1_000_000)
        temporary = glue.get_table(DatabaseName=database, Name=athena_engine.snapshot_table)
        assert temporary["Table"]["StorageDescriptor"]["Location"].startswith(
            "s3://work-bucket/_reconciliation/work/run-1"
        )
    finally:
        athena_engine.close()
    # The same answers, parsed from Athena's text cells.
    assert (found.counts, found.samples) == (reference.counts, reference.samples)
    assert (found.table_count, found.lake_count) == (reference.table_count, reference.lake_count)
    # The temporary table is gone; the query sent was Trino naming the Glue tables.
    assert athena_engine.snapshot_table not in athena_world.tables()
    ours = athena_world.sent(athena_engine.snapshot_table)
    assert len(ours) == 1
    parsed = sqlglot.parse_one(ours[0], read="trino")
    names = {table.name for table in parsed.find_all(sqlglot.exp.Table)}
    assert {"orders", athena_engine.snapshot_table} <= names
    assert f'"{database}"."orders"' in ours[0]


def test_a_failed_athena_query_is_one_error_naming_it(
    local_aws: LocalAwsControl,
) -> None:
    from dynamo_lake.reconciliation.engines import ReconciliationEngineError

    glue = local_aws.client("glue", max_attempts=3)
    athena = local_aws.client("athena", max_attempts=1)
    athena_engine = AthenaEngine(
        athena,
        glue,
        database="no_such_database_here",
        lake_table="orders",
        key_names=["pk"],
        snapshot_location="s3://work-bucket/w",
        workgroup="primary",
        output_location="s3://nowhere/x/",
        poll_seconds=0.01,
    )
    with pytest.raises(ReconciliationEngineError, match="Athena: EntityNotFoundException"):
        list(athena_engine.findings(sql.count_sql(T, T - HOUR, T)))
    athena_engine.close()


def test_from_the_current_state_athena_reads_the_snapshot_and_the_staged_rows(
    athena_world: AthenaWorld,
) -> None:
    """With a current state, the query reads the Iceberg table at the chosen snapshot and a
    second temporary table over the staged rows since it (both dropped afterwards), never
    the Hive-format log table, and asks for exact times (no ambiguity guard)."""
    glue, database = athena_world.glue, athena_world.database
    athena_engine = AthenaEngine(
        athena_world.athena,
        glue,
        database=database,
        lake_table="orders",
        key_names=["pk", "sk"],
        snapshot_location="s3://work-bucket/_reconciliation/work/run-2",
        workgroup="primary",
        output_location="s3://results/reconcile/",
        poll_seconds=0.01,
        state=("orders_current", 7_000_000_000_000_000_001),
        events_location="s3://work-bucket/_reconciliation/work/run-2-events",
    )
    assert athena_engine.precision_us == 1
    try:
        found = compare_export(athena_engine, KEYS, T, 1_000_000)
        events = glue.get_table(DatabaseName=database, Name=athena_engine.events_table)["Table"]
        columns = {c["Name"]: c["Type"] for c in events["StorageDescriptor"]["Columns"]}
        assert columns["time_stamp_us"] == "bigint" and columns["k"] == "string"
    finally:
        athena_engine.close()
    assert found.counts and "ambiguous" not in found.counts
    tables = athena_world.tables()
    assert athena_engine.events_table not in tables and athena_engine.snapshot_table not in tables
    ours = athena_world.sent(athena_engine.events_table)
    assert len(ours) == 1
    assert "FOR VERSION AS OF 7000000000000000001" in ours[0]  # every digit of the id
    names = {
        table.name for table in sqlglot.parse_one(ours[0], read="trino").find_all(sqlglot.exp.Table)
    }
    assert "orders" not in names and {"orders_current", athena_engine.events_table} <= names
