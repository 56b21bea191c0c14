"""Where the reconciliation's SQL runs: DuckDB on this worker, or Athena in AWS.

Both run the text of :mod:`dynamo_lake.reconciliation.sql` over the relations ``lake`` and
``snapshot`` and stream back :class:`Finding` rows, so nothing keeps every item in memory:

* :class:`DuckDBEngine` copies both, read as pyarrow datasets (local folders or S3), into
  DuckDB tables, then runs the SQL on those, with a memory limit past which DuckDB spills to
  a temporary folder. Queried straight from the Arrow scan, the comparison's memory grew with
  the table (4.9 GB at 5M items against a 1 GB limit: DuckDB keeps the scanned Arrow buffers
  alive outside its limit); copied, a task peaks at about the limit plus 600 MB whatever the
  size.
* :class:`AthenaEngine` runs the Trino dialect made by sqlglot over the lake table's Glue
  table and a temporary Glue table over the snapshot (dropped afterwards), polls the query,
  and pages through its results.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from dynamo_lake.cdc import datetime_to_micros
from dynamo_lake.contract import COLUMN_NAMES
from dynamo_lake.errors import DynamoLakeError, aws_error_code

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


class Engine(Protocol):
    name: str

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
    """DuckDB on this worker: ``lake`` and ``snapshot`` are pyarrow datasets."""

    name = "duckdb"
    BATCH_ROWS = 10_000

    def __init__(
        self,
        lake: Any,
        snapshot: Any | None = None,
        *,
        memory_limit_mb: int = 1024,
        spill_folder: str | None = None,
    ) -> None:
        import duckdb

        self._spill = None if spill_folder else tempfile.TemporaryDirectory(prefix="reconcile-")
        self.connection = duckdb.connect()
        self.connection.execute("SET TimeZone = 'UTC'")
        self.connection.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
        self.connection.execute(
            f"SET temp_directory = '{spill_folder or self._spill.name}'"  # type: ignore[union-attr]
        )
        self.connection.execute("SET preserve_insertion_order = false")
        self.connection.execute("SET enable_progress_bar = false")  # bars in a task log: noise
        for name, source in (("lake", lake), ("snapshot", snapshot)):
            if source is not None:
                self._copy(name, source)

    def _copy(self, name: str, source: Any) -> None:
        """``name`` as a DuckDB table of the source's rows (buffer-managed, spillable).

        A dataset is read with little read-ahead: pyarrow's defaults (16 batches of each of 4
        files) hold over 2 GB of rows from S3 while DuckDB inserts the first ones.
        """
        import duckdb
        import pyarrow.dataset as ds

        if isinstance(source, ds.Dataset):
            source = ds.Scanner.from_dataset(
                source,
                columns=list(COLUMN_NAMES),
                batch_size=self.BATCH_ROWS,
                batch_readahead=2,
                fragment_readahead=1,
            )
        self.connection.register(f"{name}_source", source)
        try:
            self.connection.execute(
                f"CREATE TEMP TABLE {name} AS SELECT {', '.join(COLUMN_NAMES)} FROM {name}_source"
            )
        except duckdb.Error as exc:
            raise ReconciliationEngineError(f"DuckDB could not read the {name}: {exc}") from exc
        finally:
            self.connection.unregister(f"{name}_source")

    def findings(self, sql: str) -> Iterator[Finding]:
        import duckdb

        try:
            reader: Any = self.connection.sql(sql).to_arrow_reader(self.BATCH_ROWS)
        except duckdb.Error as exc:
            raise ReconciliationEngineError(f"DuckDB could not run the comparison: {exc}") from exc
        for batch in reader:
            columns = batch.to_pydict()
            for row in zip(*columns.values(), strict=True):
                kind, k, n, table_data, lake_data, table_time, lake_time = row
                yield Finding(
                    kind, k, n, table_data, lake_data, _micros(table_time), _micros(lake_time)
                )

    def close(self) -> None:
        self.connection.close()
        if self._spill is not None:
            self._spill.cleanup()


class AthenaEngine:
    """Athena over the Glue catalog: the lake table, and a temporary table over the snapshot.

    ``athena`` and ``glue`` are boto3 clients; ``output_location`` is where Athena writes
    results (``s3://bucket/prefix``). The temporary table is named for this engine, created
    on first use and dropped by :meth:`close`.
    """

    name = "athena"

    def __init__(
        self,
        athena: Any,
        glue: Any,
        *,
        database: str,
        lake_table: str,
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
        self.snapshot_location = snapshot_location
        self.workgroup = workgroup
        self.output_location = output_location
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.snapshot_table = f"tmp_reconcile_{uuid.uuid4().hex[:12]}"
        self._created = False

    def trino_sql(self, sql: str) -> str:
        """``sql`` in Trino's dialect, its relations named in the Glue catalog."""
        import sqlglot
        from sqlglot import exp

        tree = sqlglot.parse_one(sql, read="duckdb")
        names = {"lake": self.lake_table, "snapshot": self.snapshot_table}
        for table in tree.find_all(exp.Table):
            if table.name in names and not table.args.get("db"):
                table.set("this", exp.to_identifier(names[table.name], quoted=True))
                table.set("db", exp.to_identifier(self.database, quoted=True))
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
                    kind, k, n, table_data, lake_data, table_time, lake_time = values
                    yield Finding(
                        str(kind),
                        k,
                        int(n) if n not in (None, "") else None,
                        table_data,
                        lake_data,
                        _micros(table_time),
                        _micros(lake_time),
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
