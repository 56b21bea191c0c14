"""A conversion killed mid-write (SIGKILL, no cleanup) leaves nothing readers count."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from dynamo_lake.lake.conversion import convert_export

GLOB = "year=*/month=*/day=*/*.parquet"


def test_sigkill_during_conversion_leaves_no_visible_rows(make_export, tmp_path: Path) -> None:
    summary = make_export(items=60_000, files=2)
    lake = tmp_path / "lake"
    script = (
        "import sys; from dynamo_lake.lake.conversion import convert_export; "
        "from dynamo_lake.lake.writer import WriterSettings; "
        "convert_export(sys.argv[1], sys.argv[2], "
        "settings=WriterSettings(row_group_rows=2_000, max_rows_per_file=10_000))"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(summary), str(lake)])
    try:
        deadline = time.monotonic() + 60
        # Kill it once a staged Parquet file is complete, i.e. in the middle of the work.
        while not list((lake / "_staging").rglob("*.parquet")):
            assert process.poll() is None, "the conversion ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert list((lake / "_staging").rglob("*.parquet")), "the kill came after the work"
    assert list(lake.glob(GLOB)) == []  # readers' view: nothing

    # Running it again finishes the job: every item once, no leftovers.
    result = convert_export(str(summary), str(lake))
    assert result.rows == 60_000
    (count,) = duckdb.sql(
        f"select count(*), count(distinct uuid) = count(*) from read_parquet('{lake}/{GLOB}')"
    ).fetchall()
    assert count == (60_000, True)
    assert not list((lake / "_staging").rglob("*.parquet"))
