"""Where the reconciliation's SQL runs: DuckDB on this worker, or Athena in AWS.

Both run the text of :mod:`dynamo_lake.reconciliation.sql` over the relations ``lake`` and
``snapshot`` in the lake's keyed form (each row's exact key ``k`` and ``stream``) and
stream back :class:`Finding` rows, so nothing keeps every item in memory:

* :class:`DuckDBEngine` copies both, read as pyarrow datasets (local folders or S3), into
  DuckDB tables (:class:`~dynamo_lake.lake.query.LakeDatabase`), computing each row's key
  on the way, then runs the SQL on those, with a memory limit past which DuckDB spills to a
  temporary folder. It reads times to the microsecond (``precision_us`` 1).
* :class:`AthenaEngine` runs the Trino dialect made by sqlglot over the lake table's Glue
  table and a temporary Glue table over the snapshot (dropped afterwards), each wrapped so
  that it has ``k`` (from ``json_extract_scalar``, exact text) and ``stream`` (from the
  file's name, ``"$path"``); it polls the query and pages through its results. Athena reads
  the Hive-format table's times at milliseconds (``precision_us`` 1000), so the SQL
  reports keys it cannot order as ambiguous.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from dynamo_lake.cdc import datetime_to_micros
from dynamo_lake.contract import WRITER_FILE_PATTERN
from dynamo_lake.errors import DynamoLakeError, aws_error_code
from dynamo_lake.lake.keys import athena_key_sql
from dynamo_lake.lake.query import LakeDatabase

__all__ = ["AthenaEngine", "DuckDBEngine", "Engine", "Finding", "ReconciliationEngineError"]

log = logging.getLogger(__name__)


class ReconciliationEngineError(DynamoLakeError):
    """A comparison query could not run (the engine refused it or gave up)."""

    retryable = True


class Finding(NamedTuple):
    """One row a comparison returns (see :mod:`dynamo_lake.reconciliation.sql`)."""

    kind: str
    k: str | None
    n: int | None
    table_data: str | None
    lake_data: str | None
    table_time: int | None  # µs
    lake_time: int | None  # µs
    lake_uuid: str | None = None  # the deciding lake event


class Engine(Protocol):
    name: str
    #: The finest time step the engine sees in ``time_stamp``, in µs.
    precision_us: int

    def findings(self, sql: str) -> Iterator[Finding]: ...

    def close(self) -> None: ...


def _micros(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return datetime_to_micros(moment)
    text = str(value).strip().removesuffix(" UTC").replace(" ", "T")
    moment = datetime.fromisoformat(text)
    return datetime_to_micros(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


class DuckDBEngine:
    """DuckDB on this worker: ``lake`` and ``snapshot`` are pyarrow datasets, copied into
    DuckDB with each row's key (``key_names``: the key attributes, partition key first)."""

    name = "duckdb"
    precision_us = 1
    BATCH_ROWS = 10_000

    def __init__(
        self,
        lake: Any,
        snapshot: Any | None = None,
        *,
        key_names: Sequence[str],
        memory_limit_mb: int = 1024,
        spill_folder: str | None = None,
    ) -> None:
        import duckdb

        self.database = LakeDatabase(memory_limit_mb=memory_limit_mb, spill_folder=spill_folder)
        self.connection = self.database.connection
        try:
            for name, source in (("lake", lake), ("snapshot", snapshot)):
                self.database.add(name, source if source is not None else _empty(), key_names)
        except duckdb.Error as exc:
            self.database.close()
            raise ReconciliationEngineError(f"DuckDB could not copy the rows: {exc}") from exc
        except BaseException:
            self.database.close()
            raise

    def findings(self, sql: str) -> Iterator[Finding]:
        import duckdb

        try:
            reader: Any = self.connection.sql(sql).to_arrow_reader(self.BATCH_ROWS)
        except duckdb.Error as exc:
            raise ReconciliationEngineError(f"DuckDB could not run the comparison: {exc}") from exc
        for batch in reader:
            columns = batch.to_pydict()
            for row in zip(*columns.values(), strict=True):
                kind, k, n, table_data, lake_data, table_time, lake_time, lake_uuid = row
                yield Finding(
                    kind,
                    k,
                    n,
                    table_data,
                    lake_data,
                    _micros(table_time),
                    _micros(lake_time),
                    lake_uuid,
                )

    def close(self) -> None:
        self.database.close()


def _empty() -> Any:
    import pyarrow.dataset as ds

    from dynamo_lake.lake.writer import CDC_SCHEMA

    return ds.dataset(CDC_SCHEMA.empty_table())


class AthenaEngine:
    """Athena over the Glue catalog: the lake table, and a temporary table over the snapshot.

    ``athena`` and ``glue`` are boto3 clients; ``output_location`` is where Athena writes
    results (``s3://bucket/prefix``). The temporary table is named for this engine, created
    on first use and dropped by :meth:`close`.
    """

    name = "athena"
    precision_us = 1000

    def __init__(
        self,
        athena: Any,
        glue: Any,
        *,
        database: str,
        lake_table: str,
        key_names: Sequence[str],
        snapshot_location: str | None,
        workgroup: str,
        output_location: str,
        poll_seconds: float = 2.0,
        timeout_seconds: float = 3600.0,
    ) -> None:
        self.athena = athena
        self.glue = glue
        self.database = database
        self.lake_table = lake_table
        self.key_names = list(key_names)
        self.snapshot_location = snapshot_location
        self.workgroup = workgroup
        self.output_location = output_location
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.snapshot_table = f"tmp_reconcile_{uuid.uuid4().hex[:12]}"
        self._created = False

    def relation_sql(self, table: str | None) -> str:
        """Trino SQL for a relation in the keyed form over a Glue table (an empty one when
        ``table`` is None): the contract's columns, the exact key ``k`` and ``stream``."""
        if table is None:
            return (
                "SELECT CAST(NULL AS VARCHAR) AS uuid, CAST(NULL AS VARCHAR) AS op, "
                "CAST(NULL AS TIMESTAMP(3) WITH TIME ZONE) AS time_stamp, "
                "CAST(NULL AS VARCHAR) AS data, CAST(NULL AS VARCHAR) AS k, "
                "FALSE AS stream WHERE FALSE"
            )
        pattern = WRITER_FILE_PATTERN.replace("'", "''")
        return (
            f"SELECT uuid, op, time_stamp, data, {athena_key_sql(self.key_names)} AS k, "
            f"NOT regexp_like(regexp_extract(\"$path\", '[^/]+$'), '{pattern}') AS stream "
            f'FROM "{self.database}"."{table}"'
        )

    def trino_sql(self, sql: str) -> str:
        """``sql`` in Trino's dialect, ``lake`` and ``snapshot`` defined over the Glue
        tables in its first common table expressions."""
        import sqlglot
        from sqlglot import exp

        from dynamo_lake.reconciliation.sql import to_trino

        tree = sqlglot.parse_one(to_trino(sql), read="trino")
        relations = {
            "lake": self.lake_table,
            "snapshot": self.snapshot_table if self.snapshot_location else None,
        }
        ctes = [
            exp.CTE(
                this=sqlglot.parse_one(self.relation_sql(table), read="trino"),
                alias=exp.TableAlias(this=exp.to_identifier(name)),
            )
            for name, table in relations.items()
        ]
        with_ = tree.args.get("with_")
        if with_ is None:  # every comparison starts with its CTEs; keep any other query whole
            with_ = exp.With(expressions=[])
            tree.set("with_", with_)
        with_.set("expressions", [*ctes, *with_.expressions])
        return tree.sql(dialect="trino", pretty=True)

    def _ensure_snapshot_table(self) -> None:
        if self._created or self.snapshot_location is None:
            return
        from dynamo_lake.lake.catalog import glue_table_input

        table = glue_table_input(
            self.snapshot_table, self.snapshot_location, "reconciliation work (temporary)"
        )
        self.glue.create_table(DatabaseName=self.database, TableInput=table)
        self._created = True

    def _wait(self, query_id: str) -> None:
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            execution = self.athena.get_query_execution(QueryExecutionId=query_id)
            status = execution["QueryExecution"]["Status"]
            state = status["State"]
            if state == "SUCCEEDED":
                return
            if state in ("FAILED", "CANCELLED"):
                reason = status.get("StateChangeReason", "no reason given")
                raise ReconciliationEngineError(f"Athena query {query_id} {state}: {reason}")
            if time.monotonic() > deadline:
                self.athena.stop_query_execution(QueryExecutionId=query_id)
                raise ReconciliationEngineError(
                    f"Athena query {query_id} ran over {self.timeout_seconds:.0f} s; stopped"
                )
            time.sleep(self.poll_seconds)

    def findings(self, sql: str) -> Iterator[Finding]:
        from botocore.exceptions import ClientError

        try:
            self._ensure_snapshot_table()
            started = self.athena.start_query_execution(
                QueryString=self.trino_sql(sql),
                QueryExecutionContext={"Database": self.database},
                WorkGroup=self.workgroup,
                ResultConfiguration={"OutputLocation": self.output_location},
            )
            query_id = started["QueryExecutionId"]
            log.info("Athena query %s started in workgroup %s", query_id, self.workgroup)
            self._wait(query_id)
            pages = self.athena.get_paginator("get_query_results").paginate(
                QueryExecutionId=query_id
            )
            first = True
            for page in pages:
                rows = page["ResultSet"]["Rows"]
                if first and rows:
                    rows = rows[1:]  # Athena's first row repeats the column names
                first = False
                for row in rows:
                    values = [cell.get("VarCharValue") for cell in row["Data"]]
                    kind, k, n, table_data, lake_data, table_time, lake_time, lake_uuid = values
                    yield Finding(
                        str(kind),
                        k,
                        int(n) if n not in (None, "") else None,
                        table_data,
                        lake_data,
                        _micros(table_time),
                        _micros(lake_time),
                        lake_uuid,
                    )
        except ClientError as exc:
            raise ReconciliationEngineError(
                f"Athena: {aws_error_code(exc)}: {exc} (workgroup {self.workgroup}, output "
                f"{self.output_location}); check the workgroup and the output location"
            ) from exc

    def close(self) -> None:
        if self._created:
            try:
                self.glue.delete_table(DatabaseName=self.database, Name=self.snapshot_table)
            except Exception as exc:  # cleaning up; the comparison's outcome stands
                log.warning("could not drop %s.%s: %s", self.database, self.snapshot_table, exc)
            self._created = False
