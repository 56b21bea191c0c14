"""Reading the lake back: the one definition of latest state, and small views for people.

The lake table is read as a pyarrow dataset (local folders and S3 alike, with the
``year``/``month``/``day`` partition values kept as strings) and queried with DuckDB. In AWS
the same SQL runs in Athena (the reconciliation DAG transpiles it); locally DuckDB runs it.

Rows are compared by their exact key (:mod:`dynamo_lake.lake.keys`): :class:`LakeDatabase`
copies a lake into a DuckDB table with each row's key ``k`` and ``stream`` (whether the
stream wrote its file, rather than a backfill or a repair), so the SQL never extracts a
key itself and no number goes through a double.

Latest state as of T: for each primary key, the row with the greatest ``time_stamp`` <= T;
ties (two events in the same microsecond) go to ``D`` over ``U`` over ``I``, then to the
greater ``uuid``, so every engine picks the same row. The item exists iff that row is not
``D``. Expressed once, as SQL (:func:`latest_of_sql`): one aggregation per key.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from dynamo_lake import contract
from dynamo_lake.cdc import micros_to_datetime
from dynamo_lake.errors import LakeReadError
from dynamo_lake.lake.keys import key_array
from dynamo_lake.lake.writer import CDC_SCHEMA
from dynamo_lake.storage import S3Options, resolve

__all__ = [
    "KEYED_SCHEMA",
    "LATEST_ORDER",
    "OP_RANK",
    "LakeDatabase",
    "keyed_batches",
    "keyed_rows_sql",
    "lake_dataset",
    "latest_of_sql",
    "latest_rows_sql",
    "latest_state",
    "latest_state_sql",
    "live_count_sql",
    "query_lake",
    "time_literal",
]

#: The contract's op ranks (the tie rule) as SQL. An unknown op ranks 0, never NULL: Trino
#: refuses to compare ROW values with a NULL field.
OP_RANK = (
    "CASE op "
    + " ".join(f"WHEN '{op}' THEN {rank}" for op, rank in sorted(contract.OP_RANK.items()))
    + " ELSE 0 END"
)
#: The contract's latest-state order as SQL over ``time_stamp``, an op rank ``rnk`` and
#: ``uuid``: a key's latest row is the one greatest by it.
LATEST_ORDER = "(time_stamp, rnk, uuid)"
_PARTITIONING = ds.partitioning(
    pa.schema([(key, pa.string()) for key in contract.PARTITION_KEYS]), flavor="hive"
)
#: A lake table as the comparisons read it: the contract's columns, each row's exact key
#: (NULL when its data lacks a key attribute) and whether the stream wrote it.
KEYED_SCHEMA = pa.schema(
    [*CDC_SCHEMA, pa.field("k", pa.string()), pa.field("stream", pa.bool_(), nullable=False)]
)
_DUCKDB_TYPES = {"string": "VARCHAR", "timestamp": "TIMESTAMPTZ"}


def lake_dataset(lake_uri: str, s3: S3Options | None = None) -> ds.Dataset:
    """The lake table's rows (``_``-prefixed folders, i.e. staging and errors, excluded).

    A table that has no folder yet (never backfilled, nothing streamed) is empty."""
    location = resolve(lake_uri, s3)
    if not location.exists():
        return ds.dataset(CDC_SCHEMA.empty_table())
    return ds.dataset(
        location.path,
        filesystem=location.filesystem,
        format="parquet",
        partitioning=_PARTITIONING,
        schema=pa.schema(
            [*CDC_SCHEMA, *(pa.field(key, pa.string()) for key in contract.PARTITION_KEYS)]
        ),
        ignore_prefixes=["_", "."],
    )


def keyed_batches(
    dataset: ds.Dataset, key_names: Sequence[str], batch_rows: int = 65_536
) -> Iterator[pa.RecordBatch]:
    """The dataset's rows in :data:`KEYED_SCHEMA`, file by file, with little read-ahead
    (pyarrow's defaults hold over 2 GB of rows from S3 while a consumer works on the first).

    Keys are computed on two threads while the next batches are read (the compiled key scan
    and Parquet decoding run without the GIL), at most three batches ahead. A file that is
    not the contract's Parquet (a README, an empty or truncated file, other columns) raises
    :class:`LakeReadError` naming it.
    """
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="lake-keys") as pool:
        pending: deque[Future[pa.RecordBatch]] = deque()
        for batch, stream in _lake_batches(dataset, batch_rows):
            pending.append(pool.submit(_keyed, batch, stream, key_names))
            if len(pending) > 2:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _keyed(batch: pa.RecordBatch, stream: bool, key_names: Sequence[str]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [
            *batch.columns,
            key_array(batch.column("data"), key_names),
            pa.array([stream] * batch.num_rows, pa.bool_()),
        ],
        schema=KEYED_SCHEMA,
    )


def _lake_batches(dataset: ds.Dataset, batch_rows: int) -> Iterator[tuple[pa.RecordBatch, bool]]:
    """Each file's rows, with whether the stream wrote it."""
    columns = list(contract.COLUMN_NAMES)
    for fragment in dataset.get_fragments():
        path = getattr(fragment, "path", "")
        stream = bool(path) and not contract.written_by_writer(path.rsplit("/", 1)[-1])
        try:
            if path:  # a file of other columns would read as NULLs: name it instead
                present = set(fragment.physical_schema.names)
                absent = [name for name in columns if name not in present]
                if absent:
                    raise pa.ArrowInvalid(f"it has no column {', '.join(absent)}")
            for batch in fragment.to_batches(
                schema=dataset.schema,
                columns=columns,
                batch_size=batch_rows,
                batch_readahead=2,
                fragment_readahead=1,
            ):
                yield batch, stream
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            reason = " ".join(str(exc).split())[:300]
            raise LakeReadError(
                f"{path or 'a lake file'}: not a Parquet file of the lake's columns ({reason}); "
                "every file in the table's partitions is read as data (by Athena too): move "
                "it out of the lake table's folder"
            ) from None


class LakeDatabase:
    """A DuckDB connection holding lake tables in :data:`KEYED_SCHEMA`, copied in batches.

    Copied, DuckDB's buffer manager holds the rows: past ``memory_limit_mb`` it spills to
    ``spill_folder`` (a temporary folder by default). Queried straight from an Arrow scan,
    DuckDB kept the scanned buffers outside its limit and its memory grew with the table
    (4.9 GB at 5M items against a 1 GB limit).
    """

    #: The name under which a statement of :meth:`add_keyed` or :meth:`copy_keyed` reads the
    #: batches it is given.
    INCOMING = "incoming_rows"

    def __init__(self, *, memory_limit_mb: int = 1024, spill_folder: str | None = None) -> None:
        self._spill = None if spill_folder else tempfile.TemporaryDirectory(prefix="lake-db-")
        self.connection = duckdb.connect()
        self.connection.execute("SET TimeZone = 'UTC'")
        self.connection.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
        self.connection.execute(
            f"SET temp_directory = '{spill_folder or self._spill.name}'"  # type: ignore[union-attr]
        )
        self.connection.execute("SET preserve_insertion_order = false")
        self.connection.execute("SET enable_progress_bar = false")  # bars in a task log: noise

    def add(
        self,
        name: str,
        dataset: ds.Dataset,
        key_names: Sequence[str],
        *,
        where: str | None = None,
        replace: bool = True,
    ) -> int:
        """Copy ``dataset`` into the table ``name`` (its rows meeting ``where``, an SQL
        condition on the keyed columns); returns the rows copied.

        DuckDB pulls the keyed batches through one Arrow stream (an INSERT per batch cost
        four times the whole copy); an error raised while reading a file is re-raised as
        itself once DuckDB has stopped. ``replace`` False adds to the table's rows.
        """
        return self.add_keyed(name, keyed_batches(dataset, key_names), where=where, replace=replace)

    def add_keyed(
        self,
        name: str,
        batches: Iterator[pa.RecordBatch],
        *,
        where: str | None = None,
        replace: bool = True,
    ) -> int:
        """Copy batches already in :data:`KEYED_SCHEMA` into ``name`` (see :meth:`add`)."""
        columns = [
            *(f"{c.name} {_DUCKDB_TYPES[c.kind]}" for c in contract.COLUMNS),
            "k VARCHAR",
            "stream BOOLEAN",
        ]
        verb = "CREATE OR REPLACE TEMP TABLE" if replace else "CREATE TEMP TABLE IF NOT EXISTS"
        self.connection.execute(f"{verb} {name} ({', '.join(columns)})")
        return self._pull(
            batches, f"INSERT INTO {name} SELECT * FROM {self.INCOMING} WHERE {where or 'TRUE'}"
        )

    def copy_keyed(self, batches: Iterator[pa.RecordBatch], select: str, target: str) -> int:
        """``COPY (select) TO target`` over batches in :data:`KEYED_SCHEMA` (``select`` reads
        them as :attr:`INCOMING`), streamed: no table holds them; returns the rows written."""
        return self._pull(batches, f"COPY ({select}) TO {target}")

    def _pull(self, batches: Iterator[pa.RecordBatch], statement: str) -> int:
        """Run ``statement``, which reads ``batches`` as one Arrow stream named
        :attr:`INCOMING`; an error raised while reading them is re-raised as itself once
        DuckDB has stopped."""
        failure: list[BaseException] = []

        def guarded() -> Iterator[pa.RecordBatch]:
            try:
                yield from batches
            except BaseException as exc:
                failure.append(exc)
                raise

        reader = pa.RecordBatchReader.from_batches(KEYED_SCHEMA, guarded())
        self.connection.register(self.INCOMING, reader)
        try:
            ((rows,),) = self.connection.execute(statement).fetchall()
        except duckdb.Error:
            if failure:
                raise failure[0] from None
            raise
        finally:
            self.connection.unregister(self.INCOMING)
        return int(rows)

    def close(self) -> None:
        self.connection.close()
        if self._spill is not None:
            self._spill.cleanup()


def time_literal(micros: int) -> str:
    """SQL for a moment (µs since the epoch, UTC) that compares exactly with ``time_stamp``."""
    moment = micros_to_datetime(micros)
    return f"CAST('{moment:%Y-%m-%d %H:%M:%S.%f}+00:00' AS TIMESTAMPTZ)"


def keyed_rows_sql(source: str, cut: str | None = None) -> str:
    """SQL: ``source``'s keyed rows (see :data:`KEYED_SCHEMA`) with their op rank ``rnk``;
    rows without a key are left out (the comparisons count them apart)."""
    where = f" AND {cut}" if cut else ""
    return (
        f"SELECT k, op, data, time_stamp, uuid, stream, {OP_RANK} AS rnk FROM {source} "
        f"WHERE k IS NOT NULL{where}"
    )


def latest_of_sql(keyed: str, cut: str = "TRUE", *, with_uuid: bool = False) -> str:
    """SQL: per key of the keyed rows ``keyed`` (see :func:`keyed_rows_sql`) with
    ``time_stamp`` meeting ``cut``, its latest row as ``k, op, data, time_stamp, uuid``
    (``uuid`` NULL unless ``with_uuid``: carrying it costs a third more over a whole lake).

    The latest row is the greatest ``(time_stamp, op rank, uuid)``: the contract's tie rule.
    One aggregation (``arg_max`` of ``op || data`` by that tuple), no window over the lake;
    with the uuid, padded to its 36 characters so that ``data`` starts at a fixed place.
    """
    if not with_uuid:
        return f"""
        SELECT k, substr(latest, 1, 1) AS op, substr(latest, 2) AS data, time_stamp,
            CAST(NULL AS VARCHAR) AS uuid
        FROM (
            SELECT k, arg_max(op || data, {LATEST_ORDER}) AS latest,
                max(time_stamp) AS time_stamp
            FROM {keyed} WHERE {cut} GROUP BY k
        ) latest_rows
    """
    return f"""
        SELECT k, substr(latest, 1, 1) AS op, substr(latest, 38) AS data, time_stamp,
            rtrim(substr(latest, 2, 36)) AS uuid
        FROM (
            SELECT k, arg_max(op || rpad(uuid, 36, ' ') || data, {LATEST_ORDER})
                    AS latest,
                max(time_stamp) AS time_stamp
            FROM {keyed} WHERE {cut} GROUP BY k
        ) latest_rows
    """


def latest_rows_sql(source: str, cut: str | None = None) -> str:
    """SQL: per key, the row that is its latest state (columns ``k, op, data, time_stamp,
    uuid``). ``cut`` is an SQL condition on ``time_stamp`` (``time_stamp <= <literal>``) or
    ``None``. Written once for DuckDB; the Athena engine transpiles it."""
    return latest_of_sql(f"({keyed_rows_sql(source, cut)}) keyed")


def latest_state_sql(source: str, as_of: int | None = None) -> str:
    """SQL: key, op and data of every item live in ``source`` at ``as_of`` µs (or at the
    end)."""
    cut = None if as_of is None else f"time_stamp <= {time_literal(as_of)}"
    return f"SELECT k, op, data FROM ({latest_rows_sql(source, cut)}) latest WHERE op <> 'D'"


def live_count_sql(source: str, as_of: int | None = None) -> str:
    """SQL: how many items live in ``source`` at ``as_of`` µs (or at the end): the latest
    row per key by the tie rule, without carrying ``data``."""
    cut = None if as_of is None else f"time_stamp <= {time_literal(as_of)}"
    return f"""
        SELECT count(*) FROM (
            SELECT arg_max(op, {LATEST_ORDER}) AS op
            FROM ({keyed_rows_sql(source, cut)}) keyed GROUP BY k
        ) latest WHERE op <> 'D'
    """


def query_lake(
    lake_uri: str, sql: str, s3: S3Options | None = None, params: list[Any] | None = None
) -> list[tuple[Any, ...]]:
    """Run DuckDB ``sql`` in which the table ``rows`` is the lake table."""
    rows = lake_dataset(lake_uri, s3)
    connection = duckdb.connect()
    try:
        connection.execute("SET TimeZone = 'UTC'")
        connection.register("rows", rows)
        return connection.execute(sql, params or []).fetchall()
    finally:
        connection.close()


def latest_state(
    lake_uri: str, key_names: list[str], *, as_of: int | None = None, s3: S3Options | None = None
) -> set[str]:
    """The canonical ``data`` of every item the lake says exists (at ``as_of`` µs, or now)."""
    database = LakeDatabase()
    try:
        database.add("lake", lake_dataset(lake_uri, s3), key_names)
        rows = database.connection.sql(f"SELECT data FROM ({latest_state_sql('lake', as_of)})")
        return {data for (data,) in rows.fetchall()}
    finally:
        database.close()
