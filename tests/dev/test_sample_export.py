"""The sample export generator writes what AWS writes: layout, manifests, checksums, lines.

Every check reads the files back from disk the way a consumer would (summary -> manifest
files -> data files), so a generator bug cannot hide behind its own bookkeeping.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from sample_export import DEFAULT_EXPORT_TIME, main, write_sample_export

EXPORT_ID = re.compile(r"0\d{13}-[0-9a-f]{8}")
JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
FULL_FIELDS = [
    "version",
    "exportArn",
    "startTime",
    "endTime",
    "tableArn",
    "tableId",
    "exportTime",
    "s3Bucket",
    "s3Prefix",
    "s3SseAlgorithm",
    "s3SseKmsKeyId",
    "manifestFilesS3Key",
    "billedSizeBytes",
    "itemCount",
    "outputFormat",
    "exportType",
]
INCREMENTAL_FIELDS = [
    "version",
    "exportArn",
    "startTime",
    "endTime",
    "tableArn",
    "tableId",
    "exportFromTime",
    "exportToTime",
    "s3Bucket",
    "s3Prefix",
    "s3SseAlgorithm",
    "s3SseKmsKeyId",
    "manifestFilesS3Key",
    "billedSizeBytes",
    "itemCount",
    "outputFormat",
    "outputView",
    "exportType",
]
AWS_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def b64md5(payload: bytes) -> str:
    return base64.b64encode(hashlib.md5(payload, usedforsecurity=False).digest()).decode()


def read_export(bucket: Path, summary_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Summary and manifest-files entries, with each md5 file checked."""
    summary_bytes = summary_path.read_bytes()
    assert summary_path.with_suffix(".md5").read_text() == b64md5(summary_bytes)
    summary = orjson.loads(summary_bytes)
    manifest_path = bucket / summary["manifestFilesS3Key"]
    manifest_bytes = manifest_path.read_bytes()
    assert manifest_path.with_suffix(".md5").read_text() == b64md5(manifest_bytes)
    entries = [orjson.loads(line) for line in manifest_bytes.splitlines()]
    return summary, entries


def data_lines(bucket: Path, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All data lines, checking each file's md5Checksum and itemCount on the way."""
    lines: list[dict[str, Any]] = []
    for entry in entries:
        raw = (bucket / entry["dataFileS3Key"]).read_bytes()
        assert entry["md5Checksum"] == b64md5(raw)
        assert re.fullmatch(r"[0-9a-f]{32}-\d+", entry["etag"])
        text = gzip.decompress(raw)
        file_lines = text.splitlines()
        assert len(file_lines) == entry["itemCount"]
        assert text == b"" or text.endswith(b"\n")
        lines.extend(orjson.loads(line) for line in file_lines)
    return lines


def check_typed(value: Any, seen: Counter[str]) -> None:
    """Assert one DynamoDB JSON attribute value is well-formed; count its type tags."""
    assert isinstance(value, dict) and len(value) == 1, value
    ((tag, inner),) = value.items()
    seen[tag] += 1
    if tag == "S":
        assert isinstance(inner, str)
    elif tag == "N":
        assert JSON_NUMBER.fullmatch(inner), inner
    elif tag == "B":
        binascii.a2b_base64(inner, strict_mode=True)
    elif tag == "BOOL":
        assert isinstance(inner, bool)
    elif tag == "NULL":
        assert inner is True
    elif tag == "M":
        for member in inner.values():
            check_typed(member, seen)
    elif tag == "L":
        for member in inner:
            check_typed(member, seen)
    elif tag in ("SS", "NS", "BS"):
        assert inner and len(set(inner)) == len(inner), inner
        for member in inner:
            check_typed({tag[0]: member}, Counter())
    else:
        raise AssertionError(f"unknown tag {tag}")


def check_item(item: dict[str, Any], seen: Counter[str]) -> None:
    assert re.fullmatch(r"customer#\d{6,}", item["pk"]["S"])
    for value in item.values():
        check_typed(value, seen)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_full_export_layout_and_manifests(tmp_path: Path) -> None:
    bucket = tmp_path / "my-bucket"
    summary_path = write_sample_export(bucket, items=500, files=3, empty_files=2, prefix="2024-Jun")

    export_dir = summary_path.parent
    export_id = export_dir.name
    assert EXPORT_ID.fullmatch(export_id)
    assert export_dir.parent == bucket / "2024-Jun" / "AWSDynamoDB"
    assert (export_dir / "_started").read_bytes() == b""

    summary, entries = read_export(bucket, summary_path)
    assert list(summary) == FULL_FIELDS
    assert summary["version"] == "2020-06-30"
    assert summary["exportType"] == "FULL_EXPORT"
    assert summary["outputFormat"] == "DYNAMODB_JSON"
    assert summary["exportArn"] == (
        f"arn:aws:dynamodb:us-east-1:123456789012:table/orders/export/{export_id}"
    )
    assert summary["tableArn"] == "arn:aws:dynamodb:us-east-1:123456789012:table/orders"
    assert summary["s3Bucket"] == "my-bucket"
    assert summary["s3Prefix"] == "2024-Jun"
    assert summary["manifestFilesS3Key"] == f"2024-Jun/AWSDynamoDB/{export_id}/manifest-files.json"
    assert summary["itemCount"] == 500
    assert summary["billedSizeBytes"] > 0
    for field in ("startTime", "endTime", "exportTime"):
        assert AWS_TIME.fullmatch(summary[field])
    assert summary["exportTime"] == "2024-06-01T12:00:00.000Z"
    assert int(export_id[1:14]) == int(DEFAULT_EXPORT_TIME.timestamp() * 1000)

    assert len(entries) == 5
    for entry in entries:
        assert list(entry) == ["itemCount", "md5Checksum", "etag", "dataFileS3Key"]
        assert re.fullmatch(
            rf"2024-Jun/AWSDynamoDB/{export_id}/data/[a-z2-7]{{26}}\.json\.gz",
            entry["dataFileS3Key"],
        )
    empties = [e for e in entries if e["itemCount"] == 0]
    assert len(empties) == 2
    for entry in empties:  # an empty partition: valid gzip of zero bytes
        assert gzip.decompress((bucket / entry["dataFileS3Key"]).read_bytes()) == b""

    lines = data_lines(bucket, entries)
    assert len(lines) == 500 == sum(e["itemCount"] for e in entries)
    seen: Counter[str] = Counter()
    keys = set()
    for line in lines:
        assert list(line) == ["Item"]
        check_item(line["Item"], seen)
        assert set(line["Item"]["sk"]) == {"S"}
        keys.add((line["Item"]["pk"]["S"], line["Item"]["sk"]["S"]))
    assert len(keys) == 500  # the composite key is unique
    assert set(seen) == {"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"}


def test_items_are_varied_and_about_370_bytes(tmp_path: Path) -> None:
    summary_path = write_sample_export(tmp_path, items=3000, files=2, seed=7)
    _, entries = read_export(tmp_path, summary_path)
    raw = b"".join(gzip.decompress((tmp_path / e["dataFileS3Key"]).read_bytes()) for e in entries)
    assert 300 <= len(raw) / 3000 <= 450
    text = raw.decode("utf-8")
    assert re.search(r"[\U00010000-\U0010FFFF]", text)  # astral characters
    assert '\\"' in text  # quotes inside strings
    numbers = re.findall(r'"N":"([^"]+)"', text)
    assert any(len(n.lstrip("-").replace(".", "")) >= 38 for n in numbers)
    assert any("E" in n for n in numbers)
    assert any("." in n for n in numbers)
    # Strings dynamodb-json would turn into datetimes.
    assert re.search(r'"S":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}"', text)


def test_incremental_new_and_old_images(tmp_path: Path) -> None:
    start = datetime(2024, 6, 1, 10, 0, tzinfo=UTC)
    end = start + timedelta(minutes=30)
    summary_path = write_sample_export(
        tmp_path, items=600, files=3, kind="incremental", window=(start, end), empty_files=1
    )
    summary, entries = read_export(tmp_path, summary_path)
    assert list(summary) == INCREMENTAL_FIELDS
    assert summary["version"] == "2023-08-01"
    assert summary["exportType"] == "INCREMENTAL_EXPORT"
    assert summary["outputView"] == "NEW_AND_OLD_IMAGES"
    assert summary["exportFromTime"] == "2024-06-01T10:00:00.000Z"
    assert summary["exportToTime"] == "2024-06-01T10:30:00.000Z"
    assert "exportTime" not in summary
    assert summary["startTime"] >= summary["exportToTime"]  # it runs after its window closes
    for entry in entries:  # the shared data folder, not the export's own
        assert re.fullmatch(
            r"exports/AWSDynamoDB/data/[a-z2-7]{26}\.json\.gz", entry["dataFileS3Key"]
        )
    assert not (summary_path.parent / "data").exists()

    lines = data_lines(tmp_path, entries)
    assert len(lines) == summary["itemCount"] == 600
    shapes: Counter[tuple[str, ...]] = Counter()
    seen: Counter[str] = Counter()
    start_us, end_us = (int(t.timestamp() * 1_000_000) for t in (start, end))
    for line in lines:
        shapes[tuple(line)] += 1
        micros = line["Metadata"]["WriteTimestampMicros"]
        assert list(micros) == ["N"]
        assert start_us <= int(micros["N"]) < end_us
        assert set(line["Keys"]) == {"pk", "sk"}
        for image in ("OldImage", "NewImage"):
            if image in line:
                check_item(line[image], seen)
                assert {k: line[image][k] for k in ("pk", "sk")} == line["Keys"]
        if "OldImage" in line and "NewImage" in line:
            assert line["OldImage"] != line["NewImage"]
    assert set(shapes) == {
        ("Metadata", "Keys", "NewImage"),  # insert
        ("Metadata", "Keys", "OldImage", "NewImage"),  # update
        ("Metadata", "Keys", "OldImage"),  # delete
    }
    assert min(shapes.values()) >= 30


def test_incremental_new_image_view(tmp_path: Path) -> None:
    summary_path = write_sample_export(
        tmp_path, items=400, files=2, kind="incremental", output_view="NEW_IMAGE"
    )
    summary, entries = read_export(tmp_path, summary_path)
    assert summary["outputView"] == "NEW_IMAGE"
    shapes = Counter(tuple(line) for line in data_lines(tmp_path, entries))
    # Inserts and updates look alike; a delete carries its keys only.
    assert set(shapes) == {("Metadata", "Keys", "NewImage"), ("Metadata", "Keys")}


def test_incremental_exports_share_the_data_folder(tmp_path: Path) -> None:
    first = write_sample_export(tmp_path, items=100, files=2, kind="incremental")
    second = write_sample_export(
        tmp_path,
        items=100,
        files=2,
        kind="incremental",
        export_time=DEFAULT_EXPORT_TIME + timedelta(hours=1),
    )
    assert first.parent != second.parent
    keys = [
        [e["dataFileS3Key"] for e in read_export(tmp_path, path)[1]] for path in (first, second)
    ]
    assert not set(keys[0]) & set(keys[1])
    shared = tmp_path / "exports" / "AWSDynamoDB" / "data"
    assert sorted(p.name for p in shared.iterdir()) == sorted(
        Path(key).name for key in keys[0] + keys[1]
    )


def test_numeric_sort_key(tmp_path: Path) -> None:
    summary_path = write_sample_export(tmp_path, items=200, files=2, sort_key_type="N")
    lines = data_lines(tmp_path, read_export(tmp_path, summary_path)[1])
    assert all(set(line["Item"]["sk"]) == {"N"} for line in lines)
    assert len({(x["Item"]["pk"]["S"], x["Item"]["sk"]["N"]) for x in lines}) == 200


def test_deterministic_per_seed(tmp_path: Path) -> None:
    # The same bucket name (it is written into the summary) under different parents.
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        write_sample_export(
            tmp_path / name / "bucket", items=300, files=2, seed=seed, empty_files=1
        )
    first = tree_bytes(tmp_path / "a" / "bucket")
    assert len(first) == 8  # _started, 2 manifests, 2 md5 files, 2 data files + 1 empty
    assert first == tree_bytes(tmp_path / "b" / "bucket")
    assert first != tree_bytes(tmp_path / "c" / "bucket")


def test_rejects_an_empty_window(tmp_path: Path) -> None:
    moment = DEFAULT_EXPORT_TIME
    with pytest.raises(ValueError, match="window end"):
        write_sample_export(tmp_path, kind="incremental", window=(moment, moment))


def test_cli_prints_the_summary_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), "--items", "50", "--files", "2", "--kind", "incremental"]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed.name == "manifest-summary.json" and printed.is_file()
    assert orjson.loads(printed.read_bytes())["itemCount"] == 50


def test_accepted_by_the_codec(tmp_path: Path) -> None:
    codec = pytest.importorskip("dynamo_lake.codec")
    summary_path = write_sample_export(tmp_path, items=300, files=1)
    for line in data_lines(tmp_path, read_export(tmp_path, summary_path)[1]):
        assert codec.item_to_data(line["Item"]).startswith("{")
