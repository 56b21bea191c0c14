"""Athena and DuckDB give one verdict, although Athena sees the log's times in milliseconds.

Athena reads the Parquet timestamps of a Hive-format table at millisecond precision (AWS
DMS's S3 settings say so). It is emulated here: the lake's rows with their times cut to
milliseconds (truncated, and in a second run rounded: which one Athena does is not stated),
each with its file's path as ``"$path"``, in DuckDB tables named as the Glue tables. The SQL
the Athena engine sends (Trino, with its relations over the Glue tables) is transpiled back
to DuckDB by sqlglot and run there.

Seeded random lakes are built to fool a millisecond engine: a key deleted and inserted
again within one millisecond, two updates within one, events a microsecond from the cuts
T - ε, T + ε and the edges of a changes window, duplicates. On every key the engine does not
report as ``ambiguous`` its verdict must equal DuckDB's on the exact lake; and the same SQL
without the guard (at microsecond precision, over the cut times) must get some key wrong,
or the test would prove nothing.
"""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
import sqlglot
from test_reconciliation import HOUR, SECOND, T, item, row, write, write_group

from dynamo_lake.lake.keys import KeyAttribute, render_key
from dynamo_lake.lake.query import lake_dataset
from dynamo_lake.reconciliation import sql
from dynamo_lake.reconciliation.engines import AthenaEngine, DuckDBEngine

KEYS = [KeyAttribute("pk", "S"), KeyAttribute("sk", "N")]
EPSILON = SECOND
WINDOW_START = T - 24 * HOUR
SEEDS = range(40)


def _near(rng: random.Random, moment: int) -> int:
    """A time at, or a few microseconds to a millisecond either side of, ``moment``."""
    return moment + rng.choice(
        [-1000, -999, -1, 0, 1, 499, 500, 999, 1000, rng.randint(-3000, 3000)]
    )


def _build(seed: int, root: Path) -> tuple[Path, Path, Path]:
    """A lake, a full export at T and an incremental export of the day, built to fool."""
    rng = random.Random(seed)
    lake, full, day = root / "lake", root / "full", root / "day"
    cuts = [T - EPSILON, T, T + EPSILON, WINDOW_START + EPSILON, T - EPSILON]
    lake_rows, table_now, day_rows = [], [], []
    for number in range(60):
        key = (f"k{number:02d}", number)
        base = T - 30 * HOUR + rng.randint(0, 3600) * SECOND
        versions = [item(*key, "v0")]
        lake_rows.append(row("I", base, versions[0]))
        moment = rng.choice(cuts)
        shape = rng.randrange(6)
        final: str | None = versions[0]
        if shape == 0:  # deleted and inserted again within one millisecond
            first = _near(rng, moment)
            again = item(*key, "again")
            lake_rows += [
                row("D", first, versions[0]),
                row("I", first + rng.randint(1, 900), again),
            ]
            final = again
        elif shape == 1:  # two updates within one millisecond
            first = _near(rng, moment)
            one, two = item(*key, "one"), item(*key, "two")
            lake_rows += [row("U", first, one), row("U", first + rng.randint(1, 900), two)]
            final = two
        elif shape == 2:  # a delete a microsecond from a cut
            lake_rows.append(row("D", _near(rng, moment), versions[0]))
            final = None
        elif shape == 3:  # a change the table never had, near a cut or a window edge
            lake_rows.append(row("U", _near(rng, moment), item(*key, "invented")))
        elif shape == 4:  # a duplicate of an event, within a millisecond of another
            again = _near(rng, moment)
            changed = item(*key, "changed")
            lake_rows += [row("U", again, changed), row("U", again, changed)]
            final = changed
        # shape 5: nothing happens to the key
        # What the table really had: mostly what the lake says, sometimes not (drift).
        truth = final if rng.random() < 0.7 else rng.choice([None, versions[0], item(*key, "x")])
        if truth is not None:
            table_now.append(truth)
        if shape in (0, 1, 2, 4) and rng.random() < 0.8:
            day_rows.append(
                row("D", T - 2 * HOUR, versions[0])
                if truth is None
                else row("U", T - 2 * HOUR, truth)
            )
    stream, backfill = lake_rows[: len(lake_rows) // 2], lake_rows[len(lake_rows) // 2 :]
    write(lake, stream)
    write_group(lake, "01717135200000-0a1b2c3d", backfill)
    write(full, [row("I", T, data) for data in table_now])
    write(day, day_rows)
    return lake, full, day


def _rows_with_paths(location: Path, cut: str) -> pa.Table:
    """The rows as Athena reads them: times cut to milliseconds, and each file's ``$path``."""
    tables = []
    for fragment in lake_dataset(str(location)).get_fragments():
        table = fragment.to_table(columns=["uuid", "op", "time_stamp", "data"])
        micros = table.column("time_stamp").cast(pa.int64())
        if cut == "round":
            micros = pc.add(micros, 500)
        millis = pc.multiply(pc.divide(micros, 1000), 1000)  # integer division: whole ms
        stamps = millis.cast(pa.timestamp("us", tz="UTC"))
        path = pa.array([f"s3://lake/{fragment.path}"] * table.num_rows, pa.string())
        tables.append(table.set_column(2, "time_stamp", stamps).append_column("$path", path))
    return pa.concat_tables(tables)


def _athena_findings(query: str, lake: Path, snapshot: Path, cut: str) -> dict[str, str]:
    engine = AthenaEngine(
        None,
        None,
        database="shop",
        lake_table="orders",
        key_names=[key.name for key in KEYS],
        snapshot_location="s3://work/run",
        workgroup="primary",
        output_location="s3://results/",
    )
    trino = engine.trino_sql(query)
    connection = duckdb.connect()
    try:
        connection.execute("SET TimeZone = 'UTC'")
        connection.execute("CREATE SCHEMA shop")
        for name, location in (("orders", lake), (engine.snapshot_table, snapshot)):
            rows = _rows_with_paths(location, cut)  # noqa: F841 (read by DuckDB by name)
            connection.execute(f'CREATE TABLE shop."{name}" AS SELECT * FROM rows')
        back = sqlglot.transpile(trino, read="trino", write="duckdb")[0]
        found = connection.execute(back).fetchall()
    finally:
        connection.close()
    return {render_key(k, KEYS): kind for kind, k, *_ in found if k is not None}


def _exact_findings(query: str, lake: Path, snapshot: Path) -> dict[str, str]:
    engine = DuckDBEngine(
        lake_dataset(str(lake)), lake_dataset(str(snapshot)), key_names=[k.name for k in KEYS]
    )
    try:
        return {render_key(f.k, KEYS): f.kind for f in engine.findings(query) if f.k is not None}
    finally:
        engine.close()


def _naive_findings(query: str, lake: Path, snapshot: Path, cut: str, root: Path) -> dict[str, str]:
    """The exact SQL (no guard) over the lake with its times cut: what an engine that
    ignored Athena's precision would say."""
    folders = []
    for name, location in (("naive-lake", lake), ("naive-snapshot", snapshot)):
        rows = _rows_with_paths(location, cut).drop_columns(["$path"])
        folder = root / f"{name}-{cut}"
        ds.write_dataset(
            rows, folder, format="parquet", existing_data_behavior="overwrite_or_ignore"
        )
        folders.append(folder)
    return _exact_findings(query, folders[0], folders[1])


@pytest.mark.parametrize("cut", ["truncate", "round"])
def test_the_athena_sql_agrees_with_duckdb_on_every_key_it_rules_on(
    tmp_path: Path, cut: str
) -> None:
    ruled, ambiguous, naive_wrong = 0, 0, 0
    for seed in SEEDS:
        root = tmp_path / f"seed-{seed}"
        lake, full, day = _build(seed, root)
        for method, snapshot, exact_sql, athena_sql in (
            (
                "export",
                full,
                sql.snapshot_diff_sql(T, EPSILON),
                sql.snapshot_diff_sql(T, EPSILON, precision=1000),
            ),
            (
                "changes",
                day,
                sql.changes_diff_sql(T, EPSILON, WINDOW_START),
                sql.changes_diff_sql(T, EPSILON, WINDOW_START, precision=1000),
            ),
        ):
            exact = _exact_findings(exact_sql, lake, snapshot)
            athena = _athena_findings(athena_sql, lake, snapshot, cut)
            naive = _naive_findings(exact_sql, lake, snapshot, cut, root / method)
            for key in set(exact) | set(athena) | set(naive):
                naive_wrong += naive.get(key) != exact.get(key)
                if athena.get(key) == "ambiguous":
                    ambiguous += 1
                    continue
                ruled += 1
                assert athena.get(key) == exact.get(key), (
                    f"seed {seed}, {method}, {cut}: key {key}: Athena says {athena.get(key)}, "
                    f"DuckDB on the exact lake {exact.get(key)}"
                )
    assert ruled > 100 and ambiguous > 10
    assert naive_wrong > 0, "the lakes built to fool a millisecond engine fooled nothing"


def test_from_the_current_state_athena_rules_on_every_key_exactly(tmp_path: Path) -> None:
    """With a current state, Athena reads the Iceberg snapshot and the rows since its
    watermark staged by this project's reader, every time a bigint of µs: on the lakes built
    to fool a millisecond engine it rules on every key, as DuckDB does on the exact log, and
    never reads the Hive-format log table (it does not exist here)."""
    from dynamo_lake.reconciliation.state_basis import choose_basis, stage_events
    from dynamo_lake.state.current import (
        StateTarget,
        merge_state,
        open_catalog,
        open_state_table,
        read_state,
    )

    ruled = 0
    for seed in range(12):
        root = tmp_path / f"seed-{seed}"
        lake, full, day = _build(seed, root)
        target = StateTarget(str(lake), "shop", "orders", ("pk", "sk"), 4)
        watermark = T - 26 * HOUR  # after the keys' inserts, before the day's window
        catalog = open_catalog(str(lake))
        merge_state(target, watermark, catalog=catalog)
        basis = choose_basis(
            str(lake), "shop", "orders", bound=WINDOW_START - EPSILON - 1, s3=None, catalog=catalog
        )
        assert basis is not None and basis.snapshot.watermark_us == watermark
        stage_events(basis, str(root / "events"), ["pk", "sk"], None)
        engine = AthenaEngine(
            None,
            None,
            database="shop",
            lake_table="orders",
            key_names=["pk", "sk"],
            snapshot_location="s3://work/run",
            workgroup="primary",
            output_location="s3://results/",
            state=("orders_current", basis.snapshot.snapshot_id),
            events_location="s3://work/run-events",
        )
        assert engine.precision_us == 1
        state_rows = read_state(open_state_table(catalog, target), basis.snapshot.snapshot_id)
        for method, snapshot, query in (
            ("export", full, sql.snapshot_diff_sql(T, EPSILON, 1, base=engine.has_base)),
            (
                "changes",
                day,
                sql.changes_diff_sql(T, EPSILON, WINDOW_START, 1, base=engine.has_base),
            ),
        ):
            tree = sqlglot.parse_one(engine.trino_sql(query), read="trino")
            assert "FOR VERSION AS OF" in tree.sql(dialect="trino")
            for table in tree.find_all(sqlglot.exp.Table):
                table.set("version", None)  # DuckDB has no time travel: one snapshot here
            connection = duckdb.connect()
            try:
                connection.execute("SET TimeZone = 'UTC'")
                connection.execute("CREATE SCHEMA shop")
                connection.execute(
                    "CREATE MACRO from_unixtime_nanos(n) AS make_timestamptz(n // 1000)"
                )
                connection.register("state_rows", state_rows)
                connection.execute("CREATE TABLE shop.orders_current AS SELECT * FROM state_rows")
                connection.execute(
                    f"CREATE TABLE shop.{engine.events_table} AS SELECT * FROM "
                    f"read_parquet('{root / 'events'}/*.parquet')"
                )
                rows = _rows_with_paths(snapshot, "truncate")  # noqa: F841 (read by name)
                connection.execute(
                    f"CREATE TABLE shop.{engine.snapshot_table} AS SELECT * FROM rows"
                )
                back = tree.sql(dialect="duckdb")
                found = {
                    render_key(k, KEYS): kind
                    for kind, k, *_ in connection.execute(back).fetchall()
                    if k is not None
                }
            finally:
                connection.close()
            exact_sql = (
                sql.snapshot_diff_sql(T, EPSILON)
                if method == "export"
                else sql.changes_diff_sql(T, EPSILON, WINDOW_START)
            )
            exact = _exact_findings(exact_sql, lake, snapshot)
            assert "ambiguous" not in found.values()
            assert found == exact, f"seed {seed}, {method}: {found} != {exact}"
            ruled += len(exact)
    assert ruled > 50
