"""Full exports: point-in-time content, S3 layout, manifests, file spreading and API fields."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from conftest import create_table, delete, put, read_export, wait_for_export

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def items_by_pk(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    assert all(set(line) == {"Item"} for line in lines)
    return {line["Item"]["pk"]["S"]: line["Item"] for line in lines}


def test_export_reflects_the_table_at_export_time(emulator, dynamodb, s3, bucket):
    emulator.set_clock(T0)
    table, arn = create_table(dynamodb)
    for pk in ("a", "b", "c"):
        put(dynamodb, table, pk, v="one")
    emulator.advance_clock(60)
    dynamodb.update_item(
        TableName=table,
        Key={"pk": {"S": "a"}, "sk": {"N": "1"}},
        UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"S": "two"}},
    )
    delete(dynamodb, table, "b")
    put(dynamodb, table, "d", v="new")
    emulator.advance_clock(60)

    before = dynamodb.export_table_to_point_in_time(
        TableArn=arn, S3Bucket=bucket, S3Prefix="snap", ExportTime=T0 + timedelta(seconds=30)
    )["ExportDescription"]
    latest = dynamodb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, S3Prefix="snap")[
        "ExportDescription"
    ]

    done = wait_for_export(dynamodb, before["ExportArn"])
    assert done["ExportStatus"] == "COMPLETED"
    assert done["ExportTime"] == T0 + timedelta(seconds=30)
    old = read_export(s3, bucket, done["ExportManifest"])
    assert {pk: item["v"]["S"] for pk, item in items_by_pk(old.data_lines).items()} == {
        "a": "one",
        "b": "one",
        "c": "one",
    }
    assert old.summary["exportTime"] == "2024-03-01T00:00:30.000Z"

    done = wait_for_export(dynamodb, latest["ExportArn"])
    # ExportTime omitted: the latest restorable time, now minus the PITR lag.
    assert done["ExportTime"] == T0 + timedelta(
        seconds=120 - emulator.settings()["pitr_lag_seconds"]
    )
    new = read_export(s3, bucket, done["ExportManifest"])
    assert {pk: item["v"]["S"] for pk, item in items_by_pk(new.data_lines).items()} == {
        "a": "two",
        "c": "one",
        "d": "new",
    }


def test_layout_ids_and_manifests_match_aws(emulator, dynamodb, s3, bucket):
    emulator.set_clock(T0)
    table, arn = create_table(dynamodb)
    put(dynamodb, table, "a", v="x")
    emulator.advance_clock(10)
    started = dynamodb.export_table_to_point_in_time(
        TableArn=arn, S3Bucket=bucket, S3Prefix="exports/2024"
    )["ExportDescription"]
    export_arn = started["ExportArn"]
    export_id = export_arn.rsplit("/", 1)[1]
    assert re.fullmatch(r"0\d{13}-[0-9a-f]{8}", export_id)
    assert export_arn == f"{arn}/export/{export_id}"
    assert int(export_id[1:14]) == int((T0 + timedelta(seconds=10)).timestamp() * 1000)

    done = wait_for_export(dynamodb, export_arn)
    folder = f"exports/2024/AWSDynamoDB/{export_id}"
    assert done["ExportManifest"] == f"{folder}/manifest-summary.json"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert {k for k in keys if "/data/" not in k} == {
        f"{folder}/_started",
        f"{folder}/manifest-summary.json",
        f"{folder}/manifest-summary.md5",
        f"{folder}/manifest-files.json",
        f"{folder}/manifest-files.md5",
    }
    data_keys = [k for k in keys if "/data/" in k]
    assert data_keys and all(
        re.fullmatch(rf"{folder}/data/[a-z2-7]+\.json\.gz", k) for k in data_keys
    )
    assert s3.get_object(Bucket=bucket, Key=f"{folder}/_started")["Body"].read() == b""

    files = read_export(s3, bucket, done["ExportManifest"])
    assert sorted(files.data_keys) == sorted(data_keys)
    summary = files.summary
    assert summary["version"] == "2020-06-30"
    assert summary["exportArn"] == export_arn
    assert summary["tableArn"] == arn
    assert summary["tableId"] == done["TableId"]
    assert summary["s3Bucket"] == bucket
    assert summary["s3Prefix"] == "exports/2024"
    assert summary["manifestFilesS3Key"] == f"{folder}/manifest-files.json"
    assert summary["itemCount"] == 1 == done["ItemCount"]
    assert summary["outputFormat"] == "DYNAMODB_JSON"
    assert summary["exportType"] == "FULL_EXPORT"
    assert summary["billedSizeBytes"] == done["BilledSizeBytes"] > 0
    assert summary["startTime"] == "2024-03-01T00:00:10.000Z"
    assert "exportFromTime" not in summary
    for entry in files.manifest_lines:
        assert set(entry) == {"itemCount", "md5Checksum", "etag", "dataFileS3Key"}
        head = s3.head_object(Bucket=bucket, Key=entry["dataFileS3Key"])
        assert head["ETag"].strip('"') == entry["etag"]


def test_big_tables_spread_over_files_with_an_empty_partition(
    emulator, sample_table_factory, dynamodb, s3, bucket
):
    emulator.update_settings(items_per_export_file=10, empty_data_files=1, pitr_lag_seconds=0)
    table = sample_table_factory(items=45)
    done = wait_for_export(
        dynamodb,
        dynamodb.export_table_to_point_in_time(
            TableArn=table.table_arn, S3Bucket=bucket, S3Prefix="big"
        )["ExportDescription"]["ExportArn"],
    )
    files = read_export(s3, bucket, done["ExportManifest"])
    counts = sorted(entry["itemCount"] for entry in files.manifest_lines)
    assert counts == [0, 9, 9, 9, 9, 9]
    assert files.empty_files == 1
    assert len(files.data_lines) == 45 == done["ItemCount"]


def _decoded(value: Any) -> Any:
    """DynamoDB JSON as boto3 returns it: base64 binaries decoded to bytes."""
    kind, payload = next(iter(value.items()))
    if kind == "B":
        return {kind: base64.b64decode(payload)}
    if kind == "BS":
        return {kind: sorted(base64.b64decode(p) for p in payload)}
    if kind in ("SS", "NS"):
        return {kind: sorted(payload)}
    if kind == "M":
        return {kind: {k: _decoded(v) for k, v in payload.items()}}
    if kind == "L":
        return {kind: [_decoded(v) for v in payload]}
    return value


def _normalised(item: dict[str, Any]) -> dict[str, Any]:
    """Sets have no order: compare them sorted."""
    normalised = {}
    for name, value in item.items():
        kind = next(iter(value))
        normalised[name] = {kind: sorted(value[kind])} if kind in ("SS", "NS", "BS") else value
    return normalised


def test_data_lines_are_the_items_in_dynamodb_json(emulator, sample_table, dynamodb, s3, bucket):
    emulator.update_settings(pitr_lag_seconds=0)
    done = wait_for_export(
        dynamodb,
        dynamodb.export_table_to_point_in_time(
            TableArn=sample_table.table_arn, S3Bucket=bucket, S3Prefix="types"
        )["ExportDescription"]["ExportArn"],
    )
    exported = read_export(s3, bucket, done["ExportManifest"]).data_lines
    scanned = dynamodb.scan(TableName=sample_table.table_name)["Items"]
    assert len(exported) == len(scanned) == sample_table.item_count
    by_key = {(i["pk"]["S"], i["sk"]["S"]): _normalised(i) for i in scanned}
    for line in exported:
        item = {name: _decoded(value) for name, value in line["Item"].items()}
        assert _normalised(item) == by_key[(item["pk"]["S"], item["sk"]["S"])]
    # 38 significant digits survive as the typed string DynamoDB stores.
    assert any(len(line["Item"]["amount"]["N"].replace(".", "")) >= 30 for line in exported)


def test_describe_export_in_progress_then_completed(emulator, dynamodb, s3, bucket):
    emulator.update_settings(export_delay_seconds=0.6, pitr_lag_seconds=0)
    table, arn = create_table(dynamodb)
    put(dynamodb, table, "a", v="x")
    started = dynamodb.export_table_to_point_in_time(
        TableArn=arn, S3Bucket=bucket, S3Prefix="slow", ClientToken="slow-1"
    )["ExportDescription"]
    assert started["ExportStatus"] == "IN_PROGRESS"
    described = dynamodb.describe_export(ExportArn=started["ExportArn"])["ExportDescription"]
    assert described["ExportStatus"] == "IN_PROGRESS"
    for field in ("StartTime", "ExportTime", "ClientToken", "ExportFormat", "TableArn", "TableId"):
        assert field in described
    assert described["ClientToken"] == "slow-1"
    for absent in ("EndTime", "ExportManifest", "ItemCount", "ExportType", "FailureCode"):
        assert absent not in described
    export_id = started["ExportArn"].rsplit("/", 1)[1]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [f"slow/AWSDynamoDB/{export_id}/_started"]
    listed = dynamodb.list_exports(TableArn=arn)["ExportSummaries"]
    assert listed == [{"ExportArn": started["ExportArn"], "ExportStatus": "IN_PROGRESS"}]

    done = wait_for_export(dynamodb, started["ExportArn"])
    assert done["ExportStatus"] == "COMPLETED"
    assert done["EndTime"] >= done["StartTime"]
    assert done["ItemCount"] == 1
    assert done["ExportFormat"] == "DYNAMODB_JSON"
    assert "ExportType" not in done
    listed = dynamodb.list_exports(TableArn=arn)["ExportSummaries"]
    assert listed[0]["ExportStatus"] == "COMPLETED"


def test_export_type_is_reported_only_when_requested(emulator, dynamodb, bucket):
    emulator.update_settings(pitr_lag_seconds=0)
    _, arn = create_table(dynamodb)
    described = dynamodb.export_table_to_point_in_time(
        TableArn=arn, S3Bucket=bucket, S3Prefix="typed", ExportType="FULL_EXPORT"
    )["ExportDescription"]
    assert described["ExportType"] == "FULL_EXPORT"
    assert dynamodb.list_exports(TableArn=arn)["ExportSummaries"][0]["ExportType"] == (
        "FULL_EXPORT"
    )


def test_export_without_prefix_writes_from_the_bucket_root(emulator, dynamodb, s3, bucket):
    emulator.update_settings(pitr_lag_seconds=0)
    table, arn = create_table(dynamodb)
    put(dynamodb, table, "a", v="x")
    done = wait_for_export(
        dynamodb,
        dynamodb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket)["ExportDescription"][
            "ExportArn"
        ],
    )
    assert done["ExportManifest"].startswith("AWSDynamoDB/")
    files = read_export(s3, bucket, done["ExportManifest"])
    assert files.summary["s3Prefix"] is None
    assert len(files.data_lines) == 1


def test_bulk_loaded_items_are_exported_as_if_written(emulator, dynamodb, s3, bucket):
    import uuid

    from local_aws.bulk import bulk_items
    from local_aws.seed import create_sample_table

    name = f"bulk-{uuid.uuid4().hex[:8]}"
    arn, _ = create_sample_table(dynamodb, name)
    assert emulator.bulk_load(name, 0, 450) == 450
    assert emulator.bulk_load(name, 0, 450) == 0  # the same items again: no new versions
    emulator.advance_clock(5)  # past the load, so the latest restorable time includes it
    emulator.update_settings(items_per_export_file=200)
    try:
        started = dynamodb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket)
        done = wait_for_export(dynamodb, started["ExportDescription"]["ExportArn"])
    finally:
        emulator.restore_settings()

    assert done["ExportStatus"] == "COMPLETED" and done["ItemCount"] == 450
    files = read_export(s3, bucket, done["ExportManifest"])
    assert len(files.manifest_lines) == 3 + 1  # 450 items over 3 files, and an empty one
    exported = sorted((line["Item"] for line in files.data_lines), key=lambda item: item["sk"]["S"])
    assert exported == list(bulk_items(0, 450))
    # Straight into the history: moto's own table never holds them (see local_aws.bulk).
    assert dynamodb.scan(TableName=name)["Count"] == 0


def test_bulk_load_says_what_is_wrong(emulator):
    import pytest

    from local_aws.server import LocalAwsError

    with pytest.raises(LocalAwsError, match="no table 'nope': create it first"):
        emulator.bulk_load("nope", 0, 10)
    with pytest.raises(LocalAwsError, match="1 <= count <= 1000000"):
        emulator.bulk_load("nope", 0, 0)
