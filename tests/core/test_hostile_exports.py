"""Hostile exports and lakes (issue "defects found with hostile input"): each case failed
before its fix. Real files: AWS-layout exports on disk, real gzip, Parquet and DuckDB.

"Edit" means changing a manifest and deleting its ``.md5``, so the edit is not refused for
its checksum (AWS's exports always have one; a missing .md5 is tolerated with a warning).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import inspect
import io
import pickle
import pkgutil
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

import dynamo_lake
from dynamo_lake.errors import (
    DuplicateEventsError,
    DynamoLakeError,
    ExportFormatError,
    ExportIntegrityError,
    LakeWriteError,
)
from dynamo_lake.lake.conversion import convert_export
from dynamo_lake.lake.writer import LakeTable, Stage, publish, read_published
from dynamo_lake.records import StagedFile
from dynamo_lake.storage import resolve

GLOB = "year=*/month=*/day=*/*.parquet"


def _visible(lake: Path) -> list[Path]:
    return sorted(path for path in lake.glob(GLOB) if path.is_file())


def _count(lake: Path) -> tuple[int, int]:
    if not _visible(lake):
        return 0, 0
    files = [str(path) for path in _visible(lake)]
    ((rows, distinct),) = duckdb.sql(
        f"select count(*), count(distinct uuid) from read_parquet({files})"
    ).fetchall()
    return rows, distinct


def _edit_summary(summary: Path, **changes: Any) -> None:
    raw = orjson.loads(summary.read_bytes())
    raw.update(changes)
    summary.write_bytes(orjson.dumps(raw))
    summary.with_suffix(".md5").unlink(missing_ok=True)


def _edit_file_list(
    summary: Path, bucket_root: Path, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
) -> None:
    raw = orjson.loads(summary.read_bytes())
    files = bucket_root / raw["manifestFilesS3Key"]
    entries = edit([orjson.loads(line) for line in files.read_bytes().splitlines() if line])
    files.write_bytes(b"".join(orjson.dumps(entry) + b"\n" for entry in entries))
    files.with_suffix(".md5").unlink(missing_ok=True)
    _edit_summary(summary, itemCount=sum(entry["itemCount"] for entry in entries))


def _entries(summary: Path, bucket_root: Path) -> list[dict[str, Any]]:
    raw = orjson.loads(summary.read_bytes())
    text = (bucket_root / raw["manifestFilesS3Key"]).read_bytes()
    return [orjson.loads(line) for line in text.splitlines() if line]


def _replace_data(bucket_root: Path, entry: dict[str, Any], lines: list[bytes]) -> bytes:
    """Give one listed data file new lines, keeping its manifest entry consistent."""
    body = gzip.compress(b"".join(line + b"\n" for line in lines), mtime=0)
    (bucket_root / entry["dataFileS3Key"]).write_bytes(body)
    entry["md5Checksum"] = base64.b64encode(hashlib.md5(body).digest()).decode()
    entry["itemCount"] = sum(1 for line in lines if line.strip())
    return body


# --- 1. export ids that would escape the lake -------------------------------------------


@pytest.mark.parametrize("export_id", ["..", "", ".", "../../other", "x/../..", "0170-abc"])
def test_an_export_id_that_is_not_an_export_id_is_refused(
    make_export: Any, tmp_path: Path, export_id: str
) -> None:
    summary = make_export(items=50, files=2)
    raw = orjson.loads(summary.read_bytes())
    _edit_summary(summary, exportArn=raw["exportArn"].rsplit("/", 1)[0] + "/" + export_id)
    lake = tmp_path / "lake"
    unrelated = lake / "other" / "keep.txt"
    unrelated.parent.mkdir(parents=True)
    unrelated.write_text("not ours")
    sibling = lake / "_staging" / "01717243200000-aaaaaaaa" / "cli-x" / "keep.txt"
    sibling.parent.mkdir(parents=True)
    sibling.write_text("another export's work")

    with pytest.raises(ExportFormatError, match="does not end in /export/<ExportId>"):
        convert_export(str(summary), str(lake))

    assert unrelated.read_text() == "not ours"
    assert sibling.read_text() == "another export's work"
    assert _visible(lake) == []
    assert not list(lake.rglob("*.parquet"))


def test_a_manifest_files_key_outside_the_export_folder_is_refused(make_export: Any) -> None:
    summary = make_export(items=10, files=1)
    raw = orjson.loads(summary.read_bytes())
    _edit_summary(summary, manifestFilesS3Key="exports/AWSDynamoDB/../../etc/manifest-files.json")
    with pytest.raises(ExportFormatError, match="manifestFilesS3Key"):
        convert_export(str(summary), str(summary.parent / "lake"))
    assert raw["manifestFilesS3Key"].endswith("/manifest-files.json")


# --- 2, 3. data files that would overwrite each other ------------------------------------


def test_two_data_files_with_one_name_in_different_folders_are_refused(
    make_export: Any, bucket_root: Path, tmp_path: Path
) -> None:
    summary = make_export(items=50, files=2)

    def nest_the_second(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        first, second = entries
        name = first["dataFileS3Key"].rsplit("/", 1)[1]
        nested = second["dataFileS3Key"].rsplit("/", 1)[0] + "/sub/" + name
        (bucket_root / nested).parent.mkdir(parents=True)
        shutil.copy(bucket_root / second["dataFileS3Key"], bucket_root / nested)
        return [first, {**second, "dataFileS3Key": nested}]

    _edit_file_list(summary, bucket_root, nest_the_second)
    lake = tmp_path / "lake"
    with pytest.raises(ExportIntegrityError, match="has the same file name as"):
        convert_export(str(summary), str(lake))
    assert _visible(lake) == []


def test_a_data_file_listed_twice_is_refused(
    make_export: Any, bucket_root: Path, tmp_path: Path
) -> None:
    summary = make_export(items=50, files=1)
    _edit_file_list(summary, bucket_root, lambda entries: [entries[0], entries[0]])
    lake = tmp_path / "lake"
    with pytest.raises(ExportIntegrityError, match="is listed twice"):
        convert_export(str(summary), str(lake))
    assert _visible(lake) == []


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "non-empty"),
        ("exports/AWSDynamoDB/data/../x.json.gz", "is not a data file below"),
        ("elsewhere/data/x.json.gz", "is not a data file below"),
        ("exports/AWSDynamoDB/data/", "is not a data file below"),
    ],
)
def test_a_data_file_key_that_is_not_a_data_file_is_refused(
    make_export: Any, bucket_root: Path, key: str, reason: str
) -> None:
    summary = make_export(items=10, files=1)
    _edit_file_list(summary, bucket_root, lambda entries: [{**entries[0], "dataFileS3Key": key}])
    with pytest.raises(ExportIntegrityError, match=reason):
        convert_export(str(summary), str(bucket_root / "lake"))


def test_publish_refuses_two_files_with_one_final_name(tmp_path: Path) -> None:
    table = LakeTable(resolve(str(tmp_path / "lake")))
    stage = Stage("01717243200000-e8bbf433", "cli-test")
    twins = [
        StagedFile("year=2024/month=06/day=01", "same.parquet", 10, "a"),
        StagedFile("year=2024/month=06/day=01", "same.parquet", 10, "b"),
    ]
    with pytest.raises(LakeWriteError, match="would overwrite each other"):
        publish(table, stage, twins)


def test_publish_counts_what_the_staged_files_hold(make_export: Any, tmp_path: Path) -> None:
    from dynamo_lake.exports.manifest import read_manifest
    from dynamo_lake.lake.conversion import convert_data_file

    manifest = read_manifest(str(make_export(items=40, files=1)))
    table = LakeTable(resolve(str(tmp_path / "lake")))
    stage = Stage(manifest.summary.export_id, "cli-test")
    done = convert_data_file(manifest, manifest.data_files[0], table, stage)
    (staged,) = done.staged
    inflated = StagedFile(staged.partition, staged.name, staged.rows + 1, staged.source)
    with pytest.raises(LakeWriteError, match="holds 40 rows, not the 41"):
        publish(table, stage, [inflated])
    assert _visible(tmp_path / "lake") == []


# --- 5. a publish that cannot finish leaves readers where they were ----------------------


def test_an_unwritable_publish_record_publishes_nothing(make_export: Any, tmp_path: Path) -> None:
    summary = make_export(items=60, files=2)
    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / "_published").write_text("a file where the folder should be")
    with pytest.raises(DynamoLakeError, match="_published"):
        convert_export(str(summary), str(lake))
    assert _visible(lake) == []


def test_a_publish_that_fails_midway_is_undone(make_export: Any, tmp_path: Path) -> None:
    summary = make_export(items=300, files=3)
    lake = tmp_path / "lake"
    first = convert_export(str(summary), str(tmp_path / "probe"))
    # A folder where the second file must go: the copy fails after the first one landed.
    blocker = lake / sorted(first.published)[1]
    blocker.mkdir(parents=True)
    (blocker / "x").write_text("x")

    with pytest.raises(LakeWriteError, match="failed and was undone"):
        convert_export(str(summary), str(lake))

    assert _visible(lake) == []  # the first file was taken back
    table = LakeTable(resolve(str(lake)))
    assert read_published(table, first.export_id) is None
    assert not list((lake / "_staging").rglob("*.parquet"))

    shutil.rmtree(blocker)
    again = convert_export(str(summary), str(lake))
    assert again.rows == 300 and _count(lake) == (300, 300)


def test_a_failed_republish_keeps_the_earlier_files(make_export: Any, tmp_path: Path) -> None:
    from dynamo_lake.lake.writer import WriterSettings

    summary = make_export(items=300, files=1)
    lake = tmp_path / "lake"
    convert_export(str(summary), str(lake))
    before = {path.name for path in _visible(lake)}
    # Republish with smaller files: new names; block the second new one.
    small = WriterSettings(row_group_rows=50, max_rows_per_file=100)
    probe = convert_export(str(summary), str(tmp_path / "probe"), settings=small)
    blocker = lake / sorted(probe.published)[1]
    blocker.mkdir(parents=True)
    with pytest.raises(LakeWriteError, match="undone"):
        convert_export(str(summary), str(lake), settings=small)
    assert {path.name for path in _visible(lake)} == before
    assert _count(lake) == (300, 300)


# --- 6. errors cross process boundaries intact -------------------------------------------


def _project_exceptions() -> list[type[BaseException]]:
    for module in pkgutil.walk_packages(dynamo_lake.__path__, "dynamo_lake."):
        if ".airflow" not in module.name:
            import_module(module.name)
    found: list[type[BaseException]] = []
    pending: list[type[BaseException]] = [DynamoLakeError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending += cls.__subclasses__()
    return found


@pytest.mark.parametrize("cls", _project_exceptions(), ids=lambda cls: cls.__name__)
def test_every_project_exception_survives_pickling(cls: type[BaseException]) -> None:
    parameters = list(inspect.signature(cls.__init__).parameters)[1:]
    if parameters in (["args", "kwargs"], []):
        error = cls("the problem and the fix")
    else:
        error = cls(*[f"{name}-value" for name in parameters])
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__


@pytest.mark.parametrize("damage", ["truncate", "md5"])
def test_a_worker_error_reaches_the_caller_as_itself(
    make_export: Any, bucket_root: Path, tmp_path: Path, damage: str
) -> None:
    summary = make_export(items=90, files=3)
    entry = _entries(summary, bucket_root)[1]
    path = bucket_root / entry["dataFileS3Key"]
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-20])
    else:
        path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()), mtime=1))
    with pytest.raises(ExportIntegrityError) as caught:
        convert_export(str(summary), str(tmp_path / "lake"), workers=2)
    assert caught.value.location == str(path)
    assert _visible(tmp_path / "lake") == []


# --- 10. incremental write times outside the export's window -----------------------------


@pytest.mark.parametrize(
    "write_time",
    ["1717243200000", "0", "-1", "99999999999999999999999", "1_717_243_200_000_000", " 17"],
)
def test_a_write_time_outside_the_window_is_refused_or_diverted(
    make_export: Any, bucket_root: Path, tmp_path: Path, write_time: str
) -> None:
    summary = make_export(kind="incremental", items=60, files=1)
    entries = _entries(summary, bucket_root)
    lines = gzip.decompress((bucket_root / entries[0]["dataFileS3Key"]).read_bytes()).splitlines()
    bad = orjson.loads(lines[3])
    bad["Metadata"]["WriteTimestampMicros"]["N"] = write_time
    lines[3] = orjson.dumps(bad)
    _replace_data(bucket_root, entries[0], lines)
    _edit_file_list(summary, bucket_root, lambda _: entries)
    lake = tmp_path / "lake"

    with pytest.raises(ExportIntegrityError, match=r"first: \S+:4: .*WriteTimestampMicros"):
        convert_export(str(summary), str(lake))
    assert _visible(lake) == []

    result = convert_export(str(summary), str(lake), max_bad_lines=1)
    assert (result.rows, result.bad_lines) == (len(lines) - 1, 1)
    years = duckdb.sql(f"select distinct year(time_stamp) from read_parquet('{lake}/{GLOB}')")
    assert years.fetchall() == [(2024,)]


# --- 12. a gzip bomb inflates in bounded pieces ------------------------------------------

# VmHWM is this process image's peak RSS (ru_maxrss would include the forking parent's).
_PEAK_RSS = """
import re, sys
from pathlib import Path
from dynamo_lake.lake.conversion import convert_export
from dynamo_lake.errors import DynamoLakeError
try:
    result = convert_export(sys.argv[1], sys.argv[2])
    print("rows", result.rows)
except DynamoLakeError as exc:
    print("error", exc)
status = Path("/proc/self/status").read_text()
print("peak_mb", int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) // 1024)
"""


def _bomb(make_export: Any, bucket_root: Path, filler: bytes, size: int) -> Path:
    summary = make_export(items=1, files=1)
    entries = _entries(summary, bucket_root)
    body = gzip.decompress((bucket_root / entries[0]["dataFileS3Key"]).read_bytes())
    (line,) = [line for line in body.splitlines() if line]
    sink = io.BytesIO()
    compressor = gzip.GzipFile(fileobj=sink, mode="wb", mtime=0)
    compressor.write(line + b"\n")
    block = filler * (1 << 20)
    for _ in range(size >> 20):
        compressor.write(block)
    compressor.close()
    body = sink.getvalue()
    (bucket_root / entries[0]["dataFileS3Key"]).write_bytes(body)
    entries[0]["md5Checksum"] = base64.b64encode(hashlib.md5(body).digest()).decode()
    _edit_file_list(summary, bucket_root, lambda _: entries)
    return summary


def _convert_measured(summary: Path, lake: Path) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, str(summary), str(lake)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return dict(line.split(" ", 1) for line in done.stdout.splitlines())


def test_a_gzip_bomb_of_newlines_converts_in_bounded_memory(
    make_export: Any, bucket_root: Path, tmp_path: Path
) -> None:
    summary = _bomb(make_export, bucket_root, b"\n", 96 << 20)
    assert (bucket_root / _entries(summary, bucket_root)[0]["dataFileS3Key"]).stat().st_size < (
        1 << 20
    )
    report = _convert_measured(summary, tmp_path / "lake")
    assert report.get("rows") == "1", report
    # Inflating 96 MiB at once and splitting it into lines took over 900 MB before.
    assert int(report["peak_mb"]) < 300, report


def test_a_line_longer_than_any_item_is_refused_in_bounded_memory(
    make_export: Any, bucket_root: Path, tmp_path: Path
) -> None:
    summary = _bomb(make_export, bucket_root, b"a", 48 << 20)
    report = _convert_measured(summary, tmp_path / "lake")
    assert "line longer than 32 MiB" in report.get("error", ""), report
    assert report["error"].split(": ")[0].endswith(":2")
    assert int(report["peak_mb"]) < 400, report
    assert _visible(tmp_path / "lake") == []


# --- 13. the same events twice -----------------------------------------------------------


def test_a_second_full_export_at_the_same_time_is_refused_unless_forced(
    make_export: Any, tmp_path: Path
) -> None:
    first = make_export(items=100, files=2, seed=1, prefix="one")
    second = make_export(items=100, files=2, seed=2, prefix="two")  # the same export time
    lake = tmp_path / "lake"
    done = convert_export(str(first), str(lake))
    assert _count(lake) == (100, 100)
    # Same export (a re-run): fine, same files.
    convert_export(str(first), str(lake))
    assert _count(lake) == (100, 100)
    # Another export of the same moment: every event again.
    other_id = orjson.loads(second.read_bytes())["exportArn"].rsplit("/", 1)[1]
    assert other_id != done.export_id
    with pytest.raises(DuplicateEventsError, match=f"from export {done.export_id} at 2024-06-01"):
        convert_export(str(second), str(lake))
    assert _count(lake) == (100, 100)
    assert not list((lake / "_staging").rglob("*.parquet"))
    convert_export(str(second), str(lake), force=True)
    assert _count(lake) == (200, 200)


def test_overlapping_incremental_windows_are_refused(make_export: Any, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    def at(hour: int) -> datetime:
        return datetime(2024, 6, 1, hour, tzinfo=UTC)

    lake = tmp_path / "lake"
    convert_export(str(make_export(kind="incremental", window=(at(0), at(6)))), str(lake))
    # Adjacent windows share no moment ([from, to) is half-open).
    adjacent = make_export(kind="incremental", window=(at(6), at(9)), prefix="b", seed=2)
    convert_export(str(adjacent), str(lake))
    overlapping = make_export(kind="incremental", window=(at(5), at(7)), prefix="c", seed=3)
    with pytest.raises(DuplicateEventsError, match="already holds the events of an incremental"):
        convert_export(str(overlapping), str(lake))
    # A full export never repeats an incremental one's rows.
    convert_export(str(make_export(items=20, prefix="d", seed=4)), str(lake))
