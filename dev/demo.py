"""`make demo`: a sample export in AWS's layout, converted into a local lake, shown by DuckDB.

Writes under ``var/demo/`` (a directory standing for the export bucket, and the lake), runs
the same conversion the ``dynamo-lake convert`` command runs, and prints what landed: rows
by operation and partition, and one item's history from the full export through an
incremental export.
"""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dynamo_lake.convert import convert_export
from sample_export import write_sample_export

ROOT = Path(__file__).resolve().parent.parent / "var" / "demo"
EXPORT_TIME = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
WINDOW = (datetime(2024, 6, 1, 12, 0, tzinfo=UTC), datetime(2024, 6, 2, 12, 0, tzinfo=UTC))


def main() -> int:
    shutil.rmtree(ROOT, ignore_errors=True)
    bucket = ROOT / "export-bucket"
    lake = ROOT / "lake-bucket" / "dynamo-cdc" / "shop" / "orders"
    full = write_sample_export(bucket, items=20_000, files=4, export_time=EXPORT_TIME)
    incremental = write_sample_export(
        bucket, kind="incremental", items=3_000, files=2, window=WINDOW, export_time=WINDOW[1]
    )
    print(f"sample exports written under {bucket}")
    for summary in (full, incremental):
        result = convert_export(str(summary), str(lake))
        print("converted:", orjson.dumps(result.summary()).decode())

    rows = (
        f"read_parquet('{lake}/year=*/month=*/day=*/*.parquet', hive_partitioning = true, "
        "hive_types = {'year': varchar, 'month': varchar, 'day': varchar})"
    )
    print("\nrows by operation and partition:")
    duckdb.sql(
        f"select year, month, day, op, count(*) as rows from {rows} group by all order by all"
    ).show()
    (key,) = duckdb.sql(
        f"""select data ->> '$.pk', data ->> '$.sk' from {rows}
            group by all order by count(*) desc, 1, 2 limit 1"""
    ).fetchall()
    print(f"history of the item pk={key[0]!r}, sk={key[1]!r}:")
    duckdb.sql(
        f"""select time_stamp, op, uuid, left(data, 90) as data from {rows}
            where data ->> '$.pk' = ? and data ->> '$.sk' = ? order by time_stamp""",
        params=[key[0], key[1]],
    ).show(max_width=200)
    print(f"lake table: {lake}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
