"""The installed ``dynamo-lake`` console command, run as a real process: local exports on
disk, and an export in the local AWS stack's S3 converted into a lake in the same S3."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from local_aws.server import LocalAwsControl

CLI = Path(sys.executable).parent / "dynamo-lake"
ExportFactory = Any


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def _visible_parquet(lake: Path) -> list[Path]:
    return sorted(lake.glob("year=*/month=*/day=*/*.parquet"))


def test_the_console_command_is_installed() -> None:
    assert CLI.is_file(), f"{CLI} missing: is the project installed in the virtualenv?"
    assert os.access(CLI, os.X_OK)


def test_convert_prints_one_json_line_and_writes_the_lake(
    make_export: ExportFactory, tmp_path: Path
) -> None:
    summary = make_export(items=120, files=2)
    lake = tmp_path / "lake" / "shop" / "orders"

    result = _run("convert", str(summary), "--lake", str(lake))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    report = orjson.loads(lines[0])
    assert report["rows"] == 120
    assert report["files"] >= 1
    assert report["partitions"]
    assert isinstance(report["seconds"], int | float)
    assert report["export_type"] == "FULL_EXPORT"
    files = _visible_parquet(lake)
    assert len(files) == report["files"]
    assert sum(pq.ParquetFile(path).metadata.num_rows for path in files) == 120


def test_missing_summary_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "exports" / "AWSDynamoDB" / "01234" / "manifest-summary.json"

    result = _run("convert", str(missing), "--lake", str(tmp_path / "lake"))

    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dynamo-lake: ")
    assert "manifest-summary.json" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "lake").exists() or not _visible_parquet(tmp_path / "lake")


def test_usage_errors_exit_2_without_a_traceback(tmp_path: Path) -> None:
    result = _run("convert", str(tmp_path / "s.json"), "--lake", str(tmp_path), "--workers", "0")

    assert result.returncode == 2
    assert "--workers must be >= 1" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("compression", ["snappy", "gzip"])
def test_compression_option_is_honoured(
    make_export: ExportFactory, tmp_path: Path, compression: str
) -> None:
    summary = make_export(items=60, files=1)
    lake = tmp_path / "lake"

    result = _run("convert", str(summary), "--lake", str(lake), "--compression", compression)

    assert result.returncode == 0, result.stderr
    files = _visible_parquet(lake)
    assert files
    for path in files:
        metadata = pq.ParquetFile(path).metadata
        codecs = {
            metadata.row_group(g).column(c).compression
            for g in range(metadata.num_row_groups)
            for c in range(metadata.num_columns)
        }
        assert codecs == {compression.upper()}, (path, codecs)


def test_default_compression_is_zstd(make_export: ExportFactory, tmp_path: Path) -> None:
    summary = make_export(items=30, files=1)
    lake = tmp_path / "lake"

    assert _run("convert", str(summary), "--lake", str(lake)).returncode == 0

    metadata = pq.ParquetFile(_visible_parquet(lake)[0]).metadata
    assert metadata.row_group(0).column(0).compression == "ZSTD"


def test_s3_export_to_s3_lake_end_to_end(
    local_aws: LocalAwsControl, make_export: ExportFactory, bucket_root: Path
) -> None:
    s3 = local_aws.client("s3", max_attempts=3)
    exports_bucket = f"cli-exports-{uuid.uuid4().hex[:8]}"
    lake_bucket = f"cli-lake-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=exports_bucket)
    s3.create_bucket(Bucket=lake_bucket)
    summary = make_export(items=150, files=3, empty_files=1)
    for path in sorted(p for p in bucket_root.rglob("*") if p.is_file()):
        s3.put_object(
            Bucket=exports_bucket,
            Key=path.relative_to(bucket_root).as_posix(),
            Body=path.read_bytes(),
        )
    summary_key = summary.relative_to(bucket_root).as_posix()

    result = _run(
        "convert",
        f"s3://{exports_bucket}/{summary_key}",
        "--lake",
        f"s3://{lake_bucket}/dynamo-cdc/db/t",
        env=local_aws.environment(),
    )

    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert report["rows"] == 150
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=lake_bucket)
        for item in page.get("Contents", [])
    ]
    visible = [
        key for key in keys if key.endswith(".parquet") and key.startswith("dynamo-cdc/db/t/year=")
    ]
    assert len(visible) == report["files"], keys
    rows = 0
    for key in visible:
        body = s3.get_object(Bucket=lake_bucket, Key=key)["Body"].read()
        table = pq.read_table(io.BytesIO(body))
        assert table.column_names[:4] == ["uuid", "op", "time_stamp", "data"]
        assert set(table.column("op").to_pylist()) == {"I"}
        rows += table.num_rows
    assert rows == 150
    # Nothing left in staging once the export is published.
    assert not [key for key in keys if "/_staging/" in key and key.endswith(".parquet")]
