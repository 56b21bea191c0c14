"""Incremental exports: window bounds, compaction, images, shapes and the shared data folder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import create_table, delete, key, put, read_export, wait_for_export

T0 = datetime(2024, 6, 1, tzinfo=UTC)
START = T0 + timedelta(minutes=10)
END = START + timedelta(minutes=15)


def micros(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def at(emulator: Any, moment: datetime) -> None:
    emulator.set_clock(moment)


@pytest.fixture
def history_table(emulator, dynamodb) -> tuple[str, str]:
    """Writes around the window [START, END) so every rule has an item to show it."""
    emulator.update_settings(pitr_lag_seconds=1)
    at(emulator, T0)
    table, arn = create_table(dynamodb)
    at(emulator, T0 + timedelta(minutes=1))
    for pk in ("untouched", "updated", "deleted", "late"):
        put(dynamodb, table, pk, v="before")
    at(emulator, START)
    put(dynamodb, table, "at-start", v="inserted")
    at(emulator, START + timedelta(minutes=1))
    put(dynamodb, table, "updated", v="first change")
    put(dynamodb, table, "inserted", v="new")
    put(dynamodb, table, "flash", v="short-lived")
    at(emulator, START + timedelta(minutes=2))
    put(dynamodb, table, "updated", v="final")
    delete(dynamodb, table, "deleted")
    delete(dynamodb, table, "flash")
    at(emulator, END)
    put(dynamodb, table, "late", v="at the exclusive end")
    at(emulator, END + timedelta(minutes=5))
    return table, arn


def incremental(dynamodb: Any, arn: str, bucket: str, view: str, **window: Any) -> str:
    spec = {"ExportFromTime": START, "ExportToTime": END, "ExportViewType": view, **window}
    return str(
        dynamodb.export_table_to_point_in_time(
            TableArn=arn,
            S3Bucket=bucket,
            S3Prefix="cdc",
            ExportType="INCREMENTAL_EXPORT",
            IncrementalExportSpecification=spec,
        )["ExportDescription"]["ExportArn"]
    )


def lines_by_pk(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {line["Keys"]["pk"]["S"]: line for line in lines}


def test_new_and_old_images_compacted_over_the_window(history_table, dynamodb, s3, bucket):
    _, arn = history_table
    done = wait_for_export(dynamodb, incremental(dynamodb, arn, bucket, "NEW_AND_OLD_IMAGES"))
    assert done["ExportStatus"] == "COMPLETED"
    assert done["IncrementalExportSpecification"] == {
        "ExportFromTime": START,
        "ExportToTime": END,
        "ExportViewType": "NEW_AND_OLD_IMAGES",
    }
    assert done["ExportType"] == "INCREMENTAL_EXPORT"
    files = read_export(s3, bucket, done["ExportManifest"])
    lines = lines_by_pk(files.data_lines)
    assert set(lines) == {"at-start", "updated", "inserted", "deleted"}
    assert done["ItemCount"] == 4

    updated = lines["updated"]
    assert list(updated) == ["Metadata", "Keys", "OldImage", "NewImage"]
    assert updated["Keys"] == key("updated")
    assert updated["OldImage"]["v"] == {"S": "before"}
    assert updated["NewImage"]["v"] == {"S": "final"}
    assert updated["Metadata"] == {
        "WriteTimestampMicros": {"N": str(micros(START + timedelta(minutes=2)))}
    }
    assert set(lines["inserted"]) == {"Metadata", "Keys", "NewImage"}
    assert set(lines["at-start"]) == {"Metadata", "Keys", "NewImage"}
    assert lines["at-start"]["Metadata"]["WriteTimestampMicros"]["N"] == str(micros(START))
    assert set(lines["deleted"]) == {"Metadata", "Keys", "OldImage"}
    assert lines["deleted"]["OldImage"]["v"] == {"S": "before"}


def test_new_image_view_shapes(history_table, dynamodb, s3, bucket):
    _, arn = history_table
    done = wait_for_export(dynamodb, incremental(dynamodb, arn, bucket, "NEW_IMAGE"))
    lines = lines_by_pk(read_export(s3, bucket, done["ExportManifest"]).data_lines)
    assert set(lines["updated"]) == {"Metadata", "Keys", "NewImage"}
    assert lines["updated"]["NewImage"]["v"] == {"S": "final"}
    assert set(lines["deleted"]) == {"Metadata", "Keys"}
    assert "flash" not in lines


def test_data_goes_to_the_shared_folder_and_manifests_to_the_export(
    history_table, dynamodb, s3, bucket
):
    _, arn = history_table
    first = wait_for_export(dynamodb, incremental(dynamodb, arn, bucket, "NEW_IMAGE"))
    second = wait_for_export(dynamodb, incremental(dynamodb, arn, bucket, "NEW_AND_OLD_IMAGES"))
    for done in (first, second):
        export_id = done["ExportArn"].rsplit("/", 1)[1]
        assert done["ExportManifest"] == f"cdc/AWSDynamoDB/{export_id}/manifest-summary.json"
        files = read_export(s3, bucket, done["ExportManifest"])
        assert all(k.startswith("cdc/AWSDynamoDB/data/") for k in files.data_keys)
        summary = files.summary
        assert summary["version"] == "2023-08-01"
        assert summary["exportType"] == "INCREMENTAL_EXPORT"
        assert summary["exportFromTime"] == "2024-06-01T00:10:00.000Z"
        assert summary["exportToTime"] == "2024-06-01T00:25:00.000Z"
        assert summary["outputView"] == done["IncrementalExportSpecification"]["ExportViewType"]
        assert "exportTime" not in summary
        assert summary["billedSizeBytes"] >= 10 * 1024 * 1024
    shared = s3.list_objects_v2(Bucket=bucket, Prefix="cdc/AWSDynamoDB/data/")["Contents"]
    first_keys = read_export(s3, bucket, first["ExportManifest"]).data_keys
    second_keys = read_export(s3, bucket, second["ExportManifest"]).data_keys
    assert {o["Key"] for o in shared} == set(first_keys) | set(second_keys)


@pytest.mark.parametrize(
    "window",
    [
        {"ExportToTime": START + timedelta(minutes=14, seconds=59)},
        {"ExportFromTime": END, "ExportToTime": START},
        {"ExportFromTime": T0 - timedelta(days=2), "ExportToTime": T0 - timedelta(hours=1)},
    ],
    ids=["shorter-than-15-minutes", "reversed", "longer-than-24-hours"],
)
def test_window_length_is_validated(history_table, dynamodb, bucket, window):
    _, arn = history_table
    with pytest.raises(ClientError) as info:
        incremental(dynamodb, arn, bucket, "NEW_IMAGE", **window)
    assert info.value.response["Error"]["Code"] == "ValidationException"


def test_window_must_lie_in_the_restorable_window(history_table, dynamodb, bucket):
    _, arn = history_table
    with pytest.raises(ClientError) as info:
        incremental(
            dynamodb,
            arn,
            bucket,
            "NEW_IMAGE",
            ExportFromTime=T0 - timedelta(minutes=1),
            ExportToTime=T0 + timedelta(minutes=20),
        )
    assert info.value.response["Error"]["Code"] == "InvalidExportTimeException"


def test_a_test_setting_shrinks_the_minimum_window(history_table, emulator, dynamodb, s3, bucket):
    _, arn = history_table
    emulator.update_settings(incremental_min_window_seconds=30)
    done = wait_for_export(
        dynamodb,
        incremental(
            dynamodb,
            arn,
            bucket,
            "NEW_IMAGE",
            ExportFromTime=START + timedelta(minutes=2),
            ExportToTime=START + timedelta(minutes=2, seconds=30),
        ),
    )
    lines = lines_by_pk(read_export(s3, bucket, done["ExportManifest"]).data_lines)
    # "flash" existed at this window's start, so its deletion now shows (Keys only).
    assert set(lines) == {"updated", "deleted", "flash"}
    assert set(lines["flash"]) == {"Metadata", "Keys"}
