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
  reports keys it cannot order as ambiguous. With a current state (``state``), ``lake`` is
  instead the Iceberg snapshot and the rows since its watermark, staged by this project's
  reader with exact keys and times in µs (another temporary table): ``precision_us`` 1, and
  nothing is ambiguous.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from dynamo_lake.cdc import datetime_to_micros
from dynamo_lake.contract import WRITER_FILE_PATTERN
from dynamo_lake.errors import DynamoLakeError, aws_error_code
from dynamo_lake.lake.keys import athena_key_sql
from dynamo_lake.lake.query import LakeDatabase
from dynamo_lake.state.merge import bucket_filter

if TYPE_CHECKING:
    from dynamo_lake.reconciliation.state_basis import StateBasis

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
    #: Whether the lake side is a current-state snapshot (the relation ``base``) and the
    #: rows beside it (``lake``), rather than the whole log (``lake``).
    has_base: bool

    def findings(self, sql: str) -> Iterator[Finding]: ...

    def close(self) -> None: ...


def _micros(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return datetime_to_micros(moment)
    text = str(value).strip().removesuffix(" UTC").replace(" ", "T")
    if "." in text:  # Trino's timestamp(9): nanoseconds, always 0 below the µs here
        whole, fraction = text.split(".", 1)
        digits = "".join(itertools.takewhile(str.isdigit, fraction))
        text = f"{whole}.{digits[:6]}{fraction[len(digits) :]}"
    moment = datetime.fromisoformat(text)
    return datetime_to_micros(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


class DuckDBEngine:
    """DuckDB on this worker: ``lake`` and ``snapshot`` are pyarrow datasets, copied into
    DuckDB with each row's key (``key_names``: the key attributes, partition key first).
    With a ``basis``, ``lake`` is a current-state snapshot and the log since it instead
    (:mod:`dynamo_lake.reconciliation.state_basis`); ``changed_keys_only`` takes of the
    snapshot only the keys the table side lists or the log since it holds. ``bucket``
    ``(b, n)``: only the keys of bucket b of n (the state's count), each side filtered as
    it is copied, so that the buckets can be compared one by one in bounded memory.
    ``prepared`` (the table side's rows, the lake rows since the snapshot): one bucket's
    rows already keyed and split (:mod:`~dynamo_lake.reconciliation.buckets`), read instead
    of ``snapshot`` and the basis's lake files."""

    name = "duckdb"
    precision_us = 1
    has_base = False
    BATCH_ROWS = 10_000

    def __init__(
        self,
        lake: Any,
        snapshot: Any | None = None,
        *,
        key_names: Sequence[str],
        memory_limit_mb: int = 1024,
        spill_folder: str | None = None,
        basis: StateBasis | None = None,
        changed_keys_only: bool = False,
        bucket: tuple[int, int] | None = None,
        prepared: tuple[Iterator[Any], Iterator[Any]] | None = None,
    ) -> None:
        import duckdb

        self.database = LakeDatabase(memory_limit_mb=memory_limit_mb, spill_folder=spill_folder)
        self.connection = self.database.connection
        self.basis = basis
        self.has_base = basis is not None
        in_bucket = None if bucket is None else bucket_filter(*bucket)
        try:
            if basis is not None and bucket is not None and bucket[1] != basis.buckets:
                raise ReconciliationEngineError(
                    f"bucket {bucket[0]} of {bucket[1]}: the current state has "
                    f"{basis.buckets} buckets; compare its own buckets"
                )
            if prepared is not None:
                if basis is None:
                    raise ReconciliationEngineError("split rows are compared from a state only")
                self.database.add_keyed("snapshot", prepared[0])
            else:
                self.database.add(
                    "snapshot",
                    snapshot if snapshot is not None else _empty(),
                    key_names,
                    where=in_bucket,
                )
            if basis is None:
                self.database.add("lake", lake, key_names, where=in_bucket)
            else:
                basis.load(
                    self.database,
                    key_names,
                    # of one bucket's table keys (prepared), few enough to choose the
                    # snapshot's tombstones by
                    keys_of="snapshot" if changed_keys_only or prepared is not None else None,
                    tombstones_only=not changed_keys_only,
                    bucket=None if bucket is None else bucket[0],
                    events=None if prepared is None else prepared[1],
                )
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
                if kind == "lake_count" and self.basis is not None:
                    n += self.basis.lake_count_offset  # the snapshot's keys not read
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
    has_base = False

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
        state: tuple[str, int] | None = None,
        events_location: str | None = None,
        basis: StateBasis | None = None,
    ) -> None:
        self.state = state
        self.events_location = events_location
        self.basis = basis
        self.has_base = state is not None
        self.events_table = f"tmp_events_{uuid.uuid4().hex[:12]}"
        # From the current state every time is a bigint of µs: exact, nothing ambiguous.
        self.precision_us = 1 if state is not None else 1000
        self.bytes_scanned = 0
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
        self._events_created = False

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

    def state_relation_sql(self, name: str) -> str:
        """Trino SQL for ``base`` (the current state's snapshot: one row per key, exact key
        and time) or ``lake`` (the staged rows since its watermark), each time made from a
        bigint of µs (``from_unixtime_nanos``: exact)."""
        assert self.state is not None
        table, snapshot_id = self.state
        if name == "base":
            return (
                "SELECT uuid, op, from_unixtime_nanos(time_stamp_us * 1000) AS time_stamp, "
                "coalesce(data, '') AS data, key AS k, FALSE AS stream "
                f'FROM "{self.database}"."{table}" FOR VERSION AS OF {int(snapshot_id)}'
            )
        return (
            "SELECT uuid, op, from_unixtime_nanos(time_stamp_us * 1000) AS time_stamp, data, "
            f'k, stream FROM "{self.database}"."{self.events_table}"'
        )

    def trino_sql(self, sql: str) -> str:
        """``sql`` in Trino's dialect, ``lake`` and ``snapshot`` defined over the Glue
        tables in its first common table expressions."""
        import sqlglot
        from sqlglot import exp

        from dynamo_lake.reconciliation.sql import to_trino

        tree = sqlglot.parse_one(to_trino(sql), read="trino")
        snapshot = self.snapshot_table if self.snapshot_location else None
        texts = {
            "lake": self.relation_sql(self.lake_table),
            "snapshot": self.relation_sql(snapshot),
        }
        if self.state is not None:
            texts["lake"] = self.state_relation_sql("lake")
            texts["base"] = self.state_relation_sql("base")
        ctes = [
            exp.CTE(
                this=sqlglot.parse_one(text, read="trino"),
                alias=exp.TableAlias(this=exp.to_identifier(name)),
            )
            for name, text in texts.items()
        ]
        with_ = tree.args.get("with_")
        if with_ is None:  # every comparison starts with its CTEs; keep any other query whole
            with_ = exp.With(expressions=[])
            tree.set("with_", with_)
        with_.set("expressions", [*ctes, *with_.expressions])
        return tree.sql(dialect="trino", pretty=True)

    def _ensure_snapshot_table(self) -> None:
        from dynamo_lake.lake.catalog import glue_table_input, staged_events_table_input

        if not self._created and self.snapshot_location is not None:
            table = glue_table_input(
                self.snapshot_table, self.snapshot_location, "reconciliation work (temporary)"
            )
            self.glue.create_table(DatabaseName=self.database, TableInput=table)
            self._created = True
        if not self._events_created and self.events_location is not None:
            events = staged_events_table_input(self.events_table, self.events_location)
            self.glue.create_table(DatabaseName=self.database, TableInput=events)
            self._events_created = True

    def _wait(self, query_id: str) -> None:
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            execution = self.athena.get_query_execution(QueryExecutionId=query_id)
            status = execution["QueryExecution"]["Status"]
            state = status["State"]
            if state == "SUCCEEDED":
                statistics = execution["QueryExecution"].get("Statistics", {})
                self.bytes_scanned += int(statistics.get("DataScannedInBytes", 0) or 0)
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
        for made, name in (
            (self._created, self.snapshot_table),
            (self._events_created, self.events_table),
        ):
            if not made:
                continue
            try:
                self.glue.delete_table(DatabaseName=self.database, Name=name)
            except Exception as exc:  # cleaning up; the comparison's outcome stands
                log.warning("could not drop %s.%s: %s", self.database, name, exc)
        self._created = self._events_created = False
