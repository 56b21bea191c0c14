"""Export reader + lake writer end to end on real gzip files, real Parquet and DuckDB."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import pyarrow.parquet as pq
import pytest

from dynamo_lake.errors import ExportFormatError, ExportIntegrityError, LakeWriteError
from dynamo_lake.exports.manifest import read_manifest, read_rows
from dynamo_lake.lake.conversion import convert_export
from dynamo_lake.lake.writer import CDC_SCHEMA, LakeTable, WriterSettings, read_published
from dynamo_lake.storage import resolve

GLOB = "year=*/month=*/day=*/*.parquet"


def _lake_rows(lake: Path) -> list[tuple[str, str, datetime, str, str]]:
    return duckdb.sql(
        f"""select uuid, op, time_stamp, data, year || '-' || month || '-' || day
            from read_parquet('{lake}/{GLOB}', hive_partitioning = true,
                              hive_types = {{'year': varchar, 'month': varchar, 'day': varchar}})
            order by uuid"""
    ).fetchall()


def _visible_files(lake: Path) -> list[Path]:
    return sorted(lake.glob(GLOB))


def _source_lines(summary: Path) -> list[dict[str, object]]:
    manifest = read_manifest(str(summary))
    lines = []
    for data_file in manifest.data_files:
        path = Path(manifest.data_file_location(data_file).path)
        lines += [orjson.loads(x) for x in gzip.decompress(path.read_bytes()).splitlines() if x]
    return lines


def test_full_export_becomes_insert_rows_at_the_export_time(make_export, tmp_path: Path) -> None:
    summary = make_export(items=500, files=3, empty_files=1)
    lake = tmp_path / "lake" / "db" / "orders"
    result = convert_export(str(summary), str(lake))
    assert (result.rows, result.data_files, result.files, result.partitions) == (500, 4, 3, 1)
    rows = _lake_rows(lake)
    assert len(rows) == 500
    assert {row[1] for row in rows} == {"I"}
    assert {row[2] for row in rows} == {datetime(2024, 6, 1, 12, 0, tzinfo=UTC)}
    assert {row[4] for row in rows} == {"2024-06-01"}
    assert len({row[0] for row in rows}) == 500
    # Every item's data is the canonical decoding of the exported line, byte for byte.
    from dynamo_lake.codec import item_to_data

    expected = sorted(item_to_data(line["Item"]) for line in _source_lines(summary))
    assert sorted(row[3] for row in rows) == expected


def test_parquet_schema_and_compression(make_export, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    convert_export(str(make_export(items=50, files=1)), str(lake), compression="gzip")
    (only,) = _visible_files(lake)
    parquet = pq.ParquetFile(only)
    assert parquet.schema_arrow.equals(CDC_SCHEMA)
    assert parquet.metadata.row_group(0).column(3).compression == "GZIP"
    convert_export(str(make_export(items=50, files=1, seed=1)), str(tmp_path / "z"))
    (zstd,) = _visible_files(tmp_path / "z")
    assert pq.ParquetFile(zstd).metadata.row_group(0).column(3).compression == "ZSTD"


def test_incremental_export_rows_follow_write_times_across_days(make_export, tmp_path) -> None:
    window = (datetime(2024, 6, 1, 23, 0, tzinfo=UTC), datetime(2024, 6, 2, 1, 0, tzinfo=UTC))
    summary = make_export(kind="incremental", items=400, window=window)
    lake = tmp_path / "lake"
    result = convert_export(str(summary), str(lake))
    rows = _lake_rows(lake)
    assert result.rows == len(rows) == 400
    assert result.partitions == 2
    assert {row[1] for row in rows} == {"I", "U", "D"}
    for _, _, stamp, _, partition in rows:
        assert window[0] <= stamp < window[1]
        assert partition == stamp.strftime("%Y-%m-%d")
    expected_ops = []
    for line in _source_lines(summary):
        expected_ops.append("D" if "NewImage" not in line else ("U" if "OldImage" in line else "I"))
    assert sorted(expected_ops) == sorted(row[1] for row in rows)


def test_rerun_replaces_and_never_duplicates(make_export, tmp_path: Path) -> None:
    summary = make_export(items=300)
    lake = tmp_path / "lake"
    convert_export(str(summary), str(lake))
    first = {path: path.read_bytes() for path in _visible_files(lake)}
    convert_export(str(summary), str(lake))
    second = {path: path.read_bytes() for path in _visible_files(lake)}
    assert first == second
    assert len(_lake_rows(lake)) == 300


def test_rerun_with_smaller_files_removes_the_earlier_files(make_export, tmp_path) -> None:
    summary = make_export(items=300, files=1)
    lake = tmp_path / "lake"
    small = WriterSettings(row_group_rows=50, max_rows_per_file=100)
    convert_export(str(summary), str(lake), settings=small)
    assert len(_visible_files(lake)) == 3
    convert_export(str(summary), str(lake))
    assert len(_visible_files(lake)) == 1
    assert len(_lake_rows(lake)) == 300


def test_files_roll_over_and_row_groups_are_bounded(make_export, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    settings = WriterSettings(row_group_rows=40, max_rows_per_file=100)
    result = convert_export(str(make_export(items=250, files=1)), str(lake), settings=settings)
    files = _visible_files(lake)
    assert result.files == len(files) == 3
    sizes = [pq.ParquetFile(path).metadata.num_rows for path in files]
    assert sorted(sizes) == [50, 100, 100]
    for path in files:
        metadata = pq.ParquetFile(path).metadata
        assert all(metadata.row_group(i).num_rows <= 40 for i in range(metadata.num_row_groups))
    # The record's digest of each file: sha256 of its uuids in order, one per line (an
    # earlier publish's files are compared by it, so its definition must not drift).
    published = read_published(LakeTable(resolve(str(lake))), result.export_id)
    assert published is not None
    for item in published.files:
        uuids = pq.read_table(lake / item.path).column("uuid").to_pylist()
        assert item.digest == hashlib.sha256("".join(f"{u}\n" for u in uuids).encode()).hexdigest()


def test_two_workers_give_the_same_files(make_export, tmp_path: Path) -> None:
    summary = make_export(items=600, files=4)
    convert_export(str(summary), str(tmp_path / "one"))
    convert_export(str(summary), str(tmp_path / "two"), workers=2)
    one = {p.name: p.read_bytes() for p in _visible_files(tmp_path / "one")}
    two = {p.name: p.read_bytes() for p in _visible_files(tmp_path / "two")}
    assert one == two


def test_unknown_compression_is_refused() -> None:
    with pytest.raises(LakeWriteError, match="lz4"):
        WriterSettings(compression="lz4")  # type: ignore[arg-type]


# --- corrupt input: a clear error, nothing visible ------------------------------------


def _first_data_file(summary: Path) -> Path:
    manifest = read_manifest(str(summary))
    return Path(manifest.data_file_location(manifest.data_files[0]).path)


def _rewrite_data_file(summary: Path, lines: list[bytes], fix_manifest: bool) -> Path:
    """Replace the first data file's content; optionally keep the manifest consistent."""
    path = _first_data_file(summary)
    body = gzip.compress(b"\n".join(lines) + b"\n", mtime=0)
    path.write_bytes(body)
    if fix_manifest:
        files = summary.parent / "manifest-files.json"
        entries = [json.loads(x) for x in files.read_text().splitlines()]
        entries[0]["md5Checksum"] = base64.b64encode(hashlib.md5(body).digest()).decode()
        payload = "".join(json.dumps(entry) + "\n" for entry in entries).encode()
        files.write_bytes(payload)
        md5 = base64.b64encode(hashlib.md5(payload).digest())
        (summary.parent / "manifest-files.md5").write_bytes(md5)
    return path


def _original_lines(summary: Path) -> list[bytes]:
    return gzip.decompress(_first_data_file(summary).read_bytes()).splitlines()


def test_md5_mismatch_names_the_file_and_publishes_nothing(make_export, tmp_path) -> None:
    summary = make_export(items=90)
    lines = _original_lines(summary)
    path = _rewrite_data_file(summary, lines, fix_manifest=False)
    lake = tmp_path / "lake"
    with pytest.raises(ExportIntegrityError, match="MD5 mismatch") as caught:
        convert_export(str(summary), str(lake))
    assert caught.value.location == str(path)
    assert _visible_files(lake) == []
    assert not list(lake.rglob("*.parquet"))


def test_truncated_gzip_is_an_error(make_export, tmp_path: Path) -> None:
    summary = make_export(items=90)
    path = _first_data_file(summary)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ExportIntegrityError, match="truncated|corrupt|MD5") as caught:
        convert_export(str(summary), str(tmp_path / "lake"))
    assert str(path) in str(caught.value)
    assert not list((tmp_path / "lake").rglob("*.parquet"))


def test_truncated_gzip_is_detected_before_the_md5(make_export) -> None:
    summary = make_export(items=90)
    manifest = read_manifest(str(summary))
    path = _first_data_file(summary)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ExportIntegrityError, match="truncated"):
        for _ in read_rows(manifest, manifest.data_files[0]):
            pass


def test_malformed_line_names_file_and_line(make_export, tmp_path: Path) -> None:
    summary = make_export(items=90)
    lines = _original_lines(summary)
    lines[4] = b'{"Item": {"pk": {"S": "x"}, "n": {"N": "not-a-number"}}}'
    path = _rewrite_data_file(summary, lines, fix_manifest=True)
    manifest = read_manifest(str(summary))
    with pytest.raises(ExportIntegrityError) as caught:
        for _ in read_rows(manifest, manifest.data_files[0]):
            pass
    assert caught.value.location == f"{path}:5"
    assert "attribute at Item.n" in str(caught.value)


def test_bad_lines_are_diverted_and_fail_the_export_unless_allowed(make_export, tmp_path) -> None:
    summary = make_export(items=90)
    lines = _original_lines(summary)
    lines[2] = b'{"Item": {"pk": {"S": "x"'
    _rewrite_data_file(summary, lines, fix_manifest=True)
    lake = tmp_path / "lake"
    with pytest.raises(ExportIntegrityError, match=r"1 lines could not be read.*:3: malformed"):
        convert_export(str(summary), str(lake))
    assert _visible_files(lake) == []
    (errors,) = list((lake / "_errors").rglob("*.jsonl"))
    record = json.loads(errors.read_text())
    assert record["line"] == 3
    assert base64.b64decode(record["rawData"]) == lines[2]
    result = convert_export(str(summary), str(lake), max_bad_lines=1)
    assert (result.rows, result.bad_lines) == (89, 1)
    assert len(_lake_rows(lake)) == 89


def test_item_count_mismatch_is_an_error(make_export, tmp_path: Path) -> None:
    summary = make_export(items=90)
    lines = _original_lines(summary)
    _rewrite_data_file(summary, lines[:-1], fix_manifest=True)
    with pytest.raises(ExportIntegrityError, match="item count mismatch"):
        convert_export(str(summary), str(tmp_path / "lake"))
    assert not list((tmp_path / "lake").rglob("*.parquet"))


def test_manifest_md5_is_checked(make_export) -> None:
    summary = make_export(items=10)
    (summary.parent / "manifest-summary.md5").write_text("AAAAAAAAAAAAAAAAAAAAAA==")
    with pytest.raises(ExportIntegrityError, match="manifest-summary.json: MD5 mismatch"):
        read_manifest(str(summary))


def test_ion_exports_are_refused_clearly(make_export) -> None:
    summary = make_export(items=10)
    raw = json.loads(summary.read_text())
    raw["outputFormat"] = "ION"
    payload = json.dumps(raw).encode()
    summary.write_bytes(payload)
    md5 = base64.b64encode(hashlib.md5(payload).digest())
    (summary.parent / "manifest-summary.md5").write_bytes(md5)
    with pytest.raises(ExportFormatError, match="ION is not supported.*DYNAMODB_JSON"):
        read_manifest(str(summary))


def test_a_summary_moved_out_of_its_bucket_layout_is_refused(make_export, tmp_path) -> None:
    summary = make_export(items=10)
    moved = tmp_path / "elsewhere" / "manifest-summary.json"
    moved.parent.mkdir()
    moved.write_bytes(summary.read_bytes())
    (moved.parent / "manifest-summary.md5").write_bytes(
        (summary.parent / "manifest-summary.md5").read_bytes()
    )
    with pytest.raises(ExportFormatError, match="mirrors the bucket"):
        read_manifest(str(moved))


def test_a_folder_instead_of_the_summary_is_refused(make_export) -> None:
    summary = make_export(items=10)
    with pytest.raises(ExportFormatError, match="manifest-summary.json"):
        read_manifest(str(summary.parent))


def test_progress_logs_files_items_rate_megabytes_and_peak_memory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from dynamo_lake.lake.conversion import Progress

    caplog.set_level("INFO", logger="dynamo_lake.lake.conversion")
    quiet = Progress(files=2, interval=3600)
    quiet.rows(100, "data/a.json.gz")
    assert caplog.messages == []  # within the interval nothing is logged mid-file
    progress = Progress(files=2, interval=0)
    progress.rows(100, "data/a.json.gz")
    progress.file_done(1.5)
    progress.rows(50, "data/b.json.gz")
    small = Progress(files=1, interval=0)
    small.file_done(0.012)
    assert re.fullmatch(
        r"converting data/a\.json\.gz: 0 of 2 export data files, 100 items, \d+ items/s, "
        r"0 KB of gzip read, peak memory [1-9]\d* MB",
        caplog.messages[0],
    )
    assert re.fullmatch(
        r"file done: 1 of 2 export data files, 100 items, \d+ items/s, 1\.5 MB of gzip read, "
        r"peak memory \d+ MB",
        caplog.messages[1],
    )
    assert caplog.messages[2].startswith(
        "converting data/b.json.gz: 1 of 2 export data files, 150 items"
    )
    # A small file is counted in KB, never as "0.0 MB".
    assert "1 of 1 export data files, 0 items" in caplog.messages[3]
    assert "12 KB of gzip read" in caplog.messages[3]
